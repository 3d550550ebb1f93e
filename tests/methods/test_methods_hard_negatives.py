"""Hard-negative contrastive learning (Robinson et al. 2021, HCL) against a direct implementation of
the paper's estimator written here (their ``criterion`` with ``estimator='hard'``, plain exp), in
float64, values and gradients; and its relations: a reweighted-q I-Con loss at tau+ = 0, Chuang's
debiased loss at beta = 0, SimCLR at both."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icontorch import FromCallable, ICon, IConError, PositivePairs, methods

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _vg(fn, z):
    leaf = z.detach().clone().requires_grad_()
    value = fn(leaf)
    return value.detach(), torch.autograd.grad(value, leaf)[0]


def _same(a, b, atol=1e-12):
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=atol)
    torch.testing.assert_close(a[1], b[1], rtol=0, atol=atol)


def _hcl_reference(out_1, out_2, tau_plus, beta, temperature):
    """HCL's criterion (estimator='hard'): out_1, out_2 the (B, d) normalised views."""
    batch_size = out_1.shape[0]
    out = torch.cat([out_1, out_2], dim=0)
    neg = torch.exp(torch.mm(out, out.t()) / temperature)
    mask = torch.ones((batch_size, 2 * batch_size), dtype=torch.bool)
    for i in range(batch_size):
        mask[i, i] = False
        mask[i, i + batch_size] = False
    mask = torch.cat((mask, mask), 0)
    neg = neg.masked_select(mask).view(2 * batch_size, -1)
    pos = torch.exp(torch.sum(out_1 * out_2, dim=-1) / temperature)
    pos = torch.cat([pos, pos], dim=0)
    N = batch_size * 2 - 2
    imp = (beta * neg.log()).exp()
    reweight_neg = (imp * neg).sum(dim=-1) / imp.mean(dim=-1)
    Ng = (-tau_plus * N * pos + reweight_neg) / (1 - tau_plus)
    Ng = torch.clamp(Ng, min=N * np.e ** (-1 / temperature))
    return (-torch.log(pos / (pos + Ng))).mean()


def _views(B=6, d=5, seed=0):
    return _randn(2 * B, d, seed=seed), torch.arange(B).repeat(2)


@pytest.mark.parametrize("temperature, tau_plus, beta", [(0.5, 0.1, 1.0), (0.2, 0.05, 0.5), (1.0, 0.0, 2.0),
                                                         (0.5, 0.3, 0.0)])
def test_hard_negative_contrastive(temperature, tau_plus, beta):
    z, ids = _views()
    B = z.shape[0] // 2
    loss = methods.hard_negative_contrastive(temperature, tau_plus, beta)

    def reference(x):
        xn = F.normalize(x, dim=1)
        return _hcl_reference(xn[:B], xn[B:], tau_plus, beta, temperature)

    _same(_vg(lambda x: loss(x, target=ids), z), _vg(reference, z))
    # reductions: "sum" is 2B times the mean, "none" the per-view terms
    rows = methods.hard_negative_contrastive(temperature, tau_plus, beta, reduction="none")(z, ids)
    assert rows.shape == (2 * B,)
    torch.testing.assert_close(rows.sum(), methods.hard_negative_contrastive(
        temperature, tau_plus, beta, reduction="sum")(z, ids), rtol=0, atol=1e-12)


def test_hard_negative_contrastive_floor():
    # Partners next to their anchors with tau+ large: the debiased Ng falls below the floor N e^(-1/t)
    # for 10 of the 12 views here (and not for the other 2).
    z, ids = _views(seed=4)
    B = z.shape[0] // 2
    z = torch.cat([z[:B], z[:B] + 0.01 * z[B:]])
    loss = methods.hard_negative_contrastive(0.5, 0.6, 1.0)
    zn = F.normalize(z, dim=1)
    torch.testing.assert_close(loss(z, ids), _hcl_reference(zn[:B], zn[B:], 0.6, 1.0, 0.5), rtol=0, atol=1e-12)


def test_hard_negatives_are_a_reweighted_q_at_tau_plus_zero():
    z, ids = _views(seed=1)
    n = z.shape[0]
    t, beta = 0.4, 1.5
    partner = (torch.arange(n) + n // 2) % n

    def reweighted_q(x, y=None):
        """log q~(j|i): exp(s_ij) on the positive, N w_ij exp(s_ij) on the negatives, 0 on i."""
        xn = F.normalize(x, dim=1)
        s = xn @ xn.T / t
        negative = ~torch.eye(n, dtype=torch.bool)
        negative[torch.arange(n), partner] = False
        log_w = torch.log_softmax((beta * s).masked_fill(~negative, -math.inf), 1)
        logits = torch.where(negative, s + log_w + math.log(n - 2), s).masked_fill(torch.eye(n, dtype=torch.bool),
                                                                                   -math.inf)
        return torch.log_softmax(logits, 1)

    icon = ICon(p=PositivePairs(), q=FromCallable(reweighted_q), divergence="cross_entropy")
    _same(_vg(lambda x: methods.hard_negative_contrastive(t, 0.0, beta)(x, ids), z),
          _vg(lambda x: icon(x, target=ids), z))
    # beta = 0: Chuang's debiased loss; beta = tau+ = 0: SimCLR (NT-Xent).
    _same(_vg(lambda x: methods.hard_negative_contrastive(t, 0.2, 0.0)(x, ids), z),
          _vg(lambda x: methods.debiased_contrastive(t, 0.2)(x, ids), z))
    _same(_vg(lambda x: methods.hard_negative_contrastive(t, 0.0, 0.0)(x, ids), z),
          _vg(lambda x: methods.simclr(t)(x, target=ids), z))
    # beta > 0 differs from the unweighted loss
    assert abs(float(methods.hard_negative_contrastive(t, 0.0, beta)(z, ids) - methods.simclr(t)(z, target=ids))) \
        > 1e-3


def test_hard_negative_contrastive_is_finite_at_small_temperatures():
    z, ids = _views(seed=2)
    for dtype in (torch.float32, torch.float64):
        value, grad = _vg(lambda x: methods.hard_negative_contrastive(0.005, 0.1, 1.0)(x, ids), z.to(dtype))
        assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_hard_negative_contrastive_validates():
    z, ids = _views()
    cases = [
        (lambda: methods.hard_negative_contrastive(temperature=0.0), "temperature must be a positive"),
        (lambda: methods.hard_negative_contrastive(tau_plus=1.0), "tau_plus must lie in"),
        (lambda: methods.hard_negative_contrastive(tau_plus=math.nan), "tau_plus must lie in"),
        (lambda: methods.hard_negative_contrastive(beta=-1.0), "beta must be a finite number >= 0"),
        (lambda: methods.hard_negative_contrastive(beta=math.nan), "beta must be a finite number >= 0"),
        (lambda: methods.hard_negative_contrastive(reduction="avg"), "reduction must be one of"),
        (lambda: methods.hard_negative_contrastive()(z, torch.arange(2 * 6)), "target must hold every id exactly"),
        (lambda: methods.hard_negative_contrastive()(z.fill_(math.nan), ids), "z must"),
    ]
    for make, message in cases:
        with pytest.raises(IConError, match=message):
            make()
