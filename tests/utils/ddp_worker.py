"""One rank of the 2-process DDP test (run with torch.distributed.run).

Usage: python -m torch.distributed.run --nproc_per_node=2 \
    tests/utils/ddp_worker.py RULE OUT_DIR
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import speechbrain as sb  # noqa: E402
import torch  # noqa: E402

from tests.utils.toy import (  # noqa: E402
    ToyDualBrain,
    flat_params,
    loader,
    make_batches,
    make_brain,
)

N_BATCHES, ACCUM = 4, 2


def make_rule(name):
    """The rules exercised under DDP."""
    from robust_brain import surgery as S

    return {
        "d4am": lambda: S.D4AM(S.SRPRWeighter(window=1, beta=0.5)),
        "gr": lambda: S.GradientRemedy(k=1.0),
        "sum": S.Sum,
    }[name]()


def rank_batches(rank):
    """Different data on each rank."""
    return make_batches(N_BATCHES, seed=100 + rank)


if __name__ == "__main__":
    torch.set_num_threads(1)
    rule_name, out_dir = sys.argv[1], Path(sys.argv[2])
    run_opts = {
        "device": "cpu",
        "distributed_backend": "gloo",
        "grad_accumulation_factor": ACCUM,
    }
    sb.utils.distributed.ddp_init_group(run_opts)
    rank = int(os.environ["RANK"])
    brain = make_brain(
        ToyDualBrain, run_opts=run_opts, surgery_rule=make_rule(rule_name)
    )
    brain.fit(range(1), loader(rank_batches(rank)))
    torch.save(
        {"params": flat_params(brain), "stats": brain.surgery_stats},
        out_dir / f"rank{rank}.pt",
    )
    # Tear the gloo group down on every rank before exit: a rank leaving
    # with the group alive can abort in its background threads
    # ("terminate called without an active exception", SIGABRT).
    torch.distributed.barrier()
    torch.distributed.destroy_process_group()
