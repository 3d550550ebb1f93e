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

The loops are serial over a range of rows and release the GIL; :func:`~icontorch._threads.run_rows` spreads the
ranges over the fit's threads (:func:`icontorch._threads.row_threads`; the thread policy of
:mod:`icontorch._threads` may change their number during a fit), with threads that block rather
than spin while they wait. Each row's terms are added in a fixed order, so the result does not
depend on the number of threads.
The torch expressions stay the definition (and the path on other devices);
tests/embedding/test_cpu_kernels.py checks that the loops agree with them in float64.

numba is a dependency of the package, imported on the first call of a loop; where it is not
installed, :func:`available` is False and the callers use the torch expressions.
"""

from __future__ import annotations

from types import ModuleType
from typing import Optional

import numpy as np
import torch
from torch import Tensor

from .._compiled import compiled
from .._threads import run_rows
from ..neighborhoods.kernels import KernelProfile

__all__ = ["available", "run_rows", "attraction_force", "student_t_pair_sum", "spread_to_grid", "read_from_grid"]



def available(y: Tensor, profile: Optional[KernelProfile] = None) -> bool:
    """Whether the fused loops serve ``y``: numba importable, a CPU tensor of float32/float64,
    a Student-t or Gaussian profile (if given), and :data:`icontorch._compiled.DISABLE_ENV` not set."""
    if not compiled(y) or y.requires_grad:
        return False
    return profile is None or profile.kind in ("student_t", "gaussian")


def _loops() -> ModuleType:
    """The compiled loops (numba imported on the first call)."""
    from . import _numba_loops

    return _numba_loops


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
    run_rows(_loops().attraction_rows, y_np.shape[0], crow.numpy(), col.numpy(), value.numpy(), y_np, student,
             float(profile.param), float(scale), grad, dist)
    return torch.from_numpy(grad).to(y.dtype), (torch.from_numpy(dist) if with_distances else None)


def student_t_pair_sum(y: Tensor, dof: float) -> float:
    """``sum_{i != j} (1 + ||y_i - y_j||^2 / dof)^(-(dof + 1) / 2)`` in float64, as twice the sum over
    ``i < j`` (time O(n^2 dim), memory O(n))."""
    y_np = y.detach().contiguous().numpy()
    rows = np.zeros(y_np.shape[0], dtype=np.float64)
    run_rows(_loops().student_t_rows, (y_np.shape[0] + 1) // 2, y_np, float(dof), rows)
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
    _loops().spread(y_np, charges.detach().contiguous().numpy(), float(lo), float(box), int(n_boxes), int(n_interp),
            _inverse_denominators(n_interp), size, grid)
    return torch.from_numpy(grid.T).to(y.dtype).contiguous()


def read_from_grid(potential: Tensor, y: Tensor, lo: float, box: float, n_boxes: int, n_interp: int) -> Tensor:
    """The node potentials (K, size ** dim) interpolated at the points with the same Lagrange weights: (K, n)."""
    y_np = y.detach().contiguous().numpy()
    out = np.empty((y_np.shape[0], potential.shape[0]), dtype=np.float64)
    run_rows(_loops().read, y_np.shape[0], potential.detach().T.contiguous().numpy(), y_np, float(lo), float(box),
             int(n_boxes), int(n_interp), _inverse_denominators(n_interp), n_boxes * n_interp, out)
    return torch.from_numpy(out.T).to(y.dtype).contiguous()
