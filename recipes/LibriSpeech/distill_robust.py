#!/usr/bin/env python3
"""RobustDistiller (Guimarães et al., ICASSP 2023) on LibriSpeech.

A DistilHuBERT student (the teacher's CNN + 2 Transformer layers, copied
from the teacher, + heads predicting teacher layers 4, 8, 12) learns from a
FROZEN hub teacher (WavLM Base+ by default; HuBERT Base or wav2vec 2.0 Base
by editing the ``teacher`` block of the hparams) that hears the CLEAN utterance,
while the student hears it corrupted (noise / reverberation / both /
clean, 25 % each) and an enhancement head (training only) predicts a mask
on the noisy STFT magnitude from the student's CNN features::

    python recipes/LibriSpeech/distill_robust.py hparams/robustdistiller.yaml \
        --data_folder=/data/LibriSpeech --dns_folder=/data/DNS-Challenge

Stages (``stages``): ``distill`` (each of ``systems``, in
``<save_folder>/<system>``, resumable) and ``evaluate`` (frozen features +
small trained heads, CTC and first-word classification, on test-clean:
clean, in-domain and out-of-domain distortions; ``results.md``).

Authors
 * robust_brain developers 2026
"""

import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.pipelines.distill import run_hub_recipe
from robust_brain.stages import check_stages

STAGES = ("distill", "evaluate")

if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    stages = check_stages(hparams["stages"], STAGES)
    table = run_hub_recipe(hparams, run_opts, stages)
    if table:
        print(table)
