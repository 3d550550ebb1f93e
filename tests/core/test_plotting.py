"""The plots refuse bad input before drawing, and write their file atomically."""

from __future__ import annotations

import numpy as np
import pytest

import icontorch as ic
from icontorch.plotting import plot_clusters, plot_embedding

_POINTS = np.random.default_rng(0).random((12, 2))
_LABELS = np.arange(12) % 3


@pytest.mark.parametrize("plot", [plot_embedding, plot_clusters])
@pytest.mark.parametrize("points, labels, name, match", [
    (np.full((12, 2), np.nan), _LABELS, "map.png", r"the points must be finite; .* 24 NaN or Inf"),
    (_POINTS, _LABELS[:5], "map.png", r"labels must have one entry per point \(12\); got 5"),
    (_POINTS, _LABELS, "map.xyz", r"path must end in .png or .svg; got '.*map.xyz'"),
    (_POINTS, _LABELS, "missing/map.png", r"path must be in an existing folder"),
    (np.zeros((0, 2)), _LABELS[:0], "map.png", r"must be a non-empty \(n, d\) array"),
])
def test_bad_plot_input_is_refused_before_drawing(tmp_path, plot, points, labels, name, match):
    with pytest.raises(ic.IConError, match=match):
        plot(points, labels, str(tmp_path / name))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("plot", [plot_embedding, plot_clusters])
def test_a_plot_is_written_as_a_png(tmp_path, plot):
    path = tmp_path / "map.png"
    assert plot(_POINTS, _LABELS, str(path)) == str(path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
