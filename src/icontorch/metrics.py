"""Evaluation metrics on numpy arrays or tensors (scikit-learn underneath, imported lazily)."""

from __future__ import annotations

from typing import Any, Dict, Union

import numpy as np
import torch

from ._validation import IConError, check_int

__all__ = ["knn_accuracy", "clustering_scores"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def knn_accuracy(embedding: ArrayLike, labels: ArrayLike, n_neighbors: int = 10) -> float:
    """``(1/n) sum_i 1[vote_i = y_i]``: leave-one-out k-nearest-neighbour accuracy of ``labels``.

    Each point is classified by a majority vote of its ``n_neighbors`` nearest *other* points
    (Euclidean; ties go to the smallest label), the usual score of a t-SNE map.

    Args:
        embedding: (n, d) coordinates.
        labels: (n,) integer class labels.
        n_neighbors: neighbours per vote, 1 <= n_neighbors < n.

    Returns:
        The fraction of points whose vote equals their label.
    """
    from sklearn.neighbors import NearestNeighbors

    x = _to_numpy(embedding)
    y = _to_numpy(labels)
    if x.ndim != 2 or y.ndim != 1 or x.shape[0] != y.shape[0]:
        raise IConError(f"knn_accuracy: embedding must be (n, d) and labels (n,); got "
                        f"{x.shape} and {y.shape}.")
    if not np.isfinite(x).all():
        raise IConError("knn_accuracy: embedding must be finite; got NaN or Inf.")
    k = int(check_int("knn_accuracy", "n_neighbors", n_neighbors, 1))
    if k >= x.shape[0]:
        raise IConError(f"knn_accuracy: n_neighbors must be smaller than the number of points "
                        f"({x.shape[0]}); got {k}.")
    _, classes = np.unique(y, return_inverse=True)
    neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    votes = np.zeros((x.shape[0], classes.max() + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(x.shape[0]), k), classes[neighbours].ravel()), 1)
    return float((votes.argmax(1) == classes).mean())


def _labels(name: str, a: ArrayLike) -> np.ndarray:
    values = _to_numpy(a)
    if values.ndim != 1 or values.shape[0] == 0:
        raise IConError(f"clustering_scores: {name} must be a non-empty 1-D array of labels; got "
                        f"shape {values.shape}.")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise IConError(f"clustering_scores: {name} must not contain NaN or Inf; got "
                        f"{int((~np.isfinite(values)).sum())} such values.")
    return values


def _python(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def clustering_scores(y_true: ArrayLike, y_pred: ArrayLike) -> Dict[str, Any]:
    """Hungarian (one-to-one) and many-to-one accuracy, NMI, AMI and ARI of a clustering.

    ``accuracy = max_m (1/n) sum_i 1[m(pred_i) = true_i]`` over one-to-one maps m from clusters to
    classes (the Hungarian algorithm on the K x C contingency table, scipy's
    ``linear_sum_assignment``; K != C is allowed: min(K, C) pairs are matched and points of an
    unmatched cluster count as errors). ``many_to_one_accuracy`` maps every cluster to its
    majority class (so it can only be higher, and reaches 1 when every cluster is pure). NMI
    (arithmetic normalisation), AMI and ARI are scikit-learn's.

    Args:
        y_true: (n,) class labels (any hashable values numpy can sort).
        y_pred: (n,) cluster labels.

    Returns:
        ``{"accuracy", "many_to_one_accuracy", "nmi", "ami", "ari"}`` floats,
        ``"mapping"`` (cluster -> class of the Hungarian match, matched clusters only),
        ``"many_to_one_mapping"`` (cluster -> majority class) and ``"contingency"`` (K, C)
        counts with rows in the order of ``"clusters"`` and columns of ``"classes"``.
    """
    from scipy.optimize import linear_sum_assignment
    from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

    truth, pred = _labels("y_true", y_true), _labels("y_pred", y_pred)
    if truth.shape[0] != pred.shape[0]:
        raise IConError(f"clustering_scores: y_true and y_pred must have the same length; got "
                        f"{truth.shape[0]} and {pred.shape[0]}.")
    classes, truth_ids = np.unique(truth, return_inverse=True)
    clusters, pred_ids = np.unique(pred, return_inverse=True)
    contingency = np.zeros((clusters.shape[0], classes.shape[0]), dtype=np.int64)
    np.add.at(contingency, (pred_ids, truth_ids), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    n = truth.shape[0]
    majority = contingency.argmax(1)
    return {
        "accuracy": float(contingency[rows, cols].sum() / n),
        "many_to_one_accuracy": float(contingency.max(1).sum() / n),
        "nmi": float(normalized_mutual_info_score(truth, pred)),
        "ami": float(adjusted_mutual_info_score(truth, pred)),
        "ari": float(adjusted_rand_score(truth, pred)),
        "mapping": {_python(clusters[r]): _python(classes[c]) for r, c in zip(rows, cols)},
        "many_to_one_mapping": {_python(k): _python(classes[c]) for k, c in zip(clusters, majority)},
        "contingency": contingency,
        "clusters": clusters,
        "classes": classes,
    }
