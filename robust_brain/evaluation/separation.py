"""Separators evaluated: cpWER by unseen recognisers, SI-SDR(i), STOI, PESQ.

:func:`evaluate_separators` scores level-normalised separators
(:class:`LevelNormalizedSeparator`) on a separation manifest;
:func:`gpit_table` prints the comparison with the relative cpWER change
against a baseline (uPIT-SISDR fine-tuning).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import speechbrain as sb
import torch

from robust_brain.losses import length_mask

__all__ = ["LevelNormalizedSeparator", "evaluate_separators", "gpit_table"]


class LevelNormalizedSeparator(torch.nn.Module):
    """A separator whose output streams are scaled to a fixed RMS level
    (separated outputs have arbitrary scale; the recognisers' log-mel is
    not scale-invariant). SI-SDR and STOI are unaffected.

    Arguments
    ---------
    separator : callable
        ``(wavs, lengths) -> (batch, time, sources)``.
    level_dbfs : float, optional
        RMS level of each output over its valid samples (None: as is).

    Example
    -------
    >>> f = LevelNormalizedSeparator(
    ...     lambda w, n: torch.stack([w, 3 * w], -1), level_dbfs=-20.0)
    >>> out = f(torch.randn(1, 1000), torch.ones(1))
    >>> [round(float(out[0, :, k].pow(2).mean().sqrt()), 3) for k in (0, 1)]
    [0.1, 0.1]
    """

    def __init__(self, separator, level_dbfs: float | None = -25.0):
        super().__init__()
        self.separator = separator
        self.level_dbfs = level_dbfs

    def forward(self, wavs, lengths):
        est = self.separator(wavs, lengths)
        if self.level_dbfs is None:
            return est
        mask = length_mask(lengths, est.shape[1]).to(est.dtype).unsqueeze(-1)
        est = est * mask
        power = est.pow(2).sum(1, keepdim=True) / mask.sum(1, keepdim=True)
        gain = 10.0 ** (self.level_dbfs / 20.0) / power.sqrt().clamp_min(1e-8)
        return est * gain


def _rates(rows, system, recogniser):
    err = ref = 0
    for r in rows:
        if r["system"] == system and r["recogniser"] == recogniser:
            err += int(r["sub"]) + int(r["del"]) + int(r["ins"])
            ref += int(r["n_ref"])
    return err / ref if ref else math.nan


def gpit_table(
    rows: Sequence[Mapping],
    signal_rows: Sequence[Mapping],
    systems: Sequence[str],
    baseline: str = "uPIT-SISDR",
    mix_system: str = "MIX",
    title: str = "",
) -> str:
    """Markdown table: cpWER per recogniser (pooled), its relative change
    against ``baseline``, SI-SDR, SI-SDRi (vs the mixture), STOI, PESQ.

    Arguments
    ---------
    rows : sequence of dict
        ``EvalResult.rows`` (``system``, ``recogniser``, error counts).
    signal_rows : sequence of dict
        ``EvalResult.signal_rows`` (``ID``, ``system``, metrics), with the
        mixture's rows under ``mix_system`` for SI-SDRi.
    systems : sequence of str
        Row order.
    baseline : str
        The system the relative cpWER is computed against.
    mix_system : str
        Name of the unprocessed mixture in ``signal_rows``.
    title : str
        First line.

    Returns
    -------
    str

    Example
    -------
    >>> rows = [dict(system=s, recogniser="asr", sub=e, ins=0, n_ref=100,
    ...              **{"del": 0}) for s, e in (("uPIT-SISDR", 50),
    ...                                          ("GPIT", 40))]
    >>> sig = [dict(ID="u", system=s, si_sdr=v, stoi=0.8, pesq=1.5)
    ...        for s, v in (("MIX", 0.0), ("uPIT-SISDR", 8.0),
    ...                     ("GPIT", 7.5))]
    >>> table = gpit_table(rows, sig, ["uPIT-SISDR", "GPIT"])
    >>> table.splitlines()[0].split(" | ")[1:4]
    ['cpWER asr (%)', 'rel. asr (%)', 'SI-SDR (dB)']
    >>> print(table.splitlines()[-1])
    | GPIT | 40.0 | -20.0 | 7.50 | 7.50 | 0.800 | 1.50 |
    """
    recs = list(OrderedDict((r["recogniser"], None) for r in rows))
    mix = {r["ID"]: r for r in signal_rows if r["system"] == mix_system}
    heads = []
    for rec in recs:
        heads += [f"cpWER {rec} (%)", f"rel. {rec} (%)"]
    heads += ["SI-SDR (dB)", "SI-SDRi (dB)", "STOI", "PESQ"]
    lines = [title, ""] if title else []
    lines += [
        "| " + " | ".join(["system", *heads]) + " |",
        "|" + "---|" * (1 + len(heads)),
    ]

    def mean(values):
        values = [v for v in values if v is not None and not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    def fmt(x, digits):
        return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"

    for s in systems:
        cells = []
        for rec in recs:
            rate = _rates(rows, s, rec)
            base = _rates(rows, baseline, rec)
            rel = 100 * (rate - base) / base if base else math.nan
            cells += [fmt(100 * rate, 1), fmt(rel, 1)]
        sig = [r for r in signal_rows if r["system"] == s]
        si = mean([float(r["si_sdr"]) for r in sig if "si_sdr" in r])
        sii = mean(
            [
                float(r["si_sdr"]) - float(mix[r["ID"]]["si_sdr"])
                for r in sig
                if r["ID"] in mix and "si_sdr" in r
            ]
        )
        stoi = mean([float(r["stoi"]) for r in sig if "stoi" in r])
        pesq = mean([float(r["pesq"]) for r in sig if "pesq" in r])
        cells += [fmt(si, 2), fmt(sii, 2), fmt(stoi, 3), fmt(pesq, 2)]
        lines.append("| " + " | ".join([s, *cells]) + " |")
    return "\n".join(lines)


def evaluate_separators(
    manifest,
    separators: Mapping[str, torch.nn.Module],
    recognisers: Sequence,
    out_dir,
    *,
    data_root=None,
    output_level_dbfs: float | None = -25.0,
    max_utterances: int | None = None,
    cache=None,
    batch_size: int = 4,
    device: str = "cpu",
    signal_metrics: Sequence[str] = ("si_sdr", "stoi", "pesq"),
    baseline: str = "uPIT-SISDR",
    title: str = "",
):
    """Score separators with (unseen) recognisers on a separation manifest.

    Every separator's output streams are scaled to ``output_level_dbfs``
    (:class:`LevelNormalizedSeparator`); cpWER against ``s1_wrd``/``s2_wrd``
    (best speaker-to-stream assignment), SI-SDR / STOI / PESQ against the
    manifest's ``s<k>_wav`` (streams assigned by SI-SDR); the mixture is
    scored for signal metrics only (SI-SDRi). Writes the evaluation
    package's files and ``gpit_table.md`` to ``out_dir``.

    Arguments
    ---------
    manifest : path-like
        Separation manifest.
    separators : mapping of str to module
        System name -> separator (table order).
    recognisers : sequence
        Recogniser objects or spec strings (``whisper-tiny.en``, ...).
    out_dir : path-like
    data_root : path-like, optional
    output_level_dbfs : float, optional
    max_utterances : int, optional
        Keep the first N mixtures.
    cache : path-like, optional
        Transcript cache.
    batch_size : int
    device : str
    signal_metrics : sequence of str
    baseline : str
        Reference system of the relative cpWER.
    title : str

    Returns
    -------
    (EvalResult, str)
        The result (separators only) and the markdown table.
    """
    from robust_brain.evaluation import (
        evaluate,
        read_manifest,
        select_rows,
        write_results,
    )

    if not Path(manifest).is_file():
        raise FileNotFoundError(f"no evaluation manifest {manifest}")
    rows = select_rows(
        read_manifest(manifest, data_root), max_utterances=max_utterances
    )
    systems = OrderedDict()
    for name, sep in separators.items():
        sep.eval()
        systems[name] = LevelNormalizedSeparator(sep, output_level_dbfs).eval()
    result = evaluate(
        rows,
        systems,
        list(recognisers),
        cache=cache,
        signal_metrics=list(signal_metrics),
        batch_size=batch_size,
        device=device,
        progress=False,
    )
    mix = evaluate(
        rows,
        {"MIX": "mix_wav"},
        [],
        signal_metrics=list(signal_metrics),
        progress=False,
    )
    table = gpit_table(
        result.rows,
        result.signal_rows + mix.signal_rows,
        ["MIX", *systems],
        baseline=baseline if baseline in systems else next(iter(systems)),
        title=title,
    )
    if sb.utils.distributed.if_main_process():
        result.signal_rows += mix.signal_rows
        write_results(result, out_dir, header=title)
        (Path(out_dir) / "gpit_table.md").write_text(table + "\n")
    return result, table
