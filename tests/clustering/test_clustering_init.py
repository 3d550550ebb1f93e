"""``init``: heads started at the nearest-centroid rule of a k-Means run (closed form and scikit-learn oracle)."""

import numpy as np
import pytest
import torch
from sklearn.cluster import MiniBatchKMeans
from sklearn.datasets import make_blobs

from icontorch import IConError
from icontorch.clustering import Clustering
from icontorch.clustering.heads import nearest_centroid_head
from icontorch.clustering.train import MANY_CLUSTERS, auto_init
from icontorch.metrics import clustering_scores


def test_nearest_centroid_head_is_the_softmax_of_minus_half_squared_distances():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 7, generator=g, dtype=torch.float64)
    centers = torch.randn(9, 7, generator=g, dtype=torch.float64)
    beta, temperature = 0.7, 0.3
    weight, bias = nearest_centroid_head(centers, beta, temperature)
    head = torch.softmax((x @ weight + bias) / temperature, 1)
    expected = torch.softmax(-beta * torch.cdist(x, centers) ** 2 / 2, 1)
    torch.testing.assert_close(head, expected, rtol=1e-12, atol=1e-12)
    assert torch.equal(head.argmax(1), torch.cdist(x, centers).argmin(1))


def test_k_means_init_starts_at_minibatch_kmeans_of_the_standardised_features():
    x, _ = make_blobs(600, centers=12, n_features=5, cluster_std=3.0, random_state=1)
    x = x.astype(np.float32)
    seed = 3
    # one step at a vanishing learning rate and no averaging: the head is still its initialisation
    model = Clustering(12, init="k-means", n_heads=1, n_iter=1, learning_rate=1e-12, ema=0.0,
                       random_state=seed).fit(x)
    z = ((torch.from_numpy(x) - model.mean_) / model.scale_).numpy()
    kmeans = MiniBatchKMeans(12, batch_size=4096, n_init=1, random_state=seed + 4).fit(z)
    np.testing.assert_array_equal(model.labels_, kmeans.predict(z))


def test_auto_init_starts_one_head_in_five_at_k_means_below_many_clusters_and_all_from_there_on():
    assert auto_init(10, (), 12) == 2 and auto_init(10, (), 4) == 0
    assert auto_init(MANY_CLUSTERS, (), 3) == 3
    assert auto_init(1000, (64,), 3) == 0 and auto_init(10, (64,), 12) == 0     # an MLP head has no centroid form


def test_auto_init_starts_the_last_heads_at_k_means_and_the_others_at_random():
    x, _ = make_blobs(500, centers=4, n_features=5, random_state=2)
    x = x.astype(np.float32)
    seed = 5
    # one step at a vanishing learning rate and no averaging: every head is still its initialisation
    frozen = dict(n_heads=5, n_iter=1, learning_rate=1e-12, ema=0.0, random_state=seed)
    auto = Clustering(4, **frozen).fit(x)                       # 5 // 5 = 1 head, the last, at k-Means
    random = Clustering(4, init="random", **frozen).fit(x)
    np.testing.assert_allclose(auto.head_losses_[:4], random.head_losses_[:4], rtol=1e-6)   # same random heads
    assert auto.head_losses_[4] < random.head_losses_[4]
    assert auto.best_head_ == 4                 # on separated blobs the k-Means start has the lowest loss
    z = ((torch.from_numpy(x) - auto.mean_) / auto.scale_).numpy()
    kmeans = MiniBatchKMeans(4, batch_size=4096, n_init=1, random_state=seed + 4 + 4).fit(z)
    np.testing.assert_array_equal(auto.labels_, kmeans.predict(z))


def test_k_means_init_finds_many_small_blobs():
    x, y = make_blobs(3000, centers=60, n_features=8, random_state=0)
    model = Clustering(60, n_iter=200, random_state=0).fit(x)            # init="auto": k-means at 60 clusters
    assert clustering_scores(y, model.labels_)["accuracy"] > 0.98


@pytest.mark.parametrize("params, match", [
    (dict(init="kmeans++"), "init"),
    (dict(init="k-means", hidden_layer_sizes=(16,)), "init"),
])
def test_bad_init_is_refused_before_any_work(params, match):
    x, _ = make_blobs(200, centers=3, n_features=4, random_state=0)
    with pytest.raises(IConError, match=match):
        Clustering(3, **params).fit(x)
