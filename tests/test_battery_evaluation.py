"""Bad-input battery, part 4: the evaluation helpers and the one-call t-SNE.

``probes.encode``, ``probes.linear_probe_accuracy``, ``probes.knn_probe_accuracy``,
``metrics.knn_accuracy``, ``metrics.clustering_scores`` and ``embedding.tsne_embedding``, each
with one argument made bad at a time (see :mod:`battery_inputs` for the verdict).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from icontorch.embedding import tsne_embedding
from icontorch.metrics import clustering_scores, knn_accuracy
from icontorch.probes import encode, knn_probe_accuracy, linear_probe_accuracy

from battery_inputs import RAISES, SAFE, one_thread, rand, stale, verdict, xfails
from battery_known import KNOWN_EVALUATION


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _with(x, value):
    x = np.array(x, dtype=np.float64)
    x[1, 1] = value
    return x


# Features (n, d): id -> (make from valid float32 features, expect)
FEATURES = {
    "nan": (lambda x: _with(x, math.nan), RAISES),
    "inf": (lambda x: _with(x, math.inf), RAISES),
    "complex": (lambda x: x.astype(np.complex64) + 1j, RAISES),
    "letters": (lambda x: np.full(x.shape, "a", dtype=object), RAISES),
    "string": (lambda x: "x", RAISES),
    "none": (lambda x: None, RAISES),
    "flat": (lambda x: x.reshape(-1), RAISES),
    "rank-3": (lambda x: x[None], RAISES),
    "short": (lambda x: x[:-1], RAISES),
    "empty": (lambda x: x[:0], RAISES),
    "no-features": (lambda x: x[:, :0], RAISES),
    "int": (lambda x: (x * 3).round().astype(np.int64), SAFE),
    "tensor": (lambda x: torch.from_numpy(x), SAFE),
    "duplicates": (lambda x: x[np.arange(len(x)) % 2], SAFE),
    "constant": (lambda x: np.full_like(x, 0.5), SAFE),
    "huge": (lambda x: x * np.float32(1e20), SAFE),
    "tiny": (lambda x: x * np.float32(1e-30), SAFE),
}
# Labels (n,): id -> (make from valid integer labels, expect)
LABELS = {
    "nan": (lambda y: np.where(np.arange(len(y)) == 1, np.nan, y.astype(float)), RAISES),
    "short": (lambda y: y[:-1], RAISES),
    "2-D": (lambda y: np.stack([y, y], 1), RAISES),
    "empty": (lambda y: y[:0], RAISES),
    "string": (lambda y: "x", RAISES),
    "none": (lambda y: None, RAISES),
    "strings": (lambda y: np.array([f"c{v}" for v in y]), SAFE),
    "tensor": (lambda y: torch.from_numpy(y), SAFE),
    "one-class": (lambda y: np.zeros_like(y), SAFE),
    "all-distinct": (lambda y: np.arange(len(y)), SAFE),
}


def _features(n, seed):
    return np.random.default_rng(seed).normal(size=(n, 3)).astype(np.float32)


def _labels(n):
    return np.arange(n) % 3


def _probe_arguments():
    return {"train_features": _features(30, 0), "train_labels": _labels(30),
            "test_features": _features(12, 1), "test_labels": _labels(12)}


_PROBES = {"linear_probe_accuracy": linear_probe_accuracy, "knn_probe_accuracy": knn_probe_accuracy}
_PROBE_OPTIONS = {
    "linear_probe_accuracy": {"C": (("nan", math.nan, RAISES), ("0", 0.0, RAISES), ("string", "x", RAISES)),
                              "max_iter": (("0", 0, RAISES), ("1.5", 1.5, RAISES))},
    "knn_probe_accuracy": {"n_neighbors": (("0", 0, RAISES), ("too-many", 31, RAISES), ("string", "x", RAISES)),
                           "metric": (("bogus", "bogus", RAISES),)},
}


def _probe_cases():
    for name in _PROBES:
        for arg in _probe_arguments():
            table = FEATURES if arg.endswith("features") else LABELS
            for label, (_, expect) in table.items():
                if arg == "train_labels" and label == "one-class":
                    expect = RAISES
                yield f"{name}-{arg}-{label}", (name, arg, label, expect)
        for option, values in _PROBE_OPTIONS[name].items():
            for label, _, expect in values:
                yield f"{name}-{option}={label}", (name, option, label, expect)


@pytest.mark.parametrize("name, arg, label, expect", xfails(KNOWN_EVALUATION, list(_probe_cases())))
def test_probe(name, arg, label, expect):
    arguments = _probe_arguments()
    if arg in arguments:
        table = FEATURES if arg.endswith("features") else LABELS
        arguments[arg] = table[label][0](arguments[arg])
    else:
        arguments[arg] = next(v for lab, v, _ in _PROBE_OPTIONS[name][arg] if lab == label)
    verdict(lambda: _PROBES[name](**arguments), expect)


def _metric_cases():
    for label, (_, expect) in FEATURES.items():
        yield f"knn_accuracy-embedding-{label}", ("knn_accuracy", "embedding", label, expect)
    for label, (_, expect) in LABELS.items():
        yield f"knn_accuracy-labels-{label}", ("knn_accuracy", "labels", label, expect)
    for label in ("0", "n", "string", "1.5"):
        yield f"knn_accuracy-n_neighbors={label}", ("knn_accuracy", "n_neighbors", label, RAISES)
    for arg in ("y_true", "y_pred"):
        for label, (_, expect) in LABELS.items():
            yield f"clustering_scores-{arg}-{label}", ("clustering_scores", arg, label, expect)


_N_NEIGHBORS = {"0": 0, "n": 20, "string": "x", "1.5": 1.5}


@pytest.mark.parametrize("name, arg, label, expect", xfails(KNOWN_EVALUATION, list(_metric_cases())))
def test_metric(name, arg, label, expect):
    if name == "knn_accuracy":
        arguments = {"embedding": _features(20, 0), "labels": _labels(20), "n_neighbors": 3}
    else:
        arguments = {"y_true": _labels(20), "y_pred": (_labels(20) + 1) % 3}
    if arg == "n_neighbors":
        arguments[arg] = _N_NEIGHBORS[label]
    else:
        table = FEATURES if arg == "embedding" else LABELS
        arguments[arg] = table[label][0](arguments[arg])
    verdict(lambda: {"score": (knn_accuracy if name == "knn_accuracy" else clustering_scores)(**arguments)}, expect)


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4))


_ENCODE = {
    "images-nan": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0).masked_fill(torch.eye(4).bool(), math.nan)),
                   RAISES),
    "images-int": (lambda: encode(_model(), torch.zeros(6, 1, 4, 4, dtype=torch.long)), RAISES),
    "images-rank-3": (lambda: encode(_model(), rand(6, 4, 4, seed=0)), RAISES),
    "images-empty": (lambda: encode(_model(), rand(0, 1, 4, 4, seed=0)), RAISES),
    "images-numpy": (lambda: encode(_model(), np.zeros((6, 1, 4, 4), np.float32)), RAISES),
    "batch_size=0": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0), batch_size=0), RAISES),
    "batch_size=string": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0), batch_size="x"), RAISES),
    "model=int": (lambda: encode(5, rand(6, 1, 4, 4, seed=0)), RAISES),
    "device=bogus": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0), device="bogus"), RAISES),
    "device=cuda": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0), device="cuda"),
                    RAISES if not torch.cuda.is_available() else SAFE),
    "images-huge": (lambda: encode(_model(), rand(6, 1, 4, 4, seed=0) * 1e20), SAFE),
}


@pytest.mark.parametrize("call, expect", xfails(KNOWN_EVALUATION, [(f"encode-{k}", v) for k, v in _ENCODE.items()]))
def test_encode(call, expect):
    verdict(call, expect)


_TSNE_X = {**FEATURES, "short": (lambda x: x[:2], SAFE), "float64": (lambda x: x.astype(np.float64), SAFE)}
_TSNE_OPTIONS = {"n_iter=-1": dict(n_iter=-1), "n_iter=nan": dict(n_iter=math.nan),
                 "perplexity=0": dict(perplexity=0.0), "perplexity=too-large": dict(perplexity=50.0),
                 "perplexity=nan": dict(perplexity=math.nan), "init=bogus": dict(init="bogus"),
                 "init=wrong-shape": dict(init=torch.zeros(3, 2)), "learning_rate=nan": dict(learning_rate=math.nan),
                 "random_state=-1": dict(random_state=-1), "n_components=0": dict(n_components=0)}


def _tsne_cases():
    for label, (_, expect) in _TSNE_X.items():
        yield f"tsne_embedding-x-{label}", ("x", label, expect)
    for label in _TSNE_OPTIONS:
        yield f"tsne_embedding-{label}", ("option", label, RAISES)


@pytest.mark.parametrize("arg, label, expect", xfails(KNOWN_EVALUATION, list(_tsne_cases())))
def test_tsne_embedding(arg, label, expect):
    x = torch.from_numpy(_features(20, 0))
    options = dict(perplexity=5.0, n_iter=5, early_exaggeration_iter=5)
    if arg == "x":
        value = _TSNE_X[label][0](x.numpy())
        x = torch.from_numpy(value) if isinstance(value, np.ndarray) and value.dtype.kind in "fiuc" else value
    else:
        options.update(_TSNE_OPTIONS[label])
    verdict(lambda: tsne_embedding(x, **options), expect)


def test_every_known_failure_names_a_case():
    assert not stale(KNOWN_EVALUATION), "ids in battery_known.KNOWN_EVALUATION that are no case of this file"
