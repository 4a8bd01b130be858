#!/usr/bin/env python3
"""Mean ± std over seeds of a front-end comparison (printed, markdown).

Reads ``<run>/eval/<set>/utterances.csv`` of each run folder (one per
seed) and pools each system's errors per group of conditions::

    python tools/seed_table.py --set test --recogniser whisper-base \\
        results/d4am_whisper_mini_dry05/{1986,1987,1988}

Default groups: the low-SNR conditions (white, pink, babble at 0 and 5 dB),
clean, and babble at 10 dB; ``--groups "low=white_0dB+pink_0dB;clean=clean"``
sets others. Jointly trained systems (GR) keep their two evaluations apart:
``--part own`` reads each system's decoding of its own output
(``eval/<set>/own``; recogniser ``own-greedy`` or ``own-beam``),
``--part unseen`` the unseen recognisers' (``eval/<set>/unseen``)::

    python tools/seed_table.py --part own --recogniser own-greedy \\
        --reference MTL results/gr_whisper_rules/{2023,2024,2025}

``--cap W --manifest CSV`` re-scores every hypothesis cut to
``ceil(W * duration) + 3`` words (durations from the manifest): a bound
on what a greedy decoder's repetition loop can add, the same for every
system, as a decoder with that length limit would give. ``--eval_dir``
reads another evaluation folder of the runs than ``eval`` (e.g. a
re-evaluation with another decoding). ``--voices piper,festival`` keeps
the utterances of those voice families (the first part of ``spk_id``):
MiniNoisy's TTS test mixes natural voices with robotic espeak ones.
"""

import argparse
import csv
import math
import sys
from pathlib import Path

from robust_brain.evaluation.metrics import word_errors
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


def own_row(row):
    """A joint system's own decoding: recogniser ``own-greedy:GR`` of the
    noisy input is system ``GR`` judged by ``own-greedy``."""
    decoding, _, system = row["recogniser"].partition(":")
    return dict(row, system=system, recogniser=decoding)


def capped(row, words_per_second, durations):
    """The row re-scored with its hypothesis cut to the length bound."""
    duration = durations.get(row["ID"])
    if duration is None:
        raise SystemExit(f"--manifest has no utterance {row['ID']!r}")
    cap = math.ceil(words_per_second * duration) + 3
    hyp = " ".join(row["hyp_norm"].split()[:cap])
    e = word_errors(row["ref_norm"], hyp, normalised=True)
    return dict(row, sub=e.substitutions, ins=e.insertions, n_ref=e.n_ref,
                **{"del": e.deletions})  # fmt: skip


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, one per seed")
    p.add_argument("--set", default="test", help="evaluation set")
    p.add_argument("--recogniser", default="whisper-base")
    p.add_argument("--systems", default="", help="comma-separated order")
    p.add_argument("--groups", default=GROUPS)
    p.add_argument("--title", default="")
    p.add_argument(
        "--part",
        choices=("", "own", "unseen"),
        default="",
        help="joint systems: their own decodings or the unseen judges'",
    )
    p.add_argument("--reference", default="NOIS", help="relative column")
    p.add_argument(
        "--cap",
        type=float,
        default=None,
        help="words per second: hypotheses cut to ceil(cap * duration) + 3",
    )
    p.add_argument("--manifest", default=None, help="durations, for --cap")
    p.add_argument(
        "--eval_dir",
        default="eval",
        help="the runs' evaluation folder (e.g. a re-evaluation's)",
    )
    p.add_argument(
        "--voices",
        default="",
        help="comma-separated voice families (spk_id's first part) to keep",
    )
    args = p.parse_args(argv)
    voices = {v for v in args.voices.split(",") if v}
    durations = {}
    if args.cap is not None:
        if not args.manifest:
            raise SystemExit("--cap needs --manifest (the durations)")
        with open(args.manifest, newline="") as f:
            durations = {
                r["ID"]: float(r["duration"]) for r in csv.DictReader(f)
            }
    rows_by_seed = {}
    names = [Path(run).name for run in args.runs]
    unique = len(set(names)) == len(names)
    for run in args.runs:
        path = Path(run) / args.eval_dir / args.set / args.part
        path = path / "utterances.csv"
        if not path.is_file():
            print(f"no {path}", file=sys.stderr)
            return 1
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        if args.part == "own":
            rows = [own_row(r) for r in rows]
        if voices:
            if rows and "spk_id" not in rows[0]:
                raise SystemExit(f"--voices: {path} has no spk_id column")
            rows = [r for r in rows if r["spk_id"].split("-")[0] in voices]
        if args.cap is not None:
            rows = [capped(r, args.cap, durations) for r in rows]
        rows_by_seed[Path(run).name if unique else str(run)] = rows
    systems = [s for s in args.systems.split(",") if s] or None
    print(
        seed_table(
            rows_by_seed,
            parse_groups(args.groups),
            systems,
            recogniser=args.recogniser,
            reference=args.reference,
            title=args.title or f"{args.set}, judged by {args.recogniser}",
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
