"""Pairwise geometry, named exactly: squared distances are called squared.

Each function takes anchors ``x`` of shape (n, d) and candidates ``y`` of shape (m, d), giving
(n, m), or per-anchor candidates of shape (n, m, d), giving (n, m) as well.

:data:`SIMILARITIES` names the similarities ``s(x_i, y_j)`` that a ``metric`` argument selects
everywhere in the package (larger is closer):

* ``"squared_euclidean"``: ``s = -||x_i - y_j||^2``
* ``"cosine"``: ``s = x_i . y_j / (||x_i|| ||y_j||)``
* ``"dot"``: ``s = x_i . y_j``
"""

from __future__ import annotations

from typing import Callable, Dict

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["squared_euclidean", "cosine_similarity", "dot_product", "SIMILARITIES"]


def squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``d_ij = ||x_i - y_j||^2`` (squared, never square-rooted), clamped at 0."""
    if y.dim() == 3:
        return (x.unsqueeze(1) - y).pow(2).sum(-1)
    # The expansion |x|^2 + |y|^2 - 2 x.y is one matrix product; clamp the rounding below zero.
    d = x.pow(2).sum(-1, keepdim=True) + y.pow(2).sum(-1).unsqueeze(0) - 2.0 * (x @ y.T)
    return d.clamp_min(0.0)


def dot_product(x: Tensor, y: Tensor) -> Tensor:
    """``s_ij = x_i . y_j``."""
    if y.dim() == 3:
        return torch.einsum("nd,nmd->nm", x, y)
    return x @ y.T


def cosine_similarity(x: Tensor, y: Tensor) -> Tensor:
    """``s_ij = x_i . y_j / (||x_i|| ||y_j||)``."""
    return dot_product(F.normalize(x, dim=-1), F.normalize(y, dim=-1))


def negative_squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``s_ij = -||x_i - y_j||^2``: the squared-euclidean similarity."""
    return -squared_euclidean(x, y)


SIMILARITIES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "squared_euclidean": negative_squared_euclidean,
    "cosine": cosine_similarity,
    "dot": dot_product,
}
"""The similarity of each metric name (module docstring)."""
