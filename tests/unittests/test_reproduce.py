"""The main job's glue (tools/reproduce.py): commands, resume, tables."""

import importlib.util
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location(
    "reproduce", ROOT / "tools" / "reproduce.py"
)
reproduce = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reproduce)


def fake_recipe(calls):
    """Records the command and writes the results file like the recipe."""

    def run(cmd, cwd=None, check=False):
        calls.append(cmd)
        out = next(a for a in cmd if a.startswith("--output_folder="))
        folder = Path(out.split("=", 1)[1])
        folder.mkdir(parents=True)
        seed = next(a for a in cmd if a.startswith("--seed=")).split("=")[1]
        (folder / "results.md").write_text(f"| table seed {seed} |\n")
        return subprocess.CompletedProcess(cmd, 0)

    return run


def test_d4am_cpu_run_uses_the_reduced_overrides_and_resumes(
    tmp_path, monkeypatch
):
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "run", fake_recipe(calls))
    text = reproduce.d4am(tmp_path / "data", tmp_path / "out", "cpu", [1, 2])
    assert text == "| table seed 1 |\n\n| table seed 2 |"
    assert len(calls) == 2
    for cmd in calls:
        assert cmd[1].endswith("recipes/MiniNoisy/train_d4am.py")
        assert cmd[2].endswith("hparams/d4am_mini.yaml")
        assert f"--data_folder={tmp_path / 'data' / 'MiniNoisy'}" in cmd
        assert "--device=cpu" in cmd
        for flag in reproduce.D4AM_CPU_OVERRIDES:
            assert flag in cmd
    # a finished seed is read back, not trained again
    reproduce.d4am(tmp_path / "data", tmp_path / "out", "cpu", [1, 2])
    assert len(calls) == 2


def test_d4am_gpu_run_uses_the_recipe_defaults(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "run", fake_recipe(calls))
    reproduce.d4am(tmp_path / "data", tmp_path / "out", "cuda", [3])
    assert "--device=cuda" in calls[0]
    assert not set(reproduce.D4AM_CPU_OVERRIDES) & set(calls[0])
