"""Distortion-robust distillation: RobustDistiller and CDM + DAT.

Both are :class:`~robust_brain.brain.DualLossBrain` subclasses: the main
loss is DistilHuBERT's layer-wise distillation (L1 + ``-log sigmoid(cos)``,
docs/methods.md, Distillation loss) from a FROZEN teacher; the auxiliary
loss is

* :class:`RobustDistillerBrain` (docs/methods.md, RobustDistiller):
  ``enh_weight`` (2) x the L1 of the enhancement head's masked noisy STFT
  magnitude to the clean one; the student sees the distorted waveform,
  the teacher the clean one; the head is trained with the student and
  dropped at inference (:meth:`DistillBrain.inference_model` is the
  student alone);
* :class:`CDMBrain` (docs/methods.md, CDM and DAT): Cross-Distortion
  Mapping, setup 1 (teacher clean, student distorted) or setup 2
  (independent distortions for both), and optionally Domain-Adversarial
  Training: ``dat`` = the domain cross-entropy of a discriminator on the
  time-pooled student features, seen THROUGH a gradient-reversal layer
  (coefficient lambda on the DANN schedule).

How DAT meets the engine (which alone steps the student's optimizer):

* the discriminator is NOT in ``modules`` (so not in the engine's
  optimizer, nor in its gradient buffers); in the ``dat`` loss it runs
  with DETACHED copies of its parameters (``torch.func.functional_call``),
  so that path only sends ``-lambda * dL_D/dfeatures`` into the student,
  whatever rule combines it with the distillation gradient;
* its own optimizer (``dat_opt_class``) is stepped in
  :meth:`CDMBrain.discriminator_step`, called from ``on_fit_batch_end``
  (after the engine's step) every ``dis_step`` batches, on the DETACHED
  pooled features of the same forward: ``L_D`` is minimised w.r.t. the
  discriminator parameters only (under DDP their gradients are averaged
  there). Discriminator and its optimizer are checkpointed.

:data:`SYSTEMS` names the five systems of the comparison table;
:func:`distill_systems` trains them in checkpointed stages and
:func:`evaluate_probes` scores frozen features with small trained heads
(CTC and first-word classification) on clean / in-domain / out-of-domain
speech; :func:`distill_table` prints the table.
"""

from __future__ import annotations

import json
import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch
import torch.nn.functional as F

from robust_brain.brain import DualLossBrain
from robust_brain.distortions import DistortedSpeech
from robust_brain.models.demucs import count_parameters
from robust_brain.models.student import (
    DomainDiscriminator,
    EnhancementHead,
    GradientReversalLayer,
    LayerTeacher,
    build_student,
    dann_lambda,
    distillation_loss,
    masked_mean,
)
from robust_brain.stages import fit_stage, loader_kwargs, require_checkpoint
from robust_brain.surgery import make_rule

logger = logging.getLogger(__name__)

__all__ = [
    "SYSTEMS",
    "check_systems",
    "DistillBrain",
    "RobustDistillerBrain",
    "CDMBrain",
    "domain_labels",
    "make_distill_set",
    "train_distill_stage",
    "distill_systems",
    "teacher_encoder_parameters",
    "first_word_classes",
    "evaluate_probes",
    "distill_table",
    "split_groups",
    "evaluate_from_hparams",
    "prepare_hub_data",
    "run_hub_recipe",
]

#: system -> (Brain kind, student distortion, teacher distortion, DAT)
SYSTEMS = OrderedDict(
    [
        ("plain", ("cdm", None, None, False)),
        ("robustdistiller", ("rd", "rd", None, False)),
        ("cdm1", ("cdm", "cdm", None, False)),
        ("cdm2", ("cdm", "cdm", "cdm", False)),
        ("cdm2_dat", ("cdm", "cdm", "cdm", True)),
    ]
)

#: table labels
LABELS = {
    "teacher": "teacher (reference)",
    "plain": "plain distillation",
    "robustdistiller": "RobustDistiller",
    "cdm1": "CDM-1",
    "cdm2": "CDM-2",
    "cdm2_dat": "CDM-2 + DAT",
}


def check_systems(systems: Sequence[str]) -> list[str]:
    """Validate the ``systems`` hparam.

    Arguments
    ---------
    systems : sequence of str

    Returns
    -------
    list of str

    Example
    -------
    >>> check_systems(["plain", "cdm2_dat"])
    ['plain', 'cdm2_dat']
    >>> check_systems(["cdm3"])
    Traceback (most recent call last):
    ...
    ValueError: systems: unknown ['cdm3']; choose among ['plain', ...
    """
    systems = [str(s) for s in systems]
    unknown = [s for s in systems if s not in SYSTEMS]
    if unknown:
        raise ValueError(
            f"systems: unknown {unknown}; choose among {list(SYSTEMS)}"
        )
    return systems


def domain_labels(ops: Sequence[str], domain: str, distorter=None):
    """DAT labels of a batch from its drawn chains.

    Arguments
    ---------
    ops : sequence of str
        Chain names (``clean`` for none).
    domain : str
        ``binary`` (clean 0 / distorted 1) or ``multiclass`` (the chain's
        index in ``distorter.domain_names``).
    distorter : Distorter, optional
        Needed for ``multiclass``.

    Returns
    -------
    torch.LongTensor

    Example
    -------
    >>> domain_labels(["clean", "noise+pitch"], "binary").tolist()
    [0, 1]
    """
    if domain == "binary":
        return torch.tensor([int(o != "clean") for o in ops])
    if domain == "multiclass":
        names = distorter.domain_names
        return torch.tensor([names.index(o) for o in ops])
    raise ValueError(f"dat_domain must be binary or multiclass: {domain!r}")


class DistillBrain(DualLossBrain):
    """Layer-wise distillation from a frozen teacher (the main loss).

    ``modules`` holds ``student`` (a :class:`DistilStudent`) and the
    auxiliary modules of subclasses. Batches are ``PaddedBatch`` of
    :class:`~robust_brain.distortions.DistortedSpeech` items.

    Hparams read: ``teacher`` (a :class:`LayerTeacher`, kept OUT of
    ``modules``, re-frozen at every stage start), ``cos_weight`` (1.0),
    ``train_logger`` (optional), plus the engine's.
    """

    loss_names = ("distill", "aux")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        teacher = getattr(self.hparams, "teacher", None)
        if not isinstance(teacher, LayerTeacher):
            raise TypeError(
                f"{type(self).__name__}: hparam teacher must be a LayerTeacher"
            )
        self._train_data = None
        self._n_train_batches = 1
        self.train_stats = {}
        self.epoch = 0

    @property
    def teacher(self) -> LayerTeacher:
        return self.hparams.teacher

    @property
    def target_layers(self) -> list[int]:
        return self._student().target_layers

    def _student(self):
        s = self.modules.student
        return getattr(s, "module", s)

    def inference_model(self) -> torch.nn.Module:
        """What is kept after training: the student alone (no enhancement
        head, no discriminator)."""
        return self._student()

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader with the dataset's ``collate``."""
        if "collate_fn" not in loader_kwargs and hasattr(dataset, "collate"):
            loader_kwargs["collate_fn"] = dataset.collate
        loader = super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )
        if stage == sb.Stage.TRAIN:
            self._train_data = dataset
            self._n_train_batches = max(len(loader), 1)
        return loader

    def on_fit_start(self):
        """Engine set-up, then the frozen teacher on the device."""
        super().on_fit_start()
        self.teacher.to(self.device).freeze()

    def on_stage_start(self, stage, epoch=None):
        """Re-freeze the teacher; select the epoch's distortions."""
        self.teacher.to(self.device).freeze()
        if stage == sb.Stage.TRAIN:
            self.epoch = epoch or 0
            data = self._train_data
            if data is not None and epoch is not None:
                if hasattr(data, "set_epoch"):
                    data.set_epoch(epoch)

    def compute_forward(self, batch, stage):
        """Student on its input; teacher targets on the teacher's input."""
        batch = batch.to(self.device)
        wavs, lens = batch.student
        out = self.modules.student(wavs, lens)
        t_wavs, t_lens = batch.teacher
        out["targets"] = self.teacher.targets(
            t_wavs, t_lens, self.target_layers
        )
        out["lens"] = lens
        return out

    def aux_losses(self, outputs, batch, stage) -> dict:
        """The auxiliary losses of a subclass (none here)."""
        return {}

    def compute_objectives(self, outputs, batch, stage):
        """``{"distill": ..., <aux>: ...}``.

        Arguments
        ---------
        outputs : dict
        batch : PaddedBatch
        stage : speechbrain.Stage

        Returns
        -------
        dict of str to torch.Tensor
        """
        loss, _ = distillation_loss(
            outputs["preds"],
            outputs["targets"],
            outputs["lens"],
            cos_weight=float(getattr(self.hparams, "cos_weight", 1.0)),
        )
        return {"distill": loss, **self.aux_losses(outputs, batch, stage)}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log; keep the last checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **self.surgery_summary()}
            self.train_stats.update(self.extra_train_stats())
            return
        stats = {"loss": stage_loss}
        if stage == sb.Stage.VALID:
            train_logger = getattr(self.hparams, "train_logger", None)
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta={"epoch": epoch},
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(meta=stats, num_to_keep=1)
        self.last_stats = stats

    def extra_train_stats(self) -> dict:
        """More per-epoch statistics (subclasses)."""
        return {}


class RobustDistillerBrain(DistillBrain):
    """RobustDistiller (docs/methods.md): distorted student, clean teacher,
    and the enhancement head's L1 (weight ``enh_weight``, 2) as ``enh``.

    ``modules``: ``student`` and ``enhancement_head``
    (:class:`EnhancementHead` on the student's CNN features). The head is
    never part of :meth:`inference_model`.

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=2, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> teacher = LayerTeacher(asr)
    >>> student = build_student(teacher, [1, 2], num_layers=1)
    >>> head = EnhancementHead(80, hidden_size=4, num_layers=1)
    >>> brain = RobustDistillerBrain(
    ...     modules={"student": student, "enhancement_head": head},
    ...     opt_class=lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"teacher": teacher, "enh_weight": 2.0})
    >>> sorted(n for n, _ in brain.inference_model().named_children())
    ... # doctest: +NORMALIZE_WHITESPACE
    ['cnn', 'compute_features', 'custom_src_module', 'heads', 'layers',
     'norm', 'positional_encoding']
    """

    loss_names = ("distill", "enh")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if "enhancement_head" not in self.modules:
            raise ValueError(
                "RobustDistillerBrain needs modules.enhancement_head"
            )

    def aux_losses(self, outputs, batch, stage):
        noisy, lens = batch.student
        clean, _ = batch.clean
        enh = self.modules.enhancement_head.loss(
            outputs["cnn"], noisy, clean, lens
        )
        return {"enh": float(getattr(self.hparams, "enh_weight", 2.0)) * enh}


class CDMBrain(DistillBrain):
    """Cross-Distortion Mapping with optional DAT (docs/methods.md).

    The setup is the data's (:func:`make_distill_set`). With hparam
    ``dat`` True the auxiliary loss ``dat`` is the discriminator's
    cross-entropy on ``GRL(pool(student last hidden state))``; the
    discriminator (hparam ``discriminator``, NOT in ``modules``) is
    trained by :meth:`discriminator_step` with its own optimizer
    (``dat_opt_class``) on detached features.

    Hparams read (DAT): ``discriminator``, ``dat_opt_class``,
    ``dat_domain`` (``binary`` | ``multiclass``), ``student_distorter``
    (multiclass labels), ``dat_lambda_max`` (1.0), ``dat_gamma`` (10),
    ``dis_step`` (1), ``dat_max_grad_norm`` (5.0), ``epoch_counter``
    (for the DANN progress).
    """

    loss_names = ("distill", "dat")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dat = bool(getattr(self.hparams, "dat", False))
        self.grl = GradientReversalLayer(0.0)
        self.dat_optimizer = None
        self.dat_stats = {"dis_loss": [], "dis_acc": [], "lambda": []}
        if self.dat:
            disc = getattr(self.hparams, "discriminator", None)
            if not isinstance(disc, torch.nn.Module):
                raise ValueError("CDMBrain with dat: True needs discriminator")
            if getattr(self.hparams, "dat_opt_class", None) is None:
                raise ValueError("CDMBrain with dat: True needs dat_opt_class")
            if "discriminator" in self.modules:
                raise ValueError(
                    "keep the discriminator OUT of modules (its own "
                    "optimizer steps it, the engine must not)"
                )
            self.domain = getattr(self.hparams, "dat_domain", "binary")
            if self.domain not in ("binary", "multiclass"):
                raise ValueError(
                    f"dat_domain must be binary or multiclass: {self.domain!r}"
                )
            self.discriminator = disc.to(self.device)
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable("discriminator", disc)

    def init_optimizers(self):
        """The engine's optimizer (``modules``), then the discriminator's
        own optimizer (registered for checkpointing only: the engine never
        sees it)."""
        super().init_optimizers()
        if self.dat:
            self.dat_optimizer = self.hparams.dat_opt_class(
                self.discriminator.parameters()
            )
            if self.checkpointer is not None:
                self.checkpointer.add_recoverable(
                    "dat_optimizer", self.dat_optimizer
                )

    # ------------------------------------------------------------ lambda
    def progress(self) -> float:
        """Training progress in [0, 1] for the DANN schedule."""
        counter = getattr(self.hparams, "epoch_counter", None)
        epochs = max(int(getattr(counter, "limit", 1) or 1), 1)
        n = self._n_train_batches
        done = (max(self.epoch, 1) - 1) * n + max(self.step - 1, 0)
        return min(done / (epochs * n), 1.0)

    def on_fit_batch_start(self, batch, should_step):
        """Set the GRL coefficient from the DANN schedule."""
        super().on_fit_batch_start(batch, should_step)
        if self.dat:
            self.grl.lambda_ = dann_lambda(
                self.progress(),
                float(getattr(self.hparams, "dat_lambda_max", 1.0)),
                float(getattr(self.hparams, "dat_gamma", 10.0)),
            )

    # ----------------------------------------------------------- forward
    def _labels(self, batch):
        return domain_labels(
            batch.student_ops,
            self.domain,
            getattr(self.hparams, "student_distorter", None),
        ).to(self.device)

    def aux_losses(self, outputs, batch, stage):
        if not self.dat:
            return {}
        pooled = masked_mean(outputs["last"], outputs["lens"])
        outputs["pooled"] = pooled.detach()
        labels = self._labels(batch)
        outputs["domain_labels"] = labels
        if stage != sb.Stage.TRAIN:
            logits = self.discriminator(pooled)
            return {"dat": F.cross_entropy(logits, labels)}
        # the discriminator's parameters are detached here: this path
        # only carries the REVERSED gradient into the student
        params = {
            k: v.detach() for k, v in self.discriminator.named_parameters()
        }
        logits = torch.func.functional_call(
            self.discriminator, params, (self.grl(pooled),)
        )
        return {"dat": F.cross_entropy(logits, labels)}

    # ---------------------------------------------- discriminator update
    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """After the engine's step: the discriminator's own step."""
        super().on_fit_batch_end(batch, outputs, loss, should_step)
        if self.dat and "pooled" in outputs:
            self.discriminator_step(outputs["pooled"], outputs["domain_labels"])

    def discriminator_step(self, features, labels) -> float | None:
        """One update of the discriminator ONLY (every ``dis_step``
        batches): minimise its cross-entropy on detached features.

        Arguments
        ---------
        features : torch.Tensor
            ``(batch, dim)`` pooled student features (detached here).
        labels : torch.Tensor
            Domain labels.

        Returns
        -------
        float or None
            The discriminator loss (None when no step is due).
        """
        every = max(int(getattr(self.hparams, "dis_step", 1)), 1)
        if self.step % every != 0:
            return None
        disc = self.discriminator
        disc.train()
        self.dat_optimizer.zero_grad(set_to_none=True)
        logits = disc(features.detach())
        loss = F.cross_entropy(logits, labels)
        loss.backward()
        if (
            torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            world = torch.distributed.get_world_size()
            for p in disc.parameters():
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= world
        clip = float(getattr(self.hparams, "dat_max_grad_norm", 5.0))
        if clip > 0:
            torch.nn.utils.clip_grad_norm_(disc.parameters(), clip)
        self.dat_optimizer.step()
        self.dat_optimizer.zero_grad(set_to_none=True)
        acc = (logits.argmax(-1) == labels).float().mean()
        self.dat_stats["dis_loss"].append(loss.item())
        self.dat_stats["dis_acc"].append(float(acc))
        self.dat_stats["lambda"].append(self.grl.lambda_)
        return loss.item()

    def extra_train_stats(self):
        out = {k: sum(v) / len(v) for k, v in self.dat_stats.items() if len(v)}
        self.dat_stats = {k: [] for k in self.dat_stats}
        return out


# --------------------------------------------------------------------------
# stages


def make_distill_set(
    system: str,
    rows,
    hparams: Mapping,
    name: str,
    max_samples=None,
):
    """The data of a system: student / teacher views of clean rows.

    Arguments
    ---------
    system : str
        One of :data:`SYSTEMS`.
    rows : sequence of dict
        Clean rows (``wav``).
    hparams : mapping
        Reads ``rd_distorter`` / ``cdm_distorter`` (as the system needs),
        ``seed``, ``speech_level_dbfs``.
    name : str
        Stream name (part of the seeds).
    max_samples : int, optional
        Random crop bound.

    Returns
    -------
    DistortedSpeech
    """
    _, student, teacher, _ = SYSTEMS[system]
    dist = {k: hparams[f"{k}_distorter"] for k in {student, teacher} if k}
    return DistortedSpeech(
        rows,
        student_distorter=dist.get(student),
        teacher_distorter=dist.get(teacher),
        max_samples=max_samples,
        speech_level_dbfs=hparams["speech_level_dbfs"],
        seed=hparams["seed"],
        name=name,
    )


def train_distill_stage(
    system: str,
    teacher: LayerTeacher,
    student: torch.nn.Module,
    train_set,
    valid_set,
    *,
    folder,
    epochs: int,
    opt_class,
    run_opts=None,
    extra_hparams: Mapping | None = None,
    enhancement_head: torch.nn.Module | None = None,
    discriminator: torch.nn.Module | None = None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
) -> DistillBrain:
    """Train one system in ``folder`` (resumable; a finished stage only
    reloads its last checkpoint).

    Arguments
    ---------
    system : str
        One of :data:`SYSTEMS`.
    teacher : LayerTeacher
    student : DistilStudent
        Trained in place.
    train_set, valid_set : DistortedSpeech
    folder : path-like
    epochs : int
    opt_class : callable
    run_opts : dict, optional
    extra_hparams : mapping, optional
        More Brain hparams (``rule_name``, ``cos_weight``, ``enh_weight``,
        DAT settings, ``max_grad_norm``, ...).
    enhancement_head : EnhancementHead, optional
        RobustDistiller.
    discriminator : DomainDiscriminator, optional
        DAT.
    train_loader_kwargs, valid_loader_kwargs : mapping, optional

    Returns
    -------
    DistillBrain
    """
    kind, _, _, dat = SYSTEMS[system]
    folder = Path(folder)
    modules = {"student": student}
    if kind == "rd":
        if enhancement_head is None:
            raise ValueError(f"{system} needs an enhancement head")
        modules["enhancement_head"] = enhancement_head
    extra = dict(extra_hparams or {})
    hparams = {
        "teacher": teacher,
        "surgery_rule": make_rule(extra.pop("rule_name", "sum")),
        "dat": dat,
        "discriminator": discriminator,
        **extra,
    }
    brain = fit_stage(
        RobustDistillerBrain if kind == "rd" else CDMBrain,
        modules,
        folder=folder,
        epochs=epochs,
        opt_class=opt_class,
        train_set=train_set,
        valid_set=valid_set,
        hparams=hparams,
        run_opts=run_opts,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=valid_loader_kwargs,
    )
    recovered = brain.checkpointer.recover_if_possible()
    require_checkpoint(recovered, epochs, system, folder)
    brain.inference_model().eval()
    return brain


def distill_systems(
    hparams: Mapping,
    run_opts,
    teacher: LayerTeacher,
    train_rows,
    valid_rows,
    systems: Sequence[str],
    train: bool = True,
) -> dict:
    """Train (or resume, or reload) each system; fresh student per system.

    Reads ``save_folder``, ``target_layers``, ``student_layers``,
    ``feature_grad_mult``, ``init_from_teacher``, ``distill_epochs``,
    ``distill_opt_class``, ``batch_size``, ``num_workers``,
    ``max_train_samples``, ``rule_name``, ``cos_weight``,
    ``max_grad_norm``, ``grad_accumulation_factor``, and for
    RobustDistiller ``enh_weight``, ``enh_hidden``, ``enh_layers``,
    ``enh_dropout``; for DAT ``dat_domain``, ``dat_hidden``,
    ``dat_opt_class``, ``dat_lambda_max``, ``dat_gamma``, ``dis_step``,
    ``dat_max_grad_norm``.

    Arguments
    ---------
    hparams : mapping
    run_opts : dict
    teacher : LayerTeacher
    train_rows, valid_rows : sequence of dict
        Clean rows.
    systems : sequence of str
    train : bool
        False: only reload the stages.

    Returns
    -------
    dict
        System -> trained student (eval mode).
    """

    out = OrderedDict()
    for system in check_systems(systems):
        kind, student_dist, _, dat = SYSTEMS[system]
        student = build_student(
            teacher,
            hparams["target_layers"],
            num_layers=hparams["student_layers"],
            feature_grad_mult=hparams["feature_grad_mult"],
            init_from_teacher=hparams["init_from_teacher"],
        )
        extra = {
            "rule_name": hparams["rule_name"],
            "cos_weight": hparams["cos_weight"],
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
        }
        head = disc = None
        if kind == "rd":
            with torch.no_grad():
                probe = student(torch.zeros(1, 16000), torch.ones(1))
            head = EnhancementHead(
                probe["cnn"].shape[-1],
                hidden_size=hparams["enh_hidden"],
                num_layers=hparams["enh_layers"],
                dropout=hparams["enh_dropout"],
            )
            extra["enh_weight"] = hparams["enh_weight"]
        if dat:
            domain = hparams["dat_domain"]
            n_dom = 2
            if domain == "multiclass":
                n_dom = len(hparams[f"{student_dist}_distorter"].domain_names)
            disc = DomainDiscriminator(
                student.hidden_size,
                hidden_size=hparams["dat_hidden"],
                num_domains=n_dom,
            )
            extra.update(
                dat_domain=domain,
                dat_opt_class=hparams["dat_opt_class"],
                dat_lambda_max=hparams["dat_lambda_max"],
                dat_gamma=hparams["dat_gamma"],
                dis_step=hparams["dis_step"],
                dat_max_grad_norm=hparams["dat_max_grad_norm"],
                student_distorter=hparams[f"{student_dist}_distorter"],
            )
        train_set = make_distill_set(
            system,
            train_rows,
            hparams,
            f"{system}-train",
            max_samples=hparams["max_train_samples"],
        )
        valid_set = make_distill_set(
            system, valid_rows, hparams, f"{system}-valid"
        )
        brain = train_distill_stage(
            system,
            teacher,
            student,
            train_set,
            valid_set,
            folder=Path(hparams["save_folder"]) / system,
            epochs=hparams["distill_epochs"] if train else 0,
            opt_class=hparams["distill_opt_class"],
            run_opts=run_opts,
            extra_hparams=extra,
            enhancement_head=head,
            discriminator=disc,
            train_loader_kwargs=loader_kwargs(
                hparams, hparams["batch_size"], True
            ),
            valid_loader_kwargs=loader_kwargs(
                hparams, hparams["batch_size"], False
            ),
        )
        out[system] = brain.inference_model()
    return out


# --------------------------------------------------------------------------
# downstream probes


def teacher_encoder_parameters(teacher: LayerTeacher) -> int:
    """Parameters of the teacher's ENCODER (what the student replaces;
    the offline Conformer's decoder and output layers are not counted).

    Arguments
    ---------
    teacher : LayerTeacher

    Returns
    -------
    int
    """
    m = teacher.model
    if teacher.is_conformer:
        tr = m.transformer
        parts = [m.cnn, tr.custom_src_module, tr.encoder]
        return sum(count_parameters(p) for p in parts)
    return count_parameters(m)


def first_word_classes(texts: Sequence[str], k: int) -> list[str]:
    """The keyword task's classes: the ``k`` most frequent first words,
    then ``OTHER``.

    Arguments
    ---------
    texts : sequence of str
    k : int

    Returns
    -------
    list of str

    Example
    -------
    >>> first_word_classes(["A B", "THE C", "THE D", "SHE E"], 2)
    ['THE', 'A', 'OTHER']
    """
    counts = Counter(t.split()[0] for t in texts if t.split())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [w for w, _ in top] + ["OTHER"]


def _word_label(text, classes):
    words = text.split()
    w = words[0] if words else ""
    return classes.index(w) if w in classes else len(classes) - 1


def _load_level(path, level_dbfs):
    from speechbrain.dataio.dataio import read_audio

    from robust_brain.data.streams import scale_to_dbfs

    x = read_audio(path).float()
    if x.dim() > 1:
        x = x.mean(-1)
    return scale_to_dbfs(x, level_dbfs)


@torch.no_grad()
def _extract(feature_fn, wavs, batch_size, device):
    """Frozen features of a list of 1-D signals, in order."""
    order = sorted(range(len(wavs)), key=lambda i: wavs[i].numel())
    feats = [None] * len(wavs)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        n = max(wavs[i].numel() for i in idx)
        batch = torch.zeros(len(idx), n)
        lens = torch.zeros(len(idx))
        for j, i in enumerate(idx):
            batch[j, : wavs[i].numel()] = wavs[i]
            lens[j] = wavs[i].numel() / n
        out = feature_fn(batch.to(device), lens.to(device)).float().cpu()
        t = out.shape[1]
        for j, i in enumerate(idx):
            feats[i] = out[j, : max(1, int(round(float(lens[j]) * t)))]
    return feats


def _pad(feats):
    n = max(f.shape[0] for f in feats)
    x = torch.zeros(len(feats), n, feats[0].shape[1])
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
    lens = torch.tensor([f.shape[0] for f in feats])
    return x, lens


class _Probe(torch.nn.Module):
    def __init__(self, dim, hidden, n_out):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.LayerNorm(dim),
            torch.nn.Linear(dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_out),
        )

    def forward(self, x):
        return self.net(x)


def _train_probe(feats, targets, kind, n_out, epochs, lr, hidden, seed):
    """Train a small head on frozen features (``ctc`` or ``cls``)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = _Probe(feats[0].shape[1], hidden, n_out)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    bs = 16
    for _ in range(epochs):
        perm = torch.randperm(len(feats), generator=gen).tolist()
        for s in range(0, len(perm), bs):
            idx = perm[s : s + bs]
            x, lens = _pad([feats[i] for i in idx])
            out = head(x)
            if kind == "ctc":
                tok = [targets[i] for i in idx]
                tlens = torch.tensor([len(t) for t in tok])
                flat = torch.tensor(
                    [v for t in tok for v in t], dtype=torch.long
                )
                loss = F.ctc_loss(
                    out.log_softmax(-1).transpose(0, 1),
                    flat,
                    lens,
                    tlens,
                    blank=0,
                    zero_infinity=True,
                )
            else:
                mask = (torch.arange(x.shape[1])[None] < lens[:, None]).float()
                pooled = (out * mask[..., None]).sum(1) / lens[:, None]
                loss = F.cross_entropy(
                    pooled, torch.tensor([targets[i] for i in idx])
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


@torch.no_grad()
def _ctc_decode(head, feats, tokenizer):
    from robust_brain.models.asr import decode_tokens

    hyps = []
    for f in feats:
        ids = head(f[None]).argmax(-1)[0].tolist()
        out, prev = [], None
        for i in ids:
            if i != prev and i != 0:
                out.append(i)
            prev = i
        hyps.append(decode_tokens(tokenizer, out))
    return hyps


@torch.no_grad()
def _classify(head, feats):
    return [int(head(f[None]).mean(1).argmax(-1)) for f in feats]


def _error_rates(refs, hyps):
    from robust_brain.evaluation.metrics import word_errors

    w = c = nw = nc = 0
    for r, h in zip(refs, hyps, strict=True):
        e = word_errors(r, h)
        w, nw = w + e.errors, nw + e.n_ref
        rc = " ".join(r.replace(" ", "_"))
        hc = " ".join(h.upper().replace(" ", "_"))
        ec = word_errors(rc, hc, normalised=True)
        c, nc = c + ec.errors, nc + ec.n_ref
    return 100.0 * w / max(nw, 1), 100.0 * c / max(nc, 1)


def evaluate_probes(
    systems: Mapping,
    train_rows,
    eval_groups: Mapping,
    tokenizer,
    out_dir,
    *,
    params: Mapping | None = None,
    teacher_params: int | None = None,
    feature_kind: str = "last",
    probe_epochs: int = 10,
    probe_lr: float = 1e-3,
    probe_hidden: int = 128,
    kws_classes: int = 4,
    level_dbfs: float = -25.0,
    batch_size: int = 8,
    device: str = "cpu",
    seed: int = 0,
) -> list[dict]:
    """Frozen features + small trained heads, per system and group.

    For each system: features of the (clean) probe training rows, a CTC
    head (tokens of ``tokenizer``) and a first-word classifier
    (:func:`first_word_classes`) trained on them, then WER / CER (%) and
    accuracy (%) on each evaluation group. One JSON per system in
    ``out_dir`` (so that several runs add up in one table).

    Arguments
    ---------
    systems : mapping
        Name -> a student (``features(wavs, lens, kind)``) or a
        :class:`LayerTeacher` (its last layer).
    train_rows : sequence of dict
        ``wav`` and ``wrd``.
    eval_groups : mapping
        Group name -> rows (``noisy_wav`` or ``wav``, and ``wrd``), or
        ``(clean rows, Distorter)``: distorted online, seeded by
        ``(seed, group, index)``.
    tokenizer : sentencepiece.SentencePieceProcessor
    out_dir : path-like
    params : mapping, optional
        System -> parameter count.
    teacher_params : int, optional
    feature_kind : str
        ``last`` or ``pred`` (students).
    probe_epochs, probe_lr, probe_hidden : int, float, int
    kws_classes : int
        Number of first-word classes (+ OTHER).
    level_dbfs : float
        Every input is scaled to this level.
    batch_size : int
    device : str
    seed : int

    Returns
    -------
    list of dict
        One row per system.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train_wavs = [_load_level(r["wav"], level_dbfs) for r in train_rows]
    texts = [r["wrd"] for r in train_rows]
    tokens = [tokenizer.encode_as_ids(t) for t in texts]
    classes = first_word_classes(texts, kws_classes)
    labels = [_word_label(t, classes) for t in texts]
    groups = OrderedDict()
    for g, rows in eval_groups.items():
        distorter = None
        if isinstance(rows, tuple):  # (clean rows, distorter): online
            rows, distorter = rows
        if not rows:
            continue
        wavs = [
            _load_level(r.get("noisy_wav") or r["wav"], level_dbfs)
            for r in rows
        ]
        if distorter is not None:
            from robust_brain.data.streams import item_rng, scale_to_dbfs

            wavs = [
                scale_to_dbfs(
                    distorter(w, item_rng(seed, "eval", g, i))[0], level_dbfs
                )
                for i, w in enumerate(wavs)
            ]
        groups[g] = (wavs, [r["wrd"] for r in rows])
    results = []
    for name, model in systems.items():
        model.to(device).eval()
        if isinstance(model, LayerTeacher):

            def fn(w, n, m=model):
                return m(w, n)[-1]

        else:

            def fn(w, n, m=model):
                return m.features(w, n, feature_kind)

        feats = _extract(fn, train_wavs, batch_size, device)
        ctc = _train_probe(
            feats,
            tokens,
            "ctc",
            tokenizer.get_piece_size(),
            probe_epochs,
            probe_lr,
            probe_hidden,
            seed,
        )
        cls = _train_probe(
            feats,
            labels,
            "cls",
            len(classes),
            probe_epochs,
            probe_lr,
            probe_hidden,
            seed,
        )
        row = {"system": name}
        if params and name in params:
            row["params"] = int(params[name])
        if teacher_params:
            row["teacher_params"] = int(teacher_params)
        for g, (wavs, refs) in groups.items():
            f = _extract(fn, wavs, batch_size, device)
            row[f"wer_{g}"], row[f"cer_{g}"] = _error_rates(
                refs, _ctc_decode(ctc, f, tokenizer)
            )
            gold = [_word_label(t, classes) for t in refs]
            pred = _classify(cls, f)
            row[f"acc_{g}"] = (
                100.0
                * sum(int(a == b) for a, b in zip(gold, pred, strict=True))
                / len(gold)
            )
            row[f"n_{g}"] = len(refs)
        row["kws_classes"] = classes
        (out_dir / f"{name}.json").write_text(json.dumps(row, indent=1))
        results.append(row)
    return results


def distill_table(eval_dir, groups: Sequence[str], title: str = "") -> str:
    """Markdown table of every ``<eval_dir>/<system>.json``.

    Arguments
    ---------
    eval_dir : path-like
    groups : sequence of str
        Column groups, e.g. ``clean, in_domain, out_of_domain``.
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> row = {"system": "plain", "params": 2000000, "teacher_params": 8000000,
    ...        "wer_clean": 50.0, "cer_clean": 20.0, "acc_clean": 90.0}
    >>> _ = (d / "plain.json").write_text(json.dumps(row))
    >>> print(distill_table(d, ["clean"]))  # doctest: +NORMALIZE_WHITESPACE
    | system | params (M) | % teacher | WER clean | CER clean | KWS acc clean |
    |---|---|---|---|---|---|
    | plain distillation | 2.00 | 25.0 | 50.0 | 20.0 | 90.0 |
    """
    rows = {}
    for p in sorted(Path(eval_dir).glob("*.json")):
        row = json.loads(p.read_text())
        rows[row["system"]] = row
    order = [s for s in ("teacher", *SYSTEMS) if s in rows]
    order += [s for s in rows if s not in order]
    heads = ["system", "params (M)", "% teacher"]
    heads += [f"WER {g}" for g in groups] + [f"CER {g}" for g in groups]
    heads += [f"KWS acc {g}" for g in groups]
    lines = [title, ""] if title else []
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]

    def fmt(v):
        return "–" if v is None else f"{v:.1f}"

    for s in order:
        r = rows[s]
        p, tp = r.get("params"), r.get("teacher_params")
        cells = [
            LABELS.get(s, s),
            "–" if p is None else f"{p / 1e6:.2f}",
            "–" if not (p and tp) else f"{100 * p / tp:.1f}",
        ]
        for key in ("wer", "cer", "acc"):
            cells += [fmt(r.get(f"{key}_{g}")) for g in groups]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def split_groups(rows, groups: Mapping, max_per_condition=None) -> dict:
    """Rows of a pair manifest grouped by condition family.

    Arguments
    ---------
    rows : sequence of dict
        With a ``condition`` column (``pink_5dB``, ``reverb``, ...).
    groups : mapping
        Group -> condition families (the condition without its SNR).
    max_per_condition : int, optional
        Keep the first N rows of each condition.

    Returns
    -------
    dict
        Group -> rows.

    Example
    -------
    >>> rows = [{"condition": c} for c in ("clean", "pink_0dB", "pink_5dB",
    ...         "babble_0dB", "reverb")]
    >>> g = split_groups(rows, {"clean": ["clean"], "in": ["pink"],
    ...                         "out": ["babble", "reverb"]})
    >>> {k: len(v) for k, v in g.items()}
    {'clean': 1, 'in': 2, 'out': 2}
    """
    from robust_brain.evaluation.frontends import condition_family

    family_group = {}
    for g, fams in groups.items():
        for f in fams:
            family_group[str(f)] = g
    out = OrderedDict((g, []) for g in groups)
    seen = Counter()
    for r in rows:
        g = family_group.get(condition_family(r))
        if g is None:
            continue
        seen[r["condition"]] += 1
        if max_per_condition and seen[r["condition"]] > max_per_condition:
            continue
        out[g].append(r)
    return out


def evaluate_from_hparams(
    hparams: Mapping,
    systems: Mapping,
    teacher: LayerTeacher,
    tokenizer,
    train_rows,
    eval_groups: Mapping,
    device: str = "cpu",
    title: str = "",
) -> str:
    """:func:`evaluate_probes` + :func:`distill_table` configured by a
    recipe's hparams; writes ``<eval_folder>/<system>.json`` and
    ``<output_folder>/results.md``.

    Reads ``eval_folder``, ``output_folder``, ``eval_teacher``,
    ``probe_feature``, ``probe_epochs``, ``probe_lr``, ``probe_hidden``,
    ``kws_classes``, ``speech_level_dbfs``, ``eval_batch_size``, ``seed``.

    Arguments
    ---------
    hparams : mapping
    systems : mapping
        System -> trained student.
    teacher : LayerTeacher
    tokenizer : sentencepiece.SentencePieceProcessor
    train_rows : sequence of dict
        Probe training rows (clean).
    eval_groups : mapping
        See :func:`evaluate_probes`.
    device : str
    title : str

    Returns
    -------
    str
        The markdown table.
    """
    models = OrderedDict()
    params = {name: count_parameters(m) for name, m in systems.items()}
    t_params = teacher_encoder_parameters(teacher)
    if hparams["eval_teacher"]:
        models["teacher"] = teacher
        params["teacher"] = t_params
    models.update(systems)
    evaluate_probes(
        models,
        train_rows,
        eval_groups,
        tokenizer,
        hparams["eval_folder"],
        params=params,
        teacher_params=t_params,
        feature_kind=hparams["probe_feature"],
        probe_epochs=hparams["probe_epochs"],
        probe_lr=hparams["probe_lr"],
        probe_hidden=hparams["probe_hidden"],
        kws_classes=hparams["kws_classes"],
        level_dbfs=hparams["speech_level_dbfs"],
        batch_size=hparams["eval_batch_size"],
        device=device,
        seed=hparams["seed"],
    )
    table = distill_table(hparams["eval_folder"], list(eval_groups), title)
    if sb.utils.distributed.if_main_process():
        out = Path(hparams["output_folder"]) / "results.md"
        out.write_text(table + "\n")
    return table


def prepare_hub_data(hparams: Mapping) -> dict:
    """Write (once, on the main process) and read the LibriSpeech and DNS
    noise manifests of the hub-teacher recipes.

    Reads ``data_folder``, ``dns_folder``, ``dns_noise_subdir``,
    ``save_folder``, ``train_splits``, ``valid_split``, ``test_split``,
    ``probe_train_split``, ``skip_prep``.

    Arguments
    ---------
    hparams : mapping

    Returns
    -------
    dict
        Split / ``noise`` -> manifest path.
    """
    from robust_brain.data.prepare.dns import prepare_dns_noise
    from robust_brain.data.prepare.librispeech import prepare_librispeech

    splits = list(
        dict.fromkeys(
            [
                *hparams["train_splits"],
                hparams["valid_split"],
                hparams["test_split"],
                hparams["probe_train_split"],
            ]
        )
    )
    jobs = [
        (
            prepare_librispeech,
            {
                "data_folder": hparams["data_folder"],
                "save_folder": hparams["save_folder"],
                "splits": splits,
            },
        ),
        (
            prepare_dns_noise,
            {
                "data_folder": hparams["dns_folder"],
                "save_folder": hparams["save_folder"],
                "noise_subdir": hparams["dns_noise_subdir"],
            },
        ),
    ]
    paths = {}
    for fn, kwargs in jobs:
        sb.utils.distributed.run_on_main(
            fn, kwargs={**kwargs, "skip_prep": hparams["skip_prep"]}
        )
        paths.update(fn(**kwargs, skip_prep=True))
    return paths


def run_hub_recipe(hparams: Mapping, run_opts, stages: Sequence[str]):
    """The LibriSpeech recipes after preparation: the frozen hub teacher
    (``teacher``), the ``systems``, the probe evaluation.

    Reads (besides :func:`distill_systems` and
    :func:`evaluate_from_hparams`): ``teacher``, ``systems``,
    ``data_folder``, ``train_splits``, ``valid_split``, ``test_split``,
    ``probe_train_split``, ``train_max_utterances``,
    ``valid_max_utterances``, ``probe_train_utterances``,
    ``eval_max_utterances``, ``tokenizer_vocab_size``,
    ``eval_in_domain_distorter``, ``eval_out_of_domain_distorter``.

    Arguments
    ---------
    hparams : mapping
    run_opts : dict
    stages : sequence of str
        ``distill`` and / or ``evaluate``.

    Returns
    -------
    str or None
        The results table (when evaluated).
    """
    from robust_brain.asr_training import train_tokenizer
    from robust_brain.data.streams import read_rows

    paths = prepare_hub_data(hparams)
    root = hparams["data_folder"]

    def rows(split, limit):
        r = read_rows(paths[split], root)
        return r[: int(limit)] if limit else r

    systems = check_systems(hparams["systems"])
    distorters = {
        "rd": hparams["rd_distorter"] if "rd_distorter" in hparams else None,
        "cdm": hparams["cdm_distorter"] if "cdm_distorter" in hparams else None,
    }
    for key, dist in distorters.items():
        if any(SYSTEMS[s][1] == key for s in systems):
            if dist is None:
                raise ValueError(f"systems {systems} need {key}_distorter")
            dist.check()
    teacher = LayerTeacher(hparams["teacher"])
    train_rows = []
    for split in hparams["train_splits"]:
        train_rows += read_rows(paths[split], root)
    limit = hparams["train_max_utterances"]
    train_rows = train_rows[: int(limit)] if limit else train_rows
    students = distill_systems(
        hparams,
        run_opts,
        teacher,
        train_rows,
        rows(hparams["valid_split"], hparams["valid_max_utterances"]),
        systems,
        train="distill" in stages,
    )
    if "evaluate" not in stages or not sb.utils.distributed.if_main_process():
        return None
    probe_rows = rows(
        hparams["probe_train_split"], hparams["probe_train_utterances"]
    )
    tokenizer = train_tokenizer(
        Path(hparams["save_folder"]) / "tokenizer",
        paths[hparams["probe_train_split"]],
        hparams["tokenizer_vocab_size"],
        "unigram",
    )
    test = rows(hparams["test_split"], hparams["eval_max_utterances"])
    groups = OrderedDict(
        [
            ("clean", test),
            ("in_domain", (test, hparams["eval_in_domain_distorter"].check())),
            (
                "out_of_domain",
                (test, hparams["eval_out_of_domain_distorter"].check()),
            ),
        ]
    )
    return evaluate_from_hparams(
        hparams,
        students,
        teacher,
        tokenizer,
        probe_rows,
        groups,
        device=run_opts.get("device") or "cpu",
        title=f"LibriSpeech probes, seed {hparams['seed']}",
    )
