"""The engine behind :class:`icontorch.ICon`: how the one equation is computed fast.

- :mod:`.structured`: asks p and q for their fused form (``Neighborhood.fused_form()``: a
  structured p of ids, labels or neighbour lists, optionally alpha-mixed, and a kernel-softmax q)
  and hands the pair to the tiled engine.
- :mod:`.targets`: that p, read tile by tile without forming it.
- :mod:`.tiled`: the cross-entropy ``-sum_j p(j|i) log q(j|i)`` by an online log-sum-exp over tiles
  of candidates, with the backward pass recomputing tiles (memory O(n * tile)).
- :mod:`.distributed`: the gradient-carrying all-gather behind ``gather=True`` and the reduction
  whose mean over ranks is the loss of one process on the whole batch.
"""

from . import distributed, structured, targets, tiled

__all__ = ["distributed", "structured", "targets", "tiled"]
