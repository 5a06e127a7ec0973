import os
import sys

import pytest
import torch

# Without a CUDA device, Triton kernels run on CPU tensors under the interpreter. The switch
# (TRITON_INTERPRET=1) is on only inside the tests that ask for it (fixture triton_interpreter);
# every other test sees the environment a user has. Triton decides at its import whether its
# standard library (tl.sum, ...) is made of interpreted or compiled functions, and the interpreter
# cannot call compiled ones, so triton is imported here once with the switch on and the variable is
# restored at once. The ahead-of-time compile (triton_kernels.compile_for_target) copes with that
# by compiling in a fresh process; tests/test_triton_aot.py checks both ways.
INTERPRET_TRITON = not torch.cuda.is_available()
if INTERPRET_TRITON and "triton" not in sys.modules:
    _saved = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    try:
        import triton.language  # noqa: F401
    except ImportError:  # the triton tests skip themselves
        pass
    finally:
        if _saved is None:
            del os.environ["TRITON_INTERPRET"]
        else:
            os.environ["TRITON_INTERPRET"] = _saved

try:
    from hypothesis import settings

    # deterministic example generation: the same examples on every run and every machine
    settings.register_profile("ci", derandomize=True, deadline=None, max_examples=25, print_blob=True)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))
except ImportError:  # hypothesis-based tests skip themselves
    pass


@pytest.fixture(autouse=True, scope="session")
def _data_cache(tmp_path_factory):
    """Decoded data sets are cached in a folder of this test session, never in the user's cache
    (the variable reaches the CLI tests' subprocesses too)."""
    saved = os.environ.get("INFOMORPH_CACHE_DIR")
    os.environ["INFOMORPH_CACHE_DIR"] = str(tmp_path_factory.mktemp("infomorph-cache"))
    yield
    if saved is None:
        os.environ.pop("INFOMORPH_CACHE_DIR", None)
    else:
        os.environ["INFOMORPH_CACHE_DIR"] = saved


@pytest.fixture(autouse=True)
def _thread_state():
    """Thread counts are process-wide (torch's pool, the CPU engine's fixed count and its back-off
    record): a test that sets them (an in-process CLI run with --threads N, say) leaves the next test
    the state it found, whatever order the suite runs in."""
    from infomorph_kernels import cpu_backend

    saved = (torch.get_num_threads(), cpu_backend._num_threads, cpu_backend._lowered)
    yield
    torch.set_num_threads(saved[0])
    cpu_backend._num_threads, cpu_backend._lowered = saved[1], saved[2]


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


@pytest.fixture
def triton_interpreter(monkeypatch):
    """TRITON_INTERPRET=1 for this test only (restored after it), unless a CUDA device is present."""
    if INTERPRET_TRITON:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    yield


def triton_status():
    """(runnable here, reason): triton importable, and a CUDA device or the interpreter."""
    try:
        from infomorph_kernels import triton_kernels as tk
    except ImportError as e:  # pragma: no cover - the module itself imports without triton
        return False, str(e)
    if tk.triton is None:
        return False, tk.unavailable_reason()
    return True, ""
