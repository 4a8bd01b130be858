#!/usr/bin/env python3
"""Distortion-robust distillation on the offline MiniNoisy corpus.

To run this recipe (after generating the corpus)::

    python recipes/MiniNoisy/distill.py hparams/robustdistiller_mini.yaml
    python recipes/MiniNoisy/distill.py hparams/cdm_dat_mini.yaml
    # the five systems in one run:
    python recipes/MiniNoisy/distill.py hparams/cdm_dat_mini.yaml \
        --systems=[plain,robustdistiller,cdm1,cdm2,cdm2_dat]
    # a REAL pretrained teacher: the Whisper base encoder (converted from
    # the pip package), the five systems, students <= 25 % of its size
    python recipes/MiniNoisy/distill.py hparams/distill_whisper_mini.yaml

Stages (``stages``), each checkpointed in ``<save_folder>/<stage>``:

1. ``teacher``: a SentencePiece tokenizer and a Conformer CTC/attention
   encoder trained on MiniNoisy clean + noisy speech (the D4AM proxy
   recipe: ``robust_brain.asr_training``), then FROZEN: the teacher;
   a pretrained ``teacher_model`` (Whisper, a hub SSL model) skips it;
2. ``distill``: each system of ``systems`` (``plain``,
   ``robustdistiller``, ``cdm1``, ``cdm2``, ``cdm2_dat``), a fresh
   2-layer student initialised from the teacher, in ``<save>/<system>``;
3. ``evaluate``: frozen features + small trained heads (CTC, first-word
   classification) on the clean / in-domain / out-of-domain groups of
   ``test_pairs.csv``; ``<output_folder>/results.md``.

Both hparams files write to the same folder by default, so their systems
add up in one table.

Authors
 * robust_brain developers 2026
"""

import logging
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.asr_training import train_proxy_stage, train_tokenizer
from robust_brain.data.manifest import write_csv_atomic
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.evaluation.probes import split_groups
from robust_brain.methods.distill import check_systems
from robust_brain.models.asr import ConformerASR
from robust_brain.models.student import LayerTeacher
from robust_brain.pipelines.distill import (
    distill_systems,
    evaluate_from_hparams,
)
from robust_brain.stages import check_stages, loader_kwargs

logger = logging.getLogger(__name__)

STAGES = ("teacher", "distill", "evaluate")


def first_rows(hparams, name, limit_key):
    """Rows of ``<data_folder>/<name>.csv`` (the first N when set)."""
    path = Path(hparams["data_folder"]) / f"{name}.csv"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found (data_folder?)")
    rows = read_rows(path)
    limit = hparams[limit_key]
    return rows[: int(limit)] if limit else rows


def tokenizer_text(hparams):
    """The tokenizer's transcripts (a trained teacher's sentences: it
    shares the probes' tokenizer)."""
    path = Path(hparams["save_folder"]) / "tokenizer_text.csv"
    rows = first_rows(hparams, "train_clean", "tokenizer_max_utterances")
    if sb.utils.distributed.if_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = [{"ID": r["ID"], "wrd": r["wrd"]} for r in rows]
        write_csv_atomic(path, text, ["ID", "wrd"])
    sb.utils.distributed.ddp_barrier()
    return path


def stage_teacher(hparams, run_opts, tokenizer, train):
    """Train (or resume, or reload) the offline teacher; frozen."""
    text = TokenEncoder(tokenizer)
    clean = first_rows(hparams, "train_clean", "teacher_max_utterances")
    pairs = first_rows(hparams, "train_pairs", "teacher_max_utterances")
    as_pairs = [dict(r, noisy_wav=r["wav"], clean_wav="") for r in clean]
    train_set = SpeechStream(pairs + as_pairs, text_pipeline=text, name="t")
    valid = SpeechStream(
        first_rows(hparams, "valid_pairs", "valid_max_utterances"),
        text_pipeline=text,
        name="valid",
    )

    return train_proxy_stage(
        hparams["teacher_model"],
        tokenizer,
        train_set,
        valid,
        folder=Path(hparams["save_folder"]) / "proxy",
        epochs=hparams["teacher_epochs"] if train else 0,
        opt_class=hparams["teacher_opt_class"],
        run_opts=run_opts,
        lr_annealing=hparams["teacher_annealing"],
        train_loader_kwargs=loader_kwargs(
            hparams, hparams["teacher_batch_size"], True
        ),
        valid_loader_kwargs=loader_kwargs(
            hparams, hparams["teacher_batch_size"], False
        ),
        extra_hparams={"max_grad_norm": hparams["teacher_max_grad_norm"]},
        selection=hparams["teacher_ckpt_selection"],
    )


def teacher_model(hparams, run_opts, tokenizer, stages):
    """The frozen teacher: a ``teacher_model`` ConformerASR is trained here
    (stage ``teacher``); any other (Whisper, a hub SSL model) is already
    pretrained and used as loaded."""
    model = hparams["teacher_model"]
    if isinstance(model, ConformerASR):
        return stage_teacher(hparams, run_opts, tokenizer, "teacher" in stages)
    if "teacher" in stages:
        raise ValueError(
            f"stages: 'teacher' trains a ConformerASR, but teacher_model is "
            f"a pretrained {type(model).__name__}: drop it from stages"
        )
    return model


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
    stages = check_stages(hparams["stages"], STAGES)
    systems = check_systems(hparams["systems"])
    for name in ("rd_distorter", "cdm_distorter"):
        hparams[name].check()  # a bad manifest fails now, by name
    tokenizer = train_tokenizer(
        Path(hparams["save_folder"]) / "tokenizer",
        tokenizer_text(hparams),
        hparams["tokenizer_vocab_size"],
        hparams["tokenizer_token_type"],
    )
    teacher = LayerTeacher(teacher_model(hparams, run_opts, tokenizer, stages))
    if not {"distill", "evaluate"} & set(stages):
        return
    students = distill_systems(
        hparams,
        run_opts,
        teacher,
        first_rows(hparams, "train_clean", "distill_max_utterances"),
        first_rows(hparams, "valid_clean", "valid_max_utterances"),
        systems,
        train="distill" in stages,
    )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        groups = split_groups(
            first_rows(hparams, "test_pairs", "eval_max_utterances"),
            hparams["eval_groups"],
            hparams["eval_max_per_condition"],
        )
        device = run_opts.get("device") or "cpu"
        table = evaluate_from_hparams(
            hparams,
            students,
            teacher,
            tokenizer,
            first_rows(hparams, "train_clean", "probe_train_utterances"),
            groups,
            device=device,
            title=f"MiniNoisy probes, seed {hparams['seed']}",
        )
        print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
