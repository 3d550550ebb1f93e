"""The two-stage protocol of the paper's Table 2 and the SCAN baseline on the same encoder.

Stage 1: self-supervised pre-training of an encoder with an I-Con loss over pairs of augmented
views (:func:`~icontorch.training.train_contrastive`; by default the alpha-debiased SimCLR of the
paper's Sec. 3.3.2, ``p = mix_uniform(PositivePairs(), 0.6)``, ``q`` a cosine Gaussian at
temperature 0.5). Stage 2: the frozen backbone's features ``h`` of the clean images, and of
``n_views`` augmented copies of each (the views), go to :class:`~icontorch.clustering.Clustering`:
Debiased InfoNCE Clustering (p: the other views of an item plus its walk-propagated kNN in the
clean features) for ``"two_stage"``, the SCAN objective (consistency with a kNN neighbour's
assignment minus 5 times the entropy of the batch marginal) for ``"scan"``.
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, Dict, Optional

from torch import Tensor, nn

from ..loss import ICon
from ..neighborhoods import Gaussian, PositivePairs
from ..training import train_contrastive
from ..transforms import mix_uniform
from .estimator import Clustering

__all__ = ["default_pretraining_loss", "pretrain", "backbone_features", "fit_clustering", "accepts_views"]

PRETRAINING_ALPHA = 0.6          # the alpha-debiasing weight of the default pre-training loss
PRETRAINING_TEMPERATURE = 0.5


def default_pretraining_loss() -> ICon:
    """``ICon(p = (1 - a) PositivePairs + a / n, q = Gaussian(0.5, cosine))``, a = 0.6 (cross-entropy form)."""
    return ICon(mix_uniform(PositivePairs(), PRETRAINING_ALPHA),
                Gaussian(PRETRAINING_TEMPERATURE, metric="cosine"), divergence="cross_entropy")


def pretrain(encoder: nn.Module, loss: Optional[Callable], images: Tensor, augment: Callable,
             settings: Dict[str, Any]) -> list:
    """Stage 1: :func:`~icontorch.training.train_contrastive` with two views per image; the epoch losses."""
    return train_contrastive(encoder, default_pretraining_loss() if loss is None else loss, images, augment,
                             n_views=2, **settings)


def backbone_features(encoder: nn.Module) -> Callable[[Tensor], Tensor]:
    """The encoder's representation for clustering: ``encoder.features`` (the backbone, before the
    projection head) when it has one, else its output."""
    features = getattr(encoder, "features", None)
    return features if callable(features) else encoder


def accepts_views() -> bool:
    """Whether :meth:`Clustering.fit` takes cached views (``fit(X, views=V)``)."""
    return "views" in inspect.signature(Clustering.fit).parameters


def fit_clustering(features: Tensor, views: Optional[Tensor], params: Dict[str, Any]) -> Clustering:
    """Stage 2: ``Clustering(**params).fit(features, views=views)``.

    Where ``Clustering.fit`` does not take views, it is fitted on the clean features alone (its batches
    then hold identical copies of each item): the fallback of an older ``Clustering``."""
    model = Clustering(**params)
    if views is not None and accepts_views():
        return model.fit(features, views=views)
    return model.fit(features)
