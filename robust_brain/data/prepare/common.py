"""Shared machinery of the real-corpus preparations.

Every ``prepare_<corpus>`` function follows the same contract:

1. ``skip_prep=True`` returns the manifest paths at once, touching nothing.
2. If every manifest exists and its options file (``<manifest>.opts.json``,
   written next to it) holds the same options as this call, the preparation
   is skipped (the config-aware skip of SpeechBrain's LibriSpeech
   preparation, with JSON instead of a pickle). Any difference (another
   split, sample rate, target, ...) prepares again.
3. Otherwise the whole corpus is validated first (folders exist; every audio
   file exists, is readable by ``soundfile``, has the expected sample rate
   and channel count and at least one frame; every transcript is
   non-empty). The first problem raises one :class:`PreparationError` whose
   message names the culprit file, and nothing is written: a manifest from
   a previous good run is left as it was.
4. Only then is each manifest written with
   :func:`~robust_brain.data.manifest.write_csv_atomic`, followed by its
   options file, so that an interrupted write is detected and redone by the
   next call.

Audio is checked from its header (``soundfile.info``); decoding every
sample of a 1000-hour corpus would take hours. A file whose header is sound
but whose body is damaged is therefore only caught when it is loaded.

Names starting with ``.`` (``.DS_Store``, AppleDouble ``._x.wav`` files left
by copies from macOS) are ignored when folders are listed.
"""

import json
import logging
import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from robust_brain.data.manifest import write_csv_atomic
from robust_brain.fileio import write_text_atomic

logger = logging.getLogger(__name__)

#: Bumped when a preparation changes what it writes, so that old manifests
#: are prepared again even with unchanged options.
PREP_FORMAT_VERSION = 1

#: Placeholder written in front of every corpus path (SpeechBrain CSV
#: convention; the recipe passes ``replacements={"data_root": folder}``).
DATA_ROOT = "data_root"


class PreparationError(ValueError):
    """A corpus cannot be prepared; the message names the culprit file.

    Example
    -------
    >>> err = PreparationError("missing audio file /c/a.wav")
    >>> isinstance(err, ValueError)
    True
    """


@dataclass(frozen=True)
class AudioInfo:
    """Header information of a validated audio file.

    Arguments
    ---------
    path : pathlib.Path
        The file.
    frames : int
        Number of samples per channel (> 0).
    sample_rate : int
        Sampling rate in Hz.
    channels : int
        Number of channels.

    Example
    -------
    >>> AudioInfo(Path("a.wav"), 8000, 16000, 1).duration
    0.5
    """

    path: Path
    frames: int
    sample_rate: int
    channels: int

    @property
    def duration(self) -> float:
        """Length in seconds."""
        return self.frames / self.sample_rate


def check_folder(path: str | os.PathLike, what: str = "folder") -> Path:
    """Return ``path`` as an absolute path if it is an existing folder.

    Arguments
    ---------
    path : path-like
        Folder to check.
    what : str
        What the folder is, for the error message.

    Returns
    -------
    pathlib.Path
        The absolute folder path (symbolic links are kept, not resolved).

    Raises
    ------
    PreparationError
        If the folder does not exist.

    Example
    -------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> check_folder(d) == Path(d)
    True
    >>> check_folder(d + "/nope", "LibriSpeech split folder")
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: missing LibriSpeech \
split folder: .../nope
    """
    path = Path(os.path.abspath(path))
    if not path.is_dir():
        raise PreparationError(f"missing {what}: {path}")
    return path


def check_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return ``path`` as an absolute path if it is an existing file.

    Arguments
    ---------
    path : path-like
        File to check.
    what : str
        What the file is, for the error message.

    Returns
    -------
    pathlib.Path
        The absolute file path.

    Raises
    ------
    PreparationError
        If the file does not exist.

    Example
    -------
    >>> check_file("/no/such/list", "RIR list")
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: missing RIR list: \
/no/such/list
    """
    path = Path(os.path.abspath(path))
    if not path.is_file():
        raise PreparationError(f"missing {what}: {path}")
    return path


def audio_info(
    path: str | os.PathLike,
    sample_rate: int | None = None,
    channels: int | None = None,
    context: str = "",
) -> AudioInfo:
    """Validate one audio file from its header.

    Arguments
    ---------
    path : path-like
        The audio file.
    sample_rate : int, optional
        Required sampling rate (Hz); ``None`` accepts any.
    channels : int, optional
        Required channel count; ``None`` accepts any.
    context : str
        Appended to error messages, e.g. ``" (listed in x.trans.txt)"``.

    Returns
    -------
    AudioInfo
        Frames, sample rate and channels; ``.duration`` in seconds.

    Raises
    ------
    PreparationError
        If the file is missing, unreadable or corrupt, has another sample
        rate or channel count, or holds no samples. The message names it.

    Example
    -------
    >>> import tempfile, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> sf.write(d / "a.wav", np.zeros(4000), 16000)
    >>> audio_info(d / "a.wav", sample_rate=16000).duration
    0.25
    >>> audio_info(d / "a.wav", sample_rate=8000)
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: wrong sample rate \
16000 Hz (expected 8000 Hz): .../a.wav
    >>> _ = (d / "b.wav").write_bytes(b"not a wav file")
    >>> audio_info(d / "b.wav")
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: unreadable or \
corrupt audio file .../b.wav (...)
    """
    path = Path(path)
    if not path.is_file():
        raise PreparationError(f"missing audio file {path}{context}")
    try:
        info = sf.info(str(path))
    except (RuntimeError, TypeError, ValueError) as err:
        raise PreparationError(
            f"unreadable or corrupt audio file {path} ({err}){context}"
        ) from err
    if sample_rate is not None and info.samplerate != sample_rate:
        raise PreparationError(
            f"wrong sample rate {info.samplerate} Hz (expected "
            f"{sample_rate} Hz): {path}{context}"
        )
    if channels is not None and info.channels != channels:
        raise PreparationError(
            f"wrong channel count {info.channels} (expected {channels}): "
            f"{path}{context}"
        )
    if not 0 < info.frames < 2**62:
        raise PreparationError(
            f"empty or corrupt audio file ({info.frames} frames): "
            f"{path}{context}"
        )
    return AudioInfo(path, int(info.frames), info.samplerate, info.channels)


def find_files(
    folder: str | os.PathLike, suffixes: Iterable[str] = (".wav",)
) -> list[Path]:
    """List the files under ``folder`` (recursively) with given suffixes.

    Symbolic links to folders are followed; names starting with ``.`` are
    skipped; suffixes are compared case-insensitively. The list is sorted.

    Arguments
    ---------
    folder : path-like
        Root of the search (must exist).
    suffixes : iterable of str
        Accepted endings, e.g. ``(".wav", ".flac")``.

    Returns
    -------
    list of pathlib.Path
        Sorted absolute paths.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "sub").mkdir()
    >>> for name in ("sub/b.WAV", "a.wav", "._a.wav", "notes.txt"):
    ...     _ = (d / name).write_bytes(b"")
    >>> [p.relative_to(d).as_posix() for p in find_files(d)]
    ['a.wav', 'sub/b.WAV']
    """
    suffixes = tuple(s.lower() for s in suffixes)
    found = []
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        for name in files:
            if not name.startswith(".") and name.lower().endswith(suffixes):
                found.append(Path(os.path.abspath(os.path.join(root, name))))
    return sorted(found)


def placeholder_path(
    path: str | os.PathLike, root: str | os.PathLike, name: str = DATA_ROOT
) -> str:
    """Write ``path`` relative to ``root`` behind a ``$name`` placeholder.

    Arguments
    ---------
    path : path-like
        A file inside ``root``.
    root : path-like
        The corpus folder the placeholder stands for.
    name : str
        Placeholder name (``data_root``).

    Returns
    -------
    str
        ``"$data_root/<relative posix path>"``.

    Example
    -------
    >>> placeholder_path("/corpora/LS/dev-clean/1/2/1-2-0.flac", "/corpora/LS")
    '$data_root/dev-clean/1/2/1-2-0.flac'
    """
    rel = Path(os.path.abspath(path)).relative_to(os.path.abspath(root))
    return f"${name}/{rel.as_posix()}"


def check_transcript(text: str, source: str) -> str:
    """Return ``text`` with collapsed whitespace, refusing empty ones.

    Arguments
    ---------
    text : str
        A transcript (possibly normalized already).
    source : str
        Where it comes from (file, line, utterance), for the error message.

    Returns
    -------
    str
        The stripped transcript.

    Raises
    ------
    PreparationError
        If nothing but whitespace is left.

    Example
    -------
    >>> check_transcript("  HELLO   WORLD ", "a.txt")
    'HELLO WORLD'
    >>> check_transcript("  ", "a.trans.txt, line 3 (utterance 1-2-3)")
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: empty transcript: \
a.trans.txt, line 3 (utterance 1-2-3)
    """
    text = " ".join(text.split())
    if not text:
        raise PreparationError(f"empty transcript: {source}")
    return text


_NOT_WORD_CHAR = re.compile(r"[^A-Z0-9']+")


def clean_wsj_markup(text: str) -> str:
    """Remove the WSJ ``.dot`` annotation markup from a transcript.

    Drops noise and event markers (``[loud_breath]``, ``[<door_slam]``,
    ``[phone_ring/]``), the truncation mark ``~`` and the pause mark ``.``;
    unwraps verbal deletions ``<word>`` and mispronunciations ``*word*``
    (both pronounced); removes the backslash quoting (``I\\. B\\. M\\.``).
    Case and punctuation are otherwise kept (see :func:`normalize_words`).

    Arguments
    ---------
    text : str
        Raw ``.dot`` transcript (without the ``(uttid)``).

    Returns
    -------
    str
        The transcript without markup.

    Example
    -------
    >>> clean_wsj_markup(r"[loud_breath] The <and> I\\. B\\. M\\. *deal* ~ .")
    'The and I. B. M. deal'
    """
    words = []
    for token in text.replace("\\", "").split():
        if token.startswith("[") or token.endswith("]") or token in ("~", "."):
            continue
        if len(token) > 2 and token[0] + token[-1] in ("<>", "**"):
            token = token[1:-1]
        words.append(token)
    return " ".join(words)


def normalize_words(text: str) -> str:
    """Upper-case ``text`` and keep only letters, digits and apostrophes.

    Every other character (punctuation, hyphens) becomes a word boundary,
    which matches LibriSpeech-style references (``TWENTY FIVE``, ``I B M``).

    Arguments
    ---------
    text : str
        Any transcript.

    Returns
    -------
    str
        Upper-case words separated by single spaces.

    Example
    -------
    >>> normalize_words("Please call Stella, twenty-five I.B.M. don't!")
    "PLEASE CALL STELLA TWENTY FIVE I B M DON'T"
    """
    return " ".join(_NOT_WORD_CHAR.sub(" ", text.upper()).split())


_DOT_LINE = re.compile(r"^(?P<text>.*)\((?P<uttid>[^()\s]+)\)\s*$")


def read_dot_file(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Parse a WSJ/CHiME ``.dot`` transcript file.

    Each non-blank line is ``<text> (<utterance id>)``; ids are returned
    upper-cased (WSJ0 writes them lower-case, CHiME-4 upper-case) and the
    text raw (see :func:`clean_wsj_markup`), with where it was read. A
    line without an id raises; the first line of an id wins.

    Arguments
    ---------
    path : path-like
        The ``.dot`` (or CHiME-4 ``.dot_all``) file.

    Returns
    -------
    dict
        Utterance id (upper case) -> ``(raw text, "<file>, line <n>")``.

    Raises
    ------
    PreparationError
        On a malformed line, naming the file and line.

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "011c0200.dot"
    >>> _ = p.write_text("The cat sat (011c0201)\\n(011c0202)\\n")
    >>> entries = read_dot_file(p)
    >>> entries["011C0201"][0], entries["011C0202"]
    ('The cat sat ', ('', '.../011c0200.dot, line 2'))
    >>> _ = p.write_text("no id here\\n")
    >>> read_dot_file(p)
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: malformed transcript \
line (expected '<text> (<id>)'): .../011c0200.dot, line 1
    """
    entries = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            match = _DOT_LINE.match(line.rstrip("\r\n"))
            if match is None:
                raise PreparationError(
                    f"malformed transcript line (expected '<text> (<id>)'): "
                    f"{path}, line {number}"
                )
            entries.setdefault(
                match["uttid"].upper(),
                (match["text"], f"{path}, line {number}"),
            )
    return entries


def read_wsj0_transcripts(
    wsj0_folder: str | os.PathLike,
) -> dict[str, tuple[str, str]]:
    """Collect the transcripts of every ``.dot`` file under a WSJ0 folder.

    The ``.dot`` files are found recursively, wherever the distribution
    keeps them (``wsj0/transcrp/dots/<set>/<spk>/*.dot`` or next to the
    audio); the first occurrence of an utterance id wins.

    Arguments
    ---------
    wsj0_folder : path-like
        Root of a WSJ0 (LDC93S6A/B) copy.

    Returns
    -------
    dict
        Utterance id (upper case, e.g. ``011C0201``) ->
        ``(raw text, "<file>, line <n>")``.

    Raises
    ------
    PreparationError
        If the folder is missing or holds no ``.dot`` file.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> (d / "transcrp/dots/si_tr_s/011").mkdir(parents=True)
    >>> _ = (d / "transcrp/dots/si_tr_s/011/011c0200.dot").write_text(
    ...     "Hello [loud_breath] world (011c0201)\\n")
    >>> read_wsj0_transcripts(d)["011C0201"][0]
    'Hello [loud_breath] world '
    """
    folder = check_folder(wsj0_folder, "WSJ0 folder")
    dots = find_files(folder, (".dot",))
    if not dots:
        raise PreparationError(f"no .dot transcript file under {folder}")
    transcripts: dict[str, tuple[str, str]] = {}
    for dot in dots:
        for uttid, entry in read_dot_file(dot).items():
            transcripts.setdefault(uttid, entry)
    return transcripts


def prepare_text(raw: str, normalize: bool, source: str) -> str:
    """Clean (optionally normalize) a transcript and refuse empty ones.

    Arguments
    ---------
    raw : str
        The transcript as read.
    normalize : bool
        Apply :func:`clean_wsj_markup` then :func:`normalize_words`;
        otherwise only collapse whitespace.
    source : str
        Where the transcript comes from, for the error message.

    Returns
    -------
    str
        The transcript.

    Raises
    ------
    PreparationError
        If it is empty (after normalization).

    Example
    -------
    >>> prepare_text("Hi, there. [noise]", True, "a.txt")
    'HI THERE'
    >>> prepare_text("Hi, there.", False, "a.txt")
    'Hi, there.'
    """
    text = normalize_words(clean_wsj_markup(raw)) if normalize else raw
    return check_transcript(text, source)


def unique_ids(rows: Iterable[Mapping[str, object]], what: str) -> None:
    """Raise if two rows share an ``ID``.

    Arguments
    ---------
    rows : iterable of mappings
        Manifest rows.
    what : str
        The manifest, for the error message.

    Raises
    ------
    PreparationError
        Naming the duplicated id.

    Example
    -------
    >>> unique_ids([{"ID": "a"}, {"ID": "a"}], "musan_noise")
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: duplicate ID 'a' in \
musan_noise
    """
    seen = set()
    for row in rows:
        if row["ID"] in seen:
            raise PreparationError(f"duplicate ID {row['ID']!r} in {what}")
        seen.add(row["ID"])


def make_options(corpus: str, **options: object) -> dict:
    """Build the JSON-comparable option record of one preparation call.

    Paths become absolute strings and tuples lists, so that the record
    compares equal to its JSON round trip.

    Arguments
    ---------
    corpus : str
        Corpus name.
    **options
        The call's arguments (without ``save_folder`` and ``skip_prep``).

    Returns
    -------
    dict
        ``{"corpus", "format_version", **options}`` in JSON types.

    Example
    -------
    >>> make_options("musan", data_folder=Path("/m"), categories=("noise",))
    {'corpus': 'musan', 'format_version': 1, 'data_folder': '/m', \
'categories': ['noise']}
    """

    def plain(value):
        if isinstance(value, os.PathLike):
            return os.path.abspath(value)
        if isinstance(value, Mapping):
            return {str(k): plain(v) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [plain(v) for v in value]
        return value

    record = {"corpus": corpus, "format_version": PREP_FORMAT_VERSION}
    record.update({k: plain(v) for k, v in options.items()})
    return json.loads(json.dumps(record))


def options_path(manifest: str | os.PathLike) -> Path:
    """Return the options file stored next to a manifest.

    Arguments
    ---------
    manifest : path-like
        A manifest ``<name>.csv``.

    Returns
    -------
    pathlib.Path
        ``<name>.opts.json`` in the same folder.

    Example
    -------
    >>> options_path("/s/librispeech_dev-clean.csv").name
    'librispeech_dev-clean.opts.json'
    """
    manifest = Path(manifest)
    return manifest.with_name(manifest.stem + ".opts.json")


def skip(manifests: Iterable[str | os.PathLike], options: Mapping) -> bool:
    """Whether every manifest exists and was written with ``options``.

    Arguments
    ---------
    manifests : iterable of path-like
        The manifests a call would write.
    options : mapping
        Its option record (:func:`make_options`).

    Returns
    -------
    bool
        ``True`` if nothing needs preparing.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> opts = make_options("x", a=1)
    >>> skip([d / "x_a.csv"], opts)
    False
    >>> write_manifests({"a": d / "x_a.csv"},
    ...     {"a": (("ID", "duration", "wav"), [])}, opts)
    >>> skip([d / "x_a.csv"], opts), skip([d / "x_a.csv"], {**opts, "a": 2})
    (True, False)
    """
    for manifest in manifests:
        manifest = Path(manifest)
        if not manifest.is_file():
            return False
        try:
            stored = json.loads(options_path(manifest).read_text())
        except (OSError, ValueError):
            return False
        if stored != options:
            return False
    return True


def write_manifests(
    paths: Mapping[str, Path],
    tables: Mapping[str, tuple[Sequence[str], Sequence[Mapping]]],
    options: Mapping,
) -> None:
    """Write validated manifests, each followed by its options file.

    Each manifest's old options file is removed first and the new one
    written last, so an interruption leaves a manifest that :func:`skip`
    does not trust.

    Arguments
    ---------
    paths : mapping
        Manifest name -> CSV path.
    tables : mapping
        Manifest name -> ``(columns, rows)``; same keys as ``paths``.
    options : mapping
        Option record stored next to every manifest.
    """
    for name, path in paths.items():
        columns, rows = tables[name]
        opts_file = options_path(path)
        opts_file.unlink(missing_ok=True)
        write_csv_atomic(path, rows, columns)
        write_text_atomic(
            opts_file, json.dumps(options, indent=2, sort_keys=True) + "\n"
        )


def manifest_paths(
    save_folder: str | os.PathLike, corpus: str, names: Iterable[str]
) -> dict[str, Path]:
    """Map manifest names to ``<save_folder>/<corpus>_<name>.csv``.

    Arguments
    ---------
    save_folder : path-like
        Where the manifests go.
    corpus : str
        File name prefix.
    names : iterable of str
        Manifest names (splits).

    Returns
    -------
    dict
        Name -> absolute path.

    Example
    -------
    >>> manifest_paths("/s", "whamr", ["tr"])
    {'tr': PosixPath('/s/whamr_tr.csv')}
    """
    folder = Path(os.path.abspath(save_folder))
    return {name: folder / f"{corpus}_{name}.csv" for name in names}


def run_preparation(
    corpus: str,
    save_folder: str | os.PathLike,
    names: Iterable[str],
    options: Mapping,
    build: Callable[[], Mapping[str, tuple[Sequence[str], Sequence[Mapping]]]],
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Skip, or validate-then-write, one corpus' manifests.

    Arguments
    ---------
    corpus : str
        Corpus name (file prefix, log lines).
    save_folder : path-like
        Where the manifests go.
    names : iterable of str
        Manifest names.
    options : mapping
        Option record (:func:`make_options`).
    build : callable
        Validates the corpus and returns name -> ``(columns, rows)``;
        raises :class:`PreparationError` on the first problem.
    skip_prep : bool
        Return the paths without looking at anything.

    Returns
    -------
    dict
        Manifest name -> path.
    """
    paths = manifest_paths(save_folder, corpus, names)
    if skip_prep:
        return paths
    if skip(paths.values(), options):
        logger.info(
            "%s: preparation completed in a previous run with the same "
            "options, skipping.",
            corpus,
        )
        return paths
    logger.info("%s: preparing %s", corpus, ", ".join(paths))
    tables = build()
    for name, (_, rows) in tables.items():
        unique_ids(rows, f"{corpus}_{name}")
    write_manifests(paths, tables, options)
    for name, path in paths.items():
        rows = tables[name][1]
        hours = sum(float(r["duration"]) for r in rows) / 3600
        logger.info("%s: %d rows, %.2f h -> %s", corpus, len(rows), hours, path)
    return paths


MULTICHANNEL_POLICIES = ("error", "skip", "keep")


def audio_rows(
    root: Path,
    files: Iterable[Path],
    sample_rate: int | None,
    multichannel: str = "error",
    make_id: Callable[[Path], str] | None = None,
    what: str = "corpus",
) -> list[dict]:
    """Validate audio files and return :data:`AUDIO_COLUMNS` rows.

    Arguments
    ---------
    root : pathlib.Path
        Folder that ``$data_root`` stands for.
    files : iterable of pathlib.Path
        Audio files inside ``root``.
    sample_rate : int, optional
        Required rate; ``None`` accepts any.
    multichannel : str
        What to do with files of more than one channel: "error" (raise
        naming the file), "skip" (leave out, logging how many) or "keep".
    make_id : callable, optional
        File -> ID; default the file name without its suffix.
    what : str
        Corpus name for the log line.

    Returns
    -------
    list of dict
        ``{"ID", "duration", "wav"}`` rows, in the order of ``files``.

    Raises
    ------
    PreparationError
        From :func:`audio_info`, or a multichannel file under "error".

    Example
    -------
    >>> import tempfile, numpy as np
    >>> d = Path(tempfile.mkdtemp())
    >>> sf.write(d / "n.wav", np.zeros(800), 16000)
    >>> sf.write(d / "st.wav", np.zeros((800, 2)), 16000)
    >>> audio_rows(d, [d / "n.wav", d / "st.wav"], 16000, "skip")
    [{'ID': 'n', 'duration': 0.05, 'wav': '$data_root/n.wav'}]
    """
    if multichannel not in MULTICHANNEL_POLICIES:
        raise ValueError(f"multichannel must be one of {MULTICHANNEL_POLICIES}")
    rows, skipped = [], []
    for path in files:
        info = audio_info(path, sample_rate)
        if info.channels != 1 and multichannel != "keep":
            if multichannel == "error":
                raise PreparationError(
                    f"wrong channel count {info.channels} (expected 1): {path}"
                )
            skipped.append(path)
            continue
        rows.append(
            {
                "ID": make_id(path) if make_id else path.stem,
                "duration": info.duration,
                "wav": placeholder_path(path, root),
            }
        )
    if skipped:
        logger.warning(
            "%s: left out %d multichannel file(s), e.g. %s",
            what,
            len(skipped),
            skipped[0],
        )
    return rows
