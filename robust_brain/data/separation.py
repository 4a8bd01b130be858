"""Separation data: mixtures and their sources from a manifest
(:class:`SeparationSet`), or mixtures made on the fly from the manifest's
sources (:class:`DynamicMixingSet`)."""

from __future__ import annotations

import math
import random
from pathlib import Path

import torch
from speechbrain.dataio.batch import PaddedBatch

__all__ = ["DynamicMixingSet", "SeparationSet"]


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
        Every file must have it, unless ``resample``.
    segment : int, optional
        Crop length in samples (training); None: whole mixtures.
    max_items : int, optional
        Keep the first N rows.
    seed : int
        Seed of the crops (with the epoch, see :meth:`set_epoch`).
    name : str
        For messages.
    resample : bool
        Resample files of another rate to ``sample_rate`` (e.g. WHAMR!'s
        8 kHz track from a corpus written at 16 kHz).

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
    ValueError: ...mix.wav has a sample rate of 16000 Hz, expected 8000 Hz...
    >>> data8k = SeparationSet(d / "m.csv", sample_rate=8000, resample=True)
    >>> data8k[0]["mix"].shape
    torch.Size([8000])
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
        resample: bool = False,
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
        self.resample = bool(resample)

    def __len__(self):
        return len(self.rows)

    def set_epoch(self, epoch: int):
        """New crops each epoch (deterministic given seed and epoch)."""
        self.epoch = int(epoch)

    def load(self, path):
        """One audio file as a 1-D tensor at ``sample_rate`` (resampled
        when ``resample``; another rate otherwise is an error)."""
        import soundfile as sf

        if not Path(path).is_file():
            raise FileNotFoundError(f"{self.name}: missing audio file {path}")
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav[:, 0].copy())
        if sr == self.sample_rate:
            return wav
        if not self.resample:
            raise ValueError(
                f"{self.name}: {path} has a sample rate of {sr} Hz, "
                f"expected {self.sample_rate} Hz (resample=True converts)"
            )
        import torchaudio

        return torchaudio.functional.resample(wav, sr, self.sample_rate)

    def __getitem__(self, idx):
        row = self.rows[idx]
        wavs = [self.load(row[c]) for c in self.columns]
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


class DynamicMixingSet(SeparationSet):
    """Mixtures made on the fly from the sources of a separation manifest.

    Every item draws ``num_spks`` source files of different speakers (the
    ``s<k>_spk`` columns; without them, any different files) from all the
    manifest's ``s<k>_wav`` files, crops each to ``segment`` inside its
    active part (the zero padding of ``max`` mixtures left out), scales it
    to unit RMS times a gain uniform in +-``ssr_db`` / 2 dB and sums them:
    new mixtures every epoch from the same clean (anechoic) sources, the
    first step of a curriculum that ends on the corpus' noisy reverberant
    mixtures. Draws are seeded by ``seed``, the epoch and the index.

    Arguments
    ---------
    csv_path : path-like
        Separation manifest whose sources are mixed.
    segment : int
        Length of the mixtures in samples.
    items_per_epoch : int, optional
        Default: the manifest's rows.
    ssr_db : float
        Range of the source-to-source level ratio (WHAM!: 0..5 dB).
    reverb : bool
        Mix the sources' reverberant images (``s<k>_alt_wav``, cropped
        and scaled as their anechoic versions, which stay the targets):
        WHAMR!'s task of separating and dereverberating.
    snr_db : tuple of float, optional
        Add a noise file of the manifest (``noise_wav``, another draw) at
        an SNR uniform in this range, relative to the louder source (as
        WHAM!: -6..3 dB). None: no noise.
    data_root, num_spks, sample_rate, max_items, seed, name, resample :
        See :class:`SeparationSet`.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf
    >>> import numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> lines = ["ID,duration,mix_wav,s1_wav,s2_wav,s1_spk,s2_spk"]
    >>> for i in range(3):
    ...     for k in ("mix", "s1", "s2"):
    ...         sf.write(d / f"{k}{i}.wav", rng.normal(size=8000) / 10, 8000)
    ...     lines.append(f"u{i},1.0,$data_root/mix{i}.wav,$data_root/s1{i}"
    ...                  f".wav,$data_root/s2{i}.wav,a{i},b{i}")
    >>> _ = (d / "m.csv").write_text("\\n".join(lines) + "\\n")
    >>> data = DynamicMixingSet(d / "m.csv", segment=4000, sample_rate=8000)
    >>> item = data[0]
    >>> len(data), item["mix"].shape, item["sources"].shape
    (3, torch.Size([4000]), torch.Size([4000, 2]))
    >>> torch.allclose(item["sources"].sum(-1), item["mix"])
    True
    >>> data.set_epoch(1)
    >>> bool((data[0]["mix"] != item["mix"]).any())
    True
    """

    def __init__(
        self,
        csv_path,
        segment: int,
        data_root=None,
        num_spks: int = 2,
        sample_rate: int = 16000,
        items_per_epoch: int | None = None,
        ssr_db: float = 5.0,
        reverb: bool = False,
        snr_db: tuple[float, float] | None = None,
        max_items: int | None = None,
        seed: int = 0,
        name: str = "dynamic mixing",
        resample: bool = False,
    ):
        if not segment or int(segment) <= 0:
            raise ValueError(f"{name}: segment must be > 0 samples")
        super().__init__(
            csv_path,
            data_root=data_root,
            num_spks=num_spks,
            sample_rate=sample_rate,
            segment=segment,
            max_items=max_items,
            seed=seed,
            name=name,
            resample=resample,
        )
        if ssr_db < 0:
            raise ValueError(f"{name}: ssr_db must be >= 0, got {ssr_db}")
        self.ssr_db = float(ssr_db)
        self.reverb = bool(reverb)
        self.snr_db = None
        if snr_db is not None:
            low, high = (float(x) for x in snr_db)
            if low > high:
                raise ValueError(f"{name}: snr_db {snr_db}: low > high")
            self.snr_db = (low, high)
        needed = [f"s{k}_alt_wav" for k in range(1, num_spks + 1)] * reverb
        needed += ["noise_wav"] * (snr_db is not None)
        missing = [c for c in needed if not self.rows[0].get(c)]
        if missing:
            raise ValueError(
                f"{name}: {csv_path} lacks the column(s) {missing} (needed "
                f"for reverb={reverb}, snr_db={snr_db})"
            )
        # every source file once, with its speaker (or its row) and its
        # reverberant image
        self.pool = []
        for i, row in enumerate(self.rows):
            for k in range(1, self.num_spks + 1):
                spk = row.get(f"s{k}_spk") or f"row{i}.{k}"
                image = row[f"s{k}_alt_wav"] if reverb else None
                sid = f"{row['ID']}.s{k}"
                self.pool.append((row[f"s{k}_wav"], spk, sid, image))
        self.noises = (
            [row["noise_wav"] for row in self.rows] if self.snr_db else []
        )
        if len({p[1] for p in self.pool}) < self.num_spks:
            raise ValueError(
                f"{name}: {csv_path} has fewer than {self.num_spks} speakers"
            )
        self.items = int(items_per_epoch or len(self.rows))

    def __len__(self):
        return self.items

    def _crop(self, wav, rng, image=None):
        """``segment`` samples of the active part, unit RMS (zero padded
        at a random offset when shorter); with ``image`` (the reverberant
        version) both, cropped alike and scaled by the anechoic RMS:
        ``(2, segment)``."""
        if image is None:
            pair = wav[None]
        else:
            n = min(wav.numel(), image.numel())
            pair = torch.stack([wav[:n], image[:n]])
        # the anechoic source's active part (an image's tail alone would
        # leave a silent target)
        active = torch.nonzero(pair[0].abs() > 1e-4).flatten()
        if active.numel():
            pair = pair[:, int(active[0]) : int(active[-1]) + 1]
        n = pair.shape[-1]
        if n >= self.segment:
            start = rng.randrange(0, n - self.segment + 1)
            pair = pair[:, start : start + self.segment]
        else:
            offset = rng.randrange(0, self.segment - n + 1)
            pair = torch.nn.functional.pad(
                pair, (offset, self.segment - n - offset)
            )
        pair = pair / pair[0].pow(2).mean().sqrt().clamp_min(1e-8)
        return pair[0] if image is None else pair

    def __getitem__(self, idx):
        rng = random.Random(
            (self.seed * 1_000_003 + self.epoch) * 1_000_003 + idx
        )
        picks, speakers = [], set()
        while len(picks) < self.num_spks:
            path, spk, sid, image = self.pool[rng.randrange(len(self.pool))]
            if spk not in speakers:
                speakers.add(spk)
                picks.append((path, sid, image))
        sources, heard = [], []
        for path, _, image in picks:
            gain_db = rng.uniform(-self.ssr_db / 2, self.ssr_db / 2)
            gain = 0.1 * 10 ** (gain_db / 20)
            if image is None:
                wav = gain * self._crop(self.load(path), rng)
                sources.append(wav)
                heard.append(wav)
            else:
                pair = gain * self._crop(self.load(path), rng, self.load(image))
                sources.append(pair[0])
                heard.append(pair[1])
        sources = torch.stack(sources, dim=-1)
        mix = torch.stack(heard, dim=-1).sum(-1)
        ids = [sid for _, sid, _ in picks]
        if self.snr_db is not None:
            path = self.noises[rng.randrange(len(self.noises))]
            noise = self._crop(self.load(path), rng)
            louder = max(float(w.pow(2).mean()) for w in heard)
            snr = rng.uniform(*self.snr_db)
            mix = mix + noise * math.sqrt(louder / 10 ** (snr / 10))
            ids.append(f"noise:{Path(path).stem}")
        return {"id": "+".join(ids), "mix": mix, "sources": sources}
