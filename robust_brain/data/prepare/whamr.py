"""WHAMR! preparation (two-speaker noisy reverberant separation).

Layout (as written by the WHAMR! creation scripts)::

    <data_folder>/wav{8k,16k}/{min,max}/{tr,cv,tt}/
        mix_both_reverb/  mix_clean_reverb/  mix_single_reverb/
        mix_both_anechoic/ mix_clean_anechoic/ mix_single_anechoic/
        s1_anechoic/ s2_anechoic/ s1_reverb/ s2_reverb/ noise/

Every folder of a split holds the same file names, which encode the two
WSJ0 source utterances and their relative levels, e.g.
``011a0101_1.7135_20ga010m_-1.7135.wav`` (sources ``011a0101`` and
``20ga010m``; speakers ``011`` and ``20g``, the first three characters).

Differences from SpeechBrain's ``create_wham_whamr_csv``:

* **One target type for every split.** SpeechBrain's preparation uses the
  anechoic sources for ``tr`` but the reverberant ones for ``cv``/``tt``
  when ``dereverberate=True``. Here ``target`` ("anechoic" or "reverb")
  applies to tr, cv and tt alike; ``alt_targets=True`` adds the other type
  as ``s1_alt_wav``/``s2_alt_wav`` (:data:`SEPARATION_ALT_COLUMNS`).
* **``max`` by default.** ``min`` truncates each mixture to its shorter
  source, so the WSJ0 transcripts no longer match the audio; only ``max``
  is fit for WER. Preparing ``min`` logs a warning.
* **16 kHz by default**, the rate of the ASR encoders used for WER.

Transcripts: WHAMR! ships none. With ``wsj0_folder`` (a WSJ0 copy), the
``.dot`` files are read and ``s1_wrd``/``s2_wrd`` filled (a source without
transcript, or with an empty one, is an error naming the mixture file and
the utterance). Without it, ``s1_wrd``/``s2_wrd`` are empty: enough to
train (GPIT needs no transcripts), not to score WER.
"""

import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

from robust_brain.data.manifest import (
    SEPARATION_ALT_COLUMNS,
    SEPARATION_COLUMNS,
)
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_info,
    check_folder,
    find_files,
    make_options,
    placeholder_path,
    prepare_text,
    read_wsj0_transcripts,
    run_preparation,
)

logger = logging.getLogger(__name__)

SPLITS = ("tr", "cv", "tt")
MIXTURES = (
    "mix_both_reverb",
    "mix_clean_reverb",
    "mix_single_reverb",
    "mix_both_anechoic",
    "mix_clean_anechoic",
    "mix_single_anechoic",
)
TARGETS = ("anechoic", "reverb")

_LEVEL = r"-?\d+(?:\.\d+)?(?:[eE]-?\d+)?"
_MIX_NAME = re.compile(
    rf"^(?P<s1>[^_]+)_(?P<l1>{_LEVEL})_(?P<s2>[^_]+)_(?P<l2>{_LEVEL})$"
)


def parse_mixture_name(stem: str) -> tuple[str, str] | None:
    """Return the two WSJ0 utterance ids encoded in a WHAMR! file name.

    Arguments
    ---------
    stem : str
        File name without ``.wav``.

    Returns
    -------
    tuple of str or None
        ``(s1_uttid, s2_uttid)`` in upper case, ``None`` if the name does
        not follow the ``<utt1>_<level1>_<utt2>_<level2>`` pattern.

    Example
    -------
    >>> parse_mixture_name("011a0101_1.7135_20ga010m_-1.7135")
    ('011A0101', '20GA010M')
    >>> parse_mixture_name("whatever") is None
    True
    """
    match = _MIX_NAME.match(stem)
    if match is None:
        return None
    return match["s1"].upper(), match["s2"].upper()


def prepare_whamr(
    data_folder: str | os.PathLike,
    save_folder: str | os.PathLike,
    sample_rate: int = 16000,
    version: str = "max",
    mixture: str = "mix_both_reverb",
    target: str = "anechoic",
    splits: Sequence[str] = SPLITS,
    wsj0_folder: str | os.PathLike | None = None,
    normalize_text: bool = True,
    alt_targets: bool = False,
    skip_prep: bool = False,
) -> dict[str, Path]:
    """Write ``whamr_<split>.csv`` for each split.

    Arguments
    ---------
    data_folder : path-like
        The WHAMR! output folder holding ``wav8k``/``wav16k``; what
        ``$data_root`` stands for.
    save_folder : path-like
        Where the manifests and their ``.opts.json`` files go.
    sample_rate : int
        8000 or 16000: picks ``wav8k``/``wav16k``; every file must have it.
    version : str
        "max" (default, needed for WER) or "min" (truncated; warned).
    mixture : str
        Mixture folder, one of :data:`MIXTURES`.
    target : str
        "anechoic" (separation + dereverberation) or "reverb"; the source
        folders ``s{1,2}_<target>`` of **every** split.
    splits : sequence of str
        Among "tr", "cv", "tt".
    wsj0_folder : path-like, optional
        WSJ0 copy whose ``.dot`` files give ``s1_wrd``/``s2_wrd``;
        without it those columns are empty.
    normalize_text : bool
        Remove the WSJ markup and upper-case/strip punctuation
        (:func:`~robust_brain.data.prepare.common.prepare_text`).
    alt_targets : bool
        Also write the other target type as ``s1_alt_wav``/``s2_alt_wav``
        (:data:`SEPARATION_ALT_COLUMNS` instead of
        :data:`SEPARATION_COLUMNS`).
    skip_prep : bool
        Return the manifest paths without doing anything.

    Returns
    -------
    dict
        Split -> CSV path.

    Raises
    ------
    PreparationError
        Missing folder, missing/corrupt/wrong-rate file of any column,
        unparsable file name or missing/empty transcript (with
        ``wsj0_folder``); the message names the file.

    Example
    -------
    >>> import tempfile, numpy as np, soundfile as sf
    >>> root = Path(tempfile.mkdtemp())
    >>> tt = root / "whamr/wav16k/max/tt"
    >>> name = "011a0101_1.7_20ga010m_-1.7.wav"
    >>> for sub in ("mix_both_reverb", "s1_anechoic", "s2_anechoic",
    ...             "noise"):
    ...     (tt / sub).mkdir(parents=True)
    ...     sf.write(tt / sub / name, np.zeros(8000), 16000)
    >>> out = prepare_whamr(root / "whamr", root / "save", splits=["tt"])
    >>> print(out["tt"].read_text().splitlines()[1])
    011a0101_1.7_20ga010m_-1.7,0.5,$data_root/wav16k/max/tt/mix_both_reverb/\
011a0101_1.7_20ga010m_-1.7.wav,$data_root/wav16k/max/tt/s1_anechoic/\
011a0101_1.7_20ga010m_-1.7.wav,$data_root/wav16k/max/tt/s2_anechoic/\
011a0101_1.7_20ga010m_-1.7.wav,$data_root/wav16k/max/tt/noise/\
011a0101_1.7_20ga010m_-1.7.wav,,,011,20g
    """
    splits = list(splits)
    if sample_rate not in (8000, 16000):
        raise ValueError(f"sample_rate must be 8000 or 16000: {sample_rate}")
    if version not in ("min", "max"):
        raise ValueError(f"version must be 'min' or 'max': {version!r}")
    if mixture not in MIXTURES:
        raise ValueError(f"mixture must be one of {MIXTURES}: {mixture!r}")
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}: {target!r}")
    if not set(splits) <= set(SPLITS):
        raise ValueError(f"splits must be among {SPLITS}: {splits}")
    if version == "min" and not skip_prep:
        logger.warning(
            "WHAMR! 'min' truncates every mixture to its shorter source: "
            "WSJ0 transcripts%s do not match the audio; use 'max' for WER.",
            " (filled from wsj0_folder)" if wsj0_folder else "",
        )
    options = make_options(
        "whamr",
        data_folder=Path(data_folder),
        sample_rate=sample_rate,
        version=version,
        mixture=mixture,
        target=target,
        splits=splits,
        wsj0_folder=Path(wsj0_folder) if wsj0_folder else None,
        normalize_text=normalize_text,
        alt_targets=alt_targets,
    )

    def build():
        root = check_folder(data_folder, "WHAMR! folder")
        base = root / f"wav{sample_rate // 1000}k" / version
        transcripts = None
        if wsj0_folder is not None:
            transcripts = read_wsj0_transcripts(wsj0_folder)
        columns = SEPARATION_ALT_COLUMNS if alt_targets else SEPARATION_COLUMNS
        tables = {}
        for split in splits:
            folder = check_folder(base / split, "WHAMR! split folder")
            rows = _split_rows(root, folder, transcripts)
            tables[split] = (columns, rows)
        return tables

    def _split_rows(root, folder, transcripts):
        other = TARGETS[1 - TARGETS.index(target)]
        subfolders = {
            "mix_wav": mixture,
            "s1_wav": f"s1_{target}",
            "s2_wav": f"s2_{target}",
            "noise_wav": "noise",
        }
        if alt_targets:
            subfolders.update(
                s1_alt_wav=f"s1_{other}", s2_alt_wav=f"s2_{other}"
            )
        for sub in subfolders.values():
            check_folder(folder / sub, "WHAMR! folder")
        mixtures = find_files(folder / mixture)
        if not mixtures:
            raise PreparationError(f"no .wav file under {folder / mixture}")
        rows = []
        for mix in mixtures:
            row = {"ID": mix.stem}
            for column, sub in subfolders.items():
                wav = folder / sub / mix.name
                context = "" if sub == mixture else f" (source of {mix})"
                info = audio_info(wav, sample_rate, context=context)
                if column == "mix_wav":
                    row["duration"] = info.duration
                row[column] = placeholder_path(wav, root)
            sources = parse_mixture_name(mix.stem)
            if sources is None and transcripts is not None:
                raise PreparationError(
                    "cannot read the two WSJ0 utterance ids from the file "
                    f"name (expected <utt1>_<level1>_<utt2>_<level2>.wav): "
                    f"{mix}"
                )
            for i, uttid in enumerate(sources or ("", ""), start=1):
                row[f"s{i}_spk"] = uttid[:3].lower()
                row[f"s{i}_wrd"] = ""
                if transcripts is None:
                    continue
                if uttid not in transcripts:
                    raise PreparationError(
                        f"no transcript in the .dot files of {wsj0_folder} "
                        f"for WSJ0 utterance {uttid} (source {i} of {mix})"
                    )
                raw, line = transcripts[uttid]
                row[f"s{i}_wrd"] = prepare_text(
                    raw, normalize_text, f"{line} (source {i} of {mix})"
                )
            rows.append(row)
        return rows

    return run_preparation(
        "whamr", save_folder, splits, options, build, skip_prep
    )
