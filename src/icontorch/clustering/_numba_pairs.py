"""The numba loops behind :func:`icontorch.clustering.fused.pair_dots` (imported on first use).

Each loop is serial over the heads ``start <= h < stop`` and releases the GIL:
:func:`icontorch._threads.run_rows` hands ranges of heads to threads that block, never spin, while
they wait. A head's terms are added in a fixed order (the pairs as listed), so the result does not
depend on how the heads were split."""

import numba


@numba.njit(nogil=True, cache=True)
def dots(start, stop, phi, psi, rows, cols, out):
    """``out[h, e] = <phi[h, rows[e]], psi[h, cols[e]]>`` for the heads of the range."""
    n_clusters = phi.shape[2]
    for h in range(start, stop):
        for e in range(rows.shape[0]):
            a, b = rows[e], cols[e]
            total = 0.0
            for c in range(n_clusters):
                total += phi[h, a, c] * psi[h, b, c]
            out[h, e] = total


@numba.njit(nogil=True, cache=True)
def dots_backward(start, stop, phi, psi, rows, cols, grad, d_phi, d_psi):
    """``d_phi[h, rows[e]] += grad[h, e] psi[h, cols[e]]`` and ``d_psi[h, cols[e]] += grad[h, e]
    phi[h, rows[e]]`` for the heads of the range (``d_phi``, ``d_psi`` zero on entry)."""
    n_clusters = phi.shape[2]
    for h in range(start, stop):
        for e in range(rows.shape[0]):
            g = grad[h, e]
            if g == 0.0:
                continue
            a, b = rows[e], cols[e]
            for c in range(n_clusters):
                d_phi[h, a, c] += g * psi[h, b, c]
                d_psi[h, b, c] += g * phi[h, a, c]
