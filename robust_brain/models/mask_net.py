"""Gradient Remedy's SE front-end: a BLSTM STFT-magnitude mask network.

:class:`MaskNet` is the ``tf_masking1`` model of the official GR code
(docs/methods.md, GR set-up and losses): STFT of the noisy waveform,
normalised log-magnitude features, a stack of bidirectional LSTMs,
dropout, a linear layer to one value per frequency bin and a mask
activation; the mask multiplies the noisy complex spectrum (the noisy
phase is kept) and the waveform comes back by iSTFT, so the recogniser
behind it reads a WAVEFORM.

Deviations (all hparams): the official code normalises ``|Y|`` with a
precomputed CMVN pickle that is not distributed; here the input is
``log(|Y| + eps)`` normalised per utterance (mean and variance over the
valid frames of each bin, ``input_norm="utterance"``) or left as is
(``"none"``). The official mask is an unbounded ReLU (``mask="relu"``); a
bounded ``mask="sigmoid"`` (times ``mask_max``) is offered too.

:class:`MagnitudeLoss` is the official SE loss ("magnitude3"): squared
error between the estimated and the clean STFT magnitudes, summed over
frequency and time, divided by each utterance's number of frames and
averaged over the batch.

Authors
 * robust_brain contributors
"""

from __future__ import annotations

import torch

__all__ = ["MaskNet", "MagnitudeLoss", "frame_lengths", "stft_magnitude"]

MASKS = ("relu", "sigmoid")


def frame_lengths(
    lengths: torch.Tensor | None, n_samples: int, hop_length: int, n_frames
) -> torch.Tensor:
    """Valid STFT frames (``center=True``) of each item.

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths in [0, 1] (SpeechBrain convention); None: all 1.
    n_samples : int
        Padded number of samples.
    hop_length : int
        STFT hop.
    n_frames : int
        Frames of the padded signal (the upper bound).

    Returns
    -------
    torch.Tensor
        Long tensor ``(batch,)`` of frame counts, at least 1.

    Example
    -------
    >>> frame_lengths(torch.tensor([1.0, 0.5]), 1024, 256, 5).tolist()
    [5, 3]
    """
    if lengths is None:
        return torch.tensor([n_frames])
    samples = torch.round(lengths.float() * n_samples).long()
    return (samples // hop_length + 1).clamp(1, n_frames)


def stft_magnitude(
    wavs: torch.Tensor, n_fft: int, hop_length: int, window: torch.Tensor
) -> torch.Tensor:
    """``|STFT|`` as ``(batch, frames, freq)`` (``center=True``, Hann).

    Arguments
    ---------
    wavs : torch.Tensor
        ``(batch, time)``.
    n_fft, hop_length : int
    window : torch.Tensor
        Analysis window.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> stft_magnitude(torch.zeros(2, 1024), 512, 256,
    ...                torch.hann_window(512)).shape
    torch.Size([2, 5, 257])
    """
    spec = torch.stft(
        wavs.float(),
        n_fft,
        hop_length,
        window=window.to(wavs.device),
        center=True,
        return_complex=True,
    )
    return spec.abs().transpose(1, 2)


class MaskNet(torch.nn.Module):
    """BLSTM magnitude-mask enhancer with an iSTFT waveform output.

    Arguments
    ---------
    n_fft : int
        FFT size and window length (512 in the official code).
    hop_length : int
        Hop (256 in the official code, at 8 kHz).
    num_layers : int
        BLSTM layers (3).
    hidden_size : int
        Units per direction (896).
    dropout : float
        Between the BLSTM layers and before the output layer (0.5).
    mask : str
        ``"relu"`` (official, unbounded unless ``mask_max``) or
        ``"sigmoid"`` (bounded in ``[0, mask_max]``).
    mask_max : float, optional
        Upper bound of the mask: the sigmoid's scale (default 1.0), or a
        clamp of the ReLU (default none).
    input_norm : str
        ``"utterance"``: log-magnitude features normalised per utterance
        and bin over the valid frames; ``"none"``: raw log-magnitude.
    eps : float
        Floor inside the log.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> net = MaskNet(n_fft=64, hop_length=16, num_layers=1, hidden_size=8,
    ...               mask="sigmoid")
    >>> wav = torch.randn(2, 800)
    >>> out, mag, mask = net(wav, torch.tensor([1.0, 0.5]),
    ...                      return_magnitude=True)
    >>> out.shape, mag.shape
    (torch.Size([2, 800]), torch.Size([2, 51, 33]))
    >>> bool(out[1, 400:].abs().max() == 0)  # padding stays silent
    True
    >>> mask = mask.detach()
    >>> 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    True
    >>> net.n_params > 0
    True
    """

    #: the forward can return the estimated magnitude (for the SE loss)
    returns_magnitude = True

    def __init__(
        self,
        n_fft: int = 512,
        hop_length: int = 256,
        num_layers: int = 3,
        hidden_size: int = 896,
        dropout: float = 0.5,
        mask: str = "relu",
        mask_max: float | None = None,
        input_norm: str = "utterance",
        eps: float = 1e-6,
    ):
        super().__init__()
        if mask not in MASKS:
            raise ValueError(f"MaskNet: mask must be one of {MASKS}: {mask!r}")
        if input_norm not in ("utterance", "none"):
            raise ValueError(
                f"MaskNet: input_norm must be utterance or none: {input_norm!r}"
            )
        if hop_length < 1 or n_fft < 2 or hop_length >= n_fft:
            raise ValueError(
                "MaskNet: need 1 <= hop_length < n_fft (overlapping Hann "
                f"windows for the iSTFT), got {hop_length}, {n_fft}"
            )
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.n_freq = self.n_fft // 2 + 1
        self.mask = mask
        self.mask_max = mask_max
        self.input_norm = input_norm
        self.eps = eps
        self.register_buffer(
            "window", torch.hann_window(self.n_fft), persistent=False
        )
        self.blstm = torch.nn.LSTM(
            self.n_freq,
            hidden_size,
            num_layers=num_layers,
            batch_first=True,
            bidirectional=True,
            dropout=dropout if num_layers > 1 else 0.0,
        )
        self.dropout = torch.nn.Dropout(dropout)
        self.linear = torch.nn.Linear(2 * hidden_size, self.n_freq)

    @property
    def config(self) -> dict:
        """Constructor arguments (to write a pretrained folder:
        :func:`robust_brain.inference.write_enhancer`).

        >>> net = MaskNet(n_fft=64, hop_length=16, num_layers=2, hidden_size=8)
        >>> MaskNet(**net.config).config == net.config
        True
        """
        return {
            "n_fft": self.n_fft,
            "hop_length": self.hop_length,
            "num_layers": self.blstm.num_layers,
            "hidden_size": self.blstm.hidden_size,
            "dropout": self.dropout.p,
            "mask": self.mask,
            "mask_max": self.mask_max,
            "input_norm": self.input_norm,
            "eps": self.eps,
        }

    @property
    def n_params(self) -> int:
        """Number of parameters."""
        return sum(p.numel() for p in self.parameters())

    def _features(self, mag, frames):
        feats = torch.log(mag + self.eps)
        if self.input_norm == "none":
            return feats
        valid = (
            torch.arange(mag.shape[1], device=mag.device)[None, :]
            < frames.to(mag.device)[:, None]
        ).to(feats.dtype)[..., None]
        n = valid.sum(1, keepdim=True).clamp_min(1.0)
        mean = (feats * valid).sum(1, keepdim=True) / n
        var = ((feats - mean).pow(2) * valid).sum(1, keepdim=True) / n
        return (feats - mean) / (var + 1e-5).sqrt() * valid

    def _mask(self, x):
        if self.mask == "sigmoid":
            top = 1.0 if self.mask_max is None else float(self.mask_max)
            return top * torch.sigmoid(x)
        m = torch.relu(x)
        if self.mask_max is not None:
            m = m.clamp(max=float(self.mask_max))
        return m

    def forward(
        self,
        wavs: torch.Tensor,
        lengths: torch.Tensor | None = None,
        return_magnitude: bool = False,
    ):
        """Enhance a batch of waveforms.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)`` noisy waveforms.
        lengths : torch.Tensor, optional
            Relative lengths; samples past each length are zero in the
            output, frames past it are zero in the mask.
        return_magnitude : bool
            Also return the masked magnitude ``M * |Y|`` and the mask,
            ``(batch, frames, freq)`` each.

        Returns
        -------
        torch.Tensor or (torch.Tensor, torch.Tensor, torch.Tensor)
            The enhanced waveform ``(batch, time)`` [, magnitude, mask].
        """
        wavs = wavs.float()
        n = wavs.shape[-1]
        spec = torch.stft(
            wavs,
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            return_complex=True,
        )  # (batch, freq, frames)
        mag = spec.abs().transpose(1, 2)  # (batch, frames, freq)
        frames = frame_lengths(lengths, n, self.hop_length, mag.shape[1])
        frames = frames.expand(mag.shape[0])
        feats = self._features(mag, frames)
        packed = torch.nn.utils.rnn.pack_padded_sequence(
            feats, frames.cpu(), batch_first=True, enforce_sorted=False
        )
        out, _ = self.blstm(packed)
        out, _ = torch.nn.utils.rnn.pad_packed_sequence(
            out, batch_first=True, total_length=mag.shape[1]
        )
        mask = self._mask(self.linear(self.dropout(out)))
        valid = (
            torch.arange(mag.shape[1], device=mag.device)[None, :]
            < frames.to(mag.device)[:, None]
        )
        mask = mask * valid[..., None].to(mask.dtype)
        est = torch.istft(
            spec * mask.transpose(1, 2),
            self.n_fft,
            self.hop_length,
            window=self.window,
            center=True,
            length=n,
        )
        if lengths is not None:
            keep = torch.arange(n, device=est.device)[None, :] < torch.round(
                lengths.to(est.device).float() * n
            ).unsqueeze(1)
            est = est * keep.to(est.dtype)
        if return_magnitude:
            return est, mask * mag, mask
        return est


class MagnitudeLoss(torch.nn.Module):
    """GR's SE loss: ``(1/B) sum_b (1/T_b) sum_{t,f} (|X^_b| - |S_b|)^2``.

    The estimated magnitude is the mask network's ``M * |Y|`` when given
    (the official computation), else ``|STFT(estimate)|`` (any waveform
    front-end, e.g. DEMUCS). Frames past each utterance's length are left
    out.

    Arguments
    ---------
    n_fft, hop_length : int
        STFT of the clean reference (the mask network's own settings).

    Example
    -------
    >>> loss = MagnitudeLoss(n_fft=64, hop_length=16)
    >>> clean = torch.randn(2, 800)
    >>> float(loss(clean, clean, torch.ones(2)))
    0.0
    >>> float(loss(0 * clean, clean, torch.ones(2))) > 0
    True
    """

    def __init__(self, n_fft: int = 512, hop_length: int = 256):
        super().__init__()
        self.n_fft = int(n_fft)
        self.hop_length = int(hop_length)
        self.register_buffer(
            "window", torch.hann_window(self.n_fft), persistent=False
        )

    def forward(self, estimate, clean, lengths=None, estimate_magnitude=None):
        """The loss (0-dim).

        Arguments
        ---------
        estimate : torch.Tensor
            ``(batch, time)`` enhanced waveform.
        clean : torch.Tensor
            ``(batch, time)`` clean reference.
        lengths : torch.Tensor, optional
            Relative lengths.
        estimate_magnitude : torch.Tensor, optional
            ``(batch, frames, freq)`` estimated magnitude (used instead of
            the STFT of ``estimate``).

        Returns
        -------
        torch.Tensor
        """
        ref = stft_magnitude(clean, self.n_fft, self.hop_length, self.window)
        est = estimate_magnitude
        if est is None:
            est = stft_magnitude(
                estimate, self.n_fft, self.hop_length, self.window
            )
        if est.shape != ref.shape:
            raise ValueError(
                f"MagnitudeLoss: estimate {tuple(est.shape)} and clean "
                f"{tuple(ref.shape)} magnitudes differ (same STFT settings "
                "as the front-end?)"
            )
        frames = frame_lengths(
            lengths, clean.shape[-1], self.hop_length, ref.shape[1]
        ).to(ref.device)
        frames = frames.expand(ref.shape[0])
        valid = (
            torch.arange(ref.shape[1], device=ref.device)[None, :]
            < frames[:, None]
        ).to(ref.dtype)
        err = (est.float() - ref).pow(2).sum(-1)  # (batch, frames)
        per_utt = (err * valid).sum(1) / frames.to(ref.dtype)
        return per_utt.mean()
