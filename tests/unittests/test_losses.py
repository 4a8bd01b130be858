"""D4AM regression loss."""

import torch

from robust_brain.losses import D4AMRegressionLoss, MultiResolutionSTFTLoss


def test_padding_is_excluded():
    torch.manual_seed(0)
    loss = D4AMRegressionLoss()
    est, ref = torch.randn(1, 8000), torch.randn(1, 8000)
    alone = loss(est, ref)
    pad = torch.zeros(1, 8000)
    # garbage in the padded region must not matter
    est_p = torch.cat([est, pad + 5.0], dim=1)
    ref_p = torch.cat([ref, pad - 5.0], dim=1)
    both = loss(
        torch.cat([est_p, torch.cat([est, est], 1)]),
        torch.cat([ref_p, torch.cat([ref, ref], 1)]),
        lengths=torch.tensor([0.5, 1.0]),
    )
    # the first utterance's terms are those of the unpadded one, up to the
    # STFT frames straddling the boundary (< 2 % here)
    single = loss(est_p, ref_p, lengths=torch.tensor([0.5]))
    assert abs(single.item() - alone.item()) / alone.item() < 0.02
    assert both.item() > 0


def test_terms_and_weights():
    x = torch.randn(2, 4000)
    sc, mag = MultiResolutionSTFTLoss()(2.0 * x, x)
    assert abs(mag.item() - torch.log(torch.tensor(2.0)).item()) < 1e-3
    assert abs(sc.item() - 1.0) < 1e-3  # ||2X - X|| / ||X||
    l1_only = D4AMRegressionLoss(sc_weight=0.0, mag_weight=0.0)
    assert abs(l1_only(2.0 * x, x).item() - x.abs().mean().item()) < 1e-5
    full = D4AMRegressionLoss()(2.0 * x, x).item()
    expected = x.abs().mean().item() + 0.5 * sc.item() + 0.5 * mag.item()
    assert abs(full - expected) < 1e-4


def test_gradient_reaches_estimate():
    est = torch.randn(2, 4000, requires_grad=True)
    D4AMRegressionLoss()(est, torch.randn(2, 4000)).backward()
    assert torch.isfinite(est.grad).all() and est.grad.abs().sum() > 0
