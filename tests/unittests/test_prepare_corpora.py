"""Real-corpus preparations on tiny fake trees in each corpus' real layout.

Every corpus goes through the same contract tests (manifests written,
config-aware skip, ``skip_prep``, one clear error naming the culprit file,
nothing half-written, a previous manifest kept on failure), then through
corpus-specific checks.
"""

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robust_brain.data.manifest import (
    AUDIO_COLUMNS,
    PAIR_COLUMNS,
    SEPARATION_ALT_COLUMNS,
    SEPARATION_COLUMNS,
    SPEECH_COLUMNS,
    UNTRANSCRIBED_COLUMNS,
    read_manifest,
)
from robust_brain.data.prepare import (
    PreparationError,
    prepare_chime4,
    prepare_dns_noise,
    prepare_librispeech,
    prepare_musan,
    prepare_rats,
    prepare_rirs,
    prepare_voicebank,
    prepare_whamr,
)
from robust_brain.data.prepare.common import options_path


def write_audio(path, seconds=0.2, sr=16000, channels=1):
    """Write a short low-level noise file (format from the suffix)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = int(round(seconds * sr))
    rng = np.random.default_rng(abs(hash(path.name)) % 2**32)
    shape = (frames, channels) if channels > 1 else frames
    sf.write(path, 0.01 * rng.standard_normal(shape), sr)
    return path


def write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def corrupt(path):
    Path(path).write_bytes(b"RIFF\x00\x00garbage, not audio" * 3)
    return path


# --------------------------------------------------------------- fake trees
def build_librispeech(tmp):
    root = tmp / "LibriSpeech"
    chapters = {
        "dev-clean": {
            ("84", "121123"): ["0000", "0001"],
            ("174", "50561"): ["0000"],
        },
        "train-clean-100": {("19", "198"): ["0000", "0001"]},
    }
    for split, chaps in chapters.items():
        for (spk, chap), utts in chaps.items():
            folder = root / split / spk / chap
            lines = []
            for i, utt in enumerate(utts):
                uttid = f"{spk}-{chap}-{utt}"
                write_audio(folder / f"{uttid}.flac", 0.1 + 0.1 * i)
                lines.append(f"{uttid} HELLO WORLD NUMBER {i}")
            write_text(
                folder / f"{spk}-{chap}.trans.txt", "\n".join(lines) + "\n"
            )
    return root, {"splits": ["train-clean-100", "dev-clean"]}


WHAMR_NAMES = {
    "tr": ["011a0101_1.7135_20ga010m_-1.7135", "01zc0203_0.5_40oc020e_-0.5"],
    "cv": ["012c0201_2.1_22go010a_-2.1"],
    "tt": ["050a050a_0.9_445c020c_-0.9"],
}
WHAMR_FOLDERS = (
    "mix_both_reverb",
    "mix_clean_reverb",
    "mix_single_reverb",
    "mix_both_anechoic",
    "mix_clean_anechoic",
    "mix_single_anechoic",
    "s1_anechoic",
    "s2_anechoic",
    "s1_reverb",
    "s2_reverb",
    "noise",
)


def build_wsj0(tmp, uttids):
    """WSJ0 transcripts: one .dot file per speaker/session folder."""
    by_session = {}
    for uttid in uttids:
        by_session.setdefault(uttid[:6], []).append(uttid)
    for session, utts in by_session.items():
        lines = [
            f"The word\\, number [loud_breath] {u[-2:]}. ({u})" for u in utts
        ]
        write_text(
            tmp
            / "wsj0/transcrp/dots/si_tr_s"
            / session[:3]
            / f"{session}00.dot",
            "\n".join(lines) + "\n",
        )
    return tmp / "wsj0"


def build_whamr(tmp, sample_rate=16000, version="max"):
    root = tmp / "whamr"
    for split, names in WHAMR_NAMES.items():
        for sub in WHAMR_FOLDERS:
            for i, name in enumerate(names):
                write_audio(
                    root / f"wav{sample_rate // 1000}k/{version}/{split}/{sub}"
                    f"/{name}.wav",
                    0.2 + 0.1 * i,
                    sample_rate,
                )
    utts = [
        p for n in WHAMR_NAMES.values() for x in n for p in x.split("_")[::2]
    ]
    wsj0 = build_wsj0(tmp, utts)
    return root, {"wsj0_folder": wsj0}


CH4 = "data/audio/16kHz"
CH4_DT_BUS = "isolated_1ch_track/dt05_bus_real"


TR05_REAL = {"BUS": "20GC0100", "CAF": "20GC0101"}


def build_chime4(tmp):
    root = tmp / "CHiME4"
    ev, tr = root / CH4 / "isolated_1ch_track", root / CH4 / "isolated"
    utts = {
        "dt05_real": ["F01_22GC010A_BUS.CH5", "M03_22HC010B_CAF.CH1"],
        "dt05_simu": ["F01_050C0101_BUS.CH3", "M03_051C0102_CAF.CH6"],
        "et05_real": ["F05_440C0201_BUS.CH4", "M05_440C0202_CAF.CH2"],
        "et05_simu": ["F06_441C0201_BUS.CH1", "M06_441C0202_CAF.CH5"],
    }
    for split, files in utts.items():
        dataset, kind = split.split("_")
        lines = []
        for i, f in enumerate(files):
            name, _ = f.split(".")
            env = name.split("_")[2].lower()
            write_audio(ev / f"{dataset}_{env}_{kind}/{f}.wav", 0.2 + 0.1 * i)
            lines.append(f"Good morning, {name[4:7]} [noise] ({name})")
            if kind == "simu":
                spk, wsj, _ = name.split("_")
                write_audio(tr / f"{dataset}_bth/{spk}_{wsj}_BTH.CH0.wav", 0.3)
        # an utterance of an environment that is not prepared: ignored
        lines.append(f"Not here ({files[0][:4]}999C0101_PED)")
        write_text(
            root / f"data/transcriptions/{split}.dot_all", "\n".join(lines)
        )
    # tr05: all six channels in "isolated"; WSJ0 originals and transcripts
    for env in ("BUS", "CAF"):
        for ch in range(1, 7):
            for utt in ("011C0201", "011C0202"):
                write_audio(
                    tr / f"tr05_{env.lower()}_simu/011_{utt}_{env}.CH{ch}.wav",
                    0.4,
                )
            write_audio(
                tr / f"tr05_{env.lower()}_real/M02_{TR05_REAL[env]}_{env}"
                f".CH{ch}.wav",
                0.4,
            )
    for utt in ("011C0201", "011C0202"):
        write_audio(tr / f"tr05_org/011_{utt}_ORG.wav", 0.4)
    write_text(
        root / "data/transcriptions/tr05_real.dot_all",
        "Hello there (M02_20GC0100_BUS)\nHi there (M02_20GC0101_CAF)\n",
    )
    wsj0 = build_wsj0(tmp, ["011c0201", "011c0202"])
    kwargs = {
        "splits": [
            "dt05_real",
            "dt05_simu",
            "et05_real",
            "et05_simu",
            "tr05_real",
            "tr05_simu",
        ],
        "environments": ["bus", "caf"],
        "wsj0_folder": wsj0,
    }
    return root, kwargs


def build_voicebank(tmp, sr=16000):
    root = tmp / "vb"
    sets = {
        "trainset_28spk": ["p226_001", "p226_002", "p227_001", "p287_001"],
        "testset": ["p232_001", "p257_001"],
    }
    for subset, ids in sets.items():
        log = []
        for i, uttid in enumerate(ids):
            for kind in ("clean", "noisy"):
                write_audio(root / f"{kind}_{subset}_wav/{uttid}.wav", 0.2, sr)
            write_text(
                root / f"{subset}_txt/{uttid}.txt", f"Call Stella {i}.\n"
            )
            log.append(f"{uttid} {'bus' if i % 2 else 'cafe'} {2.5 + 5 * i}")
        write_text(root / f"logfiles/log_{subset}.txt", "\n".join(log) + "\n")
    return root, {}


def build_dns(tmp):
    root = tmp / "DNS-Challenge"
    for name in ("door_knock_1", "Air_conditioner_2", "typing_3"):
        write_audio(root / f"datasets/noise/{name}.wav", 0.3)
    return root, {}


def build_musan(tmp):
    root = tmp / "musan"
    for rel in (
        "noise/free-sound/noise-free-sound-0000",
        "noise/sound-bible/noise-sound-bible-0000",
        "music/fma/music-fma-0000",
        "speech/librivox/speech-librivox-0000",
    ):
        write_audio(root / f"{rel}.wav", 0.25)
        write_text(root / rel.rsplit("/", 1)[0] / "ANNOTATIONS", "x\n")
    return root, {}


RATS_DIR = "data/rats_Ach_waveform_8k_joint_enh_asr_"
RATS_UTTS = {
    "train": ["10001_A_001", "10001_A_002", "10002_A_001"],
    "valid": ["20001_A_001"],
    "test": ["30001_A_001", "30001_A_002"],
}


def build_rats(tmp):
    """The ESPnet joint enh + ASR data folders of the GR authors' RATS
    recipe, relative paths as ESPnet writes them (``dump/raw/...``)."""
    root = tmp / "rats_chA"
    for split, utts in RATS_UTTS.items():
        folder = root / f"{RATS_DIR}{split}"
        scp, spk1, text, u2s = [], [], [], []
        for i, utt in enumerate(utts):
            for kind, lines in (("noisy", scp), ("clean", spk1)):
                rel = f"dump/raw/{split}/{kind}/{utt}.wav"
                write_audio(root / rel, 0.2 + 0.05 * i, 8000)
                lines.append(f"{utt} {rel}")
            text.append(f"{utt} roger that, over {i}")
            u2s.append(f"{utt} {utt.split('_')[0]}")
        for name, lines in (
            ("wav.scp", scp),
            ("spk1.scp", spk1),
            ("text_spk1", text),
            ("utt2spk", u2s),
        ):
            write_text(folder / name, "\n".join(lines) + "\n")
    return root, {}


def _rats_scp_line(root, split, name, utt, value):
    """Replace one utterance's entry of a Kaldi file; return the culprit."""
    path = root / f"{RATS_DIR}{split}" / name
    lines = path.read_text().splitlines()
    number = next(i for i, x in enumerate(lines) if x.split()[0] == utt)
    lines[number] = f"{utt} {value}".rstrip()
    path.write_text("\n".join(lines) + "\n")
    return f"{path}, line {number + 1}"


RVB_RIR = "RVB2014_type1_rir_largeroom1_a"


def build_rirs(tmp):
    root = tmp / "RIRS_NOISES"
    for room in ("smallroom", "mediumroom", "largeroom"):
        for rid in ("Room001-00001", "Room001-00002"):
            write_audio(root / f"simulated_rirs/{room}/Room001/{rid}.wav", 0.1)
        write_text(root / f"simulated_rirs/{room}/rir_list", "(not read)\n")
    real = root / "real_rirs_isotropic_noises"
    rirs = ["air_type1_air_binaural_aula_1", RVB_RIR]
    for name in rirs:
        write_audio(real / f"{name}.wav", 0.15)
    write_audio(real / "RWCP_type2_rir_cirline_e1a.wav", 0.15, channels=2)
    write_audio(real / "RVB2014_type1_noise_largeroom1_1.wav", 0.5)  # not a RIR
    lines = [
        f"--rir-id {n} --room-id {n} RIRS_NOISES/real_rirs_isotropic_noises/"
        f"{n}.wav"
        for n in [*rirs, "RWCP_type2_rir_cirline_e1a"]
    ]
    write_text(real / "rir_list", "\n".join(lines) + "\n")
    write_text(real / "noise_list", "--noise-id x RVB2014_type1_noise_...\n")
    return root, {}


# ----------------------------------------------------------------- registry
@dataclass
class Case:
    """A corpus, its builder, and how to break its tree for each error.

    Each breaker edits the tree and returns a string the error must contain
    (the culprit path, or the transcript file and line).
    """

    prep: object
    build: object
    manifests: tuple
    changed: dict
    breakers: dict = field(default_factory=dict)


def _rm(path):
    shutil.rmtree(path)
    return str(path)


def _unlink(path):
    Path(path).unlink()
    return str(path)


def _rate(path, sr=8000):
    write_audio(path, 0.2, sr)
    return str(path)


def _corrupt(path):
    corrupt(path)
    return str(path)


def _chime4_missing_audio(root):
    """Remove a file listed in dt05_real.dot_all. Its (random) channel is
    unknown to the preparation: the error names the utterance and the
    folder searched."""
    folder = root / CH4 / CH4_DT_BUS
    _unlink(folder / "F01_22GC010A_BUS.CH5.wav")
    return ("F01_22GC010A_BUS", str(folder))


LS = "dev-clean/84/121123"
WH = "wav16k/max"
CASES = {
    "librispeech": Case(
        prepare_librispeech,
        build_librispeech,
        ("train-clean-100", "dev-clean"),
        {"merge_splits": ["dev-clean"], "merge_name": "dev"},
        {
            "missing_folder": lambda r: _rm(r / "dev-clean"),
            "missing_audio": lambda r: _unlink(r / LS / "84-121123-0001.flac"),
            "corrupt_audio": lambda r: _corrupt(r / LS / "84-121123-0000.flac"),
            "wrong_rate": lambda r: _rate(r / LS / "84-121123-0001.flac"),
            "empty_transcript": lambda r: (
                str(
                    write_text(
                        r / LS / "84-121123.trans.txt",
                        "84-121123-0000 A\n84-121123-0001\n",
                    )
                )
                + ", line 2"
            ),
        },
    ),
    "whamr": Case(
        prepare_whamr,
        build_whamr,
        ("tr", "cv", "tt"),
        {"alt_targets": True},
        {
            "missing_folder": lambda r: _rm(r / WH / "cv/s2_anechoic"),
            "missing_audio": lambda r: _unlink(
                r / WH / "tt/s1_anechoic/050a050a_0.9_445c020c_-0.9.wav"
            ),
            "corrupt_audio": lambda r: _corrupt(
                r / WH / "tr/mix_both_reverb/01zc0203_0.5_40oc020e_-0.5.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r / WH / "tr/noise/011a0101_1.7135_20ga010m_-1.7135.wav"
            ),
            "empty_transcript": lambda r: (
                str(
                    write_text(
                        r.parent
                        / "wsj0/transcrp/dots/si_tr_s/22g/22go0100.dot",
                        "[loud_breath] (22go010a)\n",
                    )
                )
                + ", line 1"
            ),
        },
    ),
    "chime4": Case(
        prepare_chime4,
        build_chime4,
        (
            "dt05_real",
            "dt05_simu",
            "et05_real",
            "et05_simu",
            "tr05_real",
            "tr05_simu",
        ),
        {"normalize_text": False},
        {
            "missing_folder": lambda r: _rm(
                r / CH4 / "isolated_1ch_track/et05_caf_simu"
            ),
            "missing_audio": _chime4_missing_audio,
            "corrupt_audio": lambda r: _corrupt(
                r / CH4 / "isolated/dt05_bth/M03_051C0102_BTH.CH0.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r / CH4 / "isolated/tr05_bus_simu/011_011C0201_BUS.CH5.wav"
            ),
            "empty_transcript": lambda r: (
                str(
                    write_text(
                        r / "data/transcriptions/et05_real.dot_all",
                        "[noise] (F05_440C0201_BUS)\n",
                    )
                )
                + ", line 1"
            ),
        },
    ),
    "voicebank": Case(
        prepare_voicebank,
        build_voicebank,
        ("train", "valid", "test"),
        {"normalize_text": False},
        {
            "missing_folder": lambda r: _rm(r / "clean_testset_wav"),
            "missing_audio": lambda r: _unlink(
                r / "noisy_trainset_28spk_wav/p227_001.wav"
            ),
            "corrupt_audio": lambda r: _corrupt(
                r / "clean_testset_wav/p232_001.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r / "noisy_testset_wav/p257_001.wav", 48000
            ),
            "empty_transcript": lambda r: str(
                write_text(r / "trainset_28spk_txt/p226_002.txt", " \n")
            ),
        },
    ),
    "dns": Case(
        prepare_dns_noise,
        build_dns,
        ("noise",),
        {"multichannel": "skip"},
        {
            "missing_folder": lambda r: (
                _rm(r / "datasets/noise"),
                "none of ['datasets/noise', ",
            )[1],
            "corrupt_audio": lambda r: _corrupt(
                r / "datasets/noise/typing_3.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r / "datasets/noise/door_knock_1.wav"
            ),
        },
    ),
    "musan": Case(
        prepare_musan,
        build_musan,
        ("noise", "music", "speech"),
        {"multichannel": "skip"},
        {
            "missing_folder": lambda r: _rm(r / "music"),
            "corrupt_audio": lambda r: _corrupt(
                r / "speech/librivox/speech-librivox-0000.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r / "noise/sound-bible/noise-sound-bible-0000.wav", 44100
            ),
        },
    ),
    "rirs": Case(
        prepare_rirs,
        build_rirs,
        ("simulated", "real"),
        {"multichannel": "keep"},
        {
            "missing_folder": lambda r: _rm(r / "simulated_rirs/mediumroom"),
            "missing_audio": lambda r: _unlink(
                r / "real_rirs_isotropic_noises" / f"{RVB_RIR}.wav"
            ),
            "corrupt_audio": lambda r: _corrupt(
                r / "simulated_rirs/smallroom/Room001/Room001-00002.wav"
            ),
            "wrong_rate": lambda r: _rate(
                r
                / "real_rirs_isotropic_noises/air_type1_air_binaural_aula_1.wav"
            ),
        },
    ),
}
CASES["rats"] = Case(
    prepare_rats,
    build_rats,
    ("train", "valid", "test"),
    {"normalize_text": False},
    {
        "missing_folder": lambda r: _rm(r / f"{RATS_DIR}valid"),
        "missing_audio": lambda r: _unlink(
            r / "dump/raw/test/clean/30001_A_002.wav"
        ),
        "corrupt_audio": lambda r: _corrupt(
            r / "dump/raw/train/noisy/10001_A_002.wav"
        ),
        "wrong_rate": lambda r: _rate(
            r / "dump/raw/train/clean/10002_A_001.wav", 16000
        ),
        "empty_transcript": lambda r: _rats_scp_line(
            r, "test", "text_spk1", "30001_A_002", ""
        ),
    },
)
COLUMNS = {
    "rats": PAIR_COLUMNS,
    "librispeech": SPEECH_COLUMNS,
    "whamr": SEPARATION_COLUMNS,
    "chime4": PAIR_COLUMNS,
    "voicebank": PAIR_COLUMNS,
    "dns": AUDIO_COLUMNS,
    "musan": AUDIO_COLUMNS,
    "rirs": AUDIO_COLUMNS,
}
ERRORS = [(c, e) for c, case in CASES.items() for e in case.breakers]


def run(case_name, tmp_path, save=None, **overrides):
    case = CASES[case_name]
    root, kwargs = case.build(tmp_path)
    save = save or tmp_path / "save"
    return root, kwargs, case.prep(root, save, **{**kwargs, **overrides})


def snapshot(folder):
    return {
        p.name: (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(Path(folder).glob("*"))
        if p.is_file()
    }


# ---------------------------------------------------------- contract tests
@pytest.mark.parametrize("name", CASES)
def test_writes_valid_manifests_with_placeholders(name, tmp_path):
    root, _, paths = run(name, tmp_path)
    assert list(paths) == list(CASES[name].manifests)
    for path in paths.values():
        assert path.parent == tmp_path / "save"
        rows = read_manifest(path, COLUMNS[name])
        assert rows, path
        for row in rows:
            for key, value in row.items():
                if key.endswith("wav") and value:
                    assert value.startswith("$data_root/"), value
                    real = root / value[len("$data_root/") :]
                    assert real.is_file(), real
                    if key in ("wav", "mix_wav", "noisy_wav"):
                        d = sf.info(str(real)).duration
                        assert float(row["duration"]) == pytest.approx(d)
        assert options_path(path).is_file()


@pytest.mark.parametrize("name", CASES)
def test_config_aware_skip(name, tmp_path):
    root, kwargs, paths = run(name, tmp_path)
    case = CASES[name]
    old = 1_000_000_000
    for path in paths.values():
        os.utime(path, ns=(old, old))
    assert case.prep(root, tmp_path / "save", **kwargs) == paths
    assert all(p.stat().st_mtime_ns == old for p in paths.values())
    # a changed option prepares again
    case.prep(root, tmp_path / "save", **{**kwargs, **case.changed})
    assert all(p.stat().st_mtime_ns != old for p in paths.values())


@pytest.mark.parametrize("name", CASES)
def test_skip_prep_returns_paths_and_touches_nothing(name, tmp_path):
    paths = CASES[name].prep(
        tmp_path / "does-not-exist", tmp_path / "save", skip_prep=True
    )
    assert paths and all(p.parent == tmp_path / "save" for p in paths.values())
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize("name,error", ERRORS)
def test_one_clear_error_and_nothing_written(name, error, tmp_path):
    case = CASES[name]
    root, kwargs = case.build(tmp_path)
    culprits = case.breakers[error](root)
    if isinstance(culprits, str):
        culprits = (culprits,)
    with pytest.raises(PreparationError) as info:
        case.prep(root, tmp_path / "save", **kwargs)
    message = str(info.value)
    for culprit in culprits:
        assert culprit in message, (culprit, message)
    save = tmp_path / "save"
    assert not save.exists() or not any(save.iterdir())


@pytest.mark.parametrize("name", CASES)
def test_failure_keeps_the_previous_manifests(name, tmp_path):
    case = CASES[name]
    root, kwargs, _ = run(name, tmp_path)
    before = snapshot(tmp_path / "save")
    culprit = case.breakers["corrupt_audio"](root)
    with pytest.raises(PreparationError) as info:
        case.prep(root, tmp_path / "save", **{**kwargs, **case.changed})
    assert culprit in str(info.value)
    assert snapshot(tmp_path / "save") == before


def test_missing_data_folder(tmp_path):
    for case in CASES.values():
        with pytest.raises(PreparationError, match="missing .*nowhere"):
            case.prep(tmp_path / "nowhere", tmp_path / "save")
    assert not (tmp_path / "save").exists()


def test_manifests_load_in_speechbrain(tmp_path):
    from speechbrain.dataio.dataio import load_data_csv

    for name in CASES:
        root, _, paths = run(name, tmp_path / name)
        for path in paths.values():
            data = load_data_csv(str(path), replacements={"data_root": root})
            for item in data.values():
                wavs = [v for k, v in item.items() if k.endswith("wav") and v]
                assert wavs and all(Path(w).is_file() for w in wavs)


# ------------------------------------------------------------- LibriSpeech
def test_librispeech_rows(tmp_path):
    _, _, paths = run("librispeech", tmp_path)
    rows = read_manifest(paths["dev-clean"], SPEECH_COLUMNS)
    assert [r["ID"] for r in rows] == [
        "174-50561-0000",
        "84-121123-0000",
        "84-121123-0001",
    ]
    row = rows[2]
    assert row["wav"] == "$data_root/dev-clean/84/121123/84-121123-0001.flac"
    assert (row["spk_id"], row["wrd"]) == ("84", "HELLO WORLD NUMBER 1")
    assert float(row["duration"]) == pytest.approx(0.2)


def test_librispeech_untranscribed_merge(tmp_path):
    root, _ = build_librispeech(tmp_path)
    # transcripts are not read for the speech-only stream
    (root / LS / "84-121123.trans.txt").write_text("84-121123-0000\n")
    splits = ["train-clean-100", "dev-clean"]
    paths = prepare_librispeech(
        root,
        tmp_path / "save",
        splits=splits,
        transcribed=False,
        merge_splits=splits,
        merge_name="speech",
    )
    assert [p.name for p in paths.values()] == [
        "librispeech_train-clean-100_untranscribed.csv",
        "librispeech_dev-clean_untranscribed.csv",
        "librispeech_speech_untranscribed.csv",
    ]
    merged = read_manifest(paths["speech_untranscribed"], UNTRANSCRIBED_COLUMNS)
    assert len(merged) == 5 and {r["spk_id"] for r in merged} == {
        "19",
        "84",
        "174",
    }


def test_librispeech_flac_without_transcript(tmp_path):
    root, kwargs = build_librispeech(tmp_path)
    orphan = write_audio(root / LS / "84-121123-0002.flac")
    with pytest.raises(PreparationError, match="without transcript") as info:
        prepare_librispeech(root, tmp_path / "save", **kwargs)
    assert str(orphan) in str(info.value)


# ------------------------------------------------------------------ WHAMR!
def _whamr_rows(paths, split, columns=SEPARATION_COLUMNS):
    return read_manifest(paths[split], columns)


def test_whamr_transcripts_speakers_and_anechoic_targets(tmp_path):
    _, _, paths = run("whamr", tmp_path)
    for split in ("tr", "cv", "tt"):  # one target type for every split
        for row in _whamr_rows(paths, split):
            assert f"/{split}/s1_anechoic/" in row["s1_wav"]
            assert f"/{split}/s2_anechoic/" in row["s2_wav"]
            assert f"/{split}/mix_both_reverb/" in row["mix_wav"]
    row = _whamr_rows(paths, "tr")[0]
    assert row["ID"] == "011a0101_1.7135_20ga010m_-1.7135"
    assert (row["s1_spk"], row["s2_spk"]) == ("011", "20g")
    assert row["s1_wrd"] == "THE WORD NUMBER 01"  # markup removed
    assert row["s2_wrd"] == "THE WORD NUMBER 0M"


def test_whamr_reverb_targets_alt_columns_and_raw_text(tmp_path):
    _, _, paths = run(
        "whamr",
        tmp_path,
        target="reverb",
        alt_targets=True,
        normalize_text=False,
        mixture="mix_single_anechoic",
    )
    for split in ("tr", "cv", "tt"):
        for row in _whamr_rows(paths, split, SEPARATION_ALT_COLUMNS):
            assert f"/{split}/s1_reverb/" in row["s1_wav"]
            assert f"/{split}/s2_anechoic/" in row["s2_alt_wav"]
            assert "/mix_single_anechoic/" in row["mix_wav"]
    row = _whamr_rows(paths, "tr", SEPARATION_ALT_COLUMNS)[0]
    assert row["s1_wrd"] == "The word\\, number [loud_breath] 01."  # raw


def test_whamr_without_wsj0_8k_min_warns(tmp_path, caplog):
    root, _ = build_whamr(tmp_path, sample_rate=8000, version="min")
    with caplog.at_level("WARNING"):
        paths = prepare_whamr(
            root, tmp_path / "save", sample_rate=8000, version="min"
        )
    assert "'min' truncates" in caplog.text
    for row in _whamr_rows(paths, "tt"):
        assert row["mix_wav"].startswith("$data_root/wav8k/min/tt/")
        assert (row["s1_wrd"], row["s2_wrd"]) == ("", "")
        assert (row["s1_spk"], row["s2_spk"]) == ("050", "445")


def test_whamr_source_without_transcript(tmp_path):
    root, kwargs = build_whamr(tmp_path)
    shutil.rmtree(tmp_path / "wsj0/transcrp/dots/si_tr_s/445")
    with pytest.raises(PreparationError, match="445C020C") as info:
        prepare_whamr(root, tmp_path / "save", **kwargs)
    assert "050a050a_0.9_445c020c_-0.9.wav" in str(info.value)


def test_whamr_unparsable_name_needs_no_transcripts(tmp_path):
    root, kwargs = build_whamr(tmp_path)
    for sub in WHAMR_FOLDERS:
        write_audio(root / WH / f"cv/{sub}/oddname.wav")
    paths = prepare_whamr(root, tmp_path / "s1", splits=["cv"])
    assert {r["s1_spk"] for r in _whamr_rows(paths, "cv")} == {"", "012"}
    with pytest.raises(PreparationError, match="oddname.wav"):
        prepare_whamr(root, tmp_path / "s2", splits=["cv"], **kwargs)


# ---------------------------------------------------------------- CHiME-4
def test_chime4_rows(tmp_path):
    _, _, paths = run("chime4", tmp_path)
    real = read_manifest(paths["dt05_real"], PAIR_COLUMNS)
    assert [r["ID"] for r in real] == [
        "F01_22GC010A_BUS_CH5_REAL",
        "M03_22HC010B_CAF_CH1_REAL",
    ]
    assert real[0]["condition"] == "dt05_real_bus"
    assert real[1]["noise_type"] == "caf"
    assert all(r["clean_wav"] == "" for r in real)
    assert real[0]["wrd"] == "GOOD MORNING 22G"
    simu = read_manifest(paths["dt05_simu"], PAIR_COLUMNS)
    assert simu[1]["clean_wav"] == (
        "$data_root/data/audio/16kHz/isolated/dt05_bth/M03_051C0102_BTH.CH0.wav"
    )
    tr05 = read_manifest(paths["tr05_simu"], PAIR_COLUMNS)
    assert [r["ID"] for r in tr05] == [  # default: channel 5 only
        "011_011C0201_BUS_CH5_SIMU",
        "011_011C0201_CAF_CH5_SIMU",
        "011_011C0202_BUS_CH5_SIMU",
        "011_011C0202_CAF_CH5_SIMU",
    ]
    assert tr05[0]["clean_wav"].endswith(
        "/isolated/tr05_org/011_011C0201_ORG.wav"
    )
    assert tr05[0]["wrd"] == "THE WORD NUMBER 01"  # from the WSJ0 .dot file
    assert all(r["clean_wav"] == "" for r in read_manifest(paths["tr05_real"]))


def test_chime4_train_channels_and_ext_clean(tmp_path):
    root, kwargs = build_chime4(tmp_path)
    kwargs.update(splits=["tr05_simu"], train_channels=[1, 3])
    ext = (
        root / CH4 / "isolated_ext/tr05_bus_simu/011_011C0201_BUS.CH1.Clean.wav"
    )
    with pytest.raises(PreparationError, match="clean reference") as info:
        prepare_chime4(root, tmp_path / "save", clean_reference="ext", **kwargs)
    assert str(ext) in str(info.value)
    for env in ("bus", "caf"):
        for utt in ("011C0201", "011C0202"):
            for ch in (1, 3):
                write_audio(
                    root / CH4 / f"isolated_ext/tr05_{env}_simu/011_{utt}_"
                    f"{env.upper()}.CH{ch}.Clean.wav"
                )
    paths = prepare_chime4(
        root, tmp_path / "save", clean_reference="ext", **kwargs
    )
    rows = read_manifest(paths["tr05_simu"], PAIR_COLUMNS)
    assert len(rows) == 8
    assert rows[0]["clean_wav"].endswith("011_011C0201_BUS.CH1.Clean.wav")
    # a custom per-set template
    template = {
        "tr05": "data/audio/16kHz/isolated/tr05_org/{spk}_{wsj}_ORG.wav"
    }
    paths = prepare_chime4(
        root, tmp_path / "save", clean_reference=template, **kwargs
    )
    rows = read_manifest(paths["tr05_simu"], PAIR_COLUMNS)
    assert rows[0]["clean_wav"].endswith("/tr05_org/011_011C0201_ORG.wav")
    with pytest.raises(ValueError, match="no template for dt05_simu"):
        prepare_chime4(
            root,
            tmp_path / "save",
            splits=["dt05_simu"],
            clean_reference=template,
        )


def test_chime4_tr05_simu_needs_wsj0(tmp_path):
    root, kwargs = build_chime4(tmp_path)
    del kwargs["wsj0_folder"]
    with pytest.raises(PreparationError, match="wsj0_folder") as info:
        prepare_chime4(root, tmp_path / "save", **kwargs)
    assert str(root / "data/transcriptions/tr05_simu.dot_all") in str(
        info.value
    )
    assert not (tmp_path / "save").exists()


def test_chime4_missing_train_channel_is_named(tmp_path):
    root, kwargs = build_chime4(tmp_path)
    gone = root / CH4 / "isolated/tr05_caf_real/M02_20GC0101_CAF.CH5.wav"
    gone.unlink()
    with pytest.raises(PreparationError) as info:
        prepare_chime4(root, tmp_path / "save", **kwargs)
    assert str(gone) in str(info.value)


# ------------------------------------------------------- VoiceBank-DEMAND
def test_voicebank_splits_and_logs(tmp_path):
    _, _, paths = run("voicebank", tmp_path)
    train = read_manifest(paths["train"], PAIR_COLUMNS)
    valid = read_manifest(paths["valid"], PAIR_COLUMNS)
    assert [r["ID"] for r in train] == ["p227_001"]
    assert [r["ID"] for r in valid] == ["p226_001", "p226_002", "p287_001"]
    test = read_manifest(paths["test"], PAIR_COLUMNS)
    assert test[1]["noise_type"] == "bus" and test[1]["snr_db"] == "7.5"
    assert test[1]["condition"] == "bus_7.5"
    assert test[0]["wrd"] == "CALL STELLA 0"


def test_voicebank_without_logs_or_valid(tmp_path):
    root, _ = build_voicebank(tmp_path)
    shutil.rmtree(root / "logfiles")
    paths = prepare_voicebank(root, tmp_path / "save", valid_speakers=())
    assert list(paths) == ["train", "test"]
    rows = read_manifest(paths["train"], PAIR_COLUMNS)
    assert len(rows) == 4
    assert {(r["noise_type"], r["snr_db"], r["condition"]) for r in rows} == {
        ("", "", "")
    }


def test_voicebank_audio_without_transcript(tmp_path):
    root, kwargs = build_voicebank(tmp_path)
    txt = _unlink(root / "testset_txt/p257_001.txt")
    with pytest.raises(PreparationError, match="missing transcript") as info:
        prepare_voicebank(root, tmp_path / "save", **kwargs)
    assert txt in str(info.value)


def test_voicebank_resample_48k(tmp_path):
    root, _ = build_voicebank(tmp_path, sr=48000)
    with pytest.raises(PreparationError, match="48000 Hz"):
        prepare_voicebank(root, tmp_path / "save")  # 16 kHz copy required
    paths = prepare_voicebank(root, tmp_path / "save", resample=True)
    copies = tmp_path / "save/voicebank_16000hz"
    row = read_manifest(paths["test"], PAIR_COLUMNS)[0]
    assert row["noisy_wav"] == str(copies / "noisy_testset_wav/p232_001.wav")
    assert row["clean_wav"] == str(copies / "clean_testset_wav/p232_001.wav")
    info = sf.info(row["clean_wav"])
    assert (info.samplerate, info.frames) == (16000, 3200)
    assert float(row["duration"]) == pytest.approx(0.2)
    assert not list(copies.rglob(".*"))  # no temporary file left


# ------------------------------------------------------- noise corpora
def test_dns_fullband_fallback(tmp_path):
    root = tmp_path / "DNS-Challenge"
    write_audio(root / "datasets_fullband/noise_fullband/fan_1.wav", 0.1, 48000)
    with pytest.raises(PreparationError, match="wrong sample rate"):
        prepare_dns_noise(root, tmp_path / "s1")
    paths = prepare_dns_noise(root, tmp_path / "s2", sample_rate=48000)
    rows = read_manifest(paths["noise"], AUDIO_COLUMNS)
    assert rows == [
        {
            "ID": "fan_1",
            "duration": "0.1",
            "wav": "$data_root/datasets_fullband/noise_fullband/fan_1.wav",
        }
    ]
    # an explicit folder wins
    write_audio(root / "my_noise/a.wav", 0.1, 48000)
    paths = prepare_dns_noise(
        root, tmp_path / "s3", noise_subdir="my_noise", sample_rate=48000
    )
    assert read_manifest(paths["noise"])[0]["ID"] == "a"


def test_musan_categories_subset(tmp_path):
    _, _, paths = run("musan", tmp_path, categories=["speech", "noise"])
    assert list(paths) == ["speech", "noise"]
    ids = [r["ID"] for r in read_manifest(paths["noise"], AUDIO_COLUMNS)]
    assert ids == ["noise-free-sound-0000", "noise-sound-bible-0000"]


def test_musan_stereo_file_is_an_error_by_default(tmp_path):
    root, _ = build_musan(tmp_path)
    stereo = write_audio(root / "music/fma/music-fma-0001.wav", channels=2)
    with pytest.raises(PreparationError, match="channel count") as info:
        prepare_musan(root, tmp_path / "save")
    assert str(stereo) in str(info.value)


def test_rirs_list_and_multichannel(tmp_path):
    _, _, paths = run("rirs", tmp_path)
    real = [r["ID"] for r in read_manifest(paths["real"], AUDIO_COLUMNS)]
    # the isotropic noise is not in rir_list; the 2-channel RIR is skipped
    assert real == ["air_type1_air_binaural_aula_1", RVB_RIR]
    sim = [r["ID"] for r in read_manifest(paths["simulated"])]
    assert "mediumroom-Room001-00001" in sim and len(sim) == 6
    _, _, paths = run("rirs", tmp_path / "keep", multichannel="keep")
    assert len(read_manifest(paths["real"])) == 3
    with pytest.raises(PreparationError, match="RWCP_type2_rir_cirline_e1a"):
        run("rirs", tmp_path / "error", multichannel="error")


def test_rirs_missing_rir_list(tmp_path):
    root, _ = build_rirs(tmp_path)
    listing = _unlink(root / "real_rirs_isotropic_noises/rir_list")
    with pytest.raises(PreparationError, match="missing RIR list") as info:
        prepare_rirs(root, tmp_path / "save", sets=["real"])
    assert listing in str(info.value)


def test_rats_rows(tmp_path):
    _, _, paths = run("rats", tmp_path)
    train = read_manifest(paths["train"], PAIR_COLUMNS)
    assert [r["ID"] for r in train] == RATS_UTTS["train"]
    first = train[0]
    assert (
        first["noisy_wav"] == "$data_root/dump/raw/train/noisy/10001_A_001.wav"
    )
    assert (
        first["clean_wav"] == "$data_root/dump/raw/train/clean/10001_A_001.wav"
    )
    assert first["wrd"] == "ROGER THAT OVER 0"
    assert first["spk_id"] == "10001"
    assert first["condition"] == "rats_chA_train"
    assert float(train[1]["duration"]) == pytest.approx(0.25)


@pytest.mark.parametrize(
    "value", ["sox a.sph -t wav - |", "dump/raw/a.ark:1234", "a.wav 0 1"]
)
def test_rats_refuses_pipes_and_arks_naming_the_line(value, tmp_path):
    root, _ = build_rats(tmp_path)
    where = _rats_scp_line(root, "train", "wav.scp", "10001_A_002", value)
    with pytest.raises(PreparationError, match="unsupported .scp entry") as e:
        prepare_rats(root, tmp_path / "save")
    assert where in str(e.value)
    assert not (tmp_path / "save").exists()


@pytest.mark.parametrize(
    "name, missing", [("spk1.scp", "spk1.scp"), ("text_spk1", "text_spk1")]
)
def test_rats_utterance_without_clean_or_text(name, missing, tmp_path):
    root, _ = build_rats(tmp_path)
    path = root / f"{RATS_DIR}valid" / name
    path.write_text("")
    with pytest.raises(PreparationError, match="has no entry in") as e:
        prepare_rats(root, tmp_path / "save")
    assert "'20001_A_001'" in str(e.value) and missing in str(e.value)


def test_rats_duplicate_and_foreign_utterances(tmp_path):
    root, _ = build_rats(tmp_path)
    text = root / f"{RATS_DIR}test" / "text_spk1"
    text.write_text(text.read_text() + "30001_A_001 again\n")
    with pytest.raises(PreparationError, match="listed twice"):
        prepare_rats(root, tmp_path / "save")
    text.write_text(
        "30001_A_001 a\n30001_A_002 b\n99999_A_001 not in wav.scp\n"
    )
    with pytest.raises(PreparationError, match="'99999_A_001'"):
        prepare_rats(root, tmp_path / "save")


def test_rats_absolute_paths_and_split_folders(tmp_path):
    root, _ = build_rats(tmp_path)
    outside = write_audio(tmp_path / "elsewhere" / "n.wav", 0.2, 8000)
    _rats_scp_line(root, "valid", "wav.scp", "20001_A_001", str(outside))
    (root / f"{RATS_DIR}valid").rename(root / "data" / "dev")
    paths = prepare_rats(
        root,
        tmp_path / "save",
        splits=["dev"],
        split_folders={"dev": "dev"},
    )
    (row,) = read_manifest(paths["dev"], PAIR_COLUMNS)
    assert row["noisy_wav"] == str(outside)  # outside the root: absolute
    assert row["clean_wav"].startswith("$data_root/dump/raw/valid/clean/")
    with pytest.raises(ValueError, match="no folder for splits"):
        prepare_rats(root, tmp_path / "s2", splits=["eval"])


def test_rats_tags_dropped_and_segments_refused(tmp_path):
    root, _ = build_rats(tmp_path)
    _rats_scp_line(
        root, "valid", "text_spk1", "20001_A_001", "<noise> roger\tthat"
    )
    paths = prepare_rats(root, tmp_path / "save")
    (row,) = read_manifest(paths["valid"], PAIR_COLUMNS)
    assert row["wrd"] == "ROGER THAT"
    write_text(root / f"{RATS_DIR}test" / "segments", "u r 0.0 1.0\n")
    with pytest.raises(PreparationError, match="segments file"):
        prepare_rats(root, tmp_path / "save2")
