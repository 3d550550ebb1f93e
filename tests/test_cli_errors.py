"""The command line's guarantees: every user error is one line and exit status 2 before any fit, and
every output is written atomically (a failed write leaves the old file byte for byte)."""

import errno
import os
import subprocess
import sys
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch

from icontorch.cli import main
from icontorch.clustering import Clustering
from icontorch.commands._io import write_atomic
from icontorch.embedding import SNE, TSNE, NeighborEmbedding

FAST_EMBED = ["--perplexity", "5", "--n-iter", "5", "--early-exaggeration-iter", "5"]
FAST_CLUSTER = ["-k", "3", "--epochs", "1", "--n-heads", "1", "--n-neighbors", "4"]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A folder holding 30 points (.npy, .csv), their labels and bad inputs; the working directory."""
    monkeypatch.chdir(tmp_path)
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(30, 4)) + 4 * (np.arange(30) % 3)[:, None]).astype(np.float32)
    np.save("x.npy", x)
    np.savetxt("x.csv", x, delimiter=",", header="a,b,c,d", comments="")
    np.savetxt("y.txt", np.arange(30) % 3, fmt="%d")
    bad = {"empty.npy": b"", "empty.csv": b"", "text.csv": b"a,b\nc,d\n", "ragged.csv": b"1,2,3\n4,5,6\n7,8\n",
           "semicolons.csv": b"1;2\n3;4\n", "data.xyz": b"1 2\n"}
    for name, content in bad.items():
        Path(name).write_bytes(content)
    np.savez("no_arrays.npz")
    nan = x.copy()
    nan[3, 1] = np.nan
    np.savetxt("nan.csv", nan, delimiter=",")
    inf = x.copy()
    inf[5, 0] = np.inf
    np.save("inf.npy", inf)
    np.save("one_row.npy", x[:1])
    np.save("vector.npy", x[:, 0])
    np.save("complex.npy", x.astype(np.complex64))
    np.save("huge.npy", x.astype(np.float64) * 1e40)
    labels = (np.arange(30) % 3).astype(float)
    np.savetxt("y_short.txt", labels[:29])
    labels[2] = np.nan
    np.savetxt("y_nan.txt", labels)
    np.savetxt("y_two_columns.csv", np.c_[labels, labels], delimiter=",")
    Path("folder.npy").mkdir()
    os.mkfifo("pipe.npy")
    np.savez("first_y.npz", y=np.arange(30), x=x)
    Path("binary.csv").write_bytes(bytes(range(256)) * 4)
    return tmp_path


@pytest.fixture
def no_fit(monkeypatch):
    """Fitting fails the test: the errors below must come before any fit."""
    def fit(self, *args, **kwargs):
        raise AssertionError("the estimator was fitted before the error was found")

    for cls in (TSNE, SNE, NeighborEmbedding, Clustering):
        monkeypatch.setattr(cls, "fit", fit)


def _one_line_error(capsys, command):
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"icontorch {command}: error: "), err
    assert "Traceback" not in err
    return err


# ---------------------------------------------------------------------------------- one line, exit 2
CASES = [
    # missing, folder, unreadable or wrong data
    (["embed", "missing.npy"], "data must be an existing file; got 'missing.npy' (no such file)."),
    (["cluster", "folder.npy"], "data must be an existing file; got 'folder.npy' (a folder)."),
    (["embed", "data.xyz"], "data must end in .npy, .npz, .csv or .txt; got 'data.xyz'."),
    (["embed", "empty.npy"], "data must be a readable file of numbers; got 'empty.npy'"),
    (["cluster", "empty.csv"], "data must hold at least one number"),
    (["embed", "no_arrays.npz"], "data must be an .npz archive holding at least one array"),
    (["cluster", "text.csv"], "data must be a readable file of numbers; got 'text.csv'"),
    (["embed", "ragged.csv"], "the number of columns changed from 3 to 2"),
    (["embed", "semicolons.csv"], "data must be a readable file of numbers"),
    (["cluster", "nan.csv"], "data must hold finite numbers; got NaN in row 3 (counting from 0) of 'nan.csv'."),
    (["embed", "inf.npy"], "data must hold finite numbers; got Inf in row 5"),
    (["embed", "vector.npy"], "data must be a 2-D table (points x features); got shape (30,)"),
    (["cluster", "complex.npy"], "data must hold real numbers; got an array of dtype complex64"),
    (["embed", "huge.npy"], "data must hold numbers of magnitude at most 3.4e+38 (float32)"),
    (["embed", "x.npy", "--key", "a"], "--key must be used with an .npz file only"),
    (["embed", "pipe.npy"], "data must be an existing file; got 'pipe.npy' (not a regular file)."),
    (["embed", "first_y.npz"], "got shape (30,) in the first array of 'first_y.npz' (--key picks another)."),
    (["cluster", "binary.csv"], "data must be a readable file of numbers; got 'binary.csv'"),
    # labels
    (["embed", "x.npy", "--labels", "y_short.txt"], "--labels must give one label per point (30); got 29"),
    (["cluster", "x.npy", "--labels", "y_nan.txt"], "--labels must hold finite numbers; got NaN in row 2"),
    (["cluster", "x.npy", "--labels", "y_two_columns.csv"], "--labels must be one column of labels"),
    (["embed", "x.npy", "--labels", "missing.txt"], "--labels must be an existing file"),
    # outputs, checked before the fit
    (["embed", "x.npy", "-o", "map.xyz"], "-o must end in .npy, .csv or .txt; got 'map.xyz'."),
    (["embed", "x.npy", "-o", "map"], "-o must end in .npy, .csv or .txt; got 'map'."),
    (["cluster", "x.npy", "-o", "missing/labels.csv"], "-o must be in an existing folder"),
    (["cluster", "x.npy", "-o", "folder.npy"], "-o must name a file, not a folder; got 'folder.npy'."),
    (["cluster", "x.npy", "-o", "x.npy"], "-o must differ from the input files"),
    (["embed", "x.npy", "--plot", "map.xyz"], "--plot must end in .png or .svg; got 'map.xyz'."),
    (["embed", "x.npy", "--plot", "missing/map.png"], "--plot must be in an existing folder"),
    (["cluster", "x.npy", "--plot", "sizes.pdf"], "--plot must end in .png or .svg; got 'sizes.pdf'."),
    (["demo", "-o", "missing/demo.png"], "-o must be in an existing folder"),
    (["demo", "-o", "demo.jpg"], "-o must end in .png or .svg; got 'demo.jpg'."),
    (["table", "--plot", "missing/table.png"], "--plot must be in an existing folder"),
    # devices
    (["embed", "x.npy", "--device", "meta"], "--device must be a cpu, cuda or mps device; got 'meta'."),
    (["cluster", "x.npy", "--device", "bogus"], "--device must name a torch device such as 'cpu' or 'cuda'"),
    # names
    (["table", "tsne", "not_a_method"], "NAME must name a method of icontorch.methods; got unknown method(s)"),
    (["bench", "not_a_benchmark"], "NAME must name a benchmark script; got 'not_a_benchmark'"),
]


@pytest.mark.parametrize("argv, message", CASES, ids=[" ".join(argv) for argv, _ in CASES])
def test_user_errors_are_one_line_before_the_fit(files, no_fit, capsys, argv, message):
    before = sorted(os.listdir(files))
    assert main(argv) == 2
    assert message in _one_line_error(capsys, argv[0])
    assert sorted(os.listdir(files)) == before                    # no output, no temporary file


# Bad values of flags reach the estimators' checks, which run before any long work; the message
# names the flag the user typed, not the estimator's parameter.
FLAG_CASES = [
    (["embed", "x.npy", "--n-iter", "-1"], "--n-iter must be an integer >= 0; got -1."),
    (["embed", "x.npy", "--n-components", "0"], "--n-components must be an integer >= 1; got 0."),
    (["embed", "x.npy", "--perplexity", "nan"], "--perplexity must be a positive finite number; got nan."),
    (["embed", "x.npy", "--perplexity", "100"], "--perplexity must be smaller than n_samples - 1 = 29"),
    (["embed", "x.npy", "--method", "tsne_uniform_affinities", "--perplexity", "28.6"],
     "--perplexity must round to fewer than n_samples - 1 = 29 neighbours"),
    (["embed", "x.npy", "--n-jobs", "0"], "--n-jobs must be None, -1 or an integer between 1 and 1024; got 0."),
    (["embed", "x.npy", "--random-state", "-1"], "--random-state must be an integer between 0 and 4294967295; got -1."),
    (["embed", "one_row.npy"], "data must hold at least 3 samples"),
    (["cluster", "x.npy", "-k", "1"], "--n-clusters must be an integer >= 2; got 1."),
    (["cluster", "x.npy", "-k", "31"], "--n-clusters must be at most the number of points (30); got 31."),
    (["cluster", "x.npy", "--n-neighbors", "30"], "--n-neighbors must be smaller than the number of points (30)"),
    (["cluster", "x.npy", "--epochs", "0"], "--epochs must be an integer >= 1; got 0."),
    (["cluster", "x.npy", "--n-heads", "-1"], "--n-heads must be an integer >= 1; got -1."),
    (["cluster", "x.npy", "--alpha-p", "nan"], "--alpha-p must lie in [0, 1]; got nan."),
    (["cluster", "x.npy", "--walk-length", "-1"], "--walk-length must be an integer >= 0; got -1."),
    (["cluster", "x.npy", "--init", "k-means", "--hidden-layer-sizes", "8"], '--init must be "random" or "auto"'),
    (["cluster", "x.npy", "--method", "supervised"], "--labels must be given (one label per point)"),
    (["demo", "--perplexity", "0"], "--perplexity must be a positive finite number; got 0.0."),
    (["demo", "--early-exaggeration-iter", "-1"], "--early-exaggeration-iter must be an integer >= 0; got -1."),
]


@pytest.mark.parametrize("argv, message", FLAG_CASES, ids=[" ".join(argv) for argv, _ in FLAG_CASES])
def test_bad_flag_values_name_the_flag(files, capsys, argv, message):
    before = sorted(os.listdir(files))
    assert main(argv) == 2
    assert message in _one_line_error(capsys, argv[0])
    assert sorted(os.listdir(files)) == before


@pytest.mark.parametrize("argv", [["embed", "x.npy", "--n-iter", "ten"], ["embed", "x.npy", "--perplexity", "abc"],
                                  ["embed", "x.npy", "--n-components", str(2 ** 64)],      # torch: OverflowError
                                  ["cluster", "x.npy", "--random-state", str(2 ** 64)],
                                  ["cluster", "x.npy", "--hidden-layer-sizes", f"8,{2 ** 64}"],
                                  ["embed", "x.npy", "--n-jobs", str(2 ** 31 - 1)],        # OpenMP aborts the process
                                  ["cluster", "x.npy", "-k", "2.5"], ["cluster", "x.npy", "--hidden-layer-sizes", "3,"],
                                  ["cluster", "x.npy", "--method", "nope"], ["cluster", "x.npy", "--init", "pca"],
                                  ["demo", "--random-state", "1e3"],
                                  ["embed"], ["nope"]])
def test_malformed_command_lines_are_argparse_usage_errors(files, capsys, argv):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: icontorch") and "error: " in err and "Traceback" not in err


def test_cuda_device_is_checked_before_loading(files, no_fit, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for command in ("cluster", "embed"):
        assert main([command, "missing.npy", "--device", "cuda"]) == 2     # the device, before the file
        assert "--device must be available (torch.cuda.is_available() is False); got 'cuda'." in \
            _one_line_error(capsys, command)


def test_unwritable_output_folder_is_found_before_the_fit(files, no_fit, capsys, monkeypatch):
    real_access = os.access
    locked = str(files / "locked")
    os.mkdir(locked)
    # a read-only folder (root may write anywhere, so the permission is simulated)
    monkeypatch.setattr(os, "access", lambda path, mode: os.path.abspath(path) != locked and real_access(path, mode))
    assert main(["cluster", "x.npy", "-o", "locked/labels.csv"]) == 2
    assert "-o must be writable; got 'locked/labels.csv'" in _one_line_error(capsys, "cluster")
    assert main(["embed", "x.npy", "--plot", "locked/map.png"]) == 2
    assert "--plot must be writable" in _one_line_error(capsys, "embed")
    assert os.listdir(locked) == []


def test_running_out_of_memory_is_one_line_and_other_bugs_keep_their_traceback(files, capsys, monkeypatch):
    def allocate(self, *args, **kwargs):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate "
                           "memory: you tried to allocate 52776558133248 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(Clustering, "fit", allocate)
    assert main(["cluster", "x.npy", "--n-heads", str(2 ** 40)]) == 2
    assert "error: out of memory (DefaultCPUAllocator: can't allocate memory: you tried to allocate " \
           "52776558133248 bytes." in _one_line_error(capsys, "cluster")

    def bug(self, *args, **kwargs):
        raise RuntimeError("shape mismatch in a kernel")

    monkeypatch.setattr(Clustering, "fit", bug)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        main(["cluster", "x.npy"])


def test_text_tables_skip_a_header_and_comments_but_never_a_row_of_numbers(files, capsys):
    x = np.load("x.npy")
    rows = "\n".join(",".join(f"{v:.9g}" for v in row) for row in x)
    Path("bom.csv").write_text(rows, encoding="utf-8-sig")            # Excel's byte-order mark
    Path("commented.csv").write_text("# exported 2024\nfeature_a,feature_b,c,d\n" + rows)
    for name in ("bom.csv", "commented.csv"):
        assert main(["embed", name, *FAST_EMBED, "-o", "map.npy"]) == 0
        assert "of 30 points x 4 features" in capsys.readouterr().out
    assert main(["embed", "ragged.csv", *FAST_EMBED]) == 2                 # not read as 1 row after a "header"
    assert "the number of columns changed from 3 to 2 at row 3" in _one_line_error(capsys, "embed")


def test_outputs_are_written_through_a_symbolic_link(files, capsys):
    Path("real.npy").write_bytes(b"old")
    os.symlink("real.npy", "link.npy")
    assert main(["embed", "x.npy", *FAST_EMBED, "-o", "link.npy"]) == 0
    assert os.path.islink("link.npy") and np.load("real.npy").shape == (30, 2)


def test_labels_that_are_not_whole_numbers_are_classes(files, capsys):
    np.savetxt("y_halves.txt", (np.arange(30) % 3) * 0.5)
    assert main(["cluster", "x.npy", *FAST_CLUSTER, "--labels", "y_halves.txt", "-o", "labels.npy"]) == 0
    captured = capsys.readouterr()
    assert "Hungarian accuracy" in captured.out and captured.err == ""      # no "continuous labels" warning
    assert np.load("labels.npy").shape == (30,)


# -------------------------------------------------------------------------- outputs: path and format
@pytest.mark.parametrize("suffix", [".txt", ".csv", ".npy"])
def test_embed_writes_exactly_the_path_given_in_its_format(files, capsys, suffix):
    out = f"map{suffix}"
    assert main(["embed", "x.csv", *FAST_EMBED, "-o", out]) == 0
    assert f"wrote {out}\n" in capsys.readouterr().out
    assert sorted(p.name for p in files.glob("map*")) == [out]          # not map.txt.npy
    loaded = (np.load(out) if suffix == ".npy" else
              np.loadtxt(out, delimiter="," if suffix == ".csv" else None))
    assert loaded.shape == (30, 2) and np.isfinite(loaded).all()


def test_cluster_writes_labels_as_text(files, capsys):
    assert main(["cluster", "x.npy", *FAST_CLUSTER, "-o", "labels.txt", "--labels", "y.txt"]) == 0
    assert "wrote labels.txt" in capsys.readouterr().out
    labels = np.loadtxt("labels.txt", dtype=int)
    assert labels.shape == (30,) and set(labels) <= {0, 1, 2}
    assert sorted(p.name for p in files.glob("labels*")) == ["labels.txt"]


# ------------------------------------------------------------------------- atomic writes on failure
def _half_then_full_disk(real):
    """A writer that writes half of its output to the file it is given, then fails as a full disk does."""
    def write(fname, *args, **kwargs):
        if args and isinstance(args[0], np.ndarray):                        # np.save / np.savetxt
            real(fname, args[0][: len(args[0]) // 2], *args[1:], **kwargs)
        else:                                                               # Figure.savefig(self, fname)
            Path(args[0]).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 100)
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    return write


@pytest.mark.parametrize("argv, target, writer", [
    (["cluster", "x.npy", *FAST_CLUSTER, "-o", "labels.csv"], "labels.csv", "savetxt"),
    (["embed", "x.npy", *FAST_EMBED, "-o", "map.npy"], "map.npy", "save"),
    (["embed", "x.npy", *FAST_EMBED, "-o", "map.txt", "--plot", "map.png"], "map.png", "savefig"),
    (["table", "--plot", "table.png"], "table.png", "savefig"),
], ids=["cluster labels.csv", "embed map.npy", "embed --plot", "table --plot"])
def test_a_failed_write_leaves_the_old_file_intact(files, capsys, monkeypatch, argv, target, writer):
    old = b"the previous output\n" * 90
    Path(target).write_bytes(old)
    before = sorted(os.listdir(files))
    if writer == "savefig":
        monkeypatch.setattr(matplotlib.figure.Figure, "savefig", _half_then_full_disk(None))
    else:
        monkeypatch.setattr(np, writer, _half_then_full_disk(getattr(np, writer)))
    assert main(argv) == 2
    err = _one_line_error(capsys, argv[0])
    assert err == f"icontorch {argv[0]}: error: {target}: No space left on device\n"
    assert Path(target).read_bytes() == old
    new = [name for name in sorted(os.listdir(files)) if name not in before]
    assert new == (["map.txt"] if "map.txt" in argv else [])               # no temporary file


def test_ctrl_c_leaves_the_old_output_and_says_so(files, capsys, monkeypatch):
    Path("map.npy").write_bytes(b"old")

    def interrupted(self, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(TSNE, "fit", interrupted)
    assert main(["embed", "x.npy", "-o", "map.npy"]) == 130
    assert capsys.readouterr().err == "icontorch embed: interrupted\n"
    assert Path("map.npy").read_bytes() == b"old"


def test_write_atomic_keeps_permissions_and_reraises(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    assert write_atomic(str(target), lambda temp: Path(temp).write_text("new\n")) == str(target)
    assert target.read_text() == "new\n" and (target.stat().st_mode & 0o777) == 0o640

    def broken(temp):
        Path(temp).write_text("half")
        raise RuntimeError("writer bug")

    with pytest.raises(RuntimeError, match="writer bug"):
        write_atomic(str(target), broken)
    assert target.read_text() == "new\n" and os.listdir(tmp_path) == ["out.csv"]


def test_write_atomic_names_the_target_when_no_file_can_be_created(tmp_path, monkeypatch):
    real_open = os.open

    def read_only(path, flags, *args):                       # a read-only file system refuses new files
        if flags & os.O_CREAT:
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), path)
        return real_open(path, flags, *args)

    monkeypatch.setattr(os, "open", read_only)
    target = str(tmp_path / "out.csv")
    with pytest.raises(OSError) as error_info:
        write_atomic(target, lambda temp: None)
    assert error_info.value.filename == target and error_info.value.errno == errno.EROFS


# ----------------------------------------------------------------------------------- a closed pipe
class _ClosedPipe:
    def write(self, text):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


def test_a_closed_pipe_ends_quietly(capsys, monkeypatch):
    monkeypatch.setattr(sys, "stdout", _ClosedPipe())
    assert main(["table"]) == 141
    assert capsys.readouterr().err == ""


def test_icontorch_table_into_a_closed_pipe_prints_nothing_on_stderr():
    """``icontorch table | head -0``: the reader is gone before the first write; no traceback,
    not even Python's 'Exception ignored ... BrokenPipeError' at exit."""
    src = str(Path(__file__).resolve().parents[1] / "src")
    env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
    process = subprocess.Popen([sys.executable, "-c", "import sys; from icontorch.cli import main; "
                                "sys.exit(main(['table', '-v']))"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()                     # the reader exits before icontorch writes
    err = process.stderr.read()
    assert process.wait(timeout=120) == 141
    assert err == b""
