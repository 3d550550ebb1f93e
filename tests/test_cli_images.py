"""``icontorch cluster-images``: labels saved, scored and drawn; every bad input one line and exit 2."""

import numpy as np
import pytest
from sklearn.datasets import load_digits

from icontorch.cli import main

FAST = ["--epochs", "1", "--cluster-epochs", "2", "--batch-size", "64", "--n-views", "2", "--n-jobs", "1"]


@pytest.fixture
def digit_files(tmp_path):
    x, y = load_digits(return_X_y=True)
    images, labels = tmp_path / "images.npy", tmp_path / "y.npy"
    np.save(images, (x[:150].reshape(-1, 8, 8) * 255 / 16).astype(np.uint8))         # (N, H, W), 0-255
    np.save(labels, y[:150])
    return tmp_path, images, labels


def test_cluster_images_saves_scores_and_draws(digit_files, capsys):
    folder, images, labels = digit_files
    out, grid = folder / "labels.csv", folder / "grid.png"
    assert main(["cluster-images", str(images), "-k", "10", "--labels", str(labels), "-o", str(out),
                 "--plot", str(grid), *FAST]) == 0
    printed = capsys.readouterr().out
    saved = np.loadtxt(out, dtype=np.int64)
    assert saved.shape == (150,) and saved.min() >= 0 and saved.max() < 10
    assert "ImageClustering (two_stage) of 150 images (1 x 8 x 8) into 10 clusters" in printed
    accuracy = float(printed.split("Hungarian accuracy")[1].split()[0])
    assert 0.0 < accuracy <= 1.0
    sizes = [int(s) for s in printed.split("cluster sizes:")[1].splitlines()[0].split()]
    assert sizes == np.bincount(saved, minlength=10).tolist()
    assert grid.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cluster_images_takes_float_channels_and_npz(tmp_path, capsys):
    rng = np.random.default_rng(0)
    path = tmp_path / "images.npz"
    np.savez(path, pixels=rng.random((60, 3, 8, 8)).astype(np.float32))
    out = tmp_path / "labels.npy"
    assert main(["cluster-images", str(path), "-k", "3", "--strategy", "scan", "-o", str(out), *FAST]) == 0
    assert np.load(out).shape == (60,)
    assert "(3 x 8 x 8)" in capsys.readouterr().out


@pytest.mark.parametrize("array, extra, message", [
    (np.zeros((20, 64)), [], "data must hold images of shape (N, H, W) or (N, C, H, W); got shape (20, 64)"),
    (np.full((20, 8, 8), 300, dtype=np.int64), [], "data must hold integer grey levels in 0-255 (or floats)"),
    (np.full((20, 8, 8), np.nan), [], "data must hold finite numbers; got NaN in row 0"),
    (np.zeros((5, 8, 8)), ["-k", "10"], "--n-clusters must be at most the number of images (5)"),
    (np.zeros((20, 8, 8)), ["-o", "labels.json"], "-o must end in .npy, .csv or .txt"),
    (np.zeros((20, 8, 8)), ["--plot", "grid.pdf"], "--plot must end in .png or .svg"),
    (np.zeros((20, 8, 8)), ["--resume"], "--resume must come with a checkpoint path"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, array, extra, message):
    path = tmp_path / "images.npy"
    np.save(path, array)
    argv = ["cluster-images", str(path), "-o", str(tmp_path / "labels.csv"), *FAST, *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("icontorch cluster-images: error: ") and err.count("\n") == 1
    assert message in err
    assert not (tmp_path / "labels.csv").exists()


def test_outputs_are_checked_before_the_fit(digit_files, capsys):
    folder, images, _ = digit_files
    assert main(["cluster-images", str(images), "-o", str(folder / "missing" / "labels.csv"), *FAST]) == 2
    assert "-o must be in an existing folder" in capsys.readouterr().err


def test_unknown_strategy_is_a_usage_error(digit_files, capsys):
    _, images, _ = digit_files
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster-images", str(images), "--strategy", "kmeans"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'kmeans'" in capsys.readouterr().err


def test_help(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["cluster-images", "--help"])
    assert exit_info.value.code == 0
    assert "usage: icontorch cluster-images" in capsys.readouterr().out
