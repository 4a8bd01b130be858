#!/usr/bin/env python3
"""Template recipe: a front-end trained for a FROZEN recogniser with two
losses whose gradients are combined by a surgery rule.

A miniature of D4AM on synthetic tone-words (``robust_brain.toy``): copy it
to start a new method. To run it::

    python recipes/Template/train_dual_loss.py hparams/template_dual_loss.yaml
    python recipes/Template/train_dual_loss.py \
        hparams/template_dual_loss.yaml --rule_name=gr

Stage 1 trains the proxy and an unseen classifier on clean signals
(checkpointed); stage 2 trains the enhancer with ``DualLossBrain``; the
test accuracy of both classifiers on noisy and enhanced signals is printed
and written to ``results_file``.

Authors
 * robust_brain developers 2026
"""

import json
import logging
import os
import sys

import speechbrain as sb
import torch
import torch.nn.functional as F
from hyperpyyaml import load_hyperpyyaml

from robust_brain.brain import DualLossBrain
from robust_brain.toy import tone_words

logger = logging.getLogger(__name__)


class ClassifierBrain(sb.Brain):
    """Stage 1: a classifier of CLEAN signals."""

    def compute_forward(self, batch, stage):
        clean = batch[0].to(self.device)
        return self.modules.classifier(clean)

    def compute_objectives(self, logits, batch, stage):
        return F.cross_entropy(logits, batch[2].to(self.device))


class EnhanceBrain(DualLossBrain):
    """Stage 2: main loss through the frozen proxy, auxiliary L1 to clean."""

    loss_names = ("cls", "reg")

    def frozen_models(self):
        # kept out of `modules` (no optimizer, no DDP wrap): the engine
        # moves it to the device and re-applies requires_grad_(False) +
        # eval() at every stage start; gradients still reach its input
        return [self.hparams.proxy]

    def compute_forward(self, batch, stage):
        return self.modules.enhancer(batch[1].to(self.device))

    def compute_objectives(self, enhanced, batch, stage):
        clean, _, labels = (b.to(self.device) for b in batch)
        logits = self.hparams.proxy(enhanced)
        return {
            "cls": F.cross_entropy(logits, labels),
            "reg": F.l1_loss(enhanced, clean),
        }

    def on_stage_end(self, stage, stage_loss, epoch=None):
        if stage == sb.Stage.TRAIN:
            self.train_stats = {"loss": stage_loss, **self.surgery_summary()}
        elif stage == sb.Stage.VALID:
            self.hparams.train_logger.log_stats(
                stats_meta={"epoch": epoch},
                train_stats=self.train_stats,
                valid_stats={"loss": stage_loss},
            )
            self.checkpointer.save_and_keep_only(
                meta={"loss": stage_loss}, min_keys=["loss"]
            )


def make_datasets(hparams):
    """Train/valid/test TensorDatasets of (clean, noisy, label)."""
    kw = {
        "length": hparams["signal_length"],
        "n_classes": hparams["n_classes"],
        "noise_std": hparams["noise_std"],
    }
    sizes = {
        "train": hparams["n_train"],
        "valid": hparams["n_valid"],
        "test": hparams["n_test"],
    }
    return {
        split: torch.utils.data.TensorDataset(
            *tone_words(n, seed=hparams["data_seed"] + i, **kw)
        )
        for i, (split, n) in enumerate(sizes.items())
    }


def train_classifier(name, hparams, run_opts, data):
    """Train (or resume) one stage-1 classifier."""
    model = hparams[name]
    folder = os.path.join(hparams["save_folder"], name)
    counter = sb.utils.epoch_loop.EpochCounter(hparams["classifier_epochs"])
    checkpointer = sb.utils.checkpoints.Checkpointer(
        folder, recoverables={"model": model, "counter": counter}
    )
    brain = ClassifierBrain(
        modules={"classifier": model},
        opt_class=lambda p: torch.optim.Adam(p, lr=hparams["classifier_lr"]),
        run_opts=run_opts,
        checkpointer=checkpointer,
    )
    loader = {"batch_size": hparams["batch_size"], "shuffle": True}
    brain.fit(counter, data["train"], train_loader_kwargs=loader)
    checkpointer.save_and_keep_only(num_to_keep=1)
    model.requires_grad_(False).eval()


@torch.no_grad()
def accuracy(classifier, signals, labels, batch_size=256):
    """Percentage of correctly classified signals."""
    device = next(classifier.parameters()).device
    hits = 0
    for i in range(0, len(signals), batch_size):
        x = signals[i : i + batch_size].to(device)
        pred = classifier(x).argmax(-1).cpu()
        hits += int((pred == labels[i : i + batch_size]).sum())
    return 100.0 * hits / len(signals)


@torch.no_grad()
def enhance(enhancer, noisy, device, batch_size=256):
    """Run the enhancer over all test signals."""
    enhancer.eval()
    outs = [
        enhancer(noisy[i : i + batch_size].to(device)).cpu()
        for i in range(0, len(noisy), batch_size)
    ]
    return torch.cat(outs)


if __name__ == "__main__":
    hparams_file, run_opts, overrides = sb.parse_arguments(sys.argv[1:])
    sb.utils.distributed.ddp_init_group(run_opts)
    with open(hparams_file, encoding="utf-8") as fin:
        hparams = load_hyperpyyaml(fin, overrides)
    sb.create_experiment_directory(
        experiment_directory=hparams["output_folder"],
        hyperparams_to_save=hparams_file,
        overrides=overrides,
    )
    data = make_datasets(hparams)  # synthetic: no preparation step

    for name in ("proxy", "unseen"):
        train_classifier(name, hparams, run_opts, data)

    brain = EnhanceBrain(
        modules=hparams["modules"],
        opt_class=hparams["opt_class"],
        hparams=hparams,
        run_opts=run_opts,
        checkpointer=hparams["checkpointer"],
    )
    loader = {"batch_size": hparams["batch_size"], "shuffle": True}
    brain.fit(
        hparams["epoch_counter"],
        data["train"],
        data["valid"],
        train_loader_kwargs=loader,
        valid_loader_kwargs={"batch_size": hparams["batch_size"]},
    )
    brain.checkpointer.recover_if_possible(min_key="loss")

    clean, noisy, labels = data["test"].tensors
    enhanced = enhance(brain.modules.enhancer, noisy, brain.device)
    results = {"rule": hparams["rule_name"]}
    for name in ("proxy", "unseen"):
        for system, x in (("NOIS", noisy), ("ENH", enhanced), ("CLEAN", clean)):
            results[f"{name}_{system}"] = accuracy(hparams[name], x, labels)
    if sb.utils.distributed.if_main_process():
        with open(hparams["results_file"], "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        print("| classifier | NOIS | ENH | CLEAN |\n|---|---|---|---|")
        for name in ("proxy", "unseen"):
            row = [f"{results[f'{name}_{s}']:.1f}" for s in ("NOIS", "ENH")]
            row.append(f"{results[f'{name}_CLEAN']:.1f}")
            print(f"| {name} | " + " | ".join(row) + " |")
