"""Distillation throughput from a Whisper teacher: seconds of audio per
second of training, per system, side by side in one run.

Each system of the comparison (plain, RobustDistiller, CDM-2, CDM-2 +
DAT) trains one epoch of ``--steps`` batches of ``--batch`` crops of
``--seconds`` through the recipe's own stage
(:func:`robust_brain.pipelines.distill.train_distill_stage`: data
loading, distortions, the frozen teacher's targets, the student's step,
the engine), with the recipe's student (``student_layers``,
``target_layers`` of ``hparams/distill_whisper_mini.yaml``). The teacher's
forward alone is timed on the same crops. Rounds alternate the systems;
the table gives each one's median audio seconds per second and its ratio
to plain distillation in the same round::

    python benchmarks/distill_throughput.py --teacher base --rounds 2

Speech: synthetic voiced signals (no corpus needed); distortions that need
no files (Gaussian noise, simulated reverberation, band-reject, pitch).
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from robust_brain.distortions import Distorter
from robust_brain.models.student import (
    DomainDiscriminator,
    EnhancementHead,
    LayerTeacher,
    build_student,
    learned_parameters,
)
from robust_brain.models.whisper import WhisperASR
from robust_brain.pipelines.distill import (
    make_distill_set,
    train_distill_stage,
)
from robust_brain.pretrained import whisper_checkpoint

SR = 16000
SYSTEMS = ("plain", "robustdistiller", "cdm2", "cdm2_dat")


def voiced(n, rng):
    """A crude voiced signal: a gliding harmonic series, amplitude-modulated."""
    t = np.arange(n) / SR
    f0 = 110 + 40 * np.sin(2 * np.pi * rng.uniform(0.2, 0.6) * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * rng.uniform(2, 5) * t) ** 2
    return (0.05 * env * x).astype(np.float32)


def make_rows(folder, count, seconds, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(count):
        path = Path(folder) / f"u{i}.wav"
        sf.write(path, voiced(int(seconds * SR), rng), SR)
        rows.append({"ID": f"u{i}", "wav": str(path), "wrd": "A"})
    return rows


def hparams_for(seed):
    single = ["gaussian", "simreverb", "gaussian+simreverb"]
    return {
        "seed": seed,
        "speech_level_dbfs": -25.0,
        "rd_distorter": Distorter("single", single=single),
        "cdm_distorter": Distorter(
            "double",
            additive=["gaussian", "none"],
            nonadditive=["simreverb", "bandreject", "pitch", "none"],
        ),
    }


def time_system(system, teacher, rows, args, folder, hp):
    student = build_student(teacher, args.target_layers, args.student_layers)
    head = disc = None
    extra = {"rule_name": "sum", "max_grad_norm": 10.0}
    if system == "robustdistiller":
        with torch.no_grad():
            cnn = student(torch.zeros(1, SR), torch.ones(1))["cnn"]
        head = EnhancementHead(cnn.shape[-1], hidden_size=64, num_layers=2)
        extra["enh_weight"] = 2.0
    if system == "cdm2_dat":
        disc = DomainDiscriminator(student.hidden_size, 128, 2)
        extra.update(
            dat_domain="binary",
            dat_balanced=True,
            dat_opt_class=lambda p: torch.optim.Adam(p, 1e-3),
            student_distorter=hp["cdm_distorter"],
            dat_lambda_max=0.1,
        )
    train = make_distill_set(system, rows, hp, f"{system}-bench")
    valid = make_distill_set(system, rows[:1], hp, f"{system}-bench-valid")
    start = time.perf_counter()
    train_distill_stage(
        system,
        teacher,
        student,
        train,
        valid,
        folder=folder,
        epochs=1,
        opt_class=lambda p: torch.optim.AdamW(p, 5e-4),
        run_opts={"device": "cpu", "noprogressbar": True},
        extra_hparams=extra,
        enhancement_head=head,
        discriminator=disc,
        train_loader_kwargs={"batch_size": args.batch},
        valid_loader_kwargs={"batch_size": 1},
    )
    return time.perf_counter() - start, learned_parameters(student)


def time_teacher(teacher, rows, args):
    wavs = torch.stack(
        [torch.from_numpy(sf.read(r["wav"], dtype="float32")[0]) for r in rows]
    )
    start = time.perf_counter()
    for i in range(0, len(wavs), args.batch):
        batch = wavs[i : i + args.batch]
        teacher(batch, torch.ones(len(batch)))
    return time.perf_counter() - start


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--teacher", default="base", help="Whisper checkpoint")
    p.add_argument("--window", type=float, default=5.0)
    p.add_argument("--steps", type=int, default=6)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--threads", type=int, default=0, help="0: torch's")
    p.add_argument("--student_layers", type=int, default=1)
    p.add_argument("--target_layers", type=int, nargs="+", default=[2, 4, 6])
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    tmp = Path(tempfile.mkdtemp(prefix="distill_bench_"))
    asr = WhisperASR(
        str(whisper_checkpoint(args.teacher)),
        str(tmp / "whisper"),
        window_seconds=args.window,
        encoder_only=True,
        output_all_hiddens=True,
    )
    teacher = LayerTeacher(asr)
    rows = make_rows(tmp, args.steps * args.batch, args.seconds)
    audio = len(rows) * args.seconds
    hp = hparams_for(0)
    rates = {name: [] for name in ("teacher forward", *SYSTEMS)}
    ratios = {name: [] for name in rates}
    params = {}
    for r in range(args.rounds):
        times = {"teacher forward": time_teacher(teacher, rows, args)}
        for system in SYSTEMS:
            times[system], params[system] = time_system(
                system, teacher, rows, args, tmp / f"r{r}" / system, hp
            )
        for name, seconds in times.items():
            rates[name].append(audio / seconds)
            ratios[name].append(times["plain"] / seconds)
    print(
        f"Whisper {args.teacher} teacher (window {args.window:g} s), "
        f"student {args.student_layers} layer(s), batch {args.batch} x "
        f"{args.seconds:g} s, {args.steps} steps per system, "
        f"{torch.get_num_threads()} thread(s), {args.rounds} rounds; "
        "medians\n"
    )
    print("| | audio s / s | vs plain (same round) | student weights |")
    print("|---|---|---|---|")
    for name in rates:
        size = f"{params[name] / 1e6:.2f} M" if name in params else ""
        print(
            f"| {name} | {statistics.median(rates[name]):.2f} | "
            f"{statistics.median(ratios[name]):.2f} x | {size} |"
        )


if __name__ == "__main__":
    main()
