"""The numba loops behind :mod:`icontorch.embedding.cpu_kernels` (imported on first use: importing
numba takes about a second).

Each loop is serial over the rows ``start <= i < stop`` and releases the GIL (``nogil``):
:func:`icontorch._threads.run_rows` hands ranges of rows to a pool of threads that
block, never spin, while they wait. A row's terms are added in a fixed order, so the result does
not depend on how the rows were split."""

import numba
import numpy as np


@numba.njit(nogil=True, cache=True)
def attraction_rows(start, stop, crow, col, val, y, student, param, scale, grad, dist):
    dim = y.shape[1]
    keep = dist.shape[0] > 0
    half = -0.5 * (param + 1.0)
    for i in range(start, stop):
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
def student_t_row(y, i, dof, exponent):
    n, dim = y.shape
    total = 0.0
    for j in range(i + 1, n):
        d = 0.0
        for a in range(dim):
            diff = np.float64(y[i, a]) - np.float64(y[j, a])
            d += diff * diff
        total += 1.0 / (1.0 + d) if dof == 1.0 else (1.0 + d / dof) ** exponent
    return total

@numba.njit(nogil=True, cache=True)
def student_t_rows(start, stop, y, dof, out):
    n = y.shape[0]
    exponent = -0.5 * (dof + 1.0)
    # row k (k < (n + 1) // 2) is paired with row n - 1 - k: the two hold n - 1 terms together
    for k in range(start, stop):
        out[k] = student_t_row(y, k, dof, exponent)
        if n - 1 - k != k:
            out[n - 1 - k] = student_t_row(y, n - 1 - k, dof, exponent)


@numba.njit(cache=True)
def cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base):
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

@numba.njit(nogil=True, cache=True)
def spread(y, charges, lo, box, n_boxes, p, inv_den, size, grid):
    n, dim = y.shape
    n_charges = charges.shape[1]
    weights = np.empty((dim, p))
    base = np.empty(dim, np.int64)
    for i in range(n):           # one thread: the additions to a node keep the order of the points
        cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base)
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

@numba.njit(nogil=True, cache=True)
def read(start, stop, potential, y, lo, box, n_boxes, p, inv_den, size, out):
    dim = y.shape[1]
    n_out = potential.shape[1]
    for i in range(start, stop):
        weights = np.empty((dim, p))
        base = np.empty(dim, np.int64)
        cell_weights(y, i, lo, box, n_boxes, p, inv_den, weights, base)
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
