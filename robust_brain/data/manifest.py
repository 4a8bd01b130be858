"""Manifest schemas shared by the offline generators and the real-corpus
preparations, and an atomic CSV writer.

Every manifest is a SpeechBrain CSV: an ``ID`` column, a ``duration`` column
(seconds) and paths written with the ``$data_root`` placeholder so that a
corpus can be moved (``DynamicItemDataset.from_csv(...,
replacements={"data_root": folder})``).
"""

import csv
import os
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"
    )
    try:
        with os.fdopen(fd, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(columns)
            for i, row in enumerate(rows):
                if sorted(row) != sorted(columns):
                    raise ValueError(
                        f"row {i} of {path}: columns {sorted(row)} != "
                        f"{sorted(columns)}"
                    )
                writer.writerow([row[c] for c in columns])
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path
