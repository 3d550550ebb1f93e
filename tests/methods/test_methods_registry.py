"""The registry of methods: every name builds, and every table cell names a test that exists."""

import ast
import inspect
from pathlib import Path

import pytest

from icontorch import ICon, IConError, methods

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parents[1]

EXPECTED = {"sne", "tsne", "conditional_tsne", "simclr", "supcon", "clip", "cross_entropy",
            "kmeans", "triplet", "pca", "vicreg",
            # the rest of Fig. 1
            "x_sample_cl", "dual_tsne", "sne_graph_embedding", "sne_uniform_affinities", "lgsimclr",
            "infonce", "mocov3", "cmc", "average_margin_clip", "average_margin_supcon", "triplet_clip",
            "triplet_supcon", "error_rate", "doubly_tsne", "tsne_graph_embedding",
            "tsne_uniform_affinities", "tsimcne", "tsimclr", "t_clip", "t_supcon", "harmonic_loss",
            "t_kmeans", "normalized_cuts", "dcd", "infonce_clustering", "supervised_clustering",
            # Table 1
            "masked_language_modeling", "spectral_clustering", "pmi_clustering",
            # related losses and baselines
            "kernel_infonce", "swav", "dino", "siglip", "umap", "debiased_contrastive",
            "decoupled_contrastive", "iic", "temi_pmi", "hard_negative_contrastive",
            "contrastive_clustering"}


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
def test_method_builds_and_documents_its_claim(name):
    build = getattr(methods, name)
    required = [p for p in inspect.signature(build).parameters.values() if p.default is p.empty]
    if not required:
        loss = build()
        cell = methods.info(name)
        assert isinstance(loss, ICon) or cell.equality in ("none", "loose")
    doc = build.__doc__ or ""
    assert doc.strip(), name
    cell = methods.info(name)
    if cell.gap:                               # new methods say so, and why no oracle exists
        assert "new" in doc.lower() and cell.note


@pytest.mark.parametrize("name", methods.available())
def test_method_info_names_an_existing_test(name):
    cell = methods.info(name)
    assert cell.name == name
    assert cell.equality in methods.EQUALITIES
    assert cell.area in methods.AREAS and cell.kind in methods.KINDS
    assert cell.theorem and cell.column and cell.row and cell.p and cell.q and cell.label
    if cell.kind == "figure":
        assert cell.column in methods.COLUMNS and cell.row in methods.ROWS
    path, sep, function = cell.test.partition("::")
    assert sep == "::", cell.test
    file = REPO / path
    assert file.parent == TESTS and file.is_file(), f"{name}: {path} does not exist"
    assert function in _test_functions(file), f"{name}: {cell.test} does not exist"


def test_info_rejects_unknown_name():
    with pytest.raises(IConError, match="methods.info"):
        methods.info("not_a_method")
