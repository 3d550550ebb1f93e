"""Unimodal self-supervised methods (pink tiles): InfoNCE, SimCLR, MoCo v3, t-SimCLR, VICReg, Triplet, ...

Views are stacked ``[view1; view2]`` and ``target`` holds the source item of each view
(``torch.arange(B).repeat(2)``); cross-view methods (CLIP, CMC, MoCo) take the other side as
``candidates`` with its ids as ``target_candidates``.
"""

from __future__ import annotations

from .._validation import check_int
from ..loss import ICon
from ..neighborhoods import KNN, Gaussian, PositivePairs, StudentT
from ._engine import SigmaSquaredGaussian, TileSize, build
from ._registry import register

__all__ = ["infonce", "simclr", "mocov3", "x_sample_cl", "lgsimclr", "tsimcne", "tsimclr", "vicreg",
           "triplet"]

_CON = "tests/methods/test_methods_contrastive.py"
_POS = "Uniform over positive pairs"
_COS = "exp(cos(z_i, z_j) / t) / Z_i, j != i"


@register(cite="Bachman 2019",
          label="InfoNCE", column=_POS, row="Gaussian", theorem="Thm 3", equality="exact", area="U-SSL",
          test=f"{_CON}::test_infonce", p="1/k over the k positives of i", q=_COS)
def infonce(temperature: float = 0.1, *, reduction: str = "mean", skip_empty_rows: bool = False,
            tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """InfoNCE with k positives: p = uniform over the other views of i, q = cosine softmax.

    ``-(1/k) sum_{j in P(i)} log q(j|i)`` averaged over anchors (Thm 3, exact; k = 1 is CPC's
    InfoNCE). Candidates may be the batch (``loss(z, target=ids)``) or a per-anchor set of one
    positive and N - 1 negatives (``candidates`` of shape (n, N, d), ``target_candidates`` (n, N)).
    """
    return build(PositivePairs(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather)


@register(cite="Chen 2020",
          label="SimCLR", column=_POS, row="Gaussian", theorem="Thm 3", equality="exact", area="U-SSL",
          test=f"{_CON}::test_simclr", p="1[j = i+] (the other view)", q=_COS + " (2B - 1 views)")
def simclr(temperature: float = 0.5, *, reduction: str = "mean", skip_empty_rows: bool = False,
           tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SimCLR / NT-Xent: p = the other view of the same item, q = cosine softmax over views j != i.

    ``q(j|i) = exp(cos(z_i, z_j) / t) / sum_{k != i} exp(cos(z_i, z_k) / t)``. Thm 3, exact:
    equals NT-Xent averaged over the 2B views. Call as
    ``loss(torch.cat([z1, z2]), target=torch.arange(B).repeat(2))``.
    """
    return build(PositivePairs(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather)


@register(cite="Chen 2021",
          label="MoCoV3", column=_POS, row="Gaussian", theorem="Fig. 1", equality="exact", area="U-SSL",
          test=f"{_CON}::test_mocov3", p="1[key j is i's own key]",
          q="exp(cos(query_i, key_j) / t) / Z_i over the keys (momentum encoder, no gradient)")
def mocov3(temperature: float = 1.0, *, symmetric: bool = False, reduction: str = "mean",
           skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """MoCo v3: anchors are queries, candidates are momentum-encoder keys; p = own key, q = cosine softmax.

    One direction is ``loss(q1, target=ids, candidates=k2.detach(), target_candidates=ids)``.
    MoCo v3 reports ``2 t (L(q1, k2) + L(q2, k1))`` (exact). A MoCo v1/v2 queue is more
    candidates: ``candidates=torch.cat([k, queue])`` with ids for the queue that match no query.
    """
    return build(PositivePairs(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather, symmetric)


@register(cite="Sobal 2025",
          label="X-Sample CL", column="Gaussian", row="Gaussian", theorem="Thm 7", equality="stated",
          area="U-SSL", test=f"{_CON}::test_x_sample_cl",
          p="exp(cos(g_i, g_j) / t_g) / Z_i, g auxiliary (e.g. caption) embeddings, j != i", q=_COS,
          note="Exact to the form Thm 7 states (a soft-target cross-entropy, tested against torch's); "
               "Sobal et al.'s own loss (their batch layout and normalisation) was not checked.")
def x_sample_cl(temperature: float = 0.1, target_temperature: float = 0.1, *, reduction: str = "mean",
                skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """X-Sample contrastive learning: p = softmax similarity of auxiliary embeddings g, q = cosine softmax.

    ``p(j|i) ∝ exp(cos(g_i, g_j) / t_g)``, ``q(j|i) ∝ exp(cos(f_i, f_j) / t)``, j != i (Thm 7;
    the paper writes both without temperatures, i.e. t = t_g = 1). Exact to the paper's stated
    form, a soft-target cross-entropy; Sobal et al.'s own loss is not checked against their code.
    Call as ``loss(f, target=g)``.
    """
    return build(Gaussian(temperature=target_temperature, metric="cosine"),
                 Gaussian(temperature=temperature, metric="cosine"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)


@register(cite="El Banani 2023",
          label="LGSimCLR", column="Uniform over k-neighbours", row="Gaussian", theorem="Table 1",
          equality="exact", area="U-SSL", test=f"{_CON}::test_lgsimclr",
          p="1[j in kNN_g(i)] / k, neighbours in a language-embedding space g", q=_COS)
def lgsimclr(temperature: float = 0.1, n_neighbors: int = 1, *, reduction: str = "mean",
             skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Language-guided SimCLR: p = uniform over the k nearest items in a language space, q = cosine softmax.

    ``p(j|i) = 1[j in kNN(g_i)] / k`` with k = ``n_neighbors`` (cosine neighbours of caption
    embeddings g), exact given the neighbour graph (Table 1). El Banani et al. sample the
    neighbour from the whole data set; in a batch that holds each item's neighbours, this is their
    loss. Call as ``loss(f, target=g)``.
    """
    return build(KNN(check_int("lgsimclr", "n_neighbors", n_neighbors, 1), metric="cosine"),
                 Gaussian(temperature=temperature, metric="cosine"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)


@register(cite="Böhm 2023",
          label="t-SimCNE", column=_POS, row="Student-T", theorem="Cor 2", equality="exact", area="DR",
          test=f"{_CON}::test_tsimcne", p="1[j = i+]", q="(1 + ||z_i-z_j||^2)^-1 / Z_i, j != i (2-D output)")
def tsimcne(*, reduction: str = "mean", skip_empty_rows: bool = False, tile_size: TileSize = "auto",
            gather: bool = False) -> ICon:
    """t-SimCNE: SimCLR with the Cauchy kernel ``(1 + ||z_i - z_j||^2)^(-1)`` on a 2-D output (Cor 2).

    Exact: Böhm et al.'s ``InfoNCECauchy`` (temperature 1) averaged over the 2B views.
    """
    return build(PositivePairs(), StudentT(1.0), "cross_entropy", reduction, skip_empty_rows, tile_size, gather)


@register(cite="Hu 2023",
          label="t-SimCLR", column=_POS, row="Student-T", theorem="Cor 2", equality="stated", area="U-SSL",
          test=f"{_CON}::test_tsimclr", p="1[j = i+]",
          q="(1 + ||z_i-z_j||^2/nu)^(-(nu+1)/2) / Z_i, j != i",
          note="Exact to the form Table 1 states (tested against it, written independently); Hu et al.'s "
               "own scaling of the distances was not checked against their code.")
def tsimclr(dof: float = 5.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
            tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """t-SimCLR: SimCLR with a Student-t kernel of ``dof`` degrees of freedom (Table 1, Cor 2).

    ``q(j|i) ∝ (1 + ||z_i - z_j||^2 / nu)^(-(nu+1)/2)``, j != i. Exact to the paper's stated (Table 1)
    form; Hu et al.'s own distance scaling is not checked against their code.
    """
    return build(PositivePairs(), StudentT(dof), "cross_entropy", reduction, skip_empty_rows, tile_size, gather)


@register(cite="Bardes 2021",
          label="VI-Reg", column=_POS, row="Gaussian σ→∞", theorem="Thm 4", equality="limit",
          area="U-SSL", test="tests/methods/test_methods_limits.py::test_vicreg_limit", p="1[j = i+]",
          q="exp(-||z_i-z_j||^2 / sigma^2) / Z_i over all j incl. i, sigma -> inf")
def vicreg(sigma: float = 100.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
           tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """VICReg without covariance: p = positive pairs, q = wide Gaussian ``exp(-d^2 / sigma^2)``.

    Thm 4 / Prop 1, limit: ``sigma^2 (L - log n) -> (1/n) sum_i ||f_i - f_i+||^2 - 2 Var(f)``
    (invariance : variance = 1 : 2) as sigma -> inf.
    """
    return build(PositivePairs(), SigmaSquaredGaussian(sigma, include_self=True), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather)


@register(cite="Schroff 2015",
          label="Triplet Loss", column=_POS, row="Gaussian σ→0", theorem="Thm 5", equality="bound",
          area="U-SSL", test="tests/methods/test_methods_limits.py::test_triplet_bound", p="1[j = positive]",
          q="exp(-||z_i-z_j||^2 / sigma^2) over {positive, negative}, sigma -> 0")
def triplet(sigma: float = 1.0, *, reduction: str = "mean", skip_empty_rows: bool = False,
            tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Triplet: p = the positive, q = ``exp(-d^2 / sigma^2)`` over the anchor's {positive, negative}.

    Thm 5, bound: with ``L`` this loss, ``sigma^2 L - sigma^2 log 2 <= mean max(d+ - d-, 0) <=
    sigma^2 L`` (squared distances, no margin), so ``sigma^2 L`` tends to the triplet loss as
    sigma -> 0. Call with per-anchor candidates:
    ``loss(a, target=ids, candidates=torch.stack([pos, neg], 1), target_candidates=...)``.
    """
    return build(PositivePairs(), SigmaSquaredGaussian(sigma), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather)
