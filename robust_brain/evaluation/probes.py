"""Probes of frozen speech features (the distillation recipes' evaluation).

:func:`evaluate_probes` trains small heads on the frozen features of each
system (a CTC head and a first-word classifier, :func:`first_word_classes`)
and scores them on groups of conditions (:func:`split_groups`: clean /
in-domain / out-of-domain);
:func:`robust_brain.evaluation.tables.distill_table` prints every system's
results with its size relative to the teacher's encoder
(:func:`teacher_encoder_parameters`).
"""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from robust_brain.evaluation.tables import condition_family
from robust_brain.fileio import write_text_atomic
from robust_brain.models.demucs import count_parameters
from robust_brain.models.student import LayerTeacher, learned_parameters

__all__ = [
    "teacher_encoder_parameters",
    "first_word_classes",
    "evaluate_probes",
    "split_groups",
]


def teacher_encoder_parameters(teacher: LayerTeacher) -> int:
    """Parameters of the teacher's ENCODER (what the student replaces;
    the offline Conformer's and Whisper's decoders and output layers are
    not counted, nor Whisper's fixed sinusoids: :func:`~robust_brain.
    models.student.learned_parameters`).

    Arguments
    ---------
    teacher : LayerTeacher

    Returns
    -------
    int
    """
    m = teacher.model
    if teacher.is_conformer:
        tr = m.transformer
        parts = [m.cnn, tr.custom_src_module, tr.encoder]
        return sum(count_parameters(p) for p in parts)
    if teacher.is_whisper:  # its decoder is not replaced either
        return learned_parameters(m.model.encoder)
    return learned_parameters(m)


def first_word_classes(texts: Sequence[str], k: int) -> list[str]:
    """The keyword task's classes: the ``k`` most frequent first words,
    then ``OTHER``.

    Arguments
    ---------
    texts : sequence of str
    k : int

    Returns
    -------
    list of str

    Example
    -------
    >>> first_word_classes(["A B", "THE C", "THE D", "SHE E"], 2)
    ['THE', 'A', 'OTHER']
    """
    counts = Counter(t.split()[0] for t in texts if t.split())
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:k]
    return [w for w, _ in top] + ["OTHER"]


def _word_label(text, classes):
    words = text.split()
    w = words[0] if words else ""
    return classes.index(w) if w in classes else len(classes) - 1


def _load_level(path, level_dbfs):
    from speechbrain.dataio.dataio import read_audio

    from robust_brain.data.streams import scale_to_dbfs

    x = read_audio(path).float()
    if x.dim() > 1:
        x = x.mean(-1)
    return scale_to_dbfs(x, level_dbfs)


@torch.no_grad()
def _extract(feature_fn, wavs, batch_size, device):
    """Frozen features of a list of 1-D signals, in order."""
    order = sorted(range(len(wavs)), key=lambda i: wavs[i].numel())
    feats = [None] * len(wavs)
    for s in range(0, len(order), batch_size):
        idx = order[s : s + batch_size]
        n = max(wavs[i].numel() for i in idx)
        batch = torch.zeros(len(idx), n)
        lens = torch.zeros(len(idx))
        for j, i in enumerate(idx):
            batch[j, : wavs[i].numel()] = wavs[i]
            lens[j] = wavs[i].numel() / n
        out = feature_fn(batch.to(device), lens.to(device)).float().cpu()
        t = out.shape[1]
        for j, i in enumerate(idx):
            feats[i] = out[j, : max(1, int(round(float(lens[j]) * t)))]
    return feats


def _pad(feats):
    n = max(f.shape[0] for f in feats)
    x = torch.zeros(len(feats), n, feats[0].shape[1])
    for i, f in enumerate(feats):
        x[i, : f.shape[0]] = f
    lens = torch.tensor([f.shape[0] for f in feats])
    return x, lens


class _Probe(torch.nn.Module):
    def __init__(self, dim, hidden, n_out):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.LayerNorm(dim),
            torch.nn.Linear(dim, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, n_out),
        )

    def forward(self, x):
        return self.net(x)


def _train_probe(feats, targets, kind, n_out, epochs, lr, hidden, seed):
    """Train a small head on frozen features (``ctc`` or ``cls``)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    head = _Probe(feats[0].shape[1], hidden, n_out)
    opt = torch.optim.Adam(head.parameters(), lr=lr)
    bs = 16
    for _ in range(epochs):
        perm = torch.randperm(len(feats), generator=gen).tolist()
        for s in range(0, len(perm), bs):
            idx = perm[s : s + bs]
            x, lens = _pad([feats[i] for i in idx])
            out = head(x)
            if kind == "ctc":
                tok = [targets[i] for i in idx]
                tlens = torch.tensor([len(t) for t in tok])
                flat = torch.tensor(
                    [v for t in tok for v in t], dtype=torch.long
                )
                loss = F.ctc_loss(
                    out.log_softmax(-1).transpose(0, 1),
                    flat,
                    lens,
                    tlens,
                    blank=0,
                    zero_infinity=True,
                )
            else:
                mask = (torch.arange(x.shape[1])[None] < lens[:, None]).float()
                pooled = (out * mask[..., None]).sum(1) / lens[:, None]
                loss = F.cross_entropy(
                    pooled, torch.tensor([targets[i] for i in idx])
                )
            opt.zero_grad()
            loss.backward()
            opt.step()
    return head.eval()


@torch.no_grad()
def _ctc_decode(head, feats, tokenizer):
    from robust_brain.models.asr import decode_tokens

    hyps = []
    for f in feats:
        ids = head(f[None]).argmax(-1)[0].tolist()
        out, prev = [], None
        for i in ids:
            if i != prev and i != 0:
                out.append(i)
            prev = i
        hyps.append(decode_tokens(tokenizer, out))
    return hyps


@torch.no_grad()
def _classify(head, feats):
    return [int(head(f[None]).mean(1).argmax(-1)) for f in feats]


def _error_rates(refs, hyps):
    from robust_brain.evaluation.metrics import word_errors

    w = c = nw = nc = 0
    for r, h in zip(refs, hyps, strict=True):
        e = word_errors(r, h)
        w, nw = w + e.errors, nw + e.n_ref
        rc = " ".join(r.replace(" ", "_"))
        hc = " ".join(h.upper().replace(" ", "_"))
        ec = word_errors(rc, hc, normalised=True)
        c, nc = c + ec.errors, nc + ec.n_ref
    return 100.0 * w / max(nw, 1), 100.0 * c / max(nc, 1)


def evaluate_probes(
    systems: Mapping,
    train_rows,
    eval_groups: Mapping,
    tokenizer,
    out_dir,
    *,
    params: Mapping | None = None,
    teacher_params: int | None = None,
    feature_kind: str = "last",
    probe_epochs: int = 10,
    probe_lr: float = 1e-3,
    probe_hidden: int = 128,
    kws_classes: int = 4,
    level_dbfs: float = -25.0,
    batch_size: int = 8,
    device: str = "cpu",
    seed: int = 0,
    probe_seed: int | None = None,
) -> list[dict]:
    """Frozen features + small trained heads, per system and group.

    For each system: features of the (clean) probe training rows, a CTC
    head (tokens of ``tokenizer``) and a first-word classifier
    (:func:`first_word_classes`) trained on them, then WER / CER (%) and
    accuracy (%) on each evaluation group. One JSON per system in
    ``out_dir`` (so that several runs add up in one table).

    Arguments
    ---------
    systems : mapping
        Name -> a student (``features(wavs, lens, kind)``) or a
        :class:`LayerTeacher` (its last layer).
    train_rows : sequence of dict
        ``wav`` and ``wrd``.
    eval_groups : mapping
        Group name -> rows (``noisy_wav`` or ``wav``, and ``wrd``), or
        ``(clean rows, Distorter)``: distorted online, seeded by
        ``(seed, group, index)``.
    tokenizer : sentencepiece.SentencePieceProcessor
    out_dir : path-like
    params : mapping, optional
        System -> parameter count.
    teacher_params : int, optional
    feature_kind : str
        ``last`` or ``pred`` (students).
    probe_epochs, probe_lr, probe_hidden : int, float, int
    kws_classes : int
        Number of first-word classes (+ OTHER).
    level_dbfs : float
        Every input is scaled to this level.
    batch_size : int
    device : str
    seed : int
        Seeds the online distortions of the evaluation groups and, unless
        ``probe_seed`` is given, the heads.
    probe_seed : int, optional
        Seeds the heads' initialisation and batch order alone: probing
        the same features with several values measures how much of a
        difference between systems is the probe's own noise.

    Returns
    -------
    list of dict
        One row per system.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    head_seed = seed if probe_seed is None else probe_seed
    train_wavs = [_load_level(r["wav"], level_dbfs) for r in train_rows]
    texts = [r["wrd"] for r in train_rows]
    tokens = [tokenizer.encode_as_ids(t) for t in texts]
    classes = first_word_classes(texts, kws_classes)
    labels = [_word_label(t, classes) for t in texts]
    groups = OrderedDict()
    for g, rows in eval_groups.items():
        distorter = None
        if isinstance(rows, tuple):  # (clean rows, distorter): online
            rows, distorter = rows
        if not rows:
            continue
        wavs = [
            _load_level(r.get("noisy_wav") or r["wav"], level_dbfs)
            for r in rows
        ]
        if distorter is not None:
            from robust_brain.data.streams import item_rng, scale_to_dbfs

            wavs = [
                scale_to_dbfs(
                    distorter(w, item_rng(seed, "eval", g, i))[0], level_dbfs
                )
                for i, w in enumerate(wavs)
            ]
        groups[g] = (wavs, [r["wrd"] for r in rows])
    results = []
    for name, model in systems.items():
        model.to(device).eval()
        if isinstance(model, LayerTeacher):

            def fn(w, n, m=model):
                return m(w, n)[-1]

        else:

            def fn(w, n, m=model):
                return m.features(w, n, feature_kind)

        feats = _extract(fn, train_wavs, batch_size, device)
        ctc = _train_probe(
            feats,
            tokens,
            "ctc",
            tokenizer.get_piece_size(),
            probe_epochs,
            probe_lr,
            probe_hidden,
            head_seed,
        )
        cls = _train_probe(
            feats,
            labels,
            "cls",
            len(classes),
            probe_epochs,
            probe_lr,
            probe_hidden,
            head_seed,
        )
        row = {"system": name, "probe_seed": head_seed}
        if params and name in params:
            row["params"] = int(params[name])
        if teacher_params:
            row["teacher_params"] = int(teacher_params)
        for g, (wavs, refs) in groups.items():
            f = _extract(fn, wavs, batch_size, device)
            row[f"wer_{g}"], row[f"cer_{g}"] = _error_rates(
                refs, _ctc_decode(ctc, f, tokenizer)
            )
            gold = [_word_label(t, classes) for t in refs]
            pred = _classify(cls, f)
            row[f"acc_{g}"] = (
                100.0
                * sum(int(a == b) for a, b in zip(gold, pred, strict=True))
                / len(gold)
            )
            row[f"n_{g}"] = len(refs)
        row["kws_classes"] = classes
        write_text_atomic(out_dir / f"{name}.json", json.dumps(row, indent=1))
        results.append(row)
    return results


def split_groups(rows, groups: Mapping, max_per_condition=None) -> dict:
    """Rows of a pair manifest grouped by condition family.

    Arguments
    ---------
    rows : sequence of dict
        With a ``condition`` column (``pink_5dB``, ``reverb``, ...).
    groups : mapping
        Group -> condition families (the condition without its SNR).
    max_per_condition : int or mapping, optional
        Keep the first N rows of each condition; a mapping gives N per
        group (a group it does not name is not capped). A one-condition
        group such as ``clean`` needs a larger N than a group of twelve
        conditions to be measured as finely.

    Returns
    -------
    dict
        Group -> rows.

    Example
    -------
    >>> rows = [{"condition": c} for c in ("clean", "pink_0dB", "pink_5dB",
    ...         "babble_0dB", "reverb")]
    >>> g = split_groups(rows, {"clean": ["clean"], "in": ["pink"],
    ...                         "out": ["babble", "reverb"]})
    >>> {k: len(v) for k, v in g.items()}
    {'clean': 1, 'in': 2, 'out': 2}
    >>> rows = [{"condition": c} for c in ("clean",) * 3 + ("pink_0dB",) * 3]
    >>> g = split_groups(rows, {"clean": ["clean"], "in": ["pink"]},
    ...                  {"clean": 3, "in": 1})
    >>> {k: len(v) for k, v in g.items()}
    {'clean': 3, 'in': 1}
    """
    family_group = {}
    for g, fams in groups.items():
        for f in fams:
            family_group[str(f)] = g
    if isinstance(max_per_condition, Mapping):
        unknown = sorted(set(max_per_condition) - set(groups))
        if unknown:
            raise ValueError(
                f"max_per_condition names groups {unknown} that are not "
                f"among {list(groups)}"
            )
        caps = dict(max_per_condition)
    else:
        caps = dict.fromkeys(groups, max_per_condition)
    out = OrderedDict((g, []) for g in groups)
    seen = Counter()
    for r in rows:
        g = family_group.get(condition_family(r))
        if g is None:
            continue
        seen[r["condition"]] += 1
        cap = caps.get(g)
        if cap and seen[r["condition"]] > cap:
            continue
        out[g].append(r)
    return out
