"""The periodic table (Fig. 1) as one self-contained, interactive HTML page, built from the registry.

Every registered method is a tile: the figure's methods in their (q row, p column) cell, the others
beside the table. Tiles are coloured by family, the paper's gaps are grey and marked "new". Clicking
a tile shows its p, q, divergence, theorem, formula, a copyable line of code and the test that
proves it; the legend filters by family and the switch by "needs labels" / "unsupervised".

The page needs no network: its style sheet, script and data are inlined (``_page/`` holds the
templates). ``icontorch table --html table.html`` writes it.

* :func:`method_records` -- one dictionary per method: what the page shows.
* :func:`html_page` -- the page as a string.
* :func:`write_html` -- the page to a ``.html`` file.
"""

from __future__ import annotations

import functools
import html
import inspect
import json
import re
from pathlib import Path
from typing import Any, Dict, List

from . import methods
from ._validation import fail
from .table import AREA_NAMES, COLORS, EMPTY_COLOR, periodic_table

__all__ = ["LABEL_COLUMNS", "method_records", "html_page", "write_html"]

#: The kinds of p that read class labels: methods in these columns need labels, the rest do not.
LABEL_COLUMNS = ("Uniform over classes", "Data-label pairs")

_PAGE = Path(__file__).resolve().parent / "_page"
_KIND_NAMES = {"variant": "Other forms of figure methods", "table1": "In the paper's Table 1 only",
               "related": "Related losses and baselines"}


def _divergence(name: str) -> str:
    """The divergence of the loss ``methods.<name>`` builds with example arguments, in words."""
    import torch

    function = getattr(methods, name)
    arguments: Dict[str, Any] = {}
    for parameter in inspect.signature(function).parameters.values():
        if parameter.default is inspect.Parameter.empty:    # required: a small valid example
            weights = torch.rand(12, 12, generator=torch.Generator().manual_seed(0))
            arguments[parameter.name] = ((weights + weights.T) / 2 if "Tensor" in str(parameter.annotation)
                                         else 3)
    divergence = getattr(function(**arguments), "divergence", None)
    if divergence is None:
        return "none: a baseline, not an I-Con loss (its original formula)"
    if isinstance(divergence, functools.partial):
        options = ", ".join(f"{k}={v}" for k, v in divergence.keywords.items())
        return f"{divergence.func.__name__}({options})"
    return str(divergence)


def _code(name: str) -> str:
    """A line that builds the method (its positional parameters with their defaults) and, where the
    docstring says how, a line that calls it."""
    function = getattr(methods, name)
    shown = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.kind is inspect.Parameter.KEYWORD_ONLY:
            continue
        shown.append(parameter.name if parameter.default is inspect.Parameter.empty
                     else f"{parameter.name}={parameter.default!r}")
    lines = ["import icontorch as ic", f"loss = ic.methods.{name}({', '.join(shown)})"]
    call = re.search(r"Call as\s+``(.+?)``", " ".join((function.__doc__ or "").split()))
    if call:
        lines.append(call.group(1))
    return "\n".join(lines)


def _formula(name: str) -> str:
    """The docstring's first two paragraphs (the formula and the theorem), as plain text."""
    doc = inspect.getdoc(getattr(methods, name)) or ""
    paragraphs = [" ".join(p.split()) for p in doc.split("\n\n")[:2]]
    text = "\n\n".join(paragraphs)
    return re.sub(r":\w+:`~?([^`]+)`", r"\1", text).replace("``", "")


def method_records() -> List[Dict[str, Any]]:
    """What the page shows for each registered method, in table order."""
    records = []
    for name in methods.available():
        m = methods.info(name)
        records.append({
            "name": m.name, "label": m.label, "kind": m.kind, "area": m.area, "area_name": AREA_NAMES[m.area],
            "gap": m.gap, "row": m.row, "column": m.column, "p": m.p, "q": m.q, "theorem": m.theorem,
            "equality": m.equality, "test": m.test, "note": m.note, "cite": m.cite,
            "labels": m.column in LABEL_COLUMNS, "divergence": _divergence(name), "code": _code(name),
            "formula": _formula(name)})
    return records


def _tile(record: Dict[str, Any]) -> str:
    sub = "new" if record["gap"] else record["cite"]
    return (f'<button class="tile" type="button" data-name="{record["name"]}" data-area="{record["area"]}" '
            f'data-labels="{"yes" if record["labels"] else "no"}" style="--c:{COLORS[record["area"]]}" '
            f'title="{html.escape(record["label"])}: p {html.escape(record["column"])}, '
            f'q {html.escape(record["row"])}">'
            f'<span class="label">{html.escape(record["label"])}</span>'
            + (f'<span class="sub{" new" if record["gap"] else ""}">{html.escape(sub)}</span>' if sub else "")
            + "</button>")


def _grid(records: List[Dict[str, Any]]) -> str:
    """The figure: the p banner, the column heads, then each q row with its cells."""
    table = periodic_table()
    by_name = {r["name"]: r for r in records}
    parts = ['<div class="grid" style="--ncol:%d">' % len(table.columns),
             '<div class="corner"></div><div class="banner p">Supervisory signal <i>p</i></div>',
             '<div class="corner"></div>']
    parts += [f'<div class="head col">{html.escape(c)}</div>' for c in table.columns]
    parts.append(f'<div class="banner q" style="grid-row: 3 / span {len(table.rows)}">'
                 '<span><i>q</i> based on learned representations</span></div>')
    for row in table.rows:
        parts.append(f'<div class="head row">{html.escape(row)}</div>')
        for column in table.columns:
            cell = table.cells[(row, column)]
            tiles = "".join(_tile(by_name[m.name]) for m in cell.methods)
            kind = "empty" if cell.empty else "gap" if cell.gap else "filled"
            parts.append(f'<div class="cell {kind}" data-row="{html.escape(row)}" '
                         f'data-column="{html.escape(column)}">{tiles}</div>')
    parts.append("</div>")
    return "\n".join(parts)


def _beside(records: List[Dict[str, Any]]) -> str:
    parts = []
    for kind, heading in _KIND_NAMES.items():
        tiles = "".join(_tile(r) for r in records if r["kind"] == kind)
        parts.append(f'<section class="beside"><h2>{heading}</h2><div class="tiles">{tiles}</div></section>')
    return "\n".join(parts)


def _legend() -> str:
    chips = "".join(f'<label class="chip" style="--c:{COLORS[a]}"><input type="checkbox" name="area" '
                    f'value="{a}" checked><span class="swatch"></span>{html.escape(AREA_NAMES[a])}</label>'
                    for a in methods.AREAS)
    modes = "".join(f'<label><input type="radio" name="labels" value="{v}"{" checked" if v == "all" else ""}>'
                    f"{t}</label>" for v, t in (("all", "all"), ("yes", "needs labels"), ("no", "unsupervised")))
    return f'<div class="filters"><div class="legend">{chips}</div><div class="modes">{modes}</div></div>'


def html_page(title: str = "The I-Con periodic table", reference: str = "") -> str:
    """The whole page: markup, inlined style sheet, script and the methods' data (no network).

    Args:
        title: the page's title.
        reference: where the API reference of ``icontorch.methods`` lives, relative to the page
            (the docs site passes ``"reference/methods/"``); each method's details then link to
            ``reference + "#icontorch.methods.<name>"``. Empty (default): no links.
    """
    records = method_records()
    for record in records:
        record["reference"] = f"{reference}#icontorch.methods.{record['name']}" if reference else ""
    data = json.dumps({r["name"]: r for r in records}, ensure_ascii=False).replace("</", "<\\/")
    counts = periodic_table().counts()
    summary = (f"{len(records)} methods: {counts['coloured']} coloured tiles and {counts['gap']} gaps "
               f"(new methods) in the figure, {len(records) - counts['coloured'] - counts['gap']} beside it. "
               "Click a tile for its p, q, theorem, code and proof.")
    page = (_PAGE / "table.html").read_text(encoding="utf-8")
    fields = {"TITLE": html.escape(title), "SUMMARY": html.escape(summary), "FILTERS": _legend(),
              "GRID": _grid(records), "BESIDE": _beside(records), "EMPTY": EMPTY_COLOR,
              "CSS": (_PAGE / "table.css").read_text(encoding="utf-8"),
              "JS": (_PAGE / "table.js").read_text(encoding="utf-8"), "DATA": data}
    return re.sub(r"@@(\w+)@@", lambda match: fields[match.group(1)], page)


def write_html(path: str, title: str = "The I-Con periodic table") -> str:
    """Write :func:`html_page` to ``path`` (a ``.html`` file, UTF-8). Returns ``path``."""
    if not isinstance(path, str) or not path.lower().endswith((".html", ".htm")):
        raise fail("write_html", "path", "end in .html or .htm", path)
    text = html_page(title)
    with open(path, "w", encoding="utf-8") as file:
        file.write(text)
    return path
