"""Unsupervised classification with I-Con losses (Debiased InfoNCE Clustering and its peers).

- :mod:`.estimator`: ``Clustering``, the scikit-learn style estimator;
- :mod:`.specs`: ``METHOD_SPECS``, the one table of what each ``method`` does;
- :mod:`.graph`: p's neighbour graph (exact kNN, mutual pruning, random-walk propagation);
- :mod:`.objectives`: the per-method batch losses;
- :mod:`.heads`: the cluster heads that output soft assignments;
- :mod:`.train`: the training loop over batches of the graph.
"""

from .estimator import Clustering
from .specs import METHOD_SPECS, METHODS, MethodSpec

__all__ = ["Clustering", "METHODS", "METHOD_SPECS", "MethodSpec"]
