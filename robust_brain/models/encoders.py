"""Frozen pretrained speech encoders behind one interface.

:class:`EncoderFeatures` runs any of the encoders the recipes use as a
frozen, differentiable feature extractor and tells which output frames
hold input (the rest is padding):

* SpeechBrain's Hugging Face wrappers ``Wav2Vec2`` / ``WavLM`` / ``HuBERT``
  (``encoder(wavs, wav_lens)``; valid frames from the model's own
  convolution arithmetic, ``kind="ssl"``);
* SpeechBrain's ``Whisper`` with ``encoder_only=True`` or the project's
  :class:`~robust_brain.models.whisper.WhisperEncoder` (``encoder(wavs)``;
  every input padded to 30 s, so only the first ``ceil(N / 320)`` of 1500
  frames hold input, ``kind="whisper"``);
* a :class:`~robust_brain.models.asr.ConformerASR` (its ``encode``;
  ``kind="conformer"``);
* any ``encoder(wavs, wav_lens) -> (batch, frames, dim)`` whose frames
  scale with the relative length (``kind="frames"``).

``kind="auto"`` tells them apart by type, so the encoder is swapped by
editing its ``!new:`` block in the hparams and nothing else.

Authors
 * robust_brain contributors 2026
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from robust_brain.models.asr import freeze, require_input_gradient

__all__ = ["ENCODER_KINDS", "EncoderFeatures", "detect_encoder_kind"]

#: how valid frames are counted (``auto``: from the encoder's type)
ENCODER_KINDS = ("auto", "ssl", "whisper", "conformer", "frames")


def detect_encoder_kind(encoder: torch.nn.Module) -> str:
    """The :data:`ENCODER_KINDS` entry of an encoder, from its type.

    Arguments
    ---------
    encoder : torch.nn.Module

    Returns
    -------
    str

    Example
    -------
    >>> detect_encoder_kind(torch.nn.Linear(80, 8))
    'frames'
    """
    name = type(encoder).__name__.lower()
    if "whisper" in name:
        return "whisper"
    if hasattr(encoder, "encode") and hasattr(encoder, "asr_model"):
        return "conformer"
    model = getattr(encoder, "model", None)
    if hasattr(model, "_get_feat_extract_output_lengths"):
        return "ssl"
    return "frames"


class EncoderFeatures(torch.nn.Module):
    """A frozen encoder's features of chosen layers and their frame mask.

    Arguments
    ---------
    encoder : torch.nn.Module
        See the module docstring. Build SpeechBrain's HF wrappers with
        ``freeze=False``: ``freeze=True`` runs the forward under
        ``torch.no_grad()`` and no gradient would reach the input.
    kind : str
        One of :data:`ENCODER_KINDS`.
    layers : sequence of int, optional
        Hidden-state indices (the wrapper must output all hidden states);
        None: the final output.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> class Frames(torch.nn.Module):  # a toy encoder: 80-sample frames
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = torch.nn.Linear(80, 8)
    ...     def forward(self, wavs, wav_lens=None):
    ...         return self.proj(wavs.unfold(1, 80, 80))
    >>> enc = EncoderFeatures(Frames()).freeze()
    >>> enc.kind
    'frames'
    >>> feats = enc(torch.randn(2, 800), torch.tensor([1.0, 0.5]))
    >>> [tuple(f.shape) for f in feats]
    [(2, 10, 8)]
    >>> enc.frame_mask(torch.tensor([1.0, 0.5]), 800, 10).sum(-1)
    tensor([10.,  5.])
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        kind: str = "auto",
        layers: Sequence[int] | None = None,
    ):
        super().__init__()
        if kind not in ENCODER_KINDS:
            raise ValueError(
                f"unknown encoder kind {kind!r}; choose one of {ENCODER_KINDS}"
            )
        require_input_gradient(encoder, "encoder")
        self.encoder = encoder
        self.kind = detect_encoder_kind(encoder) if kind == "auto" else kind
        self.layers = None if layers is None else [int(i) for i in layers]
        if self.layers is not None and not self.layers:
            raise ValueError("layers: give at least one index, or null")
        if self.layers is not None and self.kind == "conformer":
            raise ValueError(
                "layers: a ConformerASR encoder gives its final output only"
            )
        if self.layers is not None and not getattr(
            encoder, "output_all_hiddens", True
        ):
            raise ValueError(
                f"layers={self.layers} needs the encoder wrapper built with "
                "output_all_hiddens=True"
            )

    def freeze(self):
        """Frozen but differentiable: eval mode, no parameter gradients
        (re-apply at every stage start: ``Brain.fit`` calls ``train()``)."""
        freeze(self.encoder)
        return self

    def forward(self, wavs, lengths):
        """One ``(batch, frames, dim)`` float tensor per chosen layer.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)``.
        lengths : torch.Tensor
            Relative lengths.

        Returns
        -------
        list of torch.Tensor
        """
        if self.kind == "conformer":
            out = self.encoder.encode(wavs, lengths)
        elif self.kind == "whisper":
            out = self.encoder(wavs)
        else:
            out = self.encoder(wavs, lengths)
        if isinstance(out, tuple | list):
            out = out[0]
        if self.layers is None:
            feats = [out[-1] if out.dim() == 4 else out]
        else:
            if out.dim() != 4:
                raise ValueError(
                    f"layers={self.layers}: the encoder returned one layer "
                    f"{tuple(out.shape)}; build it with output_all_hiddens"
                )
            feats = [out[i] for i in self.layers]
        return [f.float() for f in feats]

    def frame_mask(self, lengths, n_samples: int, n_frames: int):
        """``(batch, n_frames)`` mask of the encoder frames that hold input.

        Arguments
        ---------
        lengths : torch.Tensor
            Relative lengths of the waveforms.
        n_samples : int
            Padded waveform length.
        n_frames : int
            Encoder frames.

        Returns
        -------
        torch.Tensor
        """
        samples = torch.round(lengths.float() * n_samples)
        if self.kind == "whisper":
            valid = torch.ceil(samples / 320.0).clamp(max=1500)
        elif self.kind == "ssl":
            model = self.encoder.model
            valid = model._get_feat_extract_output_lengths(samples.long())
            valid = valid.float()
        else:
            valid = torch.round(lengths.float() * n_frames)
        valid = valid.clamp(1, n_frames)
        pos = torch.arange(n_frames, device=lengths.device).unsqueeze(0)
        return (pos < valid.unsqueeze(1)).float()
