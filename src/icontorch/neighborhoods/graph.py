"""Graph neighbourhoods: neighbours are defined by edges of a weighted graph (paper section 3.1)."""

from __future__ import annotations

from typing import Optional

import torch
from torch import Tensor

from .._validation import check_ids_below, check_int, check_positive_parameter, fail
from ..distances import squared_euclidean
from .base import Neighborhood, Number, log_normalize, mask_diagonal, show_number

__all__ = ["Adjacency", "GraphKernel", "SpectralGaussian", "spectral_embedding"]


def _check_weights(who: str, weights: Tensor, dense: bool) -> Tensor:
    """A square (N, N) floating tensor of finite non-negative weights; a sparse one made dense
    (``dense=True``) or a coalesced sparse COO tensor."""
    if not isinstance(weights, Tensor) or weights.dim() != 2 or weights.shape[0] != weights.shape[1]:
        raise fail(who, "weights", "be a square (N, N) tensor", weights)
    if not weights.is_floating_point():
        raise fail(who, "weights", "be a floating-point tensor", weights)
    if weights.layout != torch.strided:
        weights = weights.to_dense() if dense else weights.to_sparse_coo().coalesce()
    values = weights if weights.layout == torch.strided else weights.values()
    if not bool(values.isfinite().all()) or bool((values < 0).any()):
        raise fail(who, "weights", "be finite and non-negative", weights)
    return weights


def _dense_weights(who: str, weights: Tensor) -> Tensor:
    weights = _check_weights(who, weights, dense=True)
    if not bool((weights.sum(1) > 0).all()):
        raise fail(who, "weights", "give every node a positive degree", weights)
    return weights


def _check_nodes(who: str, x: Tensor, y: Optional[Tensor], n_nodes: int) -> None:
    """Anchors ``x`` and candidates ``y`` (None: the anchors) are node ids in [0, n_nodes)."""
    check_ids_below(who, "x", x, n_nodes)
    if y is not None:
        check_ids_below(who, "y", y, n_nodes)


class Adjacency(Neighborhood):
    """``p(j|i) = w_ij / sum_k w_ik``: the random-walk transition of a weighted graph.

    The "graph kernel weights" column of the periodic table (t-SNE graph embedding, Normalized
    Cuts). The graph is fixed: ``weights`` is an (N, N) dense or sparse (COO/CSR) tensor of
    non-negative edge weights. Anchors and candidates are node ids; the sums run over the
    candidates given, so a batch of nodes sees the induced sub-graph. An anchor with no edge to
    any candidate has an empty row.

    Args:
        weights: (N, N) non-negative edge weights, dense or sparse.
        include_self: keep ``j = i`` (self-loops) when ``y`` is None.
    """

    def __init__(self, weights: Tensor, include_self: bool = False) -> None:
        super().__init__()
        weights = _check_weights("Adjacency", weights, dense=False)
        self.register_buffer("weights", weights)
        self.include_self = bool(include_self)

    def _block(self, rows: Tensor, cols: Tensor) -> Tensor:
        w = self.weights.index_select(0, rows).index_select(1, cols)
        return w.to_dense() if w.layout != torch.strided else w

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        who = "Adjacency"
        _check_nodes(who, x, y, self.weights.shape[0])
        if y is None and x.shape[0] < 2:
            raise fail(who, "x", "hold at least 2 nodes when the anchors are their own candidates", x)
        log_w = self._block(x, x if y is None else y).log()
        if y is None and not self.include_self:
            log_w = mask_diagonal(log_w)
        return log_normalize(log_w)

    def extra_repr(self) -> str:
        kind = "dense" if self.weights.layout == torch.strided else "sparse"
        return f"weights=<{kind} {tuple(self.weights.shape)}>, include_self={self.include_self}"


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
        _check_nodes("GraphKernel", x, y, self.weights.shape[0])
        cols = x if y is None else y
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

    def __init__(self, weights: Tensor, n_components: int, sigma: Number = 1.0) -> None:
        super().__init__()
        self.n_components = check_int("SpectralGaussian", "n_components", n_components, 1)
        self.sigma = check_positive_parameter("SpectralGaussian", "sigma", sigma)
        self.register_buffer("embedding", spectral_embedding(weights, n_components))

    def forward(self, x: Tensor, y: Optional[Tensor] = None) -> Tensor:
        _check_nodes("SpectralGaussian", x, y, self.embedding.shape[0])
        check_positive_parameter("SpectralGaussian", "sigma", self.sigma)  # a learned one, as it is now
        u = self.embedding.to(torch.get_default_dtype())
        d = squared_euclidean(u[x], u[x if y is None else y])
        return log_normalize(-d / (2.0 * self.sigma ** 2))

    def extra_repr(self) -> str:
        return (f"embedding=<{tuple(self.embedding.shape)}>, n_components={self.n_components}, "
                f"sigma={show_number(self.sigma)}")
