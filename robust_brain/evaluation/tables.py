"""Every method's results tables, from the rows its evaluation wrote.

One accumulator (:func:`pooled_errors`: total errors / total reference
words per key) and one renderer (:func:`markdown`) make each table; the
functions only say which rows pool together and which columns to print:

* :func:`wer_table`: front-ends (D4AM) -- systems x recogniser x
  condition group, with the mean of the groups and the pooled rate;
* :func:`seed_table`: the same over seeds, mean ± std, and the change
  relative to a reference system;
* :func:`gr_table`: jointly trained systems (GR) -- pooled WER per
  recogniser and its reduction relative to MTL;
* :func:`gpit_table`: separators (GPIT) -- cpWER per recogniser, its
  change against uPIT-SISDR fine-tuning, SI-SDR(i), STOI, PESQ;
* :func:`distill_table`: distilled students -- probe WER / CER / accuracy
  per group of conditions with the size relative to the teacher.

Example
-------
>>> rows = [dict(system="NOIS", recogniser="asr", condition="pink_0dB",
...              sub=1, ins=0, n_ref=4, **{"del": 0})]
>>> print(wer_table(rows).splitlines()[-1])
| NOIS | 25.0 | 25.0 | 25.0 |
"""

from __future__ import annotations

import json
import math
import os
import re
import statistics
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

__all__ = [
    "DISTILL_LABELS",
    "condition_family",
    "distill_seed_table",
    "distill_table",
    "gpit_table",
    "gr_table",
    "markdown",
    "pooled_errors",
    "seed_table",
    "wer_table",
]

_SNR_SUFFIX = re.compile(r"_-?\d+(\.\d+)?dB$")

#: distillation systems: table labels, in table order
DISTILL_LABELS = {
    "teacher": "teacher (reference)",
    "plain": "plain distillation",
    "robustdistiller": "RobustDistiller",
    "cdm1": "CDM-1",
    "cdm2": "CDM-2",
    "cdm2_dat": "CDM-2 + DAT",
}


def condition_family(row: Mapping) -> str:
    """The condition without its SNR (``pink_5dB`` -> ``pink``).

    Arguments
    ---------
    row : mapping
        Result row with a ``condition`` column.

    Returns
    -------
    str

    Example
    -------
    >>> condition_family({"condition": "reverb_babble_-5dB"})
    'reverb_babble'
    >>> condition_family({"condition": "dt05_real_bus"})
    'dt05_real_bus'
    """
    return _SNR_SUFFIX.sub("", str(row.get("condition", "")) or "none")


def pooled_errors(
    rows: Iterable[Mapping], keys: Callable[[Mapping], Iterable]
) -> OrderedDict:
    """Word errors and reference words summed per key.

    Arguments
    ---------
    rows : iterable of dict
        Result rows with ``sub``, ``del``, ``ins`` and ``n_ref``.
    keys : callable
        Row -> the keys it counts towards (none to skip the row).

    Returns
    -------
    OrderedDict
        Key -> ``[errors, reference words]``, keys in order of appearance.

    Example
    -------
    >>> rows = [dict(system="A", sub=1, ins=1, n_ref=4, **{"del": 0}),
    ...         dict(system="A", sub=0, ins=0, n_ref=6, **{"del": 1})]
    >>> dict(pooled_errors(rows, lambda r: [r["system"]]))
    {'A': [3, 10]}
    """
    acc: OrderedDict = OrderedDict()
    for r in rows:
        for key in keys(r):
            e = acc.setdefault(key, [0, 0])
            e[0] += int(r["sub"]) + int(r["del"]) + int(r["ins"])
            e[1] += int(r["n_ref"])
    return acc


def _rate(acc: Mapping, key) -> float:
    e = acc.get(key)
    return e[0] / e[1] if e and e[1] else math.nan


def _percent(acc: Mapping, key) -> float:
    # 100 * errors / words (not 100 * rate): the same last bit, so the
    # same rounding at .x5, as every table printed before
    e = acc.get(key)
    return 100 * e[0] / e[1] if e and e[1] else math.nan


def _fmt(x, digits: int = 1) -> str:
    return "–" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def markdown(
    heads: Sequence[str], body: Iterable[Sequence[str]], title: str = ""
) -> str:
    """A markdown table, preceded by ``title`` and a blank line if given.

    Example
    -------
    >>> print(markdown(["system", "WER"], [["NOIS", "40.0"]], "WER (%)"))
    WER (%)
    <BLANKLINE>
    | system | WER |
    |---|---|
    | NOIS | 40.0 |
    """
    lines = [title, ""] if title else []
    lines += ["| " + " | ".join(heads) + " |", "|" + "---|" * len(heads)]
    lines += ["| " + " | ".join(cells) + " |" for cells in body]
    return "\n".join(lines)


def _unique(values: Iterable) -> list:
    return list(OrderedDict.fromkeys(values))


def wer_table(
    rows: Sequence[Mapping],
    systems: Sequence[str] | None = None,
    group=condition_family,
    title: str = "",
    n_seeds: int = 1,
) -> str:
    """Markdown WER (%) table: systems x (recogniser, condition group).

    Each cell pools the errors of its group; ``mean`` is the mean of the
    group WERs (D4AM's protocol) and ``all`` the pooled WER.

    Arguments
    ---------
    rows : sequence of dict
        ``EvalResult.rows`` (``system``, ``recogniser``, ``sub``, ``del``,
        ``ins``, ``n_ref`` and the manifest columns).
    systems : sequence of str, optional
        Row order (default: order of appearance).
    group : callable
        Row -> group label.
    title : str
        First line.
    n_seeds : int
        Reported in the title line.

    Returns
    -------
    str

    Example
    -------
    >>> rows = [dict(system=s, recogniser="asr", condition=c, sub=e, ins=0,
    ...              n_ref=10, **{"del": 0})
    ...         for s, e in (("NOIS", 4), ("D4AM", 2))
    ...         for c in ("pink_0dB", "pink_5dB")]
    >>> print(wer_table(rows))  # doctest: +NORMALIZE_WHITESPACE
    WER (%), 1 seed(s)
    <BLANKLINE>
    | system | asr pink | asr mean | asr all |
    |---|---|---|---|
    | NOIS | 40.0 | 40.0 | 40.0 |
    | D4AM | 20.0 | 20.0 | 20.0 |
    """
    acc = pooled_errors(
        rows, lambda r: [(r["system"], r["recogniser"], group(r))]
    )
    groups = _unique(group(r) for r in rows)
    recs = _unique(r["recogniser"] for r in rows)
    heads = ["system"]
    for rec in recs:
        heads += [f"{rec} {g}" for g in groups] + [f"{rec} mean", f"{rec} all"]
    body = []
    for s in systems or _unique(r["system"] for r in rows):
        cells = [s]
        for rec in recs:
            rates = [_rate(acc, (s, rec, g)) for g in groups]
            present = [x for x in rates if not math.isnan(x)]
            mean = sum(present) / len(present) if present else math.nan
            cells += [_fmt(_percent(acc, (s, rec, g))) for g in groups]
            # "all" pools the groups that have reference words
            kept = [acc[s, rec, g] for g in groups if (s, rec, g) in acc]
            kept = {"all": [sum(e[i] for e in kept if e[1]) for i in (0, 1)]}
            cells += [_fmt(100 * mean), _fmt(_percent(kept, "all"))]
        body.append(cells)
    title = (title + ", " if title else "") + f"WER (%), {n_seeds} seed(s)"
    return markdown(heads, body, title)


def seed_table(
    rows_by_seed: Mapping[str, Sequence[Mapping]],
    groups: Mapping[str, Sequence[str]],
    systems: Sequence[str] | None = None,
    recogniser: str | None = None,
    reference: str = "NOIS",
    title: str = "",
) -> str:
    """Markdown table over seeds: each system's pooled WER (%) per group
    of conditions, mean ± standard deviation over the seeds, and the
    relative change against ``reference`` on the first group.

    A seed's cell pools the errors of the group's utterances; systems
    missing in a seed are averaged over the seeds that have them (``n``).

    Arguments
    ---------
    rows_by_seed : mapping
        Seed -> ``utterances.csv`` rows of one evaluation (``system``,
        ``recogniser``, ``condition`` and the error counts).
    groups : mapping
        Column label -> the ``condition`` values it pools.
    systems : sequence of str, optional
        Row order (default: order of appearance).
    recogniser : str, optional
        Only this recogniser's rows (default: all must be one).
    reference : str
        The system of the relative column.
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> def rows(errs):
    ...     return [dict(system=s, recogniser="r", condition="pink_0dB",
    ...                  sub=e, ins=0, n_ref=10, **{"del": 0})
    ...             for s, e in errs.items()]
    >>> runs = {"1": rows({"NOIS": 5, "D4AM": 4}),
    ...         "2": rows({"NOIS": 5, "D4AM": 2})}
    >>> print(seed_table(runs, {"pink 0": ["pink_0dB"]}))
    ... # doctest: +NORMALIZE_WHITESPACE
    WER (%), mean ± std over seeds 1, 2
    <BLANKLINE>
    | system | n | pink 0 | rel. to NOIS, pink 0 (%) |
    |---|---|---|---|
    | NOIS | 2 | 50.0 ± 0.0 | 0.0 ± 0.0 |
    | D4AM | 2 | 30.0 ± 14.1 | -40.0 ± 28.3 |
    """
    picked = {
        seed: [
            r for r in rows if not recogniser or r["recogniser"] == recogniser
        ]
        for seed, rows in rows_by_seed.items()
    }
    recs = {r["recogniser"] for rows in picked.values() for r in rows}
    if len(recs) > 1:
        raise ValueError(
            f"rows of several recognisers {sorted(recs)}: pick one"
        )
    acc = {
        seed: pooled_errors(
            rows,
            lambda r: [
                (r["system"], label)
                for label, conditions in groups.items()
                if r.get("condition") in conditions
            ],
        )
        for seed, rows in picked.items()
    }

    def rate(seed, system, label):
        x = _percent(acc[seed], (system, label))
        return None if math.isnan(x) else x

    def cell(values):
        if not values:
            return "–"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {sd:.1f}"

    first = next(iter(groups))
    body = []
    seen = _unique(r["system"] for rows in picked.values() for r in rows)
    for system in systems or seen:
        have = [s for s in picked if rate(s, system, first) is not None]
        cells = [system, str(len(have))]
        for label in groups:
            values = [rate(s, system, label) for s in picked]
            cells.append(cell([v for v in values if v is not None]))
        rel = []
        for s in have:
            ref = rate(s, reference, first)
            if ref:
                rel.append(100 * (rate(s, system, first) - ref) / ref)
        cells.append(cell(rel))
        body.append(cells)
    heads = ["system", "n", *groups, f"rel. to {reference}, {first} (%)"]
    seeds = ", ".join(str(s) for s in rows_by_seed)
    title = (title + ", " if title else "") + (
        f"WER (%), mean ± std over seeds {seeds}"
    )
    return markdown(heads, body, title)


def gr_table(
    rows: Sequence[Mapping],
    systems: Sequence[str] | None = None,
    reference: str = "MTL",
    title: str = "",
) -> str:
    """Markdown table: pooled WER (%) per system and recogniser, and the
    relative WER reduction (%) with respect to ``reference``.

    Arguments
    ---------
    rows : sequence of dict
        Result rows (``system``, ``recogniser``, ``sub``, ``del``,
        ``ins``, ``n_ref``).
    systems : sequence of str, optional
        Row order (default: order of appearance).
    reference : str
        The baseline system of the relative columns.
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> rows = [dict(system=s, recogniser=r, sub=e, ins=0, n_ref=10,
    ...              **{"del": 0})
    ...         for s, e in (("MTL", 5), ("GR", 4)) for r in ("asr",)]
    >>> print(gr_table(rows))  # doctest: +NORMALIZE_WHITESPACE
    WER (%) and relative WER reduction vs MTL (%)
    <BLANKLINE>
    | system | asr | rel. |
    |---|---|---|
    | MTL | 50.0 | 0.0 |
    | GR | 40.0 | 20.0 |
    """
    acc = pooled_errors(rows, lambda r: [(r["system"], r["recogniser"])])
    recs = _unique(r["recogniser"] for r in rows)
    seen = _unique(r["system"] for r in rows)
    body = []
    for s in [s for s in (systems or seen) if s in seen]:
        cells = [s]
        for rec in recs:
            w, ref = _rate(acc, (s, rec)), _rate(acc, (reference, rec))
            rel = 100 * (ref - w) / ref if ref else math.nan
            cells += [_fmt(100 * w), _fmt(rel)]
        body.append(cells)
    heads = ["system"] + [h for rec in recs for h in (rec, "rel.")]
    title = (title + ", " if title else "") + (
        f"WER (%) and relative WER reduction vs {reference} (%)"
    )
    return markdown(heads, body, title)


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
    acc = pooled_errors(rows, lambda r: [(r["system"], r["recogniser"])])
    recs = _unique(r["recogniser"] for r in rows)
    mix = {r["ID"]: r for r in signal_rows if r["system"] == mix_system}

    def mean(values):
        values = [v for v in values if not math.isnan(v)]
        return float(np.mean(values)) if values else math.nan

    body = []
    for s in systems:
        cells = [s]
        for rec in recs:
            rate, base = _rate(acc, (s, rec)), _rate(acc, (baseline, rec))
            rel = 100 * (rate - base) / base if base else math.nan
            cells += [_fmt(100 * rate), _fmt(rel)]
        sig = [r for r in signal_rows if r["system"] == s]

        def metric(name, sig=sig):
            return mean([float(r[name]) for r in sig if name in r])

        sii = mean(
            [
                float(r["si_sdr"]) - float(mix[r["ID"]]["si_sdr"])
                for r in sig
                if r["ID"] in mix and "si_sdr" in r
            ]
        )
        cells += [_fmt(metric("si_sdr"), 2), _fmt(sii, 2)]
        cells += [_fmt(metric("stoi"), 3), _fmt(metric("pesq"), 2)]
        body.append(cells)
    heads = ["system"]
    for rec in recs:
        heads += [f"cpWER {rec} (%)", f"rel. {rec} (%)"]
    heads += ["SI-SDR (dB)", "SI-SDRi (dB)", "STOI", "PESQ"]
    return markdown(heads, body, title)


def _probe_rows(eval_dir) -> dict:
    """System -> the probe results of ``<eval_dir>/<system>.json``; for a
    sequence of folders (one run probed with several head seeds), each
    number averaged over the folders that hold it."""
    if not isinstance(eval_dir, str | os.PathLike):
        return _mean_probe_rows([_probe_rows(d) for d in eval_dir])
    rows = {}
    for p in sorted(Path(eval_dir).glob("*.json")):
        row = json.loads(p.read_text())
        rows[row["system"]] = row
    return rows


# probe metric key -> column label
PROBE_METRICS = {"wer": "WER", "cer": "CER", "acc": "KWS acc"}


def _distill_order(systems) -> list:
    """The known systems in the papers' order, then any others."""
    order = [s for s in DISTILL_LABELS if s in systems]
    return order + [s for s in systems if s not in order]


def _mean_probe_rows(probes: Sequence[dict]) -> dict:
    """Average the numeric fields of each system over several probes."""
    rows = {}
    for system in _unique(s for probe in probes for s in probe):
        found = [probe[system] for probe in probes if system in probe]
        row = dict(found[0])
        for key, value in row.items():
            if isinstance(value, float):
                values = [r[key] for r in found if key in r]
                row[key] = statistics.fmean(values)
        rows[system] = row
    return rows


def distill_table(eval_dir, groups: Sequence[str], title: str = "") -> str:
    """Markdown table of every ``<eval_dir>/<system>.json`` that
    :func:`robust_brain.evaluation.probes.evaluate_probes` wrote.

    Arguments
    ---------
    eval_dir : path-like
    groups : sequence of str
        Column groups, e.g. ``clean, in_domain, out_of_domain``.
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> row = {"system": "plain", "params": 2000000, "teacher_params": 8000000,
    ...        "wer_clean": 50.0, "cer_clean": 20.0, "acc_clean": 90.0}
    >>> _ = (d / "plain.json").write_text(json.dumps(row))
    >>> print(distill_table(d, ["clean"]))  # doctest: +NORMALIZE_WHITESPACE
    | system | params (M) | % teacher | WER clean | CER clean | KWS acc clean |
    |---|---|---|---|---|---|
    | plain distillation | 2.00 | 25.0 | 50.0 | 20.0 | 90.0 |
    """
    rows = _probe_rows(eval_dir)
    order = _distill_order(rows)
    body = []
    for s in order:
        r = rows[s]
        p, tp = r.get("params"), r.get("teacher_params")
        cells = [
            DISTILL_LABELS.get(s, s),
            "–" if p is None else f"{p / 1e6:.2f}",
            "–" if not (p and tp) else f"{100 * p / tp:.1f}",
        ]
        for key in PROBE_METRICS:
            cells += [
                "–" if r.get(f"{key}_{g}") is None else f"{r[f'{key}_{g}']:.1f}"
                for g in groups
            ]
        body.append(cells)
    heads = ["system", "params (M)", "% teacher"]
    heads += [f"{k} {g}" for k in PROBE_METRICS.values() for g in groups]
    return markdown(heads, body, title)


def distill_seed_table(
    eval_dirs: Sequence,
    groups: Sequence[str],
    metrics: Sequence[str] = ("wer", "acc"),
    title: str = "",
) -> str:
    """:func:`distill_table` over seeds: each system's probe results
    (``<eval_dir>/<system>.json``, one folder per seed), mean ± std.

    Arguments
    ---------
    eval_dirs : sequence of path-like, or of sequences of them
        One evaluation folder per seed; or, per seed, the folders of its
        probes with several head seeds (``probe_seed``), averaged first.
    groups : sequence of str
    metrics : sequence of str
        ``wer``, ``cer`` and/or ``acc`` (first-word accuracy).
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> dirs = [Path(tempfile.mkdtemp()) for _ in range(2)]
    >>> for d, wer in zip(dirs, (50.0, 60.0), strict=True):
    ...     _ = (d / "plain.json").write_text(json.dumps({"system": "plain",
    ...         "params": 2e6, "teacher_params": 8e6, "wer_clean": wer}))
    >>> print(distill_seed_table(dirs, ["clean"], ["wer"]))
    ... # doctest: +NORMALIZE_WHITESPACE
    | system | n | % teacher | WER clean |
    |---|---|---|---|
    | plain distillation | 2 | 25.0 | 55.0 ± 7.1 |
    """
    runs = [_probe_rows(d) for d in eval_dirs]
    empty = [str(d) for d, run in zip(eval_dirs, runs, strict=True) if not run]
    if empty:
        raise FileNotFoundError(f"no <system>.json in {', '.join(empty)}")
    seen = _unique(s for run in runs for s in run)
    order = _distill_order(seen)
    body = []
    for system in order:
        rows = [run[system] for run in runs if system in run]
        p, tp = rows[0].get("params"), rows[0].get("teacher_params")
        cells = [
            DISTILL_LABELS.get(system, system),
            str(len(rows)),
            "–" if not (p and tp) else f"{100 * p / tp:.1f}",
        ]
        for key in metrics:
            for g in groups:
                values = [r[f"{key}_{g}"] for r in rows if f"{key}_{g}" in r]
                if not values:
                    cells.append("–")
                    continue
                sd = statistics.stdev(values) if len(values) > 1 else 0.0
                cells.append(f"{statistics.fmean(values):.1f} ± {sd:.1f}")
        body.append(cells)
    heads = ["system", "n", "% teacher"]
    heads += [f"{PROBE_METRICS[k]} {g}" for k in metrics for g in groups]
    return markdown(heads, body, title)


def distill_difference_table(
    eval_dirs: Sequence,
    reference: str = "plain",
    groups: Sequence[str] = ("clean", "in_domain", "out_of_domain"),
    metrics: Sequence[str] = ("wer",),
    names: Sequence[str] | None = None,
    title: str = "",
) -> str:
    """Each system minus ``reference``, per seed and on the mean: the
    paired comparison (one seed's students share its data and probes).

    Arguments
    ---------
    eval_dirs : sequence
        As :func:`distill_seed_table`.
    reference : str
        The system subtracted (e.g. ``plain``).
    groups, metrics : sequence of str
    names : sequence of str, optional
        A label per seed (default: 1, 2, ...).
    title : str

    Returns
    -------
    str

    Example
    -------
    >>> import tempfile
    >>> dirs = [Path(tempfile.mkdtemp()) for _ in range(2)]
    >>> for d, (p, c) in zip(dirs, ((50.0, 48.0), (60.0, 61.0)), strict=True):
    ...     for system, wer in (("plain", p), ("cdm2", c)):
    ...         _ = (d / f"{system}.json").write_text(json.dumps(
    ...             {"system": system, "wer_clean": wer}))
    >>> print(distill_difference_table(dirs, groups=["clean"],
    ...                                names=["1986", "1987"]))
    ... # doctest: +NORMALIZE_WHITESPACE
    | system | seed | WER clean |
    |---|---|---|
    | CDM-2 | 1986 | -2.0 |
    | CDM-2 | 1987 | +1.0 |
    | CDM-2 | mean | -0.5 |
    """
    runs = [_probe_rows(d) for d in eval_dirs]
    names = list(names or range(1, len(runs) + 1))
    if len(names) != len(runs):
        raise ValueError(f"{len(names)} names for {len(runs)} runs")
    lacking = [
        str(n)
        for n, run in zip(names, runs, strict=True)
        if reference not in run
    ]
    if lacking:
        raise FileNotFoundError(
            f"no {reference}.json for seed(s) {', '.join(lacking)}"
        )
    seen = _unique(s for run in runs for s in run if s != reference)
    order = _distill_order(seen)
    keys = [f"{k}_{g}" for k in metrics for g in groups]
    body = []
    for system in order:
        diffs = {k: [] for k in keys}
        for name, run in zip(names, runs, strict=True):
            if system not in run:
                continue
            cells = [DISTILL_LABELS.get(system, system), str(name)]
            for k in keys:
                a, b = run[system].get(k), run[reference].get(k)
                if a is None or b is None:
                    cells.append("–")
                    continue
                diffs[k].append(a - b)
                cells.append(f"{a - b:+.1f}")
            body.append(cells)
        mean = [
            f"{statistics.fmean(v):+.1f}" if v else "–" for v in diffs.values()
        ]
        body.append([DISTILL_LABELS.get(system, system), "mean", *mean])
    heads = ["system", "seed"]
    heads += [f"{PROBE_METRICS[k]} {g}" for k in metrics for g in groups]
    return markdown(heads, body, title)
