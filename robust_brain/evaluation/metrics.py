"""Recognition and signal metrics.

* :func:`word_errors` / :func:`wer`: word error counts and rate after
  Whisper's English normaliser (applied to both sides), via jiwer.
* :func:`cp_word_errors` / :func:`cpwer`: concatenated minimum-permutation
  WER for multi-speaker output (the speaker-to-stream assignment that
  minimises the total errors), computed here by exhaustive permutation.
* :func:`si_sdr`, :func:`stoi`, :func:`pesq_wb`: scale-invariant SDR (dB),
  short-time objective intelligibility (pystoi) and wide-band PESQ (pesq), all
  at 16 kHz, on 1-D float arrays.
* :func:`level_db`, :func:`lag_ms`, :func:`high_band_db`: what a front-end
  did to the level, timing and bandwidth of speech (diagnostics of why a
  recogniser likes or dislikes it).

Corpus-level rates are POOLED: total errors over total reference words.
"""

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import jiwer
import numpy as np

from robust_brain.evaluation.normalise import normalise

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class WordErrors:
    """Word error counts of one or more utterances.

    Example
    -------
    >>> e = WordErrors(1, 0, 2, 10) + WordErrors(0, 1, 0, 5)
    >>> e.errors, e.n_ref, round(e.rate, 4)
    (4, 15, 0.2667)
    """

    substitutions: int
    deletions: int
    insertions: int
    n_ref: int

    @property
    def errors(self) -> int:
        """Substitutions + deletions + insertions."""
        return self.substitutions + self.deletions + self.insertions

    @property
    def rate(self) -> float:
        """errors / reference words (``inf`` if nothing was said but
        something was recognised, 0 if both are empty)."""
        if self.n_ref == 0:
            return math.inf if self.errors else 0.0
        return self.errors / self.n_ref

    def __add__(self, other: "WordErrors") -> "WordErrors":
        return WordErrors(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.n_ref + other.n_ref,
        )


def _raw_word_errors(ref: str, hyp: str) -> WordErrors:
    """Errors between two ALREADY normalised strings."""
    if not ref:
        return WordErrors(0, 0, len(hyp.split()), 0)
    if not hyp:
        n = len(ref.split())
        return WordErrors(0, n, 0, n)
    out = jiwer.process_words(ref, hyp)
    return WordErrors(
        out.substitutions,
        out.deletions,
        out.insertions,
        out.substitutions + out.deletions + out.hits,
    )


def word_errors(ref: str, hyp: str, normalised: bool = False) -> WordErrors:
    """Word errors of one hypothesis against one reference.

    Arguments
    ---------
    ref, hyp : str
        Reference and recognised text.
    normalised : bool
        True if both strings went through :func:`normalise` already.

    Returns
    -------
    WordErrors

    Example
    -------
    >>> word_errors("Mr. Smith has two dogs.", "mister smith has 2 dog")
    WordErrors(substitutions=1, deletions=0, insertions=0, n_ref=5)
    """
    if not normalised:
        ref, hyp = normalise(ref), normalise(hyp)
    return _raw_word_errors(ref, hyp)


def wer(refs: Sequence[str], hyps: Sequence[str]) -> float:
    """Pooled word error rate (a fraction, not %) over a list of utterances.

    Arguments
    ---------
    refs, hyps : sequences of str
        Aligned references and hypotheses (raw text; both are normalised).

    Returns
    -------
    float
        Total errors / total reference words.

    Example
    -------
    >>> wer(["the cat sat", "on the mat"], ["the cat sat", "on a mat"])
    0.16666666666666666
    >>> wer(["Hello, world!"], ["hello world"])
    0.0
    """
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    total = WordErrors(0, 0, 0, 0)
    for r, h in zip(refs, hyps, strict=True):
        total = total + word_errors(r, h)
    return total.rate


def cp_word_errors(
    refs: Sequence[str], hyps: Sequence[str], normalised: bool = False
) -> tuple[WordErrors, tuple[int | None, ...]]:
    """Concatenated minimum-permutation word errors of one recording.

    Each reference speaker is matched with one hypothesis stream so that the
    summed errors are minimal; a speaker left without a stream counts as all
    deletions, a stream left without a speaker as all insertions.

    Arguments
    ---------
    refs : sequence of str
        One transcript per reference speaker.
    hyps : sequence of str
        One transcript per output stream (any number).
    normalised : bool
        True if all strings were normalised already.

    Returns
    -------
    WordErrors
        Errors under the best assignment.
    tuple
        ``assignment[i]`` = index of the stream given to speaker ``i``
        (``None`` if none).

    Example
    -------
    >>> e, a = cp_word_errors(["a b c", "d e f g"], ["d e f", "a b c x"])
    >>> e.errors, e.n_ref, a
    (2, 7, (1, 0))
    """
    if not normalised:
        refs = [normalise(r) for r in refs]
        hyps = [normalise(h) for h in hyps]
    n_ref, n_hyp = len(refs), len(hyps)
    n = max(n_ref, n_hyp)
    refs = list(refs) + [""] * (n - n_ref)
    hyps = list(hyps) + [""] * (n - n_hyp)
    cost = [[_raw_word_errors(r, h) for h in hyps] for r in refs]
    best, best_perm = None, None
    for perm in itertools.permutations(range(n)):
        total = WordErrors(0, 0, 0, 0)
        for i, j in enumerate(perm):
            total = total + cost[i][j]
        if best is None or total.errors < best.errors:
            best, best_perm = total, perm
    assignment = tuple(j if j < n_hyp else None for j in best_perm[:n_ref])
    return best, assignment


def cpwer(refs: Sequence[Sequence[str]], hyps: Sequence[Sequence[str]]):
    """Pooled cpWER (fraction) over recordings.

    Arguments
    ---------
    refs : sequence of sequences of str
        Per recording, one transcript per speaker.
    hyps : sequence of sequences of str
        Per recording, one transcript per output stream.

    Returns
    -------
    float
        Total errors under each recording's best assignment / total
        reference words.

    Example
    -------
    >>> cpwer([["one two", "three four"]], [["three four", "one two"]])
    0.0
    """
    total = WordErrors(0, 0, 0, 0)
    for r, h in zip(refs, hyps, strict=True):
        total = total + cp_word_errors(r, h)[0]
    return total.rate


def _as_pair(ref, est):
    ref = np.asarray(ref, dtype=np.float64).reshape(-1)
    est = np.asarray(est, dtype=np.float64).reshape(-1)
    n = min(len(ref), len(est))
    return ref[:n], est[:n]


def si_sdr(ref, est, eps: float = 1e-12) -> float:
    """Scale-invariant signal-to-distortion ratio in dB.

    Both signals are made zero-mean; the reference is scaled by the
    least-squares gain onto the estimate. The longer signal is truncated.

    Arguments
    ---------
    ref, est : array-like, 1-D
        Reference and estimate.
    eps : float
        Guards the divisions and logarithm.

    Returns
    -------
    float
        SI-SDR (dB); about 10*log10(1/eps) for an exact scaled copy.

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> s = np.sin(2 * np.pi * 200 * t)
    >>> n = 0.1 * np.sin(2 * np.pi * 310 * t)
    >>> round(si_sdr(s, s + n), 3)
    20.0
    >>> si_sdr(s, 0.3 * s) > 100
    True
    """
    ref, est = _as_pair(ref, est)
    ref = ref - ref.mean()
    est = est - est.mean()
    alpha = np.dot(est, ref) / (np.dot(ref, ref) + eps)
    target = alpha * ref
    noise = est - target
    return float(
        10
        * np.log10(
            (np.dot(target, target) + eps) / (np.dot(noise, noise) + eps)
        )
    )


def stoi(ref, est, sample_rate: int = SAMPLE_RATE, extended: bool = False):
    """Short-time objective intelligibility (pystoi), about 0..1.

    Arguments
    ---------
    ref, est : array-like, 1-D
        Clean reference and processed signal.
    sample_rate : int
        Sampling rate of both (pystoi resamples to 10 kHz itself).
    extended : bool
        ESTOI instead of STOI.

    Returns
    -------
    float
    """
    from pystoi import stoi as _stoi

    ref, est = _as_pair(ref, est)
    return float(_stoi(ref, est, sample_rate, extended=extended))


def pesq_wb(ref, est, sample_rate: int = SAMPLE_RATE) -> float:
    """Wide-band PESQ (ITU-T P.862.2 MOS-LQO, about 1.04..4.64).

    Arguments
    ---------
    ref, est : array-like, 1-D
        Clean reference and processed signal, 16 kHz.
    sample_rate : int
        Must be 16000 (wide-band mode).

    Returns
    -------
    float
        MOS-LQO, or ``nan`` when PESQ finds no utterance in the reference.
    """
    from pesq import NoUtterancesError, pesq

    if sample_rate != 16000:
        raise ValueError("wide-band PESQ needs 16 kHz audio")
    ref, est = _as_pair(ref, est)
    try:
        return float(pesq(sample_rate, ref, est, "wb"))
    except NoUtterancesError:
        return math.nan


#: Signal metrics by name: f(ref, est) -> float.
def level_db(ref, est) -> float:
    """Level of ``est`` relative to ``ref`` (RMS, dB): what a front-end
    did to the loudness a recogniser hears.

    Example
    -------
    >>> x = np.sin(np.arange(8000) / 5.0)
    >>> round(level_db(x, 0.5 * x), 2)
    -6.02
    """
    ref, est = _as_pair(ref, est)
    power = np.mean(est**2) + 1e-20
    return float(10 * np.log10(power / (np.mean(ref**2) + 1e-20)))


def lag_ms(ref, est, sample_rate: int = SAMPLE_RATE, max_ms=100.0) -> float:
    """Delay of ``est`` behind ``ref`` (ms; the cross-correlation peak
    within ``max_ms``): a front-end's latency shifts the words.

    Example
    -------
    >>> x = np.random.default_rng(0).standard_normal(8000)
    >>> lag_ms(x, np.concatenate([np.zeros(160), x[:-160]]))
    10.0
    """
    ref, est = _as_pair(ref, est)
    n = len(ref)
    spec = np.fft.rfft(est, 2 * n) * np.conj(np.fft.rfft(ref, 2 * n))
    corr = np.fft.irfft(spec, 2 * n)
    reach = int(max_ms * sample_rate / 1000)
    lags = np.r_[np.arange(0, reach + 1), np.arange(-reach, 0)]
    best = lags[np.argmax(np.abs(corr[lags]))]
    return float(1000 * best / sample_rate)


def high_band_db(ref, est, sample_rate: int = SAMPLE_RATE, cut_hz=4000.0):
    """Energy above ``cut_hz`` of ``est`` relative to ``ref`` (dB): lost
    bandwidth (negative) or added high-frequency artefacts (positive).

    Example
    -------
    >>> t = np.arange(16000) / 16000
    >>> ref = np.sin(2 * np.pi * 500 * t) + np.sin(2 * np.pi * 6000 * t)
    >>> round(high_band_db(ref, np.sin(2 * np.pi * 500 * t)), 0) < -100
    True
    """
    ref, est = _as_pair(ref, est)
    freqs = np.fft.rfftfreq(len(ref), 1 / sample_rate)
    band = freqs >= cut_hz

    def energy(x):
        return np.sum(np.abs(np.fft.rfft(x))[band] ** 2) + 1e-20

    return float(10 * np.log10(energy(est) / energy(ref)))


SIGNAL_METRICS = {
    "si_sdr": si_sdr,
    "stoi": stoi,
    "pesq": pesq_wb,
    "level_db": level_db,
    "lag_ms": lag_ms,
    "high_band_db": high_band_db,
}


def best_source_assignment(
    refs: Sequence[np.ndarray], ests: Sequence[np.ndarray]
) -> tuple[int | None, ...]:
    """Assign output streams to reference sources by maximal mean SI-SDR.

    Arguments
    ---------
    refs : sequence of 1-D arrays
        Reference sources.
    ests : sequence of 1-D arrays
        Estimated streams (any number).

    Returns
    -------
    tuple
        ``assignment[i]`` = stream index for source ``i`` (``None`` if there
        are fewer streams than sources).

    Example
    -------
    >>> t = np.arange(8000) / 16000
    >>> a, b = np.sin(2 * np.pi * 300 * t), np.sin(2 * np.pi * 710 * t)
    >>> best_source_assignment([a, b], [b + 0.01 * a, a])
    (1, 0)
    """
    n = max(len(refs), len(ests))
    scores = [
        [si_sdr(r, e) if j < len(ests) else -1e9 for j, e in enumerate(ests)]
        + [-1e9] * (n - len(ests))
        for r in refs
    ]
    best, best_perm = None, None
    for perm in itertools.permutations(range(n), len(refs)):
        total = sum(scores[i][j] for i, j in enumerate(perm))
        if best is None or total > best:
            best, best_perm = total, perm
    return tuple(j if j < len(ests) else None for j in best_perm)
