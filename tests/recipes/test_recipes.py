"""Run every recipe listed in ``tests/recipes/*.csv`` in debug mode on CPU
(SpeechBrain's ``--debug --debug_persistently``: 2 batches, 2 epochs) and
check the files each run must produce. ``{placeholders}`` in the flags are
tiny session resources (:data:`tests.utils.recipes.RESOURCES`)."""

import os
import shlex
import subprocess
import sys

import pytest

from tests.utils.recipes import (
    ROOT,
    fill_placeholders,
    parse_checks,
    recipe_rows,
)

ROWS = recipe_rows()


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_recipe_runs_in_debug_mode(row, tmp_path):
    out = tmp_path / row["id"]
    cmd = [
        sys.executable,
        str(ROOT / row["Script_file"]),
        str(ROOT / row["Hparam_file"]),
        *shlex.split(fill_placeholders(row["test_debug_flags"])),
        "--device=cpu",
        "--debug",
        "--debug_persistently",
        f"--output_folder={out}",
    ]
    # PYTHONPATH: the recipe imports THIS checkout's robust_brain, whatever
    # checkout the shared venv's editable install points at
    env = dict(
        os.environ,
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        PYTHONPATH=os.pathsep.join(
            p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
        ),
    )
    proc = subprocess.run(
        cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    for rel in parse_checks(row["test_debug_checks"]).get("file_exists", []):
        assert (out / rel).exists(), f"{row['id']}: missing {rel}"
