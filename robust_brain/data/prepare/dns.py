"""DNS-Challenge noise preparation.

Layout (a clone of microsoft/DNS-Challenge with its audio extracted)::

    <data_folder>/datasets/noise/*.wav                     (2020, 16 kHz)
    <data_folder>/datasets_fullband/noise_fullband/*.wav   (2021+, 48 kHz)

``noise_subdir`` picks the folder; by default the first of the two that
exists. The folder is searched recursively. Manifest ``dns_noise.csv``
(:data:`AUDIO_COLUMNS`), IDs are the file names without ``.wav``.
"""

import os
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

NOISE_SUBDIRS = ("datasets/noise", "datasets_fullband/noise_fullband")


def prepare_dns_noise(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    noise_subdir: str | None = None,
    sample_rate: int = 16000,
    multichannel: str = "error",
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``dns_noise.csv``.

    Arguments
    ---------
    data_folder : path-like
        The DNS-Challenge folder; what ``$data_root`` stands for.
    save_folder : path-like
        Where the manifest and its ``.opts.json`` file go.
    noise_subdir : str, optional
        Noise folder relative to ``data_folder``; default: the first
        existing one of :data:`NOISE_SUBDIRS`.
    sample_rate : int
        Required rate of every file (48000 for the fullband noise).
    multichannel : str
        Files with several channels: "error", "skip" or "keep".
    skip_prep : bool
        Return the manifest path without doing anything.

    Returns
    -------
    dict
        ``{"noise": path}``.

    Raises
    ------
    PreparationError
        Missing folder, empty folder, missing/corrupt/wrong-rate audio;
        the message names the file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> (root / "datasets/noise").mkdir(parents=True)
    >>> sf.write(root / "datasets/noise/door_1.wav", np.zeros(4000), 16000)
    >>> out = prepare_dns_noise(root, root / "save")
    >>> print(out["noise"].read_text().strip())
    ID,duration,wav
    door_1,0.25,$data_root/datasets/noise/door_1.wav
    """
    options = make_options(
        "dns",
        data_folder=Path(data_folder),
        noise_subdir=noise_subdir,
        sample_rate=sample_rate,
        multichannel=multichannel,
    )

    def build():
        root = check_folder(data_folder, "DNS-Challenge folder")
        if noise_subdir is not None:
            folder = check_folder(root / noise_subdir, "DNS noise folder")
        else:
            existing = [root / s for s in NOISE_SUBDIRS if (root / s).is_dir()]
            if not existing:
                raise PreparationError(
                    f"missing DNS noise folder: none of {list(NOISE_SUBDIRS)} "
                    f"in {root}"
                )
            folder = existing[0]
        files = find_files(folder)
        if not files:
            raise PreparationError(f"no .wav file under {folder}")
        rows = audio_rows(root, files, sample_rate, multichannel, what="dns")
        return {"noise": (AUDIO_COLUMNS, rows)}

    return run_preparation(
        "dns", save_folder, ["noise"], options, build, skip_prep
    )
