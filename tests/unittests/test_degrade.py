"""Unit tests of robust_brain.data.degrade (noise, SNR, RIRs, levels)."""

import numpy as np
import pytest
import soundfile as sf

from robust_brain.data import degrade


def _speech_like(n, seed=0, fs=16000):
    """Pink noise with a syllabic (4 Hz) on/off envelope and silences."""
    rng = np.random.default_rng(seed)
    x = degrade.colored_noise(n, "pink", rng, fs)
    t = np.arange(n) / fs
    env = np.clip(np.sin(2 * np.pi * 4 * t), 0, None) ** 2
    env[: fs // 4] = 0
    return x * env


def _snr(speech, noise):
    return 10 * np.log10(np.mean(speech**2) / np.mean(noise**2))


@pytest.mark.parametrize("snr", [-5.0, 0.0, 5.0, 10.0, 2.7])
@pytest.mark.parametrize("color", ["white", "pink", "brown"])
def test_mix_at_snr_hits_requested_snr(snr, color):
    rng = np.random.default_rng(1)
    speech = 0.05 * _speech_like(32000)
    noise = 3.0 * degrade.colored_noise(32000, color, rng)
    mix, scaled = degrade.mix_at_snr(speech, noise, snr)
    assert abs(_snr(speech, scaled) - snr) < 1e-6
    assert np.allclose(mix - speech, scaled)
    # measured from the mixture itself, as a user of the corpus would
    assert abs(_snr(speech, mix - speech) - snr) < 0.1


def test_mix_at_snr_reverberant_speech_after_16bit_roundtrip(tmp_path):
    rng = np.random.default_rng(2)
    dry = degrade.normalize_level(_speech_like(48000, 3))
    h = np.zeros(4000)
    h[0] = 1.0
    h[1:] = 0.05 * rng.standard_normal(3999) * np.exp(-np.arange(3999) / 800)
    wet = degrade.reverberate(dry, h)
    noise = degrade.colored_noise(wet.size, "pink", rng)
    mix, _ = degrade.mix_at_snr(wet, noise, 0.0)
    # the SNR is computed on the reverberant (not dry) speech
    sf.write(tmp_path / "m.wav", mix, 16000, subtype="PCM_16")
    sf.write(tmp_path / "s.wav", wet, 16000, subtype="PCM_16")
    m16, _ = sf.read(tmp_path / "m.wav")
    s16, _ = sf.read(tmp_path / "s.wav")
    assert np.max(np.abs(mix)) < 1.0  # no clipping in the 16-bit file
    assert abs(_snr(s16, m16 - s16) - 0.0) < 0.1
    assert abs(_snr(dry, m16 - s16)) > 0.5  # dry speech has another level


def test_mix_at_snr_rejects_bad_input():
    with pytest.raises(ValueError):
        degrade.mix_at_snr(np.ones(10), np.ones(11), 0.0)
    with pytest.raises(ValueError):
        degrade.mix_at_snr(np.ones(10), np.zeros(10), 0.0)


@pytest.mark.parametrize(
    "color,expected", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)]
)
def test_noise_colour_spectral_slope(color, expected):
    x = degrade.colored_noise(160000, color, np.random.default_rng(3))
    slope = degrade.spectral_slope(x, 16000, 50.0, 5000.0)
    assert abs(slope - expected) < 0.3, slope
    assert abs(degrade.rms(x) - 1.0) < 1e-9


def test_pink_noise_loses_3db_per_octave():
    from scipy import signal

    x = degrade.colored_noise(320000, "pink", np.random.default_rng(4))
    f, p = signal.welch(x, fs=16000, nperseg=8192)
    band = [p[(f >= lo) & (f < 2 * lo)].mean() for lo in (250, 500, 1000)]
    drops = 10 * np.log10(np.array(band[:-1]) / np.array(band[1:]))
    assert np.all(np.abs(drops - 3.0) < 0.6), drops


def test_noise_is_seeded():
    a = degrade.colored_noise(1000, "brown", np.random.default_rng(5))
    b = degrade.colored_noise(1000, "brown", np.random.default_rng(5))
    c = degrade.colored_noise(1000, "brown", np.random.default_rng(6))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError):
        degrade.colored_noise(10, "blue", np.random.default_rng(0))


@pytest.mark.parametrize("target", [-25.0, -30.0, -18.5])
def test_normalize_level_hits_target(target):
    x = 0.3 * _speech_like(32000, 7)
    y = degrade.normalize_level(x, target, peak_limit=1.0)
    assert abs(degrade.level_dbfs(y) - target) < 0.01
    # and survives 16-bit quantisation
    q = np.round(y * 32768) / 32768
    assert abs(degrade.level_dbfs(q) - target) < 0.05


def test_normalize_level_respects_peak_limit():
    x = np.zeros(16000)
    x[100] = 1.0  # crest factor 42 dB: -25 dBFS would clip
    y = degrade.normalize_level(x, -25.0, peak_limit=0.99)
    assert abs(np.max(np.abs(y)) - 0.99) < 1e-12
    assert degrade.level_dbfs(y) < -25.0


def test_measure_rt60_of_exponential_decays():
    rng = np.random.default_rng(8)
    t = np.arange(32000) / 16000
    for rt60 in (0.2, 0.5, 0.8):
        h = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60)
        assert abs(degrade.measure_rt60(h, 16000) - rt60) < 0.05 * rt60


@pytest.mark.parametrize("seed", [0, 1])
def test_simulated_room_rt60_in_range_and_decaying(seed):
    room = degrade.simulate_room(
        np.random.default_rng(seed), n_sources=2, rt60_range=(0.2, 0.8)
    )
    assert 0.2 <= room["rt60_target"] <= 0.8
    # measured (Schroeder) RT60 near the target and inside a loose range
    assert abs(room["rt60"] - room["rt60_target"]) < 0.25 * room["rt60_target"]
    assert 0.15 <= room["rt60"] <= 1.0
    for h, d in zip(room["rirs"], room["distances"], strict=True):
        assert 0.75 <= d <= 3.0
        assert h[0] == 1.0  # direct path aligned at 0 with unit gain
        energy = np.asarray(h, dtype=np.float64) ** 2
        n = energy.size
        thirds = [energy[i * n // 3 : (i + 1) * n // 3].sum() for i in range(3)]
        assert thirds[0] > 10 * thirds[1] > 10 * thirds[2] > 0
        assert abs(degrade.measure_rt60(h) - room["rt60"]) < 0.3 * room["rt60"]


def test_reverberate_keeps_length_and_alignment():
    x = _speech_like(16000, 9)
    h = np.zeros(800)
    h[0], h[400] = 1.0, 0.5
    y = degrade.reverberate(x, h)
    assert y.shape == x.shape
    assert np.allclose(y[:400], x[:400])
    assert np.allclose(y[400:], x[400:] + 0.5 * x[:-400])


def test_align_rir():
    h = np.array([0.0, 0.01, -0.02, 0.5, 0.2, 0.1])
    assert degrade.align_rir(h, 4).tolist() == [1.0, 0.4, 0.2]


def test_babble_unit_level_and_not_empty():
    rng = np.random.default_rng(10)
    pool = [_speech_like(20000, s) for s in range(10)]
    b = degrade.make_babble(pool, 48000, rng)
    assert b.shape == (48000,)
    assert abs(degrade.rms(b) - 1.0) < 1e-9
    # babble of >= 8 talkers is much less modulated than a single talker
    frames = b.reshape(-1, 400)
    single = pool[0][:19200].reshape(-1, 400)
    var_b = np.std(np.log(np.sqrt((frames**2).mean(1)) + 1e-6))
    var_s = np.std(np.log(np.sqrt((single**2).mean(1)) + 1e-6))
    assert var_b < 0.5 * var_s


def test_fit_length_loops_and_crops():
    x = np.arange(5.0)
    assert degrade.fit_length(x, 12).tolist()[:7] == [0, 1, 2, 3, 4, 0, 1]
    y = degrade.fit_length(np.arange(100.0), 10, np.random.default_rng(0))
    assert np.all(np.diff(y) == 1)


def test_trim_silence_and_resample():
    fs = 16000
    x = np.concatenate([np.zeros(fs), 0.5 * np.ones(fs // 2), np.zeros(fs)])
    y = degrade.trim_silence(x, fs, margin_s=0.15)
    assert len(y) == fs // 2 + 2 * int(0.15 * fs)
    z = degrade.resample(np.ones(22050), 22050, 16000)
    assert z.shape == (16000,)
