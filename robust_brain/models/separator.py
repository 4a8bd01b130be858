"""Masking separators assembled from SpeechBrain parts.

:class:`MaskingSeparator` is the encoder -> mask network -> decoder
layout of SpeechBrain's separation recipes (``recipes/WHAMandWHAMR/
separation/train.py``) as one module with the ``f(wavs, lengths) ->
(batch, time, sources)`` interface the rest of the project uses. The mask
network is any module mapping ``(batch, N, frames)`` to ``(sources, batch,
N, frames)``:

* SepFormer: ``speechbrain.lobes.models.dual_path.Dual_Path_Model`` with
  ``SBTransformerBlock`` intra/inter models (the default of the GPIT
  recipes, built by ``!new:`` blocks in ``hparams/gpit*.yaml``: another
  mask network is an edit of the ``sep_masknet`` block);
* Conv-TasNet: ``speechbrain.lobes.models.conv_tasnet.MaskNet``;
* :class:`ConformerMaskNet`: a TD-Conformer-style mask network (a
  Conformer over the frame sequence, after a bottleneck and an optional
  strided subsampling), after Ravenscroft et al.'s TD-Conformer
  (docs/methods.md, Separators); a reconstruction, not their code.

Authors
 * robust_brain contributors 2026
"""

import torch
import torch.nn.functional as F

__all__ = ["MaskingSeparator", "ConformerMaskNet"]


class MaskingSeparator(torch.nn.Module):
    """Encoder, mask network and decoder as one separator.

    Arguments
    ---------
    encoder : torch.nn.Module
        ``(batch, time) -> (batch, N, frames)``, e.g.
        ``speechbrain.lobes.models.dual_path.Encoder``.
    masknet : torch.nn.Module
        ``(batch, N, frames) -> (sources, batch, N, frames)``.
    decoder : torch.nn.Module
        ``(batch, N, frames) -> (batch, time')``, e.g.
        ``speechbrain.lobes.models.dual_path.Decoder``.
    num_spks : int
        Number of sources.

    Example
    -------
    >>> from speechbrain.lobes.models.dual_path import (
    ...     Decoder, Dual_Path_Model, Encoder, SBTransformerBlock)
    >>> _ = torch.manual_seed(0)
    >>> block = lambda: SBTransformerBlock(1, 16, 2, d_ffn=32)
    >>> sep = MaskingSeparator(
    ...     Encoder(kernel_size=16, out_channels=16),
    ...     Dual_Path_Model(16, 16, block(), block(), num_layers=1, K=20),
    ...     Decoder(in_channels=16, out_channels=1, kernel_size=16,
    ...             stride=8, bias=False))
    >>> sep(torch.randn(2, 1000)).shape
    torch.Size([2, 1000, 2])
    """

    def __init__(self, encoder, masknet, decoder, num_spks: int = 2):
        super().__init__()
        self.encoder = encoder
        self.masknet = masknet
        self.decoder = decoder
        self.num_spks = int(num_spks)

    def forward(self, wavs, lengths=None):
        """Separate.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)`` mixtures.
        lengths : torch.Tensor, optional
            Relative lengths (unused: the network is length-agnostic; the
            caller masks the padding).

        Returns
        -------
        torch.Tensor
            ``(batch, time, sources)``.
        """
        mix_w = self.encoder(wavs)
        masks = self.masknet(mix_w)
        if masks.dim() != 4 or masks.shape[0] != self.num_spks:
            raise ValueError(
                "the mask network must return (sources, batch, N, frames) "
                f"with {self.num_spks} sources, got {tuple(masks.shape)}"
            )
        sep = mix_w.unsqueeze(0) * masks
        est = torch.stack(
            [self.decoder(sep[i]) for i in range(self.num_spks)], dim=-1
        )
        n, n_est = wavs.shape[-1], est.shape[1]
        if n > n_est:
            est = F.pad(est, (0, 0, 0, n - n_est))
        return est[:, :n, :]


class ConformerMaskNet(torch.nn.Module):
    """TD-Conformer-style mask network.

    ``GroupNorm -> 1x1 bottleneck -> [strided conv subsampling] ->
    Conformer (SpeechBrain's ConformerEncoder, convolution module, regular
    multi-head attention) -> [transposed conv upsampling] -> PReLU -> 1x1 to
    sources x N -> ReLU masks``.

    Arguments
    ---------
    in_channels : int
        Encoder filters N.
    d_model : int
        Conformer width (bottleneck).
    nhead : int
        Attention heads.
    d_ffn : int
        Feed-forward width.
    num_layers : int
        Conformer layers.
    kernel_size : int
        Depthwise convolution kernel of the Conformer.
    num_spks : int
        Sources.
    subsampling : int
        Temporal subsampling factor (1: none).
    dropout : float
        Conformer dropout.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> net = ConformerMaskNet(16, d_model=16, nhead=2, d_ffn=32,
    ...                        num_layers=1, kernel_size=7, subsampling=2)
    >>> net(torch.randn(3, 16, 51)).shape
    torch.Size([2, 3, 16, 51])
    """

    def __init__(
        self,
        in_channels: int,
        d_model: int = 256,
        nhead: int = 8,
        d_ffn: int = 1024,
        num_layers: int = 8,
        kernel_size: int = 31,
        num_spks: int = 2,
        subsampling: int = 1,
        dropout: float = 0.1,
    ):
        super().__init__()
        from speechbrain.lobes.models.transformer.Conformer import (
            ConformerEncoder,
        )

        self.num_spks = int(num_spks)
        self.in_channels = int(in_channels)
        self.subsampling = int(subsampling)
        self.norm = torch.nn.GroupNorm(1, in_channels)
        self.bottleneck = torch.nn.Conv1d(in_channels, d_model, 1)
        self.down = None
        self.up = None
        if self.subsampling > 1:
            s = self.subsampling
            self.down = torch.nn.Conv1d(d_model, d_model, s, stride=s)
            self.up = torch.nn.ConvTranspose1d(d_model, d_model, s, stride=s)
        self.conformer = ConformerEncoder(
            num_layers=num_layers,
            d_model=d_model,
            d_ffn=d_ffn,
            nhead=nhead,
            kernel_size=kernel_size,
            dropout=dropout,
            causal=False,
            attention_type="regularMHA",
        )
        self.act = torch.nn.PReLU()
        self.mask = torch.nn.Conv1d(d_model, self.num_spks * in_channels, 1)

    def forward(self, mix_w):
        """Masks ``(sources, batch, N, frames)`` of ``(batch, N, frames)``."""
        batch, n, frames = mix_w.shape
        x = self.bottleneck(self.norm(mix_w))
        if self.down is not None:
            pad = (-frames) % self.subsampling
            x = self.down(F.pad(x, (0, pad)))
        x, _ = self.conformer(x.transpose(1, 2))
        x = x.transpose(1, 2)
        if self.up is not None:
            x = self.up(x)[..., :frames]
        masks = torch.relu(self.mask(self.act(x)))
        masks = masks.view(batch, self.num_spks, n, frames)
        return masks.transpose(0, 1)
