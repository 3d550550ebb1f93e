"""The cluster-kernel KL of large batches without (H, B, B) tensors kept for the backward pass.

``KL(p~(.|i) || q~_h(.|i))`` with ``p~ = (1 - alpha_p) p + alpha_p / (B - 1)`` (p sparse: the
views and graph neighbours of item i in the batch, as a list of pairs) and the cluster kernel
``q~_h(j|i) = (1 - alpha_q) sum_c phi_ic phi_jc / n_c + alpha_q / B`` (the paper's Debiased
InfoNCE Clustering, its Table 1 and Def. 2). Expanded, for anchor i of a head:

``KL_i = sum_j p~_ij log p~_ij - (1 - alpha_p) sum_j p_ij log q~_ij
        - alpha_p / (B - 1) (sum_j log q~_ij - log q~_ii)``.

The first term is a constant of the batch, the second a sum over the pairs (O(H E C) for E pairs),
the third one row sum of ``log q~`` over the whole batch: :func:`log_kernel_rowsum` computes it
tile by tile and recomputes the tiles in its backward pass, so the memory is O(H * tile * B) and
the work a few dense passes over (H, B, B) (two batched products with C columns, one log, one
division), the same numbers as the dense definition
(:func:`~icontorch.clustering.objectives.cluster_kernel_kl`, tested equal in float64).
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

import numpy as np
import torch
from torch import Tensor

from .._compiled import compiled
from .._threads import run_rows

__all__ = ["kernel_factors", "log_kernel_rowsum", "pair_dots", "pairs_cluster_kernel_kl", "TILE_ENTRIES"]

TILE_ENTRIES = 1 << 24
"""Entries of one (H, tile, B) block of ``q~`` at most (64 MiB in float32)."""


def kernel_factors(log_phi: Tensor, alpha_q: float) -> Tuple[Tensor, Tensor]:
    """``phi = exp(log_phi)`` and ``psi_jc = phi_jc / n_c`` (``n_c = sum_k phi_kc`` over the batch), the
    factors of the cluster kernel ``q(j|i) = sum_c phi_ic psi_jc`` (Def. 2).

    With ``alpha_q > 0`` both are floored at ``f = sqrt(smallest normal float)`` (1.1e-19 in float32),
    so that no product ``phi_ic psi_jc`` is a subnormal number. A sharp head's probabilities
    underflow below 1e-38, and CPUs multiply subnormal numbers about 20 times slower: one
    (10, 1024, 10) x (10, 10, 256) product took 97 ms with them and 5 ms without (2026-12-03), and
    a 30-epoch clustering of 70,000 MNIST encoder features ran at 2.7 steps a second, against about
    20 in an earlier run of the same fit. The floor moves each
    ``q~ = (1 - alpha_q) q + alpha_q / B >= alpha_q / B`` by at most ``2 C f`` absolutely, a relative
    ``2 C B f / alpha_q`` (2e-11 at C = 1,000, B = 1,024, alpha_q = 0.01), below float32's
    precision. With ``alpha_q = 0`` a floor would change the gradient of a q near 0, so nothing is
    floored (q itself is floored at the smallest normal float).
    """
    tiny = torch.finfo(log_phi.dtype).tiny
    phi = log_phi.exp()
    if alpha_q > 0.0:
        floor = math.sqrt(tiny)
        phi = phi.clamp_min(floor)
        return phi, (phi / phi.sum(1, keepdim=True)).clamp_min(floor)
    return phi, phi / phi.sum(1, keepdim=True).clamp_min(tiny)


def _tile(h: int, b: int) -> int:
    return max(1, min(b, TILE_ENTRIES // max(1, h * b)))


def _kernel_block(phi_rows: Tensor, psi: Tensor, alpha_q: float, n_items: int) -> Tensor:
    """``q~`` of the rows ``phi_rows`` (H, t, C) against all items: (H, t, B); floored at the
    smallest normal float when ``alpha_q = 0``."""
    if alpha_q > 0.0:
        offset = torch.full((1, 1, 1), alpha_q / n_items, dtype=phi_rows.dtype, device=phi_rows.device)
        return torch.baddbmm(offset, phi_rows, psi.transpose(1, 2), alpha=1.0 - alpha_q)
    return torch.bmm(phi_rows, psi.transpose(1, 2)).clamp_min_(torch.finfo(phi_rows.dtype).tiny)


class _LogKernelRowSum(torch.autograd.Function):
    @staticmethod
    def forward(ctx, phi: Tensor, psi: Tensor, alpha_q: float, n_items: int) -> Tensor:      # noqa: D102
        h, b, _ = phi.shape
        out = torch.empty(h, b, dtype=phi.dtype, device=phi.device)
        tile = _tile(h, psi.shape[1])
        for start in range(0, b, tile):
            stop = min(b, start + tile)
            out[:, start:stop] = _kernel_block(phi[:, start:stop], psi, alpha_q, n_items).log_().sum(2)
        ctx.save_for_backward(phi, psi)
        ctx.alpha_q, ctx.n_items = alpha_q, n_items
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, Tensor, None, None]:       # noqa: D102
        phi, psi = ctx.saved_tensors
        alpha_q, n_items = ctx.alpha_q, ctx.n_items
        h, b, _ = phi.shape
        tiny = torch.finfo(phi.dtype).tiny
        scale = 1.0 - alpha_q if alpha_q > 0.0 else 1.0
        d_phi, d_psi = torch.empty_like(phi), torch.zeros_like(psi)
        tile = _tile(h, psi.shape[1])
        for start in range(0, b, tile):
            stop = min(b, start + tile)
            block = _kernel_block(phi[:, start:stop], psi, alpha_q, n_items)
            if alpha_q > 0.0:
                g = torch.reciprocal_(block).mul_(grad[:, start:stop, None])
            else:                       # the floor passes no gradient
                g = torch.where(block > tiny, grad[:, start:stop, None] / block, torch.zeros_like(block))
            d_phi[:, start:stop] = torch.bmm(g, psi).mul_(scale)
            d_psi.baddbmm_(g.transpose(1, 2), phi[:, start:stop], alpha=scale)
        return d_phi, d_psi, None, None


def log_kernel_rowsum(phi: Tensor, psi: Tensor, alpha_q: float, n_items: int) -> Tensor:
    """``sum_j log q~_h(j|i)`` over the M columns j of ``psi``: an (H, B) tensor, differentiable.

    ``q~_h(j|i) = (1 - alpha_q) <phi_hi, psi_hj> + alpha_q / n_items`` (floored at the smallest
    normal float when ``alpha_q = 0``). Memory O(H * tile * M) with ``H * tile * M <= TILE_ENTRIES``.

    Args:
        phi: (H, B, C) soft assignments of the rows i.
        psi: (H, M, C) ``phi_jc / n_c`` of the columns j.
        alpha_q: debiasing weight of q in [0, 1].
        n_items: B, the batch size that ``alpha_q`` spreads over.
    """
    return _LogKernelRowSum.apply(phi, psi, float(alpha_q), int(n_items))


class _PairDots(torch.autograd.Function):
    """The compiled loops of :func:`pair_dots` (CPU, numba), with their own backward pass."""

    @staticmethod
    def forward(ctx, phi: Tensor, psi: Tensor, rows: Tensor, cols: Tensor) -> Tensor:      # noqa: D102
        from . import _numba_pairs

        phi_np, psi_np = phi.detach().contiguous().numpy(), psi.detach().contiguous().numpy()
        out = np.empty((phi.shape[0], rows.shape[0]), dtype=phi_np.dtype)
        run_rows(_numba_pairs.dots, phi.shape[0], phi_np, psi_np, rows.numpy(), cols.numpy(), out, min_rows=1)
        ctx.save_for_backward(phi, psi, rows, cols)
        return torch.from_numpy(out)

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tuple[Tensor, Tensor, None, None]:       # noqa: D102
        from . import _numba_pairs

        phi, psi, rows, cols = ctx.saved_tensors
        phi_np, psi_np = phi.detach().contiguous().numpy(), psi.detach().contiguous().numpy()
        d_phi, d_psi = np.zeros_like(phi_np), np.zeros_like(psi_np)
        run_rows(_numba_pairs.dots_backward, phi.shape[0], phi_np, psi_np, rows.numpy(), cols.numpy(),
                 grad.detach().contiguous().numpy(), d_phi, d_psi, min_rows=1)
        return torch.from_numpy(d_phi), torch.from_numpy(d_psi), None, None


def pair_dots(phi: Tensor, psi: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``<phi_h,rows[e], psi_h,cols[e]> = sum_c phi[h, rows[e], c] psi[h, cols[e], c]``: an (H, E) tensor,
    differentiable in ``phi`` and ``psi``.

    On the CPU a compiled loop over the pairs (O(H E C) work, no (E, H C) gathers: at C = 1,000 the
    gathered rows of a batch's pairs take hundreds of MB per step); elsewhere, and when numba is off
    (``ICONTORCH_NO_NUMBA``), the gathers, which stay the definition (tested equal in float64).

    Args:
        phi, psi: (H, B, C) tensors.
        rows, cols: (E,) indices into B.
    """
    if compiled(phi):
        return _PairDots.apply(phi, psi, rows.cpu(), cols.cpu())
    h, b, c = phi.shape
    # rows of (B, H C) tables: a contiguous gather, its gradient an index_add
    phi_rows = phi.transpose(0, 1).reshape(b, h * c).index_select(0, rows)
    psi_cols = psi.transpose(0, 1).reshape(b, h * c).index_select(0, cols)
    return (phi_rows * psi_cols).reshape(-1, h, c).sum(2).T


def _xlogx(x: Tensor) -> Tensor:
    return torch.where(x > 0, x * x.clamp_min(torch.finfo(x.dtype).tiny).log(), torch.zeros_like(x))


def pairs_cluster_kernel_kl(log_phi: Tensor, rows: Tensor, cols: Tensor, p: Tensor, alpha_p: float,
                            alpha_q: float, columns: Optional[Tensor] = None) -> Tensor:
    """``(1/|A|) sum_{i in A} KL(p~(.|i) || q~_h(.|i))`` for every head h: an (H,) tensor.

    The same value as :func:`~icontorch.clustering.objectives.cluster_kernel_kl` on the dense p of
    the pairs (see the module docstring), with memory O(H (E + B C) + H * tile * B) for E pairs on
    the CPU (:func:`pair_dots`' loops) and O(H (E + B) C + H * tile * B) elsewhere.
    With ``columns`` (M distinct batch items) the uniform part's ``sum_j log q~_ij`` is estimated
    as ``(B / M) sum_{j in columns} log q~_ij`` (unbiased, as are its gradients; ``n_c`` and every
    other term stay exact): the dense work drops from H B^2 to H B M.

    Args:
        log_phi: (H, B, C) log soft assignments.
        rows, cols: (E,) the pairs ``(i, j)``, ``i != j``, each at most once: j is a neighbour or
            another view of i in the batch.
        p: (E,) ``p(j|i)`` of the pairs; the values of one row sum to 1.
        alpha_p, alpha_q: debiasing weights in [0, 1]. A is the set of rows with a pair.
        columns: optional (M,) batch items on which the uniform part is evaluated; None: all B.
    """
    h, b, _ = log_phi.shape
    dtype = log_phi.dtype
    tiny = torch.finfo(dtype).tiny
    phi, psi = kernel_factors(log_phi, alpha_q)
    q_pairs = pair_dots(phi, psi, rows, cols)                        # q on the pairs: (H, E)
    q_pairs = (1.0 - alpha_q) * q_pairs + alpha_q / b if alpha_q > 0.0 else q_pairs.clamp_min(tiny)
    p = p.to(dtype)
    degree = torch.bincount(rows, minlength=b)
    anchors = degree > 0
    uniform = alpha_p / (b - 1) if b > 1 else 0.0
    p_mixed = (1.0 - alpha_p) * p + uniform
    neg_entropy = torch.zeros(b, dtype=dtype, device=log_phi.device).index_add_(0, rows, _xlogx(p_mixed))
    if uniform > 0.0:
        off_support = (b - 1 - degree).to(dtype)
        neg_entropy = neg_entropy + off_support * (uniform * torch.log(torch.tensor(uniform, dtype=dtype)))
    cross = torch.zeros(h, b, dtype=dtype, device=log_phi.device).index_add_(
        1, rows, (1.0 - alpha_p) * p * q_pairs.log())
    if uniform > 0.0:
        q_self = (phi * psi).sum(2)
        q_self = (1.0 - alpha_q) * q_self + alpha_q / b if alpha_q > 0.0 else q_self.clamp_min(tiny)
        if columns is None:
            row_sums = log_kernel_rowsum(phi, psi, alpha_q, b)
        else:
            row_sums = log_kernel_rowsum(phi, psi[:, columns], alpha_q, b) * (b / columns.shape[0])
        cross = cross + uniform * (row_sums - q_self.log())
    return (neg_entropy - cross)[:, anchors].mean(1)
