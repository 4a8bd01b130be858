#!/usr/bin/env python3
"""Gradient Remedy on RATS channel A (8 kHz): joint SE + ASR, every rule.

RATS is an LDC corpus, for licensees only. Build the ESPnet joint
enhancement + ASR data folders of the GR authors' recipe
(``egs2/rats_chA/asr_with_enhancement``: ``wav.scp`` noisy channel A,
``spk1.scp`` clean source, ``text_spk1``), then::

    python recipes/RATS/train_gr.py hparams/gr_rats.yaml \
        --data_folder=/path/to/espnet/egs2/rats_chA/asr_with_enhancement
    # two rules (DEMUCS as the front-end: uncomment its enhancer block)
    python recipes/RATS/train_gr.py hparams/gr_rats.yaml \
        --data_folder=... --rules=[MTL,GR]

Preparation (``robust_brain.data.prepare.prepare_rats``): one manifest per
split of ``train_splits``, ``valid_splits`` and ``eval_splits``. Then the
stages of ``stages``, each checkpointed in ``<save_folder>/<stage>``
(:func:`robust_brain.pipelines.gr.train_gr_systems`): the optional ``asr``
and ``se`` pre-trainings, ``joint`` (every rule of ``rules`` from the same
initialisation, from scratch by default as the official script, same seed
and steps) and ``evaluate``: each split of ``eval_splits`` scored by the
joint system's own free-running decoding at 8 kHz and, upsampled to
16 kHz, by the unseen ``eval_recognisers``; relative WER vs MTL in
``gr_table.md``.

Authors
 * robust_brain developers 2026
"""

import logging
import sys

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.data.prepare import prepare_rats
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
    kwargs = {
        "data_folder": hparams["data_folder"],
        "save_folder": hparams["save_folder"],
        "splits": splits,
        "split_folders": hparams["split_folders"],
        "data_dir": hparams["data_dir"],
        "audio_root": hparams["audio_root"],
        "sample_rate": hparams["sample_rate"],
    }
    sb.utils.distributed.run_on_main(
        prepare_rats, kwargs={**kwargs, "skip_prep": hparams["skip_prep"]}
    )
    return prepare_rats(**kwargs, skip_prep=True)


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
        "RATS channel A",
        data_root=hparams["audio_root"],
    )


if __name__ == "__main__":
    main(sys.argv[1:])
