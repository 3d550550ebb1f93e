"""Evaluating frozen representations: embed with the backbone, then a linear probe and kNN on held-out data.

The paper's Appendix A protocol: features are the backbone's output (not the projection the loss
sees); a logistic regression is fitted on the training features and scored on the test
features; a k-nearest-neighbour classifier (``n_neighbors`` = 3 or 10) does the same without training.
scikit-learn does the fitting.

The few-label probes fit the same classifiers on ``n_per_class`` labelled points per class, drawn
from the training features (:func:`few_label_indices`), and average the test accuracy over
``n_draws`` draws: with 1 or 10 labels per class they separate features that a probe on thousands
of labels rates alike.
"""

from __future__ import annotations

import copy
import itertools
from typing import Any, Tuple, Union

import numpy as np
import torch
from torch import Tensor, nn

from ._validation import IConError, check_choice, check_device, check_int, check_positive, fail
from .metrics import _features, _label_ids, _magnitude_factor, _to_numpy

__all__ = ["encode", "linear_probe_accuracy", "knn_probe_accuracy", "few_label_indices",
           "few_label_linear_probe_accuracy", "few_label_knn_probe_accuracy"]

ArrayLike = Union[np.ndarray, Tensor]
_METRICS = {"cosine": "cosine", "squared_euclidean": "euclidean"}  # ours -> scikit-learn's


@torch.no_grad()
def encode(model: nn.Module, images: Tensor, batch_size: int = 1024,
           device: Union[str, torch.device, None] = None) -> Tensor:
    """``h = model.features(x)`` for every image (``model(x)`` if it has no ``features``), in eval mode.

    Args:
        model: a trained encoder, e.g. :class:`icontorch.encoders.ContrastiveEncoder`.
        images: (N, C, H, W) floating tensor.
        batch_size: images per forward pass.
        device: where to run; defaults to the device of the model's first parameter. A model whose
            parameters live elsewhere runs as a copy moved there; the model itself is left where it is.

    Returns:
        (N, d) features on the CPU; the model's train/eval mode is restored afterwards.
    """
    who = "encode"
    if not isinstance(model, nn.Module):
        raise fail(who, "model", "be a torch.nn.Module", model)
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise fail(who, "images", "be a floating tensor of shape (N, C, H, W)", images)
    if images.shape[0] == 0:
        raise fail(who, "images", "hold at least one image", images)
    if not bool(torch.isfinite(images).all()):
        raise fail(who, "images", "be finite (no NaN or Inf)", images)
    batch_size = check_int(who, "batch_size", batch_size, 1)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    else:
        device = check_device(who, "device", device)
        if any(t.device.type != device.type or device.index not in (None, t.device.index)
               for t in itertools.chain(model.parameters(), model.buffers())):
            model = copy.deepcopy(model).to(device)         # the caller's model stays on its device
    embed = getattr(model, "features", model)
    was_training = model.training
    model.eval()
    try:
        parts = [embed(images[s:s + batch_size].to(device)).float().cpu()
                 for s in range(0, images.shape[0], batch_size)]
    finally:
        model.train(was_training)
    if not all(bool(torch.isfinite(part).all()) for part in parts):
        raise IConError(f"{who}: the model's features of the images are not finite (NaN or Inf); got features "
                        f"of shape {(images.shape[0],) + tuple(parts[0].shape[1:])}.")
    return torch.cat(parts)


def _split(who: str, train: ArrayLike, y_train: ArrayLike, test: ArrayLike, y_test: ArrayLike):
    """Real, finite, non-empty features (one common power-of-two factor when their magnitude is
    extreme: exact, and neither probe's answer changes) and sortable, finite labels."""
    x_train = _to_numpy(train)
    x_test = _to_numpy(test)
    for name, a in (("train_features", x_train), ("test_features", x_test)):
        if a.ndim != 2:
            raise fail(who, name, "be 2-D", a.shape)
        _features(who, name, a)
    y_train = _to_numpy(y_train)
    y_test = _to_numpy(y_test)
    for name, a in (("train_labels", y_train), ("test_labels", y_test)):
        if a.ndim != 1:
            raise fail(who, name, "be 1-D", a.shape)
        _label_ids(who, name, a)
    if x_train.shape[0] != y_train.shape[0] or x_test.shape[0] != y_test.shape[0]:
        raise IConError(f"{who}: features and labels must have the same number of rows; got "
                        f"{x_train.shape[0]} / {y_train.shape[0]} (train) and {x_test.shape[0]} / "
                        f"{y_test.shape[0]} (test).")
    if x_train.shape[1] != x_test.shape[1]:
        raise IConError(f"{who}: train_features and test_features must have the same width; got "
                        f"{x_train.shape[1]} and {x_test.shape[1]}.")
    if np.unique(y_train).size < 2:
        raise fail(who, "train_labels", "hold at least 2 classes", np.unique(y_train).tolist())
    factor = _magnitude_factor(x_train, x_test)
    if factor != 1.0:
        x_train, x_test = x_train * factor, x_test * factor
    return x_train, y_train, x_test, y_test


def linear_probe_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                          test_labels: ArrayLike, C: float = 1.0, max_iter: int = 1000) -> float:
    """Test accuracy of ``LogisticRegression(C)`` fitted on standardised training features.

    Args:
        train_features: (n, d) features to fit the probe on.
        train_labels: (n,) their labels.
        test_features: (m, d) held-out features to score it on.
        test_labels: (m,) their labels.
        C: inverse L2 strength of scikit-learn's logistic regression.
        max_iter: L-BFGS iterations.

    Returns:
        The fraction of test points classified correctly.
    """
    C = check_positive("linear_probe_accuracy", "C", C)
    max_iter = check_int("linear_probe_accuracy", "max_iter", max_iter, 1)
    x_train, y_train, x_test, y_test = _split("linear_probe_accuracy", train_features, train_labels,
                                              test_features, test_labels)
    return _linear_score(x_train, y_train, x_test, y_test, C, max_iter)


def _linear_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, C: float,
                  max_iter: int) -> float:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    probe = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=max_iter))
    probe.fit(x_train, y_train)
    return float((probe.predict(x_test) == y_test).mean())


def knn_probe_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                       test_labels: ArrayLike, n_neighbors: int = 10, metric: str = "cosine") -> float:
    """``(1/m) sum_t 1[vote_t = y_t]``: the vote of the ``n_neighbors`` nearest training features.

    Each test point gets the majority label among its ``n_neighbors`` nearest training points
    (scikit-learn's ``KNeighborsClassifier``; ties go to the smallest label).

    Args:
        train_features: (n, d) features to vote with.
        train_labels: (n,) their labels.
        test_features: (m, d) held-out features to classify.
        test_labels: (m,) their labels.
        n_neighbors: neighbours per vote (the paper uses 3 on CIFAR and 10 on STL-10), in [1, n].
        metric: ``"cosine"`` (default, usual for contrastive features) or ``"squared_euclidean"``.

    Returns:
        The fraction of test points whose vote equals their label.
    """
    who = "knn_probe_accuracy"
    check_choice(who, "metric", metric, tuple(_METRICS))
    x_train, y_train, x_test, y_test = _split(who, train_features, train_labels, test_features,
                                              test_labels)
    n_neighbors = int(check_int(who, "n_neighbors", n_neighbors, 1))
    if n_neighbors > x_train.shape[0]:
        raise fail(who, "n_neighbors", f"be at most the number of training points ({x_train.shape[0]})",
                   n_neighbors)
    return _knn_score(x_train, y_train, x_test, y_test, n_neighbors, metric)


def _knn_score(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, n_neighbors: int,
               metric: str) -> float:
    from sklearn.neighbors import KNeighborsClassifier

    # The Euclidean distance ranks neighbours as its square does.
    classifier = KNeighborsClassifier(n_neighbors=n_neighbors, metric=_METRICS[metric]).fit(x_train, y_train)
    return float((classifier.predict(x_test) == y_test).mean())


def _check_draw(who: str, labels: np.ndarray, n_per_class: Any, n_draws: Any) -> Tuple[int, int]:
    n_per_class = check_int(who, "n_per_class", n_per_class, 1)
    n_draws = check_int(who, "n_draws", n_draws, 1)
    classes, counts = np.unique(labels, return_counts=True)
    if n_per_class > counts.min():
        raise fail(who, "n_per_class", f"be at most the size of the smallest class ({int(counts.min())}, class "
                   f"{classes[counts.argmin()].item()!r})", n_per_class)
    return n_per_class, n_draws


def few_label_indices(labels: ArrayLike, n_per_class: int,
                      random_state: Union[int, np.random.Generator] = 0) -> np.ndarray:
    """``n_per_class`` distinct indices drawn uniformly without replacement from each class of ``labels``.

    Args:
        labels: (n,) class labels (sortable, finite).
        n_per_class: labelled points per class, in [1, size of the smallest class].
        random_state: an integer seed or a ``numpy.random.Generator`` (advanced by the draw).

    Returns:
        (n_classes * n_per_class,) int64 indices into ``labels``, grouped by class in sorted class order.
    """
    who = "few_label_indices"
    labels = _to_numpy(labels)
    if labels.ndim != 1 or labels.shape[0] == 0:
        raise fail(who, "labels", "be 1-D and non-empty", labels.shape)
    _label_ids(who, "labels", labels)
    n_per_class, _ = _check_draw(who, labels, n_per_class, 1)
    if not isinstance(random_state, np.random.Generator):
        random_state = np.random.default_rng(check_int(who, "random_state", random_state, 0))
    return np.concatenate([random_state.choice(np.flatnonzero(labels == c), n_per_class, replace=False)
                           for c in np.unique(labels)]).astype(np.int64)


def _few_label(who: str, score, train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
               test_labels: ArrayLike, n_per_class: int, n_draws: int, random_state: int,
               n_neighbors: int = 1) -> float:
    x_train, y_train, x_test, y_test = _split(who, train_features, train_labels, test_features, test_labels)
    n_per_class, n_draws = _check_draw(who, y_train, n_per_class, n_draws)
    n_classes = np.unique(y_train).size
    if n_neighbors > n_classes * n_per_class:
        raise fail(who, "n_neighbors", f"be at most the number of labelled points per draw ({n_classes} classes x "
                   f"{n_per_class})", n_neighbors)
    rng = np.random.default_rng(check_int(who, "random_state", random_state, 0))
    accuracies = []
    for _ in range(n_draws):
        chosen = few_label_indices(y_train, n_per_class, rng)
        accuracies.append(score(x_train[chosen], y_train[chosen], x_test, y_test))
    return float(np.mean(accuracies))


def few_label_linear_probe_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                                    test_labels: ArrayLike, n_per_class: int, n_draws: int = 10, C: float = 1.0,
                                    max_iter: int = 1000, random_state: int = 0) -> float:
    """``(1/R) sum_r acc(LogisticRegression fitted on draw r)``: the linear probe with few labels.

    Draw r takes ``n_per_class`` training points of every class (:func:`few_label_indices`, one
    ``numpy.random.default_rng(random_state)`` advanced draw after draw); the probe of
    :func:`linear_probe_accuracy` is fitted on them and scored on all test points.

    Args:
        train_features: (n, d) labelled pool to draw from.
        train_labels: (n,) its labels.
        test_features: (m, d) held-out data to score on.
        test_labels: (m,) their labels.
        n_per_class: labels per class in each draw (e.g. 1 or 10).
        n_draws: R, the draws averaged over.
        C: as in :func:`linear_probe_accuracy`.
        max_iter: as in :func:`linear_probe_accuracy`.
        random_state: seed of the draws.

    Returns:
        The mean test accuracy over the draws.
    """
    who = "few_label_linear_probe_accuracy"
    C = check_positive(who, "C", C)
    max_iter = check_int(who, "max_iter", max_iter, 1)
    return _few_label(who, lambda *a: _linear_score(*a, C, max_iter), train_features, train_labels, test_features,
                      test_labels, n_per_class, n_draws, random_state)


def few_label_knn_probe_accuracy(train_features: ArrayLike, train_labels: ArrayLike, test_features: ArrayLike,
                                 test_labels: ArrayLike, n_per_class: int, n_draws: int = 10, n_neighbors: int = 1,
                                 metric: str = "cosine", random_state: int = 0) -> float:
    """``(1/R) sum_r acc(kNN vote among draw r)``: the kNN probe with few labels (default 1-NN).

    The draws are those of :func:`few_label_linear_probe_accuracy` (same ``random_state``, same
    points); the vote is that of :func:`knn_probe_accuracy` with the drawn points as voters.

    Args:
        train_features: (n, d) labelled pool to draw from.
        train_labels: (n,) its labels.
        test_features: (m, d) held-out data to classify.
        test_labels: (m,) their labels.
        n_per_class: labels per class in each draw.
        n_draws: R, the draws averaged over.
        n_neighbors: voters per test point, in [1, n_classes * n_per_class].
        metric: ``"cosine"`` or ``"squared_euclidean"``.
        random_state: seed of the draws.

    Returns:
        The mean test accuracy over the draws.
    """
    who = "few_label_knn_probe_accuracy"
    check_choice(who, "metric", metric, tuple(_METRICS))
    n_neighbors = check_int(who, "n_neighbors", n_neighbors, 1)
    return _few_label(who, lambda *a: _knn_score(*a, n_neighbors, metric), train_features, train_labels,
                      test_features, test_labels, n_per_class, n_draws, random_state, n_neighbors)
