"""Property tests of the divergences and of the ICon reduction (hypothesis, derandomised)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from torch import Tensor

from icontorch import Gaussian, ICon, Precomputed, SameLabel, mix_uniform, symmetrize
from icontorch.divergences import DIVERGENCES, cross_entropy, entropy, kl, reverse_kl
from icontorch.neighborhoods import Neighborhood

F64 = torch.float64
NEG_INF = float("-inf")

SETTINGS = settings(max_examples=40, deadline=None, derandomize=True)

LOGIT = st.floats(min_value=-8.0, max_value=8.0, allow_nan=False, allow_infinity=False)


@st.composite
def shapes(draw, square: bool = False):
    n = draw(st.integers(min_value=2, max_value=6))
    m = n if square else draw(st.integers(min_value=2, max_value=7))
    return n, m


@st.composite
def log_dist(draw, shape, zeros: bool):
    """(n, m) log-probabilities; with ``zeros`` some entries are exactly -inf (never a whole row)."""
    n, m = shape
    logits = draw(arrays(np.float64, (n, m), elements=LOGIT))
    if zeros:
        drop = draw(arrays(np.bool_, (n, m)))
        keep = draw(arrays(np.int64, (n,), elements=st.integers(0, m - 1)))
        drop[np.arange(n), keep] = False
        logits = np.where(drop, -np.inf, logits)
    return torch.log_softmax(torch.from_numpy(logits), dim=1)


@st.composite
def pair(draw, p_zeros=True, q_zeros=False, square=False):
    shape = draw(shapes(square))
    return draw(log_dist(shape, p_zeros)), draw(log_dist(shape, q_zeros))


def np_kl(log_p: Tensor, log_q: Tensor) -> np.ndarray:
    """Independent reference with 0 log 0 = 0."""
    p, lp, lq = log_p.exp().numpy(), log_p.numpy(), log_q.numpy()
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (lp - lq), 0.0)
    return terms.sum(1)


class Raw(Neighborhood):
    """A bare matrix returned as is (no row check)."""

    def __init__(self, log_p: Tensor) -> None:
        super().__init__()
        self.log_p = log_p

    def forward(self, x=None, y=None) -> Tensor:
        return self.log_p


@SETTINGS
@given(pair(p_zeros=True, q_zeros=False))
def test_kl_is_non_negative_and_matches_numpy(pq):
    log_p, log_q = pq
    value = kl(log_p, log_q)
    assert value.shape == (log_p.shape[0],)
    assert torch.isfinite(value).all()
    assert (value >= -1e-12).all()
    np.testing.assert_allclose(value.numpy(), np_kl(log_p, log_q), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(pair(p_zeros=True, q_zeros=True))
def test_kl_of_a_distribution_with_itself_is_zero(pq):
    log_p, _ = pq
    assert kl(log_p, log_p).abs().max() < 1e-12
    assert reverse_kl(log_p, log_p).abs().max() < 1e-12


@SETTINGS
@given(pair(p_zeros=True, q_zeros=False))
def test_kl_is_cross_entropy_minus_entropy(pq):
    log_p, log_q = pq
    torch.testing.assert_close(kl(log_p, log_q), cross_entropy(log_p, log_q) - entropy(log_p),
                               rtol=1e-10, atol=1e-10)
    assert (entropy(log_p) >= -1e-12).all()
    assert (entropy(log_p) <= np.log(log_p.shape[1]) + 1e-12).all()


@SETTINGS
@given(pair(p_zeros=True, q_zeros=False))
def test_kl_matches_torch_kl_div_where_finite(pq):
    log_p, log_q = pq
    ref = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(1)
    ours = kl(log_p, log_q)
    finite = torch.isfinite(ref)
    torch.testing.assert_close(ours[finite], ref[finite], rtol=1e-10, atol=1e-12)
    # where torch yields NaN (0 * log 0 with a -inf target), ours stays finite
    assert torch.isfinite(ours).all()
    # rows of p with full support always compare
    full = torch.isfinite(log_p).all(dim=1)
    assert finite[full].all()


def test_kl_matches_torch_kl_div_on_full_support():
    g = torch.Generator().manual_seed(0)
    log_p = torch.log_softmax(torch.randn(5, 6, generator=g, dtype=F64), 1)
    log_q = torch.log_softmax(torch.randn(5, 6, generator=g, dtype=F64), 1)
    ref = F.kl_div(log_q, log_p, log_target=True, reduction="none").sum(1)
    torch.testing.assert_close(kl(log_p, log_q), ref, rtol=1e-12, atol=0)


@SETTINGS
@given(pair(p_zeros=True, q_zeros=False))
def test_zero_log_zero_is_exactly_zero_with_finite_gradients(pq):
    log_p, log_q = pq
    # q is -inf exactly where p is 0 (and may be anything elsewhere)
    log_q = torch.log_softmax(log_q.masked_fill(log_p == NEG_INF, NEG_INF), dim=1)
    lp = log_p.clone().requires_grad_(True)
    lq = log_q.clone().requires_grad_(True)
    for name, fn in [("kl", kl), ("cross_entropy", cross_entropy), ("reverse_kl", reverse_kl),
                     ("reverse_kl+H", lambda a, b: reverse_kl(a, b, entropy_weight=1.0))]:
        lp.grad, lq.grad = None, None
        value = fn(lp, lq)
        assert torch.isfinite(value).all(), name
        value.sum().backward()
        assert torch.isfinite(lp.grad).all() and torch.isfinite(lq.grad).all(), name
        # no gradient leaks into impossible entries
        assert (lq.grad[log_p == NEG_INF] == 0).all(), name
    np.testing.assert_allclose(kl(log_p, log_q).numpy(), np_kl(log_p, log_q), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(pair(p_zeros=True, q_zeros=False))
def test_zero_log_zero_through_a_learned_softmax(pq):
    """Gradients through log_softmax of logits that are -inf where p is 0 stay finite."""
    log_p, raw = pq
    logits = raw.masked_fill(log_p == NEG_INF, NEG_INF).clone().requires_grad_(True)
    value = kl(log_p, torch.log_softmax(logits, dim=1)).sum()
    assert torch.isfinite(value)
    value.backward()
    assert not torch.isnan(logits.grad).any()
    assert torch.isfinite(logits.grad).all()


def test_zero_log_zero_pinned():
    log_p = torch.tensor([[0.0, NEG_INF, NEG_INF]], dtype=F64, requires_grad=True)
    log_q = torch.tensor([[np.log(0.5), np.log(0.5), NEG_INF]], dtype=F64, requires_grad=True)
    value = kl(log_p, log_q)
    assert value.item() == np.log(2.0)
    value.sum().backward()
    assert torch.equal(log_q.grad, torch.tensor([[-1.0, 0.0, 0.0]], dtype=F64))
    assert torch.isfinite(log_p.grad).all()


@SETTINGS
@given(pair(p_zeros=False, q_zeros=True))
def test_reverse_kl_with_unit_entropy_weight_is_cross_entropy_of_q(pq):
    log_p, log_q = pq
    q = log_q.exp().numpy()
    with np.errstate(invalid="ignore"):
        expected = -np.where(q > 0, q * log_p.numpy(), 0.0).sum(1)
    np.testing.assert_allclose(reverse_kl(log_p, log_q, entropy_weight=1.0).numpy(), expected,
                               rtol=1e-10, atol=1e-10)
    # and it is the cross-entropy with the slots swapped
    torch.testing.assert_close(reverse_kl(log_p, log_q, entropy_weight=1.0), cross_entropy(log_q, log_p),
                               rtol=1e-10, atol=1e-10)
    # entropy_weight=0 is the plain reverse KL
    torch.testing.assert_close(reverse_kl(log_p, log_q), kl(log_q, log_p), rtol=0, atol=0)


def test_divergence_names():
    assert set(DIVERGENCES) == {"kl", "reverse_kl", "cross_entropy"}


@st.composite
def batch(draw):
    n = draw(st.integers(min_value=2, max_value=8))
    z = draw(arrays(np.float64, (n, 2), elements=st.floats(-3.0, 3.0)))
    y = draw(arrays(np.int64, (n,), elements=st.integers(0, 2)))
    perm = draw(st.permutations(range(n)))
    return torch.from_numpy(z), torch.from_numpy(y), torch.tensor(perm)


@SETTINGS
@given(batch(), st.sampled_from(["kl", "cross_entropy", "reverse_kl"]))
def test_permuting_the_batch_permutes_the_per_anchor_losses(b, divergence):
    z, y, perm = b
    loss = ICon(SameLabel(dtype=F64), mix_uniform(Gaussian(sigma=1.0), 0.1), divergence=divergence,
                reduction="none", skip_empty_rows=True)
    rows = loss(z, y)
    assert rows.shape == (z.shape[0],)
    empty = torch.bincount(y, minlength=3)[y] == 1  # anchors whose label occurs once
    assert torch.equal(torch.isnan(rows), empty)
    torch.testing.assert_close(loss(z[perm], y[perm]), rows[perm], rtol=1e-10, atol=1e-12,
                               equal_nan=True)
    if not empty.all():
        mean = ICon(SameLabel(dtype=F64), mix_uniform(Gaussian(sigma=1.0), 0.1), divergence=divergence,
                    skip_empty_rows=True)
        torch.testing.assert_close(mean(z[perm], y[perm]), rows[~empty].mean(), rtol=1e-10, atol=1e-12)


@SETTINGS
@given(shapes().flatmap(lambda s: log_dist(s, zeros=True)), st.booleans())
def test_mix_uniform_with_alpha_zero_is_p(log_p, include_self):
    if log_p.shape[0] != log_p.shape[1]:
        include_self = True
    out = mix_uniform(Precomputed(log_p, include_self=include_self), 0.0)(None)
    assert torch.equal(out, log_p)


@SETTINGS
@given(shapes(square=True).flatmap(lambda s: log_dist(s, zeros=True)))
def test_symmetrize_returns_its_own_joint_matrix_unchanged(log_p):
    """Not idempotent (its output is a (1, n*n) row), but a symmetric matrix of mass 1 comes back."""
    n = log_p.shape[0]
    once = symmetrize(Precomputed(log_p, include_self=True))(None)
    assert once.shape == (1, n * n)
    assert abs(torch.logsumexp(once, dim=1).item()) < 1e-12
    matrix = once.reshape(n, n)
    torch.testing.assert_close(matrix, matrix.T, rtol=0, atol=0)
    twice = symmetrize(Raw(matrix))(None)
    torch.testing.assert_close(twice, once, rtol=1e-12, atol=1e-12)
    p = log_p.exp().numpy()
    np.testing.assert_allclose(once.exp().numpy(), ((p + p.T) / (2 * n)).reshape(1, -1),
                               rtol=1e-10, atol=1e-15)
