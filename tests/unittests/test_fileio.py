"""Files written through ``atomic_path`` are complete or absent."""

import os
import stat

import pytest
import torch

from robust_brain.fileio import atomic_path, write_text_atomic
from robust_brain.inference import write_pretrained


def test_failed_write_keeps_the_old_file_and_no_temporary(tmp_path):
    dst = tmp_path / "manifest.csv"
    write_text_atomic(dst, "old\n")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(dst) as tmp:
            tmp.write_text("half a ")
            raise RuntimeError("disk full")
    assert dst.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.csv"]


def test_the_destination_appears_only_when_the_block_ends(tmp_path):
    dst = tmp_path / "new" / "summary.json"
    with atomic_path(dst) as tmp:
        tmp.write_text("{}")
        assert not dst.exists()
        assert tmp.parent == dst.parent and tmp.name.startswith(".")
    assert dst.read_text() == "{}"


def test_two_writers_get_different_temporaries(tmp_path):
    dst = tmp_path / "a.txt"
    with atomic_path(dst) as one, atomic_path(dst) as two:
        assert one != two
        one.write_text("one")
        two.write_text("two")
    assert dst.read_text() == "one"  # the outer block ended last


def test_the_file_gets_the_usual_permissions(tmp_path):
    # a temporary made by mkstemp is 0600 and would stay so after the
    # rename; files here must be readable as any plain open() makes them
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    atomic = write_text_atomic(tmp_path / "atomic.txt", "x")
    assert stat.S_IMODE(os.stat(atomic).st_mode) == stat.S_IMODE(
        os.stat(plain).st_mode
    )


def test_write_pretrained_renames_hyperparams_last(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def record(src, dst):
        seen.append(os.path.basename(dst))
        real(src, dst)

    monkeypatch.setattr(os, "replace", record)
    write_pretrained(
        tmp_path,
        torch.nn.Linear(2, 2),
        "enhancer",
        build="enhancer: !new:torch.nn.Linear [2, 2]\n",
        interface="Pretrained",
        description="test",
        settings={},
    )
    assert seen == ["enhancer.ckpt", "hyperparams.yaml"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
