"""Augmentations: shape/dtype kept, seeded per-sample draws, closed-form identities and kernels."""

import math

import pytest
import torch
import torch.nn.functional as F

from icontorch import IConError
from icontorch.augment import (
    ColorJitter,
    Compose,
    GaussianBlur,
    GaussianNoise,
    RandomAffine,
    RandomErasing,
    RandomHorizontalFlip,
    RandomResizedCrop,
    default_augmentation,
    mild_augmentation,
)


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(b: int = 16, c: int = 1, h: int = 28, w: int = 28, dtype=torch.float32) -> torch.Tensor:
    """Smooth random images (blurred noise), so that every geometric change moves pixels."""
    x = torch.rand(b, c, h, w, generator=_gen(123), dtype=torch.float64)
    return F.avg_pool2d(x, 3, stride=1, padding=1).to(dtype)


ALL = [RandomResizedCrop(), RandomAffine(), GaussianBlur(p=1.0), GaussianNoise(), ColorJitter(p=1.0),
       RandomErasing(p=1.0), RandomHorizontalFlip(p=0.5), default_augmentation(28), default_augmentation(32)]


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__ if not isinstance(t, Compose)
                         else f"default{len(t.transforms)}")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_shape_dtype_device_and_seeding(t, dtype):
    x = _images(12, 3, 32, 32, dtype)
    y1, y2 = t(x, _gen(0)), t(x, _gen(0))
    assert y1.shape == x.shape and y1.dtype == dtype and y1.device == x.device
    assert torch.equal(y1, y2)                                   # same seed, same output
    assert not torch.equal(y1, t(x, _gen(1)))                    # another seed, other draws
    assert not torch.equal(y1, x)
    # Per-sample draws: copies of one image come out different.
    same = x[:1].repeat(8, 1, 1, 1)
    z = t(same, _gen(2))
    assert not all(torch.equal(z[0], z[i]) for i in range(1, 8))


def test_seeding_without_generator_uses_torch_default():
    x = _images()
    torch.manual_seed(5)
    a = RandomAffine()(x)
    torch.manual_seed(5)
    assert torch.equal(a, RandomAffine()(x))


def test_crop_identity_closed_form():
    x = _images(4, 2, 28, 28, torch.float64)
    y = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))(x, _gen(0))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)


def test_crop_known_box_is_bilinear_zoom():
    # A half-size crop (area 1/4, ratio 1) of a linear ramp is a ramp of half the slope.
    h = w = 16
    ramp = torch.arange(w, dtype=torch.float64).expand(1, 1, h, w).clone()
    y = RandomResizedCrop(scale=(0.25, 0.25), ratio=(1.0, 1.0))(ramp, _gen(0))
    slope = (y[0, 0, :, 1:] - y[0, 0, :, :-1])
    torch.testing.assert_close(slope, torch.full_like(slope, 0.5), rtol=0, atol=1e-9)
    assert 0.0 <= y.min() and y.max() <= w - 1


def test_affine_identity_closed_form():
    x = _images(4, 1, 20, 28, torch.float64)
    y = RandomAffine(degrees=0.0, translate=0.0, scale=(1.0, 1.0))(x, _gen(0))
    torch.testing.assert_close(y, x, rtol=0, atol=1e-12)


def _moments(img: torch.Tensor):
    """Centroid (row, col) and second central moments of non-negative (B, 1, H, W) images."""
    h, w = img.shape[-2:]
    rows = torch.arange(h, dtype=img.dtype).view(1, h, 1)
    cols = torch.arange(w, dtype=img.dtype).view(1, 1, w)
    m = img[:, 0]
    mass = m.sum((1, 2))
    cr, cc = (m * rows).sum((1, 2)) / mass, (m * cols).sum((1, 2)) / mass
    vr = (m * (rows - cr.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
    vc = (m * (cols - cc.view(-1, 1, 1)) ** 2).sum((1, 2)) / mass
    return mass, cr, cc, vr, vc


def _blob(b: int, h: int, w: int, s_row: float, s_col: float) -> torch.Tensor:
    r = torch.arange(h, dtype=torch.float64).view(h, 1) - (h - 1) / 2
    c = torch.arange(w, dtype=torch.float64).view(1, w) - (w - 1) / 2
    return torch.exp(-r ** 2 / (2 * s_row ** 2) - c ** 2 / (2 * s_col ** 2)).expand(b, 1, h, w).clone()


def test_affine_zoom_rotation_and_shift():
    # A centred zoom by 2 of a ramp reads the central half: the slope halves.
    x = torch.arange(16, dtype=torch.float64).expand(1, 1, 16, 16).clone()
    y = RandomAffine(degrees=0.0, translate=0.0, scale=(2.0, 2.0))(x, _gen(0))
    slope = y[0, 0, :, 1:] - y[0, 0, :, :-1]
    torch.testing.assert_close(slope, torch.full_like(slope, 0.5), rtol=0, atol=1e-9)
    # Rotations are taken in pixel units: a round blob on a 24 x 48 image stays round and keeps its
    # mass and centre, and an elongated one turns (its row variance grows, its column variance shrinks).
    turn = RandomAffine(degrees=180.0, translate=0.0, scale=(1.0, 1.0))
    mass0, *_ = _moments(_blob(6, 24, 48, 3.0, 3.0))
    mass, cr, cc, vr, vc = _moments(turn(_blob(6, 24, 48, 3.0, 3.0), _gen(0)))
    torch.testing.assert_close(mass, mass0, rtol=1e-3, atol=0)
    torch.testing.assert_close(cr, torch.full_like(cr, 11.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(cc, torch.full_like(cc, 23.5), rtol=0, atol=1e-6)
    torch.testing.assert_close(vr, vc, rtol=2e-2, atol=0)      # bilinear smoothing: < 1%
    _, _, _, vr, vc = _moments(turn(_blob(200, 24, 48, 2.0, 6.0), _gen(1)))
    assert vr.max() > 2 * 4.0 and vc.min() < 0.5 * 36.0
    # Shifts move the centre by at most translate * side, both ways.
    shift = RandomAffine(degrees=0.0, translate=0.1, scale=(1.0, 1.0))
    _, cr, cc, _, _ = _moments(shift(_blob(200, 32, 32, 2.0, 2.0), _gen(2)))
    dr, dc = cr - 15.5, cc - 15.5
    assert dr.abs().max() <= 3.2 + 1e-6 and dc.abs().max() <= 3.2 + 1e-6
    assert dr.min() < -2 and dr.max() > 2 and dc.min() < -2 and dc.max() > 2


def test_flip_probabilities():
    x = _images(6)
    torch.testing.assert_close(RandomHorizontalFlip(p=1.0)(x), x.flip(-1))
    assert torch.equal(RandomHorizontalFlip(p=0.0)(x), x)


def test_blur_p0_identity_and_p1_explicit_conv():
    x = _images(5, 3, 20, 20, torch.float64)
    assert torch.equal(GaussianBlur(p=0.0)(x, _gen(0)), x)
    sigma, size = 0.8, 5
    y = GaussianBlur(sigma=(sigma, sigma), p=1.0, kernel_size=size)(x, _gen(0))
    t = torch.arange(size, dtype=torch.float64) - size // 2
    g2 = torch.exp(-(t[:, None] ** 2 + t[None, :] ** 2) / (2 * sigma ** 2))
    g2 = (g2 / g2.sum()).expand(3, 1, size, size)
    expected = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), g2, groups=3)
    torch.testing.assert_close(y, expected, rtol=0, atol=1e-12)


def test_blur_half_of_the_samples():
    x = _images(400, 1, 12, 12)
    y = GaussianBlur(p=0.5)(x, _gen(0))
    changed = (y != x).flatten(1).any(1).float().mean().item()
    assert 0.4 < changed < 0.6


def test_noise_statistics():
    x = torch.zeros(64, 3, 32, 32)
    eps = GaussianNoise(std=0.3)(x, _gen(0))
    assert abs(eps.mean().item()) < 0.01
    assert abs(eps.std().item() - 0.3) < 0.005
    assert torch.equal(GaussianNoise(std=0.0)(x, _gen(0)), x)


def test_color_jitter_grey_and_identity():
    x = _images(4, 3, 8, 8, torch.float64)
    assert torch.equal(ColorJitter(p=0.0)(x, _gen(0)), x)
    torch.testing.assert_close(ColorJitter(0.0, 0.0, 0.0, p=1.0)(x, _gen(0)), x, rtol=0, atol=1e-12)
    # Saturation only preserves each pixel's grey level (luma).
    y = ColorJitter(0.0, 0.0, 1.0, p=1.0)(x, _gen(0))
    luma = torch.tensor([0.299, 0.587, 0.114], dtype=torch.float64).view(1, 3, 1, 1)
    torch.testing.assert_close((y * luma).sum(1), (x * luma).sum(1), rtol=0, atol=1e-12)


def test_erasing_area_within_scale():
    x = torch.ones(200, 1, 32, 32)
    y = RandomErasing(p=1.0, scale=(0.1, 0.2), ratio=(0.5, 2.0), value=0.0)(x, _gen(0))
    area = (y == 0).float().mean((1, 2, 3))
    assert area.min() > 0.05 and area.max() < 0.25 and 0.1 < area.mean() < 0.2
    assert torch.equal(RandomErasing(p=0.0)(x, _gen(0)), x)


def test_compose_uses_one_stream_in_order():
    x = _images()
    crop, noise = RandomResizedCrop(), GaussianNoise(0.1)
    g = _gen(7)
    expected = noise(crop(x, g), g)
    torch.testing.assert_close(Compose([crop, noise])(x, _gen(7)), expected, rtol=0, atol=0)
    assert "RandomResizedCrop" in repr(default_augmentation(28))
    assert any(isinstance(t, RandomHorizontalFlip) for t in default_augmentation(32).transforms)
    assert not any(isinstance(t, RandomHorizontalFlip) for t in default_augmentation(28).transforms)


def test_mild_augmentation_keeps_the_whole_image():
    """Below 32 pixels: affine then noise, no crop or blur; from 32 on: the default augmentation."""
    mild = mild_augmentation(28)
    assert [type(t) for t in mild.transforms] == [RandomAffine, GaussianNoise]
    assert (mild.transforms[0].degrees, mild.transforms[1].std) == (15.0, 0.1)
    assert repr(mild_augmentation(32)) == repr(default_augmentation(32))
    x = _images()
    out = mild(x, _gen(3))
    torch.testing.assert_close(out, mild(x, _gen(3)), rtol=0, atol=0)          # seeded
    assert out.shape == x.shape and not torch.allclose(out, x)


def test_gradient_flows_through_geometry():
    x = _images(2).requires_grad_(True)
    default_augmentation(28)(x, _gen(0)).sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()


@pytest.mark.parametrize("make, match", [
    (lambda: RandomResizedCrop(scale=(0.0, 1.0)), r"scale must .*got \(0\.0, 1\.0\)"),
    (lambda: RandomResizedCrop(scale=(0.5, 1.5)), r"scale must .*got \(0\.5, 1\.5\)"),
    (lambda: RandomResizedCrop(scale=(0.9, 0.5)), r"scale must .*got \(0\.9, 0\.5\)"),
    (lambda: RandomResizedCrop(ratio=(2.0, 1.0)), r"ratio must .*got \(2\.0, 1\.0\)"),
    (lambda: RandomResizedCrop(ratio=(0.0, 1.0)), r"ratio must"),
    (lambda: RandomResizedCrop(padding_mode="wrap"), r"padding_mode must .*'wrap'"),
    (lambda: RandomAffine(degrees=-1.0), r"degrees must .*got -1\.0"),
    (lambda: RandomAffine(translate=1.5), r"translate must .*got 1\.5"),
    (lambda: RandomAffine(scale=(0.0, 1.0)), r"scale must"),
    (lambda: RandomAffine(scale=1.0), r"scale must .*got 1\.0"),
    (lambda: GaussianNoise(std=-0.1), r"std must .*got -0\.1"),
    (lambda: GaussianNoise(std=math.nan), r"std must"),
    (lambda: GaussianBlur(p=1.5), r"p must lie in \[0, 1\]; got 1\.5"),
    (lambda: GaussianBlur(sigma=(0.0, 1.0)), r"sigma must"),
    (lambda: GaussianBlur(kernel_size=4), r"kernel_size must .*odd.*got 4"),
    (lambda: GaussianBlur(kernel_size=0), r"kernel_size must .*got 0"),
    (lambda: RandomHorizontalFlip(p=-0.1), r"p must .*got -0\.1"),
    (lambda: ColorJitter(brightness=2.0), r"brightness must .*got 2\.0"),
    (lambda: RandomErasing(value=math.inf), r"value must"),
    (lambda: Compose([RandomAffine(), 3]), r"transforms must hold only callables"),
    (lambda: Compose(RandomAffine()), r"transforms must be a sequence"),
    (lambda: default_augmentation(4), r"image_size must be an integer >= 8; got 4"),
    (lambda: mild_augmentation(7), r"mild_augmentation: image_size must be an integer >= 8; got 7"),
])
def test_bad_parameters(make, match):
    with pytest.raises(IConError, match=match):
        make()


@pytest.mark.parametrize("t", ALL, ids=lambda t: type(t).__name__)
def test_bad_images(t):
    with pytest.raises(IConError, match=r"x must have shape \(B, C, H, W\).*got tensor of shape \(28, 28\)"):
        t(torch.rand(28, 28))
    with pytest.raises(IConError, match=r"x must be a floating-point tensor.*torch\.uint8"):
        t(torch.zeros(2, 1, 28, 28, dtype=torch.uint8))
    with pytest.raises(IConError, match=r"x must be a torch\.Tensor.*got 'list'"):
        t([1.0, 2.0])
    with pytest.raises(IConError, match=r"x must be a non-empty batch"):
        t(torch.rand(0, 1, 28, 28))


def test_blur_image_too_small_for_kernel():
    with pytest.raises(IConError, match=r"GaussianBlur: x must have H and W > 3 .*got tensor of shape \(2, 1, 3, 3\)"):
        GaussianBlur(sigma=(1.0, 1.0), p=1.0)(torch.rand(2, 1, 3, 3))
