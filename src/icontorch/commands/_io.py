"""The user's files: arrays read from .npy, .npz, .csv and .txt; outputs checked early and written atomically.

Every output of the command line goes through :func:`write_atomic`: it is written to a temporary
file in the target's folder and renamed over the target (``os.replace``) only once complete, so a
failed write (a full disk, Ctrl-C) leaves the old file as it was and no temporary file behind.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
import warnings
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional, Sequence

import numpy as np

from .._validation import IConError, check_device, fail

if TYPE_CHECKING:
    import torch

__all__ = ["load_array", "load_data", "load_labels", "check_device_flag", "check_output", "write_atomic",
           "save_array", "ARRAY_SUFFIXES", "FIGURE_SUFFIXES"]

ARRAY_SUFFIXES = (".npy", ".csv", ".txt")     # outputs: labels and maps
FIGURE_SUFFIXES = (".png", ".svg")
_INPUT_SUFFIXES = (".npy", ".npz", ".csv", ".txt")
_FLOAT32_MAX = float(np.finfo(np.float32).max)  # the estimators compute in float32


def _fail(command: str, name: str, rule: str, got: str) -> IConError:
    """``fail`` for a value already described in words (a file and what is wrong with it)."""
    return IConError(f"{command}: {name} must {rule}; got {got}.")


# ----------------------------------------------------------------------------------------- reading
def _header_rows(file: Path, delimiter: Optional[str]) -> int:
    """Lines to skip before a text table: through the first line that is not comments and numbers
    (a header of column names), or none."""
    with open(file, encoding="utf-8-sig") as text:
        for index, line in enumerate(text):
            content = line.split("#", 1)[0]
            if not content.strip():
                continue                                   # blank or comment: loadtxt skips it too
            try:
                [float(field) for field in content.split(delimiter) if field.strip()]
            except ValueError:
                return index + 1
            return 0
    return 0


def _read(file: Path, key: Optional[str], ndmin: int, name: str, command: str) -> np.ndarray:
    suffix = file.suffix.lower()
    if key is not None and suffix != ".npz":
        raise _fail(command, "--key", "be used with an .npz file only", f"{key!r} for {str(file)!r}")
    if suffix == ".npy":
        return np.load(file, allow_pickle=False)
    if suffix == ".npz":
        with np.load(file, allow_pickle=False) as archive:
            names = list(archive.keys())
            if not names:
                raise _fail(command, name, "be an .npz archive holding at least one array",
                            f"an empty archive {str(file)!r}")
            if key is not None and key not in names:
                raise fail(command, "--key", f"be one of {names}", key)
            return archive[key if key is not None else names[0]]
    delimiter = "," if suffix == ".csv" else None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")              # "input contained no data": checked below
        return np.loadtxt(file, delimiter=delimiter, ndmin=ndmin, skiprows=_header_rows(file, delimiter),
                          encoding="utf-8-sig")


def load_array(path: str, key: Optional[str], name: str, command: str, ndmin: int = 2) -> np.ndarray:
    """A non-empty array of real numbers from a .npy, .npz (array ``key`` or the first), .csv or .txt file.

    A header row of a .csv or .txt file is skipped; text files are read with at least ``ndmin``
    dimensions. Every problem raises :class:`IConError` naming ``name``, the rule and the value.

    Args:
        path: the file.
        key: the array to read from an .npz archive (None: the first).
        name: what the user passed, named in messages (``"data"``, ``"--labels"``).
        command: the sub-command, named in messages (``"icontorch embed"``).
        ndmin: minimum number of dimensions of arrays read from text.
    """
    file = Path(path)
    if not file.is_file():
        what = "a folder" if file.is_dir() else "not a regular file" if file.exists() else "no such file"
        raise _fail(command, name, "be an existing file", f"{path!r} ({what})")
    if file.suffix.lower() not in _INPUT_SUFFIXES:
        raise fail(command, name, "end in .npy, .npz, .csv or .txt", path)
    try:
        array = _read(file, key, ndmin, name, command)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        if isinstance(error, IConError):
            raise
        reason = " ".join(str(error).split()) or type(error).__name__
        raise _fail(command, name, "be a readable file of numbers", f"{path!r} ({reason})") from None
    if array.dtype.kind not in "biuf":
        raise _fail(command, name, "hold real numbers", f"an array of dtype {array.dtype} in {path!r}")
    if array.size == 0:
        raise _fail(command, name, "hold at least one number", f"an empty array of shape {array.shape} in {path!r}")
    return array


def _check_finite(array: np.ndarray, name: str, command: str, path: str) -> None:
    if array.dtype.kind != "f":
        return
    bad = ~np.isfinite(array)
    if bad.any():
        row = int(np.argwhere(bad)[0][0])
        value = "NaN" if np.isnan(array).any() else "Inf"
        raise _fail(command, name, "hold finite numbers", f"{value} in row {row} (counting from 0) of {path!r}")


def load_data(path: str, key: Optional[str], command: str) -> np.ndarray:
    """The (n_points, n_features) table of the positional ``data`` argument: real, finite, 2-D."""
    x = load_array(path, key, "data", command)
    if x.ndim != 2:
        where = (f"the first array of {path!r} (--key picks another)" if key is None and path.lower().endswith(".npz")
                 else repr(path))
        raise _fail(command, "data", "be a 2-D table (points x features)", f"shape {x.shape} in {where}")
    _check_finite(x, "data", command, path)
    largest = float(np.abs(x).max()) if x.dtype.kind == "f" else 0.0
    if largest > _FLOAT32_MAX:
        raise _fail(command, "data", f"hold numbers of magnitude at most {_FLOAT32_MAX:.3g} (float32)",
                    f"{largest:.3g} in {path!r}")
    return x


def load_labels(path: Optional[str], n: int, command: str) -> Optional[np.ndarray]:
    """The ``--labels`` file (None when it is not given): ``n`` finite labels, whole numbers as ints."""
    if path is None:
        return None
    labels = load_array(path, None, "--labels", command, ndmin=1)
    if labels.ndim == 2 and 1 in labels.shape:
        labels = labels.ravel()
    if labels.ndim != 1:
        raise _fail(command, "--labels", "be one column of labels", f"shape {labels.shape} in {path!r}")
    if labels.shape[0] != n:
        raise _fail(command, "--labels", f"give one label per point ({n})", f"{labels.shape[0]} in {path!r}")
    _check_finite(labels, "--labels", command, path)
    if labels.dtype.kind == "f" and np.array_equal(labels, np.round(labels)):
        labels = labels.astype(np.int64)
    return labels


def check_device_flag(command: str, value: str) -> "torch.device":
    """``--device``: a CPU, CUDA or MPS device that exists on this machine (the ones icontorch runs on)."""
    device = check_device(command, "--device", value)
    if device.type not in ("cpu", "cuda", "mps"):
        raise fail(command, "--device", "be a cpu, cuda or mps device", value)
    return device


# ----------------------------------------------------------------------------------------- writing
def check_output(path: Optional[str], flag: str, suffixes: Sequence[str], command: str,
                 inputs: Sequence[Optional[str]] = ()) -> None:
    """Before any work: ``path`` has an accepted suffix, lies in an existing writable folder, is not a
    folder itself and is none of ``inputs`` (the files the command reads)."""
    if path is None:
        return
    if Path(path).suffix.lower() not in suffixes:
        raise fail(command, flag, f"end in {', '.join(suffixes[:-1])} or {suffixes[-1]}", path)
    file = Path(os.path.realpath(path))         # written through a symbolic link, as write_atomic does
    folder = file.parent
    if not folder.is_dir():
        raise _fail(command, flag, "be in an existing folder", f"{path!r} (no folder {os.path.dirname(path)!r})")
    if file.is_dir():
        raise fail(command, flag, "name a file, not a folder", path)
    if not os.access(folder, os.W_OK | os.X_OK) or (file.exists() and not os.access(file, os.W_OK)):
        raise _fail(command, flag, "be writable", f"{path!r} (permission denied or a read-only file system)")
    for source in inputs:
        if source is not None and file.exists() and Path(source).exists() and os.path.samefile(file, source):
            raise fail(command, flag, "differ from the input files (it would overwrite one)", path)


def _temporary(target: Path) -> Path:
    """A new empty file beside ``target``, ending in its suffix (writers pick the format from it)."""
    for _ in range(100):
        temp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp{target.suffix}")
        try:
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return temp
    raise FileExistsError(f"could not create a temporary file beside {str(target)!r}")


def write_atomic(path: str, write: Callable[[str], Any]) -> str:
    """Write ``path`` all or nothing: ``write(temp)`` fills a temporary file in the same folder, which
    replaces ``path`` (``os.replace``) only when ``write`` returned.

    On any failure (an ``OSError`` such as a full disk, an exception, Ctrl-C) the temporary file is
    removed and ``path`` is left as it was; an ``OSError`` is raised again naming ``path``. A replaced
    file keeps its permission bits. Returns ``path``.
    """
    target = Path(os.path.realpath(path))       # through a symbolic link: the link stays a link
    try:
        temp = _temporary(target)
    except OSError as error:                    # a read-only or full file system: name the target
        raise OSError(error.errno, error.strerror or str(error), str(path)) from error
    try:
        write(str(temp))
        fd = os.open(temp, os.O_RDWR)
        try:
            os.fsync(fd)                      # the data is on disk before the name points to it
        finally:
            os.close(fd)
        if target.exists():
            os.chmod(temp, stat.S_IMODE(target.stat().st_mode))
        os.replace(temp, target)
    except BaseException as error:
        with contextlib.suppress(OSError):
            temp.unlink()
        if isinstance(error, OSError):
            raise OSError(error.errno, error.strerror or str(error), str(path)) from error
        raise
    return path


def save_array(path: str, array: np.ndarray, integers: bool = False) -> str:
    """Save ``array`` atomically in the format of ``path``'s suffix: .npy (numpy), .csv (commas) or
    .txt (spaces); ``integers`` writes text as whole numbers. Returns ``path``."""
    suffix = Path(path).suffix.lower()
    if suffix not in ARRAY_SUFFIXES:
        raise fail("save_array", "path", "end in .npy, .csv or .txt", path)
    fmt = "%d" if integers else "%.9g" if array.dtype == np.float32 else "%.17g"
    if suffix == ".npy":
        return write_atomic(path, lambda temp: np.save(temp, array))
    delimiter = "," if suffix == ".csv" else " "
    return write_atomic(path, lambda temp: np.savetxt(temp, array, fmt=fmt, delimiter=delimiter))
