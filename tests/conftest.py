import os

import pytest
import torch

try:
    from hypothesis import settings

    # deterministic example generation: the same examples on every run and every machine
    settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis-based tests skip themselves
    pass


@pytest.fixture
def gen():
    """A seeded generator: every test draws fresh but reproducible inputs."""
    return torch.Generator().manual_seed(1234)


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread avoids OpenMP overhead (and contention on a busy 2-core box)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
