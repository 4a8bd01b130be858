"""Checkpointed training stages: one folder per stage, resumable.

Every recipe here trains in stages (a proxy, a pre-training, one run per
mode or rule ...). A stage lives in its own folder::

    <folder>/save/            checkpoints (modules or given recoverables,
                              epoch counter, optimizer, rule state)
    <folder>/train_log.txt    SpeechBrain's per-epoch log
    <folder>/surgery_log.csv  per-step engine statistics (DualLossBrain)

Re-running the same stage resumes from its last checkpoint; a finished
stage trains no further and only reloads. :func:`fit_stage` is that
skeleton, shared by every method; what a method keeps afterwards (last,
best-WER or best-loss checkpoint) stays with the method.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb

from robust_brain.brain import DualLossBrain
from robust_brain.fileio import write_text_atomic

__all__ = [
    "SelectedCheckpoint",
    "check_stage_settings",
    "check_stages",
    "fit_stage",
    "loader_kwargs",
    "require_checkpoint",
]


def check_stages(stages: Sequence[str], allowed: Sequence[str]) -> list[str]:
    """Validate a recipe's ``stages`` hparam; the lower-cased stage names.

    Arguments
    ---------
    stages : sequence of str
        The ``stages`` hparam.
    allowed : sequence of str
        The stages the recipe knows (lower case).

    Returns
    -------
    list of str

    Example
    -------
    >>> check_stages(["ASR", "joint"], ("asr", "se", "joint"))
    ['asr', 'joint']
    >>> check_stages(["asr", "train"], ("asr", "joint"))
    Traceback (most recent call last):
    ...
    ValueError: stages: unknown ['train']; choose among ('asr', 'joint')
    """
    if isinstance(stages, str):
        raise ValueError(f"stages must be a list, e.g. [{stages}]")
    lowered = [str(s).lower() for s in stages]
    unknown = sorted(set(lowered) - set(allowed))
    if unknown:
        raise ValueError(
            f"stages: unknown {unknown}; choose among {tuple(allowed)}"
        )
    return lowered


def check_stage_settings(folder, settings: Mapping) -> None:
    """Refuse to resume (or reload) a stage trained with other settings.

    The first call writes ``<folder>/stage_settings.json`` (atomically, on
    the main process); a later call whose ``settings`` differ raises while
    the folder holds a checkpoint (a resumed stage would mix two
    configurations, a reloaded one would be reported under the wrong
    name). A folder without checkpoints just gets the new settings.

    Arguments
    ---------
    folder : path-like
        The stage folder.
    settings : mapping
        JSON-serialisable values.

    Example
    -------
    >>> import tempfile
    >>> folder = Path(tempfile.mkdtemp())
    >>> check_stage_settings(folder, {"rule": "PCGrad", "per_tensor": True})
    >>> (folder / "save" / "CKPT+x").mkdir(parents=True)  # a checkpoint
    >>> check_stage_settings(folder, {"rule": "PCGrad", "per_tensor": True})
    >>> check_stage_settings(folder, {"rule": "PCGrad", "per_tensor": False})
    Traceback (most recent call last):
    ...
    ValueError: .../stage_settings.json: this stage was trained with ...
    """
    folder = Path(folder)
    path = folder / "stage_settings.json"
    new = json.loads(json.dumps(dict(settings), sort_keys=True))
    has_ckpt = any((folder / "save").glob("CKPT+*"))
    if path.is_file() and has_ckpt:
        old = json.loads(path.read_text())
        if old != new:
            keys = [
                k
                for k in sorted(set(old) | set(new))
                if old.get(k) != new.get(k)
            ]
            was = ", ".join(f"{k}={old.get(k)!r}" for k in keys)
            now = ", ".join(f"{k}={new.get(k)!r}" for k in keys)
            raise ValueError(
                f"{path}: this stage was trained with {was}, now {now}; use "
                "another output folder (or delete the stage folder to "
                "retrain it)"
            )
        return
    if sb.utils.distributed.if_main_process():
        write_text_atomic(path, json.dumps(new, indent=1, sort_keys=True))


def fit_stage(
    brain_class,
    modules: Mapping,
    *,
    folder,
    epochs: int,
    opt_class,
    train_set,
    valid_set=None,
    hparams: Mapping | None = None,
    recoverables: Mapping | None = None,
    run_opts=None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
    settings: Mapping | None = None,
):
    """Build ``brain_class`` for the stage in ``folder`` and fit it.

    Arguments
    ---------
    brain_class : type
        A ``speechbrain.Brain`` subclass (a :class:`DualLossBrain` also
        gets ``surgery_log_file`` = ``<folder>/surgery_log.csv``).
    modules : mapping
        The Brain's modules.
    folder : path-like
        The stage folder.
    epochs : int
        Epochs in all (a resumed stage runs only the missing ones; 0: no
        training, e.g. to reload a finished stage).
    opt_class : callable
        ``params -> optimizer``.
    train_set, valid_set : Dataset
        As for ``Brain.fit``.
    hparams : mapping, optional
        The Brain's hparams (``epoch_counter``, ``train_logger`` and
        ``surgery_log_file`` are filled in unless given).
    recoverables : mapping, optional
        What to checkpoint besides the epoch counter (default: ``modules``).
    run_opts : dict, optional
        SpeechBrain run options.
    train_loader_kwargs, valid_loader_kwargs : mapping, optional
        DataLoader options.
    settings : mapping, optional
        What defines the stage's training (JSON types: rule, its constants,
        loss weights): see :func:`check_stage_settings`. A folder holding
        checkpoints of other settings is refused instead of resumed.

    Returns
    -------
    speechbrain.Brain
        The fitted Brain. Saving checkpoints (``on_stage_end``) and
        choosing the one to keep afterwards are the Brain's and the
        method's business.

    Example
    -------
    >>> import tempfile, torch
    >>> class Fit(sb.Brain):
    ...     def compute_forward(self, batch, stage):
    ...         return self.modules.net(batch[0])
    ...     def compute_objectives(self, out, batch, stage):
    ...         return (out - batch[1]).pow(2).mean()
    ...     def on_stage_end(self, stage, loss, epoch=None):
    ...         self.checkpointer.save_and_keep_only(meta={"loss": loss})
    >>> data = [(torch.ones(4, 2), torch.zeros(4, 1))]
    >>> folder = Path(tempfile.mkdtemp())
    >>> def run(epochs):
    ...     net = torch.nn.Linear(2, 1)
    ...     brain = fit_stage(Fit, {"net": net}, folder=folder, epochs=epochs,
    ...                       opt_class=lambda p: torch.optim.SGD(p, lr=0.1),
    ...                       train_set=data,
    ...                       train_loader_kwargs={"batch_size": None},
    ...                       run_opts={"device": "cpu"})
    ...     return brain
    >>> first = run(2)  # trains 2 epochs
    >>> again = run(2)  # resumes: nothing left to train, weights reloaded
    >>> torch.equal(first.modules.net.weight, again.modules.net.weight)
    True
    >>> len(list((folder / "save").glob("CKPT+*")))
    1
    """
    folder = Path(folder)
    if settings is not None:
        check_stage_settings(folder, settings)
    counter = sb.utils.epoch_loop.EpochCounter(epochs)
    recs = dict(modules if recoverables is None else recoverables)
    recs["counter"] = counter
    checkpointer = sb.utils.checkpoints.Checkpointer(
        folder / "save", recoverables=recs
    )
    stage_hparams = {
        "epoch_counter": counter,
        "train_logger": sb.utils.train_logger.FileTrainLogger(
            str(folder / "train_log.txt")
        ),
    }
    if issubclass(brain_class, DualLossBrain):
        stage_hparams["surgery_log_file"] = str(folder / "surgery_log.csv")
    stage_hparams.update(hparams or {})
    brain = brain_class(
        modules=dict(modules),
        opt_class=opt_class,
        hparams=stage_hparams,
        run_opts=run_opts,
        checkpointer=checkpointer,
    )
    brain.fit(
        counter,
        train_set,
        valid_set,
        train_loader_kwargs=dict(train_loader_kwargs or {}),
        valid_loader_kwargs=dict(valid_loader_kwargs or {}),
    )
    return brain


def require_checkpoint(recovered, epochs: int, name: str, folder) -> None:
    """One clear error when a stage was asked to reload (``epochs == 0``)
    but its folder holds no checkpoint.

    Arguments
    ---------
    recovered : object or None
        What the checkpointer recovered (``None``: nothing).
    epochs : int
        The stage's epochs.
    name : str
        Stage name for the message.
    folder : path-like
        The stage folder.

    Example
    -------
    >>> require_checkpoint(None, 3, "INIT", "x")  # trained: fine
    >>> require_checkpoint(None, 0, "INIT", "exp/INIT")
    Traceback (most recent call last):
    ...
    FileNotFoundError: INIT: no checkpoint in exp/INIT/save (train the ...
    """
    if recovered is None and not epochs:
        raise FileNotFoundError(
            f"{name}: no checkpoint in {Path(folder) / 'save'} (train the "
            "stage first)"
        )


class SelectedCheckpoint:
    """Brain mixin: the hparam ``ckpt_selection`` picks the checkpoint kept
    at each validation and reloaded afterwards: ``last``, or the lowest
    validation value of one of :attr:`selection_keys` (``loss`` when the
    stats lack the chosen key, e.g. no WER without a recogniser).

    Example
    -------
    >>> from types import SimpleNamespace
    >>> class B(SelectedCheckpoint):
    ...     selection_keys = ("loss", "WER")
    ...     def __init__(self, choice):
    ...         self.hparams = SimpleNamespace(ckpt_selection=choice)
    ...         self.checkpointer = None
    >>> B("last").selection_key(), B("WER").selection_key({"WER": 3.0})
    (None, 'WER')
    >>> B("WER").selection_key({"loss": 1.0})
    'loss'
    >>> B("SI-SDR").selection_key()
    Traceback (most recent call last):
    ...
    ValueError: ckpt_selection must be one of ('last', 'loss', 'WER'): 'SI-SDR'
    """

    #: validation statistics a checkpoint may be selected by
    selection_keys: tuple[str, ...] = ("loss",)

    def selection_key(self, stats=None) -> str | None:
        """The ``min_key`` of the selected checkpoint (None: the last)."""
        choice = getattr(self.hparams, "ckpt_selection", "last") or "last"
        allowed = ("last", *self.selection_keys)
        if choice not in allowed:
            raise ValueError(
                f"ckpt_selection must be one of {allowed}: {choice!r}"
            )
        if choice == "last":
            return None
        if stats is not None and choice not in stats:
            return "loss"
        return choice

    def save_selected(self, stats) -> None:
        """Save an end-of-validation checkpoint, keeping the last one and
        the best one by :meth:`selection_key`."""
        if self.checkpointer is not None:
            key = self.selection_key(stats)
            self.checkpointer.save_and_keep_only(
                meta=stats, min_keys=[key] if key else []
            )

    def recover_selected(self):
        """Load the checkpoint chosen by ``ckpt_selection``.

        Returns
        -------
        speechbrain.utils.checkpoints.Checkpoint or None
            None when there is no checkpoint.
        """
        if self.checkpointer is None:
            return None
        key = self.selection_key()
        if key is None:
            return self.checkpointer.recover_if_possible()
        return self.checkpointer.recover_if_possible(min_key=key)


def loader_kwargs(hparams: Mapping, batch_size: int, shuffle: bool) -> dict:
    """DataLoader options of a recipe (``num_workers`` from its hparams).

    Example
    -------
    >>> loader_kwargs({"num_workers": 2}, 8, True)
    {'batch_size': 8, 'shuffle': True, 'num_workers': 2}
    """
    return {
        "batch_size": batch_size,
        "shuffle": shuffle,
        "num_workers": hparams["num_workers"],
    }
