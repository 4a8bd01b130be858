"""Generate the offline corpora MiniNoisy and MiniWHAMR.

Usage::

    python -m robust_brain.data.generate --corpus all --out data/ \\
        --size 1.0 --seed 1234 [--workers 2] [--noise_csv noises.csv]

``--size 1.0`` gives about 2 h of MiniNoisy training speech; the build is
deterministic by seed, cached (re-running with the same arguments skips a
finished corpus) and resumable (an interrupted run continues). See
:mod:`robust_brain.data.mini_corpora` for the layout.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from robust_brain.data.mini_corpora import generate


def format_stats(name: str, stats: dict) -> str:
    """Readable summary of a corpus' statistics.

    Arguments
    ---------
    name : str
        Corpus name.
    stats : dict
        As returned by the builders.

    Returns
    -------
    str
        One line per manifest, then size and build time.

    Example
    -------
    >>> s = {"manifests": {"a.csv": {"rows": 3, "hours": 0.5}},
    ...      "bytes": 2 ** 30, "seconds": 61.0}
    >>> print(format_stats("X", s))
    X:
      a.csv                         3 rows    0.50 h
      size 1.07 GB, built in 61 s
    """
    lines = [f"{name}:"]
    for manifest, m in stats["manifests"].items():
        lines.append(
            f"  {manifest:<24}{m['rows']:>8} rows {m['hours']:>7.2f} h"
        )
    lines.append(
        f"  size {stats['bytes'] / 1e9:.2f} GB, built in "
        f"{stats['seconds']:.0f} s"
    )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point.

    Arguments
    ---------
    argv : sequence of str, optional
        Arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        Exit status.
    """
    p = argparse.ArgumentParser(
        prog="python -m robust_brain.data.generate",
        description="Build the offline MiniNoisy / MiniWHAMR corpora.",
    )
    p.add_argument(
        "--corpus", choices=("mininoisy", "miniwhamr", "all"), default="all"
    )
    p.add_argument("--out", default="data", help="output folder")
    p.add_argument(
        "--size",
        type=float,
        default=1.0,
        help="size factor; 1.0 is ~2 h of MiniNoisy training speech",
    )
    p.add_argument("--seed", type=int, default=1234)
    p.add_argument("--workers", type=int, default=2, help="processes")
    p.add_argument(
        "--noise_csv",
        default=None,
        help="extra noise recordings (CSV with ID,duration,wav columns); "
        "each is split in time 80/10/10 into train/valid/test",
    )
    p.add_argument(
        "--noise_root",
        default=None,
        help="replaces $data_root in --noise_csv (default: its folder)",
    )
    p.add_argument(
        "--no_real",
        action="store_true",
        help="leave out the real-speech (Asterisk prompts) test set",
    )
    args = p.parse_args(argv)
    t0 = time.time()

    def log(msg: str) -> None:
        print(f"[{time.time() - t0:6.0f} s] {msg}", flush=True)

    result = generate(
        args.corpus,
        args.out,
        size=args.size,
        seed=args.seed,
        workers=args.workers,
        noise_csv=args.noise_csv,
        noise_root=args.noise_root,
        real=not args.no_real,
        log=log,
    )
    for name, stats in result.items():
        print(format_stats(name, stats))
    print(f"total time {time.time() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
