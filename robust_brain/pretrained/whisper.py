"""OpenAI Whisper from a CTranslate2 folder to a Hugging Face checkpoint.

The pip packages of the evaluator carry Whisper tiny.en and base as
CTranslate2 folders (``model.bin`` in float16, ``config.json``,
``tokenizer.json``). :func:`convert_ct2_whisper` writes an ordinary
``transformers`` folder (``WhisperForConditionalGeneration`` weights,
config, tokenizer, feature extractor, generation config, OpenAI's MIT
notice) that loads by ``source: <folder>`` wherever a hub name such as
``openai/whisper-tiny.en`` would: transformers, SpeechBrain's
``speechbrain.integrations.huggingface.whisper.Whisper``, the project's
:class:`~robust_brain.models.whisper.WhisperASR`.

The variable map (CTranslate2 ``WhisperSpec``, revision 3):

==============================================  =============================
CTranslate2                                      transformers
==============================================  =============================
``encoder/conv1|conv2``                          ``encoder.conv1|conv2``
``*/position_encodings/encodings``               ``*.embed_positions.weight``
``*/layer_i/self_attention/linear_0`` (q;k;v)    ``self_attn.q_proj|k_proj|
                                                 v_proj`` (k has no bias)
``*/layer_i/self_attention/linear_1``            ``self_attn.out_proj``
``*/layer_i/self_attention/layer_norm``          ``self_attn_layer_norm``
``decoder/layer_i/attention/linear_0``           ``encoder_attn.q_proj``
``decoder/layer_i/attention/linear_1`` (k;v)     ``encoder_attn.k_proj|v_proj``
``decoder/layer_i/attention/linear_2``           ``encoder_attn.out_proj``
``decoder/layer_i/attention/layer_norm``         ``encoder_attn_layer_norm``
``*/layer_i/ffn/linear_0|linear_1``              ``fc1|fc2``
``*/layer_i/ffn/layer_norm``                     ``final_layer_norm``
``*/layer_norm``                                 ``*.layer_norm``
``decoder/embeddings``                           ``decoder.embed_tokens``
                                                 (tied to ``proj_out``)
==============================================  =============================

(``gamma``/``beta`` are a layer norm's ``weight``/``bias``.)
"""

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from robust_brain.pretrained.ct2 import CT2FormatError, read_ct2_model

#: Bumped when the converted folder's content changes (cache key).
CONVERTER_VERSION = 1
#: Files a finished conversion holds.
OUTPUT_FILES = (
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "preprocessor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "LICENSE",
)

OPENAI_WHISPER_LICENSE = """\
The model weights in this folder are OpenAI's Whisper, converted from a
CTranslate2 folder by robust_brain.pretrained (no other change). They are
distributed by OpenAI under the MIT License:

MIT License

Copyright (c) 2022 OpenAI

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
"""

_ACTIVATIONS = {0: "relu", 1: "gelu_pytorch_tanh", 2: "swish", 3: "gelu"}


# ---------------------------------------------------------------- tokenizer
def repair_bpe_merges(tokenizer: dict) -> list[str]:
    """Restore BPE merges missing from a byte-level ``tokenizer.json``.

    In GPT-2-style vocabularies the merge of rank ``r`` produces the token
    of id ``256 + r``. A vocabulary token that no merge produces can then
    never be emitted by the encoder: the base package's ``tokenizer.json``
    lacks ``Ġ t`` (rank 0), so " the" encodes as ``[220, 3322]`` instead of
    ``[264]`` (decoding is unaffected, teacher-forced labels are not). Each
    such merge is put back at its rank, in place.

    Arguments
    ---------
    tokenizer : dict
        The parsed ``tokenizer.json`` (BPE model).

    Returns
    -------
    list of str
        The merges added.

    Example
    -------
    >>> vocab = {c: i for i, c in enumerate("abcdefghijklmnopqrstuvwxyzĠ")}
    >>> vocab.update({f"c{i}": i + 27 for i in range(229)})  # fill to 256
    >>> vocab.update({"Ġt": 256, "he": 257, "Ġthe": 258})
    >>> tok = {"model": {"vocab": vocab, "merges": ["h e", "Ġt he"]},
    ...        "added_tokens": []}
    >>> repair_bpe_merges(tok), tok["model"]["merges"]
    (['Ġ t'], ['Ġ t', 'h e', 'Ġt he'])
    """
    model = tokenizer["model"]
    vocab, merges = model["vocab"], model["merges"]
    as_pairs = [m if isinstance(m, list) else m.split(" ") for m in merges]
    produced = {a + b for a, b in as_pairs}
    special = {t["content"] for t in tokenizer.get("added_tokens", [])}
    by_id = sorted(vocab.items(), key=lambda kv: kv[1])
    added = []
    for token, idx in by_id:
        if idx < 256 or token in produced or token in special or not token:
            continue
        splits = [
            (token[:k], token[k:])
            for k in range(1, len(token))
            if vocab.get(token[:k], idx) < idx
            and vocab.get(token[k:], idx) < idx
        ]
        if not splits:
            continue
        a, b = min(splits, key=lambda s: max(vocab[s[0]], vocab[s[1]]))
        rank = idx - 256
        merge = [a, b] if isinstance(merges[0], list) else f"{a} {b}"
        merges.insert(min(rank, len(merges)), merge)
        added.append(f"{a} {b}")
    return added


def _token_id(tokenizer_json: dict, content: str) -> int:
    for tok in tokenizer_json["added_tokens"]:
        if tok["content"] == content:
            return tok["id"]
    raise CT2FormatError(f"tokenizer.json has no special token {content}")


# ------------------------------------------------------------------ weights
def _state_dict(ct2, n_enc: int, n_dec: int) -> dict:
    """transformers parameter name -> float32 array."""
    sd = {}

    def put(name, array):
        sd[name] = np.ascontiguousarray(array, dtype=np.float32)

    def linear(dst, src, bias=True):
        put(f"{dst}.weight", ct2.get(f"{src}/weight"))
        if bias:
            put(f"{dst}.bias", ct2.get(f"{src}/bias"))

    def norm(dst, src):
        put(f"{dst}.weight", ct2.get(f"{src}/gamma"))
        put(f"{dst}.bias", ct2.get(f"{src}/beta"))

    def split(dst_names, src):
        w, b = ct2.get(f"{src}/weight"), ct2.get(f"{src}/bias")
        n = len(dst_names)
        for dst, w_i, b_i in zip(
            dst_names, np.split(w, n), np.split(b, n), strict=True
        ):
            put(f"{dst}.weight", w_i)
            if not dst.endswith("k_proj"):  # transformers: k has no bias
                put(f"{dst}.bias", b_i)

    def ffn_and_self_attention(dst, src):
        split(
            [f"{dst}.self_attn.{p}_proj" for p in "qkv"],
            f"{src}/self_attention/linear_0",
        )
        linear(f"{dst}.self_attn.out_proj", f"{src}/self_attention/linear_1")
        norm(f"{dst}.self_attn_layer_norm", f"{src}/self_attention/layer_norm")
        linear(f"{dst}.fc1", f"{src}/ffn/linear_0")
        linear(f"{dst}.fc2", f"{src}/ffn/linear_1")
        norm(f"{dst}.final_layer_norm", f"{src}/ffn/layer_norm")

    enc, dec = "model.encoder", "model.decoder"
    linear(f"{enc}.conv1", "encoder/conv1")
    linear(f"{enc}.conv2", "encoder/conv2")
    put(
        f"{enc}.embed_positions.weight",
        ct2.get("encoder/position_encodings/encodings"),
    )
    for i in range(n_enc):
        ffn_and_self_attention(f"{enc}.layers.{i}", f"encoder/layer_{i}")
    norm(f"{enc}.layer_norm", "encoder/layer_norm")
    put(f"{dec}.embed_tokens.weight", ct2.get("decoder/embeddings/weight"))
    put(
        f"{dec}.embed_positions.weight",
        ct2.get("decoder/position_encodings/encodings"),
    )
    for i in range(n_dec):
        src, dst = f"decoder/layer_{i}", f"{dec}.layers.{i}"
        ffn_and_self_attention(dst, src)
        linear(f"{dst}.encoder_attn.q_proj", f"{src}/attention/linear_0")
        split(
            [f"{dst}.encoder_attn.{p}_proj" for p in "kv"],
            f"{src}/attention/linear_1",
        )
        linear(f"{dst}.encoder_attn.out_proj", f"{src}/attention/linear_2")
        norm(f"{dst}.encoder_attn_layer_norm", f"{src}/attention/layer_norm")
    norm(f"{dec}.layer_norm", "decoder/layer_norm")
    return sd


def _count_layers(ct2, prefix: str) -> int:
    n = 0
    while f"{prefix}/layer_{n}/ffn/linear_0/weight" in ct2.variables:
        n += 1
    return n


def _read_folder(ct2_dir: Path):
    """The model, its CTranslate2 config and its (repaired) tokenizer."""
    ct2_dir = Path(ct2_dir)
    files = {
        f: ct2_dir / f for f in ("model.bin", "config.json", "tokenizer.json")
    }
    for path in files.values():
        if not path.is_file():
            raise CT2FormatError(
                f"{path}: missing; a CTranslate2 Whisper folder needs "
                "model.bin, config.json and tokenizer.json"
            )
    ct2 = read_ct2_model(files["model.bin"])
    if ct2.spec != "WhisperSpec":
        raise CT2FormatError(
            f"{files['model.bin']}: spec {ct2.spec!r} is not a Whisper model "
            "(expected WhisperSpec)"
        )
    for name in ("config.json", "tokenizer.json"):
        try:
            parsed = json.loads(files[name].read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise CT2FormatError(
                f"{files[name]}: not valid JSON ({err})"
            ) from None
        if name == "config.json":
            config = parsed
        else:
            tokenizer = parsed
    if tokenizer.get("model", {}).get("type") != "BPE":
        raise CT2FormatError(f"{files['tokenizer.json']}: not a BPE tokenizer")
    return ct2, config, tokenizer


def _hf_configs(ct2, ct2_config: dict, tokenizer: dict):
    """``WhisperConfig`` and ``GenerationConfig`` inferred from shapes."""
    from transformers import GenerationConfig, WhisperConfig

    n_enc, n_dec = _count_layers(ct2, "encoder"), _count_layers(ct2, "decoder")
    d_model, n_mels, _ = ct2.get("encoder/conv1/weight").shape
    vocab = ct2.get("decoder/embeddings/weight").shape[0]
    activation = _ACTIVATIONS.get(ct2.scalar("decoder/activation"), "gelu")
    ids = {
        name: _token_id(tokenizer, f"<|{name}|>")
        for name in (
            "endoftext",
            "startoftranscript",
            "notimestamps",
            "startofprev",
            "transcribe",
            "translate",
        )
    }
    eot, sot = ids["endoftext"], ids["startoftranscript"]
    # transformers' own rule for Whisper checkpoints
    multilingual = vocab >= 51865
    suppress = list(ct2_config.get("suppress_ids", []))
    begin_suppress = list(ct2_config.get("suppress_ids_begin", [220, eot]))
    config = WhisperConfig(
        vocab_size=vocab,
        num_mel_bins=n_mels,
        d_model=d_model,
        encoder_layers=n_enc,
        decoder_layers=n_dec,
        encoder_attention_heads=ct2.scalar("encoder/num_heads"),
        decoder_attention_heads=ct2.scalar("decoder/num_heads"),
        encoder_ffn_dim=ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0],
        decoder_ffn_dim=ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0],
        max_source_positions=ct2.get(
            "encoder/position_encodings/encodings"
        ).shape[0],
        max_target_positions=ct2.get(
            "decoder/position_encodings/encodings"
        ).shape[0],
        activation_function=activation,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
        decoder_start_token_id=sot,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        tie_word_embeddings=True,
    )
    generation = GenerationConfig(
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        decoder_start_token_id=sot,
        max_length=config.max_target_positions,
        suppress_tokens=suppress,
        begin_suppress_tokens=begin_suppress,
        alignment_heads=[
            list(h) for h in ct2_config.get("alignment_heads", [])
        ],
        no_timestamps_token_id=ids["notimestamps"],
        prev_sot_token_id=ids["startofprev"],
        max_initial_timestamp_index=50,
        return_timestamps=False,
        is_multilingual=multilingual,
    )
    if multilingual:
        # an English-only model must not have these attributes at all
        # (transformers then refuses a language argument, as it should)
        names = {t["id"]: t["content"] for t in tokenizer["added_tokens"]}
        generation.lang_to_id = {
            names[i]: i for i in ct2_config.get("lang_ids", []) if i in names
        }
        generation.task_to_id = {
            "transcribe": ids["transcribe"],
            "translate": ids["translate"],
        }
    return config, generation


def convert_ct2_whisper(ct2_dir, out_dir) -> Path:
    """Convert a CTranslate2 Whisper folder into a ``transformers`` folder.

    The output is written to a temporary folder beside ``out_dir`` and
    renamed into place once complete, so an interrupted conversion leaves
    nothing half-written (an existing ``out_dir`` is replaced).

    Arguments
    ---------
    ct2_dir : path-like
        Folder with ``model.bin``, ``config.json`` and ``tokenizer.json``.
    out_dir : path-like
        Destination (``save_pretrained`` layout plus ``LICENSE``).

    Returns
    -------
    pathlib.Path
        ``out_dir``.

    Raises
    ------
    CT2FormatError
        A missing, truncated or corrupt file, a spec other than Whisper or
        a tokenizer without Whisper's special tokens; names the file.

    Example
    -------
    >>> import tempfile
    >>> empty = tempfile.mkdtemp()
    >>> convert_ct2_whisper(empty, Path(empty) / "hf")
    Traceback (most recent call last):
    ...
    robust_brain.pretrained.ct2.CT2FormatError: .../model.bin: missing; ...
    """
    import torch
    from transformers import (
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperTokenizer,
    )

    ct2, ct2_config, tokenizer = _read_folder(Path(ct2_dir))
    repair_bpe_merges(tokenizer)
    config, generation = _hf_configs(ct2, ct2_config, tokenizer)
    state = _state_dict(ct2, config.encoder_layers, config.decoder_layers)

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}."))
    try:
        model = WhisperForConditionalGeneration(config)
        missing, unexpected = model.load_state_dict(
            {k: torch.from_numpy(v) for k, v in state.items()}, strict=False
        )
        # proj_out is tied to the decoder embeddings
        if unexpected or set(missing) != {"proj_out.weight"}:
            raise CT2FormatError(
                f"{ct2.path}: variables do not match transformers' Whisper "
                f"(missing {sorted(missing)[:5]}, unexpected "
                f"{sorted(unexpected)[:5]})"
            )
        model.tie_weights()
        model.generation_config = generation
        model.save_pretrained(tmp)
        (tmp / "tokenizer.json").write_text(json.dumps(tokenizer))
        WhisperTokenizer.from_pretrained(tmp).save_pretrained(tmp)
        WhisperFeatureExtractor(
            feature_size=config.num_mel_bins
        ).save_pretrained(tmp)
        (tmp / "LICENSE").write_text(OPENAI_WHISPER_LICENSE)
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.rename(tmp, out_dir)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def whisper_checkpoint(model: str = "tiny.en", root=None) -> Path:
    """The ``transformers`` folder of a pip-bundled Whisper, converted once.

    Arguments
    ---------
    model : str
        ``"tiny.en"``/``"whisper-tiny.en"``, ``"base"``/``"whisper-base"``
        or the path of any CTranslate2 Whisper folder.
    root : path-like, optional
        Cache folder (default ``$ROBUST_BRAIN_CACHE`` or
        ``~/.cache/robust_brain``); the checkpoint is
        ``<root>/whisper-hf/<name>-<key>``, keyed by the source file and the
        converter version, so a changed source converts again.

    Returns
    -------
    pathlib.Path
        A folder usable as ``source:`` wherever a hub name is.

    Example
    -------
    >>> folder = whisper_checkpoint("tiny.en")
    >>> sorted(p.name for p in folder.iterdir() if p.name in OUTPUT_FILES)
    ... # doctest: +NORMALIZE_WHITESPACE
    ['LICENSE', 'config.json', 'generation_config.json', 'model.safetensors',
     'preprocessor_config.json', 'tokenizer.json', 'tokenizer_config.json']
    """
    from robust_brain.pretrained.assets import (
        WHISPER_ALIASES,
        cache_root,
        resolve_whisper_model,
    )

    ct2_dir = resolve_whisper_model(model)
    stat = (ct2_dir / "model.bin").stat()
    key = hashlib.sha1(
        f"{ct2_dir.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|"
        f"{CONVERTER_VERSION}".encode()
    ).hexdigest()[:10]
    name = WHISPER_ALIASES.get(model, Path(model).name)
    root = Path(root) if root is not None else cache_root()
    out = root / "whisper-hf" / f"{name}-{key}"
    if not all((out / f).is_file() for f in OUTPUT_FILES):
        convert_ct2_whisper(ct2_dir, out)
    return out
