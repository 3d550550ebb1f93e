"""Neighbourhood distributions p(j|i), split by the paper's four families (Fig. 2b).

``base`` also holds the fused forms (:class:`FusedTargets`, :class:`FusedKernel`) by which a
neighbourhood describes itself to the fused engine, and ``kernels`` the one kernel profile.
"""

from .base import (
                   FromCallable,
                   FusedKernel,
                   FusedTargets,
                   KernelNeighborhood,
                   Neighborhood,
                   Precomputed,
                   Support,
                   as_neighborhood,
)
from .cluster import Cluster, DegreeWeightedCluster, Logits, SinkhornCodes
from .discrete import CrossModal, DataToClass, Identity, PositivePairs, SameLabel
from .graph import Adjacency, GraphKernel, SpectralGaussian, spectral_embedding
from .kernels import KernelProfile
from .links import GraphLinks, SameIdLinks, SigmoidLinks, UMAPLinks, umap_ab
from .mixture import KernelMixture
from .sparse import SparseNeighbors
from .spatial import KNN, Gaussian, Harmonic, PerplexityGaussian, PowerExponential, StudentT, perplexity_precision
from .wrappers import DisjointUnion, StopGradient

__all__ = [
    "Neighborhood", "KernelNeighborhood", "Precomputed", "FromCallable", "as_neighborhood",
    "FusedTargets", "FusedKernel", "Support", "KernelProfile",
    "Gaussian", "PerplexityGaussian", "StudentT", "KNN", "perplexity_precision",
    "SameLabel", "PositivePairs", "CrossModal", "DataToClass", "Identity",
    "Cluster", "DegreeWeightedCluster", "Adjacency", "SparseNeighbors",
    "PowerExponential", "Harmonic", "GraphKernel", "SpectralGaussian", "spectral_embedding", "Logits",
    "SinkhornCodes", "StopGradient", "DisjointUnion", "KernelMixture",
    "SigmoidLinks", "UMAPLinks", "SameIdLinks", "GraphLinks", "umap_ab",
]
