"""The training loop of :class:`~icontorch.clustering.Clustering`: Adam on H heads, EMA, head selection."""

from __future__ import annotations

import copy
import math
from typing import TYPE_CHECKING, Optional

import numpy as np
import torch
from torch import Tensor

from .._validation import IConError
from .heads import ClusterHeads

if TYPE_CHECKING:  # pragma: no cover
    from .estimator import Clustering

__all__ = ["train_heads"]

_EVAL_BATCHES = 10           # fixed batches on which the heads' final losses are compared


def _learning_rate(est: "Clustering", epoch: int) -> float:
    if est.lr_schedule == "step":                     # the paper: halve every 10 of 30 epochs
        return est.lr * 0.5 ** (epoch // max(1, est.epochs // 3))
    if est.lr_schedule == "cosine":
        return est.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / est.epochs))
    return est.lr


def _anchor_batches(n: int, batch_size: int, generator: torch.Generator, device: torch.device) -> list:
    """A random permutation cut into batches; a last batch smaller than half the others joins the one
    before, so that no step sees a tiny batch (its cluster sizes n_c would be noise)."""
    order = torch.randperm(n, generator=generator, device=device)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and batches[-1].shape[0] < batch_size // 2:
        tail = batches.pop()
        batches[-1] = torch.cat([batches[-1], tail])
    return batches


def train_heads(est: "Clustering", x: Tensor, labels: Optional[Tensor], alpha_p: float, alpha_q: float,
                seed: int, device: torch.device) -> None:
    """Fit ``est``'s heads on ``x`` (n, d); sets ``head_``, ``loss_history_``, ``head_losses_``, ...

    Every step: a batch of anchors, their views and sampled neighbours; the (H,) losses of all
    heads are summed and minimised with Adam; the averaged heads follow with momentum ``ema``.
    At the end every averaged head is scored on the same ``_EVAL_BATCHES`` fixed batches and the
    lowest mean loss wins (labels are never used).
    """
    n = x.shape[0]
    init_generator = torch.Generator().manual_seed(seed)
    heads = ClusterHeads(est.n_heads, x.shape[1], est.n_clusters, est.head, est.hidden_dim,
                         init_generator).to(device=device, dtype=x.dtype)
    averaged = copy.deepcopy(heads)
    optimizer = torch.optim.Adam(heads.parameters(), lr=est.lr, weight_decay=est.weight_decay)
    generator = torch.Generator(device=device).manual_seed(seed + 1)
    est._prior = torch.full((est.n_heads, est.n_clusters), 1.0 / est.n_clusters, dtype=x.dtype, device=device)
    history = np.zeros((est.epochs, est.n_heads))
    epochs = range(est.epochs)
    if est.verbose:
        from tqdm.auto import tqdm

        epochs = tqdm(epochs, desc=f"Clustering ({est.method})", unit="epoch")
    steps = 0
    for epoch in epochs:
        for group in optimizer.param_groups:
            group["lr"] = _learning_rate(est, epoch)
        total = torch.zeros(est.n_heads, dtype=x.dtype, device=device)
        batches = _anchor_batches(n, est.batch_size, generator, device)
        for anchors in batches:
            src, z = est._batch(x, anchors, generator)
            teacher = None
            if est.method == "temi":
                with torch.no_grad():
                    teacher = averaged(z)
            losses = est._losses(heads(z), src, z, labels, alpha_p, alpha_q, teacher, update=True)
            if not bool(torch.isfinite(losses).all()):
                raise IConError(f"Clustering: the loss became non-finite at epoch {epoch} "
                                f"(lr={est.lr} may be too large); got {losses.tolist()}.")
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()
            optimizer.step()
            averaged.update_average(heads, est.ema)
            total += losses.detach()
            steps += 1
        history[epoch] = (total / len(batches)).cpu().numpy()
        if est.verbose:
            epochs.set_postfix(loss=float(history[epoch].min()))
    final = averaged if est.ema > 0 else heads
    eval_generator = torch.Generator(device=device).manual_seed(seed + 2)
    scores = torch.zeros(est.n_heads, dtype=x.dtype, device=device)
    with torch.no_grad():
        batch = min(n, est.batch_size)
        for _ in range(_EVAL_BATCHES):
            anchors = torch.randperm(n, generator=eval_generator, device=device)[:batch]
            src, z = est._batch(x, anchors, eval_generator)
            logits = final(z)
            scores += est._losses(logits, src, z, labels, alpha_p, alpha_q, logits, update=False)
    est.loss_history_ = history
    est.head_losses_ = (scores / _EVAL_BATCHES).cpu().numpy()
    est.best_head_ = int(np.argmin(est.head_losses_))
    est.head_ = final.select(est.best_head_)
    est.n_iter_ = steps
    del est._prior
