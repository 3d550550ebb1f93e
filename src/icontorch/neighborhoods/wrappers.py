"""Wrappers that build a neighbourhood from others.

* :class:`StopGradient` -- any neighbourhood, detached (teacher targets).
* :class:`DisjointUnion` -- several neighbourhoods side by side with weights: one I-Con loss that
  equals a weighted sum of I-Con losses (Kernel-InfoNCE's "sum" and "concatenation").
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._validation import IConError, fail, is_integer, is_real
from .base import Neighborhood, NeighborhoodLike, as_neighborhood

__all__ = ["StopGradient", "DisjointUnion"]


class StopGradient(Neighborhood):
    """``sg[p(j|i)]``: the base neighbourhood, detached (targets from a teacher or from the model).

    Args:
        base: the neighbourhood whose output carries no gradient.
    """

    def __init__(self, base: NeighborhoodLike) -> None:
        super().__init__()
        self.base = as_neighborhood(base, "StopGradient", "base")
        self.include_self, self.y_defaults_to_x = self.base.include_self, self.base.y_defaults_to_x

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        return self.base(x, y).detach()


Block = Tuple[int, Optional[int]]


class DisjointUnion(Neighborhood):
    """``p((k, j)|i) = w_k p_k(j|i)``: the neighbour spaces of several neighbourhoods side by side.

    With the same weights on both sides, ``KL(p~_i || q~_i) = sum_k w_k KL(p_k(.|i) || q_k(.|i))``
    exactly, so a weighted sum of I-Con losses is itself one I-Con loss (Kernel-InfoNCE's "sum":
    one p, two kernels; its "concatenation": each kernel on its own block of coordinates). The
    output is (n, K m): block k holds ``log w_k + log p_k``.

    Args:
        parts: the K neighbourhoods.
        weights: K positive weights summing to 1.
        blocks: optional K ``(start, stop)`` ranges of the last (feature) dimension given to each
            part; ``stop=None`` runs to the end.
    """

    def __init__(self, parts: Sequence[NeighborhoodLike], weights: Sequence[float],
                 blocks: Optional[Sequence[Block]] = None) -> None:
        super().__init__()
        who = "DisjointUnion"
        if len(parts) < 1:
            raise fail(who, "parts", "hold at least one neighbourhood", parts)
        self.parts = torch.nn.ModuleList([as_neighborhood(p, who, "parts") for p in parts])
        rule = f"be {len(parts)} positive numbers summing to 1"
        if not all(is_real(w) for w in weights):
            raise fail(who, "weights", rule, weights)
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(parts) or any(not (w > 0) for w in weights) \
                or abs(sum(weights) - 1.0) > 1e-9:
            raise fail(who, "weights", rule, weights)
        self.weights = weights
        if blocks is not None:
            rule = f"be {len(parts)} ranges (start, stop) with 0 <= start < stop"
            if not all(is_integer(a) and (b is None or is_integer(b)) for a, b in blocks):
                raise fail(who, "blocks", rule, blocks)
            blocks = tuple((int(a), None if b is None else int(b)) for a, b in blocks)
            if len(blocks) != len(parts) or any(not (0 <= a and (b is None or a < b)) for a, b in blocks):
                raise fail(who, "blocks", rule, blocks)
        self.blocks = blocks
        self.include_self, self.y_defaults_to_x = self.parts[0].include_self, self.parts[0].y_defaults_to_x

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        out = []
        for k, (part, weight) in enumerate(zip(self.parts, self.weights)):
            xk, yk = x, y
            if self.blocks is not None:
                start, stop = self.blocks[k]
                end = start + 1 if stop is None else stop
                if x is None or end > x.shape[-1]:
                    raise IConError(f"DisjointUnion: x must have at least {end} features for block "
                                    f"{k}; got {None if x is None else tuple(x.shape)}.")
                xk = x[..., start:stop]
                yk = None if y is None else y[..., start:stop]
            out.append(part(xk, yk) + math.log(weight))
        return torch.cat(out, dim=1)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, blocks={self.blocks}"
