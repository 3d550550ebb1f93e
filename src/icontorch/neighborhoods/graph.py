"""Graph neighbourhoods: neighbours are defined by edges of a weighted graph (section 3.1)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validation import check_index, fail
from .base import Neighborhood, log_normalize, mask_diagonal

__all__ = ["Adjacency"]


class Adjacency(Neighborhood):
    """``p(j|i) = w_ij / sum_k w_ik``: the random-walk transition of a weighted graph.

    The "graph kernel weights" column of the periodic table (t-SNE graph embedding, Normalized
    Cuts). The graph is fixed: ``weights`` is an (N, N) dense or sparse (COO/CSR) tensor of
    non-negative edge weights. Anchors and candidates are node ids; the sums run over the
    candidates given, so a batch of nodes sees the induced sub-graph. An anchor with no edge to
    any candidate has an empty row.

    Args:
        weights: (N, N) non-negative edge weights, dense or sparse.
        include_self: keep ``j = i`` (self-loops) when ``y`` is None.
    """

    def __init__(self, weights: Tensor, include_self: bool = False) -> None:
        super().__init__()
        who = "Adjacency"
        if not isinstance(weights, Tensor) or weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
            raise fail(who, "weights", "be a square (N, N) tensor", weights)
        if not weights.is_floating_point():
            raise fail(who, "weights", "be a floating-point tensor", weights)
        if weights.layout != torch.strided:
            weights = weights.to_sparse_coo().coalesce()
            values = weights.values()
        else:
            values = weights
        if not bool(values.isfinite().all()) or bool((values < 0).any()):
            raise fail(who, "weights", "be finite and non-negative", weights)
        self.register_buffer("weights", weights)
        self.include_self = bool(include_self)

    def _block(self, rows: Tensor, cols: Tensor) -> Tensor:
        w = self.weights.index_select(0, rows).index_select(1, cols)
        return w.to_dense() if w.layout != torch.strided else w

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        who = "Adjacency"
        n_nodes = self.weights.shape[0]
        for name, ids in (("x", x), ("y", y)):
            if ids is None:
                continue
            check_index(who, name, ids)
            if bool((ids < 0).any()) or bool((ids >= n_nodes).any()):
                raise fail(who, name, f"hold node ids in [0, {n_nodes})", ids)
        if y is None and x.shape[0] < 2:
            raise fail(who, "x", "hold at least 2 nodes when the anchors are their own candidates", x)
        log_w = self._block(x, x if y is None else y).log()
        if y is None and not self.include_self:
            log_w = mask_diagonal(log_w)
        return log_normalize(log_w)

    def extra_repr(self) -> str:
        kind = "dense" if self.weights.layout == torch.strided else "sparse"
        return f"weights=<{kind} {tuple(self.weights.shape)}>, include_self={self.include_self}"
