"""The compact FLAC copy of a corpus (robust_brain.data.subset): what the
GPU check carries for the separator's pre-training."""

import csv

import pytest
import torch

from robust_brain.data.separation import DynamicMixingSet, SeparationSet
from robust_brain.data.subset import main, pack_subset


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_packed_miniwhamr_reads_as_the_original_at_8khz(tmp_path):
    """The copy holds the first rows at 8 kHz within the budget, and the
    recipe's data classes read it without resampling: the same mixtures
    as the 16 kHz original resampled, up to 16-bit rounding."""
    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    out = tmp_path / "mini8k"
    counts = pack_subset(
        [
            (f"{root}/cv_max.csv", 1, ["mix_wav", "s1_wav", "s2_wav"]),
            (f"{root}/tr_max.csv", None, None),
        ],
        out,
        sample_rate=8000,
        budget_mib=2.0,
    )
    size = sum(f.stat().st_size for f in out.rglob("*.flac"))
    assert size <= 2 * 2**20
    tr, cv = _rows(out / "tr_max.csv"), _rows(out / "cv_max.csv")
    assert counts == {"cv_max.csv": 1, "tr_max.csv": len(tr)}
    assert [r["ID"] for r in tr] == [
        r["ID"] for r in _rows(f"{root}/tr_max.csv")[: len(tr)]
    ]
    assert "noise_wav" not in cv[0] and "s1_wrd" in cv[0]
    # every file: the original resampled, up to 16-bit rounding
    copy = SeparationSet(out / "tr_max.csv", sample_rate=8000)
    orig = SeparationSet(
        f"{root}/tr_max.csv", data_root=root, sample_rate=8000, resample=True
    )
    for new, old in zip(copy.rows, orig.rows[: len(tr)], strict=True):
        for col in ("mix_wav", "s1_wav", "s2_alt_wav", "noise_wav"):
            a, b = copy.load(new[col]), orig.load(old[col])
            assert a.shape == b.shape
            assert torch.allclose(a, b, atol=1e-4), col
    # and the pre-training's WHAMR!-task mixtures are made from it
    dm = DynamicMixingSet(
        out / "tr_max.csv",
        4000,
        sample_rate=8000,
        reverb=True,
        snr_db=(0.0, 0.0),
    )
    item = dm[0]
    assert item["mix"].shape == (4000,) and item["sources"].shape == (4000, 2)
    valid = SeparationSet(out / "cv_max.csv", sample_rate=8000)
    assert valid[0]["sources"].shape[-1] == 2


def test_fixed_rows_that_do_not_fit_are_refused_and_nothing_is_written(
    tmp_path,
):
    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    with pytest.raises(ValueError, match="tr_max.csv: 2 rows need more"):
        pack_subset(
            [(f"{root}/tr_max.csv", 2, None)], tmp_path / "x", 8000, 0.01
        )
    with pytest.raises(ValueError, match="no_wav"):
        pack_subset(
            [(f"{root}/tr_max.csv", 1, ["no_wav"])], tmp_path / "x", 8000, 1
        )
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_command_line_takes_rows_and_columns(tmp_path, capsys):
    from tests.utils.recipes import RESOURCES

    root = RESOURCES["miniwhamr_tiny"]()
    main(
        [
            f"{root}/tt_max.csv:1:s1_wav,s2_wav",
            "--out",
            str(tmp_path / "c"),
            "--sample_rate",
            "8000",
            "--budget_mib",
            "1",
        ]
    )
    assert "tt_max.csv: 1 rows" in capsys.readouterr().out
    row = _rows(tmp_path / "c" / "tt_max.csv")
    assert len(row) == 1 and row[0]["s2_wav"].endswith(".flac")
    assert "mix_wav" not in row[0]
