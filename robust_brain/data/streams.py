"""Speech streams with seeded online corruption, and D4AM's stream pairing.

D4AM trains its enhancer on TWO streams at every step (docs/methods.md,
D4AM set-up): a transcribed stream (noisy/clean utterances + tokens, for the
classification loss through the proxy and half of the regression loss) and
a speech-only stream (noisy/clean segments, for the other half of the
regression loss).

* :class:`NoiseCorruptor` makes a noisy version of a clean signal: clean
  scaled to a fixed level (-25 dBFS), noise from a noise manifest (random
  file, random crop, tiled when short) at an SNR drawn uniformly in a range
  (``torchaudio.functional.add_noise``), optionally reverberation by a
  random room impulse response (``torchaudio.functional.fftconvolve``).
* :class:`SpeechStream` is a map-style dataset over a manifest: online
  corruption of clean rows (optionally a random crop of a random length) or
  pre-mixed noisy/clean pairs, with optional tokens.
* :class:`PairedStreams` pairs item ``i`` of the transcribed stream with an
  item of the speech-only stream; :meth:`PairedStreams.collate` gives a
  :class:`TwoStreamBatch` ``(asr, se)`` of two ``PaddedBatch``.

Randomness: every draw comes from a generator seeded by ``(seed, stream
name, epoch, key)``, never from a global random state, so an item is the
same whatever the worker, process or DDP rank that loads it, and changes
from one epoch to the next (:meth:`set_epoch`, called by the Brain before
each training epoch). The datasets are plain map-style datasets:
SpeechBrain's ``make_dataloader`` adds a ``DistributedSampler`` under DDP
and each rank loads different, deterministic items. Without the
speech-only stream (D4AM's CLSO mode) nothing of it is ever read.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch
import torchaudio.functional as AF
from speechbrain.dataio.batch import PaddedBatch
from speechbrain.dataio.dataio import load_data_csv, read_audio

__all__ = [
    "item_rng",
    "read_rows",
    "scale_to_dbfs",
    "NoiseCorruptor",
    "TokenEncoder",
    "SpeechStream",
    "PairedStreams",
    "TwoStreamBatch",
]

SAMPLE_RATE = 16000


def item_rng(*parts) -> np.random.Generator:
    """A numpy generator seeded by a hash of ``parts`` (stable everywhere).

    Arguments
    ---------
    *parts : object
        What identifies the draw (seed, stream, epoch, index, ...).

    Returns
    -------
    numpy.random.Generator

    Example
    -------
    >>> a = item_rng(1, "se", 0, 5).random()
    >>> a == item_rng(1, "se", 0, 5).random()
    True
    >>> a == item_rng(1, "se", 1, 5).random()  # another epoch
    False
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def read_rows(csv_path, data_root=None) -> list[dict]:
    """Rows of a SpeechBrain CSV manifest, ``$data_root`` replaced.

    Arguments
    ---------
    csv_path : path-like
        Manifest with an ``ID`` column.
    data_root : path-like, optional
        Replaces ``$data_root`` (default: the manifest's folder).

    Returns
    -------
    list of dict
        In file order; each dict holds ``ID`` and the other columns
        (``duration`` as float).

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> text = "ID,duration,wav\\nu1,1.5,$data_root/a.wav\\n"
    >>> _ = (d / "m.csv").write_text(text)
    >>> rows = read_rows(d / "m.csv")
    >>> rows[0]["wav"] == str(d / "a.wav"), rows[0]["duration"]
    (True, 1.5)
    """
    from pathlib import Path

    csv_path = Path(csv_path)
    root = str(data_root if data_root is not None else csv_path.parent)
    data = load_data_csv(str(csv_path), replacements={"data_root": root})
    return [{"ID": key, **row} for key, row in data.items()]


def scale_to_dbfs(x: torch.Tensor, dbfs: float, eps: float = 1e-8):
    """Scale a signal so that its RMS level is ``dbfs`` (RMS re 1.0).

    Arguments
    ---------
    x : torch.Tensor
        1-D signal.
    dbfs : float
        Target level, e.g. -25.
    eps : float
        Floor of the RMS (a silent signal stays silent).

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> y = scale_to_dbfs(torch.ones(100), -20.0)
    >>> round(float(y.pow(2).mean().sqrt()), 4)
    0.1
    """
    rms = x.pow(2).mean().sqrt().clamp_min(eps)
    return x * (10.0 ** (dbfs / 20.0) / rms)


def _crop_or_tile(x: torch.Tensor, n: int, rng: np.random.Generator):
    """A random length-``n`` window of ``x`` (tiled first when shorter)."""
    if x.numel() < n:
        reps = math.ceil(n / max(x.numel(), 1)) + 1
        x = x.repeat(reps)
    start = int(rng.integers(0, x.numel() - n + 1))
    return x[start : start + n]


class NoiseCorruptor:
    """Additive noise at a random SNR, optional reverberation (seeded).

    D4AM's corruption (docs/methods.md, D4AM data): the clean signal is
    scaled to ``speech_level_dbfs`` RMS, a random noise file is randomly
    cropped (or tiled when shorter) to the signal's length and added at an
    SNR drawn uniformly in ``snr_range`` (the SNR is measured over the whole,
    possibly reverberant, speech). With probability ``rir_prob`` the speech
    is first convolved with a random impulse response (level kept) while
    the target stays the dry signal (the MiniNoisy RIRs are aligned on
    their direct path). If the mixture would clip, mixture and target are
    scaled down together.

    Arguments
    ---------
    noise_rows : sequence of dict
        Noise manifest rows (``wav`` and ``duration`` columns).
    snr_range : (float, float)
        SNR bounds in dB.
    speech_level_dbfs : float
        Level of the clean speech.
    rir_rows : sequence of dict, optional
        Impulse responses (``wav`` column).
    rir_prob : float
        Probability of reverberation.
    peak_limit : float
        Largest allowed absolute sample of the mixture.
    sample_rate : int
        Rate of every file.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sf.write(d / "n.wav", np.random.default_rng(0).normal(size=800), 16000)
    >>> corrupt = NoiseCorruptor([{"wav": str(d / "n.wav"), "duration": 0.05}],
    ...                          snr_range=(5.0, 5.0))
    >>> clean = torch.sin(torch.arange(2000) / 3.0)
    >>> noisy, target, info = corrupt(clean, np.random.default_rng(1))
    >>> noise = noisy - target
    >>> snr = 10 * torch.log10(target.pow(2).sum() / noise.pow(2).sum())
    >>> round(float(snr), 3)
    5.0
    >>> round(float(20 * torch.log10(target.pow(2).mean().sqrt())), 3)
    -25.0
    """

    def __init__(
        self,
        noise_rows: Sequence[Mapping],
        snr_range: Sequence[float] = (-4.0, 6.0),
        speech_level_dbfs: float = -25.0,
        rir_rows: Sequence[Mapping] | None = None,
        rir_prob: float = 0.0,
        peak_limit: float = 0.99,
        sample_rate: int = SAMPLE_RATE,
    ):
        if not noise_rows:
            raise ValueError("NoiseCorruptor needs at least one noise file")
        lo, hi = (float(v) for v in snr_range)
        if lo > hi:
            raise ValueError(f"snr_range must be (low, high), got {snr_range}")
        if rir_prob > 0 and not rir_rows:
            raise ValueError("rir_prob > 0 needs rir_rows")
        self.noise_rows = [dict(r) for r in noise_rows]
        self.snr_range = (lo, hi)
        self.speech_level_dbfs = float(speech_level_dbfs)
        self.rir_rows = [dict(r) for r in (rir_rows or [])]
        self.rir_prob = float(rir_prob)
        self.peak_limit = float(peak_limit)
        self.sample_rate = int(sample_rate)

    def _noise(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        row = self.noise_rows[int(rng.integers(len(self.noise_rows)))]
        frames = int(round(float(row.get("duration", 0)) * self.sample_rate))
        if frames > n + 1:  # read only a random window of a long file
            start = int(rng.integers(0, frames - n))
            x = read_audio(
                {"file": row["wav"], "start": start, "stop": start + n}
            )
            if x.dim() > 1:
                x = x.mean(-1)
            if x.numel() >= n:
                return x[:n].float()
        x = read_audio(row["wav"])
        if x.dim() > 1:
            x = x.mean(-1)
        return _crop_or_tile(x.float(), n, rng)

    def __call__(self, clean: torch.Tensor, rng: np.random.Generator):
        """Corrupt one clean signal.

        Arguments
        ---------
        clean : torch.Tensor
            1-D clean signal.
        rng : numpy.random.Generator
            The item's generator.

        Returns
        -------
        noisy : torch.Tensor
        target : torch.Tensor
            The clean signal at the level of the mixture.
        info : dict
            ``snr_db`` and ``reverb``.
        """
        clean = scale_to_dbfs(clean.float(), self.speech_level_dbfs)
        speech = clean
        reverb = self.rir_prob > 0 and rng.random() < self.rir_prob
        if reverb:
            row = self.rir_rows[int(rng.integers(len(self.rir_rows)))]
            h = read_audio(row["wav"]).float()
            if h.dim() > 1:
                h = h[:, 0]
            wet = AF.fftconvolve(clean, h)[: clean.numel()]
            speech = wet * (
                clean.pow(2).mean().sqrt()
                / wet.pow(2).mean().sqrt().clamp_min(1e-8)
            )
        snr = float(rng.uniform(*self.snr_range))
        noise = self._noise(clean.numel(), rng)
        if noise.pow(2).sum() <= 0:
            noisy = speech.clone()
        else:
            noisy = AF.add_noise(
                speech.unsqueeze(0), noise.unsqueeze(0), torch.tensor([snr])
            ).squeeze(0)
        peak = float(noisy.abs().max())
        target = clean
        if peak > self.peak_limit:
            gain = self.peak_limit / peak
            noisy, target = noisy * gain, target * gain
        return noisy, target, {"snr_db": snr, "reverb": bool(reverb)}


class TokenEncoder:
    """Text -> ``LongTensor`` of token ids (picklable for loader workers).

    Arguments
    ---------
    tokenizer : sentencepiece.SentencePieceProcessor
        Or anything with ``encode_as_ids(str) -> list of int``, or a
        SpeechBrain ``CTCTextEncoder`` of characters (``encode_sequence``).

    Example
    -------
    >>> class Chars:
    ...     def encode_as_ids(self, text):
    ...         return [ord(c) - 60 for c in text]
    >>> TokenEncoder(Chars())("AB")
    tensor([5, 6])
    """

    def __init__(self, tokenizer):
        self.tokenizer = tokenizer

    def __call__(self, text: str) -> torch.Tensor:
        if hasattr(self.tokenizer, "encode_as_ids"):
            return torch.LongTensor(self.tokenizer.encode_as_ids(text))
        return torch.LongTensor(self.tokenizer.encode_sequence(list(text)))


class SpeechStream(torch.utils.data.Dataset):
    """Noisy/clean speech items from a manifest (map-style, seeded).

    Two kinds of rows:

    * clean rows (``wav_key``, e.g. LibriSpeech or MiniNoisy
      ``train_clean.csv``), corrupted online by ``corruptor``, optionally
      cropped to a random length in ``segment`` samples first (D4AM's
      speech-only stream: 1.5-6 s);
    * pre-mixed rows (``noisy_key`` and ``clean_key``, e.g.
      ``valid_pairs.csv``), returned as they are (a missing clean column,
      as in CHiME-4 real, gives ``clean = noisy``).

    Items are dicts: ``id``, ``noisy``, ``clean`` (1-D float tensors of the
    same length) and, with ``text_pipeline``, ``wrd`` and ``tokens``.

    Arguments
    ---------
    rows : sequence of dict
        Manifest rows (:func:`read_rows`).
    corruptor : NoiseCorruptor, optional
        Needed for clean rows.
    segment : (int, int), optional
        Bounds (samples) of a random crop length; None: whole utterances.
    text_pipeline : callable, optional
        ``wrd`` text -> token tensor.
    seed : int
        Seed of every draw.
    name : str
        Stream name (part of the seeds).
    wav_key, noisy_key, clean_key, text_key : str
        Column names.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> sf.write(d / "c.wav", np.sin(np.arange(16000) / 5) / 9, 16000)
    >>> sf.write(d / "n.wav", np.random.default_rng(0).normal(size=8000), 16000)
    >>> noise = NoiseCorruptor([{"wav": str(d / "n.wav"), "duration": 0.5}])
    >>> stream = SpeechStream(
    ...     [{"ID": "u1", "wav": str(d / "c.wav"), "duration": 1.0}],
    ...     corruptor=noise, segment=(4000, 8000), seed=3, name="se")
    >>> item = stream[0]
    >>> n = item["noisy"].numel()
    >>> 4000 <= n <= 8000, item["clean"].shape == item["noisy"].shape
    (True, True)
    >>> torch.equal(stream[0]["noisy"], item["noisy"])  # same epoch: same draw
    True
    >>> stream.set_epoch(1)
    >>> stream[0]["noisy"].numel() == item["noisy"].numel()
    False
    """

    def __init__(
        self,
        rows: Sequence[Mapping],
        corruptor: NoiseCorruptor | None = None,
        segment: Sequence[int] | None = None,
        text_pipeline: Callable[[str], torch.Tensor] | None = None,
        seed: int = 0,
        name: str = "stream",
        wav_key: str = "wav",
        noisy_key: str = "noisy_wav",
        clean_key: str = "clean_wav",
        text_key: str = "wrd",
    ):
        self.rows = [dict(r) for r in rows]
        if not self.rows:
            raise ValueError(f"stream {name!r} has no row")
        self.corruptor = corruptor
        self.segment = None
        if segment is not None:
            lo, hi = (int(v) for v in segment)
            if not 0 < lo <= hi:
                raise ValueError(f"segment must be 0 < min <= max: {segment}")
            self.segment = (lo, hi)
        self.text_pipeline = text_pipeline
        self.seed = seed
        self.name = name
        self.wav_key = wav_key
        self.noisy_key = noisy_key
        self.clean_key = clean_key
        self.text_key = text_key
        self.epoch = 0
        self.premixed = noisy_key in self.rows[0]
        if not self.premixed and corruptor is None:
            raise ValueError(
                f"stream {name!r}: clean rows (no {noisy_key!r} column) "
                "need a corruptor"
            )

    def __len__(self) -> int:
        return len(self.rows)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's draws (call before iterating).

        Arguments
        ---------
        epoch : int
        """
        self.epoch = int(epoch)

    def _read_clean(self, row, rng):
        if self.segment is None:
            return read_audio(row[self.wav_key]).float()
        n = int(rng.integers(self.segment[0], self.segment[1] + 1))
        frames = int(round(float(row.get("duration", 0)) * SAMPLE_RATE))
        if frames and frames > n:
            start = int(rng.integers(0, frames - n + 1))
            x = read_audio(
                {"file": row[self.wav_key], "start": start, "stop": start + n}
            ).float()
            if x.numel() > 0:
                return x
        x = read_audio(row[self.wav_key]).float()
        if x.numel() > n:
            start = int(rng.integers(0, x.numel() - n + 1))
            x = x[start : start + n]
        return x

    def load(self, index: int, key) -> dict:
        """Load item ``index`` with the draws identified by ``key``.

        Arguments
        ---------
        index : int
            Row index.
        key : object
            Identifies the random draws (with seed, name and epoch).

        Returns
        -------
        dict
        """
        row = self.rows[index]
        rng = item_rng(self.seed, self.name, self.epoch, key)
        if self.premixed:
            noisy = read_audio(row[self.noisy_key]).float()
            clean_path = row.get(self.clean_key, "")
            clean = read_audio(clean_path).float() if clean_path else noisy
            n = min(noisy.numel(), clean.numel())
            noisy, clean = noisy[:n], clean[:n]
        else:
            noisy, clean, _ = self.corruptor(self._read_clean(row, rng), rng)
        if noisy.dim() > 1:
            noisy, clean = noisy.mean(-1), clean.mean(-1)
        item = {"id": row["ID"], "noisy": noisy, "clean": clean}
        if self.text_pipeline is not None:
            item["wrd"] = row[self.text_key]
            item["tokens"] = self.text_pipeline(row[self.text_key])
        return item

    def __getitem__(self, index: int) -> dict:
        return self.load(index, index)

    @staticmethod
    def collate(items: Sequence[dict]) -> PaddedBatch:
        """SpeechBrain ``PaddedBatch`` of items (relative lengths).

        Arguments
        ---------
        items : sequence of dict

        Returns
        -------
        PaddedBatch
        """
        return PaddedBatch(list(items))


class TwoStreamBatch:
    """A step's two batches: ``asr`` (transcribed) and ``se`` (or None).

    Arguments
    ---------
    asr : PaddedBatch
    se : PaddedBatch or None
    """

    def __init__(self, asr: PaddedBatch, se: PaddedBatch | None):
        self.asr = asr
        self.se = se

    def to(self, *args, **kwargs) -> TwoStreamBatch:
        """Move both batches (like ``PaddedBatch.to``)."""
        self.asr = self.asr.to(*args, **kwargs)
        if self.se is not None:
            self.se = self.se.to(*args, **kwargs)
        return self

    def pin_memory(self) -> TwoStreamBatch:
        """Pin both batches (DataLoader ``pin_memory=True``)."""
        self.asr = self.asr.pin_memory()
        if self.se is not None:
            self.se = self.se.pin_memory()
        return self

    def __len__(self) -> int:
        return len(self.asr)


class PairedStreams(torch.utils.data.Dataset):
    """Pairs each transcribed item with a speech-only item (seeded).

    Item ``i`` is ``{"asr": asr[i], "se": se[j]}`` where ``j`` comes from a
    permutation of the speech-only set drawn from ``(seed, epoch, i //
    len(se))``: within an epoch each block of ``len(se)`` transcribed items
    sees every speech-only item once, and the pairing changes with the
    epoch. The speech-only item's own draws (crop, noise, SNR) are keyed
    by ``i`` too, so a speech-only item paired twice gets two corruptions.
    With ``se=None`` only the transcribed stream is read.

    Arguments
    ---------
    asr : SpeechStream
        Transcribed stream (its length is the dataset's length).
    se : SpeechStream, optional
        Speech-only stream.
    seed : int
        Seed of the pairing.

    Example
    -------
    >>> class Fake(torch.utils.data.Dataset):
    ...     def __init__(self, n): self.n, self.epoch = n, 0
    ...     def __len__(self): return self.n
    ...     def set_epoch(self, e): self.epoch = e
    ...     def load(self, i, key): return {"id": str(i)}
    >>> pairs = PairedStreams(Fake(4), Fake(2), seed=0)
    >>> sorted(pairs.pair_index(i) for i in range(2)), len(pairs)
    ([0, 1], 4)
    """

    def __init__(self, asr, se=None, seed: int = 0):
        if len(asr) == 0:
            raise ValueError("the transcribed stream is empty")
        if se is not None and len(se) == 0:
            raise ValueError("the speech-only stream is empty")
        self.asr = asr
        self.se = se
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.asr)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's pairing and draws (both streams).

        Arguments
        ---------
        epoch : int
        """
        self.epoch = int(epoch)
        self.asr.set_epoch(epoch)
        if self.se is not None:
            self.se.set_epoch(epoch)

    def pair_index(self, i: int) -> int:
        """Index of the speech-only item paired with transcribed item ``i``.

        Arguments
        ---------
        i : int

        Returns
        -------
        int
        """
        n = len(self.se)
        perm = item_rng(self.seed, "pairing", self.epoch, i // n).permutation(n)
        return int(perm[i % n])

    def __getitem__(self, i: int) -> dict:
        item = {"asr": self.asr.load(i, i), "se": None}
        if self.se is not None:
            item["se"] = self.se.load(self.pair_index(i), i)
        return item

    @staticmethod
    def collate(items: Sequence[dict]) -> TwoStreamBatch:
        """Collate paired items into a :class:`TwoStreamBatch`.

        Arguments
        ---------
        items : sequence of dict

        Returns
        -------
        TwoStreamBatch
        """
        asr = PaddedBatch([it["asr"] for it in items])
        se_items = [it["se"] for it in items]
        se = None if se_items[0] is None else PaddedBatch(se_items)
        return TwoStreamBatch(asr, se)
