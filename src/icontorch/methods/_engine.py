"""The one place where a method's p, q and divergence meet ICon's engine options.

Every function of :mod:`icontorch.methods` that returns an :class:`~icontorch.ICon` takes ICon's
engine options as keyword-only arguments, with ICon's meaning and ICon's validation (a bad value
raises :class:`~icontorch.IConError` from ICon, an unknown name a ``TypeError``):

* ``reduction``: ``"mean"`` over anchors, ``"sum"``, or ``"none"`` for the per-anchor vector.
* ``skip_empty_rows``: leave anchors whose p has no mass out of the reduction (NaN entries with
  ``reduction="none"``); True by default for the SupCon family, False elsewhere.
* ``tile_size``: ``"auto"``, ``None`` (never tile) or an integer >= 1 (blocks of anchors by
  candidates; needs a structured p and a kernel-softmax q).
* ``gather``: score the local anchors against the candidates of every rank of the initialised
  ``torch.distributed`` process group (as lightly's ``gather_distributed``).
* ``symmetric`` (methods called with the items of another modality or view as ``candidates``):
  also use every candidate as an anchor; True by default for CLIP and its gap cells.

The Gaussians of width ``sigma^2`` (``exp(s / sigma^2)``: PCA, VICReg, the triplet losses and their
gap cells) are :class:`SigmaSquaredGaussian`, which keeps ``sigma`` as given (a learnable tensor too).
"""

from __future__ import annotations

from typing import Union

from ..loss import Divergence, ICon
from ..neighborhoods.base import NeighborhoodLike, Number
from ..neighborhoods.spatial import Gaussian

__all__ = ["TileSize", "build", "SigmaSquaredGaussian"]

#: ``tile_size`` of :class:`~icontorch.ICon`: ``"auto"``, ``None`` or an integer >= 1.
TileSize = Union[int, str, None]


def build(p: NeighborhoodLike, q: NeighborhoodLike, divergence: Divergence, reduction: str,
          skip_empty_rows: bool, tile_size: TileSize, gather: bool, symmetric: bool = False) -> ICon:
    """``ICon(p, q, divergence)`` with the engine options a method function received, unchanged."""
    return ICon(p=p, q=q, divergence=divergence, reduction=reduction, symmetric=symmetric,
                skip_empty_rows=skip_empty_rows, tile_size=tile_size, gather=gather)


class SigmaSquaredGaussian(Gaussian):
    """``q(j|i) = exp(s_ij / sigma^2) / sum_k exp(s_ik / sigma^2)``: the Gaussian of temperature ``sigma^2``.

    The width of Thm 2, 4 and 5 (``exp(-||z_i - z_j||^2 / sigma^2)``). ``sigma`` is validated and kept
    as :class:`~icontorch.Gaussian` keeps it (a one-element tensor, e.g. an ``nn.Parameter``, stays a
    learned parameter); ``sigma^2`` is taken at every call.
    """

    def __init__(self, sigma: Number, metric: str = "squared_euclidean", include_self: bool = False) -> None:
        super().__init__(sigma=sigma, metric=metric, include_self=include_self)

    @property
    def scale(self) -> Number:
        """The factor ``1 / sigma^2`` applied to the similarity."""
        return 1.0 / self.sigma ** 2
