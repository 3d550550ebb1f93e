"""Neighbour-embedding estimators: conventions, oracle gradients, sparse p, outcomes, errors."""

import math
import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from icontorch import (KNN, ICon, IConError, PerplexityGaussian, PositivePairs, Precomputed, StudentT,
                       joint, methods, symmetrize)
from icontorch.embedding.optim import DenseObjective, SparseObjective, gradient_descent
from icontorch.embedding.repulsion import GridInterpolator, KernelProfile, exact_sums, kernel_profile
from icontorch.embedding.affinity import EdgeAffinity, dense_affinity, knn_affinity
from icontorch.embedding.estimators import SNE, TSNE, NeighborEmbedding
from icontorch.embedding.mappers import MLP, EmbeddingTable
from icontorch.metrics import knn_accuracy
from icontorch.neighborhoods import Gaussian

ESTIMATORS = [TSNE, SNE, NeighborEmbedding]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def _blobs(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, d))
    labels = np.arange(n) % 4
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


# ---------------------------------------------------------------- scikit-learn's conventions

@pytest.mark.parametrize("cls", ESTIMATORS)
def test_init_stores_every_parameter_unchanged_and_nothing_else(cls):
    init = np.zeros((5, 2))
    callbacks = [lambda i, loss, y: False]
    sizes = (32, 16)
    est = cls(init=init, callbacks=callbacks, hidden_layer_sizes=sizes, learning_rate=-3.0,
              n_components=0)
    params = est.get_params()
    assert params["init"] is init and params["callbacks"] is callbacks
    assert params["hidden_layer_sizes"] is sizes
    assert params["learning_rate"] == -3.0 and params["n_components"] == 0   # not validated yet
    assert set(vars(est)) == set(params)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_set_params_clone_and_repr(cls):
    from sklearn.base import clone

    est = cls(n_iter=7, random_state=3)
    assert est.set_params(n_iter=9) is est and est.get_params()["n_iter"] == 9
    twin = clone(est)
    assert type(twin) is cls and twin is not est
    assert twin.get_params() == est.get_params()
    assert repr(cls()) == f"{cls.__name__}()"
    assert repr(est) == f"{cls.__name__}(n_iter=9, random_state=3)"
    with pytest.raises(IConError, match="set_params keys must be among"):
        est.set_params(perplexityy=3)


def test_repr_of_an_array_parameter():
    assert repr(TSNE(init=np.zeros((3, 2)), perplexity=5)) == "TSNE(perplexity=5, init=<ndarray>)"


def test_fit_returns_self_and_learned_attributes_end_in_underscore():
    x, _ = _blobs()
    est = TSNE(perplexity=10, n_iter=50, early_exaggeration_iter=20, random_state=0)
    assert not hasattr(est, "embedding_")
    assert est.fit(x) is est
    assert est.embedding_.shape == (120, 2) and isinstance(est.embedding_, np.ndarray)
    assert est.n_iter_ == 70 and est.n_features_in_ == 6 and est.method_ == "exact"
    assert np.isfinite(est.kl_divergence_)
    learned = set(vars(est)) - set(est.get_params())
    assert all(name.endswith("_") or name.startswith("_") for name in learned)
    from sklearn.base import clone

    assert not hasattr(clone(est), "embedding_")


def test_tensors_in_tensors_out_numpy_in_numpy_out():
    x, _ = _blobs(60)
    est = TSNE(perplexity=8, n_iter=10, early_exaggeration_iter=10, random_state=0)
    out = est.fit_transform(torch.tensor(x, dtype=torch.float64))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert isinstance(est.fit_transform(x), np.ndarray)


def test_n_jobs_sets_torch_threads_only_during_fit():
    x, _ = _blobs(60)
    before = torch.get_num_threads()
    seen = []
    TSNE(perplexity=8, n_iter=10, early_exaggeration_iter=0, n_jobs=1, callbacks_every_iters=10,
         callbacks=lambda i, loss, y: seen.append(torch.get_num_threads())).fit(x)
    assert seen == [1] and torch.get_num_threads() == before


def test_same_seed_same_embedding():
    x, _ = _blobs(80)
    a = TSNE(perplexity=8, n_iter=30, init="random", random_state=5).fit_transform(x)
    b = TSNE(perplexity=8, n_iter=30, init="random", random_state=5).fit_transform(x)
    np.testing.assert_array_equal(a, b)


def test_callbacks_are_called_and_can_stop_early():
    x, _ = _blobs(80)
    seen = []

    def stop_at_60(iteration, loss, embedding):
        seen.append((iteration, loss, tuple(embedding.shape)))
        return iteration >= 60

    est = TSNE(perplexity=8, callbacks=stop_at_60, callbacks_every_iters=20, random_state=0).fit(x)
    assert est.n_iter_ == 60
    assert [s[0] for s in seen] == [20, 40, 60] and all(s[2] == (80, 2) for s in seen)
    assert all(np.isfinite(s[1]) for s in seen)


def test_verbose_shows_a_progress_bar(capsys):
    x, _ = _blobs(60)
    TSNE(perplexity=8, n_iter=20, early_exaggeration_iter=0, verbose=True, random_state=0).fit(x)
    assert "TSNE" in capsys.readouterr().err


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


@pytest.mark.parametrize("repulsion", ["exact", "fft"])
def test_objective_skips_only_the_value_when_not_asked(repulsion):
    """with_value=False (most descent iterations) gives the same gradient and a NaN loss."""
    x, _ = _blobs(200)
    aff = knn_affinity(methods.tsne(10.0).p, torch.tensor(x, dtype=torch.float64), 30, "test")
    y = torch.tensor(np.random.default_rng(1).normal(size=(200, 2)) * 5)
    objective = SparseObjective(aff, StudentT(1.0), repulsion)
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
    from icontorch.embedding.affinity import nearest_neighbors

    x = torch.tensor(_blobs(1500, d=10)[0])
    exact = nearest_neighbors(x, 15)
    approx = nearest_neighbors(x, 15, backend="faiss")
    assert not bool((approx == torch.arange(1500).unsqueeze(1)).any())
    recall = np.mean([len(set(a.tolist()) & set(b.tolist())) / 15 for a, b in zip(approx, exact)])
    assert recall > 0.95
    new = nearest_neighbors(x[:50] + 0.01, 5, y=x, backend="faiss")
    assert new.shape == (50, 5) and float((new[:, 0] == torch.arange(50)).float().mean()) > 0.9
    est = TSNE(perplexity=5, neighbors="faiss", method="fft", n_iter=50, early_exaggeration_iter=50,
               random_state=0, n_jobs=1).fit(x.numpy())
    assert np.isfinite(est.kl_divergence_)


# ---------------------------------------------------------------- outcomes

def test_tsne_on_digits_separates_the_classes(digits):
    """Default path for 1,797 points (sparse p, FFT repulsion): 2-D 10-NN accuracy far over 0.1."""
    x, y = digits
    est = TSNE(n_iter=250, random_state=0, n_jobs=1)
    emb = est.fit_transform(x)
    assert est.method_ == "fft"
    assert knn_accuracy(emb, y, 10) > 0.95


def test_kl_divergence_is_the_true_kl_at_the_embedding(digits):
    x, _ = digits
    x = x[:400]
    est = TSNE(perplexity=10, method="fft", n_iter=50, early_exaggeration_iter=50, random_state=0,
               n_jobs=1).fit(x)
    aff = knn_affinity(methods.tsne(10.0).p, torch.tensor(x), 30, "test")
    log_p = torch.full((400, 400), float("-inf"), dtype=torch.float64)
    log_p[aff.rows, aff.cols] = aff.log_p.double()
    loss = ICon(p=Precomputed(log_p.reshape(1, -1)), q=joint(StudentT(1.0)))
    assert est.kl_divergence_ == pytest.approx(float(loss(torch.tensor(est.embedding_).double())), rel=1e-5)


@pytest.mark.parametrize("est", [SNE(perplexity=20, random_state=0),
                                 NeighborEmbedding(p=symmetrize(KNN(15)), q=joint(StudentT(0.7)),
                                                   random_state=0),
                                 TSNE(method="sampled", random_state=0)],
                         ids=["sne", "uniform_knn_tsne", "sampled"])
def test_other_periodic_table_cells_embed_digits(est, digits):
    x, y = digits
    est.set_params(n_iter=200, early_exaggeration_iter=150, n_jobs=1)
    assert knn_accuracy(est.fit_transform(x[:700]), y[:700], 10) > 0.85


def test_non_parametric_transform_places_held_out_points(digits):
    x, y = digits
    est = TSNE(n_iter=200, random_state=0, n_jobs=1).fit(x[:1200])
    new = est.transform(x[1200:])
    from sklearn.neighbors import KNeighborsClassifier

    assert KNeighborsClassifier(10).fit(est.embedding_, y[:1200]).score(new, y[1200:]) > 0.85


def test_parametric_transform_reproduces_the_embedding_and_survives_pickling(digits):
    x, y = digits
    est = TSNE(parametric=True, hidden_layer_sizes=(64, 64, 64), batch_size=256,
               early_exaggeration_iter=100, n_iter=300, random_state=0, n_jobs=1).fit(x[:1200])
    assert isinstance(est.mapper_, MLP)
    np.testing.assert_array_equal(est.transform(x[:1200]), est.embedding_)   # clean inputs, no noise
    assert knn_accuracy(est.embedding_, y[:1200], 10) > 0.8
    from sklearn.neighbors import KNeighborsClassifier

    held_out = KNeighborsClassifier(10).fit(est.embedding_, y[:1200]).score(est.transform(x[1200:]), y[1200:])
    assert held_out > 0.8                    # 0.88 measured: the MLP alone places new digits
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(x[:100]), est.transform(x[:100]))


def test_parametric_input_noise_is_a_training_regulariser_only():
    x, _ = _blobs(80)
    kwargs = dict(parametric=True, perplexity=8, hidden_layer_sizes=(8,), batch_size=32,
                  early_exaggeration_iter=0, n_iter=20, random_state=0)
    clean = TSNE(input_noise=0.0, **kwargs).fit(x)
    noisy = TSNE(input_noise=0.3, **kwargs).fit(x)
    assert not np.allclose(clean.embedding_, noisy.embedding_)
    np.testing.assert_array_equal(noisy.transform(x), noisy.embedding_)
    np.testing.assert_array_equal(TSNE(input_noise=0.3, **kwargs).fit(x).embedding_, noisy.embedding_)


def test_non_parametric_estimator_pickles():
    x, _ = _blobs(80)
    est = TSNE(perplexity=8, n_iter=20, random_state=0).fit(x)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.embedding_, est.embedding_)
    np.testing.assert_array_equal(again.transform(x[:5]), est.transform(x[:5]))


# ---------------------------------------------------------------- errors name the parameter

@pytest.mark.parametrize("kwargs, match", [
    (dict(perplexity=100), "perplexity must be smaller than n_samples - 1 = 59"),
    (dict(perplexity=-1.0), "perplexity must be a positive finite number"),
    (dict(n_components=0), "n_components must be an integer >= 1"),
    (dict(init=np.zeros((59, 2))), r"init must have shape \(n_samples, n_components\) = \(60, 2\)"),
    (dict(init="spectral"), "init must be 'pca', 'random' or an"),
    (dict(method="barnes_hut"), "method must be one of"),
    (dict(method="fft", n_components=3), "method must be 'exact' or 'sampled'"),
    (dict(learning_rate=0.0), "learning_rate must be a positive"),
    (dict(metric="manhattan"), "metric must be one of"),
    (dict(n_neighbors=60, method="fft"), r"n_neighbors must be smaller than the number of samples \(60\)"),
    (dict(device="tpu:7"), "device must name a torch device"),
    (dict(callbacks=[1]), "callbacks must be a callable"),
    (dict(n_jobs=0), "n_jobs must be an integer >= 1"),
    (dict(neighbors="annoy"), "neighbors must be one of"),
    (dict(input_noise=-0.1), r"input_noise must be a finite number >= 0; got -0.1"),
    (dict(input_noise=float("nan")), "input_noise must be a finite number >= 0"),
    (dict(input_noise="0.3"), "input_noise must be a finite number >= 0"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, match):
    x = np.random.default_rng(0).normal(size=(60, 4))
    with pytest.raises(IConError, match=match):
        TSNE(**kwargs).fit(x)


def test_bad_data_raises():
    x = np.random.default_rng(0).normal(size=(30, 4))
    x[3, 1] = np.nan
    with pytest.raises(IConError, match="X must be finite; got an array of shape .* containing NaN"):
        TSNE(perplexity=5).fit(x)
    with pytest.raises(IConError, match="X must be a non-empty 2-D array"):
        TSNE(perplexity=5).fit(np.zeros(10))
    with pytest.raises(IConError, match="X must be a numeric"):
        TSNE(perplexity=5).fit([["a", "b"], ["c", "d"]])


def test_transform_errors():
    x = np.random.default_rng(0).normal(size=(40, 4))
    with pytest.raises(IConError, match="transform needs a fitted estimator"):
        TSNE().transform(x)
    est = TSNE(perplexity=5, n_iter=10, early_exaggeration_iter=0, random_state=0).fit(x)
    with pytest.raises(IConError, match="X must have 4 features"):
        est.transform(x[:, :3])


def test_p_and_q_must_agree():
    x = np.random.default_rng(0).normal(size=(600, 4))
    with pytest.raises(IConError, match="p must be symmetrize"):
        NeighborEmbedding(p=KNN(5), q=joint(StudentT()), method="fft").fit(x)
    with pytest.raises(IConError, match="q must be a kernel neighbourhood"):
        NeighborEmbedding(p=KNN(5), q=PositivePairs()).fit(x[:50])
    with pytest.raises(IConError, match="q must be a differentiable kernel"):
        NeighborEmbedding(p=KNN(5), q=KNN(5)).fit(x[:50])
    with pytest.raises(IConError, match=r"p must be a joint \(1, n\*n\) p"):
        NeighborEmbedding(p=KNN(5), q=joint(StudentT()), method="exact").fit(x[:50])


def test_mappers():
    table = EmbeddingTable(5, 2, init=torch.ones(5, 2))
    assert table(torch.tensor([0, 3])).shape == (2, 2) and table().shape == (5, 2)
    with pytest.raises(IConError, match="init must be a tensor of shape"):
        EmbeddingTable(5, 2, init=torch.ones(4, 2))
    mlp = MLP(3, 2, hidden_layer_sizes=(4,))
    mlp.set_input_scaling(torch.randn(10, 3) * 5 + 2)
    assert mlp(torch.randn(6, 3)).shape == (6, 2)
    with pytest.raises(IConError, match=r"x must have shape \(n, 3\)"):
        mlp(torch.randn(6, 4))
    with pytest.raises(IConError, match="hidden_layer_sizes must be an integer"):
        MLP(3, 2, hidden_layer_sizes=(0,))


# ---------------------------------------------------------------- the embed command

def test_embed_command_saves_scores_and_plots(tmp_path, capsys, digits):
    from icontorch.cli import main

    x, y = digits
    np.save(tmp_path / "x.npy", x[:400])
    np.savetxt(tmp_path / "y.csv", y[:400], delimiter=",")
    out, png = tmp_path / "map.npy", tmp_path / "map.png"
    assert main(["embed", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.csv"), "-o", str(out),
                 "--plot", str(png), "--n-iter", "100", "--n-jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert np.load(out).shape == (400, 2)
    assert float(printed.split("2-D 10-NN accuracy:")[1].split()[0]) > 0.9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed_command_reads_csv_and_npz_and_reports_bad_input(tmp_path, capsys):
    from icontorch.cli import main

    x, _ = _blobs(60)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d,e,f", comments="")
    np.savez(tmp_path / "x.npz", other=np.zeros(3), feats=x)
    assert main(["embed", str(tmp_path / "x.csv"), "--method", "sne", "--perplexity", "8",
                 "-o", str(tmp_path / "a.csv"), "--n-iter", "20", "--n-jobs", "1"]) == 0
    assert np.loadtxt(tmp_path / "a.csv", delimiter=",").shape == (60, 2)
    assert main(["embed", str(tmp_path / "x.npz"), "--key", "feats", "--method", "tsne-uniform",
                 "--perplexity", "8", "-o", str(tmp_path / "b.npy"), "--n-iter", "20"]) == 0
    assert np.load(tmp_path / "b.npy").shape == (60, 2)
    capsys.readouterr()
    assert main(["embed", str(tmp_path / "missing.npy")]) == 2
    assert "data must be an existing file" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "x.npz"), "--key", "nope"]) == 2
    assert "--key must be one of" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "x.csv"), "--perplexity", "100"]) == 2
    assert "perplexity must be smaller than n_samples - 1 = 59" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert "usage: icontorch embed" in capsys.readouterr().out
