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

pytestmark = pytest.mark.usefixtures("float64_default")


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


# -------------------------------------------------------------------------------- Normalized Cuts

def _symmetric_graph(n, seed):
    rng = np.random.default_rng(seed)
    W = rng.random((n, n))
    W = (W + W.T) / 2
    np.fill_diagonal(W, 0.0)
    return W


def _ncut(W, labels):
    """Shi & Malik: sum over non-empty clusters of cut(A, rest) / vol(A), from the definition."""
    degree = W.sum(1)
    total = 0.0
    for c in np.unique(labels):
        inside = labels == c
        total += W[np.ix_(inside, ~inside)].sum() / degree[inside].sum()
    return total


def _graph_log_z(W):
    """sum_i log sum_k exp(w_ik / d_k), k over all nodes (self included)."""
    return logsumexp(W / W.sum(1)[None, :], axis=1).sum()


def test_normalized_cuts():
    n, k = 12, 3
    W = _symmetric_graph(n, seed=0)
    loss = methods.normalized_cuts(torch.tensor(W))
    nodes = torch.arange(n)
    rng = np.random.default_rng(1)
    # Thm 14 made exact for hard partitions: n L = NCut - C + sum_i log Z_i.
    for _ in range(6):
        labels = rng.integers(0, k, size=n)
        value = float(loss(_one_hot_log(labels, k), target=nodes))
        C = len(np.unique(labels))
        np.testing.assert_allclose(n * value, _ncut(W, labels) - C + _graph_log_z(W), rtol=1e-12)
    # Argmin: over every bipartition of an 8-node graph the loss and NCut pick the same one.
    n = 8
    W = _symmetric_graph(n, seed=2)
    W[:4, :4] += 2.0
    W[4:, 4:] += 2.0
    np.fill_diagonal(W, 0.0)
    loss = methods.normalized_cuts(torch.tensor(W))
    parts = [np.array([(m >> b) & 1 for b in range(n)]) for m in range(1, 2 ** (n - 1))]
    values = [float(loss(_one_hot_log(p, 2), target=torch.arange(n))) for p in parts]
    cuts = [_ncut(W, p) for p in parts]
    assert int(np.argmin(values)) == int(np.argmin(cuts))
    assert set(parts[int(np.argmin(values))][:4]) != set(parts[int(np.argmin(values))][4:])


# -------------------------------------------------------------------------------------------- DCD

@pytest.mark.parametrize("k", [3, 6])
def test_dcd(k):
    from sklearn.neighbors import kneighbors_graph

    X = _blobs(n_per=7, seed=3)
    n, C = len(X), 3
    A = torch.tensor(kneighbors_graph(X, k, mode="connectivity").toarray()) / k   # row-normalised kNN
    logits = torch.randn(n, C, generator=torch.Generator().manual_seed(4), dtype=torch.float64)

    def generalised_kl(lg):
        # Yang & Oja: D(A || A_hat) = sum_ij A log(A / A_hat) - A + A_hat, A_hat = W diag(1/sum W) W^T.
        w = torch.softmax(lg, 1)
        a_hat = w @ (w / w.sum(0)).T
        pos = A > 0
        return (A[pos] * (A[pos] / a_hat[pos]).log()).sum() - A.sum() + a_hat.sum()

    lg = logits.clone().requires_grad_()
    value = n * methods.dcd(k)(torch.log_softmax(lg, 1), target=torch.tensor(X))
    (g_ours,) = torch.autograd.grad(value, lg)
    lg = logits.clone().requires_grad_()
    ref = generalised_kl(lg)
    (g_ref,) = torch.autograd.grad(ref, lg)
    torch.testing.assert_close(value.detach(), ref.detach(), rtol=0, atol=1e-11)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-11)


# ----------------------------------------------------------- InfoNCE clustering and PMI clustering

def _cluster_kernel(phi_a, phi_b):
    return phi_a @ (phi_b / phi_b.sum(0)).T


@pytest.mark.parametrize("alpha_p, alpha_q", [(0.0, 0.0), (0.6, None), (0.3, 0.8)])
def test_infonce_clustering(alpha_p, alpha_q):
    ids = torch.tensor([0, 1, 2, 3, 0, 1, 2, 3, 0, 4, 4])
    n, C = len(ids), 4
    logits = torch.randn(n, C, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    eye = torch.eye(n, dtype=torch.bool)
    same = (ids[:, None] == ids[None, :]) & ~eye
    p = same / same.sum(1, keepdim=True)
    a_q = alpha_p if alpha_q is None else alpha_q
    p_mix = ((1 - alpha_p) * p + alpha_p / (n - 1)).masked_fill(eye, 0.0)   # self is not a candidate of p

    def reference(lg):
        phi = torch.softmax(lg, 1)
        q_mix = (1 - a_q) * _cluster_kernel(phi, phi) + a_q / n       # the cluster kernel includes self
        pos = p_mix > 0
        return (p_mix[pos] * (p_mix[pos].log() - q_mix[pos].log())).sum() / n

    loss = methods.infonce_clustering(alpha_p=alpha_p, alpha_q=alpha_q)
    lg = logits.clone().requires_grad_()
    value = loss(torch.log_softmax(lg, 1), target=ids)
    (g_ours,) = torch.autograd.grad(value, lg)
    lg = logits.clone().requires_grad_()
    ref = reference(lg)
    (g_ref,) = torch.autograd.grad(ref, lg)
    torch.testing.assert_close(value.detach(), ref.detach(), rtol=0, atol=1e-12)
    torch.testing.assert_close(g_ours, g_ref, rtol=0, atol=1e-12)
    if alpha_p == 0.0 and a_q == 0.0:                   # undebiased: PMI clustering (Thm 15)
        torch.testing.assert_close(value, methods.pmi_clustering()(torch.log_softmax(logits, 1), target=ids),
                                   rtol=0, atol=1e-12)


def test_pmi_clustering():
    # Anchors of view 1 against the items of view 2 (cluster sizes from view 2).
    n, C = 10, 3
    g = torch.Generator().manual_seed(6)
    l1, l2 = (torch.randn(n, C, generator=g, dtype=torch.float64) for _ in range(2))
    ids = torch.arange(n)
    loss = methods.pmi_clustering()

    def reference(a, b):
        phi1, phi2 = torch.softmax(a, 1), torch.softmax(b, 1)
        return -_cluster_kernel(phi1, phi2).diagonal().log().mean()

    leaves = [l1.clone().requires_grad_(), l2.clone().requires_grad_()]
    value = loss(torch.log_softmax(leaves[0], 1), target=ids, candidates=torch.log_softmax(leaves[1], 1),
                 target_candidates=ids)
    grads = torch.autograd.grad(value, leaves)
    leaves_ref = [l1.clone().requires_grad_(), l2.clone().requires_grad_()]
    ref = reference(*leaves_ref)
    grads_ref = torch.autograd.grad(ref, leaves_ref)
    torch.testing.assert_close(value.detach(), ref.detach(), rtol=0, atol=1e-12)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
