"""Bad-input battery, part 5: every sub-command of the ``icontorch`` command, through ``cli.main(argv)``.

Files are written to ``tmp_path``; fits are tiny (a few iterations or epochs). Each command line
must end in one of:

* ``USAGE``: argparse's usage error, ``SystemExit(2)``;
* ``ERROR``: return code 2 with an ``error:`` message on stderr, no traceback, and the output file
  that existed before the run left as it was (it holds a sentinel);
* ``SAFE``: ``ERROR``, or return code 0 where every file the command says it wrote exists and its
  numbers are finite.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from icontorch.cli import main

from battery_inputs import Hang, fail, first_line, one_thread, stale, time_guard, where, xfails
from battery_known import KNOWN_CLI

USAGE, ERROR, SAFE = "usage", "error", "safe"
SENTINEL = "sentinel: the output of an earlier run\n"
NO_CUDA = not torch.cuda.is_available()


@pytest.fixture(autouse=True)
def _one_thread():
    with one_thread():
        yield


def _blobs(n=30, d=4):
    rng = np.random.default_rng(0)
    return (rng.normal(scale=5.0, size=(3, d))[np.arange(n) % 3] + rng.normal(size=(n, d))).astype(np.float32)


def _save(folder: Path, name: str, array) -> str:
    path = folder / name
    if name.endswith(".npy"):
        np.save(path, array)
    elif name.endswith(".npz"):
        np.savez(path, **({} if array is None else {"x": array}))
    else:
        path.write_text(array)
    return str(path)


def _with(x, value):
    x = x.astype(np.float64)
    x[1, 1] = value
    return x


# Data files: id -> (file name, content from valid (30, 4) data, expect)
DATA = {
    "nan": ("d.npy", lambda x: _with(x, math.nan), ERROR),
    "inf": ("d.npy", lambda x: _with(x, math.inf), ERROR),
    "complex": ("d.npy", lambda x: x.astype(np.complex64) + 1j, ERROR),
    "objects": ("d.npy", lambda x: x.astype(object), ERROR),
    "1-D": ("d.npy", lambda x: x[:, 0], ERROR),
    "3-D": ("d.npy", lambda x: x[None], ERROR),
    "no-rows": ("d.npy", lambda x: x[:0], ERROR),
    "empty-file": ("d.npy", None, ERROR),
    "empty-npz": ("d.npz", lambda x: None, ERROR),
    "missing": ("missing.npy", "missing", ERROR),
    "unknown-suffix": ("d.xyz", lambda x: "1,2\n3,4\n", ERROR),
    "letters-csv": ("d.csv", lambda x: "a,b\nc,d\ne,f\n", ERROR),
    "ragged-csv": ("d.csv", lambda x: "1,2\n3\n4,5\n", ERROR),
    "header-csv": ("d.csv", lambda x: "a,b,c,d\n" + "\n".join(",".join(map(str, r)) for r in x), SAFE),
    "int": ("d.npy", lambda x: (x * 3).round().astype(np.int64), SAFE),
    "bool": ("d.npy", lambda x: x > 0, SAFE),
    "float16": ("d.npy", lambda x: x.astype(np.float16), SAFE),
    "one-row": ("d.npy", lambda x: x[:1], SAFE),
    "duplicates": ("d.npy", lambda x: x[np.arange(len(x)) % 2], SAFE),
    "constant": ("d.npy", lambda x: np.full_like(x, 0.5), SAFE),
    "huge": ("d.npy", lambda x: x * np.float32(1e20), SAFE),
    "tiny": ("d.npy", lambda x: x * np.float32(1e-30), SAFE),
}
EMBED = ["--n-iter", "5", "--early-exaggeration-iter", "5", "--perplexity", "5"]
CLUSTER = ["-k", "3", "--epochs", "2", "--n-heads", "2"]
# Options: id -> (extra arguments, with {tmp} for the folder, expect)
OPTIONS = {
    "embed": {
        "perplexity=-1": (["--perplexity", "-1"], ERROR), "perplexity=nan": (["--perplexity", "nan"], ERROR),
        "perplexity=1000": (["--perplexity", "1000"], ERROR), "n-iter=-1": (["--n-iter", "-1"], ERROR),
        "n-components=0": (["--n-components", "0"], ERROR), "n-jobs=0": (["--n-jobs", "0"], ERROR),
        "device=bogus": (["--device", "bogus"], ERROR),
        "device=cuda": (["--device", "cuda"], ERROR if NO_CUDA else SAFE),
        "random-state=-1": (["--random-state", "-1"], ERROR), "method=bogus": (["--method", "bogus"], USAGE),
        "n-iter=string": (["--n-iter", "x"], USAGE), "key=missing": (["--key", "nope"], ERROR),
        "output=txt": (["-o", "{tmp}/map.txt"], SAFE), "output=csv": (["-o", "{tmp}/map.csv"], SAFE),
        "output=missing-folder": (["-o", "{tmp}/missing/map.npy"], ERROR),
        "output=a-folder": (["-o", "{tmp}"], ERROR),
        "plot=xyz": (["--plot", "{tmp}/map.xyz"], ERROR),
        "plot=missing-folder": (["--plot", "{tmp}/no/map.png"], ERROR),
        "labels=short": (["--labels", "{tmp}/short.txt"], ERROR), "labels=nan": (["--labels", "{tmp}/nan.txt"], ERROR),
        "labels=missing": (["--labels", "{tmp}/nope.txt"], ERROR),
        "parametric": (["--parametric"], SAFE),
    },
    "cluster": {
        "k=1": (["-k", "1"], ERROR), "k=0": (["-k", "0"], ERROR), "k=1000": (["-k", "1000"], ERROR),
        "n-neighbors=0": (["--n-neighbors", "0"], ERROR), "n-neighbors=1000": (["--n-neighbors", "1000"], ERROR),
        "walk-length=-1": (["--walk-length", "-1"], ERROR), "alpha-p=2": (["--alpha-p", "2"], ERROR),
        "alpha-q=nan": (["--alpha-q", "nan"], ERROR), "epochs=0": (["--epochs", "0"], ERROR),
        "n-heads=0": (["--n-heads", "0"], ERROR), "hidden-layer-sizes=0": (["--hidden-layer-sizes", "0"], ERROR),
        "hidden-layer-sizes=letters": (["--hidden-layer-sizes", "a"], USAGE),
        "device=bogus": (["--device", "bogus"], ERROR),
        "device=cuda": (["--device", "cuda"], ERROR if NO_CUDA else SAFE),
        "n-jobs=0": (["--n-jobs", "0"], ERROR), "random-state=-1": (["--random-state", "-1"], ERROR),
        "method=bogus": (["--method", "bogus"], USAGE), "method=supervised-without-labels":
            (["--method", "supervised"], ERROR),
        "output=xyz": (["-o", "{tmp}/labels.xyz"], ERROR), "output=npy": (["-o", "{tmp}/labels.npy"], SAFE),
        "output=missing-folder": (["-o", "{tmp}/missing/labels.csv"], ERROR),
        "plot=xyz": (["--plot", "{tmp}/c.xyz"], ERROR), "plot=missing-folder": (["--plot", "{tmp}/no/c.png"], ERROR),
        "labels=short": (["--labels", "{tmp}/short.txt"], ERROR), "labels=nan": (["--labels", "{tmp}/nan.txt"], ERROR),
        "labels=good": (["--labels", "{tmp}/good.txt"], SAFE),
    },
}
COMMANDS = {
    "demo-perplexity=-1": (["demo", "--perplexity", "-1", "-o", "{tmp}/d.png"], ERROR),
    "demo-n-iter=-1": (["demo", "--n-iter", "-1", "-o", "{tmp}/d.png"], ERROR),
    "demo-random-state=-1": (["demo", "--random-state", "-1", "-o", "{tmp}/d.png"], ERROR),
    "demo-perplexity=huge": (["demo", "--perplexity", "1e9", "-o", "{tmp}/d.png"], ERROR),
    "demo-output=xyz": (["demo", "--n-iter", "0", "--early-exaggeration-iter", "0", "-o", "{tmp}/d.xyz"], ERROR),
    "demo-output=missing-folder": (["demo", "--perplexity", "-1", "-o", "{tmp}/no/d.png"], ERROR),
    "demo-n-iter=string": (["demo", "--n-iter", "x"], USAGE),
    "bench-unknown": (["bench", "no_such_benchmark"], ERROR),
    "table-unknown": (["table", "no_such_method"], ERROR),
    "table-plot=xyz": (["table", "sne", "--plot", "{tmp}/t.xyz"], ERROR),
    "table-plot=missing-folder": (["table", "sne", "--plot", "{tmp}/no/t.png"], ERROR),
    "table-bogus-flag": (["table", "--bogus"], USAGE),
    "unknown-command": (["bogus"], USAGE),
    "embed-without-data": (["embed"], USAGE),
    "cluster-without-data": (["cluster"], USAGE),
}


def _files(tmp: Path):
    x = _blobs()
    _save(tmp, "good.npy", x)
    _save(tmp, "good.npz", x)
    _save(tmp, "good.txt", "\n".join(str(v) for v in np.arange(30) % 3))
    _save(tmp, "short.txt", "\n".join(str(v) for v in np.arange(29) % 3))
    _save(tmp, "nan.txt", "\n".join(["nan"] + [str(v) for v in np.arange(29) % 3]))
    for out in ("out.npy", "out.csv"):
        (tmp / out).write_text(SENTINEL)
    return x


def _cases():
    for command, extra, base in (("embed", EMBED, "out.npy"), ("cluster", CLUSTER, "out.csv")):
        for label, (_, _, expect) in DATA.items():
            yield f"{command}-data-{label}", (command, "data", label, expect)
        for label, (_, expect) in OPTIONS[command].items():
            yield f"{command}-{label}", (command, "option", label, expect)
    for label, (_, expect) in COMMANDS.items():
        yield label, ("other", "command", label, expect)


def _argv(command, what, label, tmp: Path):
    x = _files(tmp)
    if command == "other":
        return [a.replace("{tmp}", str(tmp)) for a in COMMANDS[label][0]]
    extra, out = (EMBED, "out.npy") if command == "embed" else (CLUSTER, "out.csv")
    data = str(tmp / ("good.npz" if label.startswith("key=") else "good.npy"))
    if what == "data":
        name, make, _ = DATA[label]
        if make is None:
            (tmp / name).write_bytes(b"")
            data = str(tmp / name)
        elif make == "missing":
            data = str(tmp / name)
        else:
            data = _save(tmp, name, make(x))
        options = []
    else:
        options = [a.replace("{tmp}", str(tmp)) for a in OPTIONS[command][label][0]]
    return [command, data, "-o", str(tmp / out), *extra, *options]


def _written(stdout: str):
    return [Path(m) for m in re.findall(r"wrote (\S+?)[;\s]", stdout + "\n")]


def _problems_with_outputs(paths):
    problems = []
    for path in paths:
        if not path.is_file():
            problems.append(f"says it wrote {path.name} but there is no such file")
        elif path.suffix in (".npy", ".csv", ".txt"):
            values = np.load(path) if path.suffix == ".npy" else np.loadtxt(path, delimiter="," if
                                                                              path.suffix == ".csv" else None)
            if not np.isfinite(values).all():
                problems.append(f"{path.name} holds NaN or Inf")
    return problems


def _run(argv):
    """main's return code, ``("exit", code)`` for SystemExit, or the problem as a string."""
    try:
        with time_guard():
            return main(argv)
    except SystemExit as exit_:
        return ("exit", exit_.code)
    except Hang as error:
        return f"hang: {error}"
    except Exception as error:  # noqa: BLE001 - a traceback is the finding
        return f"{type(error).__name__} escapes main() at {where(error)}: {first_line(error)}"


def _problem(code, expect, out, err, tmp_path):
    if isinstance(code, str):
        return code
    if expect == USAGE:
        return None if code == ("exit", 2) else f"expected argparse's usage error, got {code}"
    if code not in (0, 2):
        return f"exit {code}"
    if code == 2:
        if "Traceback" in err or not err.strip().startswith(("error:", "icontorch ")):
            return f"exit 2 without a one-line message: stderr {err[:100]!r}"
        changed = [name for name in ("out.npy", "out.csv") if (tmp_path / name).read_text() != SENTINEL]
        return f"a failed run changed the old {changed}" if changed else None
    if expect != SAFE:
        return f"no error: exit 0; stdout {out.strip().splitlines()[-1][:100]!r}"
    return "; ".join(_problems_with_outputs(_written(out))) or None


@pytest.mark.parametrize("command, what, label, expect", xfails(KNOWN_CLI, list(_cases())))
def test_command_line(command, what, label, expect, tmp_path, capsys):
    code = _run(_argv(command, what, label, tmp_path))
    out, err = capsys.readouterr()
    problem = _problem(code, expect, out, err, tmp_path)
    if problem:
        fail(problem)


def test_every_known_failure_names_a_case():
    assert not stale(KNOWN_CLI), "ids in battery_known.KNOWN_CLI that are no case of this file"
