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

import math
from typing import Callable, Dict, Union

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["squared_euclidean", "cosine_similarity", "dot_product", "unit", "SIMILARITIES",
           "exponent_of", "times_power_of_two"]


def exponent_of(*tensors: Tensor) -> int:
    """The e with the largest ``|entry|`` of ``tensors`` in ``[2^(e-1), 2^e)``; 0 when all are zero."""
    tops = [float(t.detach().abs().max()) for t in tensors if t.numel()]
    top = max(tops, default=0.0)
    return math.frexp(top)[1] if 0.0 < top < math.inf else 0


def times_power_of_two(x: Tensor, e: Union[int, Tensor]) -> Tensor:
    """``x 2^e``, exact, in two factors ``2^(e // 2)`` and ``2^(e - e // 2)`` that stay normal
    numbers of x's dtype where ``x 2^e`` is (a single ``2^-128`` is not a normal float32)."""
    if isinstance(e, Tensor):
        half = torch.div(e, 2, rounding_mode="floor")
        return x * torch.exp2(half.to(x.dtype)) * torch.exp2((e - half).to(x.dtype))
    return x * 2.0 ** (e // 2) * 2.0 ** (e - e // 2)


def unit(x: Tensor) -> Tensor:
    """``x_i / ||x_i||`` along the last dimension, at any magnitude; a zero row stays zero.

    Each row is first multiplied by the power of two ``2^-e`` that brings its largest entry into
    [0.5, 1) (exact, and without gradient: the result does not depend on it), so that its norm
    neither overflows (``|x| ~ 1e20`` in float32) nor falls below ``F.normalize``'s ``eps`` (``|x| <
    1e-12``). In between, the result is ``F.normalize(x)`` bit for bit.
    """
    exponent = torch.frexp(x.detach().abs().amax(-1, keepdim=True))[1]
    return F.normalize(times_power_of_two(x, -exponent), dim=-1)


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
    return dot_product(unit(x), unit(y))


def negative_squared_euclidean(x: Tensor, y: Tensor) -> Tensor:
    """``s_ij = -||x_i - y_j||^2``: the squared-euclidean similarity."""
    return -squared_euclidean(x, y)


SIMILARITIES: Dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "squared_euclidean": negative_squared_euclidean,
    "cosine": cosine_similarity,
    "dot": dot_product,
}
"""The similarity of each metric name (module docstring)."""
