"""Unsupervised classification with I-Con losses (Debiased InfoNCE Clustering and its peers).

- :mod:`.estimator`: ``Clustering``, the scikit-learn style estimator;
- :mod:`.graph`: p's neighbour graph (exact kNN, mutual pruning, random-walk propagation);
- :mod:`.objectives`: the per-method batch losses;
- :mod:`.heads`: the cluster heads that output soft assignments;
- :mod:`.train`: the training loop over batches of the graph.
"""

from .estimator import METHODS, Clustering

__all__ = ["Clustering", "METHODS"]
