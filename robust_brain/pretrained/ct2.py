"""Read CTranslate2 ``model.bin`` files (no CTranslate2 needed).

The binary layout (format versions 1 to 6): ``uint32`` version, the spec's
name (a string: ``uint16`` byte count including a trailing NUL, then the
bytes; version ≥ 2), ``uint32`` spec revision, then ``uint32`` variable
count and per variable: name, ``uint8`` rank, ``uint32`` dims[rank],
``uint8`` dtype (version ≥ 4), ``uint32`` byte count, data; then ``uint32``
alias count and (alias, target) name pairs (version ≥ 3). Everything is
little-endian. A rank-0 variable is a scalar setting (head count,
activation, ...).
"""

import struct
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

#: CTranslate2 dtype codes.
DTYPES = {
    0: np.dtype("<f4"),
    1: np.dtype("i1"),
    2: np.dtype("<i2"),
    3: np.dtype("<i4"),
    4: np.dtype("<f2"),
    5: "bfloat16",
}
SUPPORTED_VERSIONS = range(1, 7)


class CT2FormatError(ValueError):
    """A ``model.bin`` that cannot be read: the message names the file."""


@dataclass
class CT2Model:
    """The content of a CTranslate2 ``model.bin``.

    ``variables`` maps names to arrays (bfloat16 stored as float32);
    ``aliases`` maps alias names to the variable they share.
    """

    path: Path
    version: int
    spec: str
    revision: int
    variables: dict = field(default_factory=dict)
    aliases: dict = field(default_factory=dict)

    def get(self, name: str) -> np.ndarray:
        """A variable by name or alias.

        Arguments
        ---------
        name : str

        Returns
        -------
        numpy.ndarray
        """
        name = self.aliases.get(name, name)
        try:
            return self.variables[name]
        except KeyError:
            raise CT2FormatError(
                f"{self.path}: no variable {name!r} in this {self.spec}"
            ) from None

    def scalar(self, name: str) -> int:
        """A rank-0 setting as an int (e.g. ``encoder/num_heads``)."""
        return int(self.get(name).reshape(()))


class _Reader:
    def __init__(self, path: Path, data: bytes):
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int) -> bytes:
        if self.pos + n > len(self.data):
            raise CT2FormatError(
                f"{self.path}: truncated (needs {self.pos + n} bytes, has "
                f"{len(self.data)})"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def unpack(self, fmt: str):
        return struct.unpack("<" + fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        raw = self.take(self.unpack("H"))
        try:
            return raw.rstrip(b"\0").decode()
        except UnicodeDecodeError:
            raise CT2FormatError(
                f"{self.path}: corrupt string at byte {self.pos}"
            ) from None


def _bfloat16_to_float32(raw: bytes) -> np.ndarray:
    bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
    return bits.view(np.float32)


def read_ct2_model(path) -> CT2Model:
    """Read every variable of a CTranslate2 ``model.bin``.

    Arguments
    ---------
    path : path-like
        The ``model.bin`` file (or the folder holding it).

    Returns
    -------
    CT2Model

    Raises
    ------
    CT2FormatError
        Missing, truncated or corrupt file, or an unknown format version or
        dtype; the message names the file.

    Example
    -------
    >>> import tempfile
    >>> bad = Path(tempfile.mkdtemp()) / "model.bin"
    >>> _ = bad.write_bytes(b"\\x06\\x00")
    >>> read_ct2_model(bad)
    Traceback (most recent call last):
    ...
    robust_brain.pretrained.ct2.CT2FormatError: .../model.bin: truncated ...
    """
    path = Path(path)
    if path.is_dir():
        path = path / "model.bin"
    if not path.is_file():
        raise CT2FormatError(f"{path}: no such CTranslate2 model file")
    r = _Reader(path, path.read_bytes())
    version = r.unpack("I")
    if version not in SUPPORTED_VERSIONS:
        raise CT2FormatError(
            f"{path}: unsupported CTranslate2 format version {version} "
            f"(readable: {SUPPORTED_VERSIONS.start}-"
            f"{SUPPORTED_VERSIONS.stop - 1})"
        )
    spec = r.string() if version >= 2 else ""
    revision = r.unpack("I") if version >= 2 else 1
    model = CT2Model(path, version, spec, revision)
    for _ in range(r.unpack("I")):
        name = r.string()
        dims = tuple(r.unpack("I") for _ in range(r.unpack("B")))
        code = r.unpack("B") if version >= 4 else 0
        if code not in DTYPES:
            raise CT2FormatError(
                f"{path}: variable {name!r} has unknown dtype code {code}"
            )
        raw = r.take(r.unpack("I"))
        count = int(np.prod(dims, dtype=np.int64))
        if code == 5:
            values = _bfloat16_to_float32(raw)
        else:
            values = np.frombuffer(raw, dtype=DTYPES[code])
        if values.size != count:
            raise CT2FormatError(
                f"{path}: variable {name!r} holds {values.size} values, its "
                f"shape {dims} needs {count}"
            )
        model.variables[name] = values.reshape(dims)
    if version >= 3:
        for _ in range(r.unpack("I")):
            alias, target = r.string(), r.string()
            model.aliases[alias] = target
    if r.pos != len(r.data):
        raise CT2FormatError(
            f"{path}: {len(r.data) - r.pos} unexpected bytes after the model"
        )
    return model
