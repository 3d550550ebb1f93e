"""Kernel-InfoNCE's kernel mixture inside one softmax (Tan et al. 2024, seed 004), against a direct
loop over anchors written from the formula, in float64; and the validation of every argument of
``methods.kernel_infonce`` whatever ``mix`` is."""

import math

import pytest
import torch
import torch.nn.functional as F

from icontorch import IConError, methods
from icontorch.neighborhoods import KernelMixture, PowerExponential

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _views(B=5, d=4, seed=0):
    return F.normalize(_randn(2 * B, d, seed=seed), dim=1), torch.arange(B).repeat(2)


def _mixture_loss(z, gamma, t1, t2, lam):
    """-mean_i log(K(i, i+) / sum_{j != i} K(i, j)), K = lam e^(-d^gamma / t1) + (1 - lam) e^(-d^2 / t2),
    one anchor and one candidate at a time (plain exp: moderate temperatures only)."""
    n = z.shape[0]
    b = n // 2

    def kernel(i, j):
        d = torch.sqrt(((z[i] - z[j]) ** 2).sum())
        return lam * torch.exp(-d ** gamma / t1) + (1 - lam) * torch.exp(-d ** 2 / t2)

    total = 0.0
    for i in range(n):
        denominator = sum(kernel(i, j) for j in range(n) if j != i)
        total = total - torch.log(kernel(i, (i + b) % n) / denominator)
    return total / n


def _vg(fn, z):
    leaf = z.detach().clone().requires_grad_()
    value = fn(leaf)
    return value.detach(), torch.autograd.grad(value, leaf)[0]


@pytest.mark.parametrize("gamma, t1, t2, lam", [(1.0, 0.5, 0.5, 0.5), (0.5, 0.3, 0.8, 0.2), (1.0, 0.1, 0.3, 0.7)])
def test_kernel_sum_equals_the_direct_mixture(gamma, t1, t2, lam):
    z, ids = _views()
    loss = methods.kernel_infonce(gamma, t1, mix="kernel_sum", weight=lam, temperature2=t2)
    ours, ours_grad = _vg(lambda x: loss(x, target=ids), z)
    ref, ref_grad = _vg(lambda x: _mixture_loss(x, gamma, t1, t2, lam), z)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    torch.testing.assert_close(ours_grad, ref_grad, rtol=0, atol=1e-12)
    # q itself: row i is the normalised mixture kernel over j != i.
    q = loss.q(z).exp()
    d = torch.cdist(z, z)
    k = lam * torch.exp(-d ** gamma / t1) + (1 - lam) * torch.exp(-d ** 2 / t2)
    k.fill_diagonal_(0.0)
    torch.testing.assert_close(q, k / k.sum(1, keepdim=True), rtol=0, atol=1e-12)


def test_kernel_sum_is_one_softmax_not_a_sum_of_losses():
    z, ids = _views(seed=3)
    # Two equal kernels: the mixture is that kernel, so the loss is the one-kernel loss.
    torch.testing.assert_close(methods.kernel_infonce(2.0, 0.4, mix="kernel_sum", weight=0.3)(z, target=ids),
                               methods.kernel_infonce(2.0, 0.4)(z, target=ids), rtol=0, atol=1e-12)
    # Two different kernels: one softmax of the summed kernels is another q than mix="sum" (a sum of losses).
    a = methods.kernel_infonce(1.0, 0.5, mix="kernel_sum", weight=0.5)(z, target=ids)
    b = methods.kernel_infonce(1.0, 0.5, mix="sum", weight=0.5)(z, target=ids)
    assert abs(float(a - b)) > 1e-3
    # weight 1/2 is the paper's unweighted Simple Sum kernel (the factor 1/2 cancels in the softmax).
    torch.testing.assert_close(a, _unweighted(z, 1.0, 0.5, 0.5),
                               rtol=0, atol=1e-12)


def _unweighted(z, gamma, t1, t2):
    d = torch.cdist(z, z)
    k = torch.exp(-d ** 2 / t2) + torch.exp(-d ** gamma / t1)
    k.fill_diagonal_(0.0)
    n = z.shape[0]
    partner = (torch.arange(n) + n // 2) % n
    return -(k[torch.arange(n), partner] / k.sum(1)).log().mean()


def test_kernel_sum_is_stable_where_plain_exp_underflows():
    z, ids = _views(seed=5)
    t1, t2, lam = 1e-3, 2e-3, 0.4   # exp(-d^2 / t2) underflows to 0 in float64 for d > ~1.2
    d = torch.cdist(z, z)
    assert bool((torch.exp(-d ** 2 / t2) == 0).any())
    ours, grad = _vg(lambda x: methods.kernel_infonce(1.0, t1, mix="kernel_sum", weight=lam,
                                                      temperature2=t2)(x, target=ids), z)
    assert torch.isfinite(ours) and torch.isfinite(grad).all()
    # The same loss from the log-kernels by hand: log K = logaddexp(log lam - d/t1, log(1-lam) - d^2/t2).
    log_k = torch.logaddexp(math.log(lam) - d / t1, math.log(1 - lam) - d ** 2 / t2)
    log_k.fill_diagonal_(-math.inf)
    n = z.shape[0]
    partner = (torch.arange(n) + n // 2) % n
    ref = -(log_k[torch.arange(n), partner] - torch.logsumexp(log_k, 1)).mean()
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-9)
    # float32 gives the float64 value to float32 precision.
    z32 = z.float()
    value32 = methods.kernel_infonce(1.0, t1, mix="kernel_sum", weight=lam, temperature2=t2)(z32, target=ids)
    torch.testing.assert_close(value32.double(), ours, rtol=1e-4, atol=1e-4)


def test_kernel_sum_and_the_engines():
    z, ids = _views(seed=6)
    loss = methods.kernel_infonce(1.0, 0.5, mix="kernel_sum")
    assert loss.q.fused_form() is None            # the composed path; "auto" takes it silently
    with pytest.raises(IConError, match="tile_size=4 needs a structured p, a kernel-softmax q"):
        methods.kernel_infonce(1.0, 0.5, mix="kernel_sum", tile_size=4)(z, target=ids)
    # A learnable second temperature stays a parameter and gets a gradient.
    t2 = torch.nn.Parameter(torch.tensor(0.7))
    value = methods.kernel_infonce(1.0, 0.5, mix="kernel_sum", temperature2=t2)(z, target=ids)
    (grad,) = torch.autograd.grad(value, t2)
    assert torch.isfinite(grad) and float(grad.abs()) > 0


def test_kernel_mixture_validates():
    pe = PowerExponential(1.0, 0.5)
    cases = [
        (lambda: KernelMixture([], []), "kernels must be a non-empty sequence"),
        (lambda: KernelMixture([pe, "x"], [0.5, 0.5]), "kernels must be a non-empty sequence"),
        (lambda: KernelMixture([pe, PowerExponential(include_self=True)], [0.5, 0.5]), "agree on include_self"),
        (lambda: KernelMixture([pe, pe], [0.5, 0.6]), "weights must be 2 positive numbers summing to 1"),
        (lambda: KernelMixture([pe, pe], [1.0]), "weights must be 2 positive"),
        (lambda: KernelMixture([pe, pe], [math.nan, 0.5]), "weights must be 2 positive"),
        (lambda: KernelMixture([pe, pe], "ab"), "weights must be 2 positive"),
        (lambda: KernelMixture([pe, pe], [0.5, 0.5])(torch.full((4, 3), math.nan)), "x must"),
    ]
    for make, message in cases:
        with pytest.raises(IConError, match=message):
            make()


@pytest.mark.parametrize("mix", [None, "kernel_sum", "sum", "concat"])
def test_kernel_infonce_validates_every_argument_whatever_mix(mix):
    split = 2 if mix == "concat" else None
    bad = [dict(weight=math.nan), dict(weight="x"), dict(weight=True), dict(weight=1.5),
           dict(temperature2=math.nan), dict(temperature2=-1.0), dict(temperature2="x"),
           dict(split="x"), dict(split=math.nan), dict(split=0), dict(split=2.5)]
    for kwargs in bad:
        kwargs = {"split": split, **kwargs}
        name = next(k for k in kwargs if k != "split" or len(kwargs) == 1)
        with pytest.raises(IConError, match=f"kernel_infonce: {name} must"):
            methods.kernel_infonce(1.0, 0.5, mix=mix, **kwargs)
