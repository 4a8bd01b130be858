"""Online speech distortions for distortion-robust distillation.

The operations of RobustDistiller and of Cross-Distortion Mapping
(docs/methods.md: RobustDistiller corruption, Cross-Distortion Mapping),
applied to ONE utterance with a numpy generator that the caller seeds
per utterance (see
:func:`robust_brain.data.streams.item_rng`): the same ``(seed, epoch,
utterance)`` gives the same distortion in any DataLoader worker, process
or DDP rank.

Operations (names used in hparams):

============  =========  ==================================================
name          kind       what
============  =========  ==================================================
``noise``     additive   a random noise file (random crop, tiled when
                         short) at a random SNR
``gaussian``  additive   white Gaussian noise at a random SNR
``babble``    additive   the sum of a few other utterances at a random SNR
``reverb``    other      a random RIR file (SpeechBrain's ``reverberate``:
                         direct path kept in place, level kept)
``simreverb`` other      a simulated RIR: exponentially decaying noise with
                         a random RT60 (no file needed)
``bandreject`` other     SpeechBrain's ``DropFreq`` (a notch band)
``pitch``     other      pitch shift in cents, duration kept (phase
                         vocoder + resampling, torchaudio)
============  =========  ==================================================

:class:`Distorter` draws, per utterance, a CHAIN of operations by mode:

* ``none``: always clean;
* ``single``: one chain out of ``single`` (a chain is ``op`` or
  ``op+op``, e.g. ``noise+reverb``) with probabilities ``single_probs``
  (the remainder is clean); RobustDistiller is ``single`` with
  ``[noise, reverb, noise+reverb]`` at 0.25 each;
* ``double``: one additive type uniformly from ``additive`` THEN one
  other type uniformly from ``nonadditive`` (``none`` allowed in both
  lists), the default of CDM (docs/methods.md, Cross-Distortion Mapping).

Additive noise is applied first, so it is also reverberated / shifted
(as in both official codes).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
import torchaudio.functional as AF
from speechbrain.dataio.dataio import read_audio

__all__ = [
    "ADDITIVE",
    "NONADDITIVE",
    "MODES",
    "Distorter",
    "DistortedSpeech",
    "add_at_snr",
    "chain_name",
    "exponential_rir",
    "pitch_shift",
]

ADDITIVE = ("noise", "gaussian", "babble")
NONADDITIVE = ("reverb", "simreverb", "bandreject", "pitch")
MODES = ("none", "single", "double")


def add_at_snr(speech: torch.Tensor, noise: torch.Tensor, snr_db: float):
    """Add ``noise`` to ``speech`` at ``snr_db`` (powers of the two).

    Arguments
    ---------
    speech, noise : torch.Tensor
        1-D signals of the same length.
    snr_db : float

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> s = torch.sin(torch.arange(1000) / 3.0)
    >>> n = torch.randn(1000)
    >>> y = add_at_snr(s, n, 5.0)
    >>> round(float(10 * torch.log10(s.pow(2).sum() / (y - s).pow(2).sum())), 3)
    5.0
    """
    if float(noise.pow(2).sum()) <= 0.0:
        return speech.clone()
    return AF.add_noise(
        speech.unsqueeze(0), noise.unsqueeze(0), torch.tensor([float(snr_db)])
    ).squeeze(0)


def exponential_rir(
    rt60: float, rng: np.random.Generator, sample_rate: int = 16000
):
    """A simulated room impulse response: Gaussian noise decaying by 60 dB
    in ``rt60`` seconds, with a unit direct path at sample 0.

    Arguments
    ---------
    rt60 : float
        Reverberation time (s).
    rng : numpy.random.Generator
    sample_rate : int

    Returns
    -------
    torch.Tensor
        1-D, ``rt60 * sample_rate`` samples.

    Example
    -------
    >>> h = exponential_rir(0.3, np.random.default_rng(0))
    >>> h.shape, float(h[0]), int(h.abs().argmax())
    (torch.Size([4800]), 1.0, 0)
    """
    n = max(int(rt60 * sample_rate), 2)
    t = np.arange(n) / sample_rate
    h = rng.standard_normal(n) * np.exp(-6.9078 * t / rt60) * 0.1
    h[0] = 1.0
    return torch.from_numpy(h).float()


def pitch_shift(
    x: torch.Tensor,
    cents: float,
    sample_rate: int = 16000,
    quantum_hz: int = 200,
    n_fft: int = 512,
):
    """Shift the pitch by ``cents`` and keep the duration.

    Phase-vocoder time stretch, then resampling from a rate rounded to a
    multiple of ``quantum_hz`` (a small resampling kernel; the shift is
    rounded to about 20 cents at 16 kHz). The output has the input length.

    Arguments
    ---------
    x : torch.Tensor
        1-D signal.
    cents : float
        Shift (100 cents = a semitone).
    sample_rate : int
    quantum_hz : int
        Rounding of the intermediate rate.
    n_fft : int
        STFT size of the phase vocoder.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> t = torch.arange(16000) / 16000
    >>> y = pitch_shift(torch.sin(2 * math.pi * 400 * t), 1200)  # +1 octave
    >>> y.shape
    torch.Size([16000])
    >>> int(torch.fft.rfft(y).abs().argmax())  # 800 Hz bin (1 Hz bins)
    800
    """
    n = x.numel()
    orig = int(round(sample_rate * 2.0 ** (cents / 1200.0) / quantum_hz))
    orig = max(orig, 1) * quantum_hz
    if orig == sample_rate or n < n_fft:
        return x.clone()
    factor = orig / sample_rate  # the pitch factor actually applied
    hop = n_fft // 4
    window = torch.hann_window(n_fft, device=x.device)
    spec = torch.stft(
        x, n_fft, hop, window=window, return_complex=True, center=True
    )
    advance = torch.linspace(0, math.pi * hop, spec.shape[-2], device=x.device)
    stretched = AF.phase_vocoder(spec, 1.0 / factor, advance[..., None])
    y = torch.istft(
        stretched, n_fft, hop, window=window, length=int(round(n * factor))
    )
    y = AF.resample(y, orig, sample_rate)
    if y.numel() < n:
        y = torch.nn.functional.pad(y, (0, n - y.numel()))
    return y[:n]


def _crop_or_tile(x: torch.Tensor, n: int, rng: np.random.Generator):
    if x.numel() == 0:
        return torch.zeros(n)
    if x.numel() < n:
        x = x.repeat(math.ceil(n / x.numel()) + 1)
    start = int(rng.integers(0, x.numel() - n + 1))
    return x[start : start + n]


def _mono(x: torch.Tensor) -> torch.Tensor:
    return x.mean(-1) if x.dim() > 1 else x


def _parse_chain(chain) -> tuple[str, ...]:
    if chain is None:
        return ()
    if isinstance(chain, str):
        parts = [p.strip() for p in chain.split("+")]
    else:
        parts = [str(p).strip() for p in chain]
    return tuple(p for p in parts if p and p not in ("none", "clean"))


def chain_name(ops: Sequence[str]) -> str:
    """``("noise", "reverb")`` -> ``"noise+reverb"``; ``()`` -> ``"clean"``.

    Arguments
    ---------
    ops : sequence of str

    Returns
    -------
    str

    Example
    -------
    >>> chain_name(("noise", "pitch")), chain_name(())
    ('noise+pitch', 'clean')
    """
    return "+".join(ops) if ops else "clean"


class Distorter:
    """Per-utterance random distortion chains (docs/methods.md), seeded.

    Resources (manifests) are read lazily, on first use, so that a recipe
    can name a manifest that its preparation writes later; :meth:`check`
    reads them all at once (call it after the preparation: a missing file
    then fails early, naming the hparam).

    Arguments
    ---------
    mode : str
        ``none``, ``single`` or ``double``.
    additive, nonadditive : sequence of str
        ``double`` mode: the additive and the other types (``none`` = no
        operation of that kind), each drawn uniformly.
    single : sequence of str
        ``single`` mode: the chains (``op`` or ``op+op``).
    single_probs : sequence of float, optional
        Their probabilities (sum <= 1; the rest is clean); default uniform.
    noise_csv, speech_csv, rir_csv : path-like, optional
        Manifests (``wav`` column) of noise files (``noise``), of speech
        for ``babble`` and of impulse responses (``reverb``).
    noise_root, speech_root, rir_root : path-like, optional
        What ``$data_root`` stands for in each (default: its folder).
    noise_id_filter : sequence of str, optional
        Keep only the noise rows whose ``ID`` contains one of these (e.g.
        ``[white, pink, brown]`` keeps babble noise out of training).
    snr_range : (float, float)
        SNR bounds (dB) of the additive operations.
    babble_talkers : (int, int)
        Bounds of the number of babble talkers.
    rt60_range : (float, float)
        RT60 bounds (s) of ``simreverb``.
    band_range : (float, float)
        ``bandreject``: band centre bounds as a fraction of Nyquist.
    band_width : float
        ``bandreject``: notch width (fraction of Nyquist).
    pitch_range : (float, float)
        ``pitch``: shift bounds in cents.
    peak_limit : float
        The output is scaled down when it would exceed this.
    sample_rate : int

    Example
    -------
    >>> d = Distorter("double", additive=["gaussian", "none"],
    ...               nonadditive=["simreverb", "pitch", "none"])
    >>> d.domain_names  # doctest: +NORMALIZE_WHITESPACE
    ['clean', 'gaussian+simreverb', 'gaussian+pitch', 'gaussian',
     'simreverb', 'pitch']
    >>> x = torch.sin(torch.arange(8000) / 4.0) * 0.05
    >>> y1, ops1 = d(x, np.random.default_rng(3))
    >>> y2, ops2 = d(x, np.random.default_rng(3))
    >>> ops1 == ops2 and torch.equal(y1, y2), y1.shape
    (True, torch.Size([8000]))
    >>> Distorter("double", additive=["nois"])
    Traceback (most recent call last):
    ...
    ValueError: Distorter: unknown additive operation 'nois'; choose among ...
    """

    def __init__(
        self,
        mode: str = "double",
        additive: Sequence[str] = ("noise", "gaussian", "none"),
        nonadditive: Sequence[str] = ("reverb", "bandreject", "pitch", "none"),
        single: Sequence[str] = ("noise",),
        single_probs: Sequence[float] | None = None,
        noise_csv=None,
        speech_csv=None,
        rir_csv=None,
        noise_root=None,
        speech_root=None,
        rir_root=None,
        noise_id_filter: Sequence[str] | None = None,
        snr_range: Sequence[float] = (10.0, 19.0),
        babble_talkers: Sequence[int] = (3, 6),
        rt60_range: Sequence[float] = (0.2, 0.8),
        band_range: Sequence[float] = (0.05, 0.6),
        band_width: float = 0.1,
        pitch_range: Sequence[float] = (-500.0, 499.0),
        peak_limit: float = 0.99,
        sample_rate: int = 16000,
    ):
        mode = str(mode).lower()
        if mode not in MODES:
            raise ValueError(
                f"Distorter: unknown mode {mode!r}; choose among {MODES}"
            )
        self.mode = mode
        self.additive = self._check(additive, ADDITIVE, "additive")
        self.nonadditive = self._check(nonadditive, NONADDITIVE, "nonadditive")
        self.single = [_parse_chain(c) for c in single]
        for chain in self.single:
            self._check(chain, ADDITIVE + NONADDITIVE, "single")
        if single_probs is None:
            single_probs = [1.0 / len(self.single)] * len(self.single)
        self.single_probs = [float(p) for p in single_probs]
        if len(self.single_probs) != len(self.single) or (
            sum(self.single_probs) > 1.0 + 1e-6
            or min(self.single_probs, default=0) < 0
        ):
            raise ValueError(
                "Distorter: single_probs must give one probability >= 0 per "
                f"chain of single, summing to <= 1: {single_probs}"
            )
        self._csv = {
            "noise": (noise_csv, noise_root, "noise_csv"),
            "babble": (speech_csv, speech_root, "speech_csv"),
            "reverb": (rir_csv, rir_root, "rir_csv"),
        }
        self.noise_id_filter = list(noise_id_filter or [])
        self._rows: dict[str, list] = {}
        for op in self.operations:
            if op in self._csv and self._csv[op][0] is None:
                raise ValueError(
                    f"Distorter: operation {op!r} needs "
                    f"{self._csv[op][2]} (a manifest with a wav column)"
                )
        self.snr_range = tuple(float(v) for v in snr_range)
        self.babble_talkers = tuple(int(v) for v in babble_talkers)
        self.rt60_range = tuple(float(v) for v in rt60_range)
        self.band_range = tuple(float(v) for v in band_range)
        self.band_width = float(band_width)
        self.pitch_range = tuple(float(v) for v in pitch_range)
        for name in ("snr_range", "babble_talkers", "rt60_range"):
            lo, hi = getattr(self, name)
            if lo > hi:
                raise ValueError(f"Distorter: {name} must be (low, high)")
        self.peak_limit = float(peak_limit)
        self.sample_rate = int(sample_rate)

    # ------------------------------------------------------------ set-up
    @staticmethod
    def _check(ops, allowed, what):
        ops = [str(o).strip() for o in ops]
        for op in ops:
            if op not in (*allowed, "none", "clean"):
                raise ValueError(
                    f"Distorter: unknown {what} operation {op!r}; choose "
                    f"among {(*allowed, 'none')}"
                )
        return [o if o != "clean" else "none" for o in ops]

    @property
    def operations(self) -> list[str]:
        """The operations this distorter can apply."""
        if self.mode == "none":
            return []
        if self.mode == "double":
            ops = self.additive + self.nonadditive
        else:
            ops = [op for chain in self.single for op in chain]
        return sorted({o for o in ops if o != "none"})

    @property
    def domain_names(self) -> list[str]:
        """Every chain this distorter can draw (``clean`` first): the
        classes of a multi-class domain discriminator."""
        if self.mode == "none":
            return ["clean"]
        if self.mode == "double":
            chains = [
                _parse_chain([a, b])
                for a, b in itertools.product(self.additive, self.nonadditive)
            ]
        else:
            chains = list(self.single)
            if sum(self.single_probs) < 1.0 - 1e-6:
                chains.append(())
        names = [chain_name(c) for c in chains]
        ordered = ["clean"] if "clean" in names else []
        return ordered + [n for n in dict.fromkeys(names) if n != "clean"]

    @property
    def domain_probs(self) -> list[float]:
        """How often :meth:`draw` gives each chain of :attr:`domain_names`
        (the domain prior, e.g. to balance a discriminator's classes).

        Example
        -------
        >>> d = Distorter("double", additive=["gaussian", "none"],
        ...               nonadditive=["pitch", "none"])
        >>> dict(zip(d.domain_names, d.domain_probs))["clean"]
        0.25
        """
        names = self.domain_names
        probs = dict.fromkeys(names, 0.0)
        if self.mode == "none":
            probs["clean"] = 1.0
        elif self.mode == "double":
            p = 1.0 / (len(self.additive) * len(self.nonadditive))
            for a, b in itertools.product(self.additive, self.nonadditive):
                probs[chain_name(_parse_chain([a, b]))] += p
        else:
            for chain, p in zip(self.single, self.single_probs, strict=True):
                probs[chain_name(chain)] += p
            if "clean" in probs:
                probs["clean"] += max(1.0 - sum(self.single_probs), 0.0)
        return [probs[n] for n in names]

    def domain_index(self, ops: Sequence[str]) -> int:
        """Class index of a drawn chain in :attr:`domain_names`.

        Arguments
        ---------
        ops : sequence of str

        Returns
        -------
        int
        """
        return self.domain_names.index(chain_name(tuple(ops)))

    def rows(self, op: str) -> list[dict]:
        """The manifest rows of ``op`` (read once).

        Arguments
        ---------
        op : str
            ``noise``, ``babble`` or ``reverb``.

        Returns
        -------
        list of dict
        """
        if op not in self._rows:
            from robust_brain.data.streams import read_rows

            path, root, key = self._csv[op]
            if not Path(path).is_file():
                raise FileNotFoundError(
                    f"Distorter: {key} {path} does not exist (operation {op!r})"
                )
            rows = read_rows(path, root)
            if op == "noise" and self.noise_id_filter:
                rows = [
                    r
                    for r in rows
                    if any(k in r["ID"] for k in self.noise_id_filter)
                ]
            if not rows:
                raise ValueError(
                    f"Distorter: {key} {path} has no usable row for {op!r}"
                    + (
                        f" (noise_id_filter {self.noise_id_filter})"
                        if op == "noise"
                        else ""
                    )
                )
            self._rows[op] = rows
        return self._rows[op]

    def check(self) -> Distorter:
        """Read every manifest needed now (fails early on a bad path).

        Returns
        -------
        Distorter
            ``self``.
        """
        for op in self.operations:
            if op in self._csv:
                self.rows(op)
        return self

    # ------------------------------------------------------------- draws
    def draw(self, rng: np.random.Generator) -> tuple[str, ...]:
        """Draw one chain of operations.

        Arguments
        ---------
        rng : numpy.random.Generator

        Returns
        -------
        tuple of str
            Empty for clean.
        """
        if self.mode == "none":
            return ()
        if self.mode == "double":
            a = self.additive[int(rng.integers(len(self.additive)))]
            b = self.nonadditive[int(rng.integers(len(self.nonadditive)))]
            return _parse_chain([a, b])
        u = float(rng.random())
        acc = 0.0
        for chain, p in zip(self.single, self.single_probs, strict=True):
            acc += p
            if u < acc:
                return chain
        return ()

    def _read(self, row, n=None, rng=None):
        frames = int(round(float(row.get("duration", 0) or 0) * 16000))
        if n is not None and frames > n + 1:
            start = int(rng.integers(0, frames - n))
            x = _mono(
                read_audio(
                    {"file": row["wav"], "start": start, "stop": start + n}
                )
            )
            if x.numel() >= n:
                return x[:n].float()
        return _mono(read_audio(row["wav"])).float()

    def _additive_noise(self, op, n, rng):
        if op == "gaussian":
            return torch.from_numpy(rng.standard_normal(n)).float()
        if op == "noise":
            rows = self.rows("noise")
            row = rows[int(rng.integers(len(rows)))]
            return _crop_or_tile(self._read(row, n, rng), n, rng)
        rows = self.rows("babble")  # babble
        k = int(
            rng.integers(self.babble_talkers[0], self.babble_talkers[1] + 1)
        )
        total = torch.zeros(n)
        for _ in range(max(k, 1)):
            x = self._read(rows[int(rng.integers(len(rows)))])
            x = _crop_or_tile(x, n, rng)
            total += x / x.pow(2).mean().sqrt().clamp_min(1e-8)
        return total

    def apply_op(self, x: torch.Tensor, op: str, rng: np.random.Generator):
        """Apply one operation.

        Arguments
        ---------
        x : torch.Tensor
            1-D signal.
        op : str
        rng : numpy.random.Generator

        Returns
        -------
        torch.Tensor
            Same length.
        """
        from speechbrain.processing.signal_processing import reverberate

        n = x.numel()
        if op in ADDITIVE:
            snr = float(rng.uniform(*self.snr_range))
            return add_at_snr(x, self._additive_noise(op, n, rng), snr)
        if op in ("reverb", "simreverb"):
            if op == "reverb":
                rows = self.rows("reverb")
                h = read_audio(rows[int(rng.integers(len(rows)))]["wav"])
                h = h[:, 0] if h.dim() > 1 else h
            else:
                h = exponential_rir(
                    float(rng.uniform(*self.rt60_range)), rng, self.sample_rate
                )
            y = reverberate(x.unsqueeze(0), h.float(), rescale_amp="avg")
            return y.squeeze(0)[:n]
        if op == "bandreject":
            from speechbrain.augment.time_domain import DropFreq

            lo, hi = self.band_range
            centre = float(rng.uniform(lo, hi))
            drop = DropFreq(
                drop_freq_low=centre,
                drop_freq_high=centre,
                drop_freq_count_low=1,
                drop_freq_count_high=1,
                drop_freq_width=self.band_width,
            )
            # DropFreq draws from torch's global generator: seed a private
            # copy of it from the item's generator (the global state of
            # the caller is left untouched)
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(rng.integers(2**31)))
                return drop(x.unsqueeze(0)).squeeze(0)[:n]
        if op == "pitch":
            cents = float(rng.uniform(*self.pitch_range))
            return pitch_shift(x, cents, self.sample_rate)
        raise ValueError(f"Distorter: unknown operation {op!r}")

    def __call__(self, x: torch.Tensor, rng: np.random.Generator):
        """Draw a chain and apply it.

        Arguments
        ---------
        x : torch.Tensor
            1-D clean signal.
        rng : numpy.random.Generator
            The utterance's generator.

        Returns
        -------
        distorted : torch.Tensor
            Same length as ``x``.
        ops : tuple of str
            The chain applied (empty: clean).
        """
        ops = self.draw(rng)
        y = x.float()
        for op in ops:
            y = self.apply_op(y, op, rng)
        peak = float(y.abs().max()) if y.numel() else 0.0
        if peak > self.peak_limit:
            y = y * (self.peak_limit / peak)
        return y, ops

    def describe(self) -> Mapping:
        """Settings as a dict (for logs).

        Returns
        -------
        dict
        """
        return {
            "mode": self.mode,
            "additive": self.additive,
            "nonadditive": self.nonadditive,
            "single": [chain_name(c) for c in self.single],
            "single_probs": self.single_probs,
            "snr_range": self.snr_range,
        }


class DistortedSpeech(torch.utils.data.Dataset):
    """Clean utterances with a student view and a teacher view (seeded).

    Item ``i`` holds the clean signal (scaled to ``speech_level_dbfs``,
    optionally randomly cropped to at most ``max_samples``), the student's
    input (``student_distorter``; clean when None), the teacher's input
    and the drawn chains. The teacher view is:

    * clean when ``teacher_distorter`` is None (CDM setup 1,
      RobustDistiller);
    * an INDEPENDENT draw of ``teacher_distorter`` (CDM setup 2: its own
      generator, so in general another chain and other noise);
    * the student's input itself when ``teacher_same_as_student``.

    Every draw comes from ``item_rng(seed, name, epoch, i, view)``: items
    do not depend on the worker or rank that loads them; :meth:`set_epoch`
    selects the epoch's draws.

    Arguments
    ---------
    rows : sequence of dict
        Manifest rows with a ``wav_key`` column.
    student_distorter, teacher_distorter : Distorter, optional
    teacher_same_as_student : bool
    max_samples : int, optional
        Random crop length bound (training); None: whole utterances.
    speech_level_dbfs : float
    seed : int
    name : str
    wav_key : str
    text_key : str
        Copied into the item (as ``wrd``) when present.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sf.write(d / "a.wav", np.sin(np.arange(16000) / 5) / 9, 16000)
    >>> dist = Distorter("single", single=["gaussian"])
    >>> data = DistortedSpeech([{"ID": "a", "wav": str(d / "a.wav")}],
    ...     student_distorter=dist, teacher_distorter=dist, seed=1)
    >>> item = data[0]
    >>> item["student_ops"], item["teacher_ops"]
    ('gaussian', 'gaussian')
    >>> torch.equal(item["student"], item["teacher"])  # independent noise
    False
    >>> torch.equal(data[0]["student"], item["student"])  # reproducible
    True
    """

    def __init__(
        self,
        rows,
        student_distorter: Distorter | None = None,
        teacher_distorter: Distorter | None = None,
        teacher_same_as_student: bool = False,
        max_samples: int | None = None,
        speech_level_dbfs: float = -25.0,
        seed: int = 0,
        name: str = "distill",
        wav_key: str = "wav",
        text_key: str = "wrd",
    ):
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError(f"DistortedSpeech {name!r}: no row")
        if wav_key not in self.rows[0]:
            raise ValueError(
                f"DistortedSpeech {name!r}: rows have no {wav_key!r} column"
            )
        self.student_distorter = student_distorter
        self.teacher_distorter = teacher_distorter
        self.teacher_same_as_student = bool(teacher_same_as_student)
        self.max_samples = int(max_samples) if max_samples else None
        self.speech_level_dbfs = float(speech_level_dbfs)
        self.seed = seed
        self.name = name
        self.wav_key = wav_key
        self.text_key = text_key
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's draws.

        Arguments
        ---------
        epoch : int
        """
        self.epoch = int(epoch)

    def _rng(self, index, view):
        from robust_brain.data.streams import item_rng

        return item_rng(self.seed, self.name, self.epoch, index, view)

    def __getitem__(self, index: int) -> dict:
        from robust_brain.data.streams import scale_to_dbfs

        row = self.rows[index]
        clean = _mono(read_audio(row[self.wav_key])).float()
        if self.max_samples and clean.numel() > self.max_samples:
            rng = self._rng(index, "crop")
            start = int(rng.integers(0, clean.numel() - self.max_samples + 1))
            clean = clean[start : start + self.max_samples]
        clean = scale_to_dbfs(clean, self.speech_level_dbfs)
        student, s_ops = clean, ()
        if self.student_distorter is not None:
            student, s_ops = self.student_distorter(
                clean, self._rng(index, "student")
            )
        if self.teacher_same_as_student:
            teacher, t_ops = student, s_ops
        elif self.teacher_distorter is not None:
            teacher, t_ops = self.teacher_distorter(
                clean, self._rng(index, "teacher")
            )
        else:
            teacher, t_ops = clean, ()
        item = {
            "id": row["ID"],
            "clean": clean,
            "student": student,
            "teacher": teacher,
            "student_ops": chain_name(s_ops),
            "teacher_ops": chain_name(t_ops),
        }
        if self.text_key in row:
            item["wrd"] = row[self.text_key]
        return item

    @staticmethod
    def collate(items) -> object:
        """SpeechBrain ``PaddedBatch`` (relative lengths).

        Arguments
        ---------
        items : sequence of dict

        Returns
        -------
        speechbrain.dataio.batch.PaddedBatch
        """
        from speechbrain.dataio.batch import PaddedBatch

        return PaddedBatch(list(items))
