"""The icontorch command, the demo's outcome, and the helpers it uses."""

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits

from icontorch import IConError, methods
from icontorch.cli import main
from icontorch.embedding import TSNE, NeighborEmbedding, tsne_embedding
from icontorch.metrics import knn_accuracy


def _blobs(n=120, d=6, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=6.0, size=(4, d))
    labels = np.arange(n) % 4
    return (centres[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def test_table_lists_every_method(capsys):
    assert main(["table", "--verbose"]) == 0
    out = capsys.readouterr().out
    for name in methods.available():
        assert f"\n{name} " in out
        assert methods.info(name).theorem in out
    assert "p = ICon" not in out and "p = " in out and "q = " in out
    assert "24 coloured tiles, 12 gap tiles" in out


@pytest.mark.parametrize("argv", [["--help"], ["table", "--help"], ["demo", "--help"], ["embed", "--help"],
                                  ["cluster", "--help"], ["bench", "--help"]])
def test_help_on_every_command(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 0
    assert "usage: icontorch" in capsys.readouterr().out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "COMMAND" in capsys.readouterr().out


def test_demo_outcome(tmp_path, capsys):
    """The main job: digits embedded by I-Con t-SNE separate the classes far above chance (0.1)."""
    out_png = tmp_path / "demo.png"
    assert main(["demo", "--early-exaggeration-iter", "250", "--n-iter", "50", "-o", str(out_png)]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("2-D 10-NN accuracy:")[1].split()[0])
    assert accuracy > 0.9
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "(300 iterations, algorithm 'fft')" in printed


def test_demo_reports_bad_input(tmp_path, capsys):
    assert main(["demo", "--n-iter", "-1", "-o", str(tmp_path / "demo.png")]) == 2
    assert capsys.readouterr().err == "icontorch demo: error: --n-iter must be an integer >= 0; got -1.\n"
    with pytest.raises(SystemExit):
        main(["demo", "--seed", "1"])                      # renamed --random-state


def test_knn_accuracy_matches_scikit_learn_leave_one_out():
    from sklearn.model_selection import LeaveOneOut, cross_val_score
    from sklearn.neighbors import KNeighborsClassifier

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    y = (x[:, 0] + 0.5 * rng.normal(size=80) > 0).astype(int) + 2 * (x[:, 1] > 1)
    for k in (1, 5, 10):
        expected = cross_val_score(KNeighborsClassifier(n_neighbors=k), x, y, cv=LeaveOneOut()).mean()
        assert knn_accuracy(x, y, n_neighbors=k) == pytest.approx(expected, abs=1e-12)
        assert knn_accuracy(torch.tensor(x), torch.tensor(y), k) == pytest.approx(expected, abs=1e-12)


def test_knn_accuracy_errors():
    x = np.zeros((5, 2))
    with pytest.raises(IConError, match=r"^knn_accuracy: n_neighbors must be smaller than the number of points "
                                        r"\(5\); got 5\.$"):
        knn_accuracy(x, np.arange(5), n_neighbors=5)
    with pytest.raises(IConError, match=r"^knn_accuracy: n_neighbors must be an integer >= 1; got 0\.$"):
        knn_accuracy(x, np.arange(5), n_neighbors=0)
    with pytest.raises(IConError, match="labels"):
        knn_accuracy(x, np.arange(4), n_neighbors=2)
    with pytest.raises(IConError, match="finite"):
        knn_accuracy(np.full((5, 2), np.nan), np.arange(5), n_neighbors=2)


def test_tsne_embedding_reports_the_true_kl():
    """The KL it returns is the t-SNE objective at the returned embedding (recomputed independently)."""
    torch.manual_seed(0)
    x = torch.randn(40, 5, dtype=torch.float64)
    y, kl = tsne_embedding(x, perplexity=5.0, n_iter=40, early_exaggeration_iter=20)
    assert y.shape == (40, 2)
    assert kl == pytest.approx(float(methods.tsne(5.0)(y, target=x)), rel=1e-10)


def test_tsne_embedding_counts_steps_as_tsne_does():
    """n_iter steps after early_exaggeration_iter exaggerated ones: TSNE's fit, bit for bit."""
    torch.manual_seed(0)
    x = torch.randn(40, 5, dtype=torch.float64)
    y, kl = tsne_embedding(x, np.int64(2), np.float64(5.0), n_iter=30, early_exaggeration_iter=10)
    est = TSNE(2, perplexity=5.0, n_iter=30, early_exaggeration_iter=10, algorithm="exact", random_state=0)
    assert torch.equal(y, est.fit_transform(x)) and kl == est.kl_divergence_ and est.n_iter_ == 40
    with pytest.raises(TypeError):
        tsne_embedding(x, 2, 5.0, 30)                       # n_iter is keyword-only


def test_tsne_embedding_errors():
    x = torch.randn(10, 3)
    with pytest.raises(IConError, match="init must have shape"):
        tsne_embedding(x, perplexity=3.0, init=torch.zeros(9, 2))
    with pytest.raises(IConError, match="init must be"):
        tsne_embedding(x, perplexity=3.0, init="spectral")
    with pytest.raises(IConError, match="perplexity must be smaller"):
        tsne_embedding(x, perplexity=9.0)
    with pytest.raises(IConError, match="n_components must be"):
        tsne_embedding(x, n_components=0)
    with pytest.raises(IConError, match="tsne_embedding: n_iter must be an integer >= 0; got -5"):
        tsne_embedding(x, perplexity=3.0, n_iter=-5)
    with pytest.raises(IConError, match="tsne_embedding: early_exaggeration_iter must be an integer >= 0"):
        tsne_embedding(x, perplexity=3.0, early_exaggeration_iter=1.5)


def test_embed_command_saves_scores_and_plots(tmp_path, capsys):
    x, y = load_digits(return_X_y=True)
    x = x.astype(np.float32)
    np.save(tmp_path / "x.npy", x[:400])
    np.savetxt(tmp_path / "y.csv", y[:400], delimiter=",")
    out, png = tmp_path / "map.npy", tmp_path / "map.png"
    assert main(["embed", str(tmp_path / "x.npy"), "--labels", str(tmp_path / "y.csv"), "-o", str(out),
                 "--plot", str(png), "--n-iter", "100", "--n-jobs", "1"]) == 0
    printed = capsys.readouterr().out
    assert np.load(out).shape == (400, 2)
    assert float(printed.split("2-D 10-NN accuracy:")[1].split()[0]) > 0.9
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_embed_command_reads_csv_and_npz_and_reports_bad_input(tmp_path, capsys):
    x, _ = _blobs(60)
    np.savetxt(tmp_path / "x.csv", x, delimiter=",", header="a,b,c,d,e,f", comments="")
    np.savez(tmp_path / "x.npz", other=np.zeros(3), feats=x)
    assert main(["embed", str(tmp_path / "x.csv"), "--method", "sne", "--perplexity", "8",
                 "-o", str(tmp_path / "a.csv"), "--n-iter", "20", "--n-jobs", "1"]) == 0
    assert np.loadtxt(tmp_path / "a.csv", delimiter=",").shape == (60, 2)
    assert main(["embed", str(tmp_path / "x.npz"), "--key", "feats", "--method", "tsne_uniform_affinities",
                 "--perplexity", "8", "-o", str(tmp_path / "b.npy"), "--n-iter", "20"]) == 0
    assert np.load(tmp_path / "b.npy").shape == (60, 2)
    capsys.readouterr()
    assert main(["embed", str(tmp_path / "missing.npy")]) == 2
    assert "data must be an existing file" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "x.npz"), "--key", "nope"]) == 2
    assert "--key must be one of" in capsys.readouterr().err
    assert main(["embed", str(tmp_path / "x.csv"), "--perplexity", "100"]) == 2
    assert "perplexity must be smaller than n_samples - 1 = 59" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["embed", "--help"])
    assert "usage: icontorch embed" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["embed", str(tmp_path / "x.csv"), "--method", "tsne-uniform"])


@pytest.mark.parametrize("method", ["tsne", "tsne_uniform_affinities"])
def test_embed_command_passes_its_options_to_the_estimator(tmp_path, method):
    """--random-state, --n-iter, --early-exaggeration-iter and --method give the estimator's fit."""
    x, _ = _blobs(60)
    np.save(tmp_path / "x.npy", x)
    assert main(["embed", str(tmp_path / "x.npy"), "--method", method, "--perplexity", "8", "--n-iter", "15",
                 "--early-exaggeration-iter", "5", "--random-state", "3", "-o", str(tmp_path / "y.npy")]) == 0
    options = dict(n_iter=15, early_exaggeration_iter=5, random_state=3)
    est = (TSNE(perplexity=8.0, **options) if method == "tsne" else
           NeighborEmbedding(methods.tsne_uniform_affinities(8).p, q=methods.tsne_uniform_affinities(8).q,
                             **options))
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), est.fit_transform(x))
    with pytest.raises(SystemExit):
        main(["embed", str(tmp_path / "x.npy"), "--seed", "3"])            # renamed --random-state
