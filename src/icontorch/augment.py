"""Image augmentations for contrastive views: batched, per-sample, seeded, torch only.

The supervisory p of SimCLR (Thm 3) is "the other augmented view of the same item"; these
transforms make the views. Each takes a batch ``x`` of shape (B, C, H, W) in a floating dtype and
returns a tensor of the same shape, dtype and device. Every sample gets its own random parameters,
drawn from the optional ``torch.Generator`` (same generator state, same output); the geometric
transforms resample the whole batch with one ``affine_grid`` / ``grid_sample`` call. Pixel values
are never clipped, so inputs may be in [0, 1] or standardised.

Random parameters are drawn on the generator's device (the default generator on ``x``'s device
when none is given) and then moved to ``x``; a generator on ``x``'s device avoids the copy.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ._validation import check_choice, check_int, check_probability, fail

__all__ = ["Augmentation", "RandomResizedCrop", "RandomAffine", "RandomHorizontalFlip", "GaussianNoise",
           "GaussianBlur", "ColorJitter", "RandomErasing", "Compose", "default_augmentation"]


def check_images(who: str, name: str, x: Any) -> Tensor:
    """A non-empty (B, C, H, W) floating-point tensor (no finiteness pass: it would sync a GPU)."""
    if not isinstance(x, Tensor):
        raise fail(who, name, "be a torch.Tensor of shape (B, C, H, W)", type(x).__name__)
    if x.dim() != 4:
        raise fail(who, name, "have shape (B, C, H, W) (4 dimensions)", x)
    if x.numel() == 0:
        raise fail(who, name, "be a non-empty batch of shape (B, C, H, W)", x)
    if not x.is_floating_point():
        raise fail(who, name, "be a floating-point tensor (convert images with x.float() / 255)", x)
    return x


def _check_nonnegative(who: str, name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise fail(who, name, "be a finite number >= 0", value)
    return float(value)


def _check_range(who: str, name: str, value: Any, low: float, high: float, low_open: bool = True
                 ) -> Tuple[float, float]:
    """A pair ``(a, b)`` with ``low < a <= b <= high`` (``low <= a`` when ``low_open`` is False)."""
    left = "(" if low_open else "["
    rule = f"be a pair (a, b) with a <= b inside {left}{low}, {high}]"
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise fail(who, name, rule, value)
    a, b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise fail(who, name, rule, value)
    if a > b or b > high or a < low or (low_open and a == low):
        raise fail(who, name, rule, value)
    return float(a), float(b)


def _uniform(shape: Tuple[int, ...], low: float, high: float, generator: Optional[torch.Generator],
             x: Tensor) -> Tensor:
    """U(low, high) draws in x's dtype on x's device, from the generator's stream."""
    device = generator.device if generator is not None else x.device
    # float32 draws whatever x's dtype (same parameters for float32 and float64 inputs); the affine
    # map is applied in x's dtype, so low == high gives exactly low.
    u = torch.rand(shape, generator=generator, device=device, dtype=torch.float32)
    return low + (high - low) * u.to(device=x.device, dtype=x.dtype)


def _bernoulli(n: int, p: float, generator: Optional[torch.Generator], x: Tensor) -> Tensor:
    """(n,) boolean draws with P(True) = p (p = 0 never, p = 1 always)."""
    device = generator.device if generator is not None else x.device
    return (torch.rand(n, generator=generator, device=device) < p).to(x.device)


def _resample(x: Tensor, theta: Tensor, padding_mode: str) -> Tensor:
    """One batched bilinear resampling: output pixel at u reads input at ``theta @ [u, 1]``."""
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


class Augmentation:
    """Base of the transforms: ``__call__(x, generator)`` maps (B, C, H, W) to (B, C, H, W).

    Subclasses store each constructor argument under its own name and list them in ``_params``
    (printed by ``repr``).
    """

    _params: Tuple[str, ...] = ()

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._params)
        return f"{type(self).__name__}({args})"


class RandomResizedCrop(Augmentation):
    """Crop of area ``s * H * W`` and aspect ``w / h = r`` at a uniform position, resized to (H, W).

    ``s ~ U(scale)``, ``log r ~ U(log ratio)`` (SimCLR's crop, continuous instead of whole pixels).
    As in torchvision, a draw whose box does not fit is redrawn (10 tries, vectorised); a sample
    with no fitting draw keeps its first draw with both sides clamped to the image. ``scale=(1, 1)`` and
    ``ratio=(1, 1)`` on a square image is exactly the identity.

    Args:
        scale: range of the crop's area fraction, inside (0, 1].
        ratio: range of the crop's aspect ratio width / height, positive.
        padding_mode: ``grid_sample`` padding for the half pixel outside the image ("border").
    """

    _params = ("scale", "ratio", "padding_mode")

    def __init__(self, scale: Tuple[float, float] = (0.4, 1.0), ratio: Tuple[float, float] = (3 / 4, 4 / 3),
                 padding_mode: str = "border") -> None:
        who = "RandomResizedCrop"
        _check_range(who, "scale", scale, 0.0, 1.0)
        _check_range(who, "ratio", ratio, 0.0, math.inf)
        check_choice(who, "padding_mode", padding_mode, ("zeros", "border", "reflection"))
        self.scale = scale
        self.ratio = ratio
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("RandomResizedCrop", "x", x)
        b, _, h, w = x.shape
        tries = 10
        s = _uniform((b, tries), self.scale[0], self.scale[1], generator, x)
        log_r = _uniform((b, tries), math.log(self.ratio[0]), math.log(self.ratio[1]), generator, x)
        r = log_r.exp()
        # Fractions of the width and height: (fw W) (fh H) = s H W and (fw W) / (fh H) = r.
        fw = (s * r * h / w).sqrt()
        fh = (s * w / (r * h)).sqrt()
        fits = (fw <= 1) & (fh <= 1)
        first = fits.to(torch.uint8).argmax(1, keepdim=True)          # first fitting try (0 if none)
        fw, fh = fw.gather(1, first).squeeze(1), fh.gather(1, first).squeeze(1)
        none_fit = ~fits.any(1)
        fw = torch.where(none_fit, fw.clamp(max=1.0), fw)
        fh = torch.where(none_fit, fh.clamp(max=1.0), fh)
        # Centre in normalised coordinates [-1, 1]: the box [c - f, c + f] stays inside the image.
        u = _uniform((b, 2), -1.0, 1.0, generator, x)
        cx, cy = u[:, 0] * (1 - fw), u[:, 1] * (1 - fh)
        theta = torch.zeros(b, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = fw, cx
        theta[:, 1, 1], theta[:, 1, 2] = fh, cy
        return _resample(x, theta, self.padding_mode)


class RandomAffine(Augmentation):
    """Rotation by ``a ~ U(-degrees, degrees)``, scaling by ``k ~ U(scale)`` and a shift of
    ``t ~ U(-translate, translate)`` times the width / height, about the image centre.

    In pixel coordinates the output at ``u`` reads the input at ``R(-a) (u - t) / k`` (the inverse
    map, so the content moves by ``+t``, turns by ``a`` and grows by ``k``). ``degrees=0``,
    ``translate=0``, ``scale=(1, 1)`` is exactly the identity.

    Args:
        degrees: largest rotation in degrees, >= 0.
        translate: largest shift as a fraction of the image side, in [0, 1].
        scale: range of the zoom factor, positive.
        padding_mode: ``grid_sample`` padding for pixels coming from outside ("zeros": a black
            background, right for digits).
    """

    _params = ("degrees", "translate", "scale", "padding_mode")

    def __init__(self, degrees: float = 15.0, translate: float = 0.1, scale: Tuple[float, float] = (0.9, 1.1),
                 padding_mode: str = "zeros") -> None:
        who = "RandomAffine"
        _check_nonnegative(who, "degrees", degrees)
        check_probability(who, "translate", translate)
        _check_range(who, "scale", scale, 0.0, math.inf)
        check_choice(who, "padding_mode", padding_mode, ("zeros", "border", "reflection"))
        self.degrees = degrees
        self.translate = translate
        self.scale = scale
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("RandomAffine", "x", x)
        b, _, h, w = x.shape
        angle = _uniform((b,), -self.degrees, self.degrees, generator, x) * (math.pi / 180)
        shift = _uniform((b, 2), -self.translate, self.translate, generator, x) * 2  # image side = 2 units
        k = _uniform((b,), self.scale[0], self.scale[1], generator, x)
        cos, sin = angle.cos() / k, angle.sin() / k
        # Rotate in pixel units, not in the normalised square, so non-square images keep their angles:
        # A = D^-1 R(-a) D / k with D = diag(w, h).
        theta = torch.empty(b, 2, 3, dtype=x.dtype, device=x.device)
        theta[:, 0, 0], theta[:, 0, 1] = cos, sin * (h / w)
        theta[:, 1, 0], theta[:, 1, 1] = -sin * (w / h), cos
        theta[:, :, 2] = -(theta[:, :, :2] @ shift.unsqueeze(-1)).squeeze(-1)
        return _resample(x, theta, self.padding_mode)


class RandomHorizontalFlip(Augmentation):
    """Mirror left-right with probability ``p`` per sample.

    Args:
        p: probability of the flip, in [0, 1].
    """

    _params = ("p",)

    def __init__(self, p: float = 0.5) -> None:
        check_probability("RandomHorizontalFlip", "p", p)
        self.p = p

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("RandomHorizontalFlip", "x", x)
        flip = _bernoulli(x.shape[0], self.p, generator, x).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x)


class GaussianNoise(Augmentation):
    """``x + std * eps``, ``eps ~ N(0, I)`` drawn independently for every pixel and sample.

    Args:
        std: standard deviation of the noise, >= 0 (0 is the identity).
    """

    _params = ("std",)

    def __init__(self, std: float = 0.1) -> None:
        _check_nonnegative("GaussianNoise", "std", std)
        self.std = std

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("GaussianNoise", "x", x)
        device = generator.device if generator is not None else x.device
        eps = torch.randn(x.shape, generator=generator, device=device, dtype=x.dtype).to(x.device)
        return x + self.std * eps


def gaussian_kernel1d(sigma: Tensor, kernel_size: int) -> Tensor:
    """Rows ``g_b(t) = exp(-t^2 / (2 sigma_b^2)) / sum_t exp(...)`` for ``t = -r..r``: (B, kernel_size)."""
    r = kernel_size // 2
    t = torch.arange(-r, r + 1, dtype=sigma.dtype, device=sigma.device)
    return torch.softmax(-t.square() / (2 * sigma.square().unsqueeze(1)), dim=1)


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
        check_probability(who, "p", p)
        if kernel_size is not None:
            check_int(who, "kernel_size", kernel_size, 1)
            if kernel_size % 2 == 0:
                raise fail(who, "kernel_size", "be an odd integer >= 1 (or None)", kernel_size)
        self.sigma = sigma
        self.p = p
        self.kernel_size = kernel_size

    def _size(self) -> int:
        return self.kernel_size if self.kernel_size is not None else 2 * math.ceil(3 * self.sigma[1]) + 1

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("GaussianBlur", "x", x)
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
        brightness, contrast, saturation: strengths in [0, 1] (0 switches a factor off).
        p: probability that a sample is jittered, in [0, 1].
    """

    _params = ("brightness", "contrast", "saturation", "p")

    def __init__(self, brightness: float = 0.4, contrast: float = 0.4, saturation: float = 0.4,
                 p: float = 0.8) -> None:
        who = "ColorJitter"
        for name, value in (("brightness", brightness), ("contrast", contrast), ("saturation", saturation),
                            ("p", p)):
            check_probability(who, name, value)
        self.brightness = brightness
        self.contrast = contrast
        self.saturation = saturation
        self.p = p

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("ColorJitter", "x", x)
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
        check_probability(who, "p", p)
        _check_range(who, "scale", scale, 0.0, 1.0)
        _check_range(who, "ratio", ratio, 0.0, math.inf)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise fail(who, "value", "be a finite number", value)
        self.p = p
        self.scale = scale
        self.ratio = ratio
        self.value = value

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("RandomErasing", "x", x)
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


class Compose(Augmentation):
    """``t_k(... t_2(t_1(x)))``: the transforms in order, all drawing from the same generator.

    Args:
        transforms: callables ``t(x, generator=None) -> x``.
    """

    _params = ("transforms",)

    def __init__(self, transforms: Sequence[Callable[..., Tensor]]) -> None:
        if isinstance(transforms, (str, bytes)) or not isinstance(transforms, Sequence):
            raise fail("Compose", "transforms", "be a sequence of callables t(x, generator)", transforms)
        for t in transforms:
            if not callable(t):
                raise fail("Compose", "transforms", "hold only callables t(x, generator)", t)
        self.transforms = transforms

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        check_images("Compose", "x", x)
        for t in self.transforms:
            x = t(x, generator)
        return x


def default_augmentation(image_size: int = 28) -> Compose:
    """A SimCLR-style view generator, sized for the images.

    * ``image_size < 32`` (grey-scale digits, MNIST 28 x 28): ``RandomResizedCrop(scale=(0.4, 1))``,
      ``RandomAffine(degrees=15, translate=0.1, scale=(0.9, 1.1))``, ``GaussianBlur(sigma=(0.1, 1),
      p=0.5)``, ``GaussianNoise(std=0.1)``. No flip: a mirrored digit is another symbol.
    * ``image_size >= 32`` (natural colour images, CIFAR-like): ``RandomResizedCrop(scale=(0.2, 1))``,
      ``RandomHorizontalFlip(p=0.5)``, ``ColorJitter(0.4, 0.4, 0.4, p=0.8)``,
      ``GaussianBlur(sigma=(0.1, 2), p=0.5)``, ``GaussianNoise(std=0.05)``.

    Noise and jitter strengths assume pixel values of order 1 (in [0, 1] or standardised).

    Args:
        image_size: side of the (square) images; >= 8.
    """
    check_int("default_augmentation", "image_size", image_size, 8)
    if image_size < 32:
        transforms: List[Augmentation] = [RandomResizedCrop(scale=(0.4, 1.0)),
                                          RandomAffine(degrees=15.0, translate=0.1, scale=(0.9, 1.1)),
                                          GaussianBlur(sigma=(0.1, 1.0), p=0.5), GaussianNoise(std=0.1)]
    else:
        transforms = [RandomResizedCrop(scale=(0.2, 1.0)), RandomHorizontalFlip(p=0.5),
                      ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, p=0.8),
                      GaussianBlur(sigma=(0.1, 2.0), p=0.5), GaussianNoise(std=0.05)]
    return Compose(transforms)

