"""Oracle tests for the dimensionality-reduction methods: SNE, t-SNE (joint) and conditional t-SNE.

The oracles are scikit-learn's perplexity search and t-SNE objective, openTSNE's exact affinities
and small numpy references written here. Everything runs in float64 on CPU.

Conventions (methods.md sections 4.1, 4.2, 7): SNE's cost is a *sum* over anchors, so it is n times
the I-Con mean; joint t-SNE is one anchor over the n*n ordered pairs, so the I-Con value *is*
scikit-learn's ``kl_divergence``. scikit-learn searches the perplexity on float32 distances with
tolerance 1e-5 while icontorch searches in float64 to 1e-10, so comparisons of the whole method
are to ~1e-6; feeding scikit-learn's own P through ``ICon(p=log P, q=method.q)`` isolates q and the
divergence and is compared to ~1e-10.
"""

import math

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist, squareform
from sklearn.manifold import _t_sne, _utils

import icontorch
from icontorch import ICon, methods

openTSNE = pytest.importorskip("openTSNE")


pytestmark = pytest.mark.usefixtures("float64_default")


def _data(n=40, d_in=5, d_out=2, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d_in)), rng.normal(size=(n, d_out))


def _log(p):
    """Elementwise log with log 0 = -inf and no warning."""
    out = np.full(p.shape, -np.inf)
    np.log(p, out=out, where=p > 0)
    return out


def _sklearn_conditional_p(X, perplexity):
    """scikit-learn's conditional p(j|i) (float32 search on squared distances), diagonal 0."""
    D = cdist(X, X, "sqeuclidean")
    return _utils._binary_search_perplexity(D.astype(np.float32), perplexity, 0)


def _sklearn_joint_p(X, perplexity):
    """scikit-learn's joint P as a square (n, n) matrix summing to 1."""
    D = cdist(X, X, "sqeuclidean")
    return squareform(_t_sne._joint_probabilities(D.astype(np.float32), perplexity, 0))


def _conditional_reference(P, Y, neg_log_kernel, neg_log_kernel_slope):
    """Per-anchor KL and its gradient for ``q(j|i) ∝ k(||y_i - y_j||^2)``, j != i (numpy).

    Cost ``C = sum_i KL(P_i || Q_i)`` (SNE's sum over anchors). With ``u = -log k`` and
    ``a_ij = (p_j|i - q_j|i) u'(d_ij)``, ``dC/dy_i = 2 sum_j (a_ij + a_ji)(y_i - y_j)``.
    """
    d = cdist(Y, Y, "sqeuclidean")
    n = len(Y)
    off = ~np.eye(n, dtype=bool)
    log_w = np.where(off, -neg_log_kernel(d), -np.inf)
    log_q = log_w - np.logaddexp.reduce(log_w, axis=1, keepdims=True)
    Q = np.exp(log_q)
    pos = P > 0
    log_ratio = np.where(pos, _log(P), 0.0) - np.where(pos, log_q, 0.0)
    rows = np.where(pos, P * log_ratio, 0.0).sum(1)
    A = (P - Q) * neg_log_kernel_slope(d)
    A[~off] = 0.0
    S = A + A.T
    grad = 2.0 * (S.sum(1)[:, None] * Y - S @ Y)
    return rows, grad


def _gaussian_reference(P, Y):
    return _conditional_reference(P, Y, lambda d: d, lambda d: np.ones_like(d))


def _student_reference(P, Y, dof):
    e = 0.5 * (dof + 1.0)
    return _conditional_reference(P, Y, lambda d: e * np.log1p(d / dof), lambda d: e / (dof + d))


def _value_and_grad(loss, Y, **kwargs):
    y = torch.tensor(Y, requires_grad=True)
    value = loss(y, **kwargs)
    (g,) = torch.autograd.grad(value, y)
    return value.detach(), g


# --------------------------------------------------------------------------------------------- SNE

@pytest.mark.parametrize("perplexity", [5.0, 12.0])
def test_sne(perplexity):
    X, Y = _data()
    n = len(X)
    P = _sklearn_conditional_p(X, perplexity)
    rows_ref, grad_ref = _gaussian_reference(P, Y)

    # 1) The method's q and divergence fed scikit-learn's own P: equal to ~1e-10, row by row.
    sne = methods.sne(perplexity)
    fed = ICon(p=icontorch.Precomputed(torch.tensor(_log(P))), q=sne.q, divergence=sne.divergence,
               reduction="none")
    total, g = _value_and_grad(lambda y: fed(y).sum(), Y)
    torch.testing.assert_close(fed(torch.tensor(Y)), torch.tensor(rows_ref), rtol=0, atol=1e-10)
    torch.testing.assert_close(total, torch.tensor(rows_ref.sum()), rtol=0, atol=1e-10)
    torch.testing.assert_close(g, torch.tensor(grad_ref), rtol=0, atol=1e-10)
    # The method's reduction is the mean over anchors: SNE's cost is n times it.
    fed_mean = ICon(p=torch.tensor(_log(P)), q=sne.q, divergence=sne.divergence, reduction=sne.reduction)
    torch.testing.assert_close(n * fed_mean(torch.tensor(Y)), torch.tensor(rows_ref.sum()),
                               rtol=0, atol=1e-10)

    # 2) The whole method (its own float64 perplexity search): SNE's cost is n times the mean.
    value, g = _value_and_grad(lambda y: sne(y, target=torch.tensor(X)), Y)
    torch.testing.assert_close(value, torch.tensor(rows_ref.sum() / n), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, torch.tensor(grad_ref / n), rtol=0, atol=1e-6)

    # Our P is the one scikit-learn searches for, to the float32 / 1e-5 precision of its search,
    # and it has exactly the requested perplexity (entropy in nats).
    p_ours = sne.p(torch.tensor(X)).exp()
    np.testing.assert_allclose(p_ours.numpy(), P, rtol=0, atol=2e-5)
    entropy = -(p_ours * p_ours.clamp_min(1e-300).log()).sum(1)
    torch.testing.assert_close(entropy, torch.full((n,), math.log(perplexity)), rtol=0, atol=1e-8)


# ------------------------------------------------------------------------------------- joint t-SNE

@pytest.mark.parametrize("dof", [1.0, 2.0, 0.5])
def test_tsne(dof):
    perplexity = 8.0
    X, Y = _data()
    n, n_components = Y.shape
    P = _sklearn_joint_p(X, perplexity)
    P_condensed = squareform(P, checks=False)
    # scikit-learn floors P and Q at machine epsilon; make sure that changes nothing here.
    assert P_condensed.min() > 1e-12
    kl_ref, grad_sklearn = _t_sne._kl_divergence(Y.ravel(), P_condensed, dof, n, n_components)
    grad_sklearn = grad_sklearn.reshape(n, n_components)

    # scikit-learn's analytic gradient uses the kernel (1 + d/dof)^(-(dof+1)/2) where the exact
    # derivative has (1 + d/dof)^(-1); they agree only for dof = 1. So for the gradient we use
    # central differences of scikit-learn's *value* as the oracle, and check that scikit-learn's
    # analytic gradient agrees with it exactly when dof = 1.
    h = 1e-6
    y0 = Y.ravel()
    fd = np.empty_like(y0)
    for k in range(y0.size):
        step = np.zeros_like(y0)
        step[k] = h
        up = _t_sne._kl_divergence(y0 + step, P_condensed, dof, n, n_components)[0]
        down = _t_sne._kl_divergence(y0 - step, P_condensed, dof, n, n_components)[0]
        fd[k] = (up - down) / (2 * h)
    fd = fd.reshape(n, n_components)
    if dof == 1.0:
        np.testing.assert_allclose(grad_sklearn, fd, rtol=0, atol=1e-8)

    tsne = methods.tsne(perplexity, dof=dof)

    # 1) scikit-learn's P, the method's joint Student-t q: value to 1e-10; gradient equal to
    #    scikit-learn's analytic one for dof = 1 and to the finite differences for every dof.
    fed = ICon(p=torch.tensor(_log(P)).reshape(1, -1), q=tsne.q, divergence=tsne.divergence)
    value, g = _value_and_grad(fed, Y)
    torch.testing.assert_close(value, torch.tensor(kl_ref), rtol=0, atol=1e-10)
    torch.testing.assert_close(g, torch.tensor(fd), rtol=0, atol=1e-7)
    if dof == 1.0:
        torch.testing.assert_close(g, torch.tensor(grad_sklearn), rtol=0, atol=1e-10)

    # The same through symmetrize() of scikit-learn's *conditional* P.
    P_cond = _sklearn_conditional_p(X, perplexity)
    sym = ICon(p=icontorch.symmetrize(icontorch.Precomputed(torch.tensor(_log(P_cond)))),
               q=tsne.q, divergence=tsne.divergence)
    torch.testing.assert_close(sym(torch.tensor(Y)), torch.tensor(kl_ref), rtol=0, atol=1e-10)

    # 2) The whole method, with its own float64 perplexity search: ~1e-6.
    value, g = _value_and_grad(lambda y: tsne(y, target=torch.tensor(X)), Y)
    torch.testing.assert_close(value, torch.tensor(kl_ref), rtol=0, atol=2e-6)
    torch.testing.assert_close(g, torch.tensor(fd), rtol=0, atol=2e-6)

    # One anchor whose neighbours are the n*n ordered pairs.
    assert tsne.p(torch.tensor(X)).shape == (1, n * n)


def test_tsne_joint_p_matches_sklearn_and_opentsne():
    X, _ = _data(n=40)
    n = len(X)
    for perplexity in (5.0, 10.0):
        ours = icontorch.symmetrize(icontorch.PerplexityGaussian(perplexity))(torch.tensor(X))
        ours = ours.exp().reshape(n, n).numpy()
        np.testing.assert_allclose(ours.sum(), 1.0, rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours, ours.T, rtol=0, atol=1e-15)
        assert np.all(np.diag(ours) == 0.0)
        # scikit-learn: float32 distances and a 1e-5 entropy tolerance.
        np.testing.assert_allclose(ours, _sklearn_joint_p(X, perplexity), rtol=0, atol=1e-6)
        # openTSNE exact affinities: float64 with a 1e-8 tolerance, so a tight match.
        affinity = openTSNE.affinity.PerplexityBasedNN(X, perplexity=perplexity, method="exact",
                                                       k_neighbors=n - 1)
        P_open = np.asarray(affinity.P.toarray(), dtype=np.float64)
        np.testing.assert_allclose(ours, P_open, rtol=0, atol=1e-9)


# ------------------------------------------------------------------------------- conditional t-SNE

@pytest.mark.parametrize("dof", [1.0, 3.0])
def test_conditional_tsne(dof):
    perplexity = 8.0
    X, Y = _data(seed=1)
    n = len(X)
    P = _sklearn_conditional_p(X, perplexity)
    rows_ref, grad_ref = _student_reference(P, Y, dof)

    ctsne = methods.conditional_tsne(perplexity, dof=dof)
    fed = ICon(p=icontorch.Precomputed(torch.tensor(_log(P))), q=ctsne.q, divergence=ctsne.divergence,
               reduction="none")
    torch.testing.assert_close(fed(torch.tensor(Y)), torch.tensor(rows_ref), rtol=0, atol=1e-10)
    total, g = _value_and_grad(lambda y: fed(y).sum(), Y)
    torch.testing.assert_close(g, torch.tensor(grad_ref), rtol=0, atol=1e-10)

    # The whole method: the I-Con mean is the per-anchor cost over n.
    value, g = _value_and_grad(lambda y: ctsne(y, target=torch.tensor(X)), Y)
    torch.testing.assert_close(value, torch.tensor(rows_ref.sum() / n), rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(g, torch.tensor(grad_ref / n), rtol=0, atol=1e-6)

    # A different objective from the joint t-SNE on the same data.
    joint_value = methods.tsne(perplexity, dof=dof)(torch.tensor(Y), target=torch.tensor(X))
    assert abs(float(value) - float(joint_value)) > 1e-2


# ------------------------------------------------------------ uniform affinities and graph layouts

def _sklearn_kl_and_grad(P_square, Y):
    """scikit-learn's exact t-SNE objective (dof = 1) on a square joint P: value and gradient."""
    n, n_components = Y.shape
    kl, grad = _t_sne._kl_divergence(Y.ravel(), squareform(P_square, checks=False), 1.0, n, n_components)
    return kl, grad.reshape(n, n_components)


@pytest.mark.parametrize("k", [3, 7])
def test_sne_uniform_affinities(k):
    from sklearn.neighbors import kneighbors_graph

    X, Y = _data(n=30, seed=4)
    n = len(X)
    # scikit-learn's kNN graph, rows scaled to 1/k: p(j|i) = 1[j in kNN(i)] / k.
    P = kneighbors_graph(X, k, mode="connectivity").toarray() / k
    rows_ref, grad_ref = _gaussian_reference(P, Y)
    value, g = _value_and_grad(lambda y: methods.sne_uniform_affinities(k)(y, target=torch.tensor(X)), Y)
    torch.testing.assert_close(value, torch.tensor(rows_ref.sum() / n), rtol=0, atol=1e-12)
    torch.testing.assert_close(g, torch.tensor(grad_ref / n), rtol=0, atol=1e-12)


@pytest.mark.parametrize("k", [3, 7])
def test_tsne_uniform_affinities(k):
    X, Y = _data(n=30, seed=5)
    # openTSNE's uniform affinities, averaged symmetrisation: P = (P + P^T) / 2, normalised.
    affinity = openTSNE.affinity.Uniform(X, k_neighbors=k, method="exact", symmetrize="mean")
    P = np.asarray(affinity.P.toarray(), dtype=np.float64)
    kl_ref, grad_ref = _sklearn_kl_and_grad(P, Y)
    value, g = _value_and_grad(lambda y: methods.tsne_uniform_affinities(k)(y, target=torch.tensor(X)), Y)
    torch.testing.assert_close(value, torch.tensor(kl_ref), rtol=0, atol=1e-10)
    torch.testing.assert_close(g, torch.tensor(grad_ref), rtol=0, atol=1e-10)
    ours = methods.tsne_uniform_affinities(k).p(torch.tensor(X)).exp().reshape(len(X), -1).numpy()
    np.testing.assert_allclose(ours, P, rtol=0, atol=1e-15)


def test_tsne_graph_embedding():
    rng = np.random.default_rng(6)
    n = 25
    W = rng.random((n, n)) * (rng.random((n, n)) < 0.3)
    W[np.arange(n), (np.arange(n) + 1) % n] = 1.0               # a ring keeps every degree positive
    np.fill_diagonal(W, 0.0)
    Y = rng.normal(size=(n, 2))
    # openTSNE's precomputed affinities of the symmetrised random walk (w_ij/d_i + w_ji/d_j) / 2n.
    walk = W / W.sum(1, keepdims=True)
    P = np.asarray(openTSNE.affinity.PrecomputedAffinities((walk + walk.T) / 2).P.toarray())
    kl_ref, grad_ref = _sklearn_kl_and_grad(P, Y)
    loss = methods.tsne_graph_embedding(torch.tensor(W))
    value, g = _value_and_grad(lambda y: loss(y, target=torch.arange(n)), Y)
    torch.testing.assert_close(value, torch.tensor(kl_ref), rtol=0, atol=1e-10)
    torch.testing.assert_close(g, torch.tensor(grad_ref), rtol=0, atol=1e-10)
