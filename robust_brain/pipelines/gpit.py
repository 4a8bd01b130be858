"""GPIT's pipeline stage: one permutation mode of
:class:`~robust_brain.methods.gpit.GPITBrain` in its own checkpointed,
resumable folder (the WHAMR recipe runs the pre-training and each
fine-tuning mode with it).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch

from robust_brain.methods.gpit import (
    EncoderEmbeddingLoss,
    GPITBrain,
    check_mode,
)
from robust_brain.stages import fit_stage, require_checkpoint
from robust_brain.surgery import CombinationRule

__all__ = ["train_separator_stage"]


def train_separator_stage(
    mode: str,
    separator: torch.nn.Module,
    train_set,
    valid_set,
    *,
    folder,
    epochs: int,
    opt_class,
    run_opts=None,
    ae_loss: EncoderEmbeddingLoss | None = None,
    ae_weight: float = 1.0,
    sisdr_weight: float = 0.0,
    surgery_rule: CombinationRule | None = None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
    ckpt_selection: str = "last",
    extra_hparams: Mapping | None = None,
) -> GPITBrain:
    """Train one mode in ``folder`` (resumable), then load its selection.

    ``folder`` gets ``save/`` (separator, optimizer, epoch counter, rule
    state), ``train_log.txt`` and ``surgery_log.csv``. A finished stage
    only reloads its checkpoint; ``epochs=0`` loads without training
    (error when there is no checkpoint).

    Arguments
    ---------
    mode : str
        One of :data:`~robust_brain.methods.gpit.MODES`.
    separator : torch.nn.Module
        Trained in place.
    train_set, valid_set : robust_brain.data.separation.SeparationSet
    folder : path-like
    epochs : int
    opt_class : callable
        ``params -> optimizer``.
    run_opts : dict, optional
    ae_loss, ae_weight, sisdr_weight, surgery_rule :
        See :class:`~robust_brain.methods.gpit.GPITBrain`.
    train_loader_kwargs, valid_loader_kwargs : mapping, optional
    ckpt_selection : str
        ``last`` or ``loss``.
    extra_hparams : mapping, optional
        More hparams (``max_grad_norm``, ``valid_ae``, ...).

    Returns
    -------
    GPITBrain
    """
    mode = check_mode(mode)
    folder = Path(folder)
    hparams = {
        "mode": mode,
        "ae_loss": ae_loss,
        "ae_weight": ae_weight,
        "sisdr_weight": sisdr_weight,
        "surgery_rule": surgery_rule,
        "shared_modules": ["separator"],
        "ckpt_selection": ckpt_selection,
        **(extra_hparams or {}),
    }
    brain = fit_stage(
        GPITBrain,
        {"separator": separator},
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
    separator.eval()
    return brain
