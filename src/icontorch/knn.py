"""Exact k-nearest neighbours over a whole data set, in chunks of anchors (memory O(chunk * m))."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from ._validation import check_choice, check_features, check_int, fail
from .distances import cosine_similarity, squared_euclidean

__all__ = ["exact_knn"]


def exact_knn(x: Tensor, k: int, y: Optional[Tensor] = None, metric: str = "cosine",
              chunk_size: int = 2048) -> Tuple[Tensor, Tensor]:
    """The k nearest candidates of every anchor, exactly, by brute force in chunks of anchors.

    With ``y=None`` the candidates are the anchors themselves and a point is never its own
    neighbour (duplicates of it still can be). Runs on the device of ``x`` (GPU-friendly).

    Args:
        x: (n, d) anchors.
        k: neighbours per anchor, at most the number of candidates (n - 1 when ``y`` is None).
        y: (m, d) candidates, or None for x itself.
        metric: ``"cosine"`` (distance ``1 - cos``) or ``"squared_euclidean"``.
        chunk_size: anchors per block; memory is O(chunk_size * m).

    Returns:
        ``(indices, distances)``: (n, k) candidate indices sorted nearest first, and their
        distances (``1 - cos`` or squared euclidean).
    """
    who = "exact_knn"
    check_features(who, "x", x)
    if y is not None:
        check_features(who, "y", y)
        if y.shape[1] != x.shape[1]:
            raise fail(who, "y", f"have the feature dimension of x ({x.shape[1]})", y)
    check_int(who, "k", k, 1)
    check_int(who, "chunk_size", chunk_size, 1)
    check_choice(who, "metric", metric, ("cosine", "squared_euclidean"))
    candidates = x if y is None else y
    m = candidates.shape[0] - (1 if y is None else 0)
    if k > m:
        raise fail(who, "k", f"be at most the number of candidates ({m})", k)
    indices, distances = [], []
    with torch.no_grad():
        for start in range(0, x.shape[0], chunk_size):
            block = x[start:start + chunk_size]
            if metric == "cosine":
                dist = 1.0 - cosine_similarity(block, candidates)
            else:
                dist = squared_euclidean(block, candidates)
            if y is None:
                rows = torch.arange(block.shape[0], device=x.device)
                dist[rows, rows + start] = float("inf")
            d, i = dist.topk(k, dim=1, largest=False)
            indices.append(i)
            distances.append(d)
    return torch.cat(indices), torch.cat(distances)
