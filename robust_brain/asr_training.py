"""Training an offline proxy recogniser (when no pretrained one is at hand).

D4AM needs a frozen proxy acoustic model. The real recipe loads
SpeechBrain's LibriSpeech Conformer-small from its hub; the offline recipe
trains a small :class:`~robust_brain.models.asr.ConformerASR` on the
generated corpus first:

* :func:`train_tokenizer`: a SentencePiece model on the training
  transcripts (``speechbrain.tokenizers.SentencePiece``), loaded into a
  ``sentencepiece.SentencePieceProcessor`` (the hub's tokenizer type);
* :class:`ProxyASRBrain`: joint CTC/attention training, validation by the
  FREE-RUNNING greedy-CTC WER;
* :func:`train_proxy_stage`: one checkpointed, resumable stage that keeps
  the selected checkpoint (best WER, best loss or last) and returns the
  model frozen.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.models.asr import freeze
from robust_brain.stages import fit_stage, require_checkpoint

logger = logging.getLogger(__name__)

__all__ = ["train_tokenizer", "ProxyASRBrain", "train_proxy_stage"]


def train_tokenizer(
    folder,
    annotation_csv,
    vocab_size: int,
    model_type: str = "unigram",
    text_column: str = "wrd",
    bos_id: int = 1,
    eos_id: int = 2,
    unk_id: int = 0,
):
    """Train (once, on the main process) and load a SentencePiece model.

    The special ids follow SpeechBrain's LibriSpeech models: unk (= CTC
    blank = padding) 0, bos 1, eos 2.

    Arguments
    ---------
    folder : path-like
        Where the model goes (``<vocab_size>_<model_type>.model``); an
        existing model is reused.
    annotation_csv : path-like
        Manifest holding the transcripts.
    vocab_size : int
        Number of pieces (ignored by the ``char`` model type).
    model_type : str
        ``unigram``, ``bpe`` or ``char``.
    text_column : str
        Transcript column.
    bos_id, eos_id, unk_id : int
        Special ids.

    Returns
    -------
    sentencepiece.SentencePieceProcessor
    """
    import sentencepiece as spm
    from speechbrain.tokenizers.SentencePiece import SentencePiece

    folder = Path(folder)

    def _train():
        SentencePiece(
            str(folder),
            vocab_size,
            annotation_train=str(annotation_csv),
            annotation_read=text_column,
            model_type=model_type,
            character_coverage=1.0,
            bos_id=bos_id,
            eos_id=eos_id,
            unk_id=unk_id,
        )

    sb.utils.distributed.run_on_main(_train)
    tokenizer = spm.SentencePieceProcessor()
    tokenizer.load(str(folder / f"{vocab_size}_{model_type}.model"))
    return tokenizer


class ProxyASRBrain(sb.Brain):
    """Train a :class:`~robust_brain.models.asr.ConformerASR`.

    ``modules`` holds ``asr`` (the model). Batches are ``PaddedBatch`` of
    :class:`~robust_brain.data.streams.SpeechStream` items (``noisy``,
    ``tokens``, ``wrd``): the input is ``noisy`` (a clean item has
    ``noisy == clean``). Hparams read: ``tokenizer`` (validation WER),
    ``lr_annealing`` (optional, a SpeechBrain scheduler on the validation
    loss), ``train_logger`` (optional).

    Example
    -------
    >>> from speechbrain.dataio.batch import PaddedBatch
    >>> from speechbrain.dataio.encoder import CTCTextEncoder
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> chars = CTCTextEncoder()  # stands in for the SentencePiece model
    >>> chars.update_from_iterable("AB ", sequence_input=False)
    >>> chars.insert_blank()
    >>> asr = ConformerASR(vocab_size=len(chars), d_model=16, nhead=2,
    ...     d_ffn=16, num_encoder_layers=2, num_decoder_layers=1,
    ...     cnn_channels=(4, 4), normalize=False)
    >>> brain = ProxyASRBrain(modules={"asr": asr},
    ...     opt_class=lambda p: torch.optim.Adam(p, 1e-3),
    ...     hparams={"tokenizer": chars})
    >>> items = [{"id": u, "noisy": torch.randn(3200), "wrd": "A B",
    ...           "tokens": chars.encode_sequence_torch(list("A B"))}
    ...          for u in "ab"]
    >>> loader = {"batch_size": 2, "collate_fn": PaddedBatch}
    >>> brain.fit(range(1), items, items, train_loader_kwargs=loader,
    ...     valid_loader_kwargs=loader)
    >>> sorted(brain.last_stats)  # validation: loss and free-running WER
    ['WER', 'loss']
    """

    def make_dataloader(
        self, dataset, stage, ckpt_prefix="dataloader-", **loader_kwargs
    ):
        """SpeechBrain's loader with the dataset's own ``collate``."""
        if "collate_fn" not in loader_kwargs and hasattr(dataset, "collate"):
            loader_kwargs["collate_fn"] = dataset.collate
        return super().make_dataloader(
            dataset, stage, ckpt_prefix=ckpt_prefix, **loader_kwargs
        )

    def compute_forward(self, batch, stage):
        """Nothing to precompute: the model's loss does the forward."""
        return batch.to(self.device)

    def compute_objectives(self, batch, _, stage):
        """Joint CTC/attention loss; greedy-CTC WER outside training."""
        wavs, lens = batch.noisy
        tokens, token_lens = batch.tokens
        # through forward (DDP), the model itself for decoding
        loss = self.modules.asr(wavs, lens, tokens, token_lens, self.epoch)
        if stage != sb.Stage.TRAIN:
            asr = getattr(self.modules.asr, "module", self.modules.asr)
            hyps = asr.transcribe(wavs, lens, self.hparams.tokenizer)
            self.wer_metric.append(
                batch.id,
                [h.split() for h in hyps],
                [w.split() for w in batch.wrd],
            )
        return loss

    def on_stage_start(self, stage, epoch=None):
        """Track the epoch (normalisation statistics) and the WER."""
        self.epoch = epoch
        if stage != sb.Stage.TRAIN:
            self.wer_metric = sb.utils.metric_stats.ErrorRateStats()

    def on_stage_end(self, stage, stage_loss, epoch=None):
        """Log, anneal the learning rate, keep the best-WER checkpoint."""
        if stage == sb.Stage.TRAIN:
            self.train_loss = stage_loss
            return
        stats = {
            "loss": stage_loss,
            "WER": self.wer_metric.summarize("error_rate"),
        }
        if stage == sb.Stage.VALID:
            meta = {"epoch": epoch}
            annealing = getattr(self.hparams, "lr_annealing", None)
            if annealing is not None:
                old_lr, new_lr = annealing(stage_loss)
                sb.nnet.schedulers.update_learning_rate(self.optimizer, new_lr)
                meta["lr"] = old_lr
            train_logger = getattr(self.hparams, "train_logger", None)
            if train_logger is not None:
                train_logger.log_stats(
                    stats_meta=meta,
                    train_stats={"loss": self.train_loss},
                    valid_stats=stats,
                )
            if self.checkpointer is not None:
                self.checkpointer.save_and_keep_only(
                    meta=stats, min_keys=["WER", "loss"]
                )
        self.last_stats = stats


def train_proxy_stage(
    model,
    tokenizer,
    train_set,
    valid_set,
    *,
    folder,
    epochs: int,
    opt_class,
    run_opts=None,
    lr_annealing=None,
    train_loader_kwargs: Mapping | None = None,
    valid_loader_kwargs: Mapping | None = None,
    extra_hparams: Mapping | None = None,
    selection: str = "WER",
):
    """Train the proxy in ``folder`` (resumable), load the selected
    checkpoint and return the model FROZEN.

    Checkpoints hold ``asr`` (the hub ``asr.ckpt`` layout) and
    ``normalizer`` apart, like SpeechBrain's pretrained models.

    Arguments
    ---------
    model : ConformerASR
    tokenizer : sentencepiece.SentencePieceProcessor
    train_set, valid_set : SpeechStream
        Items with ``noisy``, ``tokens``, ``wrd``.
    folder : path-like
        Stage folder (``save/``, ``train_log.txt``).
    epochs : int
    opt_class : callable
        ``params -> optimizer``.
    run_opts : RunOptions or dict, optional
        SpeechBrain run options (command line).
    lr_annealing : SpeechBrain scheduler, optional
    train_loader_kwargs, valid_loader_kwargs : mapping, optional
    extra_hparams : mapping, optional
        More hparams for the Brain (e.g. ``max_grad_norm``).
    selection : str
        Checkpoint to keep: lowest validation ``WER``, lowest validation
        ``loss`` or the ``last`` one (the best of each key and the last
        are kept on disk).

    Returns
    -------
    ConformerASR
        The frozen model (eval mode, no parameter gradients).
    """
    if selection not in ("WER", "loss", "last"):
        raise ValueError(f"selection must be WER, loss or last: {selection}")
    recoverables = {"asr": model.asr_model}
    if model.normalize:
        recoverables["normalizer"] = model.normalizer
    if lr_annealing is not None:
        recoverables["lr_annealing"] = lr_annealing
    brain = fit_stage(
        ProxyASRBrain,
        {"asr": model},
        folder=folder,
        epochs=epochs,
        opt_class=opt_class,
        train_set=train_set,
        valid_set=valid_set,
        hparams={
            "tokenizer": tokenizer,
            "lr_annealing": lr_annealing,
            **(extra_hparams or {}),
        },
        recoverables=recoverables,
        run_opts=run_opts,
        train_loader_kwargs=train_loader_kwargs,
        valid_loader_kwargs=valid_loader_kwargs,
    )
    key = {} if selection == "last" else {"min_key": selection}
    recovered = brain.checkpointer.recover_if_possible(**key)
    require_checkpoint(recovered, epochs, "proxy", folder)
    model.to(torch.device(brain.device))
    return freeze(model)
