"""Whisper from the pip packages: conversion, SpeechBrain loading, losses.

Uses the real pretrained weights (tiny.en; base where marked slow) and the
real human prompts of Debian's Asterisk packages (installed by
tools/env.sh).
"""

import shutil
import struct
import subprocess
import sys
import tempfile

import numpy as np
import pytest
import torch

from robust_brain.data import tts
from robust_brain.evaluation.normalise import normalise
from robust_brain.models.whisper import WhisperASR, sentence_case
from robust_brain.pretrained import (
    CT2FormatError,
    convert_ct2_whisper,
    read_ct2_model,
    resolve_whisper_model,
    whisper_checkpoint,
)

N_PROMPTS = 20
#: SpeechBrain's wrapper wants a save_path (unused for local folders)
CACHE = tempfile.mkdtemp(prefix="whisper_sb_")


@pytest.fixture(scope="module")
def prompts():
    found = tts.find_real_prompts()[:N_PROMPTS]
    assert len(found) == N_PROMPTS, "real prompts missing (tools/env.sh)"
    texts = [" ".join(p[1].split()) for p in found]
    wavs = [tts.load_real_prompt(p[2]).astype(np.float32) for p in found]
    return texts, wavs


def _batch(wavs):
    out = torch.zeros(len(wavs), max(len(w) for w in wavs))
    for i, w in enumerate(wavs):
        out[i, : len(w)] = torch.from_numpy(w)
    return out


def _greedy_agreement(name, wavs):
    """Greedy token ids of the converted model (transformers) and of
    CTranslate2 on IDENTICAL features (faster-whisper's), per prompt."""
    from faster_whisper import WhisperModel
    from faster_whisper.transcribe import pad_or_trim
    from transformers import WhisperForConditionalGeneration

    ct2 = WhisperModel(
        str(resolve_whisper_model(name)), device="cpu", compute_type="float32"
    )
    hf = WhisperForConditionalGeneration.from_pretrained(
        whisper_checkpoint(name)
    ).eval()
    gen = hf.generation_config
    prompt = [gen.decoder_start_token_id]
    if gen.is_multilingual:
        prompt += [gen.lang_to_id["<|en|>"], gen.task_to_id["transcribe"]]
    prompt += [gen.no_timestamps_token_id]
    same = []
    for w in wavs:
        feats = pad_or_trim(ct2.feature_extractor(w)[:, :-1])
        res = ct2.model.generate(
            ct2.encode(feats[None]),
            [prompt],
            beam_size=1,
            max_length=128,
            suppress_tokens=list(gen.suppress_tokens),
            suppress_blank=True,
        )[0].sequences_ids[0]
        with torch.no_grad():
            out = hf.generate(
                torch.from_numpy(np.ascontiguousarray(feats))[None],
                decoder_input_ids=torch.tensor([prompt]),
                max_new_tokens=100,
                num_beams=1,
                do_sample=False,
            )[0].tolist()
        # transformers may or may not return the prompt: keep text tokens
        out = [t for t in out if t not in prompt and t != gen.eos_token_id]
        same.append(out == list(res))
    return same


def test_tiny_en_greedy_agrees_with_ctranslate2(prompts):
    same = _greedy_agreement("tiny.en", prompts[1])
    assert sum(same) >= 0.95 * len(same), same


@pytest.mark.slow
def test_base_greedy_agrees_with_ctranslate2(prompts):
    same = _greedy_agreement("base", prompts[1][:10])
    assert sum(same) >= 0.9 * len(same), same


@pytest.mark.parametrize("name", ["tiny.en", "base"])
def test_tokenizer_reencodes_greedy_outputs(name, prompts):
    """The repaired BPE: Whisper's own greedy output re-encodes to the
    same ids (teacher-forced labels equal what the model emits)."""
    from transformers import WhisperTokenizer

    tok = WhisperTokenizer.from_pretrained(whisper_checkpoint(name))
    assert tok.encode(" the", add_special_tokens=False) == [
        tok.convert_tokens_to_ids("Ġthe")
    ]
    asr = WhisperASR(
        str(whisper_checkpoint(name)), CACHE, text_style="as_is"
    ).eval()
    for text in asr.greedy_decode(_batch(prompts[1][:4])):
        ids = tok.encode(" " + text, add_special_tokens=False)
        assert tok.decode(ids) == " " + text
        # the greedy path emitted these ids: BPE must give the same ones
        assert tok.encode(tok.decode(ids), add_special_tokens=False) == ids


def test_generation_config_of_english_only_model():
    from transformers import GenerationConfig

    tiny = GenerationConfig.from_pretrained(whisper_checkpoint("tiny.en"))
    assert not hasattr(tiny, "lang_to_id")
    assert tiny.begin_suppress_tokens == [220, 50256]
    base = GenerationConfig.from_pretrained(whisper_checkpoint("base"))
    assert base.lang_to_id["<|en|>"] == 50259
    assert base.begin_suppress_tokens == [220, 50257]
    assert (whisper_checkpoint("base") / "LICENSE").read_text().count("MIT")


def test_loads_through_speechbrain_wrapper_and_gradient_reaches_wave(
    tmp_path, prompts
):
    from speechbrain.integrations.huggingface.whisper import Whisper

    folder = str(whisper_checkpoint("tiny.en"))
    enc = Whisper(folder, str(tmp_path), encoder_only=True, freeze=False)
    assert enc(torch.zeros(1, 16000)).shape == (1, 1500, 384)

    asr = WhisperASR(folder, str(tmp_path), window_seconds=10).eval()
    asr.requires_grad_(False)
    wav = _batch(prompts[1][:2]).requires_grad_(True)
    loss = asr.text_loss(wav, prompts[0][:2])
    loss.backward()
    assert 0 < loss.item() < 3  # nats per token on clean real speech
    assert torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0
    assert all(p.grad is None for p in asr.parameters())


@pytest.mark.parametrize("window", [30, 10])
def test_log_mel_equals_feature_extractor(window, prompts):
    from transformers import WhisperFeatureExtractor

    folder = whisper_checkpoint("tiny.en")
    asr = WhisperASR(str(folder), CACHE, window_seconds=window)
    wavs = prompts[1][:3]
    ref = WhisperFeatureExtractor.from_pretrained(folder)(
        wavs, sampling_rate=16000, max_length=window * 16000
    ).input_features
    ours = asr.log_mel(_batch(wavs))
    assert ours.shape == (3, 80, window * 100)
    assert np.abs(ours.numpy() - np.stack(ref)).max() <= 1e-4


def test_windowed_decoding_transcribes_clean_speech(prompts):
    asr = WhisperASR(str(whisper_checkpoint("tiny.en")), CACHE).eval()
    texts, wavs = prompts[0][:8], prompts[1][:8]
    hyps = asr.greedy_decode(_batch(wavs))
    pairs = list(zip(hyps, texts, strict=True))
    assert sum(normalise(h) != normalise(t) for h, t in pairs) <= 3, pairs


def test_proxy_interface_matches_text_loss(prompts):
    """As a D4AM proxy: padded corpus token ids + relative lengths give
    the same CE as the texts, the enhancer's padding is not heard, and
    transcripts come back in the corpus' style."""
    from speechbrain.dataio.batch import PaddedBatch

    from robust_brain.data.tts import normalize_words

    asr = WhisperASR(str(whisper_checkpoint("tiny.en")), CACHE).eval()
    tok = asr.text_tokenizer()
    texts = [normalize_words(t) for t in prompts[0][:3]]
    batch = PaddedBatch(
        [
            {"wav": torch.from_numpy(w), "tokens": torch.tensor(ids)}
            for w, ids in zip(
                prompts[1][:3],
                [tok.encode_as_ids(t) for t in texts],
                strict=True,
            )
        ]
    )
    wavs, lens = batch.wav
    # what an enhancer may emit beyond each utterance's end
    beyond = (
        torch.arange(wavs.shape[1])[None] >= (lens * wavs.shape[1])[:, None]
    )
    garbage = wavs + 0.3 * beyond
    with torch.no_grad():
        proxy = asr.loss(garbage, lens, *batch.tokens)
        ref = asr.text_loss(wavs, texts)
        hyps = asr.transcribe(garbage, lens)
    assert abs(proxy.item() - ref.item()) < 1e-4
    assert all(h == h.upper() and "." not in h for h in hyps)
    assert sum(h == t for h, t in zip(hyps, texts, strict=True)) >= 2


def test_sentence_case_targets_match_whisper_style(prompts):
    """Upper-case corpus transcripts become Whisper-style targets with a
    lower CE than as written."""
    from robust_brain.data.tts import normalize_words

    folder = str(whisper_checkpoint("tiny.en"))
    wav = _batch(prompts[1][:4])
    upper = [normalize_words(t) for t in prompts[0][:4]]
    with torch.no_grad():
        styled = WhisperASR(folder, CACHE, text_style="sentence").eval()
        raw = WhisperASR(folder, CACHE, text_style="as_is").eval()
        assert styled.text_loss(wav, upper) < raw.text_loss(wav, upper)
    assert sentence_case("I SAID I'M HERE") == "I said I'm here"


# ------------------------------------------------------------ bad inputs
def _write_ct2(path, variables, spec="WhisperSpec", version=6):
    def string(s):
        b = s.encode() + b"\0"
        return struct.pack("<H", len(b)) + b

    out = struct.pack("<I", version) + string(spec) + struct.pack("<I", 3)
    out += struct.pack("<I", len(variables))
    for name, arr in variables.items():
        arr = np.asarray(arr, dtype=np.float16)
        out += string(name) + struct.pack("<B", arr.ndim)
        out += struct.pack(f"<{arr.ndim}I", *arr.shape)
        out += struct.pack("<BI", 4, arr.nbytes) + arr.tobytes()
    out += struct.pack("<I", 0)
    path.write_bytes(out)


def test_reader_round_trip_and_clear_errors(tmp_path):
    model = tmp_path / "model.bin"
    _write_ct2(model, {"a/b": np.arange(6).reshape(2, 3)})
    read = read_ct2_model(model)
    assert read.spec == "WhisperSpec"
    assert read.get("a/b").tolist() == [[0, 1, 2], [3, 4, 5]]

    model.write_bytes(model.read_bytes()[:-9])
    with pytest.raises(CT2FormatError, match="model.bin: truncated"):
        read_ct2_model(model)
    model.write_bytes(struct.pack("<I", 99) + b"\0" * 16)
    with pytest.raises(CT2FormatError, match="unsupported .* version 99"):
        read_ct2_model(model)


def test_converter_refuses_other_specs_and_missing_files(tmp_path):
    src = resolve_whisper_model("tiny.en")
    folder = tmp_path / "ct2"
    folder.mkdir()
    _write_ct2(folder / "model.bin", {"x": np.zeros(2)}, spec="Wav2Vec2Spec")
    shutil.copy(src / "config.json", folder)
    shutil.copy(src / "tokenizer.json", folder)
    with pytest.raises(CT2FormatError, match="Wav2Vec2Spec.*not a Whisper"):
        convert_ct2_whisper(folder, tmp_path / "out")
    (folder / "tokenizer.json").unlink()
    with pytest.raises(CT2FormatError, match="tokenizer.json: missing"):
        convert_ct2_whisper(folder, tmp_path / "out")
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_converter_command_line(tmp_path):
    # a truncated copy of the real file: one error line, exit code 2
    src = resolve_whisper_model("tiny.en")
    folder = tmp_path / "ct2"
    shutil.copytree(src, folder)
    data = (folder / "model.bin").read_bytes()
    (folder / "model.bin").write_bytes(data[: len(data) // 2])
    run = subprocess.run(
        [sys.executable, "-m", "robust_brain.pretrained", "whisper",
         "--model", str(folder), "--out", str(tmp_path / "hf")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert run.returncode == 2
    assert "model.bin: truncated" in run.stderr
    assert not (tmp_path / "hf").exists()


def test_greedy_decoding_never_repeats_an_ngram(monkeypatch):
    """A decoder stuck on one token (what noisy input can do) loops up to
    max_new_tokens under plain greedy decoding; with no_repeat_ngram_size
    no n-gram of the output repeats."""
    asr = WhisperASR(
        str(whisper_checkpoint("tiny.en")),
        CACHE,
        window_seconds=2,
        max_new_tokens=24,
    ).eval()
    favourites = [1000, 1001, 1002]
    assert not set(favourites) & set(asr.model.config.suppress_tokens or [])
    logits = torch.full((asr.model.config.vocab_size,), -10.0)
    logits[favourites] = torch.tensor([3.0, 2.0, 1.0])

    def stuck(states, ids, use_cache=True, past_key_values=None):
        return logits.expand(*ids.shape, -1).clone(), None, None

    seen = []
    monkeypatch.setattr(asr, "forward_decoder", stuck)
    monkeypatch.setattr(
        asr.tokenizer, "decode", lambda seq, **kw: seen.append(seq) or ""
    )
    asr.greedy_decode(torch.zeros(1, 16000))
    assert seen[-1] == [1000] * 24
    for n in (2, 3):
        asr.no_repeat_ngram_size = n
        asr.greedy_decode(torch.zeros(1, 16000))
        grams = [
            tuple(seen[-1][i : i + n]) for i in range(len(seen[-1]) - n + 1)
        ]
        assert len(grams) == len(set(grams)), n
    assert asr.decoding_settings == "greedy-norepeat3"
