"""Clustering's guarantees (issue 17): a fit that fails or is interrupted leaves the estimator as it
was; a device that does not exist, complex input and bad data end in IConError before training;
features of any magnitude give the same clusters; predict never returns NaN. Also the metrics'
bad-input battery."""

import copy
import warnings

import numpy as np
import pytest
import torch

import icontorch.clustering.train as train_module
from icontorch import IConError
from icontorch.clustering import Clustering
from icontorch.clustering.graph import NeighborGraph, knn_indices
from icontorch.metrics import clustering_scores, knn_accuracy


def _blobs(n_per=20, d=3, seed=0):
    rng = np.random.default_rng(seed)
    centers = 6.0 * np.eye(3, d)
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, d)) for c in centers])
    return x.astype(np.float32), np.repeat(np.arange(3), n_per)


def _small(**params):
    return Clustering(**{**dict(n_clusters=3, n_neighbors=4, epochs=2, n_heads=2, batch_size=16,
                                random_state=0), **params})


def _learned(model):
    """The attributes scikit-learn's check_is_fitted looks for: names ending in "_"."""
    return {name: value for name, value in vars(model).items() if name.endswith("_") and not name.startswith("__")}


def _assert_same(before, after):
    assert before.keys() == after.keys()
    for name, old in before.items():
        new = after[name]
        if isinstance(old, torch.Tensor):
            assert torch.equal(old, new), name
        elif isinstance(old, np.ndarray):
            np.testing.assert_array_equal(old, new, err_msg=name)
        elif isinstance(old, torch.nn.Module):
            assert old.state_dict().keys() == new.state_dict().keys(), name
            assert all(torch.equal(a, b) for a, b in zip(old.state_dict().values(), new.state_dict().values())), name
        elif isinstance(old, NeighborGraph):
            assert torch.equal(old.indptr, new.indptr) and torch.equal(old.indices, new.indices), name
        else:
            assert old == new, name


class _InterruptAfter:
    """An augment that raises KeyboardInterrupt (Ctrl-C) on its ``calls``-th call: mid-training."""

    def __init__(self, calls):
        self.calls = calls

    def __call__(self, x, generator):
        self.calls -= 1
        if self.calls <= 0:
            raise KeyboardInterrupt
        return x


def _interrupt(*args, **kwargs):
    raise KeyboardInterrupt


# ----------------------------------------------------------------------------- transactional fit
@pytest.mark.parametrize("where", ["augment", "selection"])
def test_interrupted_first_fit_leaves_the_estimator_unfitted(where, monkeypatch):
    x, _ = _blobs()
    model = _small(augment=_InterruptAfter(3) if where == "augment" else None)
    if where == "selection":                   # after training, while the heads are scored
        monkeypatch.setattr(train_module, "_score_heads", _interrupt)
    with pytest.raises(KeyboardInterrupt):
        model.fit(x)
    assert _learned(model) == {}               # so check_is_fitted raises NotFittedError
    with pytest.raises(IConError, match="not fitted"):
        model.predict(x)


@pytest.mark.parametrize("failure", ["bad augment", "interrupt in training", "interrupt in selection"])
def test_failed_or_interrupted_refit_keeps_the_previous_fit(failure, monkeypatch):
    x, _ = _blobs()
    model = _small().fit(x)
    objects = _learned(model)
    before = copy.deepcopy(objects)
    labels = model.predict(x)
    # new data of another width and scale: a half-replaced fit would show at once
    other, _ = _blobs(n_per=30, d=4, seed=1)
    other = 100.0 * other + 50.0
    if failure == "bad augment":
        model.set_params(augment=lambda b, g: b[:, :2])
        with pytest.raises(IConError, match="augment"):
            model.fit(other)
    else:
        if failure == "interrupt in training":
            model.set_params(augment=_InterruptAfter(5))
        else:
            monkeypatch.setattr(train_module, "_score_heads", _interrupt)
        with pytest.raises(KeyboardInterrupt):
            model.fit(other)
    after = _learned(model)
    assert all(after[name] is objects[name] for name in objects)
    _assert_same(before, after)
    np.testing.assert_array_equal(model.predict(x), labels)


def test_predict_uses_the_standardisation_of_the_fit():
    """Changing ``standardize`` after fit does not change what predict feeds the heads."""
    x, _ = _blobs()
    model = _small(standardize=True).fit(x)
    labels, proba = model.predict(x), model.predict_proba(x)
    model.set_params(standardize=False)
    np.testing.assert_array_equal(model.predict(x), labels)
    np.testing.assert_array_equal(model.predict_proba(x), proba)
    plain = _small(standardize=False).fit(x)
    assert torch.equal(plain.mean_, torch.zeros(3)) and torch.equal(plain.scale_, torch.ones(3))


# ----------------------------------------------------------------------------- device, complex input
@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused():
    x, _ = _blobs()
    with pytest.raises(IConError, match=r"^Clustering: device must be available .*; got 'cuda'\.$"):
        _small(device="cuda").fit(x)


def test_complex_input_is_refused():
    x, _ = _blobs()
    with pytest.raises(IConError, match="X"):
        _small().fit(x + 1j)


def test_all_zero_rows_under_cosine_are_refused_before_the_graph():
    """A zero row has no direction: its cosine neighbours would be arbitrary (TSNE refuses it too)."""
    x, _ = _blobs()
    x[:3] = 0
    with pytest.raises(IConError, match=r"X must have no all-zero rows when metric='cosine' .*; got 3 of"):
        _small().fit(x)
    _small(metric="squared_euclidean").fit(x)          # a point like any other in Euclidean space


# ----------------------------------------------------------------------------- magnitudes
@pytest.mark.parametrize("exponent", [-70, 70, 122])
def test_features_of_any_magnitude_give_the_same_clusters(exponent):
    """Powers of two scale exactly: from about 1e19 on squared distances overflow float32 and below
    about 1e-19 they vanish, which left the kNN graph arbitrary (and the loss NaN near 1e38)."""
    x, _ = _blobs()
    scaled = x * np.float32(2.0 ** exponent)
    assert torch.equal(knn_indices(torch.from_numpy(scaled), 4), knn_indices(torch.from_numpy(x), 4))
    assert torch.equal(knn_indices(torch.from_numpy(scaled), 4, "squared_euclidean"),
                       knn_indices(torch.from_numpy(x), 4, "squared_euclidean"))
    reference = _small().fit(x)
    model = _small().fit(scaled)
    np.testing.assert_array_equal(model.labels_, reference.labels_)
    np.testing.assert_array_equal(model.head_losses_, reference.head_losses_)


def test_predict_never_returns_nan():
    x, _ = _blobs()
    model = _small().fit(x)
    with torch.no_grad():
        model.head_.weights[0].mul_(1e30)        # a head whose logits overflow on large inputs
    with pytest.raises(IConError, match=r"X must lie where the heads can score it"):
        model.predict_proba(x * np.float32(1e10))
    with pytest.raises(IConError, match=r"X must fit in torch.float32, the dtype of the fit"):
        model.predict(torch.from_numpy(x).double() * 1e300)


# ----------------------------------------------------------------------------- bad input battery
def _nan_augment(b, g):
    return b * float("nan")


@pytest.mark.parametrize("params, y, match", [
    (dict(augment=_nan_augment), None, r"augment\(x, generator\) must return finite values"),
    (dict(augment=lambda b, g: b.double()), None, r"augment\(x, generator\) must return a tensor of the input's dtype"),
    (dict(augment=lambda b, g: b.numpy()), None, r"augment\(x, generator\) must return a tensor of shape .*'ndarray'"),
    (dict(method="supervised"), np.array([1, "a", 2] * 20, dtype=object), r"y must hold labels that can be sorted"),
    (dict(method="supervised"), [None] * 60, r"y must hold labels that can be sorted"),
    (dict(method="supervised"), np.r_[np.inf, np.zeros(59)], r"y must hold finite labels"),
    (dict(standardize=1), None, r"standardize must be True or False; got 1\."),
    (dict(device="cuda:x"), None, r"device must name a torch device"),
])
def test_bad_input_ends_in_a_clear_error(params, y, match):
    x, _ = _blobs()
    model = _small(**params)
    with pytest.raises(IConError, match=match):
        model.fit(x, y)
    assert _learned(model) == {}


@pytest.mark.parametrize("data", ["duplicates", "constant", "one feature", "n_clusters = n", "int", "bool",
                                  "float16"])
def test_degenerate_data_gives_finite_answers(data):
    x, _ = _blobs()
    params = {}
    if data == "duplicates":
        x = np.repeat(x[:2], 30, 0)
    elif data == "constant":
        x = np.ones_like(x)
    elif data == "one feature":
        x = x[:, :1]
    elif data == "n_clusters = n":
        x, params = x[:8], dict(n_clusters=8, n_neighbors=2)
    else:
        x = {"int": (10 * x).astype(int), "bool": x > 0, "float16": x.astype(np.float16)}[data]
    model = _small(**params).fit(x)
    proba = model.predict_proba(x)
    assert np.isfinite(proba).all() and np.allclose(proba.sum(1), 1.0, atol=1e-5)
    assert model.labels_.shape == (x.shape[0],)


# ----------------------------------------------------------------------------- metrics
_Y = np.arange(30) % 3


@pytest.mark.parametrize("call, match", [
    (lambda: knn_accuracy(np.ones((30, 2)) + 1j, _Y, 3), r"^knn_accuracy: embedding must hold real numbers"),
    (lambda: knn_accuracy(np.array([["a", "b"]] * 30), _Y, 3), r"embedding must hold real numbers"),
    (lambda: knn_accuracy(np.zeros((0, 2)), _Y[:0], 3), r"embedding must be a non-empty 2-D array"),
    (lambda: knn_accuracy(np.ones((30, 2)), np.r_[np.nan, _Y[1:]], 3), r"labels must not contain NaN"),
    (lambda: knn_accuracy(np.ones((30, 2)), np.array([1, "a", None] * 10, dtype=object), 3),
     r"labels must hold labels that can be sorted"),
    (lambda: clustering_scores(np.array([1, "a", None] * 10, dtype=object), _Y), r"y_true must hold labels that can"),
    (lambda: clustering_scores(_Y + 1j, _Y), r"^clustering_scores: y_true must hold real or string labels"),
    (lambda: clustering_scores(_Y, np.r_[np.nan, _Y[1:]]), r"y_pred must not contain NaN"),
])
def test_metrics_refuse_bad_input(call, match):
    with pytest.raises(IConError, match=match):
        call()


def test_metrics_of_extreme_or_float_values():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 2))
    assert knn_accuracy(x * 2.0 ** 600, _Y, 3) == knn_accuracy(x, _Y, 3)   # squares overflowed float64
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                     # scikit-learn warned on float labels
        scores = clustering_scores(_Y + 0.5, _Y)
    assert scores["nmi"] == pytest.approx(1.0) and scores["accuracy"] == 1.0
