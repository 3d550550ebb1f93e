"""Kernel sums ``sum_j c_j w(y_i - y_j)`` and ``sum_j c_j grad w(y_i - y_j)``: the repulsion of q.

A neighbour embedding's normaliser (``log Z`` of a joint q, ``log Z_i`` of a conditional one)
couples every pair of points. Three ways to get it and its gradient:

* :func:`exact_sums`: all pairs, in chunks of anchors (time O(n^2), memory O(n * chunk)).
* :class:`GridInterpolator`: polynomial interpolation of the kernel on a regular grid and an FFT
  convolution (the FIt-SNE / openTSNE scheme; 1-D and 2-D embeddings; time O(n + grid log grid)).
* :func:`sampled_normaliser`: ``n_negatives`` random points per anchor (any dimension and kernel).

The first two need a translation-invariant kernel of the squared distance, ``w = exp(phi(d))``:
:func:`kernel_profile` reads its :class:`~icontorch.neighborhoods.kernels.KernelProfile` off the
kernel's fused form (``StudentT``, squared-euclidean ``Gaussian``).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Tuple

import torch
from torch import Tensor

from ..neighborhoods.base import FusedKernel, KernelNeighborhood, Neighborhood
from ..neighborhoods.kernels import KernelProfile
from . import cpu_kernels

__all__ = ["kernel_profile", "exact_sums", "GridInterpolator", "sampled_normaliser", "sampled_log_row_sums",
           "ordered_sum", "ordered_logsumexp"]

_BLOCK = 4096     # rows summed per block by ordered_sum


def ordered_sum(v: Tensor) -> Tensor:
    """``sum_i v_i`` over the first axis, added in an order that does not depend on torch's threads.

    torch splits a long reduction into one part per thread, so ``v.sum(0)`` rounds differently
    with 1 and with 2 threads; a t-SNE run amplifies such last-bit differences into another map.
    Here each block of 4,096 rows is summed by one thread (a reduction with several outputs is
    split by output, not inside one), and the block sums again the same way, so a fit whose
    thread count changes while it runs (:class:`icontorch._threads.FitThreads`) stays
    reproducible.
    """
    while v.shape[0] > _BLOCK:
        pad = (-v.shape[0]) % _BLOCK
        if pad:
            v = torch.cat([v, v.new_zeros((pad,) + tuple(v.shape[1:]))])
        v = v.reshape((-1, _BLOCK) + tuple(v.shape[1:])).sum(1)
    return v.sum(0)


def ordered_logsumexp(v: Tensor) -> Tensor:
    """``log sum_i exp(v_i)`` of a 1-D tensor through :func:`ordered_sum` (thread-count invariant)."""
    top = v.detach().max()
    if not bool(torch.isfinite(top)):
        return torch.logsumexp(v, 0)
    return top + ordered_sum((v - top).exp()).log()


def kernel_profile(kernel: Neighborhood) -> Optional[KernelProfile]:
    """``log w = phi(d)`` of a kernel on the squared distance (``kernel.fused_form()``: Student-t,
    squared-euclidean Gaussian), its parameter a float; None for any other neighbourhood.

    A learned scale is read as it is now: the embedding's optimiser moves the points, not the kernel.
    """
    form = kernel.fused_form()
    if not isinstance(form, FusedKernel) or form.metric != "squared_euclidean" or form.beta != 0:
        return None
    return form.profile.detach()


def exact_sums(y: Tensor, charges: Tensor, profile: KernelProfile, y_ref: Optional[Tensor] = None,
               chunk: int = 1024) -> Tuple[Tensor, Tensor]:
    """``S_i = sum_j c_j w(y_i - r_j)`` and ``G_i = sum_j c_j grad w(y_i - r_j)``, all pairs.

    Args:
        y: (n, dim) points at which the sums are taken.
        charges: (m, C) weights ``c_j`` of the reference points.
        profile: the kernel.
        y_ref: (m, dim) reference points; None for ``y`` itself, with ``j = i`` left out.
        chunk: anchors per block (memory O(chunk * m)).

    Returns:
        ``S`` (n, C) and ``G`` (n, C, dim).
    """
    ref = y if y_ref is None else y_ref
    s_out, g_out = [], []
    for start in range(0, y.shape[0], chunk):
        block = y[start:start + chunk]
        # direct differences: the expansion |a|^2 + |b|^2 - 2ab loses the small distances that
        # matter most to a heavy-tailed kernel when the embedding is far from the origin
        diff = block.unsqueeze(1) - ref.unsqueeze(0)                       # (b, m, dim)
        d = diff.pow(2).sum(-1)
        w = profile.w(d)
        if y_ref is None:
            rows = torch.arange(block.shape[0], device=y.device)
            w[rows, rows + start] = 0.0
        grad_coef = 2.0 * w * profile.dlog_w(d)                            # grad w = coef * diff
        s_out.append(w @ charges)
        g_out.append(torch.einsum("bm,mc,bmk->bck", grad_coef, charges, diff))
    return torch.cat(s_out), torch.cat(g_out)


def _lagrange_weights(t: Tensor, n_interp: int) -> Tensor:
    """Lagrange basis at nodes ``(k + 1/2) / n_interp`` evaluated at ``t`` in [0, 1]: (n, n_interp)."""
    nodes = [(k + 0.5) / n_interp for k in range(n_interp)]
    out = []
    for k in range(n_interp):
        basis = torch.ones_like(t)
        for m in range(n_interp):
            if m != k:
                basis = basis * (t - nodes[m]) / (nodes[k] - nodes[m])
        out.append(basis)
    return torch.stack(out, 1)


def _smooth_size(n: int) -> int:
    """The smallest m >= n whose prime factors are 2, 3 and 5 (fast FFT lengths)."""
    m = n
    while True:
        k = m
        for f in (2, 3, 5):
            while k % f == 0:
                k //= f
        if k == 1:
            return m
        m += 1


class GridInterpolator:
    """Kernel sums of :func:`exact_sums` (self excluded) by grid interpolation and FFT convolution.

    The square holding the points is cut into ``n_boxes`` intervals per dimension, each no wider
    than the kernel's half width and at least ``min_intervals`` of them; ``n_interp`` equispaced
    nodes per interval make a regular grid, so the node-to-node kernel matrix is Toeplitz and is
    applied by FFT (Linderman et al. 2019, the scheme of FIt-SNE and openTSNE). Charges are
    spread to the nodes with Lagrange weights and the potentials read back with the same weights.
    Once the points span more than ``min_intervals`` half widths the node spacing is fixed, so
    the kernel's spectrum is cached and recomputed only when the grid grows.

    Args:
        profile: the kernel.
        n_interp: nodes per interval.
        min_intervals: lower bound on the intervals per dimension.
        max_intervals: upper bound on the intervals per dimension.
    """

    def __init__(self, profile: KernelProfile, n_interp: int = 3, min_intervals: int = 50,
                 max_intervals: int = 500) -> None:
        self.profile, self.n_interp = profile, n_interp
        self.min_intervals, self.max_intervals = min_intervals, max_intervals
        self._cache: dict = {}

    def _layout(self, extent: float) -> Tuple[int, float]:
        width = self.profile.half_width()
        if extent <= self.min_intervals * width:
            return self.min_intervals, max(extent, 1e-12) * (1 + 1e-6) / self.min_intervals
        n_boxes = math.ceil(extent * (1 + 1e-6) / width)
        if n_boxes > self.max_intervals:
            return self.max_intervals, extent * (1 + 1e-6) / self.max_intervals
        # grow in steps of ~10% so that the cached spectrum serves many iterations
        n_boxes = max(n_boxes, int(self.min_intervals * 1.1 ** math.ceil(
            math.log(n_boxes / self.min_intervals) / math.log(1.1))))
        return min(n_boxes, self.max_intervals), width

    def _spectrum(self, n_boxes: int, box: float, dim: int, like: Tensor) -> Tensor:
        """Spectra (2, 1, ...) of the kernel ``w`` and of the radial force kernel ``2 phi'(d) w``."""
        key = (n_boxes, box, dim, like.dtype, like.device)
        if key in self._cache:
            return self._cache[key]
        size = n_boxes * self.n_interp
        length = _smooth_size(2 * size - 1)
        spacing = box / self.n_interp
        # offsets 0..size-1 then -(size-1)..-1 on a circle of `length` nodes; the rest is unused
        offs = torch.arange(length, device=like.device, dtype=like.dtype)
        offs = torch.where(offs < size, offs, offs - length) * spacing
        d = sum(offs.reshape((-1,) + (1,) * (dim - 1 - a)).square() for a in range(dim))
        w = self.profile.w(d)
        kernels = torch.stack([w, 2.0 * w * self.profile.dlog_w(d)]).expand((2,) + (length,) * dim)
        spectrum = torch.fft.rfftn(kernels, dim=tuple(range(-dim, 0))).unsqueeze(1)
        if len(self._cache) > 8:
            self._cache.clear()
        self._cache[key] = spectrum
        return spectrum

    def _parseval_weight(self, spectrum: Tensor, length: int, like: Tensor) -> Tensor:
        """``Re k^(f)`` times 2 on the half spectrum's inner columns (each stands for two frequencies)."""
        key = ("parseval", id(spectrum))
        cached = self._cache.get(key)
        if cached is not None and cached[0] is spectrum:
            return cached[1]
        half = torch.full((spectrum.shape[-1],), 2.0, dtype=like.dtype, device=like.device)
        half[0] = 1.0
        if length % 2 == 0:
            half[-1] = 1.0
        weight = (spectrum[0].real * half).contiguous()
        self._cache[key] = (spectrum, weight)
        return weight

    def _stencil(self, y: Tensor, lo: float, n_boxes: int, box: float) -> Tuple[Tensor, Tensor]:
        """Lagrange weights (n, p^dim) of each point on the nodes of its cell, and the node indices."""
        n, dim = y.shape
        p = self.n_interp
        size = n_boxes * p
        weights, index = None, None
        for axis in range(dim):
            u = ((y[:, axis] - lo) / box).clamp(0.0, float(n_boxes))
            cell = u.floor().clamp_(0, n_boxes - 1)
            lag = _lagrange_weights(u - cell, p)                               # (n, p)
            node = cell.long().unsqueeze(1) * p + torch.arange(p, device=y.device)
            if weights is None:
                weights, index = lag, node
            else:
                weights = (weights.unsqueeze(2) * lag.unsqueeze(1)).reshape(n, -1)
                index = (index.unsqueeze(2) * size + node.unsqueeze(1)).reshape(n, -1)
        return weights, index

    def _spread(self, y: Tensor, charges: Tensor, lo: float, n_boxes: int, box: float) -> Tensor:
        """The charges (n, C) on the grid's nodes, (C, size ** dim), with the Lagrange weights."""
        if cpu_kernels.available(y) and charges.dtype == y.dtype:
            return cpu_kernels.spread_to_grid(y, charges, lo, box, n_boxes, self.n_interp)
        weights, index = self._stencil(y, lo, n_boxes, box)
        grid = charges.new_zeros(charges.shape[1], (n_boxes * self.n_interp) ** y.shape[1])
        spread = (weights.unsqueeze(2) * charges.unsqueeze(1)).reshape(-1, charges.shape[1]).T
        return grid.index_add_(1, index.reshape(-1), spread)

    def _read(self, potential: Tensor, y: Tensor, lo: float, n_boxes: int, box: float) -> Tensor:
        """Node potentials (K, size ** dim) interpolated at the points: (K, n)."""
        if cpu_kernels.available(y) and potential.dtype == y.dtype:
            return cpu_kernels.read_from_grid(potential, y, lo, box, n_boxes, self.n_interp)
        weights, index = self._stencil(y, lo, n_boxes, box)
        return (potential[:, index] * weights).sum(-1)

    @staticmethod
    def _charge_spectrum(grid: Tensor, size: int, dim: int, length: int) -> Tensor:
        """The zero-padded FFT of the charge grids, one axis at a time: the last axis first, so that the
        second transform runs only over the ``size`` rows that hold charges (not ``length``)."""
        grid = grid.reshape((grid.shape[0],) + (size,) * dim)
        out = torch.fft.rfft(grid, n=length, dim=-1)
        for axis in range(dim - 1):
            out = torch.fft.fft(out, n=length, dim=-2 - axis)
        return out.unsqueeze(0)

    @staticmethod
    def _node_potentials(spectrum: Tensor, charge_spectrum: Tensor, size: int, dim: int,
                         length: int) -> Tensor:
        """(K, C, nodes): every kernel convolved with every charge grid.

        The inverse transform keeps the first ``size`` nodes of each axis as soon as that axis is
        done, so the last (real) transform runs over ``size`` rows only."""
        potential = spectrum * charge_spectrum
        for axis in range(dim - 1):
            potential = torch.fft.ifft(potential, n=length, dim=-dim + axis).narrow(-dim + axis, 0, size)
        potential = torch.fft.irfft(potential, n=length, dim=-1).narrow(-1, 0, size)
        return potential.reshape(spectrum.shape[0], charge_spectrum.shape[1], -1)

    @staticmethod
    def _moments(y: Tensor, charges: Tensor) -> Tensor:
        """Charges ``[c, c y_1, ..., c y_dim]`` (n, C (1 + dim)) for the radial force kernel."""
        return torch.cat([charges] + [charges * y[:, a:a + 1] for a in range(y.shape[1])], 1)

    @staticmethod
    def _forces(y: Tensor, read: Tensor, n_charges: int) -> Tensor:
        """``sum_j c_j f(d_ij) (y_i - y_j) = y_i F[c] - F[c y]`` from the read-back potentials."""
        read = read.reshape(1 + y.shape[1], n_charges, -1)                   # (1 + dim, C, n)
        return (y.T.unsqueeze(1) * read[0] - read[1:]).permute(2, 1, 0)     # (n, C, dim)

    def __call__(self, y: Tensor, charges: Tensor, with_value: bool = True,
                 total_only: bool = False) -> Tuple[Optional[Tensor], Tensor]:
        """``S`` (n, C) and ``G`` (n, C, dim); with ``total_only``, ``S`` is ``sum_i c_i S_i`` (C,).

        ``G`` comes from the radial kernel ``f = 2 phi'(d) w`` (``grad w(r) = f r``) applied to the
        charges ``c`` and ``c y`` (FIt-SNE's form): a smooth even kernel interpolates far better
        than the odd gradient kernel.

        Args:
            y: (n, dim) points, dim 1 or 2.
            charges: (n, C) weights ``c_j``.
            with_value: compute ``S``; else return None for it.
            total_only: return the charge-weighted total of ``S`` (by Parseval, without an inverse
                FFT), which is all a joint normaliser needs.
        """
        y = y.detach()
        dim, n_charges = y.shape[1], charges.shape[1]
        lo_pt, hi_pt = float(y.min()), float(y.max())
        n_boxes, box = self._layout(hi_pt - lo_pt)
        lo = 0.5 * (lo_pt + hi_pt) - 0.5 * n_boxes * box
        size = n_boxes * self.n_interp
        length = _smooth_size(2 * size - 1)
        grid = self._spread(y, self._moments(y, charges), lo, n_boxes, box)
        charge_spectrum = self._charge_spectrum(grid, size, dim, length)   # (1, C (1 + dim), ...)
        spectrum = self._spectrum(n_boxes, box, dim, y)                     # (2, 1, ...)
        w0 = float(self.profile.w(torch.zeros(())))
        s = None
        if with_value and total_only:
            # <g, k * g> = (1 / L^dim) sum_f k^(f) |g^(f)|^2 (Parseval); the half spectrum counts
            # twice every frequency of the last axis but 0 and (for even L) L/2.
            c = charge_spectrum[0, :n_charges]
            power = (c.real.square() + c.imag.square()) * self._parseval_weight(spectrum, length, y)
            for _ in range(dim):       # axis by axis: many outputs each time, so thread-count invariant
                power = power.sum(-1)
            s = power / length ** dim - w0 * ordered_sum(charges.square())
        elif with_value:
            potential = self._node_potentials(spectrum[:1], charge_spectrum[:, :n_charges], size, dim,
                                              length)
            s = self._read(potential[0], y, lo, n_boxes, box).T - w0 * charges
        potential = self._node_potentials(spectrum[1:], charge_spectrum, size, dim, length)
        return s, self._forces(y, self._read(potential[0], y, lo, n_boxes, box), n_charges)

    def field(self, y_ref: Tensor, charges: Tensor,
              margin: float = 0.1) -> Callable[[Tensor], Tuple[Tensor, Tensor]]:
        """The sums over fixed reference points as a function of any query points.

        The grid covers the references' square widened by ``margin`` on each side; queries
        outside it are evaluated at its border (where the kernel sums are small, but the forces
        are not those of the query: callers use ``evaluate.bounds``, the ``(low, high)`` corners of
        the covered square, to treat such points otherwise). Returns
        ``evaluate(y) -> (S (n, C), G (n, C, dim))`` with no self term to exclude.
        """
        y_ref = y_ref.detach()
        dim, n_charges = y_ref.shape[1], charges.shape[1]
        lo_pt, hi_pt = float(y_ref.min()), float(y_ref.max())
        pad = margin * (hi_pt - lo_pt) + self.profile.half_width()
        n_boxes, box = self._layout(hi_pt - lo_pt + 2 * pad)
        lo = 0.5 * (lo_pt + hi_pt) - 0.5 * n_boxes * box
        size = n_boxes * self.n_interp
        length = _smooth_size(2 * size - 1)
        grid = self._spread(y_ref, self._moments(y_ref, charges), lo, n_boxes, box)
        charge_spectrum = self._charge_spectrum(grid, size, dim, length)
        spectrum = self._spectrum(n_boxes, box, dim, y_ref)
        value = self._node_potentials(spectrum[:1], charge_spectrum[:, :n_charges], size, dim, length)[0]
        force = self._node_potentials(spectrum[1:], charge_spectrum, size, dim, length)[0]

        def evaluate(y: Tensor) -> Tuple[Tensor, Tensor]:
            y = y.detach()
            return (self._read(value, y, lo, n_boxes, box).T,
                    self._forces(y, self._read(force, y, lo, n_boxes, box), n_charges))

        evaluate.bounds = (lo, lo + n_boxes * box)     # type: ignore[attr-defined]
        return evaluate


def sampled_log_row_sums(y: Tensor, kernel: KernelNeighborhood, n_negatives: int,
                         generator: torch.Generator,
                         neighbors: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """``log Z^_i`` (n,) with ``Z^_i = (n - 1) / m sum_s w(y_i - y_{j_s})``, the j_s drawn uniformly
    (with replacement) from the points other than i.

    Each ``Z^_i`` is an unbiased estimate of ``Z_i = sum_{j != i} w_ij`` (each draw has mean
    ``Z_i / (n - 1)``), and so is its gradient in ``y`` of ``grad Z_i``; ``sum_i Z^_i`` is unbiased
    for the joint normaliser ``Z`` (tests/embedding/test_sampled_unbiased.py checks both).

    ``neighbors``: optional ``(row, col)`` pairs, sorted by row then col, of each anchor's fixed
    neighbours (the edges of p): their ``w_ij`` are summed exactly and the draws that hit them
    count 0, ``Z^_i = sum_{j in N(i)} w_ij + (n - 1) / m sum_s [j_s not in N(i)] w_{i j_s}`` (still
    unbiased). The near points, which carry most of ``Z_i`` once the map has formed, are then never
    missing from the estimate; without them a draw of only far points gives a Gaussian kernel's
    softmax all its weight on those and a force that grows with the distance (the map runs away).
    """
    n = y.shape[0]
    m = n_negatives
    j = torch.randint(0, n - 1, (n, m), generator=generator, device="cpu").to(y.device)
    anchors = torch.arange(n, device=y.device).unsqueeze(1)
    j = j + (j >= anchors).long()
    logits = kernel.logits(y, y[j]) + math.log((n - 1) / m)                 # (n, m)
    if neighbors is None:
        return torch.logsumexp(logits, 1)
    row, col = neighbors
    keys = row * n + col
    drawn = (anchors * n + j).reshape(-1)
    at = torch.searchsorted(keys, drawn).clamp_(max=keys.numel() - 1)
    logits = logits.masked_fill((keys[at] == drawn).reshape(n, m), float("-inf"))
    edge_logits = kernel.logits(y[row], y[col].unsqueeze(1))[:, 0]          # (nnz,)
    shift = logits.detach().amax(1).scatter_reduce(0, row, edge_logits.detach(), "amax")
    shift = torch.where(torch.isfinite(shift), shift, torch.zeros_like(shift))
    total = (logits - shift.unsqueeze(1)).exp().sum(1).index_add(0, row, (edge_logits - shift[row]).exp())
    return total.log() + shift


def sampled_normaliser(y: Tensor, kernel: KernelNeighborhood, joint: bool, n_negatives: int,
                       generator: torch.Generator,
                       neighbors: Optional[Tuple[Tensor, Tensor]] = None) -> Tensor:
    """``log Z^`` (joint, ``Z^ = sum_i Z^_i``) or ``mean_i log Z^_i`` from ``n_negatives`` random j per
    anchor (:func:`sampled_log_row_sums`); a differentiable function of ``y`` through
    ``kernel.logits`` (any kernel, any dimension).

    ``Z^`` and its gradient are unbiased; the repulsive force ``grad log Z^ = grad Z^ / Z^`` is a
    ratio of two unbiased sums over ``n * n_negatives`` draws, so its relative bias is of the order
    of ``1 / (n * n_negatives)`` of the draws' relative variance (the log is the loss's, not an
    estimate of ``log Z`` without bias).
    """
    rows = sampled_log_row_sums(y, kernel, n_negatives, generator, neighbors)
    if joint:
        return ordered_logsumexp(rows)
    return ordered_sum(rows) / y.shape[0]
