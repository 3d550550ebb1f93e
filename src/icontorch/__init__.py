"""icontorch: the I-Con loss ``L = mean_i KL(p(.|i) || q(.|i))`` and the methods it unifies.

Choose a supervisory neighbourhood p and a learned neighbourhood q; :class:`ICon` is the loss.
``icontorch.methods`` holds the paper's periodic table as ready-made (p, q) pairs.
"""

from . import (
                            augment,
                            clustering,
                            distances,
                            divergences,
                            embedding,
                            encoders,
                            engine,
                            methods,
                            metrics,
                            probes,
                            table,
                            training,
                            views,
)
from ._validation import IConError
from .clustering import Clustering
from .clustering.images import ImageClustering
from .embedding import SNE, TSNE, NeighborEmbedding, mappers
from .loss import ICon
from .neighborhoods import (
                            KNN,
                            Adjacency,
                            Cluster,
                            CrossModal,
                            DataToClass,
                            DegreeWeightedCluster,
                            FromCallable,
                            Gaussian,
                            Identity,
                            KernelNeighborhood,
                            Neighborhood,
                            PerplexityGaussian,
                            PositivePairs,
                            Precomputed,
                            SameLabel,
                            StudentT,
)
from .neighborhoods.sparse import SparseNeighbors
from .transforms import joint, mix_uniform, propagate, symmetrize

__version__ = "0.1.0"

__all__ = [
    "ICon", "IConError",
    "Neighborhood", "KernelNeighborhood", "Precomputed", "FromCallable",
    "Gaussian", "PerplexityGaussian", "StudentT", "KNN",
    "SameLabel", "PositivePairs", "CrossModal", "DataToClass", "Identity",
    "Cluster", "DegreeWeightedCluster", "Adjacency", "SparseNeighbors",
    "mix_uniform", "symmetrize", "joint", "propagate",
    "divergences", "distances", "methods", "table",
    "TSNE", "SNE", "NeighborEmbedding", "mappers", "Clustering", "ImageClustering", "metrics",
    "augment", "training", "probes", "encoders", "views", "embedding", "clustering", "engine",
]
