"""The one place that chooses how a call runs: the backend, per call, from the tensors' device
(:func:`choose`), then the path through it (:func:`route`); :mod:`.api` checks the arguments and
runs the path named here.

``backend="auto"`` picks the fastest backend available for the device; a backend named explicitly
that cannot run raises, saying what is missing and how to get it (no silent fallback).
"""
from __future__ import annotations

import importlib
from typing import Callable, List, Optional, Tuple

import torch

REFERENCE_BACKENDS = ("reference", "reference_dense")
FUSED_BACKENDS = ("cpu", "triton", "cuda")
BACKENDS = REFERENCE_BACKENDS + FUSED_BACKENDS

# Fused backends: module implementing is_available(), unavailable_reason(), pid_kernel_<name>(...)
_MODULES = {"cpu": "cpu_backend", "triton": "triton_kernels", "cuda": "cuda_backend"}
# Preference for backend="auto", fastest first (bench/RESULTS.md has the measurements).
AUTO_ORDER = {"cpu": ("cpu", "reference"), "cuda": ("cuda", "triton", "reference")}


def _load(name: str):
    try:
        return importlib.import_module(f"infomorph_kernels.{_MODULES[name]}"), None
    except ImportError as e:  # a backend's Python file may itself be absent in a partial install
        return None, f"backend {name!r} could not be imported: {e}"


def _device_ok(name: str, device: torch.device) -> Optional[str]:
    """None if backend ``name`` can take tensors on ``device``, else why not."""
    if name in REFERENCE_BACKENDS:
        return None
    if name == "cpu" and device.type != "cpu":
        return f"backend 'cpu' takes CPU tensors, got tensors on {device}"
    if name in ("cuda",) and device.type != "cuda":
        return f"backend {name!r} takes CUDA tensors, got tensors on {device}"
    if name == "triton" and device.type != "cuda":
        import os

        if os.environ.get("TRITON_INTERPRET") != "1":
            return f"backend 'triton' takes CUDA tensors (or CPU tensors under TRITON_INTERPRET=1), got {device}"
    return None


def backend_status(name: str, device="cpu") -> Tuple[bool, str]:
    """(can run, reason if not) for backend ``name`` on ``device``."""
    if name not in BACKENDS:
        raise ValueError(f"backend must be 'auto' or one of {list(BACKENDS)}, got {name!r}")
    device = torch.device(device)
    why = _device_ok(name, device)
    if why is not None:
        return False, why
    if name in REFERENCE_BACKENDS:
        return True, ""
    mod, err = _load(name)
    if mod is None:
        return False, err
    if not mod.is_available():
        return False, mod.unavailable_reason()
    return True, ""


def available_backends(device=None) -> List[str]:
    """Names of the backends that can run here: for ``device`` if given, else for any device."""
    devices = [torch.device(device)] if device is not None else [torch.device("cpu")]
    if device is None and torch.cuda.is_available():
        devices.append(torch.device("cuda"))
    return [b for b in BACKENDS if any(backend_status(b, d)[0] for d in devices)]


def choose(backend: str, device: torch.device) -> str:
    """The backend that will run for tensors on ``device``."""
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a str, got {type(backend).__name__}")
    return _choose(backend, torch.device(device).type)


def _assume_constant_result(fn):
    """torch.compiler.assume_constant_result, which only sets this attribute, without its cost:
    the public name imports torch._dynamo (~1.4 s) at our import. Checked in tests/test_backends_api."""
    fn._dynamo_marked_constant = True
    return fn


# Evaluated eagerly when torch.compile traces a call (module imports cannot be traced); the
# choice is a constant of the traced graph.
@_assume_constant_result
def _choose(backend: str, device_type: str) -> str:
    device = torch.device(device_type)
    if backend == "auto":
        for name in AUTO_ORDER.get(device.type, ("reference",)):
            if backend_status(name, device)[0]:
                return name
        return "reference"
    ok, why = backend_status(backend, device)
    if not ok:
        raise RuntimeError(f"backend {backend!r} cannot run: {why}")
    return backend


# The paths of a layer call (api.pid / pid_goal), one per real difference in what runs:
#   "reference"  the pure-torch oracle ("reference", "reference_dense"): per-sample or dense sums
#   "local"      the CPU engine's local-atoms pass (plus "fused" for a goal's gradient)
#   "traced"     the custom op infomorph_kernels::pid_fused, which torch.compile traces through
#   "cpu_goal"   the CPU engine's lean eager call for a fixed goal (autograd.CPUGoal): one engine
#                call gives the goal too, with none of the generic op's argument plumbing
#   "fused"      the fused kernel of any backend with its eager autograd twin (autograd.PIDFused):
#                GPU backends, and a goal being learned (weights that need a gradient)
ROUTES = ("reference", "local", "traced", "cpu_goal", "fused")


def route(name: str, local: bool, compiling: bool, learned_goal: bool) -> str:
    """The path a call on backend ``name`` (as :func:`choose` returned it) takes: see ROUTES.
    ``local``: local atoms asked for; ``compiling``: inside a torch.compile trace;
    ``learned_goal``: the goal's weights need a gradient."""
    if name in REFERENCE_BACKENDS:
        return "reference"
    if local:
        return "local"
    if compiling:
        return "traced"
    if name == "cpu" and not learned_goal:
        return "cpu_goal"
    return "fused"


def kernel(name: str) -> Callable:
    """The fused kernel function of backend ``name`` (docs/kernel_contract.md)."""
    mod, err = _load(name)
    if mod is None:
        raise RuntimeError(err)
    return getattr(mod, f"pid_kernel_{name}")
