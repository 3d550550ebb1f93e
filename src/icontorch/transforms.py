"""Named transforms: each takes a neighbourhood and returns a normalised neighbourhood.

* :func:`mix_uniform` -- alpha-debiasing (section 3.3.2 of the paper): ``(1 - alpha) p + alpha / N``.
* :func:`symmetrize` -- t-SNE's joint ``P_ij = (p_j|i + p_i|j) / 2n`` over ordered pairs.
* :func:`joint` -- a kernel normalised over all pairs instead of per row (t-SNE's joint Q).
* :func:`propagate` -- neighbour propagation (section 3.3.3 of the paper): walks of length 1..steps.

They are ordinary modules, composed by nesting (``mix_uniform(propagate(KNN(3), 2), 0.6)``),
never by operators. :class:`MixUniform` passes its base's fused form on, alpha-mixed
(``Neighborhood.fused_form()``), so a debiased structured p or kernel q stays on the fused engine.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Optional, Union

import torch
from torch import Tensor

from ._validation import check_choice, check_int, check_probability, fail
from .neighborhoods.base import (
    FusedKernel,
    FusedTargets,
    KernelNeighborhood,
    Neighborhood,
    NeighborhoodLike,
    as_neighborhood,
    log_normalize,
    mask_diagonal,
)

__all__ = ["MixUniform", "Symmetrize", "Joint", "Propagate",
           "mix_uniform", "symmetrize", "joint", "propagate"]

_NEG_INF = float("-inf")


def _logaddexp(a: Tensor, b: Tensor) -> Tensor:
    """``log(exp(a) + exp(b))`` whose gradient stays finite where both are ``-inf``."""
    both = (a == _NEG_INF) & (b == _NEG_INF)
    out = torch.logaddexp(a.masked_fill(both, 0.0), b.masked_fill(both, 0.0))
    return out.masked_fill(both, _NEG_INF)


def _self_excluded(base: Neighborhood, y: Optional[Tensor]) -> bool:
    return y is None and not base.include_self


def _square(who: str, base: Neighborhood, x: Optional[Tensor], y: Optional[Tensor], why: str) -> Tensor:
    """``base(x)``, which must be an (n, n) matrix over the anchors themselves (``y`` None)."""
    if y is not None:
        raise fail(who, "y", f"be None ({why})", y)
    log_p = base(x, None)
    if log_p.shape[0] != log_p.shape[1]:
        raise fail(who, "base(x)", "be a square (n, n) matrix", log_p)
    return log_p


class MixUniform(Neighborhood):
    """``p~(j|i) = (1 - alpha) p(j|i) + alpha / N``: alpha-debiasing by uniform mixing (paper section 3.3.2).

    N is the number of candidates of anchor i: all m columns, minus ``j = i`` when the base
    neighbourhood excludes self (for a joint row from :func:`symmetrize` or :func:`joint`, minus
    the n self pairs ``(i, i)``). On class targets this is label smoothing; on either side of
    the loss (p, q, or both, as in Fig. 6) it gives each "negative" mass ``alpha / N``. An anchor
    with no neighbour in the base stays without neighbour.

    Args:
        base: the neighbourhood to debias (a Neighborhood, a log-probability tensor or a callable).
        alpha: mixing weight in [0, 1]; 0 returns ``base`` exactly, 1 the uniform distribution.
    """

    def __init__(self, base: NeighborhoodLike, alpha: float) -> None:
        super().__init__()
        self.base = as_neighborhood(base, "MixUniform", "base")
        self.alpha = check_probability("MixUniform", "alpha", alpha)
        self.include_self, self.y_defaults_to_x = self.base.include_self, self.base.y_defaults_to_x

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        log_p = self.base(x, y)
        if self.alpha == 0.0:
            return log_p
        support = torch.ones_like(log_p, dtype=torch.bool)
        if _self_excluded(self.base, y):
            if log_p.shape[0] == log_p.shape[1]:
                support.fill_diagonal_(False)
            elif isinstance(self.base, (Symmetrize, Joint)):  # one row over the n*n ordered pairs
                n = math.isqrt(log_p.shape[1])
                support = ~torch.eye(n, dtype=torch.bool, device=log_p.device).reshape(1, -1)
        empty = (log_p == _NEG_INF).all(dim=1, keepdim=True)
        support = support & ~empty
        n_support = support.sum(1, keepdim=True).clamp_min(1).to(log_p.dtype)
        log_uniform = math.log(self.alpha) - n_support.log()
        log_keep = math.log1p(-self.alpha) if self.alpha < 1.0 else _NEG_INF
        mixed = _logaddexp(log_p + log_keep, log_uniform.expand_as(log_p))
        return mixed.masked_fill(~support, _NEG_INF)

    def fused_form(self) -> Optional[Union[FusedTargets, FusedKernel]]:
        """The base's fused form with the uniform mass ``alpha`` (once: a base mixed already has none)."""
        form = self.base.fused_form() if self._keeps(MixUniform, "forward") else None
        if isinstance(form, FusedTargets) and form.alpha == 0.0:
            return dataclasses.replace(form, alpha=self.alpha)
        if isinstance(form, FusedKernel) and form.beta == 0.0:
            return dataclasses.replace(form, beta=self.alpha)
        return None

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


class Symmetrize(Neighborhood):
    """``P_ij = (p(j|i) + p(i|j)) / sum_kl (p(l|k) + p(k|l))``, returned as a (1, n*n) row.

    t-SNE's joint input distribution (van der Maaten & Hinton 2008; for conditional rows the
    normaliser is ``2n``). The result is one anchor whose neighbour space is the n*n ordered
    pairs, the form in which the joint t-SNE objective is an I-Con loss. It is not idempotent:
    its output is that (1, n*n) row, not an (n, n) matrix, so ``symmetrize(symmetrize(p))``
    raises :class:`~icontorch.IConError`. A base whose (n, n) matrix is already symmetric comes
    back rescaled to total mass 1 (a symmetric conditional P, whose rows and columns sum to 1,
    gives ``P / n``).

    Args:
        base: the conditional neighbourhood (n, n) to symmetrise; ``y`` must be None.
    """

    def __init__(self, base: NeighborhoodLike) -> None:
        super().__init__()
        self.base = as_neighborhood(base, "Symmetrize", "base")
        self.include_self, self.y_defaults_to_x = self.base.include_self, self.base.y_defaults_to_x

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        log_p = _square("Symmetrize", self.base, x, y, "a joint distribution pairs the anchors")
        log_sum = _logaddexp(log_p, log_p.T)
        # Cells (i, j) and (j, i) may round differently (vectorised and strided paths): mirror the
        # upper triangle so that the joint is exactly symmetric.
        upper = torch.ones_like(log_sum, dtype=torch.bool).triu()
        log_sum = torch.where(upper, log_sum, log_sum.T)
        return log_normalize(log_sum.reshape(1, -1))


class Joint(Neighborhood):
    """``Q_ij = w_ij / sum_{k != l} w_kl``, returned as a (1, n*m) row: a kernel normalised over pairs.

    t-SNE's joint output distribution, with ``w = exp(logits)`` of a kernel (``Joint(StudentT(1))``
    is the Cauchy ``Q`` of t-SNE). Self pairs are excluded unless the kernel includes self.

    Args:
        base: a kernel neighbourhood exposing ``logits(x, y)``.
    """

    def __init__(self, base: KernelNeighborhood) -> None:
        super().__init__()
        if not isinstance(base, KernelNeighborhood):
            raise fail("Joint", "base", "be a kernel neighbourhood with logits(x, y)", base)
        self.base = base
        self.include_self, self.y_defaults_to_x = base.include_self, base.y_defaults_to_x

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        self.base._check(x, y)
        logits = self.base.logits(x, y)
        if _self_excluded(self.base, y):
            logits = mask_diagonal(logits)
        return log_normalize(logits.reshape(1, -1))


class Propagate(Neighborhood):
    """``p~ ∝ P + P^2 + ... + P^steps`` ("sum"), or uniform over ``1[P + ... + P^steps > 0]`` ("reach").

    Neighbour propagation (section 3.3.3 of the paper): random walks of length up to ``steps``
    on the graph whose transition matrix is the base neighbourhood, rows renormalised. With
    ``steps=1``, ``"sum"`` returns the base (up to rounding) and ``"reach"`` the uniform
    distribution over the base's support, ``1[p(j|i) > 0] / #{k : p(k|i) > 0}`` (the base itself
    only when it is uniform over its support, as :class:`~icontorch.KNN` is). On a kNN graph, the
    paper's "s-walks" read as ``steps = s + 1``. Self (reached by returning walks) is excluded
    unless the base includes self. Meant for targets: it builds dense (n, n) matrix powers of
    the batch.

    Args:
        base: the neighbourhood (n, n) to propagate; ``y`` must be None.
        steps: the longest walk, >= 1.
        mode: ``"sum"`` weights nodes by walk probability; ``"reach"`` is uniform over reachable nodes.
    """

    def __init__(self, base: NeighborhoodLike, steps: int, mode: str = "sum") -> None:
        super().__init__()
        self.base = as_neighborhood(base, "Propagate", "base")
        self.steps = check_int("Propagate", "steps", steps, 1)
        self.mode = check_choice("Propagate", "mode", mode, ("sum", "reach"))
        self.include_self, self.y_defaults_to_x = self.base.include_self, self.base.y_defaults_to_x

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        transition = _square("Propagate", self.base, x, y, "walks run on the anchors' own graph").exp()
        power, total = transition, transition
        for _ in range(self.steps - 1):
            power = power @ transition
            total = total + power
        if self.mode == "reach":
            log_w = torch.zeros_like(total).masked_fill(total <= 0, _NEG_INF)
        else:
            log_w = total.log()
        if not self.include_self:
            log_w = mask_diagonal(log_w)
        return log_normalize(log_w)

    def extra_repr(self) -> str:
        return f"steps={self.steps}, mode={self.mode!r}"


def mix_uniform(p: NeighborhoodLike, alpha: float) -> MixUniform:
    """alpha-debiasing: ``(1 - alpha) p + alpha / N`` (see :class:`MixUniform`)."""
    return MixUniform(p, alpha)


def symmetrize(p: NeighborhoodLike) -> Symmetrize:
    """t-SNE's joint P ``(p_j|i + p_i|j) / 2n`` as one (1, n*n) row (see :class:`Symmetrize`)."""
    return Symmetrize(p)


def joint(q: KernelNeighborhood) -> Joint:
    """A kernel normalised over all pairs, as one (1, n*m) row (see :class:`Joint`)."""
    return Joint(q)


def propagate(p: NeighborhoodLike, steps: int, mode: str = "sum") -> Propagate:
    """Neighbour propagation over walks of length 1..steps (see :class:`Propagate`)."""
    return Propagate(p, steps, mode)
