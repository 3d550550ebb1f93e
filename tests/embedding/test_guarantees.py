"""Guarantees of the neighbour-embedding estimators (issue 17): transactional fits, input that is
checked before any work, no NaN from duplicates or constants, a KL that is never negative, and new
points placed finitely by ``transform`` whatever the precision."""

import copy
import pickle

import numpy as np
import pytest
import torch

from icontorch import KNN, IConError, StudentT, joint, symmetrize
from icontorch.distances import squared_euclidean
from icontorch.embedding.affinity import affinity_to_reference, dense_affinity, knn_affinity
from icontorch.embedding.estimators import SNE, TSNE, NeighborEmbedding
from icontorch.embedding.optim import ReferenceObjective, gradient_descent
from icontorch.neighborhoods.base import KernelNeighborhood
from icontorch.neighborhoods.spatial import Gaussian

_SHORT = dict(n_iter=30, early_exaggeration_iter=10, random_state=0)


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def _blobs(n=90, d=5, seed=0, scale=6.0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=scale, size=(3, d))
    return (centres[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(np.float32)


def _learned(est):
    """What check_is_fitted looks at (names ending in "_") and the private state of a fit."""
    return {k: v for k, v in vars(est).items() if not k.startswith("__") and (k.endswith("_") or k.startswith("_"))}


def _snapshot(est):
    return {k: (v.detach().clone() if isinstance(v, torch.Tensor) else copy.deepcopy(v))
            for k, v in _learned(est).items() if k != "_generator"}


def _assert_same(before, est):
    for name, old in before.items():
        new = getattr(est, name)
        if isinstance(old, torch.Tensor):
            assert torch.equal(old, new), name
        elif isinstance(old, np.ndarray):
            np.testing.assert_array_equal(old, new, err_msg=name)
        elif isinstance(old, torch.nn.Module):
            assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values())), name
        elif not hasattr(old, "__dict__"):
            assert old == new, name


def _interrupt(iteration, loss, embedding):
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------- transactional fits
ESTIMATORS = {
    "TSNE-exact": lambda: TSNE(perplexity=10, **_SHORT),
    "TSNE-fft": lambda: TSNE(perplexity=10, algorithm="fft", **_SHORT),
    "SNE-sampled": lambda: SNE(perplexity=10, algorithm="sampled", **_SHORT),
    "NeighborEmbedding-parametric": lambda: NeighborEmbedding(parametric=True, hidden_layer_sizes=(8,),
                                                              batch_size=64, **_SHORT),
}


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_interrupted_first_fit_leaves_the_estimator_unfitted(name):
    from sklearn.exceptions import NotFittedError
    from sklearn.utils.validation import check_is_fitted

    est = ESTIMATORS[name]().set_params(callbacks=_interrupt, callbacks_every_iters=3)
    params = dict(vars(est))
    with pytest.raises(KeyboardInterrupt):
        est.fit(_blobs())
    assert vars(est) == params
    with pytest.raises(NotFittedError):
        check_is_fitted(est)
    with pytest.raises(IConError, match="transform needs a fitted estimator"):
        est.transform(_blobs()[:3])


@pytest.mark.parametrize("name", list(ESTIMATORS))
@pytest.mark.parametrize("failure", ["interrupt", "late error"])
def test_failed_or_interrupted_refit_keeps_the_previous_fit(name, failure):
    x = _blobs()
    est = ESTIMATORS[name]().fit(x)
    objects, before = _learned(est), _snapshot(est)
    placed = est.transform(x[:4])
    other = 100.0 * _blobs(n=60, d=7, seed=1) + 50.0            # another width and scale
    if failure == "interrupt":
        est.set_params(callbacks=[_interrupt], callbacks_every_iters=2)
        with pytest.raises(KeyboardInterrupt):
            est.fit(other)
    elif est.parametric:                   # p finds too few neighbours only when it is evaluated
        est.set_params(p=symmetrize(KNN(100)))
        with pytest.raises(IConError, match="n_neighbors must be smaller"):
            est.fit(other)
    else:                                  # found once X is read (the old code had replaced n_features_in_)
        est.set_params(init=np.zeros((5, 2)))
        with pytest.raises(IConError, match="init must have shape"):
            est.fit(other)
    assert _learned(est).keys() == objects.keys()
    assert all(getattr(est, k) is v for k, v in objects.items())
    _assert_same(before, est)
    assert est.n_features_in_ == 5
    np.testing.assert_array_equal(est.transform(x[:4]), placed)
    again = pickle.loads(pickle.dumps(est))
    _assert_same(before, again)
    np.testing.assert_array_equal(again.transform(x[:4]), placed)


def test_a_successful_refit_replaces_every_learned_attribute():
    est = TSNE(perplexity=10, **_SHORT).fit(_blobs())
    old = _learned(est)
    est.fit(_blobs(n=60, d=7, seed=1))
    assert est.n_features_in_ == 7 and est.embedding_.shape == (60, 2)
    assert all(getattr(est, k) is not v for k, v in old.items() if not isinstance(v, (int, str)))
    assert est.perplexity == 10 and est.callbacks is None          # parameters stay as given


# ----------------------------------------------------------------------------- input checked first
@pytest.mark.parametrize("value, match", [
    (5, "callbacks must be a callable or a list of callables; got 5"),
    ("print", "callbacks must be a callable or a list of callables; got 'print'"),
    ([print, 5], "callbacks must be a callable or a list of callables"),
    ((c for c in [print]), "callbacks must be a callable or a list of callables"),
])
def test_callbacks_must_be_callables(value, match):
    with pytest.raises(IConError, match=match):
        TSNE(perplexity=5, callbacks=value).fit(_blobs(30))


def test_a_tuple_of_callbacks_is_accepted():
    seen = []
    TSNE(perplexity=5, n_iter=4, early_exaggeration_iter=0, callbacks=(lambda i, loss, y: seen.append(i),),
         callbacks_every_iters=2, random_state=0).fit(_blobs(30))
    assert seen == [2, 4]


@pytest.mark.parametrize("make, match", [
    (lambda x: x.astype(np.complex64) + 1j, r"X must hold real numbers \(a complex array would lose its imaginary"),
    (lambda x: torch.from_numpy(x).to(torch.complex64), "X must hold real numbers"),
    (lambda x: x.astype(str), "X must be a numeric .*; got an array of dtype <U"),
    (lambda x: np.where(x > 0, x, None), "X must be finite; .* containing NaN"),        # None is a missing value
    (lambda x: np.array([[1.0, [2.0]]] * 30, dtype=object), r"X must be a numeric .*\(numbers only: no None"),
    (lambda x: x.astype(object).astype(str).astype(object), "X must be a numeric .*holding strings"),
    (lambda x: [list(r) for r in x[:-1]] + [[1.0]], r"X must be a numeric .*\(rows of one length\)"),
    (lambda x: np.ma.masked_less(x, 0), "X must have no masked entries"),
    (lambda x: np.full(x.shape, 1e39), r"X must have magnitudes below 3.4e\+38, the largest float32"),
    (lambda x: x[:2], "X must hold at least 3 samples"),
])
def test_bad_data_is_refused_before_any_work(make, match):
    with pytest.raises(IConError, match=match):
        TSNE(perplexity=1, **_SHORT).fit(make(_blobs(30)))


def test_sparse_matrices_are_refused_with_a_hint():
    scipy_sparse = pytest.importorskip("scipy.sparse")
    with pytest.raises(IConError, match=r"X must be a dense array \(convert a sparse matrix with .toarray\(\)\)"):
        TSNE(perplexity=5).fit(scipy_sparse.csr_matrix(_blobs(30)))


@pytest.mark.parametrize("make", [lambda x: x > 0, lambda x: (10 * x).astype(np.int16), lambda x: x.astype(np.float16),
                                  lambda x: x.astype(object), lambda x: torch.from_numpy(x > 0)])
def test_bool_integer_half_and_object_input_are_read_as_numbers(make):
    x = _blobs(30)
    est = TSNE(perplexity=5, **_SHORT).fit(make(x))
    assert np.isfinite(est.embedding_).all() and est.embedding_.dtype == np.float32


def test_pandas_frames_are_read_as_arrays():
    pandas = pytest.importorskip("pandas")
    x = _blobs(30)
    np.testing.assert_array_equal(TSNE(perplexity=5, **_SHORT).fit_transform(pandas.DataFrame(x)),
                                  TSNE(perplexity=5, **_SHORT).fit_transform(x))
    with pytest.raises(IConError, match="X must be a numeric"):
        TSNE(perplexity=5).fit(pandas.DataFrame({"a": ["u"] * 30, "b": x[:, 0]}))


@pytest.mark.parametrize("algorithm", ["exact", "fft", "sampled"])
def test_constant_data_is_refused(algorithm):
    with pytest.raises(IConError, match=r"X must hold at least two distinct rows: .*; got 40 identical rows\."):
        TSNE(perplexity=5, algorithm=algorithm).fit(np.full((40, 3), 0.5))


def test_cosine_needs_two_directions_and_no_zero_rows():
    x = np.outer(np.arange(1, 41), [1.0, 2.0, 3.0])                 # one direction
    with pytest.raises(IConError, match=r"two distinct directions \(metric='cosine'\)"):
        TSNE(perplexity=5, metric="cosine").fit(x)
    x = _blobs(40)
    x[3] = 0.0
    with pytest.raises(IConError, match="X must have no all-zero rows when metric='cosine'.*; got 1 of 40"):
        TSNE(perplexity=5, metric="cosine").fit(x)


@pytest.mark.parametrize("kwargs, match", [
    (dict(init=np.full((30, 2), 1e30)), r"init must have coordinates of magnitude at most 8.\d+e\+17 .*1e\+30"),
    (dict(device="meta"), r"device must be a cpu, cuda or mps device; got 'meta'"),
    (dict(algorithm="fft", n_neighbors=4), r"n_neighbors must be larger than the perplexity \(5\), .*; got 4\."),
])
def test_parameters_that_would_fail_deep_inside_are_named(kwargs, match):
    with pytest.raises(IConError, match=match):
        TSNE(perplexity=5, **{**_SHORT, **kwargs}).fit(_blobs(30))


def test_divergence_names_the_step_sizes():
    with pytest.raises(IConError, match=r"the optimisation diverged \(non-finite embedding after \d+ iterations\); "
                                        r"learning_rate=1e\+30 or early_exaggeration=12.0 is too large"):
        TSNE(perplexity=5, parametric=True, hidden_layer_sizes=(8,), learning_rate=1e30, **_SHORT).fit(_blobs(30))


def test_huge_data_trains_a_finite_parametric_map():
    """The MLP's input scale is computed in float64 when the float32 squares overflow."""
    est = TSNE(perplexity=5, parametric=True, hidden_layer_sizes=(8,), **_SHORT).fit(_blobs(30) * 1e20)
    assert np.isfinite(est.embedding_).all() and np.isfinite(float(est.mapper_.scale))


def test_transform_reads_new_points_in_the_precision_of_the_fit():
    x = _blobs()
    est = TSNE(perplexity=10, **_SHORT).fit(x)
    placed = est.transform(torch.from_numpy(x[:5]).double())
    assert placed.dtype == torch.float32
    np.testing.assert_array_equal(placed.numpy(), est.transform(x[:5]))
    with pytest.raises(IConError, match=r"X must have 5 features, as in fit; got 4\."):
        est.transform(x[:5, :4])


def test_float64_tensors_fit_parametric_maps_in_float64():
    x = torch.from_numpy(_blobs()).double()
    est = TSNE(perplexity=10, parametric=True, hidden_layer_sizes=(8,), batch_size=64, **_SHORT).fit(x)
    assert est.embedding_.dtype == np.float64
    assert est.transform(x[:3].float()).dtype == torch.float64


# ----------------------------------------------------------------------------- duplicates and the KL
def _groups(x):
    return np.unique(x, axis=0, return_inverse=True)[1].ravel()


@pytest.mark.parametrize("algorithm", ["exact", "fft", "sampled"])
def test_binary_data_with_many_duplicates_embeds_them_together(algorithm):
    """Issue 17: 200 binary rows in 3-D are 8 points repeated 16-33 times."""
    x = (np.random.default_rng(0).random((200, 3)) > 0.5).astype(float)
    est = TSNE(algorithm=algorithm, n_iter=250, random_state=0).fit(x)
    y, groups = est.embedding_, _groups(x)
    assert np.isfinite(y).all() and 0.0 <= est.kl_divergence_ < 0.5
    centres = np.stack([y[groups == g].mean(0) for g in range(8)])
    spread = max(np.linalg.norm(y[groups == g] - centres[g], axis=1).max() for g in range(8))
    gaps = np.linalg.norm(centres[:, None] - centres[None], axis=-1)[~np.eye(8, dtype=bool)]
    assert spread < 0.25 * gaps.min()


@pytest.mark.parametrize("cls", [TSNE, SNE])
def test_kl_divergence_is_never_negative_on_duplicate_heavy_data(cls):
    """``kl_divergence_`` is the exact KL at the final map (all pairs, float64), whatever the algorithm."""
    x = np.repeat(np.random.default_rng(0).normal(size=(12, 4)), 50, 0)
    est = cls(algorithm="sampled", n_iter=60, early_exaggeration_iter=20, random_state=0).fit(x)
    assert np.isfinite(est.embedding_).all() and est.kl_divergence_ >= 0.0


class _Sharp(KernelNeighborhood):
    """``exp(-1e60 d)``: its precision overflows float32 (inf * 0 = NaN at duplicates), not float64,
    as the perplexity search over many duplicates once did."""

    def __init__(self, precision=1e60):
        super().__init__()
        self.precision, self.include_self = precision, False

    def logits(self, x, y=None):
        d = squared_euclidean(x, x if y is None else y)
        return -(torch.tensor(self.precision, dtype=torch.float64).to(d.dtype) * d)


def test_a_p_that_overflows_float32_is_evaluated_again_in_float64():
    x = torch.from_numpy(np.repeat(_blobs(30), 2, 0))              # every point twice
    assert bool(torch.isnan(_Sharp()(x)).any())                     # the float32 failure itself
    log_p = dense_affinity(_Sharp(), x, False, "who")
    expected = _Sharp()(x.double()).float()
    assert torch.equal(log_p, expected) and not bool(torch.isnan(log_p).any())
    edges = knn_affinity(symmetrize(_Sharp()), x, 5, "who")
    assert torch.isfinite(edges.weight).all() and float(edges.weight.sum()) == pytest.approx(1.0)
    est = NeighborEmbedding(symmetrize(_Sharp()), q=joint(StudentT()), algorithm="fft", **_SHORT).fit(x)
    assert np.isfinite(est.embedding_).all() and est.kl_divergence_ >= 0.0


def test_a_p_that_gives_nan_is_refused_naming_p():
    x = np.repeat(_blobs(30), 2, 0)
    nan_p = _Sharp(precision=float("inf"))                          # inf * 0 in float64 too
    message = r"p must give log-probabilities without NaN on X; got NaN in \d+ of 60 rows\."
    for algorithm in ("exact", "fft"):
        with pytest.raises(IConError, match=message):
            NeighborEmbedding(symmetrize(nan_p), q=joint(StudentT()), algorithm=algorithm, **_SHORT).fit(x)


# ----------------------------------------------------------------------------- transform precision
def _two_clusters(dtype):
    rng = np.random.default_rng(0)
    ref = np.concatenate([rng.normal(size=(40, 2)) + [-15.0, 0.0], rng.normal(size=(40, 2)) + [15.0, 0.0]])
    return torch.tensor(ref, dtype=dtype)


def _place(dtype, start):
    """New points placed as SNE's transform does, by neighbours in the right-hand of two clusters
    30 apart, from starts 15 to 20 units from every reference point."""
    reference = _two_clusters(dtype)
    idx = torch.tensor([[40, 41, 42, 43]] * start.shape[0])
    log_p = torch.full(idx.shape, -np.log(4.0), dtype=dtype)
    objective = ReferenceObjective(idx, log_p, reference, Gaussian(sigma=2 ** -0.5))
    y, _, _ = gradient_descent(torch.tensor(start, dtype=dtype), objective, [(100, 1.0)], 1.0,
                               max_step_norm=5.0, recenter=False)
    return y


def test_new_points_far_from_a_gaussian_map_are_placed_alike_in_float32_and_float64():
    """SNE's unit Gaussian q underflows in float32 15 units from every point: the kernel sum must
    not be divided by its rounding noise (it once threw points to 1e32, or to NaN)."""
    start = np.array([[0.0, 0.0], [0.0, 3.0], [-5.0, -2.0]])
    y32, y64 = _place(torch.float32, start), _place(torch.float64, start)
    assert bool(torch.isfinite(y32).all())
    np.testing.assert_allclose(y32.double().numpy(), y64.numpy(), atol=0.02)
    centre = _two_clusters(torch.float64)[40:44].mean(0)
    assert float((y64 - centre).norm(dim=1).max()) < 0.5


def test_sne_fft_transform_places_points_between_clusters_finitely_in_both_precisions():
    """Issue 17's report: SNE(algorithm="fft").transform threw float32 points to 1e32 or NaN. The map
    is fixed (init, no iterations): two clusters 30 apart; new points have neighbours in both."""
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(size=(50, 5)), rng.normal(size=(50, 5)) + 4.0]).astype(np.float32)
    init = np.concatenate([rng.normal(size=(50, 2)) + [-15, 0], rng.normal(size=(50, 2)) + [15, 0]])
    new = x[50:70] + 0.45 * (x[:50].mean(0) - x[50:].mean(0))
    placed = {}
    for dtype in (torch.float32, torch.float64):
        as_numpy = np.float32 if dtype == torch.float32 else np.float64
        est = SNE(perplexity=10, algorithm="fft", init=init.astype(as_numpy), n_iter=0, early_exaggeration_iter=0)
        est.fit(x if dtype == torch.float32 else torch.from_numpy(x).double())
        placed[dtype] = np.asarray(est.transform(new if dtype == torch.float32 else torch.from_numpy(new).double()))
        assert np.isfinite(placed[dtype]).all()
        assert (np.abs(placed[dtype]) < [18.0, 9.0]).all()             # near the map, not thrown off it
    # points whose neighbours all lie in one cluster converge alike; split ones are still moving
    # along a flat valley after transform's 100 steps
    idx, log_p = affinity_to_reference(est._transform_p, torch.from_numpy(new).double(), est._fit_x, 15, "who")
    share = (log_p.exp() * (idx < 50)).sum(1).numpy()
    decided = (share < 0.01) | (share > 0.99)
    assert decided.sum() >= 5
    np.testing.assert_allclose(placed[torch.float32][decided], placed[torch.float64][decided], atol=0.02)


def test_the_field_is_not_read_outside_its_grid():
    """A new point beyond the interpolation grid gets the exact kernel sums, not the border's."""
    reference = _two_clusters(torch.float64)
    idx, log_p = torch.tensor([[40, 41]]), torch.full((1, 2), -np.log(2.0), dtype=torch.float64)
    for kernel in (Gaussian(sigma=2 ** -0.5), StudentT()):
        objective = ReferenceObjective(idx, log_p, reference, kernel)
        low, high = objective.field.bounds
        y = torch.tensor([[high + 8.0, 0.0], [0.0, low - 3.0]], dtype=torch.float64)
        log_z, grad = objective._repulsion(y)
        exact_log_z, exact_grad = objective._log_sums(y)
        torch.testing.assert_close(log_z, exact_log_z)
        torch.testing.assert_close(grad, exact_grad)
