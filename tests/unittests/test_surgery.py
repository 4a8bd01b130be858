"""Property tests of the gradient-surgery rules (robust_brain.surgery)."""

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from robust_brain import surgery as S

F64 = torch.float64
settings.register_profile("ci", max_examples=60, deadline=None)
settings.load_profile("ci")


def vectors(n_min=2, n_max=12, scale=10.0):
    """Flat float64 vectors with moderate, finite entries."""
    return st.integers(n_min, n_max).flatmap(
        lambda n: st.tuples(
            arrays("float64", n, elements=st.floats(-scale, scale)),
            arrays("float64", n, elements=st.floats(-scale, scale)),
        )
    )


def t(a):
    return torch.tensor(a, dtype=F64)


def cos(a, b):
    return (torch.dot(a, b) / (a.norm() * b.norm())).item()


# ----------------------------------------------------------------- calibrate
@given(vectors())
def test_calibration_orthogonal_in_conflict_unchanged_otherwise(pair):
    g_c, g_r = t(pair[0]), t(pair[1])
    assume(g_r.norm() > 1e-3 and g_c.norm() > 1e-3)
    alpha, dot, nsq = S.calibrate(g_c, g_r)
    assert dot.item() == pytest.approx(torch.dot(g_c, g_r).item())
    assert nsq.item() == pytest.approx(g_r.norm().item() ** 2)
    calibrated = g_c + alpha * g_r
    if dot < 0:
        # conflict: the calibrated gradient lies in g_r's normal plane
        assert alpha > 0
        assert torch.dot(calibrated, g_r).abs() <= 1e-9 * (
            g_c.norm() * g_r.norm()
        )
    else:
        assert alpha == 0
        assert torch.equal(calibrated, g_c)


def test_calibration_zero_and_tiny_regression_gradient():
    g_c = t([1.0, -2.0])
    for g_r in (torch.zeros(2, dtype=F64), t([-1e-200, 1e-200])):
        alpha, _, _ = S.calibrate(g_c, g_r)
        assert torch.isfinite(alpha) and alpha.item() >= 0
        assert torch.isfinite(g_c + alpha * g_r).all()
    alpha, _, _ = S.calibrate(torch.ones(3), torch.zeros(3))
    assert alpha.item() == 0.0


# ---------------------------------------------------------------------- SRPR
@settings(max_examples=20)
@given(
    st.floats(0.5, 9.5),  # ||g_r||^2: beta * n < 1 (stable), contraction
    # per window |1 - 2 beta n| <= 0.95
    st.floats(0.01, 3.0),  # alpha* = d / n
    st.floats(0.0, 3.0),  # init
)
def test_srpr_converges_to_dot_over_norm_on_constant_pair(n, target, init):
    w = S.SRPRWeighter(init=init, beta=0.05, window=8)
    d = target * n
    # the error shrinks by <= 0.95 per window from <= 3: 300 windows bound
    # it by 3 * 0.95**300 < 1e-6 (200 left 1.03e-4 at n=0.5, init=3)
    for _ in range(8 * 300):
        w.update(t(d), t(n), t(0.0))
    assert w.alpha.item() == pytest.approx(target, rel=1e-3, abs=1e-4)


def test_srpr_decays_to_floor_when_conflicting():
    g_c, g_r = t([1.0, -1.0]), t([0.0, 1.0])
    w = S.SRPRWeighter(init=1.0)
    history = []
    for _ in range(8 * 150):
        alpha_gclb, d, n = S.calibrate(g_c, g_r)
        history.append(w.update(d, n, alpha_gclb).item())
    # alpha-gradient 2 * alpha * n: geometric decay by (1 - 2 beta n) = 0.9
    assert history[7] == pytest.approx(0.9)
    assert all(b <= a for a, b in zip(history[:-1], history[1:], strict=True))
    assert 0.0 <= w.alpha.item() < 1e-6


def test_srpr_matches_the_official_update_by_hand():
    w = S.SRPRWeighter(init=1.0, beta=0.05, window=2, max_step=1.0)
    # h = 2*1*4 - 2*(3 + 0.5*4) = -2 each update; step = -0.05*(-4/2) = 0.1
    for _ in range(2):
        w.update(t(3.0), t(4.0), t(0.5))
    assert w.alpha.item() == pytest.approx(1.1)
    assert w.h.item() == 0.0 and int(w.count) == 2
    # huge alpha-gradient: step clipped to -1, then floored at 0
    for _ in range(2):
        w.update(t(-1e6), t(1.0), t(0.0))
    assert w.alpha.item() == pytest.approx(0.1)
    for _ in range(2):
        w.update(t(-1e6), t(1.0), t(0.0))
    assert w.alpha.item() == 0.0


def test_srpr_state_is_in_buffers_and_round_trips():
    w = S.SRPRWeighter(init=0.7, window=3)
    w.update(t(1.0), t(2.0), t(0.0))
    state = w.state_dict()
    assert set(state) == {"alpha", "h", "count"}
    w2 = S.SRPRWeighter()
    w2.load_state_dict(state)
    assert w2.alpha.item() == pytest.approx(0.7)
    assert int(w2.count) == 1 and w2.h.item() == w.h.item()


@pytest.mark.parametrize("kwargs", [{"window": 0}, {"beta": 0}])
def test_srpr_rejects_bad_constants(kwargs):
    with pytest.raises(ValueError, match="SRPRWeighter needs"):
        S.SRPRWeighter(**kwargs)


# ------------------------------------------------------------- D4AM modes
def test_d4am_modes_match_the_update_rule():
    g_c, g_r = t([1.0, -1.0, 0.5]), t([0.0, 2.0, 1.0])
    alpha_gclb, d, n = S.calibrate(g_c, g_r)
    assert d.item() == -1.5 and n.item() == 5.0
    assert alpha_gclb.item() == pytest.approx(0.3)
    g, st_ = S.D4AM(S.SRPRWeighter(init=0.25))(g_c, g_r)
    torch.testing.assert_close(g, g_c + (0.3 + 0.25) * g_r)
    assert st_["alpha_srpr"].item() == 0.25
    g, _ = S.GCLB()(g_c, g_r)
    torch.testing.assert_close(g, g_c + 0.3 * g_r)
    g, _ = S.SRPR(S.SRPRWeighter(init=0.25))(g_c, g_r)
    torch.testing.assert_close(g, g_c + 0.25 * g_r)
    g, _ = S.Weighted(1.0, 0.7)(g_c, g_r)
    torch.testing.assert_close(g, g_c + 0.7 * g_r)


def test_d4am_srpr_alpha_updated_after_forming_g():
    rule = S.D4AM(S.SRPRWeighter(init=1.0, window=1, beta=0.05))
    g_c, g_r = t([2.0, 0.0]), t([1.0, 0.0])  # d = 2, n = 1 -> alpha* = 2
    g, stats = rule(g_c, g_r)
    torch.testing.assert_close(g, g_c + 1.0 * g_r)  # old alpha applied
    assert stats["alpha_srpr"].item() == 1.0
    # h = 2*1*1 - 2*2 = -2; alpha = 1 + 0.05 * 2 = 1.1
    assert rule.weighter.alpha.item() == pytest.approx(1.1)


def test_langevin_noise_scale_and_validation():
    torch.manual_seed(0)
    g = torch.full((200_000,), 9.0, dtype=F64)
    out = S.langevin_noise(g, lr=1e-4, num_samples=250_000, momentum=0.9)
    factor = math.sqrt(2e-4 * 0.1 / 250_000) * math.sqrt(0.1) / 1e-4
    assert (out - g).std().item() == pytest.approx(factor * 3.0, rel=0.02)
    assert (out - g).mean().abs().item() < 1e-3
    assert torch.equal(
        S.langevin_noise(torch.zeros(4), 1e-4, 10), torch.zeros(4)
    )
    with pytest.raises(ValueError, match="num_samples"):
        S.langevin_noise(g, lr=1e-4, num_samples=0)
    with pytest.raises(ValueError, match="num_samples"):
        S.D4AM(langevin=True)


# ------------------------------------------------------------ Gradient Remedy
@given(vectors())
def test_remedy_conflict_angle_is_arctan_of_norm_ratio(pair):
    g_se, g_asr = t(pair[0]), t(pair[1])
    assume(g_se.norm() > 1e-3 and g_asr.norm() > 1e-3)
    dot = torch.dot(g_se, g_asr)
    assume(dot < 0)
    # keep away from exactly anti-parallel (the perpendicular part vanishes)
    assume(abs(cos(g_se, g_asr)) < 1 - 1e-6)
    new_se, new_asr = S.remedy(g_se, g_asr, k=float("inf"))
    theta = math.atan2(g_se.norm().item(), g_asr.norm().item())
    assert cos(new_se, g_asr) == pytest.approx(math.cos(theta), abs=1e-6)
    assert torch.equal(new_asr, g_asr)
    # norm of the result: ||g_perp|| / sin(theta)
    perp = g_se - dot / g_asr.norm() ** 2 * g_asr
    assert new_se.norm().item() == pytest.approx(
        perp.norm().item() / math.sin(theta), rel=1e-6
    )


@given(vectors())
def test_remedy_angle_leaves_non_conflicting_gradients_untouched(pair):
    g_se, g_asr = t(pair[0]), t(pair[1])
    assume(torch.dot(g_se, g_asr) >= 0)
    new_se, new_asr = S.remedy(g_se, g_asr, scale=False)
    assert torch.equal(new_se, g_se) and torch.equal(new_asr, g_asr)


@given(vectors(), st.floats(0.5, 10.0))
def test_remedy_rescale_when_se_dominates(pair, k):
    g_se, g_asr = t(pair[0]), t(pair[1])
    assume(g_se.norm() > 1e-3 and g_asr.norm() > 1e-3)
    assume(torch.dot(g_se, g_asr) > 1e-6 * g_se.norm() * g_asr.norm())
    new_se, new_asr = S.remedy(g_se, g_asr, k=k, angle=False)
    r = (g_se.norm() / g_asr.norm()).item()
    c = cos(g_se, g_asr)
    if r > k:
        torch.testing.assert_close(new_se, c * g_se)
        torch.testing.assert_close(new_asr, g_asr / c)
    else:
        assert torch.equal(new_se, g_se) and torch.equal(new_asr, g_asr)


def test_remedy_per_tensor_differs_from_global_and_matches_loop():
    g_se = t([-1.0, 1.0, 3.0, 0.5, 0.0])
    g_asr = t([1.0, 0.0, 1.0, 1.0, 2.0])
    seg = torch.tensor([2, 3])
    a, b = S.remedy(g_se, g_asr, segments=seg)
    a0, b0 = S.remedy(g_se[:2], g_asr[:2])
    a1, b1 = S.remedy(g_se[2:], g_asr[2:])
    torch.testing.assert_close(a, torch.cat([a0, a1]))
    torch.testing.assert_close(b, torch.cat([b0, b1]))
    ga, _ = S.remedy(g_se, g_asr)
    assert not torch.allclose(a, ga)


@pytest.mark.parametrize("dtype", [torch.float32, F64])
def test_remedy_no_nan_for_zero_or_tiny_norms(dtype):
    cases = [
        (torch.zeros(4), torch.zeros(4)),
        (torch.tensor([1.0, -2.0, 0.0, 3.0]), torch.zeros(4)),  # ASR = 0
        (torch.zeros(4), torch.tensor([1.0, -2.0, 0.0, 3.0])),
        (torch.tensor([1.0, 0.0, 0.0, 0.0]), torch.tensor([1e-30, 0, 0, 0])),
        (torch.tensor([-1.0, 1e-20, 0, 0]), torch.tensor([1.0, 0, 0, 0])),
        (torch.tensor([1.0, 1e3, 0, 0]), torch.tensor([1e-3, 1e-9, 0, 0])),
        (torch.tensor([-3.0, 0, 0, 0]), torch.tensor([1.0, 0, 0, 0])),
    ]
    seg = torch.tensor([2, 2])
    for g_se, g_asr in cases:
        for segments in (None, seg):
            out = S.remedy(
                g_se.to(dtype),
                g_asr.to(dtype),
                segments=segments,
                return_stats=True,
            )
            for x in (out[0], out[1], *out[2].values()):
                assert torch.isfinite(x).all(), (g_se, g_asr, segments)
        # a zero ASR gradient leaves the SE gradient as it is
    g_se = torch.tensor([1.0, -2.0, 0.0, 3.0], dtype=dtype)
    new_se, new_asr = S.remedy(g_se, torch.zeros(4, dtype=dtype))
    assert torch.equal(new_se, g_se) and torch.equal(new_asr, torch.zeros(4))


def test_gradient_remedy_rule_variants():
    g_asr, g_se = t([1.0, 0.0]), t([-1.0, 1.0])
    full, stats = S.GradientRemedy(per_tensor=False)(g_asr, g_se)
    angle_only, _ = S.GradientRemedy(scale=False, per_tensor=False)(g_asr, g_se)
    scale_only, _ = S.GradientRemedy(angle=False, per_tensor=False)(g_asr, g_se)
    torch.testing.assert_close(full, t([1 + 1 / math.sqrt(2), 1.0]))
    torch.testing.assert_close(angle_only, full)  # r = 1.22 < K
    torch.testing.assert_close(scale_only, g_asr + g_se)  # conflict: c < 0
    assert stats["conflict"].item() == 1.0
    assert stats["angle_deg"].item() == pytest.approx(54.7356, abs=1e-3)


# ---------------------------------------------------------------- PCGrad
@given(vectors())
def test_pcgrad_removes_conflict_only(pair):
    a, b = t(pair[0]), t(pair[1])
    assume(a.norm() > 1e-3 and b.norm() > 1e-3)
    pa, pb = S.pcgrad(a, b)
    if torch.dot(a, b) < 0:
        tol = 1e-9 * a.norm() * b.norm()
        assert torch.dot(pa, b).abs() <= tol
        assert torch.dot(pb, a).abs() <= tol
    else:
        assert torch.equal(pa, a) and torch.equal(pb, b)


def test_pcgrad_zero_safe():
    pa, pb = S.pcgrad(torch.zeros(3), torch.tensor([1.0, -1.0, 0.0]))
    assert torch.isfinite(pa).all() and torch.isfinite(pb).all()


@given(vectors(), st.integers(min_value=1, max_value=5))
def test_per_tensor_pcgrad_is_pcgrad_on_each_tensor(pair, cut):
    """Per tensor, PCGrad must equal the two-task PCGrad of each segment,
    concatenated."""
    a, b = t(pair[0]), t(pair[1])
    cut = min(cut, a.numel() - 1) if a.numel() > 1 else a.numel()
    segments = torch.tensor([cut, a.numel() - cut])
    segments = segments[segments > 0]
    out, _ = S.PCGrad(per_tensor=True)(a, b, segments=segments)
    parts = []
    chunks = zip(
        a.split(segments.tolist()), b.split(segments.tolist()), strict=True
    )
    for ga, gb in chunks:
        pb, pa = S.pcgrad(gb, ga)  # aux first, as the rule's combine
        parts.append(pa + pb)
    torch.testing.assert_close(out, torch.cat(parts), rtol=1e-9, atol=1e-9)


def test_per_tensor_pcgrad_differs_from_global_where_signs_differ():
    # whole vectors agree (dot 1 > 0), the first tensor conflicts (dot -2)
    g_main, g_aux = t([1.0, 1.0, 1.0]), t([-2.0, 0.0, 3.0])
    seg = torch.tensor([1, 2])
    per, _ = S.PCGrad(per_tensor=True)(g_main, g_aux, segments=seg)
    whole, _ = S.PCGrad(per_tensor=False)(g_main, g_aux, segments=seg)
    torch.testing.assert_close(whole, g_main + g_aux)
    torch.testing.assert_close(per, t([0.0, 1.0, 4.0]))


def test_per_tensor_pcgrad_zero_tensor_is_finite():
    g_main = t([0.0, 0.0, 1.0, -1.0])
    g_aux = t([1.0, -2.0, -1.0, 1.0])
    out, _ = S.PCGrad(per_tensor=True)(
        g_main, g_aux, segments=torch.tensor([2, 2])
    )
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[:2], g_aux[:2])  # zero main: untouched
    torch.testing.assert_close(out[2:], t([0.0, 0.0]))  # opposite: cancel


def test_make_rule_pcgrad_default_is_global():
    assert not S.make_rule("pcgrad").per_tensor
    assert S.make_rule("pcgrad", per_tensor=True).per_tensor
    assert S.make_rule("gr").per_tensor
    assert not S.make_rule("gr", per_tensor=False).per_tensor


# ------------------------------------------------- homogeneity (AMP space)
@pytest.mark.parametrize(
    "rule",
    [
        S.Sum(),
        S.Weighted(1.0, 0.3),
        S.GCLB(),
        S.GradientRemedy(per_tensor=False),
        S.PCGrad(),
    ],
)
def test_stateless_rules_are_positively_homogeneous(rule):
    g1, g2 = t([1.0, -2.0, 0.5, 3.0]), t([-0.5, 1.0, 2.0, -1.0])
    out, _ = rule(g1, g2)
    out_scaled, _ = rule(1024.0 * g1, 1024.0 * g2)
    torch.testing.assert_close(out_scaled, 1024.0 * out)


# ------------------------------------------------------- task_gradients
def test_task_gradients_one_graph_zeros_where_unreached():
    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3)
    head = torch.nn.Linear(3, 1)
    x = torch.randn(5, 3)
    h = shared(x)
    losses = {"main": head(h).pow(2).mean(), "aux": h.abs().mean()}
    params = list(shared.parameters()) + list(head.parameters())
    grads = S.task_gradients(losses, params)
    assert list(grads) == ["main", "aux"]
    n_shared = sum(p.numel() for p in shared.parameters())
    assert grads["aux"][n_shared:].abs().sum() == 0  # head unreached
    assert grads["main"][n_shared:].abs().sum() > 0
    # equals per-loss backward
    for name in ("main", "aux"):
        for p in params:
            p.grad = None
        h = shared(x)
        loss = head(h).pow(2).mean() if name == "main" else h.abs().mean()
        loss.backward()
        ref = torch.cat(
            [
                (p.grad if p.grad is not None else torch.zeros_like(p))
                .reshape(-1)
                .float()
                for p in params
            ]
        )
        torch.testing.assert_close(grads[name], ref)
    const = S.task_gradients({"c": torch.tensor(1.0)}, params)["c"]
    assert const.shape == (sum(p.numel() for p in params),)
    assert const.abs().sum() == 0


@given(vectors(n_min=5, n_max=12))
def test_fused_rules_equal_the_functional_definitions(pair):
    g_main, g_aux = t(pair[0]), t(pair[1])
    seg = torch.tensor([2, 3, g_main.numel() - 5])
    for kwargs in ({}, {"angle": False}, {"scale": False}):
        rule = S.GradientRemedy(k=1.5, **kwargs)
        name = {(): "gr", ("angle",): "gr-scale", ("scale",): "gr-angle"}
        assert S.make_rule(name[tuple(kwargs)], k=1.5).angle == rule.angle
        combined, _ = rule(g_main, g_aux, segments=seg)
        se, asr = S.remedy(g_aux, g_main, k=1.5, segments=seg, **kwargs)
        torch.testing.assert_close(combined, se + asr)
    a, b = S.pcgrad(g_main, g_aux)
    torch.testing.assert_close(S.PCGrad()(g_main, g_aux)[0], a + b)
