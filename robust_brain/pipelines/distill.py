"""The distillation pipeline: each system, then the probe evaluation.

:func:`distill_systems` trains (or resumes, or reloads) each system of
:data:`~robust_brain.methods.distill.SYSTEMS` with a fresh student, each a
:func:`train_distill_stage` on the data of :func:`make_distill_set`;
:func:`evaluate_from_hparams` scores the students with
:mod:`robust_brain.evaluation.probes`; :func:`run_hub_recipe` is the
LibriSpeech recipes after preparation (:func:`prepare_hub_data`).
"""

from __future__ import annotations

import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.distortions import DistortedSpeech
from robust_brain.evaluation.probes import (
    evaluate_probes,
    teacher_encoder_parameters,
)
from robust_brain.evaluation.tables import distill_table
from robust_brain.fileio import write_text_atomic
from robust_brain.inference import write_student
from robust_brain.methods.distill import (
    SYSTEMS,
    CDMBrain,
    DistillBrain,
    RobustDistillerBrain,
    check_systems,
)
from robust_brain.models.student import (
    DomainDiscriminator,
    EnhancementHead,
    LayerTeacher,
    build_student,
    learned_parameters,
)
from robust_brain.stages import fit_stage, loader_kwargs, require_checkpoint
from robust_brain.surgery import make_rule

logger = logging.getLogger(__name__)

__all__ = [
    "make_distill_set",
    "train_distill_stage",
    "distill_systems",
    "evaluate_from_hparams",
    "prepare_hub_data",
    "run_hub_recipe",
]


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
        One of :data:`~robust_brain.methods.distill.SYSTEMS`.
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
        One of :data:`~robust_brain.methods.distill.SYSTEMS`.
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
    ``clean_view_weight``, ``max_grad_norm``, ``grad_accumulation_factor``,
    and for RobustDistiller ``enh_weight``, ``enh_hidden``, ``enh_layers``,
    ``enh_dropout``; for DAT ``dat_domain``, ``dat_hidden``,
    ``dat_opt_class``, ``dat_lambda_max``, ``dat_gamma``, ``dis_step``,
    ``dat_max_grad_norm``, ``dat_balanced``.

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
            "clean_view_weight": hparams["clean_view_weight"],
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
                dat_balanced=hparams["dat_balanced"],
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
        _write_student_folder(hparams, system, out[system], train)
    return out


def _write_student_folder(hparams, system, student, trained):
    """``<save_folder>/pretrained/<system>``, loadable with
    :class:`robust_brain.inference.StudentEncoder`."""
    if not trained or not sb.utils.distributed.if_main_process():
        return
    write_student(
        Path(hparams["save_folder"]) / "pretrained" / system,
        student,
        sample_rate=hparams.get("sample_rate", 16000),
        description=f"distillation system {system}, seed {hparams.get('seed')}",
    )


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
    """:func:`~robust_brain.evaluation.probes.evaluate_probes` +
    :func:`~robust_brain.evaluation.tables.distill_table` configured by a
    recipe's hparams; writes ``<eval_folder>/<system>.json`` and
    ``<output_folder>/results.md``.

    Reads ``eval_folder``, ``output_folder``, ``eval_teacher``,
    ``probe_feature``, ``probe_epochs``, ``probe_lr``, ``probe_hidden``,
    ``kws_classes``, ``speech_level_dbfs``, ``eval_batch_size``, ``seed``
    and ``probe_seed`` (optional; the heads' seed, default ``seed``).

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
        See :func:`~robust_brain.evaluation.probes.evaluate_probes`.
    device : str
    title : str

    Returns
    -------
    str
        The markdown table.
    """
    models = OrderedDict()
    params = {name: learned_parameters(m) for name, m in systems.items()}
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
        probe_seed=hparams.get("probe_seed"),
    )
    table = distill_table(hparams["eval_folder"], list(eval_groups), title)
    if sb.utils.distributed.if_main_process():
        out = Path(hparams["output_folder"]) / "results.md"
        write_text_atomic(out, table + "\n")
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
