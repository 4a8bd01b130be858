"""SE front-ends of the joint recipes (GR).

:func:`make_front_end` builds the front-end chosen by one hparam
(``front_end``: the BLSTM mask network or DEMUCS);
:class:`ResampledEnhancer` applies a front-end trained at another rate
(8 kHz RATS) to 16 kHz signals.
"""

from __future__ import annotations

import torch

__all__ = ["make_front_end", "ResampledEnhancer"]


def make_front_end(
    kind: str = "mask",
    n_fft: int = 512,
    hop_length: int = 256,
    mask_layers: int = 3,
    mask_units: int = 896,
    mask_dropout: float = 0.5,
    mask: str = "relu",
    mask_max: float | None = None,
    input_norm: str = "utterance",
    demucs_hidden: int = 48,
    demucs_depth: int = 5,
    demucs_resample: int = 4,
    demucs_causal: bool = True,
) -> torch.nn.Module:
    """The SE front-end chosen by one hparam (``front_end``).

    Arguments
    ---------
    kind : str
        ``mask``: :class:`~robust_brain.models.mask_net.MaskNet` (the
        paper's); ``demucs``: :class:`~robust_brain.models.demucs.Demucs`
        (D4AM's enhancer; the SE loss then takes the STFT of its output).
    n_fft, hop_length, mask_layers, mask_units, mask_dropout, mask,
    mask_max, input_norm :
        MaskNet settings (``num_layers``, ``hidden_size``, ``dropout``...).
    demucs_hidden, demucs_depth, demucs_resample, demucs_causal :
        Demucs settings.

    Returns
    -------
    torch.nn.Module

    Example
    -------
    >>> type(make_front_end("mask", mask_layers=1, mask_units=4)).__name__
    'MaskNet'
    >>> type(make_front_end("demucs", demucs_hidden=4, demucs_depth=2,
    ...                     demucs_resample=1)).__name__
    'Demucs'
    >>> make_front_end("conv-tasnet")
    Traceback (most recent call last):
    ...
    ValueError: unknown front_end 'conv-tasnet'; choose mask or demucs
    """
    key = str(kind).lower()
    if key == "mask":
        from robust_brain.models.mask_net import MaskNet

        return MaskNet(
            n_fft=n_fft,
            hop_length=hop_length,
            num_layers=mask_layers,
            hidden_size=mask_units,
            dropout=mask_dropout,
            mask=mask,
            mask_max=mask_max,
            input_norm=input_norm,
        )
    if key == "demucs":
        from robust_brain.models.demucs import Demucs

        return Demucs(
            hidden=demucs_hidden,
            depth=demucs_depth,
            resample=demucs_resample,
            causal=demucs_causal,
        )
    raise ValueError(f"unknown front_end {kind!r}; choose mask or demucs")


class ResampledEnhancer(torch.nn.Module):
    """A front-end trained at ``model_rate`` applied to 16 kHz signals.

    The evaluation runs at 16 kHz (the unseen recognisers' rate); an 8 kHz
    system (RATS) gets its input resampled to ``model_rate`` and its output
    back to 16 kHz, at the input's length.

    Arguments
    ---------
    enhancer : torch.nn.Module
        ``enhancer(wavs, lengths)`` at ``model_rate``.
    model_rate : int
    rate : int
        The rate of the signals around it (16000).

    Example
    -------
    >>> f = ResampledEnhancer(lambda w, n: 2 * w, model_rate=8000)
    >>> x = torch.sin(torch.arange(1600) * 0.05).unsqueeze(0)
    >>> y = f(x, torch.ones(1))
    >>> y.shape, bool((y[0, 100:-100] - 2 * x[0, 100:-100]).abs().max() < 0.05)
    (torch.Size([1, 1600]), True)
    """

    def __init__(self, enhancer, model_rate: int, rate: int = 16000):
        super().__init__()
        self.enhancer = enhancer
        self.model_rate = int(model_rate)
        self.rate = int(rate)

    def forward(self, wavs, lengths):
        import torchaudio

        n = wavs.shape[-1]
        low = torchaudio.functional.resample(wavs, self.rate, self.model_rate)
        out = self.enhancer(low, lengths)
        out = torchaudio.functional.resample(out, self.model_rate, self.rate)
        if out.shape[-1] >= n:
            return out[..., :n]
        return torch.nn.functional.pad(out, (0, n - out.shape[-1]))
