"""clustering_scores against hand-checked contingency tables (K = C, K > C, K < C) and brute force."""

import itertools
import math

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_mutual_info_score, adjusted_rand_score, normalized_mutual_info_score

from icontorch import IConError
from icontorch.metrics import clustering_scores


def test_permuted_labels_score_one():
    truth = [0, 0, 1, 1, 2, 2]
    pred = [1, 1, 0, 0, 2, 2]
    s = clustering_scores(truth, pred)
    for key in ("accuracy", "many_to_one_accuracy", "nmi", "ami", "ari"):
        assert s[key] == pytest.approx(1.0)
    assert s["mapping"] == {0: 1, 1: 0, 2: 2}


def test_more_clusters_than_classes():
    # clusters x classes:  c0 [2, 0], c1 [1, 0], c2 [0, 3]
    truth = [0, 0, 0, 1, 1, 1]
    pred = [0, 0, 1, 2, 2, 2]
    s = clustering_scores(truth, pred)
    np.testing.assert_array_equal(s["contingency"], [[2, 0], [1, 0], [0, 3]])
    assert s["accuracy"] == pytest.approx(5 / 6)          # c0 -> 0, c2 -> 1; c1 unmatched
    assert s["mapping"] == {0: 0, 2: 1}
    assert s["many_to_one_accuracy"] == pytest.approx(1.0)  # c1 -> 0 as well
    assert s["many_to_one_mapping"] == {0: 0, 1: 0, 2: 1}


def test_fewer_clusters_than_classes():
    # clusters x classes:  c0 [2, 2, 0], c1 [0, 0, 2]
    truth = ["a", "a", "b", "b", "c", "c"]
    pred = [7, 7, 7, 7, 9, 9]
    s = clustering_scores(truth, pred)
    np.testing.assert_array_equal(s["contingency"], [[2, 2, 0], [0, 0, 2]])
    assert s["accuracy"] == pytest.approx(4 / 6)
    assert s["mapping"][9] == "c" and s["mapping"][7] in ("a", "b")
    assert s["many_to_one_accuracy"] == pytest.approx(4 / 6)


def test_hungarian_is_optimal_where_greedy_is_not():
    # clusters x classes [[5, 4], [4, 0]]: greedy takes the 5 and ends at 5; the optimum is 4 + 4.
    pred = [0] * 9 + [1] * 4
    truth = [0] * 5 + [1] * 4 + [0] * 4
    s = clustering_scores(truth, pred)
    np.testing.assert_array_equal(s["contingency"], [[5, 4], [4, 0]])
    assert s["accuracy"] == pytest.approx(8 / 13)
    assert s["mapping"] == {0: 1, 1: 0}
    assert s["many_to_one_accuracy"] == pytest.approx(9 / 13)


def test_ari_and_nmi_by_hand():
    # classes x clusters [[2, 0], [1, 1]]
    truth, pred = [0, 0, 1, 1], [0, 0, 0, 1]
    s = clustering_scores(truth, pred)
    # ARI: sum C(n_ij, 2) = 1, rows 2 + 2 -> 2, columns 3 + 1 -> 3, C(4, 2) = 6: expected 1, max 2.5
    assert s["ari"] == pytest.approx((1 - 2 * 3 / 6) / (2.5 - 2 * 3 / 6))
    assert s["ari"] == pytest.approx(0.0, abs=1e-12)
    h_true = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3) + 0.25 * math.log(2)
    assert s["nmi"] == pytest.approx(mi / ((h_true + h_pred) / 2), rel=1e-12)


@pytest.mark.parametrize("seed", range(6))
def test_accuracy_equals_brute_force_and_sklearn(seed):
    rng = np.random.default_rng(seed)
    n_classes, n_clusters = rng.integers(2, 5), rng.integers(2, 5)
    truth = rng.integers(0, n_classes, 40)
    pred = rng.integers(0, n_clusters, 40)
    s = clustering_scores(torch.as_tensor(truth), pred)
    clusters, classes = np.unique(pred), np.unique(truth)
    best = 0
    small, large = (clusters, classes) if len(clusters) <= len(classes) else (classes, clusters)
    for image in itertools.permutations(large, len(small)):
        pairs = zip(small, image) if len(clusters) <= len(classes) else zip(image, small)
        best = max(best, sum(int(((pred == k) & (truth == c)).sum()) for k, c in pairs))
    assert s["accuracy"] == pytest.approx(best / 40)
    majority = sum(np.bincount(truth[pred == k]).max() for k in clusters)
    assert s["many_to_one_accuracy"] == pytest.approx(majority / 40)
    assert s["nmi"] == pytest.approx(normalized_mutual_info_score(truth, pred))
    assert s["ami"] == pytest.approx(adjusted_mutual_info_score(truth, pred))
    assert s["ari"] == pytest.approx(adjusted_rand_score(truth, pred))
    assert s["many_to_one_accuracy"] >= s["accuracy"]


@pytest.mark.parametrize("truth, pred, match", [
    ([0, 1, 2], [0, 1], "same length"),
    ([], [], "non-empty"),
    ([[0, 1]], [[0, 1]], "1-D"),
    ([0.0, float("nan")], [0, 1], "NaN"),
])
def test_bad_input(truth, pred, match):
    with pytest.raises(IConError, match=match):
        clustering_scores(np.asarray(truth), np.asarray(pred))
