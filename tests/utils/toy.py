"""A tiny two-loss problem shaped like D4AM / GR, for engine tests.

``enhancer`` (shared, trainable) maps a noisy signal to an estimate; the
main loss is a cross-entropy through a FROZEN ``proxy`` plus a trainable
``head`` (reached by the main loss only); the auxiliary loss is an L1
regression to the clean signal.
"""

import speechbrain as sb
import torch
import torch.nn.functional as F

from robust_brain.brain import DualLossBrain

T = 64
N_CLASSES = 3


def make_modules(seed=0):
    """Enhancer + head (trainable) and a frozen proxy, seeded."""
    torch.manual_seed(seed)
    enhancer = torch.nn.Sequential(
        torch.nn.Conv1d(1, 4, 5, padding=2),
        torch.nn.Tanh(),
        torch.nn.Conv1d(4, 1, 5, padding=2),
    )
    proxy = torch.nn.Sequential(
        torch.nn.Conv1d(1, 8, 16, stride=8), torch.nn.ReLU()
    )
    proxy.requires_grad_(False).eval()
    head = torch.nn.Linear(8, N_CLASSES)
    return enhancer, head, proxy


def make_batches(n_batches, batch_size=4, seed=1):
    """List of (noisy, clean, label) batches."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_batches):
        clean = torch.randn(batch_size, 1, T, generator=g)
        noisy = clean + 0.5 * torch.randn(batch_size, 1, T, generator=g)
        label = torch.randint(0, N_CLASSES, (batch_size,), generator=g)
        out.append((noisy, clean, label))
    return out


def losses_of(brain, enh, batch):
    noisy, clean, label = batch
    feats = brain.hparams.proxy(enh).mean(dim=-1)
    logits = brain.modules.head(feats)
    return {
        "cls": F.cross_entropy(logits.float(), label),
        "reg": F.l1_loss(enh.float(), clean),
    }


class ToyDualBrain(DualLossBrain):
    """Two losses through the engine."""

    loss_names = ("cls", "reg")

    def compute_forward(self, batch, stage):
        noisy = batch[0].to(self.device)
        return self.modules.enhancer(noisy)

    def compute_objectives(self, enh, batch, stage):
        batch = [b.to(self.device) for b in batch]
        losses = losses_of(self, enh, batch)
        only = getattr(self.hparams, "only", None)
        if only:
            losses = {only: losses[only]}
        return losses


class ToySumBrain(sb.Brain):
    """SpeechBrain's default fit_batch on the summed loss (reference)."""

    def compute_forward(self, batch, stage):
        return self.modules.enhancer(batch[0].to(self.device))

    def compute_objectives(self, enh, batch, stage):
        batch = [b.to(self.device) for b in batch]
        return sum(losses_of(self, enh, batch).values())


def loader(batches):
    """A DataLoader yielding exactly ``batches`` in order."""
    return torch.utils.data.DataLoader(batches, batch_size=None, shuffle=False)


def make_brain(cls, seed=0, run_opts=None, lr=0.05, opt="sgd", **hparams):
    """Build a toy brain with fresh seeded modules."""
    checkpointer = hparams.pop("checkpointer", None)
    enhancer, head, proxy = make_modules(seed)
    if opt == "sgd":

        def opt_class(params):
            return torch.optim.SGD(params, lr=lr)
    else:

        def opt_class(params):
            return torch.optim.Adam(params, lr=lr)

    return cls(
        modules={"enhancer": enhancer, "head": head},
        opt_class=opt_class,
        hparams={"proxy": proxy, **hparams},
        run_opts={"device": "cpu", **(run_opts or {})},
        checkpointer=checkpointer,
    )


def flat_params(brain):
    return torch.cat(
        [p.detach().reshape(-1) for p in brain.modules.parameters()]
    )
