"""Signal-level losses shared by the recipes.

D4AM's regression loss (docs/methods.md): for an estimate ``s_hat`` and a
clean reference ``s``::

    l(s_hat, s) = mean|s_hat - s| + 0.5 * L_sc + 0.5 * L_logmag

with the spectral convergence ``L_sc`` and the log-magnitude L1 ``L_logmag``
each averaged over three STFT resolutions (n_fft, hop, win) = (1024, 120,
600), (2048, 240, 1200), (512, 50, 240) with a Hann window.

SpeechBrain's ``lobes.models.HifiGAN.MultiScaleSTFTLoss`` has the same idea
but calls ``torch.stft`` without ``return_complex`` (an error on torch 2.x)
and without a window, so it is written here; padded samples (SpeechBrain
relative ``lengths``) are excluded from every term.

:func:`level_normalise` brings signals to one level over their valid
samples before an encoder compares them (GPIT's L_AE).

Permutation-invariant training: :func:`sisdr_pit` (SpeechBrain's
``PitWrapper`` with ``cal_si_snr``), :func:`best_permutations` of any
pairwise loss matrix and :func:`reorder_sources`.
"""

import itertools

import torch
from speechbrain.nnet.losses import PitWrapper, cal_si_snr

#: D4AM's three STFT resolutions: (n_fft, hop_length, win_length)
D4AM_RESOLUTIONS = ((1024, 120, 600), (2048, 240, 1200), (512, 50, 240))


def length_mask(
    lengths: torch.Tensor | None, n: int, like: torch.Tensor | None = None
):
    """``(batch, n)`` float mask of valid samples (relative lengths).

    Arguments
    ---------
    lengths : torch.Tensor or None
        Relative lengths in [0, 1]; None means all valid.
    n : int
        Number of time steps.
    like : torch.Tensor, optional
        Tensor giving batch size, device and dtype (default: float32 on
        the device of ``lengths``; needed when ``lengths`` is None).

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> length_mask(torch.tensor([1.0, 0.5]), 4, torch.zeros(2, 4))
    tensor([[1., 1., 1., 1.],
            [1., 1., 0., 0.]])
    >>> length_mask(torch.tensor([0.25]), 4)
    tensor([[1., 0., 0., 0.]])
    """
    if like is None:
        if lengths is None:
            raise ValueError("length_mask: lengths=None needs `like`")
        like = torch.empty(0, device=lengths.device)
    if lengths is None:
        return torch.ones(
            like.shape[0], n, device=like.device, dtype=like.dtype
        )
    abs_len = torch.round(lengths.to(like.device).float() * n)
    steps = torch.arange(n, device=like.device)
    return (steps.unsqueeze(0) < abs_len.unsqueeze(1)).to(like.dtype)


class MultiResolutionSTFTLoss(torch.nn.Module):
    """Spectral convergence + log-magnitude L1 over several resolutions.

    Per utterance, frames beyond its length are excluded; the result is
    averaged over utterances and resolutions.

    Arguments
    ---------
    resolutions : sequence of (n_fft, hop_length, win_length)
        Default: D4AM's three resolutions.
    eps : float
        Floor of the magnitudes (log and division safety).

    Example
    -------
    >>> loss = MultiResolutionSTFTLoss()
    >>> x = torch.randn(2, 16000)
    >>> sc, mag = loss(x, x)
    >>> float(sc), float(mag)
    (0.0, 0.0)
    >>> sc, mag = loss(0.5 * x, x)
    >>> round(float(mag), 3)  # |log 0.5|
    0.693
    """

    def __init__(self, resolutions=D4AM_RESOLUTIONS, eps: float = 1e-7):
        super().__init__()
        self.resolutions = tuple(tuple(r) for r in resolutions)
        self.eps = eps
        for i, (_, _, win) in enumerate(self.resolutions):
            self.register_buffer(
                f"window{i}", torch.hann_window(win), persistent=False
            )

    def _magnitude(self, x, i):
        n_fft, hop, win = self.resolutions[i]
        spec = torch.stft(
            x.float(),
            n_fft,
            hop_length=hop,
            win_length=win,
            window=getattr(self, f"window{i}"),
            center=True,
            return_complex=True,
        )
        return spec.abs().clamp_min(self.eps).transpose(1, 2)  # (B, T, F)

    def forward(self, estimate, target, lengths=None):
        """Return ``(spectral_convergence, log_magnitude_l1)``.

        Arguments
        ---------
        estimate, target : torch.Tensor
            ``(batch, time)`` waveforms.
        lengths : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        sc, mag : torch.Tensor
            0-dim losses.
        """
        sc_total, mag_total = 0.0, 0.0
        for i in range(len(self.resolutions)):
            est, ref = self._magnitude(estimate, i), self._magnitude(target, i)
            mask = length_mask(lengths, est.shape[1], est).unsqueeze(-1)
            diff = (ref - est) * mask
            sc = diff.pow(2).sum((1, 2)).sqrt() / (
                (ref * mask).pow(2).sum((1, 2)).sqrt().clamp_min(self.eps)
            )
            n_bins = (mask.sum((1, 2)) * est.shape[2]).clamp_min(1.0)
            mag = ((ref.log() - est.log()).abs() * mask).sum((1, 2)) / n_bins
            sc_total = sc_total + sc.mean()
            mag_total = mag_total + mag.mean()
        n = len(self.resolutions)
        return sc_total / n, mag_total / n


class D4AMRegressionLoss(torch.nn.Module):
    """D4AM's regression loss ``L1 + w_sc * L_sc + w_mag * L_logmag``.

    Arguments
    ---------
    sc_weight : float
        Weight of the spectral convergence (0.5).
    mag_weight : float
        Weight of the log-magnitude L1 (0.5).
    resolutions : sequence of (n_fft, hop_length, win_length)
        STFT resolutions (D4AM's by default).

    Example
    -------
    >>> loss = D4AMRegressionLoss()
    >>> x = torch.randn(3, 8000)
    >>> float(loss(x, x))
    0.0
    >>> bool(loss(x + 0.1 * torch.randn(3, 8000), x) > 0)
    True
    """

    def __init__(
        self,
        sc_weight: float = 0.5,
        mag_weight: float = 0.5,
        resolutions=D4AM_RESOLUTIONS,
    ):
        super().__init__()
        self.sc_weight = sc_weight
        self.mag_weight = mag_weight
        self.stft_loss = MultiResolutionSTFTLoss(resolutions)

    def forward(self, estimate, target, lengths=None):
        """Loss between ``(batch, time)`` waveforms (padding excluded).

        Arguments
        ---------
        estimate, target : torch.Tensor
        lengths : torch.Tensor, optional

        Returns
        -------
        torch.Tensor
        """
        mask = length_mask(lengths, estimate.shape[-1], estimate.float())
        l1 = ((estimate.float() - target.float()).abs() * mask).sum(
            -1
        ) / mask.sum(-1).clamp_min(1.0)
        sc, mag = self.stft_loss(estimate, target, lengths)
        return l1.mean() + self.sc_weight * sc + self.mag_weight * mag


#: level normalisations applied to estimate and reference before encoding
NORMALISATIONS = ("rms", "peak", "none")


def level_normalise(wavs, lengths=None, method: str = "rms", eps=1e-8):
    """Scale each signal to a fixed level over its valid samples; zero the
    padding.

    Arguments
    ---------
    wavs : torch.Tensor
        ``(batch, time)``.
    lengths : torch.Tensor, optional
        Relative lengths (default: all valid).
    method : str
        ``rms`` (zero mean, unit RMS), ``peak`` (unit peak) or ``none``
        (padding zeroed only).
    eps : float
        Floor of the level.

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.tensor([[1.0, 3.0, 100.0]])
    >>> level_normalise(x, torch.tensor([2 / 3])).tolist()  # padding zeroed
    [[-1.0, 1.0, 0.0]]
    >>> level_normalise(x, method="peak")
    tensor([[0.0100, 0.0300, 1.0000]])
    """
    if method not in NORMALISATIONS:
        raise ValueError(
            f"unknown normalisation {method!r}; choose one of {NORMALISATIONS}"
        )
    if lengths is None:
        lengths = torch.ones(wavs.shape[0], device=wavs.device)
    mask = length_mask(lengths, wavs.shape[-1]).to(wavs.dtype)
    wavs = wavs * mask
    if method == "none":
        return wavs
    count = mask.sum(-1, keepdim=True).clamp_min(1.0)
    if method == "peak":
        peak = wavs.abs().amax(-1, keepdim=True).clamp_min(eps)
        return wavs / peak
    mean = wavs.sum(-1, keepdim=True) / count
    centred = (wavs - mean) * mask
    rms = (centred.pow(2).sum(-1, keepdim=True) / count).sqrt()
    return centred / rms.clamp_min(eps) + 0.0  # no -0.0 in the padding


def _pit():
    return PitWrapper(cal_si_snr)


def sisdr_pit(estimates, references, lengths=None):
    """Utterance-level PIT SI-SDR loss (SpeechBrain's ``PitWrapper`` with
    ``cal_si_snr``) and the best permutation.

    Arguments
    ---------
    estimates, references : torch.Tensor
        ``(batch, time, sources)``; the padding of the estimates is zeroed.
    lengths : torch.Tensor, optional
        Relative lengths.

    Returns
    -------
    loss : torch.Tensor
        ``(batch,)`` negative SI-SDR (dB), mean over sources.
    perms : list of tuple
        ``perms[b][c]``: the estimate assigned to reference ``c``.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> refs = torch.randn(1, 800, 2)
    >>> est = refs[..., [1, 0]] + 0.1 * torch.randn(1, 800, 2)
    >>> loss, perms = sisdr_pit(est, refs)
    >>> perms, bool(loss < -15)
    ([(1, 0)], True)
    """
    if lengths is not None:
        mask = length_mask(lengths, estimates.shape[1]).to(estimates.dtype)
        estimates = estimates * mask.unsqueeze(-1)
    return _pit()(estimates, references)


def reorder_sources(estimates, perms):
    """``out[b, :, c] = estimates[b, :, perms[b][c]]`` (differentiable).

    Arguments
    ---------
    estimates : torch.Tensor
        ``(batch, ..., sources)``.
    perms : sequence of tuple

    Returns
    -------
    torch.Tensor

    Example
    -------
    >>> x = torch.arange(4.0).view(1, 2, 2)
    >>> reorder_sources(x, [(1, 0)])
    tensor([[[1., 0.],
             [3., 2.]]])
    """
    index = torch.as_tensor(
        [list(p) for p in perms], device=estimates.device, dtype=torch.long
    )
    shape = [index.shape[0]] + [1] * (estimates.dim() - 2) + [index.shape[1]]
    index = index.view(shape).expand(*estimates.shape[:-1], index.shape[1])
    return torch.gather(estimates, -1, index)


def best_permutations(pairwise):
    """Permutations minimising the summed pairwise loss.

    Arguments
    ---------
    pairwise : torch.Tensor
        ``(batch, refs, estimates)``: ``pairwise[b, c, k]`` = loss of
        estimate ``k`` against reference ``c``.

    Returns
    -------
    loss : torch.Tensor
        ``(batch,)`` mean over sources under the best permutation
        (differentiable).
    perms : list of tuple
        ``perms[b][c]``: the estimate assigned to reference ``c``.

    Example
    -------
    >>> d = torch.tensor([[[5.0, 1.0], [2.0, 7.0]]])
    >>> loss, perms = best_permutations(d)
    >>> perms, loss
    ([(1, 0)], tensor([1.5000]))
    """
    batch, c, _ = pairwise.shape
    candidates = list(itertools.permutations(range(c)))
    idx = torch.as_tensor(candidates, device=pairwise.device)  # (P, C)
    rows = torch.arange(c, device=pairwise.device)
    totals = pairwise[:, rows, idx].mean(-1)  # (batch, P)
    best = totals.detach().argmin(-1)
    loss = totals[torch.arange(batch, device=pairwise.device), best]
    return loss, [candidates[int(i)] for i in best]
