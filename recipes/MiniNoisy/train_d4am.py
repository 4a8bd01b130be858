#!/usr/bin/env python3
"""D4AM on the offline MiniNoisy corpus: proxy -> INIT -> modes -> table.

To run this recipe (after generating the corpus)::

    python -m robust_brain.data.generate --corpus mininoisy --out data
    python recipes/MiniNoisy/train_d4am.py hparams/d4am_mini.yaml \
        --data_folder=data/MiniNoisy
    # only some stages / modes:
    python recipes/MiniNoisy/train_d4am.py hparams/d4am_mini.yaml \
        --stages=[init,modes] --modes=[D4AM,GRID] --grid_alphas=[1.0]
    # a real pretrained proxy (Whisper tiny.en), no proxy stage:
    python recipes/MiniNoisy/train_d4am.py hparams/d4am_whisper_mini.yaml

Stages (``stages``), each checkpointed in ``<save_folder>/<stage>``:

1. ``proxy``: a SentencePiece tokenizer and a small Conformer CTC/attention
   recogniser trained on MiniNoisy clean + noisy training speech (best
   greedy-CTC WER on the validation pairs), then frozen. A hparams file
   whose proxy is pretrained (it defines the proxy's ``tokenizer``, e.g.
   Whisper in ``d4am_whisper_mini.yaml``) has no such stage;
2. ``init``: DEMUCS regression pre-training (D4AM's INIT);
3. ``modes``: each mode of ``modes`` fine-tuned from INIT; GRID runs every
   alpha of ``grid_alphas`` and keeps the one with the lowest proxy WER on
   the validation pairs;
4. ``evaluate``: the ``eval_sets`` pair manifests enhanced by each system
   (input at -25 dBFS) and transcribed by the unseen ``eval_recognisers``
   (Whisper via faster-whisper, never used in training) and by the proxy
   (free-running greedy CTC); tables and a WER-vs-SNR plot per set in
   ``<output_folder>/eval/<set>/``, the summary in ``results.md``.

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
from robust_brain.data.streams import (
    NoiseCorruptor,
    SpeechStream,
    TokenEncoder,
    read_rows,
)
from robust_brain.evaluation.frontends import (
    dry_variants,
    evaluate_enhancers,
    recogniser_roles,
    write_results_summary,
)
from robust_brain.models.asr import CTCRecogniser, freeze
from robust_brain.pipelines.d4am import check_plan, train_systems
from robust_brain.stages import loader_kwargs

logger = logging.getLogger(__name__)

STAGES = ("proxy", "init", "modes", "evaluate")


def first_rows(hparams, name, limit_key):
    """The rows of ``<data_folder>/<name>.csv``, the first
    ``hparams[limit_key]`` of them when that is set (reduced runs)."""
    rows = read_rows(Path(hparams["data_folder"]) / f"{name}.csv")
    limit = hparams[limit_key]
    return rows[: int(limit)] if limit else rows


def tokenizer_text(hparams):
    """The transcripts the tokenizer learns from: the training sentences
    (only the first ``train_max_utterances`` in a reduced run)."""
    if not hparams["train_max_utterances"]:
        return Path(hparams["data_folder"]) / "train_clean.csv"
    path = Path(hparams["save_folder"]) / "tokenizer_text.csv"
    rows = first_rows(hparams, "train_clean", "train_max_utterances")
    if sb.utils.distributed.if_main_process():
        path.parent.mkdir(parents=True, exist_ok=True)
        text = [{"ID": r["ID"], "wrd": r["wrd"]} for r in rows]
        write_csv_atomic(path, text, ["ID", "wrd"])
    sb.utils.distributed.ddp_barrier()
    return path


def dataio_prepare(hparams, tokenizer, proxy_streams=True):
    """Streams of the MiniNoisy manifests (no preparation: the generator
    writes them); ``proxy_streams``: also the offline proxy's training and
    validation streams."""
    root = Path(hparams["data_folder"])
    text = TokenEncoder(tokenizer)
    seed = hparams["seed"]
    rir_rows = None
    if hparams["rir_prob"] > 0:
        rir_rows = read_rows(root / "rir_train.csv")
    corruptor = NoiseCorruptor(
        read_rows(root / "noise_train.csv"),
        snr_range=(hparams["snr_low"], hparams["snr_high"]),
        speech_level_dbfs=hparams["speech_level_dbfs"],
        rir_rows=rir_rows,
        rir_prob=hparams["rir_prob"],
        sample_rate=hparams["sample_rate"],
    )
    train_clean = first_rows(hparams, "train_clean", "train_max_utterances")
    valid_pairs = first_rows(hparams, "valid_pairs", "valid_max_utterances")
    data = {
        "asr": SpeechStream(
            train_clean, corruptor, text_pipeline=text, seed=seed, name="asr"
        ),
        "se": SpeechStream(
            first_rows(
                hparams, "train_untranscribed", "speech_only_max_utterances"
            ),
            corruptor,
            segment=(hparams["segment_min"], hparams["segment_max"]),
            seed=seed,
            name="se",
        ),
        "valid": SpeechStream(valid_pairs, text_pipeline=text, name="valid"),
    }
    if not proxy_streams:
        return data
    # the proxy learns from clean AND noisy speech (pre-mixed pairs)
    as_pairs = [dict(r, noisy_wav=r["wav"], clean_wav="") for r in train_clean]
    data["proxy_train"] = SpeechStream(
        first_rows(hparams, "train_pairs", "train_max_utterances") + as_pairs,
        text_pipeline=text,
        name="proxy",
    )
    data["proxy_valid"] = data["valid"]
    return data


def stage_proxy(hparams, run_opts, data, tokenizer, train):
    """Train (or resume, or just reload) the offline proxy; frozen."""
    return train_proxy_stage(
        hparams["proxy"],
        tokenizer,
        data["proxy_train"],
        data["proxy_valid"],
        folder=Path(hparams["save_folder"]) / "proxy",
        epochs=hparams["proxy_epochs"] if train else 0,
        opt_class=hparams["proxy_opt_class"],
        run_opts=run_opts,
        lr_annealing=hparams["proxy_annealing"],
        train_loader_kwargs=loader_kwargs(
            hparams, hparams["proxy_batch_size"], True
        ),
        valid_loader_kwargs=loader_kwargs(
            hparams, hparams["proxy_batch_size"], False
        ),
        extra_hparams={"max_grad_norm": hparams["proxy_max_grad_norm"]},
        selection=hparams["proxy_ckpt_selection"],
    )


def stage_evaluate(hparams, systems, proxy, tokenizer, device):
    """Score every system on every evaluation set; write the tables."""
    recognisers = list(hparams["eval_recognisers"])
    if hparams["eval_proxy"]:
        recognisers.append(
            CTCRecogniser(proxy, tokenizer, "proxy-ctc", device=device)
        )
    roles = recogniser_roles(hparams)
    for name in hparams["eval_sets"]:
        manifest = Path(hparams["data_folder"]) / f"{name}_pairs.csv"
        if not manifest.exists():
            logger.warning("no %s: evaluation set %s skipped", manifest, name)
            continue
        _, table = evaluate_enhancers(
            manifest,
            dry_variants(systems, hparams["eval_dry"]),
            recognisers,
            Path(hparams["eval_folder"]) / name,
            input_level_dbfs=hparams["eval_input_level_dbfs"],
            max_utterances=hparams["eval_max_utterances"],
            conditions=hparams["eval_conditions"],
            include_clean=hparams["eval_include_clean"],
            peers=hparams.get("eval_peers"),
            signal_metrics=hparams.get("eval_signal_metrics", ("si_sdr",)),
            cache=hparams["eval_cache"],
            batch_size=hparams["eval_batch_size"],
            device=device,
            title=f"MiniNoisy {name}, seed {hparams['seed']}. {roles}",
            n_seeds=1,
        )
        print(table)
    # every set evaluated so far (also by earlier runs with other sets)
    write_results_summary(
        hparams["eval_folder"], Path(hparams["output_folder"]) / "results.md"
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
    stages = check_plan(hparams["stages"], hparams["modes"], STAGES)
    # a pretrained proxy (e.g. Whisper) brings its own tokenizer; the
    # offline Conformer proxy is trained here, with a SentencePiece one
    pretrained = "tokenizer" in hparams
    if pretrained and "proxy" in stages:
        raise ValueError(
            "stages: 'proxy' trains the offline proxy, but this hparams "
            "file has a pretrained proxy (it defines `tokenizer`)"
        )
    if pretrained:
        tokenizer = hparams["tokenizer"]
    else:
        tokenizer = train_tokenizer(
            Path(hparams["save_folder"]) / "tokenizer",
            tokenizer_text(hparams),
            hparams["proxy_vocab_size"],
            hparams["proxy_token_type"],
        )
    data = dataio_prepare(hparams, tokenizer, proxy_streams=not pretrained)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()

    proxy = None
    if pretrained:
        proxy = freeze(hparams["proxy"])
    elif {"proxy", "modes", "evaluate"} & set(stages):
        proxy = stage_proxy(
            hparams, run_opts, data, tokenizer, train="proxy" in stages
        )
    if not {"init", "modes", "evaluate"} & set(stages):
        return
    systems = train_systems(
        hparams,
        run_opts,
        data,
        proxy,
        tokenizer,
        stages,
        lambda shuffle: loader_kwargs(hparams, hparams["batch_size"], shuffle),
        # init_epochs 0: INIT is the enhancer as built (a pretrained one)
        init_stage=hparams["init_epochs"] > 0,
    )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        stage_evaluate(hparams, systems, proxy, tokenizer, device)


if __name__ == "__main__":
    main(sys.argv[1:])
