"""The periodic table as functions: each returns an :class:`~icontorch.ICon` with the paper's p and q.

Every function's docstring states p, q, the theorem and how the I-Con loss relates to the
original (exact, limit, bound, argmin). Methods whose original reports a cross-entropy use
``divergence="cross_entropy"`` so that values match the original; with a fixed p this differs
from the KL by the constant entropy of p and has the same gradient.

``available()`` lists the registered names; ``info(name)`` gives the table cell of each.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Callable, Dict, List

from ._validation import check_positive, check_probability, fail
from .divergences import reverse_kl
from .loss import ICon
from .neighborhoods import (Cluster, CrossModal, DataToClass, Gaussian, Identity, PerplexityGaussian,
                            PositivePairs, SameLabel, StudentT)
from .transforms import joint, mix_uniform, symmetrize

__all__ = ["available", "info", "MethodInfo", "sne", "tsne", "conditional_tsne", "simclr", "supcon",
           "clip", "cross_entropy", "kmeans", "triplet", "pca", "vicreg"]


@dataclass(frozen=True)
class MethodInfo:
    """Where a method sits in the periodic table (Fig. 1) and how it is proven."""

    name: str
    column: str      # the kind of supervisory p
    row: str         # the kind of learned q
    theorem: str
    equality: str    # exact / limit / bound / argmin
    area: str        # DR, CL, U-SSL, M-SSL, SUP
    test: str        # the test that proves it


_REGISTRY: Dict[str, MethodInfo] = {}


def _register(column: str, row: str, theorem: str, equality: str, area: str,
              test: str) -> Callable[[Callable[..., ICon]], Callable[..., ICon]]:
    def deco(fn: Callable[..., ICon]) -> Callable[..., ICon]:
        _REGISTRY[fn.__name__] = MethodInfo(fn.__name__, column, row, theorem, equality, area, test)
        return fn
    return deco


def available() -> List[str]:
    """Names of every method implemented, in table order (columns, then rows)."""
    return list(_REGISTRY)


def info(name: str) -> MethodInfo:
    """The table cell, theorem, equality type and proving test of method ``name``."""
    if name not in _REGISTRY:
        raise fail("methods.info", "name", f"be one of {available()}", name)
    return _REGISTRY[name]


@_register("Gaussian", "Gaussian", "Thm 1", "exact", "DR", "tests/test_methods_embedding.py::test_sne")
def sne(perplexity: float = 30.0) -> ICon:
    """SNE: p = perplexity-calibrated Gaussian on inputs, q = unit Gaussian on the embedding.

    ``p(j|i) ∝ exp(-beta_i ||x_i - x_j||^2)``, ``q(j|i) ∝ exp(-||y_i - y_j||^2)``, j != i.
    Thm 1, exact: SNE's cost ``sum_i KL(P_i || Q_i)`` is n times this mean.
    Call as ``loss(embedding, target=X)``.
    """
    return ICon(p=PerplexityGaussian(perplexity), q=Gaussian(temperature=1.0), divergence="kl")


@_register("Gaussian", "Student-T", "Cor 1", "exact", "DR", "tests/test_methods_embedding.py::test_tsne")
def tsne(perplexity: float = 30.0, dof: float = 1.0) -> ICon:
    """t-SNE, joint form: p = symmetrised perplexity Gaussian, q = Student-t normalised over pairs.

    ``P_ij = (p_j|i + p_i|j) / 2n``, ``Q_ij = w_ij / sum_{k != l} w_kl`` with
    ``w = (1 + ||y_i - y_j||^2 / dof)^(-(dof+1)/2)``. As an I-Con loss the joint objective has one
    anchor whose neighbours are the n(n-1) ordered pairs (Cor 1 adapted), exact: the value is
    t-SNE's ``KL(P || Q)`` (scikit-learn's ``kl_divergence_``). Call as ``loss(embedding, target=X)``.
    """
    return ICon(p=symmetrize(PerplexityGaussian(perplexity)), q=joint(StudentT(dof)), divergence="kl")


@_register("Gaussian", "Student-T", "Cor 1", "exact", "DR",
           "tests/test_methods_embedding.py::test_conditional_tsne")
def conditional_tsne(perplexity: float = 30.0, dof: float = 1.0) -> ICon:
    """t-SNE, conditional form (the paper's Cor 1): per-anchor Cauchy q instead of a joint Q.

    ``p(j|i) ∝ exp(-beta_i ||x_i - x_j||^2)``, ``q(j|i) ∝ (1 + ||y_i - y_j||^2 / dof)^(-(dof+1)/2)``.
    Exact for this conditional objective, which differs from :func:`tsne`'s joint one.
    """
    return ICon(p=PerplexityGaussian(perplexity), q=StudentT(dof), divergence="kl")


@_register("Uniform over positive pairs", "Gaussian", "Thm 3", "exact", "U-SSL",
           "tests/test_methods_contrastive.py::test_simclr")
def simclr(temperature: float = 0.5) -> ICon:
    """SimCLR / NT-Xent: p = the other view of the same item, q = cosine softmax over views j != i.

    ``q(j|i) = exp(cos(z_i, z_j) / t) / sum_{k != i} exp(cos(z_i, z_k) / t)``. Thm 3, exact:
    equals NT-Xent averaged over the 2B views. Call as
    ``loss(torch.cat([z1, z2]), target=torch.arange(B).repeat(2))``.
    """
    return ICon(p=PositivePairs(), q=Gaussian(temperature=temperature, metric="cosine"),
                divergence="cross_entropy")


@_register("Uniform over classes", "Gaussian", "Thm 6", "exact", "SUP",
           "tests/test_methods_contrastive.py::test_supcon")
def supcon(temperature: float = 0.1) -> ICon:
    """SupCon L_out: p = uniform over same-label points j != i, q = cosine softmax over j != i.

    Thm 6, exact: ``(1/|P(i)|) sum_{p in P(i)} -log q(p|i)`` averaged over anchors. Anchors with
    no positive are left out of the mean (``skip_empty_rows=True``, as pytorch-metric-learning).
    Call as ``loss(torch.cat(views), target=torch.cat(labels))``.
    """
    return ICon(p=SameLabel(), q=Gaussian(temperature=temperature, metric="cosine"),
                divergence="cross_entropy", skip_empty_rows=True)


@_register("Cross-modal pairs", "Gaussian", "Thm 8", "exact", "M-SSL",
           "tests/test_methods_contrastive.py::test_clip")
def clip(temperature: float = 0.07) -> ICon:
    """CLIP: p = the paired item of the other modality, q = cosine softmax over the other modality.

    Thm 8, exact: the symmetric CLIP loss ``(CE(I T^T / t) + CE(T I^T / t)) / 2``. Call as
    ``loss(image, target=ids, candidates=text, target_candidates=ids)``.
    """
    return ICon(p=CrossModal(), q=Gaussian(temperature=temperature, metric="cosine"),
                divergence="cross_entropy", symmetric=True)


@_register("Data-label pairs", "Gaussian", "Thm 9", "exact", "SUP",
           "tests/test_methods_supervised.py::test_cross_entropy")
def cross_entropy(n_classes: int, label_smoothing: float = 0.0) -> ICon:
    """Softmax cross-entropy: p = the anchor's class (alpha-debiased), q = softmax of ``f(x) . w_c``.

    Thm 9, exact (bias-free logits): ``F.cross_entropy(z @ W.T, y, label_smoothing=alpha)``.
    Label smoothing is alpha-debiasing of p over all C classes (section 3.3.2). Call as
    ``loss(features, target=labels, candidates=W)`` with W the (C, d) class prototypes.
    """
    alpha = check_probability("cross_entropy", "label_smoothing", label_smoothing)
    p = mix_uniform(DataToClass(n_classes), alpha) if alpha > 0 else DataToClass(n_classes)
    return ICon(p=p, q=Gaussian(temperature=1.0, metric="dot"), divergence="cross_entropy")


@_register("Gaussian", "Uniform on clusters", "Thm 13", "argmin", "CL",
           "tests/test_methods_clustering.py::test_kmeans_identity")
def kmeans(sigma: float = 1.0) -> ICon:
    """Probabilistic k-Means: cluster kernel q in the first KL slot, Gaussian p on data, plus H(q).

    ``L = (1/n) sum_i [KL(q_i || p_i) + H(q_i)]`` with ``q(j|i) = sum_c phi_ic phi_jc / n_c`` and
    ``p(j|i) ∝ exp(-||x_i - x_j||^2 / (2 sigma^2))`` over all j including i. Thm 13: ``n L = sum_ic phi_ic ||x_i - mu_c||^2 / sigma^2
    + sum_i log Z_i``, the (soft) k-Means loss over ``sigma^2`` plus a constant, so both have the
    same minimisers; for one-hot phi the first term is ``inertia / sigma^2``. Call as
    ``loss(log_softmax(cluster_logits), target=X)``.
    """
    sigma = check_positive("kmeans", "sigma", sigma)
    return ICon(p=Gaussian(sigma=sigma, include_self=True), q=Cluster(),
                divergence=functools.partial(reverse_kl, entropy_weight=1.0))


@_register("Uniform over positive pairs", "Gaussian σ→0", "Thm 5", "bound", "U-SSL",
           "tests/test_methods_limits.py::test_triplet_bound")
def triplet(sigma: float = 1.0) -> ICon:
    """Triplet: p = the positive, q = ``exp(-d^2 / sigma^2)`` over the anchor's {positive, negative}.

    Thm 5, bound: with ``L`` this loss, ``sigma^2 L - sigma^2 log 2 <= mean max(d+ - d-, 0) <=
    sigma^2 L`` (squared distances, no margin), so ``sigma^2 L`` tends to the triplet loss as
    sigma -> 0. Call with per-anchor candidates:
    ``loss(a, target=ids, candidates=torch.stack([pos, neg], 1), target_candidates=...)``.
    """
    sigma = check_positive("triplet", "sigma", sigma)
    return ICon(p=PositivePairs(), q=Gaussian(temperature=sigma ** 2), divergence="cross_entropy")


@_register("Identity", "Gaussian σ→∞", "Thm 2", "limit", "DR", "tests/test_methods_limits.py::test_pca_limit")
def pca(sigma: float = 100.0) -> ICon:
    """PCA: p = identity, q = wide Gaussian ``exp(-||Wx_i - Wx_j||^2 / sigma^2)`` over all j incl. i.

    Thm 2 / Prop 1, limit: ``sigma^2 (L - log n) -> -2 Var(f(X))`` as sigma -> inf, so for a
    linear f with orthonormal rows the minimiser spans the top principal components.
    Call as ``loss(X @ W.T, target=X)``.
    """
    sigma = check_positive("pca", "sigma", sigma)
    return ICon(p=Identity(), q=Gaussian(temperature=sigma ** 2, include_self=True),
                divergence="cross_entropy")


@_register("Uniform over positive pairs", "Gaussian σ→∞", "Thm 4", "limit", "U-SSL",
           "tests/test_methods_limits.py::test_vicreg_limit")
def vicreg(sigma: float = 100.0) -> ICon:
    """VICReg without covariance: p = positive pairs, q = wide Gaussian ``exp(-d^2 / sigma^2)``.

    Thm 4 / Prop 1, limit: ``sigma^2 (L - log n) -> (1/n) sum_i ||f_i - f_i+||^2 - 2 Var(f)``
    (invariance : variance = 1 : 2) as sigma -> inf.
    """
    sigma = check_positive("vicreg", "sigma", sigma)
    return ICon(p=PositivePairs(), q=Gaussian(temperature=sigma ** 2, include_self=True),
                divergence="cross_entropy")
