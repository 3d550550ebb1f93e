"""The fused form of (p, q, divergence): a structured p and a kernel-softmax q for the tiled engine.

Each side describes itself through the one hook ``Neighborhood.fused_form()``: p as a
:class:`~icontorch.neighborhoods.base.FusedTargets` (uniform over id matches or neighbour lists,
optionally alpha-mixed), q as a :class:`~icontorch.neighborhoods.base.FusedKernel` (a Gaussian or
Student-t softmax, optionally beta-mixed). With the ``"kl"`` or ``"cross_entropy"`` divergence the
loss is then a cross-entropy that :mod:`icontorch.engine.tiled` computes tile by tile without
forming p. This module never looks at concrete neighbourhood classes.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .. import divergences
from .._validation import IConError
from ..neighborhoods.base import FusedKernel, FusedTargets, Neighborhood, called_as
from ..neighborhoods.kernels import KernelProfile
from .targets import Targets, match_lists
from .tiled import Engine, Kernel, cross_entropy_rows

__all__ = ["Structured", "structured_form", "choose_tile", "shape_error", "describe", "AUTO_TILE_SIZE",
           "AUTO_TILE_ENTRIES"]

Divergence = Union[str, Callable[[Tensor, Tensor], Tensor]]

AUTO_TILE_SIZE = 2048
"""Tile edge used by ``tile_size="auto"`` once the (n, m) matrix would pass ``AUTO_TILE_ENTRIES``."""
AUTO_TILE_ENTRIES = 8192 * 8192
_P_FUSED = "PositivePairs, SameLabel, CrossModal, DataToClass, KNN, SparseNeighbors"


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


def describe(neighborhood: Neighborhood) -> str:
    """``MixUniform(PerplexityGaussian)``: the class, with the class of a wrapped ``base``."""
    base = getattr(neighborhood, "base", None)
    inner = f"({describe(base)})" if isinstance(base, Neighborhood) else ""
    return type(neighborhood).__name__ + inner


def structured_form(p: Neighborhood, q: Neighborhood,
                    divergence: Divergence) -> Tuple[Optional["Structured"], str]:
    """The fused form of (p, q, divergence), or None and the reason it has none."""
    if divergence in ("kl", divergences.kl):
        kl = True
    elif divergence in ("cross_entropy", divergences.cross_entropy):
        kl = False
    else:
        return None, f"the divergence is {divergence!r}"
    kernel = q.fused_form()
    if not isinstance(kernel, FusedKernel):
        return None, f"q is {describe(q)}, not Gaussian or StudentT (optionally mix_uniform-ed)"
    targets = p.fused_form()
    if not isinstance(targets, FusedTargets):
        return None, f"p is {describe(p)}, not one of {_P_FUSED} (optionally mix_uniform-ed)"
    if targets.include_self and not kernel.include_self:
        return None, "p includes self as a neighbour but q excludes it"
    return Structured(targets, kernel, kl), ""


class Structured:
    """p uniform over a support (alpha-mixed), q a kernel softmax (beta-mixed), and the divergence."""

    def __init__(self, targets: FusedTargets, kernel: FusedKernel, kl: bool) -> None:
        self.targets, self.kernel, self.kl = targets, kernel, kl

    def accepts(self, z: Tensor, candidates: Optional[Tensor], target_candidates: Optional[Tensor],
                own: bool) -> str:
        """Why these inputs need the composed path ("" when the engine takes them)."""
        if candidates is None and not own:
            return "target_candidates come without candidates"
        if candidates is not None and candidates.dim() != 2:
            return "the candidates are per-anchor sets (3-D)"
        if z.dim() != 2:
            return "z is not 2-D"
        return self.targets.refuses(own, target_candidates)

    def _targets(self, target: Tensor, target_candidates: Optional[Tensor], self_offset: Optional[int],
                 dtype: torch.dtype, chunk: int, q_shape: Tuple[int, int]) -> Targets:
        """p's Targets, validated as the neighbourhood validates, once its shape matches q's."""
        p_self = self_offset if self_offset is not None and not self.targets.include_self else None
        support = self.targets.support(target, target_candidates, p_self, chunk)
        m, alpha = support.n_candidates, self.targets.alpha
        if (target.shape[0], m) != q_shape:
            raise shape_error((target.shape[0], m), q_shape)
        if support.lists is not None:
            count = (support.lists >= 0).sum(1)
            return Targets(count, m, alpha, p_self, dtype, support.lists)
        anchor_ids, candidate_ids = support.anchor_ids, support.candidate_ids.to(support.anchor_ids.device)
        lists, count = match_lists(anchor_ids, candidate_ids, p_self)
        return Targets(count, m, alpha, p_self, dtype, lists, anchor_ids, candidate_ids)

    def rows(self, z: Tensor, target: Tensor, candidates: Optional[Tensor],
             target_candidates: Optional[Tensor], self_offset: Optional[int], tile: int,
             keep: bool, names: Sequence[str] = ("z", "target", "candidates", "target_candidates"),
             ) -> Tuple[Tensor, Tensor]:
        """Per-anchor ``H(p_i, q_i)`` (minus ``H(p_i)`` for the kl) and the mask of empty rows;
        ``names``: what the caller calls z, target, candidates and target_candidates (the errors)."""
        kernel = self.kernel
        y = z if candidates is None else candidates
        with called_as(names[0], names[2]):
            kernel.check(z, candidates)  # the checks and messages of q(z, candidates)
        dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
        with called_as(names[1], names[3]):
            targets = self._targets(target, target_candidates, self_offset, dtype, tile,
                                    (z.shape[0], y.shape[0]))
        q_self = self_offset if self_offset is not None and not kernel.include_self else None
        profile, scale = kernel.profile, None
        if isinstance(profile.param, Tensor):  # a learned scale: the engine gives its gradient
            scale = profile.param.reshape(()).to(device=z.device, dtype=dtype)
            profile = KernelProfile(profile.kind, scale.detach())
        spec = Kernel(profile, linear=kernel.metric != "squared_euclidean")
        engine = Engine(spec, targets, kernel.beta, q_self, tile, keep)
        out = cross_entropy_rows(z, y, kernel.metric, engine, scale)
        if self.kl:
            out = out - targets.entropy().to(out.dtype)
        return out, targets.count == 0
