"""Per-condition tables, files and plots of an :class:`EvalResult`.

Rates are pooled inside a group (total errors / total reference words). Each
table also gives the pooled rate over all utterances and the MEAN of the
per-group rates (the D4AM protocol averages its per-environment WERs).

Files written by :func:`write_results`:

* ``utterances.csv``: one line per (system, recogniser, utterance): texts,
  normalised texts, error counts;
* ``signal.csv``: one line per (system, utterance): SI-SDR, STOI, PESQ;
* ``summary.json``: every table as nested dicts, plus run statistics;
* ``results.md``: the markdown tables that :func:`format_report` prints;
* ``wer_vs_snr.png``: WER against SNR, one line per (system, recogniser),
  one panel per noise type.
"""

import csv
import json
import math
import os
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from robust_brain.evaluation.metrics import SIGNAL_METRICS, WordErrors
from robust_brain.fileio import atomic_path, write_text_atomic

#: Columns a table can be grouped by, in printing order.
GROUPINGS = ("condition", "noise_type", "snr_db", "rt60")
ALL = "all (pooled)"
MEAN = "mean of groups"


def _float(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def group_label(row: dict, by: str) -> str:
    """The group of one result row under grouping ``by``.

    SNRs print as numbers, RT60s fall into 0.2 s bins, empty values read
    ``none``.

    Example
    -------
    >>> group_label({"snr_db": "5.0"}, "snr_db")
    '5'
    >>> group_label({"rt60": "0.53"}, "rt60")
    '0.4-0.6'
    >>> group_label({"rt60": ""}, "rt60")
    'none'
    >>> _ordered_groups(["10", "none", "-5", "0"], "snr_db")
    ['-5', '0', '10', 'none']
    """
    value = row.get(by, "")
    if by == "snr_db":
        f = _float(value)
        return "none" if f is None else f"{f:g}"
    if by == "rt60":
        f = _float(value)
        if f is None or f <= 0:
            return "none"
        lo = math.floor(f / 0.2 + 1e-9) * 0.2
        return f"{lo:.1f}-{lo + 0.2:.1f}"
    return str(value) if value not in (None, "") else "none"


def _ordered_groups(labels: Iterable[str], by: str) -> list[str]:
    seen = list(OrderedDict.fromkeys(labels))
    if by in ("snr_db", "rt60"):

        def key(label):
            # "5", "-5" (SNR) or "0.4-0.6" (RT60 bin): sort by the number
            head = label if by == "snr_db" else label.split("-")[0]
            f = _float(head) if label != "none" else None
            return (f is None, f if f is not None else 0.0)

        return sorted(seen, key=key)
    return seen


def useful_groupings(rows: Sequence[dict]) -> list[str]:
    """``condition`` plus every other grouping with 2+ distinct values."""
    out = []
    for by in GROUPINGS:
        if not rows or by not in rows[0]:
            continue
        if by == "condition" or len({group_label(r, by) for r in rows}) > 1:
            out.append(by)
    return out


def error_table(rows: Sequence[dict], by: str = "condition"):
    """Pooled word errors per group and (system, recogniser).

    Arguments
    ---------
    rows : sequence of dict
        ``EvalResult.rows``.
    by : str
        Manifest column to group by.

    Returns
    -------
    OrderedDict
        ``group -> {(system, recogniser): (WordErrors, n_utts)}``, with the
        pooled ``ALL`` group last.

    Example
    -------
    >>> rows = [
    ...     dict(system="NOIS", recogniser="asr", condition="c1", sub=1,
    ...          ins=0, n_ref=4, **{"del": 0}),
    ...     dict(system="NOIS", recogniser="asr", condition="c2", sub=0,
    ...          ins=1, n_ref=6, **{"del": 2}),
    ... ]
    >>> t = error_table(rows)
    >>> [(g, round(v[("NOIS", "asr")][0].rate, 3)) for g, v in t.items()]
    [('c1', 0.25), ('c2', 0.5), ('all (pooled)', 0.4)]
    """
    groups = OrderedDict(
        (g, {}) for g in _ordered_groups((group_label(r, by) for r in rows), by)
    )
    groups[ALL] = {}
    for r in rows:
        e = WordErrors(
            int(r["sub"]), int(r["del"]), int(r["ins"]), int(r["n_ref"])
        )
        col = (r["system"], r["recogniser"])
        for g in (group_label(r, by), ALL):
            prev, n = groups[g].get(col, (WordErrors(0, 0, 0, 0), 0))
            groups[g][col] = (prev + e, n + 1)
    return groups


def _columns(rows):
    systems = list(OrderedDict.fromkeys(r["system"] for r in rows))
    recs = list(OrderedDict.fromkeys(r["recogniser"] for r in rows))
    return systems, recs


def _pct(x: float) -> str:
    return "–" if x is None or math.isnan(x) else f"{100 * x:.1f}"


def _mean_rate(table, col):
    rates = [
        v[col][0].rate
        for g, v in table.items()
        if g != ALL and col in v and v[col][0].n_ref > 0
    ]
    return float(np.mean(rates)) if rates else math.nan


def wer_markdown(
    rows: Sequence[dict], by: str = "condition", wide: bool = False
) -> str:
    """Markdown WER (%) tables: groups x systems, one table per recogniser
    (or one table with a column per system and recogniser if ``wide``).

    Example
    -------
    >>> rows = [dict(system=s, recogniser="asr", condition="c", sub=e,
    ...              ins=0, n_ref=10, **{"del": 0})
    ...         for s, e in (("NOIS", 3), ("ENH", 1))]
    >>> print(wer_markdown(rows))
    WER (%) of asr by condition
    <BLANKLINE>
    | condition | utts | NOIS | ENH |
    |---|---|---|---|
    | c | 1 | 30.0 | 10.0 |
    | all (pooled) | 1 | 30.0 | 10.0 |
    >>> print(wer_markdown(rows, wide=True).splitlines()[2])
    | condition | utts | NOIS asr | ENH asr |
    """
    table = error_table(rows, by)
    systems, recs = _columns(rows)
    if wide:
        blocks = [
            (
                f"WER (%) by {by}",
                [(s, r) for r in recs for s in systems],
                [f"{s} {r}" for r in recs for s in systems],
            )
        ]
    else:
        blocks = [
            (f"WER (%) of {r} by {by}", [(s, r) for s in systems], systems)
            for r in recs
        ]
    out = []
    for title, cols, labels in blocks:
        lines = [
            title,
            "",
            "| " + " | ".join([by, "utts", *labels]) + " |",
            "|" + "---|" * (2 + len(labels)),
        ]
        for g, cells in table.items():
            n = max((cells.get(c, (None, 0))[1] for c in cols), default=0)
            vals = [_pct(cells[c][0].rate) if c in cells else "–" for c in cols]
            lines.append("| " + " | ".join([g, str(n), *vals]) + " |")
        if len(table) > 2:
            vals = [_pct(_mean_rate(table, c)) for c in cols]
            lines.append("| " + " | ".join([MEAN, "", *vals]) + " |")
        out.append("\n".join(lines))
    return "\n\n".join(out)


def signal_table(signal_rows: Sequence[dict], by: str = "condition"):
    """Mean signal metrics per group and system.

    Returns
    -------
    OrderedDict
        ``group -> {system: {metric: mean}}`` with ``ALL`` last.
    """
    metrics = [m for m in SIGNAL_METRICS if signal_rows and m in signal_rows[0]]
    groups = OrderedDict(
        (g, {})
        for g in _ordered_groups((group_label(r, by) for r in signal_rows), by)
    )
    groups[ALL] = {}
    acc = {}
    for r in signal_rows:
        for g in (group_label(r, by), ALL):
            for m in metrics:
                acc.setdefault((g, r["system"], m), []).append(float(r[m]))
    for (g, system, m), vals in acc.items():
        vals = [v for v in vals if not math.isnan(v)]
        groups[g].setdefault(system, {})[m] = (
            float(np.mean(vals)) if vals else math.nan
        )
    return groups


def signal_markdown(signal_rows: Sequence[dict], by: str = "condition") -> str:
    """Markdown table of mean SI-SDR (dB) / STOI / PESQ per group."""
    if not signal_rows:
        return ""
    table = signal_table(signal_rows, by)
    systems = list(OrderedDict.fromkeys(r["system"] for r in signal_rows))
    metrics = [m for m in SIGNAL_METRICS if m in signal_rows[0]]
    heads = [f"{s} {m}" for s in systems for m in metrics]
    lines = [
        f"Signal metrics by {by} (SI-SDR dB, STOI, PESQ-WB; level and high "
        "band dB, lag ms, each against the clean reference)",
        "",
        "| " + " | ".join([by, *heads]) + " |",
        "|" + "---|" * (1 + len(heads)),
    ]
    for g, cells in table.items():
        vals = []
        for s in systems:
            for m in metrics:
                v = cells.get(s, {}).get(m, math.nan)
                vals.append("–" if math.isnan(v) else f"{v:.2f}")
        lines.append("| " + " | ".join([g, *vals]) + " |")
    return "\n".join(lines)


def format_report(
    result, groupings: Sequence[str] | None = None, wide: bool = False
) -> str:
    """All markdown tables of a result (WER first, then signal metrics);
    ``wide``: see :func:`wer_markdown`."""
    # signal metrics alone (no recogniser): group by the signal rows
    groupings = groupings or useful_groupings(result.rows or result.signal_rows)
    parts = [wer_markdown(result.rows, by, wide) for by in groupings]
    if result.signal_rows:
        parts += [
            signal_markdown(result.signal_rows, by)
            for by in groupings
            if by in result.signal_rows[0]
        ]
    return "\n\n".join(p for p in parts if p)


def summarise(result, groupings: Sequence[str] | None = None) -> dict:
    """JSON-ready nested dicts of every table plus the run statistics."""
    groupings = groupings or useful_groupings(result.rows)
    out = {"stats": dict(result.stats), "wer": {}, "signal": {}}
    for by in groupings:
        table = error_table(result.rows, by)
        out["wer"][by] = {
            g: {
                f"{s}/{r}": {
                    "wer": e.rate,
                    "sub": e.substitutions,
                    "del": e.deletions,
                    "ins": e.insertions,
                    "n_ref": e.n_ref,
                    "n_utts": n,
                }
                for (s, r), (e, n) in cells.items()
            }
            for g, cells in table.items()
        }
        systems, recs = _columns(result.rows)
        out["wer"][by][MEAN] = {
            f"{s}/{r}": {"wer": _mean_rate(table, (s, r))}
            for s in systems
            for r in recs
        }
        if result.signal_rows and by in result.signal_rows[0]:
            out["signal"][by] = signal_table(result.signal_rows, by)
    return out


def _write_csv(path: Path, rows: Sequence[dict]):
    columns = list(OrderedDict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=columns)
        w.writeheader()
        w.writerows(rows)


def _is_clean(row) -> bool:
    return _float(row.get("snr_db")) is None and (
        str(row.get("condition", "")).lower() == "clean"
        or (
            row.get("noise_type", "") in ("", "none", "clean")
            and not _float(row.get("rt60"))
        )
    )


def _panel(row) -> str:
    kind = row.get("noise_type", "") or "noise"
    return kind + (" + reverb" if _float(row.get("rt60")) else "")


def plot_wer_vs_snr(rows: Sequence[dict], path: str | os.PathLike) -> bool:
    """WER (%) against SNR (dB), one line per (system, recogniser).

    One panel per noise type (reverberant ones apart); clean utterances
    (no SNR, no noise type, no reverberation) are drawn at the right end of
    every panel. Rows with neither an SNR nor a clean condition are left
    out.

    Arguments
    ---------
    rows : sequence of dict
        ``EvalResult.rows``.
    path : path-like
        PNG to write.

    Returns
    -------
    bool
        False (and no file) if no row has a numeric SNR.
    """
    noisy = [r for r in rows if _float(r.get("snr_db")) is not None]
    if not noisy:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clean = [r for r in rows if _is_clean(r)]
    kinds = list(OrderedDict.fromkeys(_panel(r) for r in noisy))
    systems, recs = _columns(rows)
    snrs = sorted({_float(r["snr_db"]) for r in noisy})
    clean_x = snrs[-1] + max(
        5.0, (snrs[-1] - snrs[0]) / 4 if len(snrs) > 1 else 5.0
    )
    ncols = min(3, len(kinds))
    nrows = math.ceil(len(kinds) / ncols)
    fig, axes = plt.subplots(
        nrows,
        ncols,
        figsize=(4.5 * ncols, 3.8 * nrows),
        sharey=True,
        squeeze=False,
    )
    axes = axes.reshape(-1)
    for ax in axes[len(kinds) :]:
        ax.set_visible(False)
    top = 0.0
    styles = ["-", "--", ":", "-."]
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, kind in zip(axes, kinds, strict=False):
        sub = [r for r in noisy if _panel(r) == kind]
        for si, s in enumerate(systems):
            for ri, rec in enumerate(recs):
                xs, ys = [], []
                for snr in snrs:
                    e = sum(
                        (
                            WordErrors(
                                int(r["sub"]),
                                int(r["del"]),
                                int(r["ins"]),
                                int(r["n_ref"]),
                            )
                            for r in sub
                            if r["system"] == s
                            and r["recogniser"] == rec
                            and _float(r["snr_db"]) == snr
                        ),
                        WordErrors(0, 0, 0, 0),
                    )
                    if e.n_ref:
                        xs.append(snr)
                        ys.append(100 * e.rate)
                ce = sum(
                    (
                        WordErrors(
                            int(r["sub"]),
                            int(r["del"]),
                            int(r["ins"]),
                            int(r["n_ref"]),
                        )
                        for r in clean
                        if r["system"] == s and r["recogniser"] == rec
                    ),
                    WordErrors(0, 0, 0, 0),
                )
                if ce.n_ref:
                    xs.append(clean_x)
                    ys.append(100 * ce.rate)
                if xs:
                    top = max(top, *ys)
                    ax.plot(
                        xs,
                        ys,
                        styles[ri % len(styles)],
                        marker="o",
                        color=colours[si % len(colours)],
                        label=f"{s} / {rec}",
                    )
        ticks = list(snrs) + ([clean_x] if clean else [])
        ax.set_xticks(ticks)
        ax.set_xticklabels(
            [f"{t:g}" for t in snrs] + (["clean"] if clean else [])
        )
        ax.set_title(kind)
        ax.set_xlabel("SNR (dB)")
        ax.grid(alpha=0.3)
    for ax in axes[::ncols]:
        ax.set_ylabel("WER (%)")
    axes[0].set_ylim(0, max(10.0, 1.05 * top))
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return True


def write_results(
    result, out_dir: str | os.PathLike, header: str = "", wide: bool = False
) -> dict[str, Path]:
    """Write CSV, JSON, markdown and PNG files of a result.

    Arguments
    ---------
    result : EvalResult
    out_dir : path-like
        Created if needed.
    header : str
        Text put above the tables in ``results.md`` (e.g. the command).
    wide : bool
        One WER table for all recognisers (see :func:`wer_markdown`).

    Returns
    -------
    dict
        Kind -> written path.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    if result.rows:
        paths["utterances"] = out / "utterances.csv"
        _write_csv(paths["utterances"], result.rows)
    if result.signal_rows:
        paths["signal"] = out / "signal.csv"
        _write_csv(paths["signal"], result.signal_rows)
    paths["summary"] = out / "summary.json"
    write_text_atomic(
        paths["summary"],
        json.dumps(summarise(result), indent=1, allow_nan=True),
    )
    paths["markdown"] = out / "results.md"
    text = (header.rstrip() + "\n\n" if header else "") + format_report(
        result, wide=wide
    )
    write_text_atomic(paths["markdown"], text + "\n")
    png = out / "wer_vs_snr.png"
    if plot_wer_vs_snr(result.rows, png):
        paths["plot"] = png
    return paths


def _read_log(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    cols = {}
    for row in rows:
        if row.get("skipped") == "1":
            continue
        for k, v in row.items():
            try:
                cols.setdefault(k, []).append(float(v))
            except (TypeError, ValueError):
                cols.setdefault(k, []).append(math.nan)
    return cols


def plot_surgery_log(
    csv_path,
    png_path,
    keys: Sequence[str] = (
        "alpha_gclb",
        "alpha_srpr",
        "cos",
        "gnorm_cls",
        "gnorm_reg",
        "loss_cls",
        "loss_reg",
    ),
    smooth: int = 1,
) -> bool:
    """Plot the engine's per-step statistics over training.

    Arguments
    ---------
    csv_path : path-like
        ``surgery_log_file`` written by the engine.
    png_path : path-like
        Output image.
    keys : sequence of str
        Columns to plot (absent ones are skipped).
    smooth : int
        Moving-average window (steps).

    Returns
    -------
    bool
        False (and no file) when the log is missing or has no such column.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "log.csv").write_text(
    ...     "step,skipped,alpha_gclb,cos\\n1,0,0.1,-0.2\\n2,0,0.0,0.3\\n")
    >>> plot_surgery_log(d / "log.csv", d / "log.png"), (d / "log.png").exists()
    (True, True)
    """
    if not os.path.exists(csv_path):
        return False
    cols = _read_log(csv_path)
    keys = [k for k in keys if k in cols and len(cols[k])]
    if not keys or "step" not in cols:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, axes = plt.subplots(
        len(keys), 1, figsize=(7, 1.8 * len(keys)), sharex=True, squeeze=False
    )
    steps = np.array(cols["step"])
    for ax, key in zip(axes[:, 0], keys, strict=True):
        y = np.array(cols[key], dtype=float)
        if smooth > 1 and len(y) >= smooth:
            y = np.convolve(y, np.ones(smooth) / smooth, mode="same")
        ax.plot(steps, y, lw=0.8)
        ax.set_ylabel(key, fontsize=8)
        ax.grid(alpha=0.3)
        if key.startswith(("gnorm", "loss")) and np.nanmin(y) > 0:
            ax.set_yscale("log")
    axes[-1, 0].set_xlabel("optimizer step")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return True
