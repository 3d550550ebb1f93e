"""The seeds' related losses that are I-Con losses: Kernel-InfoNCE, SwAV and DINO prototypes.

(SigLIP and UMAP, per-pair Bernoulli KLs, live beside CLIP and t-SNE; the baselines that are not
I-Con losses -- debiased and decoupled contrastive learning, IIC, TEMI -- in ``baselines``.)
"""

from __future__ import annotations

from typing import Optional

from .._validation import check_choice, check_int, check_positive_parameter, check_probability, fail
from ..loss import ICon
from ..neighborhoods import (
    DisjointUnion,
    Gaussian,
    KernelMixture,
    Logits,
    PositivePairs,
    PowerExponential,
    SinkhornCodes,
    StopGradient,
)
from ._engine import TileSize, build
from ._registry import register

__all__ = ["kernel_infonce", "swav", "dino"]

_REL = "tests/methods/test_methods_related.py"


@register(cite="Tan 2024",
          label="Kernel-InfoNCE", column="Uniform over positive pairs", row="Kernel mixture",
          theorem="not in the paper", equality="exact", area="U-SSL", kind="related",
          test=f"{_REL}::test_kernel_infonce", p="1[j = i+]",
          q="exp(-||z_i-z_j||^gamma / t) / Z_i; 'kernel_sum': ∝ lam exp(-d^gamma / t) + (1 - lam) exp(-d^2 / t2); "
            "'sum' / 'concat': weighted union with the Gaussian (gamma = 2)")
def kernel_infonce(gamma: float = 1.0, temperature: float = 0.5, mix: Optional[str] = None,
                   weight: float = 0.5, temperature2: Optional[float] = None, split: Optional[int] = None, *,
                   reduction: str = "mean", skip_empty_rows: bool = False, tile_size: TileSize = "auto",
                   gather: bool = False) -> ICon:
    """Kernel-InfoNCE: SimCLR's p with ``q ∝ exp(-||z_i - z_j||^gamma / t)`` (Tan et al. 2024).

    ``mix=None``: one kernel (``gamma=1`` Laplacian, exact against the paper's ``gamma_loss``).
    ``mix="kernel_sum"``: the kernel mixture inside one softmax,
    ``q(j|i) ∝ weight exp(-d_ij^gamma / t) + (1 - weight) exp(-d_ij^2 / t2)``
    (:class:`~icontorch.neighborhoods.mixture.KernelMixture`, computed in log space); at
    ``weight = 0.5`` the paper's "Simple Sum" kernel ``exp(-d^2 / t2) + exp(-d^gamma / t)``.
    ``mix="sum"``: ``weight * L_gamma + (1 - weight) * L_2`` (their code's "Simple Sum": a Laplacian
    and a Gaussian *loss* on the same features). ``mix="concat"``: the same weights, the first
    kernel on features ``[:split]`` and the Gaussian on ``[split:]`` ("Concatenation"). A weighted
    sum of I-Con losses sharing p is one I-Con loss on the disjoint union of the neighbour spaces
    (:class:`~icontorch.neighborhoods.wrappers.DisjointUnion`), so both are exact.

    Every argument is validated whatever ``mix`` is, also those that ``mix`` leaves unused.
    ``"kernel_sum"`` has no fused form: an integer ``tile_size`` raises :class:`~icontorch.IConError`.

    Args:
        gamma: power of the distance in the first kernel, in (0, 2].
        temperature: t of the first kernel.
        mix: None, ``"kernel_sum"``, ``"sum"`` or ``"concat"``.
        weight: lambda, the weight of the first kernel: in [0, 1], strictly inside when mixing.
        temperature2: t2 of the Gaussian kernel (default: ``temperature``, as their code).
        split: the feature index where the Gaussian's block starts (``mix="concat"`` only), >= 1.
    """
    who = "kernel_infonce"
    check_choice(who, "mix", mix, (None, "kernel_sum", "sum", "concat"))
    weight = check_probability(who, "weight", weight)
    if temperature2 is not None:  # a learnable tensor stays one
        check_positive_parameter(who, "temperature2", temperature2)
    if split is not None:
        split = check_int(who, "split", split, 1)
    first = PowerExponential(gamma, temperature)
    if mix is None:
        return build(PositivePairs(), first, "cross_entropy", reduction, skip_empty_rows, tile_size, gather)
    if not 0.0 < weight < 1.0:
        raise fail(who, "weight", "lie strictly between 0 and 1 when mixing", weight)
    # Temperatures go to the kernels as given (a learnable tensor stays one); the kernels check them.
    second = PowerExponential(2.0, temperature if temperature2 is None else temperature2)
    weights = (weight, 1.0 - weight)
    if mix == "kernel_sum":
        return build(PositivePairs(), KernelMixture([first, second], weights), "cross_entropy", reduction,
                     skip_empty_rows, tile_size, gather)
    blocks = None
    if mix == "concat":
        if split is None:
            raise fail(who, "split", "be given with mix='concat' (where the second block starts)", split)
        blocks = ((0, split), (split, None))
    return build(DisjointUnion([PositivePairs(), PositivePairs()], weights),
                 DisjointUnion([first, second], weights, blocks=blocks), "kl", reduction, skip_empty_rows,
                 tile_size, gather)


@register(cite="Caron 2020",
          label="SwAV", column="Data-label pairs", row="Gaussian", theorem="not in the paper", equality="exact",
          area="U-SSL", kind="related", test=f"{_REL}::test_swav",
          p="Sinkhorn code of the other crop over the prototypes (stop-gradient)",
          q="exp(cos(z_i, c_k) / t) / sum_l exp(cos(z_i, c_l) / t) over prototypes",
          note="Exact for the cross-entropy; p comes from the model (detached), so the KL form "
               "differs from it by H(p) at every step.")
def swav(temperature: float = 0.1, epsilon: float = 0.05, n_iter: int = 3, *, reduction: str = "mean",
         skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """SwAV: p = the Sinkhorn code of the other crop, q = cosine softmax over the prototypes.

    Exact (cross-entropy form) with Caron et al.'s swapped prediction. One direction is
    ``loss(z1, target=z0n @ Cn.T, candidates=C)`` with ``z0n``, ``Cn`` unit-normalised (the codes
    of crop 0 predicted from crop 1; the Sinkhorn runs over that crop's batch). SwAV averages
    the directions: ``(loss(z1, s0, C) + loss(z0, s1, C)) / 2``.
    """
    return build(SinkhornCodes(epsilon, n_iter), Gaussian(temperature=temperature, metric="cosine"),
                 "cross_entropy", reduction, skip_empty_rows, tile_size, gather)


@register(cite="Caron 2021",
          label="DINO", column="Data-label pairs", row="Gaussian", theorem="App. H", equality="exact",
          area="U-SSL", kind="related", test=f"{_REL}::test_dino",
          p="softmax((g_t - center) / t_t), the teacher (stop-gradient)", q="softmax(g_s / t_s), the student",
          note="Exact for the cross-entropy; the paper lists DINO outside I-Con proper, since it "
               "needs centring, sharpening and an EMA teacher to avoid collapse.")
def dino(student_temperature: float = 0.1, teacher_temperature: float = 0.04, *, reduction: str = "mean",
         skip_empty_rows: bool = False, tile_size: TileSize = "auto", gather: bool = False) -> ICon:
    """DINO: p = the centred, sharpened teacher softmax (no gradient), q = the student softmax.

    Exact (cross-entropy form) against Caron et al.'s ``DINOLoss``. Stack the (teacher view,
    student view) pairs with different views: ``loss(cat([s1, s0]), target=cat([t0, t1]) - center)``;
    update ``center = m center + (1 - m) mean(teacher outputs)`` yourself.
    """
    return build(StopGradient(Logits(teacher_temperature)), Logits(student_temperature), "cross_entropy",
                 reduction, skip_empty_rows, tile_size, gather)
