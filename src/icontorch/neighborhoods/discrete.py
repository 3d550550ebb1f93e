"""Discrete neighbourhoods: neighbours are given by ids (paper section 3.1, Fig. 2b).

They take integer tensors (item indices, labels, class ids), never features, and return
log-probabilities in ``dtype`` (default: ``torch.get_default_dtype()``); :class:`~icontorch.ICon`
casts them to the dtype of q. The row normaliser ``log(count)`` is computed in float64.
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validation import check_ids_below, check_index, check_int, fail
from .base import FusedTargets, Neighborhood, Support

__all__ = ["SameLabel", "PositivePairs", "CrossModal", "DataToClass", "Identity"]


def _uniform_over(match: Tensor, dtype: torch.dtype) -> Tensor:
    """``log(match / match.sum(1))`` with ``-inf`` off the match and empty rows left ``-inf``."""
    count = match.sum(1, keepdim=True)
    log_count = torch.log(count.to(torch.float64).clamp_min(1.0)).to(dtype)
    neg_inf = torch.full(match.shape, float("-inf"), dtype=dtype, device=match.device)
    return torch.where(match, -log_count.expand_as(neg_inf), neg_inf)


class _Matching(Neighborhood):
    """``p(j|i) = 1[x_i = y_j] / #{k : x_k = y_i}`` over candidates (self excluded when y is None)."""

    def __init__(self, include_self: bool = False, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.include_self = bool(include_self)
        self.dtype = dtype

    def _ids(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        """The validated candidate ids: ``x`` itself, (m,) shared or (n, m) per anchor."""
        who = type(self).__name__
        check_index(who, "x", x)
        if y is None:
            if x.shape[0] < 2:
                raise fail(who, "x", "hold at least 2 ids when the anchors are their own candidates", x)
            return x
        check_index(who, "y", y, ndim=(1, 2))
        if y.dim() == 2 and y.shape[0] != x.shape[0]:
            raise fail(who, "y", f"have one candidate set per anchor ({x.shape[0]} rows)", y)
        return y

    def _match(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        ids = self._ids(x, y)
        if y is not None:
            return x[:, None] == (ids if ids.dim() == 2 else ids[None, :])
        match = x[:, None] == x[None, :]
        if not self.include_self:
            match.fill_diagonal_(False)
        return match

    def _support(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int) -> Support:
        ids = self._ids(x, y)
        return Support(ids.shape[0], anchor_ids=x, candidate_ids=ids)

    def fused_form(self) -> Optional[FusedTargets]:
        """S_i: the candidates whose id is anchor i's (the engine excludes i itself unless included)."""
        if not self._keeps(_Matching, "_match", "forward"):
            return None
        return FusedTargets(self._support, include_self=self.include_self, ids=True)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return _uniform_over(self._match(x, y), self.dtype or torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"include_self={self.include_self}, dtype={self.dtype}"


class SameLabel(_Matching):
    """``p(j|i) = 1[y_i = y_j] / (K_i - 1)`` for ``j != i``; ``K_i`` is the size of i's class.

    The "uniform over classes" column (Thm 6, SupCon). An anchor whose label occurs once has no
    neighbour: its row is entirely ``-inf`` and :class:`~icontorch.ICon` decides the policy.

    Args:
        include_self: count ``j = i`` among the neighbours when ``y`` is None.
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """


class PositivePairs(_Matching):
    """``p(j|i) = 1[src_i = src_j] / (k_i - 1)`` for ``j != i``: uniform over the other views.

    The "uniform over positive pairs" column (Thm 3: InfoNCE, SimCLR). ``x`` holds the source
    index of each view (two views of item 7 both carry 7), so with the views stacked as
    ``[view1; view2]`` the target is ``cat([arange(B), arange(B)])``.

    Args:
        include_self: count ``j = i`` among the positives when ``y`` is None.
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """


class CrossModal(_Matching):
    """``p(j|i) = 1[i, j positive pair, V_i != V_j] / Z_i``: positives in the other modality only.

    Thm 8 (CMC, CLIP). The anchors ``x`` are item ids of one modality and the candidates ``y``,
    which are required, are item ids of the other; ``ICon(..., symmetric=True)`` adds the other
    direction, which gives CLIP's symmetric loss.

    Args:
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """

    def __init__(self, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__(include_self=False, dtype=dtype)

    def _ids(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        if y is None:
            raise fail("CrossModal", "y", "hold the item ids of the other modality (candidates)", y)
        return super()._ids(x, y)

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"


class DataToClass(Neighborhood):
    """``p(c|i) = 1[label_i = c]``: each anchor points at its own class (Thm 9, 10).

    The candidates are classes (prototypes): ``y=None`` means all classes ``0..n_classes-1``;
    otherwise ``y`` lists the class id of each candidate prototype.

    Args:
        n_classes: number of classes C.
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """

    include_self = True  # the candidates are classes, so no column is the anchor itself
    y_defaults_to_x = False

    def __init__(self, n_classes: int, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.n_classes = check_int("DataToClass", "n_classes", n_classes, 1)
        self.dtype = dtype

    def _classes(self, x: Tensor, y: Optional[Tensor]) -> Tensor:
        """The validated class ids of the candidates (all classes when ``y`` is None)."""
        check_ids_below("DataToClass", "x", x, self.n_classes, "labels")
        classes = torch.arange(self.n_classes, device=x.device) if y is None else y
        return check_index("DataToClass", "y", classes)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        classes = self._classes(x, y)
        return _uniform_over(x[:, None] == classes[None, :], self.dtype or torch.get_default_dtype())

    def _support(self, x: Tensor, y: Optional[Tensor], self_offset: Optional[int], chunk: int) -> Support:
        classes = self._classes(x, y)
        return Support(classes.shape[0], anchor_ids=x, candidate_ids=classes)

    def fused_form(self) -> Optional[FusedTargets]:
        """S_i: the prototypes of anchor i's class. The candidates are classes, never the anchor
        itself, so ``include_self`` does not constrain q."""
        if not self._keeps(DataToClass, "forward"):
            return None
        return FusedTargets(self._support, ids=True,
                            needs_candidates="DataToClass needs candidates (class prototypes)")

    def extra_repr(self) -> str:
        return f"n_classes={self.n_classes}, dtype={self.dtype}"


class Identity(Neighborhood):
    """``p(j|i) = 1[i = j]``: every point is its own only neighbour (Thm 2, PCA).

    Self is the only candidate with mass, so ``include_self`` is always true. ``x`` may be
    anything with a first dimension (features or ids); ``y`` must be None.

    Args:
        dtype: dtype of the returned log-probabilities (default: the torch default dtype).
    """

    include_self = True

    def __init__(self, dtype: Optional[torch.dtype] = None) -> None:
        super().__init__()
        self.dtype = dtype

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        if not isinstance(x, Tensor) or x.dim() == 0 or x.shape[0] == 0:
            raise fail("Identity", "x", "be a non-empty batch", x)
        if y is not None:
            raise fail("Identity", "y", "be None (the anchors are the candidates)", y)
        eye = torch.eye(x.shape[0], dtype=torch.bool, device=x.device)
        return _uniform_over(eye, self.dtype or torch.get_default_dtype())

    def extra_repr(self) -> str:
        return f"dtype={self.dtype}"
