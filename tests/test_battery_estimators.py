"""Bad-input battery, part 2: the estimators ``TSNE``, ``SNE``, ``NeighborEmbedding``, ``Clustering``.

Tiny data (40 x 5) and a few iterations or epochs, so that a fit takes milliseconds. One thing at
a time is made bad: the data given to ``fit`` / ``fit_transform`` / ``fit_predict`` (see
:data:`DATA`), the data given to ``transform`` / ``predict`` / ``predict_proba`` of a fitted
estimator, the labels of ``Clustering(method="supervised")``, or one constructor argument. Every
case must end in an ``IConError`` raised by icontorch or in a result (and fitted attributes) free
of NaN and Inf, with a KL divergence that is not negative.
"""

from __future__ import annotations

import copy
import functools
import inspect
import math

import numpy as np
import pytest
import torch

from icontorch import SNE, TSNE, Clustering, NeighborEmbedding, methods

from battery_inputs import RAISES, SAFE, non_finite, one_thread, parameter_values, stale, verdict, xfails
from battery_known import KNOWN_ESTIMATORS

N, D = 40, 5
_SHORT = dict(n_iter=4, early_exaggeration_iter=3, random_state=0)
ESTIMATORS = {
    "TSNE": functools.partial(TSNE, **_SHORT),
    "TSNE-fft": functools.partial(TSNE, perplexity=5.0, algorithm="fft", **_SHORT),
    "TSNE-sampled": functools.partial(TSNE, perplexity=5.0, algorithm="sampled", **_SHORT),
    "TSNE-parametric": functools.partial(TSNE, parametric=True, hidden_layer_sizes=(8,), batch_size=64, **_SHORT),
    "SNE": functools.partial(SNE, **_SHORT),
    "NeighborEmbedding-knn": functools.partial(NeighborEmbedding, methods.tsne_uniform_affinities(5).p,
                                               q=methods.tsne_uniform_affinities(5).q, **_SHORT),
    "Clustering": functools.partial(Clustering, 3, n_heads=2, epochs=2, batch_size=16, random_state=0),
    "Clustering-kmeans": functools.partial(Clustering, 3, method="kmeans", n_heads=2, epochs=2, batch_size=16,
                                           random_state=0),
    "Clustering-scan": functools.partial(Clustering, 3, method="scan", n_heads=2, epochs=2, batch_size=16,
                                         random_state=0),
}
# Constructor arguments are tried on TSNE (SNE shares its checks), NeighborEmbedding and Clustering.
PARAMETER_ESTIMATORS = ("TSNE", "NeighborEmbedding-knn", "Clustering")
# New data is tried on one estimator of each way to place it.
TRANSFORMS = {"TSNE": ("transform",), "TSNE-parametric": ("transform",), "NeighborEmbedding-knn": ("transform",),
              "Clustering": ("predict", "predict_proba")}


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def data(seed: int = 0, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, D)).astype(np.float32)


def _with(x, value):
    x = np.array(x, dtype=np.float64 if isinstance(value, float) else x.dtype)
    x[1, 2] = value
    return x


# name -> (make the bad data from valid (n, D) float32 data, expect)
DATA = {
    "nan": (lambda x: _with(x, math.nan), RAISES),
    "inf": (lambda x: _with(x, math.inf), RAISES),
    "-inf": (lambda x: _with(x, -math.inf), RAISES),
    "complex": (lambda x: x.astype(np.complex64) + 1j, RAISES),
    "complex-tensor": (lambda x: torch.from_numpy(x).to(torch.complex64), RAISES),
    "letters": (lambda x: np.full(x.shape, "a", dtype=object), RAISES),
    "string": (lambda x: "x", RAISES),
    "none": (lambda x: None, RAISES),
    "flat": (lambda x: x.reshape(-1), RAISES),
    "rank-3": (lambda x: x[None], RAISES),
    "scalar": (lambda x: np.float32(1.0), RAISES),
    "no-rows": (lambda x: x[:0], RAISES),
    "no-features": (lambda x: x[:, :0], RAISES),
    "ragged": (lambda x: [list(row) for row in x[:-1]] + [[1.0]], RAISES),
    "int": (lambda x: (x * 3).round().astype(np.int64), SAFE),
    "bool": (lambda x: x > 0, SAFE),
    "float16": (lambda x: x.astype(np.float16), SAFE),
    "float64": (lambda x: x.astype(np.float64), SAFE),
    "objects": (lambda x: x.astype(object), SAFE),
    "numeric-strings": (lambda x: x.astype(str), SAFE),          # numpy parses them, as np.asarray(x, float)
    "lists": (lambda x: x.tolist(), SAFE),
    "tensor": (lambda x: torch.from_numpy(x), SAFE),
    "tensor-float64": (lambda x: torch.from_numpy(x).double(), SAFE),
    "one-row": (lambda x: x[:1], SAFE),
    "two-rows": (lambda x: x[:2], SAFE),
    "one-feature": (lambda x: x[:, :1], SAFE),
    "duplicates": (lambda x: x[np.arange(len(x)) % 2], SAFE),
    "constant": (lambda x: np.full_like(x, 0.5), SAFE),
    "binary": (lambda x: (x > 0).astype(np.float64), SAFE),
    "constant-column": (lambda x: np.concatenate([x[:, :-1], np.ones_like(x[:, :1])], 1), SAFE),
    "huge": (lambda x: x * np.float32(1e20), SAFE),
    "tiny": (lambda x: x * np.float32(1e-30), SAFE),
    "wide-range": (lambda x: x * np.logspace(-20, 20, x.shape[1], dtype=np.float32), SAFE),
}
NEW_DATA = dict(DATA, **{"more-features": (lambda x: np.concatenate([x, x[:, :1]], 1), RAISES),
                         "fewer-features": (lambda x: x[:, 1:], RAISES)})


def _fit_method(name):
    return "fit_predict" if name.startswith("Clustering") else "fit_transform"


def _call(estimator, method, x):
    result = getattr(estimator, method)(x)
    return result, estimator


def _fit_cases():
    for name in ESTIMATORS:
        for method in (_fit_method(name),):          # fit_transform and fit_predict call fit
            for bad, (_, expect) in DATA.items():
                yield f"{name}-{method}-{bad}", (name, method, bad, expect)


@pytest.mark.parametrize("name, method, bad, expect", xfails(KNOWN_ESTIMATORS, list(_fit_cases())))
def test_bad_fit_data(name, method, bad, expect):
    x = DATA[bad][0](data())
    verdict(lambda: _call(ESTIMATORS[name](), method, x), expect)


@functools.lru_cache(maxsize=None)
def _fitted(name):
    return ESTIMATORS[name]().fit(data())


def _new_data_cases():
    for name, methods_ in TRANSFORMS.items():
        for method in methods_:
            for bad, (_, expect) in NEW_DATA.items():
                yield f"{name}-{method}-{bad}", (name, method, bad, expect)


@pytest.mark.parametrize("name, method, bad, expect", xfails(KNOWN_ESTIMATORS, list(_new_data_cases())))
def test_bad_new_data(name, method, bad, expect):
    estimator = copy.deepcopy(_fitted(name))
    x = NEW_DATA[bad][0](data(seed=1, n=8))
    verdict(lambda: getattr(estimator, method)(x), expect)


@pytest.mark.parametrize("name, method", [(n, m) for n, ms in TRANSFORMS.items() for m in ms])
def test_unfitted_estimator_says_so(name, method):
    verdict(lambda: getattr(ESTIMATORS[name](), method)(data()), RAISES)


_LABELS = {
    "nan": (lambda y: y.astype(float) + np.where(np.arange(len(y)) == 1, np.nan, 0), RAISES),
    "short": (lambda y: y[:-1], RAISES),
    "2-D": (lambda y: y[:, None].repeat(2, 1), RAISES),
    "none": (lambda y: None, RAISES),
    "string": (lambda y: "x", RAISES),
    "one-class": (lambda y: np.zeros_like(y), SAFE),
    "all-distinct": (lambda y: np.arange(len(y)), SAFE),
    "strings": (lambda y: y.astype(str), SAFE),
    "float": (lambda y: y.astype(float), SAFE),
    "tensor": (lambda y: torch.from_numpy(y), SAFE),
    "complex": (lambda y: y.astype(np.complex64), SAFE),        # labels are any values numpy can sort
}


@pytest.mark.parametrize("bad, expect", xfails(KNOWN_ESTIMATORS, [(f"Clustering-supervised-y-{k}", (k, v[1]))
                                                                   for k, v in _LABELS.items()]))
def test_bad_labels(bad, expect):
    y = _LABELS[bad][0](np.arange(N) % 3)
    model = Clustering(3, method="supervised", n_heads=2, epochs=2, batch_size=16, random_state=0)
    verdict(lambda: (model.fit_predict(data(), y), model), expect)


def _one_arg(x, generator):
    return x


_SPECIAL = {
    "device": (("bogus", "bogus", RAISES), ("cuda", "cuda", RAISES if not torch.cuda.is_available() else SAFE),
               ("cuda-99", "cuda:99", RAISES), ("int", 5, RAISES), ("meta", "meta", RAISES)),
    "n_jobs": (("0", 0, RAISES), ("-2", -2, RAISES), ("string", "x", RAISES), ("nan", math.nan, RAISES),
               ("1e9", 10 ** 9, RAISES)),
    "random_state": (("-1", -1, RAISES), ("nan", math.nan, RAISES), ("1.5", 1.5, RAISES), ("string", "x", RAISES),
                     ("2**32", 2 ** 32, RAISES), ("2**64", 2 ** 64, RAISES)),
    "callbacks": (("int", 5, RAISES), ("list-of-int", [5], RAISES), ("string", "x", RAISES)),
    "init": (("bogus", "bogus", RAISES), ("wrong-shape", np.zeros((3, 2)), RAISES),
             ("nan-array", np.full((N, 2), np.nan), RAISES), ("constant-array", np.zeros((N, 2)), SAFE)),
    "hidden_layer_sizes": (("zero", (0,), RAISES), ("string", "x", RAISES), ("negative", (-1,), RAISES)),
    "p": (("int", 5, RAISES), ("string", "x", RAISES)),
    "q": (("int", 5, RAISES), ("string", "x", RAISES)),
    "alpha_p": (("nan", math.nan, RAISES), ("2", 2.0, RAISES), ("-1", -1.0, RAISES)),
    "alpha_q": (("nan", math.nan, RAISES), ("2", 2.0, RAISES), ("-1", -1.0, RAISES)),
    "augment": (("int", 5, RAISES), ("one-argument", lambda x: x, RAISES),
                ("wrong-shape", lambda x, g: x[:, :1], RAISES), ("nan", lambda x, g: x * math.nan, RAISES),
                ("two-arguments", _one_arg, SAFE)),
    "learning_rate": parameter_values(1.0) + (("bogus", "bogus", RAISES),),
    "n_neighbors": parameter_values(1) + (("bogus", "bogus", RAISES), ("too-many", 10 ** 6, SAFE)),
    "n_heads": parameter_values(1) + (("bogus", "bogus", RAISES),),
    "n_iter": parameter_values(1) + (("bogus", "bogus", RAISES),),
    "max_neighbors": (("zero", 0, RAISES), ("string", "x", RAISES), ("float", 2.5, RAISES), ("nan", math.nan, RAISES),
                      ("int", 5, SAFE), ("none", None, SAFE)),
    "verbose": (),
}


def _parameter_cases():
    for name in PARAMETER_ESTIMATORS:
        make = ESTIMATORS[name]
        cls = make.func
        for param in inspect.signature(cls.__init__).parameters.values():
            if param.name == "self":
                continue
            values = _SPECIAL.get(param.name)
            if values is None:
                values = parameter_values(param.default)
            for label, value, expect in values:
                yield f"{name}-{param.name}={label}", (name, param.name, value, expect)


@pytest.mark.parametrize("name, param, value, expect", xfails(KNOWN_ESTIMATORS, list(_parameter_cases())))
def test_bad_constructor_argument(name, param, value, expect):
    make = ESTIMATORS[name]
    arguments = inspect.signature(make.func.__init__).bind_partial(None, *make.args, **make.keywords).arguments
    arguments.pop("self")
    arguments[param] = value
    estimator = make.func(**arguments)
    method = _fit_method(name)
    verdict(lambda: _call(estimator, method, data()), expect)


@pytest.mark.parametrize("name", list(ESTIMATORS))
def test_valid_data_gives_a_finite_result(name):
    """The base of every case above: the unperturbed data fits, and the fitted state is finite."""
    estimator = ESTIMATORS[name]()
    result = getattr(estimator, _fit_method(name))(data())
    assert not non_finite((result, estimator))


def test_wrong_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        TSNE(perplexty=5)
    with pytest.raises(TypeError):
        Clustering(n_cluster=3)


def test_every_known_failure_names_a_case():
    assert not stale(KNOWN_ESTIMATORS), "ids in battery_known.KNOWN_ESTIMATORS that are no case of this file"
