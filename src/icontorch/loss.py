"""The one equation: ``L = (1/n) sum_i D( p(.|i) || q(.|i) )`` (I-Con, Eq. 1)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from . import distributed, divergences
from ._validation import IConError, check_choice, check_index, fail
from .distances import dot_product
from .divergences import DIVERGENCES
from .neighborhoods import KNN, CrossModal, DataToClass, Gaussian, PositivePairs, SameLabel, StudentT
from .neighborhoods.base import Neighborhood, NeighborhoodLike, as_neighborhood
from .neighborhoods.spatial import METRICS
from .neighborhoods.sparse import SparseNeighbors
from .tiled import (Engine, Kernel, Targets, at_least_float32, cross_entropy_rows,
                    full_precision, match_lists)
from .transforms import MixUniform

__all__ = ["ICon"]

Divergence = Union[str, Callable[[Tensor, Tensor], Tensor]]

AUTO_TILE_SIZE = 2048
"""Tile edge used by ``tile_size="auto"`` once the (n, m) matrix would pass ``AUTO_TILE_ENTRIES``."""
AUTO_TILE_ENTRIES = 8192 * 8192
_KNN_ENTRIES = 1 << 25  # similarities per block when KNN targets are turned into lists
_IDS = (PositivePairs, SameLabel, CrossModal)
_STRUCTURED_P = _IDS + (DataToClass, KNN, SparseNeighbors)


class ICon(nn.Module):
    """``L = (1/n) sum_i D( p(.|i) || q(.|i) )``, the I-Con loss (Eq. 1 of the paper).

    ``q`` sees what is learned (embeddings, log cluster assignments, table rows); ``p`` sees the
    supervision (features, labels, item indices) or is a precomputed (n, m) log-probability
    matrix. Choosing p and q picks the method (``icontorch.methods``).

    When p is structured (``PositivePairs``, ``SameLabel``, ``CrossModal``, ``DataToClass``,
    ``KNN``, ``SparseNeighbors``, each optionally ``mix_uniform``-ed), q is a kernel softmax
    (``Gaussian``, ``StudentT``, optionally ``mix_uniform``-ed) and the divergence is ``"kl"`` or
    ``"cross_entropy"``, the loss runs on a fused engine (:mod:`icontorch.tiled`) that never
    builds p and, when tiled, never builds the (n, m) matrix at all. Any other p, q or
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
            ``AUTO_TILE_SIZE`` once n * m passes ``AUTO_TILE_ENTRIES``; the composed path when
            p, q or the divergence have no structured form. ``None``: never tile. An integer
            >= 1: always tile, in blocks of ``tile_size`` anchors by ``tile_size`` candidates
            (memory O(tile_size^2 + (n + m) d)); p, q and the divergence must then have a
            structured form, or :class:`IConError` says why not.
        gather: score the local anchors against the candidates of every rank of the initialised
            ``torch.distributed`` process group (a gradient-carrying all-gather). The local loss
            is scaled so that its mean over ranks is the loss of one process on the concatenated
            batch, and DDP's gradient averaging gives that loss's gradient (see
            :mod:`icontorch.distributed`). ``reduction="none"`` returns the local rows.

    Shape:
        ``forward(z, target, candidates=None, target_candidates=None)``: ``z`` (n, ...) and
        ``target`` (n, ...) describe the anchors; ``candidates`` (m, ...) and
        ``target_candidates`` the candidates, defaulting to the anchors themselves.
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
        self.symmetric = bool(symmetric)
        self.skip_empty_rows = bool(skip_empty_rows)
        if not (tile_size is None or tile_size == "auto"
                or (isinstance(tile_size, int) and not isinstance(tile_size, bool) and tile_size >= 1)):
            raise fail("ICon", "tile_size", "be an integer >= 1, 'auto' or None", tile_size)
        self.tile_size = tile_size
        if not isinstance(gather, bool):
            raise fail("ICon", "gather", "be True or False", gather)
        self.gather = gather

    def _divergence_fn(self) -> Callable[[Tensor, Tensor], Tensor]:
        return DIVERGENCES[self.divergence] if isinstance(self.divergence, str) else self.divergence

    def log_p(self, target: Optional[Tensor], target_candidates: Optional[Tensor] = None) -> Tensor:
        """The (n, m) supervisory log-probabilities ``log p(j|i)``."""
        return self.p(target, target_candidates)

    def log_q(self, z: Tensor, candidates: Optional[Tensor] = None) -> Tensor:
        """The (n, m) learned log-probabilities ``log q(j|i)``."""
        _check_learned("z", z)
        if candidates is not None:
            _check_learned("candidates", candidates)
        return self.q(z, candidates)

    def structured_form(self) -> Tuple[Optional["_Structured"], str]:
        """The fused engine's view of (p, q, divergence), or None and the reason it has none."""
        return _structured(self.p, self.q, self.divergence)

    def _composed_rows(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
                       target_candidates: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        log_q = self.log_q(z, candidates)
        log_p = self.log_p(target, target_candidates)
        if log_p.shape != log_q.shape:
            raise _shape_error(tuple(log_p.shape), tuple(log_q.shape))
        log_p = log_p.to(dtype=log_q.dtype, device=log_q.device)
        empty = (log_p == float("-inf")).all(dim=1)
        if bool(empty.any()):
            # Dropped rows are evaluated on a placeholder (p = q = 1), so that a divergence that is
            # infinite there (reverse_kl) cannot send NaN gradients (0 * inf) into the kept rows.
            log_p = log_p.masked_fill(empty[:, None], 0.0)
            log_q = log_q.masked_fill(empty[:, None], 0.0)
        return self._divergence_fn()(log_p, log_q), empty

    def _dispatch(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
                  target_candidates: Optional[Tensor], self_offset: Optional[int]) -> Tuple[Tensor, Tensor]:
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
            rows, empty = self._composed_rows(z, target, candidates, target_candidates)
        else:
            n, m = z.shape[0], (z if candidates is None else candidates).shape[0]
            if isinstance(self.tile_size, int):
                tile, keep = self.tile_size, False
            elif self.tile_size == "auto" and n * m > AUTO_TILE_ENTRIES:
                tile, keep = AUTO_TILE_SIZE, False
            else:
                tile, keep = max(n, m), True
            rows, empty = form.rows(z, target, candidates, target_candidates, self_offset, tile, keep)
        return rows, empty

    def _rows(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
              target_candidates: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Per-anchor divergences (NaN where dropped) and the mask of anchors with an empty p row."""
        _check_learned("z", z)
        if candidates is not None:
            _check_learned("candidates", candidates)
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
        with full_precision(z.device.type):
            rows, empty = self._dispatch(z, target, candidates, target_candidates, self_offset)
        if bool(empty.any()):
            if not self.skip_empty_rows and not self.gather:
                where = empty.nonzero().flatten().tolist()
                shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
                raise IConError(f"ICon: every row of p must carry mass, but anchors [{shown}] have no "
                                f"neighbour under p ({len(where)} of {len(empty)}); pass "
                                f"skip_empty_rows=True to leave them out of the loss.")
            rows = rows.masked_fill(empty, float("nan"))
        return rows, empty

    def forward(self, z: Tensor, target: Optional[Tensor] = None, candidates: Optional[Tensor] = None,
                target_candidates: Optional[Tensor] = None) -> Tensor:
        if self.symmetric and candidates is None:
            raise fail("ICon", "candidates", "be given when symmetric=True (the other modality)",
                       candidates)
        if self.gather:
            distributed.check_initialized("ICon", "gather")
        rows, empty = self._rows(z, target, candidates, target_candidates)
        if self.symmetric:
            rows_back, empty_back = self._rows(candidates, target_candidates, z, target)
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

    def extra_repr(self) -> str:
        div = self.divergence if isinstance(self.divergence, str) else repr(self.divergence)
        return (f"divergence={div!r}, reduction={self.reduction!r}, symmetric={self.symmetric}, "
                f"skip_empty_rows={self.skip_empty_rows}, tile_size={self.tile_size!r}, "
                f"gather={self.gather}")


def _shape_error(p_shape: tuple, q_shape: tuple) -> IConError:
    return IConError(f"ICon: p and q must give matrices of the same shape; got p {p_shape} from "
                     f"target and q {q_shape} from z.")


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


def _structured(p: Neighborhood, q: Neighborhood, divergence: Divergence) -> Tuple[Optional["_Structured"], str]:
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
    return _Structured(base, alpha, kernel, beta, kl), ""


class _Structured:
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
            raise _shape_error(p_shape, (z.shape[0], y.shape[0]))
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
