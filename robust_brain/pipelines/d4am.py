"""D4AM's pipeline: INIT, then each fine-tuning mode, in checkpointed stages.

What every D4AM recipe does once its data and proxy exist:
:func:`check_plan` validates the ``stages`` and ``modes`` hparams,
:func:`train_enhancer_stage` runs one mode of
:class:`~robust_brain.methods.d4am.D4AMBrain` in its own resumable folder,
:func:`run_modes` fine-tunes a copy of INIT per mode (GRID keeps the alpha
with the best validation proxy WER) and :func:`train_systems` runs all of
it from a recipe's hparams, writing each trained front-end as a pretrained
folder (:func:`robust_brain.inference.write_enhancer`).
"""

from __future__ import annotations

import copy
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.evaluation.report import plot_surgery_log
from robust_brain.fileio import write_text_atomic
from robust_brain.inference import write_enhancers
from robust_brain.methods.d4am import (
    MODES,
    D4AMBrain,
    check_mode,
    make_mode_rule,
    make_train_set,
)
from robust_brain.stages import check_stages, fit_stage, require_checkpoint
from robust_brain.surgery import CombinationRule

logger = logging.getLogger(__name__)

__all__ = [
    "check_plan",
    "train_enhancer_stage",
    "run_modes",
    "enhancer_stage_from_hparams",
    "train_systems",
]


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
        mode = check_mode(mode)
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
            write_text_atomic(selection_file, json.dumps(summary, indent=1))
    return systems


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
    init = check_mode(mode) == "INIT"
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
        write_enhancers(
            Path(hparams["save_folder"]) / "pretrained",
            systems,
            sample_rate=hparams["sample_rate"],
            input_level_dbfs=hparams["eval_input_level_dbfs"],
            description="D4AM recipe, system {name}, seed "
            f"{hparams['seed']}, proxy {hparams.get('proxy_name', '')}",
        )
    order = [m for m in MODES if m in systems]
    if hparams["eval_grid_alphas"]:
        order += sorted(set(systems) - set(order))
    return {k: systems[k] for k in order}
