"""Per-pair link neighbourhoods: each ordered pair (i, j) is an anchor over {linked, not linked}.

Sigmoid losses (SigLIP, UMAP, LINE first order, word2vec negative sampling) are not softmax KLs:
their link probability ``sigma(l_ij)`` is not normalised across j. They are still I-Con losses
once each **pair** is an anchor whose neighbour space has two outcomes: the KL of row (i, j) is
the Bernoulli KL ``KL(Bern(p_ij) || Bern(q_ij))``, and the I-Con mean over the n m pair-anchors is
the original loss up to its constant normaliser.

Every class here returns an (n m, 2) matrix of log-probabilities ``[log P(link), log P(no link)]``
(rows log-sum-exp to 0, as the Neighborhood contract asks), with the pairs in row-major order
(i, then j). With ``y=None`` the self pairs (i, i) are left out, giving n (n - 1) rows.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import (
    check_candidates,
    check_choice,
    check_features,
    check_ids_below,
    check_index,
    check_positive,
    check_positive_parameter,
    check_real_parameter,
    fail,
    is_real,
)
from ..distances import SIMILARITIES, exponent_of, times_power_of_two
from .base import Neighborhood, Number, check_magnitude, show_number
from .kernels import number

__all__ = ["SigmoidLinks", "UMAPLinks", "SameIdLinks", "GraphLinks", "umap_ab"]


def _pairs(values: Tensor, y: Optional[Tensor]) -> Tensor:
    """Flatten an (n, m) matrix to its pair-anchors; drop (i, i) when the anchors are the candidates."""
    if y is None:
        n = values.shape[0]
        keep = ~torch.eye(n, dtype=torch.bool, device=values.device)
        return values[keep]
    return values.reshape(-1)


def _check_points(who: str, x: Tensor, y: Optional[Tensor], factor: Optional[float] = 1.0) -> None:
    """Finite 2-D points of one feature dimension, whose squared distances and dot products times
    ``factor`` are finite (None: no magnitude check, for the cosine)."""
    check_features(who, "x", x)
    if y is not None:
        check_features(who, "y", y)
    check_candidates(who, x, y)
    if factor is not None:
        for name, points in (("x", x), ("y", y)):
            if points is not None:
                check_magnitude(who, name, points, factor)


def _check_pair_anchors(who: str, x: Tensor, y: Optional[Tensor]) -> None:
    if y is None and x.shape[0] < 2:
        raise fail(who, "x", "hold at least 2 ids when the anchors are their own candidates (a pair i != j)", x)


def _from_logit(logit: Tensor) -> Tensor:
    """``[log sigma(l), log sigma(-l)]``: stable for any real l."""
    return torch.stack([F.logsigmoid(logit), F.logsigmoid(-logit)], dim=1)


def _from_probability(prob: Tensor) -> Tensor:
    prob = prob.to(torch.get_default_dtype())
    log_link = torch.where(prob > 0, prob.clamp_min(1e-300).log(), torch.full_like(prob, -math.inf))
    log_none = torch.where(prob < 1, torch.log1p(-prob.clamp_max(1.0)), torch.full_like(prob, -math.inf))
    return torch.stack([log_link, log_none], dim=1)


class SigmoidLinks(Neighborhood):
    """``q(link | i, j) = sigmoid(scale * s(x_i, y_j) + bias)``: SigLIP's pairwise link probability.

    ``scale`` and ``bias`` may be one-element tensors, e.g. ``nn.Parameter``: they are kept (as
    registered parameters of this module) and learned.

    Args:
        scale: the factor t on the similarity (SigLIP learns ``t = exp(t')``, initialised at 10).
        bias: the offset b (SigLIP initialises it at -10).
        metric: ``"dot"`` (SigLIP, on unit vectors), ``"cosine"`` or ``"squared_euclidean"``.
    """

    def __init__(self, scale: Number = 10.0, bias: Number = -10.0,
                 metric: str = "dot") -> None:
        super().__init__()
        self.scale = check_positive_parameter("SigmoidLinks", "scale", scale)
        self.bias = check_real_parameter("SigmoidLinks", "bias", bias)
        self.metric = check_choice("SigmoidLinks", "metric", metric, tuple(SIMILARITIES))

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_positive_parameter("SigmoidLinks", "scale", self.scale)  # learned ones, as they are now
        check_real_parameter("SigmoidLinks", "bias", self.bias)
        _check_points("SigmoidLinks", x, y, None if self.metric == "cosine" else max(1.0, number(self.scale)))
        s = SIMILARITIES[self.metric](x, x if y is None else y)
        return _from_logit(_pairs(self.scale * s + self.bias, y))

    def extra_repr(self) -> str:
        return f"scale={show_number(self.scale)}, bias={show_number(self.bias)}, metric={self.metric!r}"


def umap_ab(spread: float = 1.0, min_dist: float = 0.1) -> Tuple[float, float]:
    """UMAP's curve constants: the least-squares fit of ``1 / (1 + a x^(2b))`` to the target curve.

    The target is 1 below ``min_dist`` and ``exp(-(x - min_dist) / spread)`` above, sampled at 300
    points on ``[0, 3 spread]`` (McInnes et al. 2018), fitted with scipy's ``curve_fit``.
    """
    import numpy as np
    from scipy.optimize import curve_fit

    spread = check_positive("umap_ab", "spread", spread)
    if not is_real(min_dist) or not 0 <= min_dist < spread:
        raise fail("umap_ab", "min_dist", f"lie in [0, spread={spread})", min_dist)
    xv = np.linspace(0, spread * 3, 300)
    yv = np.where(xv < min_dist, 1.0, np.exp(-(xv - min_dist) / spread))
    (a, b), _ = curve_fit(lambda x, a, b: 1.0 / (1.0 + a * x ** (2 * b)), xv, yv)
    return float(a), float(b)


class UMAPLinks(Neighborhood):
    """``q(link | i, j) = 1 / (1 + a ||x_i - y_j||^(2b))``: UMAP's low-dimensional membership.

    Written as ``sigmoid(-(log a + b log d^2))`` so that it is stable at every distance.
    :func:`umap_ab` gives ``(a, b)`` from UMAP's ``spread`` and ``min_dist``.

    Args:
        a: curve scale (UMAP's default fit, min_dist 0.1: about 1.577).
        b: curve power (about 0.895).
    """

    def __init__(self, a: float = 1.577, b: float = 0.8951) -> None:
        super().__init__()
        self.a = check_positive("UMAPLinks", "a", a)
        self.b = check_positive("UMAPLinks", "b", b)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        _check_points("UMAPLinks", x, y, factor=None)
        dtype = x.dtype
        if dtype in (torch.float16, torch.bfloat16):  # cdist has no half-precision kernel
            x, y = x.float(), None if y is None else y.float()
        # On points scaled by 2^-e (exact), log d^2 = log d_scaled^2 + 2 e log 2 at any magnitude.
        e = exponent_of(x, x if y is None else y)
        d = torch.cdist(times_power_of_two(x, -e), times_power_of_two(x if y is None else y, -e)).pow(2)
        # d = 0 only on the excluded diagonal (or for duplicates); keep its log finite.
        log_d = d.clamp_min(torch.finfo(d.dtype).tiny).log() + 2.0 * e * math.log(2.0)
        return _from_logit(_pairs(-(math.log(self.a) + self.b * log_d), y)).to(dtype)

    def extra_repr(self) -> str:
        return f"a={self.a}, b={self.b}"


class SameIdLinks(Neighborhood):
    """``p(link | i, j) = 1[x_i = y_j]``: hard links between items with the same id (SigLIP's targets)."""

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_index("SameIdLinks", "x", x)
        if y is not None:
            check_index("SameIdLinks", "y", y)
        _check_pair_anchors("SameIdLinks", x, y)
        match = x[:, None] == (x if y is None else y)[None, :]
        return _from_probability(_pairs(match, y).to(torch.float64))


class GraphLinks(Neighborhood):
    """``p(link | i, j) = v_ij``: membership strengths of a fixed graph (UMAP's fuzzy simplicial set).

    Anchors and candidates are node ids. ``v`` is an (N, N) tensor with entries in [0, 1], e.g.
    umap-learn's ``fuzzy_simplicial_set`` output made dense.

    Args:
        memberships: (N, N) link probabilities in [0, 1].
    """

    def __init__(self, memberships: Tensor) -> None:
        super().__init__()
        v = memberships
        if not isinstance(v, Tensor) or v.dim() != 2 or v.shape[0] != v.shape[1]:
            raise fail("GraphLinks", "memberships", "be a square (N, N) tensor", v)
        v = v.to_dense() if v.layout != torch.strided else v
        if not v.is_floating_point() or bool(torch.isnan(v).any()) or bool((v < 0).any()) \
                or bool((v > 1).any()):
            raise fail("GraphLinks", "memberships", "hold probabilities in [0, 1]", v)
        self.register_buffer("memberships", v)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        n_nodes = self.memberships.shape[0]
        check_ids_below("GraphLinks", "x", x, n_nodes)
        if y is not None:
            check_ids_below("GraphLinks", "y", y, n_nodes)
        _check_pair_anchors("GraphLinks", x, y)
        v = self.memberships[x][:, x if y is None else y]
        return _from_probability(_pairs(v, y))

    def extra_repr(self) -> str:
        return f"memberships=<{tuple(self.memberships.shape)}>"
