"""The registry behind ``methods.available()`` / ``methods.info()`` and the periodic table.

Each method function is registered with the cell it occupies (the kind of p = column, the kind
of q = row), its area (the paper's colour), the theorem, the equality type and the test that
proves it. :mod:`icontorch.table` builds the figure from this registry alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, TypeVar

from .._validation import fail

__all__ = ["MethodInfo", "COLUMNS", "ROWS", "AREAS", "EQUALITIES", "KINDS", "register", "available", "info"]

#: The kinds of supervisory p: the columns of Fig. 1, left to right.
COLUMNS = ("Gaussian", "Student-T", "Identity", "Graph kernel weights", "Uniform over k-neighbours",
           "Uniform over positive pairs", "Cross-modal pairs", "Uniform over classes", "Data-label pairs")
#: The kinds of learned q: the rows of Fig. 1, top to bottom.
ROWS = ("Gaussian", "Gaussian σ→∞", "Gaussian σ→0", "Student-T", "Uniform on clusters")
#: The paper's colour families; "GAP" marks the grey "interpretation of gaps" cells.
AREAS = ("DR", "CL", "U-SSL", "M-SSL", "SUP", "GAP")
#: How the I-Con loss relates to the original: "stated" is exact to the form the I-Con paper states for
#: the method (its theorem or Table 1), the original's own code not checked; "none" marks a baseline
#: that is not an I-Con loss.
EQUALITIES = ("exact", "stated", "limit", "bound", "argmin", "loose", "none")
#: "figure": a tile of Fig. 1; "table1": in the paper's Table 1 only; "variant": another form of
#: a figure method; "related": a loss from the literature placed beside the table.
KINDS = ("figure", "table1", "variant", "related")


@dataclass(frozen=True)
class MethodInfo:
    """Where a method sits in the periodic table (Fig. 1) and how it is proven.

    Attributes:
        name: the function name in :mod:`icontorch.methods`.
        label: the name printed on the figure's tile.
        column: the kind of supervisory p (one of :data:`COLUMNS` for figure methods).
        row: the kind of learned q (one of :data:`ROWS` for figure methods).
        theorem: the paper's theorem (or "new", "Table 1", a reference).
        equality: one of :data:`EQUALITIES`.
        area: one of :data:`AREAS`; "GAP" for the paper's grey cells (new methods).
        test: ``path::function`` of the test that proves the claim.
        p: the supervisory distribution, as a formula.
        q: the learned distribution, as a formula.
        kind: one of :data:`KINDS`.
        note: why no oracle exists, or how the relation is only partial; empty otherwise.
        cite: the original, as the figure cites it ("Hinton 2002"); empty for gaps.
    """

    name: str
    label: str
    column: str
    row: str
    theorem: str
    equality: str
    area: str
    test: str
    p: str
    q: str
    kind: str = "figure"
    note: str = ""
    cite: str = ""

    @property
    def gap(self) -> bool:
        """Whether this is one of the paper's grey gap cells (a method new in the paper's reading)."""
        return self.area == "GAP"


_REGISTRY: Dict[str, MethodInfo] = {}
F = TypeVar("F", bound=Callable[..., object])


def register(*, label: str, column: str, row: str, theorem: str, equality: str, area: str, test: str,
             p: str, q: str, kind: str = "figure", note: str = "", cite: str = "") -> Callable[[F], F]:
    """Decorator: record a method function's cell and proof in the registry."""
    if equality not in EQUALITIES or area not in AREAS or kind not in KINDS:
        raise ValueError(f"bad registration: equality={equality!r}, area={area!r}, kind={kind!r}")
    if kind == "figure" and (column not in COLUMNS or row not in ROWS):
        raise ValueError(f"figure method needs a column in COLUMNS and a row in ROWS: {column!r}, {row!r}")

    def deco(fn: F) -> F:
        name = fn.__name__
        _REGISTRY[name] = MethodInfo(name, label, column, row, theorem, equality, area, test, p, q,
                                     kind, note, cite)
        return fn
    return deco


def _order(cell: MethodInfo) -> tuple:
    beside = cell.kind in ("table1", "related")  # listed after the figure and its variants
    row = ROWS.index(cell.row) if cell.row in ROWS else len(ROWS)
    column = COLUMNS.index(cell.column) if cell.column in COLUMNS else len(COLUMNS)
    return (beside, row, column)


def available() -> List[str]:
    """Names of every method, in table order: figure tiles by row then column, then the rest."""
    names = list(_REGISTRY)
    return sorted(names, key=lambda n: (_order(_REGISTRY[n]), names.index(n)))


def info(name: str) -> MethodInfo:
    """The table cell, theorem, equality type, formulas and proving test of method ``name``."""
    if name not in _REGISTRY:
        raise fail("methods.info", "name", f"be one of {available()}", name)
    return _REGISTRY[name]
