"""Builders of the generated corpora ``MiniNoisy`` and ``MiniWHAMR``.

Both corpora are made offline from TTS voices (:mod:`robust_brain.data.tts`)
speaking the sentences shipped in ``sentences.txt``, degraded with the
tools of :mod:`robust_brain.data.degrade`, and written as 16 kHz wav files
with SpeechBrain CSV manifests (columns from
:mod:`robust_brain.data.manifest`, paths under ``$data_root`` = the corpus
folder).

Layout under ``--out``::

    .cache/                shared, content-addressed: synthesised speech,
                           noise bank, simulated rooms (safe to delete)
    MiniNoisy/             speech enhancement for ASR
      {train,valid,test}/clean/*.wav, */noisy/*.wav
      train_untranscribed/clean/*.wav, test_real/{clean,noisy}/*.wav
      noise/{split}/*.wav, rir/{split}/*.wav
      train_clean.csv valid_clean.csv test_clean.csv test_real_clean.csv
      train_untranscribed.csv noise_{split}.csv rir_{split}.csv
      {train,valid,test,test_real}_pairs.csv
      .complete            JSON: generation config + statistics
    MiniWHAMR/             two-speaker noisy reverberant separation
      wav16k/{min,max}/{tr,cv,tt}/{mix_both_reverb,s1_anechoic,
                                   s2_anechoic,s1_reverb,s2_reverb,noise}/
      {tr,cv,tt}_{min,max}.csv   SEPARATION_ALT_COLUMNS: s1_wav/s2_wav
                           anechoic, s1_alt_wav/s2_alt_wav reverberant
      {tr,cv,tt}_info.csv  per mixture: noise type, SNR, SSR, RT60, room
      .complete

Levels: clean speech is at -25 dBFS. Noise is added at an SNR computed
over the whole (possibly reverberant) speech. RIRs are stored aligned (direct
path at sample 0, unit gain); in MiniNoisy the reverberant speech is scaled
back to the dry speech's level before noise is added, so the speech in every
noisy file has the level of its clean reference. If a noisy mixture would
clip, it is scaled down and the pair gets its own equally scaled clean
reference (``{split}/clean_rescaled/``, named in ``clean_wav``). In
MiniWHAMR the anechoic targets are the direct-path components of the
reverberant sources; a mixture that would clip is scaled down with all its
sources.

Determinism: every random choice comes from a generator seeded by a hash
of (seed, corpus part, split, index), so the output does not depend on
worker scheduling. Piper's ONNX model draws its own noise from a
per-session generator; it is run in fixed chunks of utterances, each in a
fresh session seeded from (seed, pool, chunk) (see
:func:`robust_brain.data.tts.synthesize_piper`).

Caching and resuming: every file is written atomically (temporary file +
rename). A corpus being built holds ``.config.json``; a finished one holds
``.complete``. Re-running with the same configuration skips a finished
corpus (after checking that every file its manifests name exists) and
continues an interrupted or damaged one (only missing files are made);
a different configuration wipes the corpus folder and rebuilds it (the
shared ``.cache`` is keyed by content and kept).
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import fcntl
import hashlib
import json
import math
import multiprocessing as mp
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.io import wavfile

from robust_brain.data import degrade, tts
from robust_brain.data.manifest import (
    AUDIO_COLUMNS,
    PAIR_COLUMNS,
    SEPARATION_ALT_COLUMNS,
    SPEECH_COLUMNS,
    UNTRANSCRIBED_COLUMNS,
    write_csv_atomic,
)
from robust_brain.data.tts import Voice
from robust_brain.fileio import atomic_path, write_text_atomic

FS = 16000
#: Bump when the generated content changes for a given configuration.
VERSION = 1
SENTENCES_FILE = Path(__file__).with_name("sentences.txt")
SPLITS = ("train", "valid", "test")
WHAMR_SPLITS = {"tr": "train", "cv": "valid", "tt": "test"}

#: Utterances per speech pool at ``size=1.0`` (and minimum counts).
POOL_COUNTS = {
    "train": 2900,  # ~2 h of transcribed training speech
    "untranscribed": 600,
    "valid": 150,
    "test": 100,
    "babble_train": 100,
    "babble_valid": 30,
    "babble_test": 30,
}
POOL_MIN = {"train": 4, "untranscribed": 2, "valid": 2, "test": 2}
BABBLE_MIN = 4
#: Noise-bank files per type and split (each NOISE_SECONDS long).
NOISE_FILES = {"train": 12, "valid": 3, "test": 3}
NOISE_SECONDS = 30.0
#: Simulated rooms per split (each with ROOM_SOURCES source positions).
ROOM_COUNTS = {"train": 40, "valid": 10, "test": 10}
ROOM_MIN = 2
ROOM_SOURCES = 3
#: MiniWHAMR mixtures per split at ``size=1.0``.
WHAMR_COUNTS = {"tr": 1000, "cv": 200, "tt": 200}
WHAMR_MIN = 2
#: Fractions of the sentence list given to each speech pool (train: rest).
SENTENCE_FRACTIONS = {
    "test": 0.10,
    "valid": 0.08,
    "untranscribed": 0.15,
    "babble_train": 0.072,
    "babble_valid": 0.024,
    "babble_test": 0.024,
}
#: How often each TTS engine speaks, for targets and for babble.
FAMILY_WEIGHTS = {
    "target": {"piper": 0.40, "festival": 0.30, "espeak": 0.30},
    "babble": {"espeak": 0.50, "festival": 0.30, "piper": 0.20},
}
#: Pitch-and-formant shifts (cents) defining piper / festival "speakers".
PIPER_TARGET_SHIFTS = tuple(range(0, 331, 30))
FESTIVAL_TARGET_SHIFTS = (0, 50, 100, 150, 200)
BABBLE_SHIFTS = (-150, -300, -450)
TEMPO_RANGE = (0.9, 1.15)
PIPER_CHUNK = 24
SNRS = (-5, 0, 5, 10)
COLORS = ("white", "pink", "brown")
#: WHAM!-style noise level: SNR of the louder (reverberant) speaker.
WHAMR_SNR_RANGE = (-6.0, 3.0)
WHAMR_SSR_RANGE = (0.0, 5.0)
PEAK_LIMIT = 0.99
#: Per-mixture metadata written beside the MiniWHAMR manifests.
INFO_COLUMNS = ("ID", "noise_type", "snr_db", "ssr_db", "rt60", "room")


# ------------------------------------------------------------------ helpers
def derive_seed(*parts: object) -> int:
    """A 63-bit seed from any printable parts (stable across runs).

    Arguments
    ---------
    *parts : object
        Values identifying the random draw (seed, corpus, split, index).

    Returns
    -------
    int
        Seed.

    Example
    -------
    >>> derive_seed(1234, "train", 7) == derive_seed(1234, "train", 7)
    True
    >>> derive_seed(1234, "train", 7) == derive_seed(1234, "train", 8)
    False
    """
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def rng_for(*parts: object) -> np.random.Generator:
    """Random generator seeded by :func:`derive_seed` of ``parts``.

    Arguments
    ---------
    *parts : object
        As for :func:`derive_seed`.

    Returns
    -------
    numpy.random.Generator
        Fresh generator.

    Example
    -------
    >>> float(rng_for(1, "a").random()) == float(rng_for(1, "a").random())
    True
    """
    return np.random.default_rng(derive_seed(*parts))


def _hash(obj: object) -> str:
    blob = json.dumps(obj, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:24]


def scaled_count(base: int, size: float, minimum: int) -> int:
    """Number of items at a corpus size.

    Arguments
    ---------
    base : int
        Count at ``size=1``.
    size : float
        Size factor.
    minimum : int
        Lower bound.

    Returns
    -------
    int
        ``max(minimum, round(base * size))``.

    Example
    -------
    >>> scaled_count(2600, 0.005, 4), scaled_count(2600, 2.0, 4)
    (13, 5200)
    """
    return max(minimum, int(round(base * size)))


def load_sentences(path: str | os.PathLike = SENTENCES_FILE) -> list[str]:
    """Read a sentence list (one per line, ``#`` comments).

    Arguments
    ---------
    path : path-like
        Text file.

    Returns
    -------
    list of str
        Sentences in file order, duplicates removed.

    Example
    -------
    >>> s = load_sentences()
    >>> len(s) > 900, all(not x.startswith("#") for x in s)
    (True, True)
    """
    out: list[str] = []
    seen = set()
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#") and line not in seen:
            seen.add(line)
            out.append(line)
    return out


def split_sentences(sentences: Sequence[str], seed: int) -> dict[str, list]:
    """Partition the sentences among the speech pools (disjoint).

    Arguments
    ---------
    sentences : sequence of str
        All sentences.
    seed : int
        Corpus seed.

    Returns
    -------
    dict
        ``pool -> sentences`` for the pools of :data:`POOL_COUNTS`.

    Example
    -------
    >>> parts = split_sentences([f"s{i}" for i in range(100)], 1)
    >>> sum(len(v) for v in parts.values()), len(parts["test"])
    (100, 10)
    """
    order = rng_for(seed, "sentences").permutation(len(sentences))
    shuffled = [sentences[i] for i in order]
    parts: dict[str, list] = {}
    start = 0
    for pool, frac in SENTENCE_FRACTIONS.items():
        n = max(1, int(round(frac * len(sentences))))
        parts[pool] = shuffled[start : start + n]
        start += n
    parts["train"] = shuffled[start:]
    return parts


def allocate_voices(
    found: dict[str, Sequence[str]], seed: int
) -> dict[str, dict[str, list[Voice]]]:
    """Assign the available voices to disjoint speaker groups.

    Groups: ``train`` (also speaks the untranscribed stream), ``valid``,
    ``test`` and ``babble``. piper and festival speakers are pitch-and-
    formant shifted variants of their base voices (upward shifts for
    targets, downward for babble); espeak speakers are accent x variant
    combinations.

    Arguments
    ---------
    found : dict
        ``engine -> base voices`` (:func:`tts.discover_voices`).
    seed : int
        Corpus seed.

    Returns
    -------
    dict
        ``group -> engine -> list of Voice``.

    Example
    -------
    >>> g = allocate_voices({"piper": ("joe",)}, 1)
    >>> [len(g[k]["piper"]) for k in ("train", "valid", "test", "babble")]
    [8, 2, 2, 3]
    """
    groups: dict[str, dict[str, list[Voice]]] = {
        k: {} for k in ("train", "valid", "test", "babble")
    }

    def deal(engine: str, voices: list[Voice], n_valid: int, n_test: int):
        order = rng_for(seed, "voices", engine, len(voices)).permutation(
            len(voices)
        )
        voices = [voices[i] for i in order]
        cut = [("valid", n_valid), ("test", n_test)]
        for group, n in cut:
            groups[group].setdefault(engine, []).extend(voices[:n])
            voices = voices[n:]
        groups["train"].setdefault(engine, []).extend(voices)

    if "piper" in found:
        deal(
            "piper",
            [Voice("piper", "joe", s) for s in PIPER_TARGET_SHIFTS],
            2,
            2,
        )
        groups["babble"]["piper"] = [
            Voice("piper", "joe", s) for s in BABBLE_SHIFTS
        ]
    for base in found.get("festival", ()):
        deal(
            "festival",
            [Voice("festival", base, s) for s in FESTIVAL_TARGET_SHIFTS],
            1,
            1,
        )
        groups["babble"].setdefault("festival", []).extend(
            Voice("festival", base, s) for s in BABBLE_SHIFTS[:2]
        )
    if found.get("espeak"):
        bases = list(found["espeak"])
        order = rng_for(seed, "espeak").permutation(len(bases))
        voices = []
        for i in order:
            pitch = int(
                rng_for(seed, "espeak-pitch", bases[i]).integers(35, 66)
            )
            voices.append(Voice("espeak", bases[i], 0, pitch))
        n = len(voices)
        n_babble = max(1, n // 4)
        groups["babble"]["espeak"] = voices[:n_babble]
        rest = voices[n_babble:]
        if len(rest) >= 3:
            deal(
                "espeak", rest, max(1, len(rest) // 10), max(1, len(rest) // 8)
            )
        else:
            groups["train"]["espeak"] = rest
    for group in groups.values():
        for engine in [e for e, v in group.items() if not v]:
            del group[engine]
    return groups


def _pool_group(pool: str) -> str:
    if pool.startswith("babble"):
        return "babble"
    return "train" if pool == "untranscribed" else pool


@dataclass(frozen=True)
class Utt:
    """One planned synthetic utterance.

    Arguments
    ---------
    pool : str
        Speech pool (``train``, ``untranscribed``, ``valid``, ``test``,
        ``babble_{split}``).
    index : int
        Position in the pool.
    text : str
        Sentence.
    voice : Voice
        Speaker.
    tempo : float
        Duration multiplier.
    chunk : int
        piper chunk number (-1 for other engines).
    key : str
        Cache key (hash of everything the audio depends on).
    """

    pool: str
    index: int
    text: str
    voice: Voice
    tempo: float
    chunk: int
    key: str

    @property
    def uid(self) -> str:
        """Utterance identifier, unique within a corpus."""
        return f"{self.pool}_{self.index:05d}"


def plan_pool(
    pool: str,
    n: int,
    seed: int,
    voices: dict[str, list[Voice]],
    sentences: Sequence[str],
) -> list[Utt]:
    """Plan the utterances of one speech pool.

    The plan is prefix-stable: utterance ``i`` does not depend on ``n``, so
    a larger corpus extends a smaller one (and shares its cached audio).
    Sentences are used round-robin in a seeded order; each repetition of a
    sentence goes to another speaker of the drawn engine.

    Arguments
    ---------
    pool : str
        Pool name.
    n : int
        Number of utterances.
    seed : int
        Corpus seed.
    voices : dict
        ``engine -> speakers`` of the pool's group.
    sentences : sequence of str
        The pool's sentences.

    Returns
    -------
    list of Utt
        The plan.
    """
    if not voices:
        raise RuntimeError(f"no voice available for the {pool} pool")
    kind = "babble" if pool.startswith("babble") else "target"
    engines = [e for e in FAMILY_WEIGHTS[kind] if e in voices]
    weights = np.array([FAMILY_WEIGHTS[kind][e] for e in engines])
    weights = weights / weights.sum()
    order = rng_for(seed, "sentence-order", pool).permutation(len(sentences))
    plan: list[Utt] = []
    piper_rank = 0
    chunk_items: list = []
    for i in range(n):
        s = int(order[i % len(sentences)])
        rep = i // len(sentences)
        rng = rng_for(seed, "utt", pool, i)
        engine = engines[int(rng.choice(len(engines), p=weights))]
        speakers = voices[engine]
        offset = derive_seed(seed, "speaker-offset", pool, s)
        voice = speakers[(offset + rep) % len(speakers)]
        tempo = round(float(rng.uniform(*TEMPO_RANGE)), 4)
        text = sentences[s]
        if engine == "piper":
            chunk = piper_rank // PIPER_CHUNK
            if piper_rank % PIPER_CHUNK == 0:
                chunk_items = []
            chunk_items.append((text, tempo, voice.shift_cents))
            piper_rank += 1
            key = _hash(
                [VERSION, "piper", derive_seed(seed, "piper", pool, chunk)]
                + chunk_items
            )
        else:
            chunk = -1
            key = _hash([VERSION, voice, text, tempo])
        plan.append(Utt(pool, i, text, voice, tempo, chunk, key))
    return plan


def conditions(noise_types: Sequence[str]) -> list[dict]:
    """The degradation conditions of the pre-mixed MiniNoisy pairs.

    Arguments
    ---------
    noise_types : sequence of str
        Additive noise types (``white``, ``pink``, ``brown``, ``babble``,
        and ``user`` when recordings were given).

    Returns
    -------
    list of dict
        ``condition``, ``noise_type``, ``snr`` (None if no noise) and
        ``reverb`` (bool), in a fixed order.

    Example
    -------
    >>> c = conditions(["white", "babble"])
    >>> len(c), c[0]["condition"], c[1]["condition"], c[-1]["condition"]
    (14, 'clean', 'white_-5dB', 'reverb_babble_10dB')
    """
    out = [{"condition": "clean", "noise_type": "none", "snr": None}]
    out[0]["reverb"] = False
    for noise in noise_types:
        for snr in SNRS:
            out.append(
                {
                    "condition": f"{noise}_{snr}dB",
                    "noise_type": noise,
                    "snr": snr,
                    "reverb": False,
                }
            )
    out.append(
        {
            "condition": "reverb",
            "noise_type": "none",
            "snr": None,
            "reverb": True,
        }
    )
    if "babble" in noise_types:
        for snr in SNRS:
            out.append(
                {
                    "condition": f"reverb_babble_{snr}dB",
                    "noise_type": "babble",
                    "snr": snr,
                    "reverb": True,
                }
            )
    return out


# ------------------------------------------------------------- file helpers
def write_wav(path: Path, x: np.ndarray, subtype: str = "PCM_16") -> int:
    """Write a 16 kHz mono wav atomically (temporary file + rename).

    Arguments
    ---------
    path : pathlib.Path
        Destination.
    x : numpy.ndarray
        Samples in [-1, 1) (clipped for PCM).
    subtype : str
        soundfile subtype (``PCM_16`` or ``FLOAT``).

    Returns
    -------
    int
        Number of samples written.
    """
    with atomic_path(path) as tmp:
        if subtype == "FLOAT":
            # scipy writes no PEAK chunk (libsndfile's holds a timestamp,
            # which would make identical corpora differ byte-wise)
            wavfile.write(tmp, FS, np.asarray(x, dtype=np.float32))
        else:
            x = np.clip(x, -1.0, 32767 / 32768)
            sf.write(tmp, x, FS, subtype=subtype, format="WAV")
    return int(x.shape[0])


def read_wav(path: str | os.PathLike) -> np.ndarray:
    """Read a mono wav as float64 (asserting the corpus rate)."""
    x, fs = sf.read(path, dtype="float64")
    if fs != FS:
        raise ValueError(f"{path}: {fs} Hz, expected {FS}")
    return x


def _link(src: Path, dst: Path) -> None:
    """Hard-link (or copy) ``src`` to ``dst`` atomically unless present."""
    if dst.exists():
        return
    with atomic_path(dst) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


def _frames(path: Path) -> int:
    return sf.info(str(path)).frames


def _rel(root: Path, path: Path) -> str:
    return "$data_root/" + path.relative_to(root).as_posix()


def _dur(n: int) -> float:
    return round(n / FS, 5)


def _fmt(x: float | None, digits: int = 3) -> object:
    return "" if x is None else round(float(x), digits)


# ------------------------------------------------------------- worker tasks
def _task_piper(seed: int, items: list, paths: list) -> int:
    audio = tts.synthesize_piper(items, seed)
    for x, p in zip(audio, paths, strict=True):
        if p is not None and not Path(p).exists():
            write_wav(Path(p), x)
    return sum(p is not None for p in paths)


def _task_festival(items: list, paths: list) -> int:
    for x, p in zip(tts.synthesize_festival(items), paths, strict=True):
        write_wav(Path(p), x)
    return len(paths)


def _task_espeak(items: list, paths: list) -> int:
    for (text, voice, tempo), p in zip(items, paths, strict=True):
        write_wav(Path(p), tts.synthesize_espeak(text, voice, tempo))
    return len(paths)


def _task_noise(kind: str, parts: list, path: str, babble: list) -> int:
    rng = rng_for(*parts)
    n = int(NOISE_SECONDS * FS)
    if kind == "babble":
        x = degrade.make_babble([read_wav(p) for p in babble], n, rng)
    else:
        x = degrade.colored_noise(n, kind, rng)
    write_wav(Path(path), degrade.normalize_level(x, -25.0))
    return 1


def _task_user_noise(src: str, digest: str, paths: dict) -> int:
    x, fs = sf.read(src, dtype="float64", always_2d=True)
    x = degrade.resample(x.mean(axis=1), fs, FS)
    bounds = {"train": (0.0, 0.8), "valid": (0.8, 0.9), "test": (0.9, 1.0)}
    for split, path in paths.items():
        lo, hi = bounds[split]
        seg = x[int(lo * x.size) : int(hi * x.size)]
        write_wav(Path(path), degrade.normalize_level(seg, -25.0))
    return len(paths)


def _task_room(parts: list, prefix: str) -> int:
    room = degrade.simulate_room(rng_for(*parts), n_sources=ROOM_SOURCES)
    files = []
    for j, h in enumerate(room.pop("rirs")):
        p = Path(f"{prefix}_s{j}.wav")
        write_wav(p, h, subtype="FLOAT")
        files.append(p.name)
    room["files"] = files
    meta = Path(prefix + ".json")
    write_text_atomic(meta, json.dumps(room))
    return 1


def _task_real(src: str, dst: str) -> int:
    write_wav(Path(dst), tts.load_real_prompt(src))
    return 1


def _task_pairs(jobs: list) -> int:
    cache: dict[str, np.ndarray] = {}

    def load(p: str) -> np.ndarray:
        if p not in cache:
            cache[p] = read_wav(p)
        return cache[p]

    for job in jobs:
        x = read_wav(job["clean"])
        y = x
        if job["rir"]:
            # reverberant speech at the dry speech's level (-25 dBFS)
            y = degrade.reverberate(x, load(job["rir"]))
            y = y * (degrade.rms(x) / max(degrade.rms(y), 1e-12))
        if job["noise"]:
            rng = rng_for(*job["parts"])
            noise = degrade.fit_length(load(job["noise"]), x.size, rng)
            y, _ = degrade.mix_at_snr(y, noise, job["snr"])
        peak = float(np.max(np.abs(y)))
        if peak > PEAK_LIMIT:
            gain = PEAK_LIMIT / peak
            y = y * gain
            if not Path(job["scaled_clean"]).exists():
                write_wav(Path(job["scaled_clean"]), x * gain)
        if not Path(job["noisy"]).exists():
            write_wav(Path(job["noisy"]), y)
    return len(jobs)


def _task_whamr(jobs: list) -> int:
    cache: dict[str, np.ndarray] = {}

    def load(p: str) -> np.ndarray:
        if p not in cache:
            cache[p] = read_wav(p)
        return cache[p]

    for job in jobs:
        rng = rng_for(*job["parts"])
        pairs = zip(job["speech"], job["gains"], strict=True)
        srcs = [read_wav(p) * g for p, g in pairs]
        lens = [s.size for s in srcs]
        n_max, n_min = max(lens), min(lens)
        dry = [np.pad(s, (0, n_max - s.size)) for s in srcs]
        wet = [
            degrade.reverberate(s, load(h))
            for s, h in zip(dry, job["rirs"], strict=True)
        ]
        ref = max(
            float(np.mean(w[:n] ** 2)) for w, n in zip(wet, lens, strict=True)
        )
        noise = degrade.fit_length(load(job["noise"]), n_max, rng)
        gain = math.sqrt(ref / (np.mean(noise**2) * 10 ** (job["snr"] / 10)))
        noise = noise * gain
        mix = wet[0] + wet[1] + noise
        signals = {
            "mix_both_reverb": mix,
            "s1_anechoic": dry[0],
            "s2_anechoic": dry[1],
            "s1_reverb": wet[0],
            "s2_reverb": wet[1],
            "noise": noise,
        }
        peak = max(float(np.max(np.abs(v))) for v in signals.values())
        scale = min(1.0, PEAK_LIMIT / peak)
        for version, n in (("max", n_max), ("min", n_min)):
            for name, sig in signals.items():
                path = Path(job["out"][version][name])
                if not path.exists():
                    write_wav(path, sig[:n] * scale)
    return len(jobs)


# ------------------------------------------------------------------ context
class _Runner:
    """Run tasks inline or on a process pool, with progress lines."""

    def __init__(self, workers: int, log: Callable[[str], None]):
        self.workers = workers
        self.log = log
        self.pool = None
        if workers > 1:
            self.pool = cf.ProcessPoolExecutor(
                workers, mp_context=mp.get_context("spawn")
            )

    def run(self, label: str, tasks: list[tuple]) -> int:
        if not tasks:
            return 0
        t0 = time.time()
        done = 0
        n = len(tasks)
        step = max(1, n // 10)
        if self.pool is None:
            results: Iterable = (fn(*args) for fn, *args in tasks)
        else:
            futures = [self.pool.submit(fn, *args) for fn, *args in tasks]
            results = (f.result() for f in cf.as_completed(futures))
        total = 0
        last = t0
        for r in results:
            total += r
            done += 1
            if done % step == 0 or done == n or time.time() - last > 60:
                last = time.time()
                self.log(
                    f"  {label}: {done}/{n} tasks, {total} items, "
                    f"{time.time() - t0:.0f} s"
                )
        return total

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(cancel_futures=True)


class Resources:
    """Shared, cached material: speech pools, noise bank, rooms.

    Arguments
    ---------
    out : path-like
        Output folder (holds ``.cache`` and the corpora).
    seed : int
        Corpus seed.
    size : float
        Size factor.
    runner : _Runner
        Executes tasks.
    noise_csv : path-like, optional
        AUDIO_COLUMNS manifest of noise recordings to add (type ``user``).
    noise_root : path-like, optional
        Replaces ``$data_root`` in ``noise_csv`` (default: its folder).
    log : callable
        Progress printer.
    """

    def __init__(
        self,
        out: str | os.PathLike,
        seed: int,
        size: float,
        runner: _Runner,
        noise_csv: str | os.PathLike | None = None,
        noise_root: str | os.PathLike | None = None,
        log: Callable[[str], None] = print,
    ):
        self.out = Path(out)
        self.cache = self.out / ".cache"
        self.seed = seed
        self.size = size
        self.runner = runner
        self.log = log
        self.found = tts.require_voices()
        self.voices = allocate_voices(self.found, seed)
        self.sentences = load_sentences()
        self.pool_sentences = split_sentences(self.sentences, seed)
        self.user_noise = _read_noise_csv(noise_csv, noise_root)
        self._plans: dict[str, list[Utt]] = {}

    # -- configuration
    def config(self) -> dict:
        """Everything the generated content depends on (JSON-ready)."""
        return {
            "version": VERSION,
            "seed": self.seed,
            "size": self.size,
            "sentences": _hash(self.sentences),
            "voices": {k: list(v) for k, v in sorted(self.found.items())},
            "user_noise": [[i, d] for i, _, d in self.user_noise],
        }

    def noise_types(self) -> list[str]:
        """Additive noise types available."""
        return [*COLORS, "babble"] + (["user"] if self.user_noise else [])

    # -- speech
    def count(self, pool: str) -> int:
        """Number of utterances of a pool at this size."""
        minimum = BABBLE_MIN if pool.startswith("babble") else POOL_MIN[pool]
        return scaled_count(POOL_COUNTS[pool], self.size, minimum)

    def plan(self, pool: str) -> list[Utt]:
        """The (memoised) plan of a speech pool."""
        if pool not in self._plans:
            group = self.voices[_pool_group(pool)]
            self._plans[pool] = plan_pool(
                pool,
                self.count(pool),
                self.seed,
                group,
                self.pool_sentences[pool],
            )
        return self._plans[pool]

    def speech_path(self, utt: Utt) -> Path:
        """Cache file of an utterance."""
        return self.cache / "speech" / f"{utt.key}.wav"

    def ensure_speech(self, utts: Sequence[Utt]) -> None:
        """Synthesise the utterances missing from the cache."""
        missing = [u for u in utts if not self.speech_path(u).exists()]
        if not missing:
            return
        tasks: list[tuple] = []
        chunks = sorted({(u.pool, u.chunk) for u in missing if u.chunk >= 0})
        for pool, chunk in chunks:
            members = [u for u in self.plan(pool) if u.chunk == chunk]
            last = max(
                i
                for i, u in enumerate(members)
                if not self.speech_path(u).exists()
            )
            members = members[: last + 1]
            items = [(u.text, u.tempo, u.voice.shift_cents) for u in members]
            paths = [
                None
                if self.speech_path(u).exists()
                else str(self.speech_path(u))
                for u in members
            ]
            seed = derive_seed(self.seed, "piper", pool, chunk)
            tasks.append((_task_piper, seed, items, paths))
        for engine, fn, batch in (
            ("festival", _task_festival, 12),
            ("espeak", _task_espeak, 24),
        ):
            todo = [u for u in missing if u.voice.engine == engine]
            todo.sort(key=lambda u: (u.voice.base, u.key))
            for i in range(0, len(todo), batch):
                part = todo[i : i + batch]
                items = [(u.text, u.voice, u.tempo) for u in part]
                paths = [str(self.speech_path(u)) for u in part]
                tasks.append((fn, items, paths))
        # longest (piper) tasks first keeps both workers busy to the end
        self.runner.run(f"speech ({len(missing)} utterances)", tasks)

    # -- noise bank and rooms
    def _noise_plan(self, split: str) -> tuple[dict[str, list[Path]], list]:
        """Noise-bank files of a split and the tasks making missing ones."""
        pool = self.plan(f"babble_{split}")
        babble_paths = [str(self.speech_path(u)) for u in pool]
        n_files = scaled_count(NOISE_FILES[split], self.size, 1)
        bank: dict[str, list[Path]] = {}
        tasks = []
        for kind in [*COLORS, "babble"]:
            bank[kind] = []
            for k in range(n_files):
                parts = [self.seed, "noise", split, kind, k]
                if kind == "babble":
                    parts.append(_hash([u.key for u in pool]))
                path = self.cache / "noise" / f"{_hash([VERSION, parts])}.wav"
                bank[kind].append(path)
                if not path.exists():
                    babble = babble_paths if kind == "babble" else []
                    tasks.append((_task_noise, kind, parts, str(path), babble))
        if self.user_noise:
            bank["user"] = []
            for _, src, digest in self.user_noise:
                paths = {
                    s: self.cache / "noise" / f"user_{digest}_{s}.wav"
                    for s in SPLITS
                }
                bank["user"].append(paths[split])
                todo = {s: str(p) for s, p in paths.items() if not p.exists()}
                if todo and split == "train":
                    tasks.append((_task_user_noise, src, digest, todo))
        return bank, tasks

    def _room_plan(self, split: str) -> tuple[list[Path], list]:
        """Room cache prefixes of a split and the tasks making missing ones."""
        n = scaled_count(ROOM_COUNTS[split], self.size, ROOM_MIN)
        prefixes = []
        tasks = []
        for k in range(n):
            parts = [self.seed, "room", split, k]
            prefix = (
                self.cache / "rooms" / _hash([VERSION, ROOM_SOURCES, parts])
            )
            prefixes.append(prefix)
            if not Path(str(prefix) + ".json").exists():
                prefix.parent.mkdir(parents=True, exist_ok=True)
                tasks.append((_task_room, parts, str(prefix)))
        return prefixes, tasks

    def prepare(self, speech: Sequence[Utt], extra: Sequence[tuple] = ()):
        """Make everything missing: speech, noise banks, rooms, ``extra``.

        Arguments
        ---------
        speech : sequence of Utt
            Target utterances needed (babble pools are added).
        extra : sequence of tuples
            More ``(function, *args)`` tasks to run with noise and rooms.
        """
        babble = [u for s in SPLITS for u in self.plan(f"babble_{s}")]
        self.ensure_speech([*speech, *babble])
        tasks = []
        for split in SPLITS:
            tasks += self._room_plan(split)[1]
        for split in SPLITS:
            tasks += self._noise_plan(split)[1]
        self.runner.run("rooms, noise bank", [*tasks, *extra])

    def noise_bank(self, split: str) -> dict[str, list[Path]]:
        """Noise files of a split (after :meth:`prepare`): type -> paths."""
        bank, tasks = self._noise_plan(split)
        if tasks:
            raise RuntimeError(f"noise bank of {split} incomplete")
        return bank

    def rooms(self, split: str) -> list[dict]:
        """Simulated rooms of a split (after :meth:`prepare`)."""
        prefixes, tasks = self._room_plan(split)
        if tasks:
            raise RuntimeError(f"rooms of {split} incomplete")
        rooms = []
        for k, prefix in enumerate(prefixes):
            meta = json.loads(Path(str(prefix) + ".json").read_text())
            meta["paths"] = [prefix.parent / f for f in meta["files"]]
            meta["name"] = f"room{k:03d}"
            rooms.append(meta)
        return rooms


def _read_noise_csv(
    path: str | os.PathLike | None, root: str | os.PathLike | None
) -> list[tuple[str, str, str]]:
    """``(ID, file, content digest)`` of the noise recordings of a CSV."""
    if path is None:
        return []
    path = Path(path)
    root = Path(root) if root is not None else path.parent
    out = []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            if "ID" not in row or "wav" not in row:
                raise ValueError(f"{path}: needs the columns {AUDIO_COLUMNS}")
            wav = row["wav"].replace("$data_root", str(root))
            digest = hashlib.sha256(Path(wav).read_bytes()).hexdigest()[:16]
            out.append((row["ID"], wav, digest))
    if not out:
        raise ValueError(f"{path}: no noise recording listed")
    return out


# ------------------------------------------------------------ corpus stamps
def remove_stale_tmp(root: Path) -> int:
    """Delete temporary files left by an interrupted build.

    Arguments
    ---------
    root : pathlib.Path
        Folder searched recursively for ``.*.tmp`` files.

    Returns
    -------
    int
        Number of files removed.
    """
    stale = [p for p in root.rglob(".*.tmp") if p.is_file()]
    for p in stale:
        p.unlink()
    return len(stale)


def missing_files(root: Path) -> list[Path]:
    """Files named in the manifests of a corpus folder that do not exist.

    Arguments
    ---------
    root : pathlib.Path
        Corpus folder (``$data_root``).

    Returns
    -------
    list of pathlib.Path
        Missing files.
    """
    missing = []
    for manifest in sorted(root.glob("*.csv")):
        with open(manifest, newline="") as f:
            for row in csv.DictReader(f):
                for value in row.values():
                    if value.startswith("$data_root/"):
                        path = root / value[len("$data_root/") :]
                        if not path.exists():
                            missing.append(path)
    return missing


def _begin(root: Path, config: dict, log: Callable[[str], None]) -> bool:
    """Prepare a corpus folder; True when it is already complete."""
    done, started = root / ".complete", root / ".config.json"
    if done.exists():
        stamp = json.loads(done.read_text())
        if stamp["config"] == config:
            lost = missing_files(root) + [
                root / name
                for name in stamp["stats"]["manifests"]
                if not (root / name).exists()
            ]
            if not lost:
                return True
            log(f"{root.name}: {len(lost)} files missing, regenerating them")
            write_text_atomic(started, json.dumps(config, indent=1))
            done.unlink()
            return False
        log(f"{root.name}: configuration changed, rebuilding")
        shutil.rmtree(root)
    elif started.exists():
        if json.loads(started.read_text()) == config:
            log(f"{root.name}: resuming an interrupted build")
            remove_stale_tmp(root)
        else:
            log(f"{root.name}: configuration changed, rebuilding")
            shutil.rmtree(root)
    elif root.exists() and any(root.iterdir()):
        raise RuntimeError(
            f"{root} exists but was not made by this generator (no "
            ".complete/.config.json): refusing to overwrite it"
        )
    root.mkdir(parents=True, exist_ok=True)
    if not started.exists():
        write_text_atomic(started, json.dumps(config, indent=1))
    return False


def _finish(root: Path, config: dict, stats: dict) -> None:
    write_text_atomic(
        root / ".complete",
        json.dumps({"config": config, "stats": stats}, indent=1),
    )
    (root / ".config.json").unlink(missing_ok=True)


def tree_size(root: Path) -> int:
    """Bytes used by the files under ``root`` (hard links counted once)."""
    seen = set()
    total = 0
    for dirpath, _, files in os.walk(root):
        for name in files:
            st = os.stat(os.path.join(dirpath, name))
            if (st.st_dev, st.st_ino) not in seen:
                seen.add((st.st_dev, st.st_ino))
                total += st.st_size
    return total


def _manifest(root: Path, name: str, rows: list[dict], columns, stats: dict):
    write_csv_atomic(root / name, rows, columns)
    hours = sum(float(r["duration"]) for r in rows) / 3600
    stats["manifests"][name] = {"rows": len(rows), "hours": round(hours, 4)}


# ----------------------------------------------------------------- MiniNoisy
def build_mininoisy(res: Resources, real: bool = True) -> dict:
    """Build (or complete, or skip) ``<out>/MiniNoisy``.

    Arguments
    ---------
    res : Resources
        Shared material and settings.
    real : bool
        Add the real-speech test set (Asterisk prompts) when installed.

    Returns
    -------
    dict
        Statistics (manifests with rows and hours, size, time).
    """
    t0 = time.time()
    root = res.out / "MiniNoisy"
    prompts = tts.find_real_prompts() if real else []
    if real and not prompts:
        res.log(
            "WARNING: Asterisk prompts not found (apt-get install "
            "asterisk-core-sounds-en asterisk-core-sounds-en-g722 ffmpeg): "
            "no real-speech test set"
        )
    n_real = len(prompts)
    if res.size < 1.0:
        n_real = min(n_real, max(2, int(round(n_real * res.size))))
    prompts = prompts[:n_real]
    config = {"corpus": "MiniNoisy", **res.config(), "real": n_real}
    if _begin(root, config, res.log):
        res.log("MiniNoisy: up to date (same configuration), skipped")
        return json.loads((root / ".complete").read_text())["stats"]
    res.log("MiniNoisy: building")
    stats: dict = {"manifests": {}}

    # 1. everything synthesised or simulated
    pools = ["train", "untranscribed", "valid", "test"]
    real_rows, real_tasks = [], []
    for name, text, src in prompts:
        uid = "real_" + name.replace("/", "_")
        dst = root / "test_real" / "clean" / f"{uid}.wav"
        if not dst.exists():
            real_tasks.append((_task_real, str(src), str(dst)))
        real_rows.append((uid, text, dst))
    res.prepare([u for p in pools for u in res.plan(p)], real_tasks)
    clean: dict[str, list[dict]] = {}
    folders = {"untranscribed": "train_untranscribed"}
    for pool in pools:
        rows = []
        for u in res.plan(pool):
            dst = root / folders.get(pool, pool) / "clean" / f"{u.uid}.wav"
            _link(res.speech_path(u), dst)
            rows.append(
                {
                    "ID": u.uid,
                    "duration": _dur(_frames(dst)),
                    "wav": _rel(root, dst),
                    "spk_id": u.voice.spk_id,
                    "wrd": tts.normalize_words(u.text),
                }
            )
        clean[pool] = rows
    for pool in ("train", "valid", "test"):
        _manifest(root, f"{pool}_clean.csv", clean[pool], SPEECH_COLUMNS, stats)
    untranscribed = [
        {k: r[k] for k in UNTRANSCRIBED_COLUMNS}
        for r in clean.pop("untranscribed")
    ]
    _manifest(
        root,
        "train_untranscribed.csv",
        untranscribed,
        UNTRANSCRIBED_COLUMNS,
        stats,
    )

    # 2. real prompts
    if prompts:
        clean["test_real"] = [
            {
                "ID": uid,
                "duration": _dur(_frames(dst)),
                "wav": _rel(root, dst),
                "spk_id": "asterisk-allison",
                "wrd": tts.normalize_words(text),
            }
            for uid, text, dst in real_rows
        ]
        _manifest(
            root,
            "test_real_clean.csv",
            clean["test_real"],
            SPEECH_COLUMNS,
            stats,
        )

    # 3. noise bank and rooms, linked into the corpus
    banks, rirs = {}, {}
    for split in SPLITS:
        bank = res.noise_bank(split)
        rows = []
        for kind, paths in bank.items():
            names = (
                [f"user_{i}" for i, _, _ in res.user_noise]
                if kind == "user"
                else [f"{kind}_{k:03d}" for k in range(len(paths))]
            )
            entries = []
            for name, src in zip(names, paths, strict=True):
                dst = root / "noise" / split / f"{name}.wav"
                _link(src, dst)
                entries.append(dst)
                rows.append(
                    {
                        "ID": f"{split}_{name}",
                        "duration": _dur(_frames(dst)),
                        "wav": _rel(root, dst),
                    }
                )
            banks.setdefault(split, {})[kind] = entries
        _manifest(root, f"noise_{split}.csv", rows, AUDIO_COLUMNS, stats)
        rows = []
        rirs[split] = []
        for room in res.rooms(split):
            for j, src in enumerate(room["paths"]):
                name = f"{room['name']}_src{j}"
                dst = root / "rir" / split / f"{name}.wav"
                _link(src, dst)
                rirs[split].append((dst, room["rt60"]))
                rows.append(
                    {
                        "ID": f"{split}_{name}",
                        "duration": _dur(_frames(dst)),
                        "wav": _rel(root, dst),
                    }
                )
        _manifest(root, f"rir_{split}.csv", rows, AUDIO_COLUMNS, stats)

    # 4. pre-mixed pairs
    conds = conditions(res.noise_types())
    sets = [("train", "train", False), ("valid", "valid", False)]
    sets += [("test", "test", True), ("test_real", "test", True)]
    jobs: list[dict] = []
    pair_rows: dict[str, list[dict]] = {}
    for name, split, grid in sets:
        if name not in clean:
            continue
        rows = []
        previous = _read_column(root / f"{name}_pairs.csv", "clean_wav")
        for i, utt in enumerate(clean[name]):
            if grid:
                chosen = conds
            else:
                block = rng_for(res.seed, "conditions", name, i // len(conds))
                chosen = [
                    conds[int(block.permutation(len(conds))[i % len(conds)])]
                ]
            for cond in chosen:
                row, job = _plan_pair(
                    res, root, name, split, utt, cond, banks, rirs, previous
                )
                rows.append(row)
                if job is not None:
                    jobs.append(job)
        pair_rows[name] = rows
    tasks = [(_task_pairs, jobs[i : i + 32]) for i in range(0, len(jobs), 32)]
    res.runner.run(f"noisy pairs ({len(jobs)} to make)", tasks)
    n_rescaled = 0
    for name, rows in pair_rows.items():
        for row in rows:
            scaled = row.pop("_scaled")
            if scaled.exists():
                row["clean_wav"] = _rel(root, scaled)
                n_rescaled += 1
        _manifest(root, f"{name}_pairs.csv", rows, PAIR_COLUMNS, stats)
    stats["pairs_rescaled_for_clipping"] = n_rescaled
    stats["seconds"] = round(time.time() - t0, 1)
    stats["bytes"] = tree_size(root)
    _finish(root, config, stats)
    return stats


def _read_column(path: Path, column: str) -> dict[str, str]:
    """``ID -> column`` of an existing manifest (empty if absent)."""
    if not path.exists():
        return {}
    with open(path, newline="") as f:
        return {row["ID"]: row[column] for row in csv.DictReader(f)}


def _plan_pair(res, root, name, split, utt, cond, banks, rirs, previous):
    """Manifest row and (if a file is missing) the job making a pair.

    ``previous`` maps pair IDs to the ``clean_wav`` of an earlier manifest:
    a pair whose rescaled clean reference was lost is made again.
    """
    pid = f"{utt['ID']}_{cond['condition']}"
    clean_path = root / utt["wav"][len("$data_root/") :]
    rng = rng_for(res.seed, "pair", name, pid)
    rir, rt60 = (None, None)
    if cond["reverb"]:
        rir, rt60 = rirs[split][int(rng.integers(len(rirs[split])))]
    noise = None
    if cond["snr"] is not None:
        files = banks[split][cond["noise_type"]]
        noise = files[int(rng.integers(len(files)))]
    noisy = root / name / "noisy" / f"{pid}.wav"
    scaled = root / name / "clean_rescaled" / f"{pid}.wav"
    if rir is None and noise is None:
        noisy = clean_path
    row = {
        "ID": pid,
        "duration": utt["duration"],
        "noisy_wav": _rel(root, noisy),
        "clean_wav": utt["wav"],
        "wrd": utt["wrd"],
        "spk_id": utt["spk_id"],
        "condition": cond["condition"],
        "noise_type": cond["noise_type"],
        "snr_db": _fmt(cond["snr"], 1),
        "rt60": _fmt(rt60),
        "_scaled": scaled,
    }
    lost = _rel(root, scaled) == previous.get(pid) and not scaled.exists()
    if noisy.exists() and not lost:
        return row, None
    job = {
        "clean": str(clean_path),
        "noisy": str(noisy),
        "scaled_clean": str(scaled),
        "rir": str(rir) if rir else None,
        "noise": str(noise) if noise else None,
        "snr": cond["snr"],
        "parts": [res.seed, "pair-noise", name, pid],
    }
    return row, job


# ----------------------------------------------------------------- MiniWHAMR
def build_miniwhamr(res: Resources) -> dict:
    """Build (or complete, or skip) ``<out>/MiniWHAMR``.

    Each mixture adds two utterances of DIFFERENT speakers (and sentences)
    from the split's speech pool (the same pools as MiniNoisy's
    train/valid/test, so speakers are disjoint across tr/cv/tt), at a
    source-to-source ratio uniform in 0..5 dB, each reverberated by its
    own source position in one simulated room, plus noise at an SNR
    uniform in -6..3 dB relative to the louder reverberant source
    (WHAM!-style). ``max`` pads the shorter source, ``min`` truncates to
    it (so, as in WHAMR!, ``min`` transcripts overrun the audio: use
    ``max`` for WER).

    Manifests use :data:`SEPARATION_ALT_COLUMNS` like the real WHAMR!
    preparation with ``target="anechoic", alt_targets=True``:
    ``s1_wav``/``s2_wav`` are the anechoic (direct-path) sources,
    ``s1_alt_wav``/``s2_alt_wav`` the reverberant ones as mixed.

    Arguments
    ---------
    res : Resources
        Shared material and settings.

    Returns
    -------
    dict
        Statistics (manifests with rows and hours, size, time).
    """
    t0 = time.time()
    root = res.out / "MiniWHAMR"
    config = {"corpus": "MiniWHAMR", **res.config()}
    if _begin(root, config, res.log):
        res.log("MiniWHAMR: up to date (same configuration), skipped")
        return json.loads((root / ".complete").read_text())["stats"]
    res.log("MiniWHAMR: building")
    stats: dict = {"manifests": {}}
    types = res.noise_types()
    weights = {"white": 0.1, "pink": 0.2, "brown": 0.2, "babble": 0.5}
    if "user" in types:
        weights = {"white": 0.1, "pink": 0.1, "brown": 0.1, "babble": 0.3}
        weights["user"] = 0.4
    kinds = list(weights)
    probs = np.array([weights[k] for k in kinds])
    names = (
        "mix_both_reverb",
        "s1_anechoic",
        "s2_anechoic",
        "s1_reverb",
        "s2_reverb",
        "noise",
    )
    all_jobs = []
    all_rows: dict[str, list[dict]] = {}
    picked: dict[str, list] = {}
    info: dict[str, list[dict]] = {short: [] for short in WHAMR_SPLITS}
    for short, split in WHAMR_SPLITS.items():
        pool = res.plan(split)
        n_mix = scaled_count(WHAMR_COUNTS[short], res.size, WHAMR_MIN)
        picks = []
        for i in range(n_mix):
            rng = rng_for(res.seed, "whamr", short, i)
            a = int(rng.integers(len(pool)))
            for _ in range(1000):
                b = int(rng.integers(len(pool)))
                if (
                    pool[b].voice.spk_id != pool[a].voice.spk_id
                    and pool[b].text != pool[a].text
                ):
                    break
            else:
                raise RuntimeError(f"{split}: cannot pair two speakers")
            picks.append((rng, a, b))
        picked[short] = picks
    res.prepare(
        [
            res.plan(WHAMR_SPLITS[sh])[k]
            for sh, p in picked.items()
            for _, a, b in p
            for k in (a, b)
        ]
    )
    for short, split in WHAMR_SPLITS.items():
        pool = res.plan(split)
        picks = picked[short]
        bank = res.noise_bank(split)
        rooms = res.rooms(split)
        rows = {"min": [], "max": []}
        for i, (rng, a, b) in enumerate(picks):
            mid = f"{short}_{i:05d}"
            ua, ub = pool[a], pool[b]
            room = rooms[int(rng.integers(len(rooms)))]
            j1, j2 = rng.choice(len(room["paths"]), size=2, replace=False)
            ssr = float(rng.uniform(*WHAMR_SSR_RANGE))
            gains = [1.0, 10 ** (-ssr / 20)]
            if rng.random() < 0.5:
                gains.reverse()
            kind = kinds[int(rng.choice(len(kinds), p=probs))]
            noise = bank[kind][int(rng.integers(len(bank[kind])))]
            snr = float(rng.uniform(*WHAMR_SNR_RANGE))
            la = _frames(res.speech_path(ua))
            lb = _frames(res.speech_path(ub))
            out = {
                v: {
                    nm: root / "wav16k" / v / short / nm / f"{mid}.wav"
                    for nm in names
                }
                for v in ("min", "max")
            }
            for version, n in (("max", max(la, lb)), ("min", min(la, lb))):
                o = out[version]
                rows[version].append(
                    {
                        "ID": mid,
                        "duration": _dur(n),
                        "mix_wav": _rel(root, o["mix_both_reverb"]),
                        "s1_wav": _rel(root, o["s1_anechoic"]),
                        "s2_wav": _rel(root, o["s2_anechoic"]),
                        "noise_wav": _rel(root, o["noise"]),
                        "s1_wrd": tts.normalize_words(ua.text),
                        "s2_wrd": tts.normalize_words(ub.text),
                        "s1_spk": ua.voice.spk_id,
                        "s2_spk": ub.voice.spk_id,
                        "s1_alt_wav": _rel(root, o["s1_reverb"]),
                        "s2_alt_wav": _rel(root, o["s2_reverb"]),
                    }
                )
            info[short].append(
                {
                    "ID": mid,
                    "noise_type": kind,
                    "snr_db": round(snr, 2),
                    "ssr_db": round(ssr, 2),
                    "rt60": round(room["rt60"], 3),
                    "room": room["name"],
                }
            )
            if all(p.exists() for o in out.values() for p in o.values()):
                continue
            all_jobs.append(
                {
                    "parts": [res.seed, "whamr-noise", short, i],
                    "speech": [str(res.speech_path(u)) for u in (ua, ub)],
                    "gains": gains,
                    "rirs": [str(room["paths"][j]) for j in (j1, j2)],
                    "noise": str(noise),
                    "snr": snr,
                    "out": {
                        v: {k: str(p) for k, p in o.items()}
                        for v, o in out.items()
                    },
                }
            )
        for version in ("min", "max"):
            all_rows[f"{short}_{version}.csv"] = rows[version]
    tasks = [
        (_task_whamr, all_jobs[i : i + 16]) for i in range(0, len(all_jobs), 16)
    ]
    res.runner.run(f"mixtures ({len(all_jobs)} to make)", tasks)
    for name, rows in all_rows.items():
        _manifest(root, name, rows, SEPARATION_ALT_COLUMNS, stats)
    for short, rows in info.items():
        write_csv_atomic(root / f"{short}_info.csv", rows, INFO_COLUMNS)
    stats["seconds"] = round(time.time() - t0, 1)
    stats["bytes"] = tree_size(root)
    _finish(root, config, stats)
    return stats


# ---------------------------------------------------------------- top level
def generate(
    corpus: str,
    out: str | os.PathLike,
    size: float = 1.0,
    seed: int = 1234,
    workers: int = 2,
    noise_csv: str | os.PathLike | None = None,
    noise_root: str | os.PathLike | None = None,
    real: bool = True,
    log: Callable[[str], None] = print,
) -> dict:
    """Build the requested corpora under ``out``.

    Arguments
    ---------
    corpus : str
        ``"mininoisy"``, ``"miniwhamr"`` or ``"all"``.
    out : path-like
        Output folder.
    size : float
        Size factor (1.0: ~2 h of MiniNoisy training speech).
    seed : int
        Seed; the output is a deterministic function of the arguments.
    workers : int
        Worker processes (1: run inline).
    noise_csv, noise_root : path-like, optional
        Extra noise recordings (AUDIO_COLUMNS manifest).
    real : bool
        Include the Asterisk real-speech test set (when installed).
    log : callable
        Progress printer.

    Returns
    -------
    dict
        ``corpus name -> statistics``.
    """
    if corpus not in ("mininoisy", "miniwhamr", "all"):
        raise ValueError(f"unknown corpus {corpus!r}")
    if size <= 0:
        raise ValueError("size must be positive")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    lock = open(out / ".generate.lock", "w")  # noqa: SIM115
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as err:
        lock.close()
        raise RuntimeError(f"another generator is running in {out}") from err
    runner = _Runner(workers, log)
    try:
        if (out / ".cache").is_dir():
            remove_stale_tmp(out / ".cache")
        res = Resources(out, seed, size, runner, noise_csv, noise_root, log)
        log(tts.describe_voices(res.found))
        result = {}
        if corpus in ("mininoisy", "all"):
            result["MiniNoisy"] = build_mininoisy(res, real=real)
        if corpus in ("miniwhamr", "all"):
            result["MiniWHAMR"] = build_miniwhamr(res)
        return result
    finally:
        runner.close()
        fcntl.flock(lock, fcntl.LOCK_UN)
        lock.close()
