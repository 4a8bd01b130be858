"""tools/seed_table.py: a table over the seeds' evaluation folders."""

import csv
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "seed_table", ROOT / "tools" / "seed_table.py"
)
seed_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(seed_table)

COLUMNS = ["ID", "system", "recogniser", "condition", "sub", "del", "ins"]


def write_run(folder, errors, part="", eval_dir="eval"):
    path = folder / eval_dir / "test" / part / "utterances.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS + ["n_ref"])
        w.writeheader()
        for (system, rec, cond), e in errors.items():
            w.writerow(
                dict(
                    ID="u",
                    system=system,
                    recogniser=rec,
                    condition=cond,
                    sub=e,
                    ins=0,
                    n_ref=10,
                    **{"del": 0},
                )
            )


def test_mean_and_spread_over_seeds_for_one_judge(tmp_path, capsys):
    """Each seed's pooled WER per group, averaged; other judges ignored."""
    for seed, d4am in (("1", 2), ("2", 4)):
        write_run(
            tmp_path / seed,
            {
                ("NOIS", "base", "pink_0dB"): 5,
                ("D4AM", "base", "pink_0dB"): d4am,
                ("D4AM", "base", "clean"): 1,
                ("D4AM", "tiny", "pink_0dB"): 9,
            },
        )
    runs = [str(tmp_path / "1"), str(tmp_path / "2")]
    assert (
        seed_table.main(
            [
                *runs,
                "--recogniser",
                "base",
                "--groups",
                "low=pink_0dB;clean=clean",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "| D4AM | 2 | 30.0 ± 14.1 | 10.0 ± 0.0 | -40.0 ± 28.3 |" in out
    assert "| NOIS | 2 | 50.0 ± 0.0 | – |" in out


def test_another_evaluation_folder_of_the_same_runs(tmp_path, capsys):
    """--eval_dir reads a re-evaluation next to the runs' first one."""
    write_run(tmp_path / "1", {("NOIS", "base", "pink_0dB"): 5})
    write_run(
        tmp_path / "1", {("NOIS", "base", "pink_0dB"): 2}, eval_dir="again"
    )
    argv = [str(tmp_path / "1"), "--recogniser", "base"]
    argv += ["--groups", "low=pink_0dB"]
    assert seed_table.main(argv) == 0
    assert "| NOIS | 1 | 50.0 ± 0.0 |" in capsys.readouterr().out
    assert seed_table.main([*argv, "--eval_dir", "again"]) == 0
    assert "| NOIS | 1 | 20.0 ± 0.0 |" in capsys.readouterr().out


def test_missing_folder_and_bad_groups_are_named(tmp_path, capsys):
    assert seed_table.main([str(tmp_path / "nope")]) == 1
    assert "nope" in capsys.readouterr().err
    with pytest.raises(SystemExit, match="'low' is not label=cond"):
        seed_table.parse_groups("low")


def test_joint_systems_own_decodings_relative_to_mtl(tmp_path, capsys):
    """GR: ``own-greedy:GR`` rows of the noisy input are system GR."""
    for seed, gr in (("1", 4), ("2", 2)):
        write_run(
            tmp_path / seed,
            {
                ("NOIS", "own-greedy:MTL", "pink_0dB"): 5,
                ("NOIS", "own-greedy:GR", "pink_0dB"): gr,
            },
            part="own",
        )
    runs = [str(tmp_path / "1"), str(tmp_path / "2")]
    argv = [*runs, "--part", "own", "--recogniser", "own-greedy"]
    argv += ["--reference", "MTL", "--groups", "low=pink_0dB"]
    assert seed_table.main(argv) == 0
    out = capsys.readouterr().out
    assert "| GR | 2 | 30.0 ± 14.1 | -40.0 ± 28.3 |" in out
    assert "| MTL | 2 | 50.0 ± 0.0 | 0.0 ± 0.0 |" in out


def test_cap_bounds_a_repetition_loop(tmp_path, capsys):
    """A looping hypothesis is cut to ceil(cap * duration) + 3 words."""
    path = tmp_path / "1" / "eval" / "test" / "utterances.csv"
    path.parent.mkdir(parents=True)
    loop = " ".join(["the"] * 40)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS + ["n_ref", "ref_norm", "hyp_norm"])
        w.writeheader()
        w.writerow(dict(ID="u", system="A", recogniser="r",
                        condition="pink_0dB", sub=0, ins=40, n_ref=2,
                        ref_norm="a b", hyp_norm="a b " + loop,
                        **{"del": 0}))  # fmt: skip
    manifest = tmp_path / "m.csv"
    manifest.write_text("ID,duration\nu,1.0\n")
    argv = [str(tmp_path / "1"), "--recogniser", "r", "--reference", "A"]
    argv += ["--groups", "low=pink_0dB"]
    assert seed_table.main(argv) == 0
    assert "| A | 1 | 2000.0 ± 0.0 |" in capsys.readouterr().out
    # 1 s at 2 words/s: 2 + 3 = 5 words kept, 3 of them inserted
    argv += ["--cap", "2", "--manifest", str(manifest)]
    assert seed_table.main(argv) == 0
    assert "| A | 1 | 150.0 ± 0.0 |" in capsys.readouterr().out


def test_voices_keep_one_family_of_speakers(tmp_path, capsys):
    """--voices pools only the utterances of the named voice families."""
    path = tmp_path / "1" / "eval" / "test" / "utterances.csv"
    path.parent.mkdir(parents=True)
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, [*COLUMNS, "n_ref", "spk_id"])
        w.writeheader()
        for utt, spk, sub in (("a", "piper-joe", 1), ("b", "espeak-m1", 9)):
            w.writerow(
                {"ID": utt, "system": "NOIS", "recogniser": "base",
                 "condition": "pink_0dB", "sub": sub, "del": 0, "ins": 0,
                 "n_ref": 10, "spk_id": spk}
            )  # fmt: skip
    argv = [str(tmp_path / "1"), "--recogniser", "base"]
    argv += ["--groups", "low=pink_0dB"]
    assert seed_table.main(argv) == 0
    assert "| NOIS | 1 | 50.0 ± 0.0 |" in capsys.readouterr().out
    assert seed_table.main([*argv, "--voices", "piper"]) == 0
    assert "| NOIS | 1 | 10.0 ± 0.0 |" in capsys.readouterr().out
    write_run(tmp_path / "2", {("NOIS", "base", "pink_0dB"): 5})
    with pytest.raises(SystemExit, match="no spk_id column"):
        seed_table.main([str(tmp_path / "2"), "--voices", "piper"])
