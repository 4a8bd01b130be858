"""Front-end wrappers.

:class:`ResampledEnhancer` applies a front-end trained at another rate
(8 kHz RATS, a separator on WHAMR!'s 8 kHz track) to 16 kHz signals.
The front-ends themselves (the BLSTM mask network, DEMUCS) are ``!new:``
blocks of the hparams.
"""

from __future__ import annotations

import torch

__all__ = ["ResampledEnhancer"]


class ResampledEnhancer(torch.nn.Module):
    """A front-end trained at ``model_rate`` applied to 16 kHz signals.

    The evaluation runs at 16 kHz (the unseen recognisers' rate); an 8 kHz
    system (RATS) gets its input resampled to ``model_rate`` and its output
    back to 16 kHz, at the input's length. A separator's output
    ``(batch, time, sources)`` is resampled stream by stream.

    Arguments
    ---------
    enhancer : torch.nn.Module
        ``enhancer(wavs, lengths)`` at ``model_rate``: ``(batch, time)``,
        or ``(batch, time, sources)`` for a separator.
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
    >>> sep = ResampledEnhancer(lambda w, n: torch.stack([w, -w], -1), 8000)
    >>> z = sep(x.repeat(2, 1), torch.ones(2))
    >>> z.shape, bool((z[1, 100:-100, 1] + x[0, 100:-100]).abs().max() < 0.05)
    (torch.Size([2, 1600, 2]), True)
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
        streams = out.dim() == 3  # a separator: time before the sources
        if streams:
            out = out.transpose(1, 2).contiguous()
        out = torchaudio.functional.resample(out, self.model_rate, self.rate)
        if out.shape[-1] >= n:
            out = out[..., :n]
        else:
            out = torch.nn.functional.pad(out, (0, n - out.shape[-1]))
        return out.transpose(1, 2) if streams else out
