"""DualLossBrain: equivalence with SpeechBrain, AMP, accumulation,
non-finite handling, clipping, logging, checkpoint/resume."""

import csv
import math

import pytest
import speechbrain as sb
import torch

from robust_brain import surgery as S
from tests.utils.toy import (
    ToyDualBrain,
    ToySumBrain,
    flat_params,
    loader,
    make_batches,
    make_brain,
)


def fit(brain, batches, epochs=1):
    brain.fit(range(epochs), loader(batches))
    return flat_params(brain)


@pytest.mark.parametrize(
    "precision, per_task, tol",
    [
        ("fp32", False, 1e-6),
        ("bf16", False, 1e-6),
        # the per-task path (forced by log_task_gradients) backpropagates
        # each loss separately: exact in fp32; under bf16 autocast the
        # separate bf16 backward passes round differently from one backward
        # of the sum (measured ~1e-4 after 6 Adam steps at lr 1e-2)
        ("fp32", True, 1e-6),
        ("bf16", True, 5e-4),
    ],
)
@pytest.mark.parametrize("accum", [1, 2])
def test_sum_rule_equals_speechbrain_default_fit_batch(
    precision, per_task, tol, accum
):
    batches = make_batches(6)
    opts = {"precision": precision, "grad_accumulation_factor": accum}
    ref = make_brain(ToySumBrain, run_opts=opts, opt="adam", lr=1e-2)
    ours = make_brain(
        ToyDualBrain,
        run_opts=opts,
        opt="adam",
        lr=1e-2,
        log_task_gradients=per_task,
    )
    before = flat_params(ours).clone()
    p_ref, p_ours = fit(ref, batches), fit(ours, batches)
    assert ours.optimizer_step == ref.optimizer_step == 6 // accum
    assert (p_ours - before).abs().max() > 1e-3  # it did train
    assert (p_ours - p_ref).abs().max().item() <= tol
    assert ("gnorm_cls" in ours.surgery_stats) == per_task


def test_accumulation_combines_once_per_step_not_per_micro_batch():
    """D4AM with accumulation 2 == D4AM applied to the mean gradient of the
    two micro-batches (surgery on each micro-batch would differ)."""
    batches = make_batches(2)
    brain = make_brain(
        ToyDualBrain,
        run_opts={"grad_accumulation_factor": 2, "max_grad_norm": 0.0},
        surgery_rule=S.D4AM(S.SRPRWeighter(init=0.5)),
    )
    ref = make_brain(ToyDualBrain, surgery_rule=S.Sum())
    ref.on_fit_start()
    params = ref._params
    g = {"cls": 0, "reg": 0}
    for b in batches:
        out = ref.compute_forward(b, sb.Stage.TRAIN)
        grads = S.task_gradients(
            ref.compute_objectives(out, b, sb.Stage.TRAIN), params
        )
        for k in g:
            g[k] = g[k] + grads[k] / 2
    ns = ref._n_shared
    combined, _ = S.D4AM(S.SRPRWeighter(init=0.5))(g["cls"][:ns], g["reg"][:ns])
    expected = torch.cat([combined, g["cls"][ns:] + g["reg"][ns:]])
    before = torch.cat([p.detach().reshape(-1) for p in params])
    after = fit(brain, batches)
    torch.testing.assert_close(after, before - 0.05 * expected)
    assert brain.optimizer_step == 1
    stats = brain.surgery_stats
    assert stats["alpha_srpr"] == 0.5
    assert stats["gnorm_cls"] == pytest.approx(g["cls"][:ns].norm().item())
    cos = torch.nn.functional.cosine_similarity(
        g["cls"][:ns], g["reg"][:ns], dim=0
    )
    assert stats["cos"] == pytest.approx(cos.item(), abs=1e-6)


def test_grid_equals_plain_weighted_sum_backward():
    batches = make_batches(4)
    ours = make_brain(ToyDualBrain, surgery_rule=S.Weighted(1.0, 0.3))

    class WeightedSum(ToySumBrain):
        def compute_objectives(self, enh, batch, stage):
            from tests.utils.toy import losses_of

            batch = [b.to(self.device) for b in batch]
            losses = losses_of(self, enh, batch)
            return losses["cls"] + 0.3 * losses["reg"]

    ref = make_brain(WeightedSum)
    assert (fit(ours, batches) - fit(ref, batches)).abs().max() <= 1e-6


def test_single_loss_stage_leaves_other_loss_out():
    """Regression-only stage: the head (reached by cls only) never moves."""
    brain = make_brain(ToyDualBrain, only="reg", log_task_gradients=True)
    head_before = brain.modules.head.weight.detach().clone()
    enh_before = brain.modules.enhancer[0].weight.detach().clone()
    fit(brain, make_batches(3))
    assert torch.equal(brain.modules.head.weight, head_before)
    assert not torch.equal(brain.modules.enhancer[0].weight, enh_before)
    assert brain.surgery_stats["gnorm_cls"] == 0.0


def test_gradscaler_surgery_runs_in_unscaled_space():
    """A (CPU) GradScaler with scale 2**10: same parameters and the SAME
    logged norms as without scaling; the rule sees true gradients."""
    batches = make_batches(4)
    rule_kw = {"surgery_rule": S.D4AM(S.SRPRWeighter(window=2))}
    plain = make_brain(ToyDualBrain, **rule_kw)
    p_plain = fit(plain, batches)
    rule_kw = {"surgery_rule": S.D4AM(S.SRPRWeighter(window=2))}
    scaled = make_brain(ToyDualBrain, **rule_kw)
    scaled.scaler = torch.amp.GradScaler(
        "cpu", init_scale=2.0**10, growth_interval=10**6
    )
    p_scaled = fit(scaled, batches)
    assert scaled.scaler.get_scale() == 2.0**10
    torch.testing.assert_close(p_scaled, p_plain, atol=1e-6, rtol=0)
    for k in ("gnorm_cls", "gnorm_reg", "alpha_gclb", "alpha_srpr"):
        assert scaled.surgery_stats[k] == pytest.approx(
            plain.surgery_stats[k], rel=1e-5
        )


class NaNOnce(ToyDualBrain):
    """Returns a NaN regression loss on the given optimizer steps."""

    def compute_objectives(self, enh, batch, stage):
        losses = super().compute_objectives(enh, batch, stage)
        if stage == sb.Stage.TRAIN and self.step in self.hparams.nan_steps:
            losses["reg"] = losses["reg"] * float("nan")
        return losses


@pytest.mark.parametrize("rule", [S.Sum(), S.GradientRemedy()])
def test_non_finite_gradient_skips_step_and_training_goes_on(rule):
    batches = make_batches(6)
    brain = make_brain(NaNOnce, nan_steps={2, 3}, surgery_rule=rule)
    fit(brain, batches)
    assert brain.skipped_steps == 2
    assert brain.optimizer_step == 4  # 6 micro-batches, 2 skipped
    assert torch.isfinite(flat_params(brain)).all()
    summary = brain.surgery_summary()
    assert summary["skipped_steps"] == 2


@pytest.mark.parametrize("rule", [S.Sum(), S.D4AM()])
def test_non_finite_with_gradscaler_backs_off_scale(rule):
    brain = make_brain(NaNOnce, nan_steps={2}, surgery_rule=rule)
    brain.scaler = torch.amp.GradScaler(
        "cpu", init_scale=2.0**10, growth_interval=10**6
    )
    fit(brain, make_batches(3))
    assert brain.skipped_steps == 1
    assert brain.scaler.get_scale() == 2.0**9  # backed off by the scaler
    assert torch.isfinite(flat_params(brain)).all()


def test_nan_loss_patience_still_raises():
    brain = make_brain(
        NaNOnce, nan_steps={1, 2, 3, 4}, run_opts={"nonfinite_patience": 2}
    )
    with pytest.raises(ValueError, match="patience is exhausted"):
        fit(brain, make_batches(5))


@pytest.mark.parametrize("rule", [S.Sum(), S.PCGrad()])
def test_clipping_covers_all_parameter_groups(rule):
    """SpeechBrain clips param_groups[0] only; the engine clips all."""

    def two_groups(params):
        params = list(params)
        return torch.optim.SGD(
            [{"params": params[:2]}, {"params": params[2:]}], lr=1.0
        )

    from tests.utils.toy import make_modules

    enhancer, head, proxy = make_modules()
    brain = ToyDualBrain(
        modules={"enhancer": enhancer, "head": head},
        opt_class=two_groups,
        hparams={"proxy": proxy, "surgery_rule": rule},
        run_opts={"device": "cpu", "max_grad_norm": 1e-3},
    )
    before = flat_params(brain).clone()
    fit(brain, make_batches(1))
    step = (flat_params(brain) - before).norm().item()
    assert brain.surgery_stats["grad_norm"] > 1e-3  # it was clipped
    assert step == pytest.approx(1e-3, rel=1e-4)  # lr 1 * clipped norm


def test_shared_modules_get_rule_others_get_sum(tmp_path):
    """With GR, only the enhancer is remedied; the head gets its own
    (cls) gradient untouched."""
    batches = make_batches(1)
    rule = S.GradientRemedy(k=0.0)  # always rescale: visible effect
    brain = make_brain(
        ToyDualBrain,
        surgery_rule=rule,
        shared_modules=["enhancer"],
        run_opts={"max_grad_norm": 0.0},
        surgery_log_file=str(tmp_path / "log.csv"),
    )
    ref = make_brain(ToyDualBrain, run_opts={"max_grad_norm": 0.0})
    head_ref = fit(ref, batches)
    fit(brain, batches)
    n_head = sum(p.numel() for p in brain.modules.head.parameters())
    n_enh = sum(p.numel() for p in brain.modules.enhancer.parameters())
    assert brain._n_shared == n_enh
    p = flat_params(brain)
    # modules are ordered enhancer, head
    torch.testing.assert_close(p[-n_head:], head_ref[-n_head:])
    assert not torch.allclose(p[:n_enh], head_ref[:n_enh])
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1
    for key in ("step", "loss_cls", "gnorm_reg", "cos", "angle_deg"):
        assert key in rows[0]
    assert math.isfinite(float(rows[0]["ratio"]))


def test_module_lr_gives_a_module_its_own_step():
    """SGD with the enhancer at 10x the step: its update is 10x that of
    the same run without module_lr; the head's is unchanged."""
    batches = make_batches(1)
    plain = make_brain(ToyDualBrain, run_opts={"max_grad_norm": 0.0}, lr=0.01)
    start = flat_params(plain)
    step_plain = fit(plain, batches) - start
    fast = make_brain(
        ToyDualBrain,
        run_opts={"max_grad_norm": 0.0},
        lr=0.01,
        module_lr={"enhancer": 0.1},
    )
    step_fast = fit(fast, batches) - start
    n_enh = sum(p.numel() for p in fast.modules.enhancer.parameters())
    assert bool(step_plain[:n_enh].abs().sum() > 0)
    torch.testing.assert_close(step_fast[:n_enh], 10 * step_plain[:n_enh])
    torch.testing.assert_close(step_fast[n_enh:], step_plain[n_enh:])
    assert [g["lr"] for g in fast.optimizer.param_groups] == [0.1, 0.01]
    placeholder = make_brain(ToyDualBrain, module_lr={"enhancer": None})
    placeholder.on_fit_start()  # a yaml placeholder: opt_class's rate
    assert len(placeholder.optimizer.param_groups) == 1
    with pytest.raises(ValueError, match="module_lr names 'asr'"):
        make_brain(ToyDualBrain, module_lr={"asr": 0.1}).on_fit_start()


class RecordingLogger(sb.utils.train_logger.TrainLogger):
    """Stands in for SpeechBrain's ``TensorboardLogger`` (same
    ``log_stats`` call; tensorboard itself is not a dependency)."""

    def __init__(self):
        self.calls = []

    def log_stats(self, stats_meta, train_stats=None, **kwargs):
        self.calls.append((dict(stats_meta), dict(train_stats or {})))


def test_tensorboard_logger_gets_every_step_with_csv_numbers(tmp_path):
    """``tensorboard_train_logger`` receives one call per optimizer step,
    keyed by the step, with the same numbers as the CSV log."""
    tb = RecordingLogger()
    brain = make_brain(
        ToyDualBrain,
        surgery_rule=S.GradientRemedy(),
        surgery_log_file=str(tmp_path / "log.csv"),
        tensorboard_train_logger=tb,
    )
    fit(brain, make_batches(3))
    with open(tmp_path / "log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [meta["step"] for meta, _ in tb.calls] == [1, 2, 3]
    assert len(rows) == 3
    for (_, stats), row in zip(tb.calls, rows, strict=True):
        for key in ("loss_cls", "loss_reg", "gnorm_cls", "gnorm_reg", "cos"):
            assert float(stats[key]) == pytest.approx(float(row[key]))


def test_bad_objectives_give_clear_errors():
    class Bad(ToyDualBrain):
        def compute_objectives(self, enh, batch, stage):
            return {"cls": enh.mean(), "typo": enh.mean()}

    brain = make_brain(Bad)
    with pytest.raises(ValueError, match="'typo'"):
        fit(brain, make_batches(1))

    class NotADict(ToyDualBrain):
        def compute_objectives(self, enh, batch, stage):
            return enh.mean()

    with pytest.raises(TypeError, match="must return a dict"):
        fit(make_brain(NotADict), make_batches(1))
    with pytest.raises(ValueError, match="shared_modules"):
        fit(make_brain(ToyDualBrain, shared_modules=["nope"]), [])


def test_checkpoint_resume_restores_srpr_state_and_optimizer(tmp_path):
    """Stop after epoch 1, resume in a fresh process-like brain: same final
    parameters and SRPR state as an uninterrupted 2-epoch run."""
    batches = make_batches(4)

    def build(folder):
        rule = S.D4AM(S.SRPRWeighter(window=2))
        enhancer_counter = sb.utils.epoch_loop.EpochCounter(2)
        brain = make_brain(
            ToyDualBrain,
            surgery_rule=rule,
            opt="adam",
            lr=1e-2,
            surgery_log_file=str(folder / "log.csv"),
        )
        ckpt = sb.utils.checkpoints.Checkpointer(
            folder,
            recoverables={
                "enhancer": brain.modules.enhancer,
                "head": brain.modules.head,
                "counter": enhancer_counter,
            },
        )
        brain.checkpointer = ckpt
        ckpt.add_recoverable("brain", brain)
        ckpt.add_recoverable("surgery_rule", brain.rule)
        return brain, enhancer_counter

    class Saving(ToyDualBrain):
        pass

    def on_stage_end(brain):
        def hook(stage, loss, epoch):
            if stage == sb.Stage.TRAIN:
                brain.checkpointer.save_and_keep_only(num_to_keep=1)

        return hook

    def log_steps(brain):
        with open(brain.hparams.surgery_log_file) as f:
            return [int(r["step"]) for r in csv.DictReader(f)]

    # uninterrupted
    full, counter = build(tmp_path / "full")
    full.on_stage_end = on_stage_end(full)
    full.fit(counter, loader(batches))
    # interrupted after one epoch
    part, counter = build(tmp_path / "part")
    part.on_stage_end = on_stage_end(part)
    counter.limit = 1
    part.fit(counter, loader(batches))
    alpha_mid = part.rule.weighter.alpha.item()
    # killed after logging two steps past the checkpoint (and mid-write
    # on a third: a torn row): on resume they are trained again, and
    # logged once
    with open(part.hparams.surgery_log_file, "a", newline="") as f:
        csv.writer(f).writerows([[5, 0], [6, 0]])
        f.write("7.")
    resumed, counter = build(tmp_path / "part")
    resumed.on_stage_end = on_stage_end(resumed)
    assert "optimizer" not in resumed.checkpointer.recoverables
    resumed.fit(counter, loader(batches))
    assert "optimizer" in resumed.checkpointer.recoverables
    assert resumed.optimizer_step == full.optimizer_step == 8
    assert log_steps(resumed) == log_steps(full) == list(range(1, 9))
    assert alpha_mid != full.rule.weighter.alpha.item()
    assert resumed.rule.weighter.alpha.item() == pytest.approx(
        full.rule.weighter.alpha.item(), abs=1e-7
    )
    torch.testing.assert_close(
        flat_params(resumed), flat_params(full), atol=1e-7, rtol=0
    )


def test_surgery_log_without_step_column_is_refused(tmp_path):
    log = tmp_path / "log.csv"
    log.write_text("loss\n1.0\n")
    brain = make_brain(ToyDualBrain, surgery_log_file=str(log))
    with pytest.raises(ValueError, match="no 'step' column"):
        fit(brain, make_batches(1))
    assert log.read_text() == "loss\n1.0\n"
