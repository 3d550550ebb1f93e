"""Tests of the methods that equal their original only as a bound or in a limit.

* Triplet (Thm 5): ``sigma^2 L - sigma^2 log 2 <= mean max(d+ - d-, 0) <= sigma^2 L`` with squared
  distances and no margin; the gap is at most ``sigma^2 log 2`` and vanishes as sigma -> 0.
* PCA (Prop 1 / Thm 2): ``sigma^2 (L - log n) -> -2 Var(f)`` as sigma -> inf, with
  ``2 Var(f) = (1/n^2) sum_ik ||f_i - f_k||^2`` and an error of order ``1/sigma^2``.
* VICReg without covariance (Thm 4): ``sigma^2 (L - log n) -> (1/n) sum_i ||f_i - f_i+||^2 - 2 Var(f)``.

References are numpy / torch formulas written here and scikit-learn's ``PCA``; float64 throughout.
"""

import math

import numpy as np
import pytest
import torch
from sklearn.decomposition import PCA

from icontorch import methods

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _two_var(f):
    """2 Var(f) = (1/n^2) sum_ik ||f_i - f_k||^2 (the biased variance, times 2)."""
    return ((f[:, None, :] - f[None, :, :]) ** 2).sum(-1).mean()


# ----------------------------------------------------------------------------------------- Triplet

def test_triplet_bound():
    n, d = 30, 4
    anchor, pos, neg = _randn(n, d, seed=0), _randn(n, d, seed=1), _randn(n, d, seed=2)
    # One tie, d+ = d-, where the upper bound is attained up to sigma^2 log 2 / n: it keeps the
    # gap visible (above rounding) at every sigma.
    neg[0] = 2 * anchor[0] - pos[0]
    ids = torch.arange(n)
    candidates = torch.stack([pos, neg], 1)                    # (n, 2, d): per-anchor candidates
    target_candidates = torch.stack([ids, ids + n], 1)        # (n, 2): the positive carries i
    d_pos = ((anchor - pos) ** 2).sum(1)                       # squared distances, no margin
    d_neg = ((anchor - neg) ** 2).sum(1)
    triplet = torch.clamp(d_pos - d_neg, min=0).mean()
    # Some triplets are violated and some are not, so both sides of the hinge are exercised.
    assert 0 < int((d_pos > d_neg).sum()) < n

    gaps = []
    for sigma in (2.0, 1.0, 0.5, 0.1, 0.01):
        s2 = sigma ** 2
        loss = methods.triplet(sigma)(anchor, target=ids, candidates=candidates,
                                      target_candidates=target_candidates)
        # Exact form: L = mean softplus((d+ - d-) / sigma^2).
        torch.testing.assert_close(loss, torch.nn.functional.softplus((d_pos - d_neg) / s2).mean(),
                                   rtol=1e-12, atol=1e-12)
        scaled = s2 * loss
        assert scaled - s2 * math.log(2) <= triplet + 1e-12
        assert triplet <= scaled + 1e-12
        gaps.append(float(scaled - triplet))
    assert all(a > b for a, b in zip(gaps, gaps[1:]))         # the gap shrinks with sigma ...
    assert gaps[-1] < 1e-4 * math.log(2)                      # ... and is below sigma^2 log 2
    # For small sigma only the tie contributes: gap -> sigma^2 log 2 / n.
    np.testing.assert_allclose(gaps[-2:], [s ** 2 * math.log(2) / n for s in (0.1, 0.01)],
                               rtol=1e-6)


# --------------------------------------------------------------------------------------------- PCA

def _pca_scaled(f, sigma):
    """sigma^2 (L - log n) for methods.pca(sigma) on the embedding f."""
    n = f.shape[0]
    loss = methods.pca(sigma)(f, target=f)
    return sigma ** 2 * (float(loss) - math.log(n))


def test_pca_limit():
    n, D, k = 40, 6, 2
    rng = np.random.default_rng(0)
    # Anisotropic data so the top principal plane is well defined.
    X = rng.normal(size=(n, D)) * np.array([3.0, 2.0, 1.0, 0.5, 0.3, 0.1]) + 1.0
    X = X @ np.linalg.qr(rng.normal(size=(D, D)))[0]
    Xt = torch.tensor(X)

    # The exact value: L = (1/n) sum_i log sum_k exp(-||f_i - f_k||^2 / sigma^2) (self included).
    f = Xt @ _randn(k, D, seed=3).T
    sigma = 7.0
    d2 = ((f[:, None] - f[None]) ** 2).sum(-1)
    torch.testing.assert_close(methods.pca(sigma)(f, target=Xt),
                               torch.logsumexp(-d2 / sigma ** 2, dim=1).mean(), rtol=1e-12, atol=1e-12)

    # The limit and its 1/sigma^2 rate: the error quarters when sigma doubles.
    limit = -float(_two_var(f))
    err = [_pca_scaled(f, s) - limit for s in (20.0, 40.0, 80.0)]
    assert abs(err[2]) < abs(err[1]) < abs(err[0])
    assert 3.8 < err[0] / err[1] < 4.2
    assert 3.9 < err[1] / err[2] < 4.1
    np.testing.assert_allclose(_pca_scaled(f, 1e4), limit, rtol=1e-6)

    # With W the top-k principal axes, the limit is -2 * (biased) explained variance.
    pca = PCA(n_components=k).fit(X)
    W = torch.tensor(pca.components_)
    f_pca = Xt @ W.T
    limit_pca = -2.0 * pca.explained_variance_.sum() * (n - 1) / n
    np.testing.assert_allclose(-float(_two_var(f_pca)), limit_pca, rtol=1e-12)
    # Richardson extrapolation of sigma^2 (L - log n) from sigma and 2 sigma removes the 1/sigma^2 term.
    extrapolated = (4 * _pca_scaled(f_pca, 2000.0) - _pca_scaled(f_pca, 1000.0)) / 3
    np.testing.assert_allclose(extrapolated, limit_pca, rtol=1e-7)

    # ... and it is lower (better) than for any random orthonormal projection of the same rank.
    big_sigma = 1e3
    value_pca = _pca_scaled(f_pca, big_sigma)
    for seed in range(10):
        Q, _ = torch.linalg.qr(_randn(D, k, seed=10 + seed))
        assert value_pca < _pca_scaled(Xt @ Q, big_sigma)


# ------------------------------------------------------------------------------------------ VICReg

def _vicreg_scaled(f, ids, sigma):
    n = f.shape[0]
    loss = methods.vicreg(sigma)(f, target=ids)
    return sigma ** 2 * (float(loss) - math.log(n))


def test_vicreg_limit():
    B, d = 16, 3
    f1 = _randn(B, d, seed=4)
    f2 = f1 + 0.3 * _randn(B, d, seed=5)                       # the positive views: nearby
    f = torch.cat([f1, f2])
    ids = torch.cat([torch.arange(B), torch.arange(B)])
    n = 2 * B
    partner = (torch.arange(n) + B) % n

    # The exact value: -log q(i+|i) with q a Gaussian over all 2B views, self included.
    sigma = 5.0
    d2 = ((f[:, None] - f[None]) ** 2).sum(-1)
    log_q = torch.log_softmax(-d2 / sigma ** 2, dim=1)
    torch.testing.assert_close(methods.vicreg(sigma)(f, target=ids),
                               -log_q[torch.arange(n), partner].mean(), rtol=1e-12, atol=1e-12)

    # The limit: invariance (1/n) sum_i ||f_i - f_i+||^2 minus 2 Var(f) (weights 1 : 2).
    invariance = float(((f - f[partner]) ** 2).sum(1).mean())
    limit = invariance - float(_two_var(f))
    err = [_vicreg_scaled(f, ids, s) - limit for s in (20.0, 40.0, 80.0)]
    assert abs(err[2]) < abs(err[1]) < abs(err[0])
    assert 3.8 < err[0] / err[1] < 4.2
    assert 3.9 < err[1] / err[2] < 4.1
    np.testing.assert_allclose(_vicreg_scaled(f, ids, 1e4), limit, rtol=1e-6)
    extrapolated = (4 * _vicreg_scaled(f, ids, 2000.0) - _vicreg_scaled(f, ids, 1000.0)) / 3
    np.testing.assert_allclose(extrapolated, limit, rtol=1e-7)
