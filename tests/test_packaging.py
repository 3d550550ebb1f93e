"""The promises of the README: its commands, its examples, and a light import."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import icontorch

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def _blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_quick_start_is_two_commands_and_ci_runs_the_test_command():
    quick_start = README.split("## Quick start")[1].split("##")[0]
    commands = [line for block in re.findall(r"```bash\n(.*?)```", quick_start, flags=re.S)
                for line in block.strip().splitlines()]
    assert len(commands) == 2
    assert "icontorch demo" in commands[0]
    assert "pytest" in commands[1]
    ci = (ROOT / ".ci" / "run").read_text()
    assert commands[1] in ci.splitlines()
    assert "torch==2.13.0" in commands[0] and "torch==2.13.0" in commands[1]


def test_import_needs_only_torch_numpy_scipy():
    # torch itself may load tqdm, so only what icontorch could add is checked
    code = ("import sys, icontorch; heavy = [m for m in ('sklearn', 'matplotlib', 'pandas', "
            "'pytorch_metric_learning', 'openTSNE') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_public_api_is_importable_and_typed():
    for name in icontorch.__all__:
        assert hasattr(icontorch, name), name
    assert (Path(icontorch.__file__).parent / "py.typed").exists()


def test_readme_first_example_runs():
    namespace = {}
    exec(_blocks("python")[0], namespace)
    assert torch.isfinite(namespace["loss"])
    assert namespace["z"].grad is not None


def test_readme_switching_example_runs():
    torch.manual_seed(0)
    b = 8
    namespace = {
        "torch": torch, "ic": icontorch, "B": b, "z1": torch.randn(b, 4), "z2": torch.randn(b, 4),
        "y": torch.randint(0, 3, (b,)), "image": torch.randn(b, 4), "text": torch.randn(b, 4),
        "ids": torch.arange(b), "embedding": torch.randn(40, 2), "X": torch.randn(40, 5),
        "cluster_logits": torch.randn(40, 3), "log_softmax": F.log_softmax,
        "features": torch.randn(b, 4), "W": torch.randn(10, 4),
    }
    namespace["y"][:2] = torch.tensor([0, 0])      # every label at least twice across both views
    exec(_blocks("python")[1], namespace)


@pytest.mark.parametrize("path", ["LICENSE", ".gitignore", "pyproject.toml", "src/icontorch/py.typed"])
def test_package_files_exist(path):
    assert (ROOT / path).exists()
