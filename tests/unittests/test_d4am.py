"""D4AMBrain: each mode's combination, the frozen proxy, the two streams."""

import copy
import csv
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch
from ruamel.yaml import YAML

from robust_brain.data.streams import (
    NoiseCorruptor,
    PairedStreams,
    SpeechStream,
    TokenEncoder,
)
from robust_brain.evaluation.tables import wer_table
from robust_brain.losses import D4AMRegressionLoss
from robust_brain.methods.d4am import (
    MODES,
    D4AMBrain,
    make_mode_rule,
    make_train_set,
    mode_losses,
)
from robust_brain.models.asr import ConformerASR, freeze
from robust_brain.models.demucs import Demucs
from robust_brain.pipelines.d4am import train_enhancer_stage
from robust_brain.surgery import (
    D4AM,
    GCLB,
    SRPR,
    Sum,
    Weighted,
    langevin_noise,
)

SR = 16000


class Chars:
    def encode_as_ids(self, text):
        return [3 + (ord(c) - 65) % 9 for c in text if c != " "]

    def decode_ids(self, ids):
        return " ".join(chr(62 + i) for i in ids)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("d4am")
    rng = np.random.default_rng(0)
    asr_rows, se_rows, noise_rows, valid_rows = [], [], [], []
    for i in range(4):
        n = 4000 + 400 * i
        sig = 0.1 * np.sin(2 * np.pi * (150 + 40 * i) * np.arange(n) / SR)
        sf.write(d / f"a{i}.wav", sig, SR)
        asr_rows.append(
            {
                "ID": f"a{i}",
                "wav": str(d / f"a{i}.wav"),
                "duration": n / SR,
                "wrd": "ABC DE"[: 3 + i % 3],
            }
        )
        sf.write(d / f"s{i}.wav", np.roll(sig, 7), SR)
        se_rows.append(
            {"ID": f"s{i}", "wav": str(d / f"s{i}.wav"), "duration": n / SR}
        )
        sf.write(d / f"v{i}.wav", sig + 0.01 * rng.normal(size=n), SR)
        valid_rows.append(
            {
                "ID": f"v{i}",
                "noisy_wav": str(d / f"v{i}.wav"),
                "clean_wav": str(d / f"a{i}.wav"),
                "duration": n / SR,
                "wrd": "ABC",
            }
        )
    sf.write(d / "noise.wav", rng.normal(size=8000), SR)
    noise_rows.append({"wav": str(d / "noise.wav"), "duration": 0.5})
    corrupt = NoiseCorruptor(noise_rows)
    text = TokenEncoder(Chars())
    return {
        "asr": SpeechStream(asr_rows, corrupt, text_pipeline=text, name="asr"),
        "se": SpeechStream(se_rows, corrupt, segment=(2000, 3000), name="se"),
        "valid": SpeechStream(valid_rows, text_pipeline=text, name="valid"),
    }


def make_proxy(seed=0):
    torch.manual_seed(seed)
    proxy = ConformerASR(
        vocab_size=12,
        d_model=16,
        nhead=2,
        num_encoder_layers=1,
        num_decoder_layers=1,
        d_ffn=32,
        cnn_channels=(4, 4),
        normalize=False,
        dropout=0.1,
    )
    return freeze(proxy)


def make_enhancer(seed=0):
    torch.manual_seed(seed)
    return Demucs(hidden=4, depth=2, resample=1)


class RaisingProxy(torch.nn.Module):
    """A proxy that must never be touched."""

    def __getattr__(self, name):
        if name in ("loss", "transcribe", "forward"):
            raise AssertionError(f"proxy.{name} used")
        return super().__getattr__(name)

    def loss(self, *args, **kwargs):
        raise AssertionError("proxy.loss called")

    def forward(self, *args, **kwargs):
        raise AssertionError("proxy called")

    def train(self, mode=True):
        raise AssertionError("proxy mode changed")

    def to(self, *args, **kwargs):
        raise AssertionError("proxy moved")


def brain_for(
    mode,
    data,
    proxy=None,
    enhancer=None,
    rule=None,
    lr=0.01,
    opt="sgd",
    **hparams,
):
    enhancer = enhancer if enhancer is not None else make_enhancer()

    def opt_class(params):
        if opt == "sgd":
            return torch.optim.SGD(params, lr=lr)
        return torch.optim.Adam(params, lr=lr)

    brain = D4AMBrain(
        modules={"enhancer": enhancer},
        opt_class=opt_class,
        hparams={
            "mode": mode,
            "proxy": proxy,
            "regression_loss": D4AMRegressionLoss(),
            "reg_stream_weight": 0.5,
            "surgery_rule": rule,
            **hparams,
        },
        run_opts={"device": "cpu", "max_grad_norm": 0.0},
    )
    return brain


def fit(brain, train_set, valid_set=None, epochs=1, batch_size=2):
    brain.fit(
        range(1, epochs + 1),
        train_set,
        valid_set,
        train_loader_kwargs={"batch_size": batch_size, "shuffle": False},
        valid_loader_kwargs={"batch_size": batch_size},
    )


def params_of(module):
    return torch.cat([p.detach().reshape(-1) for p in module.parameters()])


def test_modes_and_rules():
    assert MODES == ("INIT", "CLSO", "GCLB", "SRPR", "GRID", "D4AM")
    assert isinstance(make_mode_rule("INIT"), Sum)
    assert isinstance(make_mode_rule("CLSO"), Sum)
    assert isinstance(make_mode_rule("GCLB"), GCLB)
    assert isinstance(make_mode_rule("SRPR"), SRPR)
    assert type(make_mode_rule("D4AM")) is D4AM
    grid = make_mode_rule("GRID", grid_alpha=0.25)
    assert isinstance(grid, Weighted) and grid.linear_weights == (1.0, 0.25)
    rule = make_mode_rule("d4am", langevin=True, num_samples=7, srpr_init=0.5)
    assert rule.langevin and rule.num_samples == 7
    assert float(rule.weighter.alpha) == 0.5
    assert not make_mode_rule("GCLB").needs_lr
    with pytest.raises(ValueError, match="unknown D4AM mode"):
        make_mode_rule("PCGRAD")
    assert mode_losses("GRID") == ("cls", "reg")


def test_init_never_touches_the_proxy(data):
    train = make_train_set("INIT", data["asr"], data["se"])
    assert train.se is data["se"]
    brain = brain_for("INIT", data, proxy=RaisingProxy())
    before = params_of(brain.modules.enhancer)
    fit(brain, train, data["valid"], epochs=2)
    assert not torch.equal(before, params_of(brain.modules.enhancer))
    assert set(brain.surgery_stats) >= {"loss_reg"}
    assert "loss_cls" not in brain.surgery_stats
    assert "WER" not in brain.last_stats and "cls" not in str(brain.last_stats)
    # INIT needs no proxy at all
    fit(brain_for("INIT", data, proxy=None), train, data["valid"])


def test_clso_never_loads_the_speech_only_stream(data):
    class Exploding(SpeechStream):
        def load(self, index, key):
            raise AssertionError("speech-only stream read")

        def set_epoch(self, epoch):
            raise AssertionError("speech-only stream touched")

    bomb = Exploding(data["se"].rows, data["se"].corruptor, segment=(10, 20))
    train = make_train_set("CLSO", data["asr"], bomb)
    assert train.se is None
    proxy = make_proxy()
    brain = brain_for("CLSO", data, proxy=proxy)
    before = params_of(brain.modules.enhancer)
    fit(brain, train, data["valid"], epochs=2)
    assert not torch.equal(before, params_of(brain.modules.enhancer))
    assert "loss_reg" not in brain.surgery_stats
    assert "loss_cls" in brain.surgery_stats
    # the other modes do need it
    with pytest.raises(ValueError, match="needs the speech-only stream"):
        fit(brain_for("D4AM", data, proxy=proxy), train)


def test_grid_equals_plain_weighted_sum_backward(data):
    alpha, lr = 0.3, 0.05
    proxy = make_proxy()
    train = make_train_set("GRID", data["asr"], data["se"])
    enhancer = make_enhancer()
    ref = copy.deepcopy(enhancer)
    brain = brain_for(
        "GRID",
        data,
        proxy=proxy,
        enhancer=enhancer,
        rule=make_mode_rule("GRID", grid_alpha=alpha),
        lr=lr,
    )
    # one step on the first batch
    batch = PairedStreams.collate([train[0], train[1]])
    brain.fit(range(1, 2), [batch], train_loader_kwargs={"batch_size": None})

    reg_loss = D4AMRegressionLoss()
    (a_wav, a_len), (a_clean, _) = batch.asr.noisy, batch.asr.clean
    (s_wav, s_len), (s_clean, _) = batch.se.noisy, batch.se.clean
    tokens, token_lens = batch.asr.tokens
    enh_a, enh_s = ref(a_wav, a_len), ref(s_wav, s_len)
    loss = proxy.loss(enh_a, a_len, tokens, token_lens) + alpha * (
        0.5 * reg_loss(enh_s, s_clean, s_len)
        + 0.5 * reg_loss(enh_a, a_clean, a_len)
    )
    loss.backward()
    with torch.no_grad():
        for p in ref.parameters():
            p -= lr * p.grad
    assert torch.allclose(
        params_of(brain.modules.enhancer), params_of(ref), atol=1e-6
    )
    assert all(p.grad is None for p in proxy.parameters())


def test_d4am_logs_alphas_norms_and_cosine(data, tmp_path):
    proxy = make_proxy()
    train = make_train_set("D4AM", data["asr"], data["se"])
    log = tmp_path / "log.csv"
    brain = brain_for(
        "D4AM",
        data,
        proxy=proxy,
        surgery_log_file=str(log),
        rule=make_mode_rule(
            "D4AM", langevin=True, num_samples=len(data["se"]), srpr_window=1
        ),
        tokenizer=Chars(),
        opt="adam",
        lr=1e-4,
    )
    fit(brain, train, data["valid"], epochs=2)
    expected = {
        "alpha_gclb",
        "alpha_srpr",
        "cos",
        "gnorm_cls",
        "gnorm_reg",
        "loss_cls",
        "loss_reg",
    }
    assert expected <= set(brain.surgery_stats)
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and expected <= set(rows[0])
    assert brain.optimizer_step == 4
    srpr = [float(r["alpha_srpr"]) for r in rows]
    assert srpr[0] == 1.0 and len(set(srpr)) > 1  # updated every step
    assert "WER" in brain.last_stats  # free-running greedy CTC of the proxy
    summary = brain.train_stats
    assert {"alpha_gclb", "alpha_srpr", "cos"} <= set(summary)


@pytest.mark.parametrize("mode", ["GCLB", "SRPR", "D4AM", "CLSO", "GRID"])
def test_frozen_proxy_stays_frozen_and_in_eval(mode, data):
    proxy = make_proxy()
    seen = []
    original = proxy.loss

    def spy(*args, **kwargs):
        seen.append((proxy.training, any(m.training for m in proxy.modules())))
        return original(*args, **kwargs)

    proxy.loss = spy
    proxy_before = params_of(proxy)
    train = make_train_set(mode, data["asr"], data["se"])
    brain = brain_for(mode, data, proxy=proxy)
    before = params_of(brain.modules.enhancer)
    fit(brain, train, data["valid"], epochs=2)
    assert seen and not any(t or any_t for t, any_t in seen)
    assert torch.equal(proxy_before, params_of(proxy))
    assert all(
        not p.requires_grad and p.grad is None for p in proxy.parameters()
    )
    assert not torch.equal(before, params_of(brain.modules.enhancer))


def test_proxy_gradient_reaches_the_enhancer(data):
    """CLSO: the only gradient is the proxy's, through its input."""
    proxy = make_proxy()
    train = make_train_set("CLSO", data["asr"], data["se"])
    enhancer = make_enhancer()
    brain = brain_for("CLSO", data, proxy=proxy, enhancer=enhancer)
    batch = PairedStreams.collate([train[0], train[1]])
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    losses = brain.compute_objectives(out, batch, sb.Stage.TRAIN)
    assert set(losses) == {"cls"}
    losses["cls"].backward()
    grads = [p.grad for p in enhancer.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(p.grad is None for p in proxy.parameters())


def test_a_proxy_built_with_freeze_true_is_refused():
    """A wrapper built with freeze=True runs under no_grad: the
    classification loss would train nothing, so the Brain refuses it."""
    from speechbrain.integrations.huggingface.huggingface import (
        HFTransformersInterface,
    )

    class FrozenWrapper(HFTransformersInterface):
        def __init__(self):  # no hub download: only what the check reads
            torch.nn.Module.__init__(self)
            self.freeze = True

    proxy = make_proxy()
    proxy.hub_encoder = FrozenWrapper()
    with pytest.raises(ValueError, match="proxy: FrozenWrapper was built"):
        brain_for("D4AM", None, proxy=proxy)
    brain_for("INIT", None, proxy=proxy)  # INIT never uses the proxy


def test_modes_need_a_proxy():
    with pytest.raises(ValueError, match="needs a proxy"):
        D4AMBrain(
            modules={"enhancer": make_enhancer()},
            hparams={"mode": "D4AM"},
            run_opts={"device": "cpu"},
        )


def test_stage_resumes_and_reloads(data, tmp_path):
    proxy = make_proxy()
    train = make_train_set("GCLB", data["asr"], data["se"])
    kwargs = {
        "folder": tmp_path / "GCLB",
        "opt_class": lambda p: torch.optim.Adam(p, lr=1e-3),
        "run_opts": {"device": "cpu"},
        "proxy": proxy,
        "regression_loss": D4AMRegressionLoss(),
        "train_loader_kwargs": {"batch_size": 2},
        "valid_loader_kwargs": {"batch_size": 2},
    }
    enh = make_enhancer()
    train_enhancer_stage("GCLB", enh, train, data["valid"], epochs=1, **kwargs)
    trained = params_of(enh)
    assert (tmp_path / "GCLB" / "surgery.png").exists()
    # reload only (no training): same weights into a fresh model
    fresh = make_enhancer(seed=3)
    train_enhancer_stage(
        "GCLB", fresh, train, data["valid"], epochs=0, **kwargs
    )
    assert torch.equal(params_of(fresh), trained)
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        train_enhancer_stage(
            "GCLB",
            make_enhancer(),
            train,
            data["valid"],
            epochs=0,
            **{**kwargs, "folder": tmp_path / "x"},
        )


def test_wer_table_pools_groups():
    rows = [
        dict(
            system=s,
            recogniser=r,
            condition=c,
            sub=e,
            ins=0,
            n_ref=10,
            **{"del": 0},
        )
        for s, e in (("NOIS", 5), ("D4AM", 1))
        for r in ("w", "p")
        for c in ("pink_0dB", "pink_5dB", "clean")
    ]
    table = wer_table(rows, ["NOIS", "D4AM"], n_seeds=2)
    assert "2 seed(s)" in table
    head = table.splitlines()[2]
    assert "w pink" in head and "w clean" in head and "p mean" in head
    assert "| D4AM | 10.0 | 10.0 | 10.0 | 10.0 |" in table


def test_wav2vec2_ctc_proxy_through_speechbrain_wrapper(data, tmp_path):
    """Swapping the proxy: a (tiny, local) wav2vec2 CTC recogniser loaded
    by SpeechBrain's real wrapper, frozen but differentiable."""
    from speechbrain.integrations.huggingface.wav2vec2 import Wav2Vec2

    from robust_brain.models.asr import CTCProxy
    from robust_brain.tiny_models import tiny_model_path

    torch.manual_seed(0)
    encoder = Wav2Vec2(
        source=str(tiny_model_path("wav2vec2")),
        save_path=str(tmp_path / "w2v"),
        freeze=False,
        freeze_feature_extractor=False,
        output_norm=False,
        apply_spec_augment=False,
    )
    proxy = freeze(CTCProxy(encoder, torch.nn.Linear(32, 12)))
    train = make_train_set("D4AM", data["asr"], data["se"])
    brain = brain_for("D4AM", data, proxy=proxy, tokenizer=Chars())
    before = params_of(brain.modules.enhancer)
    fit(brain, train, data["valid"], epochs=1)
    assert not torch.equal(before, params_of(brain.modules.enhancer))
    assert all(p.grad is None for p in proxy.parameters())
    assert not proxy.training and "WER" in brain.last_stats
    assert brain.surgery_stats["gnorm_cls"] > 0


def test_run_modes_picks_grid_alpha_on_validation(tmp_path):
    """GRID's reported alpha is the lowest VALIDATION proxy WER; the other
    modes start from copies of INIT, which stays untouched."""
    import json

    from robust_brain.pipelines.d4am import run_modes

    wers = {0.1: 60.0, 1.0: 40.0, 10.0: 50.0}
    calls = []

    class FakeBrain:
        def __init__(self, alpha):
            self.alpha = alpha

        def evaluate(self, valid_set, test_loader_kwargs, progressbar):
            self.last_stats = {"loss": 1.0, "WER": wers[self.alpha]}

    def train_stage(mode, name, enhancer, grid_alpha):
        calls.append((mode, name, grid_alpha))
        with torch.no_grad():
            next(enhancer.parameters()).add_(1.0)
        return FakeBrain(grid_alpha)

    init = make_enhancer()
    before = params_of(init)
    systems = run_modes(
        ["CLSO", "GRID", "D4AM"],
        [0.1, 1.0, 10.0],
        init,
        train_stage,
        valid_set=None,
        selection_file=tmp_path / "grid.json",
    )
    assert torch.equal(params_of(init), before)
    assert [c[1] for c in calls] == [
        "CLSO",
        "GRID_0.1",
        "GRID_1",
        "GRID_10",
        "D4AM",
    ]
    assert systems["GRID"] is systems["GRID_1"]
    assert list(systems)[:3] == ["CLSO", "D4AM", "GRID"]
    summary = json.loads((tmp_path / "grid.json").read_text())
    assert summary["selected"] == "GRID_1"
    assert summary["selected_by"] == "validation proxy WER"
    with pytest.raises(ValueError, match="not a fine-tuning mode"):
        run_modes(["INIT"], [], init, train_stage, None)


def test_run_modes_fine_tunes_at_the_dry_value():
    """mode_dry: each mode is TRAINED at the dry/wet value (the stage sees
    it already set) and keeps it; INIT stays fully wet; an enhancer
    without the knob is refused by name."""
    from robust_brain.pipelines.d4am import run_modes

    seen = {}

    def train_stage(mode, name, enhancer, grid_alpha):
        seen[name] = enhancer.dry
        return None

    init = make_enhancer()
    systems = run_modes(["CLSO", "D4AM"], [], init, train_stage, None, dry=0.5)
    assert seen == {"CLSO": 0.5, "D4AM": 0.5}
    assert systems["D4AM"].dry == 0.5 and init.dry == 0.0
    with pytest.raises(ValueError, match="Linear has no dry/wet knob"):
        run_modes(["CLSO"], [], torch.nn.Linear(2, 2), train_stage, None, dry=1)


@pytest.mark.parametrize("mode", ["GCLB", "SRPR", "D4AM"])
def test_surgery_modes_equal_their_formula(mode, data):
    """One SGD step of GCLB / SRPR / D4AM (no noise) equals the update
    computed by hand from the two task gradients (docs/methods.md)."""
    lr = 0.05
    proxy = make_proxy()
    train = make_train_set(mode, data["asr"], data["se"])
    enhancer = make_enhancer()
    ref = copy.deepcopy(enhancer)
    brain = brain_for(
        mode,
        data,
        proxy=proxy,
        enhancer=enhancer,
        rule=make_mode_rule(mode, langevin=False),
        lr=lr,
    )
    batch = PairedStreams.collate([train[2], train[3]])
    brain.fit(range(1, 2), [batch], train_loader_kwargs={"batch_size": None})

    reg_loss = D4AMRegressionLoss()
    (a_wav, a_len), (a_clean, _) = batch.asr.noisy, batch.asr.clean
    (s_wav, s_len), (s_clean, _) = batch.se.noisy, batch.se.clean
    tokens, token_lens = batch.asr.tokens
    params = list(ref.parameters())
    enh_a, enh_s = ref(a_wav, a_len), ref(s_wav, s_len)
    cls = proxy.loss(enh_a, a_len, tokens, token_lens)
    reg = 0.5 * reg_loss(enh_s, s_clean, s_len) + 0.5 * reg_loss(
        enh_a, a_clean, a_len
    )
    g_c = torch.cat(
        [
            g.reshape(-1)
            for g in torch.autograd.grad(cls, params, retain_graph=True)
        ]
    )
    g_r = torch.cat([g.reshape(-1) for g in torch.autograd.grad(reg, params)])
    dot = float(g_c @ g_r)
    alpha_gclb = max(0.0, -dot / float(g_r @ g_r))
    alpha_srpr = 1.0  # initial value, updated after the step
    coef = {
        "GCLB": alpha_gclb,
        "SRPR": alpha_srpr,
        "D4AM": alpha_gclb + alpha_srpr,
    }[mode]
    step = g_c + coef * g_r
    expected = torch.cat([p.detach().reshape(-1) for p in params]) - lr * step
    assert torch.allclose(
        params_of(brain.modules.enhancer), expected, atol=1e-6
    )
    assert brain.surgery_stats["alpha_gclb"] == pytest.approx(
        alpha_gclb, rel=1e-4, abs=1e-7
    )


def test_init_stage_uses_init_regression_loss(monkeypatch, tmp_path):
    """INIT pre-trains with ``init_regression_loss``; the modes fine-tune
    with ``regression_loss`` (and their own epochs / optimizer)."""
    from robust_brain.pipelines import d4am

    seen = {}

    def fake_stage(mode, enhancer, train_set, valid_set, **kw):
        seen[mode] = kw
        return None

    monkeypatch.setattr(d4am, "train_enhancer_stage", fake_stage)
    monkeypatch.setattr(d4am, "make_train_set", lambda *a, **k: None)
    init_loss, mode_loss = object(), object()
    hparams = {
        "seed": 1,
        "save_folder": str(tmp_path),
        "init_epochs": 7,
        "init_opt_class": "init-opt",
        "init_regression_loss": init_loss,
        "mode_epochs": 2,
        "opt_class": "mode-opt",
        "regression_loss": mode_loss,
        "reg_stream_weight": 0.5,
        "langevin": False,
        "langevin_num_samples": 10,
        "srpr_init": 1.0,
        "srpr_beta": 0.05,
        "srpr_window": 8,
        "ckpt_selection": "last",
        "max_grad_norm": 1.0,
        "grad_accumulation_factor": 1,
    }
    data = {"asr": None, "se": None, "valid": None}
    for mode in ("INIT", "D4AM"):
        d4am.enhancer_stage_from_hparams(
            hparams, {}, data, mode, mode, None, "proxy", "tok", lambda s: {}
        )
    assert seen["INIT"]["regression_loss"] is init_loss
    assert seen["INIT"]["epochs"] == 7
    assert seen["INIT"]["opt_class"] == "init-opt"
    assert seen["INIT"]["proxy"] is None
    assert seen["D4AM"]["regression_loss"] is mode_loss
    assert seen["D4AM"]["epochs"] == 2
    assert seen["D4AM"]["proxy"] == "proxy"
    assert seen["D4AM"]["folder"] == tmp_path / "D4AM"


def test_dfn3_recipe_keeps_langevin_noise_near_the_papers_scale():
    """At the CPU recipe's small lr and 200 speech-only files, N = the set's
    size made the noise 65x the paper's and swamp the task gradients; the
    recipe pins the paper's N. The noise's std per unit |g|^(1/2) must stay
    within 2x the paper's factor (lr 1e-4, N 250000: 0.028)."""
    root = Path(__file__).resolve().parents[2]
    text = (root / "hparams" / "d4am_dfn3_mini.yaml").read_text()
    # only the scalar settings (the file's !apply tags would build models)
    keys = ("lr", "langevin", "langevin_num_samples")
    lines = [ln for ln in text.splitlines() if ln.split(":")[0] in keys]
    hp = YAML(typ="safe").load("\n".join(lines))
    assert hp["langevin"] is True and hp["langevin_num_samples"]

    def factor(lr, n):
        torch.manual_seed(0)
        g = torch.ones(200_000)
        return (langevin_noise(g, lr=lr, num_samples=n) - g).std().item()

    paper = factor(1e-4, 250_000)
    assert paper == pytest.approx(0.028, rel=0.05)
    assert factor(hp["lr"], hp["langevin_num_samples"]) < 2 * paper
    # the failure this guards against: N = 200 speech-only files
    assert factor(hp["lr"], 200) > 50 * paper
