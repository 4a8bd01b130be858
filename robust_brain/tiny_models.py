"""Tiny, randomly initialised Hugging Face speech models built locally.

Tests and offline demos cannot download a checkpoint (there is no network),
yet the recipes load their encoders through SpeechBrain's REAL wrappers
(``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``, ``.wavlm.WavLM``,
``.hubert.HuBERT``, ``.whisper.Whisper``) from the ``source:`` key of an
hparams file. The functions here write a tiny model (hidden size 32, two
layers) with ``save_pretrained`` into a folder that those wrappers load
exactly like a hub model: ``config.json``, ``model.safetensors`` and
``preprocessor_config.json`` (the feature extractor the wrappers read).

Every builder is

- deterministic: the weights depend only on ``seed`` and the configuration
  (the global torch RNG is left untouched);
- idempotent: a folder that already holds a complete model built from the
  same seed and configuration is returned as is, not rewritten;
- atomic: the model is written into a temporary sibling folder that is then
  renamed into place, so a crash never leaves a half-written model (and two
  processes building the same folder at once both end up with one complete
  copy).

Frame rates (what later code must know to align or mask frames):

- Wav2Vec2 / WavLM / HuBERT use the real 7-layer convolutional front end
  (strides 5,2,2,2,2,2,2; kernels 10,3,3,3,3,2,2; receptive field 400
  samples, hop 320), so N samples give ``floor((N - 400) / 320) + 1`` frames,
  49 for one second at 16 kHz, as for the real checkpoints.
- Whisper's encoder ALWAYS returns 1500 frames: the wrapper pads (or trims)
  every input to 30 s. Only the first ``whisper_num_frames(N)`` =
  ``ceil(N / 320)`` frames hold the real input; the rest are padding and must
  be masked by any loss computed on the encoder output.

Loading, e.g. for a loss THROUGH a frozen encoder (``save_path`` and
``source`` must be ``str``: the wrappers concatenate strings)::

    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    enc = Wav2Vec2(source=str(path), save_path=str(tmp), freeze=False,
                   freeze_feature_extractor=False, output_norm=False,
                   apply_spec_augment=False)
    enc.requires_grad_(False).eval()  # NOT freeze=True: it cuts the graph

Authors
 * robust_brain contributors 2026
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import torch

__all__ = [
    "KINDS",
    "STAMP_NAME",
    "default_cache_dir",
    "make_all_tiny_models",
    "make_tiny_hubert",
    "make_tiny_model",
    "make_tiny_wav2vec2",
    "make_tiny_wavlm",
    "make_tiny_whisper",
    "tiny_model_path",
    "whisper_num_frames",
]

#: The model kinds this module can build.
KINDS = ("wav2vec2", "wavlm", "hubert", "whisper")

#: Name of the file recording how a folder was built (written last).
STAMP_NAME = ".tiny_model.json"

#: Files a complete tiny model folder holds (besides the stamp).
_MODEL_FILES = ("config.json", "model.safetensors", "preprocessor_config.json")

# Shared by Wav2Vec2 / WavLM / HuBERT: the tiny transformer on
# top of the real 7-layer conv front end (hop 320 samples = 20 ms).
_SSL_DEFAULTS = {
    "hidden_size": 32,
    "num_hidden_layers": 2,
    "num_attention_heads": 2,
    "intermediate_size": 64,
    "conv_dim": (32, 32, 32, 32, 32, 32, 32),
    "conv_stride": (5, 2, 2, 2, 2, 2, 2),
    "conv_kernel": (10, 3, 3, 3, 3, 2, 2),
    "num_conv_pos_embeddings": 16,
    "num_conv_pos_embedding_groups": 2,
    "feat_extract_norm": "layer",
    "do_stable_layer_norm": True,
}

# Token ids must lie inside the tiny vocabulary: transformers 5 refuses
# WhisperConfig's defaults (pad 50256) with vocab_size=100.
_WHISPER_DEFAULTS = {
    "num_mel_bins": 80,
    "d_model": 32,
    "encoder_layers": 2,
    "decoder_layers": 2,
    "encoder_attention_heads": 2,
    "decoder_attention_heads": 2,
    "encoder_ffn_dim": 64,
    "decoder_ffn_dim": 64,
    "max_source_positions": 1500,
    "vocab_size": 100,
    "pad_token_id": 0,
    "bos_token_id": 1,
    "eos_token_id": 2,
    "decoder_start_token_id": 1,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
}


def _classes(kind):
    """Return (config class, model class, defaults) for a model kind."""
    import transformers as tf

    table = {
        "wav2vec2": (tf.Wav2Vec2Config, tf.Wav2Vec2Model, _SSL_DEFAULTS),
        "wavlm": (tf.WavLMConfig, tf.WavLMModel, _SSL_DEFAULTS),
        "hubert": (tf.HubertConfig, tf.HubertModel, _SSL_DEFAULTS),
        "whisper": (tf.WhisperConfig, tf.WhisperModel, _WHISPER_DEFAULTS),
    }
    if kind not in table:
        raise ValueError(
            f"unknown tiny model kind {kind!r}; use one of {KINDS}"
        )
    return table[kind]


def _feature_extractor(kind):
    """Return the feature extractor saved next to a model of ``kind``."""
    import transformers as tf

    if kind == "whisper":
        return tf.WhisperFeatureExtractor(feature_size=80)
    return tf.Wav2Vec2FeatureExtractor(
        do_normalize=True, return_attention_mask=True
    )


def _build_config(kind, overrides):
    """Build the configuration of a tiny model, rejecting unknown keys."""
    config_cls, _, defaults = _classes(kind)
    reference = config_cls()
    unknown = sorted(k for k in overrides if not hasattr(reference, k))
    if unknown:
        raise TypeError(
            f"unknown {config_cls.__name__} field(s) for a tiny {kind}: "
            f"{unknown}"
        )
    return config_cls(**{**defaults, **overrides})


def _spec(kind, seed, config):
    """JSON-normalised description of a model: what the stamp records."""
    cfg = config.to_dict()
    cfg.pop("transformers_version", None)
    spec = {"kind": kind, "seed": int(seed), "config": cfg}
    return json.loads(json.dumps(spec, sort_keys=True, default=str))


def _read_stamp(folder):
    """Return the stamp of ``folder`` (None when absent or unreadable)."""
    try:
        return json.loads((folder / STAMP_NAME).read_text())
    except (OSError, ValueError):
        return None


def _is_complete(folder, spec):
    """True when ``folder`` holds a complete model built from ``spec``."""
    return _read_stamp(folder) == spec and all(
        (folder / name).is_file() for name in _MODEL_FILES
    )


@contextlib.contextmanager
def _quiet_progress_bars():
    """Silence transformers' progress bars, restoring their state after."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


def _write_model(kind, seed, config, spec, target):
    """Write model, feature extractor and (last) the stamp into ``target``."""
    _, model_cls, _ = _classes(kind)
    with torch.random.fork_rng(devices=[]):
        torch.random.default_generator.manual_seed(int(seed))
        model = model_cls(config).float()
    with _quiet_progress_bars():
        model.save_pretrained(str(target))
    _feature_extractor(kind).save_pretrained(str(target))
    (target / STAMP_NAME).write_text(json.dumps(spec, indent=1, sort_keys=True))


def make_tiny_model(kind, folder, seed=0, **overrides):
    """Write a tiny, randomly initialised model of ``kind`` into ``folder``.

    The folder is written atomically (temporary sibling folder, then
    rename) and only when it does not already hold a complete model built
    from the same ``seed`` and configuration. A stale tiny model (another
    seed or configuration) is replaced; a non-empty folder that is not a
    tiny model is never touched (``FileExistsError``).

    Arguments
    ---------
    kind : str
        One of ``KINDS``: "wav2vec2", "wavlm", "hubert" or "whisper".
    folder : str or pathlib.Path
        Where the model goes (its parent is created if needed).
    seed : int
        Seed of the random initialisation: same seed, same weights.
    **overrides
        Fields of the transformers config replacing the tiny defaults
        (e.g. ``num_hidden_layers=4``); unknown fields raise ``TypeError``.

    Returns
    -------
    pathlib.Path
        The absolute path of ``folder``; pass ``str()`` of it as ``source``.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_tiny_model("hubert", Path(tmp.name) / "hubert", seed=1)
    >>> for name in sorted(os.listdir(path)):
    ...     print(name)
    .tiny_model.json
    config.json
    model.safetensors
    preprocessor_config.json
    >>> make_tiny_model("hubert", path, seed=1) == path  # no rewrite
    True
    >>> tmp.cleanup()
    """
    folder = Path(folder).expanduser().absolute()
    config = _build_config(kind, overrides)
    spec = _spec(kind, seed, config)
    if _is_complete(folder, spec):
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(
        tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent)
    )
    try:
        _write_model(kind, seed, config, spec, tmp)
        for _ in range(3):
            try:
                # atomic; also replaces an EMPTY directory
                os.rename(tmp, folder)
                return folder
            except OSError:
                if not folder.is_dir():
                    raise
            if _is_complete(folder, spec):
                # another process won the race with an identical model
                return folder
            if _read_stamp(folder) is None and any(folder.iterdir()):
                raise FileExistsError(
                    f"{folder} exists and is not a tiny model; not replacing"
                )
            # a stale tiny model: move it aside, then retry the rename
            stale = Path(
                tempfile.mkdtemp(
                    prefix=f".{folder.name}.old-", dir=folder.parent
                )
            )
            try:
                os.rename(folder, stale / "model")
            except FileNotFoundError:
                pass  # someone else moved it already
            shutil.rmtree(stale, ignore_errors=True)
        raise RuntimeError(f"could not move a tiny model into {folder}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def make_tiny_wav2vec2(folder, seed=0, **overrides):
    """Write a tiny Wav2Vec2 (hidden 32, 2 layers) into ``folder``.

    Loads with ``speechbrain.integrations.huggingface.wav2vec2.Wav2Vec2``;
    one second at 16 kHz gives 49 frames of size 32 (hop 320 samples).

    Arguments
    ---------
    folder : str or pathlib.Path
        Where the model goes.
    seed : int
        Seed of the random initialisation.
    **overrides
        ``Wav2Vec2Config`` fields replacing the tiny defaults.

    Returns
    -------
    pathlib.Path
        The absolute model folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_tiny_wav2vec2(Path(tmp.name) / "w2v")
    >>> enc = Wav2Vec2(source=str(path), save_path=tmp.name, freeze=False)
    >>> enc(torch.randn(2, 16000)).shape
    torch.Size([2, 49, 32])
    >>> tmp.cleanup()
    """
    return make_tiny_model("wav2vec2", folder, seed=seed, **overrides)


def make_tiny_wavlm(folder, seed=0, **overrides):
    """Write a tiny WavLM (hidden 32, 2 layers) into ``folder``.

    Loads with ``speechbrain.integrations.huggingface.wavlm.WavLM``; same
    front end and frame rate as :func:`make_tiny_wav2vec2`. For a deeper
    distillation teacher pass e.g. ``num_hidden_layers=4``.

    Arguments
    ---------
    folder : str or pathlib.Path
        Where the model goes.
    seed : int
        Seed of the random initialisation.
    **overrides
        ``WavLMConfig`` fields replacing the tiny defaults.

    Returns
    -------
    pathlib.Path
        The absolute model folder.

    Example
    -------
    >>> import tempfile, json
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_tiny_wavlm(Path(tmp.name) / "wavlm", num_hidden_layers=4)
    >>> json.loads((path / "config.json").read_text())["num_hidden_layers"]
    4
    >>> tmp.cleanup()
    """
    return make_tiny_model("wavlm", folder, seed=seed, **overrides)


def make_tiny_hubert(folder, seed=0, **overrides):
    """Write a tiny HuBERT (hidden 32, 2 layers) into ``folder``.

    Loads with ``speechbrain.integrations.huggingface.hubert.HuBERT``; same
    front end and frame rate as :func:`make_tiny_wav2vec2`.

    Arguments
    ---------
    folder : str or pathlib.Path
        Where the model goes.
    seed : int
        Seed of the random initialisation.
    **overrides
        ``HubertConfig`` fields replacing the tiny defaults.

    Returns
    -------
    pathlib.Path
        The absolute model folder.

    Example
    -------
    >>> import tempfile, json
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_tiny_hubert(Path(tmp.name) / "hubert")
    >>> json.loads((path / "config.json").read_text())["model_type"]
    'hubert'
    >>> tmp.cleanup()
    """
    return make_tiny_model("hubert", folder, seed=seed, **overrides)


def make_tiny_whisper(folder, seed=0, **overrides):
    """Write a tiny Whisper (d_model 32, 2+2 layers, 80 mels) into ``folder``.

    Load it ENCODER-ONLY with
    ``speechbrain.integrations.huggingface.whisper.Whisper(...,
    encoder_only=True)``: the folder has no tokenizer, which the wrapper
    needs when ``encoder_only=False``. The encoder output always has 1500
    frames (the wrapper pads or trims the input to 30 s); only the first
    ``whisper_num_frames(N)`` = ``ceil(N / 320)`` frames of an N-sample
    input are real, the rest must be masked.

    Arguments
    ---------
    folder : str or pathlib.Path
        Where the model goes.
    seed : int
        Seed of the random initialisation.
    **overrides
        ``WhisperConfig`` fields replacing the tiny defaults
        (``max_source_positions`` must stay 1500 for the wrapper's 30 s).

    Returns
    -------
    pathlib.Path
        The absolute model folder.

    Example
    -------
    >>> import tempfile
    >>> from speechbrain.integrations.huggingface.whisper import Whisper
    >>> tmp = tempfile.TemporaryDirectory()
    >>> path = make_tiny_whisper(Path(tmp.name) / "whisper")
    >>> enc = Whisper(
    ...     source=str(path),
    ...     save_path=tmp.name,
    ...     encoder_only=True,
    ...     freeze=False,
    ...     freeze_encoder=True,
    ... )
    >>> enc(torch.randn(1, 16000)).shape
    torch.Size([1, 1500, 32])
    >>> whisper_num_frames(16000)
    50
    >>> tmp.cleanup()
    """
    return make_tiny_model("whisper", folder, seed=seed, **overrides)


_BUILDERS = {
    "wav2vec2": make_tiny_wav2vec2,
    "wavlm": make_tiny_wavlm,
    "hubert": make_tiny_hubert,
    "whisper": make_tiny_whisper,
}


def make_all_tiny_models(root, seed=0):
    """Write one tiny model of every kind into ``root/<kind>``.

    Arguments
    ---------
    root : str or pathlib.Path
        Parent folder of the models.
    seed : int
        Seed of the random initialisation (same for every kind).

    Returns
    -------
    dict[str, pathlib.Path]
        Model folder of each kind in ``KINDS``.

    Example
    -------
    >>> import tempfile
    >>> tmp = tempfile.TemporaryDirectory()
    >>> paths = make_all_tiny_models(tmp.name)
    >>> sorted(paths) == sorted(KINDS)
    True
    >>> paths["whisper"].name
    'whisper'
    >>> tmp.cleanup()
    """
    root = Path(root)
    return {kind: _BUILDERS[kind](root / kind, seed=seed) for kind in KINDS}


def default_cache_dir():
    """Return the folder where :func:`tiny_model_path` keeps its models.

    ``$ROBUST_BRAIN_TINY_CACHE`` when set, else
    ``${XDG_CACHE_HOME:-~/.cache}/robust_brain/tiny_models``; when that
    cannot be created, a per-user folder under the system temp directory.

    Returns
    -------
    pathlib.Path
        The cache folder (created).

    Example
    -------
    >>> default_cache_dir().is_dir()
    True
    """
    env = os.environ.get("ROBUST_BRAIN_TINY_CACHE")
    if env:
        candidates = [Path(env).expanduser()]
    else:
        xdg = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
        candidates = [Path(xdg) / "robust_brain" / "tiny_models"]
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    candidates.append(
        Path(tempfile.gettempdir()) / f"robust_brain_tiny_models-{uid}"
    )
    for candidate in candidates:
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise OSError(f"no writable tiny-model cache among {candidates}")


def tiny_model_path(kind, seed=0, **overrides):
    """Return the folder of a cached tiny model, building it on first use.

    The model lives in :func:`default_cache_dir` under a name derived from
    the kind, seed and full configuration, so each distinct model is built
    once per machine and a change of the tiny defaults gets a new folder.

    Arguments
    ---------
    kind : str
        One of ``KINDS``.
    seed : int
        Seed of the random initialisation.
    **overrides
        Config fields replacing the tiny defaults (see
        :func:`make_tiny_model`).

    Returns
    -------
    pathlib.Path
        The model folder; use ``str()`` of it as the wrapper's ``source``.

    Example
    -------
    >>> path = tiny_model_path("wav2vec2")
    >>> path == tiny_model_path("wav2vec2")
    True
    >>> path == tiny_model_path("wav2vec2", num_hidden_layers=3)
    False
    """
    spec = _spec(kind, seed, _build_config(kind, overrides))
    digest = hashlib.sha256(
        json.dumps(spec, sort_keys=True).encode()
    ).hexdigest()[:12]
    folder = default_cache_dir() / f"{kind}-seed{int(seed)}-{digest}"
    return make_tiny_model(kind, folder, seed=seed, **overrides)


def whisper_num_frames(num_samples):
    """Number of Whisper encoder frames that hold an input of N samples.

    The encoder hop is 320 samples (mel hop 160, then a stride-2 conv), so
    ``ceil(N / 320)`` frames, at most 1500 (inputs are trimmed to 30 s).
    The encoder output always has 1500 frames: frames from this index on
    are padding.

    Arguments
    ---------
    num_samples : int
        Number of 16 kHz samples of the (unpadded) input.

    Returns
    -------
    int
        Number of encoder frames covering real input.

    Example
    -------
    >>> whisper_num_frames(16000), whisper_num_frames(16001)
    (50, 51)
    >>> whisper_num_frames(10 * 480000)
    1500
    """
    return min(1500, math.ceil(int(num_samples) / 320))
