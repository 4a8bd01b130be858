"""Signal degradations used by the offline corpus generators.

Everything here works on 1-D float numpy arrays sampled at ``fs`` Hz
(16 kHz in the corpora) and draws randomness only from a
:class:`numpy.random.Generator` passed in, so that a corpus is a pure
function of its seed.

Conventions
-----------
* Levels are in dBFS with the *square-wave* convention: a signal whose RMS
  is 1.0 sits at 0 dBFS (``20 * log10(rms)``).
* Room impulse responses are *aligned*: the direct path arrives at sample 0
  with unit gain (:func:`align_rir`). Convolving dry speech with such an
  RIR keeps the direct sound time-aligned and level-matched with the dry
  signal, so the dry signal is a valid anechoic target for the reverberant
  one.
* The SNR of a mixture is computed over the whole (possibly reverberant)
  speech signal and the whole noise segment (:func:`mix_at_snr`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction

import numpy as np
from scipy import signal

#: Target level of clean speech in the corpora (dBFS, RMS re 1.0).
SPEECH_LEVEL_DBFS = -25.0
#: Noise colours understood by :func:`colored_noise` (spectral exponent of
#: the power spectral density, ``S(f) ~ 1 / f**exponent``).
NOISE_COLORS = {"white": 0.0, "pink": 1.0, "brown": 2.0}

_EPS = 1e-12


def rms(x: np.ndarray) -> float:
    """Root-mean-square value of a signal.

    Arguments
    ---------
    x : numpy.ndarray
        Signal.

    Returns
    -------
    float
        ``sqrt(mean(x ** 2))`` (0.0 for an empty signal).

    Example
    -------
    >>> round(rms(np.array([1.0, -1.0, 1.0, -1.0])), 3)
    1.0
    """
    if x.size == 0:
        return 0.0
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64))))


def level_dbfs(x: np.ndarray) -> float:
    """Level of a signal in dBFS (RMS re 1.0).

    Arguments
    ---------
    x : numpy.ndarray
        Signal.

    Returns
    -------
    float
        ``20 * log10(rms(x))``; ``-inf`` for a silent signal.

    Example
    -------
    >>> round(level_dbfs(np.full(100, 0.1)), 2)
    -20.0
    """
    r = rms(x)
    return 20.0 * math.log10(r) if r > 0 else -math.inf


def normalize_level(
    x: np.ndarray,
    target_dbfs: float = SPEECH_LEVEL_DBFS,
    peak_limit: float = 0.99,
) -> np.ndarray:
    """Scale a signal to a target RMS level, never past a peak limit.

    Arguments
    ---------
    x : numpy.ndarray
        Signal (not modified).
    target_dbfs : float
        Target level in dBFS (RMS re 1.0).
    peak_limit : float
        If the scaled signal would peak above this, it is scaled down to
        peak exactly there instead (the level then ends below target).

    Returns
    -------
    numpy.ndarray
        Scaled copy (float64).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> y = normalize_level(rng.standard_normal(16000) * 0.3, -25.0)
    >>> round(level_dbfs(y), 6)
    -25.0
    """
    x = np.asarray(x, dtype=np.float64)
    r = rms(x)
    if r <= 0:
        return x.copy()
    y = x * (10.0 ** (target_dbfs / 20.0) / r)
    peak = float(np.max(np.abs(y)))
    if peak > peak_limit:
        y *= peak_limit / peak
    return y


def colored_noise(
    n: int,
    color: str,
    rng: np.random.Generator,
    fs: int = 16000,
    f_min: float = 20.0,
) -> np.ndarray:
    """Gaussian noise with a power-law spectrum, at unit RMS.

    White noise is flat, pink noise has a power spectral density falling
    as ``1/f`` (-3 dB/octave), brown noise as ``1/f**2`` (-6 dB/octave).
    The spectrum is shaped in the frequency domain; below ``f_min`` the
    shaping gain is held constant (and the DC bin removed) so that brown
    noise is not dominated by inaudible rumble.

    Arguments
    ---------
    n : int
        Number of samples.
    color : str
        One of ``"white"``, ``"pink"``, ``"brown"``.
    rng : numpy.random.Generator
        Random source.
    fs : int
        Sampling rate (Hz), only used for ``f_min``.
    f_min : float
        Frequency (Hz) below which the spectral slope is flattened.

    Returns
    -------
    numpy.ndarray
        ``n`` samples, float64, RMS 1.0.

    Example
    -------
    >>> x = colored_noise(16000, "pink", np.random.default_rng(0))
    >>> x.shape, round(rms(x), 6)
    ((16000,), 1.0)
    """
    if color not in NOISE_COLORS:
        raise ValueError(
            f"unknown noise colour {color!r}; use one of {list(NOISE_COLORS)}"
        )
    exponent = NOISE_COLORS[color]
    white = rng.standard_normal(n)
    if exponent == 0.0:
        y = white
    else:
        spec = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(n, d=1.0 / fs)
        gain = np.maximum(freqs, f_min) ** (-exponent / 2.0)
        gain[0] = 0.0
        y = np.fft.irfft(spec * gain, n=n)
    return y / max(rms(y), _EPS)


def spectral_slope(
    x: np.ndarray, fs: int = 16000, f_lo: float = 50.0, f_hi: float = 5000.0
) -> float:
    """Slope of the log-log power spectral density between two frequencies.

    Fits ``log10(PSD) = a * log10(f) + b`` over ``[f_lo, f_hi]`` on a
    Welch estimate. White noise gives about 0, pink about -1, brown
    about -2.

    Arguments
    ---------
    x : numpy.ndarray
        Signal.
    fs : int
        Sampling rate (Hz).
    f_lo, f_hi : float
        Fitting band (Hz).

    Returns
    -------
    float
        The fitted slope ``a``.

    Example
    -------
    >>> x = colored_noise(64000, "brown", np.random.default_rng(1))
    >>> abs(spectral_slope(x) + 2.0) < 0.3
    True
    """
    f, p = signal.welch(x, fs=fs, nperseg=4096)
    sel = (f >= f_lo) & (f <= f_hi)
    slope, _ = np.polyfit(np.log10(f[sel]), np.log10(p[sel] + _EPS), 1)
    return float(slope)


def fit_length(
    x: np.ndarray, length: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Cut (at a random offset) or loop a signal to an exact length.

    Arguments
    ---------
    x : numpy.ndarray
        Source signal (e.g. a noise recording), non-empty.
    length : int
        Wanted number of samples.
    rng : numpy.random.Generator, optional
        Draws the offset; offset 0 when omitted.

    Returns
    -------
    numpy.ndarray
        ``length`` samples taken from ``x`` (looped if ``x`` is shorter).

    Example
    -------
    >>> fit_length(np.arange(3.0), 7).tolist()
    [0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0]
    >>> len(fit_length(np.arange(10.0), 4, np.random.default_rng(0)))
    4
    """
    if x.size == 0:
        raise ValueError("cannot fit an empty signal")
    if x.size < length:
        reps = int(math.ceil(length / x.size)) + 1
        x = np.tile(x, reps)
    start = 0 if rng is None else int(rng.integers(0, x.size - length + 1))
    return x[start : start + length]


def mix_at_snr(
    speech: np.ndarray, noise: np.ndarray, snr_db: float
) -> tuple[np.ndarray, np.ndarray]:
    """Add noise to speech at a given signal-to-noise ratio.

    The SNR is ``10 log10(P_speech / P_noise)`` with powers averaged over
    the WHOLE signals (the speech is taken as given, e.g. reverberant).
    Only the noise is scaled.

    Arguments
    ---------
    speech : numpy.ndarray
        Speech, possibly reverberant.
    noise : numpy.ndarray
        Noise of the same length.
    snr_db : float
        Wanted SNR in dB.

    Returns
    -------
    mixture : numpy.ndarray
        ``speech + scaled_noise``.
    scaled_noise : numpy.ndarray
        The noise as it appears in the mixture.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> s, n = rng.standard_normal(8000), rng.standard_normal(8000) * 5
    >>> mix, n2 = mix_at_snr(s, n, 5.0)
    >>> round(float(10 * np.log10(np.mean(s**2) / np.mean(n2**2))), 6)
    5.0
    >>> bool(np.allclose(mix, s + n2))
    True
    """
    if speech.shape != noise.shape:
        raise ValueError(
            f"speech {speech.shape} and noise {noise.shape} differ in shape"
        )
    p_s = float(np.mean(np.square(speech, dtype=np.float64)))
    p_n = float(np.mean(np.square(noise, dtype=np.float64)))
    if p_n <= 0:
        raise ValueError("noise is silent")
    gain = math.sqrt(p_s / (p_n * 10.0 ** (snr_db / 10.0)))
    scaled = noise * gain
    return speech + scaled, scaled


def make_babble(
    utterances: Sequence[np.ndarray],
    length: int,
    rng: np.random.Generator,
    n_talkers: tuple[int, int] = (8, 12),
    fs: int = 16000,
    pause_s: tuple[float, float] = (0.1, 0.6),
    talker_jitter_db: float = 2.0,
) -> np.ndarray:
    """Multi-talker babble from a pool of (level-normalised) utterances.

    Each talker is a stream of random utterances from ``utterances``
    separated by short random pauses, started at a random offset; talker
    levels vary by a few dB. The talkers are summed and the result is
    scaled to unit RMS.

    Arguments
    ---------
    utterances : sequence of numpy.ndarray
        Speech pool (voices and sentences other than the targets').
    length : int
        Output length in samples.
    rng : numpy.random.Generator
        Random source.
    n_talkers : (int, int)
        Inclusive range of the number of simultaneous talkers.
    fs : int
        Sampling rate (Hz).
    pause_s : (float, float)
        Range of pauses between a talker's utterances (s).
    talker_jitter_db : float
        Talker levels are drawn uniformly in +/- this many dB.

    Returns
    -------
    numpy.ndarray
        ``length`` samples at unit RMS.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> pool = [rng.standard_normal(4000) for _ in range(3)]
    >>> b = make_babble(pool, 16000, rng)
    >>> b.shape, round(rms(b), 6)
    ((16000,), 1.0)
    """
    if not utterances:
        raise ValueError("babble needs at least one utterance")
    k = int(rng.integers(n_talkers[0], n_talkers[1] + 1))
    out = np.zeros(length)
    for _ in range(k):
        parts: list[np.ndarray] = []
        total = 0
        need = length + int(rng.integers(0, fs * 2))
        while total < need:
            utt = utterances[int(rng.integers(0, len(utterances)))]
            utt = utt / max(rms(utt), _EPS)
            pause = np.zeros(int(rng.uniform(*pause_s) * fs))
            parts += [utt, pause]
            total += utt.size + pause.size
        stream = np.concatenate(parts)
        start = int(rng.integers(0, stream.size - length + 1))
        gain = 10.0 ** (rng.uniform(-talker_jitter_db, talker_jitter_db) / 20)
        out += gain * stream[start : start + length]
    return out / max(rms(out), _EPS)


def resample(x: np.ndarray, fs_in: float, fs_out: int) -> np.ndarray:
    """Polyphase resampling between (possibly non-integer) rates.

    The ratio is approximated by a fraction with denominator at most 1000
    (exact for 22050 -> 16000 or 48000 -> 16000). Treating a signal as if
    it were sampled at ``fs * 2**(cents/1200)`` and resampling it to
    ``fs`` shifts its pitch and formants up by ``cents`` (and shortens it
    by the same factor).

    Arguments
    ---------
    x : numpy.ndarray
        Signal.
    fs_in : float
        Input rate (Hz).
    fs_out : int
        Output rate (Hz).

    Returns
    -------
    numpy.ndarray
        Resampled signal (float64).

    Example
    -------
    >>> y = resample(np.zeros(22050), 22050, 16000)
    >>> y.shape
    (16000,)
    """
    ratio = Fraction(fs_out / fs_in).limit_denominator(1000)
    x = np.asarray(x, dtype=np.float64)
    if ratio == 1:
        return x.copy()
    return signal.resample_poly(x, ratio.numerator, ratio.denominator)


def trim_silence(
    x: np.ndarray,
    fs: int = 16000,
    threshold_db: float = -40.0,
    margin_s: float = 0.15,
    frame_s: float = 0.01,
) -> np.ndarray:
    """Remove leading and trailing silence, keeping a fixed margin.

    A frame is "active" when its RMS is within ``threshold_db`` of the
    loudest frame. Everything before the first and after the last active
    frame, minus ``margin_s``, is cut.

    Arguments
    ---------
    x : numpy.ndarray
        Signal.
    fs : int
        Sampling rate (Hz).
    threshold_db : float
        Activity threshold relative to the loudest frame (dB).
    margin_s : float
        Silence kept on each side (s).
    frame_s : float
        Frame length (s).

    Returns
    -------
    numpy.ndarray
        Trimmed view of ``x`` (``x`` itself if it is all silent).

    Example
    -------
    >>> x = np.concatenate([np.zeros(16000), np.ones(1600), np.zeros(8000)])
    >>> len(trim_silence(x, 16000, margin_s=0.1))
    4800
    """
    hop = max(1, int(frame_s * fs))
    n_frames = x.size // hop
    if n_frames == 0:
        return x
    frames = x[: n_frames * hop].reshape(n_frames, hop)
    energy = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    peak = energy.max()
    if peak <= 0:
        return x
    active = np.nonzero(energy >= peak * 10.0 ** (threshold_db / 20.0))[0]
    margin = int(margin_s * fs)
    start = max(0, active[0] * hop - margin)
    stop = min(x.size, (active[-1] + 1) * hop + margin)
    return x[start:stop]


def measure_rt60(h: np.ndarray, fs: int = 16000) -> float:
    """Reverberation time of an impulse response (Schroeder, T20 x 3).

    The energy decay curve is the backward integral of ``h**2``; a line is
    fitted to it between -5 and -25 dB and extrapolated to -60 dB.

    Arguments
    ---------
    h : numpy.ndarray
        Impulse response.
    fs : int
        Sampling rate (Hz).

    Returns
    -------
    float
        RT60 in seconds (``nan`` if the decay never reaches -25 dB).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> t = np.arange(16000) / 16000
    >>> h = rng.standard_normal(t.size) * 10 ** (-3 * t / 0.5)
    >>> abs(measure_rt60(h) - 0.5) < 0.05
    True
    """
    e = np.cumsum(np.square(h[::-1], dtype=np.float64))[::-1]
    if e[0] <= 0:
        return math.nan
    edc = 10.0 * np.log10(e / e[0] + _EPS)
    i5 = int(np.argmax(edc <= -5.0))
    i25 = int(np.argmax(edc <= -25.0))
    if edc[-1] > -25.0 or i25 <= i5 + 1:
        return math.nan
    t = np.arange(i5, i25) / fs
    slope, _ = np.polyfit(t, edc[i5:i25], 1)
    return float(-60.0 / slope) if slope < 0 else math.nan


def align_rir(h: np.ndarray, direct_index: int, search: int = 4) -> np.ndarray:
    """Shift an RIR so its direct path is at sample 0 with unit gain.

    Arguments
    ---------
    h : numpy.ndarray
        Impulse response.
    direct_index : int
        Expected (rounded) sample of the direct-path arrival.
    search : int
        The direct-path peak is the largest magnitude within
        ``direct_index +/- search``.

    Returns
    -------
    numpy.ndarray
        ``h`` from the direct-path peak on, divided by that peak's value.

    Example
    -------
    >>> align_rir(np.array([0.0, 0.0, 0.5, 0.25, -0.1]), 2).tolist()
    [1.0, 0.5, -0.2]
    """
    lo = max(0, direct_index - search)
    hi = min(h.size, direct_index + search + 1)
    peak = lo + int(np.argmax(np.abs(h[lo:hi])))
    return h[peak:] / h[peak]


def truncate_rir(h: np.ndarray, floor_db: float = -60.0) -> np.ndarray:
    """Drop the tail of an RIR once its energy decay passes ``floor_db``.

    Arguments
    ---------
    h : numpy.ndarray
        Impulse response.
    floor_db : float
        Level of the energy decay curve (dB re total) where it is cut.

    Returns
    -------
    numpy.ndarray
        Leading part of ``h``.

    Example
    -------
    >>> h = 0.5 ** np.arange(100)
    >>> len(truncate_rir(h, -30.0)) < 100
    True
    """
    e = np.cumsum(np.square(h[::-1], dtype=np.float64))[::-1]
    if e[0] <= 0:
        return h
    below = np.nonzero(e / e[0] < 10.0 ** (floor_db / 10.0))[0]
    return h[: below[0]] if below.size else h


def reverberate(x: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Convolve a dry signal with an (aligned) RIR, keeping its length.

    Arguments
    ---------
    x : numpy.ndarray
        Dry signal.
    h : numpy.ndarray
        Impulse response, direct path at sample 0 (see :func:`align_rir`).

    Returns
    -------
    numpy.ndarray
        ``(x * h)[:len(x)]``: the reverberant signal, time-aligned with
        ``x`` (the tail past the end of ``x`` is cut).

    Example
    -------
    >>> reverberate(np.array([1.0, 0.0, 0.0]), np.array([1.0, 0.5])).tolist()
    [1.0, 0.5, 0.0]
    """
    return signal.fftconvolve(x, h)[: x.size]


def simulate_room(
    rng: np.random.Generator,
    n_sources: int = 3,
    rt60_range: tuple[float, float] = (0.2, 0.8),
    fs: int = 16000,
    min_dist: float = 0.75,
    max_dist: float = 3.0,
    max_iter: int = 4,
    tolerance: float = 0.1,
) -> dict:
    """Simulate one shoebox room with a microphone and several sources.

    The room size, microphone and source positions and a target RT60
    (uniform in ``rt60_range``) are drawn from ``rng``. Image-source RIRs
    come from :mod:`pyroomacoustics` (``ShoeBox`` with absorption and
    reflection order from ``inverse_sabine``). Because image-source rooms
    decay more slowly than Sabine's formula predicts, the design RT60 is
    corrected iteratively until the RT60 *measured* on the RIRs
    (:func:`measure_rt60`, averaged over sources) is within ``tolerance``
    (relative) of the target, or ``max_iter`` tries are spent.

    Arguments
    ---------
    rng : numpy.random.Generator
        Random source.
    n_sources : int
        Number of source positions.
    rt60_range : (float, float)
        Range of the target RT60 (s).
    fs : int
        Sampling rate (Hz).
    min_dist, max_dist : float
        Range of source-microphone distances (m).
    max_iter : int
        Maximum number of simulations.
    tolerance : float
        Accepted relative deviation of measured from target RT60.

    Returns
    -------
    dict
        ``rirs`` (list of aligned, truncated float32 RIRs, direct path at
        sample 0 with unit gain), ``rt60`` (measured, s),
        ``rt60_target`` (s), ``dims`` (m), ``distances`` (m).

    Example
    -------
    >>> room = simulate_room(np.random.default_rng(0), n_sources=1,
    ...                      rt60_range=(0.2, 0.25))
    >>> float(room["rirs"][0][0]), 0.15 < room["rt60"] < 0.3
    (1.0, True)
    """
    import pyroomacoustics as pra

    # one thread: a multi-threaded RIR build sums in varying order, which
    # breaks bit-exact reproducibility (processes give the parallelism)
    pra.constants.set("num_threads", 1)
    dims = np.array(
        [rng.uniform(4.0, 10.0), rng.uniform(3.0, 8.0), rng.uniform(2.5, 4.0)]
    )
    margin = 0.5
    mic = np.array(
        [
            rng.uniform(margin, dims[0] - margin),
            rng.uniform(margin, dims[1] - margin),
            rng.uniform(0.8, 1.6),
        ]
    )
    sources = []
    while len(sources) < n_sources:
        src = np.array(
            [
                rng.uniform(margin, dims[0] - margin),
                rng.uniform(margin, dims[1] - margin),
                rng.uniform(1.2, 1.9),
            ]
        )
        d = float(np.linalg.norm(src - mic))
        if min_dist <= d <= max_dist:
            sources.append(src)
    target = float(rng.uniform(*rt60_range))
    c = pra.constants.get("c")
    fdl = pra.constants.get("frac_delay_length")
    # shortest RT60 Sabine's formula allows in this room (absorption 1)
    volume = float(np.prod(dims))
    surface = 2.0 * float(dims[0] * dims[1] + dims[0] * dims[2])
    surface += 2.0 * float(dims[1] * dims[2])
    rt60_min = 24.0 * math.log(10.0) * volume / (c * surface)
    design = target / 1.5
    best = None
    for _ in range(max_iter):
        design = max(design, 1.05 * rt60_min)
        e_abs, max_order = pra.inverse_sabine(design, dims)
        room = pra.ShoeBox(
            dims, fs=fs, materials=pra.Material(e_abs), max_order=max_order
        )
        room.add_microphone(mic)
        for src in sources:
            room.add_source(src)
        room.compute_rir()
        rirs = []
        for j, src in enumerate(sources):
            h = np.asarray(room.rir[0][j], dtype=np.float64)
            delay = float(np.linalg.norm(src - mic)) / c * fs + fdl // 2
            rirs.append(truncate_rir(align_rir(h, int(round(delay)))))
        measured = float(np.nanmean([measure_rt60(h, fs) for h in rirs]))
        err = abs(measured - target) / target
        if best is None or err < best[0]:
            best = (err, measured, rirs)
        if err <= tolerance or not math.isfinite(measured):
            break
        design *= target / measured
    _, measured, rirs = best
    return {
        "rirs": [h.astype(np.float32) for h in rirs],
        "rt60": measured,
        "rt60_target": target,
        "dims": dims.tolist(),
        "distances": [float(np.linalg.norm(s - mic)) for s in sources],
    }
