#!/usr/bin/env python3
"""Gradient Remedy on the offline MiniNoisy corpus: ASR -> SE -> rules.

To run this recipe (after generating the corpus)::

    python -m robust_brain.data.generate --corpus mininoisy --out data
    python recipes/MiniNoisy/train_gr.py hparams/gr_mini.yaml \
        --data_folder=data/MiniNoisy
    # two rules, DEMUCS as the front-end:
    python recipes/MiniNoisy/train_gr.py hparams/gr_mini.yaml \
        --rules=[MTL,GR] --front_end=demucs

Stages (``stages``), each checkpointed in ``<save_folder>/<stage>``:

1. ``asr``: a SentencePiece tokenizer and a small Conformer CTC/attention
   ASR pre-trained on the clean and noisy training pairs;
2. ``se``: the SE front-end pre-trained alone on the SE loss;
3. ``joint``: for each rule of ``rules`` (MTL, PCGrad, GR-angle, GR-scale,
   GR), copies of the two pre-trained models trained jointly (the ASR
   reads the enhanced waveform) with the rule on the SE parameters, same
   seed, same steps; per-step angle / ratio / cosine in
   ``<rule>/surgery_log.csv``;
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
import torch
from hyperpyyaml import load_hyperpyyaml

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


def loader(hparams, batch_size, shuffle):
    """DataLoader options."""
    return {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": hparams["num_workers"],
    }


def stage_asr(hparams, run_opts, data, tokenizer, train):
    """Pre-train (or resume, or reload) the ASR."""
    return train_proxy_stage(
        hparams["asr"],
        tokenizer,
        data["asr_train"],
        data["valid"],
        folder=Path(hparams["save_folder"]) / "asr",
        epochs=hparams["asr_epochs"] if train else 0,
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
    name = "SE" if se_only else rule
    epochs = hparams["se_epochs"] if se_only else hparams["joint_epochs"]
    return train_joint_stage(
        rule,
        enhancer,
        None if se_only else asr,
        data["train"],
        data["valid"],
        folder=Path(hparams["save_folder"]) / name,
        epochs=epochs if kw.get("train", True) else 0,
        opt_class=hparams["se_opt_class" if se_only else "joint_opt_class"],
        se_loss=hparams["se_loss"],
        se_weight=hparams["se_weight"],
        losses=("se",) if se_only else ("asr", "se"),
        tokenizer=tokenizer,
        run_opts=run_opts,
        remedy_k=hparams["remedy_k"],
        remedy_per_tensor=hparams["remedy_per_tensor"],
        update_asr_normalizer=hparams["update_asr_normalizer"],
        train_loader_kwargs=loader(hparams, hparams["batch_size"], True),
        valid_loader_kwargs=loader(hparams, hparams["batch_size"], False),
        ckpt_selection=hparams["ckpt_selection"],
        extra_hparams={
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
            "log_task_gradients": hparams["log_task_gradients"],
        },
    )


def stage_evaluate(hparams, systems, tokenizer, device):
    """Score every system on every evaluation set; write the tables."""
    for name in hparams["eval_sets"]:
        manifest = Path(hparams["data_folder"]) / f"{name}_pairs.csv"
        if not manifest.exists():
            raise FileNotFoundError(f"eval_sets: {name}: no {manifest}")
        _, table = evaluate_joint_systems(
            manifest,
            systems,
            tokenizer,
            hparams["eval_recognisers"],
            Path(hparams["eval_folder"]) / name,
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
            title=f"MiniNoisy {name}, seed {hparams['seed']}",
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
    rules = [check_rule(r) for r in hparams["rules"]]
    save = Path(hparams["save_folder"])
    tokenizer = train_tokenizer(
        save / "tokenizer",
        _manifest(hparams, "train_annotation"),
        hparams["asr_vocab_size"],
        hparams["asr_token_type"],
    )
    data = dataio_prepare(hparams, tokenizer)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()

    asr = stage_asr(hparams, run_opts, data, tokenizer, train="asr" in stages)
    enhancer = hparams["enhancer"]
    joint_stage(
        hparams,
        run_opts,
        data,
        tokenizer,
        "MTL",
        enhancer,
        None,
        se_only=True,
        train="se" in stages,
    )
    systems = {}
    if hparams["eval_include_init"]:
        systems["INIT"] = (enhancer, asr)
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
            )

        systems.update(
            run_rules(rules, enhancer, asr, train_stage, seed=hparams["seed"])
        )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        stage_evaluate(hparams, systems, tokenizer, device)


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    main(sys.argv[1:])
