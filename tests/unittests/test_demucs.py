"""Unit tests for robust_brain.models.demucs (DEMUCS enhancer)."""

import math

import pytest
import torch

from robust_brain.models import Demucs, count_parameters
from robust_brain.models.demucs import (
    rescale_conv_weights_,
    sinc_downsample,
    sinc_upsample,
)

TINY = {"hidden": 4, "depth": 2}


def _tiny(**kwargs):
    torch.manual_seed(0)
    return Demucs(**{**TINY, **kwargs}).eval()


# --------------------------------------------------------------------------
# Shapes and valid_length
# --------------------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 333, 1001, 1603])
def test_output_shape_matches_input(length):
    model = _tiny()
    wav = torch.randn(2, length)
    with torch.no_grad():
        assert model(wav).shape == (2, length)
        assert model(wav.unsqueeze(1)).shape == (2, 1, length)


def test_multichannel_shape():
    model = _tiny(chin=2, chout=2)
    with torch.no_grad():
        assert model(torch.randn(3, 2, 517)).shape == (3, 2, 517)


def _lossless(model, n_up):
    """Independent check: every strided conv window tiles n_up exactly."""
    for _ in range(model.depth):
        if n_up < model.kernel_size:
            return False
        if (n_up - model.kernel_size) % model.stride:
            return False
        n_up = (n_up - model.kernel_size) // model.stride + 1
    return True


@pytest.mark.parametrize(
    "config",
    [
        {},
        {"hidden": 4},
        {"hidden": 4, "depth": 3, "resample": 2},
        {"hidden": 4, "depth": 2, "resample": 1, "kernel_size": 5},
    ],
)
def test_valid_length_properties(config):
    model = Demucs(**config)
    for length in list(range(1, 700, 13)) + [16000, 16001, 48123]:
        valid = model.valid_length(length)
        assert valid >= length
        assert model.valid_length(valid) == valid  # idempotent
        assert _lossless(model, model.resample * valid)
        # minimal: no shorter lossless length in [length, valid)
        for shorter in range(length, valid):
            assert not _lossless(model, model.resample * shorter)


def test_valid_length_dns48_values():
    model = Demucs()
    assert model.valid_length(1) == 597
    assert model.valid_length(597) == 597
    assert model.valid_length(598) == 597 + 256
    assert model.valid_length(16000) == 16213


def test_no_samples_lost_inside_network():
    model = _tiny()
    seen = {}

    def hook(module, inputs, output):
        seen["len"] = output.shape[-1]

    model.decoder[-1].register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(1, 1000))
    assert seen["len"] == model.resample * model.valid_length(1000)


def test_incompatible_config_raises():
    # lossless upsampled lengths are 31 + 16 j: never a multiple of 4
    with pytest.raises(ValueError):
        Demucs(hidden=4, depth=2, kernel_size=7, stride=4, resample=4)


def test_bad_input_shapes_raise():
    model = _tiny()
    with pytest.raises(ValueError):
        model(torch.randn(1, 1, 1, 100))
    with pytest.raises(ValueError):
        model(torch.randn(1, 2, 100))


# --------------------------------------------------------------------------
# Causality
# --------------------------------------------------------------------------


def _reach(model, wav, t):
    """How far before t the output changes when the input at t changes;
    asserts that nothing earlier than t - model.lookahead changes."""
    perturbed = wav.clone()
    perturbed[:, t] += 1.0
    with torch.no_grad():
        diff = (model(wav) - model(perturbed)).abs().amax(dim=0)
    start = t - model.lookahead
    assert torch.equal(diff[:start], torch.zeros_like(diff[:start]))
    changed = diff.nonzero()
    assert changed.numel() > 0
    return t - changed[0].item()


@pytest.mark.parametrize("resample", [1, 2, 4])
def test_causal_lookahead_is_exact(resample):
    # float64 so that the tiny edge taps of the resampling filters are
    # visible; hidden=16 so that no ReLU path is dead
    torch.manual_seed(1)
    model = Demucs(
        hidden=16, depth=2, resample=resample, normalize=False
    ).double()
    model.eval()
    wav = torch.randn(1, 400, dtype=torch.float64)
    period = model.stride**model.depth // resample
    reaches = [_reach(model, wav, t) for t in range(250, 250 + period)]
    assert max(reaches) == model.lookahead
    assert min(reaches) >= 0


def test_lookahead_values():
    assert Demucs().lookahead == 659  # 41.2 ms at 16 kHz
    assert Demucs(hidden=16, depth=2, resample=1).lookahead == 35
    assert Demucs(hidden=16, depth=2, resample=2).lookahead == 80
    assert Demucs(hidden=16, depth=2, resample=4).lookahead == 71


def test_dns48_is_causal_up_to_lookahead():
    torch.manual_seed(0)
    model = Demucs(normalize=False).eval()
    wav = torch.randn(1, 1500)
    assert 0 <= _reach(model, wav, 1200) <= 659


def test_non_causal_model_fails_causality_check():
    # float64: the BLSTM's influence decays fast over frames at init
    torch.manual_seed(0)
    model = Demucs(**TINY, causal=False, normalize=False).double().eval()
    wav = torch.randn(1, 600, dtype=torch.float64)
    perturbed = wav.clone()
    perturbed[:, 500] += 1.0
    with torch.no_grad():
        diff = (model(wav) - model(perturbed)).abs()
    # the BLSTM sees the future: outputs before t - lookahead change
    assert diff[:, : 500 - model.lookahead].max() > 1e-13


# --------------------------------------------------------------------------
# Normalisation, mask
# --------------------------------------------------------------------------


@pytest.mark.parametrize("scale", [0.01, 7.0])
def test_scale_equivariance_without_floor(scale):
    model = _tiny(floor=0.0)
    wav = torch.randn(2, 800)
    with torch.no_grad():
        torch.testing.assert_close(
            model(scale * wav), scale * model(wav), rtol=1e-4, atol=1e-6
        )


def test_scale_equivariance_default_floor_is_approximate():
    model = _tiny()
    wav = 0.5 * torch.randn(2, 800)
    with torch.no_grad():
        ref = 10.0 * model(wav)
        err = (model(10.0 * wav) - ref).norm() / ref.norm()
    assert err < 1e-2


def test_without_normalize_not_scale_equivariant():
    model = _tiny(normalize=False)
    wav = torch.randn(2, 800)
    with torch.no_grad():
        ref = 7.0 * model(wav)
        err = (model(7.0 * wav) - ref).norm() / ref.norm()
    assert err > 1e-2


def test_length_mask_zeros_tail():
    model = _tiny()
    wav = torch.randn(2, 1000)
    with torch.no_grad():
        full = model(wav)
        out = model(wav, lengths=torch.tensor([1.0, 0.5]))
    assert torch.equal(out[1, 500:], torch.zeros(500))
    assert out[1, :500].abs().min() > 0
    torch.testing.assert_close(out[0], full[0])


def test_padded_batch_matches_single_item():
    # the std is taken over the valid part and the causal model does not
    # see the padding: same output as alone, except for the last
    # `lookahead` samples, whose receptive field reaches past the item's
    # end (zeros either way, but padded to a different valid_length)
    model = _tiny()
    short = torch.randn(1, 600)
    batch = torch.zeros(2, 1000)
    batch[0] = torch.randn(1000)
    batch[1, :600] = short[0]
    with torch.no_grad():
        alone = model(short)[0]
        padded = model(batch, lengths=torch.tensor([1.0, 0.6]))[1]
    keep = 600 - model.lookahead
    torch.testing.assert_close(
        padded[:keep], alone[:keep], rtol=1e-4, atol=1e-6
    )
    # the un-normalised batch std would change the whole item
    with torch.no_grad():
        unmasked = model(batch)[1]
    assert (unmasked[:keep] - alone[:keep]).abs().max() > 1e-3


# --------------------------------------------------------------------------
# Parameters, initialisation, state_dict
# --------------------------------------------------------------------------


def _expected_count(hidden, depth, growth=2, kernel=8, causal=True):
    total, cin, cout, width = 0, 1, 1, hidden
    for _ in range(depth):
        total += cin * width * kernel + width  # strided conv
        total += width * 2 * width + 2 * width  # 1x1 conv (encoder)
        total += width * 2 * width + 2 * width  # 1x1 conv (decoder)
        total += width * cout * kernel + cout  # transposed conv
        cin = cout = width
        width = int(growth * width)
    dirs = 1 if causal else 2
    lstm = 4 * cin * (cin + cin + 2) * dirs  # layer 1
    lstm += 4 * cin * (dirs * cin + cin + 2) * dirs  # layer 2
    linear = 0 if causal else 2 * cin * cin + cin
    return total + lstm + linear


def test_dns48_parameter_count():
    assert count_parameters(Demucs()) == 18_867_937
    assert _expected_count(48, 5) == 18_867_937
    noncausal = Demucs(causal=False)
    assert count_parameters(noncausal) == 34_216_417
    assert _expected_count(48, 5, causal=False) == 34_216_417


def test_rescale_init():
    torch.manual_seed(3)
    plain = Demucs(**TINY, rescale=0)
    torch.manual_seed(3)
    scaled = Demucs(**TINY, rescale=0.1)
    convs = 0
    for (name, p0), (_, p1) in zip(
        plain.named_parameters(), scaled.named_parameters(), strict=True
    ):
        if name.startswith(("encoder", "decoder")) and p0.dim() == 3:
            convs += 1
            expected = math.sqrt(p0.std().item() * 0.1)
            assert p1.std().item() == pytest.approx(expected, rel=1e-5)
        elif name.startswith("lstm"):
            assert torch.equal(p0, p1)  # LSTM is not rescaled
    assert convs == 4 * TINY["depth"]


def test_rescale_helper_on_bias():
    conv = torch.nn.Conv1d(2, 3, 4)
    bias = conv.bias.detach().clone()
    scale = math.sqrt(conv.weight.std().item() / 0.1)
    rescale_conv_weights_(conv, 0.1)
    torch.testing.assert_close(conv.bias, bias / scale)


def test_state_dict_layout():
    state = Demucs().state_dict()
    assert state["encoder.0.0.weight"].shape == (48, 1, 8)
    assert state["encoder.0.2.weight"].shape == (96, 48, 1)
    assert state["decoder.0.0.weight"].shape == (1536, 768, 1)
    assert state["decoder.4.2.weight"].shape == (48, 1, 8)
    assert state["lstm.lstm.weight_ih_l1"].shape == (3072, 768)
    assert not any("filter" in key for key in state)  # buffers not saved
    assert "lstm.linear.weight" in Demucs(**TINY, causal=False).state_dict()


# --------------------------------------------------------------------------
# Gradients and mixed precision
# --------------------------------------------------------------------------


@pytest.mark.parametrize("causal", [True, False])
def test_gradient_reaches_input_and_all_parameters(causal):
    model = _tiny(causal=causal).train()
    wav = torch.randn(2, 700, requires_grad=True)
    out = model(wav, lengths=torch.tensor([1.0, 0.8]))
    out.pow(2).sum().backward()
    assert wav.grad is not None and wav.grad.abs().sum() > 0
    assert torch.isfinite(wav.grad).all()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
        assert param.grad.abs().sum() > 0, name


def test_silent_input_has_finite_gradient():
    model = _tiny()
    wav = torch.zeros(1, 300, requires_grad=True)
    model(wav).sum().backward()
    assert torch.isfinite(wav.grad).all()


def test_autocast_bfloat16_cpu():
    model = _tiny()
    wav = torch.randn(2, 900, requires_grad=True)
    with torch.no_grad():
        ref = model(wav)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(wav)
    assert out.shape == wav.shape
    assert torch.isfinite(out).all()
    assert (out.float() - ref).norm() / ref.norm() < 5e-2
    out.float().pow(2).sum().backward()
    assert torch.isfinite(wav.grad).all() and wav.grad.abs().sum() > 0


# --------------------------------------------------------------------------
# Resampling
# --------------------------------------------------------------------------


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_resampler(factor):
    x = torch.randn(2, 3, 64)
    up = sinc_upsample(x, factor)
    assert up.shape == (2, 3, 64 * factor)
    assert torch.equal(up[..., ::factor], x)  # original samples kept
    # DC gain 1 away from the zero-padded edges (2 * 32 samples each)
    ones = torch.ones(1, 1, 200)
    dc = sinc_downsample(sinc_upsample(ones, factor), factor)
    torch.testing.assert_close(
        dc[..., 64:-64], ones[..., 64:-64], rtol=0, atol=1e-6
    )
    # a band-limited tone survives up -> down
    n = torch.arange(400, dtype=torch.float64)
    tone = torch.sin(2 * math.pi * 0.11 * n).view(1, 1, -1)
    back = sinc_downsample(sinc_upsample(tone, factor), factor)
    assert (back - tone)[..., 64:-64].abs().max() < 1e-2
    # an image above the low-rate Nyquist is removed by the downsampler
    m = torch.arange(400 * factor, dtype=torch.float64)
    high = torch.sin(2 * math.pi * (1 - 0.11) / factor * m).view(1, 1, -1)
    assert sinc_downsample(high, factor)[..., 40:-40].abs().max() < 1e-2


def test_dry_mixes_the_input_back():
    torch.manual_seed(0)
    model = Demucs(hidden=4, depth=2, causal=False).eval()
    x = torch.randn(2, 800)
    lens = torch.tensor([1.0, 0.5])
    with torch.no_grad():
        wet = model(x, lens)
        model.dry = 0.25
        mixed = model(x, lens)
        model.dry = 1.0
        dry = model(x, lens)
    keep = torch.arange(800)[None] < torch.tensor([[800], [400]])
    torch.testing.assert_close(dry, x * keep)
    torch.testing.assert_close(mixed, 0.75 * wet + 0.25 * x * keep)
    with pytest.raises(ValueError, match="dry must be in"):
        Demucs(hidden=4, depth=2, dry=1.5)
