"""The twelve grey cells of Fig. 1: methods the paper names but never defines.

No original implementation exists, so each is pinned three ways (float64): against its defining
formula written here from the cell's row (q) and column (p); against a neighbouring cell it must
reduce to (a limit in dof or sigma, or a special graph); and, for the sigma rows, by the
limit / sandwich bound that gives the cell its meaning (Prop 1, Thm 5), checked for several sigma.
"""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses
from sklearn.neighbors import kneighbors_graph

from icontorch import methods

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _sq(a, b):
    return ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)


def _grad(fn, x):
    x = x.detach().clone().requires_grad_()
    value = fn(x)
    return value.detach(), torch.autograd.grad(value, x)[0]


def _assert_same(fn_a, fn_b, x, atol=1e-12):
    va, ga = _grad(fn_a, x)
    vb, gb = _grad(fn_b, x)
    torch.testing.assert_close(va, vb, rtol=0, atol=atol)
    torch.testing.assert_close(ga, gb, rtol=0, atol=atol)


def _student(d, dof):
    return (1 + d / dof) ** (-(dof + 1) / 2)


def _joint_kl(P, W):
    """KL(P || Q) with Q = W / sum over i != j (P zero on the diagonal)."""
    n = P.shape[0]
    off = ~torch.eye(n, dtype=torch.bool)
    Q = W * off / (W * off).sum()
    mask = P > 0
    return (P[mask] * (P[mask].log() - Q[mask].log())).sum()


def _sym_rows(K):
    """Row-normalise a kernel off the diagonal, then P = (p + p^T) / 2n."""
    n = K.shape[0]
    K = K * ~torch.eye(n, dtype=torch.bool)
    p = K / K.sum(1, keepdim=True)
    return (p + p.T) / (2 * n)


# ------------------------------------------------------------------------- Student-T column (p)

def test_dual_tsne():
    X, Y = _randn(15, 4, seed=0), _randn(15, 2, seed=1)
    for dof in (1.0, 3.0):
        P = _sym_rows(_student(_sq(X, X), dof))
        _assert_same(lambda y: methods.dual_tsne(dof)(y, target=X),
                     lambda y: _joint_kl(P, torch.exp(-_sq(y, y))), Y)


def test_doubly_tsne():
    X, Y = _randn(15, 4, seed=2), _randn(15, 2, seed=3)
    for in_dof, dof in ((1.0, 1.0), (2.0, 0.5)):
        P = _sym_rows(_student(_sq(X, X), in_dof))
        _assert_same(lambda y: methods.doubly_tsne(in_dof, dof)(y, target=X),
                     lambda y: _joint_kl(P, _student(_sq(y, y), dof)), Y)
    # Limit: as the input dof grows, p tends to the Gaussian exp(-d^2 / 2): t-SNE with a fixed
    # unit-width Gaussian p. The error falls like 1 / dof.
    P_gauss = _sym_rows(torch.exp(-_sq(X, X) / 2))
    target = float(_joint_kl(P_gauss, _student(_sq(Y, Y), 1.0)))
    errors = [abs(float(methods.doubly_tsne(nu, 1.0)(Y, target=X)) - target) for nu in (1e2, 1e3, 1e4)]
    assert errors[0] > errors[1] > errors[2]
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12
    assert errors[2] < 1e-3


# --------------------------------------------------------------------- graph column, Gaussian row

def test_sne_graph_embedding():
    n = 14
    W = _randn(n, n, seed=4).abs()
    W = (W + W.T) / 2
    W.fill_diagonal_(0)
    Y = _randn(n, 2, seed=5)
    nodes = torch.arange(n)
    p = W / W.sum(1, keepdim=True)

    def reference(y):
        log_q = torch.log_softmax((-_sq(y, y)).masked_fill(torch.eye(n, dtype=torch.bool), -math.inf), 1)
        mask = p > 0
        return (p[mask] * (p[mask].log() - log_q[mask])).sum() / n

    _assert_same(lambda y: methods.sne_graph_embedding(W)(y, target=nodes), reference, Y)
    # On a kNN graph (scikit-learn's, unit weights) it is SNE with uniform affinities.
    X = _randn(n, 3, seed=6)
    knn = torch.tensor(kneighbors_graph(X.numpy(), 4, mode="connectivity").toarray())
    _assert_same(lambda y: methods.sne_graph_embedding(knn)(y, target=nodes),
                 lambda y: methods.sne_uniform_affinities(4)(y, target=X), Y)


# ------------------------------------------------------------------------- cluster row, t k-Means

def test_t_kmeans():
    n, C = 16, 3
    X = _randn(n, 2, seed=7) * 2
    logits = _randn(n, C, seed=8)
    d = _sq(X, X)
    for dof in (1.0, 4.0):
        def closed_form(lg):
            phi = torch.softmax(lg, 1)
            q = phi @ (phi / phi.sum(0)).T
            log_z = torch.log(_student(d, dof).sum(1))         # k over all points, i included
            return ((dof + 1) / 2 * (q * torch.log1p(d / dof)).sum() + log_z.sum()) / n

        _assert_same(lambda lg: methods.t_kmeans(dof)(F.log_softmax(lg, 1), target=X), closed_form, logits)
    # Limit: as dof grows the Student-t affinity tends to exp(-d^2 / 2), i.e. k-Means with sigma = 1.
    target = float(methods.kmeans(1.0)(F.log_softmax(logits, 1), target=X))
    errors = [abs(float(methods.t_kmeans(nu)(F.log_softmax(logits, 1), target=X)) - target)
              for nu in (1e3, 1e4, 1e5)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 5e-3
    assert 8 < errors[0] / errors[1] < 12 and 8 < errors[1] / errors[2] < 12


# ------------------------------------------------------------------- supervised clustering (gap)

def test_supervised_clustering():
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 1])
    n, C = len(labels), 3
    loss = methods.supervised_clustering()

    def one_hot_log(assign, k=C):
        out = torch.full((n, k), -math.inf)
        out[torch.arange(n), assign] = 0.0
        return out

    # Zero exactly at the label partition, whatever the cluster names.
    assert float(loss(one_hot_log(labels), target=labels)) == pytest.approx(0.0, abs=1e-14)
    assert float(loss(one_hot_log((labels + 1) % C), target=labels)) == pytest.approx(0.0, abs=1e-14)
    # Any other partition costs more: merge two classes, split one, or move one point.
    merged, moved = labels.clone(), labels.clone()
    merged[merged == 2] = 1
    moved[0] = 1
    split = labels.clone()
    split[5] = 3
    for other, k in ((merged, C), (moved, C), (split, C + 1)):
        assert float(loss(one_hot_log(other, k), target=labels)) > 1e-3
    # Soft assignments: the defining KL, p(j|i) = 1[y_i = y_j] / K_i (self included).
    logits = _randn(n, C, seed=9)
    same = (labels[:, None] == labels[None, :]).double()
    p = same / same.sum(1, keepdim=True)

    def reference(lg):
        phi = torch.softmax(lg, 1)
        q = phi @ (phi / phi.sum(0)).T
        mask = p > 0
        return (p[mask] * (p[mask].log() - q[mask].log())).sum() / n

    _assert_same(lambda lg: loss(F.log_softmax(lg, 1), target=labels), reference, logits)


# --------------------------------------------------------------------------- Student-T row (q)

def _clip_pair(N=8, d=5, seed=10):
    return F.normalize(_randn(N, d, seed=seed), dim=1), F.normalize(_randn(N, d, seed=seed + 1), dim=1)


def test_t_clip():
    image, text = _clip_pair()
    ids = torch.arange(len(image))
    for dof in (1.0, 3.0):
        def reference(img):
            logits = torch.log(_student(_sq(img, text), dof))
            return 0.5 * (F.cross_entropy(logits, ids) + F.cross_entropy(logits.T, ids))

        _assert_same(lambda img: methods.t_clip(dof)(img, target=ids, candidates=text, target_candidates=ids),
                     reference, image)
    # Limit: on unit vectors, as dof grows, t-CLIP tends to CLIP at temperature 1.
    clip1 = float(methods.clip(1.0)(image, target=ids, candidates=text, target_candidates=ids))
    errors = [abs(float(methods.t_clip(nu)(image, target=ids, candidates=text, target_candidates=ids)) - clip1)
              for nu in (1e2, 1e3, 1e4)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


def test_t_supcon():
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    z = _randn(len(labels), 4, seed=12)
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    for dof in (1.0, 2.5):
        def reference(x):
            log_q = torch.log_softmax(torch.log(_student(_sq(x, x), dof)).masked_fill(eye, -math.inf), 1)
            return (-(log_q.masked_fill(~positive, 0)).sum(1) / positive.sum(1)).mean()

        _assert_same(lambda x: methods.t_supcon(dof)(x, target=labels), reference, z)
    # Limit: on unit vectors, as dof grows, t-SupCon tends to SupCon at temperature 1
    # (pytorch-metric-learning's SupConLoss as the oracle).
    zn = F.normalize(z, dim=1)
    supcon1 = float(pml_losses.SupConLoss(temperature=1.0)(zn, labels))
    errors = [abs(float(methods.t_supcon(nu)(zn, target=labels)) - supcon1) for nu in (1e2, 1e3, 1e4)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-4


# -------------------------------------------------------------------------- sigma -> inf row (q)

def _rate_checks(scaled, limit):
    """sigma^2 (L - log m) approaches ``limit`` with an error of order 1 / sigma^2."""
    err = [scaled(s) - limit for s in (20.0, 40.0, 80.0)]
    assert abs(err[2]) < abs(err[1]) < abs(err[0])
    assert 3.8 < err[0] / err[1] < 4.2 and 3.9 < err[1] / err[2] < 4.1
    np.testing.assert_allclose(scaled(1e4), limit, rtol=1e-6)


def test_average_margin_clip():
    image, text = _randn(10, 3, seed=13), _randn(10, 3, seed=14)
    N = len(image)
    ids = torch.arange(N)
    d = _sq(image, text)
    limit = float(d.diagonal().mean() - d.mean())           # paired distance minus the average one

    def scaled(sigma):
        loss = methods.average_margin_clip(sigma)(image, target=ids, candidates=text, target_candidates=ids)
        return sigma ** 2 * (float(loss) - math.log(N))

    _rate_checks(scaled, limit)
    # The exact value at one sigma: both directions of CE with logits -d / sigma^2.
    sigma = 3.0
    ref = 0.5 * (F.cross_entropy(-d / sigma ** 2, ids) + F.cross_entropy(-d.T / sigma ** 2, ids))
    torch.testing.assert_close(methods.average_margin_clip(sigma)(image, target=ids, candidates=text,
                                                                  target_candidates=ids), ref, rtol=0, atol=1e-12)


def test_average_margin_supcon():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    z = _randn(len(labels), 3, seed=15)
    n = len(labels)
    d = _sq(z, z)
    positive = (labels[:, None] == labels[None, :]) & ~torch.eye(n, dtype=torch.bool)
    cohesion = float(((d * positive).sum(1) / positive.sum(1)).mean())
    limit = cohesion - float(d.mean())                       # cohesion minus 2 Var(z)

    def scaled(sigma):
        return sigma ** 2 * (float(methods.average_margin_supcon(sigma)(z, target=labels)) - math.log(n))

    _rate_checks(scaled, limit)


# ---------------------------------------------------------------------------- sigma -> 0 row (q)

def _sandwich(scaled, lower, width, sigmas=(1.0, 0.3, 0.1, 0.03, 0.01)):
    """lower <= sigma^2 L <= lower + sigma^2 log(width), the gap shrinking with sigma (as Thm 5)."""
    gaps = []
    for s in sigmas:
        value = scaled(s)
        assert lower - 1e-12 <= value <= lower + s ** 2 * math.log(width) + 1e-12
        gaps.append(value - lower)
    assert all(a >= b - 1e-12 for a, b in zip(gaps, gaps[1:])) and gaps[0] > gaps[-1]
    assert gaps[-1] < 1e-4 * math.log(width)


def test_triplet_clip():
    image, text = _randn(9, 3, seed=16), _randn(9, 3, seed=17)
    N = len(image)
    ids = torch.arange(N)
    d = _sq(image, text)
    eye = torch.eye(N, dtype=torch.bool)
    hardest_i = d.masked_fill(eye, math.inf).min(1).values      # image anchors
    hardest_t = d.T.masked_fill(eye, math.inf).min(1).values    # text anchors
    lower = float(torch.cat([(d.diagonal() - hardest_i).clamp(min=0),
                             (d.diagonal() - hardest_t).clamp(min=0)]).mean())
    assert lower > 0                                              # some pairs are violated

    def scaled(sigma):
        loss = methods.triplet_clip(sigma)(image, target=ids, candidates=text, target_candidates=ids)
        return sigma ** 2 * float(loss)

    _sandwich(scaled, lower, N)


def test_triplet_supcon():
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 2, 0, 2, 1])
    z = _randn(len(labels), 3, seed=18)
    n = len(labels)
    eye = torch.eye(n, dtype=torch.bool)
    d = _sq(z, z)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    lower = float(((d * positive).sum(1) / positive.sum(1) - d.masked_fill(eye, math.inf).min(1).values).mean())
    _sandwich(lambda s: s ** 2 * float(methods.triplet_supcon(s)(z, target=labels)), lower, n - 1)


def test_error_rate():
    n, dim, C = 20, 4, 5
    z, W = _randn(n, dim, seed=19), _randn(C, dim, seed=20)
    y = torch.randint(0, C, (n,), generator=torch.Generator().manual_seed(21))
    s = z @ W.T
    margin = s.max(1).values - s[torch.arange(n), y]               # 0 where correct, > 0 where wrong
    assert 0 < int((margin > 0).sum()) < n
    _sandwich(lambda sg: sg ** 2 * float(methods.error_rate(C, sg)(z, target=y, candidates=W)),
              float(margin.mean()), C)
    # The limit vanishes exactly on a correctly classified batch (the 0-1 error is 0 there).
    y_hat = s.argmax(1)
    scaled = 1e-4 * float(methods.error_rate(C, 0.01)(z, target=y_hat, candidates=W))
    assert 0 <= scaled <= 1e-4 * math.log(C)
    # The exact value at one sigma: F.cross_entropy on logits / sigma^2.
    torch.testing.assert_close(methods.error_rate(C, 0.5)(z, target=y, candidates=W),
                               F.cross_entropy(s / 0.25, y), rtol=0, atol=1e-12)
