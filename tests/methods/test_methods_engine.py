"""ICon's engine options through the method functions: signatures, pass-through, values, errors.

Every method function that returns an ICon takes ``reduction``, ``skip_empty_rows``, ``tile_size``
and ``gather`` (and ``symmetric`` where it is called with the items of another side as
candidates) as keyword-only arguments and hands them to ICon unchanged; the baselines that are
not ICon losses take ``reduction`` where they have one term per anchor, and nothing else.
"""

from __future__ import annotations

import inspect
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from icontorch import ICon, IConError, methods

from test_methods_table import _case

F64 = torch.float64
ENGINE = ("reduction", "skip_empty_rows", "tile_size", "gather")
SYMMETRIC = {"clip": True, "t_clip": True, "average_margin_clip": True, "triplet_clip": True, "cmc": False,
             "siglip": False, "mocov3": False, "pmi_clustering": False}
SKIP_EMPTY = {"supcon", "t_supcon", "average_margin_supcon", "triplet_supcon"}
WITH_REDUCTION = {"debiased_contrastive", "decoupled_contrastive", "temi_pmi", "hard_negative_contrastive"}
BASELINES = WITH_REDUCTION | {"iic", "contrastive_clustering"}
ICON_METHODS = [n for n in methods.available() if n not in BASELINES]
# The positional arguments a method needs before it can be built.
REQUIRED = {"normalized_cuts": lambda: (torch.ones(4, 4, dtype=F64) - torch.eye(4, dtype=F64),),
            "spectral_clustering": lambda: (torch.ones(4, 4, dtype=F64) - torch.eye(4, dtype=F64), 2),
            "sne_graph_embedding": lambda: (torch.ones(4, 4, dtype=F64),),
            "tsne_graph_embedding": lambda: (torch.ones(4, 4, dtype=F64),),
            "umap": lambda: (torch.full((4, 4), 0.5, dtype=F64),),
            "cross_entropy": lambda: (3,), "harmonic_loss": lambda: (3,), "error_rate": lambda: (3,),
            "masked_language_modeling": lambda: (3,)}


def _build(name, **options):
    return getattr(methods, name)(*REQUIRED.get(name, lambda: ())(), **options)


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_the_method_lists_cover_the_registry():
    assert set(SYMMETRIC) | SKIP_EMPTY <= set(ICON_METHODS)
    assert BASELINES <= set(methods.available())
    for name in ICON_METHODS:
        assert inspect.signature(getattr(methods, name)).return_annotation in ("ICon", ICon), name


@pytest.mark.parametrize("name", ICON_METHODS)
def test_signature_shows_the_engine_options_keyword_only(name):
    parameters = inspect.signature(getattr(methods, name)).parameters
    wanted = ENGINE + (("symmetric",) if name in SYMMETRIC else ())
    options = {k: p for k, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY}
    assert set(options) == set(wanted), name
    assert options["reduction"].default == "mean" and options["reduction"].annotation == "str"
    assert options["skip_empty_rows"].default is (name in SKIP_EMPTY)
    assert options["skip_empty_rows"].annotation == "bool"
    assert options["tile_size"].default == "auto" and options["tile_size"].annotation == "TileSize"
    assert options["gather"].default is False and options["gather"].annotation == "bool"
    if name in SYMMETRIC:
        assert options["symmetric"].default is SYMMETRIC[name] and options["symmetric"].annotation == "bool"


@pytest.mark.parametrize("name", ICON_METHODS)
def test_every_option_reaches_the_icon(name):
    """Each option set away from its default arrives in the ICon under its own name."""
    default = _build(name)
    assert isinstance(default, ICon)
    assert (default.reduction, default.skip_empty_rows, default.tile_size, default.gather) == \
        ("mean", name in SKIP_EMPTY, "auto", False)
    assert default.symmetric is SYMMETRIC.get(name, False)
    changed = dict(reduction="sum", skip_empty_rows=name not in SKIP_EMPTY, tile_size=7, gather=True)
    if name in SYMMETRIC:
        changed["symmetric"] = not SYMMETRIC[name]
    loss = _build(name, **changed)
    for option, value in changed.items():
        assert getattr(loss, option) == value, (name, option)
    # the method's own p, q and divergence are untouched
    assert type(loss.p) is type(default.p) and type(loss.q) is type(default.q)
    assert repr(loss.divergence) == repr(default.divergence)


def test_the_documented_call():
    loss = methods.simclr(0.5, gather=True, tile_size=4096, reduction="none")
    assert (loss.gather, loss.tile_size, loss.reduction) == (True, 4096, "none")
    assert loss.q.temperature == 0.5


@pytest.mark.parametrize("name", ICON_METHODS + sorted(WITH_REDUCTION))
def test_reduction_none_is_the_vector_the_mean_and_sum_reduce(name):
    mean = _case(name)[2]()
    rows = _case(name, reduction="none")[2]()
    total = _case(name, reduction="sum")[2]()
    assert rows.dim() == 1 and rows.shape[0] >= 1
    kept = rows[~torch.isnan(rows)]
    torch.testing.assert_close(kept.mean(), mean, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(kept.sum(), total, rtol=1e-12, atol=1e-12)


def _nt_xent_rows(z, temperature):
    """NT-Xent per view, written with F.cross_entropy: view i's positive is i + B mod 2B."""
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    logits = (zn @ zn.T / temperature).masked_fill(torch.eye(n, dtype=torch.bool), -math.inf)
    return F.cross_entropy(logits, (torch.arange(n) + n // 2) % n, reduction="none")


def test_simclr_rows_are_nt_xent_per_view():
    z = _randn(10, 4, seed=0)
    rows = methods.simclr(0.3, reduction="none")(z, target=torch.arange(5).repeat(2))
    torch.testing.assert_close(rows, _nt_xent_rows(z, 0.3), rtol=1e-12, atol=1e-12)


def test_clip_rows_are_both_directions():
    image, text = _randn(6, 4, seed=1), _randn(6, 4, seed=2)
    ids = torch.arange(6)
    rows = methods.clip(0.1, reduction="none")(image, target=ids, candidates=text, target_candidates=ids)
    logits = F.normalize(image, dim=1) @ F.normalize(text, dim=1).T / 0.1
    expected = torch.cat([F.cross_entropy(logits, ids, reduction="none"),
                          F.cross_entropy(logits.T, ids, reduction="none")])
    torch.testing.assert_close(rows, expected, rtol=1e-12, atol=1e-12)
    one_way = methods.clip(0.1, symmetric=False, reduction="none")(image, target=ids, candidates=text,
                                                                    target_candidates=ids)
    torch.testing.assert_close(one_way, expected[:6], rtol=1e-12, atol=1e-12)


def test_supcon_rows_leave_the_lonely_anchor_out():
    z = _randn(7, 3, seed=3)
    labels = torch.tensor([0, 0, 1, 1, 1, 2, 0])          # anchor 5 has no positive
    rows = methods.supcon(0.2, reduction="none")(z, target=labels)
    zn = F.normalize(z, dim=1)
    for i in range(7):
        others = [j for j in range(7) if j != i]
        positives = [j for j in others if labels[j] == labels[i]]
        if not positives:
            assert torch.isnan(rows[i])
            continue
        log_q = torch.log_softmax(zn[i] @ zn[others].T / 0.2, 0)
        expected = -torch.stack([log_q[others.index(j)] for j in positives]).mean()
        torch.testing.assert_close(rows[i], expected, rtol=1e-12, atol=1e-12)
    with pytest.raises(IConError, match="anchors \\[5\\] have no neighbour under p"):
        methods.supcon(0.2, skip_empty_rows=False)(z, target=labels)


def test_decoupled_rows_match_their_formula():
    z = _randn(8, 3, seed=4)
    rows = methods.decoupled_contrastive(0.5, reduction="none")(z, torch.arange(4).repeat(2))
    zn = F.normalize(z, dim=1)
    for i in range(8):
        partner = (i + 4) % 8
        negatives = [k for k in range(8) if k not in (i, partner)]
        s = zn[i] @ zn.T / 0.5
        expected = torch.logsumexp(s[negatives], 0) - s[partner]
        torch.testing.assert_close(rows[i], expected, rtol=1e-12, atol=1e-12)


# Methods whose small batch (tests/methods/test_methods_table.py) runs on the tiled engine.
MUST_TILE = {"simclr", "infonce", "mocov3", "supcon", "t_supcon", "clip", "cmc", "t_clip", "cross_entropy",
             "error_rate", "sne_uniform_affinities", "lgsimclr", "tsimcne", "tsimclr"}


@pytest.mark.parametrize("name", ICON_METHODS)
def test_tile_size_4_equals_the_untiled_loss_or_says_why_not(name):
    """Tiles of 4 anchors by 4 candidates give the untiled value and gradients (float64)."""
    _, leaves, call = _case(name, tile_size=None)
    value = call()
    grads = torch.autograd.grad(value, leaves)
    _, leaves_t, call_t = _case(name, tile_size=4)
    try:
        value_t = call_t()
    except IConError as error:
        assert str(error).startswith("ICon: tile_size=4 needs a structured p"), error
        assert name not in MUST_TILE, error
        return
    torch.testing.assert_close(value_t, value, rtol=1e-12, atol=1e-12)
    for g_t, g in zip(torch.autograd.grad(value_t, leaves_t), grads):
        torch.testing.assert_close(g_t, g, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("call, error, match", [
    (lambda: methods.simclr(0.5, tile=4), TypeError, "unexpected keyword argument 'tile'"),
    (lambda: methods.tsne(5.0, symmetric=True), TypeError, "unexpected keyword argument 'symmetric'"),
    (lambda: methods.debiased_contrastive(gather=True), TypeError, "unexpected keyword argument 'gather'"),
    (lambda: methods.decoupled_contrastive(tile_size=4), TypeError, "unexpected keyword argument 'tile_size'"),
    (lambda: methods.iic(reduction="none"), TypeError, "unexpected keyword argument 'reduction'"),
    (lambda: methods.simclr(reduction="avg"), IConError,
     r"^ICon: reduction must be one of \('mean', 'sum', 'none'\); got 'avg'\.$"),
    (lambda: methods.clip(tile_size=0), IConError, r"^ICon: tile_size must be an integer >= 1, 'auto' or None; got 0"),
    (lambda: methods.dcd(3, tile_size="big"), IConError, r"^ICon: tile_size must be .*; got 'big'"),
    (lambda: methods.supcon(gather="yes"), IConError, r"^ICon: gather must be True or False; got 'yes'\.$"),
    (lambda: methods.debiased_contrastive(reduction="avg"), IConError,
     r"^DebiasedContrastiveLoss: reduction must be one of \('mean', 'sum', 'none'\); got 'avg'\.$"),
    (lambda: methods.temi_pmi(reduction="max"), IConError, r"^TEMIPMILoss: reduction must be one of"),
])
def test_option_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_gather_in_a_one_process_group_is_the_local_loss(tmp_path):
    dist = pytest.importorskip("torch.distributed")
    if not dist.is_available() or dist.is_initialized():
        pytest.skip("needs torch.distributed and no process group yet")
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        z = _randn(8, 3, seed=5).requires_grad_()
        ids = torch.arange(4).repeat(2)
        gathered = methods.simclr(0.5, gather=True)(z, target=ids)
        local = methods.simclr(0.5)(z, target=ids)
        torch.testing.assert_close(gathered, local, rtol=1e-12, atol=1e-12)
    finally:
        dist.destroy_process_group()


# ---------------------------------------------------------------- learnable temperatures and scales

def test_clip_keeps_a_learnable_temperature():
    temperature = nn.Parameter(torch.tensor(0.07, dtype=F64))
    loss = methods.clip(temperature=temperature)
    assert loss.q.temperature is temperature
    image, text, ids = _randn(5, 4, seed=6), _randn(5, 4, seed=7), torch.arange(5)
    loss(image, target=ids, candidates=text, target_candidates=ids).backward()
    assert temperature.grad is not None and temperature.grad != 0


def test_siglip_keeps_a_learnable_scale_and_bias():
    scale = nn.Parameter(torch.tensor(10.0, dtype=F64))
    bias = nn.Parameter(torch.tensor(-10.0, dtype=F64))
    loss = methods.siglip(scale=scale, bias=bias)
    assert loss.q.scale is scale and loss.q.bias is bias
    image, text, ids = _randn(5, 4, seed=6), _randn(5, 4, seed=7), torch.arange(5)
    loss(image, target=ids, candidates=text, target_candidates=ids).backward()
    assert scale.grad is not None and bias.grad is not None


@pytest.mark.parametrize("build, where", [
    (lambda t: methods.simclr(t), lambda loss: loss.q.temperature),
    (lambda t: methods.infonce(t), lambda loss: loss.q.temperature),
    (lambda t: methods.supcon(t), lambda loss: loss.q.temperature),
    (lambda t: methods.x_sample_cl(target_temperature=t), lambda loss: loss.p.temperature),
    (lambda t: methods.swav(t), lambda loss: loss.q.temperature),
    (lambda t: methods.dino(student_temperature=t), lambda loss: loss.q.temperature),
    (lambda t: methods.kernel_infonce(temperature=t), lambda loss: loss.q.temperature),
    (lambda t: methods.kmeans(t), lambda loss: loss.p.sigma),
    (lambda t: methods.spectral_clustering(REQUIRED["spectral_clustering"]()[0], 2, sigma=t),
     lambda loss: loss.p.sigma),
    (lambda t: methods.pca(t), lambda loss: loss.q.sigma),
    (lambda t: methods.vicreg(t), lambda loss: loss.q.sigma),
    (lambda t: methods.triplet(t), lambda loss: loss.q.sigma),
    (lambda t: methods.average_margin_clip(t), lambda loss: loss.q.sigma),
    (lambda t: methods.triplet_clip(t), lambda loss: loss.q.sigma),
    (lambda t: methods.average_margin_supcon(t), lambda loss: loss.q.sigma),
    (lambda t: methods.triplet_supcon(t), lambda loss: loss.q.sigma),
    (lambda t: methods.error_rate(3, t), lambda loss: loss.q.sigma),
    (lambda t: methods.debiased_contrastive(t), lambda loss: loss.temperature),
    (lambda t: methods.decoupled_contrastive(t), lambda loss: loss.temperature),
], ids=["simclr", "infonce", "supcon", "x_sample_cl", "swav", "dino", "kernel_infonce", "kmeans",
        "spectral_clustering", "pca", "vicreg", "triplet", "average_margin_clip", "triplet_clip",
        "average_margin_supcon", "triplet_supcon", "error_rate", "debiased_contrastive",
        "decoupled_contrastive"])
def test_temperatures_pass_through_unchanged(build, where):
    temperature = nn.Parameter(torch.tensor(0.3, dtype=F64))
    loss = build(temperature)
    assert where(loss) is temperature
    assert any(param is temperature for param in loss.parameters())


@pytest.mark.parametrize("tile_size", ["auto", None])
def test_a_learned_sigma_squared_width_follows_its_parameter(tile_size):
    """``methods.pca(sigma)``: ``L = mean_i log sum_k exp(-||z_i - z_k||^2 / sigma^2)`` (Identity p, self
    included); value and gradients against that closed form, before and after an optimiser step."""
    sigma = nn.Parameter(torch.tensor(1.7, dtype=F64))
    z = _randn(7, 3, seed=8).requires_grad_()
    loss = methods.pca(sigma, tile_size=tile_size)
    optimiser = torch.optim.SGD([sigma], lr=0.5)
    for _ in range(2):
        ours = [loss(z, target=z)]
        ours += list(torch.autograd.grad(ours[0], [sigma, z]))
        ref = [torch.logsumexp(-torch.cdist(z, z).square() / sigma ** 2, 1).mean()]
        ref += list(torch.autograd.grad(ref[0], [sigma, z]))
        for a, b in zip(ours, ref):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12)
        sigma.grad = ours[1]
        optimiser.step()
    assert float(sigma.detach()) != 1.7


def test_sigma_squared_width_matches_the_float_method():
    """A tensor sigma gives the loss of the same float sigma, bit for bit (float64)."""
    z, c = _randn(6, 3, seed=9), _randn(6, 3, seed=10)
    ids = torch.arange(6)
    for build in (methods.triplet_clip, methods.average_margin_clip):
        tensor = build(torch.tensor(0.4, dtype=F64))(z, target=ids, candidates=c, target_candidates=ids)
        number = build(0.4)(z, target=ids, candidates=c, target_candidates=ids)
        assert torch.equal(tensor, number)
    assert repr(methods.vicreg(100.0).q) == (
        "SigmaSquaredGaussian(sigma=100.0, metric='squared_euclidean', include_self=True)")
