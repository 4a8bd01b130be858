"""DEMUCS waveform speech enhancer (the "denoiser" architecture family).

A U-Net of strided 1-D convolutions over the raw waveform with an LSTM
bottleneck, as described by Defossez et al., "Real Time Speech Enhancement
in the Waveform Domain" (Interspeech 2020). The defaults give the causal
"dns48" configuration that D4AM fine-tunes (docs/methods.md, D4AM set-up).

This is an independent implementation. Its parameter names follow the
layout of the public ``facebookresearch/denoiser`` checkpoints
(``encoder.{i}.0``, ``encoder.{i}.2``, ``decoder.{i}.0``, ``decoder.{i}.2``,
``lstm.lstm``, ``lstm.linear``), so that such a ``state_dict`` loads with
``load_state_dict``. The fixed resampling filters are non-persistent
buffers and do not appear in the ``state_dict``. The resampler is our own
single-stage windowed-sinc design (see :func:`sinc_upsample`), so outputs
of a loaded checkpoint differ slightly from the reference implementation,
which uses two cascaded half-band stages.

Authors
 * robust_brain contributors
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "Demucs",
    "count_parameters",
    "load_enhancer_weights",
    "rescale_conv_weights_",
    "sinc_downsample",
    "sinc_upsample",
]


def count_parameters(module: nn.Module, trainable_only: bool = False) -> int:
    """Number of scalar parameters of a module.

    Arguments
    ---------
    module : torch.nn.Module
        Any module.
    trainable_only : bool
        If True, count only parameters with ``requires_grad``.

    Returns
    -------
    int
        Total number of parameter elements.

    Example
    -------
    >>> count_parameters(torch.nn.Linear(3, 2))
    8
    """
    return sum(
        p.numel()
        for p in module.parameters()
        if p.requires_grad or not trainable_only
    )


# ---------------------------------------------------------------------------
# Windowed-sinc resampling by an integer factor
# ---------------------------------------------------------------------------


def _windowed_sinc(tau: torch.Tensor, half_width: float) -> torch.Tensor:
    """Ideal low-pass kernel ``sinc(tau)`` tapered by a Hann window that is
    zero for ``|tau| >= half_width`` (``tau`` in low-rate sample units)."""
    window = torch.cos(math.pi * tau / (2.0 * half_width)) ** 2
    window = torch.where(tau.abs() < half_width, window, 0.0)
    return torch.sinc(tau) * window


def _upsample_filters(factor: int, zeros: int) -> torch.Tensor:
    """Polyphase interpolation filters, shape ``(factor, 1, 2 * zeros + 1)``.

    Row ``p`` computes the output sample located ``p / factor`` input
    samples after input sample ``n`` from the inputs ``n - zeros`` ...
    ``n + zeros``. Row 0 is an exact identity (the original samples are
    kept), the other rows use the ``2 * zeros`` nearest inputs and are
    normalised to unit DC gain.
    """
    taps = torch.arange(-zeros, zeros + 1, dtype=torch.float64)
    rows = []
    for phase in range(factor):
        if phase == 0:
            row = (taps == 0).to(torch.float64)
        else:
            row = _windowed_sinc(taps - phase / factor, zeros)
            row = row / row.sum()
        rows.append(row)
    return torch.stack(rows).unsqueeze(1).to(torch.float32)


def _downsample_filter(factor: int, zeros: int) -> torch.Tensor:
    """Anti-aliasing low-pass (cut-off at the low-rate Nyquist), shape
    ``(1, 1, 2 * factor * zeros - 1)``, unit DC gain."""
    taps = torch.arange(
        -(factor * zeros - 1), factor * zeros, dtype=torch.float64
    )
    kernel = _windowed_sinc(taps / factor, zeros)
    kernel = kernel / kernel.sum()
    return kernel.view(1, 1, -1).to(torch.float32)


def _apply_upsample(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    batch, channels, time = x.shape
    factor = filters.shape[0]
    zeros = (filters.shape[-1] - 1) // 2
    flat = x.reshape(batch * channels, 1, time)
    phases = F.conv1d(flat, filters.to(x.dtype), padding=zeros)
    # (B*C, factor, T) -> interleave -> (B, C, T * factor)
    return phases.transpose(1, 2).reshape(batch, channels, time * factor)


def _apply_downsample(
    x: torch.Tensor, kernel: torch.Tensor, factor: int
) -> torch.Tensor:
    batch, channels, time = x.shape
    half = (kernel.shape[-1] - 1) // 2
    flat = x.reshape(batch * channels, 1, time)
    out = F.conv1d(flat, kernel.to(x.dtype), stride=factor, padding=half)
    return out.reshape(batch, channels, -1)


def sinc_upsample(x: torch.Tensor, factor: int, zeros: int = 32):
    """Upsample by an integer factor with a Hann-windowed sinc interpolator.

    The input is zero-padded at both ends. Every ``factor``-th output
    sample equals the corresponding input sample exactly. Each output
    depends on inputs at most ``zeros`` input samples in the future.

    Arguments
    ---------
    x : torch.Tensor
        Signal, shape ``(batch, channels, time)``.
    factor : int
        Upsampling factor (>= 1).
    zeros : int
        Half-width of the interpolation kernel, in input samples.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, channels, time * factor)``.

    Example
    -------
    >>> x = torch.randn(2, 1, 50)
    >>> y = sinc_upsample(x, 4)
    >>> y.shape
    torch.Size([2, 1, 200])
    >>> torch.equal(y[..., ::4], x)
    True
    """
    if factor == 1:
        return x
    filters = _upsample_filters(factor, zeros).to(x.device)
    return _apply_upsample(x, filters)


def sinc_downsample(x: torch.Tensor, factor: int, zeros: int = 32):
    """Low-pass filter (Hann-windowed sinc) and decimate by ``factor``.

    Output sample ``n`` depends on input samples ``factor * n - (factor *
    zeros - 1)`` ... ``factor * n + factor * zeros - 1`` (zero-padded
    outside the signal).

    Arguments
    ---------
    x : torch.Tensor
        Signal, shape ``(batch, channels, time)``.
    factor : int
        Decimation factor (>= 1).
    zeros : int
        Half-width of the kernel, in output (low-rate) samples.

    Returns
    -------
    torch.Tensor
        Shape ``(batch, channels, ceil(time / factor))``.

    Example
    -------
    >>> t = torch.arange(800) / 64000.0
    >>> x = torch.sin(2 * math.pi * 1000.0 * t).view(1, 1, -1)
    >>> y = sinc_downsample(sinc_upsample(x[..., ::4], 4), 4)
    >>> bool((y - x[..., ::4])[..., 40:-40].abs().max() < 1e-2)
    True
    """
    if factor == 1:
        return x
    kernel = _downsample_filter(factor, zeros).to(x.device)
    return _apply_downsample(x, kernel, factor)


# ---------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------


def rescale_conv_weights_(module: nn.Module, reference: float) -> None:
    """Shrink the initial weights of every Conv1d / ConvTranspose1d in place.

    Each layer's weight and bias are divided by ``sqrt(std / reference)``,
    where ``std`` is the standard deviation of that layer's initial weight,
    so that the new weight std is ``sqrt(std * reference)`` (Defossez et
    al., arXiv:1911.13254).

    Arguments
    ---------
    module : torch.nn.Module
        Module whose convolution layers are rescaled.
    reference : float
        Reference standard deviation (DEMUCS ``rescale``, 0.1).

    Example
    -------
    >>> conv = torch.nn.Conv1d(4, 4, 3)
    >>> before = conv.weight.std().item()
    >>> rescale_conv_weights_(conv, 0.1)
    >>> round(conv.weight.std().item() / math.sqrt(before * 0.1), 5)
    1.0
    """
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, nn.Conv1d | nn.ConvTranspose1d):
                scale = torch.sqrt(layer.weight.std() / reference)
                layer.weight.div_(scale)
                if layer.bias is not None:
                    layer.bias.div_(scale)


class _LSTMBottleneck(nn.Module):
    """Two-layer LSTM over ``(batch, channels, frames)``; bidirectional
    variants project the concatenated directions back to ``dim``."""

    def __init__(self, dim: int, layers: int = 2, bidirectional: bool = False):
        super().__init__()
        self.lstm = nn.LSTM(
            input_size=dim,
            hidden_size=dim,
            num_layers=layers,
            bidirectional=bidirectional,
            batch_first=True,
        )
        self.linear = nn.Linear(2 * dim, dim) if bidirectional else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, _ = self.lstm(x.transpose(1, 2))
        if self.linear is not None:
            y = self.linear(y)
        return y.transpose(1, 2)


class Demucs(nn.Module):
    """DEMUCS waveform-domain speech enhancer.

    The (optionally std-normalised) input is zero-padded to
    :meth:`valid_length`, upsampled by ``resample``, encoded by ``depth``
    blocks ``Conv1d(kernel_size, stride) -> ReLU -> Conv1d(1x1, 2x) -> GLU``,
    passed through a 2-layer LSTM (unidirectional when ``causal``, else
    bidirectional followed by a linear projection), decoded by the mirror
    blocks ``Conv1d(1x1, 2x) -> GLU -> ConvTranspose1d(kernel_size, stride)
    [-> ReLU except the last]`` with additive U-Net skip connections,
    downsampled, trimmed to the input length and multiplied back by the
    input std.

    With the defaults (the causal "dns48" model) it has **18,867,937**
    parameters (the paper's "~18.9 M"), and ``lookahead`` is 659 samples
    (41.2 ms at 16 kHz).

    Causality: with ``causal=True`` the output at sample ``t`` depends on
    the input up to sample ``t + lookahead`` only; the lookahead comes from
    the convolution receptive fields (at most ``(kernel_size - 1) * (1 +
    stride + ... + stride ** (depth - 1))`` upsampled samples, depending on
    the position within a frame) and from the two resampling filters
    (about ``resample_zeros`` input samples each). The utterance-level std
    used by ``normalize=True`` is the only quantity computed over the whole
    signal, so a strictly causal (streaming) use needs a running std
    instead.

    Arguments
    ---------
    chin : int
        Input channels.
    chout : int
        Output channels.
    hidden : int
        Channels of the first encoder block.
    depth : int
        Number of encoder (and decoder) blocks.
    kernel_size : int
        Kernel size of the strided convolutions.
    stride : int
        Stride of the strided convolutions.
    causal : bool
        Unidirectional LSTM if True, bidirectional LSTM + linear otherwise.
    resample : int
        Integer up/down-sampling factor around the network.
    growth : float
        Channel multiplier from one block to the next.
    max_hidden : int
        Upper bound on the channels of a block.
    normalize : bool
        Divide the input by ``floor + std`` and multiply the output by
        ``std`` (std of the channel-averaged input, unbiased).
    glu : bool
        GLU after the 1x1 convolutions (ReLU and no channel doubling
        otherwise).
    rescale : float
        Reference std for :func:`rescale_conv_weights_` at init; 0 or None
        disables the rescaling.
    floor : float
        Added to the std before dividing.
    sample_rate : int
        Sampling rate the model is meant for (stored, not used).
    resample_zeros : int
        Half-width of the windowed-sinc resampling kernels, in input-rate
        samples (each filter adds this much lookahead).
    dry : float
        The official denoiser's dry/wet knob: the output is ``(1 - dry) *
        enhanced + dry * input`` (0: enhanced only). An attribute, so it can
        be set on a trained model at inference.

    Example
    -------
    >>> model = Demucs(hidden=4, depth=2)
    >>> wav = torch.randn(2, 1000)
    >>> model(wav).shape
    torch.Size([2, 1000])
    >>> model(wav.unsqueeze(1)).shape
    torch.Size([2, 1, 1000])
    >>> out = model(wav, lengths=torch.tensor([1.0, 0.5]))
    >>> bool((out[1, 500:] == 0).all())
    True
    """

    def __init__(
        self,
        chin: int = 1,
        chout: int = 1,
        hidden: int = 48,
        depth: int = 5,
        kernel_size: int = 8,
        stride: int = 4,
        causal: bool = True,
        resample: int = 4,
        growth: float = 2,
        max_hidden: int = 10_000,
        normalize: bool = True,
        glu: bool = True,
        rescale: float | None = 0.1,
        floor: float = 1e-3,
        sample_rate: int = 16000,
        resample_zeros: int = 32,
        dry: float = 0.0,
    ):
        super().__init__()
        if not 0.0 <= dry <= 1.0 or (dry and chin != chout):
            raise ValueError(
                f"dry must be in [0, 1] (and needs chin == chout), got {dry}"
            )
        self.dry = float(dry)
        if int(resample) != resample or resample < 1:
            raise ValueError(f"resample must be a positive int, got {resample}")
        if depth < 1 or kernel_size < 1 or stride < 1 or resample_zeros < 1:
            raise ValueError(
                "depth, kernel_size, stride, resample_zeros must be >= 1"
            )
        self.chin = chin
        self.chout = chout
        self.hidden = hidden
        self.depth = depth
        self.kernel_size = kernel_size
        self.stride = stride
        self.causal = causal
        self.resample = int(resample)
        self.normalize = normalize
        self.floor = floor
        self.sample_rate = sample_rate
        self.resample_zeros = resample_zeros
        self.growth, self.max_hidden, self.glu = growth, max_hidden, glu
        self.rescale = rescale

        ch_scale = 2 if glu else 1

        def activation():
            return nn.GLU(dim=1) if glu else nn.ReLU()

        self.encoder = nn.ModuleList()
        self.decoder = nn.ModuleList()
        in_ch, out_ch, width = chin, chout, hidden
        for index in range(depth):
            self.encoder.append(
                nn.Sequential(
                    nn.Conv1d(in_ch, width, kernel_size, stride),
                    nn.ReLU(),
                    nn.Conv1d(width, ch_scale * width, 1),
                    activation(),
                )
            )
            block = [
                nn.Conv1d(width, ch_scale * width, 1),
                activation(),
                nn.ConvTranspose1d(width, out_ch, kernel_size, stride),
            ]
            if index > 0:
                block.append(nn.ReLU())
            # decoder[0] is the innermost block, decoder[-1] the output one
            self.decoder.insert(0, nn.Sequential(*block))
            in_ch = out_ch = width
            width = min(int(growth * width), max_hidden)
        self.lstm = _LSTMBottleneck(in_ch, bidirectional=not causal)

        if rescale:
            rescale_conv_weights_(self, reference=rescale)

        if self.resample > 1:
            self.register_buffer(
                "_up_filters",
                _upsample_filters(self.resample, resample_zeros),
                persistent=False,
            )
            self.register_buffer(
                "_down_filter",
                _downsample_filter(self.resample, resample_zeros),
                persistent=False,
            )

        # Lengths (at the upsampled rate) that the U-Net maps onto
        # themselves without dropping samples: _min_up + _period_up * j.
        self._min_up = 1
        for _ in range(depth):
            self._min_up = (self._min_up - 1) * stride + kernel_size
        self._period_up = stride**depth
        if not any(
            (self._min_up + self._period_up * j) % self.resample == 0
            for j in range(self.resample)
        ):
            raise ValueError(
                "No input length is processed without losing samples for "
                f"kernel_size={kernel_size}, stride={stride}, depth={depth}, "
                f"resample={resample}."
            )

    def valid_length(self, length: int) -> int:
        """Smallest length ``>= length`` that the network processes without
        dropping samples (every strided convolution window fits exactly).

        :meth:`forward` zero-pads its input to this length and trims the
        output back. The result is always at least ``valid_length(1)``.

        Arguments
        ---------
        length : int
            Number of input samples.

        Returns
        -------
        int
            The padded length.

        Example
        -------
        >>> model = Demucs(hidden=4, depth=2)
        >>> model.valid_length(1000)
        1001
        >>> model.valid_length(1001)
        1001
        >>> Demucs(hidden=4).valid_length(16000)
        16213
        """
        target = self.resample * int(length)
        steps = max(0, -(-(target - self._min_up) // self._period_up))
        while (self._min_up + self._period_up * steps) % self.resample:
            steps += 1
        return (self._min_up + self._period_up * steps) // self.resample

    @property
    def lookahead(self) -> int:
        """Future input samples that an output sample may depend on when
        ``causal=True`` (ignoring the utterance-level std normalisation).

        The bound is exact: some output sample does depend on the input
        sample ``lookahead`` steps ahead of it (for generic weights).

        Example
        -------
        >>> Demucs(hidden=4, depth=2).lookahead
        71
        >>> Demucs().lookahead
        659
        """
        period = self.stride**self.depth
        unet = (self.kernel_size - 1) * sum(
            self.stride**i for i in range(self.depth)
        )

        def unet_reach(i):
            # last upsampled input sample that U-Net output sample i uses
            return period * (i // period) + unet

        if self.resample == 1:
            return unet
        factor, zeros = self.resample, self.resample_zeros
        best = 0
        for n in range(period):  # the pattern repeats with this period
            # the downsampler reads U-Net outputs up to factor*(n+zeros)-1
            j = unet_reach(factor * (n + zeros) - 1)
            # the upsampler's phase-0 rows are identities, the others read
            # up to `zeros` input samples ahead
            reach = j // factor + zeros - (1 if j % factor == 0 else 0)
            best = max(best, reach - n)
        return best

    @property
    def config(self) -> dict:
        """The constructor arguments that rebuild this model as it is now
        (``dry`` included), e.g. for :func:`robust_brain.inference.
        write_enhancer`.

        Example
        -------
        >>> m = Demucs(hidden=4, depth=2)
        >>> m.dry = 0.5
        >>> again = Demucs(**m.config)
        >>> again.dry, sum(p.numel() for p in again.parameters()) == sum(
        ...     p.numel() for p in m.parameters())
        (0.5, True)
        """
        names = (
            "chin chout hidden depth kernel_size stride causal resample "
            "growth max_hidden normalize glu rescale floor sample_rate "
            "resample_zeros dry"
        ).split()
        return {name: getattr(self, name) for name in names}

    def forward(
        self, wav: torch.Tensor, lengths: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Enhance a batch of waveforms.

        Arguments
        ---------
        wav : torch.Tensor
            Noisy speech, ``(batch, time)`` (needs ``chin == 1``) or
            ``(batch, chin, time)``.
        lengths : torch.Tensor, optional
            Relative lengths in [0, 1] (SpeechBrain convention), shape
            ``(batch,)``. Samples past ``round(lengths * time)`` are set to
            zero in the output, and the normalising std is computed over
            each item's valid samples only.

        Returns
        -------
        torch.Tensor
            Enhanced speech with the same layout as ``wav``
            (``(batch, time)`` or ``(batch, chout, time)``).

        Example
        -------
        >>> model = Demucs(hidden=4, depth=2, causal=False)
        >>> model(torch.randn(3, 777)).shape
        torch.Size([3, 777])
        """
        if wav.dim() == 2:
            if self.chin != 1:
                raise ValueError(
                    f"(batch, time) input needs chin=1, model has {self.chin}"
                )
            x = wav.unsqueeze(1)
        elif wav.dim() == 3:
            if wav.shape[1] != self.chin:
                raise ValueError(
                    f"expected {self.chin} input channels, got {wav.shape[1]}"
                )
            x = wav
        else:
            raise ValueError(
                "wav must be (batch, time) or (batch, chin, time), got "
                f"shape {tuple(wav.shape)}"
            )
        batch, _, length = x.shape
        noisy = x

        mask = None
        if lengths is not None:
            abs_len = torch.round(lengths.to(x.device).float() * length)
            positions = torch.arange(length, device=x.device)
            mask = positions.unsqueeze(0) < abs_len.unsqueeze(1)

        if self.normalize:
            mono = x.mean(dim=1)
            if mask is None:
                weights = torch.ones_like(mono)
            else:
                weights = mask.to(mono.dtype)
            count = weights.sum(dim=-1, keepdim=True)
            mean = (mono * weights).sum(dim=-1, keepdim=True) / count.clamp(
                min=1
            )
            var = ((mono - mean) ** 2 * weights).sum(dim=-1, keepdim=True) / (
                count - 1
            ).clamp(min=1)
            # clamp: a silent item gets std 1e-10 and a finite gradient
            std = var.clamp(min=1e-20).sqrt().unsqueeze(1)
            x = x / (self.floor + std)
        else:
            std = None

        x = F.pad(x, (0, self.valid_length(length) - length))
        if self.resample > 1:
            x = _apply_upsample(x, self._up_filters)

        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        x = self.lstm(x)
        for block in self.decoder:
            x = block(x + skips.pop())

        if self.resample > 1:
            x = _apply_downsample(x, self._down_filter, self.resample)
        x = x[..., :length]

        if std is not None:
            x = std * x
        if self.dry:
            x = (1.0 - self.dry) * x + self.dry * noisy
        if mask is not None:
            x = x * mask.unsqueeze(1).to(x.dtype)
        if wav.dim() == 2:
            x = x.squeeze(1)
        return x


def load_enhancer_weights(enhancer: torch.nn.Module, path) -> torch.nn.Module:
    """Load enhancer weights from a file (e.g. D4AM's ``INIT.pth``).

    Accepts a plain ``state_dict``, a SpeechBrain ``.ckpt`` or a
    facebookresearch/denoiser checkpoint (``{"state": ...}`` or
    ``{"model": ...}`` / ``{"state_dict": ...}``); a ``module.`` prefix
    (DataParallel) is stripped.

    Arguments
    ---------
    enhancer : torch.nn.Module
    path : path-like

    Returns
    -------
    torch.nn.Module
        The same module.

    Example
    -------
    >>> import tempfile, os
    >>> lin = torch.nn.Linear(2, 2)
    >>> f = os.path.join(tempfile.mkdtemp(), "init.pth")
    >>> torch.save({"state": {"module." + k: v for k, v in
    ...             lin.state_dict().items()}}, f)
    >>> other = load_enhancer_weights(torch.nn.Linear(2, 2), f)
    >>> torch.equal(other.weight, lin.weight)
    True
    """
    state = torch.load(path, map_location="cpu", weights_only=False)
    for key in ("state", "model", "state_dict"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if hasattr(state, "state_dict"):
        state = state.state_dict()
    state = {
        (k[len("module.") :] if k.startswith("module.") else k): v
        for k, v in state.items()
    }
    enhancer.load_state_dict(state)
    return enhancer
