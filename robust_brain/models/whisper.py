"""Whisper as a differentiable part of a method (proxy, ASR, encoder,
teacher).

:class:`WhisperASR` is SpeechBrain's
``speechbrain.integrations.huggingface.whisper.Whisper`` (so ``source:`` is
a hub name such as ``openai/whisper-tiny.en`` or a local folder, e.g. one
written by :func:`robust_brain.pretrained.whisper_checkpoint`) with what a
loss THROUGH Whisper needs:

* a torch log-mel equal to ``WhisperFeatureExtractor`` per utterance (the
  wrapper's own takes the dynamic-range maximum over the whole batch);
* a shorter encoder window: Whisper was trained on 30 s windows and decodes
  badly from the real frames alone (runaway loops), but a 10 s window of
  zero padding keeps it in distribution at a third of the cost
  (``benchmarks/whisper_window.py`` measures it); ``window_seconds=30``
  is Whisper's own input. :func:`encoder_window` is the one piece that
  lets transformers' encoder run on fewer than 3000 frames;
* teacher-forced cross-entropy of transcripts with Whisper's own prompt
  (``<|startoftranscript|><|notimestamps|>``, plus ``<|en|><|transcribe|>``
  for multilingual models);
* free-running greedy decoding (for the method's own WER), with Whisper's
  token suppression and a bound on the new tokens.

Frozen use (a proxy or teacher through which the loss flows): keep
``freeze=False``, call ``requires_grad_(False)`` and ``eval()`` and re-apply
them in ``on_stage_start``; ``freeze=True`` runs under ``no_grad``.
"""

import contextlib
import math
import os

import torch
from speechbrain.integrations.huggingface.whisper import Whisper

from robust_brain.data.tts import normalize_words

SAMPLE_RATE = 16000
HOP_LENGTH = 160
#: Mel frames per encoder frame (two convolutions, the second strided).
FRAMES_PER_ENCODER_FRAME = 2
#: Samples per encoder frame (20 ms).
SAMPLES_PER_ENCODER_FRAME = HOP_LENGTH * FRAMES_PER_ENCODER_FRAME


@contextlib.contextmanager
def encoder_window(encoder, n_positions: int):
    """Let a transformers ``WhisperEncoder`` run on ``2 * n_positions`` mel
    frames instead of its 3000.

    transformers refuses any input length but ``2 * max_source_positions``
    and adds all of ``embed_positions``; inside this context both are cut
    to the first ``n_positions`` (the sinusoids of the first frames, as in
    Whisper's own 30 s windows), and restored on exit.

    Arguments
    ---------
    encoder : transformers.models.whisper.modeling_whisper.WhisperEncoder
    n_positions : int
        Encoder frames (1500 = 30 s).

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> from transformers.models.whisper.modeling_whisper import (
    ...     WhisperEncoder)
    >>> enc = WhisperEncoder(WhisperConfig(
    ...     d_model=8, encoder_layers=1, encoder_attention_heads=2,
    ...     encoder_ffn_dim=16, num_mel_bins=4, max_source_positions=50))
    >>> with encoder_window(enc, 10):
    ...     enc(torch.randn(1, 4, 20)).last_hidden_state.shape
    torch.Size([1, 10, 8])
    >>> enc.config.max_source_positions, enc.embed_positions.num_embeddings
    (50, 50)
    """
    full = encoder.embed_positions
    config = encoder.config
    if n_positions > full.num_embeddings:
        raise ValueError(
            f"Whisper's encoder has {full.num_embeddings} positions; "
            f"{n_positions} requested"
        )
    saved = config.max_source_positions
    cut = torch.nn.Embedding.from_pretrained(
        full.weight[:n_positions], freeze=True
    )
    encoder.embed_positions, config.max_source_positions = cut, n_positions
    try:
        yield encoder
    finally:
        encoder.embed_positions, config.max_source_positions = full, saved


def mel_filters(n_mels: int = 80) -> torch.Tensor:
    """Whisper's mel filter bank ``(n_mels, 201)`` (Slaney scale and norm,
    as ``WhisperFeatureExtractor``).

    Example
    -------
    >>> mel_filters(80).shape
    torch.Size([80, 201])
    """
    from transformers import WhisperFeatureExtractor

    bank = WhisperFeatureExtractor(feature_size=n_mels).mel_filters
    bank = torch.as_tensor(bank, dtype=torch.float32)
    return bank if bank.shape[0] == n_mels else bank.T


def whisper_log_mel(
    wav: torch.Tensor,
    filters: torch.Tensor,
    n_fft: int = 400,
    hop_length: int = HOP_LENGTH,
) -> torch.Tensor:
    """Whisper's log-mel of ``(batch, time)`` 16 kHz audio (no padding
    added), with the dynamic range clamped per utterance as
    ``WhisperFeatureExtractor`` (the wrapper's own takes it over the whole
    batch): ``(batch, n_mels, time // hop_length)``; differentiable.

    Example
    -------
    >>> whisper_log_mel(torch.randn(2, 3200), mel_filters(80)).shape
    torch.Size([2, 80, 20])
    """
    window = torch.hann_window(n_fft, device=wav.device)
    stft = torch.stft(
        wav.float(), n_fft, hop_length, window=window, return_complex=True
    )
    power = stft[..., :-1].abs() ** 2
    log_spec = torch.clamp(filters @ power, min=1e-10).log10()
    peak = log_spec.amax(dim=(-2, -1), keepdim=True)
    log_spec = torch.maximum(log_spec, peak - 8.0)
    return (log_spec + 4.0) / 4.0


def sentence_case(text: str) -> str:
    """Corpus transcripts (upper case, no punctuation) as Whisper writes
    text: first letter upper case, the rest lower case, ``I`` kept.

    Example
    -------
    >>> sentence_case("THE BOAT DRIFTED I'M SURE")
    "The boat drifted I'm sure"
    """
    words = text.strip().lower().split()
    words = [
        "I" + w[1:] if w == "i" or w.startswith("i'") else w for w in words
    ]
    out = " ".join(words)
    return out[:1].upper() + out[1:]


def mask_padding(wav: torch.Tensor, wav_lens=None) -> torch.Tensor:
    """Zero each utterance beyond its relative length (an enhancer's output
    there is not silence, and Whisper would hear it).

    Example
    -------
    >>> mask_padding(torch.ones(2, 4), torch.tensor([1.0, 0.5]))
    tensor([[1., 1., 1., 1.],
            [1., 1., 0., 0.]])
    """
    if wav_lens is None:
        return wav
    n = wav.shape[-1]
    keep = torch.arange(n, device=wav.device)[None] < torch.round(
        wav_lens.to(wav.device)[:, None] * n
    )
    return wav * keep.to(wav.dtype)


def repeated_ngram_tokens(steps, n: int) -> list[list[int]]:
    """Per sequence, the tokens that would repeat an ``n``-gram already
    decoded (nothing when ``n`` is 0 or the sequence is shorter than it).

    Arguments
    ---------
    steps : list of torch.Tensor
        The decoded tokens so far, one ``(batch,)`` tensor per step.
    n : int

    Returns
    -------
    list of list of int

    Example
    -------
    >>> steps = [torch.tensor([5, 1]), torch.tensor([6, 2]),
    ...          torch.tensor([5, 3]), torch.tensor([6, 4]),
    ...          torch.tensor([5, 5])]
    >>> repeated_ngram_tokens(steps, 2)  # "5 6 5 6 5" must not go on "6"
    [[6], []]
    >>> repeated_ngram_tokens(steps, 0)
    [[], []]
    """
    if not steps:
        return []
    seqs = torch.stack(steps, 1).tolist()
    if n <= 0:
        return [[] for _ in seqs]
    banned = []
    for seq in seqs:
        prefix = seq[len(seq) - n + 1 :] if n > 1 else []
        banned.append(
            sorted(
                {
                    seq[i + n - 1]
                    for i in range(len(seq) - n + 1)
                    if seq[i : i + n - 1] == prefix
                }
            )
            if len(seq) >= n
            else []
        )
    return banned


class WhisperTextTokenizer:
    """Whisper's BPE for transcripts, with the project's tokenizer interface
    (``encode_as_ids``/``decode_ids``, as SentencePiece), light enough to
    travel to data-loader workers.

    Arguments
    ---------
    tokenizer : transformers tokenizer or str
        Whisper's tokenizer, or a ``source`` to load it from.
    text_style : str
        ``"sentence"`` (:func:`sentence_case`) or ``"as_is"``.

    Example
    -------
    >>> from robust_brain.pretrained import whisper_checkpoint
    >>> tok = WhisperTextTokenizer(whisper_checkpoint("tiny.en"))
    >>> ids = tok.encode_as_ids("HELLO WORLD")  # corpus transcripts: upper
    >>> len(ids), tok.decode_ids(ids)
    (2, 'Hello world')
    """

    def __init__(self, tokenizer, text_style: str = "sentence"):
        if isinstance(tokenizer, str | os.PathLike):
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(str(tokenizer))
        if text_style not in ("sentence", "as_is"):
            raise ValueError(
                f"text_style {text_style!r}: use 'sentence' or 'as_is'"
            )
        self.tokenizer = tokenizer
        self.text_style = text_style

    def encode_as_ids(self, text: str) -> list[int]:
        """Token ids of one transcript (Whisper's text starts with a
        space)."""
        if self.text_style == "sentence":
            text = sentence_case(text)
        return self.tokenizer.encode(
            " " + " ".join(text.split()), add_special_tokens=False
        )

    def decode_ids(self, ids) -> str:
        """Text of token ids (special tokens dropped)."""
        ids = [int(i) for i in ids]
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


class WhisperASR(Whisper):
    """Whisper for losses through it and for its own decoding.

    Arguments
    ---------
    source : str
        Hub name (``openai/whisper-tiny.en``) or local folder.
    save_path : str
        Cache folder of SpeechBrain's wrapper.
    window_seconds : float
        Encoder window; utterances are zero-padded to it (longer batches
        get the next whole second, at most 30 s). 30 is Whisper's own.
    text_style : str
        ``"sentence"`` (:func:`sentence_case`, for upper-case corpus
        transcripts) or ``"as_is"``.
    max_new_tokens : int
        Bound of greedy decoding.
    no_repeat_ngram_size : int
        Greedy decoding never repeats an n-gram of this many tokens (as
        transformers' generation option of the same name): a decoder
        caught in a loop on noisy input stops or moves on instead of
        repeating a phrase up to ``max_new_tokens``. 0: off.
    language : str
        Language token of multilingual models.
    encoder_only, output_all_hiddens, freeze, freeze_encoder
        As SpeechBrain's ``Whisper``.

    Example
    -------
    >>> from robust_brain.tiny_models import tiny_model_path
    >>> import tempfile
    >>> asr = WhisperASR(str(tiny_model_path("whisper")), tempfile.mkdtemp(),
    ...                  window_seconds=2)
    >>> wav = torch.randn(2, 16000, requires_grad=True)
    >>> asr.log_mel(wav).shape
    torch.Size([2, 80, 200])
    >>> asr.encode(wav).shape
    torch.Size([2, 100, 32])
    """

    def __init__(
        self,
        source,
        save_path,
        window_seconds: float = 10.0,
        text_style: str = "sentence",
        max_new_tokens: int = 96,
        no_repeat_ngram_size: int = 0,
        language: str = "en",
        encoder_only: bool = False,
        output_all_hiddens: bool = False,
        freeze: bool = False,
        freeze_encoder: bool = False,
    ):
        super().__init__(
            str(source),  # SpeechBrain's wrapper needs str, not Path
            str(save_path),
            sampling_rate=SAMPLE_RATE,
            encoder_only=encoder_only,
            freeze=freeze,
            freeze_encoder=freeze_encoder,
            output_all_hiddens=output_all_hiddens,
            language=language,
        )
        self.window_seconds = float(window_seconds)
        self.max_new_tokens = int(max_new_tokens)
        self.no_repeat_ngram_size = int(no_repeat_ngram_size)
        self._text = None
        if not encoder_only:
            self._text = WhisperTextTokenizer(self.tokenizer, text_style)

    # ------------------------------------------------------------ features
    def window_samples(self, n_samples: int) -> int:
        """Samples of the encoder window for a batch of ``n_samples``."""
        seconds = max(self.window_seconds, math.ceil(n_samples / SAMPLE_RATE))
        if seconds > 30:
            raise ValueError(
                f"Whisper takes at most 30 s per window; got {n_samples} "
                "samples"
            )
        return int(seconds * SAMPLE_RATE)

    def log_mel(self, wav: torch.Tensor) -> torch.Tensor:
        """Whisper's log-mel of ``wav`` zero-padded to the window, with the
        dynamic range taken per utterance (as ``WhisperFeatureExtractor``).

        Arguments
        ---------
        wav : torch.Tensor
            ``(batch, time)`` 16 kHz.

        Returns
        -------
        torch.Tensor
            ``(batch, n_mels, window frames)``.
        """
        n = self.window_samples(wav.shape[-1])
        wav = torch.nn.functional.pad(wav, (0, n - wav.shape[-1]))
        return whisper_log_mel(
            wav, self._mel_filters, self._n_fft, self._hop_length
        )

    def _get_mel(self, wav):
        # SpeechBrain's forward() path: same features as log_mel
        return self.log_mel(wav)

    def forward_encoder(self, mel):
        """Encoder states of log-mels of any window up to 30 s (all layers
        when ``output_all_hiddens``)."""
        frames = mel.shape[-1] // FRAMES_PER_ENCODER_FRAME
        with encoder_window(self.model.encoder, frames):
            return super().forward_encoder(mel)

    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """Encoder states of ``(batch, time)`` audio: ``(batch, frames,
        d_model)`` (stacked layers first when ``output_all_hiddens``); an
        utterance of N samples fills ``ceil(N / 320)`` frames."""
        return self.forward_encoder(self.log_mel(wav))

    def decoder_states(self, wav: torch.Tensor) -> torch.Tensor:
        """The encoder output the decoder attends to (the last layer)."""
        states = self.encode(wav)
        return states[-1] if self.output_all_hiddens else states

    # --------------------------------------------------------------- tokens
    def prompt_ids(self) -> list[int]:
        """Whisper's decoder prompt for English transcription."""
        ids = [self.bos]
        if self.is_multilingual:
            lang = self.tokenizer.convert_tokens_to_ids(f"<|{self.language}|>")
            ids += [lang, self.transcribe_token]
        return ids + [self.no_timestamps]

    @property
    def transcribe_token(self) -> int:
        """Id of ``<|transcribe|>`` (the wrapper's ``transcribe`` is a
        property of the same name, shadowed by :meth:`transcribe`)."""
        return self.tokenizer.convert_tokens_to_ids("<|transcribe|>")

    def text_tokenizer(self) -> WhisperTextTokenizer:
        """This model's transcript tokenizer (light, picklable)."""
        return self._text

    def teacher_forcing_batch(self, ids, device=None):
        """Decoder inputs and labels of transcripts' token ids.

        Arguments
        ---------
        ids : sequence of sequences of int
            Text token ids (no prompt, no end-of-text).
        device : torch.device, optional

        Returns
        -------
        inputs : torch.LongTensor
            ``(batch, L)``: prompt + text, padded with end-of-text.
        labels : torch.LongTensor
            ``(batch, L)``: the next token (text + end-of-text), -100 where
            nothing is predicted (prompt positions and padding).
        """
        prompt = self.prompt_ids()
        seqs = [prompt + [int(t) for t in x] + [self.eos] for x in ids]
        longest = max(len(s) for s in seqs)
        inputs = torch.full((len(seqs), longest - 1), self.eos)
        labels = torch.full((len(seqs), longest - 1), -100)
        for i, s in enumerate(seqs):
            inputs[i, : len(s) - 1] = torch.tensor(s[:-1])
            labels[i, len(prompt) - 1 : len(s) - 1] = torch.tensor(
                s[len(prompt) :]
            )
        return inputs.to(device), labels.to(device)

    # ----------------------------------------------------------------- loss
    def token_loss(self, wav, ids, reduction: str = "mean"):
        """Teacher-forced cross-entropy (nats per token, end-of-text
        included) of text token ids given ``wav``; differentiable with
        respect to ``wav``.

        Arguments
        ---------
        wav : torch.Tensor
            ``(batch, time)`` 16 kHz, zero beyond each utterance.
        ids : sequence of sequences of int
            Text token ids per utterance.
        reduction : str
            ``"mean"`` over all tokens of the batch, or ``"batch"`` for the
            per-utterance means.

        Returns
        -------
        torch.Tensor
        """
        inputs, labels = self.teacher_forcing_batch(ids, wav.device)
        states = self.decoder_states(wav)
        logits, _, _ = self.forward_decoder(states, inputs, use_cache=False)
        nll = torch.nn.functional.cross_entropy(
            logits.transpose(1, 2), labels, ignore_index=-100, reduction="none"
        )
        mask = (labels != -100).float()
        if reduction == "mean":
            return (nll * mask).sum() / mask.sum()
        if reduction == "batch":
            return (nll * mask).sum(1) / mask.sum(1)
        raise ValueError(f"reduction {reduction!r}: use 'mean' or 'batch'")

    def text_loss(self, wav, texts, wav_lens=None, reduction: str = "mean"):
        """:meth:`token_loss` of transcripts (styled by ``text_style``)."""
        tok = self.text_tokenizer()
        return self.token_loss(
            mask_padding(wav, wav_lens),
            [tok.encode_as_ids(t) for t in texts],
            reduction,
        )

    def loss(self, wavs, wav_lens, tokens, token_lens, epoch=None):
        """The recogniser loss of the project's proxies: teacher-forced CE
        of padded text ids (from :meth:`text_tokenizer`) given the audio.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)``.
        wav_lens, token_lens : torch.Tensor
            Relative lengths (SpeechBrain's convention).
        tokens : torch.LongTensor
            ``(batch, L)`` padded text ids.
        epoch : int, optional
            Unused (the Conformer proxies anneal with it).

        Returns
        -------
        torch.Tensor
            Mean over the batch's tokens.
        """
        counts = torch.round(token_lens * tokens.shape[1]).long().tolist()
        ids = [row[:n] for row, n in zip(tokens.tolist(), counts, strict=True)]
        return self.token_loss(mask_padding(wavs, wav_lens), ids)

    # ------------------------------------------------------------- decoding
    @torch.no_grad()
    def greedy_decode(self, wav: torch.Tensor) -> list[str]:
        """Free-running greedy transcription (never teacher-forced), with
        Whisper's suppressed tokens, at most ``max_new_tokens`` and no
        repeated ``no_repeat_ngram_size``-gram.

        Arguments
        ---------
        wav : torch.Tensor
            ``(batch, time)`` 16 kHz.

        Returns
        -------
        list of str
        """
        states = self.decoder_states(wav)
        prompt = self.prompt_ids()
        batch = wav.shape[0]
        ids = torch.tensor([prompt] * batch, device=wav.device)
        config = self.model.config
        suppress = list(getattr(config, "suppress_tokens", None) or [])
        # timestamps and every special token but end-of-text never appear
        # in a no-timestamps transcription
        suppress += list(range(self.eos + 1, self.model.config.vocab_size))
        begin = list(getattr(config, "begin_suppress_tokens", None) or [])
        done = torch.zeros(batch, dtype=torch.bool, device=wav.device)
        cache, out = None, []
        for step in range(self.max_new_tokens):
            logits, _, cache = self.forward_decoder(
                states, ids, use_cache=True, past_key_values=cache
            )
            logits = logits[:, -1]
            logits[:, suppress] = -math.inf
            if step == 0:
                logits[:, begin] = -math.inf
            for b, banned in enumerate(
                repeated_ngram_tokens(out, self.no_repeat_ngram_size)
            ):
                logits[b, banned] = -math.inf
            token = logits.argmax(-1)
            token = torch.where(done, torch.full_like(token, self.eos), token)
            out.append(token)
            ids = torch.cat([ids, token[:, None]], dim=1)
            done |= token == self.eos
            if bool(done.all()):
                break
        tokens = torch.stack(out, 1).tolist() if out else [[]] * batch
        texts = []
        for seq in tokens:
            seq = seq[: seq.index(self.eos)] if self.eos in seq else seq
            texts.append(
                self.tokenizer.decode(seq, skip_special_tokens=True).strip()
            )
        return texts

    @property
    def decoding_settings(self) -> str:
        """What changes the free-running transcripts (for caches)."""
        tag = "greedy"
        if self.no_repeat_ngram_size:
            tag += f"-norepeat{self.no_repeat_ngram_size}"
        return tag

    def transcribe(self, wavs, wav_lens=None, tokenizer=None) -> list[str]:
        """Greedy transcripts in the corpus' style (upper-case words, no
        punctuation), as the project's proxies return them.

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor, optional
            Relative lengths; the padding is zeroed first.
        tokenizer : object, optional
            Unused (Whisper decodes with its own).

        Returns
        -------
        list of str
        """
        hyps = self.greedy_decode(mask_padding(wavs, wav_lens))
        return [normalize_words(h) for h in hyps]
