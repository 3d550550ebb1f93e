"""Every method of the table runs forward and backward, and the registry reproduces Fig. 1.

``FIGURE`` is our transcription of the paper's periodic table (Fig. 1, arXiv v1 = the official
repository's ``periodic_table.png``): 9 p columns x 5 q rows, 24 coloured tiles, 12 grey gaps,
15 empty cells. The table built from the registry must equal it tile for tile.
"""

import functools

import pytest
import torch
import torch.nn.functional as F

from icontorch import ICon, methods
from icontorch.table import periodic_table

G, SIG_INF, SIG_0, T, CLU = "Gaussian", "Gaussian σ→∞", "Gaussian σ→0", "Student-T", "Uniform on clusters"
GAUSS, STU, IDN, GRAPH, KNN_ = "Gaussian", "Student-T", "Identity", "Graph kernel weights", "Uniform over k-neighbours"
POS, XM, CLS, DL = "Uniform over positive pairs", "Cross-modal pairs", "Uniform over classes", "Data-label pairs"

# (row, column): [(label in the figure, area)] in the figure's order inside the cell.
FIGURE = {
    (G, GAUSS): [("SNE", "DR"), ("X-Sample CL", "U-SSL")],
    (G, STU): [("Dual t-SNE", "GAP")],
    (G, GRAPH): [("SNE Graph Embeddings", "GAP")],
    (G, KNN_): [("SNE with Uniform Affinities", "DR"), ("LGSimCLR", "U-SSL")],
    (G, POS): [("InfoNCE", "U-SSL"), ("SimCLR", "U-SSL"), ("MoCoV3", "U-SSL")],
    (G, XM): [("CLIP", "M-SSL"), ("CMC", "M-SSL")],
    (G, CLS): [("SupCon", "SUP")],
    (G, DL): [("Cross Entropy", "SUP")],
    (SIG_INF, IDN): [("PCA", "DR")],
    (SIG_INF, POS): [("VI-Reg", "U-SSL")],
    (SIG_INF, XM): [("Average Margin CLIP", "GAP")],
    (SIG_INF, CLS): [("Average Margin SupCon", "GAP")],
    (SIG_0, POS): [("Triplet Loss", "U-SSL")],
    (SIG_0, XM): [("Triplet CLIP", "GAP")],
    (SIG_0, CLS): [("Triplet SupCon", "GAP")],
    (SIG_0, DL): [("Error rate", "GAP")],
    (T, GAUSS): [("t-SNE", "DR")],
    (T, STU): [("Doubly t-SNE", "GAP")],
    (T, GRAPH): [("t-SNE Graph Embedding", "DR")],
    (T, KNN_): [("t-SNE with Uniform Affinities", "DR")],
    (T, POS): [("t-SimCNE", "DR"), ("t-SimCLR", "U-SSL")],
    (T, XM): [("t-CLIP", "GAP")],
    (T, CLS): [("t-SupCon", "GAP")],
    (T, DL): [("Harmonic Loss", "SUP")],
    (CLU, GAUSS): [("K-Means", "CL")],
    (CLU, STU): [("t K-Means", "GAP")],
    (CLU, GRAPH): [("Normalized Cuts", "CL")],
    (CLU, KNN_): [("DCD", "CL")],
    (CLU, POS): [("InfoNCE Clustering", "CL")],
    (CLU, CLS): [("Supervised Clustering", "GAP")],
}
TABLE1 = {"masked_language_modeling", "spectral_clustering", "pmi_clustering"}
RELATED = {"kernel_infonce", "iic", "debiased_contrastive", "decoupled_contrastive", "swav", "dino",
           "temi_pmi", "siglip", "umap", "hard_negative_contrastive", "contrastive_clustering"}


def test_registry_reproduces_the_figure():
    table = periodic_table()
    assert len(table.rows) == 5 and len(table.columns) == 9
    for (row, column), cell in table.cells.items():
        got = [(m.label, m.area) for m in cell.methods]
        assert got == FIGURE.get((row, column), []), (row, column)
    assert table.counts() == {"coloured": 24, "gap": 12, "empty": 15}
    assert len(table.tiles) == 36


def test_at_least_36_methods_and_the_named_extras():
    names = set(methods.available())
    assert len(names) >= 36
    assert TABLE1 <= names and RELATED <= names
    assert {n for n in names if methods.info(n).kind == "table1"} == TABLE1


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _graph(n, seed):
    w = _randn(n, n, seed=seed).abs()
    w = (w + w.T) / 2
    w.fill_diagonal_(0)
    return w


def _case(name, **options):
    """(loss, leaves, call): a small batch for the method; ``call()`` returns the loss value.

    ``options`` (ICon's engine options, or ``reduction`` for the baselines) go to the method function.
    """
    make = functools.partial(getattr(methods, name), **options)
    for cases in (_embedding_case, _contrastive_case, _supervised_case, _clustering_case):
        case = cases(name, make)
        if case is not None:
            return case
    raise AssertionError(f"no small-batch case for {name}: add one")


N, B, D, C = 12, 6, 4, 3


def _embedding_case(name, make):
    emb = _randn(N, 2, seed=3).requires_grad_()
    X = _randn(N, 5, seed=2)
    nodes = torch.arange(N)
    per_x = {"sne": dict(perplexity=4.0), "tsne": dict(perplexity=4.0), "conditional_tsne": dict(perplexity=4.0),
             "sne_uniform_affinities": dict(n_neighbors=3), "tsne_uniform_affinities": dict(n_neighbors=3)}
    if name in ("sne", "tsne", "conditional_tsne", "sne_uniform_affinities", "tsne_uniform_affinities",
                "dual_tsne", "doubly_tsne", "pca"):
        loss = make(**per_x.get(name, {}))
        return loss, [emb], lambda: loss(emb, target=X)
    if name in ("sne_graph_embedding", "tsne_graph_embedding"):
        loss = make(_graph(N, 7))
        return loss, [emb], lambda: loss(emb, target=nodes)
    if name == "umap":
        loss = make(_graph(N, 7).clamp(max=1.0))
        return loss, [emb], lambda: loss(emb, target=nodes)
    return None


def _contrastive_case(name, make):
    ids = torch.arange(B).repeat(2)
    z = _randn(2 * B, D, seed=1).requires_grad_()
    if name in ("x_sample_cl", "lgsimclr"):
        other, X = _randn(N, D, seed=5).requires_grad_(), _randn(N, 5, seed=2)
        loss = make()
        return loss, [other], lambda: loss(other, target=X)
    if name in ("infonce", "simclr", "tsimcne", "tsimclr", "vicreg", "kernel_infonce"):
        loss = make()
        return loss, [z], lambda: loss(z, target=ids)
    if name in ("debiased_contrastive", "decoupled_contrastive", "hard_negative_contrastive"):
        loss = make()
        return loss, [z], lambda: loss(z, ids)
    if name in ("mocov3", "clip", "cmc", "t_clip", "average_margin_clip", "triplet_clip", "siglip"):
        loss = make()
        return loss, [z], lambda: loss(z[:B], target=torch.arange(B), candidates=z[B:],
                                       target_candidates=torch.arange(B))
    if name == "triplet":
        loss = make()
        cand = torch.stack([z[B:], z[B:].roll(1, 0)], 1)
        tc = torch.stack([torch.arange(B), -torch.ones(B, dtype=torch.long)], 1)
        return loss, [z], lambda: loss(z[:B], target=torch.arange(B), candidates=cand, target_candidates=tc)
    if name == "swav":
        W = _randn(C, D, seed=6).requires_grad_()
        loss = make()
        scores = F.normalize(z[B:], dim=1) @ F.normalize(W, dim=1).T
        return loss, [z, W], lambda: loss(z[:B], target=scores, candidates=W)
    return None


def _supervised_case(name, make):
    z = _randn(2 * B, D, seed=1).requires_grad_()
    if name in ("supcon", "t_supcon", "average_margin_supcon", "triplet_supcon"):
        loss = make()
        return loss, [z], lambda: loss(z, target=torch.tensor([0, 1, 2]).repeat(4))
    if name in ("cross_entropy", "harmonic_loss", "error_rate", "masked_language_modeling"):
        W = _randn(C, D, seed=6).requires_grad_()
        loss = make(C)
        y = torch.arange(2 * B) % C
        return loss, [z, W], lambda: loss(z, target=y, candidates=W)
    return None


def _clustering_case(name, make):
    logits = _randn(N, C, seed=4).requires_grad_()
    if name in ("kmeans", "t_kmeans", "dcd"):
        loss = make(**({"n_neighbors": 3} if name == "dcd" else {}))
        X = _randn(N, 5, seed=2)
        return loss, [logits], lambda: loss(F.log_softmax(logits, 1), target=X)
    if name in ("normalized_cuts", "spectral_clustering"):
        args = (_graph(N, 7),) if name == "normalized_cuts" else (_graph(N, 7), C)
        loss = make(*args)
        return loss, [logits], lambda: loss(F.log_softmax(logits, 1), target=torch.arange(N))
    if name in ("infonce_clustering", "pmi_clustering", "supervised_clustering"):
        loss = make()
        return loss, [logits], lambda: loss(F.log_softmax(logits, 1), target=torch.tensor([0, 1, 2]).repeat(4))
    if name in ("iic", "temi_pmi"):
        loss = make()
        other_logits = _randn(N, C, seed=8)
        return loss, [logits], lambda: loss(F.log_softmax(other_logits, 1), F.log_softmax(logits, 1))
    if name == "contrastive_clustering":
        loss = make()
        z = _randn(N, D, seed=1).requires_grad_()
        other = _randn(N, C, seed=8)
        return loss, [logits, z], lambda: loss(z, 2 * z.detach(), F.log_softmax(logits, 1), F.log_softmax(other, 1))
    if name == "dino":
        loss = make()
        return loss, [logits], lambda: loss(logits, target=_randn(N, C, seed=9))
    return None


@pytest.mark.parametrize("name", methods.available())
def test_every_method_runs_forward_and_backward(name):
    loss, leaves, call = _case(name)
    cell = methods.info(name)
    if cell.equality != "none" and name not in ("iic", "temi_pmi", "hard_negative_contrastive"):
        assert isinstance(loss, ICon)
    value = call()
    assert value.dim() == 0 and torch.isfinite(value)
    grads = torch.autograd.grad(value, leaves, allow_unused=True)
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(bool(g.abs().sum() > 0) for g in grads)
