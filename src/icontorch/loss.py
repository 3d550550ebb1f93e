"""The one equation: ``L = (1/n) sum_i D( p(.|i) || q(.|i) )`` (I-Con, Eq. 1)."""

from __future__ import annotations

from typing import Callable, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ._validation import IConError, check_choice, fail
from .divergences import DIVERGENCES
from .neighborhoods.base import Neighborhood, NeighborhoodLike, as_neighborhood

__all__ = ["ICon"]

Divergence = Union[str, Callable[[Tensor, Tensor], Tensor]]


class ICon(nn.Module):
    """``L = (1/n) sum_i D( p(.|i) || q(.|i) )``, the I-Con loss (Eq. 1 of the paper).

    ``q`` sees what is learned (embeddings, log cluster assignments, table rows); ``p`` sees the
    supervision (features, labels, item indices) or is a precomputed (n, m) log-probability
    matrix. Choosing p and q picks the method (``icontorch.methods``).

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

    Shape:
        ``forward(z, target, candidates=None, target_candidates=None)``: ``z`` (n, ...) and
        ``target`` (n, ...) describe the anchors; ``candidates`` (m, ...) and
        ``target_candidates`` the candidates, defaulting to the anchors themselves.
    """

    def __init__(self, p: NeighborhoodLike, q: NeighborhoodLike, divergence: Divergence = "kl",
                 reduction: str = "mean", symmetric: bool = False,
                 skip_empty_rows: bool = False) -> None:
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

    def _rows(self, z: Tensor, target: Optional[Tensor], candidates: Optional[Tensor],
              target_candidates: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Per-anchor divergences and the mask of anchors whose p row is empty."""
        log_q = self.log_q(z, candidates)
        log_p = self.log_p(target, target_candidates)
        if log_p.shape != log_q.shape:
            raise IConError(f"ICon: p and q must give matrices of the same shape; got p "
                            f"{tuple(log_p.shape)} from target and q {tuple(log_q.shape)} from z.")
        log_p = log_p.to(dtype=log_q.dtype, device=log_q.device)
        empty = (log_p == float("-inf")).all(dim=1)
        if bool(empty.any()):
            if not self.skip_empty_rows:
                where = empty.nonzero().flatten().tolist()
                shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
                raise IConError(f"ICon: every row of p must carry mass, but anchors [{shown}] have no "
                                f"neighbour under p ({len(where)} of {len(empty)}); pass "
                                f"skip_empty_rows=True to leave them out of the loss.")
            # Dropped rows are evaluated on a placeholder (p = q = 1), so that a divergence that is
            # infinite there (reverse_kl) cannot send NaN gradients (0 * inf) into the kept rows.
            log_p = log_p.masked_fill(empty[:, None], 0.0)
            log_q = log_q.masked_fill(empty[:, None], 0.0)
            return self._divergence_fn()(log_p, log_q).masked_fill(empty, float("nan")), empty
        return self._divergence_fn()(log_p, log_q), empty

    def forward(self, z: Tensor, target: Optional[Tensor] = None, candidates: Optional[Tensor] = None,
                target_candidates: Optional[Tensor] = None) -> Tensor:
        if self.symmetric and candidates is None:
            raise fail("ICon", "candidates", "be given when symmetric=True (the other modality)",
                       candidates)
        rows, empty = self._rows(z, target, candidates, target_candidates)
        if self.symmetric:
            rows_back, empty_back = self._rows(candidates, target_candidates, z, target)
            rows, empty = torch.cat([rows, rows_back]), torch.cat([empty, empty_back])
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
                f"skip_empty_rows={self.skip_empty_rows}")


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
