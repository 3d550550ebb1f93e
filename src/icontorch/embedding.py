"""A minimal non-parametric t-SNE optimiser on the I-Con loss, used by ``icontorch demo``.

The embedding is a free table of points (the paper's non-parametric mapper) optimised with the
exact, dense I-Con t-SNE gradient: gradient descent with momentum and per-coordinate gains as in
van der Maaten & Hinton (2008) and scikit-learn, and early exaggeration. Early exaggeration
multiplies the attraction ``-sum P log w`` by a factor but not the repulsion ``log Z``; it is a
warm-up, not a KL. Memory is O(n^2): for the small data sets of the demo.
"""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
import torch
from torch import Tensor

from ._validation import check_features, check_int, check_positive, fail
from .divergences import kl
from .methods import tsne
from .neighborhoods.base import mask_diagonal
from .transforms import Joint

__all__ = ["tsne_embedding"]


def _pca_init(x: Tensor, n_components: int) -> Tensor:
    centred = x - x.mean(0)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    y = centred @ v[:n_components].T
    return y / y[:, 0].std() * 1e-4


def tsne_embedding(x: Tensor, n_components: int = 2, perplexity: float = 30.0, n_iter: int = 750,
                   early_exaggeration: float = 12.0, exaggeration_iter: int = 250,
                   learning_rate: Optional[float] = None, init: Union[str, Tensor] = "pca",
                   random_state: int = 0) -> tuple[Tensor, float]:
    """Embed ``x`` (n, d) with t-SNE = ``icontorch.methods.tsne(perplexity)``.

    Args:
        x: (n, d) floating-point data.
        n_components: dimension of the embedding.
        perplexity: the perplexity of the input Gaussian, below n - 1.
        n_iter: total gradient steps (including the exaggeration phase).
        early_exaggeration: attraction factor during the first ``exaggeration_iter`` steps.
        exaggeration_iter: length of the early-exaggeration phase.
        learning_rate: step size; None gives ``max(n / early_exaggeration / 4, 50)``.
        init: ``"pca"`` (first principal components, scaled to std 1e-4), ``"random"``, or an
            (n, n_components) tensor.
        random_state: seed of the random initialisation.

    Returns:
        The (n, n_components) embedding and the t-SNE KL divergence at it.
    """
    who = "tsne_embedding"
    check_features(who, "x", x)
    check_int(who, "n_components", n_components, 1)
    check_int(who, "n_iter", n_iter, 1)
    check_int(who, "exaggeration_iter", exaggeration_iter, 0)
    check_positive(who, "early_exaggeration", early_exaggeration)
    n = x.shape[0]
    if learning_rate is None:
        learning_rate = max(n / early_exaggeration / 4.0, 50.0)
    check_positive(who, "learning_rate", learning_rate)
    loss_fn = tsne(perplexity)
    with torch.no_grad():
        log_p = loss_fn.log_p(x)                    # (1, n*n) joint P, computed once
        p = log_p.exp().reshape(n, n)               # zero on the diagonal
    q: Joint = loss_fn.q
    if isinstance(init, Tensor):
        if init.shape != (n, n_components):
            raise fail(who, "init", f"have shape ({n}, {n_components})", init)
        y0 = init.detach().to(x.dtype).clone()
    elif init == "pca":
        y0 = _pca_init(x, n_components)
    elif init == "random":
        gen = torch.Generator().manual_seed(random_state)
        y0 = 1e-4 * torch.randn(n, n_components, generator=gen, dtype=x.dtype)
    else:
        raise fail(who, "init", "be 'pca', 'random' or an (n, n_components) tensor", init)

    y = y0.clone().requires_grad_(True)
    update = torch.zeros_like(y0)
    gains = torch.ones_like(y0)
    for step in range(n_iter):
        exaggeration = early_exaggeration if step < exaggeration_iter else 1.0
        momentum = 0.5 if step < exaggeration_iter else 0.8
        logits = q.base.logits(y)                   # log w_ij, finite everywhere
        # exaggerated objective: -a sum P log w + log Z; at a = 1 it is KL(P || Q) + const.
        # P_ii = 0, so the unmasked diagonal of log w does not enter the attraction.
        attraction = -(p * logits).sum()
        log_z = torch.logsumexp(mask_diagonal(logits).reshape(-1), dim=0)
        loss = exaggeration * attraction + log_z
        (grad,) = torch.autograd.grad(loss, y)
        with torch.no_grad():
            same_sign = (update * grad) > 0
            gains = torch.where(same_sign, gains * 0.8, gains + 0.2).clamp_min(0.01)
            update = momentum * update - learning_rate * gains * grad
            y += update
    with torch.no_grad():
        kl_at_end = float(kl(log_p, q(y)).sum())   # the true KL(P || Q) at the final embedding
    return y.detach(), kl_at_end
