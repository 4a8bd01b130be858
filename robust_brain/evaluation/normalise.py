"""Whisper's English text normaliser, applied to references AND hypotheses
before any WER is computed.

The normaliser is the one OpenAI published with Whisper (lower-casing,
punctuation and bracketed-noise removal, contractions, British to American
spelling, spelled-out numbers to digits). ``transformers`` ships its code
(``EnglishTextNormalizer``) but not the spelling table, which the hub
tokenizers carry as ``normalizer.json``. Offline we read the same table from
the ``whisper-normalizer`` pip package (MIT), or from ``openai-whisper`` if
that is installed instead.
"""

import functools
import importlib.util
import json
from pathlib import Path

from transformers.models.whisper.english_normalizer import (
    EnglishTextNormalizer,
)

#: (package, path inside the package) holding the British-to-American
#: spelling table, tried in order.
_SPELLING_TABLES = (
    ("whisper_normalizer", "normalizers/english.json"),
    ("whisper", "normalizers/english.json"),
)


def spelling_mapping_path() -> Path:
    """Locate Whisper's British-to-American spelling table.

    The packages are located, not imported (importing ``whisper`` would pull
    in numba).

    Returns
    -------
    pathlib.Path
        The ``english.json`` file.

    Raises
    ------
    ImportError
        If neither ``whisper-normalizer`` nor ``openai-whisper`` is installed.

    Example
    -------
    >>> spelling_mapping_path().name
    'english.json'
    """
    for package, rel in _SPELLING_TABLES:
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            continue
        for folder in spec.submodule_search_locations:
            path = Path(folder) / rel
            if path.is_file():
                return path
    raise ImportError(
        "Whisper's English spelling table was not found: "
        "pip install whisper-normalizer  (or robust_brain[eval])"
    )


@functools.lru_cache(maxsize=1)
def english_normaliser() -> EnglishTextNormalizer:
    """Return the (cached) Whisper English text normaliser.

    Returns
    -------
    transformers EnglishTextNormalizer
        Callable ``str -> str``.

    Example
    -------
    >>> english_normaliser()("The colour is twenty-five percent.")
    'the color is 25%'
    """
    mapping = json.loads(spelling_mapping_path().read_text(encoding="utf-8"))
    return EnglishTextNormalizer(mapping)


def normalise(text: str) -> str:
    """Normalise one transcript the way Whisper's evaluations do.

    Use it on the reference and on the hypothesis alike: the WER functions of
    :mod:`robust_brain.evaluation.metrics` do so themselves.

    Arguments
    ---------
    text : str
        A reference or a recogniser output, any casing and punctuation.

    Returns
    -------
    str
        Lower-case words separated by single spaces ("" if nothing is left).
        Tokens made of dots and commas only, which Whisper's normaliser
        leaves behind a trailing ellipsis, are dropped.

    Example
    -------
    >>> normalise("Mr. Smith's 2 dogs!")
    'mister smith is 2 dogs'
    >>> normalise("I'm gonna pay $3.50 on the 1st of May, okay?")
    'i am going to pay $3.50 on the 1st of may okay'
    >>> normalise("[laughs] Um, HELLO   world...")
    'hello world'
    """
    words = english_normaliser()(text or "").split()
    # Whisper's number normaliser leaves a lone "." behind a trailing
    # ellipsis ("world..." -> "world ."): such tokens are no words.
    return " ".join(w for w in words if w.strip(".,"))
