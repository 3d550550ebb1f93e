"""ImageClustering: IIC's head loss against the seed's formula, resume, the outcome on digits, bad input."""

import pickle

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from torch import nn

from icontorch import IConError, ImageClustering
from icontorch.augment import Compose, GaussianNoise, RandomAffine, default_augmentation, mild_augmentation
from icontorch.clustering.image_data import Sobel, as_images
from icontorch.clustering.image_iic import IICNet, _pair_loss
from icontorch.encoders import contrastive_encoder
from icontorch.methods import IICLoss
from icontorch.metrics import clustering_scores

FAST = dict(feature_dim=32, epochs=2, batch_size=64, cluster_epochs=3, n_heads=2, n_views=2, n_subheads=2,
            overclustering=2, random_state=0, n_jobs=1)


def _digits(n=240):
    x, y = load_digits(return_X_y=True)
    return (x[:n].reshape(-1, 8, 8) / 16.0).astype(np.float32), y[:n]


def _mutual_information_loss(phi1, phi2):
    """The seed's IID loss in float64: P = sym(mean_i phi_i phi'_i^T), -sum P (log P - log P_c - log P_c')."""
    joint = np.mean([np.outer(a, b) for a, b in zip(phi1, phi2)], axis=0)
    joint = (joint + joint.T) / 2.0
    joint = joint / joint.sum()
    marginal_rows, marginal_cols = joint.sum(1, keepdims=True), joint.sum(0, keepdims=True)
    return -np.sum(joint * (np.log(joint) - np.log(marginal_rows) - np.log(marginal_cols)))


def test_iic_head_loss_is_the_seed_formula():
    torch.manual_seed(0)
    trunk = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), nn.Tanh()).double()
    model = IICNet(trunk, 8, n_clusters=3, overclustering=2, n_subheads=4, sobel=False).double()
    x, gx = torch.rand(20, 1, 4, 4, dtype=torch.float64), torch.rand(20, 1, 4, 4, dtype=torch.float64)
    for head, size in (("main", 3), ("over", 6)):
        got = _pair_loss(model, x, gx, head, IICLoss())
        with torch.no_grad():                            # one forward pass: the batch norm sees both views
            both = model(torch.cat([x, gx]), head).softmax(2).numpy()
            phi = [both[:, :20], both[:, 20:]]
        assert phi[0].shape == (4, 20, size)
        expected = np.mean([_mutual_information_loss(phi[0][s], phi[1][s]) for s in range(4)])
        assert got.dtype == torch.float64
        assert got.item() == pytest.approx(expected, rel=1e-12, abs=1e-14)


def test_iic_heads_start_with_every_cluster_alive():
    """The heads see centred features: at initialisation no cluster takes most images (with the ReLU
    features of the default trunk fed straight to the heads, one cluster took 48-100 % of them and
    IIC never revived the others)."""
    x, _ = _digits(600)
    for seed in range(3):
        torch.manual_seed(seed)
        trunk = contrastive_encoder((1, 8, 8), feature_dim=64).backbone
        model = IICNet(trunk, 64, n_clusters=10, overclustering=5, n_subheads=5, sobel=False)
        with torch.no_grad():
            labels = model(torch.from_numpy(x)[:, None], "main").argmax(2)       # train mode: batch statistics
        for sub in labels:
            sizes = np.bincount(sub.numpy(), minlength=10)
            assert (sizes > 0).all() and sizes.max() < 0.4 * 600, sizes


def test_sobel_of_a_ramp():
    x = torch.arange(6.0).repeat(2, 3, 6, 1)             # value = column index, every channel
    out = Sobel()(x)
    assert out.shape == (2, 2, 6, 6)
    assert torch.equal(out[:, 0, 1:-1, 1:-1], torch.full((2, 4, 4), -8.0))   # (x[w-1] - x[w+1]) * (1+2+1)
    assert torch.equal(out[:, 1, 1:-1, 1:-1], torch.zeros(2, 4, 4))


def test_images_are_read_as_documented():
    grey = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    t = as_images(grey, "t", "X", torch.device("cpu"))
    assert t.shape == (2, 1, 3, 3) and t.dtype == torch.float32
    assert torch.equal(t[:, 0], torch.from_numpy(grey).float() / 255.0)
    assert as_images(torch.ones(2, 3, 4, 4, dtype=torch.float64), "t", "X", torch.device("cpu")).dtype == torch.float32
    with pytest.raises(IConError, match="X must have magnitudes below"):
        as_images(np.full((2, 4, 4), 1e300), "t", "X", torch.device("cpu"))


class _Interrupting:
    """The default augmentation, with a KeyboardInterrupt at call number ``after + 1``."""

    def __init__(self, after):
        self.inner, self.after, self.calls = default_augmentation(8), after, 0

    def __call__(self, x, generator):
        self.calls += 1
        if self.calls > self.after:
            raise KeyboardInterrupt
        return self.inner(x, generator)


@pytest.mark.parametrize("strategy", ["two_stage", "iic"])
def test_resume_gives_the_uninterrupted_weights(strategy, tmp_path):
    x, _ = _digits(200)                                   # 3 steps per epoch
    params = dict(FAST, strategy=strategy, epochs=3)
    whole = ImageClustering(**params, augment=default_augmentation(8)).fit(x)
    path = tmp_path / "run.pt"
    broken = ImageClustering(**params, augment=_Interrupting(after=4), checkpoint=path)
    with pytest.raises(KeyboardInterrupt):
        broken.fit(x)
    assert path.exists() and not hasattr(broken, "labels_")          # the fit is transactional
    resumed = ImageClustering(**params, augment=default_augmentation(8), checkpoint=path, resume=True).fit(x)
    assert len(resumed.loss_history_) == 3
    assert resumed.loss_history_ == pytest.approx(whole.loss_history_, rel=1e-6)
    for (name, a), b in zip(whole.encoder_.state_dict().items(), resumed.encoder_.state_dict().values()):
        assert torch.equal(a, b), name
    assert np.array_equal(whole.labels_, resumed.labels_)


def test_two_stage_outcome_on_digits():
    """The main job: digits clustered without labels, far above chance (0.1)."""
    x, y = _digits(600)
    mild = Compose([RandomAffine(degrees=10.0, translate=0.1, scale=(0.9, 1.1)), GaussianNoise(std=0.05)])
    model = ImageClustering(10, augment=mild, feature_dim=64, epochs=4, batch_size=64, cluster_epochs=10, n_heads=3,
                            random_state=0, n_jobs=1)
    labels = model.fit_predict(x)
    assert labels.shape == (600,) and model.labels_.dtype.kind == "i"
    assert clustering_scores(y, labels)["accuracy"] > 0.5
    assert np.array_equal(model.predict(x), labels)
    probabilities = model.predict_proba(torch.from_numpy(x))
    assert isinstance(probabilities, torch.Tensor) and probabilities.shape == (600, 10)
    assert torch.allclose(probabilities.sum(1), torch.ones(600), atol=1e-5)
    again = pickle.loads(pickle.dumps(model))
    assert np.array_equal(again.predict(x), labels)


@pytest.mark.parametrize("strategy", ["iic", "scan"])
def test_other_strategies_fit_and_predict(strategy):
    x, _ = _digits(200)
    model = ImageClustering(4, strategy=strategy, **FAST).fit((x * 255).astype(np.uint8))
    assert model.labels_.shape == (200,) and model.labels_.max() < 4
    assert np.array_equal(model.predict((x * 255).astype(np.uint8)), model.labels_)
    if strategy == "iic":
        assert model.subhead_losses_.shape == (2,) and model.best_subhead_ == int(np.argmin(model.subhead_losses_))


def test_given_views_feed_the_two_stage_clustering():
    x, _ = _digits(120)
    views = np.stack([x, x[:, ::-1]], axis=1)                             # (N, 2, 8, 8)
    model = ImageClustering(3, **dict(FAST, epochs=1)).fit(x, views=views)
    assert model.labels_.shape == (120,) and model.used_views_


class _Recording:
    """An augmentation that counts the images it perturbs."""

    def __init__(self):
        self.inner, self.images = mild_augmentation(8), 0

    def __call__(self, x, generator):
        self.images += x.shape[0]
        return self.inner(x, generator)


def test_views_come_from_view_augment():
    """The cached views are ``n_views`` copies of every image through ``view_augment`` (default: the mild
    augmentation); the encoder trains on ``augment``; SCAN draws no views."""
    x, _ = _digits(120)
    params = dict(FAST, epochs=1, n_views=3)
    recording = _Recording()
    ImageClustering(3, view_augment=recording, **params).fit(x)
    assert recording.images == 3 * 120
    default = ImageClustering(3, **params).fit(x)
    explicit = ImageClustering(3, view_augment=mild_augmentation(8), **params).fit(x)
    assert np.array_equal(default.labels_, explicit.labels_)
    unused = _Recording()
    ImageClustering(3, strategy="scan", view_augment=unused, **params).fit(x)
    assert unused.images == 0


@pytest.mark.parametrize("kwargs, X, views, message", [
    ({}, np.zeros((20, 64)), None, "X must be a non-empty array of images"),
    ({}, np.zeros((2, 3, 1, 8, 8)), None, "X must be a non-empty array of images"),
    ({"n_clusters": 30}, None, None, "n_clusters must be at most the number of images (20)"),
    ({}, "nan", None, "X must hold finite pixel values"),
    ({"strategy": "kmeans"}, None, None, "strategy must be one of"),
    ({}, None, np.zeros((20, 2, 9, 8)), "views must have shape (20, n_views, 1, 8, 8)"),
    ({}, None, np.zeros((19, 2, 8, 8)), "views must have shape (20, n_views, 1, 8, 8)"),
    ({"strategy": "iic"}, None, np.zeros((20, 2, 8, 8)), "views must be None with strategy='iic'"),
    ({"n_neighbors": 20}, None, None, "n_neighbors must be smaller than the number of images (20)"),
    ({"epochs": 0}, None, None, "epochs must be"),
    ({"encoder": "resnet"}, None, None, "encoder must be None or a torch.nn.Module"),
    ({}, np.zeros((20, 6, 6)), None, "X must hold images of at least 8 x 8 pixels"),
    ({"augment": 3}, None, None, "augment must be a callable"),
    ({"view_augment": "crop"}, None, None, "view_augment must be a callable"),
    ({"encoder": nn.Flatten(), "augment": mild_augmentation(8)}, np.zeros((20, 6, 6)), None,
     "X must hold images of at least 8 x 8 pixels"),
    ({"resume": True}, None, None, "resume must come with a checkpoint path"),
])
def test_bad_input_raises_before_training(kwargs, X, views, message):
    x, _ = _digits(20)
    if X is None:
        X = x
    elif isinstance(X, str):
        X = x.copy()
        X[3, 2, 1] = np.nan
    model = ImageClustering(**{**FAST, **kwargs})
    with pytest.raises(IConError, match=message.replace("(", r"\(").replace(")", r"\)")):
        model.fit(X, views=views)
    assert not hasattr(model, "labels_")


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is there")
def test_cuda_where_there_is_none():
    with pytest.raises(IConError, match="device must be available"):
        ImageClustering(device="cuda").fit(_digits(20)[0])


def test_predict_checks():
    with pytest.raises(IConError, match="not fitted"):
        ImageClustering().predict(np.zeros((2, 8, 8)))
    x, _ = _digits(120)
    model = ImageClustering(3, strategy="scan", **dict(FAST, epochs=1)).fit(x)
    with pytest.raises(IConError, match=r"X must hold images of shape \(1, 8, 8\), as in fit"):
        model.predict(np.zeros((2, 3, 8, 8), dtype=np.float32))


_BAD_PARAMETERS = [(name, value) for name in ("n_clusters", "feature_dim", "epochs", "batch_size", "n_views",
                                              "n_neighbors", "n_heads", "overclustering",
                                              "n_subheads") for value in (0, -1, 2.5, "3", True, None)]
_BAD_PARAMETERS += [("walk_length", -1), ("walk_length", 1.0), ("batch_size", 1), ("cluster_epochs", 0),
                    ("cluster_epochs", 2.5)]
_BAD_PARAMETERS += [(name, value) for name in ("learning_rate",) for value in (0.0, -1e-3, float("nan"), "0.1")]
_BAD_PARAMETERS += [("weight_decay", -1.0), ("weight_decay", float("inf")), ("alpha_p", 1.5), ("alpha_q", -0.1),
                    ("alpha_p", "0.5"), ("mutual_knn", "yes"), ("sobel", 2), ("verbose", "no"), ("resume", None),
                    ("n_jobs", 0), ("random_state", -1), ("random_state", 1.5), ("device", "gpu"),
                    ("device", 7), ("checkpoint", 3), ("loss", "infonce"), ("strategy", None)]


@pytest.mark.parametrize("name, value", _BAD_PARAMETERS)
def test_every_bad_parameter_raises_naming_it(name, value):
    model = ImageClustering(**{**FAST, "n_clusters": 3, name: value})
    with pytest.raises(IConError, match=name):
        model.fit(_digits(20)[0])
    assert not hasattr(model, "labels_")
