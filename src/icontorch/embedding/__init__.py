"""Neighbour embedding (SNE, t-SNE and the rest of the periodic table's embedding column).

- :mod:`.estimators`: ``TSNE``, ``SNE``, ``NeighborEmbedding`` (scikit-learn conventions), on
  :mod:`.base`, their shared fit / transform machinery;
- :mod:`.affinity`: the input-side p (perplexity-calibrated kNN or dense affinities, symmetrised);
- :mod:`.optim`: the non-parametric objectives and t-SNE's momentum-and-gains gradient descent;
- :mod:`.reference`: the objective of ``transform``, new points against the fitted map;
- :mod:`.repulsion`: q's normaliser, exactly or by FFT-accelerated interpolation on a grid;
- :mod:`.parametric`, :mod:`.mappers`: the parametric mapper ``y = f(x)`` and its training;
- :mod:`.functional`: ``tsne_embedding``, the one-call exact t-SNE.
"""

from . import mappers
from .estimators import SNE, TSNE, NeighborEmbedding
from .functional import tsne_embedding

__all__ = ["TSNE", "SNE", "NeighborEmbedding", "tsne_embedding", "mappers"]
