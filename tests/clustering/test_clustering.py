"""Clustering, the estimator: outcome on digits and blobs, every method, errors, conventions (tensors in,
tensors out; numpy scalars; keyword-only parameters; augment's generator; heads' layers), the method
table and the command line. Its parts against independent implementations: test_clustering_oracles.py."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.datasets import load_digits

from icontorch import IConError
from icontorch.clustering import METHOD_SPECS, METHODS, Clustering
from icontorch.clustering.graph import knn_indices, mutual_knn
from icontorch.clustering.train import MANY_CLUSTERS, auto_training
from icontorch.clustering.walks import walk_graph
from icontorch.metrics import clustering_scores


def _blobs(n_per=40, seed=0):
    rng = np.random.default_rng(seed)
    centers = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 1.0], [0.0, 6.0, -1.0]])
    x = np.concatenate([rng.normal(c, 1.0, size=(n_per, 3)) for c in centers])
    return x.astype(np.float32), np.repeat(np.arange(3), n_per)


# ----------------------------------------------------------------------------- outcome
def test_digits_outcome():
    x, y = load_digits(return_X_y=True)
    model = Clustering(n_clusters=10, epochs=8, n_heads=4, random_state=0).fit(x)
    scores = clustering_scores(y, model.labels_)
    assert scores["accuracy"] >= 0.75          # chance is 0.1; the full default run is in benchmarks/
    assert scores["nmi"] >= 0.7
    assert model.loss_history_.shape == (8, 4)
    assert model.best_head_ == int(np.argmin(model.head_losses_))


def test_default_heads_are_ten_and_the_lowest_loss_is_kept():
    x, y = _blobs()
    model = Clustering(n_clusters=3, n_iter=30, batch_size=32, random_state=0).fit(x)
    assert model.n_heads == "auto" and model.head_losses_.shape == (12,)
    assert model.best_head_ == int(np.argmin(model.head_losses_))
    assert model.head_.n_heads == 1


def test_auto_training_trades_heads_for_steps_from_many_clusters_on():
    assert auto_training(MANY_CLUSTERS - 1) == (12, 600, 1e-2)
    assert auto_training(MANY_CLUSTERS) == (3, 2000, 3e-2)
    assert auto_training(1000) == (3, 2000, pytest.approx(3e-3))     # 3 / C beyond 100 clusters
    x = np.random.default_rng(0).normal(size=(400, 4)).astype(np.float32)
    many = Clustering(n_clusters=MANY_CLUSTERS, n_iter=4, batch_size=32, random_state=0).fit(x)
    assert many.head_losses_.shape == (3,) and many.n_iter_ == 4          # a given value stays
    given = Clustering(n_clusters=3, n_heads=2, learning_rate=0.5, epochs=1, batch_size=100, random_state=0).fit(x)
    assert given.head_losses_.shape == (2,) and given.n_iter_ == 4          # epochs replace the auto steps


@pytest.mark.parametrize("method", METHODS)
def test_every_method_separates_blobs(method):
    x, y = _blobs()
    model = Clustering(n_clusters=3, method=method, n_neighbors=5, walk_length=1, epochs=15, n_heads=3,
                       batch_size=32, learning_rate=3e-2, ema=0.9, random_state=0)
    labels = model.fit_predict(x, y if METHOD_SPECS[method].uses_labels else None)
    assert clustering_scores(y, labels)["accuracy"] >= 0.9, method


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize("params, match", [
    (dict(n_clusters=1), "n_clusters"),
    (dict(n_clusters=500), "n_clusters must be at most the number of points"),
    (dict(n_neighbors=120), "n_neighbors must be smaller than the number of points"),
    (dict(n_neighbors=0), "n_neighbors"),
    (dict(method="spectral"), "method must be one of"),
    (dict(alpha_p=1.5), "alpha_p"),
    (dict(alpha_q=-0.1), "alpha_q"),
    (dict(walk_length=-1), "walk_length"),
    (dict(walk_mode="random"), "walk_mode"),
    (dict(mutual_knn="yes"), "mutual_knn must be True or False"),
    (dict(max_neighbors=0), r"max_neighbors must be an integer >= 1; got 0\."),
    (dict(max_neighbors="all"), r'max_neighbors must be a positive integer, "auto" or None; got \'all\'\.'),
    (dict(hidden_layer_sizes=(0,)), r"hidden_layer_sizes must be a tuple of integers >= 1 .*; got \(0,\)"),
    (dict(hidden_layer_sizes="mlp"), r"hidden_layer_sizes must be a tuple of integers >= 1"),
    (dict(hidden_layer_sizes=256), r"hidden_layer_sizes must be a tuple of integers >= 1 .*; got 256\."),
    (dict(ema=1.0), "ema"),
    (dict(learning_rate=0.0), r"learning_rate must be a positive finite number; got 0.0\."),
    (dict(learning_rate=np.float64("inf")), r"learning_rate must be a positive finite number"),
    (dict(learning_rate_schedule="linear"), r"learning_rate_schedule must be one of \('constant', 'step', "
                                            r"'cosine'\); got 'linear'\."),
    (dict(weight_decay=-1e-3), r"weight_decay must be a finite number >= 0; got -0.001\."),
    (dict(n_neighbors=np.float64(5.0)), r"n_neighbors must be an integer >= 1; got np.float64\(5.0\)|got 5.0"),
    (dict(random_state=1.5), r"random_state must be an integer between 0 and 4294967295; got 1.5\."),
    (dict(random_state=-3), r"random_state must be an integer between 0 and 4294967295; got -3\."),
    (dict(metric="euclidean"), r"metric must be one of \('cosine', 'squared_euclidean'\); got 'euclidean'\."),
    (dict(method="kmeans", batch_size=1), r"batch_size must give batches of at least 2 items"),
    (dict(n_heads=0), "n_heads"),
    (dict(augment=3), "augment"),
    (dict(metric="manhattan"), "metric"),
    (dict(device="tpu9"), "device"),
    (dict(n_jobs=0), r"n_jobs must be None, -1 or an integer between 1 and 1024; got 0\."),
])
def test_bad_parameters(params, match):
    x, _ = _blobs()
    with pytest.raises(IConError, match=match):
        Clustering(**params).fit(x)


def test_bad_data():
    x, y = _blobs()
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(IConError, match="NaN"):
        Clustering(n_clusters=3).fit(bad)
    with pytest.raises(IConError, match="2-D"):
        Clustering(n_clusters=3).fit(x[:, 0])
    with pytest.raises(IConError, match="y must be given"):
        Clustering(n_clusters=3, method="supervised").fit(x)
    with pytest.raises(IConError, match="one label per point"):
        Clustering(n_clusters=3, method="supervised").fit(x, y[:10])
    names = np.array(["a", "b", "c"])[y]                    # any sortable labels
    supervised = Clustering(n_clusters=3, method="supervised", epochs=2, n_heads=1, random_state=0)
    assert supervised.fit(x, names).labels_.shape == (120,)
    with pytest.raises(IConError, match="not fitted"):
        Clustering().predict(x)
    model = Clustering(n_clusters=3, epochs=1, n_heads=1, random_state=0).fit(x)
    with pytest.raises(IConError, match="3 features"):
        model.predict(x[:, :2])
    with pytest.raises(IConError, match=r"augment\(x, generator\) must return a tensor of shape \(480, 3\); "
                                        r"got tensor of shape \(480, 2\)"):
        Clustering(n_clusters=3, epochs=1, augment=lambda b, g: b[:, :2]).fit(x)
    with pytest.raises(IConError, match=r"augment must be None or a callable augment\(x, generator\) -> x \(it "
                                        r"must accept two arguments\); got <function"):
        Clustering(n_clusters=3, epochs=1, augment=lambda b: b).fit(x)


# ----------------------------------------------------------------------------- conventions
def test_pickle_clone_params_and_determinism():
    x, _ = _blobs()
    model = Clustering(n_clusters=3, epochs=3, n_heads=2, random_state=3).fit(x)
    again = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(again.predict(x), model.predict(x))
    np.testing.assert_allclose(again.predict_proba(x), model.predict_proba(x))
    assert again.predict_proba(x).shape == (120, 3)
    twin = clone(model)
    assert twin.get_params() == model.get_params() and not hasattr(twin, "labels_")
    np.testing.assert_array_equal(twin.fit(x).labels_, model.labels_)          # same random_state
    assert repr(twin) == "Clustering(n_clusters=3, n_heads=2, epochs=3, random_state=3)"
    twin.set_params(alpha_p=0.2, ema=0.0)
    assert twin.alpha_p == 0.2 and twin.fit(x).labels_.shape == (120,)
    with pytest.raises(IConError, match="set_params"):
        twin.set_params(k=3)


def test_tensor_in_tensor_out():
    """fit_predict, predict and predict_proba return tensors for tensor input, numpy otherwise."""
    x, _ = _blobs()
    model = Clustering(n_clusters=3, epochs=2, n_heads=2, random_state=0)
    from_tensor = model.fit_predict(torch.tensor(x))
    assert isinstance(from_tensor, torch.Tensor) and from_tensor.dtype == torch.int64
    assert isinstance(model.labels_, np.ndarray)
    np.testing.assert_array_equal(from_tensor.numpy(), model.labels_)
    assert isinstance(model.predict(torch.tensor(x)), torch.Tensor)
    assert isinstance(model.predict_proba(torch.tensor(x)), torch.Tensor)
    for data in (x, x.tolist()):
        from_numpy = model.fit_predict(data)
        assert isinstance(from_numpy, np.ndarray)
        np.testing.assert_array_equal(from_numpy, from_tensor.numpy())           # same random_state
        assert isinstance(model.predict(data), np.ndarray) and isinstance(model.predict_proba(data), np.ndarray)


def test_augment_gets_a_seeded_generator():
    """augment(x, generator): a torch.Generator seeded from random_state, so fits repeat; the batches
    themselves are drawn from another generator, so an augment that draws nothing changes nothing."""
    x, _ = _blobs()
    calls = []

    def augment(batch, generator):
        calls.append((batch.shape, type(generator)))
        return batch + 0.05 * torch.randn(batch.shape, generator=generator, dtype=batch.dtype)

    params = dict(n_clusters=3, epochs=2, n_heads=2, random_state=0, n_jobs=1)
    labels = Clustering(augment=augment, **params).fit(x)
    assert calls and all(shape[1] == 3 and kind is torch.Generator for shape, kind in calls)
    again = Clustering(augment=augment, verbose=True, **params).fit(x)        # verbose: a tqdm bar
    np.testing.assert_array_equal(again.labels_, labels.labels_)
    np.testing.assert_array_equal(again.loss_history_, labels.loss_history_)
    other = Clustering(augment=augment, **{**params, "random_state": 1}).fit(x)
    assert not np.array_equal(other.loss_history_, labels.loss_history_)
    identity = Clustering(augment=lambda batch, generator: batch, **params).fit(x)
    plain = Clustering(**params).fit(x)
    np.testing.assert_array_equal(identity.loss_history_, plain.loss_history_)
    np.testing.assert_array_equal(identity.labels_, plain.labels_)


def test_numpy_scalars_are_accepted():
    """Every numeric parameter may be a numpy scalar; the fit equals the one with Python numbers."""
    x, _ = _blobs()
    python = dict(n_clusters=3, n_neighbors=5, walk_length=1, alpha_p=0.5, alpha_q=0.4, hidden_layer_sizes=(8,),
                  n_heads=2, batch_size=32, n_views=2, n_sampled_neighbors=1, epochs=2, learning_rate=2e-2,
                  weight_decay=1e-4, ema=0.9, random_state=4, n_jobs=1)
    numpy = {name: (tuple(np.int64(v) for v in value) if isinstance(value, tuple)
                    else np.int64(value) if isinstance(value, int) else np.float64(value))
             for name, value in python.items()}
    numpy["mutual_knn"] = np.bool_(True)
    a = Clustering(**python).fit(x)
    b = Clustering(**numpy).fit(x)
    np.testing.assert_array_equal(a.labels_, b.labels_)
    np.testing.assert_array_equal(a.loss_history_, b.loss_history_)
    small = Clustering(np.int32(3), learning_rate=np.float32(0.01), epochs=1, n_heads=1).fit(x)
    assert small.labels_.shape == (120,)


def test_keyword_only_after_n_clusters():
    assert Clustering(4).n_clusters == 4
    with pytest.raises(TypeError):
        Clustering(3, "dcd")


def test_hidden_layer_sizes_build_the_heads():
    """() is ``x W_h + b_h`` per head; (8, 5) is relu MLPs; checked against numpy in float64."""
    from icontorch.clustering.heads import ClusterHeads

    x = torch.randn(7, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    for sizes in [(), (8,), (8, 5)]:
        heads = ClusterHeads(3, 4, 6, sizes, torch.Generator().manual_seed(1)).double()
        with torch.no_grad():
            for layer in heads.biases:
                layer.normal_()
        out = heads(x).detach().numpy()
        assert out.shape == (3, 7, 6)
        assert [tuple(w.shape) for w in heads.weights] == [(3, a, b) for a, b in zip((4,) + sizes, sizes + (6,))]
        for h in range(3):
            u = x.numpy()
            for layer, (w, b) in enumerate(zip(heads.weights, heads.biases)):
                u = (np.maximum(u, 0.0) if layer else u) @ w[h].detach().numpy() + b[h, 0].detach().numpy()
            np.testing.assert_allclose(out[h], u, rtol=1e-12, atol=1e-12)
        one = heads.select(2)
        assert one.n_heads == 1 and f"hidden_layer_sizes={sizes}" in repr(one)
        np.testing.assert_allclose(one(x).detach().numpy()[0], out[2], rtol=1e-12, atol=1e-12)
    with pytest.raises(IConError, match=r"ClusterHeads: hidden_layer_sizes must be a tuple of integers >= 1"):
        ClusterHeads(2, 4, 3, (4, 0))
    with pytest.raises(IConError, match=r"ClusterHeads: n_heads must be an integer >= 1; got 0\."):
        ClusterHeads(0, 4, 3)
    # the estimator's heads have the requested layers, and an MLP head clusters the blobs
    xb, yb = _blobs()
    model = Clustering(n_clusters=3, hidden_layer_sizes=(16,), n_iter=40, n_heads=2, random_state=0).fit(xb)
    assert [tuple(w.shape) for w in model.head_.weights] == [(1, 3, 16), (1, 16, 3)]
    assert clustering_scores(yb, model.labels_)["accuracy"] >= 0.9


def test_method_specs_pick_the_graph_and_the_labels():
    """Each method's graph is the one its specification names: walks on mutual kNN, symmetric kNN,
    directed kNN or none."""
    x, y = _blobs()
    assert set(METHOD_SPECS) == set(METHODS)
    knn = knn_indices(torch.tensor(x), 5)
    expected = {"debiased_infonce": walk_graph(mutual_knn(knn), 1, symmetric=True),
                "dcd": walk_graph(knn, 0, symmetric=True), "pmi": walk_graph(knn, 0, symmetric=False),
                "scan": walk_graph(knn, 0, symmetric=False), "temi": walk_graph(knn, 0, symmetric=False),
                "kmeans": None, "supervised": None}
    for method, graph in expected.items():
        model = Clustering(n_clusters=3, method=method, n_neighbors=5, walk_length=1, epochs=1, n_heads=1,
                           random_state=0).fit(x, y)
        if graph is None:
            assert model.graph_ is None, method
        else:
            torch.testing.assert_close(model.graph_.indptr, graph.indptr)
            torch.testing.assert_close(model.graph_.indices, graph.indices)
    assert [m for m, spec in METHOD_SPECS.items() if spec.uses_labels] == ["supervised"]
    default = METHOD_SPECS["debiased_infonce"]
    assert default.default_alpha_p == default.default_alpha_q == 0.6


def test_command_line(tmp_path, capsys):
    from icontorch.cli import main

    x, y = _blobs()
    np.save(tmp_path / "x.npy", x)
    np.savetxt(tmp_path / "y.csv", y, fmt="%d")
    out, png = tmp_path / "labels.csv", tmp_path / "clusters.png"
    code = main(["cluster", str(tmp_path / "x.npy"), "-k", "3", "--labels", str(tmp_path / "y.csv"),
                 "-o", str(out), "--plot", str(png), "--epochs", "8", "--n-heads", "2", "--n-neighbors", "5",
                 "--random-state", "1", "--alpha-p", "0.5", "--alpha-q", "0.3"])
    text = capsys.readouterr().out
    assert code == 0 and "Hungarian accuracy" in text and "NMI" in text and png.stat().st_size > 0
    labels = np.loadtxt(out, dtype=int)
    assert labels.shape == (120,) and clustering_scores(y, labels)["accuracy"] >= 0.7   # plumbing; chance is 1/3
    assert main(["cluster", str(tmp_path / "missing.npy")]) == 2
    assert "must be an existing file" in capsys.readouterr().err
    assert main(["cluster", str(tmp_path / "x.npy"), "-k", "1", "-o", str(out)]) == 2
    assert "--n-clusters must be" in capsys.readouterr().err
    # the flags reach the estimator: the same fit as in Python
    expected = Clustering(3, n_neighbors=5, epochs=8, n_heads=2, random_state=1, alpha_p=0.5, alpha_q=0.3).fit(x)
    np.testing.assert_array_equal(labels, expected.labels_)
    npy = tmp_path / "mlp.npy"
    assert main(["cluster", str(tmp_path / "x.npy"), "-k", "3", "-o", str(npy), "--epochs", "2", "--n-heads", "1",
                 "--hidden-layer-sizes", "16,4", "--random-state", "2"]) == 0
    mlp = Clustering(3, hidden_layer_sizes=(16, 4), epochs=2, n_heads=1, random_state=2).fit(x)
    np.testing.assert_array_equal(np.load(npy), mlp.labels_)
    assert main(["cluster", str(tmp_path / "x.npy"), "-k", "3", "-o", str(npy), "--epochs", "1", "--n-heads", "1",
                 "--hidden-layer-sizes", ""]) == 0                  # empty: a linear head
    capsys.readouterr()
    assert main(["cluster", str(tmp_path / "x.npy"), "-o", str(out), "--hidden-layer-sizes", "16,0"]) == 2
    assert "--hidden-layer-sizes must be a tuple of integers >= 1" in capsys.readouterr().err
    assert main(["cluster", str(tmp_path / "x.npy"), "-o", str(out), "--alpha-q", "2"]) == 2
    assert "--alpha-q must lie in [0, 1]; got 2.0." in capsys.readouterr().err
    for bad in (["--hidden-layer-sizes", "wide"], ["--seed", "0"], ["--alpha", "0.5"], ["--head", "mlp"]):
        with pytest.raises(SystemExit) as exit_info:
            main(["cluster", str(tmp_path / "x.npy"), *bad])
        assert exit_info.value.code == 2
    assert "expected comma-separated integers such as 256 or 256,128" in capsys.readouterr().err
