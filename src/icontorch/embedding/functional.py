"""``tsne_embedding``: the exact t-SNE of a small data set in one call (a thin wrapper of TSNE).

Kept for its simple functional form; :class:`icontorch.TSNE` is the estimator behind it, with the
dense exact I-Con objective (``algorithm="exact"``), so memory is O(n^2).
"""

from __future__ import annotations

from typing import Optional, Tuple, Union

from torch import Tensor

from .._validation import check_features, check_int
from .estimators import TSNE

__all__ = ["tsne_embedding"]


def tsne_embedding(x: Tensor, n_components: int = 2, perplexity: float = 30.0, *, n_iter: int = 500,
                   early_exaggeration: float = 12.0, early_exaggeration_iter: int = 250,
                   learning_rate: Optional[float] = None, init: Union[str, Tensor] = "pca",
                   random_state: int = 0) -> Tuple[Tensor, float]:
    """``argmin_Y KL(P || Q)``, the exact t-SNE of ``x`` (n, d) = ``icontorch.methods.tsne(perplexity)``.

    ``early_exaggeration_iter`` steps with the attraction multiplied by ``early_exaggeration``,
    then ``n_iter`` plain steps (openTSNE's and :class:`icontorch.TSNE`'s counts); the arguments
    after ``perplexity`` are keyword-only.

    Args:
        x: (n, d) floating-point data; the computation keeps its dtype.
        n_components: dimension of the embedding.
        perplexity: the perplexity of the input Gaussian, below n - 1.
        n_iter: gradient steps after the early-exaggeration phase.
        early_exaggeration: attraction factor during the first ``early_exaggeration_iter`` steps.
        early_exaggeration_iter: length of the early-exaggeration phase.
        learning_rate: step size; None for TSNE's ``"auto"``.
        init: ``"pca"``, ``"random"``, or an (n, n_components) tensor.
        random_state: seed of the random initialisation.

    Returns:
        The (n, n_components) embedding and the t-SNE KL divergence ``KL(P || Q)`` at it.
    """
    check_features("tsne_embedding", "x", x)
    check_int("tsne_embedding", "n_iter", n_iter, 0)
    check_int("tsne_embedding", "early_exaggeration_iter", early_exaggeration_iter, 0)
    estimator = TSNE(n_components, perplexity=perplexity, early_exaggeration=early_exaggeration,
                     early_exaggeration_iter=early_exaggeration_iter, n_iter=n_iter,
                     learning_rate="auto" if learning_rate is None else learning_rate, init=init,
                     algorithm="exact", random_state=random_state)
    embedding = estimator.fit_transform(x)
    return embedding, estimator.kl_divergence_
