"""D4AM: fine-tune a speech enhancer for a FROZEN proxy recogniser.

:class:`D4AMBrain` is a :class:`~robust_brain.brain.DualLossBrain` with
``loss_names = ("cls", "reg")`` (docs/methods.md, D4AM):

* ``cls``: the proxy's joint CTC/attention loss on the ENHANCED transcribed
  stream (the proxy is frozen: eval mode, no parameter gradient, the
  gradient reaches the enhancer through its input);
* ``reg``: ``w * l(SE(y_se), x_se) + (1 - w) * l(SE(y_asr), x_asr)`` with
  D4AM's regression loss ``l`` (L1 + multi-resolution STFT) mixing the
  speech-only and the transcribed streams (``w = 0.5``).

The enhancer runs separately on the two streams, so the classification
backward traverses only the transcribed stream.

One hparam, ``mode``, selects the method (:func:`make_mode_rule`):

=====  ========  ====================================================
mode   losses    update
=====  ========  ====================================================
INIT   reg       regression pre-training; the proxy is never used
CLSO   cls       classification only; speech-only stream not read
GCLB   cls, reg  ``g_cls + alpha_gclb g_reg``
SRPR   cls, reg  ``g_cls + alpha_srpr g_reg`` (+ Langevin noise)
GRID   cls, reg  one backward of ``L_cls + alpha L_reg``
D4AM   cls, reg  ``g_cls + (alpha_gclb + alpha_srpr) g_reg`` (+ noise)
=====  ========  ====================================================

The per-step alpha_gclb, alpha_srpr, gradient norms and cosine are written
by the engine to ``surgery_log_file``
(:func:`robust_brain.evaluation.report.plot_surgery_log` draws them).
Running the modes as checkpointed stages is
:mod:`robust_brain.pipelines.d4am`'s job; scoring the enhancers with
unseen recognisers is :mod:`robust_brain.evaluation.frontends`'.
"""

from __future__ import annotations

import logging

import speechbrain as sb

from robust_brain.brain import DualLossBrain
from robust_brain.data.streams import PairedStreams
from robust_brain.models.asr import require_input_gradient
from robust_brain.stages import (
    SelectedCheckpoint,
)
from robust_brain.surgery import CombinationRule, Sum, make_rule

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "check_mode",
    "mode_losses",
    "make_mode_rule",
    "make_train_set",
    "D4AMBrain",
]

#: the methods of the D4AM paper, in table order
MODES = ("INIT", "CLSO", "GCLB", "SRPR", "GRID", "D4AM")


def check_mode(mode: str) -> str:
    """The mode's canonical name (upper case); an unknown one is refused.

    Example
    -------
    >>> check_mode("gclb")
    'GCLB'
    """
    key = str(mode).upper()
    if key not in MODES:
        raise ValueError(f"unknown D4AM mode {mode!r}; choose one of {MODES}")
    return key


def mode_losses(mode: str) -> tuple[str, ...]:
    """Losses a mode computes.

    Arguments
    ---------
    mode : str
        One of :data:`MODES` (any case).

    Returns
    -------
    tuple of str

    Example
    -------
    >>> mode_losses("init"), mode_losses("CLSO"), mode_losses("D4AM")
    (('reg',), ('cls',), ('cls', 'reg'))
    """
    key = check_mode(mode)
    if key == "INIT":
        return ("reg",)
    if key == "CLSO":
        return ("cls",)
    return ("cls", "reg")


def make_mode_rule(
    mode: str,
    grid_alpha: float = 1.0,
    langevin: bool = False,
    num_samples: int | None = None,
    srpr_init: float = 1.0,
    srpr_beta: float = 0.05,
    srpr_window: int = 8,
) -> CombinationRule:
    """The gradient-combination rule of a mode.

    INIT and CLSO compute one loss: :class:`~robust_brain.surgery.Sum` (the
    absent loss has a zero gradient and costs no backward). GRID is a
    fixed weighted sum (one backward); GCLB, SRPR and D4AM are the rules of
    :mod:`robust_brain.surgery`. Langevin noise applies to SRPR and D4AM.

    Arguments
    ---------
    mode : str
        One of :data:`MODES`.
    grid_alpha : float
        GRID's fixed weight of the regression loss.
    langevin : bool
        Langevin gradient noise (SRPR, D4AM).
    num_samples : int, optional
        Size of the speech-only set (needed with ``langevin``).
    srpr_init, srpr_beta, srpr_window : float, float, int
        alpha_srpr initial value, step size and averaging window.

    Returns
    -------
    CombinationRule

    Example
    -------
    >>> make_mode_rule("GRID", grid_alpha=0.3).linear_weights
    (1.0, 0.3)
    >>> type(make_mode_rule("init")).__name__
    'Sum'
    >>> make_mode_rule("d4am", langevin=True, num_samples=100).langevin
    True
    """
    key = check_mode(mode)
    if key in ("INIT", "CLSO"):
        return Sum()
    kwargs = {
        "srpr_init": srpr_init,
        "srpr_beta": srpr_beta,
        "srpr_window": srpr_window,
    }
    if key in ("SRPR", "D4AM"):
        kwargs.update(langevin=bool(langevin), num_samples=num_samples)
    if key == "GRID":
        kwargs["grid_alpha"] = grid_alpha
    return make_rule(key.lower(), **kwargs)


def make_train_set(mode: str, asr_stream, se_stream, seed: int = 0):
    """D4AM's two-stream training set; CLSO leaves the speech-only stream
    out entirely (it is never read).

    Arguments
    ---------
    mode : str
        One of :data:`MODES`.
    asr_stream : SpeechStream
        Transcribed stream.
    se_stream : SpeechStream
        Speech-only stream.
    seed : int
        Pairing seed.

    Returns
    -------
    PairedStreams
    """
    uses_reg = "reg" in mode_losses(mode)
    return PairedStreams(asr_stream, se_stream if uses_reg else None, seed)


class D4AMBrain(SelectedCheckpoint, DualLossBrain):
    """D4AM's enhancer training (every mode), on :class:`DualLossBrain`.

    Hparams read:

    * ``mode``: one of :data:`MODES`;
    * ``surgery_rule`` (optional): default :func:`make_mode_rule` of
      ``mode`` with default constants;
    * ``proxy``: the frozen recogniser, with ``loss(wavs, lens, tokens,
      token_lens)`` (and ``transcribe(wavs, lens, tokenizer)`` for the
      validation WER); never touched in INIT mode; kept OUT of ``modules``
      and re-frozen at every stage start;
    * ``tokenizer`` (optional): enables the free-running greedy-CTC WER of
      the proxy in validation (not in INIT mode);
    * ``regression_loss``: ``l(estimate, target, lengths)``;
    * ``reg_stream_weight``: weight ``w`` of the speech-only stream in
      ``reg`` (0.5);
    * ``train_logger`` (optional), ``ckpt_selection`` (``last``, ``loss``
      or ``WER``, default ``last`` as the official code).

    ``modules`` must hold ``enhancer``, called as ``enhancer(wavs,
    lengths)``. The training batches are :class:`TwoStreamBatch` (see
    :func:`make_train_set`); validation/test batches are ``PaddedBatch``
    of one stream (keys ``noisy``, ``clean``, ``tokens``, ``wrd``).

    Example
    -------
    >>> import torch
    >>> from robust_brain.models.asr import ConformerASR
    >>> from robust_brain.models.demucs import Demucs
    >>> _ = torch.manual_seed(0)
    >>> proxy = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> brain = D4AMBrain(modules={"enhancer": Demucs(hidden=4, depth=2)},
    ...     opt_class=lambda p: torch.optim.Adam(p, lr=3e-5),
    ...     hparams={"mode": "D4AM", "proxy": proxy},
    ...     run_opts={"device": "cpu"})
    >>> rule = brain.hparams.surgery_rule
    >>> type(rule).__name__, brain.frozen_models() == [proxy]
    ('D4AM', True)
    >>> init = D4AMBrain(modules={"enhancer": Demucs(hidden=4, depth=2)},
    ...     hparams={"mode": "INIT"}, run_opts={"device": "cpu"})
    >>> type(init.hparams.surgery_rule).__name__, init.frozen_models()
    ('Sum', [])
    """

    loss_names = ("cls", "reg")

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
        self.mode = check_mode(hparams.get("mode", "D4AM"))
        hparams["mode"] = self.mode
        if hparams.get("surgery_rule") is None:
            hparams["surgery_rule"] = make_mode_rule(self.mode)
        self.losses_needed = mode_losses(self.mode)
        self.uses_proxy = "cls" in self.losses_needed
        if self.uses_proxy and hparams.get("proxy") is None:
            raise ValueError(f"mode {self.mode} needs a proxy recogniser")
        if self.uses_proxy:
            require_input_gradient(hparams["proxy"], "proxy")
        super().__init__(
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        self.wer_metric = None
        self.train_stats = {}

    # ----------------------------------------------------------- set-up
    def frozen_models(self):
        """The proxy recogniser (not for INIT, which never uses it)."""
        return [self.hparams.proxy] if self.uses_proxy else []

    def on_stage_start(self, stage, epoch=None):
        """The engine's (re-freeze, epoch draws), then the WER tracker."""
        super().on_stage_start(stage, epoch)
        if stage != sb.Stage.TRAIN and (
            self.uses_proxy and self._tokenizer() is not None
        ):
            self.wer_metric = sb.utils.metric_stats.ErrorRateStats()
        else:
            self.wer_metric = None

    def _tokenizer(self):
        return getattr(self.hparams, "tokenizer", None)

    # ---------------------------------------------------------- forward
    def _enhance(self, batch):
        wavs, lens = batch.noisy
        return self.modules.enhancer(wavs, lens), lens

    def compute_forward(self, batch, stage):
        """Enhance the transcribed stream and, when ``reg`` is computed in
        training, the speech-only stream (a separate forward)."""
        batch = batch.to(self.device)
        if stage != sb.Stage.TRAIN:
            enh, lens = self._enhance(batch)
            return {"asr": (enh, lens)}
        out = {"asr": self._enhance(batch.asr)}
        if "reg" in self.losses_needed:
            if batch.se is None:
                raise ValueError(
                    f"mode {self.mode} needs the speech-only stream"
                )
            out["se"] = self._enhance(batch.se)
        return out

    def _reg_one(self, enhanced, lens, batch):
        clean, _ = batch.clean
        return self.hparams.regression_loss(enhanced, clean, lens)

    def _cls(self, enhanced, lens, batch):
        tokens, token_lens = batch.tokens
        return self.hparams.proxy.loss(enhanced, lens, tokens, token_lens)

    def compute_objectives(self, outputs, batch, stage):
        """Dict of the mode's losses (TRAIN), or the validation losses.

        Arguments
        ---------
        outputs : dict
            From :meth:`compute_forward`.
        batch : TwoStreamBatch or PaddedBatch
        stage : speechbrain.Stage

        Returns
        -------
        dict of str to torch.Tensor
        """
        enh, lens = outputs["asr"]
        losses = {}
        if stage != sb.Stage.TRAIN:
            losses["reg"] = self._reg_one(enh, lens, batch)
            if self.uses_proxy:
                losses["cls"] = self._cls(enh, lens, batch)
                if self.wer_metric is not None:
                    hyps = self.hparams.proxy.transcribe(
                        enh, lens, self._tokenizer()
                    )
                    self.wer_metric.append(
                        batch.id,
                        [h.split() for h in hyps],
                        [w.split() for w in batch.wrd],
                    )
            return losses
        asr = batch.asr
        if "cls" in self.losses_needed:
            losses["cls"] = self._cls(enh, lens, asr)
        if "reg" in self.losses_needed:
            w = float(getattr(self.hparams, "reg_stream_weight", 0.5))
            enh_se, lens_se = outputs["se"]
            losses["reg"] = w * self._reg_one(enh_se, lens_se, batch.se) + (
                1.0 - w
            ) * self._reg_one(enh, lens, asr)
        return losses

    # ---------------------------------------------------------- logging
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
                train_logger.log_stats(
                    stats_meta={"epoch": epoch, "mode": self.mode},
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            self.save_selected(stats)
        self.last_stats = stats

    def selection_key(self, stats=None):
        """WER needs the proxy: without one (INIT), select by loss."""
        key = super().selection_key(stats)
        return "loss" if key == "WER" and not self.uses_proxy else key

    def on_evaluate_start(self, max_key=None, min_key=None):
        """Evaluate the checkpoint chosen by ``ckpt_selection`` (unless a
        key is given)."""
        if max_key is None and min_key is None:
            self.recover_selected()
        else:
            super().on_evaluate_start(max_key=max_key, min_key=min_key)
