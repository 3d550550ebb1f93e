"""``ICon(..., gather=True)`` on 2 gloo processes equals one process on the concatenated batch.

Each rank encodes its own slice of a global batch with a shared linear map W (as DDP replicas
would), computes the gathered loss and backpropagates. One process computes the same loss on
the whole batch. Documented semantics (icontorch.engine.distributed): the mean of the ranks' losses is
the single-process loss, each rank's input gradient is world_size times the single-process
gradient of its slice, and the rank-averaged gradient of W (what DDP applies) is the
single-process gradient of W. Local batches differ in size (7 and 5 anchors).
"""

from __future__ import annotations

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

import icontorch as ic
from icontorch import IConError

F64 = torch.float64
SIZES = (7, 5)
D_IN, D = 4, 3


def _data():
    g = torch.Generator().manual_seed(0)
    n = sum(SIZES)
    x = torch.randn(n, D_IN, generator=g, dtype=F64)
    text = torch.randn(n, D_IN, generator=g, dtype=F64)
    w = torch.randn(D_IN, D, generator=g, dtype=F64)
    items = torch.tensor([0, 1, 2, 3, 0, 1, 4, 2, 3, 5, 4, 5])        # views of 6 items, across ranks
    labels = torch.tensor([0, 1, 2, 0, 1, 9, 2, 0, 1, 2, 0, 1])       # label 9 has one member
    pair_ids = torch.randperm(n, generator=g)
    return x, text, w, items, labels, pair_ids


def _cases():
    return {
        "simclr_fused": (lambda: ic.methods.simclr(0.5), "items", False),
        "simclr_tiled": (lambda: ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=0.5, metric="cosine"),
                                         divergence="cross_entropy", tile_size=3), "items", False),
        "supcon_tiled": (lambda: ic.ICon(ic.SameLabel(), ic.Gaussian(temperature=0.1, metric="cosine"),
                                         divergence="cross_entropy", skip_empty_rows=True, tile_size=4),
                         "labels", False),
        "debiased_knn_kl": (lambda: ic.ICon(ic.mix_uniform(ic.KNN(2), 0.3), ic.StudentT(1.0), tile_size=5),
                            "features", False),
        "clip_fused": (lambda: ic.methods.clip(0.07), "pairs", True),
        "clip_composed": (lambda: ic.ICon(ic.FromCallable(ic.CrossModal()),
                                          ic.Gaussian(temperature=0.07, metric="cosine"),
                                          divergence="cross_entropy", symmetric=True), "pairs", True),
    }


def _run(loss, kind, x, text, w, items, labels, pair_ids, features):
    """Loss, gradient of x (and text) and of W, for whatever slice of the batch is given."""
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    leaves = [x, w]
    if kind == "pairs":
        text = text.clone().requires_grad_()
        leaves.append(text)
        value = loss(x @ w, pair_ids, text @ w, pair_ids)
    else:
        target = {"items": items, "labels": labels, "features": features}[kind]
        value = loss(x @ w, target)
    value.backward()
    return value.detach(), [leaf.grad for leaf in leaves]


def _worker(rank, world, init_file, out_file):
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    x, text, w, items, labels, pair_ids = _data()
    start, stop = sum(SIZES[:rank]), sum(SIZES[:rank + 1])
    features = x[:, :2].contiguous()  # supervision for the kNN p: the first two input features
    results = {}
    for name, (make, kind, _) in _cases().items():
        results[name] = _run(_gathered(make()), kind, x[start:stop], text[start:stop], w,
                             items[start:stop], labels[start:stop], pair_ids[start:stop],
                             features[start:stop])
    # An empty row without skip_empty_rows raises on every rank, not only where it lives.
    try:
        _gathered(ic.ICon(ic.SameLabel(), ic.Gaussian(temperature=0.1, metric="cosine")))(
            x[start:stop] @ w, labels[start:stop])
        results["error"] = None
    except IConError as error:
        results["error"] = str(error)
    torch.save(results, out_file)
    dist.barrier()
    dist.destroy_process_group()


def _gathered(loss):
    loss.gather = True  # the same module, switched to gather across ranks
    return loss


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dist")
    outs = [str(tmp / f"rank{r}.pt") for r in range(2)]
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(r, 2, str(tmp / "init"), outs[r])) for r in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=120)
    assert all(proc.exitcode == 0 for proc in procs), [proc.exitcode for proc in procs]
    return [torch.load(out) for out in outs]


@pytest.mark.parametrize("name", list(_cases()))
def test_two_ranks_equal_one_process(ranks, name):
    make, kind, _ = _cases()[name]
    x, text, w, items, labels, pair_ids = _data()
    single_value, single_grads = _run(make(), kind, x, text, w, items, labels, pair_ids,
                                      x[:, :2].contiguous())
    world = len(ranks)
    values = torch.stack([r[name][0] for r in ranks])
    torch.testing.assert_close(values.mean(), single_value, rtol=1e-10, atol=1e-12)
    # Input gradients: each rank holds world_size times the single-process gradient of its slice.
    for index in [0] + ([2] if kind == "pairs" else []):
        gathered = torch.cat([r[name][1][index] for r in ranks])
        torch.testing.assert_close(gathered / world, single_grads[index], rtol=1e-10, atol=1e-12)
    # The shared weight: DDP averages over ranks and must obtain the single-process gradient.
    mean_w = torch.stack([r[name][1][1] for r in ranks]).mean(0)
    torch.testing.assert_close(mean_w, single_grads[1], rtol=1e-10, atol=1e-12)


def test_an_empty_row_raises_on_every_rank(ranks):
    for r in ranks:
        assert r["error"] is not None and "1 of 12 anchors over the 2 ranks have no neighbour" in r["error"]
    assert "(here: [5])" in ranks[0]["error"] and "(here: [])" in ranks[1]["error"]


def test_gather_needs_a_process_group():
    assert not dist.is_initialized()
    loss = ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=0.5, metric="cosine"), gather=True)
    with pytest.raises(IConError, match=r"^ICon: gather=True needs an initialised torch\.distributed "
                                        r"process group \(torchrun, or torch\.distributed\."
                                        r"init_process_group\); got none\.$"):
        loss(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))


@pytest.mark.parametrize("bad", [1, "yes", None])
def test_gather_must_be_a_bool(bad):
    with pytest.raises(IConError, match=r"^ICon: gather must be True or False; got "):
        ic.ICon(ic.PositivePairs(), ic.Gaussian(sigma=1.0), gather=bad)


def test_gather_without_candidates_needs_the_structured_form(monkeypatch):
    """Own-batch candidates need the self mask at this rank's offset, which only the engine has."""
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(ic.engine.distributed, "gather_with_grad", lambda z: (z, 0))
    monkeypatch.setattr(ic.engine.distributed, "gather", lambda t, name: t)
    loss = ic.ICon(ic.SameLabel(), ic.Cluster(), gather=True)
    with pytest.raises(IConError, match=r"^ICon: gather=True without candidates needs a structured p"):
        loss(torch.log_softmax(torch.randn(4, 3), 1), torch.tensor([0, 1, 0, 1]))
