"""Evaluation metrics on numpy arrays or tensors (scikit-learn underneath, imported lazily).

* :func:`knn_accuracy`, :func:`clustering_scores`: how well an embedding or a clustering recovers labels.
* :func:`alignment`, :func:`uniformity`: Wang and Isola's two properties of contrastive features
  (their differentiable losses are :func:`icontorch.methods.alignment_loss` and
  :func:`~icontorch.methods.uniformity_loss`).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Tuple, Union

import numpy as np
import torch

from ._validation import IConError, check_features, check_int, fail

__all__ = ["knn_accuracy", "clustering_scores", "alignment", "uniformity"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def _features(who: str, name: str, a: ArrayLike) -> np.ndarray:
    """``a`` as a non-empty, finite, real (n, d) array, multiplied by a power of two (exact) when its
    magnitude is so large or small that squared distances would overflow or vanish."""
    x = _to_numpy(a)
    if x.ndim != 2 or x.shape[0] == 0 or x.shape[1] == 0:
        raise fail(who, name, "be a non-empty 2-D array (n, d)", f"shape {x.shape}")
    if x.dtype.kind not in "biuf":
        raise fail(who, name, "hold real numbers", f"dtype {x.dtype}")
    if not np.isfinite(x).all():
        raise fail(who, name, "be finite (no NaN or Inf)", f"{int((~np.isfinite(x)).sum())} such values")
    factor = _magnitude_factor(x)
    return x if factor == 1.0 else x * factor          # kNN ranks and z-scores do not change


def _magnitude_factor(*arrays: np.ndarray) -> float:
    """``2^-e`` with ``2^(e-1) <= max |a| < 2^e`` over the arrays when that maximum lies outside
    ``[2^-30, 2^30]``, else 1 (numpy's twin of :func:`icontorch.clustering.graph.power_of_two_scale`)."""
    peak = max(float(np.abs(a).max()) for a in arrays)
    if peak == 0.0 or 2.0 ** -30 <= peak <= 2.0 ** 30:
        return 1.0
    return 2.0 ** -math.frexp(peak)[1]


def _label_ids(who: str, name: str, a: ArrayLike) -> Tuple[np.ndarray, np.ndarray]:
    """The sorted distinct labels of a non-empty 1-D array and the (n,) index of each into them."""
    values = _to_numpy(a)
    if values.ndim != 1 or values.shape[0] == 0:
        raise IConError(f"{who}: {name} must be a non-empty 1-D array of labels; got shape {values.shape}.")
    if values.dtype.kind == "c":
        raise fail(who, name, "hold real or string labels", f"dtype {values.dtype}")
    if values.dtype.kind == "f" and not np.isfinite(values).all():
        raise IConError(f"{who}: {name} must not contain NaN or Inf; got {int((~np.isfinite(values)).sum())} "
                        f"such values.")
    try:
        labels, ids = np.unique(values, return_inverse=True)
    except TypeError:                         # None, or numbers mixed with strings: no order
        raise fail(who, name, "hold labels that can be sorted (all numbers or all strings)",
                   sorted({type(v).__name__ for v in values.tolist()})) from None
    return labels, ids.ravel()


def knn_accuracy(embedding: ArrayLike, labels: ArrayLike, n_neighbors: int = 10) -> float:
    """``(1/n) sum_i 1[vote_i = y_i]``: leave-one-out k-nearest-neighbour accuracy of ``labels``.

    Each point is classified by a majority vote of its ``n_neighbors`` nearest *other* points
    (Euclidean; ties go to the smallest label), the usual score of a t-SNE map.

    Args:
        embedding: (n, d) coordinates.
        labels: (n,) class labels (any values numpy can sort).
        n_neighbors: neighbours per vote, 1 <= n_neighbors < n.

    Returns:
        The fraction of points whose vote equals their label.
    """
    from sklearn.neighbors import NearestNeighbors

    who = "knn_accuracy"
    x = _features(who, "embedding", embedding)
    _, classes = _label_ids(who, "labels", labels)
    if x.shape[0] != classes.shape[0]:
        raise IConError(f"knn_accuracy: embedding must be (n, d) and labels (n,); got "
                        f"{x.shape} and {classes.shape}.")
    k = int(check_int(who, "n_neighbors", n_neighbors, 1))
    if k >= x.shape[0]:
        raise IConError(f"knn_accuracy: n_neighbors must be smaller than the number of points "
                        f"({x.shape[0]}); got {k}.")
    neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    votes = np.zeros((x.shape[0], classes.max() + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(x.shape[0]), k), classes[neighbours].ravel()), 1)
    return float((votes.argmax(1) == classes).mean())


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

    classes, truth_ids = _label_ids("clustering_scores", "y_true", y_true)
    clusters, pred_ids = _label_ids("clustering_scores", "y_pred", y_pred)
    if truth_ids.shape[0] != pred_ids.shape[0]:
        raise IConError(f"clustering_scores: y_true and y_pred must have the same length; got "
                        f"{truth_ids.shape[0]} and {pred_ids.shape[0]}.")
    contingency = np.zeros((clusters.shape[0], classes.shape[0]), dtype=np.int64)
    np.add.at(contingency, (pred_ids, truth_ids), 1)
    rows, cols = linear_sum_assignment(contingency, maximize=True)
    n = truth_ids.shape[0]
    majority = contingency.argmax(1)
    return {
        "accuracy": float(contingency[rows, cols].sum() / n),
        "many_to_one_accuracy": float(contingency.max(1).sum() / n),
        # the scores depend on the partitions only: label ids avoid scikit-learn's guesses about float labels
        "nmi": float(normalized_mutual_info_score(truth_ids, pred_ids)),
        "ami": float(adjusted_mutual_info_score(truth_ids, pred_ids)),
        "ari": float(adjusted_rand_score(truth_ids, pred_ids)),
        "mapping": {_python(clusters[r]): _python(classes[c]) for r, c in zip(rows, cols)},
        "many_to_one_mapping": {_python(k): _python(classes[c]) for k, c in zip(clusters, majority)},
        "contingency": contingency,
        "clusters": clusters,
        "classes": classes,
    }


def _float64(who: str, name: str, a: ArrayLike) -> torch.Tensor:
    """``a`` as a float64 tensor (values as given: these metrics are not scale-free), checked real."""
    x = _to_numpy(a) if not isinstance(a, torch.Tensor) else a.detach()
    if isinstance(x, np.ndarray) and x.dtype.kind not in "biuf":
        raise fail(who, name, "hold real numbers", f"dtype {x.dtype}")
    if isinstance(x, torch.Tensor) and (x.is_complex() or x.dtype == torch.bool):
        raise fail(who, name, "hold real numbers", f"dtype {x.dtype}")
    return check_features(who, name, torch.as_tensor(x).to(torch.float64))


def alignment(x: ArrayLike, y: ArrayLike, exponent: float = 2.0) -> float:
    """``(1/n) sum_i ||x_i - y_i||^exponent``: Wang and Isola's alignment of positive pairs (ICML 2020).

    Lower is better aligned. Computed in float64 by :func:`icontorch.methods.alignment_loss`; the
    features are used as given (pass unit vectors, as Wang and Isola's encoders output).

    Args:
        x: (n, d) features of the first view.
        y: (n, d) features of the second view; row i of y is the positive of row i of x.
        exponent: the power, > 0 (2 by default).
    """
    from .methods.alignment import alignment_loss

    with torch.no_grad():
        return float(alignment_loss(_float64("alignment", "x", x), _float64("alignment", "y", y), exponent))


def uniformity(x: ArrayLike, t: float = 2.0) -> float:
    """``log (2 / (n (n - 1))) sum_{i<j} exp(-t ||x_i - x_j||^2)``: Wang and Isola's uniformity (ICML 2020).

    Lower is more uniform. Computed in float64 by :func:`icontorch.methods.uniformity_loss` (a
    log-sum-exp, memory O(n) per block of rows); the features are used as given (pass unit vectors).

    Args:
        x: (n, d) features, n >= 2.
        t: the scale of the Gaussian potential, > 0 (2 by default).
    """
    from .methods.alignment import uniformity_loss

    with torch.no_grad():
        return float(uniformity_loss(_float64("uniformity", "x", x), t))
