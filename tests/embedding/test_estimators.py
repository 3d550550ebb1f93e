"""Neighbour-embedding estimators: scikit-learn's conventions, outcomes, errors."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from icontorch import KNN, ICon, IConError, PositivePairs, Precomputed, StudentT, joint, methods, symmetrize
from icontorch.embedding.affinity import knn_affinity
from icontorch.embedding.estimators import SNE, TSNE, NeighborEmbedding
from icontorch.embedding.mappers import MLP, EmbeddingTable
from icontorch.metrics import knn_accuracy

ESTIMATORS = [TSNE, SNE, NeighborEmbedding]


@pytest.fixture(scope="module")
def digits():
    x, y = load_digits(return_X_y=True)
    return x.astype(np.float32), y


def _blobs(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, d))
    labels = np.arange(n) % 4
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


# ---------------------------------------------------------------- scikit-learn's conventions

@pytest.mark.parametrize("cls", ESTIMATORS)
def test_init_stores_every_parameter_unchanged_and_nothing_else(cls):
    init = np.zeros((5, 2))
    callbacks = [lambda i, loss, y: False]
    sizes = (32, 16)
    est = cls(init=init, callbacks=callbacks, hidden_layer_sizes=sizes, learning_rate=-3.0,
              n_components=0)
    params = est.get_params()
    assert params["init"] is init and params["callbacks"] is callbacks
    assert params["hidden_layer_sizes"] is sizes
    assert params["learning_rate"] == -3.0 and params["n_components"] == 0   # not validated yet
    assert set(vars(est)) == set(params)


@pytest.mark.parametrize("cls", ESTIMATORS)
def test_get_set_params_clone_and_repr(cls):
    from sklearn.base import clone

    est = cls(n_iter=7, random_state=3)
    assert est.set_params(n_iter=9) is est and est.get_params()["n_iter"] == 9
    twin = clone(est)
    assert type(twin) is cls and twin is not est
    assert twin.get_params() == est.get_params()
    assert repr(cls()) == f"{cls.__name__}()"
    assert repr(est) == f"{cls.__name__}(n_iter=9, random_state=3)"
    with pytest.raises(IConError, match="set_params keys must be among"):
        est.set_params(perplexityy=3)


def test_repr_of_an_array_parameter():
    assert repr(TSNE(init=np.zeros((3, 2)), perplexity=5)) == "TSNE(perplexity=5, init=<ndarray>)"


def test_fit_returns_self_and_learned_attributes_end_in_underscore():
    x, _ = _blobs()
    est = TSNE(perplexity=10, n_iter=50, early_exaggeration_iter=20, random_state=0)
    assert not hasattr(est, "embedding_")
    assert est.fit(x) is est
    assert est.embedding_.shape == (120, 2) and isinstance(est.embedding_, np.ndarray)
    assert est.n_iter_ == 70 and est.n_features_in_ == 6 and est.algorithm_ == "exact"
    assert np.isfinite(est.kl_divergence_)
    learned = set(vars(est)) - set(est.get_params())
    assert all(name.endswith("_") or name.startswith("_") for name in learned)
    from sklearn.base import clone

    assert not hasattr(clone(est), "embedding_")


def test_tensors_in_tensors_out_numpy_in_numpy_out():
    x, _ = _blobs(60)
    est = TSNE(perplexity=8, n_iter=10, early_exaggeration_iter=10, random_state=0)
    out = est.fit_transform(torch.tensor(x, dtype=torch.float64))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float64
    assert isinstance(est.fit_transform(x), np.ndarray)


def test_transform_tensors_in_tensors_out_numpy_or_list_in_numpy_out():
    x, _ = _blobs(80)
    for parametric in (False, True):
        est = TSNE(perplexity=8, n_iter=20, early_exaggeration_iter=0, parametric=parametric,
                   hidden_layer_sizes=(8,), batch_size=32, random_state=0).fit(x)
        as_tensor = est.transform(torch.tensor(x[:7]))
        as_array, as_list = est.transform(x[:7]), est.transform(x[:7].tolist())
        assert isinstance(as_tensor, torch.Tensor) and as_tensor.dtype == torch.float32
        assert isinstance(as_array, np.ndarray) and isinstance(as_list, np.ndarray)
        np.testing.assert_array_equal(as_tensor.numpy(), as_array)
        np.testing.assert_array_equal(as_list, as_array)
    assert isinstance(TSNE(perplexity=8, n_iter=5, early_exaggeration_iter=0).fit_transform(x.tolist()),
                      np.ndarray)


@pytest.mark.parametrize("cls", [TSNE, SNE])
def test_only_n_components_is_positional(cls):
    est = cls(3, perplexity=20.0)
    assert est.n_components == 3 and est.perplexity == 20.0
    with pytest.raises(TypeError):
        cls(2, 30)          # once meant n_components=2, then a silent second positional argument


def test_neighbor_embedding_takes_p_positionally_and_the_rest_by_name():
    p, q = symmetrize(KNN(5)), joint(StudentT(0.5))
    est = NeighborEmbedding(p, q=q)
    assert est.p is p and est.q is q
    with pytest.raises(TypeError):
        NeighborEmbedding(p, q)


def test_numpy_scalars_are_accepted_and_give_the_same_fit():
    x, _ = _blobs(60)
    plain = TSNE(2, perplexity=8.0, early_exaggeration=12.0, n_iter=20, early_exaggeration_iter=10,
                 learning_rate=200.0, random_state=0, n_jobs=1).fit(x)
    numpy = TSNE(np.int64(2), perplexity=np.float64(8.0), early_exaggeration=np.float32(12.0),
                 n_iter=np.int64(20), early_exaggeration_iter=np.int32(10), learning_rate=np.float32(200.0),
                 random_state=np.int64(0), n_jobs=np.int64(1)).fit(x)
    assert type(numpy.get_params()["n_components"]) is np.int64           # stored unchanged
    np.testing.assert_array_equal(numpy.embedding_, plain.embedding_)
    kwargs = dict(parametric=True, n_iter=10, early_exaggeration_iter=0, random_state=0)
    plain = SNE(perplexity=8.0, hidden_layer_sizes=(8,), batch_size=32, input_noise=0.25,
                n_neighbors=20, **kwargs).fit(x)
    numpy = SNE(perplexity=np.float32(8.0), hidden_layer_sizes=np.array([8]), batch_size=np.int64(32),
                input_noise=np.float32(0.25), n_neighbors=np.int64(20), **kwargs).fit(x)
    np.testing.assert_array_equal(numpy.embedding_, plain.embedding_)


def test_empty_hidden_layer_sizes_make_a_linear_map():
    x, _ = _blobs(80)
    est = TSNE(perplexity=8, parametric=True, hidden_layer_sizes=(), batch_size=32, n_iter=20,
               early_exaggeration_iter=0, random_state=0).fit(x)
    assert [type(m) for m in est.mapper_.net] == [torch.nn.Linear]
    a, b = x[:10].astype(np.float64), x[10:20].astype(np.float64)
    fa, fb, fm = est.transform(a), est.transform(b), est.transform((a + b) / 2)
    # affine: the image of a midpoint is the midpoint of the images (false for any SiLU layer)
    np.testing.assert_allclose(fm, (fa + fb) / 2, rtol=1e-6, atol=1e-6 * np.abs(fa).max())


def test_n_jobs_sets_torch_threads_only_during_fit():
    x, _ = _blobs(60)
    before = torch.get_num_threads()
    seen = []
    TSNE(perplexity=8, n_iter=10, early_exaggeration_iter=0, n_jobs=1, callbacks_every_iters=10,
         callbacks=lambda i, loss, y: seen.append(torch.get_num_threads())).fit(x)
    assert seen == [1] and torch.get_num_threads() == before


def test_same_seed_same_embedding():
    x, _ = _blobs(80)
    a = TSNE(perplexity=8, n_iter=30, init="random", random_state=5).fit_transform(x)
    b = TSNE(perplexity=8, n_iter=30, init="random", random_state=5).fit_transform(x)
    np.testing.assert_array_equal(a, b)


def test_callbacks_are_called_and_can_stop_early():
    x, _ = _blobs(80)
    seen = []

    def stop_at_60(iteration, loss, embedding):
        seen.append((iteration, loss, tuple(embedding.shape)))
        return iteration >= 60

    est = TSNE(perplexity=8, callbacks=stop_at_60, callbacks_every_iters=20, random_state=0).fit(x)
    assert est.n_iter_ == 60
    assert [s[0] for s in seen] == [20, 40, 60] and all(s[2] == (80, 2) for s in seen)
    assert all(np.isfinite(s[1]) for s in seen)


def test_verbose_shows_a_progress_bar(capsys):
    x, _ = _blobs(60)
    TSNE(perplexity=8, n_iter=20, early_exaggeration_iter=0, verbose=True, random_state=0).fit(x)
    assert "TSNE" in capsys.readouterr().err


# ---------------------------------------------------------------- outcomes

def test_tsne_on_digits_separates_the_classes(digits):
    """Default path for 1,797 points (sparse p, FFT repulsion): 2-D 10-NN accuracy far over 0.1."""
    x, y = digits
    est = TSNE(n_iter=250, random_state=0, n_jobs=1)
    emb = est.fit_transform(x)
    assert est.algorithm_ == "fft"
    assert knn_accuracy(emb, y, 10) > 0.95


def test_kl_divergence_is_the_true_kl_at_the_embedding(digits):
    x, _ = digits
    x = x[:400]
    est = TSNE(perplexity=10, algorithm="fft", n_iter=50, early_exaggeration_iter=50, random_state=0,
               n_jobs=1).fit(x)
    aff = knn_affinity(methods.tsne(10.0).p, torch.tensor(x), 30, "test")
    log_p = torch.full((400, 400), float("-inf"), dtype=torch.float64)
    log_p[aff.rows, aff.cols] = aff.log_p.double()
    loss = ICon(p=Precomputed(log_p.reshape(1, -1)), q=joint(StudentT(1.0)))
    assert est.kl_divergence_ == pytest.approx(float(loss(torch.tensor(est.embedding_).double())), rel=1e-5)


@pytest.mark.parametrize("est", [SNE(perplexity=20, random_state=0),
                                 NeighborEmbedding(p=symmetrize(KNN(15)), q=joint(StudentT(0.7)),
                                                   random_state=0),
                                 TSNE(algorithm="sampled", random_state=0)],
                         ids=["sne", "uniform_knn_tsne", "sampled"])
def test_other_periodic_table_cells_embed_digits(est, digits):
    x, y = digits
    est.set_params(n_iter=200, early_exaggeration_iter=150, n_jobs=1)
    assert knn_accuracy(est.fit_transform(x[:700]), y[:700], 10) > 0.85


def test_non_parametric_transform_places_held_out_points(digits):
    x, y = digits
    est = TSNE(n_iter=200, random_state=0, n_jobs=1).fit(x[:1200])
    new = est.transform(x[1200:])
    from sklearn.neighbors import KNeighborsClassifier

    assert KNeighborsClassifier(10).fit(est.embedding_, y[:1200]).score(new, y[1200:]) > 0.85


def test_parametric_transform_reproduces_the_embedding_and_survives_pickling(digits):
    x, y = digits
    est = TSNE(parametric=True, hidden_layer_sizes=(64, 64, 64), batch_size=256,
               early_exaggeration_iter=100, n_iter=300, random_state=0, n_jobs=1).fit(x[:1200])
    assert isinstance(est.mapper_, MLP)
    np.testing.assert_array_equal(est.transform(x[:1200]), est.embedding_)   # clean inputs, no noise
    assert knn_accuracy(est.embedding_, y[:1200], 10) > 0.8
    from sklearn.neighbors import KNeighborsClassifier

    held_out = KNeighborsClassifier(10).fit(est.embedding_, y[:1200]).score(est.transform(x[1200:]), y[1200:])
    assert held_out > 0.8                    # 0.88 measured: the MLP alone places new digits
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.transform(x[:100]), est.transform(x[:100]))


def test_parametric_input_noise_is_a_training_regulariser_only():
    x, _ = _blobs(80)
    kwargs = dict(parametric=True, perplexity=8, hidden_layer_sizes=(8,), batch_size=32,
                  early_exaggeration_iter=0, n_iter=20, random_state=0)
    clean = TSNE(input_noise=0.0, **kwargs).fit(x)
    noisy = TSNE(input_noise=0.3, **kwargs).fit(x)
    assert not np.allclose(clean.embedding_, noisy.embedding_)
    np.testing.assert_array_equal(noisy.transform(x), noisy.embedding_)
    np.testing.assert_array_equal(TSNE(input_noise=0.3, **kwargs).fit(x).embedding_, noisy.embedding_)


def test_non_parametric_estimator_pickles():
    x, _ = _blobs(80)
    est = TSNE(perplexity=8, n_iter=20, random_state=0).fit(x)
    again = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(again.embedding_, est.embedding_)
    np.testing.assert_array_equal(again.transform(x[:5]), est.transform(x[:5]))


# ---------------------------------------------------------------- errors name the parameter

@pytest.mark.parametrize("kwargs, match", [
    (dict(perplexity=100), "perplexity must be smaller than n_samples - 1 = 59"),
    (dict(perplexity=-1.0), "perplexity must be a positive finite number"),
    (dict(n_components=0), "n_components must be an integer >= 1"),
    (dict(init=np.zeros((59, 2))), r"init must have shape \(n_samples, n_components\) = \(60, 2\)"),
    (dict(init="spectral"), "init must be 'pca', 'random' or an"),
    (dict(algorithm="barnes_hut"), "algorithm must be one of"),
    (dict(algorithm="fft", n_components=3), "algorithm must be 'exact' or 'sampled'"),
    (dict(learning_rate=0.0), "learning_rate must be a positive"),
    (dict(metric="manhattan"), "metric must be one of"),
    (dict(metric="euclidean"), r"metric must be one of \('squared_euclidean', 'cosine'\); got 'euclidean'"),
    (dict(n_neighbors=60, algorithm="fft"), r"n_neighbors must be smaller than the number of samples \(60\)"),
    (dict(device="tpu:7"), "device must name a torch device"),
    (dict(callbacks=[1]), "callbacks must be a callable"),
    (dict(n_jobs=0), r"n_jobs must be None, -1 or an integer between 1 and 1024; got 0\."),
    (dict(knn_backend="annoy"), r"knn_backend must be one of \('exact', 'faiss'\); got 'annoy'"),
    (dict(hidden_layer_sizes=64),
     r"hidden_layer_sizes must be a tuple of integers >= 1 \(\(\) for a linear map\); got 64\."),
    (dict(input_noise=-0.1), r"input_noise must be a finite number >= 0; got -0.1"),
    (dict(input_noise=float("nan")), "input_noise must be a finite number >= 0"),
    (dict(input_noise="0.3"), "input_noise must be a finite number >= 0"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, match):
    x = np.random.default_rng(0).normal(size=(60, 4))
    with pytest.raises(IConError, match=match):
        TSNE(**kwargs).fit(x)


def test_bad_data_raises():
    x = np.random.default_rng(0).normal(size=(30, 4))
    x[3, 1] = np.nan
    with pytest.raises(IConError, match="X must be finite; got an array of shape .* containing NaN"):
        TSNE(perplexity=5).fit(x)
    with pytest.raises(IConError, match="X must be a non-empty 2-D array"):
        TSNE(perplexity=5).fit(np.zeros(10))
    with pytest.raises(IConError, match="X must be a numeric"):
        TSNE(perplexity=5).fit([["a", "b"], ["c", "d"]])


def test_transform_errors():
    x = np.random.default_rng(0).normal(size=(40, 4))
    with pytest.raises(IConError, match="transform needs a fitted estimator"):
        TSNE().transform(x)
    est = TSNE(perplexity=5, n_iter=10, early_exaggeration_iter=0, random_state=0).fit(x)
    with pytest.raises(IConError, match="X must have 4 features"):
        est.transform(x[:, :3])


def test_p_and_q_must_agree():
    x = np.random.default_rng(0).normal(size=(600, 4))
    with pytest.raises(IConError, match="p must be symmetrize"):
        NeighborEmbedding(p=KNN(5), q=joint(StudentT()), algorithm="fft").fit(x)
    with pytest.raises(IConError, match="q must be a kernel neighbourhood"):
        NeighborEmbedding(p=KNN(5), q=PositivePairs()).fit(x[:50])
    with pytest.raises(IConError, match="q must be a differentiable kernel"):
        NeighborEmbedding(p=KNN(5), q=KNN(5)).fit(x[:50])
    with pytest.raises(IConError, match=r"p must be a joint \(1, n\*n\) p"):
        NeighborEmbedding(p=KNN(5), q=joint(StudentT()), algorithm="exact").fit(x[:50])


def test_mappers():
    table = EmbeddingTable(5, 2, init=torch.ones(5, 2))
    assert table(torch.tensor([0, 3])).shape == (2, 2) and table().shape == (5, 2)
    with pytest.raises(IConError, match="init must be a tensor of shape"):
        EmbeddingTable(5, 2, init=torch.ones(4, 2))
    mlp = MLP(3, 2, hidden_layer_sizes=(4,))
    mlp.set_input_scaling(torch.randn(10, 3) * 5 + 2)
    assert mlp(torch.randn(6, 3)).shape == (6, 2)
    with pytest.raises(IConError, match=r"x must have shape \(n, 3\)"):
        mlp(torch.randn(6, 4))
    with pytest.raises(IConError, match=r"hidden_layer_sizes must be a tuple of integers >= 1 .*; got \(0,\)\."):
        MLP(3, 2, hidden_layer_sizes=(0,))
    assert MLP(np.int64(3), np.int64(2), hidden_layer_sizes=np.array([4, 5])).hidden_layer_sizes == (4, 5)
    assert [type(m) for m in MLP(3, 2, hidden_layer_sizes=()).net] == [torch.nn.Linear]
    assert EmbeddingTable(np.int64(5), np.int32(2)).weight.shape == (5, 2)


@pytest.mark.parametrize("sizes", [(), (4,), (8, 8, 8)])
def test_mlp_inference_path_equals_the_training_path(sizes):
    """Without gradient the MLP runs its SiLUs in place: the same numbers, the input untouched."""
    torch.manual_seed(0)
    mlp = MLP(3, 2, hidden_layer_sizes=sizes).double()
    x = torch.randn(50, 3, dtype=torch.float64)
    kept = x.clone()
    with_grad = mlp(x)
    with torch.no_grad():
        without = mlp(x)
    assert with_grad.requires_grad and not without.requires_grad
    assert torch.equal(with_grad.detach(), without) and torch.equal(x, kept)
