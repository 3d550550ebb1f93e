"""Wang and Isola's alignment and uniformity (ICML 2020): the losses and the metrics against direct
computation over pairs in float64, the uniformity of evenly spread points on the circle against its
closed form, and the identity relating them to SimCLR's I-Con loss."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.special import i0

from icontorch import IConError, methods, metrics
from icontorch.methods import AlignmentUniformityLoss, alignment_loss, uniformity_loss


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _unit(*shape, seed):
    return F.normalize(_randn(*shape, seed=seed), dim=1)


def _alignment_direct(x, y, exponent):
    return sum(float(np.linalg.norm(a - b)) ** exponent for a, b in zip(x.numpy(), y.numpy())) / len(x)


def _uniformity_direct(x, t):
    z = x.numpy()
    pairs = [math.exp(-t * float(((z[i] - z[j]) ** 2).sum())) for i in range(len(z)) for j in range(i + 1, len(z))]
    return math.log(sum(pairs) / len(pairs))


@pytest.mark.parametrize("exponent", [1.0, 2.0, 3.0])
def test_alignment_is_the_mean_distance_to_the_power_alpha(exponent):
    x, y = _unit(9, 4, seed=0), _unit(9, 4, seed=1)
    np.testing.assert_allclose(float(alignment_loss(x, y, exponent)), _alignment_direct(x, y, exponent), rtol=1e-13)
    np.testing.assert_allclose(metrics.alignment(x.numpy(), y.numpy(), exponent), _alignment_direct(x, y, exponent),
                               rtol=1e-13)
    # Wang and Isola's align_loss, and its gradient.
    leaf = x.clone().requires_grad_()
    ours = torch.autograd.grad(alignment_loss(leaf, y, exponent), leaf)[0]
    leaf = x.clone().requires_grad_()
    theirs = torch.autograd.grad((leaf - y).norm(p=2, dim=1).pow(exponent).mean(), leaf)[0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-13)


@pytest.mark.parametrize("t", [0.5, 2.0, 8.0])
def test_uniformity_is_the_log_mean_gaussian_potential(t):
    x = _unit(11, 3, seed=2)
    np.testing.assert_allclose(float(uniformity_loss(x, t)), _uniformity_direct(x, t), rtol=1e-13)
    np.testing.assert_allclose(metrics.uniformity(x, t), _uniformity_direct(x, t), rtol=1e-13)
    # Wang and Isola's uniform_loss, and its gradient.
    leaf = x.clone().requires_grad_()
    ours = torch.autograd.grad(uniformity_loss(leaf, t), leaf)[0]
    leaf = x.clone().requires_grad_()
    theirs = torch.autograd.grad(torch.pdist(leaf, p=2).pow(2).mul(-t).exp().mean().log(), leaf)[0]
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-12)


def test_uniformity_blocks_of_rows(monkeypatch):
    """More rows than one block: the blocked log-sum-exp equals the direct sum."""
    import icontorch.methods.alignment as module

    monkeypatch.setattr(module, "_CHUNK", 4)
    x = _unit(11, 3, seed=3)
    np.testing.assert_allclose(float(uniformity_loss(x, 2.0)), _uniformity_direct(x, 2.0), rtol=1e-13)


@pytest.mark.parametrize("n", [32, 200])
def test_uniformity_of_evenly_spread_points_on_the_circle(n):
    """``x_k = (cos 2 pi k / n, sin 2 pi k / n)``: ``||x_i - x_j||^2 = 2 - 2 cos(theta)``, and the mean of
    ``exp(-2t + 2t cos theta)`` over the n points is ``A = e^(-2t) I_0(2t)`` (the trapezoid rule on a
    periodic analytic function, exact up to ~2 I_n(2t) e^(-2t): 1e-9 at n = 16, 1e-26 at n = 32).
    Removing the pair (i, i), whose potential is 1: ``L_unif = log((n A - 1) / (n - 1))``, which tends
    to ``log A = -2t + log I_0(2t)``, the uniformity of the uniform distribution on the circle."""
    t = 2.0
    angles = 2 * math.pi * torch.arange(n, dtype=torch.float64) / n
    x = torch.stack([angles.cos(), angles.sin()], 1)
    closed = math.log((n * math.exp(-2 * t) * i0(2 * t) - 1) / (n - 1))
    np.testing.assert_allclose(metrics.uniformity(x, t), closed, rtol=1e-12)
    limit = -2 * t + math.log(i0(2 * t))
    a = math.exp(-2 * t) * i0(2 * t)
    assert 0 < limit - metrics.uniformity(x, t) <= (1 - a) / (n * a - 1)      # log(1 + u) <= u
    # Evenly spread points are more uniform than points bunched on an arc of the circle.
    bunched = torch.stack([(angles / 4).cos(), (angles / 4).sin()], 1)
    assert metrics.uniformity(bunched, t) > metrics.uniformity(x, t)


def test_simclr_is_alignment_plus_a_per_anchor_uniformity():
    """On unit vectors, SimCLR(tau) = L_align(exponent=2) / (2 tau) + mean_i log sum_{k != i} exp(-d_ik^2 / (2 tau))
    exactly, and the second term is at most L_unif(t = 1 / (2 tau)) of the 2B views + log(2B - 1) (Jensen)."""
    B, tau = 6, 0.3
    z1, z2 = _unit(B, 5, seed=4), _unit(B, 5, seed=5)
    z = torch.cat([z1, z2])
    simclr = methods.simclr(tau)(z, target=torch.arange(B).repeat(2))
    d2 = torch.cdist(z, z).pow(2).masked_fill(torch.eye(2 * B, dtype=torch.bool), math.inf)
    per_anchor = torch.logsumexp(-d2 / (2 * tau), 1).mean()
    torch.testing.assert_close(simclr, alignment_loss(z1, z2) / (2 * tau) + per_anchor, rtol=0, atol=1e-12)
    assert float(per_anchor) <= float(uniformity_loss(z, 1 / (2 * tau))) + math.log(2 * B - 1) + 1e-12


def test_alignment_uniformity_loss_is_wang_and_isola_training_objective():
    x, y = _unit(8, 4, seed=6), _unit(8, 4, seed=7)
    loss = AlignmentUniformityLoss(exponent=2.0, t=2.0, weight=0.5)
    expected = (x - y).norm(dim=1).pow(2).mean() + 0.5 * (
        torch.pdist(x).pow(2).mul(-2).exp().mean().log() + torch.pdist(y).pow(2).mul(-2).exp().mean().log()) / 2
    torch.testing.assert_close(loss(x, y), expected, rtol=0, atol=1e-12)
    # Duplicated rows (a collapsed batch): finite value and gradients, also for exponent < 1.
    leaf = x[:1].repeat(8, 1).requires_grad_()
    value = AlignmentUniformityLoss(exponent=0.5)(leaf, leaf.detach().clone())
    (grad,) = torch.autograd.grad(value, leaf)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_alignment_and_uniformity_validate():
    x = _unit(5, 3, seed=0)
    cases = [
        (lambda: alignment_loss(x, x[:4]), "alignment_loss: y must have the shape of x"),
        (lambda: alignment_loss(x, x, exponent=0.0), "alignment_loss: exponent must be a positive"),
        (lambda: alignment_loss(x, x, exponent=math.nan), "alignment_loss: exponent must be a positive"),
        (lambda: uniformity_loss(x[:1]), "uniformity_loss: x must hold at least 2 rows"),
        (lambda: uniformity_loss(x, t=-1.0), "uniformity_loss: t must be a positive"),
        (lambda: uniformity_loss(x.clone().fill_(math.nan)), "uniformity_loss: x must be finite"),
        (lambda: AlignmentUniformityLoss(weight="x"), "weight must be a positive"),
        (lambda: metrics.alignment(np.ones((3, 2)), np.ones((3,))), "alignment: y must have 2 dimensions"),
        (lambda: metrics.uniformity(np.array([["a", "b"]])), "uniformity: x must hold real numbers"),
        (lambda: metrics.uniformity(np.full((3, 2), np.inf)), "uniformity: x must be finite"),
        (lambda: metrics.uniformity(np.zeros((3, 2), dtype=complex)), "uniformity: x must hold real numbers"),
    ]
    for make, message in cases:
        with pytest.raises(IConError, match=message):
            make()
