"""``icontorch bench NAME``: run a benchmark script of a source checkout (``benchmarks/NAME.py``)."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path
from typing import List, Optional

from .._validation import IConError

__all__ = ["add_parser", "run", "find_benchmarks"]


def find_benchmarks() -> Optional[Path]:
    """``benchmarks/`` of the current directory, else of the checkout this package was installed from."""
    for root in (Path.cwd(), Path(__file__).resolve().parents[3]):
        folder = root / "benchmarks"
        if (folder / "_report.py").is_file():
            return folder
    return None


def _available(folder: Optional[Path]) -> List[str]:
    if folder is None:
        return []
    return sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))


def add_parser(subparsers: "argparse._SubParsersAction") -> None:
    """Register ``icontorch bench``."""
    parser = subparsers.add_parser(
        "bench", help="run a benchmark (e.g. debias, embedding, clustering, loss_speed)",
        description="Run benchmarks/NAME.py of the source checkout (the current directory or the one "
                    "icontorch was installed from, editable); the arguments after NAME go to the "
                    "script (icontorch bench NAME --help lists them). Benchmarks write their tables "
                    "under docs/.")
    parser.add_argument("name", nargs="?", metavar="NAME", help="benchmark to run (none: list them)")
    parser.add_argument("script_args", nargs=argparse.REMAINDER, metavar="...",
                        help="arguments for the script")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    folder = find_benchmarks()
    names = _available(folder)
    if args.name is None:
        if folder is None:
            print("no benchmarks/ folder found: run from a source checkout of icontorch")
            return 1
        print(f"benchmarks in {folder}: " + ", ".join(names))
        return 0
    if args.name not in names:
        where = "no benchmarks/ folder was found (run from a source checkout)" if folder is None \
            else f"available: {', '.join(names)}"
        raise IConError(f"icontorch bench: NAME must name a benchmark script; got {args.name!r} ({where}).")
    script = folder / f"{args.name}.py"
    saved = sys.argv
    sys.argv = [str(script), *args.script_args]
    try:
        runpy.run_path(str(script), run_name="__main__")
    except ModuleNotFoundError as missing:
        raise IConError(f"icontorch bench: {args.name} needs the package {missing.name!r}; got an "
                        "environment without it (pip install \"icontorch[bench]\" from the "
                        "checkout: pip install \".[bench]\").") from missing
    except SystemExit as exit_:
        return int(exit_.code or 0) if not isinstance(exit_.code, str) else 1
    finally:
        sys.argv = saved
    return 0
