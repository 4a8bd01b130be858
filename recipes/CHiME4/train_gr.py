#!/usr/bin/env python3
"""Gradient Remedy on CHiME-4: joint SE + ASR, every rule, dt05/et05 WER.

To run this recipe (the CHiME-4 distribution on disk)::

    python recipes/CHiME4/train_gr.py hparams/gr.yaml \
        --data_folder=/data/CHiME4
    # with the ESPnet-regenerated per-channel clean images, two rules:
    python recipes/CHiME4/train_gr.py hparams/gr.yaml \
        --data_folder=/data/CHiME4 --clean_reference=ext --rules=[MTL,GR]

Preparation (``robust_brain.data.prepare.prepare_chime4``): one manifest
per split of ``train_splits`` (simulated, with clean references),
``valid_splits`` and ``eval_splits`` (1-channel track). Then the stages of
``stages``, each checkpointed in ``<save_folder>/<stage>``:

1. ``asr`` (optional): the ASR pre-trained on the training pairs (noisy and
   clean);
2. ``se`` (optional): the SE front-end pre-trained on the SE loss;
3. ``joint``: for each rule of ``rules``, the SE front-end and the ASR
   trained jointly from the same initialisation (from scratch by default,
   as the official script), same seed and steps, Noam warm-up;
4. ``evaluate``: each split of ``eval_splits``: the joint system's own
   free-running WER (greedy CTC, attention beam search with CTC prefix
   scores) and the enhanced waveform transcribed by the unseen
   ``eval_recognisers``; relative WER vs MTL in ``gr_table.md``.

Authors
 * robust_brain developers 2026
"""

import logging
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.data.prepare import prepare_chime4
from robust_brain.pipelines.gr import check_gr_plan, run_gr_on_splits

logger = logging.getLogger(__name__)


def prepare(hparams):
    """Write (once, on the main process) and return the manifests."""
    splits = list(
        dict.fromkeys(
            [
                *hparams["train_splits"],
                *hparams["valid_splits"],
                *hparams["eval_splits"],
            ]
        )
    )
    for split in hparams["train_splits"]:
        if not split.endswith("_simu"):
            raise ValueError(
                f"train_splits: {split} has no clean reference (the SE loss "
                "needs simulated data)"
            )
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "splits": splits,
        "environments": hparams["environments"],
        "train_channels": hparams["train_channels"],
        "clean_reference": hparams["clean_reference"],
        "wsj0_folder": hparams["wsj0_folder"],
        "sample_rate": hparams["sample_rate"],
    }
    sb.utils.distributed.run_on_main(
        prepare_chime4, kwargs={**kwargs, "skip_prep": hparams["skip_prep"]}
    )
    return prepare_chime4(**kwargs, skip_prep=True)


def main(argv):
    hparams_file, run_opts, overrides = sb.parse_arguments(argv)
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    stages, rules = check_gr_plan(hparams)
    paths = prepare(hparams)
    run_gr_on_splits(
        hparams,
        run_opts,
        paths,
        stages,
        rules,
        "CHiME-4",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
