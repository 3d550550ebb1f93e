"""The supervisory p of one fused call: ``S_i`` as index lists or id matches, alpha-mixed.

:class:`Targets` holds ``p(j|i) = (1 - alpha) 1[j in S_i] / |S_i| + alpha / N_i`` and gives the
two things the tiled engine (:mod:`.tiled`) needs of p per tile: ``sum_j p(j|i) v_ij`` and the
update ``grad_ij -= c_i p(j|i) r_ij``, never forming p.
"""

from __future__ import annotations

from typing import Optional, Tuple

import torch
from torch import Tensor

__all__ = ["Targets", "match_lists", "self_cells"]

_MAX_LIST = 64  # id groups up to this size are handled as index lists, larger ones as tile masks
_MASK_ENTRIES = 1 << 22  # rows of a tile mask are built in blocks of about this many entries


def self_cells(offset: Optional[int], i0: int, i1: int, j0: int, j1: int,
               device: torch.device) -> Optional[Tuple[Tensor, Tensor]]:
    """Tile-local (row, column) of the cells where candidate ``offset + i`` is anchor i itself."""
    if offset is None:
        return None
    lo, hi = max(i0, j0 - offset), min(i1, j1 - offset)
    if lo >= hi:
        return None
    i = torch.arange(lo, hi, device=device)
    return i - i0, i + offset - j0


def match_lists(anchor_ids: Tensor, candidate_ids: Tensor, self_offset: Optional[int],
                max_list: int = _MAX_LIST) -> Tuple[Optional[Tensor], Tensor]:
    """Positions of the candidates sharing each anchor's id, as (n, k) lists padded with -1.

    Returns ``(lists, count)``; ``lists`` is None when some id group is larger than ``max_list``
    (then the tiles compare ids instead). The anchor itself (candidate ``self_offset + i``) is
    not its own neighbour.
    """
    ordered, order = torch.sort(candidate_ids, stable=True)
    lo = torch.searchsorted(ordered, anchor_ids, right=False)
    count = torch.searchsorted(ordered, anchor_ids, right=True) - lo
    lists = None
    k = int(count.max())
    if k <= max_list:
        step = torch.arange(k, device=anchor_ids.device)
        pos = (lo[:, None] + step).clamp_max(candidate_ids.shape[0] - 1)
        lists = torch.where(step < count[:, None], order[pos], -1)
        if self_offset is not None:
            own = torch.arange(anchor_ids.shape[0], device=anchor_ids.device)[:, None] + self_offset
            lists = lists.masked_fill(lists == own, -1)
    if self_offset is not None:
        count = count - 1  # the anchor's own column always carries its id
    return lists, count


class Targets:
    """The supervisory p of one call: ``S_i`` as index lists or id matches, alpha-mixed.

    Args:
        count: (n,) ``|S_i|``; a row with 0 has no mass (an empty row).
        n_candidates: m, the number of candidates.
        alpha: uniform mass over the candidates (self excluded when ``self_offset`` is set).
        self_offset: candidate ``self_offset + i`` is anchor i, which p never picks; None: no self.
        lists: (n, k) positions of ``S_i`` padded with -1, or None to compare ids per tile.
        anchor_ids, candidate_ids: the ids compared when ``lists`` is None.
    """

    def __init__(self, count: Tensor, n_candidates: int, alpha: float, self_offset: Optional[int],
                 dtype: torch.dtype, lists: Optional[Tensor] = None,
                 anchor_ids: Optional[Tensor] = None, candidate_ids: Optional[Tensor] = None) -> None:
        self.count, self.alpha, self.self_offset = count, alpha, self_offset
        self.lists, self.anchor_ids, self.candidate_ids = lists, anchor_ids, candidate_ids
        has_mass = count > 0
        self.mass = has_mass.to(dtype)  # sum_j p(j|i): 1, or 0 for an empty row
        self.n_support = n_candidates - (self_offset is not None)
        self.w = torch.where(has_mass, (1.0 - alpha) / count.clamp_min(1).to(dtype), 0.0)
        self.u = self.mass * (alpha / max(self.n_support, 1))

    def entropy(self) -> Tensor:
        """``H(p_i)`` in closed form: |S_i| entries of ``w + u`` and ``N_i - |S_i|`` of ``u``."""
        on, off = self.w + self.u, self.u
        c = self.count.to(on.dtype)
        return -(c * torch.special.xlogy(on, on) + (self.n_support - c) * torch.special.xlogy(off, off))

    def _masks(self, i0: int, i1: int, j0: int, j1: int):
        """``1[j in S_i]`` over the tile, by blocks of rows so that no (n, m) temporary is made."""
        step = max(1, _MASK_ENTRIES // (j1 - j0))
        for r0 in range(i0, i1, step):
            r1 = min(i1, r0 + step)
            mask = self.anchor_ids[r0:r1, None] == self.candidate_ids[None, j0:j1]
            cells = self_cells(self.self_offset, r0, r1, j0, j1, mask.device)
            if cells is not None:
                mask[cells] = False
            yield slice(r0 - i0, r1 - i0), mask

    def _listed(self, i0: int, i1: int, j0: int, j1: int) -> Tuple[Tensor, Tensor]:
        idx = self.lists[i0:i1]
        inside = (idx >= j0) & (idx < j1)
        return (idx - j0).clamp(0, j1 - j0 - 1), inside

    def dot(self, v: Tensor, i0: int, i1: int, j0: int, j1: int) -> Tensor:
        """``sum_j p(j|i) v_ij`` over one tile; ``v`` must be finite wherever p may be positive."""
        if self.lists is not None:
            pos, inside = self._listed(i0, i1, j0, j1)
            picked = torch.where(inside, v.gather(1, pos), 0.0).sum(1)
        else:
            picked = v.new_empty(i1 - i0)
            for rows, mask in self._masks(i0, i1, j0, j1):
                picked[rows] = torch.where(mask, v[rows], 0.0).sum(1)
        out = self.w[i0:i1] * picked
        if self.alpha > 0.0:
            total = v.sum(1)
            cells = self_cells(self.self_offset, i0, i1, j0, j1, v.device)
            if cells is not None:
                total = total.index_add(0, cells[0], -v[cells])
            out = out + self.u[i0:i1] * total
        return out

    def subtract(self, grad: Tensor, coef: Tensor, r: Optional[Tensor],
                 i0: int, i1: int, j0: int, j1: int) -> None:
        """``grad_ij -= coef_i p(j|i) r_ij`` in place over one tile (``r=None`` reads as 1)."""
        c_list = coef * self.w[i0:i1]
        if self.lists is not None:
            pos, inside = self._listed(i0, i1, j0, j1)
            value = c_list[:, None] * inside
            if r is not None:
                value = value * r.gather(1, pos)
            grad.scatter_add_(1, pos, -value)
        else:
            for rows, mask in self._masks(i0, i1, j0, j1):
                value = torch.where(mask, c_list[rows, None], 0.0)
                grad[rows] -= value if r is None else value.mul_(r[rows])
        if self.alpha > 0.0:
            c_uni = coef * self.u[i0:i1]
            if r is None:
                grad.sub_(c_uni[:, None])
            else:
                grad.addcmul_(c_uni[:, None], r, value=-1.0)
            cells = self_cells(self.self_offset, i0, i1, j0, j1, grad.device)
            if cells is not None:  # the anchor itself carries no alpha mass
                grad[cells] += c_uni[cells[0]] * (1.0 if r is None else r[cells])
