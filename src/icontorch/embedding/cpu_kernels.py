"""Fused CPU loops (numba) for the per-iteration work of a sparse neighbour embedding.

Each iteration of t-SNE on n points with a kNN p visits every edge of p (about ``3 perplexity n``
of them, 8.8 million for MNIST-70k). Written with torch operations, the attraction

    F_i = -2 a sum_j A_ij phi'(d_ij) (y_i - y_j),   d_ij = ||y_i - y_j||^2

(:meth:`icontorch.embedding.optim.SparseObjective.attraction`, ``A = W + W^T``, ``phi = log w``)
is a chain of gathers and element-wise passes over all edges, each reading and writing memory;
on 2 cores that chain took about 200 ms per iteration at 70,000 points. The loop below does the
same sum in one pass over the CSR rows of A, with the point coordinates in cache.

The same applies to the exact normaliser ``Z = sum_{i != j} w(y_i - y_j)`` that scores a finished
map (:func:`student_t_pair_sum`): one loop over the pairs ``i < j``, without ``(chunk, n)`` blocks.

Both loops give each row to one thread and add its terms in a fixed order, so the result does
not depend on the number of threads (the thread policy of :mod:`icontorch._threads` may change
it during a fit). The torch expressions stay the definition (and the path on other devices);
tests/embedding/test_cpu_kernels.py checks that the loops agree with them in float64.

numba is a dependency of the package; if it cannot be imported, :func:`available` is False and
the callers use the torch expressions.
"""

from __future__ import annotations

import os
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from ..neighborhoods.kernels import KernelProfile

try:  # pragma: no cover - exercised by the environment, not by a test
    import numba
except ImportError:  # pragma: no cover
    numba = None

__all__ = ["available", "attraction_force", "student_t_pair_sum", "spread_to_grid", "read_from_grid"]

DISABLE_ENV = "ICONTORCH_NO_NUMBA"
"""Set this environment variable to any non-empty value to use the torch expressions on CPU too."""


def available(y: Tensor, profile: Optional[KernelProfile] = None) -> bool:
    """Whether the fused loops serve ``y``: numba importable, a CPU tensor of float32/float64,
    a Student-t or Gaussian profile (if given), and :data:`DISABLE_ENV` not set."""
    if numba is None or os.environ.get(DISABLE_ENV) or y.device.type != "cpu" or y.requires_grad:
        return False
    if y.dtype not in (torch.float32, torch.float64):
        return False
    return profile is None or profile.kind in ("student_t", "gaussian")


if numba is not None:
    @numba.njit(parallel=True, cache=True)
    def _attraction_rows(crow, col, val, y, student, param, scale, grad, dist):  # pragma: no cover
        n, dim = y.shape
        keep = dist.shape[0] > 0
        half = -0.5 * (param + 1.0)
        for i in numba.prange(n):
            if dim == 2:             # the common case, with the row's sums in registers
                g0, g1 = 0.0, 0.0
                y0, y1 = np.float64(y[i, 0]), np.float64(y[i, 1])
                for e in range(crow[i], crow[i + 1]):
                    j = col[e]
                    r0, r1 = y0 - y[j, 0], y1 - y[j, 1]
                    d = r0 * r0 + r1 * r1
                    if keep:
                        dist[e] = d
                    coef = val[e] * (half / (param + d) if student else -param)
                    g0 += coef * r0
                    g1 += coef * r1
                grad[i, 0], grad[i, 1] = scale * g0, scale * g1
                continue
            for a in range(dim):
                grad[i, a] = 0.0
            for e in range(crow[i], crow[i + 1]):
                j = col[e]
                d = 0.0
                for a in range(dim):
                    diff = np.float64(y[i, a]) - np.float64(y[j, a])
                    d += diff * diff
                if keep:
                    dist[e] = d
                coef = val[e] * (half / (param + d) if student else -param)
                for a in range(dim):
                    grad[i, a] += scale * coef * (np.float64(y[i, a]) - np.float64(y[j, a]))

    @numba.njit(cache=True)
    def _student_t_row(y, i, dof, exponent):  # pragma: no cover
        n, dim = y.shape
        total = 0.0
        for j in range(i + 1, n):
            d = 0.0
            for a in range(dim):
                diff = np.float64(y[i, a]) - np.float64(y[j, a])
                d += diff * diff
            total += 1.0 / (1.0 + d) if dof == 1.0 else (1.0 + d / dof) ** exponent
        return total

    @numba.njit(parallel=True, cache=True)
    def _student_t_rows(y, dof, out):  # pragma: no cover
        n = y.shape[0]
        exponent = -0.5 * (dof + 1.0)
        # row k is paired with row n - 1 - k: the two hold n - 1 terms together (balanced threads)
        for k in numba.prange((n + 1) // 2):
            out[k] = _student_t_row(y, k, dof, exponent)
            if n - 1 - k != k:
                out[n - 1 - k] = _student_t_row(y, n - 1 - k, dof, exponent)


    @numba.njit(cache=True)
    def _cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base):  # pragma: no cover
        """Lagrange weights of point i on the p nodes of its cell along each axis, and the first node;
        node k of a cell sits at (k + 1/2) / p, and ``inv_den[k] = 1 / prod_{m != k} (node_k - node_m)``."""
        for a in range(y.shape[1]):
            u = min(max((np.float64(y[i, a]) - lo) / box, 0.0), np.float64(n_boxes))
            cell = min(max(np.floor(u), 0.0), n_boxes - 1.0)
            t = u - cell
            for k in range(p):
                basis = inv_den[k]
                for m in range(p):
                    if m != k:
                        basis *= t - (m + 0.5) / p
                weights[a, k] = basis
            base[a] = int(cell) * p

    @numba.njit(cache=True)
    def _spread(y, charges, lo, box, n_boxes, p, inv_den, size, grid):  # pragma: no cover
        n, dim = y.shape
        n_charges = charges.shape[1]
        weights = np.empty((dim, p))
        base = np.empty(dim, np.int64)
        for i in range(n):           # one thread: the additions to a node keep the order of the points
            _cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base)
            for k0 in range(p):
                if dim == 1:
                    for c in range(n_charges):
                        grid[base[0] + k0, c] += weights[0, k0] * charges[i, c]
                    continue
                row = (base[0] + k0) * size + base[1]
                for k1 in range(p):
                    wt = weights[0, k0] * weights[1, k1]
                    for c in range(n_charges):
                        grid[row + k1, c] += wt * charges[i, c]

    @numba.njit(parallel=True, cache=True)
    def _read(potential, y, lo, box, n_boxes, p, inv_den, size, out):  # pragma: no cover
        n, dim = y.shape
        n_out = potential.shape[1]
        for i in numba.prange(n):
            weights = np.empty((dim, p))
            base = np.empty(dim, np.int64)
            _cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base)
            for c in range(n_out):
                out[i, c] = 0.0
            for k0 in range(p):
                if dim == 1:
                    for c in range(n_out):
                        out[i, c] += weights[0, k0] * potential[base[0] + k0, c]
                    continue
                row = (base[0] + k0) * size + base[1]
                for k1 in range(p):
                    wt = weights[0, k0] * weights[1, k1]
                    for c in range(n_out):
                        out[i, c] += wt * potential[row + k1, c]

def attraction_force(crow: Tensor, col: Tensor, value: Tensor, y: Tensor, profile: KernelProfile,
                     scale: float, with_distances: bool) -> tuple:
    """``F_i = scale * sum_j A_ij phi'(d_ij) (y_i - y_j)`` over the CSR rows ``(crow, col, value)``
    of A, and the squared distance of every entry (in CSR order) when ``with_distances``.

    Returns ``(F (n, dim), d (nnz,) or None)``, in y's dtype.
    """
    y_np = y.detach().contiguous().numpy()
    grad = np.empty(y_np.shape, dtype=np.float64)      # per-row sums accumulated in float64
    dist = np.empty(col.shape[0] if with_distances else 0, dtype=y_np.dtype)
    student = profile.kind == "student_t"
    _attraction_rows(crow.numpy(), col.numpy(), value.numpy(), y_np, student, float(profile.param),
                     float(scale), grad, dist)
    return torch.from_numpy(grad).to(y.dtype), (torch.from_numpy(dist) if with_distances else None)


def student_t_pair_sum(y: Tensor, dof: float) -> float:
    """``sum_{i != j} (1 + ||y_i - y_j||^2 / dof)^(-(dof + 1) / 2)`` in float64, as twice the sum over
    ``i < j`` (time O(n^2 dim), memory O(n))."""
    y_np = y.detach().contiguous().numpy()
    rows = np.zeros(y_np.shape[0], dtype=np.float64)
    _student_t_rows(y_np, float(dof), rows)
    return 2.0 * float(np.sum(rows))


def _inverse_denominators(n_interp: int) -> np.ndarray:
    nodes = (np.arange(n_interp) + 0.5) / n_interp
    return np.array([1.0 / np.prod([nodes[k] - nodes[m] for m in range(n_interp) if m != k])
                     for k in range(n_interp)])


def spread_to_grid(y: Tensor, charges: Tensor, lo: float, box: float, n_boxes: int, n_interp: int) -> Tensor:
    """The charges (n, C) spread onto the nodes of a regular grid with Lagrange weights:
    (C, size ** dim), ``size = n_boxes * n_interp`` (:class:`~icontorch.embedding.repulsion.GridInterpolator`)."""
    y_np = y.detach().contiguous().numpy()
    size = n_boxes * n_interp
    grid = np.zeros((size ** y_np.shape[1], charges.shape[1]), dtype=np.float64)
    _spread(y_np, charges.detach().contiguous().numpy(), float(lo), float(box), int(n_boxes), int(n_interp),
            _inverse_denominators(n_interp), size, grid)
    return torch.from_numpy(grid.T).to(y.dtype).contiguous()


def read_from_grid(potential: Tensor, y: Tensor, lo: float, box: float, n_boxes: int, n_interp: int) -> Tensor:
    """The node potentials (K, size ** dim) interpolated at the points with the same Lagrange weights: (K, n)."""
    y_np = y.detach().contiguous().numpy()
    out = np.empty((y_np.shape[0], potential.shape[0]), dtype=np.float64)
    _read(potential.detach().T.contiguous().numpy(), y_np, float(lo), float(box), int(n_boxes), int(n_interp),
          _inverse_denominators(n_interp), n_boxes * n_interp, out)
    return torch.from_numpy(out.T).to(y.dtype).contiguous()
