"""Trained front-ends, used the SpeechBrain way.

A recipe writes each front-end it trains to a folder with
:func:`write_enhancer` (``hyperparams.yaml`` + ``enhance_model.ckpt``);
:class:`Enhancer` loads such a folder (or a hub repository laid out the
same) with ``from_hparams``:

>>> import tempfile
>>> from robust_brain.models.demucs import Demucs
>>> folder = write_enhancer(tempfile.mkdtemp(), Demucs(hidden=4, depth=2))
>>> enhancer = Enhancer.from_hparams(source=folder)
>>> enhancer.enhance_batch(torch.randn(2, 8000)).shape
torch.Size([2, 8000])

The enhancer sees each input at ``input_level_dbfs`` (the level it was
trained and evaluated at), as the project's evaluation does.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from speechbrain.inference.enhancement import WaveformEnhancement

__all__ = ["Enhancer", "LevelNormalizedEnhancer", "write_enhancer"]

#: the weights file of a front-end folder
WEIGHTS = "enhance_model.ckpt"


class LevelNormalizedEnhancer(torch.nn.Module):
    """An enhancer applied after scaling each input to a fixed level.

    D4AM's evaluation normalises every input to -25 dBFS before enhancing
    (the unprocessed NOIS baseline is scored on the original files).

    Arguments
    ---------
    enhancer : torch.nn.Module
        ``enhancer(wavs, lengths)``.
    level_dbfs : float, optional
        RMS level of the input (None: no scaling).

    Example
    -------
    >>> f = LevelNormalizedEnhancer(lambda w, n: w, level_dbfs=-20.0)
    >>> out = f(torch.ones(1, 100), torch.ones(1))
    >>> round(float(out.pow(2).mean().sqrt()), 4)
    0.1
    """

    def __init__(self, enhancer, level_dbfs: float | None = -25.0):
        super().__init__()
        self.enhancer = enhancer
        self.level_dbfs = level_dbfs

    def forward(self, wavs, lengths):
        if self.level_dbfs is not None:
            n = wavs.shape[-1]
            mask = (
                torch.arange(n, device=wavs.device).unsqueeze(0)
                < torch.round(lengths * n).unsqueeze(1)
            ).to(wavs.dtype)
            power = (wavs.pow(2) * mask).sum(-1) / mask.sum(-1).clamp_min(1)
            gain = 10.0 ** (self.level_dbfs / 20.0) / power.sqrt().clamp_min(
                1e-8
            )
            wavs = wavs * gain.unsqueeze(-1)
        return self.enhancer(wavs, lengths)


class Enhancer(WaveformEnhancement):
    """A trained enhancer: ``enhance_batch``, ``enhance_file``.

    SpeechBrain's :class:`WaveformEnhancement` for a model called as
    ``enhance_model(wavs, lengths)`` that returns the enhanced waveforms
    (DEMUCS, ...), with every input scaled to the folder's
    ``input_level_dbfs`` first.
    """

    HPARAMS_NEEDED = ["sample_rate", "input_level_dbfs"]
    MODULES_NEEDED = ["enhance_model"]

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """SpeechBrain's ``from_hparams``; a local folder is its own
        ``savedir`` unless one is given (nothing is copied)."""
        if kwargs.get("savedir") is None and Path(str(source)).is_dir():
            kwargs["savedir"] = source
        return super().from_hparams(source, hparams_file, **kwargs)

    def enhance_batch(self, noisy, lengths=None):
        """Enhance a batch of waveforms.

        Arguments
        ---------
        noisy : torch.Tensor
            ``(batch, time)`` at ``sample_rate``.
        lengths : torch.Tensor, optional
            Relative lengths (SpeechBrain's convention); None: all full.

        Returns
        -------
        torch.Tensor
            ``(batch, time)``.
        """
        noisy = noisy.to(self.device)
        if lengths is None:
            lengths = torch.ones(noisy.shape[0], device=self.device)
        model = LevelNormalizedEnhancer(
            self.mods.enhance_model, self.hparams.input_level_dbfs
        )
        with torch.no_grad():
            return model(noisy, lengths.to(self.device))


def _yaml_value(value) -> str:
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"cannot write {value!r} to an inference yaml")


def write_enhancer(
    folder,
    enhancer: torch.nn.Module,
    sample_rate: int = 16000,
    input_level_dbfs: float | None = -25.0,
    description: str = "",
) -> Path:
    """Write a trained enhancer as a SpeechBrain pretrained folder.

    ``hyperparams.yaml`` builds the model with ``!new:`` from its
    ``config`` (the constructor arguments, current values, e.g. DEMUCS'
    ``dry``) and loads ``enhance_model.ckpt`` through a ``Pretrainer``.
    Files are written under temporary names, then renamed: a reader never
    sees half a folder.

    Arguments
    ---------
    folder : path-like
        Created if needed.
    enhancer : torch.nn.Module
        Has a ``config`` mapping of its constructor arguments.
    sample_rate : int
        Of the audio the enhancer takes.
    input_level_dbfs : float, optional
        Each input is scaled to this RMS level first (None: as is).
    description : str
        A comment line at the top of the yaml (e.g. what trained it).

    Returns
    -------
    Path
        The folder (``source`` of :meth:`Enhancer.from_hparams`).
    """
    config = getattr(enhancer, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            f"{type(enhancer).__name__} has no `config` of its constructor "
            "arguments: it cannot be written as a pretrained folder"
        )
    cls = type(enhancer)
    args = "".join(
        f"    {key}: {_yaml_value(value)}\n" for key, value in config.items()
    )
    header = "".join(f"# {line}\n" for line in description.splitlines())
    text = (
        f"{header}# Load: robust_brain.inference.Enhancer.from_hparams("
        "source=<this folder>)\n"
        f"sample_rate: {int(sample_rate)}\n"
        f"input_level_dbfs: {_yaml_value(input_level_dbfs)}\n"
        f"enhance_model: !new:{cls.__module__}.{cls.__qualname__}\n{args}"
        "modules:\n    enhance_model: !ref <enhance_model>\n"
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        "    loadables:\n        enhance_model: !ref <enhance_model>\n"
        f"    paths:\n        enhance_model: {WEIGHTS}\n"
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in enhancer.state_dict().items()}
    torch.save(state, folder / f".{WEIGHTS}.tmp")
    (folder / ".hyperparams.yaml.tmp").write_text(text, encoding="utf-8")
    os.replace(folder / f".{WEIGHTS}.tmp", folder / WEIGHTS)
    os.replace(folder / ".hyperparams.yaml.tmp", folder / "hyperparams.yaml")
    return folder
