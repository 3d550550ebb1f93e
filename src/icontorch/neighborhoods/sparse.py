"""``SparseNeighbors``: p uniform over listed neighbour sets (read by the tiled loss without an (n, m) matrix)."""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_index, fail
from .base import FusedTargets, Neighborhood, Support

__all__ = ["SparseNeighbors"]


class SparseNeighbors(Neighborhood):
    """``p(j|i) = 1[j in S_i] / |S_i|``: uniform over a listed set of neighbours of each anchor.

    The "uniform over k-neighbours" column of the periodic table (Table 1) for neighbour sets
    computed elsewhere: a data-set kNN graph (:func:`icontorch.knn.exact_knn`), or neighbours
    reached by propagation (paper section 3.3.3) listed per anchor. ``x`` is an (n, k) integer tensor of
    candidate positions (row i lists ``S_i``; ``-1`` pads shorter rows). With ``y=None`` the
    candidates are the anchors themselves; otherwise ``y`` is any tensor whose first dimension is
    the number m of candidates (its values are not read). The tiled loss never forms the (n, m)
    matrix for it.

    Args:
        include_self: allow a row to list the anchor itself when ``y`` is None.
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """

    def __init__(self, include_self: bool = False, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.include_self = bool(include_self)
        self.dtype = dtype

    def lists(self, x: Tensor, y: Optional[Tensor] = None,
              self_offset: Optional[int] = None) -> Tuple[Tensor, int]:
        """The validated (n, k) positions and the number m of candidates.

        ``self_offset``: candidate ``self_offset + i`` is anchor i (None: no candidate is).
        """
        who = "SparseNeighbors"
        check_index(who, "x", x, ndim=(2,))
        if y is not None and (not isinstance(y, Tensor) or y.dim() == 0):
            raise fail(who, "y", "be None or a tensor with one row per candidate", y)
        m = x.shape[0] if y is None else y.shape[0]
        if bool((x < -1).any()) or bool((x >= m).any()):
            raise fail(who, "x", f"hold candidate positions in [0, {m}) or -1 for padding",
                       f"values from {int(x.min())} to {int(x.max())}")
        ordered = x.sort(dim=1).values
        if bool(((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any()):
            raise fail(who, "x", "list each neighbour at most once per row", x)
        if self_offset is not None:
            own = torch.arange(x.shape[0], device=x.device)[:, None] + self_offset
            if bool((x == own).any()):
                raise fail(who, "x", "not list the anchor itself (include_self=False)", x)
        return x.long(), m

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        lists, m = self.lists(x, y, 0 if y is None and not self.include_self else None)
        dtype = self.dtype or torch.get_default_dtype()
        count = (lists >= 0).sum(1, keepdim=True)
        dense = torch.zeros(lists.shape[0], m + 1, dtype=dtype, device=lists.device)
        dense.scatter_(1, torch.where(lists >= 0, lists, m), 1.0)
        log_p = dense[:, :m].log() - torch.log(count.to(torch.float64).clamp_min(1.0)).to(dtype)
        return log_p

    def _support(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int) -> Support:
        lists, m = self.lists(x, y, self_offset)
        return Support(m, lists=lists)

    def fused_form(self) -> Optional[FusedTargets]:
        if not self._keeps(SparseNeighbors, "lists", "forward"):
            return None
        return FusedTargets(self._support, include_self=self.include_self)

    def extra_repr(self) -> str:
        return f"include_self={self.include_self}, dtype={self.dtype}"
