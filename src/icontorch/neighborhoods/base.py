"""The Neighborhood contract, shared by every p and every q.

A neighbourhood is a row-stochastic conditional distribution ``p(j|i)`` stored as
log-probabilities:

* ``forward(x, y=None) -> (n, m)`` log-probabilities. ``x`` holds the n anchors. ``y`` holds the
  m candidates, shared by all anchors, or, with one more dimension, a separate set of m
  candidates per anchor (shape ``(n, m, ...)``).
* With ``y=None`` the candidates are the anchors themselves and ``j = i`` is excluded, unless
  ``include_self`` is true (the cluster kernel, Def. 2 of the paper, includes it by default).
  A neighbourhood whose candidates are something else when ``y`` is None (classes, the columns
  of x, a fixed matrix) says so with ``y_defaults_to_x = False``; :class:`~icontorch.ICon` then
  lets its caller leave out the candidates of that side.
* An :class:`~icontorch.IConError` names ``x`` and ``y``; inside :func:`called_as` (ICon calls
  p and q so) it names them as the caller does.
* Every row log-sum-exps to 0, except that a discrete neighbourhood may return a row that is
  entirely ``-inf`` when an anchor has no neighbour at all (a SupCon anchor whose label occurs
  once). :class:`~icontorch.ICon` decides what happens to such rows.
* ``-inf`` marks an impossible neighbour; 0 * log 0 is exactly 0 in every divergence.
* Kernel families also expose ``logits(x, y)``: the unnormalised log-weights before the
  diagonal is masked, so that a loss can be computed tile by tile.
* ``fused_form()`` is the one hook by which a neighbourhood tells the fused engine
  (:mod:`icontorch.engine`) how to compute it without its (n, m) matrix: a :class:`FusedTargets`
  (p uniform over a support ``S_i``, alpha-mixed), a :class:`FusedKernel` (q a kernel softmax,
  beta-mixed), or None (the default: the composed path). A built-in form holds only while the
  methods it describes are inherited unchanged: a subclass that rewrites ``logits`` or
  ``forward`` gets None, and may return its own form instead.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Callable, Iterator, Optional, Union

import torch
from torch import Tensor, nn

from .._validation import IConError, check_candidates, check_features, fail
from .kernels import KernelProfile

__all__ = ["Neighborhood", "KernelNeighborhood", "Precomputed", "FromCallable",
           "as_neighborhood", "log_normalize", "mask_diagonal", "Support", "FusedTargets", "FusedKernel",
           "called_as", "check_magnitude"]


Number = Union[float, Tensor]
"""A scalar parameter: a float, or a one-element tensor (an ``nn.Parameter`` when it is learned)."""


def show_number(value: Optional[Number]) -> str:
    """A parameter for ``extra_repr``: the float, or ``tensor(v)`` for a (learnable) tensor."""
    return f"tensor({float(value.detach()):.6g})" if isinstance(value, Tensor) else repr(value)


_NAME_SLOT = re.compile(r"^(?P<who>[^:]+): (?P<name>x|y) (?P<rule>must .*?)(?P<got>; got .*)?$", re.S)


def _renamed(message: str, names: dict) -> str:
    """``"Gaussian: x must ... of x; got v."`` with x and y replaced by ``names`` in the name and the rule."""
    match = _NAME_SLOT.match(message)
    if match is None:
        return message
    rule = re.sub(r"\b[xy]\b", lambda word: names[word.group(0)], match.group("rule"))
    return f"{match.group('who')}: {names[match.group('name')]} {rule}{match.group('got') or ''}"


@contextlib.contextmanager
def called_as(x: str, y: str) -> Iterator[None]:
    """Within this block, an :class:`IConError` of a neighbourhood that names its argument ``x`` or
    ``y`` names ``x`` and ``y`` as the caller calls them instead (``ICon`` calls q's x ``z`` and
    p's x ``target``). The message is rewritten in place: the error keeps its traceback."""
    try:
        yield
    except IConError as error:
        if error.args and isinstance(error.args[0], str):
            error.args = (_renamed(error.args[0], {"x": x, "y": y}),) + error.args[1:]
        raise


def check_magnitude(who: str, name: str, x: Tensor, factor: float = 1.0) -> None:
    """``4 factor max_i ||x_i||^2`` must be finite in x's dtype: then the squared distances and dot
    products of x (those of the expansion ``|x|^2 + |y|^2 - 2 x.y`` too), times ``factor``, are."""
    limit = torch.finfo(x.dtype).max
    top = float(x.detach().pow(2).sum(-1).max())
    if not 4.0 * top * factor < limit:
        biggest = float(x.detach().abs().max())
        scaled = "" if factor <= 1.0 else f" (times the kernel's scale {factor:.3g})"
        raise IConError(f"{who}: {name} must have squared distances{scaled} representable in {x.dtype} "
                        f"(below {limit:.3g}); got values up to {biggest:.3g}.")


def log_normalize(logits: Tensor) -> Tensor:
    """Rows minus their log-sum-exp; a row that is entirely ``-inf`` stays ``-inf``."""
    lse = torch.logsumexp(logits, dim=-1, keepdim=True)
    lse = torch.where(torch.isfinite(lse), lse, torch.zeros_like(lse))
    return logits - lse


def mask_diagonal(logits: Tensor) -> Tensor:
    """Set ``logits[i, i] = -inf`` (out of place, so autograd is unaffected elsewhere)."""
    n, m = logits.shape
    eye = torch.eye(n, m, dtype=torch.bool, device=logits.device)
    return logits.masked_fill(eye, float("-inf"))


def _row_deviation(log_p: Tensor) -> float:
    lse = torch.logsumexp(log_p, dim=-1)
    lse = lse[torch.isfinite(lse)]
    return float(lse.abs().max()) if lse.numel() else 0.0


def _tolerance(dtype: torch.dtype) -> float:
    return {torch.float64: 1e-6, torch.float32: 1e-4}.get(dtype, 2e-2)


@dataclass(frozen=True)
class Support:
    """The sets ``S_i`` of a uniform p over m candidates, in one of two forms.

    ``lists``: (n, k) candidate positions padded with -1. Or ``anchor_ids`` (n,) and
    ``candidate_ids`` (m,): ``S_i`` holds the candidates whose id equals anchor i's.
    """

    n_candidates: int
    lists: Optional[Tensor] = None
    anchor_ids: Optional[Tensor] = None
    candidate_ids: Optional[Tensor] = None


SupportFn = Callable[[Tensor, Optional[Tensor], Optional[int], int], Support]


@dataclass(frozen=True)
class FusedTargets:
    """``p(j|i) = (1 - alpha) 1[j in S_i] / |S_i| + alpha 1[j in C_i] / N_i``: p for the fused engine.

    Args:
        support: ``support(x, y, self_offset, chunk) -> Support``: ``S_i`` of anchors ``x``
            among candidates ``y`` (None: the anchors), validated as ``forward`` validates; the
            candidate ``self_offset + i`` is anchor i, which p never picks (None: none is).
        alpha: the uniform mass (:func:`~icontorch.mix_uniform`).
        include_self: whether ``S_i`` may hold the anchor itself (then q must include it too).
        ids: whether ``y`` holds ids (then it must be 1-D: one id per candidate).
        needs_candidates: why the anchors cannot be their own candidates ("" if they can).
    """

    support: SupportFn
    alpha: float = 0.0
    include_self: bool = False
    ids: bool = False
    needs_candidates: str = ""

    def refuses(self, own: bool, target_candidates: Optional[Tensor]) -> str:
        """Why these inputs need the composed path ("" when the engine takes them)."""
        if self.needs_candidates:
            return self.needs_candidates if own else ""
        if not own and target_candidates is None:
            return "candidates come without target_candidates"
        if self.ids and isinstance(target_candidates, Tensor) and target_candidates.dim() != 1:
            return "target_candidates are per-anchor id sets (2-D)"
        return ""


@dataclass(frozen=True)
class FusedKernel:
    """``q(j|i) = (1 - beta) exp(l_ij) / sum_k exp(l_ik) + beta / N_i``, ``l_ij`` the kernel's logits.

    Args:
        profile: the log-weight ``phi`` (:class:`~icontorch.neighborhoods.kernels.KernelProfile`).
        metric: ``"squared_euclidean"`` (``l = phi(d)``), or ``"cosine"`` / ``"dot"`` for a
            Gaussian profile (``l = scale * s``).
        include_self: whether q keeps ``j = i`` when the anchors are the candidates.
        check: ``check(z, candidates)`` validates the inputs as ``forward`` does.
        beta: the uniform mass (:func:`~icontorch.mix_uniform` on q).
    """

    profile: KernelProfile
    metric: str
    include_self: bool
    check: Callable[[Tensor, Optional[Tensor]], None]
    beta: float = 0.0


class Neighborhood(nn.Module):
    """Base class of every neighbourhood distribution ``p(j|i)``; see the module docstring."""

    include_self: bool = False
    y_defaults_to_x: bool = True

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        raise NotImplementedError(f"{type(self).__name__} must implement forward(x, y=None).")

    def fused_form(self) -> Optional[Union[FusedTargets, FusedKernel]]:
        """How the fused engine computes this neighbourhood; None (the default): it cannot."""
        return None

    def _keeps(self, owner: type, *methods: str) -> bool:
        """Whether this object's class inherits ``owner``'s ``methods`` unchanged, so that
        ``owner``'s fused form describes it (a subclass that rewrites them has none)."""
        return all(getattr(type(self), name) is getattr(owner, name) for name in methods)


class KernelNeighborhood(Neighborhood):
    """A neighbourhood ``p(j|i) = exp(l_ij) / sum_k exp(l_ik)`` given by log-weights ``l = logits``.

    Subclasses implement :meth:`logits`; normalisation and the self mask live here.
    """

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        """Unnormalised log-weights ``(n, m)``; with ``y=None``, candidates are ``x`` (unmasked)."""
        raise NotImplementedError(f"{type(self).__name__} must implement logits(x, y=None).")

    def _check(self, x: Tensor, y: Optional[Tensor]) -> None:
        who = type(self).__name__
        check_features(who, "x", x)
        if y is not None:
            check_features(who, "y", y, ndim=(2, 3))
        check_candidates(who, x, y)
        self._check_parameters(x.dtype)
        factor = self._magnitude_factor()
        if factor is not None:
            check_magnitude(who, "x", x, factor)
            if y is not None:
                check_magnitude(who, "y", y, factor)

    def _check_parameters(self, dtype: torch.dtype) -> None:
        """Validate the parameters as they are now (a learned one may have left its range); no-op here."""

    def _magnitude_factor(self) -> Optional[float]:
        """The factor ``c`` of :func:`check_magnitude` for kernels whose log-weights are up to ``c``
        times the squared distances or dot products of the inputs (None: no check, the default)."""
        return None

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        self._check(x, y)
        logits = self.logits(x, y)
        if y is None and not self.include_self:
            logits = mask_diagonal(logits)
        return log_normalize(logits)


class Precomputed(Neighborhood):
    """A fixed ``(n, m)`` matrix of log-probabilities ``log p(j|i)``, returned as given.

    Args:
        log_p: (n, m) log-probabilities; each row log-sum-exps to 0 or is entirely ``-inf``.
        include_self: whether the diagonal of a square ``log_p`` is a real candidate. ``None``
            infers it: false when ``log_p`` is square with an all ``-inf`` diagonal, else true.
            It only matters to transforms such as :func:`~icontorch.mix_uniform`.
    """

    def __init__(self, log_p: Tensor, include_self: Optional[bool] = None) -> None:
        super().__init__()
        who = "Precomputed"
        if not isinstance(log_p, Tensor) or log_p.dim() != 2:
            raise fail(who, "log_p", "be a 2-D tensor of log-probabilities", log_p)
        if log_p.numel() == 0 or not log_p.is_floating_point():
            raise fail(who, "log_p", "be a non-empty floating-point tensor", log_p)
        if torch.isnan(log_p).any() or (log_p == float("inf")).any():
            raise fail(who, "log_p", "contain no NaN or +inf", log_p)
        deviation = _row_deviation(log_p)
        if deviation > _tolerance(log_p.dtype):
            raise IConError(f"{who}: log_p must hold log-probabilities whose rows log-sum-exp to 0; "
                            f"got a row off by {deviation:.3g} (did you pass probabilities?).")
        square = log_p.shape[0] == log_p.shape[1]
        if include_self is None:
            include_self = not (square and bool((log_p.diagonal() == float("-inf")).all()))
        if not include_self and not square:
            raise fail(who, "include_self", "be true for a non-square log_p", include_self)
        self.register_buffer("log_p", log_p)
        self.include_self = include_self
        self.y_defaults_to_x = False  # the candidates are the columns of log_p

    def forward(self, x: Optional[Tensor] = None, y: Optional[Tensor] = None) -> Tensor:
        if x is not None and x.shape[0] != self.log_p.shape[0]:
            raise fail("Precomputed", "x", f"hold the {self.log_p.shape[0]} anchors of log_p", x)
        return self.log_p

    def extra_repr(self) -> str:
        return f"log_p=<{tuple(self.log_p.shape)}>, include_self={self.include_self}"


class FromCallable(Neighborhood):
    """Wrap any ``fn(x, y) -> (n, m)`` log-probabilities as a neighbourhood, checking its output.

    Args:
        fn: a callable following the Neighborhood contract.
        include_self: whether ``fn`` puts mass on ``j = i`` when ``y`` is None.
    """

    def __init__(self, fn: Callable[..., Tensor], include_self: bool = False) -> None:
        super().__init__()
        if not callable(fn):
            raise fail("FromCallable", "fn", "be callable", fn)
        self.fn = fn
        self.include_self = bool(include_self)
        self.y_defaults_to_x = False  # unknown: fn decides

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        out = self.fn(x, y)
        if not isinstance(out, Tensor) or out.dim() != 2 or not out.is_floating_point():
            raise fail("FromCallable", "fn(x, y)", "return a 2-D floating tensor of log-probabilities", out)
        deviation = _row_deviation(out.detach())
        if deviation > _tolerance(out.dtype) or torch.isnan(out).any():
            raise IConError(f"FromCallable: fn(x, y) must return log-probabilities whose rows "
                            f"log-sum-exp to 0; got a row off by {deviation:.3g}.")
        return out

    def extra_repr(self) -> str:
        return f"fn={getattr(self.fn, '__name__', repr(self.fn))}, include_self={self.include_self}"


NeighborhoodLike = Union[Neighborhood, Tensor, Callable[..., Tensor]]


def as_neighborhood(obj: NeighborhoodLike, who: str = "ICon", name: str = "p") -> Neighborhood:
    """A Neighborhood as is; a tensor as :class:`Precomputed`; a callable as :class:`FromCallable`."""
    if isinstance(obj, Neighborhood):
        return obj
    if isinstance(obj, Tensor):
        return Precomputed(obj)
    if callable(obj):
        return FromCallable(obj)
    raise fail(who, name, "be a Neighborhood, an (n, m) log-probability tensor or a callable", obj)
