"""The ``icontorch`` command: ``table``, ``embed``, ``cluster``, ``demo`` and ``bench``.

Each sub-command lives in ``icontorch/commands/<name>.py`` with ``add_parser(subparsers)``, which
registers it and sets ``run=``; ``icontorch COMMAND --help`` describes each.
"""

from __future__ import annotations

import argparse
import sys
from typing import List, Optional

from .commands import bench, cluster, demo, embed, table

__all__ = ["main"]

_COMMAND_MODULES: tuple = (table, embed, cluster, demo, bench)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="icontorch",
        description="I-Con: one loss, KL(p(.|i) || q(.|i)), for t-SNE, SimCLR, SupCon, CLIP, "
                    "cross-entropy, k-Means and the rest of the periodic table.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.add_parser(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``icontorch`` command."""
    parser = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
