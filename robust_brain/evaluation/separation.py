"""Separators evaluated: cpWER by unseen recognisers, SI-SDR(i), STOI, PESQ.

:func:`evaluate_separators` scores level-normalised separators
(:class:`LevelNormalizedSeparator`) on a separation manifest;
:func:`gpit_table` prints the comparison with the relative cpWER change
against a baseline (uPIT-SISDR fine-tuning).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.evaluation.tables import gpit_table
from robust_brain.fileio import write_text_atomic
from robust_brain.losses import length_mask, sisdr_pit
from robust_brain.models.frontends import ResampledEnhancer

__all__ = [
    "LevelNormalizedSeparator",
    "evaluate_separators",
    "WHAMR_CONDITIONS",
    "condition_sisdri",
]

#: WHAMR!'s four mixtures, as sums of a manifest's component columns; the
#: targets stay the anechoic sources (``s1_wav``, ``s2_wav``), WHAMR!'s
#: standard task (separate, denoise and dereverberate)
WHAMR_CONDITIONS = {
    "anechoic": ("s1_wav", "s2_wav"),
    "anechoic+noise": ("s1_wav", "s2_wav", "noise_wav"),
    "reverb": ("s1_alt_wav", "s2_alt_wav"),
    "reverb+noise": ("mix_wav",),
}


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
    sample_rate: int = 16000,
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
    sample_rate : int
        The separators' own rate: the 16 kHz mixtures are resampled to it
        and the streams back (WHAMR!'s 8 kHz track).

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
        if sample_rate != 16000:
            sep = ResampledEnhancer(sep, sample_rate)
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
        write_text_atomic(Path(out_dir) / "gpit_table.md", table + "\n")
    return result, table


@torch.no_grad()
def condition_sisdri(
    separator,
    csv_path,
    conditions: Mapping = WHAMR_CONDITIONS,
    data_root=None,
    num_spks: int = 2,
    sample_rate: int = 8000,
    resample: bool = True,
    max_items: int | None = None,
) -> dict:
    """Mean SI-SDR and SI-SDR improvement (dB, best permutation) of a
    separator on mixtures rebuilt from a manifest's components: where a
    separator stands on the way from clean to noisy reverberant mixtures
    (e.g. after a clean dynamic-mixing curriculum).

    Arguments
    ---------
    separator : callable
        ``(wavs, lengths) -> (batch, time, sources)``.
    csv_path : path-like
        Separation manifest with every column ``conditions`` names.
    conditions : mapping
        Name -> columns summed into the mixture (:data:`WHAMR_CONDITIONS`).
    data_root, num_spks, sample_rate, resample, max_items
        As :class:`~robust_brain.data.separation.SeparationSet`.

    Returns
    -------
    dict
        Name -> ``{"si_sdr": dB, "si_sdri": dB, "n": mixtures}``.

    Example
    -------
    >>> import tempfile, pathlib, soundfile as sf, numpy as np
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> rng = np.random.default_rng(0)
    >>> for k in ("s1", "s2", "noise"):
    ...     sf.write(d / f"{k}.wav", rng.normal(size=800) / 10, 8000)
    >>> _ = (d / "m.csv").write_text("ID,duration,mix_wav,s1_wav,s2_wav,"
    ...     "noise_wav\\nu1,0.1,$data_root/s1.wav,$data_root/s1.wav,"
    ...     "$data_root/s2.wav,$data_root/noise.wav\\n")
    >>> oracle = lambda w, n: torch.stack([w, w], -1)  # the mixture twice
    >>> out = condition_sisdri(oracle, d / "m.csv", {"clean": (
    ...     "s1_wav", "s2_wav")})
    >>> abs(out["clean"]["si_sdri"]) < 1e-3, out["clean"]["n"]
    (True, 1)
    """
    from robust_brain.data.separation import SeparationSet

    data = SeparationSet(
        csv_path,
        data_root=data_root,
        num_spks=num_spks,
        sample_rate=sample_rate,
        max_items=max_items,
        resample=resample,
        name="condition_sisdri",
    )
    missing = sorted(
        {c for cols in conditions.values() for c in cols} - set(data.rows[0])
    )
    if missing:
        raise ValueError(f"{csv_path}: no column(s) {missing} for conditions")
    sums = {name: [0.0, 0.0] for name in conditions}
    for row in data.rows:
        refs = [data.load(row[c]) for c in data.columns[1:]]
        for name, cols in conditions.items():
            parts = [data.load(row[c]) for c in cols]
            n = min(w.numel() for w in refs + parts)
            mix = sum(w[:n] for w in parts).unsqueeze(0)
            ref = torch.stack([w[:n] for w in refs], -1).unsqueeze(0)
            est = separator(mix, torch.ones(1))[:, :n]
            base = mix.unsqueeze(-1).expand_as(ref)
            got = -float(sisdr_pit(est, ref)[0].mean())
            sums[name][0] += got
            sums[name][1] += got + float(sisdr_pit(base, ref)[0].mean())
    count = len(data.rows)
    return {
        name: {"si_sdr": a / count, "si_sdri": b / count, "n": count}
        for name, (a, b) in sums.items()
    }
