"""The supervisory side of a neighbour embedding, ``p``, as a dense matrix or a sparse kNN graph.

A neighbour embedding minimises ``L = sum_e w_e (log p_e - log q_e)``: the I-Con loss of t-SNE
(one anchor over all ordered pairs, ``w_e = P_ij``) or of SNE (``n`` anchors, ``w_e = p(j|i) / n``).
For large data the p side is stored as a list of edges ``(i, j)``, the pairs where p is not zero:

* the candidates of each anchor are its ``n_neighbors`` nearest points (an exact chunked kNN, or
  faiss's approximate HNSW search for ``knn_backend="faiss"``), and
  the neighbourhood ``p`` is evaluated on them through the per-anchor candidate form of the
  Neighborhood contract, ``p(x, x[knn])``. For :class:`~icontorch.PerplexityGaussian` this is
  openTSNE's ``PerplexityBasedNN``: each row is calibrated over its ``3 * perplexity`` neighbours.
* a symmetrised p (:func:`~icontorch.symmetrize`) becomes ``P = (p + p^T) / sum(p + p^T)``, a
  sparse symmetric joint distribution.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional, Tuple

import torch
from torch import Tensor

from .._threads import rows_not_torch, run_rows
from .._validation import IConError, fail, is_integer
from ..distances import exponent_of, times_power_of_two
from ..knn import approximate_knn, most_similar
from ..neighborhoods.base import Neighborhood
from ..neighborhoods.spatial import KNN, PerplexityGaussian
from ..transforms import Symmetrize

__all__ = ["EdgeAffinity", "split_joint", "default_n_neighbors", "nearest_neighbors", "knn_affinity",
           "dense_affinity", "affinity_to_reference", "check_n_neighbors", "summed_entries", "KNN_BACKENDS"]

KNN_BACKENDS = ("exact", "faiss")


@dataclass
class EdgeAffinity:
    """``p`` as edges: anchor ``rows[e]``, neighbour ``cols[e]``, loss weight and log-probability.

    ``weight`` sums to 1: ``P_ij`` for a joint p, ``p(j|i) / n`` for a conditional one, so the
    attraction of the loss is ``-sum_e weight_e log w(y_i - y_j)`` in both cases. ``log_p`` is
    ``log P_ij`` or ``log p(j|i)``, so that ``sum_e weight_e log_p_e`` is the constant part of the KL.
    """

    rows: Tensor
    cols: Tensor
    weight: Tensor
    log_p: Tensor
    n: int
    joint: bool

    @property
    def neg_entropy(self) -> float:
        """``sum_e weight_e log p_e``: the KL minus the cross-entropy."""
        return float((self.weight.double() * self.log_p.double()).sum())


def split_joint(p: Neighborhood) -> Tuple[Neighborhood, bool]:
    """``(conditional base, True)`` for a symmetrised p, else ``(p, False)``."""
    if isinstance(p, Symmetrize):
        return p.base, True
    return p, False


def default_n_neighbors(p: Neighborhood, n: int) -> int:
    """Candidates per anchor: ``3 * perplexity`` (openTSNE), ``n_neighbors + 1`` for a kNN p, else 90.

    Capped at ``n - 1``. The ``+ 1`` for :class:`~icontorch.KNN` lets it pick its
    ``n_neighbors`` of ``n_neighbors + 1``.
    """
    base, _ = split_joint(p)
    if isinstance(base, PerplexityGaussian):
        m = int(3 * base.perplexity)
    elif isinstance(base, KNN):
        m = base.n_neighbors + 1
    else:
        m = 90
    return max(1, min(n - 1, m))


def _evaluate(p: Callable[..., Tensor], x: Tensor, *others: Tensor) -> Tensor:
    """``p(x, *others)``, again in float64 and cast back when it holds NaN in a lower precision.

    A perplexity search over many exact duplicates reaches no entropy low enough and drives the
    precision to ~1e60, which overflows float32 into ``inf * 0 = NaN``; in float64 the same p is
    uniform over the duplicates and ``-inf`` (after the cast) elsewhere. Data without NaN in the
    first pass is left exactly as it was.
    """
    log_p = p(x, *others)
    if isinstance(log_p, Tensor) and x.dtype != torch.float64 and bool(torch.isnan(log_p).any()):
        log_p = p(x.double(), *(o.double() for o in others)).to(x.dtype)
    return log_p


def _check_no_nan(log_p: Tensor, who: str) -> None:
    bad = torch.isnan(log_p).reshape(log_p.shape[0], -1).any(1)
    if bool(bad.any()):
        raise IConError(f"{who}: p must give log-probabilities without NaN on X; got NaN in {int(bad.sum())} "
                        f"of {log_p.shape[0]} rows.")


def _conditional_on_candidates(base: Neighborhood, x: Tensor, idx: Tensor, who: str,
                               candidates: Optional[Tensor] = None,
                               chunk_entries: int = 1 << 24) -> Tensor:
    """``log p(idx[i, j] | i)`` over each anchor's candidates (rows of ``candidates``, default x).

    :class:`PerplexityGaussian` (t-SNE's p) takes a direct route: the squared distances to the
    candidates, then :meth:`PerplexityGaussian.log_p_from_sq_dist` (the same calibration as its
    ``forward``, without re-validating and re-scaling each block of rows drawn from checked data).
    On the CPU its blocks of rows run side by side on blocking threads, one torch thread each
    (:func:`~icontorch._threads.rows_not_torch`): the calibration is some fifty rounds of small
    operations, and on torch's own threads a 2-core machine shared with a 2-thread job once took 34 s
    for what takes 2.6 s alone (70,000 MNIST digits), its waiting threads spinning. The blocks are
    the same either way, so is the result.
    """
    dtype = x.dtype
    candidates = x if candidates is None else candidates
    n, m = idx.shape
    chunk = max(1, chunk_entries // max(1, m * x.shape[1]))
    n_chunks = -(-n // chunk)
    out: List[Optional[Tensor]] = [None] * n_chunks
    perplexity = type(base) is PerplexityGaussian
    if perplexity:      # distances in float64 from points scaled once (p does not depend on the scale)
        e = exponent_of(x, candidates)
        x, candidates = times_power_of_two(x.double(), -e), times_power_of_two(candidates.double(), -e)

    def calibrate(first: int, last: int) -> None:
        with torch.no_grad():       # grad mode is per thread
            for block in range(first, last):
                rows = slice(block * chunk, (block + 1) * chunk)
                sq_dist = (x[rows].unsqueeze(1) - candidates[idx[rows]]).square_().sum(-1)
                out[block] = base.log_p_from_sq_dist(sq_dist).to(dtype)

    if perplexity and x.device.type == "cpu":
        with rows_not_torch():
            run_rows(calibrate, n_chunks, min_rows=1)
    elif perplexity:
        calibrate(0, n_chunks)
    else:
        with torch.no_grad():
            for block in range(n_chunks):
                rows = slice(block * chunk, (block + 1) * chunk)
                log_p = _evaluate(base, x[rows], candidates[idx[rows]])
                if not isinstance(log_p, Tensor) or log_p.shape != idx[rows].shape:
                    raise IConError(f"{who}: p must return one log-probability per candidate "
                                    f"({tuple(idx[rows].shape)}) when given per-anchor candidates; "
                                    f"got {getattr(log_p, 'shape', type(log_p).__name__)}.")
                out[block] = log_p
    log_p = torch.cat(out)      # type: ignore[arg-type]
    _check_no_nan(log_p, who)
    empty = torch.isneginf(log_p).all(1)
    if bool(empty.any()):
        raise IConError(f"{who}: every point needs a neighbour under p, but {int(empty.sum())} of {n} "
                        f"have none among their {m} nearest candidates (duplicated points?).")
    return log_p


def summed_entries(rows: Tensor, cols: Tensor, values: Tensor, n: int) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """The sparse (n, n) matrix with entries ``values[e]`` at ``(rows[e], cols[e])``, repeated
    positions added, in CSR order: ``(crow (n + 1,), row, col, value)``, sorted by row, then column.

    On the CPU by scipy (one thread, about 1 s for 12.6 million entries, against 1.7-2 s for torch's
    ``coalesce`` on 2 threads, whose waiting threads spin and once took 25 s on a 2-core machine
    shared with a 2-thread job); elsewhere by ``coalesce``. A position repeated twice gets the same
    sum either way (``a + b = b + a``).
    """
    if rows.device.type == "cpu":
        import numpy as np
        import scipy.sparse

        matrix = scipy.sparse.csr_matrix((values.numpy(), (rows.numpy(), cols.numpy())), shape=(n, n))
        matrix.sum_duplicates()
        crow = torch.from_numpy(matrix.indptr.astype(np.int64))
        row = torch.repeat_interleave(torch.arange(n), crow.diff())
        return crow, row, torch.from_numpy(matrix.indices.astype(np.int64)), torch.from_numpy(matrix.data)
    summed = torch.sparse_coo_tensor(torch.stack([rows, cols]), values, (n, n), check_invariants=False).coalesce()
    (row, col), value = summed.indices(), summed.values()
    crow = torch.zeros(n + 1, dtype=torch.long, device=row.device)
    crow[1:] = torch.cumsum(torch.bincount(row, minlength=n), 0)
    return crow, row, col, value


def nearest_neighbors(x: Tensor, n_neighbors: int, y: Optional[Tensor] = None,
                      knn_backend: str = "exact", who: str = "nearest_neighbors") -> Tensor:
    """The (n, n_neighbors) indices j of the smallest ``||x_i - y_j||^2`` for each row i of x
    (``y`` defaults to ``x``, with j = i excluded).

    ``knn_backend="exact"``: chunked brute force (:func:`icontorch.knn.most_similar`).
    ``knn_backend="faiss"``: an HNSW graph (faiss, optional, CPU; approximate), for millions of
    points.
    """
    if knn_backend == "exact":
        return most_similar(x, x if y is None else y, n_neighbors, "squared_euclidean",
                            0 if y is None else None)[0]
    return approximate_knn(x, n_neighbors, "squared_euclidean", who, y)


def knn_affinity(p: Neighborhood, x: Tensor, n_neighbors: int, who: str,
                 knn_backend: str = "exact") -> EdgeAffinity:
    """``p(j|i)`` over each point's ``n_neighbors`` nearest neighbours (squared euclidean), as edges;
    ``P = (p + p^T) / sum(p + p^T)`` on them for a symmetrised p.

    The neighbours are exact with ``knn_backend="exact"`` and approximate with ``"faiss"``.

    Args:
        p: a conditional neighbourhood on the data, or ``symmetrize(conditional)`` for t-SNE.
        x: (n, d) data.
        n_neighbors: candidates per anchor, ``1 <= n_neighbors < n``.
        who: the caller, for error messages.
        knn_backend: ``"exact"`` or ``"faiss"`` (:func:`nearest_neighbors`).

    Returns:
        The edges of p: symmetric joint ``P_ij`` for a symmetrised p, ``p(j|i)`` otherwise.

    On the CPU, torch runs on one thread throughout and the heavy parts (kNN blocks, calibration
    blocks) on the blocking threads of :func:`~icontorch._threads.run_rows`: torch's own threads spin
    while they wait, and its element-wise passes over the edges were measured several times slower
    on a shared machine.
    """
    if x.device.type == "cpu":
        with rows_not_torch():
            return _knn_affinity(p, x, n_neighbors, who, knn_backend)
    return _knn_affinity(p, x, n_neighbors, who, knn_backend)


def _knn_affinity(p: Neighborhood, x: Tensor, n_neighbors: int, who: str, knn_backend: str) -> EdgeAffinity:
    base, joint = split_joint(p)
    n = x.shape[0]
    idx = nearest_neighbors(x, n_neighbors, knn_backend=knn_backend, who=who)
    log_p = _conditional_on_candidates(base, x, idx, who)
    rows = torch.arange(n, device=x.device).repeat_interleave(n_neighbors)
    cols = idx.reshape(-1)
    log_p = log_p.reshape(-1)
    keep = torch.isfinite(log_p)
    rows, cols, log_p = rows[keep], cols[keep], log_p[keep]
    if not joint:
        weight = log_p.exp() / n
        return EdgeAffinity(rows, cols, weight, log_p, n, joint=False)
    # P = (p + p^T) / sum: summing an edge list with its transpose in double precision.
    _, row, col, values = summed_entries(torch.cat([rows, cols]), torch.cat([cols, rows]),
                                         torch.cat([log_p, log_p]).double().exp(), n)
    keep = values > 0
    values = values[keep] / values[keep].sum()
    return EdgeAffinity(row[keep], col[keep], values.to(x.dtype), values.log().to(x.dtype), n, joint=True)


def dense_affinity(p: Neighborhood, x: Tensor, joint: bool, who: str) -> Tensor:
    """The full (n, n) matrix of ``log P_ij`` (joint) or ``log p(j|i)``, ``-inf`` where p is zero."""
    n = x.shape[0]
    with torch.no_grad():
        log_p = _evaluate(p, x)
    expected = (1, n * n) if joint else (n, n)
    if not isinstance(log_p, Tensor) or tuple(log_p.shape) != expected:
        form = "a joint (1, n*n) p such as symmetrize(...)" if joint else "a conditional (n, n) p"
        raise IConError(f"{who}: p must be {form} to match q; got "
                        f"{getattr(log_p, 'shape', type(log_p).__name__)} for {n} points.")
    log_p = log_p.reshape(n, n)
    _check_no_nan(log_p, who)
    return log_p


def affinity_to_reference(p: Neighborhood, x_new: Tensor, x_ref: Tensor, n_neighbors: int,
                          who: str, knn_backend: str = "exact") -> Tuple[Tensor, Tensor]:
    """``p(j | new i)`` over the ``n_neighbors`` nearest reference points of every new point.

    The conditional base of p (symmetrisation needs a square p and is skipped) on candidates
    found by ``knn_backend``. Returns ``(idx, log_p)``, both (n_new, n_neighbors).
    """
    base, _ = split_joint(p)
    idx = nearest_neighbors(x_new, n_neighbors, y=x_ref, knn_backend=knn_backend, who=who)
    return idx, _conditional_on_candidates(base, x_new, idx, who, candidates=x_ref)


def check_n_neighbors(who: str, n_neighbors: int, n: int) -> int:
    """``n_neighbors`` itself when it is an integer in ``[1, n)``; else :class:`IConError`."""
    if not is_integer(n_neighbors) or n_neighbors < 1:
        raise fail(who, "n_neighbors", "be 'auto' or a positive integer", n_neighbors)
    if n_neighbors >= n:
        raise fail(who, "n_neighbors", f"be smaller than the number of samples ({n})", n_neighbors)
    return int(n_neighbors)

