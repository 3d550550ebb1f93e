"""The periodic table as functions: each returns an :class:`~icontorch.ICon` with the paper's p and q.

Every function's docstring states p, q, the theorem and how the I-Con loss relates to the
original (exact, stated, limit, bound, argmin, loose). Methods whose original reports a cross-entropy
use ``divergence="cross_entropy"`` so that values match the original; with a fixed p this
differs from the KL by the constant entropy of p and has the same gradient.

``available()`` lists the registered names in table order; ``info(name)`` gives the table cell,
formulas, theorem and proving test of each. The modules follow the paper's colour families:
``dimensionality`` (DR), ``contrastive`` (unimodal SSL), ``crossmodal`` (multimodal SSL),
``supervised``, ``clustering``, then ``related`` (Kernel-InfoNCE, SwAV, DINO), ``baselines``
(losses that are not I-Con losses, with their relation stated), ``hard_negatives`` (HCL, a
reweighted q) and ``contrastive_clustering`` (Li et al. 2021). ``alignment`` holds Wang and Isola's
alignment and uniformity losses, which are not in the registry. Gap cells are marked ``info(name).gap``.

Every function that returns an ICon also takes ICon's engine options as keyword-only arguments and
hands them to ICon unchanged: ``reduction``, ``skip_empty_rows``, ``tile_size``, ``gather`` and,
for methods called with the items of another modality or view as candidates, ``symmetric``
(``methods.simclr(0.5, gather=True, tile_size=4096)``). The baselines take ``reduction`` where
they have one term per anchor.
"""

# Import order is registration order, which orders methods sharing a cell (as the figure does).
from ._registry import AREAS, COLUMNS, EQUALITIES, KINDS, ROWS, MethodInfo, available, info  # isort: skip
from .dimensionality import (conditional_tsne, doubly_tsne, dual_tsne, pca, sne,  # isort: skip
                             sne_graph_embedding, sne_uniform_affinities, tsne, tsne_graph_embedding,
                             tsne_uniform_affinities, umap)
from .contrastive import (infonce, lgsimclr, mocov3, simclr, triplet, tsimclr, tsimcne,  # isort: skip
                          vicreg, x_sample_cl)
from .crossmodal import average_margin_clip, clip, cmc, siglip, t_clip, triplet_clip  # isort: skip
from .supervised import (average_margin_supcon, cross_entropy, error_rate, harmonic_loss,  # isort: skip
                         masked_language_modeling, supcon, t_supcon, triplet_supcon)
from .clustering import (dcd, infonce_clustering, kmeans, normalized_cuts, pmi_clustering,  # isort: skip
                         spectral_clustering, supervised_clustering, t_kmeans)
from .related import dino, kernel_infonce, swav  # isort: skip
from .baselines import (DebiasedContrastiveLoss, DecoupledContrastiveLoss, IICLoss,  # isort: skip
                        TEMIPMILoss, debiased_contrastive, decoupled_contrastive, iic, temi_pmi)
from .hard_negatives import HardNegativeContrastiveLoss, hard_negative_contrastive  # isort: skip
from .contrastive_clustering import ContrastiveClusteringLoss, contrastive_clustering  # isort: skip
from .alignment import AlignmentUniformityLoss, alignment_loss, uniformity_loss  # isort: skip

__all__ = [
    "available", "info", "MethodInfo", "COLUMNS", "ROWS", "AREAS", "EQUALITIES", "KINDS",
    # dimensionality reduction
    "sne", "tsne", "conditional_tsne", "sne_uniform_affinities", "tsne_uniform_affinities",
    "sne_graph_embedding", "tsne_graph_embedding", "dual_tsne", "doubly_tsne", "pca", "umap",
    # unimodal self-supervised
    "infonce", "simclr", "mocov3", "x_sample_cl", "lgsimclr", "tsimcne", "tsimclr", "vicreg", "triplet",
    # multimodal
    "clip", "cmc", "t_clip", "average_margin_clip", "triplet_clip", "siglip",
    # supervised
    "supcon", "t_supcon", "average_margin_supcon", "triplet_supcon", "cross_entropy", "harmonic_loss",
    "error_rate", "masked_language_modeling",
    # clustering
    "kmeans", "t_kmeans", "normalized_cuts", "dcd", "infonce_clustering", "supervised_clustering",
    "spectral_clustering", "pmi_clustering",
    # related
    "kernel_infonce", "swav", "dino",
    # baselines (not I-Con losses)
    "debiased_contrastive", "decoupled_contrastive", "iic", "temi_pmi", "hard_negative_contrastive",
    "contrastive_clustering",
    "DebiasedContrastiveLoss", "DecoupledContrastiveLoss", "IICLoss", "TEMIPMILoss", "HardNegativeContrastiveLoss",
    "ContrastiveClusteringLoss",
    # Wang and Isola's alignment and uniformity (not in the registry: not I-Con losses)
    "alignment_loss", "uniformity_loss", "AlignmentUniformityLoss",
]
