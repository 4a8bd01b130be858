"""LibriSpeech preparation (transcribed or speech-only manifests).

Layout (OpenSLR 12, as extracted)::

    <data_folder>/                      # the "LibriSpeech" folder
        train-clean-100/<spk>/<chapter>/<spk>-<chapter>.trans.txt
        train-clean-100/<spk>/<chapter>/<spk>-<chapter>-<utt>.flac
        dev-clean/...  test-other/...

Each ``.trans.txt`` line is ``<utterance id> <TRANSCRIPT>`` (upper case, no
punctuation, already the reference format of LibriSpeech recognizers).

Manifests: ``librispeech_<split>.csv`` (:data:`SPEECH_COLUMNS`) or, with
``transcribed=False``, ``librispeech_<split>_untranscribed.csv``
(:data:`UNTRANSCRIBED_COLUMNS`, the speech-only stream of D4AM:
train-clean-360 + train-other-500, transcripts not even read). The
different file name lets a recipe prepare both kinds into one folder.
"""

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from robust_brain.data.manifest import SPEECH_COLUMNS, UNTRANSCRIBED_COLUMNS
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_info,
    check_folder,
    check_transcript,
    find_files,
    make_options,
    placeholder_path,
    run_preparation,
)

logger = logging.getLogger(__name__)

SPLITS = (
    "train-clean-100",
    "train-clean-360",
    "train-other-500",
    "dev-clean",
    "dev-other",
    "test-clean",
    "test-other",
)


def prepare_librispeech(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    splits: Sequence[str] = ("train-clean-100", "dev-clean", "test-clean"),
    transcribed: bool = True,
    merge_splits: Sequence[str] = (),
    merge_name: str | None = None,
    sample_rate: int = 16000,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write one LibriSpeech manifest per split (and optionally a merge).

    Arguments
    ---------
    data_folder : path-like
        The ``LibriSpeech`` folder holding the split folders; it is what
        ``$data_root`` stands for in the manifests.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go.
    splits : sequence of str
        Split folders to prepare (any folder name in the LibriSpeech layout
        is accepted; the standard ones are in :data:`SPLITS`).
    transcribed : bool
        ``True``: :data:`SPEECH_COLUMNS` from the ``*.trans.txt`` files;
        every transcript line needs its flac and every flac a non-empty
        transcript. ``False``: :data:`UNTRANSCRIBED_COLUMNS` from the flac
        files alone (manifests named ``<split>_untranscribed``).
    merge_splits : sequence of str
        Splits (among ``splits``) also written together as ``merge_name``,
        e.g. ``("train-clean-360", "train-other-500")``.
    merge_name : str, optional
        Name of the merged manifest; required with ``merge_splits``.
    sample_rate : int
        Required sampling rate of every file.
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Manifest name (split, then ``merge_name``) -> CSV path.

    Raises
    ------
    PreparationError
        Missing split folder, missing/corrupt/wrong-rate audio, a flac
        without transcript, an empty transcript (message names the file).

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> chap = root / "LibriSpeech/dev-clean/84/121123"
    >>> chap.mkdir(parents=True)
    >>> sf.write(chap / "84-121123-0000.flac", np.zeros(1600), 16000)
    >>> _ = (chap / "84-121123.trans.txt").write_text("84-121123-0000 GO\\n")
    >>> out = prepare_librispeech(root / "LibriSpeech", root / "save",
    ...                           splits=["dev-clean"])
    >>> print(out["dev-clean"].read_text().strip())
    ID,duration,wav,spk_id,wrd
    84-121123-0000,0.1,$data_root/dev-clean/84/121123/84-121123-0000.flac,84,GO
    """
    splits = list(splits)
    merge_splits = list(merge_splits)
    if bool(merge_splits) != bool(merge_name):
        raise ValueError("merge_splits and merge_name go together")
    if not set(merge_splits) <= set(splits):
        raise ValueError(f"merge_splits {merge_splits} not all in {splits}")
    if merge_name in splits:
        raise ValueError(f"merge_name {merge_name!r} is also a split")
    suffix = "" if transcribed else "_untranscribed"
    names = [s + suffix for s in splits]
    if merge_name:
        names.append(merge_name + suffix)
    options = make_options(
        "librispeech",
        data_folder=Path(data_folder),
        splits=splits,
        transcribed=transcribed,
        merge_splits=merge_splits,
        merge_name=merge_name,
        sample_rate=sample_rate,
    )

    def build():
        root = check_folder(data_folder, "LibriSpeech folder")
        per_split = {}
        for split in splits:
            folder = check_folder(root / split, "LibriSpeech split folder")
            if transcribed:
                rows = _transcribed_rows(root, folder, sample_rate)
            else:
                rows = _untranscribed_rows(root, folder, sample_rate)
            per_split[split] = rows
        columns = SPEECH_COLUMNS if transcribed else UNTRANSCRIBED_COLUMNS
        tables = {s + suffix: (columns, r) for s, r in per_split.items()}
        if merge_name:
            merged = [row for s in merge_splits for row in per_split[s]]
            tables[merge_name + suffix] = (columns, merged)
        return tables

    return run_preparation(
        "librispeech", save_folder, names, options, build, skip_prep
    )


def _transcribed_rows(root: Path, folder: Path, sample_rate: int) -> list:
    rows = []
    listed = set()
    for trans in find_files(folder, (".trans.txt",)):
        with open(trans, encoding="utf-8") as f:
            lines = f.read().splitlines()
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            uttid, text = (line.split(maxsplit=1) + [""])[:2]
            where = f"{trans}, line {number} (utterance {uttid})"
            text = check_transcript(text, where)
            wav = trans.parent / f"{uttid}.flac"
            info = audio_info(
                wav, sample_rate, channels=1, context=f" (listed in {where})"
            )
            listed.add(wav)
            rows.append(
                {
                    "ID": uttid,
                    "duration": info.duration,
                    "wav": placeholder_path(wav, root),
                    "spk_id": uttid.split("-")[0],
                    "wrd": text,
                }
            )
    flacs = find_files(folder, (".flac",))
    if not flacs:
        raise PreparationError(f"no .flac file under {folder}")
    for flac in flacs:
        if flac not in listed:
            raise PreparationError(
                f"audio file without transcript (not in any .trans.txt of "
                f"its folder): {flac}"
            )
    return sorted(rows, key=lambda r: r["ID"])


def _untranscribed_rows(root: Path, folder: Path, sample_rate: int) -> list:
    flacs = find_files(folder, (".flac",))
    if not flacs:
        raise PreparationError(f"no .flac file under {folder}")
    rows = []
    for flac in flacs:
        info = audio_info(flac, sample_rate, channels=1)
        uttid = flac.name[: -len(".flac")]
        rows.append(
            {
                "ID": uttid,
                "duration": info.duration,
                "wav": placeholder_path(flac, root),
                "spk_id": uttid.split("-")[0],
            }
        )
    return sorted(rows, key=lambda r: r["ID"])
