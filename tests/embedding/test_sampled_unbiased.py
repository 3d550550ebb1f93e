"""The ``sampled`` repulsion is unbiased: a statistical test against the exact sums.

``Z^_i = (n - 1) / m sum_s w(y_i - y_{j_s})`` (:func:`~icontorch.embedding.repulsion.sampled_log_row_sums`)
must have mean ``Z_i = sum_{j != i} w_ij`` and its gradient mean ``grad Z_i``; the joint ``Z^ = sum_i Z^_i``
mean ``Z``. With R independent estimates (a fixed seed), the mean of each quantity must lie within
``K = 4.5`` standard errors of the exact value (for one Gaussian z-score, |z| > 4.5 has probability
7e-6; over the ~200 checked coordinates about 1e-3). The same statistic must flag a
deliberately biased estimator (the count n instead of n - 1: a bias of 1 / (n - 1)), so the test
has the power to see a bias that small.
"""

import math

import numpy as np
import torch

from icontorch import Gaussian, StudentT
from icontorch.embedding.repulsion import sampled_log_row_sums, sampled_normaliser

K = 4.5
R = 500            # draws with gradients
R_VALUES = 4000    # draws of the values only (cheap): the power check


def _exact(y, kernel):
    """Z_i (n,) and the gradient of Z = sum_i Z_i in y, from the dense matrix in float64."""
    y = y.double().requires_grad_(True)
    logits = kernel.logits(y)
    w = logits.exp() * (1 - torch.eye(y.shape[0], dtype=y.dtype))
    rows = w.sum(1)
    (grad,) = torch.autograd.grad(rows.sum(), y)
    return rows.detach(), grad


def _z_scores(samples, exact):
    mean = samples.mean(0)
    se = samples.std(0) / math.sqrt(samples.shape[0])
    return (mean - exact) / se, se


def _values(y, kernel, m, seed):
    """R_VALUES draws of Z^_i (n,), float64."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        return torch.stack([sampled_log_row_sums(y, kernel, m, g).exp() for _ in range(R_VALUES)])


def _draws(y, kernel, m, seed=0):
    """R draws of (Z^_i (n,), grad of Z^ (n, d), force grad log Z^ (n, d)), all float64."""
    g = torch.Generator().manual_seed(seed)
    rows, grads, forces = [], [], []
    for _ in range(R):
        yg = y.double().clone().requires_grad_(True)
        log_rows = sampled_log_row_sums(yg, kernel, m, g)
        z_hat = log_rows.exp()
        (grad,) = torch.autograd.grad(z_hat.sum(), yg, retain_graph=True)
        (force,) = torch.autograd.grad(torch.logsumexp(log_rows, 0), yg)
        rows.append(z_hat.detach())
        grads.append(grad)
        forces.append(force)
    return torch.stack(rows), torch.stack(grads), torch.stack(forces)


def test_sampled_normaliser_and_its_gradient_are_unbiased():
    y = torch.randn(40, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    for kernel in (StudentT(1.0), Gaussian(sigma=1.0)):
        z_rows, grad_z = _exact(y, kernel)
        rows = _values(y, kernel, m=8, seed=5)
        # per anchor (SNE's Z_i) and joint (t-SNE's Z)
        z_row, _ = _z_scores(rows, z_rows)
        assert z_row.abs().max() < K
        z_joint, se = _z_scores(rows.sum(1, keepdim=True), z_rows.sum().reshape(1))
        assert abs(float(z_joint)) < K
        assert float(se) < 0.005 * float(z_rows.sum())         # precise enough to matter
        # power: the same test rejects the estimate scaled by n / (n - 1)
        n = y.shape[0]
        biased, _ = _z_scores(rows.sum(1, keepdim=True) * n / (n - 1), z_rows.sum().reshape(1))
        assert abs(float(biased)) > K
        _, grads, forces = _draws(y, kernel, m=4)
        # the gradient of Z, coordinate by coordinate
        z_grad, _ = _z_scores(grads.reshape(R, -1), grad_z.reshape(-1))
        assert z_grad.abs().max() < K
        # the repulsive force grad log Z^ = grad Z^ / Z^: a ratio estimator, its bias O(1 / (n m)) of
        # the draws' variance, below the standard error here
        z_force, _ = _z_scores(forces.reshape(R, -1), (grad_z / z_rows.sum()).reshape(-1))
        assert z_force.abs().max() < K


def test_sampled_normaliser_in_three_dimensions_is_unbiased():
    y = torch.randn(30, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64) * 2
    z_rows, grad_z = _exact(y, StudentT(1.0))
    rows, grads, _ = _draws(y, StudentT(1.0), m=4, seed=3)
    assert abs(float(_z_scores(rows.sum(1, keepdim=True), z_rows.sum().reshape(1))[0])) < K
    assert _z_scores(grads.reshape(R, -1), grad_z.reshape(-1))[0].abs().max() < K


def test_sampled_normaliser_is_the_log_of_the_row_sums():
    y = torch.randn(25, 2, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    kernel = StudentT(1.0)
    rows = sampled_log_row_sums(y, kernel, 5, torch.Generator().manual_seed(7))
    joint = sampled_normaliser(y, kernel, True, 5, torch.Generator().manual_seed(7))
    conditional = sampled_normaliser(y, kernel, False, 5, torch.Generator().manual_seed(7))
    torch.testing.assert_close(joint, torch.logsumexp(rows, 0), rtol=1e-12, atol=0)
    torch.testing.assert_close(conditional, rows.mean(), rtol=1e-12, atol=0)


def test_the_estimate_with_exact_neighbours_is_unbiased_and_tighter():
    """p's edges summed exactly, the other points sampled: still unbiased, and a smaller error."""
    y = torch.randn(40, 2, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * 3
    kernel = Gaussian(sigma=1.0)
    z_rows, _ = _exact(y, kernel)
    d = torch.cdist(y, y).fill_diagonal_(float("inf"))
    near = d.topk(5, largest=False).indices.sort(1).values
    neighbors = (torch.arange(40).repeat_interleave(5), near.reshape(-1))
    g = torch.Generator().manual_seed(6)
    with torch.no_grad():
        rows = torch.stack([sampled_log_row_sums(y, kernel, 8, g, neighbors).exp() for _ in range(R_VALUES)])
    z_row, se = _z_scores(rows, z_rows)
    assert z_row.abs().max() < K
    _, se_plain = _z_scores(_values(y, kernel, m=8, seed=5), z_rows)
    assert bool((se <= se_plain).all()) and float((se / se_plain).mean()) < 0.5


def test_sne_sampled_does_not_run_away_on_duplicate_heavy_data():
    """8 distinct points, 75 copies each: with only sampled negatives a draw of far points alone gave
    the Gaussian kernel's softmax all its weight and a force growing with the distance (KL 98.6, the
    map 434 units wide, before p's edges were summed exactly)."""
    from icontorch import SNE

    x = (np.random.default_rng(0).random((600, 3)) > .5).astype(np.float32)
    est = SNE(algorithm="sampled", random_state=0, early_exaggeration_iter=100, n_iter=200, n_negatives=16,
              n_jobs=1).fit(x)
    assert est.kl_divergence_ < 0.5
    assert np.abs(est.embedding_).max() < 50
