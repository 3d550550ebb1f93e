"""Reading the arrays users give the command line: .npy, .npz, .csv and .txt files."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import numpy as np

from .._validation import IConError

__all__ = ["load_array", "load_labels"]


def load_array(path: str, key: Optional[str], what: str, command: str) -> np.ndarray:
    """A .npy, .npz (array ``key`` or the first) or .csv/.txt file (a header row is skipped).

    Args:
        path: the file.
        key: the array to read from an .npz archive (None: the first).
        what: ``"data"`` (read as 2-D) or another name, such as ``"labels"`` (read as 1-D).
        command: the sub-command, named in error messages (``"icontorch embed"``).
    """
    file = Path(path)
    if not file.is_file():
        raise IConError(f"{command}: {what} must be an existing file; got {path!r}.")
    suffix = file.suffix.lower()
    ndmin = 2 if what == "data" else 1
    try:
        if suffix == ".npy":
            return np.load(file, allow_pickle=False)
        if suffix == ".npz":
            with np.load(file, allow_pickle=False) as archive:
                names = list(archive.keys())
                if key is not None and key not in names:
                    raise IConError(f"{command}: --key must be one of {names}; got {key!r}.")
                return archive[key if key is not None else names[0]]
        if suffix in (".csv", ".txt"):
            delimiter = "," if suffix == ".csv" else None
            try:
                return np.loadtxt(file, delimiter=delimiter, ndmin=ndmin)
            except ValueError:                # a header row
                return np.loadtxt(file, delimiter=delimiter, skiprows=1, ndmin=ndmin)
    except (OSError, ValueError) as error:
        raise IConError(f"{command}: {what} must be a readable numeric file; got {path!r} "
                        f"({error}).") from None
    raise IConError(f"{command}: {what} must end in .npy, .npz, .csv or .txt; got {path!r}.")


def load_labels(path: Optional[str], n: int, command: str) -> Optional[np.ndarray]:
    """The labels file of ``--labels`` (None when it is not given) as a 1-D array of ``n`` labels."""
    if path is None:
        return None
    labels = load_array(path, None, "labels", command).ravel()
    if labels.shape[0] != n:
        raise IConError(f"{command}: labels must give one label per point ({n}); got {labels.shape[0]}.")
    return labels
