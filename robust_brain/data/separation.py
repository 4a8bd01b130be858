"""Separation data: mixtures and their sources from a manifest."""

from __future__ import annotations

import random
from pathlib import Path

import torch
from speechbrain.dataio.batch import PaddedBatch

__all__ = ["SeparationSet"]


class SeparationSet(torch.utils.data.Dataset):
    """Mixture + sources from a separation manifest, seeded random crops.

    Items: ``id``, ``mix`` ``(time,)`` and ``sources`` ``(time, C)``;
    :meth:`collate` gives a SpeechBrain ``PaddedBatch`` (relative lengths).

    Arguments
    ---------
    csv_path : path-like
        Manifest with ``mix_wav`` and ``s1_wav`` ... ``s<C>_wav``
        (:data:`robust_brain.data.manifest.SEPARATION_COLUMNS`).
    data_root : path-like, optional
        Replaces ``$data_root`` (default: the manifest's folder).
    num_spks : int
        Sources C.
    sample_rate : int
        Every file must have it.
    segment : int, optional
        Crop length in samples (training); None: whole mixtures.
    max_items : int, optional
        Keep the first N rows.
    seed : int
        Seed of the crops (with the epoch, see :meth:`set_epoch`).
    name : str
        For messages.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf
    >>> import numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> for k in ("mix", "s1", "s2"):
    ...     sf.write(d / f"{k}.wav", np.random.default_rng(0).normal(
    ...         size=16000) / 10, 16000)
    >>> _ = (d / "m.csv").write_text("ID,duration,mix_wav,s1_wav,s2_wav\\n"
    ...     "u1,1.0,$data_root/mix.wav,$data_root/s1.wav,$data_root/s2.wav\\n")
    >>> data = SeparationSet(d / "m.csv", segment=8000)
    >>> batch = data.collate([data[0]])
    >>> batch.mix.data.shape, batch.sources.data.shape
    (torch.Size([1, 8000]), torch.Size([1, 8000, 2]))
    >>> SeparationSet(d / "m.csv", sample_rate=8000)[0]
    Traceback (most recent call last):
    ...
    ValueError: ...mix.wav has a sample rate of 16000 Hz, expected 8000 Hz
    """

    def __init__(
        self,
        csv_path,
        data_root=None,
        num_spks: int = 2,
        sample_rate: int = 16000,
        segment: int | None = None,
        max_items: int | None = None,
        seed: int = 0,
        name: str = "separation",
    ):
        from robust_brain.evaluation import read_manifest

        csv_path = Path(csv_path)
        if not csv_path.is_file():
            raise FileNotFoundError(
                f"{name}: no manifest {csv_path} (prepare the corpus, or "
                "check data_folder)"
            )
        rows = read_manifest(csv_path, data_root)
        self.columns = ["mix_wav"] + [
            f"s{k}_wav" for k in range(1, num_spks + 1)
        ]
        if not rows:
            raise ValueError(f"{name}: {csv_path} has no row")
        missing = [c for c in self.columns if c not in rows[0]]
        if missing:
            raise ValueError(
                f"{name}: {csv_path} lacks the column(s) {missing} "
                f"(needed for {num_spks} sources)"
            )
        if max_items:
            rows = rows[: int(max_items)]
        self.rows = rows
        self.num_spks = int(num_spks)
        self.sample_rate = int(sample_rate)
        self.segment = int(segment) if segment else None
        self.seed = int(seed)
        self.epoch = 0
        self.name = name

    def __len__(self):
        return len(self.rows)

    def set_epoch(self, epoch: int):
        """New crops each epoch (deterministic given seed and epoch)."""
        self.epoch = int(epoch)

    def _read(self, path):
        import soundfile as sf

        if not Path(path).is_file():
            raise FileNotFoundError(f"{self.name}: missing audio file {path}")
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        if sr != self.sample_rate:
            raise ValueError(
                f"{self.name}: {path} has a sample rate of {sr} Hz, "
                f"expected {self.sample_rate} Hz"
            )
        return torch.from_numpy(wav[:, 0].copy())

    def __getitem__(self, idx):
        row = self.rows[idx]
        wavs = [self._read(row[c]) for c in self.columns]
        n = min(w.numel() for w in wavs)
        if max(w.numel() for w in wavs) - n > self.sample_rate // 100:
            raise ValueError(
                f"{self.name}: {row['ID']}: mixture and sources differ in "
                f"length ({[w.numel() for w in wavs]} samples)"
            )
        start = 0
        if self.segment and n > self.segment:
            rng = random.Random(
                (self.seed * 1_000_003 + self.epoch) * 1_000_003 + idx
            )
            start = rng.randrange(0, n - self.segment + 1)
            n = self.segment
        wavs = [w[start : start + n] for w in wavs]
        return {
            "id": row["ID"],
            "mix": wavs[0],
            "sources": torch.stack(wavs[1:], dim=-1),
        }

    @staticmethod
    def collate(items):
        """SpeechBrain ``PaddedBatch`` of items."""
        return PaddedBatch(list(items))
