"""Backend ``"cuda"``: the fused CUDA C++ engine (csrc/cuda, pybind11 module ``_cuda``).

One launch per layer computes, for every neuron, the redundancies of all antichains, H(Y) and
(``need_grad``) dG/dtheta - docs/kernel_contract.md is the contract and
``infomorph_kernels.reference.pid_kernel_reference`` the oracle. Design (csrc/cuda/pid_cuda.cu,
csrc/cuda/pid_cuda_kernel.cuh): a persistent grid of 256-thread blocks, one neuron per block at a
time; the theta-weighted marginal tables of all source subsets in dynamic shared memory when they
fit (n = 3, K = 20: 111 KB in float32, two blocks per H100 SM), else in a per-block global
workspace; shared-memory atomics for the scatters, warp-shuffle + block reductions, and the fused
backward (second scatter and gather) in the same launch.

Importing this module never fails: the compiled module is loaded lazily, and :func:`is_available`
/ :func:`unavailable_reason` say whether it is there (and a GPU) and how to build it. Calls never
synchronize the host: the kernel is enqueued on torch's current stream of x's device.

Environment: ``INFOMORPH_CUDA_WORKSPACE_BYTES`` (default 512 MiB) bounds the global-table
workspace of all blocks together (it limits the grid when the tables do not fit in shared memory).
"""
from __future__ import annotations

import functools
import os
from typing import Sequence, Tuple

import torch

from . import _ext, lattice
from ._validate import int_list, kernel_tensor

_BUILD_HINT = (
    "build it with `pip install --no-build-isolation -e .` with nvcc on PATH (or CUDA_HOME set to the "
    "CUDA toolkit; INFOMORPH_FORCE_CUDA=1 makes a missing nvcc an error)"
)
MAX_SOURCES = lattice.MAX_SOURCES_FUSED  # = kMaxSources of csrc/common/pid_common.h
WORKSPACE_BYTES = int(os.environ.get("INFOMORPH_CUDA_WORKSPACE_BYTES", str(512 << 20)))


def _load():
    return _ext.load("_cuda")[0]


def is_built() -> bool:
    """True if the compiled module ``infomorph_kernels._cuda`` can be imported (no GPU needed)."""
    return _load() is not None


def is_available() -> bool:
    """True if the engine is built and torch sees a CUDA GPU."""
    return is_built() and torch.cuda.is_available()


def unavailable_reason() -> str:
    """Why :func:`is_available` is false ("" when it is true)."""
    if _load() is None:
        return f"the CUDA engine (infomorph_kernels._cuda) is not built: {_BUILD_HINT} [import error: {_ext.load('_cuda')[1]}]"
    if not torch.cuda.is_available():
        return "the CUDA engine is built, but torch sees no CUDA GPU (torch.cuda.is_available() is False)"
    return ""


def build_info() -> dict:
    """Architectures and CUDA runtime of the compiled module (empty if it is not built)."""
    mod = _load()
    if mod is None:
        return {}
    info = {"compiled_archs": mod.compiled_archs(), "block_threads": mod.BLOCK_THREADS}
    try:
        info["cuda_runtime"] = mod.runtime_version()
    except RuntimeError as e:  # no driver: the runtime cannot even report its version
        info["cuda_runtime"] = f"unavailable ({e})"
    return info


def _check(name: str, t, device: torch.device, dtype, shape=None) -> torch.Tensor:
    return kernel_tensor(name, t, "cuda", device, dtype, shape)


def pid_kernel_cuda(
    x: torch.Tensor,
    theta: torch.Tensor,
    edges: torch.Tensor,
    nbins: Sequence[int],
    clamp_lo: torch.Tensor,
    clamp_hi: torch.Tensor,
    adaptive: bool,
    coef: torch.Tensor,
    w: torch.Tensor,
    gamma_h: float,
    need_grad: bool,
    *,
    tables: str = "auto",
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel contract on the CUDA engine (one asynchronous launch on the current stream).

    x: [B, N, n] float32/float64 CUDA tensor (n = 1..4); theta: [B, N] same dtype, in [0, 1];
    edges: [n, Kmax + 1]; nbins: n python ints >= 1; clamp_lo/clamp_hi: [n]; coef: [A, 2^n - 1]
    int32 (the lattice's); w: [A] float64 (need_grad). All on x's device (coef and w may also be
    CPU tensors; they are then copied, which is cheap but not free). Returns ``red [N, A]``,
    ``h_y [N]``, ``dtheta [B, N]`` (numel 0 unless need_grad), in x's dtype. The caller's tensors are
    never written. Keyword ``tables``: "auto" (shared memory when the tables fit), "shared" (error
    if they do not), "global" (always the global-memory workspace; for tests).
    """
    mod = _load()
    if mod is None or not torch.cuda.is_available():
        raise RuntimeError(f"backend 'cuda' cannot run: {unavailable_reason()}")
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [batch, neurons, sources] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.device.type != "cuda":
        raise ValueError(f"backend 'cuda' takes CUDA tensors, got x on {x.device}")
    with torch.cuda.device(x.device):
        stream = torch.cuda.current_stream(x.device).cuda_stream
        return _run(mod, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, gamma_h, need_grad,
                    device_index=x.device.index, stream=stream, tables=tables)  # fmt: skip


_FORCE = {"auto": -1, "global": 0, "shared": 1}


@functools.lru_cache(maxsize=256)
def _plan(runner, device_index, is_double, nbins, A, B, N, need_grad, budget, force) -> dict:
    return runner.plan(
        is_double=is_double, nbins=list(nbins), num_antichains=A, batch=B, neurons=N, need_grad=need_grad,
        workspace_budget=budget, force_tables=force, device=device_index,
    )  # fmt: skip


def _run(runner, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, gamma_h, need_grad, *,
         device_index: int, stream: int, tables: str = "auto"):  # fmt: skip
    """Validate, plan, allocate and launch on ``runner`` (the compiled module, or the CPU emulator
    of the tests, which has the same ``plan``/``launch`` interface)."""
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    B, N, n = (int(v) for v in x.shape)
    if not 1 <= n <= MAX_SOURCES:
        raise ValueError(f"backend 'cuda' supports 1..{MAX_SOURCES} sources, got {n}")
    if tables not in _FORCE:
        raise ValueError(f"tables must be 'auto', 'shared' or 'global', got {tables!r}")
    dt, dev = x.dtype, x.device
    nb = int_list(nbins)
    if len(nb) != n or min(nb) < 1:
        raise ValueError(f"nbins must hold one int >= 1 per source ({n}), got {nb}")
    x = _check("x", x, dev, dt)
    theta = _check("theta", theta, dev, dt, (B, N))
    if not isinstance(edges, torch.Tensor) or edges.dim() != 2 or edges.shape[0] != n or edges.shape[1] < max(nb) + 1:
        raise ValueError(f"edges must be [{n}, Kmax + 1 >= {max(nb) + 1}], got {getattr(edges, 'shape', edges)}")
    edges = _check("edges", edges, dev, dt)
    clamp_lo = _check("clamp_lo", clamp_lo, dev, dt, (n,))
    clamp_hi = _check("clamp_hi", clamp_hi, dev, dt, (n,))
    S = (1 << n) - 1
    coef = torch.as_tensor(coef)
    if coef.dim() != 2 or coef.shape[1] != S:
        raise ValueError(f"coef must be [A, {S}] for {n} sources, got shape {tuple(coef.shape)}")
    coef = coef.to(device=dev, dtype=torch.int32).contiguous()
    A = int(coef.shape[0])
    if need_grad:
        w = torch.as_tensor(w).to(device=dev, dtype=torch.float64).contiguous()
        if tuple(w.shape) != (A,):
            raise ValueError(f"w must have shape ({A},), got {tuple(w.shape)}")

    red = torch.empty((N, A), dtype=dt, device=dev)
    h_y = torch.empty((N,), dtype=dt, device=dev)
    dtheta = torch.empty((B, N) if need_grad else (0,), dtype=dt, device=dev)
    if B == 0 or N == 0:
        red.zero_()
        h_y.zero_()
        dtheta.zero_()
        return red, h_y, dtheta

    plan = _plan(runner, device_index, dt == torch.float64, tuple(nb), A, B, N, bool(need_grad),
                 WORKSPACE_BYTES, _FORCE[tables])  # fmt: skip
    # one workspace allocation, no memset (the kernel initializes every cell it reads): global
    # tables, packed bins (int32), theta and partial dtheta caches, each 256-byte aligned. Freed on
    # return: torch's allocator reuses it only for work queued after the kernel on this stream.
    elt = x.element_size()
    parts = (plan["ws_tables"] * elt, plan["ws_bins"] * 4, plan["ws_theta"] * elt, plan["ws_partial"] * elt)
    offsets, total = [], 0
    for nbytes in parts:
        offsets.append(total)
        total += (nbytes + 255) // 256 * 256
    ws = torch.empty(max(total, 256), dtype=torch.uint8, device=dev)
    ws_tables, ws_bins, ws_theta, ws_partial = (ws.data_ptr() + off for off in offsets)
    runner.launch(
        plan=plan, is_double=dt == torch.float64, nbins=nb, num_antichains=A, batch=B, neurons=N,
        edge_stride=int(edges.shape[1]), adaptive=bool(adaptive), need_grad=bool(need_grad),
        gamma_h=float(gamma_h), x=x.data_ptr(), theta=theta.data_ptr(), edges=edges.data_ptr(),
        clamp_lo=clamp_lo.data_ptr(), clamp_hi=clamp_hi.data_ptr(), coef=coef.data_ptr(),
        w=w.data_ptr() if need_grad else 0, red=red.data_ptr(), h_y=h_y.data_ptr(),
        dtheta=dtheta.data_ptr() if need_grad else 0, ws_tables=ws_tables,
        ws_bins=ws_bins, ws_theta=ws_theta, ws_partial=ws_partial, stream=int(stream), device=device_index,
    )  # fmt: skip
    return red, h_y, dtheta
