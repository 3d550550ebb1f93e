"""The one equation: ``L = (1/n) sum_i D( p(.|i) || q(.|i) )`` (I-Con, Eq. 1)."""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor, nn

from ._validation import IConError, check_choice, check_flag, fail, is_integer, preview
from .divergences import DIVERGENCES
from .engine import distributed
from .engine.structured import Structured, choose_tile, describe, shape_error, structured_form
from .engine.tiled import at_least_float32, full_precision
from .neighborhoods.base import (
    FusedTargets,
    NeighborhoodLike,
    as_neighborhood,
    called_as,
)

__all__ = ["ICon"]

Divergence = Union[str, Callable[[Tensor, Tensor], Tensor]]

NAMES = ("z", "target", "candidates", "target_candidates")
"""What ICon calls the arguments of q (``z``, ``candidates``) and of p (``target``,
``target_candidates``): an error of p or q names them so, not by the neighbourhood's x and y."""


class ICon(nn.Module):
    """``L = (1/n) sum_i D( p(.|i) || q(.|i) )``, the I-Con loss (Eq. 1 of the paper).

    ``q`` sees what is learned (embeddings, log cluster assignments, table rows); ``p`` sees the
    supervision (features, labels, item indices) or is a precomputed (n, m) log-probability
    matrix. Choosing p and q picks the method (``icontorch.methods``).

    When p and q describe a fused form (``Neighborhood.fused_form()``: p structured, as
    ``PositivePairs``, ``SameLabel``, ``CrossModal``, ``DataToClass``, ``KNN``,
    ``SparseNeighbors``, each optionally ``mix_uniform``-ed; q a kernel softmax, ``Gaussian`` or
    ``StudentT``, optionally ``mix_uniform``-ed) and the divergence is ``"kl"`` or
    ``"cross_entropy"``, the loss runs on a fused engine (:mod:`icontorch.engine`) that never
    builds p and, when tiled, never builds the (n, m) matrix at all; a learned Gaussian
    temperature or sigma gets its gradient there too. Any other p, q or
    divergence runs the composed path: (n, m) log-probabilities from p and q, then the divergence.
    The engine gives first-order gradients only (``create_graph=True`` raises IConError); wrap p
    in :class:`FromCallable` to take the composed path when second-order gradients are needed.

    Args:
        p: supervisory neighbourhood: a :class:`Neighborhood`, an (n, m) log-probability tensor,
            or a callable ``p(target, target_candidates) -> (n, m)`` log-probabilities.
        q: learned neighbourhood, same kinds as ``p``; called as ``q(z, candidates)``.
        divergence: ``"kl"`` (default), ``"cross_entropy"``, ``"reverse_kl"``, or any callable
            ``(log_p, log_q) -> (n,)`` such as ``functools.partial(reverse_kl, entropy_weight=1)``.
        reduction: ``"mean"`` over anchors, ``"sum"``, or ``"none"`` for the per-anchor vector.
        symmetric: with candidates given, also use every candidate as an anchor against the
            anchors (CLIP's two directions); ``"mean"`` then averages over all n + m anchors.
        skip_empty_rows: what to do with an anchor whose p has no mass (a SupCon anchor whose
            label occurs once). False (default): raise :class:`IConError` naming the rows.
            True: drop those anchors from the reduction, as pytorch-metric-learning does; with
            ``reduction="none"`` their entries are NaN.
        tile_size: ``"auto"`` (default): the fused engine in one piece, or in tiles of
            ``icontorch.engine.structured.AUTO_TILE_SIZE`` once n * m passes
            ``AUTO_TILE_ENTRIES``; the composed path when p, q or the divergence have no
            structured form. ``None``: never tile. An integer
            >= 1: always tile, in blocks of ``tile_size`` anchors by ``tile_size`` candidates
            (memory O(tile_size^2 + (n + m) d)); p, q and the divergence must then have a
            structured form, or :class:`IConError` says why not.
        gather: score the local anchors against the candidates of every rank of the initialised
            ``torch.distributed`` process group (a gradient-carrying all-gather). The local loss
            is scaled so that its mean over ranks is the loss of one process on the concatenated
            batch, and DDP's gradient averaging gives that loss's gradient (see
            :mod:`icontorch.engine.distributed`). ``reduction="none"`` returns the local rows.

    Shape:
        ``forward(z, target, candidates=None, target_candidates=None)``: ``z`` (n, ...) and
        ``target`` (n, ...) describe the anchors; ``candidates`` (m, ...) and
        ``target_candidates`` the candidates, defaulting to the anchors themselves. Both sides
        must describe the same candidates: give ``candidates`` and ``target_candidates`` together,
        except for a side whose candidates are not anchors (``y_defaults_to_x`` false: the classes
        of :class:`DataToClass`, which then needs the class prototypes as ``candidates``).

    Errors: bad input raises :class:`IConError` before the loss is computed; an error of p or q
    names the argument as it was given to ICon (``z``, ``target``, ``candidates``,
    ``target_candidates``), not as the neighbourhood calls it (x, y). A NaN row of the divergence
    raises too: the loss is never NaN (only ``reduction="none"`` marks dropped rows with NaN). It
    is +inf, the true value, where one side puts mass on a candidate the other excludes.
    """

    def __init__(self, p: NeighborhoodLike, q: NeighborhoodLike, divergence: Divergence = "kl",
                 reduction: str = "mean", symmetric: bool = False, skip_empty_rows: bool = False,
                 tile_size: Union[int, str, None] = "auto", gather: bool = False) -> None:
        super().__init__()
        self.p = as_neighborhood(p, "ICon", "p")
        self.q = as_neighborhood(q, "ICon", "q")
        if isinstance(divergence, str):
            check_choice("ICon", "divergence", divergence, tuple(DIVERGENCES))
        elif not callable(divergence):
            raise fail("ICon", "divergence", f"be one of {tuple(DIVERGENCES)} or a callable", divergence)
        self.divergence = divergence
        self.reduction = check_choice("ICon", "reduction", reduction, ("mean", "sum", "none"))
        self.symmetric = check_flag("ICon", "symmetric", symmetric)
        self.skip_empty_rows = check_flag("ICon", "skip_empty_rows", skip_empty_rows)
        if is_integer(tile_size) and tile_size >= 1:
            tile_size = int(tile_size)
        elif not (tile_size is None or isinstance(tile_size, str) and tile_size == "auto"):
            raise fail("ICon", "tile_size", "be an integer >= 1, 'auto' or None", tile_size)
        self.tile_size = tile_size
        self.gather = check_flag("ICon", "gather", gather)

    def _divergence_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return DIVERGENCES[self.divergence] if isinstance(self.divergence, str) else self.divergence

    def log_p(self, target: Optional[Tensor], target_candidates: Optional[Tensor] = None,
              names: Sequence[str] = NAMES) -> Tensor:
        """The (n, m) supervisory log-probabilities ``log p(j|i)``; p's errors name its arguments
        ``names[1]`` and ``names[3]`` (``target``, ``target_candidates``), not x and y."""
        with called_as(names[1], names[3]):
            return self.p(target, target_candidates)

    def log_q(self, z: Tensor, candidates: Optional[Tensor] = None, names: Sequence[str] = NAMES) -> Tensor:
        """The (n, m) learned log-probabilities ``log q(j|i)``; q's errors name its arguments
        ``names[0]`` and ``names[2]`` (``z``, ``candidates``), not x and y."""
        _check_learned(names[0], z)
        if candidates is not None:
            _check_learned(names[2], candidates)
        with called_as(names[0], names[2]):
            return self.q(z, candidates)

    def structured_form(self) -> Tuple[Optional["Structured"], str]:
        """The fused engine's view of (p, q, divergence), or None and the reason it has none."""
        return structured_form(self.p, self.q, self.divergence)

    def _composed_rows(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
                       target_candidates: Optional[Tensor], names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        log_q = self.log_q(z, candidates, names)
        log_p = self.log_p(target, target_candidates, names)
        if log_p.shape != log_q.shape:
            raise shape_error(tuple(log_p.shape), tuple(log_q.shape))
        log_p = log_p.to(dtype=log_q.dtype, device=log_q.device)
        empty = (log_p == float("-inf")).all(dim=1)
        if bool(empty.any()):
            # Dropped rows are evaluated on a placeholder (p = q = 1), so that a divergence that is
            # infinite there (reverse_kl) cannot send NaN gradients (0 * inf) into the kept rows.
            log_p = log_p.masked_fill(empty[:, None], 0.0)
            log_q = log_q.masked_fill(empty[:, None], 0.0)
        rows = self._divergence_fn()(log_p, log_q)
        if not isinstance(rows, Tensor) or rows.shape != empty.shape:
            raise fail("ICon", "divergence", f"return one value per anchor, a tensor of shape {tuple(empty.shape)}",
                       rows)
        return rows, empty

    def _dispatch(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
                  target_candidates: Optional[Tensor], self_offset: Optional[int],
                  names: Sequence[str]) -> Tuple[Tensor, Tensor]:
        """The fused / tiled engine when (p, q, divergence, inputs) allow it, else the composed path."""
        form, reason = self.structured_form()
        if form is not None:
            reason = form.accepts(z, candidates, target_candidates, self_offset is not None)
        if reason:
            if isinstance(self.tile_size, int) or (self.gather and self_offset is not None):
                what = (f"tile_size={self.tile_size}" if isinstance(self.tile_size, int)
                        else "gather=True without candidates")
                raise IConError(f"ICon: {what} needs a structured p, a kernel-softmax q and the kl or "
                                f"cross_entropy divergence; here {reason}.")
            rows, empty = self._composed_rows(z, target, candidates, target_candidates, names)
        else:
            m = (z if candidates is None else candidates).shape[0]
            tile, keep = choose_tile(self.tile_size, z.shape[0], m)
            rows, empty = form.rows(z, target, candidates, target_candidates, self_offset, tile, keep, names)
        return rows, empty

    def _rows(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
              target_candidates: Optional[Tensor], names: Sequence[str] = NAMES) -> Tuple[Tensor, Tensor]:
        """Per-anchor divergences (NaN where dropped) and the mask of anchors with an empty p row."""
        _check_learned(names[0], z)
        if candidates is not None:
            _check_learned(names[2], candidates)
        self_offset = None
        if self.gather:
            if candidates is None:
                candidates, self_offset = distributed.gather_with_grad(z)
                target_candidates = distributed.gather(target, "target")
            else:
                candidates = distributed.gather_with_grad(candidates)[0]
                if target_candidates is not None:
                    target_candidates = distributed.gather(target_candidates, "target_candidates")
        elif candidates is None and target_candidates is None:
            self_offset = 0
        # The loss itself runs in float32 (float64 for float64 input) with autocast off, so that
        # the log-sum-exp stays finite and accurate at small temperatures under bf16 / fp16.
        z, candidates = at_least_float32(z), at_least_float32(candidates)
        if candidates is not None and candidates.dtype != z.dtype:  # float32 with float64: both float64
            dtype = torch.promote_types(z.dtype, candidates.dtype)
            z, candidates = z.to(dtype), candidates.to(dtype)
        with full_precision(z.device.type):
            rows, empty = self._dispatch(z, target, candidates, target_candidates, self_offset, names)
        nan = torch.isnan(rows) & ~empty
        has_empty, has_nan = torch.stack([empty.any(), nan.any()]).tolist()
        if has_nan:
            where = nan.nonzero().flatten().tolist()
            raise IConError(f"ICon: the divergence must be a number for every anchor, but it is NaN for anchors "
                            f"[{preview(where)}] ({len(where)} of {len(rows)}) with p = {describe(self.p)} and "
                            f"q = {describe(self.q)}; got NaN from finite inputs (a custom neighbourhood or "
                            f"divergence, or a bug to report).")
        if has_empty:
            if not self.skip_empty_rows and not self.gather:
                where = empty.nonzero().flatten().tolist()
                raise IConError(f"ICon: every row of p must carry mass, but anchors [{preview(where)}] "
                                f"have no neighbour under p ({len(where)} of {len(empty)}); pass "
                                f"skip_empty_rows=True to leave them out of the loss.")
            rows = rows.masked_fill(empty, float("nan"))
        return rows, empty

    def forward(self, z: Tensor, target: Optional[Tensor] = None, candidates: Optional[Tensor] = None,
                target_candidates: Optional[Tensor] = None) -> Tensor:
        if self.symmetric and candidates is None:
            raise fail("ICon", "candidates", "be given when symmetric=True (the other modality)",
                       candidates)
        self._check_sides(candidates, target_candidates)
        if self.gather:
            distributed.check_initialized("ICon", "gather")
        rows, empty = self._rows(z, target, candidates, target_candidates)
        if self.symmetric:
            back = (NAMES[2], NAMES[3], NAMES[0], NAMES[1])
            rows_back, empty_back = self._rows(candidates, target_candidates, z, target, back)
            rows, empty = torch.cat([rows, rows_back]), torch.cat([empty, empty_back])
        if self.gather:
            return distributed.reduce_rows(rows, empty, self.reduction, self.skip_empty_rows)
        if self.reduction == "none":
            return rows
        kept = rows[~empty]
        if kept.numel() == 0:
            raise IConError("ICon: no anchor has a neighbour under p, so the loss is undefined; "
                            f"got {rows.numel()} anchors, all with empty rows.")
        return kept.mean() if self.reduction == "mean" else kept.sum()

    def _check_sides(self, candidates: Optional[Tensor], target_candidates: Optional[Tensor]) -> None:
        """p and q must describe the same candidates: a side whose candidates default to its anchors
        (``y_defaults_to_x``) needs its candidates whenever the other side gets some."""
        if candidates is None:
            targets = self.p.fused_form()
            if isinstance(targets, FusedTargets) and targets.needs_candidates and self.q.y_defaults_to_x:
                raise fail("ICon", "candidates", f"be given when p's candidates are classes (p is "
                           f"{describe(self.p)}): pass the class prototypes as candidates, "
                           f"loss(z, target=labels, candidates=prototypes)", None)
            if target_candidates is not None and self.q.y_defaults_to_x:
                raise fail("ICon", "candidates", f"be given with target_candidates (q = {describe(self.q)} "
                           f"compares z with candidates, with the anchors themselves when they are None)", None)
        elif target_candidates is None and self.p.y_defaults_to_x:
            raise fail("ICon", "target_candidates", f"be given with candidates (p = {describe(self.p)} compares "
                       f"target with target_candidates, with the anchors themselves when they are None)", None)

    def extra_repr(self) -> str:
        div = self.divergence if isinstance(self.divergence, str) else repr(self.divergence)
        return (f"divergence={div!r}, reduction={self.reduction!r}, symmetric={self.symmetric}, "
                f"skip_empty_rows={self.skip_empty_rows}, tile_size={self.tile_size!r}, "
                f"gather={self.gather}")


def _check_learned(name: str, z: Tensor) -> None:
    if not isinstance(z, Tensor):
        raise fail("ICon", name, "be a torch.Tensor", type(z).__name__)
    if z.dim() == 0 or z.shape[0] == 0:
        raise fail("ICon", name, "be a non-empty batch", z)
    if not z.is_floating_point():
        raise fail("ICon", name, "be a floating-point tensor (what q learns)", z)
    if bool(torch.isnan(z).any()) or bool((z == float("inf")).any()):
        raise IConError(f"ICon: {name} must be free of NaN and +inf; got a tensor of shape "
                        f"{tuple(z.shape)} containing {'NaN' if torch.isnan(z).any() else '+inf'}.")
