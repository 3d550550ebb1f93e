"""Further kernels that the periodic table and its relatives need.

* :class:`PowerExponential` -- ``exp(-||x_i - y_j||^gamma / temperature)`` (Kernel-InfoNCE; gamma = 1
  is the Laplacian kernel, gamma = 2 the Gaussian).
* :class:`Harmonic` -- ``(||x_i - y_j||^2 + (n - 1) sigma^2)^(-n/2)`` (harmonic loss, Thm 10).
* :class:`GraphKernel` -- ``exp(w_ij / d_j)``, the "Gaussian on graph weights" of Normalized Cuts (Thm 14).
* :class:`SpectralGaussian` -- a Gaussian on the spectral embedding of a graph (Cor 4).
* :class:`Logits` -- ``softmax_k(x_ik / temperature)``: a row of scores is the distribution (DINO).
* :class:`SinkhornCodes` -- SwAV's equipartitioned codes over prototypes, without gradient.
* :class:`StopGradient` -- any neighbourhood, detached (teacher targets).
* :class:`DisjointUnion` -- several neighbourhoods side by side with weights: one I-Con loss that
  equals a weighted sum of I-Con losses (Kernel-InfoNCE's "sum" and "concatenation").
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import torch
from torch import Tensor

from .._validation import IConError, check_features, check_index, check_int, check_positive, fail
from ..distances import squared_euclidean
from .base import KernelNeighborhood, Neighborhood, NeighborhoodLike, as_neighborhood, log_normalize, mask_diagonal

__all__ = ["PowerExponential", "Harmonic", "GraphKernel", "SpectralGaussian", "Logits",
           "SinkhornCodes", "StopGradient", "DisjointUnion", "spectral_embedding"]


def _safe_sq_dist(x: Tensor, y: Optional[Tensor]) -> Tensor:
    # Powers and logs of d^2 have infinite slope at 0 (the masked diagonal): keep them finite.
    return squared_euclidean(x, x if y is None else y).clamp_min(torch.finfo(x.dtype).tiny)


class PowerExponential(KernelNeighborhood):
    """``q(j|i) = exp(-||x_i - y_j||^gamma / temperature) / sum_k exp(-||x_i - y_k||^gamma / temperature)``.

    The kernel family of Kernel-InfoNCE (Tan et al. 2024): ``gamma = 2`` is the Gaussian
    (on unit vectors, NT-Xent at temperature ``temperature / 2``), ``gamma = 1`` the Laplacian,
    ``gamma = 0.5`` the exponential kernel. The distance is Euclidean (not squared) to the power gamma.

    Args:
        gamma: power of the Euclidean distance, in (0, 2].
        temperature: the log-weight is ``-d^gamma / temperature``.
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, gamma: float = 1.0, temperature: float = 0.5, include_self: bool = False) -> None:
        super().__init__()
        self.gamma = check_positive("PowerExponential", "gamma", gamma)
        if self.gamma > 2.0:
            raise fail("PowerExponential", "gamma", "lie in (0, 2] (a positive-definite kernel)", gamma)
        self.temperature = check_positive("PowerExponential", "temperature", temperature)
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        return -_safe_sq_dist(x, y).pow(self.gamma / 2.0) / self.temperature

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, temperature={self.temperature}, include_self={self.include_self}"


class Harmonic(KernelNeighborhood):
    """``q(j|i) ∝ (||x_i - y_j||^2 + (n - 1) sigma^2)^(-n/2)``, ``n = exponent``.

    Thm 10 (harmonic loss, Baek et al. 2025): a Student-t kernel with ``n - 1`` degrees of freedom
    and scale sigma, ``(1 + d^2 / ((n - 1) sigma^2))^(-n/2)``. At ``sigma = 0`` (the limit of the
    theorem) it is Baek et al.'s harmonic kernel ``d^(-n) / sum_k d_k^(-n)`` on the Euclidean
    distance d; the paper's ``n`` is ``exponent / 2``.

    Args:
        exponent: the power n on the (unsquared) distance; with ``sigma > 0`` it must exceed 1.
        sigma: the width, >= 0 (0 is the harmonic loss itself).
        include_self: keep ``j = i`` as a candidate when ``y`` is None.
    """

    def __init__(self, exponent: float = 2.0, sigma: float = 0.0, include_self: bool = False) -> None:
        super().__init__()
        self.exponent = check_positive("Harmonic", "exponent", exponent)
        if isinstance(sigma, bool) or not isinstance(sigma, (int, float)) or not sigma >= 0 \
                or not math.isfinite(sigma):
            raise fail("Harmonic", "sigma", "be a finite number >= 0", sigma)
        if sigma > 0 and self.exponent <= 1.0:
            raise fail("Harmonic", "exponent", "exceed 1 when sigma > 0 (n - 1 degrees of freedom)",
                       exponent)
        self.sigma = float(sigma)
        self.include_self = bool(include_self)

    def logits(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        offset = (self.exponent - 1.0) * self.sigma ** 2
        return -0.5 * self.exponent * torch.log(_safe_sq_dist(x, y) + offset)

    def extra_repr(self) -> str:
        return f"exponent={self.exponent}, sigma={self.sigma}, include_self={self.include_self}"


def _dense_weights(who: str, weights: Tensor) -> Tensor:
    if not isinstance(weights, Tensor) or weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise fail(who, "weights", "be a square (N, N) tensor", weights)
    weights = weights.to_dense() if weights.layout != torch.strided else weights
    if not weights.is_floating_point() or not bool(weights.isfinite().all()) or bool((weights < 0).any()):
        raise fail(who, "weights", "hold finite non-negative floats", weights)
    if not bool((weights.sum(1) > 0).all()):
        raise fail(who, "weights", "give every node a positive degree", weights)
    return weights


def _check_nodes(who: str, name: str, ids: Tensor, n_nodes: int) -> None:
    check_index(who, name, ids)
    if bool((ids < 0).any()) or bool((ids >= n_nodes).any()):
        raise fail(who, name, f"hold node ids in [0, {n_nodes})", ids)


class GraphKernel(Neighborhood):
    """``p(j|i) = exp(w_ij / d_j) / sum_k exp(w_ik / d_k)``: the "Gaussian on graph weights" of Thm 14.

    Normalized Cuts' supervisory kernel (our reading of a garbled Table 1 cell; the hard-partition
    identity in ``methods.normalized_cuts`` makes it exact). ``d_j = sum_k w_jk`` is the degree of
    node j in the whole graph. Anchors and candidates are node ids; self is included by default,
    as the cluster kernel it is compared with includes it.

    Args:
        weights: (N, N) non-negative edge weights (dense or sparse); every degree positive.
        include_self: keep ``j = i`` when ``y`` is None.
    """

    def __init__(self, weights: Tensor, include_self: bool = True) -> None:
        super().__init__()
        weights = _dense_weights("GraphKernel", weights)
        self.register_buffer("weights", weights)
        self.include_self = bool(include_self)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        n_nodes = self.weights.shape[0]
        _check_nodes("GraphKernel", "x", x, n_nodes)
        cols = x if y is None else y
        if y is not None:
            _check_nodes("GraphKernel", "y", y, n_nodes)
        degree = self.weights.sum(1)
        logits = self.weights[x][:, cols] / degree[cols][None, :]
        if y is None and not self.include_self:
            logits = mask_diagonal(logits)
        return log_normalize(logits)

    def extra_repr(self) -> str:
        return f"weights=<{tuple(self.weights.shape)}>, include_self={self.include_self}"


def spectral_embedding(weights: Tensor, n_components: int) -> Tensor:
    """The spectral embedding of a graph: bottom eigenvectors of ``I - D^-1/2 W D^-1/2``, over ``D^1/2``.

    The convention of scikit-learn's ``spectral_embedding(norm_laplacian=True, drop_first=False)``
    (the map that ``SpectralClustering`` hands to k-Means), up to the sign of each column.
    Dense ``eigh`` in float64: for graphs of up to a few thousand nodes.
    """
    who = "spectral_embedding"
    weights = _dense_weights(who, weights).to(torch.float64)
    check_int(who, "n_components", n_components, 1)
    if n_components > weights.shape[0]:
        raise fail(who, "n_components", f"be at most the number of nodes ({weights.shape[0]})",
                   n_components)
    inv_sqrt = weights.sum(1).rsqrt()
    laplacian = torch.eye(weights.shape[0], dtype=torch.float64) - inv_sqrt[:, None] * weights * inv_sqrt
    _, vectors = torch.linalg.eigh(laplacian)
    return vectors[:, :n_components] * inv_sqrt[:, None]


class SpectralGaussian(Neighborhood):
    """``p(j|i) ∝ exp(-||u_i - u_j||^2 / (2 sigma^2))`` on the spectral embedding u of a fixed graph.

    Spectral clustering as I-Con (Cor 4): the k-Means construction applied to the spectral map
    (:func:`spectral_embedding`). Anchors and candidates are node ids; self is included, as in
    the k-Means theorem.

    Args:
        weights: (N, N) non-negative affinities.
        n_components: dimension of the spectral map (the number of clusters, as Ng et al.).
        sigma: width of the Gaussian.
    """

    include_self = True

    def __init__(self, weights: Tensor, n_components: int, sigma: float = 1.0) -> None:
        super().__init__()
        self.n_components = check_int("SpectralGaussian", "n_components", n_components, 1)
        self.sigma = check_positive("SpectralGaussian", "sigma", sigma)
        self.register_buffer("embedding", spectral_embedding(weights, n_components))

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        n_nodes = self.embedding.shape[0]
        _check_nodes("SpectralGaussian", "x", x, n_nodes)
        if y is not None:
            _check_nodes("SpectralGaussian", "y", y, n_nodes)
        u = self.embedding.to(torch.get_default_dtype())
        d = squared_euclidean(u[x], u[x if y is None else y])
        return log_normalize(-d / (2.0 * self.sigma ** 2))

    def extra_repr(self) -> str:
        return (f"embedding=<{tuple(self.embedding.shape)}>, n_components={self.n_components}, "
                f"sigma={self.sigma}")


class Logits(Neighborhood):
    """``p(k|i) = exp(x_ik / temperature) / sum_l exp(x_il / temperature)``: each row of scores.

    The candidates are the columns of ``x`` (prototypes, clusters, classes): a head's output is
    the distribution itself. DINO's teacher and student (with their two temperatures) and any
    classifier whose logits are given directly. ``y`` must be None.

    Args:
        temperature: divides the scores before the softmax.
    """

    include_self = True  # the candidates are columns, never the anchor itself

    def __init__(self, temperature: float = 1.0) -> None:
        super().__init__()
        self.temperature = check_positive("Logits", "temperature", temperature)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_features("Logits", "x", x)
        if y is not None:
            raise fail("Logits", "y", "be None (the columns of x are the candidates)", y)
        return torch.log_softmax(x / self.temperature, dim=1)

    def extra_repr(self) -> str:
        return f"temperature={self.temperature}"


class SinkhornCodes(Neighborhood):
    """SwAV's codes: ``exp(s / epsilon)`` scaled by Sinkhorn-Knopp to equal prototype mass, no gradient.

    ``x`` holds the (n, K) scores ``z_i . c_k`` of a batch against the K prototypes. The matrix
    ``exp(s / epsilon)`` is normalised to total mass 1, then ``n_iter`` times its prototype
    columns are set to mass 1/K and its sample rows to 1/n; each row, times n, is ``p(k|i)``
    (Caron et al. 2020; computed in log space, without gradient, as SwAV's codes are).

    Args:
        epsilon: the entropic regularisation (SwAV: 0.05).
        n_iter: Sinkhorn iterations (SwAV: 3).
    """

    include_self = True

    def __init__(self, epsilon: float = 0.05, n_iter: int = 3) -> None:
        super().__init__()
        self.epsilon = check_positive("SinkhornCodes", "epsilon", epsilon)
        self.n_iter = check_int("SinkhornCodes", "n_iter", n_iter, 1)

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        check_features("SinkhornCodes", "x", x)
        if y is not None:
            raise fail("SinkhornCodes", "y", "be None (the columns of x are the prototypes)", y)
        with torch.no_grad():
            n, k = x.shape
            log_q = x.detach() / self.epsilon
            log_q = log_q - torch.logsumexp(log_q.reshape(-1), dim=0)
            for _ in range(self.n_iter):
                log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(k)
                log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(n)
            return log_q + math.log(n)

    def extra_repr(self) -> str:
        return f"epsilon={self.epsilon}, n_iter={self.n_iter}"


class StopGradient(Neighborhood):
    """``sg[p(j|i)]``: the base neighbourhood, detached (targets from a teacher or from the model).

    Args:
        base: the neighbourhood whose output carries no gradient.
    """

    def __init__(self, base: NeighborhoodLike) -> None:
        super().__init__()
        self.base = as_neighborhood(base, "StopGradient", "base")
        self.include_self = self.base.include_self

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        return self.base(x, y).detach()


Block = Tuple[int, Optional[int]]


class DisjointUnion(Neighborhood):
    """``p((k, j)|i) = w_k p_k(j|i)``: the neighbour spaces of several neighbourhoods side by side.

    With the same weights on both sides, ``KL(p~_i || q~_i) = sum_k w_k KL(p_k(.|i) || q_k(.|i))``
    exactly, so a weighted sum of I-Con losses is itself one I-Con loss (Kernel-InfoNCE's "sum":
    one p, two kernels; its "concatenation": each kernel on its own block of coordinates). The
    output is (n, K m): block k holds ``log w_k + log p_k``.

    Args:
        parts: the K neighbourhoods.
        weights: K positive weights summing to 1.
        blocks: optional K ``(start, stop)`` ranges of the last (feature) dimension given to each
            part; ``stop=None`` runs to the end.
    """

    def __init__(self, parts: Sequence[NeighborhoodLike], weights: Sequence[float],
                 blocks: Optional[Sequence[Block]] = None) -> None:
        super().__init__()
        who = "DisjointUnion"
        if len(parts) < 1:
            raise fail(who, "parts", "hold at least one neighbourhood", parts)
        self.parts = torch.nn.ModuleList([as_neighborhood(p, who, "parts") for p in parts])
        weights = tuple(float(w) for w in weights)
        if len(weights) != len(parts) or any(not (w > 0) for w in weights) \
                or abs(sum(weights) - 1.0) > 1e-9:
            raise fail(who, "weights", f"be {len(parts)} positive numbers summing to 1", weights)
        self.weights = weights
        if blocks is not None:
            blocks = tuple((int(a), None if b is None else int(b)) for a, b in blocks)
            if len(blocks) != len(parts) or any(not (0 <= a and (b is None or a < b)) for a, b in blocks):
                raise fail(who, "blocks", f"be {len(parts)} ranges (start, stop) with 0 <= start < stop",
                           blocks)
        self.blocks = blocks
        self.include_self = self.parts[0].include_self

    def forward(self, x: Optional[Tensor], y: Optional[Tensor] = None) -> Tensor:
        out = []
        for k, (part, weight) in enumerate(zip(self.parts, self.weights)):
            xk, yk = x, y
            if self.blocks is not None:
                start, stop = self.blocks[k]
                end = start + 1 if stop is None else stop
                if x is None or end > x.shape[-1]:
                    raise IConError(f"DisjointUnion: x must have at least {end} features for block "
                                    f"{k}; got {None if x is None else tuple(x.shape)}.")
                xk = x[..., start:stop]
                yk = None if y is None else y[..., start:stop]
            out.append(part(xk, yk) + math.log(weight))
        return torch.cat(out, dim=1)

    def extra_repr(self) -> str:
        return f"weights={self.weights}, blocks={self.blocks}"
