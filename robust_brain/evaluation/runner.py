"""The evaluation grid: systems x unseen recognisers x manifest utterances.

A *system* produces the audio that the recognisers hear, per utterance:

* a manifest column name (``"noisy_wav"``, ``"clean_wav"``; several joined
  by ``+`` give several streams, e.g. ``"s1_wav+s2_wav"``);
* ``"folder:/path"``: processed wavs written by some other tool, found as
  ``<ID>.wav``, else ``<ID>_s1.wav``, ``<ID>_s2.wav``, ... (one per output
  stream), else the input file's own name inside the folder;
* a callable ``f(wavs, lengths) -> Tensor``: an enhancer or separator run on
  the fly, batched. ``wavs`` is a zero-padded float tensor ``(batch, time)``
  of the input column (``noisy_wav`` for pair manifests, ``mix_wav`` for
  separation manifests); ``lengths`` holds RELATIVE lengths in (0, 1]
  (SpeechBrain's convention). It returns ``(batch, time)`` for one stream or
  ``(batch, time, streams)`` for a separator; each output is cut back to its
  input's length.
* ``"peer:NAME[:key=value...]"``: an off-the-shelf enhancer
  (``deepfilternet3``, ``rnnoise``, ``noisereduce``), run on the fly on
  CPU as such a callable; see :mod:`robust_brain.evaluation.peers`.

Every stream is transcribed, free-running, by every recogniser (with the
:class:`~robust_brain.evaluation.cache.TranscriptCache` in front), and scored
against the manifest's transcript(s) with Whisper's normaliser: plain WER for
pair manifests (``wrd``), cpWER for separation manifests (``s1_wrd``,
``s2_wrd``). Where clean references exist (``clean_wav`` or ``s<k>_wav``),
SI-SDR / STOI / PESQ of each system are computed too (streams assigned to
sources by SI-SDR), except for audio that is bit-identical to its reference
(the CLEAN system, or the "noisy" file of a clean condition).
"""

import csv
import inspect
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf

from robust_brain.evaluation.cache import TranscriptCache, audio_digest
from robust_brain.evaluation.metrics import (
    SIGNAL_METRICS,
    best_source_assignment,
    cp_word_errors,
)
from robust_brain.evaluation.normalise import normalise
from robust_brain.evaluation.peers import build_peer
from robust_brain.evaluation.recognisers import Recogniser, build_recogniser

SAMPLE_RATE = 16000
#: Manifest columns copied into every result row (when present).
META_COLUMNS = ("condition", "noise_type", "snr_db", "rt60", "spk_id")


# ---------------------------------------------------------------- manifest
def read_manifest(
    path: str | os.PathLike, data_root: str | os.PathLike | None = None
) -> list[dict]:
    """Read a SpeechBrain CSV manifest, expanding ``$data_root``.

    Arguments
    ---------
    path : path-like
        The CSV (see :mod:`robust_brain.data.manifest` for the schemas).
    data_root : path-like, optional
        Replaces ``$data_root``; defaults to the manifest's folder.

    Returns
    -------
    list of dict
        One dict per line, all values str.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / "m.csv").write_text(
    ...     "ID,duration,noisy_wav,wrd\\nu1,1.0,$data_root/a.wav,hi\\n")
    >>> read_manifest(d / "m.csv", "/corpus")[0]["noisy_wav"]
    '/corpus/a.wav'
    """
    path = Path(path)
    root = str(data_root) if data_root is not None else str(path.parent)
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for row in rows:
        for k, v in row.items():
            if isinstance(v, str) and "$data_root" in v:
                row[k] = v.replace("$data_root", root)
    return rows


def select_rows(
    rows: Sequence[Mapping],
    conditions: Sequence[str] | None = None,
    max_utterances: int | None = None,
    max_per_condition: int | None = None,
    source="rows",
) -> list[dict]:
    """The evaluation rows: those of ``conditions`` (all: None), at most
    ``max_per_condition`` of each, then the first ``max_utterances``.

    Arguments
    ---------
    rows : sequence of dict
        Manifest rows (:func:`read_manifest`).
    conditions : sequence of str, optional
        ``condition`` values to keep.
    max_utterances, max_per_condition : int, optional
        Caps (quick runs).
    source : str or path-like
        Named in the error when a requested condition has no row.

    Returns
    -------
    list of dict

    Example
    -------
    >>> rows = [{"condition": c} for c in "aabbb"]
    >>> [r["condition"] for r in select_rows(rows, ["b", "a"],
    ...                                       max_per_condition=2)]
    ['a', 'a', 'b', 'b']
    >>> len(select_rows(rows, max_utterances=3))
    3
    >>> select_rows(rows, ["a", "c"], source="test.csv")
    Traceback (most recent call last):
    ...
    ValueError: test.csv: no row of condition(s) ['c'] (it has ['a', 'b'])
    """
    kept, seen = [], {}
    for r in rows:
        c = r.get("condition", "")
        if conditions and c not in conditions:
            continue
        seen[c] = seen.get(c, 0) + 1
        if max_per_condition is None or seen[c] <= max_per_condition:
            kept.append(dict(r))
    missing = sorted(set(conditions or ()) - set(seen))
    if missing:  # a typo would silently shrink the test
        have = sorted({r.get("condition", "") for r in rows})
        raise ValueError(
            f"{source}: no row of condition(s) {missing} (it has {have})"
        )
    return kept[: int(max_utterances)] if max_utterances else kept


def reference_texts(row: Mapping[str, str]) -> list[str]:
    """The transcript(s) of one manifest row: ``[wrd]`` or
    ``[s1_wrd, s2_wrd, ...]``.

    Example
    -------
    >>> reference_texts({"wrd": "hi"})
    ['hi']
    >>> reference_texts({"s1_wrd": "a", "s2_wrd": "b", "s1_wav": "x"})
    ['a', 'b']
    """
    if "wrd" in row:
        return [row["wrd"]]
    refs, k = [], 1
    while f"s{k}_wrd" in row:
        refs.append(row[f"s{k}_wrd"])
        k += 1
    if not refs:
        raise ValueError("manifest has neither wrd nor s1_wrd columns")
    return refs


def reference_audio_columns(row: Mapping[str, str]) -> list[str]:
    """Columns holding the clean reference signal(s) of one row.

    Example
    -------
    >>> reference_audio_columns({"wrd": "", "clean_wav": "c.wav"})
    ['clean_wav']
    >>> reference_audio_columns({"s1_wrd": "", "s1_wav": "", "s2_wav": ""})
    ['s1_wav', 's2_wav']
    """
    if "wrd" in row:
        return ["clean_wav"] if "clean_wav" in row else []
    cols, k = [], 1
    while f"s{k}_wav" in row:
        cols.append(f"s{k}_wav")
        k += 1
    return cols


def input_column(row: Mapping[str, str]) -> str:
    """The column an enhancer or separator processes."""
    return "mix_wav" if "mix_wav" in row else "noisy_wav"


def load_audio(path: str | os.PathLike) -> np.ndarray:
    """Read a wav as mono float32 at 16 kHz (resampling if needed).

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "a.wav"
    >>> sf.write(p, np.ones((8000, 2)) * 0.5, 8000)
    >>> x = load_audio(p)
    >>> x.dtype, x.shape
    (dtype('float32'), (16000,))
    """
    wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if sr != SAMPLE_RATE:
        import torch
        import torchaudio

        wav = torchaudio.functional.resample(
            torch.from_numpy(wav), sr, SAMPLE_RATE
        ).numpy()
    return np.ascontiguousarray(wav, dtype=np.float32)


# ----------------------------------------------------------------- systems
class System:
    """Produces the audio stream(s) of a batch of manifest rows."""

    #: manifest columns it reads verbatim (used to skip signal metrics of a
    #: system that IS the reference)
    columns: tuple[str, ...] = ()

    def streams(self, rows: Sequence[Mapping[str, str]]):
        """Per row: a list of 1-D float32 arrays, or None if unavailable."""
        raise NotImplementedError


class ColumnSystem(System):
    """Audio named by manifest column(s), ``"a"`` or ``"a+b"``."""

    def __init__(self, spec: str):
        self.columns = tuple(c.strip() for c in spec.split("+"))

    def streams(self, rows):
        out = []
        for row in rows:
            paths = [row.get(c, "") for c in self.columns]
            missing = [c for c in self.columns if c not in row]
            if missing:
                raise KeyError(f"manifest has no column(s) {missing}")
            out.append([load_audio(p) for p in paths] if all(paths) else None)
        return out


class FolderSystem(System):
    """Processed wavs in a folder: ``<ID>.wav``, ``<ID>_s<k>.wav`` or the
    input file's name."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder).expanduser()
        if not self.folder.is_dir():
            raise FileNotFoundError(f"no folder {self.folder}")

    def _paths(self, row):
        single = self.folder / f"{row['ID']}.wav"
        if single.is_file():
            return [single]
        multi, k = [], 1
        while (self.folder / f"{row['ID']}_s{k}.wav").is_file():
            multi.append(self.folder / f"{row['ID']}_s{k}.wav")
            k += 1
        if multi:
            return multi
        same = self.folder / Path(row.get(input_column(row), "")).name
        if same.is_file():
            return [same]
        raise FileNotFoundError(
            f"{self.folder}: no {row['ID']}.wav, {row['ID']}_s1.wav "
            f"or {same.name}"
        )

    def streams(self, rows):
        return [[load_audio(p) for p in self._paths(row)] for row in rows]


def _accepts_two_args(fn) -> bool:
    target = fn.forward if hasattr(fn, "forward") else fn
    try:
        params = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    return len(positional) >= 2 or any(
        p.kind == p.VAR_POSITIONAL for p in params
    )


class CallableSystem(System):
    """An enhancer/separator ``f(wavs, lengths)`` applied on the fly.

    Arguments
    ---------
    fn : callable
        ``(batch, time)`` float tensor and relative lengths -> ``(batch,
        time')`` or ``(batch, time', streams)``. A module whose ``forward``
        takes one argument is called as ``fn(wavs)``.
    batch_size : int
        Utterances per call (rows are sorted by length to limit padding).
    device : str
        Torch device the batch is moved to.
    """

    def __init__(self, fn: Callable, batch_size: int = 8, device="cpu"):
        self.fn = fn
        self.batch_size = max(1, int(batch_size))
        self.device = device
        self.two_args = _accepts_two_args(fn)

    def streams(self, rows):
        import torch

        wavs = [load_audio(row[input_column(row)]) for row in rows]
        out = [None] * len(rows)
        order = sorted(range(len(rows)), key=lambda i: len(wavs[i]))
        for b in range(0, len(order), self.batch_size):
            idx = order[b : b + self.batch_size]
            longest = max(1, max(len(wavs[i]) for i in idx))
            batch = torch.zeros(len(idx), longest)
            for j, i in enumerate(idx):
                batch[j, : len(wavs[i])] = torch.from_numpy(wavs[i])
            lens = torch.tensor([len(wavs[i]) / longest for i in idx])
            batch, lens = batch.to(self.device), lens.to(self.device)
            with torch.inference_mode():
                est = self.fn(batch, lens) if self.two_args else self.fn(batch)
            if isinstance(est, tuple | list):
                est = est[0]
            est = est.detach().float().cpu()
            if est.dim() == 2:
                est = est.unsqueeze(-1)
            if est.dim() != 3 or est.shape[0] != len(idx):
                raise ValueError(
                    "an enhancer must return (batch, time) or (batch, time, "
                    f"streams); got {tuple(est.shape)}"
                )
            for j, i in enumerate(idx):
                n = len(wavs[i])
                out[i] = [
                    np.ascontiguousarray(est[j, :n, k].numpy(), np.float32)
                    for k in range(est.shape[2])
                ]
        return out


def make_system(spec, batch_size: int = 8, device: str = "cpu") -> System:
    """A :class:`System` from a column spec, ``"folder:..."``,
    ``"peer:..."``, ``"pretrained:<folder>"`` (a trained front-end,
    :class:`robust_brain.inference.Enhancer`), a callable or a System.

    Example
    -------
    >>> make_system("s1_wav+s2_wav").columns
    ('s1_wav', 's2_wav')
    >>> type(make_system(lambda w, n: w)).__name__
    'CallableSystem'
    >>> make_system("peer:noisereduce:stationary=1").fn.name
    'noisereduce:stationary=true'
    """
    if isinstance(spec, System):
        return spec
    if callable(spec):
        return CallableSystem(spec, batch_size=batch_size, device=device)
    if isinstance(spec, str) and spec.startswith("folder:"):
        return FolderSystem(spec[len("folder:") :])
    if isinstance(spec, str) and spec.startswith("pretrained:"):
        # a trained front-end folder (robust_brain.inference.write_enhancer)
        from robust_brain.inference import Enhancer

        enhancer = Enhancer.from_hparams(
            source=spec[len("pretrained:") :], run_opts={"device": device}
        )
        return CallableSystem(enhancer, batch_size=batch_size, device=device)
    if isinstance(spec, str) and spec.startswith("peer:"):
        # the peers are CPU libraries, whatever device the others use
        peer = build_peer(spec[len("peer:") :])
        return CallableSystem(peer, batch_size=batch_size, device="cpu")
    if isinstance(spec, str) and spec:
        return ColumnSystem(spec)
    raise ValueError(f"cannot make a system of {spec!r}")


def default_systems(rows: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """NOIS/CLEAN for pair manifests, MIX/ORACLE for separation ones."""
    if rows and "mix_wav" in rows[0]:
        refs = reference_audio_columns(rows[0])
        return {"MIX": "mix_wav", "ORACLE": "+".join(refs)}
    return {"NOIS": "noisy_wav", "CLEAN": "clean_wav"}


# ------------------------------------------------------------------ result
@dataclass
class EvalResult:
    """Everything one evaluation produced.

    ``rows``: one dict per (system, recogniser, utterance) with the manifest
    metadata, ``ref``/``hyp`` (raw), ``ref_norm``/``hyp_norm``, ``sub``,
    ``del``, ``ins``, ``n_ref``. ``signal_rows``: one dict per (system,
    utterance) with the signal metrics. ``stats``: counts of decoded and
    cached transcripts, skipped rows and the wall time.
    """

    rows: list[dict] = field(default_factory=list)
    signal_rows: list[dict] = field(default_factory=list)
    stats: dict = field(default_factory=dict)


def _signal_scores(ref_wavs, streams, metrics):
    """Mean over sources; sources are matched to streams by SI-SDR. With
    fewer streams than sources (a mixture as "system"), an unmatched source
    is scored against its best stream, so a mixture gets the usual input
    SI-SDR (mean over sources of SI-SDR(source, mixture))."""
    assignment = list(best_source_assignment(ref_wavs, streams))
    for i, j in enumerate(assignment):
        if j is None:
            sdrs = [SIGNAL_METRICS["si_sdr"](ref_wavs[i], x) for x in streams]
            assignment[i] = int(np.argmax(sdrs))
    return {
        name: float(
            np.mean(
                [
                    SIGNAL_METRICS[name](ref_wavs[i], streams[j])
                    for i, j in enumerate(assignment)
                ]
            )
        )
        for name in metrics
    }


def evaluate(
    manifest: str | os.PathLike | Sequence[Mapping[str, str]],
    systems: Mapping[str, object] | None = None,
    recognisers: Sequence[Recogniser | str] = ("whisper-base",),
    data_root: str | os.PathLike | None = None,
    cache: TranscriptCache | str | os.PathLike | None = None,
    signal_metrics: Sequence[str] = ("si_sdr", "stoi", "pesq"),
    batch_size: int = 8,
    device: str = "cpu",
    chunk_size: int = 32,
    progress: bool = True,
) -> EvalResult:
    """Decode every system's output with every recogniser and score it.

    Arguments
    ---------
    manifest : path-like or list of dict
        Pair manifest (``PAIR_COLUMNS``) or separation manifest
        (``SEPARATION_COLUMNS``), or rows already read.
    systems : mapping name -> spec, optional
        Specs as in the module docstring: a column name, ``"a+b"``,
        ``"folder:/path"``, a callable ``f(wavs, lengths)`` or a
        :class:`System`. Default: :func:`default_systems`.
    recognisers : sequence
        :class:`Recogniser` objects or spec strings for
        :func:`~robust_brain.evaluation.recognisers.build_recogniser`.
    data_root : path-like, optional
        Replaces ``$data_root`` (default: the manifest's folder).
    cache : TranscriptCache or path, optional
        Transcript cache (``None``: no caching).
    signal_metrics : sequence of str
        Subset of ``si_sdr``, ``stoi``, ``pesq`` computed where a clean
        reference exists (empty: none).
    batch_size : int
        Batch size of callable systems.
    device : str
        Device of callable systems.
    chunk_size : int
        Utterances loaded (and enhanced) at a time.
    progress : bool
        Show a tqdm progress bar.

    Returns
    -------
    EvalResult

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> sf.write(d / "c.wav", np.sin(np.arange(8000) / 5) / 4, 16000)
    >>> sf.write(d / "n.wav", np.sin(np.arange(8000) / 5) / 2, 16000)
    >>> rows = [{"ID": "u1", "noisy_wav": str(d / "n.wav"),
    ...          "clean_wav": str(d / "c.wav"), "wrd": "HELLO WORLD",
    ...          "condition": "loud"}]
    >>> class Parrot:  # a stand-in recogniser
    ...     name, fingerprint = "parrot", "parrot|v1"
    ...     def transcribe(self, wavs):
    ...         return ["Hello, world!" for _ in wavs]
    >>> res = evaluate(rows, {"NOIS": "noisy_wav", "ENH": lambda w, n: w / 2},
    ...                [Parrot()], signal_metrics=["si_sdr"], progress=False)
    >>> [(r["system"], r["hyp_norm"], r["sub"] + r["del"] + r["ins"])
    ...  for r in res.rows]
    [('NOIS', 'hello world', 0), ('ENH', 'hello world', 0)]
    >>> [r["si_sdr"] > 40 for r in res.signal_rows]  # scaled copies
    [True, True]
    """
    from tqdm.auto import tqdm

    t0 = time.time()
    if isinstance(manifest, str | os.PathLike):
        rows = read_manifest(manifest, data_root)
    else:
        rows = [dict(r) for r in manifest]
    if systems is None:
        systems = default_systems(rows)
    built = {
        name: make_system(spec, batch_size=batch_size, device=device)
        for name, spec in systems.items()
    }
    recs = [
        build_recogniser(r) if isinstance(r, str) else r for r in recognisers
    ]
    names = [r.name for r in recs]
    if len(set(names)) != len(names):
        raise ValueError(f"recogniser names must be unique: {names}")
    unknown = set(signal_metrics) - set(SIGNAL_METRICS)
    if unknown:
        raise ValueError(f"unknown signal metrics {sorted(unknown)}")
    own_cache = not isinstance(cache, TranscriptCache)
    store = cache if not own_cache else TranscriptCache(cache)
    result = EvalResult()
    stats = {"decoded": 0, "cached": 0, "skipped": 0}
    bar = tqdm(
        total=len(rows) * len(built),
        disable=not progress,
        desc="evaluate",
        unit="utt",
    )
    try:
        for sys_name, system in built.items():
            bar.set_postfix_str(sys_name)
            for c in range(0, len(rows), chunk_size):
                chunk = rows[c : c + chunk_size]
                streams = system.streams(chunk)
                _score_signals(
                    result, sys_name, system, chunk, streams, signal_metrics
                )
                for rec in recs:
                    _decode_chunk(
                        result, stats, store, rec, sys_name, chunk, streams
                    )
                stats["skipped"] += sum(s is None for s in streams)
                bar.update(len(chunk))
    finally:
        bar.close()
        if own_cache:
            store.close()
    stats["seconds"] = round(time.time() - t0, 2)
    stats["utterances"] = len(rows)
    result.stats = stats
    return result


def _meta(row):
    return {k: row[k] for k in META_COLUMNS if k in row}


def _score_signals(result, sys_name, system, chunk, streams, metrics):
    if not metrics:
        return
    for row, st in zip(chunk, streams, strict=True):
        cols = reference_audio_columns(row)
        if st is None or not cols or not all(row.get(c) for c in cols):
            continue
        if tuple(cols) == tuple(system.columns):
            continue  # the reference itself: nothing to measure
        refs = [load_audio(row[c]) for c in cols]
        if all(any(np.array_equal(x, r) for r in refs) for x in st):
            continue  # bit-identical to the reference (e.g. clean "noisy")
        scores = _signal_scores(refs, st, metrics)
        result.signal_rows.append(
            {"ID": row["ID"], "system": sys_name, **_meta(row), **scores}
        )


def _decode_chunk(result, stats, store, rec, sys_name, chunk, streams):
    fp = rec.fingerprint
    todo = [
        (i, k, audio_digest(w))
        for i, st in enumerate(streams)
        if st is not None
        for k, w in enumerate(st)
    ]
    digest_of = {(i, k): d for i, k, d in todo}
    texts = store.get_many(fp, [d for _, _, d in todo])
    stats["cached"] += sum(d in texts for _, _, d in todo)
    missing = {}
    for i, k, d in todo:
        if d not in texts and d not in missing:
            missing[d] = (i, k)
    if missing:
        hyps = rec.transcribe([streams[i][k] for i, k in missing.values()])
        stats["decoded"] += len(missing)
        fresh = dict(zip(missing, hyps, strict=True))
        texts.update(fresh)
        store.put_many(
            fp,
            [
                (d, fresh[d], sys_name, chunk[i]["ID"])
                for d, (i, _) in missing.items()
            ],
        )
    for i, (row, st) in enumerate(zip(chunk, streams, strict=True)):
        if st is None:
            continue
        refs = reference_texts(row)
        hyps = [texts[digest_of[i, k]] for k in range(len(st))]
        refs_n = [normalise(r) for r in refs]
        hyps_n = [normalise(h) for h in hyps]
        errs, assignment = cp_word_errors(refs_n, hyps_n, normalised=True)
        single = len(refs) == 1 and len(hyps) == 1
        result.rows.append(
            {
                "ID": row["ID"],
                "system": sys_name,
                "recogniser": rec.name,
                **_meta(row),
                "ref": refs[0] if single else " | ".join(refs),
                "hyp": hyps[0] if single else " | ".join(hyps),
                "ref_norm": refs_n[0] if single else " | ".join(refs_n),
                "hyp_norm": hyps_n[0] if single else " | ".join(hyps_n),
                "sub": errs.substitutions,
                "del": errs.deletions,
                "ins": errs.insertions,
                "n_ref": errs.n_ref,
                "assignment": "" if single else str(list(assignment)),
            }
        )
