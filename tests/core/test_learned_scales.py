"""A learned temperature, sigma, scale or bias stays a parameter and gets the right gradient.

Oracles: hand-written float64 losses (CLIP with ``F.cross_entropy``, SigLIP with
``F.logsigmoid``, SupCon-style KL with ``log_softmax``) on the same inputs, compared in value and
in the gradients with respect to the learned scalars and the embeddings, on the fused dense path,
the tiled path and the composed path alike.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import icontorch as ic
from icontorch import IConError
from icontorch.neighborhoods import Logits, SigmoidLinks

F64 = torch.float64


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _close(ours, ref):
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def _value_and_grads(fn, leaves):
    value = fn()
    return [value.detach(), *torch.autograd.grad(value, leaves)]


def _clip_reference(image, text, ids_image, ids_text, temperature):
    logits = F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T / temperature
    to_text = (ids_image[:, None] == ids_text[None, :]).to(F64).argmax(1)
    to_image = (ids_text[:, None] == ids_image[None, :]).to(F64).argmax(1)
    return (F.cross_entropy(logits, to_text) + F.cross_entropy(logits.T, to_image)) / 2


@pytest.mark.parametrize("tile_size", ["auto", None, 3, "composed"])
def test_clip_learns_its_temperature(tile_size):
    n, d = 9, 5
    image, text = _randn(n, d, seed=1).requires_grad_(), _randn(n, d, seed=2).requires_grad_()
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(3))
    temperature = nn.Parameter(torch.tensor(0.07, dtype=F64))
    clip = ic.methods.clip(temperature=temperature)
    assert clip.q.temperature is temperature
    assert any(param is temperature for param in clip.parameters())
    p = ic.FromCallable(clip.p) if tile_size == "composed" else clip.p
    loss = ic.ICon(p, clip.q, divergence="cross_entropy", symmetric=True,
                   tile_size="auto" if tile_size == "composed" else tile_size)
    assert (loss.structured_form()[0] is None) == (tile_size == "composed")
    leaves = [temperature, image, text]
    ours = _value_and_grads(lambda: loss(image, ids, text, ids), leaves)
    ref = _value_and_grads(lambda: _clip_reference(image, text, ids, ids, temperature), leaves)
    _close(ours, ref)
    if tile_size == "auto":  # the method object itself, unchanged
        _close(_value_and_grads(lambda: clip(image, ids, text, ids), leaves), ref)


def _supcon_kl_reference(z, labels, sigma):
    d = torch.cdist(z, z).pow(2)
    logits = (-d / (2 * sigma ** 2)).masked_fill(torch.eye(len(z), dtype=torch.bool), float("-inf"))
    log_q = torch.log_softmax(logits, 1)
    same = (labels[:, None] == labels[None, :]).fill_diagonal_(False)
    p = same.to(F64) / same.sum(1, keepdim=True)
    return (p * (torch.where(same, p, 1.0).log() - log_q.masked_fill(~same, 0.0))).sum(1).mean()


@pytest.mark.parametrize("tile_size", [None, 4, "composed"])
def test_gaussian_learns_its_sigma_on_squared_distances(tile_size):
    z = _randn(11, 3, seed=4).requires_grad_()
    labels = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2, 0, 1])
    sigma = nn.Parameter(torch.tensor(1.3, dtype=F64))
    q = ic.Gaussian(sigma=sigma)
    p = ic.FromCallable(ic.SameLabel(dtype=F64)) if tile_size == "composed" else ic.SameLabel()
    loss = ic.ICon(p, q, tile_size=None if tile_size == "composed" else tile_size)
    ours = _value_and_grads(lambda: loss(z, labels), [sigma, z])
    ref = _value_and_grads(lambda: _supcon_kl_reference(z, labels, sigma), [sigma, z])
    _close(ours, ref)


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(),
                                                                 reason="no CUDA device"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("metric", ["dot", "cosine", "squared_euclidean"])
def test_a_debiased_learned_kernel_matches_the_composed_path(metric, device):
    """beta-mixed q on the engine (second pass) against autograd through the dense matrices."""
    z = _randn(10, 4, seed=5).to(device).requires_grad_()
    items = torch.arange(5).repeat(2).to(device)
    learned = nn.Parameter(torch.tensor(0.8, dtype=F64))
    q = ic.mix_uniform(ic.Gaussian(temperature=learned, metric=metric), 0.2).to(device)
    temperature = q.base.temperature
    assert isinstance(temperature, nn.Parameter) and temperature.device.type == device
    p = ic.mix_uniform(ic.PositivePairs(dtype=F64), 0.1)
    ref = _value_and_grads(lambda: ic.ICon(ic.FromCallable(p), q)(z, items), [temperature, z])
    for tile_size in (None, 3):
        loss = ic.ICon(p, q, tile_size=tile_size)
        _close(_value_and_grads(lambda: loss(z, items), [temperature, z]), ref)


def test_a_float32_temperature_trains_in_float32():
    z = torch.randn(8, 4, generator=torch.Generator().manual_seed(6)).requires_grad_()
    temperature = nn.Parameter(torch.tensor(0.5))
    loss = ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=temperature, metric="cosine"))
    optimiser = torch.optim.SGD([temperature], lr=0.01)
    before = temperature.item()
    loss(z, torch.arange(4).repeat(2)).backward()
    assert temperature.grad is not None and temperature.grad.dtype == torch.float32
    optimiser.step()
    assert temperature.item() != before


def _siglip_reference(image, text, ids_image, ids_text, scale, bias):
    logits = scale * F.normalize(image, dim=-1) @ F.normalize(text, dim=-1).T + bias
    sign = 2.0 * (ids_image[:, None] == ids_text[None, :]).to(F64) - 1.0
    return -F.logsigmoid(sign * logits).mean()


def test_siglip_learns_its_scale_and_bias():
    n, d = 7, 4
    image, text = _randn(n, d, seed=7).requires_grad_(), _randn(n, d, seed=8).requires_grad_()
    ids = torch.randperm(n, generator=torch.Generator().manual_seed(9))
    scale = nn.Parameter(torch.tensor(10.0, dtype=F64))
    bias = nn.Parameter(torch.tensor(-10.0, dtype=F64))
    siglip = ic.methods.siglip(scale=scale, bias=bias)
    assert siglip.q.scale is scale and siglip.q.bias is bias
    assert {id(p) for p in siglip.parameters()} == {id(scale), id(bias)}
    leaves = [scale, bias, image, text]
    ours = _value_and_grads(lambda: siglip(image, ids, text, ids), leaves)
    ref = _value_and_grads(lambda: _siglip_reference(image, text, ids, ids, scale, bias), leaves)
    _close(ours, ref)


def test_learned_scalars_print_as_numbers():
    q = ic.Gaussian(temperature=nn.Parameter(torch.tensor(0.07)), metric="cosine")
    assert repr(q) == "Gaussian(temperature=tensor(0.07), metric='cosine', include_self=False)"
    links = SigmoidLinks(scale=nn.Parameter(torch.tensor(10.0)), bias=-10)
    assert "scale=tensor(10), bias=-10.0" in repr(links)


@pytest.mark.parametrize("make, message", [
    (lambda: ic.Gaussian(temperature=nn.Parameter(torch.tensor(-0.1, dtype=F64))),
     r"^Gaussian: temperature must be positive and finite; got -0\.1\.$"),
    (lambda: ic.Gaussian(sigma=torch.tensor(float("nan"))),
     r"^Gaussian: sigma must be positive and finite; got nan\.$"),
    (lambda: ic.Gaussian(temperature=torch.tensor([0.1, 0.2])),
     r"^Gaussian: temperature must be positive and finite \(a number, or a one-element floating "
     r"tensor\); got tensor of shape \(2,\) and dtype torch\.float32\.$"),
    (lambda: ic.Gaussian(temperature=torch.tensor(1)),
     r"^Gaussian: temperature must be positive and finite \(a number, or a one-element floating "
     r"tensor\); got tensor of shape \(\) and dtype torch\.int64\.$"),
    (lambda: SigmoidLinks(scale=torch.tensor(0.0)), r"^SigmoidLinks: scale must be positive and finite; got 0\.0\.$"),
    (lambda: SigmoidLinks(bias=torch.tensor(float("inf"))), r"^SigmoidLinks: bias must be finite; got inf\.$"),
    (lambda: SigmoidLinks(bias=True), r"^SigmoidLinks: bias must be a finite number; got True\.$"),
    (lambda: Logits(temperature=torch.tensor(-1.0)), r"^Logits: temperature must be positive and finite"),
])
def test_learned_scalars_are_checked_at_construction(make, message):
    with pytest.raises(IConError, match=message):
        make()
