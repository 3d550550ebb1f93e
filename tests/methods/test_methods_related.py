"""The seeds' related losses: I-Con forms (Kernel-InfoNCE, SwAV, DINO, SigLIP, UMAP) and the
baselines that are not I-Con losses (Chuang's debiased CL, decoupled CL, IIC, TEMI), each against
a reference written here from the original's formula (their code is not installable here:
lightly and open_clip need torchvision), in float64, with the relation to I-Con checked.
"""

import math
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pytorch_metric_learning import losses as pml_losses

from icontorch import methods
from icontorch.neighborhoods.links import umap_ab

pytestmark = pytest.mark.usefixtures("float64_default")


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _vg(fn, *tensors):
    leaves = [t.detach().clone().requires_grad_() for t in tensors]
    value = fn(*leaves)
    return value.detach(), torch.autograd.grad(value, leaves)


def _same(a, b, atol=1e-12):
    torch.testing.assert_close(a[0], b[0], rtol=0, atol=atol)
    for x, y in zip(a[1], b[1]):
        torch.testing.assert_close(x, y, rtol=0, atol=atol)


def _views(B=6, d=5, seed=0):
    z = F.normalize(_randn(2 * B, d, seed=seed), dim=1)
    return z, torch.arange(B).repeat(2)


# --------------------------------------------------------------------------------- Kernel-InfoNCE

def _gamma_loss(z, gamma, temperature, eps=0.0):
    """Kernel-InfoNCE's gamma_loss: -log(pos / (sum_{j != i} sim_ij + eps)), sim = exp(-d^gamma / t)."""
    n = z.shape[0]
    b = n // 2
    dist = torch.cdist(z, z)
    sim = torch.exp(-dist.pow(gamma) / temperature)
    neg = (sim.sum(1) - sim.diagonal()).clamp(min=1e-6 if eps else 0.0)
    pos = sim[torch.arange(n), (torch.arange(n) + b) % n]
    return -torch.log(pos / (neg + eps)).mean()


@pytest.mark.parametrize("gamma", [0.5, 1.0, 2.0])
def test_kernel_infonce(gamma):
    z, ids = _views()
    t = 0.5
    ours = float(methods.kernel_infonce(gamma, t)(z, target=ids))
    np.testing.assert_allclose(ours, float(_gamma_loss(z, gamma, t)), rtol=0, atol=1e-12)
    # With their eps = 1e-6 in the denominator the values agree to ~1e-6.
    np.testing.assert_allclose(ours, float(_gamma_loss(z, gamma, t, eps=1e-6)), rtol=0, atol=5e-6)
    if gamma == 2.0:
        # On unit vectors exp(-d^2 / t) is NT-Xent at temperature t / 2 (pml as the oracle; the
        # kernel acts on the features as given, so normalise them as Kernel-InfoNCE's head does).
        _same(_vg(lambda x: methods.kernel_infonce(2.0, t)(F.normalize(x, dim=1), target=ids), z),
              _vg(lambda x: pml_losses.NTXentLoss(temperature=t / 2)(x, ids), z))
    # "sum": lambda L_gamma + (1 - lambda) L_2 on the same features, one I-Con loss.
    lam = 0.3
    mixed = methods.kernel_infonce(gamma, t, mix="sum", weight=lam)
    _same(_vg(lambda x: mixed(x, target=ids), z),
          _vg(lambda x: lam * methods.kernel_infonce(gamma, t)(x, target=ids)
              + (1 - lam) * methods.kernel_infonce(2.0, t)(x, target=ids), z))
    np.testing.assert_allclose(float(mixed(z, target=ids)),
                               float(lam * _gamma_loss(z, gamma, t) + (1 - lam) * _gamma_loss(z, 2.0, t)),
                               rtol=0, atol=1e-12)
    # "concat": the first kernel on features [:split], the Gaussian on [split:].
    zz, _ = _views(d=8, seed=1)
    concat = methods.kernel_infonce(gamma, t, mix="concat", weight=lam, split=3)
    np.testing.assert_allclose(float(concat(zz, target=ids)),
                               float(lam * _gamma_loss(zz[:, :3], gamma, t)
                                     + (1 - lam) * _gamma_loss(zz[:, 3:], 2.0, t)), rtol=0, atol=1e-12)


# ----------------------------------------------------------------------------- SwAV, DINO (teachers)

def _sinkhorn(out, epsilon, n_iter):
    """SwAV's main_swav.py sinkhorn, plain exp (float64)."""
    Q = torch.exp(out / epsilon).T
    B, K = Q.shape[1], Q.shape[0]
    Q = Q / Q.sum()
    for _ in range(n_iter):
        Q = Q / Q.sum(1, keepdim=True) / K
        Q = Q / Q.sum(0, keepdim=True) / B
    return (Q * B).T


def test_swav():
    B, d, K, t, eps = 8, 5, 4, 0.1, 0.05
    z0, z1 = F.normalize(_randn(B, d, seed=2), dim=1), F.normalize(_randn(B, d, seed=3), dim=1)
    C = F.normalize(_randn(K, d, seed=4), dim=1)
    s0, s1 = z0 @ C.T, z1 @ C.T
    loss = methods.swav(t, eps, 3)
    torch.testing.assert_close(loss.p(s0).exp(), _sinkhorn(s0, eps, 3), rtol=0, atol=1e-12)
    ours = 0.5 * (loss(z1, target=s0, candidates=C) + loss(z0, target=s1, candidates=C))
    codes0, codes1 = _sinkhorn(s0, eps, 3), _sinkhorn(s1, eps, 3)
    # swapped prediction: crop 1 predicts the codes of crop 0 and vice versa, averaged
    ref = 0.5 * (-(codes0 * torch.log_softmax(s1 / t, 1)).sum(1).mean()
                 - (codes1 * torch.log_softmax(s0 / t, 1)).sum(1).mean())
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-12)
    # The codes carry no gradient.
    s0g = s0.clone().requires_grad_()
    assert not loss.p(s0g).requires_grad


def test_dino():
    B, K, t_s, t_t = 6, 7, 0.1, 0.04
    s0, s1 = _randn(B, K, seed=5), _randn(B, K, seed=6)
    t0, t1 = _randn(B, K, seed=7), _randn(B, K, seed=8)
    center = 0.1 * _randn(1, K, seed=9)

    def dino_loss(a, b):
        # main_dino.py DINOLoss with two global crops: teacher crop iq against student crop v != iq.
        student = [a / t_s, b / t_s]
        teacher = [torch.softmax((t0 - center) / t_t, 1), torch.softmax((t1 - center) / t_t, 1)]
        total, terms = 0.0, 0
        for iq, q in enumerate(teacher):
            for v in range(2):
                if v != iq:
                    total = total + (-q * torch.log_softmax(student[v], 1)).sum(1).mean()
                    terms += 1
        return total / terms

    loss = methods.dino(t_s, t_t)
    _same(_vg(lambda a, b: loss(torch.cat([b, a]), target=torch.cat([t0, t1]) - center), s0, s1),
          _vg(dino_loss, s0, s1))
    teacher = torch.cat([t0, t1]).requires_grad_()
    value = loss(torch.cat([s1, s0]).requires_grad_(), target=teacher - center)
    assert torch.autograd.grad(value, teacher, allow_unused=True)[0] is None


# ---------------------------------------------------------------------- SigLIP and UMAP (Bernoulli)

@pytest.mark.parametrize("scale, bias", [(10.0, -10.0), (3.0, 0.5)])
def test_siglip(scale, bias):
    N, d = 7, 5
    image, text = _randn(N, d, seed=10), _randn(N, d, seed=11)
    ids = torch.arange(N)

    def siglip(i, t):
        # big_vision / open_clip SigLipLoss: -sum log sigmoid(z_ij (t x.y + b)) / N, z = 2 I - 1.
        logits = scale * F.normalize(i, dim=1) @ F.normalize(t, dim=1).T + bias
        labels = 2 * torch.eye(N) - 1
        return -F.logsigmoid(labels * logits).sum() / N

    loss = methods.siglip(scale, bias)
    # SigLIP = N x the I-Con mean over the N^2 pair-anchors.
    _same(_vg(lambda i, t: N * loss(i, target=ids, candidates=t, target_candidates=ids), image, text),
          _vg(siglip, image, text))
    assert loss.p(ids, ids).shape == (N * N, 2)


def test_umap():
    # UMAP's published curve constants for spread 1, min_dist 0.1 (umap-learn's find_ab_params).
    a, b = umap_ab(1.0, 0.1)
    np.testing.assert_allclose([a, b], [1.5769, 0.8951], atol=1e-4)
    n = 12
    rng = np.random.default_rng(12)
    V = rng.random((n, n)) * (rng.random((n, n)) < 0.4)
    V = np.maximum(V, V.T)                                      # fuzzy union: symmetric memberships
    np.fill_diagonal(V, 0.0)
    V[0, 1] = V[1, 0] = 1.0                                     # a certain link (1 - v = 0)
    Y = _randn(n, 2, seed=13)

    def fuzzy_cross_entropy(y):
        # McInnes et al.: sum over unordered pairs of v log(v/w) + (1 - v) log((1 - v)/(1 - w)).
        v = torch.tensor(V)
        w = 1.0 / (1.0 + a * torch.cdist(y, y).pow(2 * b))
        iu = torch.triu_indices(n, n, 1)
        v, w = v[iu[0], iu[1]], w[iu[0], iu[1]]
        attract = torch.where(v > 0, v * torch.log(v.clamp_min(1e-300) / w), torch.zeros_like(v))
        repel = torch.where(v < 1, (1 - v) * torch.log((1 - v).clamp_min(1e-300) / (1 - w)), torch.zeros_like(v))
        return (attract + repel).sum()

    loss = methods.umap(torch.tensor(V))
    _same(_vg(lambda y: n * (n - 1) / 2 * loss(y, target=torch.arange(n)), Y), _vg(fuzzy_cross_entropy, Y),
          atol=1e-10)


# ---------------------------------------------------------------- baselines: not I-Con losses

def _chuang(out, B, t, tau_plus):
    """chingyaoc/DCL main.py criterion, plain exp (float64)."""
    out_1, out_2 = out[:B], out[B:]
    neg = torch.exp(out @ out.T / t)
    mask = torch.ones(2 * B, 2 * B, dtype=torch.bool)
    for i in range(B):
        mask[i, i] = mask[i, i + B] = mask[i + B, i] = mask[i + B, i + B] = False
    neg = neg.masked_select(mask).view(2 * B, -1)
    pos = torch.exp((out_1 * out_2).sum(-1) / t)
    pos = torch.cat([pos, pos])
    N = 2 * B - 2
    ng = (-tau_plus * N * pos + neg.sum(-1)) / (1 - tau_plus)
    ng = torch.clamp(ng, min=N * math.e ** (-1 / t))
    return (-torch.log(pos / (pos + ng))).mean()


@pytest.mark.parametrize("t, tau_plus", [(0.5, 0.1), (0.5, 0.05), (0.2, 0.6)])
def test_debiased_contrastive(t, tau_plus):
    B = 8
    z, ids = _views(B=B, seed=14)
    ours = methods.debiased_contrastive(t, tau_plus)(z, ids)
    torch.testing.assert_close(ours, _chuang(z, B, t, tau_plus), rtol=0, atol=1e-12)
    # tau+ = 0 gives NT-Xent exactly (pml as the oracle), values and gradients.
    _same(_vg(lambda x: methods.debiased_contrastive(t, 0.0)(x, ids), z),
          _vg(lambda x: pml_losses.NTXentLoss(temperature=t)(x, ids), z))
    # ... and it is not I-Con's alpha-debiasing, which moves p, not the normaliser.
    alpha = methods.infonce(t)
    alpha_debiased = type(alpha)(p=__import__("icontorch").mix_uniform(alpha.p, 0.1), q=alpha.q,
                                 divergence="cross_entropy")
    assert abs(float(alpha_debiased(z, target=ids)) - float(ours)) > 1e-3


def test_debiased_contrastive_clamp_is_active():
    # Many near-duplicate negatives and a large tau+ push Ng to its floor N e^(-1/t).
    B, t, tau_plus = 6, 0.5, 0.9
    z = F.normalize(torch.ones(2 * B, 4) + 0.01 * _randn(2 * B, 4, seed=15), dim=1)
    ids = torch.arange(B).repeat(2)
    torch.testing.assert_close(methods.debiased_contrastive(t, tau_plus)(z, ids), _chuang(z, B, t, tau_plus),
                               rtol=0, atol=1e-12)


@pytest.mark.parametrize("t", [0.1, 0.5])
def test_decoupled_contrastive(t):
    B = 7
    z, ids = _views(B=B, seed=16)

    def lightly_dcl(x):
        # lightly DCLLoss: per view, -s(i, i+)/t + logsumexp over the other 2B - 2 views; mean of both.
        x = F.normalize(x, dim=1)
        a, b = x[:B], x[B:]
        eye = torch.eye(B, dtype=torch.bool)

        def one(u, v):
            pos = (u * v).sum(1) / t
            neg = torch.cat([(u @ u.T / t).masked_fill(eye, -math.inf), (u @ v.T / t).masked_fill(eye, -math.inf)], 1)
            return (-pos + torch.logsumexp(neg, 1)).mean()

        return 0.5 * (one(a, b) + one(b, a))

    _same(_vg(lambda x: methods.decoupled_contrastive(t)(x, ids), z), _vg(lightly_dcl, z))
    # The identity: DCL = SimCLR's I-Con loss + mean log(1 - q(i+|i)).
    simclr = methods.simclr(t)
    simclr.reduction = "none"
    rows = simclr(z, target=ids)                               # -log q(i+|i)
    identity = rows.mean() + torch.log1p(-torch.exp(-rows)).mean()
    torch.testing.assert_close(methods.decoupled_contrastive(t)(z, ids), identity, rtol=0, atol=1e-12)


def _iid_loss(x_out, x_tf_out, lamb=1.0):
    """IIC's IID_loss (code/utils/cluster/IID_losses.py), on probabilities."""
    p_i_j = (x_out.unsqueeze(2) * x_tf_out.unsqueeze(1)).sum(0)
    p_i_j = (p_i_j + p_i_j.T) / 2.0
    p_i_j = p_i_j / p_i_j.sum()
    k = p_i_j.shape[0]
    p_i = p_i_j.sum(1).view(k, 1).expand(k, k)
    p_j = p_i_j.sum(0).view(1, k).expand(k, k)
    eps = sys.float_info.epsilon
    p_i_j = torch.where(p_i_j < eps, torch.full_like(p_i_j, eps), p_i_j)
    p_j = torch.where(p_j < eps, torch.full_like(p_j, eps), p_j)
    p_i = torch.where(p_i < eps, torch.full_like(p_i, eps), p_i)
    return -(p_i_j * (torch.log(p_i_j) - lamb * torch.log(p_j) - lamb * torch.log(p_i))).sum()


@pytest.mark.parametrize("lamb", [1.0, 1.5])
def test_iic(lamb):
    n, C = 20, 4
    l1, l2 = _randn(n, C, seed=17), _randn(n, C, seed=18)
    _same(_vg(lambda a, b: methods.iic(lamb)(F.log_softmax(a, 1), F.log_softmax(b, 1)), l1, l2),
          _vg(lambda a, b: _iid_loss(torch.softmax(a, 1), torch.softmax(b, 1), lamb), l1, l2))
    # The relation (methods.md section 2.1): for one-hot assignments consistent across views,
    # PMI clustering = log N - I(z; z') = log N + IIC.
    labels = torch.tensor([0, 1, 2, 3, 0, 0, 1, 2, 2, 2, 3, 1, 0, 0, 1, 2, 3, 3, 3, 1])
    hard = torch.full((n, C), -math.inf)
    hard[torch.arange(n), labels] = 0.0
    ids = torch.arange(n)
    pmi = methods.pmi_clustering()(hard, target=ids, candidates=hard, target_candidates=ids)
    torch.testing.assert_close(pmi, math.log(n) + methods.iic(1.0)(hard, hard), rtol=0, atol=1e-12)
    # For soft assignments the two differ (the log sits outside the sum over data in IIC).
    soft1, soft2 = F.log_softmax(l1, 1), F.log_softmax(l2, 1)
    pmi_soft = methods.pmi_clustering()(soft1, target=ids, candidates=soft2, target_candidates=ids)
    assert abs(float(pmi_soft) - math.log(n) - float(methods.iic(1.0)(soft1, soft2))) > 1e-3


@pytest.mark.parametrize("beta", [1.0, 0.6])
def test_temi_pmi(beta):
    n, C = 16, 5
    teacher, student = F.log_softmax(_randn(n, C, seed=19), 1), _randn(n, C, seed=20)

    def temi(s):
        # TEMI (losses/mi.py, PMI without the instance weight): -log sum_c (q_t q_s)^beta / q~(c)
        q_t, q_s = teacher.exp(), torch.softmax(s, 1)
        prior = q_t.mean(0)
        return -torch.log(((q_t * q_s) ** beta / prior).sum(1)).mean()

    _same(_vg(lambda s: methods.temi_pmi(beta)(teacher, F.log_softmax(s, 1)), student), _vg(temi, student))
    prior = torch.softmax(_randn(C, seed=21), 0)
    torch.testing.assert_close(methods.temi_pmi(beta)(teacher, F.log_softmax(student, 1), prior),
                               -torch.log(((teacher.exp() * torch.softmax(student, 1)) ** beta / prior).sum(1)).mean(),
                               rtol=0, atol=1e-12)
    if beta == 1.0:
        # beta = 1 with the batch prior: PMI clustering (student anchors, teacher candidates) - log N.
        ids = torch.arange(n)
        pmi = methods.pmi_clustering()(F.log_softmax(student, 1), target=ids, candidates=teacher,
                                       target_candidates=ids)
        torch.testing.assert_close(methods.temi_pmi(1.0)(teacher, F.log_softmax(student, 1)),
                                   pmi - math.log(n), rtol=0, atol=1e-12)


# -------------------------------------------------------------------------- bad input: IConError

def test_bad_input_names_the_parameter():
    from icontorch import IConError
    from icontorch.neighborhoods import (
        DisjointUnion,
        GraphKernel,
        Harmonic,
        Logits,
        PowerExponential,
        SinkhornCodes,
        spectral_embedding,
    )
    from icontorch.neighborhoods.links import GraphLinks, SigmoidLinks, UMAPLinks

    cases = [
        (lambda: PowerExponential(gamma=3.0), "gamma must lie in"),
        (lambda: PowerExponential(temperature=0.0), "temperature must be a positive"),
        (lambda: Harmonic(exponent=1.0, sigma=0.5), "exponent must exceed 1"),
        (lambda: Harmonic(sigma=-1.0), "sigma must be a finite number >= 0"),
        (lambda: GraphKernel(torch.zeros(3, 3)), "weights must give every node a positive degree"),
        (lambda: GraphKernel(torch.ones(2, 3)), "weights must be a square"),
        (lambda: GraphKernel(torch.ones(3, 3))(torch.tensor([0, 5])), "x must hold node ids in"),
        (lambda: spectral_embedding(torch.ones(3, 3), 4), "n_components must be at most"),
        (lambda: Logits(temperature=-1.0), "temperature must be a positive"),
        (lambda: Logits()(torch.ones(2, 3), torch.ones(2, 3)), "y must be None"),
        (lambda: SinkhornCodes(n_iter=0), "n_iter must be an integer >= 1"),
        (lambda: DisjointUnion([Logits()], [0.5]), "weights must be 1 positive numbers summing to 1"),
        (lambda: DisjointUnion([Logits(), Logits()], [0.5, 0.5], blocks=[(0, 2), (3, 1)]), "blocks must be"),
        (lambda: DisjointUnion([Logits(), Logits()], [0.5, 0.5], blocks=[(0, 2), (2, 9)])(torch.ones(3, 4)),
         "x must have at least 9 features"),
        (lambda: SigmoidLinks(bias=float("nan")), "bias must be a finite number"),
        (lambda: SigmoidLinks(metric="l1"), "metric must be one of"),
        (lambda: UMAPLinks(a=0.0), "a must be a positive"),
        (lambda: GraphLinks(torch.full((3, 3), 2.0)), "memberships must hold probabilities"),
        (lambda: umap_ab(1.0, 2.0), "min_dist must lie in"),
        (lambda: methods.kernel_infonce(mix="product"), "mix must be one of"),
        (lambda: methods.kernel_infonce(mix="concat"), "split must be given"),
        (lambda: methods.kernel_infonce(mix="sum", weight=1.0), "weight must lie strictly between 0 and 1"),
        (lambda: methods.infonce_clustering(alpha_p=1.5), "infonce_clustering: alpha_p must lie in"),
        (lambda: methods.infonce_clustering(0.5, alpha_q=-0.5), "infonce_clustering: alpha_q must lie in"),
        (lambda: methods.sne_uniform_affinities(n_neighbors=0), "n_neighbors must be an integer >= 1; got 0"),
        (lambda: methods.dcd(n_neighbors=2.5), "dcd: n_neighbors must be an integer >= 1; got 2.5"),
        (lambda: methods.lgsimclr(n_neighbors=0), "lgsimclr: n_neighbors must be an integer >= 1; got 0"),
        (lambda: methods.error_rate(3, sigma=0.0), "sigma must be a positive"),
        (lambda: methods.debiased_contrastive(tau_plus=1.0), "tau_plus must lie in"),
        (lambda: methods.debiased_contrastive()(torch.randn(4, 3), torch.tensor([0, 0, 0, 1])),
         "target must hold every id exactly twice"),
        (lambda: methods.iic()(torch.zeros(4, 2), torch.zeros(4, 3)), "log_phi2 must have the shape"),
        (lambda: methods.iic()(torch.full((4, 2), math.nan), torch.zeros(4, 2)), "log_phi1 must contain no NaN"),
        (lambda: methods.iic()(torch.zeros(4, 2), torch.zeros(4, 2)),
         "log_phi1 must hold log soft assignments whose rows log-sum-exp to 0"),
        (lambda: methods.temi_pmi()(torch.full((4, 2), -math.log(2)), torch.full((4, 2), -math.log(2)),
                                    torch.tensor([1.0, -1.0])), "prior must be"),
        (lambda: methods.temi_pmi()(torch.zeros(4, 2), torch.full((4, 2), -math.log(2))),
         "log_phi_teacher must hold log soft assignments"),
    ]
    for build, message in cases:
        with pytest.raises(IConError, match=message.replace("(", r"\(")):
            build()
