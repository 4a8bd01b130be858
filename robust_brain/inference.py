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

import contextlib
from pathlib import Path

import torch
from speechbrain.inference.enhancement import WaveformEnhancement
from speechbrain.inference.interfaces import Pretrained

from robust_brain.fileio import atomic_path

__all__ = [
    "Enhancer",
    "LevelNormalizedEnhancer",
    "Separator",
    "StudentEncoder",
    "hparams_nodes",
    "write_enhancer",
    "write_enhancers",
    "write_pretrained",
    "write_separator",
    "write_student",
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
    MaskingSeparator`), as written by :func:`write_separator` (whose
    example loads one and separates a batch).
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


class StudentEncoder(_FolderSource, Pretrained):
    """A distilled student: ``encode_batch``, ``encode_file``.

    For a :class:`~robust_brain.models.student.DistilStudent` (the
    features a downstream model reads: its last hidden state, or the
    prediction of the deepest teacher layer), as written by
    :func:`write_student`.

    Example
    -------
    >>> import tempfile
    >>> from robust_brain.models.asr import ConformerASR
    >>> from robust_brain.models.student import LayerTeacher, build_student
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=2, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> student = build_student(LayerTeacher(asr), [1, 2], num_layers=1)
    >>> folder = write_student(tempfile.mkdtemp(), student.eval())
    >>> encoder = StudentEncoder.from_hparams(source=folder)
    >>> encoder.encode_batch(torch.randn(2, 8000)).shape  # (batch, frames, dim)
    torch.Size([2, 13, 16])
    """

    HPARAMS_NEEDED = ["sample_rate"]
    MODULES_NEEDED = ["student"]

    def encode_batch(self, wavs, wav_lens=None, kind: str = "last"):
        """Features of a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)`` at ``sample_rate``.
        wav_lens : torch.Tensor, optional
            Relative lengths; None: all full.
        kind : str
            ``last`` or ``pred`` (see ``DistilStudent.features``).

        Returns
        -------
        torch.Tensor
            ``(batch, frames, dim)``.
        """
        wavs = wavs.to(self.device)
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=self.device)
        return self.mods.student.features(
            wavs, wav_lens.to(self.device), kind=kind
        )

    def encode_file(self, path, kind: str = "last"):
        """Features ``(frames, dim)`` of one audio file."""
        wav = self.load_audio(str(path))
        return self.encode_batch(wav.unsqueeze(0), kind=kind)[0]

    def forward(self, wavs, wav_lens=None):
        """:meth:`encode_batch`."""
        return self.encode_batch(wavs, wav_lens)


def _yaml_value(value) -> str:
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
    if isinstance(value, bool):
        return "True" if value else "False"
    if value is None:
        return "null"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, int | str):
        return str(value)
    raise TypeError(f"cannot write {value!r} to an inference yaml")


def hparams_nodes(hparams_file, keys, overrides=None) -> str:
    """YAML text of chosen top-level nodes of an hparams file, with every
    ``!ref``, ``!copy`` and override resolved (HyperPyYAML's
    ``resolve_references``), so the text builds the same objects alone.

    An object referenced from two places stays one object (a YAML anchor
    and its alias); nodes are written in the order of ``keys``.

    Arguments
    ---------
    hparams_file : path-like
    keys : sequence of str
    overrides : str or dict, optional
        As given to ``load_hyperpyyaml``.

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> f = Path(tempfile.mkdtemp()) / "h.yaml"
    >>> _ = f.write_text(
    ...     "n: 4\\n"
    ...     "lin: !new:torch.nn.Linear\\n"
    ...     "    in_features: !ref <n>\\n"
    ...     "    out_features: !ref <n> // 2\\n")
    >>> print(hparams_nodes(f, ["lin"], "n: 6"), end="")
    lin: !new:torch.nn.Linear
        in_features: 6
        out_features: 3
    """
    import io

    import ruamel.yaml
    from hyperpyyaml import resolve_references

    with open(hparams_file, encoding="utf-8") as fin:
        text = resolve_references(fin, overrides).getvalue()
    yaml = ruamel.yaml.YAML()
    yaml.indent(mapping=4, sequence=4, offset=2)
    tree = yaml.load(text)
    missing = [k for k in keys if k not in tree]
    if missing:
        raise KeyError(f"{hparams_file} has no top-level {missing}")
    out = io.StringIO()
    yaml.dump({k: tree[k] for k in keys}, out)
    return out.getvalue()


def _config_node(key: str, module: torch.nn.Module) -> str:
    """``key: !new:<class>`` (or ``!apply:<factory>``) of the module's
    ``config`` (its constructor arguments, current values)."""
    config = getattr(module, "config", None)
    if not isinstance(config, dict):
        raise TypeError(
            f"{type(module).__name__} has no `config` of its constructor "
            "arguments: give the yaml that builds it (hparams_nodes)"
        )
    factory = getattr(module, "factory", None)
    if factory:
        build = f"!apply:{factory}"
    else:
        build = f"!new:{type(module).__module__}.{type(module).__qualname__}"
    args = "".join(
        f"    {name}: {_yaml_value(value)}\n" for name, value in config.items()
    )
    return f"{key}: {build}\n{args}"


def write_pretrained(
    folder,
    module: torch.nn.Module,
    key: str,
    settings: dict,
    interface: str,
    description: str = "",
    build: str | None = None,
    parts: dict | None = None,
) -> Path:
    """Write a trained module as a SpeechBrain pretrained folder.

    ``hyperparams.yaml`` builds the module (``build``: YAML text defining
    the top-level node ``key``, e.g. from :func:`hparams_nodes` of the
    training hparams; default: from the module's ``config``) and loads
    each part's ``<name>.ckpt`` through a ``Pretrainer``. Files are
    written under temporary names, then renamed: a reader never sees half
    a file.

    Arguments
    ---------
    folder : path-like
        Created if needed.
    module : torch.nn.Module
        The module (``modules[key]`` when loaded).
    key : str
        Its name in ``modules``.
    settings : dict
        More top-level settings (e.g. ``sample_rate``).
    interface : str
        The class that loads the folder (named in the yaml's header).
    description : str
        Comment lines at the top of the yaml (e.g. what trained it).
    build : str, optional
        YAML defining ``key`` (and what it needs).
    parts : dict, optional
        ``name -> (yaml reference, submodule)`` whose weights are written
        to ``<name>.ckpt``; default: the whole module as ``<key>.ckpt``.

    Returns
    -------
    Path
        The folder.
    """
    if build is None:
        build = _config_node(key, module)
    if parts is None:
        parts = {key: (key, module)}
    loadables = "".join(
        f"        {name}: !ref <{ref}>\n" for name, (ref, _) in parts.items()
    )
    header = "".join(f"# {line}\n" for line in description.splitlines())
    text = (
        f"{header}# Load: {interface}.from_hparams(source=<this folder>)\n"
        + "".join(f"{k}: {_yaml_value(v)}\n" for k, v in settings.items())
        + build.rstrip("\n")
        + f"\nmodules:\n    {key}: !ref <{key}>\n"
        # no `paths`: the Pretrainer then fetches <name>.ckpt from the
        # source, wherever savedir is (a listed relative path would be
        # read from the working directory)
        "pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer\n"
        f"    loadables:\n{loadables}"
    )
    folder = Path(folder)
    # every file is written before any is renamed; the stack renames in
    # reverse order, so hyperparams.yaml (entered first) comes last
    with contextlib.ExitStack() as stack:
        yaml_tmp = stack.enter_context(atomic_path(folder / "hyperparams.yaml"))
        for name, (_, part) in parts.items():
            state = {k: v.detach().cpu() for k, v in part.state_dict().items()}
            ckpt = stack.enter_context(atomic_path(folder / f"{name}.ckpt"))
            torch.save(state, ckpt)
        yaml_tmp.write_text(text, encoding="utf-8")
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


def write_enhancers(
    folder,
    enhancers,
    sample_rate: int = 16000,
    input_level_dbfs: float | None = -25.0,
    description: str = "{name}",
) -> list[Path]:
    """Write each of a recipe's trained enhancers to ``folder/<name>``
    with :func:`write_enhancer`.

    Arguments
    ---------
    folder : path-like
        Parent folder (a recipe's ``<save_folder>/pretrained``).
    enhancers : mapping
        Name -> enhancer.
    sample_rate, input_level_dbfs :
        As in :func:`write_enhancer`, the same for all.
    description : str
        ``{name}`` in it is replaced by each name (nothing else is
        interpreted, so a hub id with braces stays as it is).

    Returns
    -------
    list of Path
        The folders, in the mapping's order.

    Example
    -------
    >>> import tempfile
    >>> from robust_brain.models.demucs import Demucs
    >>> nets = {name: Demucs(hidden=4, depth=2) for name in ("INIT", "D4AM")}
    >>> [p.name for p in write_enhancers(tempfile.mkdtemp(), nets)]
    ['INIT', 'D4AM']
    """
    return [
        write_enhancer(
            Path(folder) / name,
            enhancer,
            sample_rate=sample_rate,
            input_level_dbfs=input_level_dbfs,
            description=description.replace("{name}", name),
        )
        for name, enhancer in enhancers.items()
    ]


def write_separator(
    folder,
    separator: torch.nn.Module,
    build: str | None = None,
    sample_rate: int = 8000,
    description: str = "",
) -> Path:
    """Write a trained separator for :class:`Separator`.

    A :class:`~robust_brain.models.separator.MaskingSeparator` is written
    as SpeechBrain's hub separators are (``speechbrain/sepformer-whamr``):
    ``encoder.ckpt``, ``masknet.ckpt`` and ``decoder.ckpt``, so the folder
    is also a ``pretrained_separator`` of the GPIT recipe. See
    :func:`write_pretrained`.

    Arguments
    ---------
    folder : path-like
    separator : torch.nn.Module
    build : str, optional
        YAML defining ``separator`` (and ``sep_encoder``, ``sep_masknet``,
        ``sep_decoder`` when it refers to them): :func:`hparams_nodes` of
        the training hparams; default: from the separator's ``config``.
    sample_rate : int
    description : str

    Returns
    -------
    Path

    Example
    -------
    >>> import tempfile
    >>> build = '''
    ... sep_encoder: !new:speechbrain.lobes.models.dual_path.Encoder
    ...     kernel_size: 16
    ...     out_channels: 8
    ... sep_masknet: !new:speechbrain.lobes.models.conv_tasnet.MaskNet
    ...     [8, 8, 8, 3, 1, 1, 2]
    ... sep_decoder: !new:speechbrain.lobes.models.dual_path.Decoder
    ...     {in_channels: 8, out_channels: 1, kernel_size: 16, stride: 8,
    ...      bias: False}
    ... separator: !new:robust_brain.models.separator.MaskingSeparator
    ...     [!ref <sep_encoder>, !ref <sep_masknet>, !ref <sep_decoder>]
    ... '''
    >>> from hyperpyyaml import load_hyperpyyaml
    >>> sep = load_hyperpyyaml(build)["separator"]
    >>> folder = write_separator(tempfile.mkdtemp(), sep, build)
    >>> sorted(p.name for p in folder.glob("*.ckpt"))
    ['decoder.ckpt', 'encoder.ckpt', 'masknet.ckpt']
    >>> Separator.from_hparams(source=folder).separate_batch(
    ...     torch.randn(1, 4000)).shape
    torch.Size([1, 4000, 2])
    """
    parts = None
    if build is not None and all(
        hasattr(separator, n) for n in ("encoder", "masknet", "decoder")
    ):
        parts = {
            n: (f"sep_{n}", getattr(separator, n))
            for n in ("encoder", "masknet", "decoder")
        }
    return write_pretrained(
        folder,
        separator,
        "separator",
        {"sample_rate": int(sample_rate)},
        "robust_brain.inference.Separator",
        description,
        build=build,
        parts=parts,
    )


def _hf_student_build(student) -> str:
    """YAML that rebuilds an :class:`~robust_brain.models.student.
    HFStudent` or a :class:`~robust_brain.models.student.WhisperStudent`
    (its Hugging Face configuration, written out in full)."""
    import json

    config = student.model.config
    values = config.to_dict()
    for key in ("model_type", "transformers_version", "_name_or_path"):
        values.pop(key, None)
    cfg = type(config)
    model = type(student.model)
    kind = type(student)
    lines = [f"student_config: !new:{cfg.__module__}.{cfg.__qualname__}"]
    lines += [f"    {k}: {json.dumps(v)}" for k, v in sorted(values.items())]
    lines += [
        f"student_model: !new:{model.__module__}.{model.__qualname__}",
        "    - !ref <student_config>",
        f"student: !new:{kind.__module__}.{kind.__qualname__}",
        "    model: !ref <student_model>",
        f"    target_layers: {json.dumps(student.target_layers)}",
    ]
    if hasattr(student, "normalize_wav"):
        lines.append(f"    normalize_wav: {_yaml_value(student.normalize_wav)}")
    return "\n".join(lines) + "\n"


def _conformer_student_build(student) -> str:
    """YAML that rebuilds a :class:`~robust_brain.models.student.
    ConformerStudent`: an (untrained) teacher of the recorded shape and the
    student around it, whose weights and statistics the checkpoint sets."""
    if not isinstance(student.teacher_config, dict):
        raise TypeError(
            "this ConformerStudent's teacher has no `config`: give the yaml "
            "that builds it (build=...)"
        )
    lines = ["teacher_model: !new:robust_brain.models.asr.ConformerASR"]
    lines += [
        f"    {k}: {_yaml_value(v)}" for k, v in student.teacher_config.items()
    ]
    lines += [
        "student: !new:robust_brain.models.student.ConformerStudent",
        "    teacher: !ref <teacher_model>",
        f"    target_layers: {_yaml_value(student.target_layers)}",
        f"    num_layers: {student.num_layers}",
        f"    feature_grad_mult: {_yaml_value(student.feature_grad_mult)}",
        "    init_from_teacher: False",
    ]
    return "\n".join(lines) + "\n"


def write_student(
    folder,
    student: torch.nn.Module,
    build: str | None = None,
    sample_rate: int = 16000,
    description: str = "",
) -> Path:
    """Write a distilled student for :class:`StudentEncoder`.

    An :class:`~robust_brain.models.student.HFStudent` (from a WavLM,
    HuBERT or wav2vec 2.0 teacher) or a :class:`~robust_brain.models.
    student.WhisperStudent` is rebuilt from its Hugging Face
    configuration, a :class:`~robust_brain.models.student.ConformerStudent`
    around an untrained teacher of its teacher's shape, both written out
    in the yaml; any other student needs ``build`` (YAML defining
    ``student``). See :func:`write_pretrained`.

    Arguments
    ---------
    folder : path-like
    student : torch.nn.Module
    build : str, optional
    sample_rate : int
    description : str

    Returns
    -------
    Path

    Example
    -------
    >>> import tempfile, transformers
    >>> from robust_brain.models.student import HFStudent
    >>> cfg = transformers.WavLMConfig(hidden_size=16, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=16, conv_dim=(8, 8),
    ...     conv_stride=(5, 4), conv_kernel=(10, 8),
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> student = HFStudent(transformers.WavLMModel(cfg), [1]).eval()
    >>> folder = write_student(tempfile.mkdtemp(), student)
    >>> enc = StudentEncoder.from_hparams(source=folder)
    >>> wav = torch.randn(1, 4000)
    >>> torch.allclose(enc.encode_batch(wav),
    ...                student.features(wav, torch.ones(1)), atol=1e-5)
    True
    """
    if build is None:
        from robust_brain.models.student import (
            ConformerStudent,
            HFStudent,
            WhisperStudent,
        )

        if isinstance(student, HFStudent | WhisperStudent):
            build = _hf_student_build(student)
        elif isinstance(student, ConformerStudent):
            build = _conformer_student_build(student)
        else:
            raise TypeError(
                f"{type(student).__name__}: give the yaml that builds it "
                "(build=...)"
            )
    return write_pretrained(
        folder,
        student,
        "student",
        {"sample_rate": int(sample_rate)},
        "robust_brain.inference.StudentEncoder",
        description,
        build=build,
    )
