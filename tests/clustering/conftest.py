"""Every clustering test runs on one torch thread: batches are small, and one thread avoids
oversubscription on a busy machine."""

import pytest
import torch


@pytest.fixture(autouse=True)
def one_thread():
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
