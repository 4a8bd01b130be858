#!/usr/bin/env python3
"""Gradient Remedy on the offline MiniNoisy corpus: ASR -> SE -> rules.

To run this recipe (after generating the corpus)::

    python -m robust_brain.data.generate --corpus mininoisy --out data
    python recipes/MiniNoisy/train_gr.py hparams/gr_mini.yaml \
        --data_folder=data/MiniNoisy
    # two rules (DEMUCS as the front-end: uncomment its enhancer block)
    python recipes/MiniNoisy/train_gr.py hparams/gr_mini.yaml \
        --rules=[MTL,GR]

Stages (``stages``), each checkpointed in ``<save_folder>/<stage>``; the
ASR and SE pre-trainings are part of this recipe (``pretrained: [asr,
se]``): left out of ``stages``, they are reloaded from their folders:

1. ``asr``: a SentencePiece tokenizer and a small Conformer CTC/attention
   ASR pre-trained on the clean and noisy training pairs;
2. ``se``: the SE front-end pre-trained alone on the SE loss;
3. ``joint``: for each rule of ``rules`` (MTL, PCGrad, GR-angle, GR-scale,
   GR), copies of the two pre-trained models trained jointly (the ASR
   reads the enhanced waveform) with the rule on the SE parameters, same
   seed, same steps; per-step angle / ratio / cosine in
   ``<rule>/surgery_log.csv``; each system's front-end in
   ``<save_folder>/pretrained/<name>`` (``Enhancer.from_hparams``);
4. ``evaluate``: for each set of ``eval_sets``, each system's own
   free-running WER (greedy CTC, attention beam search) and its enhanced
   waveform scored by the unseen ``eval_recognisers``; the table
   (relative WER vs MTL) in ``<eval_folder>/<set>/gr_table.md`` and
   ``results.md``.

Authors
 * robust_brain developers 2026
"""

import logging
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.asr_training import train_tokenizer
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.evaluation.joint import evaluate_gr_sets
from robust_brain.pipelines.gr import (
    check_gr_plan,
    train_gr_systems,
    write_frontends,
)

logger = logging.getLogger(__name__)


def _manifest(hparams, key):
    path = Path(hparams["data_folder"]) / hparams[key]
    if not path.is_file():
        raise FileNotFoundError(f"{key}: manifest not found: {path}")
    return path


def dataio_prepare(hparams, tokenizer):
    """Streams of the MiniNoisy pair manifests (the generator wrote them)."""
    text = TokenEncoder(tokenizer)
    train = read_rows(_manifest(hparams, "train_annotation"))
    train = train[: hparams["train_max_utterances"]]
    valid = read_rows(_manifest(hparams, "valid_annotation"))
    valid = valid[: hparams["valid_max_utterances"]]
    # the ASR is pre-trained on clean AND noisy speech
    as_clean = [dict(r, noisy_wav=r["clean_wav"]) for r in train]
    return {
        "train": SpeechStream(train, text_pipeline=text, name="train"),
        "valid": SpeechStream(valid, text_pipeline=text, name="valid"),
        "asr_train": SpeechStream(
            train + as_clean, text_pipeline=text, name="asr"
        ),
    }


def eval_manifests(hparams):
    """``eval_sets`` -> their pair manifests (checked before training)."""
    manifests = {}
    for name in hparams["eval_sets"]:
        manifest = Path(hparams["data_folder"]) / f"{name}_pairs.csv"
        if not manifest.is_file():
            raise FileNotFoundError(f"eval_sets: {name}: no {manifest}")
        manifests[name] = manifest
    return manifests


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
    manifests = eval_manifests(hparams) if "evaluate" in stages else {}
    if "tokenizer" in hparams:  # a pretrained recogniser's own (Whisper)
        tokenizer = hparams["tokenizer"]
    else:  # the offline Conformer's SentencePiece, trained here
        tokenizer = train_tokenizer(
            Path(hparams["save_folder"]) / "tokenizer",
            _manifest(hparams, "train_annotation"),
            hparams["asr_vocab_size"],
            hparams["asr_token_type"],
        )
    data = dataio_prepare(hparams, tokenizer)
    systems = train_gr_systems(
        hparams, run_opts, data, tokenizer, stages, rules
    )
    write_frontends(hparams, systems, stages)
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        device = run_opts.get("device") or sb.utils.distributed.infer_device()
        evaluate_gr_sets(
            hparams, manifests, systems, tokenizer, device, "MiniNoisy"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
