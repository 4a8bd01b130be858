"""Distillation from a Whisper encoder teacher (LayerTeacher's Whisper
branch, WhisperStudent, learned_parameters) and DAT's class balance
(domain_weights, domain_loss, Distorter.domain_probs)."""

import math

import pytest
import torch

from robust_brain import tiny_models as tm
from robust_brain.distortions import Distorter
from robust_brain.evaluation import probes as P
from robust_brain.methods import distill as D
from robust_brain.models.student import (
    LayerTeacher,
    WhisperStudent,
    build_student,
    learned_parameters,
)
from robust_brain.models.whisper import WhisperASR


def whisper_teacher(tmp_path, window_seconds=1.0, all_hiddens=True):
    return WhisperASR(
        str(tm.tiny_model_path("whisper")),
        str(tmp_path / "whisper"),
        window_seconds=window_seconds,
        encoder_only=True,
        output_all_hiddens=all_hiddens,
    )


def test_whisper_teacher_gives_the_frames_that_hold_audio(tmp_path):
    teacher = LayerTeacher(whisper_teacher(tmp_path, window_seconds=2.0))
    assert (teacher.num_layers, teacher.hidden_size) == (2, 32)
    assert not any(p.requires_grad for p in teacher.parameters())
    wav = torch.randn(2, 12345, requires_grad=True)
    hs = teacher(wav, torch.tensor([1.0, 0.5]))
    assert len(hs) == 3
    assert hs[-1].shape == (2, math.ceil(12345 / 320), 32)
    assert hs[-1].grad_fn is None
    # the padding of the shorter utterance is zeroed, not heard
    half = teacher(wav[1:, : 12345 // 2 + 1], torch.ones(1))
    n = half[1].shape[1] - 1  # the edge frame sees a different STFT pad
    assert torch.allclose(hs[1][1, :n], half[1][0, :n], atol=1e-4)
    with pytest.raises(ValueError, match="output_all_hiddens"):
        LayerTeacher(whisper_teacher(tmp_path, all_hiddens=False))


def test_whisper_student_is_the_teachers_first_layers(tmp_path):
    """With the teacher's window equal to the input, a one-layer student
    copied from it computes the teacher's first layer exactly (its last
    state carries the encoder's final layer norm, as the teacher's)."""
    asr = whisper_teacher(tmp_path, window_seconds=1.0)
    teacher = LayerTeacher(asr)
    student = build_student(teacher, [1, 2], num_layers=1).eval()
    assert isinstance(student, WhisperStudent) and student.copied > 0
    wav = torch.randn(2, 16000) * 0.1
    hs = teacher(wav, torch.ones(2))
    out = student(wav, torch.ones(2))
    assert torch.allclose(out["hiddens"][0], hs[0], atol=1e-4)
    final_norm = asr.model.encoder.layer_norm
    assert torch.allclose(out["last"], final_norm(hs[1]), atol=1e-4)
    assert out["preds"].shape == (2, 2, 50, 32)
    # the copy is independent of the teacher
    next(student.model.layers.parameters()).data.add_(1.0)
    assert not torch.equal(
        next(student.model.layers.parameters()),
        next(asr.model.encoder.layers.parameters()),
    )
    with pytest.raises(ValueError, match="outside 1..2"):
        build_student(teacher, [3])


def test_whisper_student_size_and_fixed_positions(tmp_path):
    teacher = LayerTeacher(whisper_teacher(tmp_path))
    student = build_student(teacher, [2], num_layers=1)
    table = student.model.embed_positions.weight
    assert not table.requires_grad  # the sinusoids stay fixed
    assert all(
        p.requires_grad for n, p in student.named_parameters() if p is not table
    )
    # learned weights exclude the table, on both sides of the ratio
    total = sum(p.numel() for p in student.parameters())
    assert learned_parameters(student) == total - table.numel()
    encoder = teacher.model.model.encoder
    t_total = sum(p.numel() for p in encoder.parameters())
    assert P.teacher_encoder_parameters(teacher) == (
        t_total - encoder.embed_positions.weight.numel()
    )
    assert learned_parameters(student) < P.teacher_encoder_parameters(teacher)


def test_whisper_student_front_end_gradient_is_scaled(tmp_path):
    teacher = LayerTeacher(whisper_teacher(tmp_path))
    s1 = build_student(teacher, [2], feature_grad_mult=1.0).eval()
    s2 = build_student(teacher, [2], feature_grad_mult=0.1).eval()
    s2.load_state_dict(s1.state_dict())
    wav = torch.randn(2, 8000)
    for s in (s1, s2):
        s(wav, torch.ones(2))["preds"].pow(2).sum().backward()
    g1, g2 = s1.model.conv1.weight.grad, s2.model.conv1.weight.grad
    assert torch.allclose(g2, 0.1 * g1, rtol=1e-3, atol=1e-6)
    assert torch.allclose(s1.heads.weight.grad, s2.heads.weight.grad, atol=1e-6)


def test_whisper_student_as_a_pretrained_folder(tmp_path):
    from robust_brain.inference import StudentEncoder, write_student

    teacher = LayerTeacher(whisper_teacher(tmp_path))
    student = build_student(teacher, [1, 2], num_layers=1)
    with torch.no_grad():  # not the teacher's weights any more
        student.model.layers[0].fc1.weight.mul_(3.0)
    student.eval()
    folder = write_student(tmp_path / "student", student)
    encoder = StudentEncoder.from_hparams(source=str(folder))
    wav, lens = torch.randn(2, 8000), torch.tensor([1.0, 0.75])
    want = student.features(wav, lens)
    got = encoder.encode_batch(wav, lens)
    assert torch.allclose(got, want, atol=1e-5)
    fresh = build_student(teacher, [1, 2], num_layers=1).eval()
    assert not torch.allclose(fresh.features(wav, lens), want, atol=1e-3)


# ---------------------------------------------------------- DAT balance
def double_distorter():
    return Distorter(
        "double",
        additive=["gaussian", "none"],
        nonadditive=["simreverb", "bandreject", "none"],
    )


@pytest.mark.parametrize(
    "distorter",
    [
        double_distorter(),
        Distorter("single", single=["gaussian", "simreverb"]),
        Distorter(
            "single", single=["gaussian", "simreverb"], single_probs=[0.3, 0.2]
        ),
    ],
)
def test_domain_prior_matches_the_draws(distorter):
    probs = dict(
        zip(distorter.domain_names, distorter.domain_probs, strict=True)
    )
    assert abs(sum(probs.values()) - 1.0) < 1e-9
    import numpy as np

    from robust_brain.distortions import chain_name

    rng = np.random.default_rng(0)
    n = 6000
    drawn = [chain_name(distorter.draw(rng)) for _ in range(n)]
    for name, p in probs.items():
        assert abs(drawn.count(name) / n - p) < 0.03, name


@pytest.mark.parametrize("domain", ["binary", "multiclass"])
def test_domain_weights_average_to_one_under_the_prior(domain):
    d = double_distorter()
    w = D.domain_weights(domain, d)
    probs = dict(zip(d.domain_names, d.domain_probs, strict=True))
    if domain == "binary":
        prior = torch.tensor([probs["clean"], 1 - probs["clean"]])
        assert torch.allclose(w, torch.tensor([3.0, 0.6]))
    else:
        prior = torch.tensor([probs[n] for n in d.domain_names])
    assert abs(float((w * prior).sum()) - 1.0) < 1e-6


@pytest.mark.parametrize("balanced", [False, True])
def test_balanced_discriminator_does_not_answer_the_prior(balanced):
    """On features that carry no domain information, the optimum of the
    unweighted loss is the prior (1 clean in 6: a discriminator that
    always answers "distorted" is right 83 % of the time); the balanced
    loss's optimum is 1/2, so only real evidence moves it."""
    d = double_distorter()
    w = D.domain_weights("binary", d) if balanced else None
    g = torch.Generator().manual_seed(0)
    labels = (torch.rand(600, generator=g) >= 1 / 6).long()
    bias = torch.zeros(2, requires_grad=True)
    opt = torch.optim.SGD([bias], lr=0.5)
    for _ in range(400):
        opt.zero_grad()
        D.domain_loss(bias.expand(600, 2), labels, w).backward()
        opt.step()
    p_clean = float(torch.softmax(bias.detach(), 0)[0])
    clean_share = float((labels == 0).float().mean())
    if balanced:
        assert abs(p_clean - 0.5) < 0.08
    else:
        assert abs(p_clean - clean_share) < 0.02


def test_balanced_dat_needs_the_prior(tmp_path):
    from robust_brain.models.student import DomainDiscriminator
    from tests.unittests.test_distill import make_brain, tiny_asr

    teacher = LayerTeacher(tiny_asr())
    hp = {
        "dat": True,
        "discriminator": DomainDiscriminator(16, 8, 2),
        "dat_opt_class": torch.optim.SGD,
        "dat_balanced": True,
    }
    with pytest.raises(ValueError, match="student_distorter"):
        make_brain(D.CDMBrain, tmp_path, teacher, hp=hp)
    hp["student_distorter"] = double_distorter()
    brain, _ = make_brain(D.CDMBrain, tmp_path, teacher, hp=hp)
    assert torch.allclose(brain.domain_weights, torch.tensor([3.0, 0.6]))
