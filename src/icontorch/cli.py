"""The ``icontorch`` command: ``table``, ``embed``, ``cluster``, ``cluster-images``, ``demo`` and ``bench``.

Each sub-command lives in ``icontorch/commands/<name>.py`` with ``add_parser(subparsers)``, which
registers it and sets ``run=``; ``icontorch COMMAND --help`` describes each.

The error policy is written once, here. A bad command line is argparse's usage error (exit 2). A
bad input found later (an ``IConError``) or a file that cannot be read or written (an ``OSError``)
prints one line, ``icontorch COMMAND: error: ...``, on stderr and exits 2, with no traceback; the
commands check every input and output path before they fit, and write their outputs atomically.
Running out of memory is one line too (exit 2). A closed pipe (``icontorch table | head``) ends the
command quietly (exit 141, as for SIGPIPE); Ctrl-C ends it with one line (exit 130).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from typing import Dict, List, Optional, Tuple

from ._validation import IConError
from .commands import bench, cluster, cluster_images, demo, embed, table

__all__ = ["main"]

_COMMAND_MODULES: tuple = (table, embed, cluster, cluster_images, demo, bench)
# "<Who>: <parameter> must <rule>; got <value>.": the shape of every IConError
_PARAMETER_MESSAGE = re.compile(r"^(?P<who>[A-Za-z_][\w.]*): (?P<name>[A-Za-z_]\w*) (?P<rule>must .*)$", re.S)


def _parser() -> Tuple[argparse.ArgumentParser, Dict[str, argparse.ArgumentParser]]:
    """The ``icontorch`` parser and the parser of each sub-command, by name."""
    parser = argparse.ArgumentParser(
        prog="icontorch",
        description="I-Con: one loss, KL(p(.|i) || q(.|i)), for t-SNE, SimCLR, SupCon, CLIP, "
                    "cross-entropy, k-Means and the rest of the periodic table.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in _COMMAND_MODULES:
        module.add_parser(sub)
    return parser, dict(sub.choices)


def _flag(command: argparse.ArgumentParser, name: str) -> Optional[str]:
    """The argument of ``command`` through which the user gave the estimator's ``name``, if any."""
    options = {option for action in command._actions for option in action.option_strings}
    positionals = {action.dest for action in command._actions if not action.option_strings}
    if name == "X" and "data" in positionals:
        return "data"
    if name == "y" and "--labels" in options:
        return "--labels"
    option = "--" + name.replace("_", "-")
    return option if option in options else None


def _user_message(error: IConError, prog: str, command: argparse.ArgumentParser) -> str:
    """The message in the user's words: without the ``prog:`` prefix, naming flags, not parameters.

    ``"TSNE: n_iter must be an integer >= 0; got -1."`` becomes ``"--n-iter must be ...; got -1."``
    when the command has ``--n-iter``; messages of parameters the user did not set stay as they are.
    """
    text = " ".join(str(error).split())                       # one line
    if text.startswith(prog + ": "):
        return text[len(prog) + 2:]
    match = _PARAMETER_MESSAGE.match(text)
    flag = _flag(command, match["name"]) if match else None
    return f"{flag} {match['rule']}" if flag else text


def _os_message(error: OSError) -> str:
    """``path: reason``, as Unix tools say it (``labels.csv: No space left on device``)."""
    if error.filename is not None and error.strerror:
        return f"{error.filename}: {error.strerror}"
    return " ".join(str(error).split()) or type(error).__name__


def _out_of_memory(error: BaseException) -> bool:
    """A failed or impossible allocation: Python's, torch's on a GPU, torch's CPU allocator or a size
    beyond 64 bits (plain RuntimeErrors)."""
    import torch

    out_of_memory = getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)    # torch < 2.5: cuda's
    return (isinstance(error, (MemoryError, out_of_memory))
            or "can't allocate memory" in str(error) or "Storage size calculation overflowed" in str(error))


def _first_line(error: BaseException) -> str:
    """The allocator's reason without its source location (``[enforce fail at alloc_cpu.cpp:127] ...``)."""
    text = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return re.sub(r"^\[enforce fail at [^\]]*\] err == 0\. ", "", text)[:300]


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that Python's flush at exit does not fail on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):           # not a real file (a test's capture)
        pass


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point of the ``icontorch`` command; returns the exit status (0: success, 2: user error)."""
    parser, commands = _parser()
    args = parser.parse_args(argv)
    if getattr(args, "run", None) is None:
        parser.print_help()
        return 0
    prog = f"icontorch {args.command}"
    try:
        status = args.run(args)
        sys.stdout.flush()                    # a closed pipe shows here, not at interpreter exit
        return status
    except BrokenPipeError:
        _silence_stdout()
        return 141
    except IConError as error:
        message = _user_message(error, prog, commands[args.command])
    except OSError as error:
        message = _os_message(error)
    except (MemoryError, RuntimeError) as error:
        if not _out_of_memory(error):
            raise                             # a bug: its traceback is wanted
        message = f"out of memory ({_first_line(error)}); ask for less: fewer or smaller heads, layers, " \
                  "components or points"
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    print(f"{prog}: error: {message}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
