"""Oracle tests for the contrastive methods: SimCLR (NT-Xent), SupCon (L_out) and CLIP.

Oracles: pytorch-metric-learning's ``NTXentLoss`` and ``SupConLoss``, ``F.cross_entropy`` on
explicitly built cosine logits, and (when installed) open_clip's ``ClipLoss``. Values and
gradients are compared in float64.

Reductions (methods.md sections 0, 1.2, 1.6, 1.7, 7): NT-Xent and SupCon are means over the 2B
views (pml drops SupCon anchors without a positive, and so does ``methods.supcon``); CLIP is the
average of its two directions, which is the mean over the 2N anchors.
"""

import math

import pytest
import torch
import torch.nn.functional as F

from icontorch import methods

losses = pytest.importorskip("pytorch_metric_learning.losses")


pytestmark = pytest.mark.usefixtures("float64_default")


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


# ------------------------------------------------------------------------- InfoNCE (k positives)

@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_infonce(temperature):
    # Three views per item: k = 2 positives per anchor. Oracle: pml SupConLoss with the item ids
    # as labels (L_out, the mean over positives of -log q); pml's NTXentLoss would be the N-pair
    # form, a different loss (methods.md section 1.6).
    B, d = 5, 4
    ids = torch.arange(B).repeat(3)
    z = _randn(3 * B, d, seed=20)
    loss = methods.infonce(temperature)
    _assert_same(_value_and_grads(lambda x: loss(x, target=ids), z),
                 _value_and_grads(lambda x: losses.SupConLoss(temperature=temperature)(x, ids), z))
    # CPC form: per anchor one positive among N candidates (its own set), at a random position.
    n, N = 6, 5
    anchor = _randn(n, d, seed=21)
    cand = _randn(n, N, d, seed=22)
    where = torch.randint(0, N, (n,), generator=torch.Generator().manual_seed(23))
    tc = torch.full((n, N), -1)
    tc[torch.arange(n), where] = torch.arange(n)

    def cpc(a, c):
        logits = torch.einsum("nd,nmd->nm", F.normalize(a, dim=1), F.normalize(c, dim=2)) / temperature
        return F.cross_entropy(logits, where)

    _assert_same(_value_and_grads(lambda a, c: loss(a, target=torch.arange(n), candidates=c,
                                                    target_candidates=tc), anchor, cand),
                 _value_and_grads(cpc, anchor, cand))


# ------------------------------------------------------------------------------------ MoCo v3 / v2

def _moco_ctr(q, k, temperature):
    """moco-v3's ctr(q, k): CE over q . k^T / T with the diagonal as labels, times 2T."""
    logits = F.normalize(q, dim=1) @ F.normalize(k, dim=1).T / temperature
    return F.cross_entropy(logits, torch.arange(q.shape[0])) * (2 * temperature)


@pytest.mark.parametrize("temperature", [0.2, 1.0])
def test_mocov3(temperature):
    B, d = 7, 5
    q1, q2 = _randn(B, d, seed=24), _randn(B, d, seed=25)
    k1, k2 = _randn(B, d, seed=26), _randn(B, d, seed=27)        # momentum-encoder keys: no gradient
    ids = torch.arange(B)
    loss = methods.mocov3(temperature)

    def ours(a, b):
        return 2 * temperature * (loss(a, target=ids, candidates=k2, target_candidates=ids)
                                  + loss(b, target=ids, candidates=k1, target_candidates=ids))

    _assert_same(_value_and_grads(ours, q1, q2),
                 _value_and_grads(lambda a, b: _moco_ctr(a, k2, temperature) + _moco_ctr(b, k1, temperature),
                                  q1, q2))
    # MoCo v1/v2: a queue of K older keys as extra candidates, ids that match no query;
    # the original's logits are [q . k+, q . queue] / T with label 0.
    K = 11
    queue = F.normalize(_randn(K, d, seed=28), dim=1)
    cand = torch.cat([k1, queue])
    tc = torch.cat([ids, -1 - torch.arange(K)])

    def moco_v2(q):
        qn, kn = F.normalize(q, dim=1), F.normalize(k1, dim=1)
        logits = torch.cat([(qn * kn).sum(1, keepdim=True), qn @ queue.T], 1) / temperature
        return F.cross_entropy(logits, torch.zeros(B, dtype=torch.long))

    # The candidate sets differ (v1/v2 sees only its own key among the batch's keys), so compare
    # with per-anchor candidates: own key + queue.
    per_anchor = torch.cat([k1[:, None, :], queue.expand(B, K, d)], 1)
    tc_per_anchor = torch.cat([ids[:, None], (-1 - torch.arange(K)).expand(B, K)], 1)
    _assert_same(_value_and_grads(lambda q: loss(q, target=ids, candidates=per_anchor,
                                                 target_candidates=tc_per_anchor), q1),
                 _value_and_grads(moco_v2, q1))
    # Shared candidates (batch keys + queue): MoCo v3's in-batch negatives plus the queue.
    shared = loss(q1, target=ids, candidates=cand, target_candidates=tc)
    qn = F.normalize(q1, dim=1)
    ref = F.cross_entropy(qn @ F.normalize(cand, dim=1).T / temperature, ids)
    torch.testing.assert_close(shared, ref, rtol=0, atol=1e-12)


# ------------------------------------------------------------------------------ X-Sample, LGSimCLR

@pytest.mark.parametrize("temperature, target_temperature", [(0.1, 0.1), (0.5, 0.2), (1.0, 1.0)])
def test_x_sample_cl(temperature, target_temperature):
    n, d = 10, 4
    f, g = _randn(n, d, seed=29), _randn(n, 6, seed=30)
    eye = torch.eye(n, dtype=torch.bool)

    def reference(x):
        # Soft-target cross-entropy (torch's probability targets); self gets a large negative
        # logit rather than -inf, so that 0 * log 0 stays 0 in torch's formula.
        gn, xn = F.normalize(g, dim=1), F.normalize(x, dim=1)
        target = torch.softmax((gn @ gn.T / target_temperature).masked_fill(eye, -math.inf), 1)
        logits = (xn @ xn.T / temperature).masked_fill(eye, -1e6)
        return F.cross_entropy(logits, target)

    _assert_same(_value_and_grads(lambda x: methods.x_sample_cl(temperature, target_temperature)(x, target=g), f),
                 _value_and_grads(reference, f))


@pytest.mark.parametrize("k", [1, 3])
def test_lgsimclr(k):
    from sklearn.neighbors import NearestNeighbors

    n, d, temperature = 12, 4, 0.2
    f, g = _randn(n, d, seed=31), _randn(n, 8, seed=32)        # g: language embeddings
    # scikit-learn's cosine neighbours of the captions (the first is the point itself).
    neighbours = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(g.numpy()).kneighbors(
        g.numpy(), return_distance=False)[:, 1:]
    eye = torch.eye(n, dtype=torch.bool)

    def reference(x):
        xn = F.normalize(x, dim=1)
        log_q = torch.log_softmax((xn @ xn.T / temperature).masked_fill(eye, -math.inf), 1)
        return -log_q.gather(1, torch.tensor(neighbours)).mean()

    _assert_same(_value_and_grads(lambda x: methods.lgsimclr(temperature, n_neighbors=k)(x, target=g), f),
                 _value_and_grads(reference, f))


# -------------------------------------------------------------------------- t-SimCNE and t-SimCLR

def _infonce_cauchy(features):
    """t-SimCNE's InfoNCECauchy (temperature 1), written from the paper's formula."""
    b = features.shape[0] // 2
    a, c = features[:b], features[b:]
    sim_aa = 1 / (1 + torch.cdist(a, a).square())
    sim_bb = 1 / (1 + torch.cdist(c, c).square())
    sim_ab = 1 / (1 + torch.cdist(a, c).square())
    alignment = sim_ab.diagonal().log().mean()
    eye = torch.eye(b, dtype=torch.bool)
    sim_aa, sim_bb = sim_aa.masked_fill(eye, 0.0), sim_bb.masked_fill(eye, 0.0)
    uniformity = (torch.hstack((sim_ab.T, sim_bb)).sum(1).log().mean()
                  + torch.hstack((sim_aa, sim_ab)).sum(1).log().mean())
    return -(alignment - uniformity / 2)


def test_tsimcne():
    B = 9
    z = 3 * _randn(2 * B, 2, seed=33)                            # a 2-D output, as t-SimCNE's
    ids = torch.arange(B).repeat(2)
    _assert_same(_value_and_grads(lambda x: methods.tsimcne()(x, target=ids), z),
                 _value_and_grads(_infonce_cauchy, z))


@pytest.mark.parametrize("dof", [1.0, 5.0, 30.0])
def test_tsimclr(dof):
    B, d = 6, 8
    z = _randn(2 * B, d, seed=34)
    ids = torch.arange(B).repeat(2)
    n = 2 * B
    eye = torch.eye(n, dtype=torch.bool)
    partner = (torch.arange(n) + B) % n

    def reference(x):
        d2 = torch.cdist(x, x).square()
        logits = (-(dof + 1) / 2 * torch.log1p(d2 / dof)).masked_fill(eye, -math.inf)
        return F.cross_entropy(logits, partner)

    _assert_same(_value_and_grads(lambda x: methods.tsimclr(dof)(x, target=ids), z),
                 _value_and_grads(reference, z))
    if dof == 1.0:                                                # the Cauchy case is t-SimCNE
        torch.testing.assert_close(methods.tsimclr(1.0)(z, target=ids), _infonce_cauchy(z), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------------------------- CMC

@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_cmc(temperature):
    # Memory banks of both views (unit rows); each anchor scores its own entry of the other view's
    # bank and K entries drawn with replacement (which may include its own index: a negative).
    N, K, d = 20, 6, 5
    n = 8
    bank_l = F.normalize(_randn(N, d, seed=35), dim=1)
    bank_ab = F.normalize(_randn(N, d, seed=36), dim=1)
    idx = torch.randperm(N, generator=torch.Generator().manual_seed(37))[:n]
    draw = torch.randint(0, N, (n, K), generator=torch.Generator().manual_seed(38))
    draw[0, 0] = idx[0]                                           # a re-drawn own index
    lum, ab = F.normalize(_randn(n, d, seed=39), dim=1), F.normalize(_randn(n, d, seed=40), dim=1)

    def reference(l_, ab_):
        # CMC's softmax branch: logits [x . m[idx], x . m[draw]] / T, label 0, CE_l + CE_ab.
        w_ab = torch.cat([bank_ab[idx][:, None], bank_ab[draw]], 1)
        w_l = torch.cat([bank_l[idx][:, None], bank_l[draw]], 1)
        out_l = torch.einsum("nmd,nd->nm", w_ab, l_) / temperature
        out_ab = torch.einsum("nmd,nd->nm", w_l, ab_) / temperature
        zeros = torch.zeros(n, dtype=torch.long)
        return F.cross_entropy(out_l, zeros) + F.cross_entropy(out_ab, zeros)

    loss = methods.cmc(temperature)
    own = torch.arange(n)
    tc = torch.cat([own[:, None], torch.full((n, K), -1)], 1)

    def ours(l_, ab_):
        cand_ab = torch.cat([bank_ab[idx][:, None], bank_ab[draw]], 1)
        cand_l = torch.cat([bank_l[idx][:, None], bank_l[draw]], 1)
        return (loss(l_, target=own, candidates=cand_ab, target_candidates=tc)
                + loss(ab_, target=own, candidates=cand_l, target_candidates=tc))

    # Inputs are unit vectors (CMC normalises in the network), so values and gradients agree.
    value_ours, _ = _value_and_grads(ours, lum, ab)
    value_ref, _ = _value_and_grads(reference, lum, ab)
    torch.testing.assert_close(value_ours, value_ref, rtol=0, atol=1e-12)
