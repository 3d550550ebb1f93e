"""Multi-view batches for contrastive learning: the input side of SimCLR's p (Thm 3).

``PositivePairs`` makes ``p(j|i)`` uniform over the other views of the item that view i came
from; it reads that item from ``target``. Both helpers here stack the views as
``[view_1 of all B items; view_2 of all B; ...]`` with ``target = index.repeat(n_views)``, so

>>> views, target = multiview_batch(x, index, augment)           # doctest: +SKIP
>>> loss = ICon(p=PositivePairs(), q=Gaussian(0.5, metric="cosine"))(model(views), target)  # doctest: +SKIP

* :func:`multiview_batch` augments a batch that is already in memory (one batched call of
  ``augment`` on the ``n_views * B`` copies: fastest on one process).
* :class:`MultiViewDataset` with :func:`collate_views` does the same per item inside a
  ``DataLoader`` (workers, shuffling), reproducibly for a given ``(random_state, epoch, item)``.

``augment`` is always called as ``augment(x, generator)``: a (B, C, H, W) batch in, the same shape
out, ``generator`` a ``torch.Generator`` or None (every :mod:`icontorch.augment` transform).
"""

from __future__ import annotations

import inspect
from typing import Any, Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ._validation import check_index, check_int, check_random_state, fail, is_integer
from .augment import check_images

__all__ = ["multiview_batch", "MultiViewDataset", "collate_views", "Augment", "check_augment"]

#: ``augment(x, generator) -> x'``: a batch in, the same shape out; ``generator`` may be None.
Augment = Callable[[Tensor, Optional[torch.Generator]], Tensor]


def check_augment(who: str, name: str, augment: Any) -> Augment:
    """``augment``: a callable that takes ``(x, generator)`` (checked on its signature when it has one)."""
    rule = "be a callable augment(x, generator) -> x"
    if not callable(augment):
        raise fail(who, name, rule, augment)
    try:
        signature = inspect.signature(augment)
    except (TypeError, ValueError):          # no signature to read (some builtins): called as it is
        return augment
    try:
        signature.bind(None, None)
    except TypeError:
        raise fail(who, name, rule + " (it must accept two arguments)", augment) from None
    return augment


def _apply(augment: Augment, x: Tensor, generator: Optional[torch.Generator], who: str, name: str,
           source: Optional[Tensor] = None) -> Tensor:
    """``augment(x, generator)``, checked: a finite tensor of x's shape, dtype and device. A non-finite
    ``x`` is reported as the caller's argument ``name`` (``source``: the tensor it passed, if not x)."""
    out = augment(x, generator)
    if not isinstance(out, Tensor) or out.shape != x.shape:
        raise fail(who, "augment(x)", f"return a tensor of the input's shape {tuple(x.shape)}",
                   out if isinstance(out, Tensor) else type(out).__name__)
    if out.dtype != x.dtype or out.device != x.device:
        raise fail(who, "augment(x)", f"return a tensor of the input's dtype {x.dtype} on {x.device}", out)
    if not bool(torch.isfinite(out).all()):
        if not bool(torch.isfinite(x).all()):
            raise fail(who, name, "be finite (no NaN or Inf)", x if source is None else source)
        raise fail(who, "augment(x)", "return finite values (no NaN or Inf)", out)
    return out


def multiview_batch(x: Tensor, index: Tensor, augment: Augment, n_views: int = 2,
                    generator: Optional[torch.Generator] = None) -> Tuple[Tensor, Tensor]:
    """``n_views`` augmented copies of every image, stacked view-major, and their item ids.

    ``views[v * B + b] = augment(x)[b]`` drawn afresh for each v, ``target[v * B + b] = index[b]``:
    the layout ``icontorch.PositivePairs`` (and ``icontorch.methods.simclr``) expects.

    Args:
        x: (B, C, H, W) floating images.
        index: (B,) integer item ids (positions in the data set, or ``torch.arange(B)``).
        augment: ``augment(x, generator) -> x`` with independent draws per sample (any
            :mod:`icontorch.augment` transform); called once on the (n_views * B) stacked copies.
        n_views: views per item, >= 2.
        generator: the random stream of ``augment``, passed to it as given (None: the augment's
            default, torch's global stream for :mod:`icontorch.augment`).

    Returns:
        ``views`` of shape (n_views * B, C, H, W) and ``target`` of shape (n_views * B,).
    """
    who = "multiview_batch"
    check_images(who, "x", x)
    check_index(who, "index", index)
    if index.shape[0] != x.shape[0]:
        raise fail(who, "index", f"hold one id per image (length B = {x.shape[0]})", index)
    check_augment(who, "augment", augment)
    check_int(who, "n_views", n_views, 2)
    return stack_views(x, index, augment, n_views, generator, who, "x")


def stack_views(x: Tensor, index: Tensor, augment: Augment, n_views: int, generator: Optional[torch.Generator],
                who: str, name: str) -> Tuple[Tensor, Tensor]:
    """:func:`multiview_batch` without its argument checks, for callers that made them (errors name
    ``who`` and, for non-finite images, ``name``)."""
    views = _apply(augment, x.repeat(n_views, 1, 1, 1), generator, who, name, source=x)
    return views, index.repeat(n_views)


class MultiViewDataset(Dataset):
    """Item i gives ``(augment applied n_views times to images[i], i)``; views of shape (n_views, C, H, W).

    The draws of item i come from a generator seeded by ``(random_state, epoch, i)`` (numpy's
    ``SeedSequence``), so an epoch is the same whatever the worker count or the order of access,
    and :meth:`set_epoch` gives the next epoch new views. Use :func:`collate_views` as the
    ``DataLoader``'s ``collate_fn`` to get :func:`multiview_batch`'s layout.

    Args:
        images: (N, C, H, W) floating images.
        augment: ``augment(x, generator) -> x`` on a batch.
        n_views: views per item, >= 2.
        random_state: non-negative integer seed.
    """

    def __init__(self, images: Tensor, augment: Augment, n_views: int = 2, random_state: int = 0) -> None:
        who = "MultiViewDataset"
        check_images(who, "images", images)
        check_augment(who, "augment", augment)
        self.images = images
        self.augment = augment
        self.n_views = int(check_int(who, "n_views", n_views, 2))
        self.random_state = check_random_state(who, random_state)
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose views ``__getitem__`` returns (call it before each epoch)."""
        self.epoch = int(check_int("MultiViewDataset", "epoch", epoch, 0))

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> Tuple[Tensor, int]:
        n = len(self)
        if isinstance(i, Tensor) and i.numel() == 1:
            i = int(i.item())
        if not is_integer(i) or not -n <= i < n:
            raise fail("MultiViewDataset", "i", f"be an integer item index in [0, {n})", i)
        i = int(i) % n
        state = np.random.SeedSequence([self.random_state, self.epoch, i]).generate_state(2, dtype=np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 32 | int(state[1]))
        x = self.images[i:i + 1].repeat(self.n_views, 1, 1, 1)
        return _apply(self.augment, x, generator, "MultiViewDataset", "images"), i

    def __repr__(self) -> str:
        return (f"MultiViewDataset(images=<{tuple(self.images.shape)}>, augment={self.augment!r}, "
                f"n_views={self.n_views}, random_state={self.random_state})")


def collate_views(batch: Sequence[Tuple[Tensor, Any]]) -> Tuple[Tensor, Tensor]:
    """``DataLoader`` collate for :class:`MultiViewDataset`: view-major ``(views, target)``.

    From B items ``(v_b, i_b)`` with ``v_b`` of shape (V, C, H, W), returns ``views`` of shape
    (V * B, C, H, W) with ``views[v * B + b] = v_b[v]`` and ``target = tensor(i).repeat(V)``.
    """
    who = "collate_views"
    if not isinstance(batch, (list, tuple)) or len(batch) == 0:
        raise fail(who, "batch", "be a non-empty list of (views, index) pairs", batch)
    stacks: List[Tensor] = []
    ids: List[int] = []
    for item in batch:
        if not isinstance(item, (list, tuple)) or len(item) != 2 or not isinstance(item[0], Tensor):
            raise fail(who, "batch", "hold (views, index) pairs with views of shape (V, C, H, W)", item)
        views, i = item
        if isinstance(i, Tensor) and i.numel() == 1:
            i = i.item()
        if not is_integer(i):
            raise fail(who, "batch", "hold (views, index) pairs with an integer index", i)
        if views.dim() != 4 or (stacks and views.shape != stacks[0].shape):
            raise fail(who, "views", "have one common shape (V, C, H, W) across the batch", views)
        stacks.append(views)
        ids.append(int(i))
    stacked = torch.stack(stacks, dim=1)                                    # (V, B, C, H, W)
    n_views = stacked.shape[0]
    return stacked.reshape(-1, *stacked.shape[2:]), torch.tensor(ids, dtype=torch.long).repeat(n_views)
