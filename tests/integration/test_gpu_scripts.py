"""The prepared GPU run's separator step, at toy size on the CPU: the
script the device runs must keep working though CI never has a GPU."""

import os
import subprocess
import sys
from pathlib import Path

from robust_brain.data.subset import pack_subset

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_separator_dry_run_writes_a_loadable_separator(tmp_path):
    """tools/gpu_separator.sh on a packed tiny MiniWHAMR: the recipe's
    pretrain stage without an ASR encoder, the separator folder written
    (what --pretrained_separator takes back) and the WHAMR! table."""
    from tests.utils.recipes import RESOURCES

    src = RESOURCES["miniwhamr_tiny"]()
    data = tmp_path / "data8k"
    pack_subset(
        [
            (f"{src}/cv_max.csv", 2, ["mix_wav", "s1_wav", "s2_wav"]),
            (f"{src}/tt_max.csv", 2, None),
            (f"{src}/tr_max.csv", None, None),
        ],
        data,
        sample_rate=8000,
        budget_mib=4,
    )
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "PYTHON": sys.executable,
        "SEPARATOR_DATA": str(data),
        "SEPARATOR_PRE_EPOCHS": "2",
        "SEPARATOR_SECONDS": "600",
        "WORK": str(tmp_path / "work"),
    }
    run = subprocess.run(
        ["bash", "tools/gpu_separator.sh"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "clean dynamic mixing 1, WHAMR! task 2" in run.stdout
    work = tmp_path / "work" / "separator"
    for name in ("encoder", "masknet", "decoder"):
        assert (work / "weights" / f"{name}.ckpt").is_file()
    # the SpeechBrain way back: two streams of a mixture
    import torch

    from robust_brain.inference import Separator

    separator = Separator.from_hparams(
        source=str(work / "weights"), savedir=str(tmp_path / "load")
    )
    streams = separator.separate_batch(torch.randn(1, 8000))
    assert streams.shape[0] == 1 and streams.shape[-1] == 2
    table = (work / "conditions.md").read_text()
    assert "| anechoic |" in table and "| reverb+noise |" in table
    assert "epoch: 2" in (work / "pretrain_log.txt").read_text()
