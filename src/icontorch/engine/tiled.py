"""Fused and tiled I-Con cross-entropy for a structured p and a kernel-softmax q (DESIGN section 3).

With q a kernel softmax, ``q(j|i) = exp(l_ij) / sum_{k in C_i} exp(l_ik)`` (the Gaussian of Thm 1
and Thm 3, the Student-t of Cor 1), and p uniform over a set ``S_i`` of neighbours (positive
pairs, same label, k nearest neighbours, a list), alpha-mixed with the uniform distribution over
the N_i candidates (section 3.3.2),

    p(j|i) = (1 - alpha) 1[j in S_i] / |S_i| + alpha 1[j in C_i] / N_i,

the cross-entropy needs two sums over candidates per anchor:

    H(p_i, q_i) = lse_i - sum_j p(j|i) l_ij,        lse_i = log sum_{k in C_i} exp(l_ik),

with gradient ``dH/dl_ij = q(j|i) - p(j|i)``. Both sums are accumulated over tiles of anchors and
candidates with an online log-sum-exp, and backward recomputes every tile from the saved lse
(a custom autograd Function), so memory is O(tile^2 + (n + m) d) instead of O(n m). When q is
debiased as well, ``q~ = (1 - beta) q + beta / N``, a second pass gives ``-sum_j p log q~`` once
lse is known, and the gradient is ``q_ij s_i - p_ij r_ij`` with ``r = (1 - beta) q / q~`` and
``s_i = sum_j p_ij r_ij``. Run as one tile that keeps q in memory, the same Function is the fused
dense path. Everything runs in float32 (float64 for float64 inputs), with autocast disabled.
"""

from __future__ import annotations

import contextlib
import math
from typing import ContextManager, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import IConError

__all__ = ["Engine", "Kernel", "Targets", "cross_entropy_rows"]

_NEG_INF = float("-inf")
_MAX_LIST = 64  # id groups up to this size are handled as index lists, larger ones as tile masks
_MASK_ENTRIES = 1 << 22  # rows of a tile mask are built in blocks of about this many entries


def full_precision(device_type: str) -> ContextManager:
    """Autocast off on this device (a no-op context where the device has no autocast)."""
    try:
        return torch.autocast(device_type=device_type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def at_least_float32(x: Optional[Tensor]) -> Optional[Tensor]:
    """bf16 / fp16 tensors in float32; anything else as it is."""
    if isinstance(x, Tensor) and x.dtype in (torch.float16, torch.bfloat16):
        return x.float()
    return x


def _self_cells(offset: Optional[int], i0: int, i1: int, j0: int, j1: int,
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
            cells = _self_cells(self.self_offset, r0, r1, j0, j1, mask.device)
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
            cells = _self_cells(self.self_offset, i0, i1, j0, j1, v.device)
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
            cells = _self_cells(self.self_offset, i0, i1, j0, j1, grad.device)
            if cells is not None:  # the anchor itself carries no alpha mass
                grad[cells] += c_uni[cells[0]] * (1.0 if r is None else r[cells])


def _exp_normalize_(l: Tensor, normalize: bool) -> Tensor:
    """Row log-sum-exp of ``l``, leaving ``exp(l - max)`` in ``l`` (divided by its sum: softmax)."""
    top = l.amax(1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows all -inf in this tile
    total = l.sub_(top[:, None]).exp_().sum(1)
    if normalize:
        l.div_(total[:, None])
    return top + total.log()


class Kernel:
    """The logits of a kernel softmax and their backward, per tile.

    ``"linear"``: ``l = scale * x . y`` (dot product, or cosine on normalised inputs).
    ``"distance"``: ``l = f(d)`` with ``d = ||x - y||^2``: ``f = -scale d`` (Gaussian) or
    ``f = -(dof + 1)/2 log(1 + d / dof)`` (Student-t), with the same floating-point steps as
    :mod:`icontorch.distances` and :mod:`icontorch.neighborhoods.spatial`.
    """

    def __init__(self, kind: str, scale: float = 1.0, dof: Optional[float] = None) -> None:
        self.kind, self.scale, self.dof = kind, scale, dof

    def logits(self, x: Tensor, y: Tensor, xx: Optional[Tensor], yy: Optional[Tensor]) -> Tensor:
        product = x @ y.T
        if self.kind == "linear":
            return product.mul_(self.scale)
        d = (xx[:, None] + yy[None, :]).sub_(product, alpha=2.0).clamp_min_(0.0)
        if self.dof is None:
            return d.mul_(-self.scale)
        return d.div_(self.dof).log1p_().mul_(-0.5 * (self.dof + 1.0))

    def backward(self, grad: Tensor, x: Tensor, y: Tensor, xx: Optional[Tensor],
                 yy: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        """Gradients of ``sum_ij grad_ij l_ij`` with respect to the tile's x and y."""
        if self.kind == "linear":
            return (grad @ y).mul_(self.scale), (grad.T @ x).mul_(self.scale)
        if self.dof is None:
            dl_dd = grad.mul_(-self.scale)
        else:  # dl/dd = -(dof + 1) / 2 / (dof + d)
            d = (xx[:, None] + yy[None, :]).sub_(x @ y.T, alpha=2.0).clamp_min_(0.0)
            dl_dd = grad.mul_(d.add_(self.dof).reciprocal_().mul_(-0.5 * (self.dof + 1.0)))
        gx = (x * dl_dd.sum(1, keepdim=True)).sub_(dl_dd @ y).mul_(2.0)
        gy = (y * dl_dd.sum(0)[:, None]).sub_(dl_dd.T @ x).mul_(2.0)
        return gx, gy


class Engine:
    """One call of the tiled cross-entropy: the kernel, the targets and how to walk the tiles.

    Args:
        kernel: the logits of q.
        targets: the structured p.
        beta: q-side uniform mixing weight (0: plain kernel softmax).
        q_self_offset: candidate ``q_self_offset + i`` is anchor i, excluded from q; None: kept.
        tile: block edge for anchors and candidates.
        keep: compute a single tile and keep q for backward (the fused dense path).
    """

    def __init__(self, kernel: Kernel, targets: Targets, beta: float, q_self_offset: Optional[int],
                 tile: int, keep: bool) -> None:
        self.kernel, self.targets, self.beta = kernel, targets, beta
        self.q_self_offset, self.tile, self.keep = q_self_offset, tile, keep

    def _blocks(self, size: int):
        step = size if self.keep else self.tile
        return [(start, min(size, start + step)) for start in range(0, size, step)]

    def _norms(self, x: Tensor) -> Optional[Tensor]:
        return None if self.kernel.kind == "linear" else x.pow(2).sum(-1)

    def _logits(self, x, y, xx, yy, i0, i1, j0, j1) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
        l = self.kernel.logits(x[i0:i1], y[j0:j1], None if xx is None else xx[i0:i1],
                               None if yy is None else yy[j0:j1])
        cells = _self_cells(self.q_self_offset, i0, i1, j0, j1, l.device)
        return l, cells

    def _q_uniform(self, m: int) -> Tuple[float, float]:
        """``log(1 - beta)`` and ``beta / N`` of the q-side mixing."""
        n_support = m - (self.q_self_offset is not None)
        return (math.log1p(-self.beta) if self.beta < 1.0 else _NEG_INF), self.beta / n_support

    def forward(self, x: Tensor, y: Tensor) -> Tuple[Tensor, Tensor, Tensor, Optional[Tensor]]:
        n, m = x.shape[0], y.shape[0]
        xx, yy = self._norms(x), self._norms(y)
        t = self.targets
        rows, lse, s = x.new_zeros(n), x.new_zeros(n), x.new_zeros(n)
        kept = None
        log_keep, uniform = self._q_uniform(m)
        for i0, i1 in self._blocks(n):
            lse_a = x.new_full((i1 - i0,), _NEG_INF)
            p_logits = x.new_zeros(i1 - i0)
            for j0, j1 in self._blocks(m):
                l, cells = self._logits(x, y, xx, yy, i0, i1, j0, j1)
                if self.beta == 0.0:
                    p_logits += t.dot(l, i0, i1, j0, j1)  # before the self mask: p is 0 there
                if cells is not None:
                    l[cells] = _NEG_INF
                if self.beta == 0.0:  # l is not needed any more: exponentiate it in place
                    lse_a = torch.logaddexp(lse_a, _exp_normalize_(l, normalize=self.keep))
                    kept = l if self.keep else None  # q itself, kept for backward
                else:
                    lse_a = torch.logaddexp(lse_a, torch.logsumexp(l, 1))
                    kept = l if self.keep else None
            lse[i0:i1] = lse_a
            if self.beta == 0.0:
                rows[i0:i1] = t.mass[i0:i1] * lse_a - p_logits
                continue
            for j0, j1 in self._blocks(m):  # second pass: log q~ needs the finished lse
                l = kept if self.keep else self._masked(x, y, xx, yy, i0, i1, j0, j1)
                log_q = l - lse_a[:, None]
                log_q_mixed = torch.logaddexp(log_q + log_keep, log_q.new_tensor(math.log(uniform)))
                rows[i0:i1] -= t.dot(log_q_mixed, i0, i1, j0, j1)
                s[i0:i1] += t.dot((log_q + log_keep - log_q_mixed).exp_(), i0, i1, j0, j1)
        if self.keep and self.beta > 0.0:
            kept = kept.sub_(lse[:, None]).exp_()  # q itself, kept for backward
        return rows, lse, s, kept

    def _masked(self, x, y, xx, yy, i0, i1, j0, j1) -> Tensor:
        l, cells = self._logits(x, y, xx, yy, i0, i1, j0, j1)
        if cells is not None:
            l[cells] = _NEG_INF
        return l

    def backward(self, g: Tensor, x: Tensor, y: Tensor, lse: Tensor, s: Tensor,
                 kept: Optional[Tensor]) -> Tuple[Tensor, Tensor]:
        xx, yy = self._norms(x), self._norms(y)
        gx, gy = torch.zeros_like(x), torch.zeros_like(y)
        log_keep, uniform = self._q_uniform(y.shape[0])
        keep_weight = math.exp(log_keep)
        for i0, i1 in self._blocks(x.shape[0]):
            g_a = g[i0:i1]
            for j0, j1 in self._blocks(y.shape[0]):
                if kept is not None:  # kept intact: backward may run again (retain_graph)
                    q = kept
                else:  # a fresh tile, overwritten in place by its gradient
                    q = self._masked(x, y, xx, yy, i0, i1, j0, j1).sub_(lse[i0:i1, None]).exp_()
                r = None
                if self.beta == 0.0:  # dH/dl = mass q - p
                    coef = g_a * self.targets.mass[i0:i1]
                else:  # dH/dl = q s - p r, r = (1 - beta) q / q~
                    r = q * keep_weight
                    r.div_(r + uniform)
                    coef = g_a * s[i0:i1]
                grad = q * coef[:, None] if kept is not None else q.mul_(coef[:, None])
                self.targets.subtract(grad, g_a, r, i0, i1, j0, j1)
                gx_t, gy_t = self.kernel.backward(grad, x[i0:i1], y[j0:j1],
                                                  None if xx is None else xx[i0:i1],
                                                  None if yy is None else yy[j0:j1])
                gx[i0:i1] += gx_t
                gy[j0:j1] += gy_t
        return gx, gy


class _CrossEntropy(torch.autograd.Function):
    """Rows ``H(p_i, q_i)`` of an :class:`Engine`; backward recomputes the tiles it did not keep."""

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, engine: Engine) -> Tensor:  # type: ignore[override]
        rows, lse, s, kept = engine.forward(x, y)
        ctx.engine = engine
        ctx.save_for_backward(x, y, lse, s, kept)
        return rows

    @staticmethod
    def backward(ctx, g: Tensor):  # type: ignore[override]
        if torch.is_grad_enabled():  # create_graph=True: second derivatives are not written
            raise IConError("ICon: second-order gradients (create_graph=True) need the composed path; "
                            "the fused engine gives first-order gradients only. Wrap p in "
                            "FromCallable(p) to take the composed path; got create_graph=True.")
        x, y, lse, s, kept = ctx.saved_tensors
        with full_precision(x.device.type):
            gx, gy = ctx.engine.backward(g.to(x.dtype), x, y, lse, s, kept)
        return gx, gy, None


def cross_entropy_rows(z: Tensor, candidates: Tensor, metric: str, engine: Engine) -> Tensor:
    """``H(p_i, q_i)`` per anchor for embeddings ``z`` (n, d) against ``candidates`` (m, d).

    Runs in float32 (float64 for float64 input) with autocast off: the log-sum-exp and the
    kernel are exact to float32 even when the model runs in bf16 / fp16.
    """
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    with full_precision(z.device.type):
        x = z.to(dtype)
        y = x if candidates is z else candidates.to(dtype)
        if metric == "cosine":
            x_hat = F.normalize(x, dim=-1)
            x, y = x_hat, (x_hat if y is x else F.normalize(y, dim=-1))
        return _CrossEntropy.apply(x, y, engine)
