"""Offline reproduction: run each landed recipe against its baselines and
print the tables (the README's main job; ``bash tools/reproduce.sh``).

Each recipe runs as a subprocess with its own output folder under
``--out``; a finished run is not repeated (SpeechBrain resumes from its
checkpoints, and a run whose ``results_file`` exists is read back), so an
interrupted reproduction continues where it stopped.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_RULES = ("sum", "grid", "gclb", "srpr", "d4am", "pcgrad", "gr")


def run(script, hparams, out, device, extra=()):
    """Run one recipe (skipped when its results file exists)."""
    results = out / "results.json"
    if not results.exists():
        cmd = [
            sys.executable,
            str(ROOT / script),
            str(ROOT / hparams),
            f"--output_folder={out}",
            f"--device={device}",
            *extra,
        ]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads(results.read_text())


def template(out, device, seeds):
    """Template recipe: every rule on the synthetic tone-word task."""
    rows = {}
    for rule in TEMPLATE_RULES:
        accs = [
            run(
                "recipes/Template/train_dual_loss.py",
                "hparams/template_dual_loss.yaml",
                out / "template" / rule / str(seed),
                device,
                (f"--rule_name={rule}", f"--seed={seed}"),
            )
            for seed in seeds
        ]
        rows[rule] = accs
    lines = [
        "Template (synthetic tone-words, noise_std 2.0): test accuracy (%) "
        f"of the frozen proxy and an unseen classifier, mean of "
        f"{len(seeds)} seed(s)",
        "",
        "| rule | proxy NOIS | proxy ENH | unseen NOIS | unseen ENH |",
        "|---|---|---|---|---|",
    ]
    for rule, accs in rows.items():

        def mean(key, accs=accs):
            return sum(a[key] for a in accs) / len(accs)

        lines.append(
            f"| {rule} | {mean('proxy_NOIS'):.1f} | {mean('proxy_ENH'):.1f} "
            f"| {mean('unseen_NOIS'):.1f} | {mean('unseen_ENH'):.1f} |"
        )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=ROOT / "results/repro")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"[reproduce] device: {device}", flush=True)
    tables = [template(args.out, device, args.seeds)]
    report = "\n\n".join(tables)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(report + "\n")
    print("\n" + report)


if __name__ == "__main__":
    main()
