"""The registry of methods: every name builds, and every table cell names a test that exists."""

import ast
from pathlib import Path

import pytest

from icontorch import ICon, IConError, methods

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent

EXPECTED = {"sne", "tsne", "conditional_tsne", "simclr", "supcon", "clip", "cross_entropy",
            "kmeans", "triplet", "pca", "vicreg"}


def _test_functions(path):
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name.startswith("test")}


def test_available_lists_every_method():
    names = methods.available()
    assert len(names) == len(set(names))
    assert set(names) == EXPECTED
    assert set(names) <= set(methods.__all__)


@pytest.mark.parametrize("name", methods.available())
def test_method_builds_with_defaults(name):
    build = getattr(methods, name)
    loss = build(n_classes=10) if name == "cross_entropy" else build()
    assert isinstance(loss, ICon)


@pytest.mark.parametrize("name", methods.available())
def test_method_info_names_an_existing_test(name):
    cell = methods.info(name)
    assert cell.name == name
    assert cell.equality in {"exact", "limit", "bound", "argmin"}
    assert cell.area in {"DR", "CL", "U-SSL", "M-SSL", "SUP"}
    assert cell.theorem and cell.column and cell.row
    path, sep, function = cell.test.partition("::")
    assert sep == "::", cell.test
    file = REPO / path
    assert file.parent == TESTS and file.is_file(), f"{name}: {path} does not exist"
    assert function in _test_functions(file), f"{name}: {cell.test} does not exist"


def test_info_rejects_unknown_name():
    with pytest.raises(IConError, match="methods.info"):
        methods.info("not_a_method")
