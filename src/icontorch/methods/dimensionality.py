"""Dimensionality reduction (the paper's blue tiles) and its gaps: SNE, t-SNE and their relatives.

Each function returns an :class:`~icontorch.ICon`; call it as ``loss(embedding, target=X)`` with
``X`` the inputs (or node ids for the graph methods, ``target=torch.arange(N)``).
"""

from __future__ import annotations

from torch import Tensor

from .._validation import check_int
from ..loss import ICon
from ..neighborhoods import KNN, Adjacency, Gaussian, Identity, PerplexityGaussian, StudentT
from ..neighborhoods.links import GraphLinks, UMAPLinks, umap_ab
from ..transforms import joint, symmetrize
from ._engine import SigmaSquaredGaussian, TileSize, build
from ._registry import register

__all__ = ["sne", "tsne", "conditional_tsne", "sne_uniform_affinities", "tsne_uniform_affinities",
           "sne_graph_embedding", "tsne_graph_embedding", "dual_tsne", "doubly_tsne", "pca", "umap"]

_EMB = "tests/methods/test_methods_embedding.py"
_GAPS = "tests/methods/test_methods_gaps.py"


@register(cite="Hinton 2002",
          label="SNE", column="Gaussian", row="Gaussian", theorem="Thm 1", equality="exact", area="DR",
          test=f"{_EMB}::test_sne", p="exp(-beta_i ||x_i-x_j||^2) / Z_i, perplexity-calibrated, j != i",
          q="exp(-||y_i-y_j||^2) / Z_i, j != i")
def sne(perplexity: float = 30.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
        tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SNE: p = perplexity-calibrated Gaussian on inputs, q = unit Gaussian on the embedding.

    ``p(j|i) ∝ exp(-beta_i ||x_i - x_j||^2)``, ``q(j|i) ∝ exp(-||y_i - y_j||^2)``, j != i.
    Thm 1, exact: SNE's cost ``sum_i KL(P_i || Q_i)`` is n times this mean.
    Call as ``loss(embedding, target=X)``.
    """
    return build(PerplexityGaussian(perplexity), Gaussian(temperature=1.0), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Van der Maaten 2008",
          label="t-SNE", column="Gaussian", row="Student-T", theorem="Cor 1, adapted", equality="exact",
          area="DR", test=f"{_EMB}::test_tsne", p="(p_j|i + p_i|j) / 2n, p_j|i the perplexity Gaussian (joint)",
          q="(1 + ||y_i-y_j||^2/dof)^(-(dof+1)/2) / sum_{k != l} (...) (joint)",
          note="Exact against scikit-learn's t-SNE KL(P || Q) as one I-Con anchor over the n(n-1) ordered "
               "pairs; Cor 1 itself proves the conditional form (conditional_tsne).")
def tsne(perplexity: float = 30.0, dof: float = 1.0, *, reduction: str = "mean",
         skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """t-SNE, joint form: p = symmetrised perplexity Gaussian, q = Student-t normalised over pairs.

    ``P_ij = (p_j|i + p_i|j) / 2n``, ``Q_ij = w_ij / sum_{k != l} w_kl`` with
    ``w = (1 + ||y_i - y_j||^2 / dof)^(-(dof+1)/2)``. As an I-Con loss the joint objective has one
    anchor whose neighbours are the n(n-1) ordered pairs, exact: the value is t-SNE's ``KL(P || Q)``
    (scikit-learn's ``kl_divergence_``). Cor 1 proves the conditional form (:func:`conditional_tsne`);
    this joint form is Cor 1 adapted. Call as ``loss(embedding, target=X)``.
    """
    return build(symmetrize(PerplexityGaussian(perplexity)), joint(StudentT(dof)), "kl", reduction,
                 skip_empty_rows, tile_size, gather)


@register(cite="Van der Maaten 2008",
          label="t-SNE (conditional)", column="Gaussian", row="Student-T", theorem="Cor 1",
          equality="exact", area="DR", kind="variant", test=f"{_EMB}::test_conditional_tsne",
          p="exp(-beta_i ||x_i-x_j||^2) / Z_i, j != i", q="(1 + ||y_i-y_j||^2/dof)^(-(dof+1)/2) / Z_i")
def conditional_tsne(perplexity: float = 30.0, dof: float = 1.0, *, reduction: str = "mean",
                     skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                     gather: bool = False) -> ICon:
    """t-SNE, conditional form (the paper's Cor 1): per-anchor Cauchy q instead of a joint Q.

    ``p(j|i) ∝ exp(-beta_i ||x_i - x_j||^2)``, ``q(j|i) ∝ (1 + ||y_i - y_j||^2 / dof)^(-(dof+1)/2)``.
    Exact for this conditional objective, which differs from :func:`tsne`'s joint one.
    """
    return build(PerplexityGaussian(perplexity), StudentT(dof), "kl", reduction, skip_empty_rows, tile_size,
                 gather)


@register(label="SNE with Uniform Affinities", column="Uniform over k-neighbours", row="Gaussian",
          theorem="Fig. 1", equality="exact", area="DR", test=f"{_EMB}::test_sne_uniform_affinities",
          p="1[j in kNN(i)] / k", q="exp(-||y_i-y_j||^2) / Z_i, j != i")
def sne_uniform_affinities(n_neighbors: int = 15, *, reduction: str = "mean", skip_empty_rows: bool = False,
                           tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SNE with uniform affinities: p = uniform over the k nearest inputs, q = unit Gaussian.

    ``p(j|i) = 1[j in kNN(i)] / k`` with k = ``n_neighbors``, ``q(j|i) ∝ exp(-||y_i - y_j||^2)``,
    j != i. Fig. 1 names it without a theorem; exact by construction: SNE's per-anchor KL with the
    kNN rows in place of the perplexity Gaussian. Call as ``loss(embedding, target=X)``.
    """
    n_neighbors = check_int("sne_uniform_affinities", "n_neighbors", n_neighbors, 1)
    return build(KNN(n_neighbors), Gaussian(temperature=1.0), "kl", reduction, skip_empty_rows, tile_size, gather)


@register(label="t-SNE with Uniform Affinities", column="Uniform over k-neighbours", row="Student-T",
          theorem="Fig. 1", equality="exact", area="DR", test=f"{_EMB}::test_tsne_uniform_affinities",
          p="(1[j in kNN(i)] + 1[i in kNN(j)]) / 2nk (joint)", q="Cauchy normalised over pairs (joint)")
def tsne_uniform_affinities(n_neighbors: int = 15, dof: float = 1.0, *, reduction: str = "mean",
                            skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                            gather: bool = False) -> ICon:
    """t-SNE with uniform affinities: p = symmetrised uniform kNN, q = joint Student-t.

    ``P_ij = (1[j in kNN(i)] + 1[i in kNN(j)]) / (2 n k)`` with k = ``n_neighbors``; q as in
    :func:`tsne`. Exact: the t-SNE KL with openTSNE's ``affinity.Uniform(symmetrize="mean")``
    (openTSNE's default ``symmetrize=True`` takes the union indicator instead). Call as
    ``loss(embedding, target=X)``.
    """
    n_neighbors = check_int("tsne_uniform_affinities", "n_neighbors", n_neighbors, 1)
    return build(symmetrize(KNN(n_neighbors)), joint(StudentT(dof)), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(label="SNE Graph Embeddings", column="Graph kernel weights", row="Gaussian", theorem="new (gap)",
          equality="exact", area="GAP", test=f"{_GAPS}::test_sne_graph_embedding",
          p="w_ij / d_i (random walk on the graph)", q="exp(-||y_i-y_j||^2) / Z_i, j != i",
          note="A gap cell: no original exists. Tested against its defining formula and against "
               "SNE with uniform affinities, which it equals on a kNN graph.")
def sne_graph_embedding(weights: Tensor, *, reduction: str = "mean", skip_empty_rows: bool = False,
                        tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SNE graph embedding (gap): p = random walk ``w_ij / d_i`` on a graph, q = unit Gaussian.

    New: the paper names the cell without a formula; this is the p and q its row and column
    imply. On a kNN graph with unit weights it is :func:`sne_uniform_affinities`. Call as
    ``loss(embedding, target=torch.arange(N))`` (anchors are node ids).
    """
    return build(Adjacency(weights), Gaussian(temperature=1.0), "kl", reduction, skip_empty_rows, tile_size,
                 gather)


@register(label="t-SNE Graph Embedding", column="Graph kernel weights", row="Student-T", theorem="Fig. 1",
          equality="exact", area="DR", test=f"{_EMB}::test_tsne_graph_embedding",
          p="(w_ij/d_i + w_ji/d_j) / 2n (joint)", q="Cauchy normalised over pairs (joint)")
def tsne_graph_embedding(weights: Tensor, dof: float = 1.0, *, reduction: str = "mean",
                         skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                         gather: bool = False) -> ICon:
    """t-SNE graph embedding: p = symmetrised random walk on a graph, q = joint Student-t.

    ``P_ij = (w_ij / d_i + w_ji / d_j) / 2N``: t-SNE with the graph's transition matrix in place
    of the perplexity Gaussian (tsNET-style layout). Exact for the t-SNE KL with that P. Call as
    ``loss(embedding, target=torch.arange(N))``.
    """
    return build(symmetrize(Adjacency(weights)), joint(StudentT(dof)), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(label="Dual t-SNE", column="Student-T", row="Gaussian", theorem="new (gap)", equality="exact",
          area="GAP", test=f"{_GAPS}::test_dual_tsne",
          p="symmetrised (1 + ||x_i-x_j||^2/nu)^(-(nu+1)/2) / Z_i (joint)",
          q="exp(-||y_i-y_j||^2) normalised over pairs (joint)",
          note="A gap cell: no original exists. Tested against its defining formula.")
def dual_tsne(input_dof: float = 1.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
              tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Dual t-SNE (gap): t-SNE's kernels swapped, heavy tails on the inputs, a Gaussian on the map.

    ``P = symmetrize(p)`` with ``p(j|i) ∝ (1 + ||x_i - x_j||^2 / nu)^(-(nu+1)/2)``,
    ``Q_ij ∝ exp(-||y_i - y_j||^2)`` over pairs. New (the paper names the cell only). The input
    kernel has no width: scale X so that neighbour distances are of order 1.
    Call as ``loss(embedding, target=X)``.
    """
    return build(symmetrize(StudentT(input_dof)), joint(Gaussian(temperature=1.0)), "kl", reduction,
                 skip_empty_rows, tile_size, gather)


@register(label="Doubly t-SNE", column="Student-T", row="Student-T", theorem="new (gap)", equality="exact",
          area="GAP", test=f"{_GAPS}::test_doubly_tsne",
          p="symmetrised Student-t(nu_in) on inputs (joint)", q="Student-t(nu) normalised over pairs (joint)",
          note="A gap cell: no original exists. Tested against its formula and its limit: as the "
               "input dof grows it tends to t-SNE with a unit-width Gaussian p.")
def doubly_tsne(input_dof: float = 1.0, dof: float = 1.0, *, reduction: str = "mean",
                skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Doubly t-SNE (gap): Student-t kernels on both sides.

    ``P = symmetrize(p)``, ``p(j|i) ∝ (1 + ||x_i - x_j||^2 / nu_in)^(-(nu_in+1)/2)``; Q as in
    :func:`tsne`. New. As ``input_dof -> inf`` the input kernel tends to ``exp(-||x_i - x_j||^2 / 2)``.
    Call as ``loss(embedding, target=X)``.
    """
    return build(symmetrize(StudentT(input_dof)), joint(StudentT(dof)), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Pearson 1901",
          label="PCA", column="Identity", row="Gaussian σ→∞", theorem="Thm 2", equality="limit", area="DR",
          test="tests/methods/test_methods_limits.py::test_pca_limit", p="1[i = j]",
          q="exp(-||Wx_i - Wx_j||^2 / sigma^2) / Z_i over all j incl. i, sigma -> inf")
def pca(sigma: float = 100.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
        tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """PCA: p = identity, q = wide Gaussian ``exp(-||Wx_i - Wx_j||^2 / sigma^2)`` over all j incl. i.

    Thm 2 / Prop 1, limit: ``sigma^2 (L - log n) -> -2 Var(f(X))`` as sigma -> inf, so for a
    linear f with orthonormal rows the minimiser spans the top principal components.
    Call as ``loss(X @ W.T, target=X)``.
    """
    return build(Identity(), SigmaSquaredGaussian(sigma, include_self=True), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)


@register(cite="McInnes 2018",
          label="UMAP", column="Graph kernel weights", row="Bernoulli links", theorem="not in the paper",
          equality="exact", area="DR", kind="related", test="tests/methods/test_methods_related.py::test_umap",
          p="v_ij, fuzzy membership of pair (i, j) (two outcomes: link / no link)",
          q="1 / (1 + a ||y_i-y_j||^(2b)) per pair",
          note="Not a softmax KL: each ordered pair is an anchor with two outcomes, and UMAP's fuzzy "
               "cross-entropy is n(n-1)/2 times the I-Con mean. The memberships v come from the user "
               "(e.g. umap-learn's fuzzy_simplicial_set); a, b are fitted as UMAP does.")
def umap(memberships: Tensor, spread: float = 1.0, min_dist: float = 0.1, *, reduction: str = "mean",
         skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """UMAP as per-pair Bernoulli KLs: p = memberships ``v_ij``, q = ``1 / (1 + a d_ij^(2b))``.

    Each ordered pair (i, j != i) is an anchor over {link, no link}; its KL is
    ``v log(v/w) + (1-v) log((1-v)/(1-w))``, so the I-Con mean times ``n (n-1) / 2`` is UMAP's
    fuzzy-set cross-entropy over unordered pairs (v and w symmetric). ``(a, b)`` from
    :func:`~icontorch.neighborhoods.links.umap_ab`. Call as ``loss(embedding, target=torch.arange(N))``.
    """
    a, b = umap_ab(spread, min_dist)
    return build(GraphLinks(memberships), UMAPLinks(a, b), "kl", reduction, skip_empty_rows, tile_size, gather)
