"""pytest-benchmark configuration of the kernel benchmarks (``python -m pytest bench --benchmark-only``).

Options: ``--full`` runs the whole matrix (backends x neurons x sources x bins x dtype x mode);
``--bench-device cuda`` times the backends that take CUDA tensors. Every record carries the
machine, torch/triton versions, thread count and commit (``bench/report.py`` makes the tables).
"""
import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)


def pytest_addoption(parser):
    g = parser.getgroup("infomorph benchmarks")
    g.addoption("--full", action="store_true", help="the whole benchmark matrix (long; the default is a few minutes)")
    g.addoption("--bench-device", default="cpu", choices=("cpu", "cuda"), help="device of the timed tensors")


def pytest_configure(config):
    config.addinivalue_line("markers", "full: part of the full matrix only (--full)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--full"):
        return
    skip = pytest.mark.skip(reason="full matrix only: run with --full")
    for item in items:
        if "full" in item.keywords:
            item.add_marker(skip)


def pytest_benchmark_update_machine_info(config, machine_info):
    import torch

    from _env import commit, cpu_name

    machine_info["cpu_name"] = cpu_name()
    machine_info["torch"] = torch.__version__
    machine_info["torch_threads"] = torch.get_num_threads()
    machine_info["infomorph_commit"] = commit()
    try:
        import triton

        machine_info["triton"] = triton.__version__
    except ImportError:
        machine_info["triton"] = "-"
    if torch.cuda.is_available():
        machine_info["gpu"] = torch.cuda.get_device_name(0)


@pytest.fixture(scope="session")
def bench_device(request):
    import torch

    dev = request.config.getoption("--bench-device")
    if dev == "cuda" and not torch.cuda.is_available():
        pytest.skip("--bench-device cuda needs a CUDA GPU")
    return dev


@pytest.fixture(scope="session")
def baseline_medians():
    """Median seconds of reference_dense per comparison group, filled as its benchmarks run (they
    run first in each group), read by the others for their speed-up."""
    return {}
