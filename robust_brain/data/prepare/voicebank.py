"""VoiceBank-DEMAND preparation (noisy/clean pairs with transcripts).

Layout (Edinburgh DataShare 10283/2791, as extracted)::

    <data_folder>/
        clean_trainset_28spk_wav/p226_001.wav   noisy_trainset_28spk_wav/...
        clean_testset_wav/p232_001.wav          noisy_testset_wav/...
        trainset_28spk_txt/p226_001.txt         testset_txt/p232_001.txt
        logfiles/log_trainset_28spk.txt         logfiles/log_testset.txt
                                                (optional; also accepted
                                                 directly in data_folder)

Log lines are ``<file id> <noise type> <SNR dB>``; they fill
``noise_type``, ``snr_db`` and ``condition`` (``<noise>_<snr>``, e.g.
``bus_2.5``); without logs those columns are empty.

The originals are 48 kHz. Either point ``data_folder`` at a 16 kHz copy in
the same layout (``resample=False``, the default: any file at another rate
is an error naming it), or pass ``resample=True``: every file is then
resampled into ``<save_folder>/voicebank_<rate>hz/`` (same layout) and the
manifests hold **absolute paths** to those copies instead of
``$data_root`` paths. Absolute paths were chosen over a second placeholder
because SpeechBrain raises on any ``$name`` without a replacement: the
recipe keeps passing only ``data_root``, and the copies belong to the
save folder that wrote the manifests anyway.

Manifests ``voicebank_{train,valid,test}.csv`` (:data:`PAIR_COLUMNS`);
``valid`` holds the training speakers of ``valid_speakers`` (p226, p287 as
in SpeechBrain's recipe), removed from ``train``.
"""

import logging
import os
from collections.abc import Sequence
from math import gcd
from pathlib import Path

import soundfile as sf

from robust_brain.data.manifest import PAIR_COLUMNS
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_info,
    check_folder,
    find_files,
    make_options,
    placeholder_path,
    prepare_text,
    run_preparation,
)
from robust_brain.fileio import atomic_path

logger = logging.getLogger(__name__)

SUBSETS = {"train": "trainset_28spk", "test": "testset"}


def prepare_voicebank(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    valid_speakers: Sequence[str] = ("p226", "p287"),
    sample_rate: int = 16000,
    resample: bool = False,
    normalize_text: bool = True,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``voicebank_train/valid/test.csv``.

    Arguments
    ---------
    data_folder : path-like
        The VoiceBank-DEMAND folder (16 kHz copy unless ``resample``);
        what ``$data_root`` stands for.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go (and the
        resampled copies with ``resample=True``).
    valid_speakers : sequence of str
        Training speakers moved to ``valid``; empty: no valid manifest.
    sample_rate : int
        Rate every file must have (``resample=False``) or is resampled to.
    resample : bool
        Resample the originals (any rate) into
        ``<save_folder>/voicebank_<rate>hz`` and write absolute paths.
    normalize_text : bool
        Upper-case and strip punctuation (``Please call Stella.`` ->
        ``PLEASE CALL STELLA``), the reference format of LibriSpeech
        recognizers.
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        "train", "valid" (if any valid speaker), "test" -> CSV path.

    Raises
    ------
    PreparationError
        Missing folder, a transcript without its noisy or clean audio (or
        the reverse), corrupt or wrong-rate audio, an empty transcript, a
        malformed log line; the message names the file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> for sub in ("train", "test"):
    ...     spk, name = ("p226", "trainset_28spk") if sub == "train" else (
    ...         "p232", "testset")
    ...     for kind in ("clean", "noisy"):
    ...         (root / f"{kind}_{name}_wav").mkdir()
    ...         sf.write(root / f"{kind}_{name}_wav/{spk}_001.wav",
    ...                  np.zeros(1600), 16000)
    ...     (root / f"{name}_txt").mkdir()
    ...     _ = (root / f"{name}_txt/{spk}_001.txt").write_text("Hi, you.")
    >>> out = prepare_voicebank(root, root / "save", valid_speakers=())
    >>> print(out["test"].read_text().strip())
    ID,duration,noisy_wav,clean_wav,wrd,spk_id,condition,noise_type,snr_db,rt60
    p232_001,0.1,$data_root/noisy_testset_wav/p232_001.wav,\
$data_root/clean_testset_wav/p232_001.wav,HI YOU,p232,,,,
    """
    valid_speakers = list(valid_speakers)
    names = ["train", "valid", "test"] if valid_speakers else ["train", "test"]
    options = make_options(
        "voicebank",
        data_folder=Path(data_folder),
        valid_speakers=valid_speakers,
        sample_rate=sample_rate,
        resample=resample,
        normalize_text=normalize_text,
    )

    def build():
        root = check_folder(data_folder, "VoiceBank-DEMAND folder")
        copies = (
            Path(os.path.abspath(save_folder)) / f"voicebank_{sample_rate}hz"
        )
        rows = {}
        todo = []  # (original, copy) pairs to resample, all validated first
        for split, subset in SUBSETS.items():
            rows[split] = _subset_rows(
                root,
                subset,
                sample_rate,
                resample,
                normalize_text,
                copies,
                todo,
            )
        for original, copy in todo:
            _resample_file(original, copy, sample_rate)
        if resample:
            for split_rows in rows.values():
                for row in split_rows:
                    copy = Path(row["noisy_wav"])
                    row["duration"] = audio_info(copy, sample_rate).duration
        tables = {}
        valid = set(valid_speakers)
        train = [r for r in rows["train"] if r["spk_id"] not in valid]
        tables["train"] = (PAIR_COLUMNS, train)
        if valid_speakers:
            held = [r for r in rows["train"] if r["spk_id"] in valid]
            if not held:
                raise PreparationError(
                    f"no training file of valid_speakers {valid_speakers} in "
                    f"{root / 'noisy_trainset_28spk_wav'}"
                )
            tables["valid"] = (PAIR_COLUMNS, held)
        tables["test"] = (PAIR_COLUMNS, rows["test"])
        return tables

    return run_preparation(
        "voicebank", save_folder, names, options, build, skip_prep
    )


def _subset_rows(root, subset, sample_rate, resample, normalize, copies, todo):
    folders = {
        kind: check_folder(root / f"{kind}_{subset}_wav", "VoiceBank folder")
        for kind in ("noisy", "clean")
    }
    txt_folder = check_folder(root / f"{subset}_txt", "VoiceBank folder")
    log = _read_log(root, subset)
    txts = {p.stem: p for p in find_files(txt_folder, (".txt",))}
    ids = set(txts)
    for folder in folders.values():
        ids |= {p.stem for p in find_files(folder)}
    if not ids:
        raise PreparationError(f"no VoiceBank file in {txt_folder}")
    rows = []
    for uttid in sorted(ids):
        txt = txt_folder / f"{uttid}.txt"
        if not txt.is_file():
            raise PreparationError(f"missing transcript file: {txt}")
        where = f" (transcript {txt})"
        wavs = {}
        for kind, folder in folders.items():
            wav = folder / f"{uttid}.wav"
            info = audio_info(
                wav,
                None if resample else sample_rate,
                channels=1,
                context=where,
            )
            if resample:
                copy = copies / wav.relative_to(root)
                todo.append((wav, copy))
                wavs[kind] = str(copy)
            else:
                wavs[kind] = placeholder_path(wav, root)
            if kind == "noisy":
                duration = info.duration
        text = prepare_text(
            txt.read_text(encoding="utf-8", errors="replace"),
            normalize,
            str(txt),
        )
        noise, snr = log.get(uttid, ("", ""))
        rows.append(
            {
                "ID": uttid,
                "duration": duration,
                "noisy_wav": wavs["noisy"],
                "clean_wav": wavs["clean"],
                "wrd": text,
                "spk_id": uttid.split("_")[0],
                "condition": f"{noise}_{snr}" if noise else "",
                "noise_type": noise,
                "snr_db": snr,
                "rt60": "",
            }
        )
    return rows


def _read_log(root: Path, subset: str) -> dict[str, tuple[str, str]]:
    """``{file id: (noise type, snr)}`` from the subset's log, if any."""
    for log in (
        root / "logfiles" / f"log_{subset}.txt",
        root / f"log_{subset}.txt",
    ):
        if log.is_file():
            break
    else:
        logger.info("voicebank: no log_%s.txt; noise_type/snr_db empty", subset)
        return {}
    entries = {}
    with open(log, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            try:
                uttid, noise, snr = fields
                float(snr)
            except ValueError:
                raise PreparationError(
                    f"malformed log line (expected '<id> <noise> <snr>'): "
                    f"{log}, line {number}"
                ) from None
            entries[uttid] = (noise, snr)
    return entries


def _resample_file(original: Path, copy: Path, sample_rate: int) -> None:
    """Resample ``original`` to ``sample_rate`` into ``copy`` atomically."""
    from scipy.signal import resample_poly

    try:
        signal, rate = sf.read(str(original), dtype="float32")
    except (RuntimeError, TypeError, ValueError) as err:
        raise PreparationError(
            f"unreadable or corrupt audio file {original} ({err})"
        ) from err
    if rate != sample_rate:
        g = gcd(rate, sample_rate)
        signal = resample_poly(signal, sample_rate // g, rate // g, axis=0)
    with atomic_path(copy) as tmp:
        sf.write(tmp, signal, sample_rate, subtype="PCM_16", format="WAV")
