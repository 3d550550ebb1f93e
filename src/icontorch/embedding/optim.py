"""Objectives and optimisers of a neighbour embedding (used by :mod:`icontorch.embedding.base`).

The loss is the I-Con loss of t-SNE (q joint over pairs) or SNE (q per anchor):

    L_a = a * sum_e w_e (-log w(y_i - y_j))  +  R,   R = log Z  or  (1/n) sum_i log Z_i

with ``a = 1`` the KL ``sum_e w_e log p_e + L_1``. ``a > 1`` is early exaggeration: the
attraction is multiplied, the repulsion is not, so it is a warm-up and not a KL (van der Maaten
& Hinton 2008). Each objective is called as ``objective(y, a, with_value) -> (kl, grad)``: the
gradient of ``L_a`` and the KL at ``y``, or NaN in its place when ``with_value`` is False (the
descent asks for it only every few steps, which spares a device synchronisation per step).
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, List, Optional, Sequence, Tuple, Union

import torch
from torch import Tensor

from .._threads import FitThreads
from ..neighborhoods.base import KernelNeighborhood, mask_diagonal
from ..neighborhoods.kernels import KernelProfile
from . import cpu_kernels
from .affinity import EdgeAffinity, summed_entries
from .reference import ReferenceObjective
from .repulsion import GridInterpolator, exact_sums, kernel_profile, ordered_sum, sampled_normaliser

__all__ = ["DenseObjective", "SparseObjective", "ReferenceObjective", "exact_log_normaliser", "gradient_descent",
           "auto_learning_rate", "Callback"]

Callback = Callable[[int, float, Tensor], object]


def exact_log_normaliser(y: Tensor, kernel: KernelNeighborhood, joint: bool,
                         chunk: int = 1024) -> float:
    """``log sum_{i != j} w_ij`` (joint) or ``(1/n) sum_i log sum_{j != i} w_ij``, all pairs, exactly.

    Chunks of anchors keep the memory at O(n * chunk). A Student-t kernel (heavy-tailed: no
    underflow) is summed directly from coordinate differences with float64 accumulation; for a
    joint q only the pairs ``i < j`` are visited (``w`` is symmetric: the sum is twice theirs).
    Any other kernel goes through ``kernel.logits`` and a float64 log-sum-exp.
    """
    n = y.shape[0]
    profile = kernel_profile(kernel)
    y = y.detach()
    if profile is not None and profile.kind == "student_t" and joint:
        if cpu_kernels.available(y):
            return math.log(cpu_kernels.student_t_pair_sum(y, float(profile.param)))
        return math.log(_student_t_pair_sum(y, profile, chunk))
    row_log = []
    with torch.no_grad():
        for start in range(0, n, chunk):
            rows = torch.arange(min(chunk, n - start), device=y.device)
            if profile is not None and profile.kind == "student_t":
                block = y[start:start + chunk]
                d = (block[:, :1] - y[:, 0]).square_()
                for axis in range(1, y.shape[1]):
                    d += (block[:, axis:axis + 1] - y[:, axis]).square_()
                w = profile.block_w(d)
                w[rows, rows + start] = 0.0
                row_log.append(w.sum(1, dtype=torch.float64).log())
            else:
                y64 = y.double()
                logits = kernel.logits(y64[start:start + chunk], y64)
                logits[rows, rows + start] = float("-inf")
                row_log.append(torch.logsumexp(logits, 1))
    lse = torch.cat(row_log)
    return float(torch.logsumexp(lse, 0)) if joint else float(lse.mean())


def _student_t_pair_sum(y: Tensor, profile: KernelProfile, chunk: int) -> float:
    """``sum_{i != j} w_ij`` of a Student-t kernel as ``2 sum_{i < j} w_ij``, in float64 accumulation."""
    n, total = y.shape[0], 0.0
    with torch.no_grad():
        for start in range(0, n, chunk):
            block, rest = y[start:start + chunk], y[start:]
            d = (block[:, :1] - rest[:, 0]).square_()
            for axis in range(1, y.shape[1]):
                d += (block[:, axis:axis + 1] - rest[:, axis]).square_()
            w = profile.block_w(d)
            # the block's own square holds each of its pairs twice and its diagonal once
            rows = torch.arange(block.shape[0], device=y.device)
            w[rows, rows] = 0.0
            own = float(w[:, :block.shape[0]].sum(dtype=torch.float64))
            total += 2.0 * float(w[:, block.shape[0]:].sum(dtype=torch.float64)) + own
    return total


class DenseObjective:
    """The exact objective on the full (n, n) matrices, through ``kernel.logits`` and autograd.

    Args:
        log_p: (n, n) ``log P_ij`` (joint) or ``log p(j|i)``.
        kernel: the kernel of q (``StudentT``, ``Gaussian``, ...).
        joint: q normalised over all pairs (t-SNE) or per anchor (SNE).
    """

    def __init__(self, log_p: Tensor, kernel: KernelNeighborhood, joint: bool) -> None:
        n = log_p.shape[0]
        self.kernel, self.joint = kernel, joint
        self.weight = log_p.exp() / (1 if joint else n)
        support = self.weight > 0
        self.support = support
        self.neg_entropy = float((self.weight * torch.where(support, log_p, 0.0)).sum())

    def terms(self, y: Tensor) -> Tuple[Tensor, Tensor]:
        """The attraction ``-sum w_e log w_ij`` and the repulsion R, differentiable in ``y``."""
        logits = self.kernel.logits(y)
        attraction = -(self.weight * torch.where(self.support, logits, 0.0)).sum()
        masked = logits if self.kernel.include_self else mask_diagonal(logits)
        if self.joint:
            repulsion = torch.logsumexp(masked.reshape(-1), 0)
        else:
            repulsion = torch.logsumexp(masked, 1).mean()
        return attraction, repulsion

    def __call__(self, y: Tensor, exaggeration: float, with_value: bool = True) -> Tuple[float, Tensor]:
        """The KL at ``y`` (NaN unless ``with_value``) and the gradient of ``L_a``."""
        y = y.detach().requires_grad_(True)
        attraction, repulsion = self.terms(y)
        (grad,) = torch.autograd.grad(exaggeration * attraction + repulsion, y)
        if not with_value:
            return math.nan, grad
        return self.neg_entropy + float((attraction + repulsion).detach()), grad

    def kl(self, y: Tensor) -> float:
        with torch.no_grad():
            attraction, repulsion = self.terms(y.double())
        return self.neg_entropy + float(attraction + repulsion)


def _symmetric_csr(affinity: EdgeAffinity) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """``A = W + W^T`` as CSR arrays (crow, col, row of each entry, value), W the edge weights."""
    crow, row, col, value = summed_entries(torch.cat([affinity.rows, affinity.cols]),
                                           torch.cat([affinity.cols, affinity.rows]),
                                           torch.cat([affinity.weight, affinity.weight]), affinity.n)
    return crow, col, row, value


class SparseObjective:
    """The objective with p on a sparse edge list and the repulsion exact, interpolated or sampled.

    The attraction's gradient uses ``A = W + W^T``: ``d/dy_k sum_e W_e (-log w_e)
    = -sum_j A_kj 2 phi'(d_kj) (y_k - y_j)``, one sparse product per step.

    Args:
        affinity: the edges of p.
        kernel: the kernel of q.
        repulsion: ``"exact"``, ``"fft"`` (1-D / 2-D, Student-t or Gaussian) or ``"sampled"``.
        n_negatives: random points per anchor for ``"sampled"``.
        generator: the random stream of ``"sampled"``.
    """

    def __init__(self, affinity: EdgeAffinity, kernel: KernelNeighborhood, repulsion: str,
                 n_negatives: int = 64, generator: Optional[torch.Generator] = None) -> None:
        self.affinity, self.kernel, self.repulsion = affinity, kernel, repulsion
        self.profile: Optional[KernelProfile] = kernel_profile(kernel)
        self.n_negatives = n_negatives
        self.generator = generator if generator is not None else torch.Generator().manual_seed(0)
        self.neg_entropy = affinity.neg_entropy
        self.grid = GridInterpolator(self.profile) if repulsion == "fft" else None
        self.crow, self.col, self.row, self.a_value = _symmetric_csr(affinity)
        self._col32: Optional[Tensor] = None      # the fused CPU loop's column indices, made on first use

    def attraction(self, y: Tensor, exaggeration: float, with_value: bool = True) -> Tuple[Tensor, Tensor]:
        """``-sum_e w_e log w(y_i - y_j)`` (NaN unless ``with_value``) and the gradient of
        ``exaggeration`` times it."""
        if self.profile is None:
            a = self.affinity
            yg = y.detach().requires_grad_(True)
            value = -(a.weight * self.kernel.logits(yg[a.rows], yg[a.cols].unsqueeze(1))[:, 0]).sum()
            (grad,) = torch.autograd.grad(exaggeration * value, yg)
            return value.detach(), grad
        if cpu_kernels.available(y, self.profile) and y.dtype == self.a_value.dtype:
            return self._fused_attraction(y, exaggeration, with_value)
        yt = y.T.contiguous()
        diff = yt.index_select(1, self.row) - yt.index_select(1, self.col)   # (dim, nnz)
        d = diff.square().sum(0)
        # the value only reports the loss (the gradient needs just phi'), so it is skipped when not asked
        value = -0.5 * (self.a_value * self.profile.log_w(d)).sum() if with_value else d.new_tensor(math.nan)
        coef = self.profile.dlog_w(d, inplace=True)          # d is not needed any more
        coef = coef.mul_(self.a_value) if isinstance(coef, Tensor) else self.a_value * coef
        with warnings.catch_warnings():     # "sparse CSR support is in beta": it is all we use
            warnings.simplefilter("ignore", UserWarning)
            matrix = torch.sparse_csr_tensor(self.crow, self.col, coef, (y.shape[0],) * 2,
                                             check_invariants=False)
        pulled = matrix @ torch.cat([y, y.new_ones(y.shape[0], 1)], 1)      # [C y, C 1]
        grad = (-2.0 * exaggeration) * (y * pulled[:, -1:] - pulled[:, :-1])
        return value, grad

    def _fused_attraction(self, y: Tensor, exaggeration: float, with_value: bool) -> Tuple[Tensor, Tensor]:
        """:meth:`attraction` in one pass over the edges (:func:`cpu_kernels.attraction_force`)."""
        if self._col32 is None:
            self._col32 = (self.col.to(torch.int32) if self.col.shape[0] < 2 ** 31 and y.shape[0] < 2 ** 31
                           else self.col)
        grad, d = cpu_kernels.attraction_force(self.crow, self._col32, self.a_value, y, self.profile,
                                               -2.0 * exaggeration, with_value)
        if d is None:
            return y.new_tensor(math.nan), grad
        return -0.5 * ordered_sum(self.a_value * self.profile.log_w(d, inplace=True)), grad

    def repulsion_and_grad(self, y: Tensor) -> Tuple[float, Tensor]:
        n = y.shape[0]
        joint = self.affinity.joint
        if self.repulsion == "sampled":
            yg = y.detach().requires_grad_(True)
            # p's edges (sorted by row, then col) are summed exactly, the rest sampled
            value = sampled_normaliser(yg, self.kernel, joint, self.n_negatives, self.generator,
                                       neighbors=(self.row, self.col))
            (grad,) = torch.autograd.grad(value, yg)
            return float(value.detach()), grad
        ones = y.new_ones(n, 1)
        if self.grid is not None:
            s, g = self.grid(y, ones, total_only=joint)
        else:
            s, g = exact_sums(y, ones, self.profile)
            s = ordered_sum(s) if joint else s
        if joint:
            z = s.sum().clamp_min(1e-30)
            return float(z.log()), g[:, 0] * (2.0 / z)
        z = s[:, 0].clamp_min(1e-30)
        if self.grid is not None:
            _, g_back = self.grid(y, (1.0 / z).unsqueeze(1), with_value=False)
        else:
            _, g_back = exact_sums(y, (1.0 / z).unsqueeze(1), self.profile)
        return float(z.log().mean()), (g[:, 0] / z.unsqueeze(1) + g_back[:, 0]) / n

    def __call__(self, y: Tensor, exaggeration: float, with_value: bool = True) -> Tuple[float, Tensor]:
        attraction, grad_attraction = self.attraction(y, exaggeration, with_value)
        repulsion, grad_repulsion = self.repulsion_and_grad(y)
        return self.neg_entropy + float(attraction) + repulsion, grad_attraction + grad_repulsion

    def kl(self, y: Tensor) -> float:
        """The KL at ``y`` with the normaliser summed exactly over all pairs."""
        a = self.affinity
        with torch.no_grad():
            y64 = y.detach().double()
            log_w = self.kernel.logits(y64[a.rows], y64[a.cols].unsqueeze(1))[:, 0]
            attraction = -float((a.weight.double() * log_w).sum())
        return self.neg_entropy + attraction + exact_log_normaliser(y, self.kernel, a.joint)


def auto_learning_rate(n: int, exaggeration: float) -> float:
    """``max(n / (4 a), 50)``: Belkina et al.'s ``n / a`` in the units of the KL gradient.

    The t-SNE gradient carries a factor 4 (``4 sum_j (p_ij - q_ij) w_ij (y_i - y_j)``) that openTSNE
    drops; ``n / (4 a)`` here is openTSNE's ``n / a``. The floor 50 is scikit-learn's.
    """
    return max(n / (4.0 * exaggeration), 50.0)


def _as_list(callbacks: Union[None, Callback, Sequence[Callback]]) -> List[Callback]:
    if callbacks is None:
        return []
    if callable(callbacks):
        return [callbacks]
    return list(callbacks)


class Progress:
    """A tqdm progress bar showing the loss every 10 steps; does nothing unless ``verbose``."""

    def __init__(self, verbose: bool, total: int, desc: str) -> None:
        self.total, self.bar = total, None
        if verbose:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, leave=False)

    def step(self, done: int, loss: float) -> None:
        if self.bar is not None:
            self.bar.update(1)
            if done % 10 == 0 or done == self.total:
                self.bar.set_postfix(loss=f"{loss:.4f}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _clip_rows(v: Tensor, max_norm: float) -> Tensor:
    """Each row of ``v`` scaled down to length ``max_norm`` when it is longer."""
    norm = v.norm(dim=1, keepdim=True)
    return v * (max_norm / norm.clamp_min(max_norm))


def _momentum_step(update: Tensor, gains: Tensor, grad: Tensor, lr: float, momentum: float,
                   max_step_norm: Optional[float]) -> Tuple[Tensor, Tensor]:
    """The momentum update ``momentum * update - lr * gains * grad`` with delta-bar-delta gains:
    +0.2 while the step keeps its direction, x0.8 when it reverses, at least 0.01."""
    flipped = (update * grad) > 0          # update = -step: same sign = direction flipped
    gains = torch.where(flipped, gains * 0.8, gains + 0.2).clamp_min_(0.01)
    update = momentum * update - lr * gains * grad
    if max_step_norm is not None:
        update = _clip_rows(update, max_step_norm)
    return update, gains


def gradient_descent(y: Tensor, objective: Callable[[Tensor, float, bool], Tuple[float, Tensor]],
                     phases: Sequence[Tuple[int, float]], learning_rate: Union[str, float],
                     momentum: float = 0.8, max_step_norm: Optional[float] = 5.0,
                     max_grad_norm: Optional[float] = None, recenter: bool = True,
                     callbacks: Union[None, Callback, Sequence[Callback]] = None,
                     callbacks_every_iters: int = 50, verbose: bool = False,
                     desc: str = "", threads: Optional[FitThreads] = None) -> Tuple[Tensor, int, float]:
    """t-SNE's optimiser: momentum with per-coordinate gains (Jacobs 1988), as scikit-learn/openTSNE.

    ``update <- momentum * update - lr * gains * grad``, ``y <- y + update``.

    Args:
        y: (n, dim) starting embedding (not modified).
        objective: ``(y, exaggeration, with_value) -> (loss, gradient)``; the loss is asked for
            every 10th iteration, at callbacks and at the end (it may be NaN otherwise), which is
            also when a non-finite loss stops the run.
        phases: ``[(iterations, exaggeration), ...]`` run in order.
        learning_rate: a step size, or ``"auto"`` (:func:`auto_learning_rate` per phase).
        momentum: weight of the previous update.
        max_step_norm: clip each point's update to this length (openTSNE), None for no clip.
        max_grad_norm: clip each point's gradient to this length, None for no clip.
        recenter: subtract the mean after each step (the loss is translation invariant).
        callbacks: ``f(iteration, loss, embedding)``, called every ``callbacks_every_iters``
            iterations; a true return value stops the optimisation.
        verbose: show a progress bar with the loss.
        threads: the fit's thread policy; told of every iteration (:meth:`FitThreads.step`), and
            set back to the requested count at the end.

    Returns:
        ``(embedding, iterations run, last loss)``.
    """
    y = y.detach().clone()
    if threads is not None:
        threads.reset()
    update, gains = torch.zeros_like(y), torch.ones_like(y)
    callbacks = _as_list(callbacks)
    total = sum(iters for iters, _ in phases)
    progress = Progress(verbose, total, desc or "embedding")
    done, loss = 0, float("nan")
    try:
        for iters, exaggeration in phases:
            lr = (auto_learning_rate(y.shape[0], exaggeration) if learning_rate == "auto"
                  else float(learning_rate))
            for _ in range(iters):
                calling = bool(callbacks) and (done + 1) % callbacks_every_iters == 0
                need_value = (done + 1) % 10 == 0 or done + 1 == total or calling
                loss, grad = objective(y, exaggeration, need_value)
                if max_grad_norm is not None:
                    grad = _clip_rows(grad, max_grad_norm)
                update, gains = _momentum_step(update, gains, grad, lr, momentum, max_step_norm)
                y += update
                if recenter:
                    y -= ordered_sum(y) / y.shape[0]
                done += 1
                if threads is not None:
                    threads.step()
                progress.step(done, loss)
                if calling and any([bool(cb(done, loss, y)) for cb in callbacks]):
                    return y, done, loss
                if need_value and not math.isfinite(loss):
                    return y, done, loss
    finally:
        progress.close()
        if threads is not None:
            threads.restore_requested()
    return y, done, loss
