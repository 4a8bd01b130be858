"""Tiny local HF models load through SpeechBrain's REAL wrappers, offline.

Also pins down the "frozen but differentiable" pattern:
``freeze=True`` runs the wrapper's forward under ``torch.no_grad()`` (no
gradient reaches the input), so a loss THROUGH a frozen encoder needs
``freeze=False`` + ``requires_grad_(False)`` + ``.eval()``.
"""

import json
import os

import pytest
import torch
from safetensors.torch import load_file

from robust_brain import tiny_models as tm

SSL_KINDS = ("wav2vec2", "wavlm", "hubert")
HF_CLASS = {
    "wav2vec2": "Wav2Vec2Model",
    "wavlm": "WavLMModel",
    "hubert": "HubertModel",
    "whisper": "WhisperModel",
}
SR = 16000


@pytest.fixture(autouse=True)
def _no_hub(monkeypatch):
    """Any Hub query (what a non-local ``source`` triggers) fails the test."""
    from speechbrain.integrations.huggingface import huggingface as sb_hf

    def _refuse(*args, **kwargs):
        raise AssertionError(f"Hub queried for {args} {kwargs}")

    monkeypatch.setattr(sb_hf, "model_info", _refuse)


@pytest.fixture(scope="module")
def paths():
    """The cached tiny models (built once per machine)."""
    return {kind: tm.tiny_model_path(kind) for kind in tm.KINDS}


def load(kind, source, save_path, freeze=False, **kwargs):
    """Load a tiny model through the SpeechBrain wrapper of its kind."""
    from speechbrain.integrations.huggingface.hubert import HuBERT
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    from speechbrain.integrations.huggingface.wavlm import WavLM
    from speechbrain.integrations.huggingface.whisper import Whisper

    if kind == "whisper":
        return Whisper(
            source=str(source),
            save_path=str(save_path),
            sampling_rate=SR,
            encoder_only=True,
            freeze=freeze,
            freeze_encoder=True,
            **kwargs,
        )
    wrapper = {"wav2vec2": Wav2Vec2, "wavlm": WavLM, "hubert": HuBERT}[kind]
    return wrapper(
        source=str(source),
        save_path=str(save_path),
        freeze=freeze,
        freeze_feature_extractor=False,
        output_norm=False,
        apply_spec_augment=False,
        **kwargs,
    )


def conv_frames(num_samples, kernels, strides):
    """Output length of a stack of unpadded 1-D convolutions."""
    for kernel, stride in zip(kernels, strides, strict=True):
        num_samples = (num_samples - kernel) // stride + 1
    return num_samples


def weights(path):
    return load_file(str(path / "model.safetensors"))


@pytest.mark.parametrize("kind", SSL_KINDS)
def test_ssl_loads_offline_with_expected_shape(kind, paths, tmp_path):
    enc = load(kind, paths[kind], tmp_path)
    assert type(enc.model).__name__ == HF_CLASS[kind]
    # the weights are the saved ones, not a fresh random init
    saved = weights(paths[kind])
    loaded = enc.model.state_dict()
    assert saved and all(torch.equal(loaded[k], v) for k, v in saved.items())

    cfg = enc.model.config
    frames = conv_frames(SR, cfg.conv_kernel, cfg.conv_stride)
    assert frames == 49  # 1 s -> 49 frames, as for the real checkpoints
    assert int(enc.model._get_feat_extract_output_lengths(SR)) == 49
    out = enc.eval()(torch.randn(2, SR))
    assert out.shape == (2, 49, 32)
    assert torch.isfinite(out).all()
    # 2.5 s -> floor((40000 - 400) / 320) + 1 = 124 frames
    assert enc(torch.randn(1, 40000)).shape == (1, 124, 32)


@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_deeper_teacher_override_gives_all_hidden_states(kind, tmp_path):
    path = tm.tiny_model_path(kind, num_hidden_layers=4)
    assert path != tm.tiny_model_path(kind)
    enc = load(kind, path, tmp_path, output_all_hiddens=True).eval()
    hiddens = enc(torch.randn(2, SR))
    # conv-projection output + one per transformer layer
    assert hiddens.shape == (5, 2, 49, 32)


@pytest.mark.parametrize("num_samples", [SR, 3 * SR, 31 * SR])
def test_whisper_always_returns_1500_frames(num_samples, paths, tmp_path):
    enc = load("whisper", paths["whisper"], tmp_path).eval()
    assert type(enc.model).__name__ == HF_CLASS["whisper"]
    assert enc.model.decoder is None  # encoder_only drops the decoder
    wav = torch.randn(1, num_samples)
    out = enc(wav)
    assert out.shape == (1, 1500, 32)
    assert torch.isfinite(out).all()

    n_valid = tm.whisper_num_frames(num_samples)
    assert n_valid == min(1500, -(-num_samples // 320))
    if num_samples < 30 * SR:
        # the log-mel past the real input is constant (pure padding): the
        # real input covers encoder frames [0, n_valid), to one frame
        mel = enc._get_mel(wav)[0]
        assert mel.shape == (80, 3000)
        pad = mel[:, 2 * n_valid + 2 :]
        assert torch.all(pad == pad[0, 0])
        assert not torch.all(mel[:, 2 * n_valid - 2] == pad[0, 0])


def test_whisper_num_frames_values():
    assert tm.whisper_num_frames(16000) == 50
    assert tm.whisper_num_frames(16001) == 51
    assert tm.whisper_num_frames(320) == 1
    assert tm.whisper_num_frames(0) == 0
    assert tm.whisper_num_frames(480000) == 1500
    assert tm.whisper_num_frames(10**7) == 1500


@pytest.mark.parametrize("kind", tm.KINDS)
def test_frozen_but_differentiable_pattern(kind, paths, tmp_path):
    """freeze=False + requires_grad_(False) + eval(): the gradient reaches
    the input waveform and no parameter gets one."""
    enc = load(kind, paths[kind], tmp_path, freeze=False)
    if kind != "whisper":
        # the wrapper leaves an unfrozen model trainable
        assert all(p.requires_grad for p in enc.parameters())
    enc.requires_grad_(False).eval()
    assert not any(p.requires_grad for p in enc.parameters())

    wav = torch.randn(2, SR, requires_grad=True)
    out = enc(wav)
    assert out.grad_fn is not None
    if kind == "whisper":
        out = out[:, : tm.whisper_num_frames(SR)]  # mask the 30 s padding
    out.pow(2).mean().backward()
    assert wav.grad is not None
    assert torch.isfinite(wav.grad).all()
    assert wav.grad.abs().sum() > 0
    assert (wav.grad.abs().sum(dim=1) > 0).all()  # every utterance
    assert all(p.grad is None for p in enc.parameters())


@pytest.mark.parametrize("kind", tm.KINDS)
def test_freeze_true_cuts_the_input_gradient(kind, paths, tmp_path):
    """The trap: freeze=True runs under no_grad, so a loss
    through the encoder cannot reach the input."""
    enc = load(kind, paths[kind], tmp_path, freeze=True)
    wav = torch.randn(1, SR, requires_grad=True)
    out = enc(wav)
    assert out.grad_fn is None and not out.requires_grad
    with pytest.raises(RuntimeError):
        out.pow(2).mean().backward()
    assert wav.grad is None


@pytest.mark.parametrize("kind", tm.KINDS)
def test_eval_makes_forward_deterministic(kind, paths, tmp_path):
    torch.manual_seed(0)
    enc = load(kind, paths[kind], tmp_path, freeze=False)
    wav = torch.randn(2, SR)
    if kind != "whisper":
        # train mode (what the wrapper leaves, and what Brain.fit restores
        # every epoch): dropout + layerdrop make two passes differ
        assert enc.model.training
        assert not torch.equal(enc(wav), enc(wav))
    enc.eval()
    with torch.no_grad():
        first, second = enc(wav), enc(wav)
    assert torch.equal(first, second)


@pytest.mark.parametrize("kind", tm.KINDS)
def test_same_seed_same_weights_other_seed_other_weights(kind, tmp_path):
    rng_before = torch.get_rng_state()
    a = weights(tm.make_tiny_model(kind, tmp_path / "a", seed=0))
    b = weights(tm.make_tiny_model(kind, tmp_path / "b", seed=0))
    c = weights(tm.make_tiny_model(kind, tmp_path / "c", seed=1))
    assert torch.equal(torch.get_rng_state(), rng_before)  # RNG untouched
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    differing = [k for k in a if not torch.equal(a[k], c[k])]
    # every randomly initialised matrix differs (LayerNorm/bias init is
    # constant, so not every tensor does)
    assert len(differing) >= len(a) // 3
    # the cached model is the seed-0 model
    cached = weights(tm.tiny_model_path(kind))
    assert all(torch.equal(cached[k], a[k]) for k in a)


def _stats(folder):
    return {
        p.name: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in folder.iterdir()
    }


def test_builder_is_idempotent_and_rebuilds_on_change(tmp_path, monkeypatch):
    folder = tmp_path / "w2v"
    path = tm.make_tiny_wav2vec2(folder)
    assert path == folder.absolute()
    before = _stats(folder)
    assert set(before) == {tm.STAMP_NAME, *tm._MODEL_FILES}
    with monkeypatch.context() as patch:
        patch.setattr(tm, "_write_model", None)  # building again would fail
        assert tm.make_tiny_wav2vec2(folder) == path
    assert _stats(folder) == before  # nothing rewritten

    tm.make_tiny_wav2vec2(folder, num_hidden_layers=3)
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 3
    assert _stats(folder) != before

    tm.make_tiny_wav2vec2(folder, seed=7, num_hidden_layers=3)
    assert json.loads((folder / tm.STAMP_NAME).read_text())["seed"] == 7
    assert os.listdir(tmp_path) == ["w2v"]  # no temp or stale leftovers


def test_crash_leaves_no_half_written_model(tmp_path, monkeypatch):
    folder = tmp_path / "wavlm"

    def crash(kind):
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(tm, "_feature_extractor", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        tm.make_tiny_wavlm(folder)
    assert os.listdir(tmp_path) == []  # neither the model nor a temp folder
    monkeypatch.undo()

    tm.make_tiny_wavlm(folder, seed=0)
    monkeypatch.setattr(tm, "_feature_extractor", crash)
    with pytest.raises(RuntimeError):
        tm.make_tiny_wavlm(folder, seed=1)
    # the previous complete model is intact
    assert json.loads((folder / tm.STAMP_NAME).read_text())["seed"] == 0
    assert os.listdir(tmp_path) == ["wavlm"]


def test_concurrent_builder_wins_the_race(tmp_path, monkeypatch):
    """Another process renames an identical model into place first: the
    loser keeps the winner's folder and cleans up its temp folder."""
    folder = tmp_path / "hubert"
    write = tm._write_model
    raced, winner = [], []

    def racing_write(kind, seed, config, spec, target):
        write(kind, seed, config, spec, target)
        if not raced:
            raced.append(True)
            winner.append(tm.make_tiny_hubert(folder, seed=seed))
            winner.append(_stats(folder))

    monkeypatch.setattr(tm, "_write_model", racing_write)
    path = tm.make_tiny_hubert(folder)
    stats = _stats(folder)
    assert winner == [path, stats]  # the winner's files were kept
    monkeypatch.undo()
    assert tm.make_tiny_hubert(folder) == path
    assert _stats(folder) == stats
    assert os.listdir(tmp_path) == ["hubert"]


def test_foreign_folders_are_never_replaced(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        tm.make_tiny_whisper(folder)
    assert os.listdir(folder) == ["notes.txt"]
    assert sorted(os.listdir(tmp_path)) == ["mine"]

    empty = tmp_path / "empty"
    empty.mkdir()
    tm.make_tiny_whisper(empty)
    assert (empty / "model.safetensors").is_file()


def test_bad_arguments_are_rejected(tmp_path):
    with pytest.raises(TypeError, match="num_hiden_layers"):
        tm.make_tiny_wav2vec2(tmp_path / "x", num_hiden_layers=4)
    with pytest.raises(ValueError, match="unknown tiny model kind"):
        tm.make_tiny_model("conformer", tmp_path / "y")
    assert os.listdir(tmp_path) == []


def test_cache_location_and_naming(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_BRAIN_TINY_CACHE", str(tmp_path / "cache"))
    path = tm.tiny_model_path("whisper", seed=3)
    assert path.parent == tmp_path / "cache"
    assert path.name.startswith("whisper-seed3-")
    assert tm.tiny_model_path("whisper", seed=3) == path
    assert tm.tiny_model_path("whisper", seed=4) != path
    assert tm.tiny_model_path("whisper", seed=3, encoder_layers=1) != path


def test_make_all_tiny_models(tmp_path):
    got = tm.make_all_tiny_models(tmp_path / "models", seed=2)
    assert set(got) == set(tm.KINDS)
    for kind, path in got.items():
        assert path == (tmp_path / "models" / kind).absolute()
        cfg = json.loads((path / "config.json").read_text())
        assert cfg["architectures"] == [HF_CLASS[kind]]
        assert json.loads((path / tm.STAMP_NAME).read_text())["seed"] == 2
