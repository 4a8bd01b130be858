"""Front-ends judged by unseen recognisers: one API for every method.

:func:`evaluate_enhancers` scores trained enhancers (each at a fixed input
level, through :class:`robust_brain.inference.Enhancer`, the interface
users load) next to the noisy input, the
clean reference and off-the-shelf peers (:mod:`robust_brain.evaluation.
peers`); :func:`wer_table` prints the comparison (systems x recogniser x
condition group), :func:`write_results_summary` gathers the tables of
every evaluation set of a run. :func:`dry_variants` adds each enhancer at
other dry/wet values, :func:`recogniser_roles` says which recogniser
trained the systems and which only judge them.

Example
-------
>>> rows = [dict(system="NOIS", recogniser="asr", condition="pink_0dB",
...              sub=1, ins=0, n_ref=4, **{"del": 0})]
>>> print(wer_table(rows).splitlines()[-1])
| NOIS | 25.0 | 25.0 | 25.0 |
"""

from __future__ import annotations

import copy
import math
import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.inference import Enhancer

__all__ = [
    "condition_family",
    "wer_table",
    "recogniser_roles",
    "dry_variants",
    "evaluate_enhancers",
    "write_results_summary",
    "seed_table",
]


_SNR_SUFFIX = re.compile(r"_-?\d+(\.\d+)?dB$")


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


def wer_table(
    rows: Sequence[Mapping],
    systems: Sequence[str] | None = None,
    group=condition_family,
    title: str = "",
    n_seeds: int = 1,
) -> str:
    """Markdown WER (%) table: systems x (recogniser, condition group).

    Each cell pools the errors of its group; ``mean`` is the mean of the
    group WERs (D4AM's protocol) and ``all`` the pooled WER. Every method's
    comparison of front-ends is printed by this one function.

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
    acc: dict = {}
    groups: OrderedDict = OrderedDict()
    recs: OrderedDict = OrderedDict()
    seen_systems: OrderedDict = OrderedDict()
    for r in rows:
        g = group(r)
        groups[g] = None
        recs[r["recogniser"]] = None
        seen_systems[r["system"]] = None
        key = (r["system"], r["recogniser"], g)
        e = acc.setdefault(key, [0, 0])
        e[0] += int(r["sub"]) + int(r["del"]) + int(r["ins"])
        e[1] += int(r["n_ref"])
    systems = list(systems) if systems else list(seen_systems)
    heads, cells = [], []
    for rec in recs:
        for g in groups:
            heads.append(f"{rec} {g}")
        heads += [f"{rec} mean", f"{rec} all"]
    lines = [
        (title + ", " if title else "") + f"WER (%), {n_seeds} seed(s)",
        "",
        "| " + " | ".join(["system", *heads]) + " |",
        "|" + "---|" * (1 + len(heads)),
    ]
    for s in systems:
        cells = []
        for rec in recs:
            rates, err, ref = [], 0, 0
            for g in groups:
                e = acc.get((s, rec, g))
                if e and e[1]:
                    rates.append(e[0] / e[1])
                    err, ref = err + e[0], ref + e[1]
                    cells.append(f"{100 * e[0] / e[1]:.1f}")
                else:
                    cells.append("–")
            mean = sum(rates) / len(rates) if rates else math.nan
            cells.append("–" if math.isnan(mean) else f"{100 * mean:.1f}")
            cells.append(f"{100 * err / ref:.1f}" if ref else "–")
        lines.append("| " + " | ".join([s, *cells]) + " |")
    return "\n".join(lines)


def recogniser_roles(hparams: Mapping) -> str:
    """Which recogniser trained the systems (the proxy, ``proxy_name``)
    and which only judge them (``eval_recognisers`` minus the proxy).

    Example
    -------
    >>> recogniser_roles({"proxy_name": "whisper-tiny.en",
    ...     "eval_recognisers": ["whisper-base", "whisper-tiny.en"]})
    'Trained through: whisper-tiny.en (proxy); judged by: whisper-base.'
    """
    proxy = hparams.get("proxy_name", "the Conformer proxy")
    judges = [r for r in hparams["eval_recognisers"] if r != proxy]
    return f"Trained through: {proxy} (proxy); judged by: {', '.join(judges)}."


def dry_variants(enhancers: Mapping, values: Sequence[float]) -> dict:
    """The enhancers, then each again at every non-zero dry/wet value
    (``NAME@dry<v>``: ``(1 - v) * enhanced + v * noisy``, DEMUCS' ``dry``)
    that it does not already have.

    Example
    -------
    >>> from robust_brain.models import Demucs
    >>> out = dry_variants({"INIT": Demucs(hidden=4, depth=2)}, [0, 0.5])
    >>> list(out), out["INIT@dry0.5"].dry, out["INIT"].dry
    (['INIT', 'INIT@dry0.5'], 0.5, 0.0)
    >>> list(dry_variants({"CLSO": Demucs(hidden=4, depth=2, dry=0.5)}, [0.5]))
    ['CLSO']
    """
    out = dict(enhancers)
    for value in values:
        if not value:
            continue
        for name, enh in enhancers.items():
            if not hasattr(enh, "dry"):
                raise ValueError(f"{name}: its enhancer has no dry/wet knob")
            if enh.dry == value:  # already used at that value (mode_dry)
                continue
            variant = copy.deepcopy(enh)
            variant.dry = float(value)
            out[f"{name}@dry{value:g}"] = variant
    return out


def evaluate_enhancers(
    manifest,
    enhancers: Mapping[str, torch.nn.Module],
    recognisers: Sequence,
    out_dir,
    *,
    data_root=None,
    input_level_dbfs: float | None = -25.0,
    include_noisy: bool = True,
    include_clean: bool = False,
    peers: Mapping[str, str] | None = None,
    max_utterances: int | None = None,
    conditions: Sequence[str] | None = None,
    cache=None,
    batch_size: int = 8,
    device: str = "cpu",
    signal_metrics: Sequence[str] = ("si_sdr",),
    title: str = "",
    n_seeds: int = 1,
    table_name: str = "wer_table.md",
):
    """Score enhancers with (unseen) recognisers on a pair manifest.

    Every enhancer gets inputs normalised to ``input_level_dbfs``
    (:class:`robust_brain.inference.Enhancer`); NOIS is the original noisy
    file.
    Writes the evaluation package's files (per-condition tables, CSVs,
    WER-vs-SNR plot) to ``out_dir`` and the :func:`wer_table` to
    ``<out_dir>/<table_name>``.

    Arguments
    ---------
    manifest : path-like
        Pair manifest (``noisy_wav``, ``clean_wav``, ``wrd``, ...).
    enhancers : mapping of str to module
        System name -> enhancer (in table order).
    recognisers : sequence
        Recogniser objects or spec strings (``whisper-tiny.en``, ...).
    out_dir : path-like
        Output folder.
    data_root : path-like, optional
        Replaces ``$data_root``.
    input_level_dbfs : float, optional
        Input level of the enhancers.
    include_noisy, include_clean : bool
        Add the NOIS / CLEAN systems.
    peers : mapping of str to str, optional
        Off-the-shelf front-ends a user would pick instead, name ->
        ``NAME[:key=value...]`` of :func:`robust_brain.evaluation.build_peer`
        (e.g. ``{"DFN3": "deepfilternet3"}``); they hear the noisy files,
        as NOIS.
    max_utterances : int, optional
        Keep the first N rows (after the condition filter; quick runs).
    conditions : sequence of str, optional
        Keep only the rows of these ``condition`` values.
    cache : path-like, optional
        Transcript cache.
    batch_size : int
        Enhancer batch size.
    device : str
        Enhancer device.
    signal_metrics : sequence of str
        Signal metrics where a clean reference exists.
    title : str
        Table title.
    n_seeds : int
        For the table title.
    table_name : str
        File name of the table in ``out_dir``.

    Returns
    -------
    (EvalResult, str)
        The result and the markdown table.
    """
    from robust_brain.evaluation import (
        evaluate,
        read_manifest,
        select_rows,
        write_results,
    )

    rows = read_manifest(manifest, data_root)
    rows = select_rows(rows, conditions, max_utterances, source=manifest)
    systems = OrderedDict()
    if include_noisy:
        systems["NOIS"] = "noisy_wav"
    for name, spec in (peers or {}).items():
        systems[name] = f"peer:{spec}"
    for name, enh in enhancers.items():
        # scored through the interface users load (robust_brain.inference)
        settings = {"sample_rate": 16000, "input_level_dbfs": input_level_dbfs}
        modules = {"enhance_model": enh.eval()}
        # not frozen: the caller may train it further
        systems[name] = Enhancer(modules, settings, freeze_params=False)
    if include_clean and rows and rows[0].get("clean_wav"):
        systems["CLEAN"] = "clean_wav"
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
    table = wer_table(result.rows, list(systems), title=title, n_seeds=n_seeds)
    if sb.utils.distributed.if_main_process():
        write_results(result, out_dir, header=title)
        (Path(out_dir) / table_name).write_text(table + "\n")
    return result, table


def write_results_summary(
    eval_folder, output_file, table_name: str = "wer_table.md"
) -> str:
    """Concatenate every ``<eval_folder>/<set>/<table_name>`` (also those
    of earlier runs with other sets) into ``output_file``.

    Arguments
    ---------
    eval_folder : path-like
    output_file : path-like
    table_name : str
        The per-set table file (:func:`evaluate_enhancers` writes
        ``wer_table.md``; GR: ``gr_table.md``).

    Returns
    -------
    str
        The text written.

    Example
    -------
    >>> import tempfile
    >>> tmp = Path(tempfile.mkdtemp())
    >>> for name in ("test", "test_real"):
    ...     (tmp / name).mkdir()
    ...     _ = (tmp / name / "wer_table.md").write_text(f"| {name} |\\n")
    >>> print(write_results_summary(tmp, tmp / "results.md"), end="")
    | test |
    <BLANKLINE>
    | test_real |
    """
    done = sorted(Path(eval_folder).glob(f"*/{table_name}"))
    text = "\n\n".join(p.read_text().strip() for p in done) + "\n"
    Path(output_file).write_text(text)
    return text


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
    import statistics

    per_seed: dict = {}  # (seed, system, group) -> [errors, words]
    seen: OrderedDict = OrderedDict()
    recs = set()
    for seed, rows in rows_by_seed.items():
        for r in rows:
            if recogniser and r["recogniser"] != recogniser:
                continue
            recs.add(r["recogniser"])
            seen[r["system"]] = None
            for label, conditions in groups.items():
                if r.get("condition") in conditions:
                    e = per_seed.setdefault((seed, r["system"], label), [0, 0])
                    e[0] += int(r["sub"]) + int(r["del"]) + int(r["ins"])
                    e[1] += int(r["n_ref"])
    if len(recs) > 1:
        raise ValueError(
            f"rows of several recognisers {sorted(recs)}: pick one"
        )

    def rate(seed, system, label):
        e = per_seed.get((seed, system, label))
        return 100 * e[0] / e[1] if e and e[1] else None

    def cell(values):
        if not values:
            return "–"
        sd = statistics.stdev(values) if len(values) > 1 else 0.0
        return f"{statistics.fmean(values):.1f} ± {sd:.1f}"

    first = next(iter(groups))
    heads = ["system", "n", *groups, f"rel. to {reference}, {first} (%)"]
    seeds = ", ".join(str(s) for s in rows_by_seed)
    lines = [
        (title + ", " if title else "") + f"WER (%), mean ± std over seeds "
        f"{seeds}",
        "",
        "| " + " | ".join(heads) + " |",
        "|" + "---|" * len(heads),
    ]
    for system in systems or list(seen):
        have = [s for s in rows_by_seed if rate(s, system, first) is not None]
        cells = [system, str(len(have))]
        for label in groups:
            values = [rate(s, system, label) for s in rows_by_seed]
            cells.append(cell([v for v in values if v is not None]))
        rel = []
        for s in have:
            ref = rate(s, reference, first)
            if ref:
                rel.append(100 * (rate(s, system, first) - ref) / ref)
        cells.append(cell(rel))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
