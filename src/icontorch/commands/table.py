"""``icontorch table``: the periodic table in the terminal, its proofs, the figure and the HTML page."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Dict, List

from .. import methods
from .._validation import IConError
from ..table import format_table, plot_table
from ._io import FIGURE_SUFFIXES, check_output, write_atomic

HTML_SUFFIXES = (".html", ".htm")

__all__ = ["add_parser", "run"]


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch table``."""
    parser = subparsers.add_parser(
        "table", help="list the methods of the periodic table with p, q, theorem and test",
        description="List every method in icontorch.methods (or those named), one line each: area, "
                    "p (column), q (row), theorem, equality type, test status and proving test "
                    "(-v adds the p and q formulas). Gap cells (new methods) are marked '*'. "
                    "--plot draws the periodic-table figure, --html writes it as an interactive page.")
    parser.add_argument("names", nargs="*", metavar="NAME", help="methods to show (default: all)")
    parser.add_argument("--plot", metavar="OUT", help="also draw the figure to OUT (.png or .svg)")
    parser.add_argument("--html", metavar="OUT",
                        help="also write the table as one self-contained interactive page to OUT (.html): "
                             "click a method for its p, q, theorem, code and test; filter by family")
    parser.add_argument("--run-tests", action="store_true",
                        help="run each shown method's proving test with pytest (needs a source "
                             "checkout with tests/) and print its status")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also print each method's p and q formulas and notes")
    parser.set_defaults(run=run)


def _run_tests(names: List[str]) -> Dict[str, str]:
    """Run the proving test functions of ``names``; returns ``{name: passed|failed|skipped|missing}``."""
    root = Path.cwd()
    status: Dict[str, str] = {}
    wanted = {name: methods.info(name).test for name in names}
    present = {n: t for n, t in wanted.items() if (root / t.split("::")[0]).is_file()}
    for name in set(wanted) - set(present):
        status[name] = "missing"
    if not present:
        return status
    with tempfile.TemporaryDirectory() as tmp:
        report = os.path.join(tmp, "report.xml")
        subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                        f"--junitxml={report}", *sorted(set(present.values()))],
                       cwd=root, capture_output=True, text=True, check=False)
        results: Dict[str, List[str]] = {}
        if os.path.exists(report):
            for case in ET.parse(report).getroot().iter("testcase"):
                function = case.get("name", "").split("[")[0]
                path = case.get("classname", "").replace(".", "/") + ".py"
                result = ("failed" if case.find("failure") is not None or case.find("error") is not None
                          else "skipped" if case.find("skipped") is not None else "passed")
                results.setdefault(f"{path}::{function}", []).append(result)
    # A parametrised test passes when every case passes (skipped cases aside).
    outcome = {key: "failed" if "failed" in r else "passed" if "passed" in r else "skipped"
               for key, r in results.items()}
    for name, test in present.items():
        status[name] = outcome.get(test, "error")
    return status


def run(args: argparse.Namespace) -> int:
    """Print the table (and draw it); exit status 1 if a requested test run failed (errors raise IConError)."""
    names = args.names or methods.available()
    unknown = [n for n in names if n not in methods.available()]
    if unknown:
        raise IConError(f"icontorch table: NAME must name a method of icontorch.methods; got unknown "
                        f"method(s) {unknown} (`icontorch table` lists them).")
    check_output(args.plot, "--plot", FIGURE_SUFFIXES, "icontorch table")
    check_output(args.html, "--html", HTML_SUFFIXES, "icontorch table")
    status = _run_tests(names) if args.run_tests else None
    print(format_table(names, status, formulas=args.verbose))
    if args.plot:
        write_atomic(args.plot, plot_table)
        print(f"wrote {args.plot}")
    if args.html:
        from ..table_html import write_html

        write_atomic(args.html, write_html)
        print(f"wrote {args.html}")
    if status is not None and any(s not in ("passed", "skipped") for s in status.values()):
        return 1
    return 0
