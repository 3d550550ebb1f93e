"""train_contrastive's guarantees (issue 17): bad settings, losses, models and checkpoints end in
IConError before training; a checkpoint write that fails leaves the previous checkpoint intact.
Also the bad-input battery of views, probes and augmentations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import icontorch as ic
from icontorch import augment as A
from icontorch import methods
from icontorch.probes import encode, knn_probe_accuracy, linear_probe_accuracy
from icontorch.training import train_contrastive
from icontorch.views import MultiViewDataset, collate_views, multiview_batch


class _Tiny(nn.Module):
    def __init__(self, out=4):
        super().__init__()
        self.linear = nn.Linear(64, out)

    def forward(self, x):
        return self.linear(x.flatten(1))


def _jitter(x, generator=None):
    return x + 0.1 * torch.randn(x.shape, generator=generator, dtype=x.dtype)


class _Counting:
    """An augment that counts its calls (a check made "before training" leaves it at 0)."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x, generator=None):
        self.calls += 1
        return _jitter(x, generator)


def _images(n=16, seed=0):
    return torch.rand(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _train(**kwargs):
    args = dict(model=_Tiny(), loss_fn=methods.simclr(), images=_images(), augment=_jitter, epochs=1, batch_size=8)
    args.update(kwargs)
    return train_contrastive(**args)


def _weights(model):
    return [value.clone() for value in model.state_dict().values()]


# ------------------------------------------------------------------ settings and losses
@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=1), r"^train_contrastive: batch_size must be an integer >= 2 \(with 1 item per batch .*no "
                         r"negatives.*; got 1\.$"),
    (dict(loss_fn=ic.ICon(ic.PositivePairs(), ic.Gaussian(0.5), reduction="none")),
     r"^train_contrastive: loss_fn must return a scalar loss \(build it with reduction='mean' or 'sum', not 'none'\)"),
    (dict(loss_fn=lambda z, target: z.sum(1)), r"loss_fn must return a scalar tensor .*; got tensor of shape \(16,\)"),
    (dict(loss_fn=lambda z, target: 1.0), r"loss_fn must return a scalar tensor"),
    (dict(loss_fn=lambda z, target: z.detach().sum()), r"loss_fn must return a loss computed from the model's output"),
    (dict(model=nn.Flatten()), r"model must have trainable parameters"),
    (dict(model=_Tiny().requires_grad_(False)), r"model must have trainable parameters"),
    (dict(model=nn.Sequential(nn.Flatten(), nn.Linear(64, 1), nn.Flatten(0))),
     r"model must map the 16 views to a \(16, d\) tensor of embeddings; got tensor of shape \(16,\)"),
    (dict(images=torch.rand(16, 3, 8, 8)), r"model must map views of shape \(16, 3, 8, 8\) to \(B, d\) embeddings; "
                                           r"it raised RuntimeError: mat1 and mat2"),
    (dict(images=_images().double()), r"model must map views of shape \(16, 1, 8, 8\) .*RuntimeError: .*dtype"),
    (dict(augment=lambda x: x), r"augment must be a callable augment\(x, generator\) -> x \(it must accept two"),
    (dict(augment=lambda x, g: x.double()), r"^train_contrastive: augment\(x\) must return a tensor of the input's "
                                            r"dtype torch.float32"),
    (dict(augment=lambda x, g: x * float("nan")), r"^train_contrastive: augment\(x\) must return finite values"),
    (dict(resume="yes"), r"resume must be True or False; got 'yes'\."),
    (dict(checkpoint=5), r"checkpoint must be None or a file path"),
])
def test_bad_training_input_ends_in_a_clear_error(kwargs, match):
    with pytest.raises(ic.IConError, match=match):
        _train(**kwargs)


def test_model_that_gives_nan_is_named():
    class Broken(_Tiny):
        def forward(self, x):
            return super().forward(x) * float("nan")

    with pytest.raises(ic.IConError, match=r"the model's embeddings became non-finite at epoch 1, step 1"):
        _train(model=Broken())


def test_a_loss_that_cannot_read_view_ids_is_named():
    """t-SNE's p reads features, not ids: the message says what train_contrastive passes as target."""
    with pytest.raises(ic.IConError, match=r"loss_fn must accept, as target, the integer item id of each view "
                                           r".*PerplexityGaussian: target must have 2 dimensions"):
        _train(loss_fn=methods.tsne())


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused_before_training():
    model, augment = _Tiny(), _Counting()
    with pytest.raises(ic.IConError, match=r"^train_contrastive: device must be available .*; got 'cuda'\.$"):
        _train(model=model, augment=augment, device="cuda")
    assert augment.calls == 0


# ------------------------------------------------------------------ checkpoints
def test_checkpoint_in_a_missing_folder_is_refused_before_training(tmp_path):
    augment = _Counting()
    with pytest.raises(ic.IConError, match=r"checkpoint must be in an existing folder"):
        _train(augment=augment, checkpoint=tmp_path / "missing" / "run.pt")
    with pytest.raises(ic.IConError, match=r"checkpoint must name a file, not a folder"):
        _train(augment=augment, checkpoint=tmp_path)
    assert augment.calls == 0 and list(tmp_path.iterdir()) == []


def test_checkpoint_in_a_folder_that_cannot_be_written_is_refused_before_training(tmp_path, monkeypatch):
    import icontorch.training as training

    # the probe file cannot be created (as in a read-only folder, which root could still write)
    monkeypatch.setattr(training, "_temporary", lambda path: tmp_path / "missing" / "probe.tmp")
    augment = _Counting()
    with pytest.raises(ic.IConError, match=r"checkpoint must be in a folder where files can be written"):
        _train(augment=augment, checkpoint=tmp_path / "run.pt")
    assert augment.calls == 0


@pytest.mark.parametrize("content", ["garbage", "empty", "truncated", "list", "tensor", "keys missing"])
def test_a_file_that_is_not_a_checkpoint_is_named(tmp_path, content):
    path = tmp_path / "run.pt"
    if content in ("garbage", "empty"):
        path.write_bytes(b"not a checkpoint" if content == "garbage" else b"")
    elif content == "truncated":
        _train(checkpoint=path)
        path.write_bytes(path.read_bytes()[:300])
    elif content == "keys missing":
        torch.save({"format": 2, "epoch": 1}, path)
    else:
        torch.save([1, 2] if content == "list" else torch.zeros(3), path)
    model = _Tiny()
    weights = _weights(model)
    with pytest.raises(ic.IConError, match=r"^train_contrastive: checkpoint must be a file written by "
                                           r"train_contrastive to be resumed; got '.*run.pt', which") as error:
        _train(model=model, checkpoint=path, resume=True)
    assert "weights_only" not in str(error.value) and error.value.__cause__ is None
    assert all(torch.equal(a, b) for a, b in zip(weights, _weights(model)))


def test_a_checkpoint_of_another_model_leaves_the_model_as_it_was(tmp_path):
    path = tmp_path / "run.pt"
    _train(model=_Tiny(out=4), checkpoint=path)
    model = _Tiny(out=5)
    weights = _weights(model)
    with pytest.raises(ic.IConError, match=r"checkpoint '.*run.pt' does not fit this model and run"):
        _train(model=model, checkpoint=path, resume=True)
    assert all(torch.equal(a, b) for a, b in zip(weights, _weights(model)))


def test_a_failed_checkpoint_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    real_save = torch.save
    saves = {"n": 0}

    def failing_save(obj, f, *args, **kwargs):
        saves["n"] += 1
        if saves["n"] == 1:
            return real_save(obj, f, *args, **kwargs)
        f.write(b"PK\x03\x04 half a zip file")              # the disk fills up midway
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError, match="No space left"):
        _train(epochs=2, checkpoint=path)
    monkeypatch.undo()
    state = torch.load(path, weights_only=True)
    assert state["epoch"] == 1 and len(state["history"]) == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]          # no temporary file left behind
    history = _train(epochs=2, checkpoint=path, resume=True)             # and it resumes
    assert len(history) == 2 and history[0] == state["history"][0]


# ------------------------------------------------------------------ views
@pytest.mark.parametrize("call, match", [
    (lambda x, i: multiview_batch(x, i, lambda a, g: a * float("nan")),
     r"^multiview_batch: augment\(x\) must return finite values"),
    (lambda x, i: multiview_batch(x / 0, i, _jitter), r"^multiview_batch: x must be finite .*shape \(4, 1, 8, 8\)"),
    (lambda x, i: multiview_batch(x, i, lambda a, g: a.numpy()), r"must return a tensor .*; got 'ndarray'\.$"),
    (lambda x, i: multiview_batch(x, i, lambda a, g: a.half()), r"must return a tensor of the input's dtype"),
    (lambda x, i: multiview_batch(x, i, lambda a: a), r"augment must be a callable .*accept two arguments"),
    (lambda x, i: MultiViewDataset(x, lambda a, g: a * float("nan"))[0], r"^MultiViewDataset: augment\(x\) must"),
    (lambda x, i: collate_views([(torch.rand(2, 1, 8, 8), "a")]), r"hold \(views, index\) pairs with an integer index"),
])
def test_views_refuse_bad_input(call, match):
    with pytest.raises(ic.IConError, match=match):
        call(_images(4), torch.arange(4))


# ------------------------------------------------------------------ probes
_F = np.random.default_rng(0).normal(size=(30, 4))
_Y = np.arange(30) % 3


@pytest.mark.parametrize("call, match", [
    (lambda: linear_probe_accuracy(_F, np.r_[np.nan, _Y[1:]], _F, _Y), r"train_labels must not contain NaN"),
    (lambda: linear_probe_accuracy(_F, _Y, _F, np.r_[np.nan, _Y[1:]]), r"test_labels must not contain NaN"),
    (lambda: linear_probe_accuracy(_F, _Y, _F[:0], _Y[:0]), r"test_features must be a non-empty 2-D array"),
    (lambda: linear_probe_accuracy(_F + 1j, _Y, _F, _Y), r"train_features must hold real numbers"),
    (lambda: linear_probe_accuracy(np.full((30, 4), "a"), _Y, _F, _Y), r"train_features must hold real numbers"),
    (lambda: knn_probe_accuracy(_F, np.array([1, None, "a"] * 10, dtype=object), _F, _Y),
     r"train_labels must hold labels that can be sorted"),
    (lambda: encode(_Tiny(), _images() / 0), r"^encode: images must be finite"),
    (lambda: encode(_Tiny(), _images()[:0]), r"^encode: images must hold at least one image"),
    (lambda: encode("model", _images()), r"^encode: model must be a torch.nn.Module"),
    (lambda: encode(nn.Sequential(nn.Flatten(), nn.Linear(64, 2), nn.Threshold(9.0, float("nan"))), _images()),
     r"^encode: the model's features of the images are not finite"),
])
def test_probes_refuse_bad_input(call, match):
    with pytest.raises(ic.IConError, match=match):
        call()


def test_probes_of_extreme_magnitudes_equal_the_plain_ones():
    big = 2.0 ** 600                                  # squares overflow float64 in scikit-learn
    assert knn_probe_accuracy(_F * big, _Y, _F * big, _Y, 3) == knn_probe_accuracy(_F, _Y, _F, _Y, 3)
    assert linear_probe_accuracy(_F * big, _Y, _F * big, _Y) == linear_probe_accuracy(_F, _Y, _F, _Y)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_encode_on_cuda_without_cuda_is_refused():
    with pytest.raises(ic.IConError, match=r"^encode: device must be available"):
        encode(_Tiny(), _images(), device="cuda")


# ------------------------------------------------------------------ augmentations
_TRANSFORMS = [A.RandomResizedCrop(), A.RandomAffine(), A.RandomHorizontalFlip(), A.GaussianNoise(),
               A.GaussianBlur(), A.ColorJitter(), A.RandomErasing(), A.default_augmentation(8)]


@pytest.mark.parametrize("transform", _TRANSFORMS, ids=lambda t: type(t).__name__)
def test_a_generator_that_is_not_one_is_named(transform):
    with pytest.raises(ic.IConError, match=r"generator must be a torch.Generator or None; got 5\."):
        transform(_images(4), 5)


def test_augmentations_never_invent_nan():
    x = _images(4)
    blurred = A.GaussianBlur(sigma=(1e-30, 1e-30), p=1.0)(x)       # sigma^2 underflows: the identity
    assert torch.equal(blurred, x)
    with pytest.raises(ic.IConError, match=r"^GaussianNoise: std must be far below the largest torch.float32"):
        A.GaussianNoise(std=1e39)(x)
    assert torch.isfinite(A.GaussianNoise(std=1e39)(x.double())).all()
    with pytest.raises(ic.IConError, match=r"^Compose: transforms must return tensors of their input's shape"):
        A.Compose([lambda a, g: a[:, :, :3]])(x)
