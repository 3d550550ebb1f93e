"""Contrastive training: minimise an I-Con loss over augmented views of unlabelled images.

Each step draws a batch of items ``i``, makes ``n_views`` augmented views of each
(:func:`icontorch.views.multiview_batch`), embeds them and minimises
``L = (1/n) sum_i D( p(.|i) || q(.|i) )`` with ``p`` given by the view ids (``PositivePairs``,
optionally ``mix_uniform``-ed: alpha-debiasing, section 3.3.2 of the paper) and ``q`` a kernel on
the embeddings. Any callable ``loss_fn(z, target) -> scalar`` works, so the baselines that are
not I-Con losses (``methods.debiased_contrastive``) train with the same loop.

The loop is deterministic given ``seed``: the shuffling and the augmentations of epoch ``e``
come from a generator seeded with ``(seed, e)`` alone, so a run resumed from the checkpoint of
epoch ``e`` reproduces the uninterrupted run bit for bit (on the same device).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Dict, List, Optional, Union

import torch
from torch import Tensor, nn

from ._validation import IConError, check_int, check_positive, fail
from .views import multiview_batch

__all__ = ["train_contrastive", "epoch_generator"]

PathLike = Union[str, "os.PathLike[str]"]
_FORMAT = 1  # checkpoint layout version


def epoch_generator(seed: int, epoch: int, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """The generator of epoch ``epoch``: seeded from ``(seed, epoch)`` alone, so epochs can be replayed."""
    generator = torch.Generator(device=device)
    generator.manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2 ** 63))
    return generator


def _check_images(images: object) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise fail("train_contrastive", "images", "be a floating tensor of shape (N, C, H, W)", images)
    if not bool(torch.isfinite(images).all()):
        raise fail("train_contrastive", "images", "be finite (no NaN or Inf)", images)
    return images


def _settings(epochs: int, batch_size: int, n_views: int, lr: float, weight_decay: float,
              seed: int) -> Dict[str, float]:
    return {"epochs": epochs, "batch_size": batch_size, "n_views": n_views, "lr": lr,
            "weight_decay": weight_decay, "seed": seed}


def _save(path: Path, state: Dict[str, object]) -> None:
    # Write then rename, so an interruption while saving never leaves a broken checkpoint.
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def train_contrastive(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], images: Tensor,
                      augment: Callable[..., Tensor], *, epochs: int = 10, batch_size: int = 256,
                      n_views: int = 2, lr: float = 1e-3, weight_decay: float = 1e-5,
                      cosine_schedule: bool = True, seed: int = 0,
                      device: Union[str, torch.device] = "cpu", checkpoint: Optional[PathLike] = None,
                      resume: bool = False, verbose: bool = False) -> List[float]:
    """Train ``model`` so that ``loss_fn(model(views), ids)`` falls; returns the mean loss of each epoch.

    ``L = (1/n) sum_i D(p(.|i) || q(.|i))`` over the ``n = n_views * batch_size`` views of a batch,
    ``target`` holding each view's item id (the vector :class:`~icontorch.PositivePairs` expects).
    The optimiser is AdamW (the paper's Appendix A setup: lr 1e-3, weight decay 1e-5), with the
    learning rate annealed to 0 along a cosine over all steps when ``cosine_schedule``.

    Args:
        model: maps (B, C, H, W) images to (B, d) embeddings; trained in place.
        loss_fn: ``loss_fn(z, target) -> scalar``, e.g. ``ICon(p=mix_uniform(PositivePairs(), 0.4),
            q=StudentT(2.0))`` or ``methods.simclr(0.5)``.
        images: (N, C, H, W) floating tensor of training images (no labels needed).
        augment: ``augment(x, generator) -> x'`` on a batch, e.g. :func:`icontorch.augment.default_augmentation`.
        epochs: passes over the data.
        batch_size: items per step (each gives ``n_views`` views); the last smaller batch is dropped
            when there is more than one batch, as contrastive losses want full batches.
        n_views: augmented views per item, at least 2.
        lr: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        cosine_schedule: anneal the learning rate to 0 along a cosine over all steps.
        seed: seeds the shuffling and the augmentations (the model's initial weights are the
            caller's: seed ``torch.manual_seed`` before building it).
        device: where to train; the model and the images are moved there.
        checkpoint: a file written after every epoch (model, optimiser, schedule, losses, settings).
        resume: continue from ``checkpoint`` if it exists; the settings must match the saved ones.
        verbose: a tqdm bar over the steps of each epoch, showing the loss.

    Returns:
        The mean training loss of every epoch, those restored from the checkpoint included. The
        model is left in eval mode.
    """
    who = "train_contrastive"
    if not isinstance(model, nn.Module):
        raise fail(who, "model", "be a torch.nn.Module", model)
    if not callable(loss_fn):
        raise fail(who, "loss_fn", "be callable as loss_fn(z, target)", loss_fn)
    if not callable(augment):
        raise fail(who, "augment", "be callable as augment(x, generator)", augment)
    images = _check_images(images)
    epochs = check_int(who, "epochs", epochs, 1)
    batch_size = check_int(who, "batch_size", batch_size, 1)
    n_views = check_int(who, "n_views", n_views, 2)
    lr = check_positive(who, "lr", lr)
    if isinstance(weight_decay, bool) or not isinstance(weight_decay, (int, float)) or not (
            math.isfinite(weight_decay) and weight_decay >= 0):
        raise fail(who, "weight_decay", "be a finite number >= 0", weight_decay)
    seed = check_int(who, "seed", seed, 0)
    if resume and checkpoint is None:
        raise fail(who, "resume", "come with a checkpoint path", resume)
    n_items = images.shape[0]
    if n_items < 2:
        raise fail(who, "images", "hold at least 2 images", images)
    batch_size = min(batch_size, n_items)
    steps_per_epoch = max(1, n_items // batch_size)

    device = torch.device(device)
    model.to(device)
    images = images.to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=float(weight_decay))
    total_steps = epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if cosine_schedule else 1.0)
    settings = _settings(epochs, batch_size, n_views, lr, float(weight_decay), seed)
    history: List[float] = []
    start = 0
    path = None if checkpoint is None else Path(checkpoint)
    if resume and path is not None and path.exists():
        state = torch.load(path, map_location=device, weights_only=True)
        if state.get("format") != _FORMAT or state.get("settings") != settings:
            raise IConError(f"{who}: the checkpoint {str(path)!r} was written with other settings "
                            f"({state.get('settings')}); got {settings}.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history = list(state["history"])
        start = int(state["epoch"])

    model.train()
    for epoch in range(start, epochs):
        generator = epoch_generator(seed, epoch, device)
        order = torch.randperm(n_items, generator=generator, device=device)
        steps = range(steps_per_epoch)
        bar = None
        if verbose:
            from tqdm.auto import tqdm

            bar = tqdm(steps, desc=f"epoch {epoch + 1}/{epochs}", leave=False)
            steps = bar
        total = 0.0
        for step in steps:
            index = order[step * batch_size:(step + 1) * batch_size]
            views, target = multiview_batch(images[index], index, augment, n_views, generator)
            loss = loss_fn(model(views), target)
            if not bool(torch.isfinite(loss)):
                raise IConError(f"{who}: the loss became {loss.item()} at epoch {epoch + 1}, step "
                                f"{step + 1} (the loss diverged; lower lr or change the loss).")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item()
            if bar is not None:
                bar.set_postfix(loss=f"{loss.item():.4f}")
        history.append(total / steps_per_epoch)
        if path is not None:
            _save(path, {"format": _FORMAT, "settings": settings, "epoch": epoch + 1,
                         "history": history, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()})
    model.eval()
    return history
