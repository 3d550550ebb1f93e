"""Multimodal methods (purple tiles) and the gaps of their column: CLIP, CMC, t-CLIP, margins, SigLIP.

Call every one as ``loss(image, target=ids, candidates=text, target_candidates=ids)``: the anchors
of one modality against the items of the other (both directions where the original does).
"""

from __future__ import annotations

from ..loss import ICon
from ..neighborhoods import CrossModal, Gaussian, StudentT
from ..neighborhoods.links import SameIdLinks, SigmoidLinks
from ._engine import SigmaSquaredGaussian, TileSize, build
from ._registry import register

__all__ = ["clip", "cmc", "t_clip", "average_margin_clip", "triplet_clip", "siglip"]

_CON = "tests/methods/test_methods_contrastive.py"
_GAPS = "tests/methods/test_methods_gaps.py"
_X = "Cross-modal pairs"
_P = "1[j is i's pair in the other modality]"


@register(cite="Radford 2021",
          label="CLIP", column=_X, row="Gaussian", theorem="Thm 8", equality="exact", area="M-SSL",
          test=f"{_CON}::test_clip", p=_P, q="exp(cos(z_i, z_j) / t) / Z_i over the other modality; both directions")
def clip(temperature: float = 0.07, *, symmetric: bool = True, reduction: str = "mean",
         skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """CLIP: p = the paired item of the other modality, q = cosine softmax over the other modality.

    Thm 8, exact: the symmetric CLIP loss ``(CE(I T^T / t) + CE(T I^T / t)) / 2``. Call as
    ``loss(image, target=ids, candidates=text, target_candidates=ids)``.
    """
    return build(CrossModal(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather, symmetric)


@register(cite="Tian 2020",
          label="CMC", column=_X, row="Gaussian", theorem="Thm 8", equality="exact", area="M-SSL",
          test=f"{_CON}::test_cmc", p="1[j is i's own entry in the other view's memory]",
          q="exp(cos(z_i, m_j) / t) / Z_i over the sampled memory entries")
def cmc(temperature: float = 0.07, *, symmetric: bool = False, reduction: str = "mean",
        skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """CMC (softmax form): anchors of one view against entries of the other view's memory bank.

    Per anchor the candidates are its own entry and K sampled negatives: pass them as
    ``candidates`` (n, K+1, d) with ``target_candidates`` (n, K+1); negatives carry ids that are
    not the anchor's (e.g. -1), since CMC counts a re-drawn own index as a negative. CMC reports
    the **sum** of the two view directions, each a mean over anchors (Thm 8, exact).
    """
    return build(CrossModal(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather, symmetric)


@register(label="t-CLIP", column=_X, row="Student-T", theorem="new (gap)", equality="exact", area="GAP",
          test=f"{_GAPS}::test_t_clip", p=_P, q="(1 + ||z_i-z_j||^2/nu)^(-(nu+1)/2) / Z_i over the other modality",
          note="A gap cell: no original exists. Tested against its formula and its limit: on unit "
               "vectors, as dof grows, it tends to CLIP at temperature 1.")
def t_clip(dof: float = 1.0, *, symmetric: bool = True, reduction: str = "mean",
           skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """t-CLIP (gap): CLIP with a Student-t kernel on the features instead of the cosine softmax.

    ``q(j|i) ∝ (1 + ||z_i - z_j||^2 / nu)^(-(nu+1)/2)`` over the other modality, both directions.
    New. As ``dof -> inf`` on unit vectors the kernel tends to ``exp(cos - 1)``: CLIP at t = 1.
    """
    return build(CrossModal(), StudentT(dof), "cross_entropy", reduction, skip_empty_rows, tile_size, gather,
                 symmetric)


@register(label="Average Margin CLIP", column=_X, row="Gaussian σ→∞", theorem="new (gap), Prop 1",
          equality="limit", area="GAP", test=f"{_GAPS}::test_average_margin_clip", p=_P,
          q="exp(-||z_i-z_j||^2 / sigma^2) / Z_i over the other modality, sigma -> inf",
          note="A gap cell: no original exists. Its defining limit (Prop 1) is checked numerically.")
def average_margin_clip(sigma: float = 100.0, *, symmetric: bool = True, reduction: str = "mean",
                        skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                        gather: bool = False) -> ICon:
    """Average-margin CLIP (gap): CLIP's p with a wide Gaussian q, sigma -> inf.

    Prop 1 / limit: ``sigma^2 (L - log N) -> mean_i ||z_i - t_i||^2 - mean_ik ||z_i - t_k||^2``:
    the paired distance minus the average distance to the other modality (an average margin).
    New (gap).
    """
    return build(CrossModal(), SigmaSquaredGaussian(sigma), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather, symmetric)


@register(label="Triplet CLIP", column=_X, row="Gaussian σ→0", theorem="new (gap), Thm 5",
          equality="bound", area="GAP", test=f"{_GAPS}::test_triplet_clip", p=_P,
          q="exp(-||z_i-z_j||^2 / sigma^2) / Z_i over the other modality, sigma -> 0",
          note="A gap cell: no original exists. Its sandwich bound (as Thm 5) is checked for several sigma.")
def triplet_clip(sigma: float = 0.1, *, symmetric: bool = True, reduction: str = "mean",
                 skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Triplet CLIP (gap): CLIP's p with a narrow Gaussian q, sigma -> 0.

    Bound, as Thm 5: ``T <= sigma^2 L <= T + sigma^2 log N`` with
    ``T = mean_i max(0, d(i, i+) - min_{k != i+} d(i, k))``: a zero-margin triplet loss against
    the hardest negative of the other modality (both directions). New (gap).
    """
    return build(CrossModal(), SigmaSquaredGaussian(sigma), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather, symmetric)


@register(cite="Zhai 2023",
          label="SigLIP", column=_X, row="Bernoulli links", theorem="not in the paper", equality="exact",
          area="M-SSL", kind="related", test="tests/methods/test_methods_related.py::test_siglip",
          p="1[i, j paired] per pair (two outcomes: link / no link)",
          q="sigmoid(scale cos(z_i, z_j) + bias) per pair",
          note="Not a softmax KL: each (image, text) pair is an anchor with two outcomes; SigLIP's "
               "loss (sum over N^2 pairs / N) is N times the I-Con mean.")
def siglip(scale: float = 10.0, bias: float = -10.0, *, symmetric: bool = False, reduction: str = "mean",
           skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SigLIP as per-pair Bernoulli KLs: p = 1[paired], q = ``sigmoid(scale cos + bias)``.

    Each (image i, text j) pair is an anchor over {link, no link}; its KL against the hard
    target is ``-log sigmoid(z_ij (scale cos_ij + bias))`` with ``z_ij = +-1``. SigLIP sums
    over the N^2 pairs and divides by N, so it is N times this I-Con mean (exact). Call as
    ``loss(image, target=ids, candidates=text, target_candidates=ids)``.
    """
    return build(SameIdLinks(), SigmoidLinks(scale, bias, metric="cosine"), "kl", reduction, skip_empty_rows,
                 tile_size, gather, symmetric)
