"""Photometric augmentations of :mod:`icontorch.augment` (noise, blur, colour jitter, erasing)."""

from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .._validation import check_int, check_nonnegative, check_probability, check_real, fail
from .base import Augmentation, _bernoulli, _check_call, _check_range, _uniform

__all__ = ["GaussianNoise", "gaussian_kernel1d", "GaussianBlur", "ColorJitter", "RandomErasing"]


class GaussianNoise(Augmentation):
    """``x + std * eps``, ``eps ~ N(0, I)`` drawn independently for every pixel and sample.

    Args:
        std: standard deviation of the noise, >= 0 (0 is the identity).
    """

    _params = ("std",)

    def __init__(self, std: float = 0.1) -> None:
        self.std = check_nonnegative("GaussianNoise", "std", std)

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("GaussianNoise", x, generator)
        if self.std > torch.finfo(x.dtype).max / 10:           # std * eps (|eps| < 10) would overflow x's dtype
            raise fail("GaussianNoise", "std", f"be far below the largest {x.dtype} "
                       f"({torch.finfo(x.dtype).max:.3g}) for this x", self.std)
        device = generator.device if generator is not None else x.device
        eps = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        return x + self.std * eps


def gaussian_kernel1d(sigma: Tensor, kernel_size: int) -> Tensor:
    """Rows ``g_b(t) = exp(-t^2 / (2 sigma_b^2)) / sum_t exp(...)`` for ``t = -r..r``: (B, kernel_size)."""
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=sigma.dtype, device=sigma.device)
    # a sigma whose square underflows gives the identity kernel (1 at t = 0), not 0 / 0
    variance = sigma.square().clamp_min(torch.finfo(sigma.dtype).tiny)
    return torch.softmax(-t.square() / (2 * variance.unsqueeze(1)), dim=1)


class GaussianBlur(Augmentation):
    """With probability ``p``, convolve the sample with a normalised Gaussian of ``sigma_b ~ U(sigma)``.

    ``y = g_b * x`` per channel (depthwise), the 2-D kernel ``g_b(s) g_b(t)`` applied as two 1-D
    passes with reflect padding (torchvision's boundary); the chosen samples are blurred in one
    grouped convolution.

    Args:
        sigma: range of the standard deviation in pixels, positive.
        p: probability that a sample is blurred, in [0, 1].
        kernel_size: odd kernel width; None picks ``2 ceil(3 sigma_max) + 1``.
    """

    _params = ("sigma", "p", "kernel_size")

    def __init__(self, sigma: Tuple[float, float] = (0.1, 1.0), p: float = 0.5,
                 kernel_size: Optional[int] = None) -> None:
        who = "GaussianBlur"
        _check_range(who, "sigma", sigma, 0.0, math.inf)
        self.p = check_probability(who, "p", p)
        if kernel_size is not None:
            kernel_size = check_int(who, "kernel_size", kernel_size, 1)
            if kernel_size % 2 == 0:
                raise fail(who, "kernel_size", "be an odd integer >= 1 (or None)", kernel_size)
        self.sigma = sigma
        self.kernel_size = kernel_size

    def _size(self) -> int:
        return self.kernel_size if self.kernel_size is not None else 2 * math.ceil(3 * self.sigma[1]) + 1

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("GaussianBlur", x, generator)
        b, c, h, w = x.shape
        size = self._size()
        if size // 2 >= min(h, w):
            raise fail("GaussianBlur", "x", f"have H and W > {size // 2} for a kernel of size {size} "
                       "(reflect padding)", x)
        blur = _bernoulli(b, self.p, generator, x)
        sigma = _uniform((b,), self.sigma[0], self.sigma[1], generator, x)
        chosen = blur.nonzero().squeeze(1)
        if chosen.numel() == 0:
            return x
        g = gaussian_kernel1d(sigma[chosen], size).repeat_interleave(c, dim=0)     # (n c, size)
        n, r = chosen.numel(), size // 2
        y = x[chosen].reshape(1, n * c, h, w)
        y = F.conv2d(F.pad(y, (r, r, 0, 0), mode="reflect"), g.view(n * c, 1, 1, size), groups=n * c)
        y = F.conv2d(F.pad(y, (0, 0, r, r), mode="reflect"), g.view(n * c, 1, size, 1), groups=n * c)
        out = x.clone()
        out[chosen] = y.view(n, c, h, w)
        return out


class ColorJitter(Augmentation):
    """With probability ``p``, scale brightness, contrast and saturation by factors drawn per sample.

    ``x <- b x``; ``x <- m + c (x - m)`` (m the sample's mean grey level); ``x <- g + s (x - g)``
    (g the pixel's grey level), with ``b ~ U(1 - brightness, 1 + brightness)`` and likewise c, s,
    applied in that order (SimCLR jitters hue as well; that is left out). Grey is the ITU-R 601
    luma for 3 channels and the channel mean otherwise, so one-channel images only see b and c.

    Args:
        brightness: strength in [0, 1] (0 switches the factor off).
        contrast: strength in [0, 1] (0 switches the factor off).
        saturation: strength in [0, 1] (0 switches the factor off).
        p: probability that a sample is jittered, in [0, 1].
    """

    _params = ("brightness", "contrast", "saturation", "p")

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 p: float = 0.8) -> None:
        who = "ColorJitter"
        self.brightness = check_probability(who, "brightness", brightness)
        self.contrast = check_probability(who, "contrast", contrast)
        self.saturation = check_probability(who, "saturation", saturation)
        self.p = check_probability(who, "p", p)

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("ColorJitter", x, generator)
        b, c = x.shape[:2]
        apply = _bernoulli(b, self.p, generator, x).view(-1, 1, 1, 1)
        f = _uniform((b, 3), -1.0, 1.0, generator, x)
        f = 1 + f * torch.tensor([self.brightness, self.contrast, self.saturation], dtype=x.dtype,
                                 device=x.device)
        f = f.view(b, 3, 1, 1, 1)
        if c == 3:
            weights = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        else:
            weights = torch.full((1, c, 1, 1), 1.0 / c, dtype=x.dtype, device=x.device)
        y = f[:, 0] * x
        m = (y * weights).sum(1, keepdim=True).mean((2, 3), keepdim=True)
        y = m + f[:, 1] * (y - m)
        grey = (y * weights).sum(1, keepdim=True)
        return torch.where(apply, grey + f[:, 2] * (y - grey), x)


class RandomErasing(Augmentation):
    """With probability ``p``, set a box of area ``s H W`` (``s ~ U(scale)``) and aspect
    ``log r ~ U(log ratio)`` at a uniform position to ``value`` (Zhong et al. 2020).

    The box is clipped to the image; it is a broadcast mask, so the batch costs one ``where``.

    Args:
        p: probability that a sample gets a box, in [0, 1].
        scale: range of the box's area fraction, inside (0, 1].
        ratio: range of its aspect ratio width / height, positive.
        value: the fill value.
    """

    _params = ("p", "scale", "ratio", "value")

    def __init__(self, p: float = 0.5, scale: Tuple[float, float] = (0.02, 0.33),
                 ratio: Tuple[float, float] = (0.3, 3.3), value: float = 0.0) -> None:
        who = "RandomErasing"
        self.p = check_probability(who, "p", p)
        _check_range(who, "scale", scale, 0.0, 1.0)
        _check_range(who, "ratio", ratio, 0.0, math.inf)
        self.value = check_real(who, "value", value)
        self.scale = scale
        self.ratio = ratio

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("RandomErasing", x, generator)
        b, _, h, w = x.shape
        apply = _bernoulli(b, self.p, generator, x)
        s = _uniform((b,), self.scale[0], self.scale[1], generator, x)
        r = _uniform((b,), math.log(self.ratio[0]), math.log(self.ratio[1]), generator, x).exp()
        bw, bh = (s * r * h * w).sqrt(), (s * h * w / r).sqrt()                   # box sides in pixels
        pos = _uniform((b, 2), 0.0, 1.0, generator, x)
        x0, y0 = pos[:, 0] * (w - bw).clamp(min=0), pos[:, 1] * (h - bh).clamp(min=0)
        cols = torch.arange(w, dtype=x.dtype, device=x.device) + 0.5                 # pixel centres
        rows = torch.arange(h, dtype=x.dtype, device=x.device) + 0.5
        in_x = (cols >= x0[:, None]) & (cols < (x0 + bw)[:, None])                  # (B, W)
        in_y = (rows >= y0[:, None]) & (rows < (y0 + bh)[:, None])                  # (B, H)
        box = (in_y[:, :, None] & in_x[:, None, :]) & apply[:, None, None]
        return torch.where(box.unsqueeze(1), torch.full_like(x, self.value), x)
