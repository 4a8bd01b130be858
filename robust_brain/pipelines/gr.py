"""GR's pipeline: the optional pre-trainings, then every rule.

Resumable stages, one folder each, shared by the MiniNoisy, CHiME-4 and
RATS recipes: :func:`train_gr_systems` (the optional ASR / SE
pre-trainings, then :func:`run_rules`: every rule from the SAME
initialisation with the same seed and steps, each a
:func:`train_joint_stage` of :class:`~robust_brain.methods.gr.GRBrain`);
:func:`write_frontends` writes each system's front-end as a SpeechBrain
pretrained folder; :func:`run_gr_on_splits` runs it on a prepared corpus'
split manifests and scores the systems (:mod:`robust_brain.evaluation.joint`).
"""

from __future__ import annotations

import copy
import csv
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.asr_training import train_proxy_stage, train_tokenizer
from robust_brain.data.manifest import write_csv_atomic
from robust_brain.data.streams import SpeechStream, TokenEncoder, read_rows
from robust_brain.evaluation.joint import evaluate_gr_sets
from robust_brain.evaluation.report import plot_surgery_log
from robust_brain.inference import write_enhancers
from robust_brain.methods.gr import LOSSES, GRBrain, check_rule
from robust_brain.stages import (
    check_stages,
    fit_stage,
    loader_kwargs,
    require_checkpoint,
)

__all__ = [
    "PLOT_KEYS",
    "train_joint_stage",
    "run_rules",
    "STAGES",
    "check_gr_plan",
    "write_transcripts",
    "split_streams",
    "asr_stage_from_hparams",
    "joint_stage_from_hparams",
    "train_gr_systems",
    "write_frontends",
    "run_gr_on_splits",
]


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
        One of :data:`~robust_brain.methods.gr.RULES`.
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
        See :class:`~robust_brain.methods.gr.GRBrain`.
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
        # a ConformerASR is checkpointed as the hub's asr.ckpt (+ normalizer)
        recoverables["asr"] = getattr(asr, "asr_model", asr)
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
    module_lr = {
        k: float(v)
        for k, v in ((extra_hparams or {}).get("module_lr") or {}).items()
        if v is not None
    }
    if module_lr:
        settings["module_lr"] = module_lr
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
        Among :data:`~robust_brain.methods.gr.RULES` (checked first, all
        of them).
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
    if "tokenizer" in hparams and (
        "asr" in stages or "asr" in hparams["pretrained"]
    ):
        raise ValueError(
            "stages/pretrained: 'asr' pre-trains the offline Conformer, but "
            "this hparams file has a pretrained recogniser (it defines "
            "`tokenizer`); leave 'asr' out"
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
    ``max_grad_norm``, ``grad_accumulation_factor``,
    ``log_task_gradients`` and ``joint_module_lr`` (optional per-module
    learning rates of the joint stage, e.g. ``{enhancer: 0.001}``).

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
            "module_lr": None if se_only else hparams.get("joint_module_lr"),
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

    A recogniser that brings its own ``tokenizer`` (Whisper) arrives
    pre-trained and is fine-tuned jointly as it is. Otherwise a part
    (``asr``, ``se``) is pre-trained when its stage is in ``stages``
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
        when both were pre-trained or arrive published (a recogniser with
        its own tokenizer; ``enhancer_pretrained``) and
        ``eval_include_init``), then each
        rule (when ``joint`` or ``evaluate`` is in ``stages``).
    """
    pretrained = set(hparams["pretrained"]) | ({"asr", "se"} & set(stages))
    # a recogniser with its own tokenizer (Whisper) arrives pre-trained
    asr_ready = "asr" in pretrained or "tokenizer" in hparams
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
    # a published front-end (enhancer_pretrained) needs no `se` stage
    se_ready = "se" in pretrained or hparams.get("enhancer_pretrained", False)
    if hparams["eval_include_init"] and se_ready and asr_ready:
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
                asr_pretrained=asr_ready,
            )

        systems.update(
            run_rules(rules, enhancer, asr, train_stage, seed=hparams["seed"])
        )
    return systems


def write_frontends(
    hparams: Mapping, systems: Mapping, stages: Sequence[str]
) -> list[Path]:
    """Write each system's front-end to ``<save_folder>/pretrained/<name>``.

    The folder loads with
    :meth:`robust_brain.inference.Enhancer.from_hparams` (inputs scaled to
    ``eval_input_level_dbfs`` first, as the evaluation scored them), so a
    jointly trained front-end can be put before any recogniser. Written
    on the main process when a training stage (``se`` or ``joint``) ran;
    an ``evaluate``-only run writes nothing.

    Arguments
    ---------
    hparams : mapping
        ``save_folder``, ``sample_rate``, ``eval_input_level_dbfs``,
        ``seed``.
    systems : mapping
        Name -> ``(enhancer, asr)``, from :func:`train_gr_systems`.
    stages : sequence of str
        From :func:`check_gr_plan`.

    Returns
    -------
    list of Path
        The folders written.
    """
    if not {"se", "joint"} & set(stages):
        return []
    if not sb.utils.distributed.if_main_process():
        return []
    asr_type = {type(asr).__name__ for _, asr in systems.values()}
    return write_enhancers(
        Path(hparams["save_folder"]) / "pretrained",
        {name: enhancer for name, (enhancer, _) in systems.items()},
        sample_rate=hparams["sample_rate"],
        input_level_dbfs=hparams["eval_input_level_dbfs"],
        description="GR recipe, system {name}: the front-end of the pair "
        f"trained with {', '.join(sorted(asr_type))}, seed {hparams['seed']}",
    )


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
    main process)
    :func:`~robust_brain.evaluation.joint.evaluate_gr_sets` on the
    ``eval_splits``.

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
    write_frontends(hparams, systems, stages)
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
