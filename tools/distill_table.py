#!/usr/bin/env python3
"""Mean ± std over seeds of a distillation comparison (printed, markdown).

Reads ``<run>/<eval_dir>/<system>.json`` (the probe results of
``recipes/MiniNoisy/distill.py``) of each run folder, one per seed::

    python tools/distill_table.py results/distill_whisper_mini/{1986,1987,1988}
"""

import argparse
import sys
from pathlib import Path

from robust_brain.evaluation.tables import distill_seed_table


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="run folders, one per seed")
    p.add_argument("--eval_dir", default="eval")
    p.add_argument("--groups", default="clean,in_domain,out_of_domain")
    p.add_argument("--metrics", default="wer,acc", help="wer, cer, acc")
    p.add_argument("--title", default="")
    args = p.parse_args(argv)
    dirs = [Path(run) / args.eval_dir for run in args.runs]
    missing = [str(d) for d in dirs if not d.is_dir()]
    if missing:
        print(f"no {', '.join(missing)}", file=sys.stderr)
        return 1
    seeds = ", ".join(Path(run).name for run in args.runs)
    title = args.title or f"probes, mean ± std over seeds {seeds}"
    print(
        distill_seed_table(
            dirs,
            args.groups.split(","),
            args.metrics.split(","),
            title,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
