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
:func:`train_enhancer_stage` runs one mode in its own checkpointed folder
(re-running resumes), :func:`train_systems` runs INIT and every mode of a
recipe's hparams. Scoring the enhancers with unseen recognisers is
:mod:`robust_brain.evaluation.frontends`' job.
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.brain import DualLossBrain
from robust_brain.data.streams import PairedStreams
from robust_brain.evaluation.report import plot_surgery_log
from robust_brain.inference import write_enhancer
from robust_brain.models.asr import freeze
from robust_brain.stages import (
    SelectedCheckpoint,
    check_stages,
    fit_stage,
    require_checkpoint,
)
from robust_brain.surgery import CombinationRule, Sum, make_rule

logger = logging.getLogger(__name__)

__all__ = [
    "MODES",
    "mode_losses",
    "make_mode_rule",
    "make_train_set",
    "D4AMBrain",
    "train_enhancer_stage",
    "run_modes",
    "check_plan",
    "enhancer_stage_from_hparams",
    "train_systems",
]

#: the methods of the D4AM paper, in table order
MODES = ("INIT", "CLSO", "GCLB", "SRPR", "GRID", "D4AM")


def _check_mode(mode: str) -> str:
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
    key = _check_mode(mode)
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
    key = _check_mode(mode)
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
        self.mode = _check_mode(hparams.get("mode", "D4AM"))
        hparams["mode"] = self.mode
        if hparams.get("surgery_rule") is None:
            hparams["surgery_rule"] = make_mode_rule(self.mode)
        self.losses_needed = mode_losses(self.mode)
        self.uses_proxy = "cls" in self.losses_needed
        if self.uses_proxy and hparams.get("proxy") is None:
            raise ValueError(f"mode {self.mode} needs a proxy recogniser")
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

    # ----------------------------------------------------------- set-up
    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader, with the dataset's own ``collate`` and a
        handle on the training set (for :meth:`set_epoch`)."""
        if "collate_fn" not in loader_kwargs and hasattr(dataset, "collate"):
            loader_kwargs["collate_fn"] = dataset.collate
        if stage == sb.Stage.TRAIN:
            self._train_data = dataset
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )

    def _proxy(self):
        return freeze(self.hparams.proxy.to(self.device))

    def on_fit_start(self):
        """Engine set-up, then the frozen proxy on the device (not INIT)."""
        super().on_fit_start()
        if self.uses_proxy:
            self._proxy()

    def on_stage_start(self, stage, epoch=None):
        """Re-freeze the proxy (``fit`` puts modules in train mode), pick
        the epoch's draws, reset the WER tracker."""
        if self.uses_proxy:
            self._proxy()
        if stage == sb.Stage.TRAIN:
            if self._train_data is not None and epoch is not None:
                if hasattr(self._train_data, "set_epoch"):
                    self._train_data.set_epoch(epoch)
        elif self.uses_proxy and self._tokenizer() is not None:
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


def train_enhancer_stage(
    mode: str,
    enhancer: torch.nn.Module,
    train_set,
    valid_set,
    *,
    folder,
    epochs: int,
    opt_class,
    run_opts=None,
    proxy=None,
    tokenizer=None,
    regression_loss=None,
    reg_stream_weight: float = 0.5,
    surgery_rule: CombinationRule | None = None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
    ckpt_selection: str = "last",
    extra_hparams: Mapping | None = None,
) -> D4AMBrain:
    """Train one mode in ``folder`` (resumable), then load its selection.

    ``folder`` gets ``save/`` (checkpoints: enhancer, optimizer, epoch
    counter, rule state), ``train_log.txt`` and ``surgery_log.csv``.
    Re-running with the same folder resumes, and a finished stage only
    reloads its selected checkpoint.

    Arguments
    ---------
    mode : str
        One of :data:`MODES`.
    enhancer : torch.nn.Module
        Trained in place.
    train_set : PairedStreams
        From :func:`make_train_set`.
    valid_set : SpeechStream or None
        Pre-mixed validation pairs.
    folder : path-like
        Stage folder.
    epochs : int
        Number of epochs.
    opt_class : callable
        ``params -> optimizer``.
    run_opts : RunOptions or dict, optional
        SpeechBrain run options (command line).
    proxy, tokenizer, regression_loss, reg_stream_weight, surgery_rule :
        See :class:`D4AMBrain`.
    train_loader_kwargs, valid_loader_kwargs : mapping, optional
        DataLoader options.
    ckpt_selection : str
        ``last``, ``loss`` or ``WER``.
    extra_hparams : mapping, optional
        More hparams for the Brain, e.g. run options set in the yaml
        (``max_grad_norm``, ``grad_accumulation_factor``, ``precision``),
        which SpeechBrain reads from hparams.

    Returns
    -------
    D4AMBrain
        The trained Brain (its enhancer holds the selected weights).
    """
    folder = Path(folder)
    hparams = {
        "mode": mode,
        "proxy": proxy,
        "tokenizer": tokenizer,
        "regression_loss": regression_loss,
        "reg_stream_weight": reg_stream_weight,
        "surgery_rule": surgery_rule,
        "shared_modules": ["enhancer"],
        "ckpt_selection": ckpt_selection,
        **(extra_hparams or {}),
    }
    rule = surgery_rule
    brain = fit_stage(
        D4AMBrain,
        {"enhancer": enhancer},
        settings={
            "mode": mode,
            "reg_stream_weight": float(reg_stream_weight),
            "rule": None if rule is None else type(rule).__name__,
            "grid_alpha": getattr(rule, "w_aux", None),
        },
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
    require_checkpoint(brain.recover_selected(), epochs, mode, folder)
    enhancer.eval()
    if sb.utils.distributed.if_main_process():
        plot_surgery_log(folder / "surgery_log.csv", folder / "surgery.png")
    return brain


def run_modes(
    modes: Sequence[str],
    grid_alphas: Sequence[float],
    init_enhancer: torch.nn.Module,
    train_stage,
    valid_set,
    valid_loader_kwargs: Mapping | None = None,
    selection_file=None,
    dry: float = 0.0,
) -> dict:
    """Fine-tune a copy of INIT per mode; GRID keeps its best alpha.

    GRID trains one enhancer per alpha of ``grid_alphas`` and reports the
    one with the lowest proxy greedy-CTC WER on ``valid_set`` (validation
    loss if no WER is available), never a test-set choice. All alphas stay
    in the result as ``GRID_<alpha>``.

    Arguments
    ---------
    modes : sequence of str
        Fine-tuning modes (not INIT).
    grid_alphas : sequence of float
        GRID's alphas.
    init_enhancer : torch.nn.Module
        The INIT model (deep-copied for each mode; left untouched).
    train_stage : callable
        ``(mode, name, enhancer, grid_alpha) -> D4AMBrain``: trains (or
        resumes, or reloads) one stage in its folder named ``name``.
    valid_set : SpeechStream
        Validation pairs (for the GRID choice).
    valid_loader_kwargs : mapping, optional
    selection_file : path-like, optional
        JSON file receiving the GRID validation scores and choice.
    dry : float
        Each copy's dry/wet value (DEMUCS' ``dry``) while it is fine-tuned
        and after: the proxy then shapes ``(1 - dry) * enhanced + dry *
        noisy``, the signal a recogniser will get (0: enhanced only).

    Returns
    -------
    dict
        System name -> enhancer (modes, then ``GRID_<alpha>``).
    """
    import json

    systems, grid = OrderedDict(), OrderedDict()
    for mode in modes:
        mode = _check_mode(mode)
        if mode == "INIT":
            raise ValueError("INIT is not a fine-tuning mode")
        alphas = list(grid_alphas) if mode == "GRID" else [None]
        if not alphas:
            raise ValueError("GRID needs at least one alpha (grid_alphas)")
        for alpha in alphas:
            name = mode if alpha is None else f"GRID_{alpha:g}"
            enhancer = copy.deepcopy(init_enhancer)
            if dry:
                if not hasattr(enhancer, "dry"):
                    raise ValueError(
                        f"dry={dry}: the enhancer {type(enhancer).__name__} "
                        "has no dry/wet knob"
                    )
                enhancer.dry = float(dry)
            brain = train_stage(
                mode, name, enhancer, 1.0 if alpha is None else alpha
            )
            if alpha is None:
                systems[mode] = enhancer
                continue
            brain.evaluate(
                valid_set,
                test_loader_kwargs=dict(valid_loader_kwargs or {}),
                progressbar=False,
            )
            stats = {k: float(v) for k, v in brain.last_stats.items()}
            grid[name] = (alpha, stats, enhancer)
    if grid:
        key = "WER" if all("WER" in s for _, s, _ in grid.values()) else "loss"
        best = min(grid, key=lambda n: grid[n][1][key])
        systems["GRID"] = grid[best][2]
        for name, (_, _, enhancer) in grid.items():
            systems[name] = enhancer
        summary = {n: {"alpha": a, **s} for n, (a, s, _) in grid.items()}
        summary["selected"] = best
        summary["selected_by"] = f"validation proxy {key}"
        logger.info("GRID: %s selected by %s", best, summary["selected_by"])
        if (
            selection_file is not None
            and sb.utils.distributed.if_main_process()
        ):
            Path(selection_file).write_text(json.dumps(summary, indent=1))
    return systems


# --------------------------------------------------------------------------
# Recipe driver: what every D4AM recipe does once its data and proxy exist


def check_plan(
    stages: Sequence[str], modes: Sequence[str], allowed: Sequence[str]
) -> list[str]:
    """Validate the ``stages`` and ``modes`` hparams; lower-cased stages.

    Arguments
    ---------
    stages : sequence of str
        The recipe's ``stages`` hparam.
    modes : sequence of str
        The ``modes`` hparam (fine-tuning modes: not INIT).
    allowed : sequence of str
        The stages the recipe knows.

    Returns
    -------
    list of str

    Example
    -------
    >>> check_plan(["Init", "modes"], ["d4am"], ("init", "modes"))
    ['init', 'modes']
    >>> check_plan(["init", "train"], [], ("init", "modes"))
    Traceback (most recent call last):
    ...
    ValueError: stages: unknown ['train']; choose among ('init', 'modes')
    >>> check_plan(["init"], ["INIT"], ("init",))
    Traceback (most recent call last):
    ...
    ValueError: modes: 'INIT' is not one of ('CLSO', 'GCLB', 'SRPR', ...
    """
    lowered = check_stages(stages, allowed)
    for mode in modes:
        if str(mode).upper() not in MODES[1:]:
            raise ValueError(f"modes: {mode!r} is not one of {MODES[1:]}")
    return lowered


def enhancer_stage_from_hparams(
    hparams: Mapping,
    run_opts,
    data: Mapping,
    mode: str,
    name: str,
    enhancer: torch.nn.Module,
    proxy,
    tokenizer,
    loader_kwargs,
    grid_alpha: float = 1.0,
    train: bool = True,
) -> D4AMBrain:
    """:func:`train_enhancer_stage` configured by a recipe's hparams.

    Reads ``seed``, ``save_folder``, ``init_epochs`` / ``init_opt_class`` /
    ``init_regression_loss`` (INIT) or ``mode_epochs`` / ``opt_class`` /
    ``regression_loss`` (the other modes), ``reg_stream_weight``, ``langevin``,
    ``langevin_num_samples``, ``srpr_init``, ``srpr_beta``,
    ``srpr_window``, ``ckpt_selection``, ``max_grad_norm`` and
    ``grad_accumulation_factor``; the stage lives in
    ``<save_folder>/<name>``.

    Arguments
    ---------
    hparams : mapping
        The recipe's loaded hparams.
    run_opts : dict
        SpeechBrain run options.
    data : mapping
        ``asr`` and ``se`` training streams, ``valid`` pairs.
    mode, name : str
        The mode and its folder name (``GRID_<alpha>`` for GRID).
    enhancer : torch.nn.Module
        Trained in place.
    proxy, tokenizer :
        The frozen proxy and its tokenizer (unused by INIT).
    loader_kwargs : callable
        ``shuffle -> DataLoader options``.
    grid_alpha : float
        GRID's alpha.
    train : bool
        False: only reload the stage's checkpoint.

    Returns
    -------
    D4AMBrain
    """
    init = _check_mode(mode) == "INIT"
    rule = make_mode_rule(
        mode,
        grid_alpha=grid_alpha,
        langevin=hparams["langevin"],
        num_samples=hparams["langevin_num_samples"] or len(data["se"]),
        srpr_init=hparams["srpr_init"],
        srpr_beta=hparams["srpr_beta"],
        srpr_window=hparams["srpr_window"],
    )
    if init:
        epochs, opt_class = hparams["init_epochs"], hparams["init_opt_class"]
        regression_loss = hparams["init_regression_loss"]
    else:
        epochs, opt_class = hparams["mode_epochs"], hparams["opt_class"]
        regression_loss = hparams["regression_loss"]
    return train_enhancer_stage(
        mode,
        enhancer,
        make_train_set(mode, data["asr"], data["se"], seed=hparams["seed"]),
        data["valid"],
        folder=Path(hparams["save_folder"]) / name,
        epochs=epochs if train else 0,
        opt_class=opt_class,
        run_opts=run_opts,
        proxy=None if init else proxy,
        tokenizer=tokenizer,
        regression_loss=regression_loss,
        reg_stream_weight=hparams["reg_stream_weight"],
        surgery_rule=rule,
        train_loader_kwargs=loader_kwargs(True),
        valid_loader_kwargs=loader_kwargs(False),
        ckpt_selection=hparams["ckpt_selection"],
        extra_hparams={
            "max_grad_norm": hparams["max_grad_norm"],
            "grad_accumulation_factor": hparams["grad_accumulation_factor"],
        },
    )


def train_systems(
    hparams: Mapping,
    run_opts,
    data: Mapping,
    proxy,
    tokenizer,
    stages: Sequence[str],
    loader_kwargs,
    init_stage: bool = True,
) -> dict:
    """INIT, then every mode of ``modes`` (GRID: each alpha); in order.

    Stages ``init`` and ``modes`` train (or resume); otherwise the stages
    only reload their checkpoints, e.g. for ``evaluate`` alone.

    Arguments
    ---------
    hparams, run_opts, data, proxy, tokenizer, loader_kwargs :
        See :func:`enhancer_stage_from_hparams`; ``hparams["enhancer"]``
        becomes INIT.
    stages : sequence of str
        From :func:`check_plan`.
    init_stage : bool
        False when INIT's weights come from elsewhere (a checkpoint file)
        and no INIT epochs are asked for.

    Each system is also written to ``<save_folder>/pretrained/<name>``
    (:func:`robust_brain.inference.write_enhancer`) when ``init`` or
    ``modes`` run.

    Returns
    -------
    dict
        System name -> enhancer, in :data:`MODES` order, then the GRID
        alphas (``GRID_<alpha>``) when ``eval_grid_alphas`` is set.
    """

    def stage(mode, name, enhancer, grid_alpha=1.0, train=True):
        return enhancer_stage_from_hparams(
            hparams,
            run_opts,
            data,
            mode,
            name,
            enhancer,
            proxy,
            tokenizer,
            loader_kwargs,
            grid_alpha=grid_alpha,
            train=train,
        )

    init_enhancer = hparams["enhancer"]
    if init_stage:
        stage("INIT", "INIT", init_enhancer, train="init" in stages)
    systems = {"INIT": init_enhancer}
    if "modes" in stages or "evaluate" in stages:
        train_modes = "modes" in stages
        systems.update(
            run_modes(
                hparams["modes"],
                hparams["grid_alphas"],
                init_enhancer,
                lambda m, n, e, a: stage(m, n, e, a, train=train_modes),
                data["valid"],
                loader_kwargs(False),
                selection_file=Path(hparams["save_folder"])
                / "grid_selection.json",
                dry=hparams.get("mode_dry", 0.0),
            )
        )
    if {"init", "modes"} & set(
        stages
    ) and sb.utils.distributed.if_main_process():
        # every trained front-end, loadable with Enhancer.from_hparams
        for name, enhancer in systems.items():
            write_enhancer(
                Path(hparams["save_folder"]) / "pretrained" / name,
                enhancer,
                sample_rate=hparams["sample_rate"],
                input_level_dbfs=hparams["eval_input_level_dbfs"],
                description=f"D4AM recipe, system {name}, seed "
                f"{hparams['seed']}, proxy {hparams.get('proxy_name', '')}",
            )
    order = [m for m in MODES if m in systems]
    if hparams["eval_grid_alphas"]:
        order += sorted(set(systems) - set(order))
    return {k: systems[k] for k in order}
