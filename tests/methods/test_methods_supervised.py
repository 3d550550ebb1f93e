"""Oracle test for softmax cross-entropy (Thm 9) and label smoothing as alpha-debiasing of p.

Oracle: ``F.cross_entropy(z @ W.T, y, label_smoothing=alpha)``, mean over the batch, values and
gradients with respect to both the features z and the class prototypes W, in float64
(methods.md sections 3.1, 3.2).
"""

import math

import pytest
import torch
import torch.nn.functional as F

from icontorch import methods

pytestmark = pytest.mark.usefixtures("float64_default")


def _value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


@pytest.mark.parametrize("label_smoothing", [0.0, 0.1, 0.3, 1.0])
def test_cross_entropy(label_smoothing):
    n, d, C = 24, 7, 5
    g = torch.Generator().manual_seed(0)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)
    y[:C] = torch.arange(C)  # every class present (not required, but the usual case)

    loss = methods.cross_entropy(C, label_smoothing=label_smoothing)
    ours = _value_and_grads(lambda z_, W_: loss(z_, target=y, candidates=W_), z, W)
    ref = _value_and_grads(
        lambda z_, W_: F.cross_entropy(z_ @ W_.T, y, label_smoothing=label_smoothing), z, W)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-12)
    for mine, theirs in zip(ours[1], ref[1]):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=1e-12)

    # p is (1 - alpha) one-hot + alpha / C over all C classes (the true one included).
    p = loss.p(y).exp()
    expected = torch.full((n, C), label_smoothing / C)
    expected[torch.arange(n), y] += 1.0 - label_smoothing
    torch.testing.assert_close(p, expected, rtol=0, atol=1e-15)

    # The KL form differs from the reported cross-entropy by the constant H(p~).
    kl = methods.cross_entropy(C, label_smoothing=label_smoothing)
    kl.divergence = "kl"
    a = label_smoothing
    top = 1.0 - a + a / C
    entropy = -(top * math.log(top) if top > 0 else 0.0) - ((C - 1) * (a / C) * math.log(a / C)
                                                             if a > 0 else 0.0)
    torch.testing.assert_close(kl(z, target=y, candidates=W) + entropy, ref[0], rtol=0, atol=1e-12)


def test_cross_entropy_class_subset_candidates():
    # Prototypes of a subset of classes, in another order: y lists the class of each candidate.
    n, d, C = 10, 4, 6
    g = torch.Generator().manual_seed(1)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)
    perm = torch.randperm(C, generator=g)
    loss = methods.cross_entropy(C)
    shuffled = loss(z, target=y, candidates=W[perm], target_candidates=perm)
    torch.testing.assert_close(shuffled, F.cross_entropy(z @ W.T, y), rtol=0, atol=1e-12)


# --------------------------------------------------------------------------------- harmonic loss

@pytest.mark.parametrize("exponent", [1.0, 2.0, 4.0])
def test_harmonic_loss(exponent):
    import icontorch

    n, d, C = 15, 4, 5
    g = torch.Generator().manual_seed(2)
    z = torch.randn(n, d, generator=g, dtype=torch.float64)
    W = torch.randn(C, d, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (n,), generator=g)

    def harmonic(z_, W_):
        # Baek et al.: p_c = d_c^(-n) / sum_k d_k^(-n), d the Euclidean distance; loss -log p_y.
        dist = torch.sqrt(((z_[:, None, :] - W_[None]) ** 2).sum(-1))
        return F.cross_entropy(-exponent * torch.log(dist), y)

    loss = methods.harmonic_loss(C, exponent=exponent)
    ours = _value_and_grads(lambda z_, W_: loss(z_, target=y, candidates=W_), z, W)
    ref = _value_and_grads(harmonic, z, W)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-12)
    for a, b in zip(ours[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-11)
    if exponent <= 1.0:
        return
    # Thm 10: for sigma > 0 the kernel is a Student-t with n - 1 dof at scale sigma ...
    sigma = 0.7
    student = icontorch.ICon(p=icontorch.DataToClass(C), q=icontorch.StudentT(exponent - 1.0),
                             divergence="cross_entropy")
    torch.testing.assert_close(methods.harmonic_loss(C, exponent, sigma)(z, target=y, candidates=W),
                               student(z / sigma, target=y, candidates=W / sigma), rtol=0, atol=1e-12)
    # ... and as sigma -> 0 it tends to the harmonic loss, with an error of order sigma^2.
    errors = [abs(float(methods.harmonic_loss(C, exponent, s)(z, target=y, candidates=W)) - float(ref[0]))
              for s in (0.1, 0.05, 0.025)]
    assert errors[0] > errors[1] > errors[2]
    assert 3.5 < errors[0] / errors[1] < 4.5 and 3.5 < errors[1] / errors[2] < 4.5


# ----------------------------------------------------------------------- masked language modelling

def test_masked_language_modeling():
    seq, d, V = 30, 6, 11
    g = torch.Generator().manual_seed(3)
    hidden = torch.randn(seq, d, generator=g, dtype=torch.float64)
    E = torch.randn(V, d, generator=g, dtype=torch.float64)
    tokens = torch.randint(0, V, (seq,), generator=g)
    mask = torch.rand(seq, generator=g) < 0.3
    labels = torch.where(mask, tokens, torch.full_like(tokens, -100))   # BERT's ignore index
    loss = methods.masked_language_modeling(V)
    ours = _value_and_grads(lambda h, e: loss(h[mask], target=tokens[mask], candidates=e), hidden, E)
    ref = _value_and_grads(lambda h, e: F.cross_entropy(h @ e.T, labels, ignore_index=-100), hidden, E)
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-12)
    for a, b in zip(ours[1], ref[1]):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
