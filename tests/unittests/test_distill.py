"""Distillation (robust_brain.models.student, robust_brain.methods.distill):
GRL, losses, students, RobustDistiller's head, CDM setups, DAT."""

import json

import numpy as np
import pytest
import soundfile as sf
import speechbrain as sb
import torch

from robust_brain.distortions import DistortedSpeech, Distorter
from robust_brain.evaluation import probes as P
from robust_brain.evaluation.tables import distill_table
from robust_brain.methods import distill as D
from robust_brain.models.asr import ConformerASR
from robust_brain.models.demucs import count_parameters
from robust_brain.models.student import (
    DomainDiscriminator,
    EnhancementHead,
    GradientReversal,
    GradientReversalLayer,
    LayerTeacher,
    build_student,
    dann_lambda,
    distillation_loss,
    grad_reverse,
    masked_mean,
)
from robust_brain.pipelines import distill as DP

SR = 16000


# ----------------------------------------------------------------- GRL
@pytest.mark.parametrize("lam", [0.0, 0.3, 1.0, 2.5])
def test_grl_is_identity_forward_and_flips_and_scales_backward(lam):
    x = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(4, 3)
    y = grad_reverse(x, lam)
    assert torch.equal(y, x)
    (y * w).sum().backward()
    assert torch.allclose(x.grad, -lam * w)
    x.grad = None
    layer = GradientReversalLayer(lam)
    (layer(x) * w).sum().backward()
    assert torch.allclose(x.grad, -lam * w)


def test_grl_function_in_a_chain():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    y = GradientReversal.apply(x * 3, 0.5) ** 2  # d/dx = -0.5 * 2 * 3x * 3
    y.sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-9.0, -18.0]))


def test_dann_schedule():
    values = [dann_lambda(p / 10) for p in range(11)]
    assert values[0] == 0.0
    assert all(b > a for a, b in zip(values, values[1:], strict=False))
    assert abs(dann_lambda(1.0, lambda_max=0.5) - 0.5 * 0.999909) < 1e-6
    assert dann_lambda(7.0) == dann_lambda(1.0)  # clipped progress


# --------------------------------------------------------------- losses
def test_distillation_loss_values_and_mask():
    torch.manual_seed(0)
    t = torch.randn(2, 3, 6, 4)
    loss, parts = distillation_loss(t, t)
    assert float(parts["l1"]) == 0.0
    assert (
        abs(
            float(loss)
            - float(-torch.nn.functional.logsigmoid(torch.tensor(1.0)))
        )
        < 1e-6
    )
    p = t + 1.0
    loss, parts = distillation_loss(p, t, cos_weight=0.0)
    assert abs(float(loss) - 1.0) < 1e-6
    # frames past the relative length do not count
    p2 = p.clone()
    p2[1, :, 3:] += 100.0
    masked, _ = distillation_loss(p2, t, torch.tensor([1.0, 0.5]), 0.0)
    assert abs(float(masked) - 1.0) < 1e-5
    unmasked, _ = distillation_loss(p2, t, None, 0.0)
    assert float(unmasked) > 10


def test_masked_mean():
    x = torch.arange(8.0).view(2, 4, 1)
    out = masked_mean(x, torch.tensor([0.5, 1.0]))
    assert out.squeeze(-1).tolist() == [0.5, 5.5]


# ------------------------------------------------------------ students
def tiny_asr(layers=4, seed=0, normalize=False):
    torch.manual_seed(seed)
    return ConformerASR(
        vocab_size=8,
        d_model=16,
        nhead=2,
        d_ffn=16,
        num_encoder_layers=layers,
        num_decoder_layers=1,
        cnn_channels=(4, 4),
        normalize=normalize,
    )


def test_conformer_student_copies_the_teacher_and_its_size():
    asr = tiny_asr()
    teacher = LayerTeacher(asr)
    student = build_student(teacher, [2, 4], num_layers=2)
    assert student.copied
    t_layer = asr.transformer.encoder.layers[1]
    s_layer = student.layers[1]
    for (n, a), (_, b) in zip(
        t_layer.state_dict().items(), s_layer.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), n
    # the copy is independent of the teacher
    next(student.layers.parameters()).data.add_(1.0)
    assert not torch.equal(
        next(student.layers.parameters()), next(t_layer.parameters())
    )
    # two layers + heads < teacher encoder (4 layers)
    assert count_parameters(student) < P.teacher_encoder_parameters(teacher)
    fresh = build_student(teacher, [2, 4], init_from_teacher=False)
    a = dict(fresh.layers.named_parameters())
    b = dict(asr.transformer.encoder.layers[:2].named_parameters())
    assert any(not torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="outside 1..4"):
        build_student(teacher, [2, 5])


def test_conformer_student_as_a_pretrained_folder(tmp_path):
    """The offline student is written with the teacher's shape and its
    feature statistics: the loaded encoder gives the same features,
    although it is rebuilt around an untrained, statistics-free teacher."""
    from robust_brain.inference import StudentEncoder, write_student

    asr = tiny_asr(layers=3, normalize=True)
    asr.normalizer.glob_mean = torch.randn(80)
    asr.normalizer.glob_std = torch.rand(80) + 0.5
    student = build_student(LayerTeacher(asr), [2, 3], num_layers=2).eval()
    assert student.feat_mean is not None
    folder = write_student(tmp_path / "student", student)
    encoder = StudentEncoder.from_hparams(source=str(folder))
    loaded = encoder.mods.student
    assert torch.equal(loaded.feat_mean, student.feat_mean)
    wav, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.75])
    want = student.features(wav, lens)
    assert torch.allclose(encoder.encode_batch(wav, lens), want, atol=1e-5)
    # without its statistics the features would differ: the check can fail
    loaded.feat_mean = None
    loaded.feat_std = None
    assert not torch.allclose(encoder.encode_batch(wav, lens), want, atol=1e-3)


def test_teacher_is_frozen_and_stays_in_eval():
    teacher = LayerTeacher(tiny_asr())
    teacher.train()
    assert not teacher.training and not teacher.model.training
    assert not any(p.requires_grad for p in teacher.parameters())
    wav = torch.randn(1, 8000, requires_grad=True)
    assert teacher(wav, torch.ones(1))[-1].grad_fn is None  # no_grad


def test_student_front_end_gradient_is_scaled():
    asr = tiny_asr()
    s1 = build_student(asr, [2], feature_grad_mult=1.0).eval()
    s2 = build_student(asr, [2], feature_grad_mult=0.1).eval()
    s2.load_state_dict(s1.state_dict())  # same (random) heads
    wav = torch.randn(2, 8000)
    for s in (s1, s2):
        s(wav, torch.ones(2))["preds"].pow(2).sum().backward()
    g1 = next(s1.cnn.parameters()).grad
    g2 = next(s2.cnn.parameters()).grad
    assert torch.allclose(g2, 0.1 * g1, rtol=1e-3, atol=1e-5)
    # layers after the front-end: unscaled
    assert torch.allclose(s1.heads.weight.grad, s2.heads.weight.grad, atol=1e-6)


# ------------------------------------------------------------- data set
@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("distill")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        t = np.arange(int(SR * 0.6)) / SR
        x = np.sin(2 * np.pi * (120 + 30 * i) * t) * (0.1 + rng.random())
        sf.write(d / f"u{i}.wav", x, SR)
        rows.append(
            {
                "ID": f"u{i}",
                "wav": str(d / f"u{i}.wav"),
                "wrd": ["THE CAT", "A DOG", "SHE RAN"][i % 3],
            }
        )
    return d, rows


def cdm_distorter():
    return Distorter(
        "double",
        additive=["gaussian", "none"],
        nonadditive=["simreverb", "bandreject", "none"],
        snr_range=(0.0, 5.0),
    )


def make_brain(cls, tmp_path, teacher, hp=None, modules=None, **kw):
    student = build_student(teacher, [2, 4], num_layers=2)
    modules = {"student": student, **(modules or {})}
    counter = sb.utils.epoch_loop.EpochCounter(2)
    ckpt = sb.utils.checkpoints.Checkpointer(
        tmp_path / "save", recoverables={"student": student}
    )
    hparams = {"teacher": teacher, "epoch_counter": counter, **(hp or {})}
    brain = cls(
        modules=modules,
        opt_class=lambda p: torch.optim.Adam(p, 1e-3),
        hparams=hparams,
        run_opts={"device": "cpu", **kw},
        checkpointer=ckpt,
    )
    return brain, counter


def params_of(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def changed(before, module):
    return [
        n for n, p in module.named_parameters() if not torch.equal(before[n], p)
    ]


def test_setup2_set_draws_different_distortions(corpus):
    _, rows = corpus
    hp = {
        "cdm_distorter": cdm_distorter(),
        "rd_distorter": None,
        "speech_level_dbfs": -25.0,
        "seed": 0,
    }
    many = rows * 4
    s2 = DP.make_distill_set("cdm2", many, hp, "x")
    s1 = DP.make_distill_set("cdm1", many, hp, "x")
    plain = DP.make_distill_set("plain", many, hp, "x")
    items = [s2[i] for i in range(len(many))]
    assert sum(i["student_ops"] != i["teacher_ops"] for i in items) >= 8
    assert sum(not torch.equal(i["student"], i["teacher"]) for i in items) >= 18
    # setup 1: the same student draw, the teacher clean
    for i in range(len(many)):
        assert torch.equal(s1[i]["student"], items[i]["student"])
        assert torch.equal(s1[i]["teacher"], s1[i]["clean"])
        assert torch.equal(plain[i]["student"], plain[i]["clean"])


# ---------------------------------------------------- RobustDistiller
def test_robustdistiller_trains_head_and_drops_it_at_inference(
    corpus, tmp_path
):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    head = EnhancementHead(80, hidden_size=8, num_layers=1)
    brain, counter = make_brain(
        D.RobustDistillerBrain,
        tmp_path,
        teacher,
        hp={"enh_weight": 2.0},
        modules={"enhancement_head": head},
    )
    data = DistortedSpeech(rows, cdm_distorter(), None, seed=1)
    head_before = params_of(head)
    student_before = params_of(brain.modules.student)
    brain.fit(
        counter,
        data,
        data,
        train_loader_kwargs={"batch_size": 3},
        valid_loader_kwargs={"batch_size": 3},
    )
    assert changed(head_before, head)  # the head is trained
    assert changed(student_before, brain.modules.student)
    assert {"loss_distill", "loss_enh"} <= set(brain.train_stats)
    # inference: the student alone, no head parameter anywhere
    model = brain.inference_model()
    names = [n for n, _ in model.named_parameters()]
    assert not any("blstm" in n or "enhancement" in n for n in names)
    assert count_parameters(model) == count_parameters(brain.modules.student)
    # the features do not depend on the head at all
    wav = torch.randn(2, 8000)
    before = model.eval().features(wav, torch.ones(2))
    for p in head.parameters():
        p.data.normal_()
    assert torch.equal(model.features(wav, torch.ones(2)), before)
    # the teacher never left eval / frozen
    assert not teacher.training
    assert not any(p.requires_grad for p in teacher.parameters())


def test_enhancement_loss_weight(corpus, tmp_path):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    torch.manual_seed(0)
    head = EnhancementHead(80, hidden_size=8, num_layers=1)
    brain, _ = make_brain(
        D.RobustDistillerBrain,
        tmp_path,
        teacher,
        hp={"enh_weight": 2.0},
        modules={"enhancement_head": head},
    )
    data = DistortedSpeech(rows[:2], cdm_distorter(), None, seed=1)
    batch = data.collate([data[0], data[1]])
    head.eval()
    out = brain.compute_forward(batch, sb.Stage.VALID)
    losses = brain.compute_objectives(out, batch, sb.Stage.VALID)
    raw = head.loss(
        out["cnn"], batch.student.data, batch.clean.data, batch.student.lengths
    )
    assert torch.allclose(losses["enh"], 2.0 * raw)


# ------------------------------------------------------------- CDM+DAT
def dat_brain(tmp_path, teacher, domain="binary", dis_step=1, lam=1.0):
    dist = cdm_distorter()
    n = 2 if domain == "binary" else len(dist.domain_names)
    torch.manual_seed(1)
    disc = DomainDiscriminator(16, hidden_size=8, num_domains=n)
    hp = {
        "dat": True,
        "discriminator": disc,
        "dat_opt_class": lambda p: torch.optim.SGD(p, lr=0.5),
        "dat_domain": domain,
        "dat_lambda_max": lam,
        "dis_step": dis_step,
        "student_distorter": dist,
    }
    brain, counter = make_brain(D.CDMBrain, tmp_path, teacher, hp=hp)
    return brain, counter, disc, dist


def test_reversed_gradient_reaches_the_student_only(corpus, tmp_path):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    brain, _, disc, dist = dat_brain(tmp_path, teacher)
    brain.grl.lambda_ = 0.4
    data = DistortedSpeech(rows[:4], dist, None, seed=2)
    batch = data.collate([data[i] for i in range(4)])
    student = brain.modules.student
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    dat = brain.compute_objectives(out, batch, sb.Stage.TRAIN)["dat"]
    # the dat path is not a path to the discriminator's parameters
    assert all(
        torch.autograd.grad(dat, p, retain_graph=True, allow_unused=True)[0]
        is None
        for p in disc.parameters()
    )
    w = student.heads.weight  # heads come before "last"? no: use a layer
    layer_w = next(student.layers[-1].parameters())
    g_rev = torch.autograd.grad(dat, layer_w, retain_graph=True)[0]
    # the same loss WITHOUT reversal
    labels = D.domain_labels(batch.student_ops, "binary")
    pooled = masked_mean(out["last"], out["lens"])
    plain = torch.nn.functional.cross_entropy(disc(pooled), labels)
    g = torch.autograd.grad(plain, layer_w)[0]
    assert g.abs().sum() > 0
    assert torch.allclose(g_rev, -0.4 * g, atol=1e-6)
    assert w.shape[0] == 2 * 16


def test_discriminator_step_updates_only_the_discriminator(corpus, tmp_path):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    brain, counter, disc, dist = dat_brain(tmp_path, teacher)
    brain.on_fit_start()
    d_before = params_of(disc)
    s_before = params_of(brain.modules.student)
    opt_state = dict(brain.optimizer.state_dict())
    feats = torch.randn(6, 16, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 0, 1, 1])
    logits = disc(feats.detach())
    loss_before = torch.nn.functional.cross_entropy(logits, labels)
    brain.step = 1
    loss = brain.discriminator_step(feats, labels)
    assert abs(loss - float(loss_before)) < 1e-6
    assert changed(d_before, disc) == [n for n, _ in disc.named_parameters()]
    assert changed(s_before, brain.modules.student) == []
    assert brain.optimizer.state_dict()["state"] == opt_state["state"] == {}
    assert feats.grad is None  # detached input
    after = torch.nn.functional.cross_entropy(disc(feats), labels)
    assert float(after) < float(loss_before)  # it learnt
    # dis_step: only every k-th batch
    brain.hparams.dis_step = 3
    brain.step = 4
    assert brain.discriminator_step(feats, labels) is None
    brain.step = 6
    assert brain.discriminator_step(feats, labels) is not None


@pytest.mark.parametrize("domain", ["binary", "multiclass"])
def test_cdm_dat_fit_trains_both_and_checkpoints(corpus, tmp_path, domain):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    brain, counter, disc, dist = dat_brain(
        tmp_path, teacher, domain=domain, lam=0.5
    )
    data = DistortedSpeech(rows, dist, dist, seed=3)
    d_before = params_of(disc)
    s_before = params_of(brain.modules.student)
    brain.fit(
        counter,
        data,
        data,
        train_loader_kwargs={"batch_size": 3},
        valid_loader_kwargs={"batch_size": 3},
    )
    assert changed(d_before, disc)
    assert changed(s_before, brain.modules.student)
    assert 0.0 < brain.grl.lambda_ < 0.5  # DANN ramp, below lambda_max
    assert {"discriminator", "dat_optimizer"} <= set(
        brain.checkpointer.recoverables
    )
    assert list((tmp_path / "save").glob("CKPT*/discriminator.ckpt"))
    stats = brain.train_stats
    assert "dis_loss" in stats and "lambda" in stats
    assert "discriminator" not in brain.modules
    n_opt = sum(
        p.numel() for g in brain.optimizer.param_groups for p in g["params"]
    )
    assert n_opt == count_parameters(brain.modules.student)


def test_cdm_without_dat_has_no_aux_loss(corpus, tmp_path):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    brain, _ = make_brain(D.CDMBrain, tmp_path, teacher)
    data = DistortedSpeech(rows[:2], cdm_distorter(), None)
    batch = data.collate([data[0], data[1]])
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert set(brain.compute_objectives(out, batch, sb.Stage.TRAIN)) == {
        "distill"
    }


def count_teacher_calls(teacher, monkeypatch):
    calls = []
    targets = teacher.targets

    def counted(*args, **kwargs):
        calls.append(1)
        return targets(*args, **kwargs)

    monkeypatch.setattr(teacher, "targets", counted)
    return calls


@pytest.mark.parametrize(
    "system, teacher_calls", [("plain", 1), ("cdm1", 1), ("cdm2", 2)]
)
def test_clean_view_adds_the_clean_distillation_where_it_differs(
    corpus, tmp_path, monkeypatch, system, teacher_calls
):
    _, rows = corpus
    teacher = LayerTeacher(tiny_asr())
    hp = {
        "cdm_distorter": Distorter("single", single=["gaussian"]),
        "rd_distorter": None,
        "speech_level_dbfs": -25.0,
        "seed": 0,
    }
    data = DP.make_distill_set(system, rows[:2], hp, "x")
    batch = data.collate([data[0], data[1]])
    brain, _ = make_brain(
        D.CDMBrain, tmp_path, teacher, hp={"clean_view_weight": 0.5}
    )
    calls = count_teacher_calls(teacher, monkeypatch)
    out = brain.compute_forward(batch, sb.Stage.TRAIN)
    assert len(calls) == teacher_calls  # clean targets reused when clean
    assert ("clean_view" in out) == (system != "plain")
    with_view = brain.compute_objectives(out, batch, sb.Stage.TRAIN)["distill"]
    out.pop("clean_view", None)
    alone = brain.compute_objectives(out, batch, sb.Stage.TRAIN)["distill"]
    if system == "plain":
        assert with_view.item() == alone.item()
    else:  # the clean part is a positive loss, weighted by 0.5
        clean = brain.view_stats["distill_clean"][0]
        assert clean > 0
        assert with_view.item() == pytest.approx(alone.item() + 0.5 * clean)
    # validation scores the distorted view alone
    assert "clean_view" not in brain.compute_forward(batch, sb.Stage.VALID)


def test_clean_view_weight_must_not_be_negative(tmp_path):
    with pytest.raises(ValueError, match="clean_view_weight"):
        make_brain(
            D.CDMBrain,
            tmp_path,
            LayerTeacher(tiny_asr()),
            hp={"clean_view_weight": -1.0},
        )


def test_bad_dat_settings(tmp_path):
    teacher = LayerTeacher(tiny_asr())
    with pytest.raises(ValueError, match="needs discriminator"):
        make_brain(D.CDMBrain, tmp_path, teacher, hp={"dat": True})
    disc = DomainDiscriminator(16, 8, 2)
    with pytest.raises(ValueError, match="OUT of modules"):
        make_brain(
            D.CDMBrain,
            tmp_path,
            teacher,
            hp={
                "dat": True,
                "discriminator": disc,
                "dat_opt_class": torch.optim.SGD,
            },
            modules={"discriminator": disc},
        )
    with pytest.raises(ValueError, match="dat_domain"):
        make_brain(
            D.CDMBrain,
            tmp_path,
            teacher,
            hp={
                "dat": True,
                "discriminator": disc,
                "dat_opt_class": torch.optim.SGD,
                "dat_domain": "ternary",
            },
        )
    with pytest.raises(TypeError, match="LayerTeacher"):
        make_brain(D.CDMBrain, tmp_path, teacher, hp={"teacher": None})


def test_domain_labels_multiclass():
    dist = cdm_distorter()
    names = dist.domain_names
    labels = D.domain_labels(
        ["clean", "gaussian+simreverb"], "multiclass", dist
    )
    assert labels.tolist() == [0, names.index("gaussian+simreverb")]
    with pytest.raises(ValueError):
        D.domain_labels(["clean"], "other")


# ------------------------------------------------------------ HF student
@pytest.mark.parametrize("kind", ["wavlm", "hubert"])
def test_hf_student_from_tiny_teacher_under_a_surgery_rule(
    kind, corpus, tmp_path
):
    import importlib

    from robust_brain import tiny_models as tm

    _, rows = corpus
    path = tm.tiny_model_path(kind, num_hidden_layers=4)
    cls = {"wavlm": "wavlm.WavLM", "hubert": "hubert.HuBERT"}[kind]
    module, name = cls.split(".")
    wrapper = getattr(
        importlib.import_module(
            f"speechbrain.integrations.huggingface.{module}"
        ),
        name,
    )
    teacher = LayerTeacher(
        wrapper(
            source=str(path),
            save_path=str(tmp_path / "hf"),
            freeze=True,
            output_norm=False,
            apply_spec_augment=False,
            output_all_hiddens=True,
        )
    )
    student = build_student(teacher, [2, 4])
    assert student.copied > 0
    t_sd = teacher.model.model.state_dict()
    s_sd = student.model.state_dict()
    assert torch.equal(
        s_sd["encoder.layers.1.attention.k_proj.weight"],
        t_sd["encoder.layers.1.attention.k_proj.weight"],
    )
    head = EnhancementHead(32, hidden_size=4, num_layers=1)
    counter = sb.utils.epoch_loop.EpochCounter(1)
    brain = D.RobustDistillerBrain(
        modules={"student": student, "enhancement_head": head},
        opt_class=lambda p: torch.optim.Adam(p, 1e-3),
        hparams={
            "teacher": teacher,
            "enh_weight": 2.0,
            "surgery_rule": __import__(
                "robust_brain.surgery", fromlist=["x"]
            ).make_rule("pcgrad"),
        },
        run_opts={"device": "cpu"},
    )
    data = DistortedSpeech(rows[:4], cdm_distorter(), None)
    before = params_of(student)
    brain.fit(counter, data, train_loader_kwargs={"batch_size": 2})
    assert changed(before, student)
    assert brain.skipped_steps == 0
    assert "cos" in brain.surgery_stats  # per-task path ran
    # the trained student as a SpeechBrain pretrained folder
    from robust_brain.inference import StudentEncoder, write_student

    student.eval()
    folder = write_student(tmp_path / "student", student)
    encoder = StudentEncoder.from_hparams(source=str(folder))
    wav = torch.randn(2, 8000)
    lens = torch.tensor([1.0, 0.75])
    feats = encoder.encode_batch(wav, lens)
    assert feats.shape[-1] == student.hidden_size
    assert torch.allclose(feats, student.features(wav, lens), atol=1e-4)


# --------------------------------------------------------------- probes
class CharTokenizer:
    """Letters as token ids: a stand-in for the probes' SentencePiece."""

    def encode_as_ids(self, text):
        return [ord(c) - 63 for c in text.replace(" ", "")]

    def decode_ids(self, ids):
        return "".join(chr(i + 63) for i in ids)

    def get_piece_size(self):
        return 30


def test_probe_evaluation_and_table(corpus, tmp_path):
    _, rows = corpus

    teacher = LayerTeacher(tiny_asr())
    student = build_student(teacher, [2, 4])
    res = P.evaluate_probes(
        {"teacher": teacher, "plain": student},
        rows,
        {"clean": rows[:3], "in_domain": rows[3:]},
        CharTokenizer(),
        tmp_path,
        params={"plain": count_parameters(student)},
        teacher_params=P.teacher_encoder_parameters(teacher),
        probe_epochs=2,
        kws_classes=2,
    )
    assert [r["system"] for r in res] == ["teacher", "plain"]
    for r in res:
        for g in ("clean", "in_domain"):
            assert 0.0 <= r[f"acc_{g}"] <= 100.0
            assert r[f"wer_{g}"] >= 0.0
    table = distill_table(tmp_path, ["clean", "in_domain"])
    lines = table.splitlines()
    assert lines[2].startswith("| teacher (reference) |")
    assert lines[3].startswith("| plain distillation |")
    assert len(lines) == 4


def test_probe_seed_reseeds_the_heads_not_the_distortions(
    corpus, tmp_path, monkeypatch
):
    _, rows = corpus

    heads, draws = [], []
    train = P._train_probe

    def spy(*args):
        heads.append(args[-1])
        return train(*args)

    def distorter(wav, rng):
        draws.append(int(rng.integers(1 << 30)))
        return wav, {}

    monkeypatch.setattr(P, "_train_probe", spy)
    student = build_student(LayerTeacher(tiny_asr()), [2, 4])
    for probe_seed in (None, 7):
        P.evaluate_probes(
            {"plain": student},
            rows,
            {"in_domain": (rows[:2], distorter)},
            CharTokenizer(),
            tmp_path / str(probe_seed),
            probe_epochs=1,
            kws_classes=2,
            seed=3,
            probe_seed=probe_seed,
        )
    assert heads == [3, 3, 7, 7]  # CTC and first-word heads, per run
    assert draws[:2] == draws[2:]  # the same distorted inputs
    saved = json.loads((tmp_path / "7" / "plain.json").read_text())
    assert saved["probe_seed"] == 7


def test_split_groups_caps_each_group_and_names_an_unknown_one():
    rows = [{"condition": "clean"}] * 5 + [
        {"condition": f"pink_{s}dB"} for s in (0, 5) for _ in range(5)
    ]
    groups = {"clean": ["clean"], "in_domain": ["pink"]}
    one_cap = P.split_groups(rows, groups, 2)
    assert [len(v) for v in one_cap.values()] == [2, 4]
    per_group = P.split_groups(rows, groups, {"clean": 5, "in_domain": 1})
    assert [len(v) for v in per_group.values()] == [5, 2]
    with pytest.raises(ValueError, match="out_of_domain"):
        P.split_groups(rows, groups, {"out_of_domain": 3})
