"""A Conformer CTC/attention recogniser built from SpeechBrain classes.

:class:`ConformerASR` is D4AM's proxy acoustic model (docs/methods.md):
``Fbank -> [InputNormalization] -> ConvolutionFrontEnd -> TransformerASR
(conformer encoder, RelPosMHAXL, non-causal) -> ctc_lin / seq_lin``. With
the defaults its parameters have exactly the layout of SpeechBrain's
LibriSpeech ``conformer_small`` model (hub
``speechbrain/asr-conformersmall-transformerlm-librispeech``): the
attribute :attr:`ConformerASR.asr_model` is the ``ModuleList [CNN,
Transformer, seq_lin, ctc_lin]`` stored in that model's ``asr.ckpt`` and
:attr:`ConformerASR.normalizer` the module of its ``normalizer.ckpt``, so a
``Pretrainer`` loads both (``loadables: {asr: proxy.asr_model, normalizer:
proxy.normalizer}``); smaller sizes give the offline proxy.

Two ways of using the outputs, kept apart on purpose:

* :meth:`ConformerASR.loss`: the TRAINING objective, ``ctc_weight * CTC +
  (1 - ctc_weight) * KL`` on teacher-forced decoder outputs (this is what
  D4AM back-propagates through the frozen proxy);
* :meth:`ConformerASR.greedy_ctc` / :meth:`ConformerASR.transcribe`:
  FREE-RUNNING greedy CTC decoding for evaluation; the reference never
  reaches the model (the official D4AM evaluation teacher-forces the
  attention decoder; docs/methods.md, D4AM: the official code).

:class:`CTCProxy` makes any encoder + linear CTC head (e.g. SpeechBrain's
wav2vec2 CTC recognisers: ``Wav2Vec2`` + ``enc`` + ``ctc_lin``) a proxy
with the same interface (``loss``, ``transcribe``), CTC loss only.
:class:`CTCRecogniser` adapts a trained model to the
:class:`robust_brain.evaluation.recognisers.Recogniser` protocol.

Authors
 * robust_brain contributors
"""

import hashlib
from collections.abc import Sequence

import numpy as np
import torch
from speechbrain.decoders.ctc import ctc_greedy_decode
from speechbrain.lobes.features import Fbank
from speechbrain.lobes.models.convolution import ConvolutionFrontEnd
from speechbrain.lobes.models.transformer.TransformerASR import TransformerASR
from speechbrain.nnet.linear import Linear
from speechbrain.nnet.losses import ctc_loss, kldiv_loss
from speechbrain.processing.features import InputNormalization

__all__ = [
    "ConformerASR",
    "CTCProxy",
    "CTCRecogniser",
    "update_weights_digest",
    "decode_tokens",
    "freeze",
    "require_input_gradient",
    "add_bos_eos",
]


def freeze(module: torch.nn.Module) -> torch.nn.Module:
    """Frozen but differentiable: eval mode, no parameter gradients.

    Gradients still flow through the module to its INPUT (nothing runs
    under ``torch.no_grad``). Call it again after anything that switches
    modules back to train mode (SpeechBrain's ``fit`` does, every epoch,
    for the modules it owns).

    Arguments
    ---------
    module : torch.nn.Module

    Returns
    -------
    torch.nn.Module
        The same module.

    Example
    -------
    >>> lin = freeze(torch.nn.Linear(2, 1))
    >>> lin.training, lin.weight.requires_grad
    (False, False)
    >>> x = torch.ones(1, 2, requires_grad=True)
    >>> lin(x).sum().backward()
    >>> x.grad is not None, lin.weight.grad is None
    (True, True)
    """
    module.requires_grad_(False)
    module.eval()
    return module


def require_input_gradient(module: torch.nn.Module, role: str) -> None:
    """Refuse a frozen model that would cut the gradient to its input.

    SpeechBrain's Hugging Face wrappers built with ``freeze=True`` run
    their forward under ``torch.no_grad()``: a loss computed through them
    (D4AM's proxy, GPIT's encoder) would then train nothing upstream.
    Such models are frozen with :func:`freeze` instead.

    Arguments
    ---------
    module : torch.nn.Module
        The model; the Hugging Face wrappers it holds are checked too.
    role : str
        What the model is, for the error (e.g. ``"proxy"``).

    Raises
    ------
    ValueError
        If ``module``, or a Hugging Face wrapper it holds, has ``freeze``
        set to True.

    Example
    -------
    >>> lin = torch.nn.Linear(2, 1)
    >>> require_input_gradient(lin, "proxy")
    >>> lin.freeze = True  # what a wrapper built with freeze=True holds
    >>> require_input_gradient(lin, "proxy")
    Traceback (most recent call last):
    ...
    ValueError: proxy: Linear was built with freeze=True: ...
    """
    for sub in module.modules():
        # only the module itself and Hugging Face wrappers: elsewhere
        # (SpeechBrain's Filterbank) `freeze` means fixed parameters
        wrapper = sub is module or any(
            c.__name__ == "HFTransformersInterface" for c in type(sub).__mro__
        )
        if wrapper and getattr(sub, "freeze", None) is True:
            raise ValueError(
                f"{role}: {type(sub).__name__} was built with freeze=True: "
                "its forward runs under torch.no_grad(), so no gradient "
                "would reach its input; build it with freeze=False (it is "
                "frozen with requires_grad_(False) and eval())"
            )


def add_bos_eos(
    tokens: torch.Tensor, lengths: torch.Tensor, bos: int, eos: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Decoder input (``bos`` + tokens) and target (tokens + ``eos``).

    ``eos`` is written right after each sequence's last real token, not at
    the end of the padding.

    Arguments
    ---------
    tokens : torch.Tensor
        ``(batch, L)`` padded token ids.
    lengths : torch.Tensor
        Relative lengths (SpeechBrain convention).
    bos, eos : int
        Special token ids.

    Returns
    -------
    tokens_bos : torch.Tensor
        ``(batch, L + 1)``.
    tokens_eos : torch.Tensor
        ``(batch, L + 1)``.
    eos_lengths : torch.Tensor
        Relative lengths of ``tokens_eos``.

    Example
    -------
    >>> t = torch.tensor([[5, 6, 7], [8, 0, 0]])
    >>> b, e, n = add_bos_eos(t, torch.tensor([1.0, 1 / 3]), bos=1, eos=2)
    >>> b.tolist(), e.tolist()
    ([[1, 5, 6, 7], [1, 8, 0, 0]], [[5, 6, 7, 2], [8, 2, 0, 0]])
    >>> n.tolist()
    [1.0, 0.5]
    """
    batch, n = tokens.shape
    abs_len = torch.round(lengths.to(tokens.device) * n).long()
    pad = tokens.new_zeros(batch, 1)
    tokens_bos = torch.cat([pad + bos, tokens], dim=1)
    tokens_eos = torch.cat([tokens, pad], dim=1)
    tokens_eos = tokens_eos.scatter(1, abs_len.unsqueeze(1), eos)
    eos_lengths = (abs_len + 1).float() / (n + 1)
    return tokens_bos, tokens_eos, eos_lengths


class ConformerASR(torch.nn.Module):
    """Conformer encoder + Transformer decoder, joint CTC/attention.

    The defaults are SpeechBrain's LibriSpeech ``conformer_small``
    (13.3 M parameters, 5000 unigram tokens; blank = pad = unk = 0, bos 1,
    eos 2).

    Arguments
    ---------
    vocab_size : int
        Output tokens (tokenizer size).
    sample_rate, n_fft, n_mels : int
        Fbank settings (16 kHz, 400, 80).
    cnn_channels, cnn_kernel_sizes, cnn_strides : tuple of int
        ConvolutionFrontEnd blocks ((64, 32), (3, 3), (2, 2)).
    d_model, nhead, num_encoder_layers, num_decoder_layers, d_ffn : int
        Transformer sizes (144, 4, 12, 4, 1024).
    kernel_size : int
        Conformer convolution kernel (31).
    dropout : float
        Transformer dropout.
    normalize : bool
        Apply the global mean/variance normalisation of the features
        (:attr:`normalizer`, whose statistics are learnt during the first
        ``norm_update_until_epoch`` epochs of training and checkpointed
        apart, like the hub's ``normalizer.ckpt``). The module always
        exists, so that it can be loaded; with False it is not applied, as
        in the official D4AM proxy path (docs/methods.md);
        SpeechBrain's interface applies it.
    norm_update_until_epoch : int
        See ``normalize``.
    blank_index, bos_index, eos_index : int
        Special tokens (the CTC blank is also the padding id).
    ctc_weight : float
        Weight of the CTC loss (0.3); the attention loss gets the rest.
    label_smoothing : float
        Of the attention loss.
    loss_reduction : str
        ``batchmean`` (sum over tokens / batch size, as D4AM) or ``mean``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=10, d_model=16, nhead=2,
    ...     num_encoder_layers=1, num_decoder_layers=1, d_ffn=32,
    ...     cnn_channels=(4, 4))
    >>> wav = torch.randn(2, 4000, requires_grad=True)
    >>> lens = torch.tensor([1.0, 0.75])
    >>> tokens = torch.tensor([[3, 4, 5], [6, 7, 0]])
    >>> loss = asr.loss(wav, lens, tokens, torch.tensor([1.0, 2 / 3]))
    >>> loss.backward()
    >>> wav.grad.abs().sum() > 0
    tensor(True)
    >>> hyps = asr.eval().greedy_ctc(wav, lens)
    >>> len(hyps), all(isinstance(h, list) for h in hyps)
    (2, True)
    >>> asr.config["cnn_channels"], asr.config["d_model"]
    ([4, 4], 16)
    """

    def __init__(
        self,
        vocab_size: int = 5000,
        sample_rate: int = 16000,
        n_fft: int = 400,
        n_mels: int = 80,
        cnn_channels: Sequence[int] = (64, 32),
        cnn_kernel_sizes: Sequence[int] = (3, 3),
        cnn_strides: Sequence[int] = (2, 2),
        d_model: int = 144,
        nhead: int = 4,
        num_encoder_layers: int = 12,
        num_decoder_layers: int = 4,
        d_ffn: int = 1024,
        kernel_size: int = 31,
        dropout: float = 0.1,
        normalize: bool = True,
        norm_update_until_epoch: int = 4,
        blank_index: int = 0,
        bos_index: int = 1,
        eos_index: int = 2,
        ctc_weight: float = 0.3,
        label_smoothing: float = 0.0,
        loss_reduction: str = "batchmean",
    ):
        super().__init__()
        # the constructor's arguments, so that a written folder rebuilds it
        self._config = {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in locals().items()
            if k not in ("self", "__class__")
        }
        if num_decoder_layers < 1:
            raise ValueError("the attention loss needs num_decoder_layers >= 1")
        if not 0.0 <= ctc_weight <= 1.0:
            raise ValueError(f"ctc_weight must be in [0, 1], got {ctc_weight}")
        self.vocab_size = int(vocab_size)
        self.blank_index = blank_index
        self.bos_index = bos_index
        self.eos_index = eos_index
        self.ctc_weight = ctc_weight
        self.label_smoothing = label_smoothing
        self.loss_reduction = loss_reduction
        self.compute_features = Fbank(
            sample_rate=sample_rate, n_fft=n_fft, n_mels=n_mels
        )
        self.normalize = bool(normalize)
        self.normalizer = InputNormalization(
            norm_type="global", update_until_epoch=norm_update_until_epoch
        )
        n_blocks = len(cnn_channels)
        cnn = ConvolutionFrontEnd(
            input_shape=(8, 10, n_mels),
            num_blocks=n_blocks,
            num_layers_per_block=1,
            out_channels=tuple(cnn_channels),
            kernel_sizes=tuple(cnn_kernel_sizes),
            strides=tuple(cnn_strides),
            residuals=(False,) * n_blocks,
        )
        with torch.no_grad():
            probe = cnn(torch.zeros(1, 16, n_mels))
        transformer = TransformerASR(
            input_size=probe.shape[2] * probe.shape[3],
            tgt_vocab=self.vocab_size,
            d_model=d_model,
            nhead=nhead,
            num_encoder_layers=num_encoder_layers,
            num_decoder_layers=num_decoder_layers,
            d_ffn=d_ffn,
            kernel_size=kernel_size,
            dropout=dropout,
            activation=torch.nn.GELU,
            encoder_module="conformer",
            attention_type="RelPosMHAXL",
            normalize_before=True,
            causal=False,
        )
        seq_lin = Linear(input_size=d_model, n_neurons=self.vocab_size)
        ctc_lin = Linear(input_size=d_model, n_neurons=self.vocab_size)
        #: the hub's ``asr.ckpt`` layout: [CNN, Transformer, seq_lin, ctc_lin]
        self.asr_model = torch.nn.ModuleList(
            [cnn, transformer, seq_lin, ctc_lin]
        )

    # ---------------------------------------------------------------- parts
    @property
    def cnn(self):
        """The convolutional front-end."""
        return self.asr_model[0]

    @property
    def transformer(self):
        """The ``TransformerASR``."""
        return self.asr_model[1]

    @property
    def seq_lin(self):
        """Decoder output layer."""
        return self.asr_model[2]

    @property
    def ctc_lin(self):
        """CTC output layer."""
        return self.asr_model[3]

    @property
    def config(self) -> dict:
        """The constructor's arguments (what a written folder rebuilds)."""
        return dict(self._config)

    # -------------------------------------------------------------- forward
    def features(self, wavs, wav_lens, epoch=None):
        """Fbank features, globally normalised when ``normalize``.

        The normalisation statistics are updated only in train mode
        (never for a frozen proxy).

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)`` 16 kHz waveforms.
        wav_lens : torch.Tensor
            Relative lengths.
        epoch : int, optional
            Current epoch (stops the statistics updates).

        Returns
        -------
        torch.Tensor
            ``(batch, frames, n_mels)``.
        """
        feats = self.compute_features(wavs.float())
        if self.normalize:
            if not self.normalizer.training and self.normalizer.count == 0:
                raise RuntimeError(
                    "ConformerASR: the feature normalizer has no statistics "
                    "(train the model, or load its normalizer checkpoint)"
                )
            stats = self.normalizer.glob_mean
            if stats.numel() and stats.device != feats.device:
                self.normalizer.to(feats.device)  # not a buffer: move it
            feats = self.normalizer(feats, wav_lens, epoch=epoch)
        return feats

    def encode(self, wavs, wav_lens, epoch=None):
        """Encoder states ``(batch, frames', d_model)``.

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor
        epoch : int, optional

        Returns
        -------
        torch.Tensor
        """
        src = self.cnn(self.features(wavs, wav_lens, epoch))
        return self.transformer.encode(src, wav_lens)

    def ctc_log_probs(self, wavs, wav_lens):
        """CTC log-posteriors ``(batch, frames', vocab)``.

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor

        Returns
        -------
        torch.Tensor
        """
        return self.ctc_lin(self.encode(wavs, wav_lens)).log_softmax(-1)

    def forward(
        self, wavs, wav_lens=None, tokens=None, token_lens=None, epoch=None
    ):
        """CTC log-posteriors, or the training :meth:`loss` when ``tokens``
        are given (so that a DDP-wrapped model trains through ``forward``).

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor, optional
            Relative lengths (default: all 1).
        tokens, token_lens : torch.Tensor, optional
            Targets and their relative lengths.
        epoch : int, optional

        Returns
        -------
        torch.Tensor
        """
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        if tokens is not None:
            return self.loss(wavs, wav_lens, tokens, token_lens, epoch)
        return self.ctc_log_probs(wavs, wav_lens)

    def loss(self, wavs, wav_lens, tokens, token_lens, epoch=None):
        """Joint CTC / attention TRAINING loss (teacher-forced decoder).

        ``ctc_weight * CTC + (1 - ctc_weight) * KLdiv`` with SpeechBrain's
        losses, tokens WITHOUT bos/eos (they are added here).

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)``.
        wav_lens : torch.Tensor
            Relative lengths.
        tokens : torch.Tensor
            ``(batch, L)`` padded token ids.
        token_lens : torch.Tensor
            Relative token lengths.
        epoch : int, optional
            For the normalisation statistics (train mode only).

        Returns
        -------
        torch.Tensor
            0-dim loss.
        """
        tokens = tokens.long()
        tokens_bos, tokens_eos, eos_lens = add_bos_eos(
            tokens, token_lens, self.bos_index, self.eos_index
        )
        src = self.cnn(self.features(wavs, wav_lens, epoch))
        enc, dec = self.transformer(
            src, tokens_bos, wav_lens, pad_idx=self.blank_index
        )
        p_ctc = self.ctc_lin(enc).float().log_softmax(-1)
        p_seq = self.seq_lin(dec).float().log_softmax(-1)
        loss_ctc = ctc_loss(
            p_ctc,
            tokens,
            wav_lens,
            token_lens,
            blank_index=self.blank_index,
            reduction=self.loss_reduction,
        )
        loss_seq = kldiv_loss(
            p_seq,
            tokens_eos,
            length=eos_lens,
            label_smoothing=self.label_smoothing,
            reduction=self.loss_reduction,
        )
        w = self.ctc_weight
        return w * loss_ctc + (1.0 - w) * loss_seq

    @torch.no_grad()
    def greedy_ctc(self, wavs, wav_lens) -> list[list[int]]:
        """FREE-RUNNING greedy CTC decoding (no reference involved).

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor

        Returns
        -------
        list of list of int
            Token ids per utterance (blanks and repeats removed).
        """
        p_ctc = self.ctc_log_probs(wavs, wav_lens)
        return ctc_greedy_decode(p_ctc, wav_lens, blank_id=self.blank_index)

    def transcribe(self, wavs, wav_lens, tokenizer) -> list[str]:
        """Greedy-CTC transcripts as text.

        Arguments
        ---------
        wavs : torch.Tensor
        wav_lens : torch.Tensor
        tokenizer : sentencepiece.SentencePieceProcessor
            Or a ``CTCTextEncoder`` (see :func:`decode_tokens`).

        Returns
        -------
        list of str
        """
        return [
            decode_tokens(tokenizer, seq)
            for seq in self.greedy_ctc(wavs, wav_lens)
        ]


def decode_tokens(tokenizer, ids: Sequence[int]) -> str:
    """Token ids -> text with a SentencePiece processor (``decode_ids``) or
    a SpeechBrain ``CTCTextEncoder`` of characters (``decode_ndim``).

    Arguments
    ---------
    tokenizer : object
    ids : sequence of int

    Returns
    -------
    str

    Example
    -------
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> enc = CTCTextEncoder()
    >>> enc.update_from_iterable("AB C", sequence_input=False)
    >>> enc.insert_blank()
    >>> decode_tokens(enc, enc.encode_sequence(list("CAB A")))
    'CAB A'
    """
    ids = [int(t) for t in ids]
    if hasattr(tokenizer, "decode_ids"):
        return tokenizer.decode_ids(ids)
    return "".join(tokenizer.decode_ndim(ids))


class CTCProxy(torch.nn.Module):
    """An encoder + CTC head as a D4AM proxy (CTC loss, greedy decoding).

    For recognisers without an attention decoder, e.g. SpeechBrain's
    LibriSpeech wav2vec2 CTC model: ``encoder`` = its ``Wav2Vec2`` wrapper
    (built with ``freeze=False``: ``freeze=True`` runs it under
    ``no_grad`` and no gradient would reach the enhancer) and ``head`` =
    ``Sequential(enc, ctc_lin)``, both loaded by a ``Pretrainer``. Freeze
    it with :func:`freeze`.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``encoder(wavs, wav_lens) -> (batch, frames, dim)``.
    head : torch.nn.Module
        ``(batch, frames, dim) -> (batch, frames, vocab)`` logits.
    blank_index : int
        CTC blank.
    loss_reduction : str
        SpeechBrain ``ctc_loss`` reduction.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> class Frames(torch.nn.Module):
    ...     def forward(self, wavs, wav_lens=None):
    ...         return wavs.unfold(1, 160, 160)
    >>> proxy = CTCProxy(Frames(), torch.nn.Linear(160, 5))
    >>> wavs = torch.randn(2, 3200, requires_grad=True)
    >>> lens = torch.tensor([1.0, 0.5])
    >>> loss = proxy.loss(wavs, lens, torch.tensor([[1, 2], [3, 0]]),
    ...                   torch.tensor([1.0, 0.5]))
    >>> loss.backward(); bool(wavs.grad.abs().sum() > 0)
    True
    >>> len(proxy.greedy_ctc(wavs, lens))
    2
    """

    def __init__(
        self, encoder, head, blank_index=0, loss_reduction="batchmean"
    ):
        super().__init__()
        self.encoder = encoder
        self.head = head
        self.blank_index = blank_index
        self.loss_reduction = loss_reduction

    def ctc_log_probs(self, wavs, wav_lens):
        """CTC log-posteriors ``(batch, frames, vocab)``."""
        feats = self.encoder(wavs.float(), wav_lens)
        return self.head(feats).float().log_softmax(-1)

    def forward(
        self, wavs, wav_lens=None, tokens=None, token_lens=None, epoch=None
    ):
        """CTC log-posteriors, or the CTC loss when ``tokens`` are given."""
        if wav_lens is None:
            wav_lens = torch.ones(wavs.shape[0], device=wavs.device)
        if tokens is not None:
            return self.loss(wavs, wav_lens, tokens, token_lens)
        return self.ctc_log_probs(wavs, wav_lens)

    def loss(self, wavs, wav_lens, tokens, token_lens, epoch=None):
        """CTC loss of the tokens (no bos/eos).

        Arguments
        ---------
        wavs, wav_lens, tokens, token_lens : torch.Tensor
        epoch : int, optional
            Unused (interface of :meth:`ConformerASR.loss`).

        Returns
        -------
        torch.Tensor
        """
        return ctc_loss(
            self.ctc_log_probs(wavs, wav_lens),
            tokens.long(),
            wav_lens,
            token_lens,
            blank_index=self.blank_index,
            reduction=self.loss_reduction,
        )

    @torch.no_grad()
    def greedy_ctc(self, wavs, wav_lens) -> list[list[int]]:
        """Free-running greedy CTC decoding (token ids)."""
        p_ctc = self.ctc_log_probs(wavs, wav_lens)
        return ctc_greedy_decode(p_ctc, wav_lens, blank_id=self.blank_index)

    def transcribe(self, wavs, wav_lens, tokenizer) -> list[str]:
        """Greedy-CTC transcripts (see :func:`decode_tokens`)."""
        return [
            decode_tokens(tokenizer, seq)
            for seq in self.greedy_ctc(wavs, wav_lens)
        ]


def update_weights_digest(digest, module: torch.nn.Module):
    """Feed a module's weights, and the global statistics of its
    SpeechBrain feature normaliser when it has one, into ``digest`` (so a
    transcript cache never mixes two checkpoints).

    Arguments
    ---------
    digest : hashlib hash object
    module : torch.nn.Module

    Returns
    -------
    The same ``digest``.

    Example
    -------
    >>> import hashlib
    >>> a = update_weights_digest(hashlib.sha256(), torch.nn.Linear(2, 1))
    >>> b = update_weights_digest(hashlib.sha256(), torch.nn.Linear(2, 1))
    >>> a.hexdigest() == b.hexdigest()  # different random weights
    False
    """
    for key, value in sorted(module.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().float().numpy().tobytes())
    norm = getattr(module, "normalizer", None)
    if (
        norm is not None
        and getattr(module, "normalize", False)
        and norm.glob_mean.numel()
    ):
        digest.update(norm.glob_mean.detach().cpu().numpy().tobytes())
        digest.update(norm.glob_std.detach().cpu().numpy().tobytes())
    return digest


class CTCRecogniser:
    """A :class:`ConformerASR` as an evaluation recogniser (greedy CTC).

    Follows :class:`robust_brain.evaluation.recognisers.Recogniser`: a
    ``name``, a ``fingerprint`` (the weights' digest, so the transcript
    cache never mixes two checkpoints) and ``transcribe``.

    Arguments
    ---------
    model : ConformerASR
        Trained (or loaded) model; used in eval mode.
    tokenizer : sentencepiece.SentencePieceProcessor
        Its tokenizer.
    name : str
        Label in the result tables.
    batch_size : int
        Utterances per forward pass.
    device : str or torch.device
        Where to run.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=5, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False)
    >>> class Chars:
    ...     def decode_ids(self, ids):
    ...         return "".join("abcde"[i] for i in ids)
    >>> rec = CTCRecogniser(asr, Chars(), name="proxy")
    >>> out = rec.transcribe([np.zeros(1600, np.float32)] * 2)
    >>> len(out), rec.fingerprint.startswith("ctc-greedy|")
    (2, True)
    """

    def __init__(
        self, model, tokenizer, name="proxy-ctc", batch_size=8, device="cpu"
    ):
        self.model = model
        self.tokenizer = tokenizer
        self.name = name
        self.batch_size = max(1, int(batch_size))
        self.device = device
        digest = update_weights_digest(hashlib.sha256(), model)
        self._digest = digest.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """Model identity and decoding settings."""
        return f"ctc-greedy|{self.name}|{self._digest}"

    @torch.no_grad()
    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe 16 kHz float arrays (greedy CTC, free-running).

        Arguments
        ---------
        wavs : sequence of numpy.ndarray

        Returns
        -------
        list of str
        """
        self.model.eval()
        out = [""] * len(wavs)
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = max(1, max(len(wavs[i]) for i in idx))
            batch = torch.zeros(len(idx), longest)
            for j, i in enumerate(idx):
                batch[j, : len(wavs[i])] = torch.as_tensor(wavs[i])
            lens = torch.tensor([max(len(wavs[i]), 1) / longest for i in idx])
            texts = self.model.transcribe(
                batch.to(self.device), lens.to(self.device), self.tokenizer
            )
            for j, i in enumerate(idx):
                out[i] = texts[j]
        return out
