"""Gradient Remedy: the rules' guarantees, the mask network, GRBrain."""

import csv

import numpy as np
import pytest
import soundfile as sf
import torch

from robust_brain.data.streams import SpeechStream, TokenEncoder
from robust_brain.evaluation.tables import gr_table
from robust_brain.methods.gr import (
    RULES,
    GRBrain,
    TensorStats,
    check_rule,
    make_gr_rule,
    tensor_statistics,
)
from robust_brain.models.asr import ConformerASR
from robust_brain.models.mask_net import MagnitudeLoss, MaskNet
from robust_brain.pipelines.gr import run_rules, train_joint_stage
from robust_brain.surgery import CombinationRule, GradientRemedy, Sum

SR = 16000


# ---------------------------------------------------------------- rules
def test_rule_names_map_to_the_engine_rules():
    kinds = {r: make_gr_rule(r, k=4.0).rule for r in RULES}
    assert isinstance(kinds["MTL"], Sum)
    assert type(kinds["PCGrad"]).__name__ == "PCGrad"
    for name, angle, scale in (
        ("GR-angle", True, False),
        ("GR-scale", False, True),
        ("GR", True, True),
    ):
        rule = kinds[name]
        assert isinstance(rule, GradientRemedy)
        assert (rule.angle, rule.scale, rule.k) == (angle, scale, 4.0)
        assert rule.per_tensor


@pytest.mark.parametrize("bad", ["adam", "GCLB", "", "GR-both"])
def test_unknown_rule_is_one_clear_error(bad):
    with pytest.raises(ValueError, match="unknown GR rule"):
        check_rule(bad)
    with pytest.raises(ValueError, match=repr(bad)):
        make_gr_rule(bad)


def test_gr_angle_leaves_non_conflicting_tensors_untouched():
    """Two tensors: the first agrees with the ASR gradient (positive dot)
    and must get exactly g_asr + g_se; the second conflicts and must be
    rotated to the acute angle arctan(||g_se|| / ||g_asr||)."""
    g_asr = torch.tensor([1.0, 2.0, 0.5, 1.0, 0.0])
    g_se = torch.tensor([3.0, -0.5, 1.0, -2.0, 1.0])
    segments = torch.tensor([3, 2])
    assert torch.dot(g_se[:3], g_asr[:3]) > 0
    assert torch.dot(g_se[3:], g_asr[3:]) < 0
    combined, stats = make_gr_rule("GR-angle")(g_asr, g_se, segments)
    torch.testing.assert_close(combined[:3], g_asr[:3] + g_se[:3])
    remedied = combined[3:] - g_asr[3:]
    cos = torch.dot(remedied, g_asr[3:]) / (remedied.norm() * g_asr[3:].norm())
    theta = torch.atan2(g_se[3:].norm(), g_asr[3:].norm())
    assert float(cos) == pytest.approx(float(torch.cos(theta)), abs=1e-6)
    assert float(stats["conflict"]) == pytest.approx(0.5)
    assert float(stats["pre_conflict"]) == pytest.approx(0.5)


def test_gr_angle_is_the_plain_sum_without_any_conflict():
    torch.manual_seed(0)
    g_asr = torch.rand(50) + 0.1
    g_se = 7.0 * (torch.rand(50) + 0.1)  # all positive: no conflict at all
    for name in ("GR-angle", "PCGrad", "MTL"):
        combined, _ = make_gr_rule(name)(g_asr, g_se, torch.tensor([20, 30]))
        torch.testing.assert_close(combined, g_asr + g_se)


def test_gr_scale_rescales_only_dominant_se_gradients():
    g_asr = torch.tensor([1.0, 0.0, 1.0, 0.0])
    # tensor 1: r = 10 > K at cos 0.6; tensor 2: r = 2 < K
    g_se = torch.tensor([6.0, 8.0, 2.0, 0.0])
    combined, stats = make_gr_rule("GR-scale", k=5.0)(
        g_asr, g_se, torch.tensor([2, 2])
    )
    c = 0.6
    expected = torch.tensor([c * 6.0 + 1.0 / c, c * 8.0, 3.0, 0.0])
    torch.testing.assert_close(combined, expected)
    assert float(stats["rescaled"]) == pytest.approx(0.5)


@pytest.mark.parametrize("name", RULES)
def test_no_rule_gives_nan_when_the_asr_gradient_is_zero(name):
    """The official code divides by ||g_asr||: a tensor the ASR loss does
    not reach (or a zero ASR gradient) must not poison the update."""
    torch.manual_seed(1)
    g_se = torch.randn(30)
    g_asr = torch.randn(30)
    g_asr[:10] = 0.0  # first tensor: zero ASR gradient
    segments = torch.tensor([10, 20])
    combined, stats = make_gr_rule(name)(g_asr, g_se, segments)
    assert torch.isfinite(combined).all()
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in stats.values())
    # where the ASR gradient is zero the SE gradient passes unchanged
    torch.testing.assert_close(combined[:10], g_se[:10])
    # and an entirely zero ASR gradient (whole vector, one segment)
    combined, stats = make_gr_rule(name)(torch.zeros(30), g_se)
    torch.testing.assert_close(combined, g_se)
    assert all(torch.isfinite(torch.as_tensor(v)).all() for v in stats.values())


def test_tensor_statistics_numbers():
    s = tensor_statistics(
        torch.tensor([0.0, 2.0, 3.0, 0.0, 0.0]),
        torch.tensor([1.0, 0.0, -1.0, 0.0, 0.0]),
        torch.tensor([2, 1, 2]),
    )
    # tensors: 90 deg (r 2), 180 deg (r 3), the third has zero norms
    assert float(s["pre_angle_deg"]) == pytest.approx(135.0)
    assert float(s["pre_cos"]) == pytest.approx(-0.5)
    assert float(s["pre_ratio"]) == pytest.approx(2.0)  # median of 2, 3
    assert float(s["pre_conflict"]) == pytest.approx(0.5)


def test_tensor_stats_keeps_linear_rules_linear():
    assert make_gr_rule("MTL").linear_weights == (1.0, 1.0)
    assert make_gr_rule("GR").linear_weights is None
    assert isinstance(make_gr_rule("GR"), TensorStats)


# ------------------------------------------------------------ mask net
@pytest.mark.parametrize("mask, top", [("sigmoid", 1.0), ("sigmoid", 2.0)])
def test_mask_net_shapes_and_bounded_mask(mask, top):
    torch.manual_seed(0)
    net = MaskNet(
        n_fft=128,
        hop_length=32,
        num_layers=2,
        hidden_size=8,
        mask=mask,
        mask_max=top,
        dropout=0.0,
    )
    wav = torch.randn(3, 1000)
    lens = torch.tensor([1.0, 0.6, 0.3])
    out, mag, m = net(wav, lens, return_magnitude=True)
    assert out.shape == wav.shape
    assert mag.shape == m.shape == (3, 1000 // 32 + 1, 65)
    m = m.detach()
    assert float(m.min()) >= 0.0 and float(m.max()) <= top
    assert float(m.max()) > 0.3 * top  # not trivially zero
    # padded samples and frames are silent
    out = out.detach()
    assert float(out[1, 600:].abs().max()) == 0.0
    assert float(m[2, 300 // 32 + 1 :].abs().max()) == 0.0


def test_mask_net_relu_is_unbounded_unless_clamped():
    torch.manual_seed(0)
    net = MaskNet(
        n_fft=64,
        hop_length=16,
        num_layers=1,
        hidden_size=4,
        mask="relu",
        dropout=0.0,
    )
    with torch.no_grad():
        net.linear.bias.fill_(5.0)
    with torch.no_grad():
        _, _, m = net(torch.randn(1, 800), return_magnitude=True)
    assert float(m.min()) >= 0.0 and float(m.max()) > 4.0
    net.mask_max = 1.5
    with torch.no_grad():
        _, _, m = net(torch.randn(1, 800), return_magnitude=True)
    assert float(m.max()) == pytest.approx(1.5)


def test_mask_net_unit_mask_reconstructs_the_input():
    net = MaskNet(
        n_fft=64,
        hop_length=16,
        num_layers=1,
        hidden_size=4,
        mask="sigmoid",
        mask_max=2.0,
        dropout=0.0,
    )
    with torch.no_grad():
        net.linear.weight.zero_()
        net.linear.bias.zero_()  # sigmoid(0) * 2 = 1
    wav = torch.randn(2, 800)
    torch.testing.assert_close(net(wav), wav, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"mask": "tanh"}, "mask must be"),
        ({"input_norm": "cmvn"}, "input_norm"),
        ({"n_fft": 64, "hop_length": 64}, "hop_length < n_fft"),
    ],
)
def test_mask_net_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MaskNet(**kwargs)


def test_magnitude_loss_value():
    loss = MagnitudeLoss(n_fft=64, hop_length=16)
    clean = torch.randn(2, 320)
    est = torch.zeros(2, 21, 33)  # all-zero estimate: sum |S|^2 / frames
    ref = torch.stft(
        clean, 64, 16, window=torch.hann_window(64), return_complex=True
    ).abs()
    expected = ref.pow(2).sum((1, 2)).mean() / 21
    value = loss(None, clean, torch.ones(2), estimate_magnitude=est)
    assert float(value) == pytest.approx(float(expected), rel=1e-5)
    # frames past the length do not count
    half = loss(None, clean, torch.tensor([1.0, 0.5]), estimate_magnitude=est)
    frames_b = 160 // 16 + 1
    exp_b = ref[1, :, :frames_b].pow(2).sum() / frames_b
    exp_a = ref[0].pow(2).sum() / 21
    assert float(half) == pytest.approx(float((exp_a + exp_b) / 2), rel=1e-5)


# -------------------------------------------------------------- GRBrain
class Chars:
    def encode_as_ids(self, text):
        return [3 + (ord(c) - 65) % 5 for c in text if c != " "]

    def decode_ids(self, ids):
        return "".join(chr(62 + i) for i in ids)


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    return make_stream(tmp_path_factory.mktemp("gr"))


def make_stream(d, tokenizer=None):
    """Four short noisy/clean tone pairs with transcripts (character ids,
    or ``tokenizer``'s)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(4):
        n = 3200 + 320 * i
        clean = 0.1 * np.sin(2 * np.pi * (200 + 50 * i) * np.arange(n) / SR)
        sf.write(d / f"c{i}.wav", clean, SR)
        sf.write(d / f"n{i}.wav", clean + 0.05 * rng.normal(size=n), SR)
        rows.append(
            {
                "ID": f"u{i}",
                "noisy_wav": str(d / f"n{i}.wav"),
                "clean_wav": str(d / f"c{i}.wav"),
                "duration": n / SR,
                "wrd": "ABCDE"[: 2 + i % 3],
            }
        )
    return SpeechStream(rows, text_pipeline=TokenEncoder(tokenizer or Chars()))


def tiny_asr(**overrides):
    """A 1 + 1 layer d_model 8 Conformer CTC/attention ASR."""
    kwargs = {
        "vocab_size": 8,
        "d_model": 8,
        "nhead": 2,
        "d_ffn": 16,
        "num_encoder_layers": 1,
        "num_decoder_layers": 1,
        "cnn_channels": (2, 2),
        "normalize": False,
    }
    return ConformerASR(**{**kwargs, **overrides})


def tiny_models(seed=0):
    torch.manual_seed(seed)
    enh = MaskNet(
        n_fft=64,
        hop_length=32,
        num_layers=1,
        hidden_size=4,
        mask="sigmoid",
        dropout=0.0,
    )
    asr = tiny_asr(dropout=0.0)
    for m in asr.modules():  # the CNN front-end has its own dropout
        if isinstance(m, torch.nn.modules.dropout._DropoutNd):
            m.p = 0.0
    return enh, asr


class Spy(CombinationRule):
    """Records what the engine hands the rule and zeroes the update."""

    per_tensor = True

    def __init__(self):
        super().__init__()
        self.calls = []

    def combine(self, g_main, g_aux, segments=None, lr=None):
        self.calls.append((g_main.clone(), g_aux.clone(), segments.clone()))
        return torch.zeros_like(g_main), {}


def test_grbrain_remedies_only_the_se_parameters(stream):
    """The rule sees exactly the enhancer's tensors; the ASR's parameters
    move by the ASR gradient alone (here the rule zeroes the enhancer's
    update, so the enhancer must not move at all)."""
    enh, asr = tiny_models()
    spy = Spy()
    batch = stream.collate([stream[0], stream[1]])
    lam = 0.3
    # reference ASR gradient of (1 - lambda) L_ASR through the enhancer
    ref_enh, ref_asr = tiny_models()
    wavs, lens = batch.noisy
    tokens, tlens = batch.tokens
    loss = (1 - lam) * ref_asr(ref_enh(wavs, lens), lens, tokens, tlens, 0)
    grads = torch.autograd.grad(loss, list(ref_asr.parameters()))
    before_enh = [p.detach().clone() for p in enh.parameters()]
    before_asr = [p.detach().clone() for p in asr.parameters()]
    brain = GRBrain(
        modules={"enhancer": enh, "asr": asr},
        opt_class=lambda p: torch.optim.SGD(p, lr=1.0),
        hparams={
            "rule": "GR",
            "surgery_rule": spy,
            "se_loss": MagnitudeLoss(64, 32),
            "se_weight": lam,
        },
        run_opts={"max_grad_norm": 0.0, "device": "cpu"},
    )
    brain.fit(
        range(1),
        [batch],
        train_loader_kwargs={"batch_size": 1, "collate_fn": lambda b: b[0]},
    )
    ((g_main, g_aux, segments),) = spy.calls
    n_enh = sum(p.numel() for p in enh.parameters())
    assert g_main.numel() == g_aux.numel() == n_enh
    assert segments.tolist() == [p.numel() for p in enh.parameters()]
    assert float(g_aux.norm()) > 0 and float(g_main.norm()) > 0
    for p, b in zip(enh.parameters(), before_enh, strict=True):
        torch.testing.assert_close(p.detach(), b)
    moved = 0
    for p, b, g in zip(asr.parameters(), before_asr, grads, strict=True):
        torch.testing.assert_close(p.detach(), b - g, atol=1e-5, rtol=1e-4)
        moved += int(g.abs().sum() > 0)
    assert moved > 10
    assert brain.rule_name == "GR" and brain.optimizer_step == 1


def test_grbrain_logs_angle_ratio_and_cosine(stream, tmp_path):
    enh, asr = tiny_models()
    train_joint_stage(
        "GR",
        enh,
        asr,
        stream,
        stream,
        folder=tmp_path / "GR",
        epochs=1,
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
        se_loss=MagnitudeLoss(64, 32),
        tokenizer=Chars(),
        train_loader_kwargs={"batch_size": 2},
        valid_loader_kwargs={"batch_size": 2},
        extra_hparams={"max_grad_norm": 5.0},
    )
    with open(tmp_path / "GR" / "surgery_log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2  # 4 utterances, batch 2
    for key in (
        "angle_deg",
        "ratio",
        "cos",
        "pre_angle_deg",
        "pre_ratio",
        "pre_cos",
        "conflict",
        "rescaled",
        "gnorm_asr",
        "gnorm_se",
    ):
        values = [float(r[key]) for r in rows]
        assert all(np.isfinite(values)), key
    assert all(0.0 <= float(r["pre_angle_deg"]) <= 180.0 for r in rows)
    assert (tmp_path / "GR" / "train_log.txt").read_text().count("WER") == 1


def test_grbrain_se_only_and_bad_configuration(stream, tmp_path):
    enh, asr = tiny_models()
    before = [p.detach().clone() for p in enh.parameters()]
    brain = train_joint_stage(
        "MTL",
        enh,
        None,
        stream,
        None,
        folder=tmp_path / "SE",
        epochs=1,
        opt_class=lambda p: torch.optim.Adam(p, lr=1e-2),
        se_loss=MagnitudeLoss(64, 32),
        losses=("se",),
        train_loader_kwargs={"batch_size": 4},
    )
    assert "asr" not in brain.modules
    assert any(
        not torch.equal(p, b)
        for p, b in zip(enh.parameters(), before, strict=True)
    )
    with pytest.raises(ValueError, match="missing \\['asr'\\]"):
        GRBrain(modules={"enhancer": enh}, hparams={"se_loss": Sum()})
    with pytest.raises(ValueError, match="unknown GR rule 'SUM'"):
        GRBrain(
            modules={"enhancer": enh, "asr": asr},
            hparams={"rule": "SUM", "se_loss": Sum()},
        )
    with pytest.raises(ValueError, match="se_weight"):
        GRBrain(
            modules={"enhancer": enh, "asr": asr},
            hparams={"se_weight": 1.5, "se_loss": Sum()},
        )
    with pytest.raises(ValueError, match="se_loss"):
        GRBrain(modules={"enhancer": enh, "asr": asr}, hparams={})


def test_run_rules_starts_every_rule_from_the_same_models():
    enh, asr = tiny_models()
    seen = []

    def stage(rule, e, a):
        seen.append((rule, [p.detach().clone() for p in e.parameters()]))
        with torch.no_grad():
            for p in e.parameters():
                p.add_(1.0)  # training changes the copy only

    out = run_rules(["MTL", "gr"], enh, asr, stage, seed=3)
    assert list(out) == ["MTL", "GR"]
    for _, params in seen:
        for p, q in zip(params, enh.parameters(), strict=True):
            assert torch.equal(p, q)
    assert out["MTL"][0] is not enh and out["MTL"][1] is not asr
    with pytest.raises(ValueError, match="twice"):
        run_rules(["GR", "gr"], enh, asr, stage)


def test_gr_table_relative_reduction():
    rows = [
        dict(system=s, recogniser="rec", sub=e, ins=0, n_ref=20, **{"del": 0})
        for s, e in (("MTL", 10), ("GR", 8), ("PCGrad", 12))
    ]
    table = gr_table(rows, ["MTL", "PCGrad", "GR"])
    assert "| GR | 40.0 | 20.0 |" in table
    assert "| PCGrad | 60.0 | -20.0 |" in table


def test_asr_statistics_learnt_from_scratch_without_the_graph(stream, tmp_path):
    """From scratch (``update_asr_normalizer``) the ASR's global feature
    statistics are learnt from the DETACHED enhanced features: training
    several steps works (SpeechBrain's normalizer would otherwise keep the
    previous step's graph) and no statistic carries a gradient; without
    the flag, an ASR without statistics is refused."""
    torch.manual_seed(0)
    enh, _ = tiny_models()
    asr = tiny_asr(normalize=True)
    kwargs = {
        "epochs": 1,
        "opt_class": lambda p: torch.optim.Adam(p, lr=1e-3),
        "se_loss": MagnitudeLoss(64, 32),
        "train_loader_kwargs": {"batch_size": 1},
    }
    with pytest.raises(ValueError, match="update_asr_normalizer"):
        train_joint_stage(
            "GR", enh, asr, stream, None, folder=tmp_path / "refused", **kwargs
        )
    brain = train_joint_stage(
        "GR",
        enh,
        asr,
        stream,
        None,
        folder=tmp_path / "GR",
        update_asr_normalizer=True,
        **kwargs,
    )
    assert brain.optimizer_step == 4
    assert asr.normalizer.count > 0
    assert not asr.normalizer.glob_mean.requires_grad
    assert not asr.normalizer.glob_std.requires_grad


# ------------------------------------------------------ the recipe driver
@pytest.mark.parametrize(
    "stages, pretrained, asr_calls, se_calls, systems",
    [
        # MiniNoisy: both pre-trained, everything trains
        (
            ["asr", "se", "joint"],
            ["asr", "se"],
            [True],
            [True],
            ["INIT", "MTL", "GR"],
        ),
        # MiniNoisy, joint only: the pre-trained parts are reloaded
        (["joint"], ["asr", "se"], [False], [False], ["INIT", "MTL", "GR"]),
        # CHiME-4 default: from scratch, no pre-training stage at all
        (["joint", "evaluate"], [], [], [], ["MTL", "GR"]),
        # CHiME-4 with an ASR pre-training: no INIT pair (SE is random)
        (["asr", "joint"], [], [True], [], ["MTL", "GR"]),
        # pre-training only
        (["asr", "se"], [], [True], [True], ["INIT"]),
    ],
)
def test_train_gr_systems_follows_stages_and_pretrained(
    monkeypatch, stages, pretrained, asr_calls, se_calls, systems
):
    import robust_brain.pipelines.gr as gr

    calls = {"asr": [], "se": [], "joint": []}

    def fake_asr(hparams, run_opts, data, tokenizer, train=True):
        calls["asr"].append(train)
        return torch.nn.Linear(1, 1)

    def fake_joint(hparams, run_opts, data, tok, rule, enh, asr, **kw):
        if kw.get("se_only"):
            calls["se"].append(kw["train"])
        else:
            calls["joint"].append(
                (rule, kw["train"], kw["asr_pretrained"], asr is not None)
            )

    monkeypatch.setattr(gr, "asr_stage_from_hparams", fake_asr)
    monkeypatch.setattr(gr, "joint_stage_from_hparams", fake_joint)
    hparams = {
        "stages": stages,
        "pretrained": pretrained,
        "rules": ["MTL", "GR"],
        "update_asr_normalizer": "auto",
        "asr": torch.nn.Linear(1, 1),
        "enhancer": torch.nn.Linear(1, 1),
        "eval_include_init": True,
        "seed": 3,
    }
    stages, rules = gr.check_gr_plan(hparams)
    out = gr.train_gr_systems(hparams, None, {}, None, stages, rules)
    assert calls["asr"] == asr_calls
    assert calls["se"] == se_calls
    assert list(out) == systems
    if "joint" in stages:
        asr_pre = "asr" in pretrained or "asr" in stages
        assert calls["joint"] == [
            (r, True, asr_pre, True) for r in ("MTL", "GR")
        ]
    else:
        assert calls["joint"] == []


@pytest.mark.parametrize(
    "published_se, systems",
    [
        (True, ["INIT", "MTL", "GR"]),
        (False, ["MTL", "GR"]),
    ],
)
def test_published_pair_is_an_init_system(monkeypatch, published_se, systems):
    """A recogniser with its own tokenizer (Whisper) and a front-end that
    arrives trained (``enhancer_pretrained``, DFN3) make INIT with no
    pre-training stage; a random front-end does not."""
    import robust_brain.pipelines.gr as gr

    monkeypatch.setattr(gr, "joint_stage_from_hparams", lambda *a, **k: None)
    hparams = {
        "stages": ["joint"],
        "pretrained": [],
        "rules": ["MTL", "GR"],
        "asr": torch.nn.Linear(1, 1),
        "tokenizer": object(),
        "enhancer": torch.nn.Linear(1, 1),
        "enhancer_pretrained": published_se,
        "seed": 3,
        "update_asr_normalizer": False,
        "eval_include_init": True,
    }
    stages, rules = gr.check_gr_plan(hparams)
    out = gr.train_gr_systems(hparams, None, {}, None, stages, rules)
    assert list(out) == systems


@pytest.mark.parametrize(
    "stages, written", [(["joint"], ["INIT", "GR"]), (["evaluate"], [])]
)
def test_trained_front_ends_load_with_from_hparams(tmp_path, stages, written):
    """Each trained system's front-end is a SpeechBrain pretrained folder
    that enhances as the trained module did (inputs at the evaluation's
    level); an evaluate-only run writes nothing."""
    from robust_brain.inference import Enhancer, LevelNormalizedEnhancer
    from robust_brain.pipelines.gr import write_frontends

    torch.manual_seed(0)
    systems = {
        name: (
            MaskNet(
                n_fft=64,
                hop_length=16,
                num_layers=1,
                hidden_size=4,
                mask="sigmoid",
            ).eval(),
            torch.nn.Linear(1, 1),
        )
        for name in ("INIT", "GR")
    }
    hparams = {
        "save_folder": str(tmp_path),
        "sample_rate": 16000,
        "eval_input_level_dbfs": -25.0,
        "seed": 1,
    }
    folders = write_frontends(hparams, systems, stages)
    assert [f.name for f in folders] == written
    assert (tmp_path / "pretrained").exists() == bool(written)
    x = 0.3 * torch.randn(2, 1600)
    for folder in folders:
        loaded = Enhancer.from_hparams(source=str(folder))
        with torch.no_grad():
            expected = LevelNormalizedEnhancer(systems[folder.name][0], -25.0)(
                x, torch.ones(2)
            )
        torch.testing.assert_close(
            loaded.enhance_batch(x), expected, atol=1e-5, rtol=1e-4
        )


@pytest.mark.parametrize(
    "key, value, match",
    [
        ("stages", ["asr", "decode"], "stages: unknown"),
        ("pretrained", ["lm"], "pretrained: unknown"),
        ("rules", ["GR", "Adam"], "unknown GR rule"),
        ("update_asr_normalizer", "yes", "update_asr_normalizer"),
    ],
)
def test_check_gr_plan_names_the_culprit(key, value, match):
    from robust_brain.pipelines.gr import check_gr_plan

    hparams = {
        "stages": ["joint"],
        "pretrained": [],
        "rules": ["GR"],
        "update_asr_normalizer": False,
        key: value,
    }
    with pytest.raises(ValueError, match=match):
        check_gr_plan(hparams)


def test_pcgrad_per_tensor_hparam_reaches_the_rule():
    enh = MaskNet(n_fft=64, hop_length=32, num_layers=1, hidden_size=4)
    brains = {
        flag: GRBrain(
            modules={"enhancer": enh},
            opt_class=lambda p: torch.optim.SGD(p, lr=0.01),
            hparams={
                "rule": "PCGrad",
                "joint_losses": ["se"],
                "se_loss": MagnitudeLoss(64, 32),
                "pcgrad_per_tensor": flag,
            },
        )
        for flag in (False, True)
    }
    assert brains[True].hparams.surgery_rule.rule.per_tensor
    assert not brains[False].hparams.surgery_rule.rule.per_tensor


def test_8khz_systems_see_8khz_signals_and_return_16khz():
    """RATS: the evaluation reads 16 kHz; an 8 kHz system must get its
    input at 8 kHz (own decoding and unseen path) and hand 16 kHz back."""
    from robust_brain.evaluation.joint import JointRecogniser
    from robust_brain.models.frontends import ResampledEnhancer

    seen = []

    class Probe(torch.nn.Module):
        def forward(self, wavs, lens):
            seen.append(wavs.shape[-1])
            return wavs

    asr = tiny_asr(vocab_size=5, sample_rate=8000)

    class Chars:
        def decode_ids(self, ids):
            return "".join("abcde"[i] for i in ids)

    rec = JointRecogniser(Probe(), asr, Chars(), "GR", sample_rate=8000)
    rec.transcribe([np.ones(3200, np.float32) / 9])
    assert seen == [1600]
    rec16 = JointRecogniser(Probe(), asr, Chars(), "GR")
    assert rec16.fingerprint != rec.fingerprint  # the rate is in the cache key
    out = ResampledEnhancer(Probe(), 8000)(torch.ones(2, 3201), torch.ones(2))
    assert seen[-1] == 1601 and out.shape == (2, 3201)


def test_split_streams_read_audio_under_data_root(tmp_path):
    """RATS with ``audio_root``: the manifests' ``$data_root`` is the audio
    root, not ``data_folder``; training must find the files there."""
    from robust_brain.data.prepare import prepare_rats
    from robust_brain.pipelines.gr import split_streams

    root, audio = tmp_path / "espnet", tmp_path / "audio"
    for split in ("train", "valid"):
        folder = root / f"data/rats_Ach_waveform_8k_joint_enh_asr_{split}"
        folder.mkdir(parents=True)
        for kind in ("n", "c"):
            (audio / split).mkdir(parents=True, exist_ok=True)
            sf.write(audio / split / f"{kind}.wav", np.ones(800) * 0.1, 8000)
        (folder / "wav.scp").write_text(f"u {split}/n.wav\n")
        (folder / "spk1.scp").write_text(f"u {split}/c.wav\n")
        (folder / "text_spk1").write_text("u HELLO\n")
    paths = prepare_rats(
        root, tmp_path / "save", splits=["train", "valid"], audio_root=audio
    )

    class Chars:
        def encode_as_ids(self, text):
            return [1 + ord(c) % 5 for c in text]

    hparams = {
        "data_folder": str(root),
        "train_splits": ["train"],
        "valid_splits": ["valid"],
        "valid_max_utterances": None,
    }
    data = split_streams(hparams, paths, Chars(), data_root=str(audio))
    item = data["train"][0]
    assert item["noisy"].numel() == 800 and item["wrd"] == "HELLO"
    assert len(data["asr_train"]) == 2
    with pytest.raises(Exception, match="n.wav"):
        split_streams(hparams, paths, Chars())["train"][0]


def test_stage_trained_with_other_settings_is_refused(stream, tmp_path):
    """A PCGrad folder trained whole-vector must not be resumed or reloaded
    as the per-tensor variant (same folder name, other method)."""

    def run(per_tensor, epochs=1):
        enh, asr = tiny_models()
        return train_joint_stage(
            "PCGrad",
            enh,
            asr,
            stream,
            stream,
            folder=tmp_path / "PCGrad",
            epochs=epochs,
            opt_class=lambda p: torch.optim.Adam(p, lr=1e-3),
            se_loss=MagnitudeLoss(64, 32),
            train_loader_kwargs={"batch_size": 4},
            valid_loader_kwargs={"batch_size": 4},
            extra_hparams={"pcgrad_per_tensor": per_tensor},
        )

    run(False)
    run(False, epochs=0)  # same settings: reloads
    with pytest.raises(ValueError, match="pcgrad_per_tensor=False, now"):
        run(True, epochs=0)
    with pytest.raises(ValueError, match="another output folder"):
        run(True)
