"""Contrastive Clustering (Li et al. 2021) against a direct implementation of the paper's Eq. 1-7
written here (one anchor at a time), in float64, values and gradients; and as a ``Clustering``
baseline on digits."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from icontorch import IConError, methods
from icontorch.methods.contrastive_clustering import cluster_terms

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _pair_loss(a, b, temperature):
    """Eq. 2 / 5 averaged as Eq. 3 / 6: items a_i, b_i are positives; the 2K - 1 others, negatives."""
    x = torch.cat([a, b])
    k = a.shape[0]
    total = 0.0
    for i in range(2 * k):
        def s(j):
            return torch.exp(torch.dot(x[i], x[j]) / (x[i].norm() * x[j].norm()) / temperature)
        denominator = sum(s(j) for j in range(2 * k) if j != i)
        total = total - torch.log(s((i + k) % (2 * k)) / denominator)
    return total / (2 * k)


def _reference(z1, z2, phi1, phi2, t_instance, t_cluster):
    """L = L_ins + L_clu, L_clu = (Eq. 6) - H(Y) (Eq. 7), plus their code's log M per view."""
    m = phi1.shape[1]
    entropy = 0.0
    for phi in (phi1, phi2):
        marginal = phi.sum(0) / phi.sum()
        entropy = entropy - (marginal * marginal.log()).sum()
    return (_pair_loss(z1, z2, t_instance) + _pair_loss(phi1.T, phi2.T, t_cluster) - entropy
            + 2 * math.log(m))


@pytest.mark.parametrize("t_instance, t_cluster", [(0.5, 1.0), (0.2, 0.7)])
def test_contrastive_clustering(t_instance, t_cluster):
    n, d, m = 7, 5, 3
    z1, z2 = _randn(n, d, seed=1), _randn(n, d, seed=2)
    a, b = _randn(n, m, seed=3), _randn(n, m, seed=4)         # cluster-head logits of the two views
    loss = methods.contrastive_clustering(t_instance, t_cluster)
    leaves = [t.clone().requires_grad_() for t in (z1, z2, a, b)]
    ours = loss(leaves[0], leaves[1], F.log_softmax(leaves[2], 1), F.log_softmax(leaves[3], 1))
    ours_grads = torch.autograd.grad(ours, leaves)
    leaves_ref = [t.clone().requires_grad_() for t in (z1, z2, a, b)]
    ref = _reference(leaves_ref[0], leaves_ref[1], torch.softmax(leaves_ref[2], 1), torch.softmax(leaves_ref[3], 1),
                     t_instance, t_cluster)
    ref_grads = torch.autograd.grad(ref, leaves_ref)
    torch.testing.assert_close(ours, ref.detach(), rtol=0, atol=1e-12)
    for g, h in zip(ours_grads, ref_grads):
        torch.testing.assert_close(g, h, rtol=0, atol=1e-12)


def test_contrastive_clustering_terms():
    n, d, m = 8, 4, 4
    z1, z2 = _randn(n, d, seed=5), _randn(n, d, seed=6)
    loss = methods.contrastive_clustering(0.5, 1.0)
    # The instance term is SimCLR (Thm 3), the I-Con loss, on the 2N stacked views.
    torch.testing.assert_close(loss.instance_loss(z1, z2),
                               methods.simclr(0.5)(torch.cat([z1, z2]), target=torch.arange(n).repeat(2)),
                               rtol=0, atol=1e-12)
    # The cluster-level contrast is SimCLR (an I-Con loss) on the 2M columns, whose items are clusters.
    la, lb = F.log_softmax(_randn(n, m, seed=7), 1), F.log_softmax(_randn(n, m, seed=8), 1)
    entropy = sum(-(p * p.log()).sum() for p in (la.exp().mean(0), lb.exp().mean(0)))
    columns = torch.cat([la.exp().T, lb.exp().T])
    torch.testing.assert_close(loss.cluster_loss(la, lb) - 2 * math.log(m) + entropy,
                               methods.simclr(1.0)(columns, target=torch.arange(m).repeat(2)), rtol=0, atol=1e-12)
    # Heads stacked on a leading dimension (Clustering's batches): each head's loss.
    stacked = cluster_terms(torch.stack([la, lb]), torch.stack([lb, la]), 1.0)
    torch.testing.assert_close(stacked, torch.stack([loss.cluster_loss(la, lb), loss.cluster_loss(lb, la)]),
                               rtol=0, atol=1e-12)
    # Balanced hard assignments: the entropy term is 0 (each marginal is uniform), so the cluster
    # loss is the contrast of one-hot columns: identical columns across views, orthogonal otherwise.
    one_hot = F.one_hot(torch.arange(n) % m, m).double()
    log_phi = torch.log(one_hot * (1 - 1e-12 * m) + 1e-12)
    value = loss.cluster_loss(log_phi, log_phi)
    positive, negative = math.exp(1.0), 1.0                   # exp(cos / 1) for cos = 1 and cos = 0
    expected = -math.log(positive / (positive + (2 * m - 2) * negative))
    np.testing.assert_allclose(float(value), expected, rtol=0, atol=1e-9)
    # Saturated assignments (log-probabilities of -1e20): finite value and gradients.
    logits = (1e20 * (one_hot - 1)).requires_grad_()
    value = loss.cluster_loss(F.log_softmax(logits, 1), F.log_softmax(logits, 1).roll(1, 0))
    (grad,) = torch.autograd.grad(value, logits)
    assert torch.isfinite(value) and torch.isfinite(grad).all()


def test_contrastive_clustering_validates():
    n, d, m = 6, 4, 3
    z, log_phi = _randn(n, d, seed=1), F.log_softmax(_randn(n, m, seed=2), 1)
    loss = methods.contrastive_clustering()
    cases = [
        (lambda: methods.contrastive_clustering(instance_temperature=0.0), "instance_temperature must be a positive"),
        (lambda: methods.contrastive_clustering(cluster_temperature=math.nan), "cluster_temperature must be a"),
        (lambda: loss(z, z[:, :2], log_phi, log_phi), "z2 must have the shape of z1"),
        (lambda: loss(z.clone().fill_(math.nan), z, log_phi, log_phi), "z1 must be finite"),
        (lambda: loss(z, z, log_phi[:4], log_phi[:4]), "log_phi1 must hold one row per row of z1"),
        (lambda: loss(z, z, log_phi, log_phi[:, :2]), "log_phi2 must have the shape of log_phi1"),
        (lambda: loss(z, z, log_phi + 1.0, log_phi), "log_phi1 must hold log soft assignments"),
    ]
    for make, message in cases:
        with pytest.raises(IConError, match=message):
            make()


def test_contrastive_clustering_clusters_digits():
    """``Clustering(method="contrastive_clustering")``: the cluster-level loss on (anchor, kNN neighbour)
    pairs of frozen features; far above chance on digits after a short fit."""
    from sklearn.datasets import load_digits

    from icontorch import Clustering
    from icontorch.metrics import clustering_scores

    torch.set_default_dtype(torch.float32)
    X, y = load_digits(return_X_y=True)
    model = Clustering(10, method="contrastive_clustering", n_heads=2, epochs=8, batch_size=128,
                       random_state=0, n_jobs=1).fit(X)
    scores = clustering_scores(y, model.labels_)
    assert np.isfinite(model.loss_history_).all()
    assert scores["nmi"] > 0.5 and scores["accuracy"] > 0.4, scores   # chance: NMI ~ 0, accuracy ~ 0.1
