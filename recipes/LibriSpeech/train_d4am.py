#!/usr/bin/env python3
"""D4AM in the paper's setting: LibriSpeech + DNS noise, CHiME-4 test.

To run this recipe (LibriSpeech, the DNS-Challenge noise and CHiME-4 on
disk; the proxy comes from the SpeechBrain hub, ``proxy_source``)::

    python recipes/LibriSpeech/train_d4am.py hparams/d4am.yaml \
        --data_folder=/data/LibriSpeech --dns_folder=/data/DNS-Challenge \
        --chime4_folder=/data/CHiME4
    # start from D4AM's INIT checkpoint instead of pre-training:
    ... --init_checkpoint=/ckpt/INIT.pth --init_epochs=0

Preparation (``robust_brain.data.prepare``): LibriSpeech transcribed
(``train_splits``, ``valid_split``) and speech-only
(``speech_only_splits``) manifests, the DNS noise manifest and the CHiME-4
1-channel manifests. Then the stages of ``stages``, each checkpointed in
``<save_folder>/<stage>`` (re-running resumes):

1. ``init``: DEMUCS regression pre-training (D4AM's INIT), optionally from
   ``init_checkpoint``;
2. ``modes``: each mode of ``modes`` fine-tuned from INIT with the FROZEN
   proxy (SpeechBrain's LibriSpeech Conformer-small, loaded by the
   ``pretrainer``); GRID keeps the alpha of ``grid_alphas`` with the lowest
   proxy WER on the validation set;
3. ``evaluate``: each CHiME-4 split (and MiniNoisy's test sets when
   ``mininoisy_folder`` is set) enhanced by every system (inputs at
   -25 dBFS) and transcribed by the unseen ``eval_recognisers`` and by the
   proxy (free-running greedy CTC); per split, the mean of the
   per-environment WERs (D4AM's protocol) and the pooled WER.

Authors
 * robust_brain developers 2026
"""

import logging
import sys
from pathlib import Path

import speechbrain as sb
from hyperpyyaml import load_hyperpyyaml

from robust_brain.data.prepare import (
    prepare_chime4,
    prepare_dns_noise,
    prepare_librispeech,
)
from robust_brain.data.streams import (
    NoiseCorruptor,
    SpeechStream,
    TokenEncoder,
    read_rows,
)
from robust_brain.evaluation.frontends import (
    evaluate_enhancers,
    recogniser_roles,
    write_results_summary,
)
from robust_brain.models.asr import CTCRecogniser, freeze
from robust_brain.models.demucs import load_enhancer_weights
from robust_brain.pipelines.d4am import check_plan, train_systems
from robust_brain.stages import loader_kwargs

logger = logging.getLogger(__name__)

STAGES = ("init", "modes", "evaluate")


def prepare(hparams):
    """Write (once, on the main process) and return the manifests."""
    save = hparams["save_folder"]
    transcribed = {
        "data_folder": hparams["data_folder"],
        "save_folder": save,
        "splits": [*hparams["train_splits"], hparams["valid_split"]],
    }
    speech_only = {
        "data_folder": hparams["data_folder"],
        "save_folder": save,
        "splits": hparams["speech_only_splits"],
        "transcribed": False,
        "merge_splits": hparams["speech_only_splits"],
        "merge_name": "speech_only",
    }
    dns = {
        "data_folder": hparams["dns_folder"],
        "save_folder": save,
        "noise_subdir": hparams["dns_noise_subdir"],
    }
    chime4 = {
        "data_folder": hparams["chime4_folder"],
        "save_folder": save,
        "splits": hparams["chime4_splits"],
        "environments": hparams["chime4_environments"],
    }
    jobs = [
        (prepare_librispeech, transcribed),
        (prepare_librispeech, speech_only),
        (prepare_dns_noise, dns),
    ]
    if "evaluate" in hparams["stages"]:
        jobs.append((prepare_chime4, chime4))
    paths = {}
    for fn, kwargs in jobs:
        sb.utils.distributed.run_on_main(
            fn, kwargs={**kwargs, "skip_prep": hparams["skip_prep"]}
        )
        paths.update(fn(**kwargs, skip_prep=True))
    return paths


def dataio_prepare(hparams, paths, tokenizer):
    """The two training streams and the validation stream."""
    text = TokenEncoder(tokenizer)
    seed = hparams["seed"]
    corruptor = NoiseCorruptor(
        read_rows(paths["noise"], hparams["dns_folder"]),
        snr_range=(hparams["snr_low"], hparams["snr_high"]),
        speech_level_dbfs=hparams["speech_level_dbfs"],
        sample_rate=hparams["sample_rate"],
    )
    root = hparams["data_folder"]
    transcribed = []
    for split in hparams["train_splits"]:
        transcribed += read_rows(paths[split], root)
    valid_rows = read_rows(paths[hparams["valid_split"]], root)
    valid_rows = valid_rows[: hparams["valid_max_utterances"]]
    return {
        "asr": SpeechStream(
            transcribed, corruptor, text_pipeline=text, seed=seed, name="asr"
        ),
        "se": SpeechStream(
            read_rows(paths["speech_only_untranscribed"], root),
            corruptor,
            segment=(hparams["segment_min"], hparams["segment_max"]),
            seed=seed,
            name="se",
        ),
        # online corruption with fixed draws (the epoch never changes)
        "valid": SpeechStream(
            valid_rows, corruptor, text_pipeline=text, seed=seed, name="valid"
        ),
    }


def load_proxy(hparams):
    """The hub proxy and its tokenizer, through the Pretrainer when the
    hparams have one (a transformers wrapper such as Whisper loads its
    ``source`` itself); frozen."""
    if "pretrainer" in hparams:
        pretrainer = hparams["pretrainer"]
        sb.utils.distributed.run_on_main(pretrainer.collect_files)
        pretrainer.load_collected()
    return freeze(hparams["proxy"]), hparams["tokenizer"]


def stage_evaluate(hparams, paths, systems, proxy, tokenizer, device):
    """CHiME-4 splits (and MiniNoisy test sets) x systems x recognisers."""
    recognisers = list(hparams["eval_recognisers"])
    if hparams["eval_proxy"]:
        recognisers.append(
            CTCRecogniser(proxy, tokenizer, "proxy-ctc", device=device)
        )
    sets = [
        (f"chime4_{split}", paths[split], hparams["chime4_folder"])
        for split in hparams["chime4_splits"]
    ]
    if hparams["mininoisy_folder"]:
        root = Path(hparams["mininoisy_folder"])
        for name in ("test", "test_real"):
            if (root / f"{name}_pairs.csv").exists():
                sets.append(
                    (f"mininoisy_{name}", root / f"{name}_pairs.csv", root)
                )
    roles = recogniser_roles(hparams)
    for name, manifest, data_root in sets:
        _, table = evaluate_enhancers(
            manifest,
            systems,
            recognisers,
            Path(hparams["eval_folder"]) / name,
            data_root=data_root,
            input_level_dbfs=hparams["eval_input_level_dbfs"],
            max_utterances=hparams["eval_max_utterances"],
            conditions=hparams["eval_conditions"],
            include_clean=hparams["eval_include_clean"],
            peers=hparams.get("eval_peers"),
            cache=hparams["eval_cache"],
            batch_size=hparams["eval_batch_size"],
            device=device,
            title=f"{name}, seed {hparams['seed']}. {roles}",
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
    paths = prepare(hparams)
    proxy, tokenizer = load_proxy(hparams)
    data = dataio_prepare(hparams, paths, tokenizer)
    device = run_opts.get("device") or sb.utils.distributed.infer_device()

    if hparams["init_checkpoint"]:
        load_enhancer_weights(hparams["enhancer"], hparams["init_checkpoint"])
    systems = train_systems(
        hparams,
        run_opts,
        data,
        proxy,
        tokenizer,
        stages,
        lambda shuffle: loader_kwargs(hparams, hparams["batch_size"], shuffle),
        init_stage=hparams["init_epochs"] > 0 or not hparams["init_checkpoint"],
    )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        stage_evaluate(
            hparams, paths, systems, proxy.to(device), tokenizer, device
        )


if __name__ == "__main__":
    main(sys.argv[1:])
