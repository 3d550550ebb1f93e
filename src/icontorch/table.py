"""The periodic table (Fig. 1) as data, built from the method registry, and its renderings.

Columns are the kinds of supervisory p, rows the kinds of learned q. Each cell holds the
methods registered there as figure tiles, coloured by research area (grey: the paper's gaps,
new methods); cells with none are empty (black). Registering a method updates the table:
nothing here lists methods by hand.

* :func:`periodic_table` -- the grid: ``table.cells[(row, column)].methods``.
* :func:`format_table` -- one line per method (p, q, theorem, equality, test status).
* :func:`markdown_table` -- the same as Markdown (the body of ``docs/methods.md``).
* :func:`plot_table` -- the figure, to .png or .svg (matplotlib, imported lazily).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

from . import methods
from ._validation import fail
from .methods import AREAS, COLUMNS, ROWS, MethodInfo

__all__ = ["COLUMNS", "ROWS", "AREAS", "AREA_NAMES", "COLORS", "EMPTY_COLOR", "Cell", "PeriodicTable",
           "periodic_table", "format_table", "markdown_table", "plot_table"]

#: The legend of Fig. 1.
AREA_NAMES: Dict[str, str] = {"DR": "Dimensionality Reduction", "CL": "Cluster Learning",
                              "U-SSL": "Unimodal SSL", "M-SSL": "Multimodal SSL",
                              "SUP": "Supervised Learning", "GAP": "Interpretation of Gaps (new)"}
#: The paper's colours, sampled from its figure.
COLORS: Dict[str, str] = {"DR": "#6c88bc", "CL": "#d09246", "U-SSL": "#b16a81", "M-SSL": "#8567a0",
                          "SUP": "#7ca86f", "GAP": "#747474"}
EMPTY_COLOR = "#000000"


@dataclass(frozen=True)
class Cell:
    """One (q row, p column) cell of the table and the methods that fill it, in figure order."""

    row: str
    column: str
    methods: Tuple[MethodInfo, ...]

    @property
    def empty(self) -> bool:
        return not self.methods

    @property
    def gap(self) -> bool:
        """A grey cell: every method in it is one of the paper's gaps."""
        return bool(self.methods) and all(m.gap for m in self.methods)


@dataclass(frozen=True)
class PeriodicTable:
    """The grid of Fig. 1 plus the methods placed beside it (Table 1, variants, related losses)."""

    rows: Tuple[str, ...]
    columns: Tuple[str, ...]
    cells: Dict[Tuple[str, str], Cell]
    beside: Tuple[MethodInfo, ...]

    def cell(self, row: str, column: str) -> Cell:
        if (row, column) not in self.cells:
            raise fail("PeriodicTable.cell", "(row, column)", f"be a cell of rows {self.rows} and "
                       f"columns {self.columns}", (row, column))
        return self.cells[(row, column)]

    @property
    def tiles(self) -> List[MethodInfo]:
        """Every figure method, row by row (the 36 entries of Fig. 1)."""
        return [m for r in self.rows for c in self.columns for m in self.cells[(r, c)].methods]

    def counts(self) -> Dict[str, int]:
        """Coloured tiles (existing methods), gap tiles, and empty cells."""
        tiles = self.tiles
        return {"coloured": sum(not m.gap for m in tiles), "gap": sum(m.gap for m in tiles),
                "empty": sum(c.empty for c in self.cells.values())}


def periodic_table() -> PeriodicTable:
    """Build the table from ``methods.available()``: figure methods fill cells, the rest go beside."""
    infos = [methods.info(name) for name in methods.available()]
    cells = {(r, c): Cell(r, c, tuple(m for m in infos if m.kind == "figure" and (m.row, m.column) == (r, c)))
             for r in ROWS for c in COLUMNS}
    beside = tuple(m for m in infos if m.kind != "figure")
    return PeriodicTable(ROWS, COLUMNS, cells, beside)


def format_table(names: Optional[Sequence[str]] = None, status: Optional[Dict[str, str]] = None,
                 formulas: bool = False) -> str:
    """One line per method: name, area, p (column), q (row), theorem, equality, test status.

    Args:
        names: the methods to show (default: all, in table order).
        status: optional ``{name: "passed" | "failed" | ...}`` from a test run; without it the
            last column names the test that proves the method.
        formulas: also print each method's p and q formulas (and its note) under its line.
    """
    names = list(methods.available() if names is None else names)
    lines = [f"{'method':<25} {'area':<5} {'p (column)':<27} {'q (row)':<20} {'theorem':<19} "
             f"{'equality':<8} {'status':<8} test"]
    lines.append("-" * (len(lines[0]) + 30))
    for name in names:
        m = methods.info(name)
        tag = m.area + ("*" if m.gap else "")
        state = "-" if status is None else status.get(name, "not run")
        lines.append(f"{name:<25} {tag:<5} {m.column:<27} {m.row:<20} {m.theorem:<19} {m.equality:<8} "
                     f"{state:<8} {m.test}")
        if formulas:
            lines.append(f"{'':<25} p = {m.p}")
            lines.append(f"{'':<25} q = {m.q}")
            if m.note:
                lines.append(f"{'':<25} note: {m.note}")
    counts = periodic_table().counts()
    lines.append("")
    lines.append(f"{len(names)} methods shown; the figure has {counts['coloured']} coloured tiles, "
                 f"{counts['gap']} gap tiles (* = new in the paper's reading) and {counts['empty']} "
                 f"empty cells. Each is icontorch.methods.<name>(...); -v prints p and q in full, "
                 f"--run-tests fills the status column.")
    return "\n".join(lines)


_SECTIONS = (("figure", "The periodic table (Fig. 1)"), ("variant", "Other forms of figure methods"),
             ("table1", "In the paper's Table 1 only"),
             ("related", "Related losses and baselines"))


def markdown_table() -> str:
    """Every method as Markdown tables, one per kind: the generated part of ``docs/methods.md``."""
    infos = [methods.info(n) for n in methods.available()]
    out = []
    for kind, heading in _SECTIONS:
        rows = [m for m in infos if m.kind == kind]
        out.append(f"### {heading}\n")
        out.append("| method | cell (q row / p column) | p(j\\|i) | q(j\\|i) | theorem | equality | proved by |")
        out.append("|---|---|---|---|---|---|---|")
        for m in rows:
            name = f"`{m.name}` ({m.label})" + (" **new (gap)**" if m.gap else "")
            proof = f"`{m.test}`" + (f"<br>*{m.note}*" if m.note else "")
            cells = [name, f"{m.row} / {m.column}", m.p, m.q, m.theorem, m.equality, proof]
            out.append("| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |")
        out.append("")
    return "\n".join(out)


def _wrap(label: str, width: int) -> str:
    words, lines, line = label.split(), [], ""
    for word in words:
        if line and len(line) + 1 + len(word) > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    lines.append(line)
    return "\n".join(lines)


def plot_table(path: str, title: str = "") -> str:
    """Draw the periodic table to ``path`` (``.png`` or ``.svg``) in the paper's colours.

    Black background, one tile per method (stacked when a cell holds several), grey tiles for
    the gaps (labelled "new"), the areas' legend below, and the methods beside the table listed
    in a footer. Returns ``path``.
    """
    if not isinstance(path, str) or not path.lower().endswith((".png", ".svg")):
        raise fail("plot_table", "path", "end in .png or .svg", path)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = periodic_table()
    heights = [max(0.9, max(1, max(len(table.cells[(r, c)].methods) for c in table.columns)) * 0.62)
               for r in table.rows]
    total_w = _HEAD_W + 0.45 + _COL_W * len(table.columns) + 0.08
    total_h = _TOP_H + _HEAD_H + sum(heights) + 1.15
    fig = plt.figure(figsize=(total_w * 1.05, total_h * 1.05), dpi=150, facecolor=EMPTY_COLOR)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, total_w)
    ax.set_ylim(total_h, 0)
    ax.axis("off")
    ax.set_facecolor(EMPTY_COLOR)
    _draw_headers(ax, table, heights)
    y = _TOP_H + _HEAD_H
    for row, h in zip(table.rows, heights):
        _draw_row(ax, table, row, y, h)
        y += h
    _draw_legend(ax, table, y + 0.32)
    if title:
        ax.text(total_w - 0.1, 0.3, title, color="#a0a0a0", ha="right", va="center", fontsize=9)
    # SVG keeps its labels as text (searchable, selectable) rather than glyph outlines.
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path, facecolor=EMPTY_COLOR)
    plt.close(fig)
    return path


_COL_W, _HEAD_W, _HEAD_H, _TOP_H = 1.55, 1.35, 0.85, 0.6  # layout of the figure, in inches
_LINE = {"edgecolor": "white", "linewidth": 1.2}


def _box(ax, x: float, y: float, w: float, h: float, color: str = EMPTY_COLOR) -> None:
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x, y), w, h, facecolor=color, **_LINE))


def _draw_headers(ax, table: "PeriodicTable", heights: Sequence[float]) -> None:
    """The p banner and column heads above the table, the q banner on its left."""
    x0, width = 0.45 + _HEAD_W, _COL_W * len(table.columns)
    _box(ax, x0, 0.05, width, _TOP_H - 0.05)
    ax.text(x0 + width / 2, 0.05 + (_TOP_H - 0.05) / 2, "Supervisory Signal $p$",
            color="white", ha="center", va="center", fontsize=15)
    for k, column in enumerate(table.columns):
        _box(ax, x0 + k * _COL_W, _TOP_H, _COL_W, _HEAD_H)
        ax.text(x0 + (k + 0.5) * _COL_W, _TOP_H + _HEAD_H / 2, _wrap(column, 14), color="white",
                ha="center", va="center", fontsize=10.5)
    y0 = _TOP_H + _HEAD_H
    _box(ax, 0.05, y0, 0.4, sum(heights))
    ax.text(0.25, y0 + sum(heights) / 2, "$q$ Based on Learned Representations", color="white",
            rotation=90, ha="center", va="center", fontsize=13)


def _draw_row(ax, table: "PeriodicTable", row: str, y: float, h: float) -> None:
    """One row: its head, then each cell with its methods stacked as tiles."""
    _box(ax, 0.45, y, _HEAD_W, h)
    row_label = row.replace(" σ", "\nσ") if "σ" in row else _wrap(row, 11)
    ax.text(0.45 + _HEAD_W / 2, y + h / 2, row_label, color="white", ha="center", va="center",
            fontsize=10.5)
    for k, column in enumerate(table.columns):
        cell, x = table.cells[(row, column)], 0.45 + _HEAD_W + k * _COL_W
        if cell.empty:
            _box(ax, x, y, _COL_W, h)
            continue
        tile_h = h / len(cell.methods)
        for t, m in enumerate(cell.methods):
            ty = y + t * tile_h
            _box(ax, x, ty, _COL_W, tile_h, COLORS[m.area])
            label = _wrap(m.label, 15)
            sub = "new" if m.gap else f"[{m.cite}]" if m.cite else ""
            ax.text(x + _COL_W / 2, ty + tile_h / 2 - (0.09 if sub else 0), label, color="white",
                    ha="center", va="center", fontsize=9.5 if tile_h > 0.5 else 8.5, linespacing=1.0)
            if sub:
                n_lines = label.count("\n") + 1
                ax.text(x + _COL_W / 2, ty + tile_h / 2 + 0.07 * n_lines + 0.04, sub, color="white",
                        ha="center", va="center", fontsize=7.5, style="italic" if m.gap else "normal")


def _draw_legend(ax, table: "PeriodicTable", ly: float) -> None:
    """The colour families, as in the paper, and the footer naming the methods beside the table."""
    from matplotlib.patches import Rectangle

    lx = 0.45
    for area in AREAS:
        ax.add_patch(Rectangle((lx, ly - 0.1), 0.2, 0.2, facecolor=COLORS[area], edgecolor="none"))
        ax.text(lx + 0.28, ly, AREA_NAMES[area], color="#d0d0d0", va="center", fontsize=10)
        lx += 0.28 + 0.095 * len(AREA_NAMES[area]) + 0.35
    beside = ", ".join(m.label for m in table.beside if m.kind != "variant")
    counts = table.counts()
    ax.text(0.45, ly + 0.45, _wrap(f"{counts['coloured']} methods and {counts['gap']} gaps in "
                                   f"icontorch.methods; beside the table: {beside}.", 230),
            color="#a0a0a0", va="center", fontsize=8.5)
