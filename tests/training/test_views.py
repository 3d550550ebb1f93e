"""Multi-view batches: the [view_1; view_2; ...] layout, the PositivePairs target, DataLoader path."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

import icontorch
from icontorch import IConError
from icontorch.augment import GaussianNoise, RandomResizedCrop, default_augmentation
from icontorch.views import MultiViewDataset, collate_views, multiview_batch


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _images(n: int = 10, c: int = 1, h: int = 12, w: int = 12) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=_gen(99))


def test_layout_and_target():
    x = _images(6)
    index = torch.tensor([4, 8, 15, 16, 23, 42])
    views, target = multiview_batch(x, index, GaussianNoise(0.01), n_views=3, generator=_gen(0))
    assert views.shape == (18, 1, 12, 12)
    assert torch.equal(target, index.repeat(3))
    for v in range(3):                                   # block v holds a noisy copy of every item
        assert (views[v * 6:(v + 1) * 6] - x).abs().max() < 0.06
    assert not torch.equal(views[:6], views[6:12])       # the views differ
    # With an identity augmentation, the views are the images, view-major.
    same, _ = multiview_batch(x, index, lambda t, generator: t)
    assert torch.equal(same, torch.cat([x, x]))


def test_augment_is_called_with_the_batch_and_the_generator():
    """Always ``augment(x, generator)``, the generator passed as given (None included)."""
    calls = []

    def recording(x, generator):
        calls.append(generator)
        return x

    x = _images(4)
    generator = _gen(1)
    multiview_batch(x, torch.arange(4), recording, generator=generator)
    multiview_batch(x, torch.arange(4), recording)
    MultiViewDataset(x, recording)[2]
    assert calls[0] is generator and calls[1] is None and isinstance(calls[2], torch.Generator)


def test_numpy_integers_are_accepted():
    import numpy as np

    ds = MultiViewDataset(_images(4), GaussianNoise(0.0), n_views=np.int64(3), random_state=np.int32(2))
    assert ds[0][0].shape == (3, 1, 12, 12)
    views, _ = multiview_batch(_images(4), torch.arange(4), GaussianNoise(0.0), n_views=np.int64(2))
    assert views.shape[0] == 8


def test_seeded():
    x, index = _images(), torch.arange(10)
    aug = default_augmentation(12)
    a, _ = multiview_batch(x, index, aug, generator=_gen(3))
    b, _ = multiview_batch(x, index, aug, generator=_gen(3))
    c, _ = multiview_batch(x, index, aug, generator=_gen(4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def _nt_xent(z: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent written out with F.cross_entropy: view i's positive is i + B mod 2B."""
    n = z.shape[0]
    zn = F.normalize(z, dim=1)
    logits = zn @ zn.T / temperature
    logits = logits.masked_fill(torch.eye(n, dtype=torch.bool), float("-inf"))
    positive = (torch.arange(n) + n // 2) % n
    return F.cross_entropy(logits, positive)


def test_target_feeds_positive_pairs_and_equals_simclr(float64_default):
    torch.manual_seed(0)
    x = torch.rand(8, 1, 12, 12)
    index = torch.arange(8)
    views, target = multiview_batch(x, index, default_augmentation(12), generator=_gen(0))
    assert torch.equal(target, index.repeat(2))
    z = torch.nn.Linear(144, 16)(views.flatten(1))
    loss = icontorch.ICon(p=icontorch.PositivePairs(), q=icontorch.Gaussian(temperature=0.5, metric="cosine"),
                          divergence="cross_entropy")(z, target)
    torch.testing.assert_close(loss, icontorch.methods.simclr(0.5)(z, target), rtol=1e-12, atol=0)
    torch.testing.assert_close(loss, _nt_xent(z, 0.5), rtol=1e-10, atol=0)


def test_dataset_matches_batch_layout_and_is_deterministic():
    images = _images(10)
    ds = MultiViewDataset(images, default_augmentation(12), n_views=2, random_state=5)
    assert len(ds) == 10
    views, i = ds[3]
    assert views.shape == (2, 1, 12, 12) and i == 3
    assert not torch.equal(views[0], views[1])
    loader = DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_views)
    batches = list(loader)
    v, t = batches[0]
    assert v.shape == (8, 1, 12, 12)
    assert torch.equal(t, torch.arange(4).repeat(2))
    for b in range(4):                                   # [view_1 of the 4 items; view_2 of them]
        item_views, _ = ds[b]
        assert torch.equal(v[b], item_views[0]) and torch.equal(v[4 + b], item_views[1])
    # Same (random_state, epoch): same views, in any order of access; another epoch or random_state: new views.
    again = list(DataLoader(ds, batch_size=4, shuffle=False, collate_fn=collate_views))
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))
    assert torch.equal(ds[7][0], ds[7][0]) and torch.equal(ds[-3][0], ds[7][0])
    ds.set_epoch(1)
    assert not torch.equal(ds[3][0], views)
    ds.set_epoch(0)
    assert torch.equal(ds[3][0], views)
    assert torch.equal(ds[torch.tensor(3)][0], views)
    other = MultiViewDataset(images, default_augmentation(12), n_views=2, random_state=6)
    assert not torch.equal(other[3][0], views)


def test_dataset_shuffled_loader_targets_follow_items():
    images = torch.arange(6, dtype=torch.float32).view(6, 1, 1, 1).expand(6, 1, 8, 8).contiguous()
    ds = MultiViewDataset(images, GaussianNoise(0.0), n_views=3)
    v, t = next(iter(DataLoader(ds, batch_size=6, shuffle=True, collate_fn=collate_views,
                                generator=_gen(0))))
    assert v.shape == (18, 1, 8, 8) and torch.equal(t[:6].repeat(3), t)
    assert torch.equal(v[:, 0, 0, 0], t.float())        # each view is its item's image


def test_views_carry_gradients():
    x = _images(3).requires_grad_(True)
    views, _ = multiview_batch(x, torch.arange(3), RandomResizedCrop(), generator=_gen(0))
    views.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


BAD_CALLS = [
    (lambda x, i: multiview_batch(x, i, GaussianNoise(), n_views=1), r"n_views must be an integer >= 2; got 1"),
    (lambda x, i: multiview_batch(x.flatten(1), i, GaussianNoise()), r"x must have shape \(B, C, H, W\)"),
    (lambda x, i: multiview_batch(x.long(), i, GaussianNoise()), r"x must be a floating-point tensor"),
    (lambda x, i: multiview_batch(x, i[:3], GaussianNoise()),
     r"index must hold one id per image \(length B = 10\); got tensor of shape \(3,\)"),
    (lambda x, i: multiview_batch(x, i.float(), GaussianNoise()), r"index must be an integer tensor"),
    (lambda x, i: multiview_batch(x, i, "noise"), r"augment must be a callable.*'noise'"),
    (lambda x, i: multiview_batch(x, i, lambda t, g: t[:, :, :4]), r"augment\(x\) must return a tensor of the"),
    (lambda x, i: MultiViewDataset(x, GaussianNoise(), n_views=1), r"n_views must be an integer >= 2; got 1"),
    (lambda x, i: MultiViewDataset(x[0], GaussianNoise()), r"images must have shape \(B, C, H, W\).*\(1, 12, 12\)"),
    (lambda x, i: MultiViewDataset((x * 255).to(torch.uint8), GaussianNoise()), r"images must be a floating-point"),
    (lambda x, i: MultiViewDataset(x, None), r"augment must be a callable"),
    (lambda x, i: MultiViewDataset(x, GaussianNoise(), random_state=-1),
     r"MultiViewDataset: random_state must be an integer between 0 and 4294967295; got -1"),
    (lambda x, i: MultiViewDataset(x, GaussianNoise()).set_epoch(-2), r"epoch must be an integer >= 0; got -2"),
    (lambda x, i: MultiViewDataset(x, GaussianNoise())[10], r"i must be an integer item index in \[0, 10\); got 10"),
    (lambda x, i: collate_views([]), r"batch must be a non-empty list"),
    (lambda x, i: collate_views([(x[:2], 0), (x[:3], 1)]), r"views must have one common shape"),
    (lambda x, i: collate_views([x[0]]), r"batch must hold \(views, index\) pairs"),
]


@pytest.mark.parametrize("call, match", BAD_CALLS, ids=[f"case{n}" for n in range(len(BAD_CALLS))])
def test_bad_input_is_refused(call, match):
    with pytest.raises(IConError, match=match):
        call(_images(10), torch.arange(10))
