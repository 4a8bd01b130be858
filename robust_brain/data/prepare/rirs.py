"""SLR28 room impulse responses (RIRS_NOISES) preparation.

Layout (OpenSLR 28)::

    <data_folder>/                      # the "RIRS_NOISES" folder
        simulated_rirs/{smallroom,mediumroom,largeroom}/
            rir_list, Room001/Room001-00001.wav, ...
        real_rirs_isotropic_noises/
            rir_list, noise_list, *.wav
        pointsource_noises/ (not used here)

``real_rirs_isotropic_noises`` mixes RIRs and isotropic noise recordings
in one folder; its ``rir_list`` (Kaldi format, one
``--rir-id <id> --room-id <room> <path>`` line per RIR) says which files
are RIRs, so it is required. Real RIRs recorded with arrays may have
several channels: by default they are left out (``multichannel="skip"``,
with a log line), since SpeechBrain's ``AddReverb`` expects mono RIRs.

Manifests ``rirs_simulated.csv`` (all rooms of ``rooms``; IDs
``<room>-<file>``, e.g. ``smallroom-Room001-00001``) and ``rirs_real.csv``
(IDs the file names), both :data:`AUDIO_COLUMNS`.
"""

import os
from collections.abc import Sequence
from pathlib import Path

from robust_brain.data.manifest import AUDIO_COLUMNS
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_rows,
    check_file,
    check_folder,
    find_files,
    make_options,
    run_preparation,
)

SETS = ("simulated", "real")
ROOMS = ("smallroom", "mediumroom", "largeroom")


def read_rir_list(path: Path) -> list[str]:
    """File names listed in a Kaldi ``rir_list``.

    Arguments
    ---------
    path : pathlib.Path
        The list; the last field of each line is the RIR path.

    Returns
    -------
    list of str
        File names (the folder part of the listed path is dropped: it is
        relative to wherever the list was made).

    Raises
    ------
    PreparationError
        On a line that does not end with a ``.wav`` path.

    Example
    -------
    >>> import tempfile
    >>> p = Path(tempfile.mkdtemp()) / "rir_list"
    >>> _ = p.write_text("--rir-id a --room-id r RIRS_NOISES/real/a.wav\\n")
    >>> read_rir_list(p)
    ['a.wav']
    """
    names = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            fields = line.split()
            if not fields:
                continue
            if not fields[-1].lower().endswith(".wav"):
                raise PreparationError(
                    f"malformed RIR list line (expected a .wav path last): "
                    f"{path}, line {number}"
                )
            names.append(fields[-1].replace("\\", "/").rsplit("/", 1)[-1])
    return names


def prepare_rirs(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    sets: Sequence[str] = SETS,
    rooms: Sequence[str] = ROOMS,
    sample_rate: int = 16000,
    multichannel: str = "skip",
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``rirs_simulated.csv`` and/or ``rirs_real.csv``.

    Arguments
    ---------
    data_folder : path-like
        The ``RIRS_NOISES`` folder; what ``$data_root`` stands for.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go.
    sets : sequence of str
        Among "simulated", "real".
    rooms : sequence of str
        Simulated room sizes kept.
    sample_rate : int
        Required rate of every file.
    multichannel : str
        Files with several channels: "skip" (default), "error" or "keep".
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Set -> CSV path.

    Raises
    ------
    PreparationError
        Missing folder or ``rir_list``, a listed RIR that is missing,
        corrupt or at another rate; the message names the file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp()) / "RIRS_NOISES"
    >>> room = root / "simulated_rirs/smallroom/Room001"
    >>> room.mkdir(parents=True)
    >>> sf.write(room / "Room001-00001.wav", np.ones(800), 16000)
    >>> out = prepare_rirs(root, root.parent / "save", sets=["simulated"],
    ...                    rooms=["smallroom"])
    >>> print(out["simulated"].read_text().strip())
    ID,duration,wav
    smallroom-Room001-00001,0.05,$data_root/simulated_rirs/smallroom/\
Room001/Room001-00001.wav
    """
    sets = list(sets)
    rooms = list(rooms)
    if not set(sets) <= set(SETS):
        raise ValueError(f"sets must be among {SETS}: {sets}")
    if not set(rooms) <= set(ROOMS):
        raise ValueError(f"rooms must be among {ROOMS}: {rooms}")
    options = make_options(
        "rirs",
        data_folder=Path(data_folder),
        sets=sets,
        rooms=rooms,
        sample_rate=sample_rate,
        multichannel=multichannel,
    )

    def build():
        root = check_folder(data_folder, "RIRS_NOISES folder")
        tables = {}
        if "simulated" in sets:
            rows = []
            for room in rooms:
                folder = check_folder(
                    root / "simulated_rirs" / room, "simulated RIR folder"
                )
                files = find_files(folder)
                if not files:
                    raise PreparationError(f"no .wav file under {folder}")
                rows += audio_rows(
                    root,
                    files,
                    sample_rate,
                    multichannel,
                    make_id=lambda p, room=room: f"{room}-{p.stem}",
                    what="rirs",
                )
            tables["simulated"] = (AUDIO_COLUMNS, rows)
        if "real" in sets:
            folder = check_folder(
                root / "real_rirs_isotropic_noises", "real RIR folder"
            )
            listing = check_file(folder / "rir_list", "RIR list")
            names = read_rir_list(listing)
            if not names:
                raise PreparationError(f"empty RIR list: {listing}")
            files = [folder / name for name in dict.fromkeys(names)]
            rows = audio_rows(
                root, files, sample_rate, multichannel, what="rirs"
            )
            tables["real"] = (AUDIO_COLUMNS, rows)
        return tables

    return run_preparation("rirs", save_folder, sets, options, build, skip_prep)
