"""Oracle tests for the contrastive methods: SimCLR (NT-Xent), SupCon (L_out) and CLIP.

Oracles: pytorch-metric-learning's ``NTXentLoss`` and ``SupConLoss``, ``F.cross_entropy`` on
explicitly built cosine logits, and (when installed) open_clip's ``ClipLoss``. Values and
gradients are compared in float64.

Reductions (methods.md sections 0, 1.2, 1.6, 1.7, 7): NT-Xent and SupCon are means over the 2B
views (pml drops SupCon anchors without a positive, and so does ``methods.supcon``); CLIP is the
average of its two directions, which is the mean over the 2N anchors.
"""

import pytest
import torch
import torch.nn.functional as F

from icontorch import methods

losses = pytest.importorskip("pytorch_metric_learning.losses")


@pytest.fixture(autouse=True)
def float64_default():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _value_and_grads(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    value = fn(*leaves)
    grads = torch.autograd.grad(value, leaves)
    return value.detach(), grads


def _assert_same(a, b, atol=1e-12):
    value_a, grads_a = a
    value_b, grads_b = b
    torch.testing.assert_close(value_a, value_b, rtol=0, atol=atol)
    for g_a, g_b in zip(grads_a, grads_b):
        torch.testing.assert_close(g_a, g_b, rtol=0, atol=atol)


def _nt_xent_reference(z, temperature):
    """NT-Xent by hand: 2B x 2B cosine logits, self masked, the other view as the target."""
    two_b = z.shape[0]
    b = two_b // 2
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T) / temperature
    logits = logits.masked_fill(torch.eye(two_b, dtype=torch.bool), float("-inf"))
    partner = (torch.arange(two_b) + b) % two_b
    return F.cross_entropy(logits, partner, reduction="none")


# ------------------------------------------------------------------------------------------ SimCLR

@pytest.mark.parametrize("temperature", [0.05, 0.1, 0.5, 1.0])
def test_simclr(temperature):
    B, d = 8, 6
    z1, z2 = _randn(B, d, seed=0), _randn(B, d, seed=1)
    z = torch.cat([z1, z2])
    ids = torch.cat([torch.arange(B), torch.arange(B)])
    loss = methods.simclr(temperature)

    ours = _value_and_grads(lambda x: loss(x, target=ids), z)
    pml = _value_and_grads(lambda x: losses.NTXentLoss(temperature=temperature)(x, ids), z)
    by_hand = _value_and_grads(lambda x: _nt_xent_reference(x, temperature).mean(), z)
    _assert_same(ours, pml)
    _assert_same(ours, by_hand)

    # Per anchor as well, and the value of the google-research reduction (sum of two view means).
    per_anchor = methods.simclr(temperature)
    per_anchor.reduction = "none"
    torch.testing.assert_close(per_anchor(z, target=ids), _nt_xent_reference(z, temperature),
                               rtol=0, atol=1e-12)
    google = (_nt_xent_reference(z, temperature)[:B].mean()
              + _nt_xent_reference(z, temperature)[B:].mean())
    torch.testing.assert_close(2 * loss(z, target=ids), google, rtol=0, atol=1e-12)

    # The views may be given in any order as long as the ids follow them.
    perm = torch.randperm(2 * B, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(loss(z[perm], target=ids[perm]), ours[0], rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------------------ SupCon

def _supcon_reference(z, labels, temperature):
    """SupCon L_out by hand: per anchor, the mean over its positives of -log softmax_{a != i}."""
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T) / temperature
    eye = torch.eye(n, dtype=torch.bool)
    log_q = torch.log_softmax(logits.masked_fill(eye, float("-inf")), dim=1)
    positive = (labels[:, None] == labels[None, :]) & ~eye
    count = positive.sum(1)
    per_anchor = -(log_q.masked_fill(~positive, 0.0)).sum(1) / count.clamp_min(1)
    return per_anchor, count > 0


@pytest.mark.parametrize("temperature", [0.07, 0.1, 0.5])
def test_supcon(temperature):
    d = 5
    loss = methods.supcon(temperature)

    # Two views of 6 items with 3 classes: every anchor has several positives.
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    labels = torch.cat([y, y])
    z = _randn(12, d, seed=3)
    ours = _value_and_grads(lambda x: loss(x, target=labels), z)
    pml = _value_and_grads(lambda x: losses.SupConLoss(temperature=temperature)(x, labels), z)
    by_hand = _value_and_grads(lambda x: _supcon_reference(x, labels, temperature)[0].mean(), z)
    _assert_same(ours, pml)
    _assert_same(ours, by_hand)

    # Labels 4 and 5 occur once: those anchors have no positive. pml drops them from the mean
    # (AvgNonZeroReducer), and methods.supcon skips them (skip_empty_rows=True).
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 3, 4, 5])
    z = _randn(len(labels), d, seed=4)
    ref_rows, has_positive = _supcon_reference(z, labels, temperature)
    assert has_positive.sum() == len(labels) - 2
    ours = _value_and_grads(lambda x: loss(x, target=labels), z)
    pml = _value_and_grads(lambda x: losses.SupConLoss(temperature=temperature)(x, labels), z)
    by_hand = _value_and_grads(
        lambda x: _supcon_reference(x, labels, temperature)[0][has_positive].mean(), z)
    _assert_same(ours, pml)
    _assert_same(ours, by_hand)
    # With reduction="none" the skipped anchors are NaN and the others are L_out per anchor.
    per_anchor = methods.supcon(temperature)
    per_anchor.reduction = "none"
    rows = per_anchor(z, target=labels)
    assert torch.isnan(rows[~has_positive]).all()
    torch.testing.assert_close(rows[has_positive], ref_rows[has_positive], rtol=0, atol=1e-12)

    # With the item ids as labels (one positive each), SupCon is SimCLR.
    B = 7
    ids = torch.cat([torch.arange(B), torch.arange(B)])
    z = _randn(2 * B, d, seed=5)
    torch.testing.assert_close(loss(z, target=ids), methods.simclr(temperature)(z, target=ids),
                               rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------------------- CLIP

def _clip_reference(image, text, temperature):
    logits = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / temperature
    labels = torch.arange(image.shape[0])
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


@pytest.mark.parametrize("temperature", [0.07, 0.2, 1.0])
def test_clip(temperature):
    N, d = 9, 6
    image, text = _randn(N, d, seed=6), _randn(N, d, seed=7)
    ids = torch.arange(N)
    loss = methods.clip(temperature)
    ours = _value_and_grads(
        lambda i, t: loss(i, target=ids, candidates=t, target_candidates=ids), image, text)
    ref = _value_and_grads(lambda i, t: _clip_reference(i, t, temperature), image, text)
    _assert_same(ours, ref)

    # Pairs may come in any order on either side, as long as the ids say who is paired.
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(8))
    shuffled = loss(image, target=ids, candidates=text[perm], target_candidates=ids[perm])
    torch.testing.assert_close(shuffled, ours[0], rtol=0, atol=1e-12)


def test_clip_open_clip():
    open_clip_loss = pytest.importorskip("open_clip.loss")
    N, d, temperature = 9, 6, 0.07
    image = F.normalize(_randn(N, d, seed=9), dim=1)
    text = F.normalize(_randn(N, d, seed=10), dim=1)
    ids = torch.arange(N)
    ours = _value_and_grads(
        lambda i, t: methods.clip(temperature)(i, target=ids, candidates=t, target_candidates=ids),
        image, text)
    ref = _value_and_grads(
        lambda i, t: open_clip_loss.ClipLoss()(i, t, logit_scale=torch.tensor(1.0 / temperature)),
        image, text)
    # ClipLoss expects unit vectors and does not normalise, so compare the values (the gradients
    # differ by the normalisation Jacobian, which icontorch includes).
    torch.testing.assert_close(ours[0], ref[0], rtol=0, atol=1e-12)
