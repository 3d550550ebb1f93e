"""The fused form of (p, q, divergence): structured p x kernel-softmax q, handed to the tiled engine.

p is uniform over id matches or neighbour lists (optionally alpha-mixed with the uniform), q is a
Gaussian or Student-t softmax (optionally beta-mixed); the loss is then a cross-entropy that
:mod:`icontorch.engine.tiled` computes tile by tile without forming p.
"""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import divergences
from .._validation import IConError, check_index, fail
from ..distances import dot_product
from ..neighborhoods import KNN, CrossModal, DataToClass, Gaussian, PositivePairs, SameLabel, StudentT
from ..neighborhoods.base import Neighborhood
from ..neighborhoods.spatial import METRICS
from ..neighborhoods.sparse import SparseNeighbors
from ..transforms import MixUniform
from .tiled import Engine, Kernel, Targets, cross_entropy_rows, match_lists

__all__ = ["Structured", "structured_form", "choose_tile", "shape_error", "AUTO_TILE_SIZE", "AUTO_TILE_ENTRIES"]

Divergence = Union[str, Callable[[Tensor, Tensor], Tensor]]

AUTO_TILE_SIZE = 2048
"""Tile edge used by ``tile_size="auto"`` once the (n, m) matrix would pass ``AUTO_TILE_ENTRIES``."""
AUTO_TILE_ENTRIES = 8192 * 8192
_KNN_ENTRIES = 1 << 25  # similarities per block when KNN targets are turned into lists
_IDS = (PositivePairs, SameLabel, CrossModal)
_STRUCTURED_P = _IDS + (DataToClass, KNN, SparseNeighbors)


def choose_tile(tile_size: Union[int, str, None], n: int, m: int) -> Tuple[int, bool]:
    """The engine's tile edge for ``ICon(tile_size=...)`` on n anchors and m candidates, and whether
    it runs in one piece (``keep``: the (n, m) tile is kept for backward instead of recomputed)."""
    if isinstance(tile_size, int):
        return tile_size, False
    if tile_size == "auto" and n * m > AUTO_TILE_ENTRIES:
        return AUTO_TILE_SIZE, False
    return max(n, m), True


def shape_error(p_shape: tuple, q_shape: tuple) -> IConError:
    return IConError(f"ICon: p and q must give matrices of the same shape; got p {p_shape} from "
                     f"target and q {q_shape} from z.")



def structured_form(p: Neighborhood, q: Neighborhood, divergence: Divergence) -> Tuple[Optional["Structured"], str]:
    if divergence in ("kl", divergences.kl):
        kl = True
    elif divergence in ("cross_entropy", divergences.cross_entropy):
        kl = False
    else:
        return None, f"the divergence is {divergence!r}"
    beta, kernel = (q.alpha, q.base) if type(q) is MixUniform else (0.0, q)
    if type(kernel) not in (Gaussian, StudentT):
        return None, f"q is {type(kernel).__name__}, not Gaussian or StudentT (optionally mix_uniform-ed)"
    alpha, base = (p.alpha, p.base) if type(p) is MixUniform else (0.0, p)
    if type(base) not in _STRUCTURED_P:
        names = ", ".join(cls.__name__ for cls in _STRUCTURED_P)
        return None, f"p is {type(base).__name__}, not one of {names} (optionally mix_uniform-ed)"
    if base.include_self and not kernel.include_self and type(base) is not DataToClass:
        return None, "p includes self as a neighbour but q excludes it"
    return Structured(base, alpha, kernel, beta, kl), ""


class Structured:
    """p uniform over id matches or neighbour lists (alpha-mixed), q a kernel softmax (beta-mixed)."""

    def __init__(self, base: Neighborhood, alpha: float, kernel: Neighborhood, beta: float,
                 kl: bool) -> None:
        self.base, self.alpha, self.kernel, self.beta, self.kl = base, alpha, kernel, beta, kl

    def accepts(self, z: Tensor, candidates: Optional[Tensor], target_candidates: Optional[Tensor],
                own: bool) -> str:
        """Why these inputs need the composed path ("" when the engine takes them)."""
        if candidates is None and not own:
            return "target_candidates come without candidates"
        if candidates is not None and candidates.dim() != 2:
            return "the candidates are per-anchor sets (3-D)"
        if z.dim() != 2:
            return "z is not 2-D"
        if type(self.base) is DataToClass:
            return "DataToClass needs candidates (class prototypes)" if own else ""
        if not own and target_candidates is None:
            return "candidates come without target_candidates"
        if type(self.base) in _IDS and target_candidates is not None and target_candidates.dim() != 1:
            return "target_candidates are per-anchor id sets (2-D)"
        return ""

    def _targets(self, target: Tensor, target_candidates: Optional[Tensor], self_offset: Optional[int],
                 dtype: torch.dtype, chunk: int) -> Tuple[Tuple[int, int], Callable[[], Targets]]:
        """The shape of p and a builder of its Targets, after validating like the neighbourhood."""
        base, own = self.base, self_offset is not None
        who = type(base).__name__
        p_self = self_offset if own and not base.include_self else None
        if isinstance(base, (SparseNeighbors, KNN)):
            if isinstance(base, SparseNeighbors):
                lists, m = base.lists(target, target_candidates, p_self)
            else:
                base._check(target, target_candidates)
                m = (target if target_candidates is None else target_candidates).shape[0]
                available = m - (p_self is not None)
                if base.k >= available:
                    raise fail(who, "k", f"be smaller than the number of candidates per anchor "
                               f"({available})", base.k)
                lists = _knn_lists(base, target, target if target_candidates is None
                                   else target_candidates, p_self, chunk)
            count = (lists >= 0).sum(1)
            return (target.shape[0], m), lambda: Targets(count, m, self.alpha, p_self, dtype, lists)
        if isinstance(base, CrossModal) and own:
            base(target, None)  # raises CrossModal's own error: it needs the other modality
        check_index(who, "x", target)
        if type(base) is DataToClass:
            if bool((target < 0).any()) or bool((target >= base.n_classes).any()):
                raise fail(who, "x", f"hold labels in [0, {base.n_classes})",
                           f"labels from {int(target.min())} to {int(target.max())}")
            ids = (torch.arange(base.n_classes, device=target.device) if target_candidates is None
                   else target_candidates)
            check_index(who, "y", ids)
        elif target_candidates is None:
            if target.shape[0] < 2:
                raise fail(who, "x", "hold at least 2 ids when the anchors are their own candidates", target)
            ids = target
        else:
            ids = check_index(who, "y", target_candidates)
        shape = (target.shape[0], ids.shape[0])

        def build() -> Targets:
            lists, count = match_lists(target, ids.to(target.device), p_self)
            return Targets(count, ids.shape[0], self.alpha, p_self, dtype, lists, target, ids)
        return shape, build

    def rows(self, z: Tensor, target: Tensor, candidates: Optional[Tensor],
             target_candidates: Optional[Tensor], self_offset: Optional[int], tile: int,
             keep: bool) -> Tuple[Tensor, Tensor]:
        kernel = self.kernel
        y = z if candidates is None else candidates
        kernel._check(z, candidates)  # the checks and messages of q(z, candidates)
        dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
        p_shape, build = self._targets(target, target_candidates, self_offset, dtype, tile)
        if p_shape != (z.shape[0], y.shape[0]):
            raise shape_error(p_shape, (z.shape[0], y.shape[0]))
        targets = build()
        if isinstance(kernel, StudentT):
            spec, metric = Kernel("distance", dof=kernel.dof), "squared_euclidean"
        else:
            metric = kernel.metric
            spec = Kernel("distance" if metric == "squared_euclidean" else "linear", kernel.scale)
        q_self = self_offset if self_offset is not None and not kernel.include_self else None
        engine = Engine(spec, targets, self.beta, q_self, tile, keep)
        out = cross_entropy_rows(z, y, metric, engine)
        if self.kl:
            out = out - targets.entropy().to(out.dtype)
        return out, targets.count == 0


def _knn_lists(knn: KNN, x: Tensor, y: Tensor, self_offset: Optional[int], chunk: int) -> Tensor:
    """The k most similar candidates of each anchor, by blocks of anchors (as ``KNN.logits``)."""
    chunk = max(1, min(chunk, _KNN_ENTRIES // y.shape[0]))  # a block of similarities stays bounded
    out = torch.empty(x.shape[0], knn.k, dtype=torch.long, device=x.device)
    with torch.no_grad():
        similarity = METRICS[knn.metric]
        if knn.metric == "cosine":  # normalise once, not once per block (the same numbers)
            x, y, similarity = F.normalize(x, dim=-1), F.normalize(y, dim=-1), dot_product
        for start in range(0, x.shape[0], chunk):
            stop = min(x.shape[0], start + chunk)
            s = similarity(x[start:stop], y)
            if self_offset is not None:
                i = torch.arange(start, stop, device=x.device)
                s[i - start, i + self_offset] = float("-inf")
            out[start:stop] = s.topk(knn.k, dim=1).indices
            del s  # before the next block is made, so that two blocks never coexist
    return out
