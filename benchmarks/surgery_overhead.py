"""Overhead of gradient surgery: one training step, plain vs each rule.

Times ONE optimizer step (forward, backward(s), rule, Adam step) of

* ``plain``: SpeechBrain's own ``sb.Brain.fit_batch`` on the summed loss
  (one joint backward), the reference;
* ``floor (plain + aux grad)``: ``plain`` plus one ``autograd.grad`` of
  the aux loss over the shared parameters (result dropped): the least any
  two-gradient method can cost (``g_main = g_sum - g_aux``), no flat
  vectors, no rule;
* :class:`robust_brain.brain.DualLossBrain` with the rules ``Sum`` (linear
  fast path: one backward, like plain), ``Sum (per-task)`` (the general
  path with the trivial rule, forced by ``log_task_gradients``: isolates
  the cost of the two ``autograd.grad`` passes and the flat vectors),
  ``GCLB``, ``D4AM`` (GCLB + SRPR, no Langevin noise), ``PCGrad`` and
  ``GradientRemedy`` (per tensor),

at paper sizes, with the project's own models and losses: DEMUCS dns48
causal (18.9M parameters, :class:`robust_brain.models.demucs.Demucs`) in
front of :class:`robust_brain.models.asr.ConformerASR` at its defaults,
SpeechBrain's LibriSpeech ``conformer_small`` (Fbank(80) -> 2-block CNN
front-end -> 12-layer RelPosMHAXL Conformer encoder + 4-layer Transformer
decoder, d_model 144, 5000 tokens; its loss, 0.3 CTC + 0.7 label-smoothed
KL; the global feature normalisation left out).

Five scenarios:

* ``frozen`` (D4AM): the ASR is frozen (``requires_grad_(False)``,
  ``eval()``, kept in hparams, not in modules); main loss = ASR loss on
  DEMUCS(noisy), aux loss = D4AM's regression loss (L1 + multi-resolution
  STFT, :class:`robust_brain.losses.D4AMRegressionLoss`) of DEMUCS(noisy)
  to clean; shared = DEMUCS.
* ``trainable``: the same losses, both models trainable; shared = DEMUCS,
  the ASR gets the plain sum (= its own gradient).
* ``whisper`` (D4AM with a REAL pretrained proxy): DEMUCS dns48 in
  front of the frozen Whisper (``--whisper tiny.en|base``, converted from
  the pip packages; :class:`robust_brain.models.whisper.WhisperASR`, 10 s
  window); main loss = Whisper's teacher-forced cross-entropy, aux = L1 +
  MR-STFT; configs plain, ``Sum (linear)``, ``GCLB``, ``D4AM``.
* ``gr`` (Gradient Remedy at the paper's sizes, docs/methods.md): the
  BLSTM magnitude-mask front-end (STFT 512 / 256, 3 x 896 per direction,
  ReLU mask; :class:`robust_brain.models.mask_net.MaskNet`) feeding a
  Conformer CTC/attention ASR of 12 blocks d 256, FFN 2048, kernel 15 and
  a 6-block decoder (BPE 1000), both trainable; losses 0.7 ASR and 0.3 the
  official squared magnitude error; shared = the mask net. Its rules are
  the GR recipes' (MTL = ``Sum (linear)``, ``PCGrad (per tensor)``,
  ``GradientRemedy``); the target is GR <= 1.15 x MTL.
* ``gr_whisper`` (the GR recipe with a pretrained recogniser,
  ``hparams/gr_whisper_mini.yaml``): its BLSTM mask net (2 x 64, sigmoid
  mask) feeding Whisper (``--whisper``, default tiny.en), both trainable;
  Whisper's teacher-forced CE and the magnitude loss, weighted 0.7 / 0.3;
  the GR configs.

All brains of a scenario share the SAME module instances and the SAME Adam
optimizer (its state is allocated once), so every configuration starts a
step from an identical memory state; they are timed in one process,
interleaved round-robin (order rotated every round) after warm-up. The
ratio to plain is the median over rounds of ``config / plain`` of the same
round (robust to load drifting on a shared machine).

Peak memory: on CUDA ``torch.cuda.max_memory_allocated`` (reset before
every timed step; weights, Adam state, batch, activations, gradients and
the engine's flat vectors included). On CPU there is no allocator
counter: after the timing, each config runs one more step whose peak
resident set size is read from ``/proc/self/status`` (``VmHWM``, reset
through ``/proc/self/clear_refs`` before the step, with the heap trimmed
and glibc's mmap threshold fixed at 1 MiB so freed tensors leave the
RSS), minus the RSS after imports: weights + Adam state + activations +
gradients + the engine's buffers (see :class:`RSSMeter`).

CPU defaults are reduced to finish in ~10 min on a shared 2-core machine:
batch 2 x 2 s (the models keep their paper sizes), 1 warm-up + 5 timed
rounds, 1 intra-op thread (2 threads under load from other processes
gave 3-5x spreads between identical steps). ``--breakdown`` adds a
per-phase table (forward, ``task_gradients``, rule, optimizer, rest).

Usage (from the repository root)::

    .venv/bin/python benchmarks/surgery_overhead.py --breakdown   # CPU
    .venv/bin/python benchmarks/surgery_overhead.py --device cuda  # paper
"""

import argparse
import ctypes
import ctypes.util
import gc
import json
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402

from robust_brain import surgery as S  # noqa: E402
from robust_brain.brain import DualLossBrain  # noqa: E402
from robust_brain.losses import D4AMRegressionLoss  # noqa: E402
from robust_brain.models.asr import ConformerASR  # noqa: E402
from robust_brain.models.demucs import Demucs, count_parameters  # noqa: E402
from robust_brain.models.mask_net import MagnitudeLoss, MaskNet  # noqa: E402
from robust_brain.models.whisper import WhisperASR  # noqa: E402
from robust_brain.pretrained import whisper_checkpoint  # noqa: E402

SAMPLE_RATE = 16000
WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
VOCAB = 5000
TOKENS_PER_SECOND = 15  # ~60 tokens per 4 s utterance

CONFIGS = (
    "plain",
    "floor (plain + aux grad)",
    "Sum (linear)",
    "Sum (per-task)",
    "GCLB",
    "D4AM",
    "PCGrad",
    "GradientRemedy",
)
#: the Whisper-proxy scenario's configs (D4AM with a real pretrained proxy)
WHISPER_CONFIGS = ("plain", "Sum (linear)", "GCLB", "D4AM")
#: the GR paper-size scenario's configs (MTL = "Sum (linear)")
GR_CONFIGS = (
    "plain",
    "floor (plain + aux grad)",
    "Sum (linear)",
    "Sum (per-task)",
    "PCGrad (per tensor)",
    "GradientRemedy",
)
#: GR's loss weights (lambda_SE = 0.3) and BPE size
GR_SE_WEIGHT = 0.3
GR_VOCAB = 1000


def make_rule(config):
    """The combination rule (and forced per-task path) of a config."""
    return {
        "Sum (linear)": (S.Sum(), False),
        "Sum (per-task)": (S.Sum(), True),
        "GCLB": (S.GCLB(), False),
        "D4AM": (S.D4AM(), False),
        "PCGrad": (S.PCGrad(), False),
        "PCGrad (per tensor)": (S.PCGrad(per_tensor=True), False),
        "GradientRemedy": (S.GradientRemedy(per_tensor=True), False),
    }[config]


# ---------------------------------------------------------------------------
# models, data, losses
# ---------------------------------------------------------------------------


def make_batch(batch_size, seconds, device, seed=0, vocab=VOCAB):
    """Random clean/noisy waveforms and random token targets (full
    lengths), already on the device."""
    g = torch.Generator().manual_seed(seed)
    n = int(seconds * SAMPLE_RATE)
    clean = 0.1 * torch.randn(batch_size, n, generator=g)
    noisy = clean + 0.05 * torch.randn(batch_size, n, generator=g)
    n_tok = max(1, round(TOKENS_PER_SECOND * seconds))
    tokens = torch.randint(3, vocab, (batch_size, n_tok), generator=g)
    batch = {
        "noisy": noisy,
        "clean": clean,
        "wav_lens": torch.ones(batch_size),
        "tokens": tokens,
        "tok_lens": torch.ones(batch_size),
    }
    return {k: v.to(device) for k, v in batch.items()}


# ---------------------------------------------------------------------------
# brains
# ---------------------------------------------------------------------------


class _Task:
    """compute_forward + the two losses, shared by all brains."""

    loss_names = ("asr", "se")

    def _asr(self):
        if "asr" in self.modules:
            return self.modules["asr"]
        return self.hparams.asr

    def compute_forward(self, batch, stage):
        front = self.modules["front"]
        if isinstance(front, MaskNet):  # GR: the masked magnitude too
            enh, mag, _ = front(batch["noisy"], return_magnitude=True)
        else:
            enh, mag = front(batch["noisy"]), None
        asr = self._asr()
        if isinstance(asr, WhisperASR):  # its teacher-forced CE
            return enh, mag, asr.token_loss(enh, batch["whisper_ids"])
        l_asr = asr.loss(
            enh, batch["wav_lens"], batch["tokens"], batch["tok_lens"]
        )
        return enh, mag, l_asr

    def task_losses(self, outputs, batch):
        enh, mag, l_asr = outputs
        if mag is None:
            se = self.hparams.se_loss(enh, batch["clean"])
            return {"asr": l_asr, "se": se}
        gr_se = self.hparams.gr_se_loss
        se = gr_se(enh, batch["clean"], estimate_magnitude=mag)
        return {
            "asr": (1 - GR_SE_WEIGHT) * l_asr,
            "se": GR_SE_WEIGHT * se,
        }


class PlainBrain(_Task, sb.Brain):
    """SpeechBrain's default fit_batch on the summed loss."""

    def compute_objectives(self, outputs, batch, stage):
        return sum(self.task_losses(outputs, batch).values())


class FloorBrain(PlainBrain):
    """The plain step plus ONE ``autograd.grad`` of the aux loss over the
    shared (DEMUCS) parameters, result dropped: the least extra work of
    any method that needs both task gradients (``g_main = g_sum - g_aux``
    costs exactly this), i.e. the floor for the per-task path."""

    def fit_batch(self, batch):
        with self.training_ctx:
            outputs = self.compute_forward(batch, sb.Stage.TRAIN)
            losses = self.task_losses(outputs, batch)
        shared = [
            p for p in self.modules["front"].parameters() if p.requires_grad
        ]
        torch.autograd.grad(losses["se"], shared, retain_graph=True)
        loss = losses["asr"] + losses["se"]
        self.scaler.scale(loss).backward()
        self.optimizers_step()
        return loss.detach().cpu()


class RuleBrain(_Task, DualLossBrain):
    """The engine with a combination rule."""

    def compute_objectives(self, outputs, batch, stage):
        return self.task_losses(outputs, batch)


def gr_front_end():
    """GR's paper-size SE front-end (``tf_masking1``): 3 x BLSTM 896."""
    return MaskNet(
        n_fft=512,
        hop_length=256,
        num_layers=3,
        hidden_size=896,
        dropout=0.5,
        mask="relu",
        mask_max=None,
    )


def conformer_small(vocab=VOCAB, **sizes):
    """The project's ConformerASR (``conformer_small`` defaults), without
    the global feature normalisation (no statistics in a benchmark)."""
    return ConformerASR(vocab_size=vocab, normalize=False, **sizes)


def gr_asr():
    """GR's paper-size Conformer CTC/attention ASR."""
    return conformer_small(
        vocab=GR_VOCAB,
        d_model=256,
        num_decoder_layers=6,
        d_ffn=2048,
        kernel_size=15,
    )


class Scenario:
    """Models, shared optimizer and batch of one scenario."""

    def __init__(self, name, args, device):
        self.name = name
        self.args = args
        self.device = device
        torch.manual_seed(0)
        vocab = VOCAB
        if name == "gr":
            vocab = GR_VOCAB
            self.configs = GR_CONFIGS
            self.front = gr_front_end().to(device)
            self.asr = gr_asr().to(device)
        elif name == "gr_whisper":
            self.configs = GR_CONFIGS
            self.front = MaskNet(
                n_fft=512,
                hop_length=256,
                num_layers=2,
                hidden_size=64,
                mask="sigmoid",
                mask_max=1.0,
                input_norm="utterance",
            ).to(device)
            self.asr = WhisperASR(
                whisper_source(args.whisper), tempfile.mkdtemp()
            ).to(device)
        elif name == "whisper":
            self.configs = WHISPER_CONFIGS
            self.front = Demucs().to(device)
            self.asr = WhisperASR(
                whisper_source(args.whisper), tempfile.mkdtemp()
            ).to(device)
        else:
            self.configs = CONFIGS
            self.front = Demucs().to(device)
            self.asr = conformer_small().to(device)
        self.extra = {
            "gr_se_loss": MagnitudeLoss(512, 256).to(device),
            "se_loss": D4AMRegressionLoss().to(device),
        }
        if name in ("frozen", "whisper"):
            self.asr.requires_grad_(False).eval()
            self.modules = {"front": self.front}
            self.extra["asr"] = self.asr
        else:
            self.modules = {"front": self.front, "asr": self.asr}
        params = [
            p
            for m in self.modules.values()
            for p in m.parameters()
            if p.requires_grad
        ]
        self.n_trainable = sum(p.numel() for p in params)
        # one Adam for every brain: identical (lazily allocated) state
        self.optimizer = torch.optim.Adam(params, lr=1e-5)
        self.batch = make_batch(
            args.batch_size, args.seconds, device, vocab=vocab
        )
        # Whisper text tokens (below its end-of-text id), same count
        g = torch.Generator().manual_seed(1)
        self.batch["whisper_ids"] = torch.randint(
            300, 20000, self.batch["tokens"].shape, generator=g
        ).tolist()
        self.run_opts = {
            "device": str(device),
            "precision": args.precision,
            "max_grad_norm": 5.0,
            "noprogressbar": True,
        }

    def brain(self, config):
        """A brain of ``config``, ready for ``fit_batch``."""

        def opt_class(_params):
            return self.optimizer

        if config == "plain" or config.startswith("floor"):
            cls = PlainBrain if config == "plain" else FloorBrain
            hparams = {}
        else:
            rule, per_task = make_rule(config)
            cls = RuleBrain
            hparams = {
                "surgery_rule": rule,
                "shared_modules": ["front"],
                "log_task_gradients": per_task,
            }
        brain = cls(
            modules=self.modules,
            opt_class=opt_class,
            hparams={**self.extra, **hparams},
            run_opts=self.run_opts,
        )
        brain.on_fit_start()  # optimizer (+ the engine's flat layout)
        return brain


# ---------------------------------------------------------------------------
# timing
# ---------------------------------------------------------------------------


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class PhaseTimer:
    """Optional per-phase breakdown: wraps brain methods (synchronised)."""

    PHASES = ("forward", "task_gradients", "rule", "optimizers_step")

    def __init__(self, device):
        self.device = device
        self.current = None

    def wrap(self, fn, phase):
        def timed(*a, **kw):
            _sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **kw)
            _sync(self.device)
            if self.current is not None:
                self.current[phase] = self.current.get(phase, 0.0) + (
                    time.perf_counter() - t0
                )
            return out

        return timed

    def instrument(self, brain):
        for name in ("compute_forward", "compute_objectives"):
            setattr(brain, name, self.wrap(getattr(brain, name), "forward"))
        brain.optimizers_step = self.wrap(
            brain.optimizers_step, "optimizers_step"
        )
        if isinstance(brain, DualLossBrain):
            brain.rule.forward = self.wrap(brain.rule.forward, "rule")
            # the engine's per-task backward passes (both losses)
            brain._backward_tasks = self.wrap(
                brain._backward_tasks, "task_gradients"
            )


def one_step(brain, batch, device):
    _sync(device)
    t0 = time.perf_counter()
    brain.fit_batch(batch)
    _sync(device)
    return time.perf_counter() - t0


def time_scenario(scn, args, device, breakdown, meter=None):
    """Interleaved timing and peak memory of every config."""
    configs = scn.configs
    brains = {config: scn.brain(config) for config in configs}
    timer = PhaseTimer(device) if breakdown else None
    if timer is not None:
        for b in brains.values():
            timer.instrument(b)
    times = {c: [] for c in configs}
    phases = {c: [] for c in configs}
    peaks = dict.fromkeys(configs, 0)
    n_cfg = len(configs)
    for rnd in range(args.warmup + args.steps):
        order = [configs[(i + rnd) % n_cfg] for i in range(n_cfg)]
        for config in order:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            if timer is not None:
                timer.current = {}
            dt = one_step(brains[config], scn.batch, device)
            if rnd < args.warmup:
                continue
            times[config].append(dt)
            if timer is not None:
                phases[config].append(timer.current)
            if device.type == "cuda":
                peaks[config] = max(
                    peaks[config], torch.cuda.max_memory_allocated(device)
                )
        done = rnd + 1 - args.warmup
        print(
            f"  [{scn.name}] round {rnd + 1}/{args.warmup + args.steps}"
            + (" (warm-up)" if done <= 0 else ""),
            file=sys.stderr,
            flush=True,
        )
    if timer is not None:
        timer.current = None
    if meter is not None:
        peaks = cpu_memory(brains, scn.batch, meter)
    for b in brains.values():
        if isinstance(b, DualLossBrain) and b.skipped_steps:
            print(
                f"  warning: {b.rule} skipped {b.skipped_steps} steps",
                file=sys.stderr,
            )
    if device.type == "cpu" and meter is None:
        peaks = None
    return times, phases, peaks


# ---------------------------------------------------------------------------
# CPU memory: resident set size, peak reset before each measured step
# ---------------------------------------------------------------------------


def _proc_status_kib(field):
    """``VmRSS`` (current) or ``VmHWM`` (peak) of this process, in KiB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


class RSSMeter:
    """Peak RSS of one step on CPU (Linux), above the RSS after imports.

    Before a measured step: ``gc.collect()``, glibc ``malloc_trim(0)``
    (freed heap pages go back to the OS) and ``/proc/self/clear_refs``
    ``5`` (resets ``VmHWM`` to the current RSS); after it, ``VmHWM``. From
    :meth:`arm` on, glibc's mmap threshold is fixed at 1 MiB (``mallopt``)
    so that every tensor above 1 MiB is mmapped and unmapped on free:
    freed memory of an earlier step cannot hide in (or inflate) the RSS.
    """

    M_MMAP_THRESHOLD = -3

    def __init__(self):
        self.base_kib = _proc_status_kib("VmRSS")
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"))

    def arm(self):
        self.libc.mallopt(self.M_MMAP_THRESHOLD, 1 << 20)

    def reset(self):
        gc.collect()
        self.libc.malloc_trim(0)
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")

    def peak_bytes(self):
        return (_proc_status_kib("VmHWM") - self.base_kib) * 1024


def cpu_memory(brains, batch, meter):
    """One extra step per config, after the timing, its peak RSS each."""
    meter.arm()
    peaks = {}
    for config in brains:
        meter.reset()
        brains[config].fit_batch(batch)
        peaks[config] = meter.peak_bytes()
    return peaks


# ---------------------------------------------------------------------------
# report
# ---------------------------------------------------------------------------


def _fmt_mib(n):
    return f"{n / 2**20:,.0f} MiB"


def report(scenario, times, phases, peaks):
    """Markdown table; returns the rows for the JSON output."""
    plain = times["plain"]
    rows = []
    lines = [
        f"### {scenario}",
        "",
        "| config | ms/step (median) | ratio to plain | peak mem "
        "| ratio to plain |",
        "|---|---:|---:|---:|---:|",
    ]
    for config in times:
        t = times[config]
        ratio = statistics.median(a / b for a, b in zip(t, plain, strict=True))
        med = statistics.median(t) * 1e3
        row = {
            "config": config,
            "ms_median": med,
            "ms_all": [x * 1e3 for x in t],
            "time_ratio": ratio,
        }
        mem, mem_ratio = "n/a", "n/a"
        if peaks is not None:
            row["peak_bytes"] = peaks[config]
            row["mem_ratio"] = peaks[config] / peaks["plain"]
            mem = _fmt_mib(peaks[config])
            mem_ratio = f"{row['mem_ratio']:.2f}x"
        lines.append(
            f"| {config} | {med:,.0f} ({min(t) * 1e3:,.0f}-"
            f"{max(t) * 1e3:,.0f}) | {ratio:.2f}x | {mem} | {mem_ratio} |"
        )
        if phases[config]:
            row["phases_ms"] = {
                k: statistics.median(p.get(k, 0.0) for p in phases[config])
                * 1e3
                for k in PhaseTimer.PHASES
            }
        rows.append(row)
    print("\n".join(lines) + "\n")
    if any(phases[c] for c in times):
        print(
            f"Breakdown ({scenario}, medians in ms; 'backward/other' = "
            "step - measured phases: the joint backward on the linear "
            "paths (both backward passes for floor), accumulation + "
            "norms + write-back + logging on the per-task paths)\n"
        )
        print(
            "| config | fwd+loss | task_gradients (2 backward) | rule "
            "| optimizer (clip+Adam) | backward/other |"
        )
        print("|---|---:|---:|---:|---:|---:|")
        for row in rows:
            p = row["phases_ms"]
            rest = row["ms_median"] - sum(p.values())
            print(
                f"| {row['config']} | {p['forward']:,.0f} | "
                f"{p['task_gradients']:,.0f} | {p['rule']:,.0f} | "
                f"{p['optimizers_step']:,.0f} | {rest:,.0f} |"
            )
        print()
    return rows


def whisper_source(spec: str) -> Path:
    """The Whisper of ``--whisper``: ``tiny.en``/``base`` (converted from
    the pip packages) or a transformers folder. A folder with a config but
    no weights gets random weights of that shape: step time and memory do
    not depend on the values, so a GPU check needs no checkpoint."""
    folder = Path(spec)
    if not (folder / "config.json").is_file():
        return whisper_checkpoint(spec)
    if any((folder / f).is_file() for f in WEIGHT_FILES):
        return folder
    import shutil

    from transformers import WhisperConfig, WhisperForConditionalGeneration

    out = Path(tempfile.mkdtemp()) / folder.name
    shutil.copytree(folder, out)
    config = WhisperConfig.from_pretrained(folder)
    WhisperForConditionalGeneration(config).save_pretrained(out)
    return out


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--precision", choices=("fp32", "bf16"), default=None)
    p.add_argument(
        "--batch_size",
        type=int,
        default=None,
        help="default 8 on CUDA (paper), 2 on CPU",
    )
    p.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="utterance length; default 4.0 on CUDA (paper), 2.0 on CPU",
    )
    p.add_argument("--steps", type=int, default=None, help="timed rounds")
    p.add_argument("--warmup", type=int, default=None, help="warm-up rounds")
    p.add_argument(
        "--scenario",
        choices=(
            "frozen",
            "trainable",
            "both",
            "gr",
            "gr_whisper",
            "whisper",
            "all",
        ),
        default="both",
        help="both: frozen + trainable; gr: Gradient Remedy at the paper's "
        "sizes; gr_whisper: Gradient Remedy with Whisper trained jointly "
        "(the recipe's size); whisper: D4AM with the real Whisper as the "
        "frozen proxy; all: frozen, trainable, gr",
    )
    p.add_argument(
        "--whisper",
        default="tiny.en",
        help="scenarios whisper, gr_whisper: tiny.en, base, a CTranslate2 "
        "folder or a "
        "transformers folder (config only: random weights of that shape)",
    )
    p.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch intra-op threads; default 1 on CPU (on a shared "
        "machine 1 thread gives far steadier timings than 2), torch's "
        "default on CUDA",
    )
    p.add_argument("--json", default=None, help="write all figures here")
    p.add_argument(
        "--no-memory",
        action="store_true",
        help="skip the CPU memory measurement (one extra step per config)",
    )
    p.add_argument(
        "--breakdown",
        action="store_true",
        help="also time forward / task_gradients / rule / optimizer",
    )
    args = p.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device == "cuda"
    defaults = {
        "precision": "bf16" if cuda else "fp32",
        "batch_size": 8 if cuda else 2,
        "seconds": 4.0 if cuda else 2.0,
        "steps": 20 if cuda else 5,
        "warmup": 3 if cuda else 1,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    return args


def main(argv=None):
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads is None and device.type == "cpu":
        args.threads = 1
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    logging.getLogger("speechbrain").setLevel(logging.ERROR)
    meter = None
    if device.type == "cpu" and not args.no_memory:
        meter = RSSMeter()
    scenarios = {
        "both": ("frozen", "trainable"),
        "all": ("frozen", "trainable", "gr"),
    }.get(args.scenario, (args.scenario,))
    paper = (
        ""
        if (args.batch_size, args.seconds) == (8, 4.0)
        else " (paper: 8 x 4 s)"
    )
    n_demucs = count_parameters(Demucs())
    n_asr = count_parameters(conformer_small())
    n_gr_front = count_parameters(gr_front_end())
    n_gr_asr = count_parameters(gr_asr())
    dev_name = (
        torch.cuda.get_device_name(device)
        if device.type == "cuda"
        else f"CPU, {torch.get_num_threads()} thread(s)"
    )
    print(
        f"**{dev_name}**, torch {torch.__version__}, speechbrain "
        f"{sb.__version__}, {args.precision}, batch {args.batch_size} x "
        f"{args.seconds:g} s{paper}, DEMUCS {n_demucs / 1e6:.2f}M params, ASR "
        f"{n_asr / 1e6:.2f}M params (scenario gr: mask net "
        f"{n_gr_front / 1e6:.2f}M, ASR {n_gr_asr / 1e6:.2f}M); "
        f"{args.warmup} warm-up + {args.steps} "
        "timed rounds, configs interleaved (order rotated per round). "
        "ms/step: median (min-max); time ratio: median over rounds of "
        "config/plain in the same round. Peak memory: "
        + (
            "torch.cuda.max_memory_allocated per step (weights, Adam state, "
            "batch, activations, gradients)."
            if device.type == "cuda"
            else "peak RSS (VmHWM, reset before the step) of one extra step "
            "per config after the timing, minus the RSS after imports "
            "(weights, Adam state, activations, gradients; glibc mmap "
            "threshold fixed at 1 MiB and heap trimmed before each step)."
        )
        + "\n"
    )
    out = {"meta": {**vars(args), "torch": torch.__version__}, "results": {}}
    out["meta"].update(
        device_name=dev_name,
        demucs_params=n_demucs,
        asr_params=n_asr,
        gr_front_params=n_gr_front,
        gr_asr_params=n_gr_asr,
    )
    for name in scenarios:
        scn = Scenario(name, args, device)
        times, phases, peaks = time_scenario(
            scn, args, device, args.breakdown, meter
        )
        del scn
        gc.collect()
        out["results"][name] = report(name, times, phases, peaks)
        sys.stdout.flush()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)


if __name__ == "__main__":
    main()
