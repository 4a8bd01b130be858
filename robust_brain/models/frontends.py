"""Front-end wrappers of the joint recipes (GR).

:class:`ResampledEnhancer` applies a front-end trained at another rate
(8 kHz RATS) to 16 kHz signals. The front-ends themselves (the BLSTM mask
network, DEMUCS) are ``!new:`` blocks of the hparams.
"""

from __future__ import annotations

import torch

__all__ = ["ResampledEnhancer"]


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
