"""DDP: per-task gradients are averaged across ranks BEFORE the rule.

Two gloo processes train on different data; afterwards both ranks hold the
same parameters, equal to one process applying the rule to the globally
averaged task gradients, and different from averaging after combining
(what a fit_batch built on local ``autograd.grad`` results would do).
"""

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import speechbrain as sb
import torch

from robust_brain import surgery as S
from tests.utils.ddp_worker import ACCUM, make_rule, rank_batches
from tests.utils.toy import ToyDualBrain, make_brain

ROOT = Path(__file__).resolve().parents[2]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_ranks(rule, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={free_port()}",
        str(ROOT / "tests/utils/ddp_worker.py"),
        rule,
        str(tmp_path),
    ]
    proc = subprocess.run(
        cmd, env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return [torch.load(tmp_path / f"rank{r}.pt") for r in (0, 1)]


def reference(rule_name, average_first=True):
    """Single process: task gradients of both ranks' micro-batches,
    averaged, then the rule (or the rule per rank, then averaged)."""
    brain = make_brain(ToyDualBrain, surgery_rule=make_rule(rule_name))
    brain.on_fit_start()
    params, ns = brain._params, brain._n_shared
    data = [rank_batches(r) for r in (0, 1)]
    rule = make_rule(rule_name)
    rules = [make_rule(rule_name), make_rule(rule_name)]
    for start in range(0, len(data[0]), ACCUM):
        per_rank = []
        for r in (0, 1):
            acc = {"cls": 0, "reg": 0}
            for b in data[r][start : start + ACCUM]:
                out = brain.compute_forward(b, sb.Stage.TRAIN)
                losses = brain.compute_objectives(out, b, sb.Stage.TRAIN)
                for k, g in S.task_gradients(losses, params).items():
                    acc[k] = acc[k] + g / ACCUM
            per_rank.append(acc)

        def combine(rule, g):
            c, _ = rule(g["cls"][:ns], g["reg"][:ns], brain._segments)
            return torch.cat([c, g["cls"][ns:] + g["reg"][ns:]])

        if average_first:
            avg = {k: (per_rank[0][k] + per_rank[1][k]) / 2 for k in acc}
            g = combine(rule, avg)
        else:
            g = sum(combine(rules[r], per_rank[r]) for r in (0, 1)) / 2
        for p, chunk in zip(params, g.split(brain._numels), strict=True):
            p.grad = chunk.view_as(p).clone()
        torch.nn.utils.clip_grad_norm_(params, brain.max_grad_norm)
        brain.optimizer.step()
        brain.optimizer.zero_grad()
    return torch.cat(
        [p.detach().reshape(-1) for p in brain.modules.parameters()]
    )


@pytest.mark.parametrize("rule", ["d4am", "gr", "sum"])
def test_ddp_ranks_agree_and_match_global_average(rule, tmp_path):
    r0, r1 = run_ranks(rule, tmp_path)
    assert torch.equal(r0["params"], r1["params"])
    expected = reference(rule)
    torch.testing.assert_close(r0["params"], expected, atol=1e-6, rtol=0)
    if rule != "sum":
        # the nonlinear rules make "combine then average" a different
        # algorithm: this is what the test would catch
        wrong = reference(rule, average_first=False)
        assert (wrong - expected).abs().max() > 1e-4

        # gradient statistics are global (losses are each rank's own)
        def grad_stats(r):
            return {
                k: v for k, v in r["stats"].items() if not k.startswith("loss")
            }

        assert grad_stats(r0) == grad_stats(r1)
        assert "cos" in grad_stats(r0)
