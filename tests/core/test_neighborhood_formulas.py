"""Formula pins: every neighbourhood against an independent numpy / scipy / scikit-learn
computation; then discrete dtypes, ``Precomputed`` and the documented empty rows."""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icontorch import (
    KNN,
    Adjacency,
    Cluster,
    CrossModal,
    DataToClass,
    DegreeWeightedCluster,
    Gaussian,
    IConError,
    Identity,
    PerplexityGaussian,
    PositivePairs,
    Precomputed,
    SameLabel,
    StudentT,
)

from neighborhood_data import (
    DEGREE,
    F64,
    N_SELF,
    NEG_INF,
    PAIR_NODES,
    PRE_RECT,
    PRE_SQUARE,
    SELF_NODES,
    W_DENSE,
    W_SPARSE,
    W_SPARSE_DENSE,
    M,
    feats,
    labels,
    log_assign,
    np_row_normalise,
    np_similarity,
    np_sq_dist,
)


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("width", [("sigma", 0.7), ("temperature", 0.4)], ids=["sigma", "temperature"])
def test_gaussian_formula(metric, width):
    name, value = width
    nb = Gaussian(metric=metric, **{name: value})
    scale = 1.0 / (2.0 * value ** 2) if name == "sigma" else 1.0 / value
    x, y = feats(6).numpy(), feats(4, seed=1).numpy()
    w = np.exp(np_similarity(metric, x, x) * scale)
    np.fill_diagonal(w, 0.0)
    np.testing.assert_allclose(nb(torch.from_numpy(x)).exp().numpy(), np_row_normalise(w),
                               rtol=1e-10, atol=1e-14)
    w = np.exp(np_similarity(metric, x, y) * scale)
    np.testing.assert_allclose(nb(torch.from_numpy(x), torch.from_numpy(y)).exp().numpy(),
                               np_row_normalise(w), rtol=1e-10, atol=1e-14)


def test_gaussian_sigma_and_temperature_agree():
    x = feats(6)
    torch.testing.assert_close(Gaussian(sigma=0.5)(x), Gaussian(temperature=0.5)(x))
    torch.testing.assert_close(Gaussian(sigma=0.5)(x), Gaussian(temperature=2 * 0.5 ** 2)(x))
    assert Gaussian(sigma=0.5).scale == pytest.approx(2.0)
    assert Gaussian(temperature=0.25).scale == pytest.approx(4.0)


def test_gaussian_include_self_keeps_the_diagonal():
    x = feats(5).numpy()
    w = np.exp(-np_sq_dist(x, x) / 2.0)  # diagonal weight 1
    out = Gaussian(sigma=1.0, include_self=True)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10)


@pytest.mark.parametrize("dof", [1.0, 3.0, 0.5])
def test_student_t_formula(dof):
    x, y = feats(6).numpy(), feats(4, seed=1).numpy()
    w = (1.0 + np_sq_dist(x, x) / dof) ** (-(dof + 1.0) / 2.0)
    np.fill_diagonal(w, 0.0)
    out = StudentT(dof=dof)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10, atol=1e-14)
    w = (1.0 + np_sq_dist(x, y) / dof) ** (-(dof + 1.0) / 2.0)
    out = StudentT(dof=dof)(torch.from_numpy(x), torch.from_numpy(y)).exp().numpy()
    np.testing.assert_allclose(out, np_row_normalise(w), rtol=1e-10, atol=1e-14)


def test_student_t_tends_to_gaussian():
    x = feats(6)
    torch.testing.assert_close(StudentT(dof=1e7)(x), Gaussian(sigma=1.0)(x), rtol=0, atol=1e-5)


def _np_row_entropy(p: np.ndarray) -> np.ndarray:
    safe = np.where(p > 0, p, 1.0)
    return -(p * np.log(safe)).sum(axis=1)


@pytest.mark.parametrize("n,perplexity,seed", [(40, 10.0, 0), (25, 5.0, 1), (12, 3.0, 2)])
def test_perplexity_gaussian_matches_target_and_scikit_learn(n, perplexity, seed):
    from sklearn.manifold._utils import _binary_search_perplexity

    x = feats(n, seed=seed, d=5)
    p = PerplexityGaussian(perplexity)(x).exp().numpy()
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-12)
    assert np.all(np.diag(p) == 0.0)
    np.testing.assert_allclose(np.exp(_np_row_entropy(p)), perplexity, rtol=0, atol=1e-8)

    xn = x.numpy()
    dist = np_sq_dist(xn, xn)
    ref = _binary_search_perplexity(dist.astype(np.float32), perplexity, 0)
    # scikit-learn stops its bisection once |H - log(perplexity)| < 1e-5 nats (its
    # PERPLEXITY_TOLERANCE), so its own P is only that accurate: the pin is at 1e-5, and the
    # tighter check is against an exact root below.
    assert np.abs(_np_row_entropy(ref) - math.log(perplexity)).max() < 1e-5
    np.testing.assert_allclose(p, ref, rtol=0, atol=1e-5)


@pytest.mark.parametrize("perplexity", [2.0, 6.0])
def test_perplexity_gaussian_matches_an_exact_root(perplexity):
    """The per-row precision equals the scipy root of H(beta) = log(perplexity), to 1e-8 in P."""
    from scipy.optimize import brentq

    x = feats(15, seed=3, d=4).numpy()
    dist = np_sq_dist(x, x)
    expected = np.zeros_like(dist)
    for i in range(len(x)):
        d = np.delete(dist[i], i)

        def excess(log_beta, d=d):
            w = np.exp(-np.exp(log_beta) * (d - d.min()))
            q = w / w.sum()
            return -(q * np.log(np.where(q > 0, q, 1.0))).sum() - math.log(perplexity)

        beta = math.exp(brentq(excess, -30.0, 30.0, xtol=1e-14))
        w = np.exp(-beta * (d - d.min()))
        expected[i] = np.insert(w / w.sum(), i, 0.0)
    out = PerplexityGaussian(perplexity)(torch.from_numpy(x)).exp().numpy()
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-8)


def test_perplexity_gaussian_with_candidates():
    x, y = feats(4), feats(9, seed=1)
    p = PerplexityGaussian(4.0)(x, y).exp().numpy()
    np.testing.assert_allclose(np.exp(_np_row_entropy(p)), 4.0, atol=1e-8)
    assert np.all(p > 0)


def np_cluster(phi_x: np.ndarray, phi_y: np.ndarray, weight: Optional[np.ndarray] = None) -> np.ndarray:
    """``q_ij = sum_c phi_ic phi_jc w_j / sum_k phi_kc w_k``, written as loops over the definition."""
    n, m = phi_x.shape[0], phi_y.shape[0]
    w = np.ones(m) if weight is None else weight
    q = np.zeros((n, m))
    for i in range(n):
        for j in range(m):
            for c in range(phi_x.shape[1]):
                q[i, j] += phi_x[i, c] * phi_y[j, c] * w[j] / sum(phi_y[k, c] * w[k] for k in range(m))
    return q


def test_cluster_formula():
    lx, ly = log_assign(6), log_assign(4, seed=1)
    px, py = lx.exp().numpy(), ly.exp().numpy()
    q = np_cluster(px, px)
    np.testing.assert_allclose(q.sum(1), 1.0, atol=1e-12)  # rows sum to 1 including self
    np.testing.assert_allclose(Cluster()(lx).exp().numpy(), q, rtol=1e-10, atol=1e-14)
    off = q.copy()
    np.fill_diagonal(off, 0.0)
    np.testing.assert_allclose(Cluster(include_self=False)(lx).exp().numpy(), np_row_normalise(off),
                               rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(Cluster()(lx, ly).exp().numpy(), np_cluster(px, py),
                               rtol=1e-10, atol=1e-14)


def test_cluster_hard_assignments_are_uniform_over_the_cluster():
    assign = torch.tensor([0, 0, 1, 1, 1, 2])
    expected = (assign[:, None] == assign[None, :]).to(F64)
    expected = expected / expected.sum(1, keepdim=True)
    for n_clusters in (3, 5):  # with 5, two clusters are empty in the batch
        log_phi = torch.log(F.one_hot(assign, n_clusters).to(F64))
        torch.testing.assert_close(Cluster()(log_phi).exp(), expected)


@pytest.mark.parametrize("scale", [60.0, 400.0, 1e20])
def test_cluster_kernel_saturated_assignments_keep_exact_values_and_finite_gradients(scale):
    """Saturated log-assignments (float32, products below the smallest normal number) take the exact
    ``logsumexp_c(a_ic + b_jc)`` branch: the same values and gradients as a float64 brute force."""
    logits = torch.randn(7, 4, generator=torch.Generator().manual_seed(0)) * scale
    lx = torch.log_softmax(logits, dim=1).requires_grad_(True)
    weights = torch.rand(7, 7, generator=torch.Generator().manual_seed(1))
    (Cluster()(lx) * weights).nan_to_num(neginf=0.0).sum().backward()
    ref = torch.log_softmax(logits.double(), dim=1).requires_grad_(True)
    log_size = torch.logsumexp(ref, dim=0, keepdim=True)
    brute = torch.logsumexp(ref[:, None, :] + (ref - log_size)[None, :, :], dim=2)
    brute = brute - torch.logsumexp(brute, dim=1, keepdim=True)
    (brute * weights.double()).nan_to_num(neginf=0.0).sum().backward()
    assert torch.isfinite(lx.grad).all()
    finite = torch.isfinite(brute)
    torch.testing.assert_close(Cluster()(lx.detach()).double()[finite], brute.detach()[finite],
                               rtol=1e-5, atol=1e-4 * max(1.0, float(brute.detach()[finite].abs().max())))
    torch.testing.assert_close(lx.grad.double(), ref.grad, rtol=1e-4, atol=1e-4)


def test_degree_weighted_cluster_formula():
    lx = log_assign(M, seed=3)
    px = lx.exp().numpy()
    d = DEGREE.numpy()
    np.testing.assert_allclose(DegreeWeightedCluster(DEGREE)(lx).exp().numpy(), np_cluster(px, px, d),
                               rtol=1e-10, atol=1e-14)
    la = log_assign(3, seed=4)
    np.testing.assert_allclose(DegreeWeightedCluster(DEGREE)(la, lx).exp().numpy(),
                               np_cluster(la.exp().numpy(), px, d), rtol=1e-10, atol=1e-14)
    # unit degrees give the plain cluster kernel
    torch.testing.assert_close(DegreeWeightedCluster(torch.ones(M, dtype=F64))(lx), Cluster()(lx))


@pytest.mark.parametrize("metric", ["squared_euclidean", "cosine", "dot"])
@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("include_self", [False, True], ids=["no-self", "self"])
def test_knn_formula(metric, k, include_self):
    x, y = feats(9, d=4).numpy(), feats(6, seed=1, d=4).numpy()

    def brute_force(dist):
        expected = np.zeros_like(dist)
        for i, order in enumerate(np.argsort(dist, axis=1, kind="stable")):
            expected[i, order[:k]] = 1.0 / k
        return expected

    # nearest = smallest "distance" = largest similarity; self pushed to the end unless included
    dist = -np_similarity(metric, x, x)
    if not include_self:
        np.fill_diagonal(dist, np.inf)
    out = KNN(n_neighbors=k, metric=metric, include_self=include_self)(torch.from_numpy(x))
    np.testing.assert_allclose(out.exp().numpy(), brute_force(dist), rtol=1e-12, atol=0)
    assert ((out > NEG_INF).sum(1) == k).all()

    out = KNN(n_neighbors=k, metric=metric, include_self=include_self)(torch.from_numpy(x), torch.from_numpy(y))
    np.testing.assert_allclose(out.exp().numpy(), brute_force(-np_similarity(metric, x, y)),
                               rtol=1e-12, atol=0)


def test_knn_include_self_counts_self_as_nearest():
    x = feats(7)
    out = KNN(n_neighbors=2, include_self=True)(x).exp()
    torch.testing.assert_close(out.diagonal(), torch.full((7,), 0.5, dtype=F64))
    nearest_other = KNN(n_neighbors=1)(x).exp()
    torch.testing.assert_close(out - torch.diag(out.diagonal()), nearest_other / 2)


def test_knn_output_is_a_constant_of_the_inputs():
    x = feats(6).requires_grad_(True)
    out = KNN(n_neighbors=2)(x)
    assert not out.requires_grad


def test_same_label_formula():
    y = torch.tensor([0, 1, 0, 2, 1, 0, 2, 2, 2])
    yn = y.numpy()
    match = (yn[:, None] == yn[None, :]).astype(float)
    np.fill_diagonal(match, 0.0)
    expected = match / match.sum(1, keepdims=True)  # 1[y_i = y_j] / (K_i - 1)
    np.testing.assert_allclose(SameLabel(dtype=F64)(y).exp().numpy(), expected, rtol=1e-15)
    match = (yn[:, None] == yn[None, :]).astype(float)
    np.testing.assert_allclose(SameLabel(include_self=True, dtype=F64)(y).exp().numpy(),
                               match / match.sum(1, keepdims=True), rtol=1e-15)


def test_positive_pairs_two_views_are_identity_blocks():
    b = 4
    ids = torch.cat([torch.arange(b), torch.arange(b)])
    out = PositivePairs(dtype=F64)(ids).exp()
    eye = torch.eye(b, dtype=F64)
    expected = torch.cat([torch.cat([0 * eye, eye], 1), torch.cat([eye, 0 * eye], 1)], 0)
    assert torch.equal(out, expected)


def test_cross_modal_is_identity_between_modalities():
    out = CrossModal(dtype=F64)(torch.arange(5), torch.arange(5)).exp()
    assert torch.equal(out, torch.eye(5, dtype=F64))
    out = CrossModal(dtype=F64)(torch.tensor([0, 1]), torch.tensor([1, 0, 1])).exp()
    assert torch.equal(out, torch.tensor([[0.0, 1.0, 0.0], [0.5, 0.0, 0.5]], dtype=F64))


def test_data_to_class_is_one_hot():
    y = torch.tensor([2, 0, 3, 3, 1])
    out = DataToClass(4, dtype=F64)(y).exp()
    assert torch.equal(out, F.one_hot(y, 4).to(F64))


@pytest.mark.parametrize("weights", [W_DENSE, W_SPARSE_DENSE, W_SPARSE], ids=["dense", "dense-zeros", "sparse"])
def test_adjacency_formula(weights):
    w = (weights.to_dense() if weights.layout != torch.strided else weights).numpy()
    x, y = PAIR_NODES
    sub = w[np.ix_(SELF_NODES.numpy(), SELF_NODES.numpy())].copy()
    np.fill_diagonal(sub, 0.0)
    np.testing.assert_allclose(Adjacency(weights)(SELF_NODES).exp().numpy(), np_row_normalise(sub),
                               rtol=1e-12)
    sub = w[np.ix_(SELF_NODES.numpy(), SELF_NODES.numpy())]
    np.testing.assert_allclose(Adjacency(weights, include_self=True)(SELF_NODES).exp().numpy(),
                               np_row_normalise(sub), rtol=1e-12)
    sub = w[np.ix_(x.numpy(), y.numpy())]
    np.testing.assert_allclose(Adjacency(weights)(x, y).exp().numpy(), np_row_normalise(sub),
                               rtol=1e-12)


def test_adjacency_sparse_equals_dense():
    dense, sparse = Adjacency(W_SPARSE_DENSE), Adjacency(W_SPARSE)
    assert torch.equal(dense(SELF_NODES), sparse(SELF_NODES))
    assert torch.equal(dense(*PAIR_NODES), sparse(*PAIR_NODES))
    assert (dense(SELF_NODES) == NEG_INF).sum() > N_SELF  # missing edges are -inf, not just self


# --------------------------------------------------------------------------------------------
# Discrete dtypes and Precomputed
# --------------------------------------------------------------------------------------------

def test_identity_puts_all_mass_on_self():
    out = Identity(dtype=F64)(torch.arange(5))
    assert torch.equal(out.exp(), torch.eye(5, dtype=F64))


@pytest.mark.parametrize("cls,kwargs,x", [
    (SameLabel, {}, labels(6)),
    (PositivePairs, {}, labels(6)),
    (Identity, {}, torch.arange(4)),
    (DataToClass, {"n_classes": 3}, labels(6)),
], ids=["same-label", "positive-pairs", "identity", "data-to-class"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["float32", "float64"])
def test_discrete_dtype_argument_and_default(cls, kwargs, x, dtype):
    assert cls(dtype=dtype, **kwargs)(x).dtype == dtype
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        out = cls(**kwargs)(x)
    finally:
        torch.set_default_dtype(previous)
    assert out.dtype == dtype


def test_precomputed_infers_include_self():
    assert Precomputed(PRE_SQUARE).include_self is False
    assert Precomputed(PRE_RECT).include_self is True
    full = torch.log_softmax(feats(4, d=4), dim=1)
    assert Precomputed(full).include_self is True
    with pytest.raises(IConError, match=r"include_self must be true for a non-square log_p; got False"):
        Precomputed(PRE_RECT, include_self=False)


def test_precomputed_checks_the_number_of_anchors():
    with pytest.raises(IConError, match=r"Precomputed: x must hold the 8 anchors"):
        Precomputed(PRE_SQUARE)(torch.zeros(5, 1))
    assert Precomputed(PRE_SQUARE)(None) is not None


# --------------------------------------------------------------------------------------------
# Documented empty rows
# --------------------------------------------------------------------------------------------

def test_same_label_singleton_has_an_empty_row():
    y = torch.tensor([0, 0, 1, 2, 2, 2])
    out = SameLabel(dtype=F64)(y)
    assert (out[2] == NEG_INF).all()
    lse = torch.logsumexp(out, dim=1)
    keep = torch.arange(6) != 2
    assert lse[keep].abs().max() < 1e-12
    # with self included the singleton is its own neighbour
    out = SameLabel(include_self=True, dtype=F64)(y)
    assert out[2, 2] == 0.0


def test_adjacency_isolated_node_has_an_empty_row():
    w = torch.ones(4, 4, dtype=F64)
    w[3, :] = 0.0
    w[:, 3] = 0.0
    out = Adjacency(w)(torch.arange(4))
    assert (out[3] == NEG_INF).all()
    torch.testing.assert_close(out[:3].exp().sum(1), torch.ones(3, dtype=F64))


def test_data_to_class_missing_prototype_gives_an_empty_row():
    out = DataToClass(3, dtype=F64)(torch.tensor([0, 2, 1]), torch.tensor([0, 1, 0]))
    assert (out[1] == NEG_INF).all()
    assert torch.equal(out[0].exp(), torch.tensor([0.5, 0.0, 0.5], dtype=F64))
