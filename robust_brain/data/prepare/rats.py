"""RATS channel A preparation (8 kHz retransmitted radio speech + clean).

The Gradient Remedy experiments on RATS (docs/methods.md, GR data) read ESPnet
joint enhancement + ASR data folders: per split, Kaldi-style files
(``<utt> <value>`` per line)::

    <data_folder>/<data_dir>/<split folder>/
        wav.scp      noisy channel A audio (8 kHz)
        spk1.scp     the clean source signal of the same utterance
        text_spk1    its transcript (or ``text``)
        utt2spk      optional: speaker ids

``<split folder>`` defaults to the official recipe's
``rats_Ach_waveform_8k_joint_enh_asr_{train,valid,test}``
(:data:`SPLIT_FOLDERS`); ``split_folders`` maps each split to another
name. RATS is an LDC corpus (licensees only): build these folders with
the data preparation of your RATS release (the GR authors' ESPnet recipe
``egs2/rats_chA/asr_with_enhancement``), then point ``data_folder`` at the
ESPnet recipe folder.

Paths in the ``.scp`` files are absolute or relative to ``audio_root``
(default ``data_folder``, ESPnet's convention: relative to the recipe
folder). Command pipes (``sox ... |``) and Kaldi ark offsets
(``x.ark:123``) are refused with the line that holds them: dump the audio
to files first (ESPnet: ``scripts/audio/format_wav_scp.sh``).

Manifests ``rats_<split>.csv`` (:data:`PAIR_COLUMNS`): ``noisy_wav`` the
channel A file, ``clean_wav`` the source, ``wrd`` the transcript,
``condition`` ``rats_chA_<split>``, ``noise_type`` ``chA``. Paths inside
``audio_root`` are written behind ``$data_root``.
"""

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path

from robust_brain.data.manifest import PAIR_COLUMNS
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_info,
    check_file,
    check_folder,
    make_options,
    placeholder_path,
    prepare_text,
    run_preparation,
)

logger = logging.getLogger(__name__)

#: the official recipe's data folders (``egs2/rats_chA``)
SPLIT_FOLDERS = {
    "train": "rats_Ach_waveform_8k_joint_enh_asr_train",
    "valid": "rats_Ach_waveform_8k_joint_enh_asr_valid",
    "test": "rats_Ach_waveform_8k_joint_enh_asr_test",
}


def read_kaldi_table(path: str | os.PathLike) -> dict[str, tuple[str, str]]:
    """Read a Kaldi ``<key> <value>`` file (``wav.scp``, ``text``, ...).

    Arguments
    ---------
    path : path-like

    Returns
    -------
    dict
        Key -> ``(value, "file, line N")``; the value may be empty (a
        transcript file's problem, reported by the caller).

    Raises
    ------
    PreparationError
        Missing file, or a key listed twice (naming both lines).

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "text"
    >>> _ = p.write_text("u1 HELLO  WORLD\\nu2\\nu3\\tTAB\\n")
    >>> t = read_kaldi_table(p)
    >>> t["u1"][0], t["u2"][0], t["u3"][0], t["u2"][1].endswith("text, line 2")
    ('HELLO  WORLD', '', 'TAB', True)
    >>> _ = p.write_text("u1 A\\nu1 B\\n")
    >>> read_kaldi_table(p)
    Traceback (most recent call last):
    ...
    robust_brain.data.prepare.common.PreparationError: utterance 'u1' \
listed twice: .../text, lines 1 and 2
    """
    path = check_file(path, "Kaldi data file")
    table = {}
    with open(path, encoding="utf-8-sig") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            key, *rest = line.split(maxsplit=1)
            value = rest[0] if rest else ""
            if key in table:
                first = table[key][1].rsplit("line ", 1)[1]
                raise PreparationError(
                    f"utterance {key!r} listed twice: {path}, lines {first} "
                    f"and {number}"
                )
            table[key] = (value.strip(), f"{path}, line {number}")
    return table


def _drop_tags(text: str) -> str:
    """Remove ``<...>`` annotation tokens (``<noise>``, ``<no-speech>``).

    Example
    -------
    >>> _drop_tags("<noise> roger <no-speech> that")
    'roger that'
    """
    return " ".join(
        w for w in text.split() if not (w.startswith("<") and w.endswith(">"))
    )


def _audio_path(value: str, where: str, audio_root: Path) -> Path:
    """The file of one ``.scp`` entry (refusing pipes and ark offsets)."""
    if value.endswith("|") or ".ark:" in value or not value:
        raise PreparationError(
            f"unsupported .scp entry {value!r} (command pipes and ark "
            f"offsets are not read; dump the audio to files first): {where}"
        )
    if len(value.split()) > 1:
        raise PreparationError(
            f"unsupported .scp entry {value!r} (one file path expected; "
            f"extended filenames are not read): {where}"
        )
    path = Path(value)
    if not path.is_absolute():
        path = audio_root / path
    return Path(os.path.abspath(path))


def prepare_rats(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    splits: Sequence[str] = ("train", "valid", "test"),
    split_folders: Mapping[str, str] | None = None,
    data_dir: str = "data",
    audio_root: str | os.PathLike | None = None,
    normalize_text: bool = True,
    sample_rate: int = 8000,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``rats_<split>.csv`` (noisy channel A / clean pairs).

    Arguments
    ---------
    data_folder : path-like
        The ESPnet recipe folder holding ``<data_dir>/<split folder>``.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go.
    splits : sequence of str
        Split names (keys of ``split_folders``).
    split_folders : mapping, optional
        Split -> data folder name; default :data:`SPLIT_FOLDERS`.
    data_dir : str
        Folder of the data folders, relative to ``data_folder``.
    audio_root : path-like, optional
        What relative ``.scp`` paths are relative to, and what
        ``$data_root`` stands for; default ``data_folder``.
    normalize_text : bool
        Drop ``<...>`` tags (``<noise>``) and ``[...]`` event markers,
        upper-case, strip punctuation (as the other preparations); False:
        verbatim.
    sample_rate : int
        Required rate of every noisy and clean file (8000).
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Split -> CSV path.

    Raises
    ------
    PreparationError
        Missing folder or file, a pipe or ark entry, missing/corrupt/
        wrong-rate/multichannel audio, an utterance of ``wav.scp`` without
        a clean file or transcript (or the reverse), an empty transcript;
        the message names the culprit.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> d = root / "data/dev"
    >>> d.mkdir(parents=True)
    >>> (root / "wav").mkdir()
    >>> for name in ("n1", "c1"):
    ...     sf.write(root / f"wav/{name}.wav", np.zeros(800), 8000)
    >>> _ = (d / "wav.scp").write_text("u1 wav/n1.wav\\n")
    >>> _ = (d / "spk1.scp").write_text("u1 wav/c1.wav\\n")
    >>> _ = (d / "text_spk1").write_text("u1 roger, that\\n")
    >>> out = prepare_rats(root, root / "save", splits=["dev"],
    ...                    split_folders={"dev": "dev"})
    >>> print(out["dev"].read_text().splitlines()[1])
    u1,0.1,$data_root/wav/n1.wav,$data_root/wav/c1.wav,ROGER THAT,,\
rats_chA_dev,chA,,
    """
    splits = list(splits)
    folders = dict(SPLIT_FOLDERS if split_folders is None else split_folders)
    missing = [s for s in splits if s not in folders]
    if missing:
        raise ValueError(
            f"split_folders has no folder for splits {missing}: {folders}"
        )
    options = make_options(
        "rats",
        data_folder=Path(data_folder),
        splits=splits,
        split_folders={s: folders[s] for s in splits},
        data_dir=data_dir,
        audio_root=Path(audio_root) if audio_root else None,
        normalize_text=normalize_text,
        sample_rate=sample_rate,
    )

    def build():
        root = check_folder(data_folder, "RATS (ESPnet recipe) folder")
        base = check_folder(audio_root or root, "RATS audio root")
        tables = {}
        for split in splits:
            folder = check_folder(
                root / data_dir / folders[split], f"RATS {split} data folder"
            )
            tables[split] = (PAIR_COLUMNS, _split_rows(split, folder, base))
        return tables

    def _split_rows(split, folder, base):
        if (folder / "segments").is_file():
            raise PreparationError(
                f"a Kaldi segments file is not supported (wav.scp must list "
                f"one file per utterance): {folder / 'segments'}"
            )
        noisy = read_kaldi_table(folder / "wav.scp")
        clean = read_kaldi_table(folder / "spk1.scp")
        text_file = folder / "text_spk1"
        if not text_file.is_file() and (folder / "text").is_file():
            text_file = folder / "text"
        text = read_kaldi_table(text_file)
        speakers = {}
        if (folder / "utt2spk").is_file():
            speakers = read_kaldi_table(folder / "utt2spk")
        if not noisy:
            raise PreparationError(f"no utterance in {folder / 'wav.scp'}")
        for other, name in ((clean, "spk1.scp"), (text, text_file.name)):
            extra = sorted(set(other) - set(noisy))
            if extra:
                raise PreparationError(
                    f"utterance {extra[0]!r} of {other[extra[0]][1]} is not "
                    f"in {folder / 'wav.scp'} ({len(extra)} such)"
                )
            lacking = sorted(set(noisy) - set(other))
            if lacking:
                raise PreparationError(
                    f"utterance {lacking[0]!r} ({noisy[lacking[0]][1]}) has "
                    f"no entry in {folder / name} ({len(lacking)} such)"
                )
        rows = []
        for utt in sorted(noisy):
            value, where = noisy[utt]
            noisy_path = _audio_path(value, where, base)
            info = audio_info(
                noisy_path, sample_rate, channels=1, context=f" ({where})"
            )
            value, clean_where = clean[utt]
            clean_path = _audio_path(value, clean_where, base)
            audio_info(
                clean_path,
                sample_rate,
                channels=1,
                context=f" (clean reference, {clean_where})",
            )
            raw, text_where = text[utt]
            if normalize_text:
                raw = _drop_tags(raw)
            words = prepare_text(raw, normalize_text, text_where)
            rows.append(
                {
                    "ID": utt,
                    "duration": info.duration,
                    "noisy_wav": _manifest_path(noisy_path, base),
                    "clean_wav": _manifest_path(clean_path, base),
                    "wrd": words,
                    "spk_id": speakers.get(utt, ("", ""))[0],
                    "condition": f"rats_chA_{split}",
                    "noise_type": "chA",
                    "snr_db": "",
                    "rt60": "",
                }
            )
        return rows

    return run_preparation(
        "rats", save_folder, splits, options, build, skip_prep
    )


def _manifest_path(path: Path, base: Path) -> str:
    """``$data_root/...`` inside ``base``; the absolute path outside."""
    try:
        return placeholder_path(path, base)
    except ValueError:
        return str(path)
