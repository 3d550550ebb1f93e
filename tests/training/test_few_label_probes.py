"""Few-label probes: the stratified draw and the probes averaged over draws (issue 18, section 4)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icontorch as ic
from icontorch.probes import few_label_indices, few_label_knn_probe_accuracy, few_label_linear_probe_accuracy


def _data(seed=0):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=400, centers=4, n_features=6, random_state=seed, cluster_std=1.0)
    x = x + np.random.default_rng(seed).normal(scale=4.0, size=x.shape)  # overlapping classes
    return x[:250], y[:250], x[250:], y[250:]


@pytest.mark.parametrize("n_per_class", [1, 3, 7])
def test_few_label_indices_draws_n_distinct_points_of_every_class(n_per_class):
    labels = np.array([2] * 9 + [0] * 7 + [5] * 12)
    np.random.default_rng(3).shuffle(labels)
    chosen = few_label_indices(labels, n_per_class, random_state=4)
    assert chosen.dtype == np.int64 and len(set(chosen.tolist())) == chosen.size == 3 * n_per_class
    assert labels[chosen].tolist() == [0] * n_per_class + [2] * n_per_class + [5] * n_per_class
    assert np.array_equal(chosen, few_label_indices(torch.tensor(labels), n_per_class, random_state=4))


def test_few_label_indices_is_uniform_within_each_class():
    labels = np.repeat([0, 1], [5, 3])
    rng = np.random.default_rng(0)
    counts = np.zeros(8)
    for _ in range(4000):
        counts[few_label_indices(labels, 1, rng)] += 1
    # class 0: each of 5 items with probability 1/5; class 1: each of 3 with 1/3 (4000 draws, 5 sigma)
    for members, p in ((slice(0, 5), 1 / 5), (slice(5, 8), 1 / 3)):
        assert np.all(np.abs(counts[members] / 4000 - p) < 5 * np.sqrt(p * (1 - p) / 4000))


def _draws(y_train, n_per_class, n_draws, seed):
    """The draws, written independently: per class, numpy's choice without replacement, in class order."""
    rng = np.random.default_rng(seed)
    return [np.concatenate([rng.choice(np.flatnonzero(y_train == c), n_per_class, replace=False)
                            for c in np.unique(y_train)]) for _ in range(n_draws)]


@pytest.mark.parametrize("n_per_class", [1, 10])
def test_few_label_linear_probe_is_the_mean_of_scikit_learn_fits(n_per_class):
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x_tr, y_tr, x_te, y_te = _data()
    expected = []
    for chosen in _draws(y_tr, n_per_class, 4, seed=11):
        scaler = StandardScaler().fit(x_tr[chosen])
        model = LogisticRegression(C=0.3, max_iter=1000).fit(scaler.transform(x_tr[chosen]), y_tr[chosen])
        expected.append((model.predict(scaler.transform(x_te)) == y_te).mean())
    got = few_label_linear_probe_accuracy(x_tr, y_tr, torch.tensor(x_te), y_te, n_per_class, n_draws=4, C=0.3,
                                          random_state=11)
    assert got == pytest.approx(np.mean(expected), abs=1e-12)
    assert len(set(np.round(expected, 6))) > 1  # the draws differ, so the mean is over distinct fits


@pytest.mark.parametrize("n_per_class, k, metric", [(1, 1, "cosine"), (10, 1, "squared_euclidean"),
                                                    (10, 5, "cosine")])
def test_few_label_knn_probe_is_the_mean_of_brute_force_votes(n_per_class, k, metric):
    x_tr, y_tr, x_te, y_te = _data(1)
    expected = []
    for chosen in _draws(y_tr, n_per_class, 5, seed=2):
        a, b = x_te, x_tr[chosen]
        if metric == "cosine":
            a = a / np.linalg.norm(a, axis=1, keepdims=True)
            b = b / np.linalg.norm(b, axis=1, keepdims=True)
            d = 1 - a @ b.T
        else:
            d = ((a[:, None] - b[None]) ** 2).sum(-1)
        nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
        votes = np.array([np.bincount(y_tr[chosen][row], minlength=4).argmax() for row in nearest])
        expected.append((votes == y_te).mean())
    got = few_label_knn_probe_accuracy(x_tr, y_tr, x_te, y_te, n_per_class, n_draws=5, n_neighbors=k, metric=metric,
                                       random_state=2)
    assert got == pytest.approx(np.mean(expected), abs=1e-12)


def test_more_labels_give_a_better_probe_on_separable_classes():
    x_tr, y_tr, x_te, y_te = _data(2)
    one = few_label_linear_probe_accuracy(x_tr, y_tr, x_te, y_te, 1, n_draws=8)
    many = few_label_linear_probe_accuracy(x_tr, y_tr, x_te, y_te, 30, n_draws=3)
    assert 0.25 < one < many


@pytest.mark.parametrize("call, match", [
    (lambda x, y: few_label_indices(y, 0), r"^few_label_indices: n_per_class must be an integer >= 1; got 0\.$"),
    (lambda x, y: few_label_indices(y, 8),
     r"^few_label_indices: n_per_class must be at most the size of the smallest class \(7, class 1\); got 8\.$"),
    (lambda x, y: few_label_indices(y[:, None], 1), "labels must be 1-D"),
    (lambda x, y: few_label_indices(y, 1, random_state=-1), "random_state must be an integer >= 0"),
    (lambda x, y: few_label_linear_probe_accuracy(x, y, x, y, 1, n_draws=0), "n_draws must be an integer >= 1"),
    (lambda x, y: few_label_linear_probe_accuracy(x, y, x, y, 8), "smallest class"),
    (lambda x, y: few_label_linear_probe_accuracy(x, y, x, y, 1, C=-1.0), "C must be"),
    (lambda x, y: few_label_linear_probe_accuracy(np.full_like(x, np.nan), y, x, y, 1), "finite"),
    (lambda x, y: few_label_knn_probe_accuracy(x, y, x, y, 1, n_neighbors=3),
     r"^few_label_knn_probe_accuracy: n_neighbors must be at most the number of labelled points per draw "
     r"\(2 classes x 1\); got 3\.$"),
    (lambda x, y: few_label_knn_probe_accuracy(x, y, x, y, 1, metric="manhattan"), "metric must be one of"),
    (lambda x, y: few_label_knn_probe_accuracy(x, y[:-1], x, y, 1), "same number of rows"),
])
def test_few_label_probe_errors(call, match):
    x = np.random.default_rng(0).normal(size=(20, 3))
    y = np.array([0] * 13 + [1] * 7)
    with pytest.raises(ic.IConError, match=match):
        call(x, y)
