"""Fused and tiled I-Con cross-entropy for a structured p and a kernel-softmax q.

With q a kernel softmax, ``q(j|i) = exp(l_ij) / sum_{k in C_i} exp(l_ik)`` (the Gaussian of Thm 1
and Thm 3, the Student-t of Cor 1), and p uniform over a set ``S_i`` of neighbours (positive
pairs, same label, k nearest neighbours, a list), alpha-mixed with the uniform distribution over
the N_i candidates (section 3.3.2 of the paper),

    p(j|i) = (1 - alpha) 1[j in S_i] / |S_i| + alpha 1[j in C_i] / N_i,

the cross-entropy needs two sums over candidates per anchor:

    H(p_i, q_i) = lse_i - sum_j p(j|i) l_ij,        lse_i = log sum_{k in C_i} exp(l_ik),

with gradient ``dH/dl_ij = q(j|i) - p(j|i)``. Both sums are accumulated over tiles of anchors and
candidates with an online log-sum-exp, and backward recomputes every tile from the saved lse
(a custom autograd Function), so memory is O(tile^2 + (n + m) d) instead of O(n m). When q is
debiased as well, ``q~ = (1 - beta) q + beta / N``, a second pass gives ``-sum_j p log q~`` once
lse is known, and the gradient is ``q_ij s_i - p_ij r_ij`` with ``r = (1 - beta) q / q~`` and
``s_i = sum_j p_ij r_ij``. A learned Gaussian scale (``1 / temperature``) gets
``sum_ij (dH/dl_ij) dl_ij/dscale`` from the same tiles. Run as one tile that keeps q in memory,
the same Function is the fused dense path. p lives in :mod:`.targets`; the kernel's log-weight in
:class:`~icontorch.neighborhoods.kernels.KernelProfile`. Everything runs in float32 (float64 for
float64 inputs), with autocast disabled.
"""

from __future__ import annotations

import contextlib
import math
from typing import ContextManager, Optional, Tuple

import torch
from torch import Tensor

from .._validation import IConError
from ..distances import unit
from ..neighborhoods.kernels import KernelProfile
from .targets import Targets, self_cells

__all__ = ["Engine", "Kernel", "cross_entropy_rows"]

_NEG_INF = float("-inf")


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


def _exp_normalize_(lg: Tensor, normalize: bool) -> Tensor:
    """Row log-sum-exp of the logits ``lg``, leaving ``exp(lg - max)`` in ``lg``
    (divided by its sum, the softmax, when ``normalize``)."""
    top = lg.amax(1)
    top = torch.where(torch.isfinite(top), top, torch.zeros_like(top))  # rows all -inf in this tile
    total = lg.sub_(top[:, None]).exp_().sum(1)
    if normalize:
        lg.div_(total[:, None])
    return top + total.log()


def _sq_dist(product: Tensor, xx: Tensor, yy: Tensor) -> Tensor:
    """``||x_i - y_j||^2`` from ``x @ y.T``, in the steps of :func:`icontorch.distances.squared_euclidean`."""
    return (xx[:, None] + yy[None, :]).sub_(product, alpha=2.0).clamp_min_(0.0)


class Kernel:
    """The logits of a kernel softmax and their backward, per tile.

    ``linear``: logits ``scale * x . y`` (a Gaussian profile on the dot product, or the cosine on
    normalised inputs). Otherwise logits ``phi(d)`` with ``d = ||x - y||^2`` and ``phi`` the profile's
    log-weight (Gaussian ``-scale d``, Student-t). The profile's parameter is a float, or a
    detached one-element tensor when the Gaussian's scale is learned.
    """

    def __init__(self, profile: KernelProfile, linear: bool) -> None:
        self.profile, self.linear = profile, linear

    def logits(self, x: Tensor, y: Tensor, xx: Optional[Tensor], yy: Optional[Tensor]) -> Tensor:
        product = x @ y.T
        if self.linear:
            return product.mul_(self.profile.param)
        return self.profile.log_w(_sq_dist(product, xx, yy), inplace=True)

    def backward(self, grad: Tensor, x: Tensor, y: Tensor, xx: Optional[Tensor], yy: Optional[Tensor],
                 want_scale: bool = False) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        """Gradients of ``sum_ij grad_ij l_ij`` in the tile's x and y, and in the Gaussian's scale
        when ``want_scale`` (``dl/dscale`` is ``s`` when linear, ``-d`` otherwise); grad is overwritten."""
        scale = self.profile.param
        if self.linear:
            g_rows = grad @ y
            g_scale = (x * g_rows).sum() if want_scale else None  # sum_ij grad_ij x_i . y_j
            return g_rows.mul_(scale), (grad.T @ x).mul_(scale), g_scale
        d, g_scale = None, None
        if want_scale or self.profile.kind != "gaussian":
            d = _sq_dist(x @ y.T, xx, yy)
        if want_scale:
            g_scale = -(grad * d).sum()
        dl_dd = grad.mul_(self.profile.dlog_w(d, inplace=True))
        gx = (x * dl_dd.sum(1, keepdim=True)).sub_(dl_dd @ y).mul_(2.0)
        gy = (y * dl_dd.sum(0)[:, None]).sub_(dl_dd.T @ x).mul_(2.0)
        return gx, gy, g_scale


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
        return None if self.kernel.linear else x.pow(2).sum(-1)

    def _logits(self, x, y, xx, yy, i0, i1, j0, j1) -> Tuple[Tensor, Optional[Tuple[Tensor, Tensor]]]:
        lg = self.kernel.logits(x[i0:i1], y[j0:j1], None if xx is None else xx[i0:i1],
                               None if yy is None else yy[j0:j1])
        cells = self_cells(self.q_self_offset, i0, i1, j0, j1, lg.device)
        return lg, cells

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
                lg, cells = self._logits(x, y, xx, yy, i0, i1, j0, j1)
                if self.beta == 0.0:
                    p_logits += t.dot(lg, i0, i1, j0, j1)  # before the self mask: p is 0 there
                if cells is not None:
                    lg[cells] = _NEG_INF
                if self.beta == 0.0:  # lg is not needed any more: exponentiate it in place
                    lse_a = torch.logaddexp(lse_a, _exp_normalize_(lg, normalize=self.keep))
                    kept = lg if self.keep else None  # q itself, kept for backward
                else:
                    lse_a = torch.logaddexp(lse_a, torch.logsumexp(lg, 1))
                    kept = lg if self.keep else None
            lse[i0:i1] = lse_a
            if self.beta == 0.0:
                rows[i0:i1] = t.mass[i0:i1] * lse_a - p_logits
                continue
            for j0, j1 in self._blocks(m):  # second pass: log q~ needs the finished lse
                lg = kept if self.keep else self._masked(x, y, xx, yy, i0, i1, j0, j1)
                log_q = lg - lse_a[:, None]
                log_q_mixed = torch.logaddexp(log_q + log_keep, log_q.new_tensor(math.log(uniform)))
                rows[i0:i1] -= t.dot(log_q_mixed, i0, i1, j0, j1)
                s[i0:i1] += t.dot((log_q + log_keep - log_q_mixed).exp_(), i0, i1, j0, j1)
        if self.keep and self.beta > 0.0:
            kept = kept.sub_(lse[:, None]).exp_()  # q itself, kept for backward
        return rows, lse, s, kept

    def _masked(self, x, y, xx, yy, i0, i1, j0, j1) -> Tensor:
        lg, cells = self._logits(x, y, xx, yy, i0, i1, j0, j1)
        if cells is not None:
            lg[cells] = _NEG_INF
        return lg

    def backward(self, g: Tensor, x: Tensor, y: Tensor, lse: Tensor, s: Tensor, kept: Optional[Tensor],
                 want_scale: bool = False) -> Tuple[Tensor, Tensor, Optional[Tensor]]:
        xx, yy = self._norms(x), self._norms(y)
        gx, gy = torch.zeros_like(x), torch.zeros_like(y)
        g_scale = x.new_zeros(()) if want_scale else None
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
                gx_t, gy_t, gs_t = self.kernel.backward(grad, x[i0:i1], y[j0:j1],
                                                        None if xx is None else xx[i0:i1],
                                                        None if yy is None else yy[j0:j1], want_scale)
                gx[i0:i1] += gx_t
                gy[j0:j1] += gy_t
                if want_scale:
                    g_scale += gs_t
        return gx, gy, g_scale


class _CrossEntropy(torch.autograd.Function):
    """Rows ``H(p_i, q_i)`` of an :class:`Engine`; backward recomputes the tiles it did not keep.

    ``scale`` is the learned Gaussian scale (a one-element tensor, whose detached value the
    engine's kernel holds) or None; it is an input only so that autograd receives its gradient.
    """

    @staticmethod
    def forward(ctx, x: Tensor, y: Tensor, scale: Optional[Tensor],  # type: ignore[override]
                engine: Engine) -> Tensor:
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
            gx, gy, g_scale = ctx.engine.backward(g.to(x.dtype), x, y, lse, s, kept,
                                                  want_scale=ctx.needs_input_grad[2])
        return gx, gy, g_scale, None


def cross_entropy_rows(z: Tensor, candidates: Tensor, metric: str, engine: Engine,
                       scale: Optional[Tensor] = None) -> Tensor:
    """``H(p_i, q_i)`` per anchor for embeddings ``z`` (n, d) against ``candidates`` (m, d).

    Runs in float32 (float64 for float64 input) with autocast off: the log-sum-exp and the
    kernel are exact to float32 even when the model runs in bf16 / fp16. ``scale``: the learned
    Gaussian scale as a 0-d tensor in that dtype, whose detached value the engine's kernel holds;
    it receives its gradient.
    """
    dtype = torch.float64 if z.dtype == torch.float64 else torch.float32
    with full_precision(z.device.type):
        x = z.to(dtype)
        y = x if candidates is z else candidates.to(dtype)
        if metric == "cosine":
            x_hat = unit(x)
            x, y = x_hat, (x_hat if y is x else unit(y))
        return _CrossEntropy.apply(x, y, scale, engine)
