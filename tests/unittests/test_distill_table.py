"""tools/distill_table.py: probe results over the seeds' folders."""

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "distill_table", ROOT / "tools" / "distill_table.py"
)
distill_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(distill_table)


def test_mean_and_spread_per_system_and_missing_run(tmp_path, capsys):
    for seed, plain, cdm in (("1", 80.0, 60.0), ("2", 90.0, 70.0)):
        d = tmp_path / seed / "eval"
        d.mkdir(parents=True)
        for system, wer in (("plain", plain), ("cdm2", cdm)):
            row = {"system": system, "params": 1.0, "teacher_params": 4.0}
            row.update(wer_clean=wer, acc_clean=100 - wer)
            (d / f"{system}.json").write_text(json.dumps(row))
    runs = [str(tmp_path / "1"), str(tmp_path / "2")]
    assert distill_table.main([*runs, "--groups", "clean"]) == 0
    out = capsys.readouterr().out
    assert "| plain distillation | 2 | 25.0 | 85.0 ± 7.1 | 15.0 ± 7.1 |" in out
    assert "| CDM-2 | 2 | 25.0 | 65.0 ± 7.1 | 35.0 ± 7.1 |" in out
    assert out.index("plain distillation") < out.index("CDM-2")
    assert distill_table.main([str(tmp_path / "3")]) == 1
    assert "3" in capsys.readouterr().err


def test_curves_average_the_training_logs(tmp_path, capsys):
    for seed, loss in (("1", 0.9), ("2", 0.7)):
        log = tmp_path / seed / "save" / "plain" / "train_log.txt"
        log.parent.mkdir(parents=True)
        log.write_text(
            f"epoch: 1 - train loss: 1.0, train loss_distill: {loss} - x\n"
            f"epoch: 2 - train loss: 1.0, train loss_distill: {loss / 2}\n"
        )
    runs = [str(tmp_path / "1"), str(tmp_path / "2")]
    assert distill_table.main([*runs, "--curves"]) == 0
    out = capsys.readouterr().out
    assert "| plain distillation | 0.800 | 0.400 |" in out


def test_curves_read_the_first_named_statistic_of_each_line(tmp_path, capsys):
    log = tmp_path / "1" / "save" / "cdm2" / "train_log.txt"
    log.parent.mkdir(parents=True)
    log.write_text(
        "epoch: 1 - train loss: 1.5, train loss_distill: 1.5, "
        "train distill_distorted: 0.9, train distill_clean: 0.6 - x\n"
    )
    plain = tmp_path / "1" / "save" / "plain" / "train_log.txt"
    plain.parent.mkdir(parents=True)
    plain.write_text("epoch: 1 - train loss: 0.7, train loss_distill: 0.7\n")
    run = str(tmp_path / "1")
    stat = "distill_distorted,loss_distill"
    assert distill_table.main([run, "--curves", "--stat", stat]) == 0
    out = capsys.readouterr().out
    assert "| plain distillation | 0.700 |" in out
    assert "| CDM-2 | 0.900 |" in out
    assert distill_table.main([run, "--curves"]) == 0
    assert "| CDM-2 | 1.500 |" in capsys.readouterr().out


def _probe(folder, **wers):
    folder.mkdir(parents=True)
    for system, wer in wers.items():
        row = {"system": system, "params": 1.0, "teacher_params": 4.0}
        row["wer_clean"] = wer
        (folder / f"{system}.json").write_text(json.dumps(row))


def test_several_probes_of_a_run_are_averaged_before_the_seeds(
    tmp_path, capsys
):
    _probe(tmp_path / "1" / "eval", plain=80.0)
    _probe(tmp_path / "1" / "eval_ps2", plain=90.0)
    _probe(tmp_path / "2" / "eval", plain=70.0)
    _probe(tmp_path / "2" / "eval_ps2", plain=70.0)
    runs = [str(tmp_path / "1"), str(tmp_path / "2")]
    args = [*runs, "--groups", "clean", "--metrics", "wer"]
    assert distill_table.main([*args, "--eval_dir", "eval,eval_ps2"]) == 0
    out = capsys.readouterr().out
    assert "2 probes each" in out
    assert "| plain distillation | 2 | 25.0 | 77.5 ± 10.6 |" in out
    # a run without one of the probe folders is refused, by name
    (tmp_path / "3" / "eval").mkdir(parents=True)
    code = distill_table.main([str(tmp_path / "3"), "--eval_dir", "eval,x"])
    assert code == 1
    assert "x" in capsys.readouterr().err


def test_versus_prints_each_seeds_paired_difference(tmp_path, capsys):
    _probe(tmp_path / "1986" / "eval", plain=80.0, cdm2=78.0)
    _probe(tmp_path / "1987" / "eval", plain=70.0, cdm2=73.0)
    runs = [str(tmp_path / "1986"), str(tmp_path / "1987")]
    args = [*runs, "--groups", "clean", "--metrics", "wer"]
    assert distill_table.main([*args, "--versus", "plain"]) == 0
    out = capsys.readouterr().out
    assert "| CDM-2 | 1986 | -2.0 |" in out
    assert "| CDM-2 | 1987 | +3.0 |" in out
    assert "| CDM-2 | mean | +0.5 |" in out
    assert "| plain" not in out  # the reference is not its own row
    try:
        distill_table.main([*args, "--versus", "teacher"])
    except FileNotFoundError as err:
        assert "teacher.json" in str(err) and "1986" in str(err)
    else:
        raise AssertionError("a missing reference must be named")
