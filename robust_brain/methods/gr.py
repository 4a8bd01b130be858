"""Gradient Remedy: joint SE front-end + E2E ASR (Hu et al., ICASSP 2023).

:class:`GRBrain` is a :class:`~robust_brain.brain.DualLossBrain` with
``loss_names = ("asr", "se")`` (docs/methods.md): the enhancer (the
BLSTM mask network :class:`~robust_brain.models.mask_net.MaskNet`, or any
waveform front-end such as DEMUCS) feeds its WAVEFORM to a
:class:`~robust_brain.models.asr.ConformerASR`, and both are trained
JOINTLY on

* ``asr``: ``(1 - lambda) * L_ASR`` (joint CTC/attention, teacher-forced
  decoder), reaching the ASR and, through the waveform, the enhancer;
* ``se``: ``lambda * L_SE`` (``se_loss``, by default the official squared
  magnitude error :class:`~robust_brain.models.mask_net.MagnitudeLoss`),
  reaching the enhancer only; ``lambda = se_weight = 0.3``.

GR sees the already weighted gradients, as the official code. The
enhancer is the ONLY shared module (``shared_modules: [enhancer]``): the
rule combines the two gradients there, per parameter tensor; the ASR's
parameters receive the ASR gradient alone (the engine gives non-shared
parameters the plain sum, and ``L_SE`` does not reach them).

One hparam, ``rule``, selects the combination (:func:`make_gr_rule`):

=========  ==================================================
rule       update of the enhancer's parameters
=========  ==================================================
MTL        ``g_asr + g_se`` (plain multi-task sum)
PCGrad     two-task PCGrad (projection of both on conflict)
GR-angle   angle remedy only (acute angle ``arctan(r)``)
GR-scale   magnitude remedy only (``r > K``: ``c g_se + g_asr / c``)
GR         both (the paper's method)
=========  ==================================================

Every rule is wrapped in :class:`TensorStats`, which adds the per-tensor
angle, cosine, ratio ``r = ||g_se|| / ||g_asr||`` and conflict fraction of
the INCOMING gradients to the engine's per-step log (``surgery_log_file``),
whatever the rule; GR's own statistics (angle theta, ratio after the
angle step, conflict and rescale fractions) come on top.

The recipes' stages are in :mod:`robust_brain.pipelines.gr`, the
evaluation (own free-running WER, unseen recognisers, the table) in
:mod:`robust_brain.evaluation.joint` and the front-ends in
:mod:`robust_brain.models.frontends`.
"""

from __future__ import annotations

import math

import speechbrain as sb
import torch

from robust_brain.brain import DualLossBrain
from robust_brain.stages import SelectedCheckpoint
from robust_brain.surgery import CombinationRule, make_rule

__all__ = [
    "RULES",
    "LOSSES",
    "check_rule",
    "make_gr_rule",
    "tensor_statistics",
    "TensorStats",
    "GRBrain",
]


#: the rules of the GR paper's comparison, in table order
RULES = ("MTL", "PCGrad", "GR-angle", "GR-scale", "GR")
_SURGERY = {
    "MTL": "sum",
    "PCGrad": "pcgrad",
    "GR-angle": "gr-angle",
    "GR-scale": "gr-scale",
    "GR": "gr",
}
LOSSES = ("asr", "se")


def check_rule(name: str) -> str:
    """The canonical spelling of a rule name (case and ``_`` ignored).

    Arguments
    ---------
    name : str
        One of :data:`RULES`, e.g. ``gr_angle`` or ``pcgrad``.

    Returns
    -------
    str

    Example
    -------
    >>> check_rule("gr_angle"), check_rule("pcgrad"), check_rule("mtl")
    ('GR-angle', 'PCGrad', 'MTL')
    >>> check_rule("GCLB")
    Traceback (most recent call last):
    ...
    ValueError: unknown GR rule 'GCLB'; choose one of MTL, PCGrad, ...
    """
    key = str(name).lower().replace("_", "-")
    for rule in RULES:
        if rule.lower() == key:
            return rule
    raise ValueError(
        f"unknown GR rule {name!r}; choose one of {', '.join(RULES)}"
    )


def tensor_statistics(
    g_se: torch.Tensor,
    g_asr: torch.Tensor,
    segments: torch.Tensor | None = None,
    eps: float = 1e-12,
) -> dict[str, torch.Tensor]:
    """Per-tensor geometry of two gradients (before any rule).

    Over the segments (parameter tensors) where both norms exceed ``eps``:
    mean angle (degrees) and mean cosine between ``g_se`` and ``g_asr``,
    median ratio ``||g_se|| / ||g_asr||`` and fraction in conflict
    (negative dot product). A zero gradient never gives NaN.

    Arguments
    ---------
    g_se, g_asr : torch.Tensor
        Flat gradients.
    segments : torch.Tensor, optional
        Lengths of the tensors (default: one segment).
    eps : float
        Norm guard.

    Returns
    -------
    dict of str to 0-dim tensors
        ``pre_angle_deg``, ``pre_cos``, ``pre_ratio``, ``pre_conflict``.

    Example
    -------
    >>> s = tensor_statistics(torch.tensor([1.0, 0.0, -1.0, 0.0]),
    ...                       torch.tensor([1.0, 1.0, 2.0, 0.0]),
    ...                       torch.tensor([2, 2]))
    >>> {k: round(v.item(), 2) for k, v in s.items()}
    ... # doctest: +NORMALIZE_WHITESPACE
    {'pre_angle_deg': 112.5, 'pre_cos': -0.15, 'pre_ratio': 0.5,
     'pre_conflict': 0.5}
    >>> tensor_statistics(torch.ones(3), torch.zeros(3))["pre_angle_deg"]
    tensor(0.)
    """
    n = g_se.numel()
    if segments is None:
        segments = torch.tensor([n], device=g_se.device)
    segments = segments.to(g_se.device)

    def sums(x):
        return torch.segment_reduce(x, "sum", lengths=segments)

    se_sq, asr_sq = sums(g_se * g_se), sums(g_asr * g_asr)
    dot = sums(g_se * g_asr)
    valid = (se_sq > eps * eps) & (asr_sq > eps * eps)
    count = valid.sum()
    se_n, asr_n = se_sq.sqrt(), asr_sq.sqrt()
    safe = torch.where(valid, se_n * asr_n, torch.ones_like(se_n))
    cos = torch.where(valid, dot / safe, 0.0).clamp(-1.0, 1.0)
    angle = torch.rad2deg(torch.arccos(cos))
    ratio = torch.where(valid, se_n / torch.where(valid, asr_n, 1.0), 0.0)
    denom = count.clamp_min(1).to(g_se.dtype)
    # median over the valid tensors without a host sync (all invalid: 0)
    med = torch.where(valid, ratio, math.nan).nanmedian().nan_to_num(0.0)
    return {
        "pre_angle_deg": (angle * valid).sum() / denom,
        "pre_cos": (cos * valid).sum() / denom,
        "pre_ratio": med,
        "pre_conflict": ((dot < 0) & valid).sum() / denom,
    }


class TensorStats(CombinationRule):
    """A rule plus per-tensor statistics of its incoming gradients.

    Delegates the combination to ``rule`` (which receives the tensor
    boundaries only if it is itself per tensor) and adds
    :func:`tensor_statistics` of ``(g_aux, g_main)`` to its statistics, so
    that every rule of the comparison logs the same angle / ratio / cosine
    columns. Linear rules stay linear (the engine then takes its one-backward
    path and calls no rule, unless ``log_task_gradients``).

    Arguments
    ---------
    rule : CombinationRule

    Example
    -------
    >>> from robust_brain.surgery import Sum
    >>> rule = TensorStats(Sum())
    >>> g, stats = rule(torch.tensor([1.0, 0.0]), torch.tensor([-1.0, 1.0]))
    >>> g, round(stats["pre_angle_deg"].item(), 1)
    (tensor([0., 1.]), 135.0)
    """

    per_tensor = True

    def __init__(self, rule: CombinationRule):
        super().__init__()
        self.rule = rule
        self.needs_lr = rule.needs_lr
        self.linear_weights = rule.linear_weights

    def combine(self, g_main, g_aux, segments=None, lr=None):
        """See :meth:`CombinationRule.combine`."""
        stats = tensor_statistics(g_aux, g_main, segments)
        combined, rule_stats = self.rule(
            g_main,
            g_aux,
            segments=segments if self.rule.per_tensor else None,
            lr=lr,
        )
        return combined, {**rule_stats, **stats}


def make_gr_rule(
    name: str,
    k: float = 5.0,
    per_tensor: bool = True,
    tensor_stats: bool = True,
    pcgrad_per_tensor: bool = False,
) -> CombinationRule:
    """The combination rule of one of :data:`RULES`.

    Arguments
    ---------
    name : str
        ``MTL``, ``PCGrad``, ``GR-angle``, ``GR-scale`` or ``GR``.
    k : float
        Rescale threshold K of the magnitude remedy (5).
    per_tensor : bool
        Remedy each parameter tensor separately (official behaviour).
    tensor_stats : bool
        Wrap the rule in :class:`TensorStats`.
    pcgrad_per_tensor : bool
        The PCGrad baseline per parameter tensor too (the same granularity
        as GR), instead of one projection of the whole vector (Yu et al.).

    Returns
    -------
    CombinationRule

    Example
    -------
    >>> rule = make_gr_rule("GR-scale", k=3.0)
    >>> type(rule.rule).__name__, rule.rule.k, rule.rule.angle
    ('GradientRemedy', 3.0, False)
    >>> make_gr_rule("MTL", tensor_stats=False).linear_weights
    (1.0, 1.0)
    >>> make_gr_rule("PCGrad", pcgrad_per_tensor=True).rule.per_tensor
    True
    """
    if not k > 0:
        raise ValueError(f"the rescale threshold k must be > 0, got {k}")
    canonical = check_rule(name)
    rule = make_rule(
        _SURGERY[canonical],
        k=k,
        per_tensor=pcgrad_per_tensor if canonical == "PCGrad" else per_tensor,
    )
    return TensorStats(rule) if tensor_stats else rule


class GRBrain(SelectedCheckpoint, DualLossBrain):
    """Joint SE + ASR training with a GR-family rule, on the engine.

    ``modules``: ``enhancer`` (``enhancer(wavs, lengths)`` -> waveform;
    a module with ``returns_magnitude = True``, as
    :class:`~robust_brain.models.mask_net.MaskNet`, is called with
    ``return_magnitude=True`` and its masked magnitude goes to the SE loss)
    and, when the ASR loss is computed, ``asr`` (a
    :class:`~robust_brain.models.asr.ConformerASR`).

    Hparams read (top level):

    * ``rule``: one of :data:`RULES` (default ``GR``); ``surgery_rule``
      (optional) overrides it with a rule object;
    * ``remedy_k`` (5.0), ``remedy_per_tensor`` (True): GR's constants;
      ``pcgrad_per_tensor`` (False): the PCGrad baseline per tensor;
    * ``se_weight``: lambda (0.3); ``se_loss``: ``loss(estimate, clean,
      lengths[, estimate_magnitude=...])``;
    * ``joint_losses``: ``[asr, se]`` (default), or ``[se]`` to pre-train
      the enhancer alone (weight 1, no ASR needed), or ``[asr]``;
    * ``shared_modules``: default ``[enhancer]``;
    * ``update_asr_normalizer``: let the ASR's global feature statistics
      keep learning (training from scratch); default False (pre-trained
      statistics are kept fixed);
    * ``lr_scheduler`` (optional): a per-step SpeechBrain scheduler called
      with the optimizer after each optimizer step (e.g. Noam warm-up);
    * ``tokenizer`` (optional): validation greedy-CTC WER;
    * ``train_logger``, ``ckpt_selection`` (``last``, ``loss``, ``WER``).

    Batches are ``PaddedBatch`` of
    :class:`~robust_brain.data.streams.SpeechStream` items (``noisy``,
    ``clean``, ``tokens``, ``wrd``).

    Example
    -------
    >>> from robust_brain.models.mask_net import MagnitudeLoss, MaskNet
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> enh = MaskNet(n_fft=64, hop_length=32, num_layers=1, hidden_size=4)
    >>> asr = ConformerASR(vocab_size=6, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False)
    >>> brain = GRBrain(modules={"enhancer": enh, "asr": asr},
    ...     opt_class=lambda p: torch.optim.SGD(p, lr=0.01),
    ...     hparams={"rule": "gr", "se_loss": MagnitudeLoss(64, 32)})
    >>> brain.rule_name, brain.se_weight, brain.hparams.shared_modules
    ('GR', 0.3, ['enhancer'])
    """

    loss_names = ("asr", "se")

    selection_keys = ("loss", "WER")

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
    ):
        hparams = dict(hparams or {})
        self.rule_name = check_rule(hparams.get("rule") or "GR")
        hparams["rule"] = self.rule_name
        losses = tuple(hparams.get("joint_losses") or LOSSES)
        unknown = sorted(set(losses) - set(LOSSES))
        if unknown or not losses:
            raise ValueError(
                f"joint_losses must be a non-empty subset of {LOSSES}, got "
                f"{list(losses)}"
            )
        self.losses_needed = losses
        self.se_weight = float(hparams.get("se_weight", 0.3))
        if not 0.0 <= self.se_weight <= 1.0:
            raise ValueError(f"se_weight must be in [0, 1]: {self.se_weight}")
        if hparams.get("surgery_rule") is None:
            hparams["surgery_rule"] = make_gr_rule(
                self.rule_name,
                k=float(hparams.get("remedy_k", 5.0)),
                per_tensor=bool(hparams.get("remedy_per_tensor", True)),
                pcgrad_per_tensor=bool(hparams.get("pcgrad_per_tensor", False)),
            )
        hparams.setdefault("shared_modules", ["enhancer"])
        mods = dict(modules or {})
        needed = ["enhancer"] + (["asr"] if "asr" in losses else [])
        missing = [m for m in needed if m not in mods]
        if missing:
            raise ValueError(
                f"GRBrain needs modules {needed}; missing {missing}"
            )
        if "se" in losses and hparams.get("se_loss") is None:
            raise ValueError("GRBrain: the SE loss needs an se_loss hparam")
        super().__init__(
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        self.wer_metric = None
        self.train_stats = {}
        self.epoch = None

    # ------------------------------------------------------------ set-up
    def _asr(self):
        asr = self.modules["asr"]
        return getattr(asr, "module", asr)

    def on_fit_start(self):
        """Engine set-up; refuse an ASR without feature statistics that
        is not allowed to learn them."""
        super().on_fit_start()
        if "asr" in self.losses_needed:
            asr = self._asr()
            if (
                getattr(asr, "normalize", False)
                and asr.normalizer.count == 0
                and not self._update_norm()
            ):
                raise ValueError(
                    "the ASR's feature normalizer has no statistics: "
                    "pre-train the ASR or set update_asr_normalizer: True"
                )

    def _update_norm(self):
        return bool(getattr(self.hparams, "update_asr_normalizer", False))

    def _norm_epoch(self):
        """Epoch handed to the ASR's normalizer in the loss: past its
        update limit, so that it never updates there (see
        :meth:`_update_norm_stats`); None for an ASR without one."""
        norm = getattr(self._asr(), "normalizer", None)
        return None if norm is None else norm.update_until_epoch

    def _update_norm_stats(self, est, lens):
        """With ``update_asr_normalizer``, update the ASR's global feature
        statistics from the DETACHED enhanced batch, before the loss: in
        SpeechBrain's normalizer the statistics would otherwise keep the
        enhancer's graph alive into the next step (and carry gradients)."""
        asr = self._asr()
        if not (self._update_norm() and getattr(asr, "normalize", False)):
            return
        if not asr.normalizer.training:
            return
        with torch.no_grad():
            asr.features(est.detach(), lens, epoch=self.epoch)

    def on_stage_start(self, stage, epoch=None):
        """The engine's (epoch draws of the training data); the WER
        tracker."""
        super().on_stage_start(stage, epoch)
        self.epoch = epoch
        if stage == sb.Stage.TRAIN:
            return
        tok = getattr(self.hparams, "tokenizer", None)
        if "asr" in self.losses_needed and tok is not None:
            self.wer_metric = sb.utils.metric_stats.ErrorRateStats()
        else:
            self.wer_metric = None

    # ----------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        """Enhance the noisy batch (waveform, and the masked magnitude for
        a mask network)."""
        batch = batch.to(self.device)
        wavs, lens = batch.noisy
        enh = self.modules["enhancer"]
        inner = getattr(enh, "module", enh)
        mag = None
        if getattr(inner, "returns_magnitude", False):
            est, mag, _ = enh(wavs, lens, return_magnitude=True)
        else:
            est = enh(wavs, lens)
        return {"enhanced": est, "magnitude": mag, "lens": lens}

    def compute_objectives(self, outputs, batch, stage):
        """``{"asr": (1 - lambda) L_ASR, "se": lambda L_SE}`` (a single
        loss gets weight 1); validation adds the greedy-CTC WER.

        Arguments
        ---------
        outputs : dict
            From :meth:`compute_forward`.
        batch : PaddedBatch
        stage : speechbrain.Stage

        Returns
        -------
        dict of str to torch.Tensor
        """
        est, lens = outputs["enhanced"], outputs["lens"]
        both = len(self.losses_needed) == 2
        losses = {}
        if "se" in self.losses_needed:
            clean, _ = batch.clean
            kwargs = {}
            if outputs["magnitude"] is not None:
                kwargs["estimate_magnitude"] = outputs["magnitude"]
            l_se = self.hparams.se_loss(est, clean, lens, **kwargs)
            losses["se"] = (self.se_weight if both else 1.0) * l_se
        if "asr" in self.losses_needed:
            tokens, token_lens = batch.tokens
            if stage == sb.Stage.TRAIN:
                self._update_norm_stats(est, lens)
            # the recogniser interface: loss(wavs, lens, tokens, token_lens,
            # epoch) (ConformerASR, CTCProxy, WhisperASR)
            l_asr = self._asr().loss(
                est, lens, tokens, token_lens, self._norm_epoch()
            )
            losses["asr"] = (1.0 - self.se_weight if both else 1.0) * l_asr
            if stage != sb.Stage.TRAIN and self.wer_metric is not None:
                hyps = self._asr().transcribe(est, lens, self.hparams.tokenizer)
                self.wer_metric.append(
                    batch.id,
                    [h.split() for h in hyps],
                    [w.split() for w in batch.wrd],
                )
        return losses

    def on_fit_batch_end(self, batch, outputs, loss, should_step):
        """Per-step learning-rate schedule (``lr_scheduler``)."""
        sched = getattr(self.hparams, "lr_scheduler", None)
        if should_step and sched is not None:
            sched(self.optimizer)

    # ----------------------------------------------------------- logging
    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Epoch statistics (with the surgery summary), checkpointing."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **self.surgery_summary()}
            return
        stats = {"loss": stage_loss}
        if self.wer_metric is not None and len(self.wer_metric.scores):
            stats["WER"] = self.wer_metric.summarize("error_rate")
        if stage == sb.Stage.VALID:
            train_logger = getattr(self.hparams, "train_logger", None)
            if train_logger is not None:
                lr = self.optimizer.param_groups[0]["lr"]
                train_logger.log_stats(
                    stats_meta={
                        "epoch": epoch,
                        "rule": self.rule_name,
                        "lr": lr,
                    },
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            self.save_selected(stats)
        self.last_stats = stats
