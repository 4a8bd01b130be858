#!/usr/bin/env python3
"""Transcription-free fine-tuning of a speech separator (GPIT + L_AE).

Ravenscroft et al. (Interspeech 2024), docs/methods.md, GPIT. To run this
recipe::

    # real WHAMR! (16 kHz, max), frozen wav2vec 2.0 960 h CTC encoder
    python recipes/WHAMR/train_gpit.py hparams/gpit.yaml --data_folder=<WHAMR!>
    # the same with the Whisper encoder
    python recipes/WHAMR/train_gpit.py hparams/gpit_whisper.yaml \
        --data_folder=<WHAMR!>
    # offline: MiniWHAMR, with a small CTC encoder trained on MiniNoisy first
    python recipes/WHAMR/train_gpit.py hparams/gpit_mini.yaml

Stages (``stages``), each checkpointed in ``<save_folder>/<stage>``:

1. ``encoder`` (offline only): the "pretrained ASR encoder", a small
   Conformer CTC/attention model trained on MiniNoisy, then frozen;
2. ``pretrain``: the separator trained with SI-SDR uPIT (or loaded from
   ``pretrained_separator``): first ``dynamic_mixing_epochs`` on clean
   mixtures made on the fly from the training sources (``pretrain_dm``),
   then ``pretrain_epochs`` on the corpus' noisy reverberant mixtures (or,
   with ``pretrain_dynamic_mixing``, on such mixtures made on the fly);
3. ``finetune``: each mode of ``modes`` (uPIT-SISDR, PIT-AE, GPIT) fine-tuned
   from the SAME pre-trained weights with the same data, batch size and
   number of epochs (equal steps);
4. ``evaluate``: the test mixtures separated by every system and scored by
   cpWER with the UNSEEN ``eval_recognisers`` (never used in training),
   SI-SDR(i), STOI and PESQ; ``results.md`` has the table.

Authors
 * robust_brain developers 2026
"""

import copy
import json
import logging
import sys
import time
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.asr_training import train_proxy_stage, train_tokenizer
from robust_brain.data.prepare.whamr import prepare_whamr
from robust_brain.data.separation import DynamicMixingSet, SeparationSet
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.evaluation.separation import evaluate_separators
from robust_brain.inference import hparams_nodes, write_separator
from robust_brain.methods.gpit import check_mode
from robust_brain.pipelines.gpit import train_separator_stage
from robust_brain.stages import loader_kwargs
from robust_brain.surgery import make_rule

logger = logging.getLogger(__name__)

STAGES = ("encoder", "pretrain", "finetune", "evaluate")


def prepare(hparams):
    """WHAMR! manifests (real corpus); nothing to do for MiniWHAMR."""
    if not hparams["prepare_whamr"]:
        return
    sb.utils.distributed.run_on_main(
        prepare_whamr,
        kwargs={
            "data_folder": hparams["data_folder"],
            "save_folder": hparams["save_folder"],
            "sample_rate": hparams["sample_rate"],
            "version": hparams["whamr_version"],
            "mixture": hparams["whamr_mixture"],
            "target": hparams["whamr_target"],
            "wsj0_folder": hparams["wsj0_folder"],
            "skip_prep": hparams["skip_prep"],
        },
    )


def dataio_prepare(hparams):
    """Training / validation sets of the separation manifests."""
    common = {
        "data_root": hparams["data_folder"],
        "num_spks": hparams["num_spks"],
        "sample_rate": hparams["sample_rate"],
        "seed": hparams["seed"],
        "resample": hparams["resample_audio"],
    }
    segment = int(hparams["segment_seconds"] * hparams["sample_rate"])
    dynamic = {
        "segment": segment,
        "max_items": hparams["pretrain_max_train"],
        "items_per_epoch": hparams["dynamic_mixing_items"],
        "ssr_db": hparams["dynamic_mixing_ssr_db"],
        **common,
    }
    data = {
        "dynamic": DynamicMixingSet(
            hparams["train_csv"], name="train sources", **dynamic
        )
        if hparams["dynamic_mixing_epochs"] > 0
        else None,
        "pretrain": DynamicMixingSet(
            hparams["train_csv"],
            reverb=hparams["dynamic_mixing_reverb"],
            snr_db=hparams["dynamic_mixing_snr_db"],
            name="train sources (noisy reverberant)",
            **dynamic,
        )
        if hparams["pretrain_dynamic_mixing"]
        else SeparationSet(
            hparams["train_csv"],
            segment=segment,
            max_items=hparams["pretrain_max_train"],
            name="train",
            **common,
        ),
        "finetune": SeparationSet(
            hparams["train_csv"],
            segment=segment,
            max_items=hparams["finetune_max_train"],
            name="train",
            **common,
        ),
        "valid": SeparationSet(
            hparams["valid_csv"],
            max_items=hparams["valid_max_items"],
            name="valid",
            **common,
        ),
    }
    return data


def stage_encoder(hparams, run_opts, train):
    """Offline: train (or reload) the small CTC encoder on MiniNoisy."""
    root = Path(hparams["encoder_data_folder"])
    save = Path(hparams["save_folder"])
    tokenizer = train_tokenizer(
        save / "tokenizer",
        root / "train_clean.csv",
        hparams["encoder_vocab_size"],
        hparams["encoder_token_type"],
    )
    text = TokenEncoder(tokenizer)
    clean = read_rows(root / "train_clean.csv")
    as_pairs = [dict(r, noisy_wav=r["wav"], clean_wav="") for r in clean]
    noisy = read_rows(root / "train_pairs.csv")
    # noisy and clean items alternate, so that a subset has both
    rows = [r for pair in zip(noisy, as_pairs, strict=False) for r in pair]
    rows += noisy[len(as_pairs) :] + as_pairs[len(noisy) :]
    if hparams["encoder_max_train"]:
        rows = rows[: hparams["encoder_max_train"]]
    train_set = SpeechStream(rows, text_pipeline=text, name="encoder")
    valid_rows = read_rows(root / "valid_pairs.csv")
    if hparams["encoder_max_valid"]:
        valid_rows = valid_rows[: hparams["encoder_max_valid"]]
    valid_set = SpeechStream(valid_rows, text_pipeline=text, name="valid")
    size = hparams["encoder_batch_size"]
    return train_proxy_stage(
        hparams["ae_encoder"],
        tokenizer,
        train_set,
        valid_set,
        folder=save / "encoder",
        epochs=hparams["encoder_epochs"] if train else 0,
        opt_class=hparams["encoder_opt_class"],
        run_opts=run_opts,
        train_loader_kwargs=loader_kwargs(hparams, size, True),
        valid_loader_kwargs=loader_kwargs(hparams, size, False),
        extra_hparams={"max_grad_norm": hparams["max_grad_norm"]},
        selection=hparams["encoder_ckpt_selection"],
    )


#: separator stages: (training set, epochs key, optimizer key)
STAGE_DATA = {
    "pretrain_dm": ("dynamic", "dynamic_mixing_epochs", "pretrain_opt_class"),
    "pretrain": ("pretrain", "pretrain_epochs", "pretrain_opt_class"),
}


def separator_stage(hparams, run_opts, data, mode, name, separator, train):
    """Train (or resume, or reload) one separator stage in its folder."""
    pre = name in STAGE_DATA
    train_set, epochs, opt_class = STAGE_DATA.get(
        name, ("finetune", "finetune_epochs", "opt_class")
    )
    t0 = time.time()
    brain = train_separator_stage(
        mode,
        separator,
        data[train_set],
        data["valid"],
        folder=Path(hparams["save_folder"]) / name,
        epochs=hparams[epochs] if train else 0,
        opt_class=hparams[opt_class],
        run_opts=run_opts,
        ae_loss=None if pre else hparams["ae_loss"],
        ae_weight=hparams["ae_weight"],
        sisdr_weight=hparams["sisdr_weight"],
        surgery_rule=make_rule(hparams["rule_name"]),
        train_loader_kwargs=loader_kwargs(hparams, hparams["batch_size"], True),
        valid_loader_kwargs=loader_kwargs(
            hparams, hparams["batch_size"], False
        ),
        ckpt_selection=hparams["ckpt_selection"],
        extra_hparams={
            "max_grad_norm": hparams["max_grad_norm"],
            "valid_ae": hparams["valid_ae"],
        },
    )
    if train:  # a reloaded stage keeps the record of its training
        record_stage(hparams, name, brain, time.time() - t0)
    return brain


def check_curriculum(hparams):
    """A ``pretrain`` stage trained without the dynamic-mixing stage before
    it would only reload its old weights over the new stage's: refused."""
    save = Path(hparams["save_folder"])
    if (save / "pretrain" / "save").is_dir() and not (
        save / "pretrain_dm"
    ).is_dir():
        raise ValueError(
            f"{save / 'pretrain'} was trained without dynamic mixing "
            "(dynamic_mixing_epochs > 0 now): use a new output_folder, or "
            "--dynamic_mixing_epochs=0 to keep it"
        )


def record_stage(hparams, name, brain, seconds):
    """Optimizer steps and wall time of the stages trained (stages.json);
    a finished stage run again only reloads (no epoch, no stats): its
    record stays the one its training wrote."""
    if not sb.utils.distributed.if_main_process() or not brain.optimizer_step:
        return
    if not brain.last_stats:
        return
    path = Path(hparams["output_folder"]) / "stages.json"
    info = json.loads(path.read_text()) if path.exists() else {}
    info[name] = {
        "steps": brain.optimizer_step,
        "seconds": round(seconds, 1),
        "valid": {k: float(v) for k, v in brain.last_stats.items()},
    }
    path.write_text(json.dumps(info, indent=1))


def stage_evaluate(hparams, systems, device):
    """Score every system on the test set; write the tables."""
    out = Path(hparams["eval_folder"])
    title = (
        f"{Path(hparams['test_csv']).name}, first "
        f"{hparams['eval_max_utterances'] or 'all'} mixtures, seed "
        f"{hparams['seed']}"
    )
    _, table = evaluate_separators(
        hparams["test_csv"],
        systems,
        hparams["eval_recognisers"],
        out,
        data_root=hparams["data_folder"],
        output_level_dbfs=hparams["eval_output_level_dbfs"],
        max_utterances=hparams["eval_max_utterances"],
        cache=hparams["eval_cache"],
        batch_size=hparams["eval_batch_size"],
        device=device,
        signal_metrics=hparams["eval_signal_metrics"],
        title=title,
        sample_rate=hparams["sample_rate"],
    )
    print(table)
    stages = Path(hparams["output_folder"]) / "stages.json"
    text = table + "\n"
    if stages.exists():
        text += "\nStages (optimizer steps, wall seconds):\n\n```\n"
        text += stages.read_text() + "\n```\n"
    (Path(hparams["output_folder"]) / "results.md").write_text(text)


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
    modes = [check_mode(m) for m in hparams["modes"]]
    prepare(hparams)
    data = dataio_prepare(hparams)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()

    if hparams["encoder_stage"] and {"encoder", "finetune"} & set(stages):
        stage_encoder(hparams, run_opts, train="encoder" in stages)

    separator = hparams["separator"]
    needed = {"pretrain", "finetune", "evaluate"} & set(stages)
    if needed and hparams["pretrained_separator"]:
        # encoder/masknet/decoder.ckpt of a folder or hub source
        pretrainer = hparams["separator_pretrainer"]
        Path(hparams["save_folder"]).mkdir(parents=True, exist_ok=True)
        pretrainer.collect_files()
        pretrainer.load_collected()
    elif needed:
        # curriculum: clean dynamic mixtures first, then the corpus' own
        names = ["pretrain"]
        if hparams["dynamic_mixing_epochs"] > 0:
            names.insert(0, "pretrain_dm")
            check_curriculum(hparams)
        for name in names:
            separator_stage(
                hparams,
                run_opts,
                data,
                "uPIT-SISDR",
                name,
                separator,
                train="pretrain" in stages,
            )
    systems = {"pre-trained": separator}
    if "finetune" in stages or "evaluate" in stages:
        for mode in modes:
            tuned = copy.deepcopy(separator)
            separator_stage(
                hparams,
                run_opts,
                data,
                mode,
                mode,
                tuned,
                train="finetune" in stages,
            )
            systems[mode] = tuned
    trained = {"pretrain", "finetune"} & set(stages)
    if trained and sb.utils.distributed.if_main_process():
        # every separator, loadable with Separator.from_hparams
        build = hparams_nodes(
            hparams_file,
            ["sep_encoder", "sep_masknet", "sep_decoder", "separator"],
            overrides,
        )
        for name, sep in systems.items():
            write_separator(
                Path(hparams["save_folder"]) / "pretrained" / name,
                sep,
                build,
                sample_rate=hparams["sample_rate"],
                description=f"GPIT recipe, system {name}, seed "
                f"{hparams['seed']}",
            )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        stage_evaluate(hparams, systems, device)


if __name__ == "__main__":
    main(sys.argv[1:])
