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
:func:`robust_brain.pipelines.distill.distill_systems` trains them in
checkpointed stages and :func:`robust_brain.evaluation.probes.evaluate_probes`
scores frozen features with small trained heads (CTC and first-word
classification) on clean / in-domain / out-of-domain speech.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import speechbrain as sb
import torch
import torch.nn.functional as F

from robust_brain.brain import DualLossBrain
from robust_brain.models.student import (
    GradientReversalLayer,
    LayerTeacher,
    dann_lambda,
    distillation_loss,
    masked_mean,
)

__all__ = [
    "SYSTEMS",
    "check_systems",
    "DistillBrain",
    "RobustDistillerBrain",
    "CDMBrain",
    "domain_labels",
    "domain_weights",
    "domain_loss",
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


def domain_weights(domain: str, distorter) -> torch.Tensor:
    """Class weights that balance a domain discriminator: ``1 / (K p_k)``
    for the prior ``p_k`` of each of the ``K`` classes under the student's
    distorter (classes that never occur get 0). With CDM's ``double``
    mode only 1 input in 12 is clean: unweighted, a binary discriminator
    does best by always answering "distorted", and its reversed gradient
    tells the student nothing.

    Arguments
    ---------
    domain : str
        ``binary`` or ``multiclass``.
    distorter : robust_brain.distortions.Distorter

    Returns
    -------
    torch.Tensor
        ``(K,)``; their mean under the prior is 1.

    Example
    -------
    >>> from robust_brain.distortions import Distorter
    >>> d = Distorter("double", additive=["gaussian", "none"],
    ...               nonadditive=["pitch", "none"])
    >>> domain_weights("binary", d).tolist()
    [2.0, 0.6666666865348816]
    """
    probs = dict(
        zip(distorter.domain_names, distorter.domain_probs, strict=True)
    )
    if domain == "binary":
        clean = probs.get("clean", 0.0)
        prior = [clean, 1.0 - clean]
    elif domain == "multiclass":
        prior = [probs[n] for n in distorter.domain_names]
    else:
        raise ValueError(f"dat_domain must be binary or multiclass: {domain!r}")
    k = sum(p > 0 for p in prior)
    return torch.tensor([1.0 / (k * p) if p > 0 else 0.0 for p in prior])


def domain_loss(logits, labels, weights=None) -> torch.Tensor:
    """Domain cross-entropy; with ``weights`` (:func:`domain_weights`)
    each item counts ``weights[label]`` times, averaged over the batch,
    so that the expected loss is the class-balanced one (a batch without
    clean items still counts as the prior says).

    Example
    -------
    >>> logits, labels = torch.zeros(4, 2), torch.tensor([0, 1, 1, 1])
    >>> round(float(domain_loss(logits, labels)), 4)
    0.6931
    >>> w = torch.tensor([2.0, 2.0 / 3.0])
    >>> round(float(domain_loss(logits, labels, w)), 4)  # 0.25 * 2 + 0.75 * 2/3
    0.6931
    """
    ce = F.cross_entropy(logits, labels, reduction="none")
    if weights is None:
        return ce.mean()
    return (weights.to(ce.device)[labels] * ce).mean()


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
    ``clean_view_weight`` (0.0), ``train_logger`` (optional), plus the
    engine's.

    ``clean_view_weight`` w > 0 adds a CLEAN VIEW to training (not part
    of either paper): the student also hears the clean utterance and is
    distilled towards the teacher on it, so the main loss is
    ``L(student(x_s), T(x_t)) + w L(student(x), T(x))``. A student that
    hears distorted speech 11 times in 12 otherwise trades clean accuracy
    for robustness. The teacher's targets are reused when its view is
    clean (CDM-1, RobustDistiller); a batch whose student view is already
    clean (plain) gets no second view. Training only: validation scores
    the distorted view alone, as for every system. The two parts are
    logged as ``distill_distorted`` and ``distill_clean``.

    Example
    -------
    >>> from robust_brain.distortions import DistortedSpeech
    >>> from robust_brain.models.asr import ConformerASR
    >>> from robust_brain.models.student import build_student
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=2, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> teacher = LayerTeacher(asr)
    >>> brain = DistillBrain(
    ...     modules={"student": build_student(teacher, [2], num_layers=1)},
    ...     opt_class=lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"teacher": teacher, "clean_view_weight": 1.0})
    >>> item = {"id": "a", "clean": torch.randn(3200),
    ...         "student": torch.randn(3200), "teacher": torch.randn(3200),
    ...         "student_ops": "gaussian", "teacher_ops": "gaussian"}
    >>> loader = torch.utils.data.DataLoader([item, dict(item, id="b")],
    ...     batch_size=2, collate_fn=DistortedSpeech.collate)
    >>> brain.fit(range(1), loader)
    >>> sorted(brain.train_stats)  # doctest: +ELLIPSIS
    ['distill_clean', 'distill_distorted', ...]
    """

    loss_names = ("distill", "aux")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        teacher = getattr(self.hparams, "teacher", None)
        if not isinstance(teacher, LayerTeacher):
            raise TypeError(
                f"{type(self).__name__}: hparam teacher must be a LayerTeacher"
            )
        self.train_stats = {}
        self.epoch = 0
        self.clean_view_weight = float(
            getattr(self.hparams, "clean_view_weight", 0.0) or 0.0
        )
        if self.clean_view_weight < 0:
            raise ValueError(
                f"clean_view_weight must be >= 0, got {self.clean_view_weight}"
            )
        self.view_stats = {"distill_distorted": [], "distill_clean": []}

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

    def frozen_models(self):
        """The teacher."""
        return [self.teacher]

    def on_stage_start(self, stage, epoch=None):
        """The engine's (re-freeze the teacher, the epoch's distortions)."""
        super().on_stage_start(stage, epoch)
        if stage == sb.Stage.TRAIN:
            self.epoch = epoch or 0

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
        if (
            self.clean_view_weight > 0
            and stage == sb.Stage.TRAIN
            and not all(op == "clean" for op in batch.student_ops)
        ):
            c_wavs, c_lens = batch.clean
            clean = self.modules.student(c_wavs, c_lens)
            if all(op == "clean" for op in batch.teacher_ops):
                targets = out["targets"]  # the teacher already heard x
            else:
                targets = self.teacher.targets(
                    c_wavs, c_lens, self.target_layers
                )
            out["clean_view"] = (clean["preds"], targets, c_lens)
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
        cos_weight = float(getattr(self.hparams, "cos_weight", 1.0))
        loss, _ = distillation_loss(
            outputs["preds"],
            outputs["targets"],
            outputs["lens"],
            cos_weight=cos_weight,
        )
        if "clean_view" in outputs:
            clean, _ = distillation_loss(
                *outputs["clean_view"], cos_weight=cos_weight
            )
            self.view_stats["distill_distorted"].append(loss.item())
            self.view_stats["distill_clean"].append(clean.item())
            loss = loss + self.clean_view_weight * clean
        return {"distill": loss, **self.aux_losses(outputs, batch, stage)}

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log; keep the last checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **self.surgery_summary()}
            self.train_stats.update(
                {k: sum(v) / len(v) for k, v in self.view_stats.items() if v}
            )
            self.view_stats = {k: [] for k in self.view_stats}
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
    >>> from robust_brain.models.student import (EnhancementHead,
    ...     build_student)
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

    The setup is the data's
    (:func:`~robust_brain.pipelines.distill.make_distill_set`). With hparam
    ``dat`` True the auxiliary loss ``dat`` is the discriminator's
    cross-entropy on ``GRL(pool(student last hidden state))``; the
    discriminator (hparam ``discriminator``, NOT in ``modules``) is
    trained by :meth:`discriminator_step` with its own optimizer
    (``dat_opt_class``) on detached features.

    Hparams read (DAT): ``discriminator``, ``dat_opt_class``,
    ``dat_domain`` (``binary`` | ``multiclass``), ``student_distorter``
    (multiclass labels, the prior), ``dat_balanced`` (False; True:
    classes weighted by :func:`domain_weights`), ``dat_lambda_max``
    (1.0), ``dat_gamma`` (10),
    ``dis_step`` (1), ``dat_max_grad_norm`` (5.0), ``epoch_counter``
    (for the DANN progress).

    Example
    -------
    >>> from robust_brain.distortions import DistortedSpeech
    >>> from robust_brain.models.asr import ConformerASR
    >>> from robust_brain.models.student import build_student
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=2, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> teacher = LayerTeacher(asr)
    >>> discriminator = torch.nn.Linear(16, 2)  # student width -> domains
    >>> brain = CDMBrain(
    ...     modules={"student": build_student(teacher, [2], num_layers=1)},
    ...     opt_class=lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"teacher": teacher, "dat": True,
    ...              "discriminator": discriminator,
    ...              "dat_opt_class": lambda p: torch.optim.Adam(p, 1e-3)})
    >>> def item(uid, ops):  # CDM-2: both views distorted (or both clean)
    ...     return {"id": uid, "clean": torch.randn(3200),
    ...             "student": torch.randn(3200), "teacher": torch.randn(3200),
    ...             "student_ops": ops, "teacher_ops": ops}
    >>> loader = torch.utils.data.DataLoader(
    ...     [item("a", "gaussian"), item("b", "clean")], batch_size=2,
    ...     collate_fn=DistortedSpeech.collate)
    >>> brain.fit(range(1), loader)
    >>> sorted(k for k in brain.train_stats if k.startswith("dis_"))
    ['dis_acc', 'dis_loss']
    >>> "discriminator" in brain.modules  # stepped by its own optimizer
    False
    """

    loss_names = ("distill", "dat")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.dat = bool(getattr(self.hparams, "dat", False))
        self.grl = GradientReversalLayer(0.0)
        self.dat_optimizer = None
        self.dat_stats = {
            "dis_loss": [],
            "dis_acc": [],
            "dis_bal_acc": [],
            "lambda": [],
        }
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
            self.domain_weights = None
            if getattr(self.hparams, "dat_balanced", False):
                distorter = getattr(self.hparams, "student_distorter", None)
                if distorter is None:
                    raise ValueError(
                        "dat_balanced: True needs the student_distorter "
                        "(its domain prior)"
                    )
                self.domain_weights = domain_weights(self.domain, distorter)
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
        w = self.domain_weights
        if stage != sb.Stage.TRAIN:
            logits = self.discriminator(pooled)
            return {"dat": domain_loss(logits, labels, w)}
        # the discriminator's parameters are detached here: this path
        # only carries the REVERSED gradient into the student
        params = {
            k: v.detach() for k, v in self.discriminator.named_parameters()
        }
        logits = torch.func.functional_call(
            self.discriminator, params, (self.grl(pooled),)
        )
        return {"dat": domain_loss(logits, labels, w)}

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
        loss = domain_loss(logits, labels, self.domain_weights)
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
        hit = (logits.argmax(-1) == labels).float()
        self.dat_stats["dis_loss"].append(loss.item())
        self.dat_stats["dis_acc"].append(float(hit.mean()))
        if self.domain_weights is not None:  # what a prior-guess can't fake
            w = self.domain_weights.to(hit.device)[labels]
            self.dat_stats["dis_bal_acc"].append(float((w * hit).mean()))
        self.dat_stats["lambda"].append(self.grl.lambda_)
        return loss.item()

    def extra_train_stats(self):
        out = {k: sum(v) / len(v) for k, v in self.dat_stats.items() if len(v)}
        self.dat_stats = {k: [] for k in self.dat_stats}
        return out
