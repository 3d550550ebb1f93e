"""The periodic table as data (from the registry), in the terminal, and as a figure."""

import xml.etree.ElementTree as ET

import pytest

from icontorch import IConError, methods
from icontorch import table as table_module
from icontorch.cli import main
from icontorch.methods import _registry


def test_cells_come_from_the_registry():
    before = table_module.periodic_table()
    cell = before.cell("Gaussian σ→∞", "Gaussian")
    assert cell.empty

    @_registry.register(label="Test Tile", column="Gaussian", row="Gaussian σ→∞", theorem="-", equality="exact",
                        area="GAP", test="tests/test_table.py::test_cells_come_from_the_registry", p="p", q="q")
    def _a_new_method():
        """New."""

    try:
        after = table_module.periodic_table()
        filled = after.cell("Gaussian σ→∞", "Gaussian")
        assert [m.name for m in filled.methods] == ["_a_new_method"] and filled.gap
        assert after.counts()["empty"] == before.counts()["empty"] - 1
        assert "_a_new_method" in methods.available()
    finally:
        del _registry._REGISTRY["_a_new_method"]
    assert table_module.periodic_table().counts() == before.counts()


def test_table_structure():
    t = table_module.periodic_table()
    assert t.rows == methods.ROWS and t.columns == methods.COLUMNS
    assert len(t.cells) == 45
    assert {m.name for m in t.beside} == {n for n in methods.available() if methods.info(n).kind != "figure"}
    assert t.cell("Uniform on clusters", "Uniform over positive pairs").methods[0].name == "infonce_clustering"
    with pytest.raises(IConError, match="row, column"):
        t.cell("Gaussian", "nope")
    assert set(table_module.COLORS) == set(methods.AREAS)


def test_format_table_one_block_per_method():
    text = table_module.format_table(["sne", "t_clip"], status={"sne": "passed"})
    lines = text.splitlines()
    assert lines[2].startswith("sne ") and "passed" in lines[2]
    assert any(line.startswith("t_clip ") and "GAP*" in line and "not run" in line for line in lines)
    assert "note: A gap cell" in text


@pytest.mark.parametrize("suffix", [".png", ".svg"])
def test_cli_plots_the_table(tmp_path, capsys, suffix):
    out = tmp_path / f"table{suffix}"
    assert main(["table", "--plot", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed
    data = out.read_bytes()
    if suffix == ".png":
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        import matplotlib.image as mpimg

        pixels = mpimg.imread(str(out))
        assert pixels.shape[0] > 800 and pixels.shape[1] > 1800
        # every area colour of the paper appears in the picture
        rgb = (pixels[..., :3] * 255).round().astype(int).reshape(-1, 3)
        present = {tuple(c) for c in rgb[:: 7]}
        for hex_color in table_module.COLORS.values():
            colour = tuple(int(hex_color[i:i + 2], 16) for i in (1, 3, 5))
            assert colour in present, hex_color
    else:
        root = ET.fromstring(data)
        assert root.tag.endswith("svg")
        text = data.decode()
        for label in ("Supervisory Signal", "SNE", "DCD", "Error rate", "Harmonic Loss", "new"):
            assert label in text


def test_cli_runs_the_proving_test(capsys):
    assert main(["table", "error_rate", "--run-tests"]) == 0
    out = capsys.readouterr().out
    assert "error_rate" in out and "passed" in out and "sne " not in out


def test_cli_table_errors(tmp_path, capsys):
    assert main(["table", "not_a_method"]) == 2
    assert "unknown method" in capsys.readouterr().err
    assert main(["table", "--plot", str(tmp_path / "x.pdf")]) == 2
    assert ".png or .svg" in capsys.readouterr().err
    with pytest.raises(IConError, match="path must end in .png or .svg"):
        table_module.plot_table(str(tmp_path / "x.jpg"))
