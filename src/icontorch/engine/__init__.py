"""The engine behind :class:`icontorch.ICon`: how the one equation is computed fast.

- :mod:`.structured`: recognises a structured p (ids, labels, neighbour lists, optionally
  alpha-mixed) against a kernel-softmax q and hands the pair to the tiled engine.
- :mod:`.tiled`: the cross-entropy ``-sum_j p(j|i) log q(j|i)`` by an online log-sum-exp over tiles
  of candidates, with the backward pass recomputing tiles (memory O(n * tile)).
- :mod:`.distributed`: the gradient-carrying all-gather behind ``gather=True`` and the reduction
  whose mean over ranks is the loss of one process on the whole batch.
"""

from . import distributed, structured, tiled

__all__ = ["distributed", "structured", "tiled"]
