"""MUSAN preparation (noise, music and babble-speech for augmentation).

Layout (OpenSLR 17)::

    <data_folder>/                      # the "musan" folder
        noise/{free-sound,sound-bible}/*.wav
        music/{fma,fma-western-art,hd-classical,jamendo,rfm}/*.wav
        speech/{librivox,us-gov}/*.wav
        (plus ANNOTATIONS and LICENSE files, ignored)

One manifest per category, ``musan_<category>.csv``
(:data:`AUDIO_COLUMNS`); IDs are the file names without ``.wav``
(``noise-free-sound-0000``), unique across MUSAN.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from robust_brain.data.manifest import AUDIO_COLUMNS
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_rows,
    check_folder,
    find_files,
    make_options,
    run_preparation,
)

CATEGORIES = ("noise", "music", "speech")


def prepare_musan(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    categories: Sequence[str] = CATEGORIES,
    sample_rate: int = 16000,
    multichannel: str = "error",
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``musan_<category>.csv`` for each category.

    Arguments
    ---------
    data_folder : path-like
        The ``musan`` folder; what ``$data_root`` stands for.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go.
    categories : sequence of str
        Among "noise", "music", "speech".
    sample_rate : int
        Required rate of every file.
    multichannel : str
        Files with several channels: "error", "skip" or "keep".
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Category -> CSV path.

    Raises
    ------
    PreparationError
        Missing or empty category folder, missing/corrupt/wrong-rate
        audio; the message names the file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp()) / "musan"
    >>> (root / "noise/free-sound").mkdir(parents=True)
    >>> sf.write(root / "noise/free-sound/noise-free-sound-0000.wav",
    ...          np.zeros(1600), 16000)
    >>> out = prepare_musan(root, root.parent / "save", categories=["noise"])
    >>> print(out["noise"].read_text().strip())
    ID,duration,wav
    noise-free-sound-0000,0.1,$data_root/noise/free-sound/noise-free-sound-0000.wav
    """
    categories = list(categories)
    if not set(categories) <= set(CATEGORIES):
        raise ValueError(f"categories must be among {CATEGORIES}: {categories}")
    options = make_options(
        "musan",
        data_folder=Path(data_folder),
        categories=categories,
        sample_rate=sample_rate,
        multichannel=multichannel,
    )

    def build():
        root = check_folder(data_folder, "MUSAN folder")
        tables = {}
        for category in categories:
            folder = check_folder(root / category, "MUSAN category folder")
            files = find_files(folder)
            if not files:
                raise PreparationError(f"no .wav file under {folder}")
            rows = audio_rows(
                root, files, sample_rate, multichannel, what="musan"
            )
            tables[category] = (AUDIO_COLUMNS, rows)
        return tables

    return run_preparation(
        "musan", save_folder, categories, options, build, skip_prep
    )
