#!/usr/bin/env python3
"""Mean ± std over seeds of a distillation comparison (printed, markdown).

Reads ``<run>/<eval_dir>/<system>.json`` (the probe results of
``recipes/MiniNoisy/distill.py``) of each run folder, one per seed::

    python tools/distill_table.py results/distill_whisper_mini/{1986,1987,1988}

``--eval_dir a,b,c`` names several evaluation folders of each run (its
students probed with several head seeds, ``--probe_seed``): each run's
numbers are averaged over them first, then mean ± std over the runs.
``--versus plain`` prints each system minus plain per seed and on the
mean instead (the paired comparison).

``--curves`` prints each system's training distillation loss per epoch
(mean over the seeds) from ``save/<system>/train_log.txt``; ``--stat``
names the logged statistic, or several tried in order (with a clean view,
``distill_distorted,loss_distill`` is the loss on the student's own input
for every system: plain logs no views).
"""

import argparse
import re
import statistics
import sys
from pathlib import Path

from robust_brain.evaluation.tables import (
    DISTILL_LABELS,
    distill_difference_table,
    distill_seed_table,
)

EPOCH = re.compile(r"epoch: (\d+)")


def _stat(line: str, names) -> re.Match | None:
    """The first of ``names`` logged as ``train <name>: <value>``."""
    for name in names:
        found = re.search(rf"train {re.escape(name)}: ([-+.e0-9]+)", line)
        if found:
            return found
    return None


def curves(runs, stats=("loss_distill",)) -> str:
    """The distillation loss per epoch of each system's training log
    (``save/<system>/train_log.txt``), mean over the runs; ``stats``: the
    logged statistics to read, the first one found on each line."""
    table = {}
    for run in runs:
        for log in sorted(Path(run).glob("save/*/train_log.txt")):
            system = log.parent.name
            for line in log.read_text().splitlines():
                epoch, loss = EPOCH.search(line), _stat(line, stats)
                if epoch and loss:
                    key = (system, int(epoch.group(1)))
                    table.setdefault(key, []).append(float(loss.group(1)))
    epochs = sorted({e for _, e in table})
    systems = sorted({s for s, _ in table}, key=list(DISTILL_LABELS).index)
    lines = [
        "| system | " + " | ".join(f"epoch {e}" for e in epochs) + " |",
        "|---" * (len(epochs) + 1) + "|",
    ]
    for s in systems:
        cells = [
            f"{statistics.fmean(table[s, e]):.3f}" if (s, e) in table else "–"
            for e in epochs
        ]
        lines.append(f"| {DISTILL_LABELS[s]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, one per seed")
    p.add_argument(
        "--eval_dir",
        default="eval",
        help="evaluation folder of each run; comma-separated: several "
        "probes of each run, averaged",
    )
    p.add_argument("--groups", default="clean,in_domain,out_of_domain")
    p.add_argument("--metrics", default="wer,acc", help="wer, cer, acc")
    p.add_argument("--title", default="")
    p.add_argument(
        "--versus",
        metavar="SYSTEM",
        help="each system minus SYSTEM, per seed and on the mean",
    )
    p.add_argument(
        "--curves",
        action="store_true",
        help="the training distillation loss per epoch instead",
    )
    p.add_argument(
        "--stat",
        default="loss_distill",
        help="with --curves: the logged statistic (comma-separated: the "
        "first one found on each line)",
    )
    args = p.parse_args(argv)
    if args.curves:
        print(curves(args.runs, args.stat.split(",")))
        return 0
    names = args.eval_dir.split(",")
    dirs = [[Path(run) / name for name in names] for run in args.runs]
    missing = [str(d) for run in dirs for d in run if not d.is_dir()]
    if missing:
        print(f"no {', '.join(missing)}", file=sys.stderr)
        return 1
    seeds = [Path(run).name for run in args.runs]
    probes = f" ({len(names)} probes each)" if len(names) > 1 else ""
    groups, metrics = args.groups.split(","), args.metrics.split(",")
    if args.versus:
        title = args.title or (
            f"minus {DISTILL_LABELS.get(args.versus, args.versus)}, "
            f"per seed{probes}"
        )
        print(
            distill_difference_table(
                dirs, args.versus, groups, metrics, seeds, title
            )
        )
        return 0
    title = args.title or (
        f"probes, mean ± std over seeds {', '.join(seeds)}{probes}"
    )
    print(distill_seed_table(dirs, groups, metrics, title))
    return 0


if __name__ == "__main__":
    sys.exit(main())
