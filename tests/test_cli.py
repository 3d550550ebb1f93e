"""The icontorch command, the demo's outcome, and the helpers it uses."""

import numpy as np
import pytest
import torch

from icontorch import IConError, methods
from icontorch.cli import main
from icontorch.embedding import tsne_embedding
from icontorch.metrics import knn_accuracy


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
    assert main(["demo", "--n-iter", "300", "-o", str(out_png)]) == 0
    printed = capsys.readouterr().out
    accuracy = float(printed.split("2-D 10-NN accuracy:")[1].split()[0])
    assert accuracy > 0.9
    assert out_png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


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
    y, kl = tsne_embedding(x, perplexity=5.0, n_iter=60, exaggeration_iter=20)
    assert y.shape == (40, 2)
    assert kl == pytest.approx(float(methods.tsne(5.0)(y, target=x)), rel=1e-10)


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
