#!/usr/bin/env python3
"""SI-SDR(i) of a GPIT recipe's separator checkpoint on WHAMR!'s four
mixtures (anechoic / + noise / reverberant / + noise), rebuilt from the
test manifest's components: where a separator stands between the clean
dynamic-mixing curriculum and the noisy reverberant task.

    python tools/separator_conditions.py hparams/gpit_whisper_mini.yaml \\
        results/gpit_whisper_mini/1234/save/pretrain_dm [--max_items=100]

The second argument is a stage folder (its newest ``save/CKPT*``) or a
checkpoint folder holding ``separator.ckpt``; further ``--key=value``
override the hparams (as the recipe's). Prints a markdown table.
"""

import argparse
import sys
from pathlib import Path

import torch
from hyperpyyaml import load_hyperpyyaml

from robust_brain.evaluation.separation import (
    WHAMR_CONDITIONS,
    condition_sisdri,
)


def checkpoint_file(folder: Path) -> Path:
    """``separator.ckpt`` of a checkpoint folder or of a stage's newest."""
    if (folder / "separator.ckpt").is_file():
        return folder / "separator.ckpt"
    ckpts = sorted((folder / "save").glob("CKPT*/separator.ckpt"))
    if not ckpts:
        raise FileNotFoundError(f"{folder}: no separator.ckpt (nor save/CKPT*)")
    return ckpts[-1]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("hparams")
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--max_items", type=int, default=100)
    args, overrides = parser.parse_known_args(argv)
    # YAML, as the recipe's --key=value: numbers stay numbers
    overrides = "\n".join(
        ": ".join(o.lstrip("-").split("=", 1)) for o in overrides
    )
    with open(args.hparams, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    separator = hparams["separator"].eval()
    path = checkpoint_file(args.checkpoint)
    separator.load_state_dict(torch.load(path, map_location="cpu"))
    result = condition_sisdri(
        separator,
        hparams["test_csv"],
        WHAMR_CONDITIONS,
        data_root=hparams["data_folder"],
        num_spks=hparams["num_spks"],
        sample_rate=hparams["sample_rate"],
        resample=hparams["resample_audio"],
        max_items=args.max_items,
    )
    n = next(iter(result.values()))["n"]
    print(f"{path} on {Path(hparams['test_csv']).name}, first {n} mixtures")
    print("\n| mixture | SI-SDR (dB) | SI-SDRi (dB) |\n|---|---|---|")
    for name, r in result.items():
        print(f"| {name} | {r['si_sdr']:.1f} | {r['si_sdri']:.1f} |")
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
