"""Encoders: shapes, parameter counts, gradients, and an IConError for every bad input."""

import pytest
import torch

import icontorch
from icontorch import IConError
from icontorch.encoders import ContrastiveEncoder, ConvNet28, ProjectionHead, ResNetSmall, contrastive_encoder


def _n_params(m: torch.nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_convnet28_shapes_and_parameter_count():
    torch.manual_seed(0)
    net = ConvNet28(in_channels=1, feature_dim=128, width=8)
    h = net(torch.rand(5, 1, 28, 28))
    assert h.shape == (5, 128) and (h >= 0).all()           # ends in a ReLU
    # Closed form: convs (with BN: no conv bias, BN weight + bias), then the 4w * 3 * 3 -> d linear.
    w = 8
    convs = 9 * (1 * w + w * 2 * w + 2 * w * 4 * w) + 2 * (w + 2 * w + 4 * w)
    assert _n_params(net) == convs + (4 * w * 9) * 128 + 128
    plain = ConvNet28(1, 128, 8, batch_norm=False)
    assert _n_params(plain) == 9 * (w + 2 * w * w + 8 * w * w) + 7 * w + 4 * w * 9 * 128 + 128
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 128)    # digits (8 x 8) work too
    assert "width=8" in repr(net)


def test_resnet_small_shapes_and_parameter_count():
    torch.manual_seed(0)
    net = ResNetSmall(in_channels=3, feature_dim=64, width=8, blocks=(1, 1))
    assert net(torch.rand(3, 3, 32, 32)).shape == (3, 64)
    assert net(torch.rand(2, 3, 40, 24)).shape == (2, 64)   # any size above the minimum
    w = 8
    stem = 27 * w + 2 * w
    stage1 = 2 * (9 * w * w + 2 * w)
    stage2 = 9 * w * 2 * w + 9 * 2 * w * 2 * w + 2 * 2 * (2 * w) + (w * 2 * w + 2 * 2 * w)  # + 1x1 shortcut
    assert _n_params(net) == stem + stage1 + stage2 + 2 * w * 64 + 64
    deep = ResNetSmall(3, 512, 64, (2, 2, 2, 2))            # ResNet-18's body plus a 512 -> 512 layer
    assert abs(_n_params(deep) - (11_168_832 + 512 * 512 + 512)) < 20_000
    assert "blocks=(2, 2, 2, 2)" in repr(deep)


@pytest.mark.parametrize("make, shape", [(lambda cl: ConvNet28(2, 16, 4, channels_last=cl), (2, 28, 28)),
                                         (lambda cl: ResNetSmall(3, 16, 4, (1, 2), channels_last=cl), (3, 16, 16))])
def test_channels_last_is_only_a_layout(make, shape, float64_default):
    torch.manual_seed(0)
    fast, plain = make(True), make(False)
    plain.load_state_dict(fast.state_dict())
    x = torch.rand(4, *shape)
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-12)
    fast.eval()
    plain.eval()
    torch.testing.assert_close(fast(x), plain(x), rtol=1e-10, atol=1e-12)


def test_head_and_encoder():
    torch.manual_seed(0)
    head = ProjectionHead(32, 4, hidden_layer_sizes=(16,))
    assert _n_params(head) == 32 * 16 + 16 + 16 * 4 + 4
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in head.modules())
    assert "in_features=32, out_features=4, hidden_layer_sizes=(16,)" in repr(head)
    with pytest.raises(TypeError):             # the hidden sizes are keyword-only: no silent reading
        ProjectionHead(32, 16, 4)
    enc = ContrastiveEncoder(ConvNet28(1, 32, 4), head)
    x = torch.rand(6, 1, 28, 28)
    enc.eval()
    z, h = enc(x), enc.features(x)
    assert z.shape == (6, 4) and h.shape == (6, 32)
    torch.testing.assert_close(z, head(h))


def test_head_layers_follow_hidden_layer_sizes(float64_default):
    """z = W_L relu(... relu(W_1 h + b_1) ...) + b_L, written out with the head's own weights."""
    torch.manual_seed(0)
    h = torch.randn(5, 6)
    for sizes in ((), (7,), (7, 3)):
        head = ProjectionHead(6, 2, hidden_layer_sizes=sizes)
        linears = [m for m in head.modules() if isinstance(m, torch.nn.Linear)]
        assert [(m.in_features, m.out_features) for m in linears] == list(zip((6,) + sizes, sizes + (2,)))
        expected = h
        for i, m in enumerate(linears):
            expected = expected @ m.weight.T + m.bias
            if i < len(linears) - 1:
                expected = expected.clamp_min(0.0)
        torch.testing.assert_close(head(h), expected, rtol=1e-12, atol=1e-12)
    assert _n_params(ProjectionHead(6, 2, hidden_layer_sizes=())) == 6 * 2 + 2


def test_gradient_flows_to_every_parameter():
    torch.manual_seed(0)
    for enc, shape in [(contrastive_encoder((1, 28, 28), 32, 8, width=4), (1, 28, 28)),
                       (contrastive_encoder((3, 32, 32), 32, 8, width=4), (3, 32, 32))]:
        x = torch.rand(8, *shape)
        loss = icontorch.methods.simclr(0.5)(enc(x), torch.arange(4).repeat(2))
        loss.backward()
        for name, p in enc.named_parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_contrastive_encoder_picks_backbone():
    small = contrastive_encoder((1, 28, 28))
    assert isinstance(small.backbone, ConvNet28) and small.backbone.width == 16
    assert small.head.in_features == 512 and small.head.hidden_layer_sizes == (512,)
    assert small.head.out_features == 64
    assert isinstance(contrastive_encoder((1, 8, 8), 64, 8).backbone, ConvNet28)
    big = contrastive_encoder((3, 32, 32), feature_dim=256, out_features=32)
    assert isinstance(big.backbone, ResNetSmall) and big.backbone.width == 32
    assert big.features(torch.rand(2, 3, 32, 32)).shape == (2, 256)
    assert contrastive_encoder((3, 32, 32), width=8).backbone.width == 8


@pytest.mark.parametrize("make, x, match", [
    (lambda: ConvNet28(1, 16, 4), torch.rand(2, 28, 28),
     r"ConvNet28: x must have shape \(B, 1, H, W\) with H, W >= 8; got tensor of shape \(2, 28, 28\)"),
    (lambda: ConvNet28(1, 16, 4), torch.rand(2, 3, 28, 28),
     r"ConvNet28: x must have shape \(B, 1, H, W\).*got tensor of shape \(2, 3, 28, 28\)"),
    (lambda: ConvNet28(1, 16, 4), torch.rand(2, 1, 6, 28),
     r"ConvNet28: x must have shape \(B, 1, H, W\) with H, W >= 8; got tensor of shape \(2, 1, 6, 28\)"),
    (lambda: ConvNet28(1, 16, 4), torch.zeros(2, 1, 28, 28, dtype=torch.uint8),
     r"ConvNet28: x must be a floating-point tensor"),
    (lambda: ConvNet28(1, 16, 4), [[0.0]], r"ConvNet28: x must have shape .*got 'list'"),
    (lambda: ResNetSmall(3, 16, 4), torch.rand(2, 1, 32, 32),
     r"ResNetSmall: x must have shape \(B, 3, H, W\) with H, W >= 8; got tensor of shape \(2, 1, 32, 32\)"),
    (lambda: ResNetSmall(3, 16, 4), torch.rand(2, 3, 4, 4), r"ResNetSmall: x must have shape .*\(2, 3, 4, 4\)"),
    (lambda: ResNetSmall(3, 16, 4), torch.rand(3, 32, 32), r"ResNetSmall: x must have shape .*\(3, 32, 32\)"),
    (lambda: ProjectionHead(8, 2), torch.rand(2, 7), r"ProjectionHead: h must be a floating tensor of shape \(B, 8\)"),
])
def test_wrong_image_shape_gets_iconerror(make, x, match):
    net = make()
    with pytest.raises(IConError, match=match):
        net(x)
    if not isinstance(net, ProjectionHead):                 # the same pin through the encoder
        enc = ContrastiveEncoder(net, ProjectionHead(16, 2, hidden_layer_sizes=(16,)))
        with pytest.raises(IConError, match=match):
            enc(x)
        with pytest.raises(IConError, match=match):
            enc.features(x)


@pytest.mark.parametrize("make, match", [
    (lambda: ConvNet28(in_channels=0), r"ConvNet28: in_channels must be an integer >= 1; got 0"),
    (lambda: ConvNet28(feature_dim=2.5), r"feature_dim must be an integer >= 1; got 2\.5"),
    (lambda: ConvNet28(width=0), r"width must be an integer >= 1; got 0"),
    (lambda: ConvNet28(batch_norm="yes"), r"batch_norm must be True or False; got 'yes'"),
    (lambda: ResNetSmall(channels_last=1), r"channels_last must be True or False; got 1"),
    (lambda: ResNetSmall(blocks=()), r"blocks must be a non-empty sequence"),
    (lambda: ResNetSmall(blocks=(1, 0)), r"blocks must be an integer >= 1; got 0"),
    (lambda: ResNetSmall(width=-1), r"width must be an integer >= 1; got -1"),
    (lambda: ProjectionHead(out_features=0), r"^ProjectionHead: out_features must be an integer >= 1; got 0\.$"),
    (lambda: ProjectionHead(in_features=-2), r"^ProjectionHead: in_features must be an integer >= 1; got -2\.$"),
    (lambda: ProjectionHead(hidden_layer_sizes=(8, 0)),
     r"^ProjectionHead: hidden_layer_sizes must be a tuple of integers >= 1 \(\(\) for a linear map\); "
     r"got \(8, 0\)\.$"),
    (lambda: ProjectionHead(hidden_layer_sizes=8),
     r"^ProjectionHead: hidden_layer_sizes must be a tuple of integers >= 1 \(\(\) for a linear map\); got 8\.$"),
    (lambda: ProjectionHead(hidden_layer_sizes="mlp"), r"hidden_layer_sizes must be a tuple of integers"),
    (lambda: ContrastiveEncoder(lambda x: x, ProjectionHead()),
     r"backbone must be a torch\.nn\.Module; got 'function'"),
    (lambda: ContrastiveEncoder(ConvNet28(), "head"), r"head must be a torch\.nn\.Module; got 'str'"),
    (lambda: contrastive_encoder((28, 28)), r"image_shape must be a triple \(C, H, W\)"),
    (lambda: contrastive_encoder((1, 4, 4)), r"image_shape must have H, W >= 8; got \(1, 4, 4\)"),
    (lambda: contrastive_encoder((1, 28, 28), width=0), r"width must be an integer >= 1; got 0"),
    (lambda: contrastive_encoder((1, 28, 28), out_features=0),
     r"^contrastive_encoder: out_features must be an integer >= 1; got 0\.$"),
])
def test_bad_parameters(make, match):
    with pytest.raises(IConError, match=match):
        make()
