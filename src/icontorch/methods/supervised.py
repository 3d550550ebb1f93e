"""Supervised methods (green tiles) and the gaps of their columns: SupCon, cross-entropy, harmonic, ...

Label-pair methods take ``target`` = labels; data-to-class methods take the class prototypes
(classifier rows) as ``candidates``: ``loss(features, target=labels, candidates=W)``.
"""

from __future__ import annotations

from .._validation import check_probability
from ..loss import ICon
from ..neighborhoods import DataToClass, Gaussian, Harmonic, SameLabel, StudentT
from ..transforms import mix_uniform
from ._engine import SigmaSquaredGaussian, TileSize, build
from ._registry import register

__all__ = ["supcon", "t_supcon", "average_margin_supcon", "triplet_supcon", "cross_entropy",
           "harmonic_loss", "error_rate", "masked_language_modeling"]

_GAPS = "tests/methods/test_methods_gaps.py"
_SUP = "tests/methods/test_methods_supervised.py"
_CLS = "Uniform over classes"
_SAME = "1[y_j = y_i] / (K_i - 1), j != i"
_ONE = "1[j = class of i]"


@register(cite="Khosla 2020",
          label="SupCon", column=_CLS, row="Gaussian", theorem="Thm 6", equality="exact", area="SUP",
          test="tests/methods/test_methods_contrastive.py::test_supcon", p=_SAME,
          q="exp(cos(z_i, z_j) / t) / Z_i, j != i")
def supcon(temperature: float = 0.1, *, reduction: str = "mean", skip_empty_rows: bool = True,
           tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SupCon L_out: p = uniform over same-label points j != i, q = cosine softmax over j != i.

    Thm 6, exact: ``(1/|P(i)|) sum_{p in P(i)} -log q(p|i)`` averaged over anchors. Anchors with
    no positive are left out of the mean (``skip_empty_rows=True``, as pytorch-metric-learning).
    Call as ``loss(torch.cat(views), target=torch.cat(labels))``.
    """
    return build(SameLabel(), Gaussian(temperature=temperature, metric="cosine"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)


@register(label="t-SupCon", column=_CLS, row="Student-T", theorem="new (gap)", equality="exact", area="GAP",
          test=f"{_GAPS}::test_t_supcon", p=_SAME, q="(1 + ||z_i-z_j||^2/nu)^(-(nu+1)/2) / Z_i, j != i",
          note="A gap cell: no original exists. Tested against its formula and its limit: on unit "
               "vectors, as dof grows, it tends to SupCon at temperature 1.")
def t_supcon(dof: float = 1.0, *, reduction: str = "mean", skip_empty_rows: bool = True,
             tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """t-SupCon (gap): SupCon with a Student-t kernel ``(1 + d^2 / nu)^(-(nu+1)/2)`` as q.

    New. As ``dof -> inf`` on unit vectors it tends to SupCon at temperature 1.
    """
    return build(SameLabel(), StudentT(dof), "cross_entropy", reduction, skip_empty_rows, tile_size, gather)


@register(label="Average Margin SupCon", column=_CLS, row="Gaussian σ→∞", theorem="new (gap), Prop 1",
          equality="limit", area="GAP", test=f"{_GAPS}::test_average_margin_supcon", p=_SAME,
          q="exp(-||z_i-z_j||^2 / sigma^2) / Z_i over all j incl. i, sigma -> inf",
          note="A gap cell: no original exists. Its defining limit (Prop 1) is checked numerically.")
def average_margin_supcon(sigma: float = 100.0, *, reduction: str = "mean", skip_empty_rows: bool = True,
                          tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Average-margin SupCon (gap): SupCon's p with a wide Gaussian q (self included), sigma -> inf.

    Prop 1 / limit: ``sigma^2 (L - log n) -> (1/n) sum_i mean_{p in P(i)} d_ip - 2 Var(z)``:
    cohesion within classes minus twice the variance. New (gap).
    """
    return build(SameLabel(), SigmaSquaredGaussian(sigma, include_self=True), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)


@register(label="Triplet SupCon", column=_CLS, row="Gaussian σ→0", theorem="new (gap), Thm 5",
          equality="bound", area="GAP", test=f"{_GAPS}::test_triplet_supcon", p=_SAME,
          q="exp(-||z_i-z_j||^2 / sigma^2) / Z_i, j != i, sigma -> 0",
          note="A gap cell: no original exists. Its sandwich bound (as Thm 5) is checked for several sigma.")
def triplet_supcon(sigma: float = 0.1, *, reduction: str = "mean", skip_empty_rows: bool = True,
                   tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Triplet SupCon (gap): SupCon's p with a narrow Gaussian q, sigma -> 0.

    Bound: ``T <= sigma^2 L <= T + sigma^2 log(n - 1)``, ``T = mean_i [mean_{p in P(i)} d_ip -
    min_{k != i} d_ik]``: each positive is pulled closer than the hardest point. New (gap).
    """
    return build(SameLabel(), SigmaSquaredGaussian(sigma), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Good 1963",
          label="Cross Entropy", column="Data-label pairs", row="Gaussian", theorem="Thm 9", equality="exact",
          area="SUP", test=f"{_SUP}::test_cross_entropy", p=_ONE + " (alpha-smoothed)",
          q="exp(z_i . w_c) / sum_k exp(z_i . w_k) over classes")
def cross_entropy(n_classes: int, label_smoothing: float = 0.0, *, reduction: str = "mean",
                  skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Softmax cross-entropy: p = the anchor's class (alpha-debiased), q = softmax of ``f(x) . w_c``.

    Thm 9, exact (bias-free logits): ``F.cross_entropy(z @ W.T, y, label_smoothing=alpha)``.
    Label smoothing is alpha-debiasing of p over all C classes (the paper's Sec. 3.3.2). Call as
    ``loss(features, target=labels, candidates=W)`` with W the (C, d) class prototypes.
    """
    alpha = check_probability("cross_entropy", "label_smoothing", label_smoothing)
    p = mix_uniform(DataToClass(n_classes), alpha) if alpha > 0 else DataToClass(n_classes)
    return build(p, Gaussian(temperature=1.0, metric="dot"), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Baek 2025",
          label="Harmonic Loss", column="Data-label pairs", row="Student-T", theorem="Thm 10", equality="limit",
          area="SUP", test=f"{_SUP}::test_harmonic_loss", p=_ONE,
          q="(||z_i-w_c||^2 + (n-1) sigma^2)^(-n/2) / Z_i over classes; sigma -> 0: d^-n")
def harmonic_loss(n_classes: int, exponent: float = 2.0, sigma: float = 0.0, *, reduction: str = "mean",
                  skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Harmonic loss: p = the anchor's class, q = Student-t over prototypes, sigma -> 0.

    Thm 10, limit: ``q_sigma(c|i) ∝ (1 + ||z_i - w_c||^2 / ((n-1) sigma^2))^(-n/2)`` tends, as
    sigma -> 0, to Baek et al.'s ``||z_i - w_c||^(-n) / sum_k ||z_i - w_k||^(-n)``;
    ``sigma=0`` (default) is that loss itself. Call as ``loss(features, target=labels, candidates=W)``.
    """
    return build(DataToClass(n_classes), Harmonic(exponent, sigma), "cross_entropy", reduction, skip_empty_rows,
                 tile_size, gather)


@register(label="Error rate", column="Data-label pairs", row="Gaussian σ→0", theorem="new (gap), Thm 5",
          equality="bound", area="GAP", test=f"{_GAPS}::test_error_rate", p=_ONE,
          q="exp(z_i . w_c / sigma^2) / Z_i over classes, sigma -> 0",
          note="A gap cell: no original exists. Its sandwich bound is checked for several sigma.")
def error_rate(n_classes: int, sigma: float = 0.1, *, reduction: str = "mean", skip_empty_rows: bool = False,
               tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Error rate (gap): cross-entropy's p with the logits sharpened, sigma -> 0.

    Bound: ``T <= sigma^2 L <= T + sigma^2 log C`` with ``T = mean_i (max_c s_ic - s_iy)``,
    ``s = z . w``: zero exactly on correctly classified points and the logit gap on the others,
    a margin form of the 0-1 error (the softmax becomes an arg-max). New (gap).
    """
    return build(DataToClass(n_classes), SigmaSquaredGaussian(sigma, metric="dot"), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather)


@register(cite="Devlin 2019",
          label="Masked Language Modelling", column="Data-label pairs", row="Gaussian", theorem="Thm 11",
          equality="exact", area="SUP", kind="table1", test=f"{_SUP}::test_masked_language_modeling",
          p="1[j = the masked token of context i]", q="exp(h_i . e_j) / sum_k exp(h_i . e_k) over the vocabulary")
def masked_language_modeling(vocab_size: int, *, reduction: str = "mean", skip_empty_rows: bool = False,
                             tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """Masked language modelling: p = the token behind the mask, q = softmax over the vocabulary.

    Thm 11, exact: ``F.cross_entropy(h @ E.T, tokens, ignore_index=...)`` on the masked positions.
    Call as ``loss(hidden[mask], target=tokens[mask], candidates=E)`` with E the (V, d) output
    embeddings. An empirical next-token distribution can be given as a precomputed p instead.
    """
    return build(DataToClass(vocab_size), Gaussian(temperature=1.0, metric="dot"), "cross_entropy", reduction,
                 skip_empty_rows, tile_size, gather)
