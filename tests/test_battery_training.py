"""Bad-input battery, part 3: contrastive training, the augmentations and the multi-view helpers.

``train_contrastive`` on 8 images of 1 x 4 x 4 for one epoch; every transform of
:mod:`icontorch.augment` on a batch of 4 images of 3 x 8 x 8; ``multiview_batch``,
``MultiViewDataset`` and ``collate_views``. One thing at a time is made bad. Non-finite pixels are
not tried on the augmentations: they document that they make no finiteness pass (it would sync a
GPU); ``train_contrastive`` does check its images.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
import torch
from torch import nn

from icontorch import augment, methods
from icontorch.training import train_contrastive
from icontorch.views import MultiViewDataset, collate_views, multiview_batch

from battery_inputs import RAISES, SAFE, one_thread, parameter_values, rand, stale, verdict, xfails
from battery_known import KNOWN_TRAINING


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _identity(x, generator):
    return x


# Images: (id, make from a valid (B, C, H, W) float32 batch, expect); shared by every image entry point.
IMAGES = {
    "int": (lambda x: (x * 3).round().long(), RAISES),
    "bool": (lambda x: x > 0, RAISES),
    "complex": (lambda x: x.to(torch.complex64), RAISES),
    "numpy": (lambda x: x.numpy(), RAISES),
    "string": (lambda x: "x", RAISES),
    "none": (lambda x: None, RAISES),
    "rank-3": (lambda x: x[0], RAISES),
    "rank-5": (lambda x: x[None], RAISES),
    "empty": (lambda x: x[:0], RAISES),
    "no-pixels": (lambda x: x[:, :, :0], RAISES),
    "float64": (lambda x: x.double(), SAFE),
    "one-pixel": (lambda x: x[:, :, :1, :1].contiguous(), SAFE),
    "duplicates": (lambda x: x[torch.arange(len(x)) % 2], SAFE),
    "constant": (lambda x: torch.full_like(x, 0.5), SAFE),
    "huge": (lambda x: x * 1e20, SAFE),
    "tiny": (lambda x: x * 1e-30, SAFE),
}
NON_FINITE = {"nan": (lambda x: x.masked_fill(x > 1, math.nan), RAISES),
              "inf": (lambda x: x.masked_fill(x > 1, math.inf), RAISES),
              "-inf": (lambda x: x.masked_fill(x > 1, -math.inf), RAISES)}


# --------------------------------------------------------------------------- train_contrastive
def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 4))


def _train(**override):
    arguments = dict(model=_model(), loss_fn=methods.simclr(), images=rand(8, 1, 4, 4, seed=0),
                     augment=augment.GaussianNoise(0.1), epochs=1, batch_size=4)
    arguments.update(override)
    model = arguments["model"]
    return train_contrastive(**arguments), model


def _unreadable(path):
    path.write_bytes(b"not a checkpoint")
    return path


def _truncated(path):
    _train(checkpoint=path)
    path.write_bytes(path.read_bytes()[:100])
    return path


def _not_a_dict(path):
    torch.save([1, 2, 3], path)
    return path


TRAIN = {
    "epochs": (("0", 0, RAISES), ("1.5", 1.5, RAISES), ("nan", math.nan, RAISES), ("string", "x", RAISES)),
    "batch_size": (("0", 0, RAISES), ("1", 1, RAISES), ("string", "x", RAISES), ("huge", 10 ** 6, SAFE)),
    "n_views": (("1", 1, RAISES), ("nan", math.nan, RAISES)),
    "learning_rate": parameter_values(1e-3),
    "weight_decay": (("nan", math.nan, RAISES), ("-1", -1.0, RAISES), ("inf", math.inf, RAISES)),
    "learning_rate_schedule": (("bogus", "bogus", RAISES),),
    "random_state": (("-1", -1, RAISES), ("none", None, RAISES), ("nan", math.nan, RAISES), ("2**64", 2 ** 64, RAISES)),
    "device": (("bogus", "bogus", RAISES), ("cuda", "cuda", RAISES if not torch.cuda.is_available() else SAFE),
               ("int", 5, RAISES), ("meta", "meta", RAISES)),
    "model": (("int", 5, RAISES), ("no-parameters", nn.Flatten(), RAISES)),
    "loss_fn": (("int", 5, RAISES), ("reduction-none", methods.simclr(reduction="none"), RAISES),
                ("returns-nan", lambda z, t: (z * math.nan).sum(), RAISES)),
    "augment": (("int", 5, RAISES), ("one-argument", lambda x: x, RAISES),
                ("wrong-shape", lambda x, g: x[:, :, :2], RAISES), ("returns-nan", lambda x, g: x * math.nan, RAISES),
                ("identity", _identity, SAFE)),
    "resume": (("without-checkpoint", True, RAISES),),
}
CHECKPOINTS = {"missing-folder": (lambda p: p / "missing" / "ckpt.pt", RAISES),
               "a-folder": (lambda p: p, RAISES),
               "corrupt": (lambda p: _unreadable(p / "ckpt.pt"), RAISES),
               "truncated": (lambda p: _truncated(p / "ckpt.pt"), RAISES),
               "not-a-dict": (lambda p: _not_a_dict(p / "ckpt.pt"), RAISES)}


# The test model is float32 and reads 16 pixels: other dtypes and sizes are its business, not the loop's.
_TRAIN_IMAGES = {k: v for k, v in {**IMAGES, **NON_FINITE}.items() if k not in ("float64", "one-pixel")}


def _train_cases():
    for label, (_, expect) in {**_TRAIN_IMAGES, "one-image": (None, RAISES)}.items():
        yield f"train_contrastive-images-{label}", ("images", label, expect)
    for param, values in TRAIN.items():
        for label, _, expect in values:
            yield f"train_contrastive-{param}={label}", (param, label, expect)
    for label, (_, expect) in CHECKPOINTS.items():
        yield f"train_contrastive-checkpoint={label}", ("checkpoint", label, expect)


@pytest.mark.parametrize("param, label, expect", xfails(KNOWN_TRAINING, list(_train_cases())))
def test_train_contrastive(param, label, expect, tmp_path):
    if param == "images":
        images = rand(8, 1, 4, 4, seed=0)
        value = images[:1] if label == "one-image" else _TRAIN_IMAGES[label][0](images)
    elif param == "checkpoint":
        value = CHECKPOINTS[label][0](tmp_path)
        verdict(lambda: _train(checkpoint=value, resume=True), expect)
        return
    else:
        value = next(v for lab, v, _ in TRAIN[param] if lab == label)
    verdict(lambda: _train(**{param: value}), expect)


# --------------------------------------------------------------------------------- augmentations
AUGMENTATIONS = {
    "RandomResizedCrop": augment.RandomResizedCrop, "RandomAffine": augment.RandomAffine,
    "RandomHorizontalFlip": augment.RandomHorizontalFlip, "GaussianNoise": augment.GaussianNoise,
    "GaussianBlur": augment.GaussianBlur, "ColorJitter": augment.ColorJitter, "RandomErasing": augment.RandomErasing,
    "default_augmentation": augment.default_augmentation,
    "Compose": lambda transforms=(augment.GaussianNoise(), augment.RandomHorizontalFlip()): augment.Compose(transforms),
}
_PAIR = (("reversed", (1.0, 0.5), RAISES), ("nan", (math.nan, 1.0), RAISES), ("string", "x", RAISES),
         ("triple", (0.1, 0.2, 0.3), RAISES))


def _augment_cases():
    for name, make in AUGMENTATIONS.items():
        for label, (_, expect) in IMAGES.items():
            yield f"{name}-x-{label}", (name, "x", label, expect)
        yield f"{name}-generator=int", (name, "generator", "int", RAISES)
        for param in inspect.signature(make).parameters.values():
            values = _PAIR if isinstance(param.default, tuple) and len(param.default) == 2 and \
                not callable(param.default[0]) else parameter_values(param.default)
            if param.name == "transforms":
                values = (("string", "x", RAISES), ("not-callable", (5,), RAISES), ("empty", (), SAFE))
            for label, _, expect in values:
                yield f"{name}-{param.name}={label}", (name, param.name, label, expect)


def _augment_value(name, param, label):
    values = _PAIR if param != "transforms" else (("string", "x", RAISES), ("not-callable", (5,), RAISES),
                                                  ("empty", (), SAFE))
    found = [v for lab, v, _ in values if lab == label]
    if not found:
        default = inspect.signature(AUGMENTATIONS[name]).parameters[param].default
        found = [v for lab, v, _ in parameter_values(default) if lab == label]
    return found[0]


@pytest.mark.parametrize("name, param, label, expect", xfails(KNOWN_TRAINING, list(_augment_cases())))
def test_augmentation(name, param, label, expect):
    images = rand(4, 3, 8, 8, seed=0)
    generator = torch.Generator().manual_seed(0)
    if param == "x":
        verdict(lambda: AUGMENTATIONS[name]()(IMAGES[label][0](images), generator), expect)
    elif param == "generator":
        verdict(lambda: AUGMENTATIONS[name]()(images, 5), expect)
    else:
        value = _augment_value(name, param, label)
        verdict(lambda: AUGMENTATIONS[name](**{param: value})(images, generator), expect)


# ------------------------------------------------------------------------------------------ views
def _views_cases():
    for label, (_, expect) in IMAGES.items():
        yield f"multiview_batch-x-{label}", ("x", label, expect)
    for label, expect in (("float", RAISES), ("short", RAISES), ("2-D", RAISES), ("string", RAISES),
                          ("none", RAISES), ("negative", SAFE)):
        yield f"multiview_batch-index-{label}", ("index", label, expect)
    for label, expect in (("1", RAISES), ("nan", RAISES), ("string", RAISES)):
        yield f"multiview_batch-n_views={label}", ("n_views", label, expect)
    for label, expect in (("int", RAISES), ("wrong-shape", RAISES), ("one-argument", RAISES)):
        yield f"multiview_batch-augment={label}", ("augment", label, expect)


_INDEX = {"float": lambda i: i.float(), "short": lambda i: i[:-1], "2-D": lambda i: i[:, None],
          "string": lambda i: "x", "none": lambda i: None, "negative": lambda i: i - 10}
_NVIEWS = {"1": 1, "nan": math.nan, "string": "x"}
_AUGMENT = {"int": 5, "wrong-shape": lambda x, g: x[:1], "one-argument": lambda x: x}


@pytest.mark.parametrize("param, label, expect", xfails(KNOWN_TRAINING, list(_views_cases())))
def test_multiview_batch(param, label, expect):
    arguments = dict(x=rand(4, 3, 8, 8, seed=0), index=torch.arange(4), augment=augment.GaussianNoise(),
                     n_views=2, generator=torch.Generator().manual_seed(0))
    table = {"x": lambda v: IMAGES[label][0](v), "index": _INDEX[label] if param == "index" else None,
             "n_views": lambda v: _NVIEWS[label], "augment": lambda v: _AUGMENT[label]}
    arguments[param] = table[param](arguments[param])
    verdict(lambda: multiview_batch(**arguments), expect)


_DATASET = {
    "images-int": (lambda: MultiViewDataset(torch.zeros(4, 1, 4, 4, dtype=torch.long), _identity), RAISES),
    "augment-int": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), 5), RAISES),
    "n_views=1": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity, n_views=1), RAISES),
    "random_state=-1": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity, random_state=-1), RAISES),
    "item=100": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity)[100], RAISES),
    "item=string": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity)["x"], RAISES),
    "item=1.5": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity)[1.5], RAISES),
    "item=-1": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity)[-1], SAFE),
    "set_epoch=-1": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), _identity).set_epoch(-1), RAISES),
    "augment-wrong-shape": (lambda: MultiViewDataset(rand(4, 1, 4, 4, seed=0), lambda x, g: x[:1])[0], RAISES),
    "collate-empty": (lambda: collate_views([]), RAISES),
    "collate-string": (lambda: collate_views("x"), RAISES),
    "collate-not-pairs": (lambda: collate_views([(torch.zeros(2, 1, 4, 4),)]), RAISES),
    "collate-mixed-shapes": (lambda: collate_views([(torch.zeros(2, 1, 4, 4), 0), (torch.zeros(2, 1, 5, 5), 1)]),
                             RAISES),
    "collate-index-string": (lambda: collate_views([(torch.zeros(2, 1, 4, 4), "x")]), RAISES),
    "collate-index-float": (lambda: collate_views([(torch.zeros(2, 1, 4, 4), 1.5)]), RAISES),
    "collate-views-3-D": (lambda: collate_views([(torch.zeros(1, 4, 4), 0)]), RAISES),
}


@pytest.mark.parametrize("call, expect", xfails(KNOWN_TRAINING, [(f"MultiViewDataset-{k}", v)
                                                                  for k, v in _DATASET.items()]))
def test_multiview_dataset_and_collate(call, expect):
    verdict(call, expect)


def test_wrong_keyword_is_a_type_error():
    with pytest.raises(TypeError):
        train_contrastive(_model(), methods.simclr(), rand(8, 1, 4, 4, seed=0), _identity, epoch=1)
    with pytest.raises(TypeError):
        augment.GaussianNoise(sdt=0.1)


def test_numpy_scalars_are_numbers():
    """The numbers of the training loop may be numpy scalars (as everywhere else)."""
    history, _ = _train(epochs=np.int64(1), batch_size=np.int32(4), learning_rate=np.float32(1e-3))
    assert len(history) == 1 and math.isfinite(history[0])


def test_every_known_failure_names_a_case():
    assert not stale(KNOWN_TRAINING), "ids in battery_known.KNOWN_TRAINING that are no case of this file"
