"""``tsne_embedding``: the exact t-SNE of a small data set in one call (a thin wrapper of TSNE).

Kept for its simple functional form; :class:`icontorch.TSNE` is the estimator behind it, with the
dense exact I-Con objective (``method="exact"``), so memory is O(n^2).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor

from .._validation import check_features, check_int
from .estimators import TSNE

__all__ = ["tsne_embedding"]


def tsne_embedding(x: Tensor, n_components: int = 2, perplexity: float = 30.0, n_iter: int = 750,
                   early_exaggeration: float = 12.0, exaggeration_iter: int = 250,
                   learning_rate: Optional[float] = None, init: Union[str, Tensor] = "pca",
                   random_state: int = 0) -> Tuple[Tensor, float]:
    """Embed ``x`` (n, d) with exact t-SNE = ``icontorch.methods.tsne(perplexity)``.

    Args:
        x: (n, d) floating-point data; the computation keeps its dtype.
        n_components: dimension of the embedding.
        perplexity: the perplexity of the input Gaussian, below n - 1.
        n_iter: total gradient steps, the early-exaggeration phase included.
        early_exaggeration: attraction factor during the first ``exaggeration_iter`` steps.
        exaggeration_iter: length of the early-exaggeration phase.
        learning_rate: step size; None for TSNE's ``"auto"``.
        init: ``"pca"``, ``"random"``, or an (n, n_components) tensor.
        random_state: seed of the random initialisation.

    Returns:
        The (n, n_components) embedding and the t-SNE KL divergence ``KL(P || Q)`` at it.
    """
    check_features("tsne_embedding", "x", x)
    check_int("tsne_embedding", "n_iter", n_iter, 1)
    check_int("tsne_embedding", "exaggeration_iter", exaggeration_iter, 0)
    warm_up = min(exaggeration_iter, n_iter)
    estimator = TSNE(n_components=n_components, perplexity=perplexity,
                     early_exaggeration=early_exaggeration, early_exaggeration_iter=warm_up,
                     n_iter=n_iter - warm_up, learning_rate="auto" if learning_rate is None else learning_rate,
                     init=init, method="exact", random_state=random_state)
    embedding = estimator.fit_transform(x)
    return embedding, estimator.kl_divergence_
