"""Contrastive training: minimise an I-Con loss over augmented views of unlabelled images.

Each step draws a batch of items ``i``, makes ``n_views`` augmented views of each
(:func:`icontorch.views.multiview_batch`), embeds them and minimises
``L = (1/n) sum_i D( p(.|i) || q(.|i) )`` with ``p`` given by the view ids (``PositivePairs``,
optionally ``mix_uniform``-ed: alpha-debiasing, the paper's Sec. 3.3.2) and ``q`` a kernel on
the embeddings. Any callable ``loss_fn(z, target) -> scalar`` works, so the baselines that are
not I-Con losses (``methods.debiased_contrastive``) train with the same loop.

The loop is deterministic given ``random_state``: the shuffling and the augmentations of epoch
``e`` come from a generator seeded with ``(random_state, e)`` alone, so a run resumed from the
checkpoint of epoch ``e`` reproduces the uninterrupted run bit for bit on the CPU; on CUDA, whose
scatter and convolution kernels add in no fixed order, as closely as a second uninterrupted run does.
"""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

import torch
from torch import Tensor, nn

from ._validation import (
    IConError,
    check_choice,
    check_device,
    check_flag,
    check_int,
    check_nonnegative,
    check_positive,
    check_random_state,
    fail,
)
from .views import Augment, check_augment, stack_views

__all__ = ["train_contrastive", "epoch_generator"]

PathLike = Union[str, "os.PathLike[str]"]
_FORMAT = 2  # checkpoint layout version (1: settings "lr" and "seed", no schedule)
_SCHEDULES = ("cosine", "constant")  # the values of learning_rate_schedule
_WHO = "train_contrastive"
_KEYS = ("format", "settings", "epoch", "history", "model", "optimizer", "schedule")  # what _save writes


def epoch_generator(random_state: int, epoch: int, device: Union[str, torch.device] = "cpu") -> torch.Generator:
    """The generator of epoch ``epoch``: seeded from ``(random_state, epoch)`` alone (epochs can be replayed)."""
    generator = torch.Generator(device=device)
    generator.manual_seed((int(random_state) * 1_000_003 + int(epoch)) % (2 ** 63))
    return generator


@dataclasses.dataclass(frozen=True)
class _Settings:
    """What a run is made of; a checkpoint is resumed only under the same settings."""

    epochs: int
    batch_size: int
    n_views: int
    learning_rate: float
    weight_decay: float
    learning_rate_schedule: str
    random_state: int


def _check_parts(model: object, loss_fn: object, augment: object) -> None:
    if not isinstance(model, nn.Module):
        raise fail(_WHO, "model", "be a torch.nn.Module", model)
    if not any(parameter.requires_grad for parameter in model.parameters()):
        raise fail(_WHO, "model", "have trainable parameters (some with requires_grad=True)", model)
    if not callable(loss_fn):
        raise fail(_WHO, "loss_fn", "be callable as loss_fn(z, target)", loss_fn)
    if getattr(loss_fn, "reduction", None) == "none":        # an ICon (or torch loss) giving one value per row
        raise fail(_WHO, "loss_fn", "return a scalar loss (build it with reduction='mean' or 'sum', "
                   "not 'none')", loss_fn)
    check_augment(_WHO, "augment", augment)


def _embed(model: nn.Module, views: Tensor, epoch: int, step: int) -> Tensor:
    """``model(views)``, checked: a finite (B, d) tensor with one row per view."""
    try:
        z = model(views)
    except torch.cuda.OutOfMemoryError:
        raise
    except RuntimeError as error:                 # shapes or dtypes the model cannot take
        raise IConError(f"{_WHO}: model must map views of shape {tuple(views.shape)} to (B, d) embeddings; it "
                        f"raised RuntimeError: {str(error).splitlines()[0]}") from error
    if not isinstance(z, Tensor) or z.dim() != 2 or z.shape[0] != views.shape[0]:
        raise fail(_WHO, "model", f"map the {views.shape[0]} views to a ({views.shape[0]}, d) tensor of embeddings",
                   z if isinstance(z, Tensor) else type(z).__name__)
    if not bool(torch.isfinite(z).all()):
        raise IConError(f"{_WHO}: the model's embeddings became non-finite at epoch {epoch + 1}, step {step + 1} "
                        f"(training diverged: lower learning_rate; or the model gives NaN or Inf itself).")
    return z


def _check_loss(loss: Any, epoch: int, step: int) -> Tensor:
    """The value of ``loss_fn``: a finite one-element tensor that backpropagates to the model."""
    if not isinstance(loss, Tensor) or loss.numel() != 1:
        raise fail(_WHO, "loss_fn", "return a scalar tensor (a loss with reduction='none' gives one value "
                   "per view: use 'mean')", loss)
    if not loss.requires_grad:
        raise fail(_WHO, "loss_fn", "return a loss computed from the model's output z (it does not "
                   "require grad)", loss)
    if not bool(torch.isfinite(loss)):
        raise IConError(f"{_WHO}: the loss became {loss.item()} at epoch {epoch + 1}, step {step + 1} "
                        f"(the loss diverged; lower learning_rate or change the loss).")
    return loss


def _call_loss(loss_fn: Callable[[Tensor, Tensor], Tensor], z: Tensor, target: Tensor) -> Any:
    """``loss_fn(z, target)``; a refusal names what train_contrastive passes as ``target``."""
    try:
        return loss_fn(z, target)
    except IConError as error:
        raise IConError(f"{_WHO}: loss_fn must accept, as target, the integer item id of each view (shape "
                        f"{tuple(target.shape)}, views of one image share an id: a p such as PositivePairs or "
                        f"SameLabel); it refused them: {error}") from None


def _check_images(images: object) -> Tensor:
    if not isinstance(images, Tensor) or images.dim() != 4 or not images.is_floating_point():
        raise fail(_WHO, "images", "be a floating tensor of shape (N, C, H, W)", images)
    if not bool(torch.isfinite(images).all()):
        raise fail(_WHO, "images", "be finite (no NaN or Inf)", images)
    if images.shape[0] < 2:
        raise fail(_WHO, "images", "hold at least 2 images", images)
    return images


def _check_settings(n_items: int, epochs: int, batch_size: int, n_views: int, learning_rate: float,
                    weight_decay: float, learning_rate_schedule: str, random_state: int) -> _Settings:
    epochs = check_int(_WHO, "epochs", epochs, 1)
    if check_int(_WHO, "batch_size", batch_size, 1) < 2:
        raise fail(_WHO, "batch_size", "be an integer >= 2 (with 1 item per batch every other view is a "
                   "positive: there are no negatives and the loss is 0)", batch_size)
    n_views = check_int(_WHO, "n_views", n_views, 2)
    learning_rate = check_positive(_WHO, "learning_rate", learning_rate)
    weight_decay = check_nonnegative(_WHO, "weight_decay", weight_decay)
    check_choice(_WHO, "learning_rate_schedule", learning_rate_schedule, _SCHEDULES)
    random_state = check_random_state(_WHO, random_state)
    return _Settings(int(epochs), min(int(batch_size), n_items), int(n_views), float(learning_rate),
                     float(weight_decay), learning_rate_schedule, int(random_state))


def _optimizer(model: nn.Module, settings: _Settings, total_steps: int
               ) -> Tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW and its schedule: ``lr(step) = lr (1 + cos(pi step / total)) / 2`` or constant."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate,
                                  weight_decay=settings.weight_decay)
    cosine = settings.learning_rate_schedule == "cosine"
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: 0.5 * (1.0 + math.cos(math.pi * min(step, total_steps) / total_steps))
        if cosine else 1.0)
    return optimizer, schedule


def _check_checkpoint(checkpoint: Optional[PathLike], resume: bool) -> Optional[Path]:
    """The checkpoint path, in an existing folder where a file can be written (checked before training)."""
    if check_flag(_WHO, "resume", resume) and checkpoint is None:
        raise fail(_WHO, "resume", "come with a checkpoint path", resume)
    if checkpoint is None:
        return None
    if not isinstance(checkpoint, (str, os.PathLike)) or not str(checkpoint):
        raise fail(_WHO, "checkpoint", "be None or a file path (str or os.PathLike)", checkpoint)
    path = Path(checkpoint)
    if path.is_dir():
        raise fail(_WHO, "checkpoint", "name a file, not a folder", str(path))
    if not path.parent.is_dir():
        raise fail(_WHO, "checkpoint", f"be in an existing folder ({str(path.parent)!r} is not one)", str(path))
    probe = _temporary(path)
    try:
        probe.open("xb").close()
    except OSError as error:
        raise fail(_WHO, "checkpoint", f"be in a folder where files can be written ({error.strerror})",
                   str(path)) from None
    probe.unlink()
    return path


def _temporary(path: Path) -> Path:
    """A fresh name next to ``path`` (same folder, so that ``os.replace`` is a rename)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")


def _not_a_checkpoint(path: Path, why: str) -> IConError:
    return IConError(f"{_WHO}: checkpoint must be a file written by train_contrastive to be resumed; got "
                     f"{str(path)!r}, which {why}. Delete it or pass another path to start a new run.")


def _read(path: Path, device: torch.device) -> Dict[str, Any]:
    """The checkpoint's dictionary; a corrupt, truncated or foreign file raises :class:`IConError`."""
    try:
        state = torch.load(path, map_location=device, weights_only=True)
    except OSError:
        raise
    except Exception as error:                # UnpicklingError, EOFError, RuntimeError, ...: not ours
        raise _not_a_checkpoint(path, f"cannot be read as one ({type(error).__name__})") from None
    if not isinstance(state, dict):
        raise _not_a_checkpoint(path, f"holds a {type(state).__name__}, not a dictionary")
    return state


def _restore(path: Path, device: torch.device, settings: _Settings, model: nn.Module,
             optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LambdaLR
             ) -> Tuple[List[float], int]:
    """Load the checkpoint into the model, optimiser and schedule; the losses so far and the next epoch.

    The model is left as it was when the checkpoint does not fit it."""
    state = _read(path, device)
    wanted = dataclasses.asdict(settings)
    if state.get("format") != _FORMAT:
        raise IConError(f"{_WHO}: checkpoint must be in this version's format {_FORMAT} (settings "
                        f"{sorted(wanted)}) to be resumed; got {str(path)!r} in format {state.get('format')} "
                        f"(settings {sorted(state.get('settings') or {})}). Start a new run.")
    missing = [key for key in _KEYS if key not in state]
    if missing:
        raise _not_a_checkpoint(path, f"lacks {missing}")
    if state["settings"] != wanted:
        raise IConError(f"{_WHO}: the checkpoint {str(path)!r} was written with other settings "
                        f"({state['settings']}); got {wanted}.")
    before = {name: value.detach().clone() for name, value in model.state_dict().items()}
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        history, epoch = [float(value) for value in state["history"]], int(state["epoch"])
    except (RuntimeError, ValueError, KeyError, TypeError) as error:
        model.load_state_dict(before)
        raise IConError(f"{_WHO}: checkpoint {str(path)!r} does not fit this model and run "
                        f"({type(error).__name__}: {str(error).splitlines()[0]}). Start a new run.") from None
    return history, epoch


def _save(path: Path, settings: _Settings, epoch: int, history: List[float], model: nn.Module,
          optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LambdaLR) -> None:
    """The checkpoint after ``epoch`` epochs: what :func:`_restore` reads back.

    Written to a new file in the same folder, flushed to disk, then renamed over ``path``
    (``os.replace``): a write that fails or is interrupted leaves the previous checkpoint intact."""
    state: Dict[str, object] = {
        "format": _FORMAT, "settings": dataclasses.asdict(settings), "epoch": epoch, "history": history,
        "model": model.state_dict(), "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict()}
    write_state(path, state)


def write_state(path: Path, state: Dict[str, Any]) -> None:
    """``torch.save(state)`` to a new file beside ``path``, flushed to disk, then renamed over
    ``path``: a write that fails or is interrupted leaves the previous file intact."""
    tmp = _temporary(path)
    try:
        with tmp.open("xb") as file:
            torch.save(state, file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _run_epoch(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], images: Tensor, augment: Augment,
               settings: _Settings, epoch: int, optimizer: torch.optim.Optimizer,
               schedule: torch.optim.lr_scheduler.LambdaLR, verbose: bool) -> float:
    """One pass over the shuffled items; the mean loss of its steps."""
    n_items, batch_size = images.shape[0], settings.batch_size
    steps_per_epoch = max(1, n_items // batch_size)
    generator = epoch_generator(settings.random_state, epoch, images.device)
    order = torch.randperm(n_items, generator=generator, device=images.device)
    steps = range(steps_per_epoch)
    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(steps, desc=f"epoch {epoch + 1}/{settings.epochs}", leave=False)
        steps = bar
    total = 0.0
    for step in steps:
        index = order[step * batch_size:(step + 1) * batch_size]
        views, target = stack_views(images[index], index, augment, settings.n_views, generator, _WHO, "images")
        loss = _check_loss(_call_loss(loss_fn, _embed(model, views, epoch, step), target), epoch, step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += loss.item()
        if bar is not None:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    return total / steps_per_epoch


def train_contrastive(model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor], images: Tensor,
                      augment: Augment, *, epochs: int = 10, batch_size: int = 256, n_views: int = 2,
                      learning_rate: float = 1e-3, weight_decay: float = 1e-5,
                      learning_rate_schedule: str = "cosine", random_state: int = 0,
                      device: Union[str, torch.device] = "cpu", checkpoint: Optional[PathLike] = None,
                      resume: bool = False, verbose: bool = False) -> List[float]:
    """Train ``model`` so that ``loss_fn(model(views), ids)`` falls; returns the mean loss of each epoch.

    ``L = (1/n) sum_i D(p(.|i) || q(.|i))`` over the ``n = n_views * batch_size`` views of a batch,
    ``target`` holding each view's item id (the vector :class:`~icontorch.PositivePairs` expects).
    The optimiser is AdamW (the paper's Appendix A setup: learning rate 1e-3, weight decay 1e-5),
    with ``lr(step) = learning_rate (1 + cos(pi step / total_steps)) / 2`` for the ``"cosine"``
    schedule.

    Args:
        model: maps (B, C, H, W) images to (B, d) embeddings; trained in place.
        loss_fn: ``loss_fn(z, target) -> scalar`` (not ``reduction="none"``), e.g.
            ``ICon(p=mix_uniform(PositivePairs(), 0.4), q=StudentT(2.0))`` or ``methods.simclr(0.5)``.
        images: (N, C, H, W) floating tensor of training images (no labels needed).
        augment: ``augment(x, generator) -> x'`` on a batch, same shape out, called with the
            epoch's ``torch.Generator``, e.g. :func:`icontorch.augment.default_augmentation`.
        epochs: passes over the data.
        batch_size: items per step (each gives ``n_views`` views), at least 2 (one item has no
            negatives); the last smaller batch is dropped when there is more than one batch, as
            contrastive losses want full batches.
        n_views: augmented views per item, at least 2.
        learning_rate: peak learning rate of AdamW.
        weight_decay: AdamW's decoupled weight decay.
        learning_rate_schedule: ``"cosine"`` (anneal to 0 along a cosine over all steps) or
            ``"constant"``.
        random_state: seeds the shuffling and the augmentations (the model's initial weights are
            the caller's: seed ``torch.manual_seed`` before building it).
        device: where to train; the model and the images are moved there.
        checkpoint: a file written after every epoch (model, optimiser, schedule, losses, settings),
            in an existing writable folder (checked before training). Each write goes to a new
            file renamed over the old one, so a failed write leaves the previous checkpoint intact.
        resume: continue from ``checkpoint`` if it exists; the settings must match the saved ones.
        verbose: a tqdm bar over the steps of each epoch, showing the loss.

    Returns:
        The mean training loss of every epoch, those restored from the checkpoint included. The
        model is left in eval mode.
    """
    _check_parts(model, loss_fn, augment)
    images = _check_images(images)
    settings = _check_settings(images.shape[0], epochs, batch_size, n_views, learning_rate, weight_decay,
                               learning_rate_schedule, random_state)
    path = _check_checkpoint(checkpoint, resume)
    device = check_device(_WHO, "device", device)
    model.to(device)
    images = images.to(device)
    total_steps = settings.epochs * max(1, images.shape[0] // settings.batch_size)
    optimizer, schedule = _optimizer(model, settings, total_steps)
    history: List[float] = []
    start = 0
    if resume and path is not None and path.exists():
        history, start = _restore(path, device, settings, model, optimizer, schedule)

    model.train()
    for epoch in range(start, settings.epochs):
        history.append(_run_epoch(model, loss_fn, images, augment, settings, epoch, optimizer, schedule, verbose))
        if path is not None:
            _save(path, settings, epoch + 1, history, model, optimizer, schedule)
    model.eval()
    return history
