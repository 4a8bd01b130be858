"""Shared preparation helpers: audio/transcript validation, skip, writing."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from robust_brain.data.manifest import AUDIO_COLUMNS, read_manifest
from robust_brain.data.prepare import common
from robust_brain.data.prepare.common import (
    PreparationError,
    audio_info,
    clean_wsj_markup,
    find_files,
    make_options,
    normalize_words,
    options_path,
    prepare_text,
    read_dot_file,
    run_preparation,
    skip,
)


def _wav(path, frames=1600, sr=16000, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    shape = (frames, channels) if channels > 1 else frames
    sf.write(path, np.zeros(shape), sr)
    return path


def test_audio_info_accepts_and_measures(tmp_path):
    info = audio_info(_wav(tmp_path / "a.flac", 4000), 16000, 1)
    assert (info.frames, info.sample_rate, info.channels) == (4000, 16000, 1)
    assert info.duration == 0.25


@pytest.mark.parametrize(
    "make,message",
    [
        (lambda p: p, "missing audio file"),
        (lambda p: p.write_bytes(os.urandom(64)) and p, "corrupt"),
        (lambda p: p.write_bytes(b"") or p, "corrupt"),
        (lambda p: _wav(p, frames=0), "empty or corrupt"),
        (lambda p: _wav(p, sr=8000), "wrong sample rate 8000 Hz"),
        (lambda p: _wav(p, channels=2), "wrong channel count 2"),
    ],
)
def test_audio_info_names_the_file(tmp_path, make, message):
    path = tmp_path / "x.wav"
    make(path)
    with pytest.raises(PreparationError, match=message) as info:
        audio_info(path, 16000, 1, context=" (listed in y.txt)")
    assert str(path) in str(info.value)
    assert str(info.value).endswith(" (listed in y.txt)")


def test_find_files_follows_links_and_skips_hidden(tmp_path):
    _wav(tmp_path / "real/a.wav")
    _wav(tmp_path / "real/._a.wav")
    _wav(tmp_path / "real/.cache/b.wav")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus/linked").symlink_to(tmp_path / "real")
    found = find_files(tmp_path / "corpus")
    assert found == [tmp_path / "corpus/linked/a.wav"]


def test_text_normalization():
    raw = r"[loud_breath] <And> the I\. B\. M\. deal ~ . *fell* [door_slam>]"
    assert clean_wsj_markup(raw) == "And the I. B. M. deal fell"
    assert normalize_words(clean_wsj_markup(raw)) == "AND THE I B M DEAL FELL"
    assert (
        normalize_words("rock-'n'-roll, isn't it?") == "ROCK 'N' ROLL ISN'T IT"
    )
    with pytest.raises(PreparationError, match="empty transcript: here"):
        prepare_text("[noise] ~", True, "here")
    assert prepare_text(" a  b ", False, "here") == "a b"


def test_read_dot_file(tmp_path):
    dot = tmp_path / "x.dot"
    dot.write_text(
        "First one (f01_a_bus)\n\n  (f01_b_bus) \nFirst one (f01_a_bus)\n"
    )
    entries = read_dot_file(dot)
    assert entries == {
        "F01_A_BUS": ("First one ", f"{dot}, line 1"),
        "F01_B_BUS": ("  ", f"{dot}, line 3"),
    }
    dot.write_text("ok (a)\nbroken line\n")
    with pytest.raises(PreparationError, match=r"x\.dot, line 2"):
        read_dot_file(dot)


def test_make_options_round_trips_json(tmp_path):
    opts = make_options(
        "c", data_folder=tmp_path, splits=("a", "b"), extra={"k": (1,)}
    )
    assert opts == json.loads(json.dumps(opts))
    assert opts["data_folder"] == str(tmp_path)
    assert opts["splits"] == ["a", "b"]


def _prepare(tmp_path, rows_by_name, options):
    """run_preparation on ready-made rows (no corpus needed)."""

    def build():
        return {n: (AUDIO_COLUMNS, r) for n, r in rows_by_name.items()}

    return run_preparation(
        "toy", tmp_path / "save", list(rows_by_name), options, build
    )


ROW = {"ID": "a", "duration": 1.0, "wav": "$data_root/a.wav"}


def test_skip_needs_manifest_and_identical_options(tmp_path):
    opts = make_options("toy", x=1)
    paths = _prepare(tmp_path, {"n": [ROW]}, opts)
    assert skip(paths.values(), opts)
    assert not skip(paths.values(), make_options("toy", x=2))
    options_path(paths["n"]).write_text("{not json")
    assert not skip(paths.values(), opts)
    options_path(paths["n"]).unlink()
    assert not skip(paths.values(), opts)
    _prepare(tmp_path, {"n": [ROW]}, opts)
    paths["n"].unlink()
    assert not skip(paths.values(), opts)


def test_duplicate_ids_write_nothing(tmp_path):
    with pytest.raises(PreparationError, match="duplicate ID 'a' in toy_n"):
        _prepare(tmp_path, {"n": [ROW, ROW]}, make_options("toy"))
    assert not (tmp_path / "save").exists()


def test_interrupted_write_is_redone(tmp_path, monkeypatch):
    old = make_options("toy", v=1)
    paths = _prepare(tmp_path, {"m": [ROW], "n": [ROW]}, old)
    real_write = common.write_csv_atomic
    calls = []

    def flaky(path, rows, columns):
        calls.append(path)
        if len(calls) == 2:
            raise OSError("disk full")
        return real_write(path, rows, columns)

    monkeypatch.setattr(common, "write_csv_atomic", flaky)
    new = make_options("toy", v=2)
    with pytest.raises(OSError, match="disk full"):
        _prepare(tmp_path, {"m": [ROW], "n": [ROW]}, new)
    # "n" kept its old content but lost its options: not trusted any more
    assert read_manifest(paths["n"], AUDIO_COLUMNS)
    assert not options_path(paths["n"]).exists()
    assert not skip(paths.values(), new) and not skip(paths.values(), old)
    monkeypatch.setattr(common, "write_csv_atomic", real_write)
    _prepare(tmp_path, {"m": [ROW], "n": [ROW]}, new)
    assert skip(paths.values(), new)
    assert sorted(p.name for p in Path(tmp_path / "save").iterdir()) == [
        "toy_m.csv",
        "toy_m.opts.json",
        "toy_n.csv",
        "toy_n.opts.json",
    ]
