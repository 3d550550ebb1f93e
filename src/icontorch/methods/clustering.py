"""Clustering (orange tiles) and its gaps: k-Means, Normalized Cuts, DCD, InfoNCE Clustering, ...

The learned object is a soft assignment: pass ``log_softmax(cluster_logits, 1)`` (n, C) as ``z``.
Methods with the cluster kernel in the **first** KL slot (k-Means, t k-Means, Normalized Cuts,
spectral clustering; Thm 13/14) use ``reverse_kl`` plus the entropy of q; the others use the
forward KL with the cluster kernel as q.
"""

from __future__ import annotations

import functools
from typing import Optional

from torch import Tensor

from .._validation import check_int, check_probability
from ..divergences import reverse_kl
from ..loss import ICon
from ..neighborhoods import KNN, Cluster, DegreeWeightedCluster, Gaussian, PositivePairs, SameLabel, StudentT
from ..neighborhoods.base import NeighborhoodLike
from ..neighborhoods.graph import GraphKernel, SpectralGaussian, _dense_weights
from ..transforms import mix_uniform
from ._engine import TileSize, build
from ._registry import register

__all__ = ["kmeans", "t_kmeans", "normalized_cuts", "dcd", "infonce_clustering", "supervised_clustering",
           "spectral_clustering", "pmi_clustering"]

_CLU = "tests/methods/test_methods_clustering.py"
_GAPS = "tests/methods/test_methods_gaps.py"
_ROW = "Uniform on clusters"
_KERNEL = "sum_c phi_ic phi_jc / sum_k phi_kc (cluster kernel, j = i included)"
_FIRST = " -- in the first KL slot, plus H(q)"
_REVERSE = functools.partial(reverse_kl, entropy_weight=1.0)


@register(cite="Macqueen 1967",
          label="K-Means", column="Gaussian", row=_ROW, theorem="Thm 13", equality="argmin", area="CL",
          test=f"{_CLU}::test_kmeans_identity", p="exp(-||x_i-x_j||^2 / 2 sigma^2) / Z_i over all j",
          q=_KERNEL + _FIRST)
def kmeans(sigma: float = 1.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
           tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Probabilistic k-Means: cluster kernel q in the first KL slot, Gaussian p on data, plus H(q).

    ``L = (1/n) sum_i [KL(q_i || p_i) + H(q_i)]`` with ``q(j|i) = sum_c phi_ic phi_jc / n_c`` and
    ``p(j|i) ∝ exp(-||x_i - x_j||^2 / (2 sigma^2))`` over all j including i. Thm 13:
    ``n L = sum_ic phi_ic ||x_i - mu_c||^2 / sigma^2 + sum_i log Z_i``, the (soft) k-Means loss
    over ``sigma^2`` plus a constant, so both have the same minimisers; for one-hot phi the first
    term is ``inertia / sigma^2``. Call as ``loss(log_softmax(cluster_logits), target=X)``.
    """
    return build(Gaussian(sigma=sigma, include_self=True), Cluster(), _REVERSE, reduction, skip_empty_rows,
                 tile_size, gather)


@register(label="t K-Means", column="Student-T", row=_ROW, theorem="new (gap), Thm 13",
          equality="argmin", area="GAP", test=f"{_GAPS}::test_t_kmeans",
          p="(1 + ||x_i-x_j||^2/nu)^(-(nu+1)/2) / Z_i over all j", q=_KERNEL + _FIRST,
          note="A gap cell: no original exists. Tested against the closed form it reduces to (a "
               "cluster-weighted Cauchy loss) and its limit, k-Means, as dof grows.")
def t_kmeans(dof: float = 1.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
             tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """t k-Means (gap): k-Means' construction with Student-t affinities on the data.

    As Thm 13: ``n L = ((nu+1)/2) sum_ij q(j|i) log(1 + ||x_i - x_j||^2 / nu) + sum_i log Z_i``: a
    heavy-tailed (robust) pairwise k-Means. As ``dof -> inf`` it tends to :func:`kmeans` with
    sigma = 1. New. Call as ``loss(log_softmax(cluster_logits), target=X)``.
    """
    return build(StudentT(dof, include_self=True), Cluster(), _REVERSE, reduction, skip_empty_rows, tile_size,
                 gather)


@register(cite="Shi 2000",
          label="Normalized Cuts", column="Graph kernel weights", row=_ROW, theorem="Thm 14",
          equality="argmin", area="CL", test=f"{_CLU}::test_normalized_cuts",
          p="exp(w_ij / d_j) / Z_i over all j", q="sum_c phi_ic phi_jc d_j / sum_k phi_kc d_k" + _FIRST)
def normalized_cuts(weights: Tensor, *, reduction: str = "mean", skip_empty_rows: bool = False,
                    tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Normalized Cuts: degree-weighted cluster kernel in the first slot, ``exp(w_ij / d_j)`` as p.

    Thm 14 (a sketch in the paper) is exact for hard partitions: with
    ``q(j|i) = 1[c_i = c_j] d_j / vol(c_i)``, ``n L = NCut - C + sum_i log Z_i`` where
    ``NCut = sum_c cut(c, rest) / vol(c)`` and C is the number of non-empty clusters, so both
    have the same minimising partitions (for a fixed C). Call as
    ``loss(log_softmax(cluster_logits), target=torch.arange(N))`` on the whole graph.
    """
    weights = _dense_weights("normalized_cuts", weights)
    return build(GraphKernel(weights), DegreeWeightedCluster(weights.sum(1)), _REVERSE, reduction,
                 skip_empty_rows, tile_size, gather)


@register(cite="Yang 2012",
          label="DCD", column="Uniform over k-neighbours", row=_ROW, theorem="Sec. 3.2.1", equality="exact",
          area="CL", test=f"{_CLU}::test_dcd", p="1[j in kNN(i)] / k", q=_KERNEL)
def dcd(n_neighbors: int = 10, *, reduction: str = "mean", skip_empty_rows: bool = False,
        tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """DCD: p = uniform over the k = ``n_neighbors`` nearest neighbours, q = the cluster kernel (forward KL).

    Yang & Oja's ``A_hat_ij = sum_c W_ic W_jc / sum_v W_vc`` is the cluster kernel; with the
    row-normalised kNN affinity A, their generalised ``KL(A || A_hat)`` is n times this mean
    (exact; DCD's Dirichlet prior on W is not included). Also Table 1's PMI clustering with kNN
    pairs. Call as ``loss(log_softmax(cluster_logits), target=X)``.
    """
    n_neighbors = check_int("dcd", "n_neighbors", n_neighbors, 1)
    return build(KNN(n_neighbors), Cluster(), "kl", reduction, skip_empty_rows, tile_size, gather)


@register(cite="Alshammari 2025",
          label="InfoNCE Clustering", column="Uniform over positive pairs", row=_ROW, theorem="Table 2 (new)",
          equality="exact", area="CL", test=f"{_CLU}::test_infonce_clustering",
          p="(1 - alpha_p) p(j|i) + alpha_p / N, p uniform over views and neighbours",
          q="(1 - alpha_q) (cluster kernel) + alpha_q / N",
          note="The paper's new method: no earlier implementation. Tested against its defining "
               "formula; alpha_p = alpha_q = 0 is PMI clustering.")
def infonce_clustering(alpha_p: float = 0.6, alpha_q: Optional[float] = None,
                       p: Optional[NeighborhoodLike] = None, *, reduction: str = "mean",
                       skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                       gather: bool = False) -> ICon:
    """Debiased InfoNCE Clustering: alpha-debiased p over positives, alpha-debiased cluster kernel q.

    ``p~ = (1 - alpha_p) p + alpha_p / N`` and ``q~ = (1 - alpha_q) q + alpha_q / N`` with q the
    cluster kernel (Table 1's new row; "both sides" as Fig. 6). ``p`` defaults to
    :class:`~icontorch.PositivePairs` (views and mined neighbours of an image share an id); pass
    e.g. ``propagate(KNN(3), 2, "reach")`` for the kNN-walk graph. ``alpha_q`` defaults to
    ``alpha_p``. Call as ``loss(log_softmax(cluster_logits), target=ids)``.
    """
    alpha_p = check_probability("infonce_clustering", "alpha_p", alpha_p)
    alpha_q = alpha_p if alpha_q is None else check_probability("infonce_clustering", "alpha_q", alpha_q)
    base = PositivePairs() if p is None else p
    return build(mix_uniform(base, alpha_p), mix_uniform(Cluster(), alpha_q), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(label="Supervised Clustering", column="Uniform over classes", row=_ROW, theorem="new (gap)",
          equality="exact", area="GAP", test=f"{_GAPS}::test_supervised_clustering",
          p="1[y_j = y_i] / K_i, j = i included", q=_KERNEL,
          note="A gap cell: no original exists. Tested against its formula and its closed-form "
               "minimum: zero exactly at the label partition.")
def supervised_clustering(*, reduction: str = "mean", skip_empty_rows: bool = False,
                          tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Supervised clustering (gap): p = uniform over the anchor's class, q = the cluster kernel.

    With self counted on both sides, one-hot assignments equal to the labels give q = p and a
    loss of exactly 0; any other partition costs more. New. Call as
    ``loss(log_softmax(cluster_logits), target=labels)``.
    """
    return build(SameLabel(include_self=True), Cluster(), "kl", reduction, skip_empty_rows, tile_size, gather)


@register(cite="Ng 2001",
          label="Spectral Clustering", column="Gaussian", row=_ROW, theorem="Cor 4", equality="argmin",
          area="CL", kind="table1", test="tests/methods/test_theorems.py::test_cor4_spectral_clustering_every_labeling",
          p="exp(-||u_i-u_j||^2 / 2 sigma^2) / Z_i, u the spectral embedding", q=_KERNEL + _FIRST)
def spectral_clustering(weights: Tensor, n_clusters: int, sigma: float = 1.0, *, reduction: str = "mean",
                        skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                        gather: bool = False) -> ICon:
    """Spectral clustering: k-Means as I-Con (Thm 13) on the spectral embedding of a graph (Cor 4).

    ``n L = sum_ic phi_ic ||u_i - mu_c||^2 / sigma^2 + const`` with u scikit-learn's spectral map
    (``spectral_embedding(norm_laplacian=True, drop_first=False)``), so the minimisers are those
    of the k-Means step of ``SpectralClustering``. Call as
    ``loss(log_softmax(cluster_logits), target=torch.arange(N))``.
    """
    check_int("spectral_clustering", "n_clusters", n_clusters, 1)
    return build(SpectralGaussian(weights, n_clusters, sigma), Cluster(), _REVERSE, reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Adaloglou 2023",
          label="PMI Clustering", column="Uniform over positive pairs", row=_ROW, theorem="Thm 15",
          equality="loose", area="CL", kind="table1", test=f"{_CLU}::test_pmi_clustering",
          p="1[j is a positive of i] (other view)", q=_KERNEL,
          note="Thm 15 is a sketch: TEMI's loss has EMA cluster sizes, a beta power and weights. "
               "What is exact: for one-hot assignments consistent across views the loss is "
               "log N - I(z; z'), i.e. log N + IIC's loss (tested).")
def pmi_clustering(*, symmetric: bool = False, reduction: str = "mean", skip_empty_rows: bool = False,
                   tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """PMI / mutual-information clustering: p = the other view, q = the cluster kernel.

    ``-(1/n) sum_i log sum_c phi_ic phi_{i+}c / n_c`` (Thm 15, loose). Anchors of one view against
    the other view as candidates give the IIC / TEMI setting:
    ``loss(log_phi1, target=ids, candidates=log_phi2, target_candidates=ids)``. The kNN form of
    Table 1 is :func:`dcd`.
    """
    return build(PositivePairs(), Cluster(), "kl", reduction, skip_empty_rows, tile_size, gather, symmetric)
