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
from speechbrain.inference.interfaces import Pretrained

__all__ = [
    "Enhancer",
    "LevelNormalizedEnhancer",
    "Separator",
    "write_enhancer",
    "write_pretrained",
    "write_separator",
]


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


class _FolderSource:
    """``from_hparams`` where a local folder is its own ``savedir`` unless
    one is given (nothing is copied)."""

    @classmethod
    def from_hparams(cls, source, hparams_file="hyperparams.yaml", **kwargs):
        """SpeechBrain's ``from_hparams`` (see the class)."""
        if kwargs.get("savedir") is None and Path(str(source)).is_dir():
            kwargs["savedir"] = source
        return super().from_hparams(source, hparams_file, **kwargs)


class Enhancer(_FolderSource, WaveformEnhancement):
    """A trained enhancer: ``enhance_batch``, ``enhance_file``.

    SpeechBrain's :class:`WaveformEnhancement` for a model called as
    ``enhance_model(wavs, lengths)`` that returns the enhanced waveforms
    (DEMUCS, ...), with every input scaled to the folder's
    ``input_level_dbfs`` first.
    """

    HPARAMS_NEEDED = ["sample_rate", "input_level_dbfs"]
    MODULES_NEEDED = ["enhance_model"]

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


class Separator(_FolderSource, Pretrained):
    """A trained separator: ``separate_batch``, ``separate_file``.

    For a model called as ``separator(mix, lengths)`` that returns
    ``(batch, time, sources)`` (:class:`robust_brain.models.separator.
    MaskingSeparator`), as written by :func:`write_separator`.
    """

    HPARAMS_NEEDED = ["sample_rate"]
    MODULES_NEEDED = ["separator"]

    def separate_batch(self, mix, lengths=None):
        """Separate a batch of mixtures.

        Arguments
        ---------
        mix : torch.Tensor
            ``(batch, time)`` at ``sample_rate``.
        lengths : torch.Tensor, optional
            Relative lengths; None: all full.

        Returns
        -------
        torch.Tensor
            ``(batch, time, sources)``.
        """
        mix = mix.to(self.device)
        if lengths is None:
            lengths = torch.ones(mix.shape[0], device=self.device)
        with torch.no_grad():
            return self.mods.separator(mix, lengths.to(self.device))

    def separate_file(self, path, savedir=None):
        """Separate one audio file; ``savedir``: also write
        ``<name>_s<k>.wav`` there.

        Returns
        -------
        torch.Tensor
            ``(time, sources)``.
        """
        mix = self.load_audio(str(path))
        est = self.separate_batch(mix.unsqueeze(0))[0]
        if savedir is not None:
            import soundfile as sf

            Path(savedir).mkdir(parents=True, exist_ok=True)
            for k in range(est.shape[-1]):
                out = Path(savedir) / f"{Path(path).stem}_s{k + 1}.wav"
                sf.write(out, est[:, k].cpu().numpy(), self.hparams.sample_rate)
        return est

    def forward(self, mix, lengths=None):
        """:meth:`separate_batch`."""
        return self.separate_batch(mix, lengths)


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


def write_pretrained(
    folder,
    module: torch.nn.Module,
    key: str,
    settings: dict,
    interface: str,
    description: str = "",
) -> Path:
    """Write a trained module as a SpeechBrain pretrained folder.

    ``hyperparams.yaml`` rebuilds the module from its ``config`` (its
    constructor arguments, current values) with ``!new:`` of its class,
    or with ``!apply:`` of its ``factory`` (the dotted name of the
    function that built it), and loads ``<key>.ckpt`` through a
    ``Pretrainer``. Files are written under temporary names, then renamed:
    a reader never sees half a file.

    Arguments
    ---------
    folder : path-like
        Created if needed.
    module : torch.nn.Module
        Has a ``config`` mapping (and optionally a ``factory``).
    key : str
        The module's name in ``modules`` and of its weights file.
    settings : dict
        More top-level settings (e.g. ``sample_rate``).
    interface : str
        The class that loads the folder (named in the yaml's header).
    description : str
        Comment lines at the top of the yaml (e.g. what trained it).

    Returns
    -------
    Path
        The folder.
    """
    config = getattr(module, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            f"{type(module).__name__} has no `config` of its constructor "
            "arguments: it cannot be written as a pretrained folder"
        )
    factory = getattr(module, "factory", None)
    if factory:
        build = f"!apply:{factory}"
    else:
        build = f"!new:{type(module).__module__}.{type(module).__qualname__}"
    args = "".join(
        f"    {name}: {_yaml_value(value)}\n" for name, value in config.items()
    )
    header = "".join(f"# {line}\n" for line in description.splitlines())
    text = (
        f"{header}# Load: {interface}.from_hparams(source=<this folder>)\n"
        + "".join(f"{k}: {_yaml_value(v)}\n" for k, v in settings.items())
        + f"{key}: {build}\n{args}"
        f"modules:\n    {key}: !ref <{key}>\n"
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        f"    loadables:\n        {key}: !ref <{key}>\n"
        f"    paths:\n        {key}: {key}.ckpt\n"
    )
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    torch.save(state, folder / f".{key}.ckpt.tmp")
    (folder / ".hyperparams.yaml.tmp").write_text(text, encoding="utf-8")
    os.replace(folder / f".{key}.ckpt.tmp", folder / f"{key}.ckpt")
    os.replace(folder / ".hyperparams.yaml.tmp", folder / "hyperparams.yaml")
    return folder


def write_enhancer(
    folder,
    enhancer: torch.nn.Module,
    sample_rate: int = 16000,
    input_level_dbfs: float | None = -25.0,
    description: str = "",
) -> Path:
    """Write a trained enhancer for :class:`Enhancer` (e.g. DEMUCS, whose
    ``config`` includes its current ``dry``); see
    :func:`write_pretrained`.

    Arguments
    ---------
    folder : path-like
    enhancer : torch.nn.Module
        Called as ``enhancer(wavs, lengths)``; has a ``config``.
    sample_rate : int
        Of the audio the enhancer takes.
    input_level_dbfs : float, optional
        Each input is scaled to this RMS level first (None: as is).
    description : str

    Returns
    -------
    Path
        The folder (``source`` of :meth:`Enhancer.from_hparams`).
    """
    settings = {
        "sample_rate": int(sample_rate),
        "input_level_dbfs": input_level_dbfs,
    }
    return write_pretrained(
        folder,
        enhancer,
        "enhance_model",
        settings,
        "robust_brain.inference.Enhancer",
        description,
    )


def write_separator(
    folder,
    separator: torch.nn.Module,
    sample_rate: int = 8000,
    description: str = "",
) -> Path:
    """Write a trained separator for :class:`Separator`; see
    :func:`write_pretrained`.

    Example
    -------
    >>> import tempfile
    >>> from robust_brain.models.separator import build_separator
    >>> sep = build_separator("convtasnet", filters=8, tasnet_bottleneck=8,
    ...     tasnet_hidden=8, tasnet_blocks=1, tasnet_repeats=1)
    >>> folder = write_separator(tempfile.mkdtemp(), sep)
    >>> Separator.from_hparams(source=folder).separate_batch(
    ...     torch.randn(1, 4000)).shape
    torch.Size([1, 4000, 2])
    """
    return write_pretrained(
        folder,
        separator,
        "separator",
        {"sample_rate": int(sample_rate)},
        "robust_brain.inference.Separator",
        description,
    )
