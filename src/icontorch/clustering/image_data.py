"""Images in, tensors out: the input checks of :class:`~icontorch.clustering.images.ImageClustering`,
the Sobel pre-processing of IIC and the encoding of clean and augmented images in batches.

Images are (N, C, H, W) or (N, H, W) (one channel). Integer images (``uint8`` and other integer
dtypes) are read as 0-255 grey levels and divided by 255; floating images are used as they are.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._validation import IConError, fail

__all__ = ["as_images", "Sobel", "encode_images", "encode_views"]

_FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def as_images(X: Any, who: str, name: str, device: torch.device) -> Tensor:
    """``X`` as a finite float32 (N, C, H, W) tensor on ``device`` (the encoders compute in float32).

    (N, H, W) gains a channel axis; integer images (0-255) are divided by 255. Anything else (a
    rank other than 3 or 4, an empty axis, complex or non-numeric values, NaN or Inf) raises
    :class:`IConError` naming ``name``.
    """
    if isinstance(X, Tensor):
        t = X.detach()
    else:
        if hasattr(X, "toarray") and hasattr(X, "nnz"):
            raise fail(who, name, "be a dense array of images (N, C, H, W) or (N, H, W)", type(X).__name__)
        try:
            a = np.asarray(X)
        except (TypeError, ValueError):
            raise fail(who, name, "be an array of images (N, C, H, W) or (N, H, W)", type(X).__name__) from None
        if a.dtype.kind not in "biuf":
            raise fail(who, name, "hold real numbers (integers 0-255 or floats)", f"an array of dtype {a.dtype}")
        if a.dtype.kind == "b":
            a = a.astype(np.float32)
        t = torch.from_numpy(np.ascontiguousarray(a))
    if t.is_complex() or t.dtype == torch.bool:
        raise fail(who, name, "hold real numbers (integers 0-255 or floats)", t)
    if t.dim() == 3:
        t = t.unsqueeze(1)
    if t.dim() != 4 or t.numel() == 0:
        raise fail(who, name, "be a non-empty array of images of shape (N, C, H, W) or (N, H, W)",
                   f"an array of shape {tuple(t.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32) / 255.0
    if not bool(torch.isfinite(t).all()):
        bad = "NaN" if bool(torch.isnan(t).any()) else "Inf"
        raise fail(who, name, "hold finite pixel values", f"an array of shape {tuple(t.shape)} containing {bad}")
    if float(t.abs().max()) > _FLOAT32_MAX:
        raise fail(who, name, f"have magnitudes below {_FLOAT32_MAX:.3g} (float32)", f"values up to "
                   f"{float(t.abs().max()):.3g}")
    return t.to(device=device, dtype=torch.float32).contiguous()


class Sobel(nn.Module):
    """``[d/dx g, d/dy g]`` of the grey image ``g = mean_c x_c``: IIC's pre-processing (Ji et al. 2019),
    which removes colour so that the clusters cannot form on it. (B, C, H, W) -> (B, 2, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]])
        self.register_buffer("kernel", torch.stack([gx, gx.T]).unsqueeze(1), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        grey = x.mean(1, keepdim=True)
        return F.conv2d(grey, self.kernel.to(grey.dtype), padding=1)


def _batches(n: int, batch_size: int):
    return ((start, min(start + batch_size, n)) for start in range(0, n, batch_size))


@torch.no_grad()
def encode_images(encode: Callable[[Tensor], Tensor], images: Tensor, batch_size: int = 1024) -> Tensor:
    """(N, d) ``encode(images)`` in batches, without gradients."""
    return torch.cat([encode(images[a:b]) for a, b in _batches(images.shape[0], batch_size)])


@torch.no_grad()
def encode_views(encode: Callable[[Tensor], Tensor], images: Tensor, augment: Callable, n_views: int,
                 generator: Optional[torch.Generator], batch_size: int = 1024) -> Tensor:
    """(N, n_views, d) features of ``n_views`` augmented copies of every image (``augment(x, generator)``
    drawn afresh for each copy, in batches): the cached views of ``Clustering.fit(X, views=V)``."""
    out = []
    for a, b in _batches(images.shape[0], batch_size):
        chunk = images[a:b]
        views = augment(chunk.repeat(n_views, 1, 1, 1), generator)
        if not isinstance(views, Tensor) or views.shape != (n_views * chunk.shape[0],) + tuple(chunk.shape[1:]):
            raise IConError(f"ImageClustering: augment(x) must return a tensor of the input's shape "
                            f"{(n_views * chunk.shape[0],) + tuple(chunk.shape[1:])}; got "
                            f"{getattr(views, 'shape', type(views).__name__)}.")
        z = encode(views)
        out.append(z.reshape(n_views, chunk.shape[0], -1).transpose(0, 1))
    return torch.cat(out)
