"""Neighbour-embedding internals against oracles: objectives, kernel sums, the sparse p, the optimiser."""

import math
import warnings

import numpy as np
import pytest
import torch

from icontorch import KNN, PerplexityGaussian, StudentT, joint, methods, mix_uniform, symmetrize
from icontorch.embedding.affinity import EdgeAffinity, dense_affinity, knn_affinity, nearest_neighbors
from icontorch.embedding.estimators import TSNE
from icontorch.embedding.optim import DenseObjective, ReferenceObjective, SparseObjective, gradient_descent
from icontorch.embedding.repulsion import GridInterpolator, exact_sums, kernel_profile
from icontorch.neighborhoods import Gaussian
from icontorch.neighborhoods.kernels import KernelProfile


def _blobs(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, d))
    labels = np.arange(n) % 4
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


# ---------------------------------------------------------------- the objective against oracles

def _tsne_problem(n=40, d=5, perplexity=8.0, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, 2, generator=gen, dtype=torch.float64) * 3
    log_p = dense_affinity(methods.tsne(perplexity).p, x, True, "test")
    return x, y, log_p


@pytest.mark.parametrize("exaggeration", [1.0, 12.0])
def test_dense_gradient_equals_scikit_learn_exact_tsne(exaggeration):
    """KL and gradient of the (exaggerated) objective = sklearn's _kl_divergence on a * P."""
    from scipy.spatial.distance import squareform
    from sklearn.manifold._t_sne import _kl_divergence

    x, y, log_p = _tsne_problem()
    n = x.shape[0]
    kl, grad = DenseObjective(log_p, StudentT(1.0), joint=True)(y, exaggeration)
    p_condensed = squareform(log_p.exp().numpy(), checks=False)     # sums to 1/2, as sklearn's
    ref_kl, ref_grad = _kl_divergence(y.numpy().ravel(), p_condensed, 1, n, 2)
    _, ref_grad_a = _kl_divergence(y.numpy().ravel(), exaggeration * p_condensed, 1, n, 2)
    assert kl == pytest.approx(ref_kl, rel=1e-10)
    np.testing.assert_allclose(grad.numpy().ravel(), ref_grad_a, rtol=1e-9, atol=1e-13)
    if exaggeration == 1.0:
        np.testing.assert_allclose(grad.numpy().ravel(), ref_grad, rtol=1e-9, atol=1e-13)


def test_dense_objective_is_the_library_tsne_loss():
    x, y, log_p = _tsne_problem()
    kl, _ = DenseObjective(log_p, StudentT(1.0), joint=True)(y, 1.0)
    assert kl == pytest.approx(float(methods.tsne(8.0)(y, target=x)), rel=1e-12)


@pytest.mark.parametrize("dof", [0.5, 2.0, 7.0])
def test_dense_gradient_other_dof_by_finite_differences(dof):
    """scikit-learn's analytic gradient is only right at dof = 1; check others numerically."""
    x, y, log_p = _tsne_problem(n=25)
    objective = DenseObjective(log_p, StudentT(dof), joint=True)
    kl, grad = objective(y, 1.0)
    p = log_p.exp()
    w = (1 + torch.cdist(y, y).square() / dof) ** (-(dof + 1) / 2)
    w.fill_diagonal_(0)
    q = w / w.sum()
    mask = p > 0
    assert kl == pytest.approx(float((p[mask] * (p[mask] / q[mask]).log()).sum()), rel=1e-10)
    h = 1e-6
    for i, k in [(0, 0), (3, 1), (17, 0), (24, 1)]:
        bump = torch.zeros_like(y)
        bump[i, k] = h
        numeric = (objective(y + bump, 1.0)[0] - objective(y - bump, 1.0)[0]) / (2 * h)
        assert float(grad[i, k]) == pytest.approx(numeric, rel=1e-5, abs=1e-9)


def _edges_from_dense(log_p, joint):
    n = log_p.shape[0]
    rows, cols = torch.nonzero(torch.isfinite(log_p), as_tuple=True)
    lp = log_p[rows, cols]
    return EdgeAffinity(rows, cols, lp.exp() / (1 if joint else n), lp, n, joint)


@pytest.mark.parametrize("case", ["tsne", "tsne_dof", "sne", "knn_tsne"])
def test_sparse_objective_equals_dense_objective(case):
    """Analytic attraction + exact kernel sums = autograd through the I-Con loss, float64."""
    x, y, _ = _tsne_problem(n=50)
    p, q = {"tsne": (methods.tsne(8.0).p, joint(StudentT(1.0))),
            "tsne_dof": (methods.tsne(8.0).p, joint(StudentT(0.6))),
            "sne": (methods.sne(8.0).p, Gaussian(temperature=1.0)),
            "knn_tsne": (symmetrize(KNN(6)), joint(StudentT(1.0)))}[case]
    is_joint = case != "sne"
    kernel = q.base if is_joint else q
    log_p = dense_affinity(p, x, is_joint, "test")
    y = y / 2 if case == "sne" else y
    dense = DenseObjective(log_p, kernel, is_joint)
    sparse = SparseObjective(_edges_from_dense(log_p, is_joint), kernel, "exact")
    for a in (1.0, 4.0):
        kl_d, g_d = dense(y, a)
        kl_s, g_s = sparse(y, a)
        assert kl_s == pytest.approx(kl_d, rel=1e-10)
        torch.testing.assert_close(g_s, g_d, rtol=1e-9, atol=1e-12)
    assert sparse.kl(y) == pytest.approx(dense.kl(y), rel=1e-10)


@pytest.mark.parametrize("kernel", [StudentT(1.0), StudentT(0.5), StudentT(30.0), Gaussian(temperature=2.0)])
def test_kernel_profile_matches_the_neighbourhood_logits(kernel):
    profile = kernel_profile(kernel)
    a, b = torch.randn(30, 2, dtype=torch.float64), torch.randn(7, 2, dtype=torch.float64)
    d = torch.cdist(a, b).square()
    torch.testing.assert_close(profile.log_w(d) - profile.log_w(torch.zeros(())), kernel.logits(a, b)
                               - kernel.logits(a[:1] * 0, a[:1] * 0)[0, 0], rtol=1e-12, atol=1e-12)
    assert kernel_profile(Gaussian(temperature=1.0, metric="cosine")) is None


def test_kernel_profile_comes_from_the_fused_form():
    """A learned temperature is read as a float without autograd's warning; a kernel mixed with the
    uniform distribution or rewritten by a subclass has no profile."""
    temperature = torch.nn.Parameter(torch.tensor(1.3, dtype=torch.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        profile = kernel_profile(Gaussian(temperature=temperature))
    assert profile == KernelProfile("gaussian", 1.0 / 1.3) and type(profile.param) is float
    assert kernel_profile(StudentT(np.float32(0.5))) == KernelProfile("student_t", 0.5)
    assert kernel_profile(mix_uniform(StudentT(1.0), 0.1)) is None

    class Sharper(StudentT):
        def logits(self, x, y=None):
            return 2.0 * super().logits(x, y)

    assert kernel_profile(Sharper(1.0)) is None


def test_exact_kernel_sums_equal_autograd():
    gen = torch.Generator().manual_seed(1)
    y = torch.randn(30, 2, generator=gen, dtype=torch.float64, requires_grad=True)
    ref = torch.randn(40, 2, generator=gen, dtype=torch.float64)
    c = torch.rand(40, 2, generator=gen, dtype=torch.float64)
    kernel = StudentT(0.8)
    s, g = exact_sums(y.detach(), c, kernel_profile(kernel), y_ref=ref, chunk=7)
    weights = kernel.logits(y, ref).exp()
    torch.testing.assert_close(s, weights.detach() @ c, rtol=1e-12, atol=1e-12)
    for col in range(2):
        (grad,) = torch.autograd.grad((weights @ c[:, col]).sum(), y, retain_graph=True)
        torch.testing.assert_close(g[:, col], grad, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("dim", [1, 2])
@pytest.mark.parametrize("profile", [KernelProfile("student_t", 1.0), KernelProfile("gaussian", 1.0)])
def test_fft_interpolation_approximates_the_exact_sums(dim, profile):
    gen = torch.Generator().manual_seed(2)
    centres = torch.randn(6, dim, generator=gen, dtype=torch.float64) * 15
    y = centres[torch.arange(1200) % 6] + torch.randn(1200, dim, generator=gen, dtype=torch.float64) * 2
    charges = torch.stack([torch.ones(1200, dtype=torch.float64),
                           torch.rand(1200, generator=gen, dtype=torch.float64)], 1)
    s, g = exact_sums(y, charges, profile)
    grid = GridInterpolator(profile)
    s_fft, g_fft = grid(y, charges)
    assert float((s_fft - s).abs().max() / s.abs().max()) < 2e-2
    assert float((g_fft - g).norm() / g.norm()) < 5e-2
    total, g_total = grid(y, charges, total_only=True)           # Parseval: the same interpolation
    torch.testing.assert_close(total, (charges * s_fft).sum(0), rtol=1e-8, atol=1e-8)
    torch.testing.assert_close(g_total, g_fft, rtol=1e-10, atol=1e-10)
    # finer grid, smaller error: the interpolation converges to the exact sums
    s_fine, _ = GridInterpolator(profile, n_interp=5)(y, charges)
    assert float((s_fine - s).abs().max()) < float((s_fft - s).abs().max())


def test_fft_gradient_drives_the_same_descent_as_the_exact_one():
    x, _ = _blobs(300)
    aff = knn_affinity(methods.tsne(10.0).p, torch.tensor(x, dtype=torch.float64), 30, "test")
    y = torch.tensor(np.random.default_rng(0).normal(size=(300, 2)) * 10)
    kl_e, g_e = SparseObjective(aff, StudentT(1.0), "exact")(y, 1.0)
    kl_f, g_f = SparseObjective(aff, StudentT(1.0), "fft")(y, 1.0)
    # the grid (3 nodes per unit, as openTSNE) is accurate to a few per cent, enough for descent
    assert kl_f == pytest.approx(kl_e, abs=1e-2)
    assert float((g_f - g_e).norm() / g_e.norm()) < 0.1


def _objective(kind, x, y):
    if kind == "dense":
        return DenseObjective(dense_affinity(methods.tsne(10.0).p, x, True, "test"), StudentT(1.0), True)
    if kind.startswith("reference"):
        reference = y[:150] * 3
        idx = nearest_neighbors(x[150:], 15, y=x[:150])
        log_p = torch.log_softmax(-torch.cdist(x[150:].unsqueeze(1), x[:150][idx]).squeeze(1), 1)
        kernel = StudentT(1.0) if kind == "reference" else Gaussian(temperature=1.0, metric="cosine")
        return ReferenceObjective(idx, log_p, reference, kernel)
    aff = knn_affinity(methods.tsne(10.0).p, x, 30, "test")
    return SparseObjective(aff, StudentT(1.0), kind)


@pytest.mark.parametrize("kind", ["exact", "fft", "dense", "reference", "reference_any_kernel"])
def test_objective_skips_only_the_value_when_not_asked(kind):
    """with_value=False (most descent iterations) gives the same gradient and a NaN loss."""
    x, _ = _blobs(200)
    x = torch.tensor(x, dtype=torch.float64)
    y = torch.tensor(np.random.default_rng(1).normal(size=(200, 2)) * 5)
    objective = _objective(kind, x, y)
    y = y[150:] if kind.startswith("reference") else y
    kl, grad = objective(y, 4.0, True)
    nan, grad_no_value = objective(y, 4.0, False)
    assert math.isfinite(kl) and math.isnan(nan)
    torch.testing.assert_close(grad_no_value, grad, rtol=0, atol=0)
    # the descent asks for the value at its last step: the loss it returns is the objective's at
    # the point that step started from (the end of a descent one step shorter)
    _, done, loss = gradient_descent(y, objective, [(7, 4.0), (5, 1.0)], "auto")
    y_before, _, _ = gradient_descent(y, objective, [(7, 4.0), (4, 1.0)], "auto")
    assert done == 12 and loss == pytest.approx(objective(y_before, 1.0)[0], rel=1e-12)


# ---------------------------------------------------------------- the sparse p

def test_sparse_knn_p_equals_the_dense_knn_p():
    """Uniform kNN affinities live on the kNN graph: the sparse p is the dense p, exactly."""
    x = torch.tensor(_blobs(90)[0], dtype=torch.float64)
    for p, is_joint in [(KNN(7), False), (symmetrize(KNN(7)), True)]:
        aff = knn_affinity(p, x, 8, "test")
        dense = dense_affinity(p, x, is_joint, "test")
        sparse = torch.full_like(dense, float("-inf"))
        sparse[aff.rows, aff.cols] = aff.log_p
        torch.testing.assert_close(sparse, dense, rtol=1e-12, atol=1e-12)


def test_sparse_perplexity_p_over_all_points_equals_the_dense_p():
    x = torch.tensor(_blobs(70)[0], dtype=torch.float64)
    for p, is_joint in [(PerplexityGaussian(10.0), False), (symmetrize(PerplexityGaussian(10.0)), True)]:
        aff = knn_affinity(p, x, 69, "test")
        dense = dense_affinity(p, x, is_joint, "test").exp()
        sparse = torch.zeros_like(dense)
        sparse[aff.rows, aff.cols] = aff.log_p.exp()
        torch.testing.assert_close(sparse, dense, rtol=1e-9, atol=1e-15)


def test_sparse_perplexity_p_equals_opentsne():
    """3 * perplexity neighbours, calibrated on them, symmetrised: openTSNE's PerplexityBasedNN."""
    from openTSNE.affinity import PerplexityBasedNN

    x = np.random.default_rng(0).normal(size=(150, 5))
    ref = PerplexityBasedNN(x, perplexity=10, method="exact", k_neighbors=30, verbose=False).P.tocoo()
    aff = knn_affinity(methods.tsne(10.0).p, torch.tensor(x), 30, "test")
    ours, theirs = np.zeros((150, 150)), np.zeros((150, 150))
    ours[aff.rows.numpy(), aff.cols.numpy()] = aff.weight.numpy()
    theirs[ref.row, ref.col] = ref.data
    np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-12)
    assert aff.weight.sum().item() == pytest.approx(1.0, abs=1e-12)


def test_faiss_neighbours_recover_the_exact_ones():
    """The optional approximate backend: HNSW recall against the exact kNN, and a fit on it."""
    pytest.importorskip("faiss")
    x = torch.tensor(_blobs(1500, d=10)[0])
    exact = nearest_neighbors(x, 15)
    approx = nearest_neighbors(x, 15, knn_backend="faiss")
    assert not bool((approx == torch.arange(1500).unsqueeze(1)).any())
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 15 for a, b in zip(approx, exact)])
    assert recall > 0.95
    new = nearest_neighbors(x[:50] + 0.01, 5, y=x, knn_backend="faiss")
    assert new.shape == (50, 5) and float((new[:, 0] == torch.arange(50)).float().mean()) > 0.9
    est = TSNE(perplexity=5, knn_backend="faiss", algorithm="fft", n_iter=50, early_exaggeration_iter=50,
               random_state=0, n_jobs=1).fit(x.numpy())
    assert np.isfinite(est.kl_divergence_)


def test_descent_stops_at_the_first_non_finite_loss():
    """A non-finite loss (when it is asked for) ends the whole descent, not only its phase."""
    calls = []

    def objective(y, exaggeration, with_value):
        calls.append(with_value)
        loss = float("inf") if with_value and len(calls) >= 20 else 1.0
        return loss, torch.zeros_like(y)

    y, done, loss = gradient_descent(torch.ones(5, 2), objective, [(25, 4.0), (25, 1.0)], 10.0)
    assert done == 20 and len(calls) == 20 and loss == float("inf")
    assert calls == [(i + 1) % 10 == 0 for i in range(20)]


@pytest.mark.parametrize("dof", [1.0, 0.5, 3.0])
def test_kernel_profile_weights_are_the_student_t_kernel(dof):
    """``w`` and ``block_w`` against the closed form ``(1 + d / dof)^(-(dof + 1) / 2)``."""
    d = torch.rand(50, 7, dtype=torch.float64) * 20
    closed = (1 + d / dof) ** (-(dof + 1) / 2)
    profile = KernelProfile("student_t", dof)
    torch.testing.assert_close(profile.w(d), closed, rtol=1e-13, atol=0)
    torch.testing.assert_close(profile.block_w(d.clone()), closed, rtol=1e-13, atol=0)
    if dof == 1.0:
        assert torch.equal(profile.block_w(d.clone()), 1.0 / (1.0 + d))
    gaussian = KernelProfile("gaussian", 0.7)
    torch.testing.assert_close(gaussian.block_w(d.clone()), torch.exp(-0.7 * d), rtol=1e-14, atol=0)
