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

Stage helpers (resumable, one folder each, shared by the MiniNoisy, CHiME-4
and RATS recipes): :func:`train_gr_systems` (the optional ASR / SE
pre-trainings, then :func:`run_rules`: every rule from the SAME
initialisation with the same seed and steps, each a
:func:`train_joint_stage`), :func:`evaluate_gr_sets` and
:func:`evaluate_joint_systems` (the joint system's own free-running WER by
greedy CTC and by attention beam search, and the enhanced waveform scored
by unseen recognisers) and :func:`gr_table`.
"""

from __future__ import annotations

import copy
import csv
import hashlib
import logging
import math
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from robust_brain.asr_training import train_proxy_stage, train_tokenizer
from robust_brain.brain import DualLossBrain
from robust_brain.data.manifest import write_csv_atomic
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.evaluation.frontends import (
    evaluate_enhancers,
    write_results_summary,
)
from robust_brain.evaluation.report import plot_surgery_log
from robust_brain.inference import LevelNormalizedEnhancer
from robust_brain.models.asr import decode_tokens, update_weights_digest
from robust_brain.stages import (
    SelectedCheckpoint,
    check_stages,
    fit_stage,
    loader_kwargs,
    require_checkpoint,
)
from robust_brain.surgery import CombinationRule, make_rule

logger = logging.getLogger(__name__)

__all__ = [
    "RULES",
    "check_rule",
    "make_gr_rule",
    "make_front_end",
    "tensor_statistics",
    "TensorStats",
    "GRBrain",
    "make_beam_searcher",
    "JointRecogniser",
    "ResampledEnhancer",
    "train_joint_stage",
    "run_rules",
    "STAGES",
    "check_gr_plan",
    "write_transcripts",
    "split_streams",
    "asr_stage_from_hparams",
    "joint_stage_from_hparams",
    "train_gr_systems",
    "run_gr_on_splits",
    "evaluate_gr_sets",
    "evaluate_joint_systems",
    "gr_table",
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
#: columns drawn by :func:`plot_surgery_log` for a joint stage
PLOT_KEYS = (
    "loss_asr",
    "loss_se",
    "gnorm_asr",
    "gnorm_se",
    "cos",
    "pre_angle_deg",
    "pre_ratio",
    "pre_conflict",
    "rescaled",
)


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


def make_front_end(
    kind: str = "mask",
    n_fft: int = 512,
    hop_length: int = 256,
    mask_layers: int = 3,
    mask_units: int = 896,
    mask_dropout: float = 0.5,
    mask: str = "relu",
    mask_max: float | None = None,
    input_norm: str = "utterance",
    demucs_hidden: int = 48,
    demucs_depth: int = 5,
    demucs_resample: int = 4,
    demucs_causal: bool = True,
) -> torch.nn.Module:
    """The SE front-end chosen by one hparam (``front_end``).

    Arguments
    ---------
    kind : str
        ``mask``: :class:`~robust_brain.models.mask_net.MaskNet` (the
        paper's); ``demucs``: :class:`~robust_brain.models.demucs.Demucs`
        (D4AM's enhancer; the SE loss then takes the STFT of its output).
    n_fft, hop_length, mask_layers, mask_units, mask_dropout, mask,
    mask_max, input_norm :
        MaskNet settings (``num_layers``, ``hidden_size``, ``dropout``...).
    demucs_hidden, demucs_depth, demucs_resample, demucs_causal :
        Demucs settings.

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> type(make_front_end("mask", mask_layers=1, mask_units=4)).__name__
    'MaskNet'
    >>> type(make_front_end("demucs", demucs_hidden=4, demucs_depth=2,
    ...                     demucs_resample=1)).__name__
    'Demucs'
    >>> make_front_end("conv-tasnet")
    Traceback (most recent call last):
    ...
    ValueError: unknown front_end 'conv-tasnet'; choose mask or demucs
    """
    key = str(kind).lower()
    if key == "mask":
        from robust_brain.models.mask_net import MaskNet

        return MaskNet(
            n_fft=n_fft,
            hop_length=hop_length,
            num_layers=mask_layers,
            hidden_size=mask_units,
            dropout=mask_dropout,
            mask=mask,
            mask_max=mask_max,
            input_norm=input_norm,
        )
    if key == "demucs":
        from robust_brain.models.demucs import Demucs

        return Demucs(
            hidden=demucs_hidden,
            depth=demucs_depth,
            resample=demucs_resample,
            causal=demucs_causal,
        )
    raise ValueError(f"unknown front_end {kind!r}; choose mask or demucs")


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
        self._train_data = None
        self.wer_metric = None
        self.train_stats = {}
        self.epoch = None

    # ------------------------------------------------------------ set-up
    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader with the dataset's ``collate``; keeps the
        training set (for its per-epoch draws)."""
        if "collate_fn" not in loader_kwargs and hasattr(dataset, "collate"):
            loader_kwargs["collate_fn"] = dataset.collate
        if stage == sb.Stage.TRAIN:
            self._train_data = dataset
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )

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
        :meth:`_update_norm_stats`)."""
        return self._asr().normalizer.update_until_epoch

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
        """Epoch draws of the training data; the WER tracker."""
        self.epoch = epoch
        if stage == sb.Stage.TRAIN:
            data = self._train_data
            if data is not None and epoch is not None:
                if hasattr(data, "set_epoch"):
                    data.set_epoch(epoch)
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
            l_asr = self.modules["asr"](
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


class ResampledEnhancer(torch.nn.Module):
    """A front-end trained at ``model_rate`` applied to 16 kHz signals.

    The evaluation runs at 16 kHz (the unseen recognisers' rate); an 8 kHz
    system (RATS) gets its input resampled to ``model_rate`` and its output
    back to 16 kHz, at the input's length.

    Arguments
    ---------
    enhancer : torch.nn.Module
        ``enhancer(wavs, lengths)`` at ``model_rate``.
    model_rate : int
    rate : int
        The rate of the signals around it (16000).

    Example
    -------
    >>> f = ResampledEnhancer(lambda w, n: 2 * w, model_rate=8000)
    >>> x = torch.sin(torch.arange(1600) * 0.05).unsqueeze(0)
    >>> y = f(x, torch.ones(1))
    >>> y.shape, bool((y[0, 100:-100] - 2 * x[0, 100:-100]).abs().max() < 0.05)
    (torch.Size([1, 1600]), True)
    """

    def __init__(self, enhancer, model_rate: int, rate: int = 16000):
        super().__init__()
        self.enhancer = enhancer
        self.model_rate = int(model_rate)
        self.rate = int(rate)

    def forward(self, wavs, lengths):
        import torchaudio

        n = wavs.shape[-1]
        low = torchaudio.functional.resample(wavs, self.rate, self.model_rate)
        out = self.enhancer(low, lengths)
        out = torchaudio.functional.resample(out, self.model_rate, self.rate)
        if out.shape[-1] >= n:
            return out[..., :n]
        return torch.nn.functional.pad(out, (0, n - out.shape[-1]))


def make_beam_searcher(
    asr,
    beam_size: int = 10,
    ctc_weight: float = 0.4,
    max_decode_ratio: float = 1.0,
    length_normalization: bool = True,
    temperature: float = 1.0,
):
    """SpeechBrain's attention beam search for a ConformerASR, with CTC
    prefix scoring (joint CTC/attention decoding, free-running).

    Arguments
    ---------
    asr : ConformerASR
    beam_size : int
    ctc_weight : float
        Weight of the CTC prefix score (0: attention only).
    max_decode_ratio : float
        Maximum output length relative to the encoder frames.
    length_normalization : bool
    temperature : float

    Returns
    -------
    speechbrain.decoders.seq2seq.S2STransformerBeamSearcher

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=6, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False).eval()
    >>> search = make_beam_searcher(asr, beam_size=2)
    >>> wav, lens = torch.randn(1, 3200), torch.ones(1)
    >>> hyps = search(asr.encode(wav, lens), lens)[0]
    >>> len(hyps)
    1
    """
    from speechbrain.decoders.scorer import CTCScorer, ScorerBuilder
    from speechbrain.decoders.seq2seq import S2STransformerBeamSearcher

    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"beam ctc_weight must be in [0, 1]: {ctc_weight}")
    scorer = None
    if ctc_weight > 0:
        ctc = CTCScorer(
            ctc_fc=asr.ctc_lin,
            blank_index=asr.blank_index,
            eos_index=asr.eos_index,
        )
        scorer = ScorerBuilder(full_scorers=[ctc], weights={"ctc": ctc_weight})
    return S2STransformerBeamSearcher(
        modules=[asr.transformer, asr.seq_lin],
        bos_index=asr.bos_index,
        eos_index=asr.eos_index,
        min_decode_ratio=0.0,
        max_decode_ratio=max_decode_ratio,
        beam_size=int(beam_size),
        scorer=scorer,
        using_eos_threshold=False,
        length_normalization=length_normalization,
        temperature=temperature,
    )


class JointRecogniser:
    """A jointly trained enhancer + ASR as an evaluation recogniser.

    Follows :class:`robust_brain.evaluation.recognisers.Recogniser`: the
    noisy waveform is scaled to ``input_level_dbfs``, enhanced, and decoded
    FREE-RUNNING by greedy CTC (``decoding="greedy"``) or by the attention
    beam search with CTC prefix scores (``"beam"``).

    Arguments
    ---------
    enhancer : torch.nn.Module or None
        ``enhancer(wavs, lengths)``; None: the ASR reads the input.
    asr : ConformerASR
    tokenizer : sentencepiece.SentencePieceProcessor
    name : str
        Label in the result tables.
    decoding : str
        ``greedy`` or ``beam``.
    beam_size, beam_ctc_weight, max_decode_ratio : int, float, float
        See :func:`make_beam_searcher`.
    input_level_dbfs : float, optional
        Input level (the enhancers' evaluation convention).
    batch_size : int
    device : str
    sample_rate : int
        The rate the system was trained at: the 16 kHz input is resampled
        to it first (8 kHz RATS systems).

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=5, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False)
    >>> class Chars:
    ...     def decode_ids(self, ids):
    ...         return "".join("abcde"[i] for i in ids)
    >>> rec = JointRecogniser(lambda w, n: w, asr, Chars(), "MTL",
    ...                       decoding="beam", beam_size=2)
    >>> out = rec.transcribe([np.ones(1600, np.float32) / 9] * 2)
    >>> len(out), rec.fingerprint.split("|")[:2]
    (2, ['joint-beam2-ctc0.4', 'MTL'])
    """

    def __init__(
        self,
        enhancer,
        asr,
        tokenizer,
        name: str,
        decoding: str = "greedy",
        beam_size: int = 10,
        beam_ctc_weight: float = 0.4,
        max_decode_ratio: float = 1.0,
        input_level_dbfs: float | None = -25.0,
        batch_size: int = 8,
        device: str = "cpu",
        sample_rate: int = 16000,
    ):
        if decoding not in ("greedy", "beam"):
            raise ValueError(f"decoding must be greedy or beam: {decoding!r}")
        self.asr = asr
        self.enhancer = enhancer
        self.front = (
            None
            if enhancer is None
            else LevelNormalizedEnhancer(enhancer, input_level_dbfs)
        )
        self.tokenizer = tokenizer
        self.name = name
        self.decoding = decoding
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.searcher = None
        self.settings = "joint-greedy"
        if decoding == "beam":
            self.searcher = make_beam_searcher(
                asr, beam_size, beam_ctc_weight, max_decode_ratio
            )
            self.settings = f"joint-beam{beam_size}-ctc{beam_ctc_weight:g}"
        self.sample_rate = int(sample_rate)
        digest = hashlib.sha256(str(input_level_dbfs).encode())
        if self.sample_rate != 16000:
            digest.update(f"rate={self.sample_rate}".encode())
        for module in (enhancer, asr):
            if isinstance(module, torch.nn.Module):
                update_weights_digest(digest, module)
        self._digest = digest.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """Weights of both models and the decoding settings."""
        return f"{self.settings}|{self.name}|{self._digest}"

    @torch.no_grad()
    def _decode(self, batch, lens):
        if self.sample_rate != 16000:
            import torchaudio

            batch = torchaudio.functional.resample(
                batch, 16000, self.sample_rate
            )
        if self.front is not None:
            batch = self.front(batch, lens)
        if self.searcher is None:
            ids = self.asr.greedy_ctc(batch, lens)
        else:
            enc = self.asr.encode(batch, lens)
            ids = self.searcher(enc, lens)[0]
        return [decode_tokens(self.tokenizer, seq) for seq in ids]

    @torch.no_grad()
    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe 16 kHz float arrays.

        Arguments
        ---------
        wavs : sequence of numpy.ndarray

        Returns
        -------
        list of str
        """
        self.asr.eval()
        if isinstance(self.enhancer, torch.nn.Module):
            self.enhancer.eval()
        out = [""] * len(wavs)
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = max(1, max(len(wavs[i]) for i in idx))
            batch = torch.zeros(len(idx), longest)
            for j, i in enumerate(idx):
                batch[j, : len(wavs[i])] = torch.as_tensor(wavs[i])
            lens = torch.tensor([max(len(wavs[i]), 1) / longest for i in idx])
            texts = self._decode(batch.to(self.device), lens.to(self.device))
            for j, i in enumerate(idx):
                out[i] = texts[j]
        return out


def train_joint_stage(
    rule: str,
    enhancer: torch.nn.Module,
    asr,
    train_set,
    valid_set,
    *,
    folder,
    epochs: int,
    opt_class,
    se_loss=None,
    se_weight: float = 0.3,
    losses: Sequence[str] = LOSSES,
    tokenizer=None,
    run_opts=None,
    remedy_k: float = 5.0,
    remedy_per_tensor: bool = True,
    update_asr_normalizer: bool = False,
    lr_scheduler=None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
    ckpt_selection: str = "last",
    extra_hparams: Mapping | None = None,
) -> GRBrain:
    """Train one rule (or an enhancer-only pre-training) in ``folder``.

    ``folder`` gets ``save/`` (enhancer, ASR + normalizer, optimizer,
    epoch counter, scheduler), ``train_log.txt``, ``surgery_log.csv`` and
    ``surgery.png``. Re-running resumes; a finished stage only reloads its
    selected checkpoint (``epochs`` 0: reload only, an error without a
    checkpoint). The models are trained in place and left in eval mode.

    Arguments
    ---------
    rule : str
        One of :data:`RULES`.
    enhancer : torch.nn.Module
    asr : ConformerASR or None
        Needed when ``asr`` is in ``losses``; its parameters are made
        trainable.
    train_set, valid_set : SpeechStream
    folder : path-like
    epochs : int
    opt_class : callable
        ``params -> optimizer``.
    se_loss, se_weight, losses, tokenizer, remedy_k, remedy_per_tensor,
    update_asr_normalizer, lr_scheduler, ckpt_selection :
        See :class:`GRBrain`.
    run_opts : RunOptions or dict, optional
    train_loader_kwargs, valid_loader_kwargs : mapping, optional
    extra_hparams : mapping, optional
        More hparams (run options from the yaml: ``max_grad_norm``,
        ``grad_accumulation_factor``, ``log_task_gradients``).

    Returns
    -------
    GRBrain
    """
    folder = Path(folder)
    losses = tuple(losses)
    modules = {"enhancer": enhancer}
    recoverables = {"enhancer": enhancer}
    if "asr" in losses:
        if asr is None:
            raise ValueError(f"{rule}: the ASR loss needs an ASR model")
        asr.requires_grad_(True)
        modules["asr"] = asr
        recoverables["asr"] = asr.asr_model
        if getattr(asr, "normalize", False):
            recoverables["normalizer"] = asr.normalizer
    if lr_scheduler is not None:
        recoverables["lr_scheduler"] = lr_scheduler
    hparams = {
        "rule": rule,
        "joint_losses": list(losses),
        "se_loss": se_loss,
        "se_weight": se_weight,
        "tokenizer": tokenizer,
        "remedy_k": remedy_k,
        "remedy_per_tensor": remedy_per_tensor,
        "update_asr_normalizer": update_asr_normalizer,
        "lr_scheduler": lr_scheduler,
        "shared_modules": ["enhancer"],
        "ckpt_selection": ckpt_selection,
        **(extra_hparams or {}),
    }
    # what defines this rule's training (constants of other rules do not)
    settings = {
        "rule": check_rule(rule),
        "losses": list(losses),
        "se_weight": float(se_weight),
    }
    if settings["rule"].startswith("GR"):
        settings["remedy_k"] = float(remedy_k)
        settings["remedy_per_tensor"] = bool(remedy_per_tensor)
    if settings["rule"] == "PCGrad":
        settings["pcgrad_per_tensor"] = bool(
            (extra_hparams or {}).get("pcgrad_per_tensor", False)
        )
    brain = fit_stage(
        GRBrain,
        modules,
        settings=settings,
        folder=folder,
        epochs=epochs,
        opt_class=opt_class,
        train_set=train_set,
        valid_set=valid_set,
        hparams=hparams,
        recoverables=recoverables,
        run_opts=run_opts,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=valid_loader_kwargs,
    )
    require_checkpoint(brain.recover_selected(), epochs, rule, folder)
    enhancer.eval()
    if asr is not None:
        asr.eval()
    if sb.utils.distributed.if_main_process():
        plot_surgery_log(
            folder / "surgery_log.csv", folder / "surgery.png", PLOT_KEYS
        )
    return brain


def run_rules(
    rules: Sequence[str],
    init_enhancer: torch.nn.Module,
    init_asr,
    train_stage: Callable,
    seed: int | None = None,
) -> OrderedDict:
    """Train every rule from the SAME initialisation (deep copies), with
    the same seed (hence the same data order, draws and dropout masks
    up to the rule's effect) and the same number of steps.

    Arguments
    ---------
    rules : sequence of str
        Among :data:`RULES` (checked first, all of them).
    init_enhancer, init_asr : torch.nn.Module
        Left untouched.
    train_stage : callable
        ``(rule, enhancer, asr) -> GRBrain``: trains (or resumes, or
        reloads) one rule in its folder.
    seed : int, optional
        Re-seeds every generator before each rule.

    Returns
    -------
    OrderedDict
        Rule -> ``(enhancer, asr)``.

    Example
    -------
    >>> calls = []
    >>> out = run_rules(["gr", "MTL"], torch.nn.Linear(1, 1),
    ...     torch.nn.Linear(1, 1), lambda r, e, a: calls.append(r), seed=1)
    >>> calls, list(out)
    (['GR', 'MTL'], ['GR', 'MTL'])
    >>> run_rules(["GR", "SGD"], None, None, print)
    Traceback (most recent call last):
    ...
    ValueError: unknown GR rule 'SGD'; choose one of MTL, PCGrad, ...
    """
    names = [check_rule(r) for r in rules]
    if len(set(names)) != len(names):
        raise ValueError(f"rules: a rule is listed twice: {list(rules)}")
    systems = OrderedDict()
    for name in names:
        if seed is not None:
            sb.utils.seed_everything(seed)
        enhancer = copy.deepcopy(init_enhancer)
        asr = copy.deepcopy(init_asr)
        train_stage(name, enhancer, asr)
        systems[name] = (enhancer, asr)
    return systems


#: the stages of the GR recipes, in order
STAGES = ("asr", "se", "joint", "evaluate")


def check_gr_plan(hparams: Mapping) -> tuple[list[str], list[str]]:
    """Validate a GR recipe's ``stages``, ``pretrained``, ``rules`` and
    ``update_asr_normalizer`` hparams.

    Returns
    -------
    stages : list of str
        Lower case, among :data:`STAGES`.
    rules : list of str
        Canonical rule names.

    Example
    -------
    >>> check_gr_plan({"stages": ["joint"], "pretrained": ["asr"],
    ...     "rules": ["mtl", "gr"], "update_asr_normalizer": "auto"})
    (['joint'], ['MTL', 'GR'])
    >>> check_gr_plan({"stages": ["joint"], "pretrained": ["lm"],
    ...     "rules": ["GR"], "update_asr_normalizer": False})
    Traceback (most recent call last):
    ...
    ValueError: pretrained: unknown ['lm']; choose among ('asr', 'se')
    """
    stages = check_stages(hparams["stages"], STAGES)
    if isinstance(hparams["pretrained"], str):
        raise ValueError(
            f"pretrained must be a list, e.g. [{hparams['pretrained']}]"
        )
    unknown = sorted(set(hparams["pretrained"]) - {"asr", "se"})
    if unknown:
        raise ValueError(
            f"pretrained: unknown {unknown}; choose among ('asr', 'se')"
        )
    if hparams["update_asr_normalizer"] not in ("auto", True, False):
        raise ValueError(
            "update_asr_normalizer must be auto, True or False: "
            f"{hparams['update_asr_normalizer']!r}"
        )
    rules = [check_rule(r) for r in hparams["rules"]]
    return stages, rules


def write_transcripts(paths: Mapping, splits: Sequence[str], out) -> Path:
    """One ``ID,wrd`` CSV of the given splits' transcripts (the tokenizer's
    text), written atomically.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "a.csv").write_text("ID,wrd,x\\nu1,HELLO,1\\n")
    >>> write_transcripts({"a": d / "a.csv"}, ["a"], d / "t.csv").read_text()
    'ID,wrd\\nu1,HELLO\\n'
    """
    rows = []
    for split in splits:
        with open(paths[split], newline="", encoding="utf-8") as f:
            rows += [
                {"ID": r["ID"], "wrd": r["wrd"]} for r in csv.DictReader(f)
            ]
    write_csv_atomic(out, rows, ("ID", "wrd"))
    return Path(out)


def split_streams(
    hparams: Mapping, paths: Mapping, tokenizer, data_root=None
) -> dict:
    """The GR streams of a prepared corpus' split manifests (CHiME-4,
    RATS): ``train`` (the ``train_splits`` pairs), ``valid`` (the first
    ``valid_max_utterances`` of ``valid_splits``) and ``asr_train`` (the
    training pairs' noisy AND clean sides, for the ASR pre-training).
    ``$data_root`` stands for ``data_root`` (default ``data_folder``).

    Returns
    -------
    dict of str to SpeechStream
    """
    text = TokenEncoder(tokenizer)
    root = data_root or hparams["data_folder"]
    train = []
    for split in hparams["train_splits"]:
        train += read_rows(paths[split], root)
    valid = []
    for split in hparams["valid_splits"]:
        valid += read_rows(paths[split], root)
    valid = valid[: hparams["valid_max_utterances"]]
    as_clean = [dict(r, noisy_wav=r["clean_wav"]) for r in train]
    return {
        "train": SpeechStream(train, text_pipeline=text, name="train"),
        "valid": SpeechStream(valid, text_pipeline=text, name="valid"),
        "asr_train": SpeechStream(
            train + as_clean, text_pipeline=text, name="asr"
        ),
    }


def asr_stage_from_hparams(
    hparams: Mapping, run_opts, data: Mapping, tokenizer, train: bool = True
):
    """Pre-train (or resume, or only reload) the ASR of ``hparams["asr"]``
    on ``data["asr_train"]`` in ``<save_folder>/asr``.

    Reads ``asr_epochs``, ``asr_opt_class``, ``asr_annealing``,
    ``asr_batch_size``, ``asr_max_grad_norm``, ``asr_ckpt_selection`` and
    ``num_workers``.

    Returns
    -------
    ConformerASR
        Frozen (the joint stage makes it trainable again).
    """
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
        train_loader_kwargs=loader_kwargs(
            hparams, hparams["asr_batch_size"], True
        ),
        valid_loader_kwargs=loader_kwargs(
            hparams, hparams["asr_batch_size"], False
        ),
        extra_hparams={"max_grad_norm": hparams["asr_max_grad_norm"]},
        selection=hparams["asr_ckpt_selection"],
    )


def joint_stage_from_hparams(
    hparams: Mapping,
    run_opts,
    data: Mapping,
    tokenizer,
    rule: str,
    enhancer: torch.nn.Module,
    asr,
    *,
    se_only: bool = False,
    train: bool = True,
    asr_pretrained: bool = True,
) -> GRBrain:
    """:func:`train_joint_stage` configured by a GR recipe's hparams.

    One rule in ``<save_folder>/<rule>``, or (``se_only``) the enhancer's
    pre-training on the SE loss alone in ``<save_folder>/SE``. Reads
    ``joint_epochs`` / ``joint_opt_class`` (``se_epochs`` /
    ``se_opt_class``), ``se_loss``, ``se_weight``, ``remedy_k``,
    ``remedy_per_tensor``, ``pcgrad_per_tensor``,
    ``update_asr_normalizer`` (``auto``: learned unless the ASR was
    pre-trained), ``lr_scheduler`` (optional; a fresh copy per rule),
    ``batch_size``, ``num_workers``, ``ckpt_selection``,
    ``max_grad_norm``, ``grad_accumulation_factor`` and
    ``log_task_gradients``.

    Arguments
    ---------
    hparams : mapping
    run_opts : RunOptions or dict
    data : mapping
        ``train`` and ``valid`` streams.
    tokenizer : sentencepiece.SentencePieceProcessor
    rule : str
    enhancer, asr : torch.nn.Module
        Trained in place.
    se_only : bool
        The enhancer pre-training.
    train : bool
        False: only reload the stage's checkpoint.
    asr_pretrained : bool
        Whether ``asr`` comes from the ``asr`` stage.

    Returns
    -------
    GRBrain
    """
    update = hparams["update_asr_normalizer"]
    if update == "auto":
        update = not asr_pretrained
    scheduler = None
    if not se_only and hparams.get("lr_scheduler") is not None:
        scheduler = copy.deepcopy(hparams["lr_scheduler"])
    epochs = hparams["se_epochs"] if se_only else hparams["joint_epochs"]
    return train_joint_stage(
        rule,
        enhancer,
        None if se_only else asr,
        data["train"],
        data["valid"],
        folder=Path(hparams["save_folder"]) / ("SE" if se_only else rule),
        epochs=epochs if train else 0,
        opt_class=(
            hparams["se_opt_class"] if se_only else hparams["joint_opt_class"]
        ),
        se_loss=hparams["se_loss"],
        se_weight=hparams["se_weight"],
        losses=("se",) if se_only else LOSSES,
        tokenizer=tokenizer,
        run_opts=run_opts,
        remedy_k=hparams["remedy_k"],
        remedy_per_tensor=hparams["remedy_per_tensor"],
        update_asr_normalizer=bool(update),
        lr_scheduler=scheduler,
        train_loader_kwargs=loader_kwargs(hparams, hparams["batch_size"], True),
        valid_loader_kwargs=loader_kwargs(
            hparams, hparams["batch_size"], False
        ),
        ckpt_selection=hparams["ckpt_selection"],
        extra_hparams={
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
            "log_task_gradients": hparams["log_task_gradients"],
            "pcgrad_per_tensor": hparams["pcgrad_per_tensor"],
        },
    )


def train_gr_systems(
    hparams: Mapping,
    run_opts,
    data: Mapping,
    tokenizer,
    stages: Sequence[str],
    rules: Sequence[str],
) -> OrderedDict:
    """The GR recipes' training stages: the optional pre-trainings, then
    every rule from the same initialisation.

    A part (``asr``, ``se``) is pre-trained when its stage is in ``stages``
    (trained, or resumed) or when it is listed in ``pretrained`` (then only
    reloaded from its stage folder; an error if it holds no checkpoint);
    otherwise the joint stage starts it from scratch (the official
    script). The rules train when ``joint`` is in ``stages``, else they
    only reload (``evaluate`` alone).

    Arguments
    ---------
    hparams, run_opts, data, tokenizer :
        See :func:`joint_stage_from_hparams`; ``data["asr_train"]`` for the
        ASR pre-training; ``hparams["asr"]`` / ``hparams["enhancer"]`` are
        the initial models.
    stages, rules : sequence of str
        From :func:`check_gr_plan`.

    Returns
    -------
    OrderedDict
        System name -> ``(enhancer, asr)``: ``INIT`` (the pre-trained pair,
        when both were pre-trained and ``eval_include_init``), then each
        rule (when ``joint`` or ``evaluate`` is in ``stages``).
    """
    pretrained = set(hparams["pretrained"]) | ({"asr", "se"} & set(stages))
    asr = hparams["asr"]
    if "asr" in pretrained:
        asr = asr_stage_from_hparams(
            hparams, run_opts, data, tokenizer, train="asr" in stages
        )
    enhancer = hparams["enhancer"]
    if "se" in pretrained:
        joint_stage_from_hparams(
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
    systems = OrderedDict()
    if hparams["eval_include_init"] and pretrained == {"asr", "se"}:
        systems["INIT"] = (enhancer, asr)
    if "joint" in stages or "evaluate" in stages:

        def train_stage(rule, enh, model):
            return joint_stage_from_hparams(
                hparams,
                run_opts,
                data,
                tokenizer,
                rule,
                enh,
                model,
                train="joint" in stages,
                asr_pretrained="asr" in pretrained,
            )

        systems.update(
            run_rules(rules, enhancer, asr, train_stage, seed=hparams["seed"])
        )
    return systems


def run_gr_on_splits(
    hparams: Mapping,
    run_opts,
    paths: Mapping,
    stages: Sequence[str],
    rules: Sequence[str],
    corpus: str,
    data_root=None,
) -> OrderedDict:
    """The GR recipe on a prepared corpus' split manifests (CHiME-4, RATS):
    the tokenizer on the ``train_splits`` transcripts, the streams
    (:func:`split_streams`), :func:`train_gr_systems`, then (``evaluate``,
    main process) :func:`evaluate_gr_sets` on the ``eval_splits``.

    Arguments
    ---------
    hparams, run_opts :
        The recipe's.
    paths : mapping
        Split -> manifest (the preparation's return value).
    stages, rules : sequence of str
        From :func:`check_gr_plan`.
    corpus : str
        For the table titles.
    data_root : path-like, optional
        What ``$data_root`` stands for in the manifests (default
        ``data_folder``).

    Returns
    -------
    OrderedDict
        The systems.
    """
    save = Path(hparams["save_folder"])
    tokenizer = train_tokenizer(
        save / "tokenizer",
        write_transcripts(
            paths, hparams["train_splits"], save / "tokenizer_text.csv"
        ),
        hparams["asr_vocab_size"],
        hparams["asr_token_type"],
    )
    data_root = data_root or hparams["data_folder"]
    data = split_streams(hparams, paths, tokenizer, data_root)
    systems = train_gr_systems(
        hparams, run_opts, data, tokenizer, stages, rules
    )
    if "evaluate" in stages and sb.utils.distributed.if_main_process():
        device = run_opts.get("device") or sb.utils.distributed.infer_device()
        evaluate_gr_sets(
            hparams,
            {split: paths[split] for split in hparams["eval_splits"]},
            systems,
            tokenizer,
            device,
            corpus,
            data_root=data_root,
        )
    return systems


def evaluate_gr_sets(
    hparams: Mapping,
    manifests: Mapping,
    systems: Mapping,
    tokenizer,
    device: str,
    corpus: str,
    data_root=None,
) -> None:
    """Score every system on every evaluation manifest; the tables.

    For each ``name -> manifest``: :func:`evaluate_joint_systems` in
    ``<eval_folder>/<name>`` (``gr_table.md``), then
    ``<output_folder>/results.md`` gathers the tables. Reads the
    ``eval_*`` hparams, ``seed``, ``sample_rate`` (the systems' rate),
    ``eval_folder`` and ``output_folder``.

    Arguments
    ---------
    hparams : mapping
    manifests : mapping
        Evaluation set name -> manifest path.
    systems : mapping
        From :func:`train_gr_systems`.
    tokenizer : sentencepiece.SentencePieceProcessor
    device : str
    corpus : str
        For the table titles (``"CHiME-4"``).
    data_root : path-like, optional
        Replaces ``$data_root`` in the manifests.
    """
    for name, manifest in manifests.items():
        _, table = evaluate_joint_systems(
            manifest,
            systems,
            tokenizer,
            hparams["eval_recognisers"],
            Path(hparams["eval_folder"]) / name,
            data_root=data_root,
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
            title=f"{corpus} {name}, seed {hparams['seed']}",
            sample_rate=hparams["sample_rate"],
        )
        print(table)
    write_results_summary(
        hparams["eval_folder"],
        Path(hparams["output_folder"]) / "results.md",
        table_name="gr_table.md",
    )


def evaluate_joint_systems(
    manifest,
    systems: Mapping[str, tuple],
    tokenizer,
    recognisers: Sequence,
    out_dir,
    *,
    data_root=None,
    own_decodings: Sequence[str] = ("greedy", "beam"),
    beam_size: int = 10,
    beam_ctc_weight: float = 0.4,
    max_decode_ratio: float = 1.0,
    input_level_dbfs: float | None = -25.0,
    include_noisy: bool = True,
    max_utterances: int | None = None,
    conditions: Sequence[str] | None = None,
    cache=None,
    batch_size: int = 8,
    device: str = "cpu",
    reference: str = "MTL",
    title: str = "",
    sample_rate: int = 16000,
):
    """Score joint systems: their own WER and the enhanced waveform's.

    * own: each system's ASR decodes its own enhancer's output
      (free-running greedy CTC and/or attention beam search), in
      ``<out_dir>/own``;
    * unseen: the enhanced waveforms (inputs at ``input_level_dbfs``)
      transcribed by ``recognisers`` (e.g. Whisper, never trained here),
      with :func:`robust_brain.evaluation.frontends.evaluate_enhancers`, in
      ``<out_dir>/unseen``.

    Writes ``gr_table.md`` (:func:`gr_table`) in ``out_dir``.

    Arguments
    ---------
    manifest : path-like
        Pair manifest.
    systems : mapping
        Name -> ``(enhancer, asr)``.
    tokenizer : sentencepiece.SentencePieceProcessor
    recognisers : sequence
        Unseen recognisers (objects or spec strings); may be empty.
    out_dir : path-like
    data_root : path-like, optional
    own_decodings : sequence of str
        ``greedy`` and/or ``beam``.
    beam_size, beam_ctc_weight, max_decode_ratio :
        See :func:`make_beam_searcher`.
    input_level_dbfs : float, optional
    include_noisy : bool
        The unprocessed input as a system of the unseen recognisers.
    max_utterances : int, optional
    conditions : sequence of str, optional
    cache : path-like, optional
        Transcript cache.
    batch_size : int
    device : str
    reference : str
        System of the relative-WER columns.
    title : str
    sample_rate : int
        The systems' own rate (the audio is read at 16 kHz, resampled to
        it for the systems and back for the unseen recognisers).

    Returns
    -------
    (list of dict, str)
        All result rows and the markdown table.
    """
    from robust_brain.evaluation import (
        evaluate,
        read_manifest,
        select_rows,
        write_results,
    )

    out_dir = Path(out_dir)
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"evaluation manifest not found: {manifest}")
    rows = select_rows(
        read_manifest(manifest, data_root),
        conditions,
        max_utterances,
        source=manifest,
    )
    all_rows = []
    if own_decodings:
        recs = []
        for name, (enhancer, asr) in systems.items():
            enhancer.to(device).eval()
            asr.to(device).eval()
            for dec in own_decodings:
                recs.append(
                    JointRecogniser(
                        enhancer,
                        asr,
                        tokenizer,
                        f"own-{dec}:{name}",
                        decoding=dec,
                        beam_size=beam_size,
                        beam_ctc_weight=beam_ctc_weight,
                        max_decode_ratio=max_decode_ratio,
                        input_level_dbfs=input_level_dbfs,
                        batch_size=batch_size,
                        device=device,
                        sample_rate=sample_rate,
                    )
                )
        own = evaluate(
            rows,
            {"NOIS": "noisy_wav"},
            recs,
            cache=cache,
            signal_metrics=[],
            batch_size=batch_size,
            device=device,
            progress=False,
        )
        for r in own.rows:
            dec, name = r["recogniser"].split(":", 1)
            all_rows.append(dict(r, system=name, recogniser=dec))
        if sb.utils.distributed.if_main_process():
            write_results(own, out_dir / "own", header=title)
    if recognisers:
        enhancers = OrderedDict(
            (
                n,
                e
                if sample_rate == 16000
                else ResampledEnhancer(e, sample_rate),
            )
            for n, (e, _) in systems.items()
        )
        unseen, _ = evaluate_enhancers(
            manifest,
            enhancers,
            recognisers,
            out_dir / "unseen",
            data_root=data_root,
            input_level_dbfs=input_level_dbfs,
            include_noisy=include_noisy,
            max_utterances=max_utterances,
            conditions=conditions,
            cache=cache,
            batch_size=batch_size,
            device=device,
            title=title,
        )
        all_rows += unseen.rows
    order = (["NOIS"] if include_noisy else []) + list(systems)
    table = gr_table(all_rows, order, reference=reference, title=title)
    if sb.utils.distributed.if_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "gr_table.md").write_text(table + "\n")
    return all_rows, table


def gr_table(
    rows: Sequence[Mapping],
    systems: Sequence[str] | None = None,
    reference: str = "MTL",
    title: str = "",
) -> str:
    """Markdown table: pooled WER (%) per system and recogniser, and the
    relative WER reduction (%) with respect to ``reference``.

    Arguments
    ---------
    rows : sequence of dict
        Result rows (``system``, ``recogniser``, ``sub``, ``del``,
        ``ins``, ``n_ref``).
    systems : sequence of str, optional
        Row order (default: order of appearance).
    reference : str
        The baseline system of the relative columns.
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> rows = [dict(system=s, recogniser=r, sub=e, ins=0, n_ref=10,
    ...              **{"del": 0})
    ...         for s, e in (("MTL", 5), ("GR", 4)) for r in ("asr",)]
    >>> print(gr_table(rows))  # doctest: +NORMALIZE_WHITESPACE
    WER (%) and relative WER reduction vs MTL (%)
    <BLANKLINE>
    | system | asr | rel. |
    |---|---|---|
    | MTL | 50.0 | 0.0 |
    | GR | 40.0 | 20.0 |
    """
    acc: dict = {}
    recs: OrderedDict = OrderedDict()
    seen: OrderedDict = OrderedDict()
    for r in rows:
        recs[r["recogniser"]] = None
        seen[r["system"]] = None
        e = acc.setdefault((r["system"], r["recogniser"]), [0, 0])
        e[0] += int(r["sub"]) + int(r["del"]) + int(r["ins"])
        e[1] += int(r["n_ref"])
    systems = [s for s in (systems or list(seen)) if s in seen]

    def rate(s, rec):
        e = acc.get((s, rec))
        return e[0] / e[1] if e and e[1] else math.nan

    heads = []
    for rec in recs:
        heads += [rec, "rel."]
    lines = [
        (title + ", " if title else "")
        + f"WER (%) and relative WER reduction vs {reference} (%)",
        "",
        "| " + " | ".join(["system", *heads]) + " |",
        "|" + "---|" * (1 + len(heads)),
    ]
    for s in systems:
        cells = []
        for rec in recs:
            w, ref = rate(s, rec), rate(reference, rec)
            cells.append("–" if math.isnan(w) else f"{100 * w:.1f}")
            if math.isnan(w) or math.isnan(ref) or ref == 0:
                cells.append("–")
            else:
                cells.append(f"{100 * (ref - w) / ref:.1f}")
        lines.append("| " + " | ".join([s, *cells]) + " |")
    return "\n".join(lines)
