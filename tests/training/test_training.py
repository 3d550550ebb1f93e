"""Contrastive training loop, probes, and DCL with a Student-t kernel (issue 6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

import icontorch as ic
from icontorch import methods
from icontorch.probes import encode, knn_probe_accuracy, linear_probe_accuracy
from icontorch.training import epoch_generator, train_contrastive


def _randn(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


# ------------------------------------------------------------------ DCL with a Student-t kernel

def _dcl_student_t(z, B, dof, tau_plus):
    """Chuang et al.'s criterion written with loops, the exp(cos/t) weight replaced by the Student-t weight."""
    n = 2 * B
    N = n - 2
    total = 0.0
    for i in range(n):
        partner = (i + B) % n

        def w(j):
            d2 = float(((z[i] - z[j]) ** 2).sum())
            return (1.0 + d2 / dof) ** (-(dof + 1.0) / 2.0)

        pos = w(partner)
        neg = sum(w(j) for j in range(n) if j not in (i, partner))
        ng = max((neg - tau_plus * N * pos) / (1.0 - tau_plus), torch.finfo(torch.float64).tiny)
        total += -math.log(pos / (pos + ng))
    return total / n


@pytest.mark.parametrize("dof, tau_plus", [(2.0, 0.1), (1.0, 0.3)])
def test_dcl_with_student_t_kernel_matches_its_formula(dof, tau_plus):
    B = 5
    z = _randn(2 * B, 3, seed=3)
    ids = torch.arange(B).repeat(2)
    ours = methods.debiased_contrastive(tau_plus=tau_plus, q=ic.StudentT(dof))(z, ids)
    assert float(ours) == pytest.approx(_dcl_student_t(z, B, dof, tau_plus), rel=1e-12)


def test_dcl_with_student_t_at_tau_zero_is_t_simclr():
    B = 6
    z = _randn(2 * B, 4, seed=4).requires_grad_()
    ids = torch.arange(B).repeat(2)
    a = methods.debiased_contrastive(tau_plus=0.0, q=ic.StudentT(2.0))(z, ids)
    b = methods.tsimclr(2.0)(z, target=ids)
    torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    ga, = torch.autograd.grad(a, z)
    gb, = torch.autograd.grad(b, z)
    torch.testing.assert_close(ga, gb, rtol=0, atol=1e-12)


def test_dcl_rejects_other_kernels():
    with pytest.raises(ic.IConError, match="q must be None or a StudentT"):
        methods.debiased_contrastive(q=ic.Gaussian(temperature=0.5))


# ------------------------------------------------------------------------------------- probes

def _blobs(n, seed):
    from sklearn.datasets import make_blobs

    x, y = make_blobs(n_samples=n, centers=3, n_features=5, random_state=seed, cluster_std=1.0)
    return x, y


def test_linear_probe_matches_scikit_learn_pipeline():
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    x, y = _blobs(300, 0)
    x[:, 0] += np.random.default_rng(0).normal(scale=8.0, size=300)  # make the classes overlap
    scaler = StandardScaler().fit(x[:200])
    expected = (LogisticRegression(C=0.5, max_iter=1000).fit(scaler.transform(x[:200]), y[:200])
                .predict(scaler.transform(x[200:])) == y[200:]).mean()
    got = linear_probe_accuracy(torch.tensor(x[:200]), torch.tensor(y[:200]), x[200:], y[200:], C=0.5)
    assert got == pytest.approx(expected)
    assert got > 0.8


def test_knn_probe_matches_a_brute_force_vote():
    x, y = _blobs(120, 1)
    x = x + np.random.default_rng(1).normal(scale=3.0, size=x.shape)
    train, test = slice(0, 80), slice(80, None)
    for k in (3, 10):
        for metric in ("cosine", "squared_euclidean"):
            a, b = x[test], x[train]
            if metric == "cosine":
                a = a / np.linalg.norm(a, axis=1, keepdims=True)
                b = b / np.linalg.norm(b, axis=1, keepdims=True)
                d = 1 - a @ b.T
            else:
                d = ((a[:, None] - b[None]) ** 2).sum(-1)
            nearest = np.argsort(d, axis=1, kind="stable")[:, :k]
            votes = np.array([np.bincount(y[train][row], minlength=3).argmax() for row in nearest])
            expected = (votes == y[test]).mean()
            assert knn_probe_accuracy(x[train], y[train], x[test], y[test], n_neighbors=k, metric=metric) \
                == pytest.approx(expected)


@pytest.mark.parametrize("call, match", [
    (lambda x, y: knn_probe_accuracy(x, y, x, y, n_neighbors=0),
     r"^knn_probe_accuracy: n_neighbors must be an integer >= 1; got 0\.$"),
    (lambda x, y: knn_probe_accuracy(x, y, x, y, n_neighbors=1000),
     r"^knn_probe_accuracy: n_neighbors must be at most the number of training points \(30\); got 1000\.$"),
    (lambda x, y: knn_probe_accuracy(x, y, x, y, metric="manhattan"),
     r"^knn_probe_accuracy: metric must be one of \('cosine', 'squared_euclidean'\); got 'manhattan'\.$"),
    (lambda x, y: knn_probe_accuracy(x, y, x, y, metric="euclidean"),
     r"^knn_probe_accuracy: metric must be one of \('cosine', 'squared_euclidean'\); got 'euclidean'\.$"),
    (lambda x, y: linear_probe_accuracy(x, y, x[:, :2], y), "same width"),
    (lambda x, y: linear_probe_accuracy(x, y[:-1], x, y), "same number of rows"),
    (lambda x, y: linear_probe_accuracy(x, np.zeros_like(y), x, y), "at least 2 classes"),
    (lambda x, y: linear_probe_accuracy(np.full_like(x, np.nan), y, x, y), "finite"),
    (lambda x, y: linear_probe_accuracy(x, y, x, y, C=0), "C must be"),
])
def test_probe_errors(call, match):
    x, y = _blobs(30, 2)
    with pytest.raises(ic.IConError, match=match):
        call(x, y)


class _Tiny(nn.Module):
    """A two-layer encoder with ``features``; small enough for a training test in a second."""

    def __init__(self):
        super().__init__()
        self.backbone = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU())
        self.head = nn.Linear(32, 8)

    def features(self, x):
        return self.backbone(x)

    def forward(self, x):
        return self.head(self.backbone(x))


def test_encode_uses_features_and_restores_mode():
    torch.manual_seed(0)
    model = _Tiny().train()
    x = torch.rand(10, 1, 8, 8)
    h = encode(model, x, batch_size=3)
    assert h.shape == (10, 32) and model.training
    torch.testing.assert_close(h, model.features(x).detach())
    with pytest.raises(ic.IConError, match="images must be a floating tensor"):
        encode(model, torch.zeros(10, 64))


# ------------------------------------------------------------------------------- training loop

def _digits(n=256):
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    return torch.tensor(x[:n], dtype=torch.float32).reshape(-1, 1, 8, 8) / 16.0, y[:n]


def _jitter(x, generator=None):
    """A cheap seeded augmentation: per-pixel noise (keeps the test independent of augment.py)."""
    return x + 0.1 * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


def _fit(epochs, checkpoint=None, resume=False, loss=None, init_seed=0, **settings):
    x, _ = _digits()
    torch.manual_seed(init_seed)
    model = _Tiny()
    loss = loss if loss is not None else ic.ICon(ic.mix_uniform(ic.PositivePairs(), 0.2), ic.StudentT(2.0),
                                                 divergence="cross_entropy")
    history = train_contrastive(model, loss, x, _jitter, epochs=epochs, batch_size=64, learning_rate=3e-3,
                                random_state=7, checkpoint=checkpoint, resume=resume, **settings)
    return model, history


def test_training_decreases_the_loss_and_is_deterministic():
    model, history = _fit(3)
    assert len(history) == 3 and history[-1] < history[0]
    again, history_again = _fit(3)
    assert history == history_again
    for a, b in zip(model.state_dict().values(), again.state_dict().values()):
        assert torch.equal(a, b)


def test_resume_reproduces_an_uninterrupted_run(tmp_path):
    straight, straight_history = _fit(3)
    path = tmp_path / "run.pt"
    # Interrupted: the first process stops after 1 of 3 epochs (simulated with a 1-epoch run of
    # a 3-epoch schedule), the second resumes from the checkpoint.
    x, _ = _digits()
    torch.manual_seed(0)
    first = _Tiny()
    loss = ic.ICon(ic.mix_uniform(ic.PositivePairs(), 0.2), ic.StudentT(2.0), divergence="cross_entropy")

    class Stop(Exception):
        pass

    calls = {"n": 0}

    def stopping_augment(x, generator=None):
        calls["n"] += 1
        if calls["n"] > 4:  # 256 // 64 = 4 steps per epoch: stop inside the second epoch
            raise Stop
        return _jitter(x, generator)

    with pytest.raises(Stop):
        train_contrastive(first, loss, x, stopping_augment, epochs=3, batch_size=64, learning_rate=3e-3,
                          random_state=7, checkpoint=path)
    assert torch.load(path, weights_only=False)["epoch"] == 1
    # A different initialisation: everything must come from the checkpoint.
    resumed, resumed_history = _fit(3, checkpoint=path, resume=True, init_seed=123)
    assert resumed_history == straight_history
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)
    # Settings that differ from the checkpoint's are refused, not silently mixed.
    x, _ = _digits()
    with pytest.raises(ic.IConError, match="other settings"):
        train_contrastive(_Tiny(), loss, x, _jitter, epochs=4, batch_size=64, learning_rate=3e-3,
                          random_state=7, checkpoint=path, resume=True)
    with pytest.raises(ic.IConError, match="other settings"):
        train_contrastive(_Tiny(), loss, x, _jitter, epochs=3, batch_size=64, learning_rate=3e-3,
                          random_state=7, learning_rate_schedule="constant", checkpoint=path, resume=True)


def test_training_reports_divergence():
    def exploding(z, target):
        return (z * float("inf")).sum()

    x, _ = _digits(64)
    with pytest.raises(ic.IConError, match="the loss became"):
        train_contrastive(_Tiny(), exploding, x, _jitter, epochs=1, batch_size=32)


def _lr(path):
    return torch.load(path, weights_only=False)["optimizer"]["param_groups"][0]["lr"]


@pytest.mark.parametrize("schedule, middle, end", [("cosine", 0.5e-2, 0.0), ("constant", 1e-2, 1e-2)])
def test_learning_rate_schedule(tmp_path, schedule, middle, end):
    """lr(step) = lr (1 + cos(pi step / total)) / 2 ("cosine") or lr ("constant"): 2 of 4 steps, then 4."""
    x, _ = _digits(64)
    path = tmp_path / "run.pt"
    middle_seen = []

    def loss_fn(z, target):
        if path.exists() and not middle_seen:      # the first step after epoch 1's checkpoint
            middle_seen.append(_lr(path))
        return methods.simclr(0.5)(z, target)

    train_contrastive(_Tiny(), loss_fn, x, _jitter, epochs=2, batch_size=32, learning_rate=1e-2,
                      learning_rate_schedule=schedule, checkpoint=path)
    assert middle_seen[0] == pytest.approx(middle, abs=1e-15)
    assert _lr(path) == pytest.approx(end, abs=1e-15)
    assert torch.load(path, weights_only=False)["settings"]["learning_rate_schedule"] == schedule


def test_old_checkpoint_is_refused_clearly(tmp_path):
    """A checkpoint of the first format (settings "lr" and "seed") cannot be resumed."""
    path = tmp_path / "old.pt"
    model = _Tiny()
    torch.save({"format": 1, "settings": {"epochs": 1, "batch_size": 32, "n_views": 2, "lr": 1e-3,
                                          "weight_decay": 1e-5, "seed": 0},
                "epoch": 1, "history": [1.0], "model": model.state_dict()}, path)
    x, _ = _digits(32)
    with pytest.raises(ic.IConError, match=r"train_contrastive: checkpoint must be in this version's format 2 "
                                           r".*'learning_rate'.*'random_state'.* in format 1 \(settings "
                                           r"\['batch_size', 'epochs', 'lr', 'n_views', 'seed', 'weight_decay'\]\)"):
        train_contrastive(model, methods.simclr(), x, _jitter, epochs=1, batch_size=32, checkpoint=path,
                          resume=True)


def test_epoch_generator_depends_on_random_state_and_epoch_only():
    a = torch.rand(4, generator=epoch_generator(1, 2))
    assert torch.equal(a, torch.rand(4, generator=epoch_generator(1, 2)))
    assert not torch.equal(a, torch.rand(4, generator=epoch_generator(1, 3)))
    assert not torch.equal(a, torch.rand(4, generator=epoch_generator(2, 2)))


@pytest.mark.parametrize("kwargs, match", [
    (dict(epochs=0), "epochs must be an integer >= 1"),
    (dict(n_views=1), "n_views must be an integer >= 2"),
    (dict(batch_size=0), "batch_size must be"),
    (dict(learning_rate=-1.0), "train_contrastive: learning_rate must be a positive finite number; got -1.0"),
    (dict(learning_rate_schedule="linear"),
     r"learning_rate_schedule must be one of \('cosine', 'constant'\); got 'linear'"),
    (dict(random_state=-1), "random_state must be an integer between 0 and 4294967295; got -1"),
    (dict(weight_decay=True), "weight_decay must be a finite number >= 0; got True"),
    (dict(weight_decay=-1.0), "weight_decay must be"),
    (dict(resume=True), "resume must come with a checkpoint"),
    (dict(images=torch.zeros(10, 64)), "images must be a floating tensor of shape"),
    (dict(images=torch.full((4, 1, 8, 8), float("nan"))), "images must be finite"),
    (dict(model="not a model"), "model must be a torch.nn.Module"),
])
def test_training_errors(kwargs, match):
    x, _ = _digits(32)
    args = dict(model=_Tiny(), loss_fn=methods.simclr(), images=x, augment=_jitter)
    args.update(kwargs)
    with pytest.raises(ic.IConError, match=match):
        train_contrastive(**args)


def test_alpha_outside_unit_interval_is_refused():
    for alpha in (-0.1, 1.5):
        with pytest.raises(ic.IConError, match="alpha must"):
            ic.mix_uniform(ic.PositivePairs(), alpha)


# ------------------------------------------------------------------------- icontorch bench NAME

def test_bench_lists_the_benchmarks_and_refuses_unknown_names(capsys, monkeypatch):
    from pathlib import Path

    from icontorch.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["bench"]) == 0
    listed = capsys.readouterr().out
    assert "debias" in listed and "clustering" in listed and "_report" not in listed
    assert main(["bench", "nope"]) == 2
    assert "icontorch bench: error: NAME must name a benchmark script; got 'nope'" in capsys.readouterr().err


def test_bench_debias_runs_its_script(capsys, monkeypatch):
    from pathlib import Path

    from icontorch.cli import main

    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    assert main(["bench", "debias", "--help"]) == 0  # the script's own argparse help
    assert "--epochs" in capsys.readouterr().out


def test_one_epoch_smoke_run_of_the_real_parts_decreases_the_loss():
    """ConvNet28 + default_augmentation + alpha-debiased t-SimCLR, one epoch on 96 digits."""
    import torch.nn.functional as F

    from icontorch.augment import default_augmentation
    from icontorch.encoders import contrastive_encoder
    from icontorch.views import multiview_batch

    x, _ = _digits(96)
    x = F.interpolate(x, size=(28, 28), mode="bilinear", align_corners=False)
    loss = ic.ICon(ic.mix_uniform(ic.PositivePairs(), 0.4), ic.StudentT(2.0), divergence="cross_entropy")
    torch.manual_seed(0)
    model = contrastive_encoder((1, 28, 28), width=8)
    views, target = multiview_batch(x, torch.arange(96), default_augmentation(28),
                                    generator=torch.Generator().manual_seed(99))

    def held_out_loss():
        # In training mode: batch-norm uses the batch's statistics, as during the epoch (its
        # running averages after 6 steps are not yet meaningful).
        model.train()
        with torch.no_grad():
            return float(loss(model(views), target))

    before = held_out_loss()
    history = train_contrastive(model, loss, x, default_augmentation(28), epochs=1, batch_size=16,
                                learning_rate=3e-3, random_state=0)
    assert len(history) == 1 and math.isfinite(history[0])
    assert held_out_loss() < before - 0.05  # measured: 0.15 to 0.2 for seeds 0, 1, 2


def test_bench_names_a_missing_package(tmp_path, monkeypatch, capsys):
    from icontorch.cli import main

    (tmp_path / "benchmarks").mkdir()
    (tmp_path / "benchmarks" / "_report.py").write_text("")
    (tmp_path / "benchmarks" / "needs.py").write_text("import a_package_that_is_not_installed\n")
    monkeypatch.chdir(tmp_path)
    assert main(["bench", "needs"]) == 2
    assert "needs the package 'a_package_that_is_not_installed'" in capsys.readouterr().err


def test_numpy_scalars_are_accepted():
    from icontorch.encoders import ProjectionHead
    from icontorch.metrics import knn_accuracy

    x, y = _blobs(40, 3)
    assert knn_probe_accuracy(x[:30], y[:30], x[30:], y[30:], n_neighbors=np.int64(3)) == \
        knn_probe_accuracy(x[:30], y[:30], x[30:], y[30:], n_neighbors=3)
    assert knn_accuracy(x, y, np.int32(5)) == knn_accuracy(x, y, 5)
    assert linear_probe_accuracy(x[:30], y[:30], x[30:], y[30:], C=np.float32(0.5), max_iter=np.int64(100)) > 0.5
    assert ProjectionHead(np.int64(4), np.int64(2), hidden_layer_sizes=(np.int64(3),))(torch.rand(2, 4)).shape == (2, 2)
    knn = methods.dcd(np.int64(3)).p
    assert knn.n_neighbors == 3
    digits, _ = _digits(32)
    history = train_contrastive(_Tiny(), methods.simclr(), digits, _jitter, epochs=np.int64(1),
                                batch_size=np.int64(16), n_views=np.int64(2), learning_rate=np.float32(1e-3),
                                weight_decay=np.float32(0.0), random_state=np.int64(3))
    assert len(history) == 1
