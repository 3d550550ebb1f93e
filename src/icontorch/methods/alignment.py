"""Wang and Isola's alignment and uniformity (ICML 2020), as differentiable losses.

``icontorch.metrics.alignment`` / ``uniformity`` report the same quantities as numbers. Their
relation to I-Con: on unit vectors SimCLR's loss at temperature t is exactly
``alignment_loss(exponent=2) / (2 t)`` plus a per-anchor log-sum-exp uniformity at ``1 / (2 t)``,
and by Jensen that term is at most ``uniformity_loss(t=1/(2t))`` of the 2B stacked views plus
``log(2B - 1)`` (both tested).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .._validation import check_features, check_positive, fail
from ..distances import squared_euclidean

__all__ = ["alignment_loss", "uniformity_loss", "AlignmentUniformityLoss"]

_CHUNK = 1024   # rows of the pairwise distances held at once by uniformity_loss


def _check_pair(who: str, x: Tensor, y: Tensor) -> None:
    check_features(who, "x", x)
    check_features(who, "y", y)
    if y.shape != x.shape:
        raise fail(who, "y", f"have the shape of x {tuple(x.shape)} (row i of y is the positive of row i of x)", y)


def alignment_loss(x: Tensor, y: Tensor, exponent: float = 2.0) -> Tensor:
    """``L_align = (1/n) sum_i ||x_i - y_i||^exponent``: the mean distance of positive pairs to the power exponent.

    Wang and Isola, "Understanding Contrastive Representation Learning through Alignment and
    Uniformity on the Hypersphere", ICML 2020 (their ``align_loss``; exponent = 2 by default). The
    features are used as given: pass unit vectors (their encoders normalise).

    Args:
        x: (n, d) features of the first view.
        y: (n, d) features of the second view; row i of y is the positive of row i of x.
        exponent: the power, > 0.

    Returns:
        A 0-d tensor with gradients.
    """
    who = "alignment_loss"
    exponent = check_positive(who, "exponent", exponent)
    _check_pair(who, x, y)
    d2 = (x - y).pow(2).sum(-1)
    if exponent != 2.0:   # a power below 1 of d^2 has an infinite slope at 0: keep a duplicate pair finite
        d2 = d2.clamp_min(torch.finfo(d2.dtype).tiny).pow(exponent / 2.0)
    return d2.mean()


def uniformity_loss(x: Tensor, t: float = 2.0) -> Tensor:
    """``L_unif = log (2 / (n (n - 1))) sum_{i<j} exp(-t ||x_i - x_j||^2)``: the log mean Gaussian potential.

    Wang and Isola 2020 (their ``uniform_loss``, ``torch.pdist(x).pow(2).mul(-t).exp().mean().log()``;
    t = 2 by default), computed as a log-sum-exp over blocks of rows (no ``exp`` underflows, memory
    O(1024 n)). Lower is more uniform; on the unit circle its minimum over large n approaches
    ``-2t + log I_0(2t)``. The features are used as given: pass unit vectors.

    Args:
        x: (n, d) features, n >= 2.
        t: the scale of the Gaussian potential, > 0.

    Returns:
        A 0-d tensor with gradients.
    """
    who = "uniformity_loss"
    t = check_positive(who, "t", t)
    check_features(who, "x", x)
    n = x.shape[0]
    if n < 2:
        raise fail(who, "x", "hold at least 2 rows (the loss averages over pairs)", x)
    blocks = []
    for start in range(0, n - 1, _CHUNK):
        rows = x[start:start + _CHUNK]
        log_k = -t * squared_euclidean(rows, x)
        later = torch.arange(n, device=x.device)[None, :] > torch.arange(start, start + rows.shape[0],
                                                                           device=x.device)[:, None]
        blocks.append(torch.logsumexp(log_k.masked_fill(~later, float("-inf")).flatten(), 0))
    return torch.logsumexp(torch.stack(blocks), 0) - math.log(n * (n - 1) / 2.0)


class AlignmentUniformityLoss(nn.Module):
    """``L = L_align(x, y; exponent) + weight * (L_unif(x; t) + L_unif(y; t)) / 2`` (Wang and Isola 2020).

    Their training objective (``align_w = 1``, ``unif_w = weight``; uniformity of each view, averaged).
    The features are used as given: pass unit vectors.

    Args:
        exponent: the power of :func:`alignment_loss`.
        t: the scale of :func:`uniformity_loss`.
        weight: the weight of the uniformity term, >= 0.
    """

    def __init__(self, exponent: float = 2.0, t: float = 2.0, weight: float = 1.0) -> None:
        super().__init__()
        who = "AlignmentUniformityLoss"
        self.exponent = check_positive(who, "exponent", exponent)
        self.t = check_positive(who, "t", t)
        self.weight = check_positive(who, "weight", weight)

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        _check_pair("AlignmentUniformityLoss", x, y)
        uniform = (uniformity_loss(x, self.t) + uniformity_loss(y, self.t)) / 2.0
        return alignment_loss(x, y, self.exponent) + self.weight * uniform

    def extra_repr(self) -> str:
        return f"exponent={self.exponent}, t={self.t}, weight={self.weight}"
