"""Manifest schemas shared by the offline generators and the real-corpus
preparations, and an atomic CSV writer.

Every manifest is a SpeechBrain CSV: an ``ID`` column, a ``duration`` column
(seconds) and paths written with the ``$data_root`` placeholder so that a
corpus can be moved (``DynamicItemDataset.from_csv(...,
replacements={"data_root": folder})``).
"""

import csv
import math
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from robust_brain.fileio import atomic_path

#: Clean transcribed speech (LibriSpeech-style).
SPEECH_COLUMNS = ("ID", "duration", "wav", "spk_id", "wrd")
#: Speech-only stream (no transcript), e.g. D4AM's SE stream.
UNTRANSCRIBED_COLUMNS = ("ID", "duration", "wav", "spk_id")
#: Noisy/clean pairs with transcripts (CHiME-4 simu, VoiceBank-DEMAND,
#: MiniNoisy). ``clean_wav`` is empty where no clean reference exists
#: (CHiME-4 real); ``snr_db``/``rt60`` are empty where unknown.
PAIR_COLUMNS = (
    "ID",
    "duration",
    "noisy_wav",
    "clean_wav",
    "wrd",
    "spk_id",
    "condition",
    "noise_type",
    "snr_db",
    "rt60",
)
#: Noise or room-impulse-response recordings (DNS noise, MUSAN, SLR28).
AUDIO_COLUMNS = ("ID", "duration", "wav")
#: Two-speaker separation (WHAMR!, MiniWHAMR).
SEPARATION_COLUMNS = (
    "ID",
    "duration",
    "mix_wav",
    "s1_wav",
    "s2_wav",
    "noise_wav",
    "s1_wrd",
    "s2_wrd",
    "s1_spk",
    "s2_spk",
)
#: Reverberant two-speaker separation (WHAMR!, MiniWHAMR): ``mix_wav`` is
#: the noisy reverberant mixture, ``s1_wav``/``s2_wav`` the anechoic
#: (direct-path) targets, ``s1_reverb_wav``/``s2_reverb_wav`` the
#: reverberant sources as they appear in the mixture. ``snr_db`` (noise re
#: the louder reverberant source) and ``rt60`` (s) are empty where unknown.
WHAMR_COLUMNS = (
    *SEPARATION_COLUMNS,
    "s1_reverb_wav",
    "s2_reverb_wav",
    "snr_db",
    "rt60",
)
#: WHAMR! with both target types: ``s1_wav``/``s2_wav`` hold the chosen
#: target (anechoic or reverberant, the same for every split) and
#: ``s1_alt_wav``/``s2_alt_wav`` the other one, e.g. to also report SI-SDR
#: against the reverberant sources as SpeechBrain's cv/tt manifests do.
SEPARATION_ALT_COLUMNS = (*SEPARATION_COLUMNS, "s1_alt_wav", "s2_alt_wav")


def write_csv_atomic(
    path: str | os.PathLike,
    rows: Iterable[Mapping[str, object]],
    columns: Sequence[str],
) -> Path:
    """Write ``rows`` to a CSV file so that it is either complete or absent.

    The rows go to a temporary file in the same folder, which is renamed
    over ``path`` only once everything was written: an interrupted
    preparation never leaves a half-written manifest behind.

    Arguments
    ---------
    path : path-like
        Destination CSV.
    rows : iterable of mappings
        One mapping per line; keys must be exactly ``columns``.
    columns : sequence of str
        Column order.

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> import tempfile, os
    >>> d = tempfile.mkdtemp()
    >>> p = write_csv_atomic(os.path.join(d, "a.csv"),
    ...     [{"ID": "u1", "duration": 1.5, "wav": "$data_root/u1.wav"}],
    ...     AUDIO_COLUMNS)
    >>> print(p.read_text().strip())
    ID,duration,wav
    u1,1.5,$data_root/u1.wav
    >>> write_csv_atomic(os.path.join(d, "b.csv"), [{"ID": "x"}],
    ...     AUDIO_COLUMNS)
    Traceback (most recent call last):
    ...
    ValueError: row 0 of .../b.csv: columns ['ID'] != ['ID', 'duration', 'wav']
    >>> os.path.exists(os.path.join(d, "b.csv"))
    False
    """
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for i, row in enumerate(rows):
            if sorted(row) != sorted(columns):
                raise ValueError(
                    f"row {i} of {path}: columns {sorted(row)} != "
                    f"{sorted(columns)}"
                )
            writer.writerow([row[c] for c in columns])
    return path


def read_manifest(
    path: str | os.PathLike, columns: Sequence[str] | None = None
) -> list[dict[str, str]]:
    """Read a manifest back and check that it is well formed.

    Checks: the header equals ``columns`` (when given), every row has a
    non-empty unique ``ID`` and a finite ``duration`` > 0.

    Arguments
    ---------
    path : path-like
        A CSV written by :func:`write_csv_atomic`.
    columns : sequence of str, optional
        Expected header, in order (e.g. :data:`SPEECH_COLUMNS`).

    Returns
    -------
    list of dict
        The rows as strings (placeholders are not substituted).

    Raises
    ------
    ValueError
        Naming the file (and line) of the first problem.

    Example
    -------
    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "n.csv")
    >>> _ = write_csv_atomic(p,
    ...     [{"ID": "n1", "duration": 0.5, "wav": "$data_root/n1.wav"}],
    ...     AUDIO_COLUMNS)
    >>> read_manifest(p, AUDIO_COLUMNS)
    [{'ID': 'n1', 'duration': '0.5', 'wav': '$data_root/n1.wav'}]
    >>> read_manifest(p, SPEECH_COLUMNS)
    Traceback (most recent call last):
    ...
    ValueError: .../n.csv: columns ['ID', 'duration', 'wav'] != ['ID', \
'duration', 'wav', 'spk_id', 'wrd']
    """
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        header = list(reader.fieldnames or [])
        if columns is not None and header != list(columns):
            raise ValueError(f"{path}: columns {header} != {list(columns)}")
        rows, seen = [], set()
        for line, row in enumerate(reader, start=2):
            if not row.get("ID") or row["ID"] in seen:
                raise ValueError(
                    f"{path}, line {line}: empty or duplicate ID {row['ID']!r}"
                )
            seen.add(row["ID"])
            try:
                duration = float(row["duration"])
            except (KeyError, TypeError, ValueError):
                duration = math.nan
            if not (math.isfinite(duration) and duration > 0):
                raise ValueError(
                    f"{path}, line {line}: bad duration {row.get('duration')!r}"
                )
            rows.append(row)
    return rows
