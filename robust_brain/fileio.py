"""Files that are either complete or absent.

Manifests, stage settings, reports, figures, corpus audio and exported
front-ends are all written the same way: to a hidden temporary file beside
the destination, renamed over it only once the writer has finished. A run
killed mid-write leaves the old file (or none), never a torn one, and the
temporary is removed if the writer raises.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_text_atomic"]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path that replaces ``path`` when the block ends.

    The temporary, ``.<name>.<pid>.<random>.tmp`` in the destination's
    folder (so the rename stays on one file system and is atomic), is not
    created: the block writes it with any library (``open``,
    ``torch.save``, ``soundfile.write``, ``savefig`` with an explicit
    ``format``). On leaving the block it is renamed over ``path``; if the
    block raises, it is deleted and ``path`` is untouched. Missing parent
    folders are created.

    Arguments
    ---------
    path : path-like
        The destination.

    Yields
    ------
    pathlib.Path
        Where to write.

    Example
    -------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with atomic_path(d / "sub" / "a.txt") as tmp:
    ...     _ = tmp.write_text("done")
    >>> (d / "sub" / "a.txt").read_text()
    'done'
    >>> with atomic_path(d / "sub" / "a.txt") as tmp:
    ...     _ = tmp.write_text("half")
    ...     raise RuntimeError("killed")
    Traceback (most recent call last):
    ...
    RuntimeError: killed
    >>> (d / "sub" / "a.txt").read_text()
    'done'
    >>> sorted(p.name for p in d.rglob("*"))  # no temporary left behind
    ['a.txt', 'sub']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{uuid.uuid4().hex[:8]}"
    tmp = path.with_name(f".{path.name}.{tag}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text_atomic(
    path: str | os.PathLike, text: str, encoding: str = "utf-8"
) -> Path:
    """Write ``text`` to ``path`` through :func:`atomic_path`.

    Arguments
    ---------
    path : path-like
        The destination.
    text : str
        The whole content.
    encoding : str
        Text encoding.

    Returns
    -------
    pathlib.Path
        The written file.

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "settings.json"
    >>> write_text_atomic(p, '{"lr": 0.001}').read_text()
    '{"lr": 0.001}'
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding=encoding)
    return path
