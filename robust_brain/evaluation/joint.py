"""Jointly trained enhancer + ASR systems (GR) evaluated.

:class:`JointRecogniser` decodes a system's OWN output free-running (greedy
CTC, or the attention beam search with CTC prefix scores of
:func:`make_beam_searcher`); :func:`evaluate_joint_systems` adds the
enhanced waveform scored by unseen recognisers
(:func:`robust_brain.evaluation.frontends.evaluate_enhancers`) and writes
:func:`~robust_brain.evaluation.tables.gr_table`; :func:`evaluate_gr_sets`
does it for every evaluation set of a recipe.
"""

from __future__ import annotations

import hashlib
import logging
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from robust_brain.evaluation.frontends import (
    evaluate_enhancers,
    write_results_summary,
)
from robust_brain.evaluation.tables import gr_table
from robust_brain.fileio import write_text_atomic
from robust_brain.inference import LevelNormalizedEnhancer
from robust_brain.models.asr import decode_tokens, update_weights_digest
from robust_brain.models.frontends import ResampledEnhancer

logger = logging.getLogger(__name__)

__all__ = [
    "make_beam_searcher",
    "JointRecogniser",
    "evaluate_gr_sets",
    "evaluate_joint_systems",
]


def make_beam_searcher(
    asr,
    beam_size: int = 10,
    ctc_weight: float = 0.4,
    max_decode_ratio: float = 1.0,
    length_normalization: bool = True,
    temperature: float = 1.0,
):
    """SpeechBrain's attention beam search for a ConformerASR, with CTC
    prefix scoring (joint CTC/attention decoding, free-running).

    Arguments
    ---------
    asr : ConformerASR
    beam_size : int
    ctc_weight : float
        Weight of the CTC prefix score (0: attention only).
    max_decode_ratio : float
        Maximum output length relative to the encoder frames.
    length_normalization : bool
    temperature : float

    Returns
    -------
    speechbrain.decoders.seq2seq.S2STransformerBeamSearcher

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=6, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False).eval()
    >>> search = make_beam_searcher(asr, beam_size=2)
    >>> wav, lens = torch.randn(1, 3200), torch.ones(1)
    >>> hyps = search(asr.encode(wav, lens), lens)[0]
    >>> len(hyps)
    1
    """
    from speechbrain.decoders.scorer import CTCScorer, ScorerBuilder
    from speechbrain.decoders.seq2seq import S2STransformerBeamSearcher

    if not 0.0 <= ctc_weight <= 1.0:
        raise ValueError(f"beam ctc_weight must be in [0, 1]: {ctc_weight}")
    scorer = None
    if ctc_weight > 0:
        ctc = CTCScorer(
            ctc_fc=asr.ctc_lin,
            blank_index=asr.blank_index,
            eos_index=asr.eos_index,
        )
        scorer = ScorerBuilder(full_scorers=[ctc], weights={"ctc": ctc_weight})
    return S2STransformerBeamSearcher(
        modules=[asr.transformer, asr.seq_lin],
        bos_index=asr.bos_index,
        eos_index=asr.eos_index,
        min_decode_ratio=0.0,
        max_decode_ratio=max_decode_ratio,
        beam_size=int(beam_size),
        scorer=scorer,
        using_eos_threshold=False,
        length_normalization=length_normalization,
        temperature=temperature,
    )


class JointRecogniser:
    """A jointly trained enhancer + ASR as an evaluation recogniser.

    Follows :class:`robust_brain.evaluation.recognisers.Recogniser`: the
    noisy waveform is scaled to ``input_level_dbfs``, enhanced, and decoded
    FREE-RUNNING by greedy CTC (``decoding="greedy"``) or by the attention
    beam search with CTC prefix scores (``"beam"``); a recogniser without
    CTC (Whisper) decodes greedily with its own ``transcribe``.

    Arguments
    ---------
    enhancer : torch.nn.Module or None
        ``enhancer(wavs, lengths)``; None: the ASR reads the input.
    asr : ConformerASR or WhisperASR
    tokenizer : sentencepiece.SentencePieceProcessor or WhisperTextTokenizer
    name : str
        Label in the result tables.
    decoding : str
        ``greedy`` or ``beam``.
    beam_size, beam_ctc_weight, max_decode_ratio : int, float, float
        See :func:`make_beam_searcher`.
    input_level_dbfs : float, optional
        Input level (the enhancers' evaluation convention).
    batch_size : int
    device : str
    sample_rate : int
        The rate the system was trained at: the 16 kHz input is resampled
        to it first (8 kHz RATS systems).

    Example
    -------
    >>> from robust_brain.models.asr import ConformerASR
    >>> _ = torch.manual_seed(0)
    >>> asr = ConformerASR(vocab_size=5, d_model=8, nhead=2, d_ffn=16,
    ...     num_encoder_layers=1, num_decoder_layers=1, cnn_channels=(2, 2),
    ...     normalize=False)
    >>> class Chars:
    ...     def decode_ids(self, ids):
    ...         return "".join("abcde"[i] for i in ids)
    >>> rec = JointRecogniser(lambda w, n: w, asr, Chars(), "MTL",
    ...                       decoding="beam", beam_size=2)
    >>> out = rec.transcribe([np.ones(1600, np.float32) / 9] * 2)
    >>> len(out), rec.fingerprint.split("|")[:2]
    (2, ['joint-beam2-ctc0.4', 'MTL'])
    """

    def __init__(
        self,
        enhancer,
        asr,
        tokenizer,
        name: str,
        decoding: str = "greedy",
        beam_size: int = 10,
        beam_ctc_weight: float = 0.4,
        max_decode_ratio: float = 1.0,
        input_level_dbfs: float | None = -25.0,
        batch_size: int = 8,
        device: str = "cpu",
        sample_rate: int = 16000,
    ):
        if decoding not in ("greedy", "beam"):
            raise ValueError(f"decoding must be greedy or beam: {decoding!r}")
        # no CTC head: the recogniser's own free-running decoder
        self.own_decoder = not hasattr(asr, "greedy_ctc")
        if self.own_decoder and decoding == "beam":
            raise ValueError(
                f"{type(asr).__name__} has no CTC/attention beam search: "
                "use decoding='greedy' (its own free-running decoder)"
            )
        self.asr = asr
        self.enhancer = enhancer
        self.front = (
            None
            if enhancer is None
            else LevelNormalizedEnhancer(enhancer, input_level_dbfs)
        )
        self.tokenizer = tokenizer
        self.name = name
        self.decoding = decoding
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.searcher = None
        self.settings = "joint-greedy"
        if self.own_decoder and hasattr(asr, "decoding_settings"):
            self.settings = f"joint-{asr.decoding_settings}"
        if decoding == "beam":
            self.searcher = make_beam_searcher(
                asr, beam_size, beam_ctc_weight, max_decode_ratio
            )
            self.settings = f"joint-beam{beam_size}-ctc{beam_ctc_weight:g}"
        self.sample_rate = int(sample_rate)
        digest = hashlib.sha256(str(input_level_dbfs).encode())
        if self.sample_rate != 16000:
            digest.update(f"rate={self.sample_rate}".encode())
        for module in (enhancer, asr):
            if isinstance(module, torch.nn.Module):
                update_weights_digest(digest, module)
        self._digest = digest.hexdigest()[:16]

    @property
    def fingerprint(self) -> str:
        """Weights of both models and the decoding settings."""
        return f"{self.settings}|{self.name}|{self._digest}"

    @torch.no_grad()
    def _decode(self, batch, lens):
        if self.sample_rate != 16000:
            import torchaudio

            batch = torchaudio.functional.resample(
                batch, 16000, self.sample_rate
            )
        if self.front is not None:
            batch = self.front(batch, lens)
        if self.own_decoder:
            return self.asr.transcribe(batch, lens, self.tokenizer)
        if self.searcher is None:
            ids = self.asr.greedy_ctc(batch, lens)
        else:
            enc = self.asr.encode(batch, lens)
            ids = self.searcher(enc, lens)[0]
        return [decode_tokens(self.tokenizer, seq) for seq in ids]

    @torch.no_grad()
    def transcribe(self, wavs: Sequence[np.ndarray]) -> list[str]:
        """Transcribe 16 kHz float arrays.

        Arguments
        ---------
        wavs : sequence of numpy.ndarray

        Returns
        -------
        list of str
        """
        self.asr.eval()
        if isinstance(self.enhancer, torch.nn.Module):
            self.enhancer.eval()
        out = [""] * len(wavs)
        order = sorted(range(len(wavs)), key=lambda i: len(wavs[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = max(1, max(len(wavs[i]) for i in idx))
            batch = torch.zeros(len(idx), longest)
            for j, i in enumerate(idx):
                batch[j, : len(wavs[i])] = torch.as_tensor(wavs[i])
            lens = torch.tensor([max(len(wavs[i]), 1) / longest for i in idx])
            texts = self._decode(batch.to(self.device), lens.to(self.device))
            for j, i in enumerate(idx):
                out[i] = texts[j]
        return out


def evaluate_gr_sets(
    hparams: Mapping,
    manifests: Mapping,
    systems: Mapping,
    tokenizer,
    device: str,
    corpus: str,
    data_root=None,
) -> None:
    """Score every system on every evaluation manifest; the tables.

    For each ``name -> manifest``: :func:`evaluate_joint_systems` in
    ``<eval_folder>/<name>`` (``gr_table.md``), then
    ``<output_folder>/results.md`` gathers the tables. Reads the
    ``eval_*`` hparams, ``seed``, ``sample_rate`` (the systems' rate),
    ``eval_folder`` and ``output_folder``.

    Arguments
    ---------
    hparams : mapping
    manifests : mapping
        Evaluation set name -> manifest path.
    systems : mapping
        From :func:`robust_brain.pipelines.gr.train_gr_systems`.
    tokenizer : sentencepiece.SentencePieceProcessor
    device : str
    corpus : str
        For the table titles (``"CHiME-4"``).
    data_root : path-like, optional
        Replaces ``$data_root`` in the manifests.
    """
    for name, manifest in manifests.items():
        _, table = evaluate_joint_systems(
            manifest,
            systems,
            tokenizer,
            hparams["eval_recognisers"],
            Path(hparams["eval_folder"]) / name,
            data_root=data_root,
            own_decodings=hparams["eval_own_decodings"],
            beam_size=hparams["eval_beam_size"],
            beam_ctc_weight=hparams["eval_beam_ctc_weight"],
            max_decode_ratio=hparams["eval_max_decode_ratio"],
            input_level_dbfs=hparams["eval_input_level_dbfs"],
            max_utterances=hparams["eval_max_utterances"],
            conditions=hparams["eval_conditions"],
            peers=hparams.get("eval_peers"),
            cache=hparams["eval_cache"],
            batch_size=hparams["eval_batch_size"],
            device=device,
            title=f"{corpus} {name}, seed {hparams['seed']}",
            sample_rate=hparams["sample_rate"],
        )
        logger.info("%s", table)
    write_results_summary(
        hparams["eval_folder"],
        Path(hparams["output_folder"]) / "results.md",
        table_name="gr_table.md",
    )


def evaluate_joint_systems(
    manifest,
    systems: Mapping[str, tuple],
    tokenizer,
    recognisers: Sequence,
    out_dir,
    *,
    data_root=None,
    own_decodings: Sequence[str] = ("greedy", "beam"),
    beam_size: int = 10,
    beam_ctc_weight: float = 0.4,
    max_decode_ratio: float = 1.0,
    input_level_dbfs: float | None = -25.0,
    include_noisy: bool = True,
    max_utterances: int | None = None,
    conditions: Sequence[str] | None = None,
    peers: Mapping[str, str] | None = None,
    cache=None,
    batch_size: int = 8,
    device: str = "cpu",
    reference: str = "MTL",
    title: str = "",
    sample_rate: int = 16000,
):
    """Score joint systems: their own WER and the enhanced waveform's.

    * own: each system's ASR decodes its own enhancer's output
      (free-running greedy CTC and/or attention beam search), in
      ``<out_dir>/own``;
    * unseen: the enhanced waveforms (inputs at ``input_level_dbfs``)
      transcribed by ``recognisers`` (e.g. Whisper, never trained here),
      with :func:`robust_brain.evaluation.frontends.evaluate_enhancers`, in
      ``<out_dir>/unseen``.

    Writes ``gr_table.md``
    (:func:`~robust_brain.evaluation.tables.gr_table`) in ``out_dir``.

    Arguments
    ---------
    manifest : path-like
        Pair manifest.
    systems : mapping
        Name -> ``(enhancer, asr)``.
    tokenizer : sentencepiece.SentencePieceProcessor
    recognisers : sequence
        Unseen recognisers (objects or spec strings); may be empty.
    out_dir : path-like
    data_root : path-like, optional
    own_decodings : sequence of str
        ``greedy`` and/or ``beam``.
    beam_size, beam_ctc_weight, max_decode_ratio :
        See :func:`make_beam_searcher`.
    input_level_dbfs : float, optional
    include_noisy : bool
        The unprocessed input as a system of the unseen recognisers.
    max_utterances : int, optional
    conditions : sequence of str, optional
    peers : mapping of str to str, optional
        Off-the-shelf front-ends scored by the unseen recognisers for
        reference (name -> peer spec, e.g. ``deepfilternet3``).
    cache : path-like, optional
        Transcript cache.
    batch_size : int
    device : str
    reference : str
        System of the relative-WER columns.
    title : str
    sample_rate : int
        The systems' own rate (the audio is read at 16 kHz, resampled to
        it for the systems and back for the unseen recognisers).

    Returns
    -------
    (list of dict, str)
        All result rows and the markdown table.
    """
    from robust_brain.evaluation import (
        evaluate,
        read_manifest,
        select_rows,
        write_results,
    )

    out_dir = Path(out_dir)
    if not Path(manifest).is_file():
        raise FileNotFoundError(f"evaluation manifest not found: {manifest}")
    rows = select_rows(
        read_manifest(manifest, data_root),
        conditions,
        max_utterances,
        source=manifest,
    )
    all_rows = []
    if own_decodings:
        recs = []
        for name, (enhancer, asr) in systems.items():
            enhancer.to(device).eval()
            asr.to(device).eval()
            for dec in own_decodings:
                recs.append(
                    JointRecogniser(
                        enhancer,
                        asr,
                        tokenizer,
                        f"own-{dec}:{name}",
                        decoding=dec,
                        beam_size=beam_size,
                        beam_ctc_weight=beam_ctc_weight,
                        max_decode_ratio=max_decode_ratio,
                        input_level_dbfs=input_level_dbfs,
                        batch_size=batch_size,
                        device=device,
                        sample_rate=sample_rate,
                    )
                )
        own = evaluate(
            rows,
            {"NOIS": "noisy_wav"},
            recs,
            cache=cache,
            signal_metrics=[],
            batch_size=batch_size,
            device=device,
            progress=False,
        )
        for r in own.rows:
            dec, name = r["recogniser"].split(":", 1)
            all_rows.append(dict(r, system=name, recogniser=dec))
        if sb.utils.distributed.if_main_process():
            write_results(own, out_dir / "own", header=title)
    if recognisers:
        enhancers = OrderedDict(
            (
                n,
                e
                if sample_rate == 16000
                else ResampledEnhancer(e, sample_rate),
            )
            for n, (e, _) in systems.items()
        )
        unseen, _ = evaluate_enhancers(
            manifest,
            enhancers,
            recognisers,
            out_dir / "unseen",
            data_root=data_root,
            input_level_dbfs=input_level_dbfs,
            include_noisy=include_noisy,
            max_utterances=max_utterances,
            conditions=conditions,
            peers=peers,
            cache=cache,
            batch_size=batch_size,
            device=device,
            title=title,
        )
        all_rows += unseen.rows
    order = (["NOIS"] if include_noisy else []) + list(peers or {})
    order += list(systems)
    table = gr_table(all_rows, order, reference=reference, title=title)
    if sb.utils.distributed.if_main_process():
        out_dir.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_dir / "gr_table.md", table + "\n")
    return all_rows, table
