"""Mixed precision: under bf16 / fp16 autocast the loss runs in float32 inside and stays finite.

The model (a linear map) runs under CPU autocast and hands the loss bf16 / fp16 embeddings. The
loss must be finite with finite gradients down to temperature 0.01, on every path (fused,
tiled, composed), and must equal the float32 loss of the same low-precision embeddings: the
log-sum-exp is not computed in bf16 / fp16.
"""

from __future__ import annotations

import pytest
import torch

import icontorch as ic

TEMPERATURE = 0.01
B, D_IN, D = 24, 16, 8


def _batch():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2 * B, D_IN, generator=g)
    text = torch.randn(2 * B, D_IN, generator=g)
    model = torch.nn.Linear(D_IN, D)
    with torch.no_grad():
        model.weight.copy_(torch.randn(D, D_IN, generator=g))
        model.bias.zero_()
    return x, text, model


def _losses(method, tile_size):
    temperature = TEMPERATURE
    p, q = {"simclr": (ic.PositivePairs(), ic.Gaussian(temperature=temperature, metric="cosine")),
            "supcon": (ic.SameLabel(), ic.Gaussian(temperature=temperature, metric="cosine")),
            "clip": (ic.CrossModal(), ic.Gaussian(temperature=temperature, metric="cosine")),
            "debiased_student_t": (ic.mix_uniform(ic.KNN(3), 0.2),
                                   ic.mix_uniform(ic.StudentT(1.0), 0.1))}[method]
    if tile_size == "composed":
        p, tile_size = ic.FromCallable(p), None  # hides the structure: the composed (n, m) path
    return ic.ICon(p, q, divergence="cross_entropy", symmetric=(method == "clip"), tile_size=tile_size)


def _call(loss, method, z, text_z, x):
    if method == "simclr":
        return loss(z, torch.arange(B).repeat(2))
    if method == "supcon":
        return loss(z, torch.arange(2 * B) % 5)
    if method == "clip":
        ids = torch.arange(2 * B)
        return loss(z, ids, text_z, ids)
    return loss(z, x)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("tile_size", [None, 10, "composed"])
@pytest.mark.parametrize("method", ["simclr", "supcon", "clip", "debiased_student_t"])
def test_autocast_is_finite_and_float32_inside(method, tile_size, dtype):
    x, text, model = _batch()
    loss = _losses(method, tile_size)
    with torch.autocast(device_type="cpu", dtype=dtype):
        z, text_z = model(x), model(text)
        assert z.dtype == dtype
        value = _call(loss, method, z, text_z, x)
    value.backward()
    assert value.dtype == torch.float32 and torch.isfinite(value)
    for param in model.parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all()

    # The same low-precision embeddings, given to the loss in float32 outside autocast.
    z32 = z.detach().float().requires_grad_()
    text32 = text_z.detach().float().requires_grad_()
    reference = _call(loss, method, z32, text32, x)
    torch.testing.assert_close(value.detach(), reference.detach(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_embeddings_without_autocast(dtype):
    """Embeddings stored in bf16 / fp16: float32 inside, gradient returned in their dtype."""
    g = torch.Generator().manual_seed(1)
    z = torch.randn(2 * B, D, generator=g).to(dtype).requires_grad_()
    items = torch.arange(B).repeat(2)
    for tile_size in (None, 7):
        loss = ic.methods.simclr(TEMPERATURE)
        loss.tile_size = tile_size
        value = loss(z, items)
        (grad,) = torch.autograd.grad(value, z)
        assert grad.dtype == dtype and torch.isfinite(grad).all()
        reference = loss(z.detach().float(), items)
        torch.testing.assert_close(value, reference, rtol=1e-6, atol=1e-6)
