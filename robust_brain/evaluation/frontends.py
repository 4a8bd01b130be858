"""Front-ends judged by unseen recognisers: one API for every method.

:func:`evaluate_enhancers` scores trained enhancers (each at a fixed input
level, through :class:`robust_brain.inference.Enhancer`, the interface
users load) next to the noisy input, the clean reference and off-the-shelf
peers (:mod:`robust_brain.evaluation.peers`) and writes the
:func:`robust_brain.evaluation.tables.wer_table`;
:func:`write_results_summary` gathers the tables of every evaluation set
of a run. :func:`dry_variants` adds each enhancer at other dry/wet values,
:func:`recogniser_roles` says which recogniser trained the systems and
which only judge them.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import speechbrain as sb
import torch

from robust_brain.evaluation.tables import wer_table
from robust_brain.fileio import write_text_atomic
from robust_brain.inference import Enhancer

__all__ = [
    "recogniser_roles",
    "dry_variants",
    "evaluate_enhancers",
    "write_results_summary",
]


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
        write_text_atomic(Path(out_dir) / table_name, table + "\n")
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
    write_text_atomic(output_file, text)
    return text
