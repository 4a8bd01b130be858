"""Transcription-free fine-tuning of a speech separator (GPIT + L_AE).

Ravenscroft et al. (Interspeech 2024), docs/methods.md, GPIT: a pretrained
separator is fine-tuned on audio only, with the distance between the
embeddings that a FROZEN pretrained ASR encoder gives of each estimated
source and of its reference (L_AE). Every unverified choice is an hparam:

* :class:`EncoderEmbeddingLoss`: ``D(E(norm(est)), E(norm(ref)))`` over the
  VALID encoder frames only (``D``: ``mse``, ``l1`` or ``cosine``; ``norm``:
  :func:`~robust_brain.losses.level_normalise`; the final output or chosen
  hidden layers). ``E`` is any encoder that
  :class:`~robust_brain.models.encoders.EncoderFeatures` runs (Wav2Vec2,
  WavLM, HuBERT, Whisper, the offline ConformerASR), a ``!new:`` block of
  the hparams, frozen but differentiable (never the wrappers'
  ``freeze=True``, which would cut the gradient to the separator).
* :class:`GPITBrain`: a :class:`~robust_brain.brain.DualLossBrain` with
  ``loss_names = ("ae", "sisdr")`` (every surgery rule applies; default
  ``sum``). Permutation modes (:data:`MODES`):

  ==========  ================================  =======================
  mode        permutation                       losses
  ==========  ================================  =======================
  uPIT-SISDR  best SI-SDR (SpeechBrain's        SI-SDR (the baseline and
              ``PitWrapper`` + ``cal_si_snr``)  the pre-training loss)
  PIT-AE      smallest L_AE (C x C pairwise)    L_AE [+ w SI-SDR]
  GPIT        best SI-SDR (under no_grad)       L_AE [+ w SI-SDR]
  ==========  ================================  =======================

Stages: :mod:`robust_brain.pipelines.gpit`; evaluation (cpWER by unseen
recognisers, SI-SDR(i), STOI, PESQ): :mod:`robust_brain.evaluation.
separation`; data: :class:`robust_brain.data.separation.SeparationSet`.
"""

from __future__ import annotations

from collections.abc import Sequence

import speechbrain as sb
import torch
import torchaudio
from speechbrain.nnet.losses import cal_si_snr

from robust_brain.brain import DualLossBrain
from robust_brain.losses import (
    NORMALISATIONS,
    best_permutations,
    length_mask,
    level_normalise,
    reorder_sources,
    sisdr_pit,
)
from robust_brain.models.encoders import EncoderFeatures
from robust_brain.stages import SelectedCheckpoint
from robust_brain.surgery import Sum

__all__ = [
    "MODES",
    "DISTANCES",
    "check_mode",
    "EncoderEmbeddingLoss",
    "GPITBrain",
]


#: the permutation modes, in table order
MODES = ("uPIT-SISDR", "PIT-AE", "GPIT")
#: embedding distances of L_AE
DISTANCES = ("mse", "l1", "cosine")


def check_mode(mode: str) -> str:
    """The canonical spelling of a permutation mode.

    Arguments
    ---------
    mode : str
        One of :data:`MODES` (any case; ``_`` for ``-`` accepted).

    Returns
    -------
    str

    Example
    -------
    >>> check_mode("gpit"), check_mode("pit_ae")
    ('GPIT', 'PIT-AE')
    >>> check_mode("PIT")
    Traceback (most recent call last):
    ...
    ValueError: unknown permutation mode 'PIT'; choose one of ('uPIT-SISDR', ...
    """
    key = str(mode).upper().replace("_", "-")
    for m in MODES:
        if m.upper() == key:
            return m
    raise ValueError(
        f"unknown permutation mode {mode!r}; choose one of {MODES}"
    )


class EncoderEmbeddingLoss(torch.nn.Module):
    """L_AE: distance between frozen-encoder embeddings of the level-
    normalised estimate and reference, over the valid frames.

    Arguments
    ---------
    encoder : torch.nn.Module
        Any encoder :class:`~robust_brain.models.encoders.EncoderFeatures`
        runs; build HF wrappers with ``freeze=False``.
    kind, layers
        See :class:`~robust_brain.models.encoders.EncoderFeatures`; the
        distance is averaged over the layers.
    distance : str
        ``mse`` (mean over valid frames x features), ``l1`` or ``cosine``
        (1 - cosine similarity per frame).
    normalisation : str
        See :func:`~robust_brain.losses.level_normalise`.
    joint_batch : bool, optional
        Encode estimates and references in ONE call (needed for Whisper,
        whose log-mel clamp depends on the whole batch); default: True for
        Whisper only. Otherwise the references are encoded under no_grad.
    input_rate, encoder_rate : int
        The separator's rate and the encoder's: signals are resampled
        (differentiably) from one to the other before encoding, so an
        8 kHz separator is judged by a 16 kHz encoder.

    Example
    -------
    >>> _ = torch.manual_seed(0)
    >>> class Frames(torch.nn.Module):  # a toy "encoder": 80-sample frames
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = torch.nn.Linear(80, 8)
    ...     def forward(self, wavs, wav_lens=None):
    ...         return self.proj(wavs.unfold(1, 80, 80))
    >>> ae = EncoderEmbeddingLoss(Frames(), kind="frames").freeze()
    >>> refs = torch.randn(2, 800, 2)
    >>> lens = torch.tensor([1.0, 0.5])
    >>> float(ae(refs, refs, lens).abs().max())  # identical inputs
    0.0
    >>> est = (refs + 0.5 * torch.randn(2, 800, 2)).requires_grad_()
    >>> loss = ae(est, refs, lens).mean()
    >>> loss.backward()
    >>> bool(est.grad.abs().sum() > 0), ae.encoder.proj.weight.grad is None
    (True, True)
    >>> bool(est.grad[1, 400:].abs().sum() == 0)  # padding gets nothing
    True
    """

    def __init__(
        self,
        encoder: torch.nn.Module,
        kind: str = "auto",
        layers: Sequence[int] | None = None,
        distance: str = "mse",
        normalisation: str = "rms",
        joint_batch: bool | None = None,
        input_rate: int = 16000,
        encoder_rate: int = 16000,
    ):
        super().__init__()
        if distance not in DISTANCES:
            raise ValueError(
                f"unknown L_AE distance {distance!r}; choose one of {DISTANCES}"
            )
        if normalisation not in NORMALISATIONS:
            raise ValueError(
                f"unknown L_AE normalisation {normalisation!r}; choose one "
                f"of {NORMALISATIONS}"
            )
        self.features = EncoderFeatures(encoder, kind, layers)
        self.distance = distance
        self.normalisation = normalisation
        self.joint_batch = (
            self.kind == "whisper" if joint_batch is None else joint_batch
        )
        self.input_rate = int(input_rate)
        self.encoder_rate = int(encoder_rate)

    @property
    def encoder(self):
        """The frozen encoder."""
        return self.features.encoder

    @property
    def kind(self):
        """How its valid frames are counted (see ``EncoderFeatures``)."""
        return self.features.kind

    def freeze(self):
        """Frozen but differentiable: eval mode, no parameter gradients
        (re-apply at every stage start: ``Brain.fit`` calls ``train()``)."""
        self.features.freeze()
        return self

    def frame_mask(self, lengths, n_samples: int, n_frames: int):
        """See :meth:`EncoderFeatures.frame_mask`."""
        return self.features.frame_mask(lengths, n_samples, n_frames)

    def embed(self, wavs, lengths):
        """Encoder features of the normalised signals and their frame mask.

        Arguments
        ---------
        wavs : torch.Tensor
            ``(batch, time)``.
        lengths : torch.Tensor
            Relative lengths.

        Returns
        -------
        feats : list of torch.Tensor
            One ``(batch, frames, dim)`` per compared layer.
        mask : torch.Tensor
            ``(batch, frames)``.
        """
        x = level_normalise(wavs, lengths, self.normalisation)
        if self.input_rate != self.encoder_rate:
            x = torchaudio.functional.resample(
                x, self.input_rate, self.encoder_rate
            )
        feats = self.features(x, lengths)
        mask = self.frame_mask(lengths, x.shape[-1], feats[0].shape[1])
        return feats, mask

    def _distance(self, a, b, mask):
        """Per-pair distance, ``a``/``b`` ``(..., frames, dim)``."""
        if self.distance == "cosine":
            per_frame = 1.0 - torch.nn.functional.cosine_similarity(
                a, b, dim=-1, eps=1e-8
            )
        elif self.distance == "l1":
            per_frame = (a - b).abs().mean(-1)
        else:
            per_frame = (a - b).pow(2).mean(-1)
        return (per_frame * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)

    def _encode_both(self, estimates, references, lengths):
        """Features of every estimate and reference stream (flattened to
        ``batch * sources`` rows) and the frame mask; the references carry
        no gradient."""
        batch, n, c = estimates.shape
        lens = lengths.repeat_interleave(c)
        est = estimates.permute(0, 2, 1).reshape(batch * c, n)
        ref = references.permute(0, 2, 1).reshape(batch * c, n).detach()
        if self.joint_batch:
            feats, mask = self.embed(
                torch.cat([est, ref]), torch.cat([lens, lens])
            )
            f_est = [f[: batch * c] for f in feats]
            f_ref = [f[batch * c :] for f in feats]
            return f_est, f_ref, mask[: batch * c]
        f_est, mask = self.embed(est, lens)
        with torch.no_grad():
            f_ref, _ = self.embed(ref, lens)
        return f_est, f_ref, mask

    def pairwise(self, estimates, references, lengths=None):
        """``(batch, refs, estimates)`` matrix of L_AE, each signal encoded
        once.

        Arguments
        ---------
        estimates, references : torch.Tensor
            ``(batch, time, sources)``.
        lengths : torch.Tensor, optional
            Relative lengths.

        Returns
        -------
        torch.Tensor
        """
        if estimates.shape != references.shape:
            raise ValueError(
                f"estimates {tuple(estimates.shape)} and references "
                f"{tuple(references.shape)} differ in shape"
            )
        batch, n, c = estimates.shape
        if lengths is None:
            lengths = torch.ones(batch, device=estimates.device)
        f_est, f_ref, mask = self._encode_both(estimates, references, lengths)
        total = 0.0
        mask = mask.view(batch, 1, c, -1)
        for fe, fr in zip(f_est, f_ref, strict=True):
            fe = fe.view(batch, 1, c, *fe.shape[1:])  # estimates: dim 2
            fr = fr.view(batch, c, 1, *fr.shape[1:])  # references: dim 1
            total = total + self._distance(fe, fr, mask)
        return total / len(f_est)

    def forward(self, estimates, references, lengths=None):
        """Per-utterance L_AE of matched pairs (estimate ``c`` <-> reference
        ``c``), mean over sources: ``(batch,)``.

        Arguments
        ---------
        estimates, references : torch.Tensor
            ``(batch, time, sources)``, already in matching order.
        lengths : torch.Tensor, optional

        Returns
        -------
        torch.Tensor
        """
        batch, n, c = estimates.shape
        if lengths is None:
            lengths = torch.ones(batch, device=estimates.device)
        f_est, f_ref, mask = self._encode_both(estimates, references, lengths)
        total = 0.0
        for fe, fr in zip(f_est, f_ref, strict=True):
            total = total + self._distance(fe, fr, mask)
        return (total / len(f_est)).view(batch, c).mean(-1)


class GPITBrain(SelectedCheckpoint, DualLossBrain):
    """Separator training by permutation mode (uPIT-SISDR, PIT-AE, GPIT).

    ``loss_names = ("ae", "sisdr")``: L_AE is the main (downstream) loss,
    the SI-SDR the auxiliary (signal) one; the engine combines their
    gradients with ``surgery_rule`` (default :class:`~robust_brain.surgery.
    Sum`). ``fit_batch`` is the engine's.

    Hparams read:

    * ``mode``: one of :data:`MODES`;
    * ``ae_loss``: an :class:`EncoderEmbeddingLoss` (needed by PIT-AE and
      GPIT); kept OUT of ``modules`` (no DDP wrap, not put back in train
      mode by ``fit``) and re-frozen at every stage start;
    * ``ae_weight`` (1.0): weight of L_AE;
    * ``sisdr_weight``: weight of the SI-SDR term in the AE modes (0: L_AE
      only, the paper's default); in uPIT-SISDR mode the SI-SDR loss has
      weight 1;
    * ``valid_ae`` (True): also compute L_AE (GPIT permutation) in
      validation when ``ae_loss`` is given;
    * ``train_logger``, ``ckpt_selection`` (``last`` or ``loss``).

    ``modules`` must hold ``separator``: ``(batch, time) -> (batch, time,
    sources)``. Batches:
    :meth:`~robust_brain.data.separation.SeparationSet.collate`.

    Example
    -------
    >>> from robust_brain.data.separation import SeparationSet
    >>> from robust_brain.models.separator import MaskingSeparator
    >>> from speechbrain.lobes.models.conv_tasnet import MaskNet
    >>> from speechbrain.lobes.models.dual_path import Decoder, Encoder
    >>> _ = torch.manual_seed(0)
    >>> sep = MaskingSeparator(Encoder(16, 8), MaskNet(8, 8, 8, 3, 1, 1, 2),
    ...     Decoder(in_channels=8, out_channels=1, kernel_size=16, stride=8,
    ...             bias=False))
    >>> class Frames(torch.nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.proj = torch.nn.Linear(80, 8)
    ...     def forward(self, wavs, wav_lens=None):
    ...         return self.proj(wavs.unfold(1, 80, 80))
    >>> refs = torch.randn(2, 1600, 2)
    >>> items = [{"id": str(i), "mix": refs[i].sum(-1), "sources": refs[i]}
    ...          for i in range(2)]
    >>> loader = torch.utils.data.DataLoader(
    ...     items, batch_size=2, collate_fn=SeparationSet.collate)
    >>> brain = GPITBrain(modules={"separator": sep},
    ...     opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
    ...     hparams={"mode": "GPIT", "sisdr_weight": 0.1,
    ...              "ae_loss": EncoderEmbeddingLoss(Frames(), "frames")})
    >>> brain.fit(range(2), loader)
    >>> sorted(k for k in brain.surgery_stats if k.startswith("loss"))
    ['loss_ae', 'loss_sisdr']
    >>> brain.ae_loss.encoder.proj.weight.requires_grad
    False
    """

    loss_names = ("ae", "sisdr")

    def __init__(
        self,
        modules=None,
        opt_class=None,
        hparams=None,
        run_opts=None,
        checkpointer=None,
    ):
        hparams = dict(hparams or {})
        self.mode = check_mode(hparams.get("mode", "GPIT"))
        hparams["mode"] = self.mode
        if hparams.get("surgery_rule") is None:
            hparams["surgery_rule"] = Sum()
        self.ae_loss = hparams.get("ae_loss")
        if self.mode != "uPIT-SISDR" and self.ae_loss is None:
            raise ValueError(
                f"mode {self.mode} needs ae_loss (an EncoderEmbeddingLoss)"
            )
        self.sisdr_weight = float(hparams.get("sisdr_weight", 0.0) or 0.0)
        self.ae_weight = float(hparams.get("ae_weight", 1.0))
        if self.sisdr_weight < 0 or self.ae_weight < 0:
            raise ValueError("ae_weight and sisdr_weight must be >= 0")
        if modules is None or "separator" not in modules:
            raise ValueError("GPITBrain needs modules['separator']")
        super().__init__(
            modules=modules,
            opt_class=opt_class,
            hparams=hparams,
            run_opts=run_opts,
            checkpointer=checkpointer,
        )
        self.train_stats = {}
        self.last_stats = {}

    # ---------------------------------------------------------- set-up
    def frozen_models(self):
        """The L_AE encoder (inside ``ae_loss``)."""
        return [] if self.ae_loss is None else [self.ae_loss]

    def on_stage_start(self, stage, epoch=None):
        """The engine's (re-freeze, epoch crops); reset validation sums."""
        super().on_stage_start(stage, epoch)
        self._sums = {"si_sdr": 0.0, "si_sdri": 0.0, "ae": 0.0, "n": 0}

    # ---------------------------------------------------------- forward
    def compute_forward(self, batch, stage):
        """Separate the mixtures: ``(estimates, references, mixtures,
        lengths)``."""
        batch = batch.to(self.device)
        mix, lens = batch.mix
        refs, _ = batch.sources
        est = self.modules.separator(mix, lens)
        mask = length_mask(lens, est.shape[1]).to(est.dtype)
        return est * mask.unsqueeze(-1), refs, mix, lens

    def compute_objectives(self, outputs, batch, stage):
        """Dict of the mode's losses.

        Arguments
        ---------
        outputs : tuple
            From :meth:`compute_forward`.
        batch : PaddedBatch
        stage : speechbrain.Stage

        Returns
        -------
        dict of str to torch.Tensor
        """
        est, refs, mix, lens = outputs
        # the SI-SDR needs a graph only when it is a loss
        grad = self.mode == "uPIT-SISDR" or (
            self.mode == "GPIT" and self.sisdr_weight > 0
        )
        with torch.set_grad_enabled(grad and torch.is_grad_enabled()):
            sisdr, perms = sisdr_pit(est, refs, lens)
        losses = {}
        if self.mode == "uPIT-SISDR":
            losses["sisdr"] = sisdr.mean()
        else:
            if self.mode == "GPIT":
                ordered = reorder_sources(est, perms)
                ae = self.ae_loss(ordered, refs, lens)
            else:  # PIT-AE
                ae, ae_perms = best_permutations(
                    self.ae_loss.pairwise(est, refs, lens)
                )
                if self.sisdr_weight > 0:
                    # the SI-SDR term under the AE permutation
                    ordered = reorder_sources(est, ae_perms)
                    sisdr = cal_si_snr(
                        refs.transpose(0, 1).clone(),
                        ordered.transpose(0, 1).clone(),
                    )[0].mean(-1)
            losses["ae"] = self.ae_weight * ae.mean()
            if self.sisdr_weight > 0:
                losses["sisdr"] = self.sisdr_weight * sisdr.mean()
        if stage != sb.Stage.TRAIN:
            self._track(est, refs, mix, lens, sisdr, perms, losses)
        return losses

    @torch.no_grad()
    def _track(self, est, refs, mix, lens, sisdr, perms, losses):
        """Validation sums: SI-SDR, SI-SDRi and (optionally) L_AE."""
        c = refs.shape[-1]
        mixes = mix.unsqueeze(-1).expand(-1, -1, c)
        mask = length_mask(lens, mix.shape[1]).to(mix.dtype).unsqueeze(-1)
        base = -cal_si_snr(
            refs.transpose(0, 1).clone(), (mixes * mask).transpose(0, 1)
        )[0].mean(-1)
        s = self._sums
        s["si_sdr"] += float((-sisdr).sum())
        s["si_sdri"] += float((-sisdr - base).sum())
        s["n"] += int(est.shape[0])
        if "ae" in losses:
            s["ae"] += float(losses["ae"]) * est.shape[0] / self.ae_weight
        elif self.ae_loss is not None and getattr(
            self.hparams, "valid_ae", True
        ):
            ae = self.ae_loss(reorder_sources(est, perms), refs, lens)
            s["ae"] += float(ae.sum())

    # ---------------------------------------------------------- logging
    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Epoch statistics (with the engine's summary), checkpointing."""
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **self.surgery_summary()}
            return
        n = max(self._sums["n"], 1)
        stats = {
            "loss": stage_loss,
            "si_sdr": self._sums["si_sdr"] / n,
            "si_sdri": self._sums["si_sdri"] / n,
        }
        if self.ae_loss is not None and (
            self.mode != "uPIT-SISDR" or getattr(self.hparams, "valid_ae", True)
        ):
            stats["ae"] = self._sums["ae"] / n
        if stage == sb.Stage.VALID:
            train_logger = getattr(self.hparams, "train_logger", None)
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta={"epoch": epoch, "mode": self.mode},
                    train_stats=self.train_stats,
                    valid_stats=stats,
                )
            self.save_selected(stats)
        self.last_stats = stats
