"""DistilHuBERT-style students, frozen teachers and the distillation parts.

* :class:`LayerTeacher`: a FROZEN encoder that returns all its hidden
  states: a SpeechBrain Hugging Face wrapper (``WavLM``, ``HuBERT``,
  ``Wav2Vec2`` loaded with ``output_all_hiddens=True``), a Whisper encoder
  (:class:`~robust_brain.models.whisper.WhisperASR`, the converted
  checkpoint offline or ``openai/whisper-*`` from the hub) or the
  project's :class:`~robust_brain.models.asr.ConformerASR`.
* :func:`build_student`: a student with the teacher's front-end (CNN
  feature extractor; for the Conformer, Fbank + its convolutional
  front-end) and its first ``num_layers`` Transformer layers, COPIED from
  the teacher where shapes allow, plus prediction heads for chosen teacher
  layers (``expand-last``: one ``Linear(D, K * D)``), as DistilHuBERT
  (docs/methods.md, Student and teacher). Gradients into the front-end are
  scaled by ``feature_grad_mult`` (0.1).
* :func:`distillation_loss`: L1 + ``cos_weight`` * ``-log sigmoid(cos)``.
* :class:`EnhancementHead`: RobustDistiller's training-only head (a
  sigmoid mask on the noisy STFT magnitude, from the student's CNN
  features).
* :class:`GradientReversal` (our own autograd Function),
  :func:`dann_lambda` and :class:`DomainDiscriminator` for DAT
  (docs/methods.md, Domain-adversarial training).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

__all__ = [
    "GradientReversal",
    "GradientReversalLayer",
    "grad_reverse",
    "scale_grad",
    "dann_lambda",
    "masked_mean",
    "LayerTeacher",
    "DistilStudent",
    "HFStudent",
    "ConformerStudent",
    "WhisperStudent",
    "build_student",
    "learned_parameters",
    "distillation_loss",
    "EnhancementHead",
    "DomainDiscriminator",
]


# --------------------------------------------------------------------------
# gradient tools


class GradientReversal(torch.autograd.Function):
    """Identity forward; the backward multiplies the gradient by
    ``-lambda_`` (Ganin & Lempitsky's gradient-reversal layer).

    Example
    -------
    >>> x = torch.ones(3, requires_grad=True)
    >>> GradientReversal.apply(x, 0.5).sum().backward()
    >>> x.grad
    tensor([-0.5000, -0.5000, -0.5000])
    """

    @staticmethod
    def forward(ctx, x, lambda_):
        ctx.lambda_ = float(lambda_)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad_output):
        return -ctx.lambda_ * grad_output, None


def grad_reverse(x: torch.Tensor, lambda_: float = 1.0) -> torch.Tensor:
    """Apply :class:`GradientReversal`.

    Arguments
    ---------
    x : torch.Tensor
    lambda_ : float

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.tensor([2.0], requires_grad=True)
    >>> (grad_reverse(x, 3.0) * 2).sum().backward()
    >>> x.grad
    tensor([-6.])
    """
    return GradientReversal.apply(x, lambda_)


class GradientReversalLayer(torch.nn.Module):
    """Module form of :func:`grad_reverse`; set :attr:`lambda_` at will.

    Arguments
    ---------
    lambda_ : float

    Example
    -------
    >>> grl = GradientReversalLayer(0.25)
    >>> x = torch.ones(2, requires_grad=True)
    >>> grl(x).sum().backward()
    >>> x.grad
    tensor([-0.2500, -0.2500])
    """

    def __init__(self, lambda_: float = 1.0):
        super().__init__()
        self.lambda_ = float(lambda_)

    def forward(self, x):
        return grad_reverse(x, self.lambda_)


def scale_grad(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Same values; the gradient is multiplied by ``scale`` (fairseq's
    ``GradMultiply``, the ``feature_grad_mult`` of DistilHuBERT).

    Arguments
    ---------
    x : torch.Tensor
    scale : float

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.ones(2, requires_grad=True)
    >>> scale_grad(x, 0.1).sum().backward()
    >>> x.grad
    tensor([0.1000, 0.1000])
    """
    if scale == 1.0:
        return x
    return x * scale + x.detach() * (1.0 - scale)


def dann_lambda(
    progress: float, lambda_max: float = 1.0, gamma: float = 10.0
) -> float:
    """DANN schedule ``lambda_max * (2 / (1 + exp(-gamma p)) - 1)``.

    Arguments
    ---------
    progress : float
        Training progress ``p`` in [0, 1] (clipped).
    lambda_max : float
    gamma : float

    Returns
    -------
    float

    Example
    -------
    >>> dann_lambda(0.0), round(dann_lambda(0.5), 4), round(dann_lambda(1.0), 4)
    (0.0, 0.9866, 0.9999)
    """
    p = min(max(float(progress), 0.0), 1.0)
    return float(lambda_max) * (2.0 / (1.0 + math.exp(-gamma * p)) - 1.0)


def masked_mean(x: torch.Tensor, lengths: torch.Tensor | None = None):
    """Mean over time of ``(batch, time, dim)`` within relative lengths.

    Arguments
    ---------
    x : torch.Tensor
    lengths : torch.Tensor, optional

    Returns
    -------
    torch.Tensor
        ``(batch, dim)``.

    Example
    -------
    >>> x = torch.tensor([[[1.0], [3.0]], [[2.0], [100.0]]])
    >>> masked_mean(x, torch.tensor([1.0, 0.5])).squeeze(-1).tolist()
    [2.0, 2.0]
    """
    if lengths is None:
        return x.mean(1)
    mask = _time_mask(x.shape[1], lengths, x.device).to(x.dtype)
    return (x * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True).clamp(1)


def _time_mask(n: int, lengths: torch.Tensor, device) -> torch.Tensor:
    valid = torch.round(lengths.to(device).float() * n).clamp(min=1)
    return torch.arange(n, device=device).unsqueeze(0) < valid.unsqueeze(1)


def _conformer_hiddens(
    feats, lens, custom_src_module, positional_encoding, layers, norm, causal
):
    """Run conformer layers, returning [input, layer 1, ..., layer N
    (final norm applied)] (TransformerASR.encode, layer by layer)."""
    from speechbrain.lobes.models.transformer.TransformerASR import (
        make_transformer_src_tgt_masks,
    )

    if feats.dim() == 4:
        b, t, c1, c2 = feats.shape
        feats = feats.reshape(b, t, c1 * c2)
    pad_mask, _, src_mask, _ = make_transformer_src_tgt_masks(
        feats, None, lens, pad_idx=0, causal=causal
    )
    x = custom_src_module(feats)
    pos = positional_encoding(x)
    hiddens = [x]
    for layer in layers:
        x, _ = layer(
            x, src_mask=src_mask, src_key_padding_mask=pad_mask, pos_embs=pos
        )
        hiddens.append(x)
    hiddens[-1] = norm(hiddens[-1])
    return hiddens


def _is_conformer(model) -> bool:
    from robust_brain.models.asr import ConformerASR

    return isinstance(model, ConformerASR)


def _is_whisper(model) -> bool:
    from robust_brain.models.whisper import WhisperASR

    return isinstance(model, WhisperASR)


def learned_parameters(module: torch.nn.Module) -> int:
    """Parameters of ``module`` without Whisper's sinusoidal position
    tables (fixed sinusoids, never trained: transformers stores them as a
    frozen ``embed_positions`` weight), so that a Whisper student and its
    teacher are compared on the weights they learned.

    Example
    -------
    >>> learned_parameters(torch.nn.Linear(3, 2))
    8
    """
    from transformers.models.whisper.modeling_whisper import WhisperEncoder

    total = sum(p.numel() for p in module.parameters())
    fixed = sum(
        m.embed_positions.weight.numel()
        for m in module.modules()
        if isinstance(m, WhisperEncoder)
    )
    return total - fixed


def _hf_model(wrapper):
    model = getattr(wrapper, "model", None)
    if model is None or not hasattr(model, "config"):
        raise TypeError(
            f"teacher {type(wrapper).__name__}: expected a ConformerASR or a "
            "SpeechBrain Hugging Face wrapper (WavLM, HuBERT, Wav2Vec2)"
        )
    return model


class LayerTeacher(torch.nn.Module):
    """A frozen teacher returning its hidden states.

    ``forward(wavs, lens)`` returns a list ``[h_0, h_1, ..., h_N]``:
    ``h_0`` is the Transformer input and ``h_l`` the output of layer
    ``l`` (HF's ``hidden_states`` convention), computed under
    ``no_grad`` in eval mode. :meth:`freeze` (re-)applies
    ``requires_grad_(False)`` + ``eval()``: call it at every stage start.

    Arguments
    ---------
    model : ConformerASR or SpeechBrain HF wrapper
        An HF wrapper must return all hidden states
        (``output_all_hiddens=True``).

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=3, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> teacher = LayerTeacher(asr)
    >>> wav, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.8])
    >>> hs = teacher(wav, lens)
    >>> len(hs), tuple(hs[-1].shape), teacher.num_layers, teacher.hidden_size
    (4, (2, 13, 16), 3, 16)
    >>> torch.allclose(hs[-1], asr.encode(wav, lens), atol=1e-5)
    True
    >>> any(p.requires_grad for p in teacher.parameters())
    False
    """

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.is_conformer = _is_conformer(model)
        self.is_whisper = _is_whisper(model)
        if self.is_whisper:
            if not model.output_all_hiddens:
                raise ValueError(
                    "LayerTeacher: load the Whisper teacher with "
                    "output_all_hiddens=True"
                )
            config = model.model.encoder.config
            self.num_layers = int(config.encoder_layers)
            self.hidden_size = int(config.d_model)
        elif self.is_conformer:
            tr = model.transformer
            if tr.attention_type != "RelPosMHAXL":
                raise ValueError("LayerTeacher: ConformerASR needs RelPosMHAXL")
            self.num_layers = len(tr.encoder.layers)
            self.hidden_size = int(model.ctc_lin.w.in_features)
        else:
            hf = _hf_model(model)
            if not getattr(model, "output_all_hiddens", False):
                raise ValueError(
                    "LayerTeacher: load the HF teacher with "
                    "output_all_hiddens=True"
                )
            self.num_layers = int(hf.config.num_hidden_layers)
            self.hidden_size = int(hf.config.hidden_size)
        self.freeze()

    def freeze(self) -> LayerTeacher:
        """``requires_grad_(False)`` + ``eval()`` (again).

        Returns
        -------
        LayerTeacher
        """
        self.requires_grad_(False)
        self.eval()
        return self

    def train(self, mode: bool = True):
        """A teacher is never put in train mode (dropout, layerdrop).

        Arguments
        ---------
        mode : bool
            Ignored.

        Returns
        -------
        LayerTeacher
        """
        return super().train(False)

    @torch.no_grad()
    def forward(self, wavs, lens=None):
        if self.is_conformer:
            m = self.model
            feats = m.cnn(m.features(wavs, lens))
            tr = m.transformer
            return _conformer_hiddens(
                feats,
                lens,
                tr.custom_src_module,
                tr.positional_encoding,
                tr.encoder.layers,
                tr.encoder.norm,
                tr.causal,
            )
        if self.is_whisper:
            from robust_brain.models.whisper import (
                SAMPLES_PER_ENCODER_FRAME,
                mask_padding,
            )

            # padded to Whisper's window; keep the frames of the batch
            out = self.model.encode(mask_padding(wavs, lens))
            frames = math.ceil(wavs.shape[-1] / SAMPLES_PER_ENCODER_FRAME)
            return list(out[:, :, :frames].unbind(0))
        out = self.model(wavs, lens)  # (N + 1, B, T, D)
        return list(out.unbind(0))

    def targets(self, wavs, lens, layers: Sequence[int]) -> torch.Tensor:
        """Hidden states of ``layers`` stacked: ``(batch, K, time, dim)``.

        Arguments
        ---------
        wavs, lens : torch.Tensor
        layers : sequence of int

        Returns
        -------
        torch.Tensor
        """
        hs = self(wavs, lens)
        bad = [i for i in layers if not 0 <= int(i) < len(hs)]
        if bad:
            raise ValueError(
                f"target_layers {list(layers)}: {bad} not in 0..{len(hs) - 1}"
                f" (the teacher has {len(hs) - 1} layers)"
            )
        return torch.stack([hs[int(i)] for i in layers], dim=1)


# --------------------------------------------------------------------------
# students


class DistilStudent(torch.nn.Module):
    """Base class: front-end -> ``num_layers`` layers -> prediction heads.

    ``forward(wavs, lens)`` returns a dict: ``cnn`` (front-end features,
    ``(batch, frames, channels)``; their gradient is scaled by
    ``feature_grad_mult``), ``hiddens`` (list), ``last`` (the last hidden
    state) and ``preds`` (``(batch, K, frames, dim)``, one per target
    layer). :meth:`features` gives the frozen-probe features.
    """

    def __init__(self, hidden_size: int, target_layers: Sequence[int]):
        super().__init__()
        self.target_layers = [int(i) for i in target_layers]
        if not self.target_layers:
            raise ValueError("target_layers must name at least one layer")
        self.hidden_size = int(hidden_size)
        k = len(self.target_layers)
        self.heads = torch.nn.Linear(hidden_size, k * hidden_size)

    def encode(self, wavs, lens):
        """``(cnn features, hidden states)``; implemented by subclasses."""
        raise NotImplementedError

    def _grab_cnn(self, module, inputs, output):
        """Forward hook on a ``(batch, channels, frames)`` front-end: keeps
        its output for the enhancement head, gradient scaled by
        ``feature_grad_mult``."""
        output = scale_grad(output, self.feature_grad_mult)
        self._cnn = output.transpose(1, 2)
        return output

    def forward(self, wavs, lens=None):
        cnn, hiddens = self.encode(wavs, lens)
        last = hiddens[-1]
        b, t, d = last.shape
        preds = self.heads(last).view(b, t, len(self.target_layers), d)
        return {
            "cnn": cnn,
            "hiddens": hiddens,
            "last": last,
            "preds": preds.transpose(1, 2),
        }

    @torch.no_grad()
    def features(self, wavs, lens=None, kind: str = "last"):
        """Frozen features for downstream probes.

        Arguments
        ---------
        wavs, lens : torch.Tensor
        kind : str
            ``last`` (last hidden state) or ``pred`` (the prediction of the
            deepest target layer).

        Returns
        -------
        torch.Tensor
            ``(batch, frames, dim)``.
        """
        out = self(wavs, lens)
        if kind == "last":
            return out["last"]
        if kind == "pred":
            return out["preds"][:, -1]
        raise ValueError(f"probe feature kind must be last or pred: {kind!r}")


def _copy_matching(dst: torch.nn.Module, src_state: dict) -> int:
    """Copy every tensor of ``src_state`` whose name and shape exist in
    ``dst``; the number of tensors copied."""
    own = dst.state_dict()
    keep = {
        k: v
        for k, v in src_state.items()
        if k in own and own[k].shape == v.shape
    }
    dst.load_state_dict(keep, strict=False)
    return len(keep)


class HFStudent(DistilStudent):
    """DistilHuBERT from a Hugging Face teacher (WavLM / HuBERT / wav2vec
    2.0): the same model class with ``num_layers`` layers (layerdrop 0,
    no SpecAugment), initialised from the teacher where names and shapes
    match (CNN, projection, positional convolution, layers ``0 ..
    num_layers - 1``): :meth:`from_teacher`. WavLM students keep WavLM's
    gated relative position bias (the official code drops it for vanilla
    attention).

    Arguments
    ---------
    model : transformers.PreTrainedModel
        The student's own model (``WavLMModel``, ``HubertModel``, ...).
    target_layers : sequence of int
    normalize_wav : bool
        Layer-normalise the waveform first (as the teacher's wrapper).
    feature_grad_mult : float

    Example
    -------
    >>> import transformers
    >>> cfg = transformers.HubertConfig(hidden_size=16, num_hidden_layers=1,
    ...     num_attention_heads=2, intermediate_size=16, conv_dim=(8, 8),
    ...     conv_stride=(5, 4), conv_kernel=(10, 8),
    ...     num_conv_pos_embeddings=4, num_conv_pos_embedding_groups=2)
    >>> student = HFStudent(transformers.HubertModel(cfg), [1]).eval()
    >>> student.features(torch.randn(2, 4000), torch.ones(2)).shape
    torch.Size([2, 198, 16])
    """

    def __init__(
        self,
        model,
        target_layers: Sequence[int],
        normalize_wav: bool = False,
        feature_grad_mult: float = 0.1,
    ):
        super().__init__(int(model.config.hidden_size), target_layers)
        self.model = model
        self.copied = 0
        self.normalize_wav = bool(normalize_wav)
        self.feature_grad_mult = float(feature_grad_mult)
        self._cnn = None
        self.model.feature_extractor.register_forward_hook(self._grab_cnn)

    @classmethod
    def from_teacher(
        cls,
        teacher,
        target_layers: Sequence[int],
        num_layers: int = 2,
        feature_grad_mult: float = 0.1,
        init_from_teacher: bool = True,
    ) -> HFStudent:
        """The student of a SpeechBrain HF wrapper ``teacher``: its model
        class and configuration with ``num_layers`` layers, initialised
        from the teacher (``init_from_teacher``)."""
        hf = _hf_model(teacher)
        config = copy.deepcopy(hf.config)
        config.num_hidden_layers = int(num_layers)
        config.layerdrop = 0.0
        config.apply_spec_augment = False
        student = cls(
            type(hf)(config),
            target_layers,
            normalize_wav=bool(getattr(teacher, "normalize_wav", False)),
            feature_grad_mult=feature_grad_mult,
        )
        if init_from_teacher:
            student.copied = _copy_matching(student.model, hf.state_dict())
        return student

    def encode(self, wavs, lens):
        from speechbrain.integrations.huggingface.huggingface import (
            make_padding_masks,
        )

        mask = make_padding_masks(wavs, wav_len=lens)
        if self.normalize_wav:
            wavs = F.layer_norm(wavs, wavs.shape[1:])
        out = self.model(wavs, attention_mask=mask, output_hidden_states=True)
        cnn, self._cnn = self._cnn, None
        return cnn, list(out.hidden_states)


class ConformerStudent(DistilStudent):
    """DistilHuBERT from the offline :class:`ConformerASR` teacher: its
    Fbank + (frozen-statistics) normalisation + convolutional front-end
    and its first ``num_layers`` Conformer layers, copied (or
    re-initialised with ``init_from_teacher=False``), then the heads.

    Arguments
    ---------
    teacher : ConformerASR
    target_layers : sequence of int
    num_layers : int
    feature_grad_mult : float
    init_from_teacher : bool

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=4, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False).eval()
    >>> student = ConformerStudent(asr, target_layers=[2, 4]).eval()
    >>> out = student(torch.randn(2, 8000), torch.ones(2))
    >>> tuple(out["preds"].shape), tuple(out["cnn"].shape)
    ((2, 2, 13, 16), (2, 13, 80))
    >>> wav = torch.randn(1, 8000)
    >>> hs = LayerTeacher(asr)(wav, torch.ones(1))
    >>> first = student(wav, torch.ones(1))["hiddens"][1]
    >>> torch.allclose(first, hs[1], atol=1e-5)
    True
    """

    def __init__(
        self,
        teacher,
        target_layers: Sequence[int],
        num_layers: int = 2,
        feature_grad_mult: float = 0.1,
        init_from_teacher: bool = True,
    ):
        if not _is_conformer(teacher):
            raise TypeError("ConformerStudent needs a ConformerASR teacher")
        tr = teacher.transformer
        super().__init__(int(teacher.ctc_lin.w.in_features), target_layers)
        if num_layers > len(tr.encoder.layers):
            raise ValueError(
                f"student num_layers {num_layers} > teacher layers "
                f"{len(tr.encoder.layers)}"
            )
        # what rebuilds this student around a teacher of the same shape
        self.teacher_config = getattr(teacher, "config", None)
        self.num_layers = int(num_layers)
        self.compute_features = copy.deepcopy(teacher.compute_features)
        norm = teacher.normalizer
        use_norm = teacher.normalize and norm.glob_mean.numel() > 0
        self.register_buffer(
            "feat_mean", norm.glob_mean.detach().clone() if use_norm else None
        )
        self.register_buffer(
            "feat_std", norm.glob_std.detach().clone() if use_norm else None
        )
        self.cnn = copy.deepcopy(teacher.cnn)
        self.custom_src_module = copy.deepcopy(tr.custom_src_module)
        self.positional_encoding = copy.deepcopy(tr.positional_encoding)
        self.layers = torch.nn.ModuleList(
            copy.deepcopy(tr.encoder.layers[i]) for i in range(num_layers)
        )
        self.norm = copy.deepcopy(tr.encoder.norm)
        self.causal = tr.causal
        self.feature_grad_mult = float(feature_grad_mult)
        self.requires_grad_(True)
        self.train()
        if not init_from_teacher:
            for m in self.modules():
                if m is not self and hasattr(m, "reset_parameters"):
                    m.reset_parameters()
        self.copied = int(init_from_teacher)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # a student rebuilt around an untrained teacher has no feature
        # statistics yet: take the saved ones instead of dropping them
        for name in ("feat_mean", "feat_std"):
            saved = state_dict.get(prefix + name)
            if saved is not None and getattr(self, name) is None:
                self.register_buffer(name, torch.empty_like(saved))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def encode(self, wavs, lens):
        feats = self.compute_features(wavs.float())
        if self.feat_mean is not None:
            feats = (feats - self.feat_mean) / self.feat_std
        cnn = self.cnn(feats)
        b, t = cnn.shape[:2]
        cnn = scale_grad(cnn.reshape(b, t, -1), self.feature_grad_mult)
        hiddens = _conformer_hiddens(
            cnn,
            lens,
            self.custom_src_module,
            self.positional_encoding,
            self.layers,
            self.norm,
            self.causal,
        )
        return cnn, hiddens


class WhisperStudent(DistilStudent):
    """DistilHuBERT from a Whisper encoder teacher: Whisper's log-mel, its
    two convolutions and its first layers (a transformers
    ``WhisperEncoder`` with fewer layers, COPIED from the teacher by
    :meth:`from_teacher`), then the heads.

    The student reads only the frames that hold audio (``ceil(N / 320)``),
    not the teacher's zero-padded window (``WhisperASR.window_seconds``;
    30 s in Whisper itself): 150 frames instead of 500 for a 3 s crop in
    a 10 s window. Its last hidden state carries the encoder's final layer
    norm, as the teacher's.

    Arguments
    ---------
    model : transformers WhisperEncoder
        The student's own encoder.
    target_layers : sequence of int
    feature_grad_mult : float

    Example
    -------
    >>> from transformers import WhisperConfig
    >>> from transformers.models.whisper.modeling_whisper import (
    ...     WhisperEncoder)
    >>> cfg = WhisperConfig(d_model=16, encoder_layers=1,
    ...     encoder_attention_heads=2, encoder_ffn_dim=16, num_mel_bins=80)
    >>> student = WhisperStudent(WhisperEncoder(cfg), [2, 4]).eval()
    >>> out = student(torch.randn(2, 16000), torch.ones(2))
    >>> tuple(out["preds"].shape), tuple(out["cnn"].shape)
    ((2, 2, 50, 16), (2, 50, 16))
    """

    def __init__(
        self,
        model,
        target_layers: Sequence[int],
        feature_grad_mult: float = 0.1,
    ):
        from robust_brain.models.whisper import mel_filters

        super().__init__(int(model.config.d_model), target_layers)
        self.model = model
        self.feature_grad_mult = float(feature_grad_mult)
        self.copied = 0
        self.register_buffer(
            "mel_filters",
            mel_filters(int(model.config.num_mel_bins)),
            persistent=False,
        )
        self._cnn = None
        self.model.conv2.register_forward_hook(self._grab_cnn)

    @classmethod
    def from_teacher(
        cls,
        teacher,
        target_layers: Sequence[int],
        num_layers: int = 1,
        feature_grad_mult: float = 0.1,
        init_from_teacher: bool = True,
    ) -> WhisperStudent:
        """The student of a :class:`~robust_brain.models.whisper.
        WhisperASR` teacher: its encoder configuration with ``num_layers``
        layers, initialised from the teacher (``init_from_teacher``)."""
        from transformers.models.whisper.modeling_whisper import (
            WhisperEncoder,
        )

        encoder = teacher.model.encoder
        if num_layers > encoder.config.encoder_layers:
            raise ValueError(
                f"student num_layers {num_layers} > teacher layers "
                f"{encoder.config.encoder_layers}"
            )
        config = copy.deepcopy(encoder.config)
        config.encoder_layers = int(num_layers)
        config.encoder_layerdrop = 0.0
        student = cls(WhisperEncoder(config), target_layers, feature_grad_mult)
        if init_from_teacher:
            student.copied = _copy_matching(student.model, encoder.state_dict())
        return student.requires_grad_(True).train()

    def requires_grad_(self, requires_grad: bool = True):
        super().requires_grad_(requires_grad)
        # the sinusoids stay fixed, as in Whisper
        self.model.embed_positions.requires_grad_(False)
        return self

    def encode(self, wavs, lens):
        from robust_brain.models.whisper import (
            SAMPLES_PER_ENCODER_FRAME,
            encoder_window,
            mask_padding,
            whisper_log_mel,
        )

        wavs = mask_padding(wavs, lens)
        pad = -wavs.shape[-1] % SAMPLES_PER_ENCODER_FRAME
        mel = whisper_log_mel(F.pad(wavs, (0, pad)), self.mel_filters)
        with encoder_window(self.model, mel.shape[-1] // 2):
            out = self.model(mel, output_hidden_states=True)
        cnn, self._cnn = self._cnn, None
        return cnn, list(out.hidden_states)


def build_student(
    teacher,
    target_layers: Sequence[int],
    num_layers: int = 2,
    feature_grad_mult: float = 0.1,
    init_from_teacher: bool = True,
) -> DistilStudent:
    """The student of a teacher (:class:`ConformerStudent`,
    :class:`WhisperStudent` or :class:`HFStudent`), a fresh copy at every
    call.

    Arguments
    ---------
    teacher : LayerTeacher, ConformerASR, WhisperASR or SpeechBrain HF wrapper
    target_layers : sequence of int
        Teacher layers predicted by the heads (1-based: HF convention).
    num_layers : int
        Student Transformer layers (2).
    feature_grad_mult : float
        Gradient scale into the front-end (0.1).
    init_from_teacher : bool

    Returns
    -------
    DistilStudent

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=8, d_model=16, nhead=2, d_ffn=16,
    ...     num_encoder_layers=2, num_decoder_layers=1, cnn_channels=(4, 4),
    ...     normalize=False)
    >>> student = build_student(LayerTeacher(asr), [1, 2], num_layers=1)
    >>> type(student).__name__, len(student.layers)
    ('ConformerStudent', 1)
    >>> build_student(asr, [3])
    Traceback (most recent call last):
    ...
    ValueError: target_layers [3]: [3] outside 1..2
    """
    model = teacher.model if isinstance(teacher, LayerTeacher) else teacher
    conformer = _is_conformer(model)
    if conformer:
        n_teacher = len(model.transformer.encoder.layers)
        build = ConformerStudent
    elif _is_whisper(model):
        n_teacher = model.model.encoder.config.encoder_layers
        build = WhisperStudent.from_teacher
    else:
        n_teacher = _hf_model(model).config.num_hidden_layers
        build = HFStudent.from_teacher
    bad = [i for i in target_layers if not 1 <= int(i) <= n_teacher]
    if bad:
        raise ValueError(
            f"target_layers {list(target_layers)}: {bad} outside 1..{n_teacher}"
        )
    return build(
        model,
        target_layers,
        num_layers=num_layers,
        feature_grad_mult=feature_grad_mult,
        init_from_teacher=init_from_teacher,
    )


def distillation_loss(preds, targets, lens=None, cos_weight: float = 1.0):
    """DistilHuBERT's loss: mean L1 + ``cos_weight`` * mean
    ``-log sigmoid(cos)``, over valid frames (and layers).

    Arguments
    ---------
    preds, targets : torch.Tensor
        ``(batch, K, frames, dim)``; the longer one is trimmed.
    lens : torch.Tensor, optional
        Relative lengths.
    cos_weight : float

    Returns
    -------
    loss : torch.Tensor
    parts : dict
        ``l1`` and ``cos`` (detached).

    Example
    -------
    >>> x = torch.randn(2, 3, 5, 4)
    >>> loss, parts = distillation_loss(x, x)
    >>> round(float(parts["l1"]), 4), round(float(loss), 4)  # -log sig(1)
    (0.0, 0.3133)
    """
    t = min(preds.shape[2], targets.shape[2])
    preds, targets = preds[:, :, :t], targets[:, :, :t].to(preds.dtype)
    if lens is None:
        mask = torch.ones(preds.shape[0], t, device=preds.device)
    else:
        mask = _time_mask(t, lens, preds.device).to(preds.dtype)
    denom = mask.sum() * preds.shape[1]
    l1 = ((preds - targets).abs().mean(-1) * mask.unsqueeze(1)).sum() / denom
    cos = F.cosine_similarity(preds, targets, dim=-1)
    neg_log_sig = (-F.logsigmoid(cos) * mask.unsqueeze(1)).sum() / denom
    loss = l1 + cos_weight * neg_log_sig
    return loss, {"l1": l1.detach(), "cos": neg_log_sig.detach()}


# --------------------------------------------------------------------------
# RobustDistiller's enhancement head, DAT's discriminator


class EnhancementHead(torch.nn.Module):
    """A sigmoid mask on the noisy STFT magnitude from the student's CNN
    features (RobustDistiller; docs/methods.md, Enhancement head): features
    interpolated (nearest) to the STFT frame rate -> BLSTM -> dropout ->
    Linear -> sigmoid. Used for training only: the student never calls it.

    Arguments
    ---------
    input_size : int
        CNN feature size.
    hidden_size : int
        BLSTM units per direction (256).
    num_layers : int
        BLSTM layers (3).
    dropout : float
    n_fft, hop_length, win_length : int
        STFT (512, 160, 400, Hann, centred).

    Example
    -------
    >>> head = EnhancementHead(8, hidden_size=4, num_layers=1)
    >>> feats, noisy = torch.randn(2, 10, 8), torch.randn(2, 3200)
    >>> loss = head.loss(feats, noisy, noisy, torch.ones(2))
    >>> loss.shape, bool(loss > 0)
    (torch.Size([]), True)
    >>> head(feats, noisy).shape  # (batch, STFT frames, bins)
    torch.Size([2, 21, 257])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_layers: int = 3,
        dropout: float = 0.1,
        n_fft: int = 512,
        hop_length: int = 160,
        win_length: int = 400,
    ):
        super().__init__()
        self.n_fft, self.hop, self.win = n_fft, hop_length, win_length
        # a buffer: follows the module to its device (the official head
        # creates it on "cuda" in __init__; docs/methods.md)
        self.register_buffer(
            "window", torch.hann_window(win_length), persistent=False
        )
        self.blstm = torch.nn.LSTM(
            input_size,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.out = torch.nn.Linear(2 * hidden_size, n_fft // 2 + 1)

    def magnitude(self, wavs):
        """``|STFT|``: ``(batch, frames, bins)``."""
        spec = torch.stft(
            wavs.float(),
            self.n_fft,
            self.hop,
            self.win,
            window=self.window,
            center=True,
            return_complex=True,
        )
        return spec.abs().transpose(1, 2)

    def forward(self, feats, noisy):
        n_frames = noisy.shape[-1] // self.hop + 1
        x = F.interpolate(
            feats.transpose(1, 2).float(), size=n_frames, mode="nearest"
        ).transpose(1, 2)
        x, _ = self.blstm(x)
        return torch.sigmoid(self.out(self.dropout(x)))

    def loss(self, feats, noisy, clean, lens=None):
        """Mean ``|M * |X| - |S||`` over valid frames.

        Arguments
        ---------
        feats : torch.Tensor
            CNN features ``(batch, frames, channels)``.
        noisy, clean : torch.Tensor
            ``(batch, samples)``.
        lens : torch.Tensor, optional

        Returns
        -------
        torch.Tensor
        """
        mask = self(feats, noisy)
        est = mask * self.magnitude(noisy)
        ref = self.magnitude(clean)
        t = min(est.shape[1], ref.shape[1])
        err = (est[:, :t] - ref[:, :t]).abs().mean(-1)
        if lens is None:
            return err.mean()
        valid = _time_mask(t, lens, err.device).to(err.dtype)
        return (err * valid).sum() / valid.sum().clamp(1)


class DomainDiscriminator(torch.nn.Module):
    """DAT's domain classifier: an MLP on time-pooled student features.

    Arguments
    ---------
    input_size : int
    hidden_size : int
    num_domains : int
        2 (binary clean/distorted) or the number of distortion types.
    num_layers : int
        Hidden layers (2 = the 2-layer MLP of docs/methods.md, which has one).

    Example
    -------
    >>> disc = DomainDiscriminator(8, hidden_size=4, num_domains=3)
    >>> disc(torch.randn(5, 8)).shape
    torch.Size([5, 3])
    """

    def __init__(
        self,
        input_size: int,
        hidden_size: int = 256,
        num_domains: int = 2,
        num_layers: int = 2,
    ):
        super().__init__()
        if num_domains < 2:
            raise ValueError(f"num_domains must be >= 2, got {num_domains}")
        layers, size = [], input_size
        for _ in range(max(num_layers - 1, 0)):
            layers += [torch.nn.Linear(size, hidden_size), torch.nn.ReLU()]
            size = hidden_size
        layers.append(torch.nn.Linear(size, num_domains))
        self.net = torch.nn.Sequential(*layers)
        self.num_domains = int(num_domains)

    def forward(self, pooled):
        return self.net(pooled)
