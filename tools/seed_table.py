#!/usr/bin/env python3
"""Mean ± std over seeds of a front-end comparison (printed, markdown).

Reads ``<run>/eval/<set>/utterances.csv`` of each run folder (one per
seed) and pools each system's errors per group of conditions::

    python tools/seed_table.py --set test --recogniser whisper-base \\
        results/d4am_whisper_mini_dry05/{1986,1987,1988}

Default groups: the low-SNR conditions (white, pink, babble at 0 and 5 dB),
clean, and babble at 10 dB; ``--groups "low=white_0dB+pink_0dB;clean=clean"``
sets others.
"""

import argparse
import csv
import sys
from pathlib import Path

from robust_brain.evaluation.tables import seed_table

LOW = "white_0dB+white_5dB+pink_0dB+pink_5dB+babble_0dB+babble_5dB"
GROUPS = f"low SNR={LOW};clean=clean;babble 10 dB=babble_10dB"


def parse_groups(text):
    """``label=c1+c2;label2=c3`` -> {label: [c1, c2], label2: [c3]}."""
    groups = {}
    for part in filter(None, text.split(";")):
        label, _, conditions = part.partition("=")
        if not conditions:
            raise SystemExit(f"--groups: {part!r} is not label=cond+cond")
        groups[label.strip()] = conditions.split("+")
    return groups


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, one per seed")
    p.add_argument("--set", default="test", help="evaluation set")
    p.add_argument("--recogniser", default="whisper-base")
    p.add_argument("--systems", default="", help="comma-separated order")
    p.add_argument("--groups", default=GROUPS)
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    rows_by_seed = {}
    names = [Path(run).name for run in args.runs]
    unique = len(set(names)) == len(names)
    for run in args.runs:
        path = Path(run) / "eval" / args.set / "utterances.csv"
        if not path.is_file():
            print(f"no {path}", file=sys.stderr)
            return 1
        with open(path, newline="") as f:
            key = Path(run).name if unique else str(run)
            rows_by_seed[key] = list(csv.DictReader(f))
    systems = [s for s in args.systems.split(",") if s] or None
    print(
        seed_table(
            rows_by_seed,
            parse_groups(args.groups),
            systems,
            recogniser=args.recogniser,
            title=args.title or f"{args.set}, judged by {args.recogniser}",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
