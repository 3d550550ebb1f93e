"""Nothing silently wrong: the kernels give float64's answer in float32 or raise IConError, never NaN.

* The perplexity search on duplicate-heavy inputs (precision ~1e60) stays finite in float32 and
  equals float64 (SNE, t-SNE, conditional t-SNE, values and gradients).
* Scale-free neighbourhoods (perplexity Gaussian, kNN, cosine, Harmonic at sigma = 0, UMAP's
  log-distance) give the same answer at magnitudes 1e-30 and 1e20 as at 1, in float32.
* Kernels on squared distances (Gaussian, Student-t) raise IConError naming ``z`` when those
  distances overflow the dtype, on the composed, fused and tiled paths alike.
* A learned temperature or width that left its range raises at the next call.
"""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

import icontorch as ic
from icontorch import FromCallable, Gaussian, ICon, IConError, PerplexityGaussian, SameLabel, StudentT, methods
from icontorch.neighborhoods import KNN, Harmonic, Logits, perplexity_precision
from icontorch.neighborhoods.links import UMAPLinks

F32, F64 = torch.float32, torch.float64


def _randn(*shape, seed, dtype=F64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _value_and_grad(loss, z, *args, **kwargs):
    z = z.detach().clone().requires_grad_(True)
    value = loss(z, *args, **kwargs)
    (grad,) = torch.autograd.grad(value, z)
    return value.detach(), grad


# ------------------------------------------------------------------ the perplexity search (issue 17)

TWO_POINTS = torch.eye(2, dtype=F64).repeat_interleave(10, 0)  # 20 points, each with 9 exact duplicates


@pytest.mark.parametrize("method", ["sne", "tsne", "conditional_tsne"])
def test_duplicates_give_float64_results_in_float32(method):
    """Perplexity 5 < 9 duplicates: the entropy target is out of reach and beta doubles to ~1e60."""
    d = torch.cdist(TWO_POINTS, TWO_POINTS).pow(2).fill_diagonal_(math.inf)
    p = torch.softmax(-perplexity_precision(d, 5.0)[:, None] * d, 1)  # the limit: uniform over the 9 ties
    torch.testing.assert_close(p, (d == 0).double() / 9, rtol=0, atol=1e-300)
    loss, z = getattr(methods, method)(perplexity=5), _randn(20, 2, seed=0)
    value64, grad64 = _value_and_grad(loss, z, target=TWO_POINTS)
    value32, grad32 = _value_and_grad(loss, z.float(), target=TWO_POINTS.float())
    assert torch.isfinite(value32) and torch.isfinite(grad32).all()
    torch.testing.assert_close(value32.double(), value64, rtol=1e-5, atol=0)
    torch.testing.assert_close(grad32.double(), grad64, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("bad", [torch.tensor([[0.0, math.nan]]), torch.tensor([[0.0, -1.0]]), torch.zeros(3)])
def test_perplexity_precision_checks_its_distances(bad):
    with pytest.raises(IConError, match=r"^perplexity_precision: sq_dist must be a 2-D floating tensor of squared "
                                        r"distances >= 0 \(\+inf: not a candidate\); got tensor of shape"):
        perplexity_precision(bad, 2.0)


def test_a_target_of_duplicates_has_a_finite_gradient_in_float32():
    """beta ~ 1e60 times d's zero derivative at duplicates is 0, not inf * 0 (computed in float64)."""
    target = torch.zeros(20, 3, requires_grad=True)
    methods.sne(perplexity=5)(_randn(20, 2, seed=0, dtype=F32), target=target).backward()
    assert torch.equal(target.grad, torch.zeros(20, 3))


def test_per_anchor_candidates_of_binary_data_give_float64_rows_in_float32():
    """TSNE's path (each anchor against its own candidate set) on data with 8 distinct points."""
    x = (torch.rand(60, 3, generator=torch.Generator().manual_seed(1)) > 0.5).double()
    candidates = x[torch.cdist(x, x).argsort(1)[:, 1:16]]  # (60, 15, 3): many exact duplicates
    p64 = PerplexityGaussian(5.0)(x, candidates)
    p32 = PerplexityGaussian(5.0)(x.float(), candidates.float())
    assert torch.isfinite(torch.logsumexp(p32, 1)).all()
    torch.testing.assert_close(p32.exp().double(), p64.exp(), rtol=0, atol=1e-6)


def test_ties_at_a_positive_distance_stay_finite_in_float32():
    """On a 3 x 3 grid a corner has two nearest neighbours at distance 1: perplexity 1.5 is out of
    reach there too, and the row keeps its two ties (shifted to log-weight 0), not -inf everywhere."""
    grid = torch.cartesian_prod(torch.arange(3.0), torch.arange(3.0)).double()
    p64 = PerplexityGaussian(1.5)(grid)
    p32 = PerplexityGaussian(1.5)(grid.float())
    assert torch.isfinite(torch.logsumexp(p32, 1)).all()
    torch.testing.assert_close(p32.exp().double(), p64.exp(), rtol=0, atol=1e-6)
    torch.testing.assert_close(p32[0].exp()[[1, 3]], torch.tensor([0.5, 0.5]), rtol=1e-6, atol=0)


# ------------------------------------------------------------------ scale-free kernels at any magnitude

X = _randn(12, 5, seed=2)


@pytest.mark.parametrize("scale", [1e-30, 1e20])
@pytest.mark.parametrize("p", [PerplexityGaussian(4.0), KNN(3), Gaussian(temperature=0.5, metric="cosine"),
                               Harmonic(exponent=2.0)], ids=["perplexity", "knn", "cosine", "harmonic"])
def test_scale_free_neighbourhoods_ignore_the_magnitude_in_float32(p, scale):
    torch.testing.assert_close(p(X.float() * scale), p(X.float()), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scale", [1e-30, 1e20])
def test_cosine_losses_and_gradients_ignore_the_magnitude(scale):
    z, ids = _randn(8, 4, seed=3, dtype=F32), torch.arange(4).repeat(2)
    for loss in (methods.simclr(0.5), ICon(FromCallable(ic.PositivePairs()), Gaussian(temperature=0.5,
                                                                                          metric="cosine"))):
        value, grad = _value_and_grad(loss, z, target=ids)
        value_s, grad_s = _value_and_grad(loss, z * scale, target=ids)
        torch.testing.assert_close(value_s, value, rtol=1e-5, atol=0)
        torch.testing.assert_close(grad_s * scale, grad, rtol=1e-4, atol=1e-6)


def test_umap_log_distance_at_tiny_magnitude_in_float32():
    z = _randn(6, 2, seed=4)
    expected = UMAPLinks()(z * 1e-30)
    torch.testing.assert_close(UMAPLinks()(z.float() * 1e-30).double(), expected, rtol=1e-4, atol=1e-4)


# ------------------------------------------------------------------ overflowing squared distances (issue 17)

LABELS = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
PATHS = {"fused": dict(tile_size="auto"), "tiled": dict(tile_size=3), "composed": dict(composed=True)}


def _icon(q, path):
    options = dict(PATHS[path])
    p = FromCallable(SameLabel()) if options.pop("composed", False) else SameLabel()
    loss = ICon(p, q, **options)
    assert (loss.structured_form()[0] is None) == (path == "composed")
    return loss


@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("q", [Gaussian(sigma=1.0), StudentT()], ids=["gaussian", "student_t"])
def test_huge_embeddings_raise_naming_z(q, path):
    z = _randn(8, 3, seed=5, dtype=F32) * 1e20
    with pytest.raises(IConError, match=rf"^{type(q).__name__}: z must have squared distances representable "
                                        r"in torch\.float32 \(below 3\.4e\+38\); got values up to 2\.\d+e\+20\.$"):
        _icon(q, path)(z.requires_grad_(), LABELS)
    with pytest.raises(IConError, match=rf"^{type(q).__name__}: candidates must have squared distances"):
        _icon(q, path)(z[:4] / 1e20, LABELS[:4], z[4:], LABELS[4:])


@pytest.mark.parametrize("q", [Gaussian(sigma=1.0), StudentT()], ids=["gaussian", "student_t"])
def test_large_embeddings_below_the_limit_are_finite_and_agree(q):
    """At |z| ~ 1e17 the squared distances (~1e34) still fit: every path gives float64's loss."""
    z = _randn(8, 3, seed=5) * 1e17
    reference = _value_and_grad(_icon(q, "composed"), z, LABELS)
    for path in PATHS:
        value, grad = _value_and_grad(_icon(q, path), z.float(), LABELS)
        assert torch.isfinite(value) and torch.isfinite(grad).all(), path
        torch.testing.assert_close(value.double(), reference[0], rtol=1e-4, atol=0)
        torch.testing.assert_close(grad.double(), reference[1], rtol=1e-3, atol=1e-30)


def test_a_scale_that_overflows_the_logits_raises():
    """|z| ~ 1e16: the squared distances fit in float32, but not once multiplied by 1 / (2 sigma^2)."""
    with pytest.raises(IConError, match=r"^Gaussian: z must have squared distances \(times the kernel's scale "
                                        r"5e\+07\) representable in torch\.float32"):
        ICon(SameLabel(), Gaussian(sigma=1e-4))(_randn(8, 3, seed=5, dtype=F32) * 1e16, LABELS)


# ------------------------------------------------------------------ learned parameters that left their range

@pytest.mark.parametrize("path", list(PATHS))
@pytest.mark.parametrize("value", [0.0, -0.1, math.nan])
def test_a_learned_temperature_out_of_range_raises_at_the_next_call(path, value):
    temperature = nn.Parameter(torch.tensor(0.5))
    loss = _icon(Gaussian(temperature=temperature, metric="cosine"), path)
    z = _randn(8, 3, seed=6, dtype=F32)
    assert torch.isfinite(loss(z, LABELS))
    with torch.no_grad():
        temperature.fill_(value)
    with pytest.raises(IConError, match=r"^Gaussian: temperature must be positive and finite; got"):
        loss(z, LABELS)


def test_learned_widths_and_temperatures_of_other_kernels_are_checked_at_each_call():
    sigma, temperature = nn.Parameter(torch.tensor(1.0)), nn.Parameter(torch.tensor(1.0))
    gaussian, logits = Gaussian(sigma=sigma), Logits(temperature=temperature)
    x = _randn(5, 3, seed=7, dtype=F32)
    gaussian(x), logits(x)
    with torch.no_grad():
        sigma.fill_(0.0)
        temperature.fill_(-1.0)
    with pytest.raises(IConError, match=r"^Gaussian: sigma must be positive and finite; got 0\.0\.$"):
        gaussian(x)
    with pytest.raises(IConError, match=r"^Logits: temperature must be positive and finite; got -1\.0\.$"):
        logits(x)
    tiny = Gaussian(temperature=nn.Parameter(torch.tensor(1e-39)), metric="cosine")
    with pytest.raises(IConError, match=r"^Gaussian: temperature must give a scale .* representable in "
                                        r"torch\.float32"):
        tiny(x)


# ------------------------------------------------------------------ the last guard: a NaN row is an error

def test_a_nan_divergence_raises_instead_of_returning_nan():
    def broken(log_p, log_q):
        return (log_p.exp() * (log_p - log_q)).sum(1) * math.nan

    loss = ICon(SameLabel(), Gaussian(sigma=1.0), divergence=broken)
    with pytest.raises(IConError, match=r"^ICon: the divergence must be a number for every anchor, but it is "
                                        r"NaN for anchors \[0, 1, 2, 3, 4, 5, 6, 7\] \(8 of 8\)"):
        loss(_randn(8, 3, seed=8), LABELS)


def test_float32_z_with_float64_candidates_computes_in_float64():
    z, w = _randn(6, 4, seed=9), _randn(3, 4, seed=10)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    for build in (methods.harmonic_loss, methods.cross_entropy):
        expected = build(3)(z, labels, w)
        torch.testing.assert_close(build(3)(z.float(), labels, w), expected, rtol=1e-6, atol=0)
