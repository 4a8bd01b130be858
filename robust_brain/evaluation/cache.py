"""On-disk transcript cache: re-running an evaluation decodes nothing twice.

A transcript is keyed by the recogniser's ``fingerprint`` (model identity and
decoding settings) and the SHA-1 of the exact float32 16 kHz samples it was
given; the system name and utterance ID are stored beside it for inspection.
Identical audio under another system name (or another output folder that
shares the cache) is therefore decoded once. The store is one SQLite file, so
concurrent evaluations may share it.
"""

import hashlib
import sqlite3
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def audio_digest(wav: np.ndarray) -> str:
    """SHA-1 of a waveform as float32 samples.

    Example
    -------
    >>> a = np.zeros(4, dtype=np.float32)
    >>> audio_digest(a) == audio_digest(np.zeros(4))
    True
    >>> audio_digest(a) == audio_digest(np.zeros(5))
    False
    """
    data = np.ascontiguousarray(wav, dtype=np.float32)
    return hashlib.sha1(data.tobytes()).hexdigest()


class TranscriptCache:
    """SQLite-backed map (fingerprint, audio digest) -> transcript.

    Arguments
    ---------
    path : path-like or None
        Database file (created with its folder). ``None`` keeps nothing.

    Example
    -------
    >>> import tempfile, os
    >>> c = TranscriptCache(os.path.join(tempfile.mkdtemp(), "t.sqlite"))
    >>> c.get_many("asr", ["d1", "d2"])
    {}
    >>> c.put_many("asr", [("d1", "hello", "NOIS", "u1")])
    >>> c.get_many("asr", ["d1", "d2"])
    {'d1': 'hello'}
    >>> c.get_many("other-asr", ["d1"])
    {}
    """

    def __init__(self, path):
        self.path = Path(path) if path is not None else None
        self._db = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=120)
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS transcripts ("
                " fingerprint TEXT NOT NULL, digest TEXT NOT NULL,"
                " text TEXT NOT NULL, system TEXT, utt TEXT,"
                " PRIMARY KEY (fingerprint, digest))"
            )
            self._db.commit()

    def get_many(self, fingerprint: str, digests: Iterable[str]):
        """Cached transcripts of those digests that have one."""
        if self._db is None:
            return {}
        digests = list(dict.fromkeys(digests))
        found = {}
        for b in range(0, len(digests), 500):
            part = digests[b : b + 500]
            marks = ",".join("?" * len(part))
            rows = self._db.execute(
                "SELECT digest, text FROM transcripts WHERE fingerprint = ?"
                f" AND digest IN ({marks})",
                [fingerprint, *part],
            )
            found.update(rows)
        return found

    def put_many(self, fingerprint: str, entries):
        """Store ``(digest, text, system, utt)`` tuples (committed)."""
        if self._db is None:
            return
        self._db.executemany(
            "INSERT OR REPLACE INTO transcripts VALUES (?, ?, ?, ?, ?)",
            [(fingerprint, d, t, s, u) for d, t, s, u in entries],
        )
        self._db.commit()

    def close(self):
        """Close the database."""
        if self._db is not None:
            self._db.close()
            self._db = None
