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

import copy
import csv
import logging
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.data.prepare import prepare_chime4
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.methods.d4am import write_results_summary
from robust_brain.methods.gr import (
    check_rule,
    evaluate_joint_systems,
    run_rules,
    train_joint_stage,
)
from robust_brain.methods.proxy import train_proxy_stage, train_tokenizer

logger = logging.getLogger(__name__)

STAGES = ("asr", "se", "joint", "evaluate")


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


def merged_transcripts(paths, splits, out):
    """One CSV of the training transcripts (for the tokenizer)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ID", "wrd"])
        for split in splits:
            with open(paths[split], newline="") as g:
                for row in csv.DictReader(g):
                    writer.writerow([row["ID"], row["wrd"]])
    return out


def dataio_prepare(hparams, paths, tokenizer):
    """Training, validation and ASR pre-training streams."""
    text = TokenEncoder(tokenizer)
    root = hparams["data_folder"]
    train = []
    for split in hparams["train_splits"]:
        train += read_rows(paths[split], root)
    valid = []
    for split in hparams["valid_splits"]:
        valid += read_rows(paths[split], root)
    valid = valid[: hparams["valid_max_utterances"]]
    as_clean = [dict(r, noisy_wav=r["clean_wav"]) for r in train]
    return {
        "train": SpeechStream(train, text_pipeline=text, name="train"),
        "valid": SpeechStream(valid, text_pipeline=text, name="valid"),
        "asr_train": SpeechStream(
            train + as_clean, text_pipeline=text, name="asr"
        ),
    }


def loader(hparams, batch_size, shuffle):
    """DataLoader options."""
    return {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": hparams["num_workers"],
    }


def stage_asr(hparams, run_opts, data, tokenizer):
    """Pre-train (or resume, or reload) the ASR."""
    return train_proxy_stage(
        hparams["asr"],
        tokenizer,
        data["asr_train"],
        data["valid"],
        folder=Path(hparams["save_folder"]) / "asr",
        epochs=hparams["asr_epochs"],
        opt_class=hparams["asr_opt_class"],
        run_opts=run_opts,
        lr_annealing=hparams["asr_annealing"],
        train_loader_kwargs=loader(hparams, hparams["asr_batch_size"], True),
        valid_loader_kwargs=loader(hparams, hparams["asr_batch_size"], False),
        extra_hparams={"max_grad_norm": hparams["asr_max_grad_norm"]},
        selection=hparams["asr_ckpt_selection"],
    )


def joint_stage(hparams, run_opts, data, tokenizer, rule, enhancer, asr, **kw):
    """Train (or resume, or reload) one rule, or the SE pre-training."""
    se_only = kw.get("se_only", False)
    epochs = hparams["se_epochs"] if se_only else hparams["joint_epochs"]
    update = hparams["update_asr_normalizer"]
    if update == "auto":
        update = kw.get("asr_from_scratch", True)
    scheduler = None
    if not se_only and hparams["lr_scheduler"] is not None:
        scheduler = copy.deepcopy(hparams["lr_scheduler"])  # fresh per rule
    return train_joint_stage(
        rule,
        enhancer,
        None if se_only else asr,
        data["train"],
        data["valid"],
        folder=Path(hparams["save_folder"]) / ("SE" if se_only else rule),
        epochs=epochs if kw.get("train", True) else 0,
        opt_class=hparams["se_opt_class" if se_only else "joint_opt_class"],
        se_loss=hparams["se_loss"],
        se_weight=hparams["se_weight"],
        losses=("se",) if se_only else ("asr", "se"),
        tokenizer=tokenizer,
        run_opts=run_opts,
        remedy_k=hparams["remedy_k"],
        remedy_per_tensor=hparams["remedy_per_tensor"],
        update_asr_normalizer=bool(update),
        lr_scheduler=scheduler,
        train_loader_kwargs=loader(hparams, hparams["batch_size"], True),
        valid_loader_kwargs=loader(hparams, hparams["batch_size"], False),
        ckpt_selection=hparams["ckpt_selection"],
        extra_hparams={
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
            "log_task_gradients": hparams["log_task_gradients"],
        },
    )


def stage_evaluate(hparams, paths, systems, tokenizer, device):
    """Every evaluation split x systems; the tables."""
    for split in hparams["eval_splits"]:
        _, table = evaluate_joint_systems(
            paths[split],
            systems,
            tokenizer,
            hparams["eval_recognisers"],
            Path(hparams["eval_folder"]) / split,
            data_root=hparams["data_folder"],
            own_decodings=hparams["eval_own_decodings"],
            beam_size=hparams["eval_beam_size"],
            beam_ctc_weight=hparams["eval_beam_ctc_weight"],
            max_decode_ratio=hparams["eval_max_decode_ratio"],
            input_level_dbfs=hparams["eval_input_level_dbfs"],
            max_utterances=hparams["eval_max_utterances"],
            conditions=hparams["eval_conditions"],
            cache=hparams["eval_cache"],
            batch_size=hparams["eval_batch_size"],
            device=device,
            title=f"CHiME-4 {split}, seed {hparams['seed']}",
        )
        print(table)
    write_results_summary(
        hparams["eval_folder"],
        Path(hparams["output_folder"]) / "results.md",
        table_name="gr_table.md",
    )


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
    stages = [s.lower() for s in hparams["stages"]]
    unknown = sorted(set(stages) - set(STAGES))
    if unknown:
        raise ValueError(f"unknown stages {unknown}; choose among {STAGES}")
    if hparams["update_asr_normalizer"] not in ("auto", True, False):
        raise ValueError(
            "update_asr_normalizer must be auto, True or False: "
            f"{hparams['update_asr_normalizer']!r}"
        )
    rules = [check_rule(r) for r in hparams["rules"]]
    paths = prepare(hparams)
    save = Path(hparams["save_folder"])
    tokenizer = train_tokenizer(
        save / "tokenizer",
        merged_transcripts(
            paths, hparams["train_splits"], save / "tokenizer_text.csv"
        ),
        hparams["asr_vocab_size"],
        hparams["asr_token_type"],
    )
    data = dataio_prepare(hparams, paths, tokenizer)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()

    asr = hparams["asr"]
    if "asr" in stages:
        asr = stage_asr(hparams, run_opts, data, tokenizer)
    enhancer = hparams["enhancer"]
    if "se" in stages:
        joint_stage(
            hparams,
            run_opts,
            data,
            tokenizer,
            "MTL",
            enhancer,
            None,
            se_only=True,
        )
    systems = {}
    if "joint" in stages or "evaluate" in stages:

        def train_stage(rule, enh, model):
            return joint_stage(
                hparams,
                run_opts,
                data,
                tokenizer,
                rule,
                enh,
                model,
                train="joint" in stages,
                asr_from_scratch="asr" not in stages,
            )

        systems = run_rules(
            rules, enhancer, asr, train_stage, seed=hparams["seed"]
        )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        stage_evaluate(hparams, paths, systems, tokenizer, device)


if __name__ == "__main__":
    main(sys.argv[1:])
