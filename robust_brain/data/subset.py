"""A compact copy of a corpus: the first rows of some manifests, resampled
and stored as FLAC within a size budget.

What a machine that cannot reach the corpus needs (the GPU check carries
at most 64 MiB with the repository): e.g. MiniWHAMR's 8 kHz track for the
separator's pre-training, ``cv`` and ``tt`` rows first, then as many
``tr`` rows as the budget leaves::

    python -m robust_brain.data.subset --out .gpu/miniwhamr8k \\
        --sample_rate 8000 --budget_mib 40 \\
        data/MiniWHAMR/cv_max.csv:40:mix_wav,s1_wav,s2_wav \\
        data/MiniWHAMR/tt_max.csv:50 data/MiniWHAMR/tr_max.csv

The copy has the same manifests (same names and IDs, the chosen audio
columns with paths under ``$data_root``, every other column), so a recipe
reads it with ``--data_folder`` alone.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from robust_brain.data.manifest import read_manifest, write_csv_atomic

__all__ = ["pack_subset"]


def _encode(wav: np.ndarray, sample_rate: int) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wav, sample_rate, format="FLAC", subtype="PCM_16")
    return buf.getvalue()


def _row_files(row, columns, data_root, sample_rate):
    """Every audio file of a row, resampled, as FLAC bytes; a row whose
    peak would clip is scaled down as a whole (a mixture stays the sum of
    its parts)."""
    import torchaudio

    wavs = {}
    for col in columns:
        path = row[col].replace("$data_root", str(data_root))
        if not Path(path).is_file():
            raise FileNotFoundError(f"row {row['ID']}: {col} {path} missing")
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav[:, 0].copy())
        if rate != sample_rate:
            wav = torchaudio.functional.resample(wav, rate, sample_rate)
        wavs[col] = wav.numpy()
    peak = max(float(np.abs(w).max(initial=0.0)) for w in wavs.values())
    gain = 0.999 / peak if peak > 0.999 else 1.0
    return {c: _encode(w * gain, sample_rate) for c, w in wavs.items()}


def pack_subset(
    manifests: Sequence[tuple],
    out_folder: str | os.PathLike,
    sample_rate: int,
    budget_mib: float,
    data_root: str | os.PathLike | None = None,
) -> dict[str, int]:
    """Copy the first rows of each manifest, as FLAC at ``sample_rate``.

    Manifests are taken in order: one with a row count gets exactly that
    many rows (an error if they do not fit the budget), one with None as
    many as fit in what the budget has left. Audio columns are those whose
    name ends in ``_wav`` (all, or those chosen: the others are left out
    of the copy's manifest); each file becomes
    ``<out_folder>/<manifest stem>/<column>/<ID>.flac``. The folder is
    built beside ``out_folder`` and swapped in only when complete.

    Arguments
    ---------
    manifests : sequence of tuple
        ``(path, rows, columns)``: rows an int or None (as many as fit),
        columns the audio columns to copy or None (all).
    out_folder : path-like
        The copy's root (its ``$data_root``); replaced if it exists.
    sample_rate : int
        Rate of the copy.
    budget_mib : float
        Size of all audio files, at most (MiB).
    data_root : path-like, optional
        Replaces ``$data_root`` in the manifests (default: each
        manifest's folder).

    Returns
    -------
    dict
        Manifest name -> rows copied.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> lines = ["ID,duration,mix_wav,s1_wav,s1_wrd"]
    >>> for i in range(4):
    ...     for k in ("mix", "s1"):
    ...         sf.write(d / f"{k}{i}.wav", rng.normal(size=16000) / 10,
    ...                  16000)
    ...     lines.append(f"u{i},1.0,$data_root/mix{i}.wav,"
    ...                  f"$data_root/s1{i}.wav,HELLO")
    >>> _ = (d / "tr.csv").write_text("\\n".join(lines) + "\\n")
    >>> _ = (d / "cv.csv").write_text("\\n".join(lines[:2]) + "\\n")
    >>> pack_subset([(d / "cv.csv", 1, ["s1_wav"]), (d / "tr.csv", None,
    ...     None)], d / "small", sample_rate=8000, budget_mib=0.08)
    {'cv.csv': 1, 'tr.csv': 2}
    >>> print((d / "small" / "cv.csv").read_text().splitlines()[0])
    ID,duration,s1_wav,s1_wrd
    >>> print((d / "small" / "tr.csv").read_text().splitlines()[1])
    u0,1.0,$data_root/tr/mix_wav/u0.flac,$data_root/tr/s1_wav/u0.flac,HELLO
    >>> sf.info(str(d / "small" / "tr" / "s1_wav" / "u0.flac")).samplerate
    8000
    >>> pack_subset([(d / "tr.csv", 4, None)], d / "small", 8000, 0.08)
    Traceback (most recent call last):
    ...
    ValueError: tr.csv: 4 rows need more than the budget of 0.08 MiB ...
    >>> (d / "small" / "cv.csv").is_file()  # the old copy is kept
    True
    """
    out = Path(out_folder)
    budget = int(float(budget_mib) * 2**20)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    used, counts = 0, {}
    try:
        for manifest, wanted, chosen in manifests:
            manifest = Path(manifest)
            rows = read_manifest(manifest)  # unique IDs, valid durations
            header = list(rows[0]) if rows else []
            audio = [c for c in header if c.endswith("_wav")]
            columns = audio if chosen is None else list(chosen)
            unknown = sorted(set(columns) - set(audio))
            if unknown or not columns:
                raise ValueError(
                    f"{manifest}: audio columns {unknown or columns} not "
                    f"among its *_wav columns {audio}"
                )
            header = [c for c in header if c in columns or c not in audio]
            if wanted is not None and int(wanted) > len(rows):
                raise ValueError(
                    f"{manifest.name}: {wanted} rows asked, {len(rows)} there"
                )
            root = data_root if data_root is not None else manifest.parent
            copied = []
            for row in rows[: None if wanted is None else int(wanted)]:
                files = _row_files(row, columns, root, sample_rate)
                size = sum(len(b) for b in files.values())
                if used + size > budget:
                    if wanted is None:
                        break
                    raise ValueError(
                        f"{manifest.name}: {wanted} rows need more than the "
                        f"budget of {budget_mib} MiB (full after "
                        f"{len(copied)})"
                    )
                used += size
                new = {c: row[c] for c in header}
                for col, data in files.items():
                    rel = Path(manifest.stem) / col / f"{row['ID']}.flac"
                    (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
                    (tmp / rel).write_bytes(data)
                    new[col] = f"$data_root/{rel.as_posix()}"
                copied.append(new)
            if not copied:
                raise ValueError(f"{manifest.name}: no row fits the budget")
            write_csv_atomic(tmp / manifest.name, copied, header)
            counts[manifest.name] = len(copied)
        old = None
        if out.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent)
            )
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: ``CSV[:ROWS[:COLUMN,...]] ...`` in order (see the
    module)."""
    p = argparse.ArgumentParser(
        prog="python -m robust_brain.data.subset",
        description=__doc__.split("\n\n")[0],
    )
    p.add_argument(
        "manifests", nargs="+", help="CSV[:ROWS[:COLUMN,...]], in order"
    )
    p.add_argument("--out", required=True)
    p.add_argument("--sample_rate", type=int, required=True)
    p.add_argument("--budget_mib", type=float, required=True)
    p.add_argument("--data_root", default=None)
    args = p.parse_args(argv)
    plan = []
    for spec in args.manifests:
        path, _, rest = spec.partition(":")
        rows, _, columns = rest.partition(":")
        plan.append(
            (
                path,
                int(rows) if rows else None,
                columns.split(",") if columns else None,
            )
        )
    counts = pack_subset(
        plan, args.out, args.sample_rate, args.budget_mib, args.data_root
    )
    size = sum(f.stat().st_size for f in Path(args.out).rglob("*.flac"))
    for name, n in counts.items():
        print(f"{name}: {n} rows")
    print(f"{args.out}: {size / 2**20:.1f} MiB of FLAC")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
