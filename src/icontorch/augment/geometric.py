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
from typing import Optional, Tuple

import torch
from torch import Tensor

from .._validation import check_choice, check_nonnegative, check_probability
from .base import Augmentation, _bernoulli, _check_call, _check_range, _resample, _uniform

__all__ = ["RandomResizedCrop", "RandomAffine", "RandomHorizontalFlip"]


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
        _check_call("RandomResizedCrop", x, generator)
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
        self.degrees = check_nonnegative(who, "degrees", degrees)
        self.translate = check_probability(who, "translate", translate)
        _check_range(who, "scale", scale, 0.0, math.inf)
        check_choice(who, "padding_mode", padding_mode, ("zeros", "border", "reflection"))
        self.scale = scale
        self.padding_mode = padding_mode

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("RandomAffine", x, generator)
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
        self.p = check_probability("RandomHorizontalFlip", "p", p)

    def __call__(self, x: Tensor, generator: Optional[torch.Generator] = None) -> Tensor:
        _check_call("RandomHorizontalFlip", x, generator)
        flip = _bernoulli(x.shape[0], self.p, generator, x).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(-1), x)
