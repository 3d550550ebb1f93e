"""Shared test fixtures."""

import pytest
import torch


@pytest.fixture
def float64_default():
    """Run a test with torch's default dtype set to float64 (discrete neighbourhoods build their
    log-probabilities in it), restoring the previous default afterwards."""
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(old)
