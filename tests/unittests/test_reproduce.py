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
    cpu_overrides = reproduce.RECIPES["d4am"][-1]
    data, out = tmp_path / "data", tmp_path / "out"
    text = reproduce.recipe("d4am", data, out, "cpu", [1, 2])
    assert text == "| table seed 1 |\n\n| table seed 2 |"
    assert len(calls) == 2
    for cmd in calls:
        assert cmd[1].endswith("recipes/MiniNoisy/train_d4am.py")
        assert cmd[2].endswith("hparams/d4am_mini.yaml")
        assert f"--data_folder={tmp_path / 'data' / 'MiniNoisy'}" in cmd
        assert "--device=cpu" in cmd
        for flag in cpu_overrides:
            assert flag in cmd
    # a finished seed is read back, not trained again
    reproduce.recipe("d4am", data, out, "cpu", [1, 2])
    assert len(calls) == 2


def test_gpu_run_uses_the_recipe_defaults(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "run", fake_recipe(calls))
    reproduce.recipe("gr", tmp_path / "data", tmp_path / "out", "cuda", [3])
    assert "--device=cuda" in calls[0]
    assert not set(reproduce.RECIPES["gr"][-1]) & set(calls[0])


def test_default_seed_is_the_recipe_seed(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(reproduce.subprocess, "run", fake_recipe(calls))
    reproduce.recipe("distill", tmp_path / "data", tmp_path / "out", "cpu")
    assert "--seed=1986" in calls[0]
    assert (tmp_path / "out" / "distill" / "1986" / "results.md").exists()


def test_every_recipe_and_hparams_file_exists():
    for script, hparams, *_ in reproduce.RECIPES.values():
        assert (ROOT / script).exists() and (ROOT / hparams).exists()


def test_quick_job_is_the_default_and_resumes(tmp_path, monkeypatch):
    """Without --full: the small corpus, then D4AM from DeepFilterNet3
    through the Whisper proxy with the quick overrides; a finished run is
    read back."""
    calls = []

    def run(cmd, cwd=None, check=False):
        if "robust_brain.data.generate" in cmd:
            calls.append(cmd)
            return subprocess.CompletedProcess(cmd, 0)
        return fake_recipe(calls)(cmd, cwd, check)

    monkeypatch.setattr(reproduce.subprocess, "run", run)
    out, data = tmp_path / "out", tmp_path / "data"
    reproduce.main(["--out", str(out), "--data", str(data), "--device=cpu"])
    generate, d4am = calls
    assert generate[generate.index("--size") + 1] == "0.3"
    assert generate[generate.index("--corpus") + 1] == "mininoisy"
    assert d4am[2].endswith(reproduce.RECIPES[reproduce.QUICK_RECIPE][1])
    for flag in reproduce.QUICK_OVERRIDES:
        assert flag in d4am
    assert (out / "report.md").read_text() == "| table seed 1986 |\n"
    reproduce.main(["--out", str(out), "--data", str(data), "--device=cpu"])
    assert len(calls) == 3  # the corpus step only (it skips itself)
