"""Oracle test for probabilistic k-Means as I-Con (Thm 13, methods.md section 2.7).

``methods.kmeans(sigma)`` is ``(1/n) sum_i [KL(q_i || p_i) + H(q_i)]`` with q the cluster kernel and
p a Gaussian over all points including i, so

    n L = sum_ic phi_ic ||x_i - mu_c||^2 / sigma^2 + sum_i logsumexp_k(-||x_i - x_k||^2 / (2 sigma^2))

with mu_c the phi-weighted means. For one-hot phi the first term is k-Means' inertia / sigma^2.
The oracle is scikit-learn's ``KMeans`` (labels and inertia) and scipy/numpy for the constant.
"""

import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from scipy.special import logsumexp
from sklearn.cluster import KMeans

import icontorch
from icontorch import methods


@pytest.fixture(autouse=True)
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _blobs(n_per=15, centers=((0.0, 0.0), (4.0, 0.0), (0.0, 4.0)), seed=0):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.normal(loc=c, scale=1.0, size=(n_per, 2)) for c in centers])
    return X


def _one_hot_log(labels, k):
    log_phi = torch.full((len(labels), k), float("-inf"))
    log_phi[torch.arange(len(labels)), torch.as_tensor(labels)] = 0.0
    return log_phi


def _log_z(X, sigma):
    """sum_i log sum_k exp(-||x_i - x_k||^2 / (2 sigma^2)), k over all points including i."""
    return logsumexp(-cdist(X, X, "sqeuclidean") / (2 * sigma ** 2), axis=1).sum()


def _inertia(X, labels, k):
    return sum(((X[labels == c] - X[labels == c].mean(0)) ** 2).sum() for c in range(k))


@pytest.mark.parametrize("sigma", [0.5, 1.0, 3.0])
def test_kmeans_identity(sigma):
    X = _blobs()
    n, k = len(X), 3
    km = KMeans(n_clusters=k, n_init=10, random_state=0, tol=0).fit(X)
    inertia = _inertia(X, km.labels_, k)
    # With tol=0 scikit-learn runs to convergence, where its centres are the label means.
    np.testing.assert_allclose(inertia, km.inertia_, rtol=1e-10)

    loss = methods.kmeans(sigma)
    value = loss(_one_hot_log(km.labels_, k), target=torch.tensor(X))
    expected = inertia / sigma ** 2 + _log_z(X, sigma)
    torch.testing.assert_close(n * value, torch.tensor(expected), rtol=1e-12, atol=1e-10)

    # Argmin: every other hard assignment (each cluster non-empty) has a higher I-Con loss, and
    # the loss orders assignments exactly as their inertia does.
    rng = np.random.default_rng(1)
    candidates = [km.labels_]
    while len(candidates) < 8:
        labels = rng.integers(0, k, size=n)
        if len(np.unique(labels)) == k:
            candidates.append(labels)
    shuffled = km.labels_.copy()
    swap = rng.choice(n, size=5, replace=False)
    shuffled[swap] = (shuffled[swap] + 1) % k  # a near miss: five points moved
    candidates.append(shuffled)
    values = np.array([float(loss(_one_hot_log(c, k), target=torch.tensor(X))) for c in candidates])
    inertias = np.array([_inertia(X, c, k) for c in candidates])
    assert np.argmin(values) == 0
    assert np.all(values[1:] > values[0])
    np.testing.assert_allclose(n * values - _log_z(X, sigma), inertias / sigma ** 2, rtol=1e-10)


def test_kmeans_soft_assignments():
    X = _blobs(n_per=8, seed=2)
    n, k, sigma = len(X), 4, 1.5
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(n, k, generator=g, dtype=torch.float64)
    Xt = torch.tensor(X)

    def soft_kmeans(lg):
        """sum_ic phi_ic ||x_i - mu_c||^2 with phi-weighted means, computed directly."""
        phi = torch.softmax(lg, dim=1)
        mu = (phi.T @ Xt) / phi.sum(0)[:, None]
        return (phi * ((Xt[:, None, :] - mu[None]) ** 2).sum(-1)).sum()

    # The identity on the cluster kernel: sum_ij q(j|i) ||x_i - x_j||^2 = 2 soft k-Means.
    phi = torch.softmax(logits, dim=1)
    q = icontorch.Cluster()(torch.log_softmax(logits, dim=1)).exp()
    q_ref = phi @ (phi / phi.sum(0)).T  # q(j|i) = sum_c phi_ic phi_jc / n_c
    torch.testing.assert_close(q, q_ref, rtol=0, atol=1e-14)
    torch.testing.assert_close(q.sum(1), torch.ones(n), rtol=0, atol=1e-13)
    d2 = torch.cdist(Xt, Xt) ** 2
    torch.testing.assert_close((q * d2).sum(), 2 * soft_kmeans(logits), rtol=1e-12, atol=1e-10)

    # Thm 13 for soft phi: n L = soft k-Means / sigma^2 + const, values and gradients in the logits.
    loss = methods.kmeans(sigma)
    lg = logits.clone().requires_grad_()
    value = n * loss(torch.log_softmax(lg, dim=1), target=Xt)
    (g_ours,) = torch.autograd.grad(value, lg)
    lg = logits.clone().requires_grad_()
    ref = soft_kmeans(lg) / sigma ** 2 + _log_z(X, sigma)
    (g_ref,) = torch.autograd.grad(ref, lg)
    torch.testing.assert_close(value.detach(), ref.detach(), rtol=1e-12, atol=1e-10)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-10)


def test_kmeans_hard_assignment_with_an_empty_cluster():
    # k = 4 clusters requested but only 3 used: the empty cluster should carry no weight.
    X = _blobs(n_per=5)
    n, sigma = len(X), 1.0
    labels = np.repeat(np.arange(3), 5)
    value = methods.kmeans(sigma)(_one_hot_log(labels, 4), target=torch.tensor(X))
    expected = _inertia(X, labels, 3) / sigma ** 2 + _log_z(X, sigma)
    torch.testing.assert_close(n * value, torch.tensor(expected), rtol=1e-12, atol=1e-10)
