"""Evaluation metrics on numpy arrays or tensors (scikit-learn underneath, imported lazily)."""

from __future__ import annotations

from typing import Union

import numpy as np
import torch

from ._validation import IConError, check_int

__all__ = ["knn_accuracy"]

ArrayLike = Union[np.ndarray, torch.Tensor]


def _to_numpy(a: ArrayLike) -> np.ndarray:
    return a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)


def knn_accuracy(embedding: ArrayLike, labels: ArrayLike, k: int = 10) -> float:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` in ``embedding``.

    Each point is classified by a majority vote of its k nearest *other* points (Euclidean;
    ties go to the smallest label), the usual score of a t-SNE map.

    Args:
        embedding: (n, d) coordinates.
        labels: (n,) integer class labels.
        k: neighbours per vote, 1 <= k < n.

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
    check_int("knn_accuracy", "k", k, 1)
    if k >= x.shape[0]:
        raise IConError(f"knn_accuracy: k must be smaller than the number of points "
                        f"({x.shape[0]}); got {k}.")
    _, classes = np.unique(y, return_inverse=True)
    neighbours = NearestNeighbors(n_neighbors=k).fit(x).kneighbors(return_distance=False)
    votes = np.zeros((x.shape[0], classes.max() + 1), dtype=np.int64)
    np.add.at(votes, (np.repeat(np.arange(x.shape[0]), k), classes[neighbours].ravel()), 1)
    return float((votes.argmax(1) == classes).mean())
