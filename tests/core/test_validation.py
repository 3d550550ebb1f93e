"""The shared checks of ``icontorch._validation``: numpy scalars pass, booleans do not, and the
public constructors built on them accept numpy numbers (``np.int64(5)``, ``np.float32(0.5)``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import icontorch as ic
from icontorch import IConError, augment
from icontorch import _validation as v
from icontorch.knn import exact_knn
from icontorch.neighborhoods import SigmoidLinks

REAL_CHECKS = [
    lambda value: v.check_positive("f", "x", value),
    lambda value: v.check_nonnegative("f", "x", value),
    lambda value: v.check_probability("f", "x", value),
    lambda value: v.check_real("f", "x", value),
    lambda value: v.check_positive_parameter("f", "x", value),
    lambda value: v.check_real_parameter("f", "x", value),
]
NUMBER_CHECKS = [lambda value: v.check_int("f", "n", value, 1)] + REAL_CHECKS
INTEGER_TYPES = [np.int8, np.int32, np.int64, np.uint16]
FLOAT_TYPES = [np.float16, np.float32, np.float64]


@pytest.mark.parametrize("numpy_type", INTEGER_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("check", NUMBER_CHECKS)
def test_numpy_integers_pass_every_number_check(check, numpy_type):
    out = check(numpy_type(1))
    assert type(out) in (int, float) and out == 1


@pytest.mark.parametrize("numpy_type", FLOAT_TYPES, ids=lambda t: t.__name__)
@pytest.mark.parametrize("check", REAL_CHECKS)
def test_numpy_floats_pass_every_real_check(check, numpy_type):
    out = check(numpy_type(0.5))
    assert type(out) is float and out == 0.5


@pytest.mark.parametrize("check", NUMBER_CHECKS)
@pytest.mark.parametrize("bad", [True, False, np.bool_(True), "1", None, [1]])
def test_booleans_and_non_numbers_fail_every_number_check(check, bad):
    with pytest.raises(IConError, match=r"^f: [nx] must .*; got "):
        check(bad)


@pytest.mark.parametrize("value", [2.0, np.float32(2.0), np.float64(2.0)])
def test_check_int_refuses_integral_floats(value):
    with pytest.raises(IConError, match=r"^f: n must be an integer >= 1; got "):
        v.check_int("f", "n", value, 1)


def test_parameter_checks_keep_tensors():
    t = torch.nn.Parameter(torch.tensor(0.3))
    assert v.check_positive_parameter("f", "x", t) is t
    assert v.check_real_parameter("f", "x", t) is t


@pytest.mark.parametrize("value", [True, np.bool_(False)])
def test_check_flag_takes_python_and_numpy_booleans(value):
    out = v.check_flag("f", "b", value)
    assert type(out) is bool and out == bool(value)


@pytest.mark.parametrize("bad", [1, 0, "yes", None])
def test_check_flag_refuses_other_values(bad):
    with pytest.raises(IConError, match=r"^f: b must be True or False; got "):
        v.check_flag("f", "b", bad)


@pytest.mark.parametrize("value, widths", [((), ()), ([4, 5], (4, 5)), ((np.int64(3),), (3,)),
                                           (np.array([4, 5]), (4, 5))])
def test_check_layer_sizes_returns_a_tuple_of_ints(value, widths):
    out = v.check_layer_sizes("f", "hidden_layer_sizes", value)
    assert out == widths and all(type(width) is int for width in out)


@pytest.mark.parametrize("bad", [64, "mlp", (4, 0), (4.0,), (True,), np.array(3), np.ones((2, 2), dtype=int)])
def test_check_layer_sizes_names_the_whole_value(bad):
    with pytest.raises(IConError, match=r"^f: hidden_layer_sizes must be a tuple of integers >= 1 "
                                        r"\(\(\) for a linear map\); got "):
        v.check_layer_sizes("f", "hidden_layer_sizes", bad)


def test_check_ids_below_names_the_range():
    with pytest.raises(IConError, match=r"^f: x must hold labels in \[0, 3\); got 'labels from -1 to 2'\.$"):
        v.check_ids_below("f", "x", torch.tensor([0, -1, 2]), 3, "labels")
    assert v.check_ids_below("f", "x", torch.tensor([0, 2]), 3).tolist() == [0, 2]


def test_check_images_is_exported_by_augment():
    assert augment.check_images is v.check_images
    with pytest.raises(IConError, match=r"^f: x must have shape \(B, C, H, W\) \(4 dimensions\)"):
        augment.check_images("f", "x", torch.zeros(2, 3, 4))


def test_public_constructors_take_numpy_numbers():
    x = torch.randn(8, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    knn = ic.KNN(np.int64(3))
    assert knn.n_neighbors == 3 and type(knn.n_neighbors) is int
    torch.testing.assert_close(knn(x), ic.KNN(3)(x), rtol=0, atol=0)
    assert ic.Gaussian(sigma=np.float32(0.5)).sigma == 0.5
    assert ic.Gaussian(temperature=np.float64(0.1)).temperature == 0.1
    assert ic.StudentT(np.int64(2)).dof == 2.0
    assert ic.PerplexityGaussian(np.float32(3.0)).perplexity == 3.0
    assert ic.DataToClass(np.int32(4)).n_classes == 4
    assert ic.mix_uniform(ic.SameLabel(), np.float32(0.25)).alpha == 0.25
    assert ic.propagate(ic.KNN(2), np.int64(2)).steps == 2
    assert SigmoidLinks(np.float32(5.0), np.int64(-3)).bias == -3.0
    loss = ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=0.5), tile_size=np.int64(3))
    assert loss.tile_size == 3 and type(loss.tile_size) is int
    items = torch.arange(4).repeat(2)
    torch.testing.assert_close(loss(x, items), ic.ICon(ic.PositivePairs(), ic.Gaussian(temperature=0.5),
                                                       tile_size=3)(x, items), rtol=0, atol=0)
    idx, _ = exact_knn(x, np.int64(2), chunk_size=np.int32(3))
    assert idx.shape == (8, 2)
    assert augment.GaussianNoise(np.float32(0.5)).std == 0.5
    assert augment.RandomAffine(degrees=np.int64(10), scale=(np.float32(0.5), 1.0)).degrees == 10.0
    assert augment.GaussianBlur(p=np.float64(1.0), kernel_size=np.int64(3)).kernel_size == 3
    assert ic.ICon(ic.SameLabel(), ic.Gaussian(sigma=1.0), gather=np.bool_(False)).gather is False


@pytest.mark.parametrize("make, who", [
    (lambda: ic.KNN(True), "KNN: n_neighbors must be an integer >= 1"),
    (lambda: ic.mix_uniform(ic.SameLabel(), True), r"MixUniform: alpha must be a number in \[0, 1\]"),
    (lambda: ic.ICon(ic.SameLabel(), ic.Gaussian(sigma=1.0), tile_size=np.bool_(True)),
     "ICon: tile_size must"),
    (lambda: augment.GaussianNoise(True), "GaussianNoise: std must be a finite number >= 0"),
    (lambda: augment.RandomErasing(value=False), "RandomErasing: value must be a finite number"),
])
def test_booleans_are_still_refused(make, who):
    with pytest.raises(IConError, match="^" + who):
        make()


CHOICES = r"\('squared_euclidean', 'cosine', 'dot'\); got 'euclidean'\.$"


@pytest.mark.parametrize("make, who", [
    (lambda: ic.KNN(2, metric="euclidean"), "KNN"),
    (lambda: ic.Gaussian(sigma=1.0, metric="euclidean"), "Gaussian"),
    (lambda: SigmoidLinks(metric="euclidean"), "SigmoidLinks"),
    (lambda: exact_knn(torch.randn(5, 2), 2, metric="euclidean"), "exact_knn"),
])
def test_euclidean_is_refused_and_the_choices_are_named(make, who):
    with pytest.raises(IConError, match=f"^{who}: metric must be one of " + CHOICES):
        make()


def test_check_device_names_the_parameter_and_refuses_missing_accelerators():
    from icontorch._validation import check_device

    assert check_device("X", "device", "cpu") == torch.device("cpu")
    assert check_device("X", "device", torch.device("cpu")) == torch.device("cpu")
    with pytest.raises(IConError, match=r"^X: device must name a torch device such as 'cpu' or 'cuda'; got 'gpu'\.$"):
        check_device("X", "device", "gpu")
    if not torch.cuda.is_available():
        with pytest.raises(IConError, match=r"^X: device must be available \(torch\.cuda\.is_available\(\) is False\)"):
            check_device("X", "device", "cuda")
