"""Backend "cuda" (csrc/cuda, infomorph_kernels.cuda_backend) against the float64 oracle.

* The build: when setup.py found nvcc, the module ``infomorph_kernels._cuda`` must be there and must
  import without a GPU.
* The kernel source on the CPU: csrc/cuda/emu compiles the unchanged kernel (pid_cuda_kernel.cuh) as
  C++20, one std::thread per CUDA thread and std::barrier for __syncthreads, so its math, indexing,
  both table placements (shared / global workspace), the persistent neuron loop and the barrier
  structure are checked on every machine with a C++20 compiler; one case runs under
  ThreadSanitizer (INFOMORPH_TEST_TSAN=0 skips it).
* On a GPU (skipped without one): the real kernels, the same cases plus the full-size layer.

Tolerances (infomorph_kernels.selfcheck.compare): float64 within 1e-9 of the oracle; float32 compared with the
float64 oracle, allowed 4x the error of the reference's own float32 computation plus 8 ulp of the
output's scale (on the emulator the engine's float32 error is about the reference's own).
"""
from __future__ import annotations

import ctypes
import glob
import os
import shutil
import subprocess
import sys

import pytest
import torch

from infomorph_kernels import cuda_backend
from infomorph_kernels.selfcheck import compare, make_case

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
F32, F64 = torch.float32, torch.float64
GPU = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torch.cuda.is_available() is False)")


# ------------------------------------------------------------------------------------------------
# inputs and comparison
# ------------------------------------------------------------------------------------------------


def assert_matches(got, args):
    """got = (red, h_y, dtheta) of a backend for the kernel arguments `args` (selfcheck.compare)."""
    for row in compare(got, args):
        assert row["problem"] is None, row["problem"]


# ------------------------------------------------------------------------------------------------
# (a) the build
# ------------------------------------------------------------------------------------------------


def _setup_finds_nvcc() -> bool:
    """setup.py's rule (_find_cuda_home, _want_cuda): the CUDA engine is built whenever nvcc is
    found, through CUDA_HOME or on PATH."""
    if os.environ.get("INFOMORPH_SKIP_CUDA") == "1":
        return False
    home = os.environ.get("CUDA_HOME")
    if not home:
        nvcc = shutil.which("nvcc")
        if nvcc is None:
            return False
        root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
        plain = os.path.dirname(os.path.dirname(nvcc))
        home = root
        for cand in (root, plain, os.path.join(plain, "cuda"), "/usr/local/cuda"):
            if os.path.exists(os.path.join(cand, "lib64", "libcudart.so")) and os.path.exists(
                os.path.join(cand, "bin", "nvcc")
            ):
                home = cand
                break
    return os.path.exists(os.path.join(home, "bin", "nvcc"))


def test_extension_built_when_nvcc_present():
    if not _setup_finds_nvcc():
        pytest.skip("no nvcc (CUDA_HOME / PATH): setup.py does not build the CUDA engine here")
    so = glob.glob(os.path.join(ROOT, "infomorph_kernels", "_cuda*.so")) + glob.glob(
        os.path.join(ROOT, "infomorph_kernels", "_cuda*.pyd")
    )
    assert cuda_backend.is_built(), (
        f"nvcc is present, so setup.py builds infomorph_kernels._cuda, but it does not import "
        f"(files: {so}): {cuda_backend.unavailable_reason()}"
    )
    info = cuda_backend.build_info()
    assert info["block_threads"] == 256
    assert info["compiled_archs"] not in ("", "unknown")


def test_import_and_reason_without_gpu():
    # importing never fails; the reason names what is missing
    reason = cuda_backend.unavailable_reason()
    if cuda_backend.is_available():
        assert reason == ""
    else:
        assert "not built" in reason or "no CUDA GPU" in reason
        with pytest.raises(RuntimeError, match="backend 'cuda' cannot run"):
            cuda_backend.pid_kernel_cuda(*make_case(2, 4, 2, 3, F64))


# ------------------------------------------------------------------------------------------------
# (b) the kernel source on the CPU emulator
# ------------------------------------------------------------------------------------------------

_PLAN_KEYS = ("shared_tables", "threads", "grid", "smem_bytes", "table_values", "cells", "blocks_per_sm",
              "sm_count", "smem_optin", "ws_tables", "ws_bins", "ws_theta", "ws_partial")  # fmt: skip


class EmulatedDevice:
    """The plan/launch interface of infomorph_kernels._cuda, running the kernel source on the CPU."""

    def __init__(self, lib, threads=64, smem_optin=48 * 1024, sm_count=1, blocks_per_sm=2):
        self.lib, self.threads, self.smem_optin = lib, threads, smem_optin
        self.sm_count, self.blocks_per_sm = sm_count, blocks_per_sm

    @staticmethod
    def _raise(rc, err):
        msg = err.value.decode()
        raise (ValueError if rc == 1 else RuntimeError)(msg)

    def plan(self, *, is_double, nbins, num_antichains, batch, neurons, need_grad, workspace_budget,
             force_tables, device):  # fmt: skip
        out = (ctypes.c_int64 * len(_PLAN_KEYS))()
        err = ctypes.create_string_buffer(4096)
        nb = (ctypes.c_int64 * len(nbins))(*nbins)
        rc = self.lib.pid_emu_plan(
            int(is_double), nb, len(nbins), num_antichains, batch, neurons, int(need_grad), workspace_budget,
            force_tables, self.threads, self.smem_optin, self.sm_count, self.blocks_per_sm, out, err, len(err),
        )  # fmt: skip
        if rc:
            self._raise(rc, err)
        return dict(zip(_PLAN_KEYS, list(out)))

    def launch(self, *, plan, is_double, nbins, num_antichains, batch, neurons, edge_stride, adaptive, need_grad,
               gamma_h, x, theta, edges, clamp_lo, clamp_hi, coef, w, red, h_y, dtheta, ws_tables, ws_bins,
               ws_theta, ws_partial, stream, device):  # fmt: skip
        # the workspace comes from torch.empty: poison it (NaN bytes) so that a cell read before it
        # is written shows up as a wrong result, as it could on a GPU
        elt = 8 if is_double else 4
        for ptr, nbytes in ((ws_tables, plan["ws_tables"] * elt), (ws_bins, plan["ws_bins"] * 4),
                            (ws_theta, plan["ws_theta"] * elt), (ws_partial, plan["ws_partial"] * elt)):  # fmt: skip
            ctypes.memset(ptr, 0xFF, nbytes)
        p = (ctypes.c_int64 * len(_PLAN_KEYS))(*[int(plan[k]) for k in _PLAN_KEYS])
        nb = (ctypes.c_int64 * len(nbins))(*nbins)
        ptrs = (ctypes.c_size_t * 14)(x, theta, edges, clamp_lo, clamp_hi, coef, w, red, h_y, dtheta, ws_tables,
                                      ws_bins, ws_theta, ws_partial)  # fmt: skip
        err = ctypes.create_string_buffer(4096)
        rc = self.lib.pid_emu_launch(
            p, int(is_double), nb, len(nbins), num_antichains, batch, neurons, edge_stride, int(adaptive),
            int(need_grad), ctypes.c_double(gamma_h), ptrs, err, len(err),
        )  # fmt: skip
        if rc:
            self._raise(rc, err)


def _compile_emulator(out_dir, sanitize=None):
    cxx = os.environ.get("CXX") or shutil.which("g++") or shutil.which("clang++")
    if cxx is None:
        pytest.skip("no C++ compiler for the CUDA-kernel emulator")
    lib = os.path.join(str(out_dir), f"libpid_emu{'_' + sanitize if sanitize else ''}.so")
    cmd = [cxx, "-std=c++20", "-O1", "-g", "-fPIC", "-shared", "-pthread", "-DPID_CUDA_EMULATE",
           "-I" + os.path.join(ROOT, "csrc", "common"), "-I" + os.path.join(ROOT, "csrc", "cuda"),
           os.path.join(ROOT, "csrc", "cuda", "emu", "pid_emu.cc"), "-o", lib]  # fmt: skip
    if sanitize:
        cmd.insert(1, f"-fsanitize={sanitize}")
    probe = subprocess.run([cxx, "-std=c++20", "-x", "c++", "-E", "-", "-o", os.devnull],
                           input="#include <barrier>\n", capture_output=True, text=True)  # fmt: skip
    if probe.returncode != 0:
        pytest.skip(f"{cxx} has no C++20 <barrier>: cannot build the CUDA-kernel emulator")
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, f"the emulator does not compile:\n{' '.join(cmd)}\n{res.stderr[-4000:]}"
    return lib


def load_emulator(path):
    lib = ctypes.CDLL(path)
    i32, i64, ptr = ctypes.c_int, ctypes.c_int64, ctypes.c_void_p
    lib.pid_emu_plan.argtypes = [i32, ptr, i32, i32, i64, i64, i32, i64, i32, i32, i64, i32, i32, ptr, ctypes.c_char_p, i32]
    lib.pid_emu_plan.restype = i32
    lib.pid_emu_launch.argtypes = [ptr, i32, ptr, i32, i32, i64, i64, i32, i32, i32, ctypes.c_double, ptr,
                                   ctypes.c_char_p, i32]  # fmt: skip
    lib.pid_emu_launch.restype = i32
    return lib


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    return load_emulator(_compile_emulator(tmp_path_factory.mktemp("pid_emu")))


def run_emulated(lib, args, tables="auto", **device):
    return cuda_backend._run(EmulatedDevice(lib, **device), *args, device_index=-1, stream=0, tables=tables)


EMU_CASES = [
    # n, B, N, bins, dtype, adaptive, theta, tables
    (1, 37, 3, 4, F64, False, "uniform", "auto"),
    (2, 70, 5, [3, 5], F64, False, "uniform", "shared"),
    (2, 70, 5, [3, 5], F64, False, "uniform", "global"),
    (2, 64, 3, 4, F32, True, "mixed", "auto"),
    (3, 1, 3, 20, F64, False, "uniform", "global"),  # B = 1
    (3, 97, 5, [20, 3, 1], F64, True, "mixed", "global"),  # unequal bins, K = 1
    (3, 97, 5, [2, 3, 4], F64, False, "binary", "shared"),
    (3, 97, 4, [2, 3, 4], F32, False, "uniform", "shared"),
    (3, 130, 3, 20, F32, False, "uniform", "global"),
    (3, 50, 2, 3, F64, False, "ones", "auto"),
    (4, 70, 3, 2, F64, False, "uniform", "shared"),
    (4, 70, 3, [3, 1, 2, 4], F64, True, "mixed", "global"),
    (4, 40, 2, 3, F32, False, "uniform", "global"),
]


@pytest.mark.parametrize("case", EMU_CASES, ids=lambda c: f"n{c[0]}-B{c[1]}-N{c[2]}-K{c[3]}-{str(c[4])[6:]}-"
                         f"{'adaptive' if c[5] else 'fixed'}-{c[6]}-{c[7]}")  # fmt: skip
def test_emulated_kernel_matches_reference(emulator, case):
    n, B, N, bins, dtype, adaptive, theta, tables = case
    args = make_case(n, B, N, bins, dtype, adaptive=adaptive, theta=theta, seed=B + N + n)
    plan_device = dict(smem_optin=48 * 1024)
    got = run_emulated(emulator, args, tables=tables, **plan_device)
    assert_matches(got, args)


def test_emulated_forward_only_and_grid_loop(emulator):
    # need_grad False (no backward table, empty dtheta), one block looping over all neurons
    args = make_case(3, 45, 4, [4, 2, 3], F64, need_grad=False, seed=3)
    assert_matches(run_emulated(emulator, args, blocks_per_sm=1), args)
    args = make_case(3, 45, 4, [4, 2, 3], F64, seed=4)
    assert_matches(run_emulated(emulator, args, tables="global", blocks_per_sm=1, threads=32), args)


def test_emulated_limits(emulator):
    dev = EmulatedDevice(emulator, smem_optin=1024)
    args = make_case(3, 8, 2, 20, F32)
    with pytest.raises(ValueError, match="shared memory"):
        cuda_backend._run(dev, *args, device_index=-1, stream=0, tables="shared")
    big = make_case(2, 4, 1, 1 << 15, F32)  # 2^30 cells > 2^28: the limit every backend shares
    with pytest.raises(ValueError, match="2\\^28"):
        cuda_backend._run(dev, *big, device_index=-1, stream=0)
    bad = list(make_case(3, 8, 2, 3, F64))
    bad[7], bad[8] = bad[7][:5], bad[8][:5]  # coef with too few antichains
    with pytest.raises(ValueError, match="coef must have 18 rows"):
        cuda_backend._run(dev, *bad, device_index=-1, stream=0)


@pytest.mark.skipif(os.environ.get("INFOMORPH_TEST_TSAN") == "0", reason="INFOMORPH_TEST_TSAN=0")
def test_emulated_kernel_has_no_data_race(tmp_path):
    """The kernel under ThreadSanitizer: a missing barrier between a scatter and a gather, or two
    threads sharing a per-sample slot, is reported as a data race."""
    lib = _compile_emulator(tmp_path, sanitize="thread")
    script = f"""
import ctypes, sys
sys.path.insert(0, {os.path.join(ROOT, 'tests')!r})
import torch
torch.set_num_threads(1)  # torch's OpenMP pool is not instrumented: its threads would be false reports
from test_backend_cuda import EmulatedDevice, make_case, assert_matches, load_emulator
from infomorph_kernels import cuda_backend
lib = load_emulator({lib!r})
# float32 shared tables: the 64-bit compare-and-swap loop of atomic_add_pair
for n, tables, dtype in ((3, "shared", torch.float64), (3, "shared", torch.float32), (3, "global", torch.float64),
                         (4, "global", torch.float64)):
    args = make_case(n, 75, 3, 3, dtype, adaptive=True, theta="mixed", seed=n)
    got = cuda_backend._run(EmulatedDevice(lib, blocks_per_sm=1), *args, device_index=-1, stream=0, tables=tables)
    assert_matches(got, args)
print("ok")
"""
    tsan_rt = subprocess.run([os.environ.get("CXX") or "g++", "-print-file-name=libtsan.so"], capture_output=True,
                             text=True).stdout.strip()  # fmt: skip
    if not os.path.isabs(tsan_rt) or not os.path.exists(tsan_rt):
        pytest.skip("no ThreadSanitizer runtime (libtsan.so)")
    env = dict(os.environ, LD_PRELOAD=tsan_rt, TSAN_OPTIONS="halt_on_error=1 report_signal_unsafe=0", OMP_NUM_THREADS="1",
               PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))  # fmt: skip
    # the real interpreter, not a shell shim (a preloaded TSan runtime does not survive bash)
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=900)
    if "unexpected memory mapping" in res.stderr or "failed to allocate" in res.stderr:
        pytest.skip("ThreadSanitizer cannot run on this kernel's address-space layout")
    assert res.returncode == 0 and "ok" in res.stdout, f"ThreadSanitizer run failed:\n{res.stderr[-6000:]}"


# ------------------------------------------------------------------------------------------------
# (c) on the GPU
# ------------------------------------------------------------------------------------------------


def run_gpu(args, tables="auto"):
    return cuda_backend.pid_kernel_cuda(*args, tables=tables)


GPU_CASES = [
    # n, B, N, bins, adaptive, theta
    (2, 1, 7, 20, False, "uniform"),
    (2, 257, 33, [3, 20], True, "mixed"),
    (3, 1, 5, 3, False, "binary"),
    (3, 257, 40, 20, False, "uniform"),
    (3, 257, 40, [20, 3, 1], True, "mixed"),
    (3, 1024, 64, 20, False, "binary"),
    (3, 1024, 64, 20, True, "uniform"),
    (3, 1024, 16, 1, False, "uniform"),
    (3, 257, 9, 20, False, "ones"),
    (4, 257, 20, 20, False, "uniform"),
    (4, 1024, 12, [3, 20, 1, 5], True, "mixed"),
    (1, 257, 10, 20, False, "uniform"),
]


@GPU
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("case", GPU_CASES, ids=lambda c: f"n{c[0]}-B{c[1]}-N{c[2]}-K{c[3]}-"
                         f"{'adaptive' if c[4] else 'fixed'}-{c[5]}")  # fmt: skip
def test_gpu_matches_reference(case, dtype):
    if not cuda_backend.is_available():
        pytest.fail(f"a GPU is present but backend 'cuda' is not available: {cuda_backend.unavailable_reason()}")
    n, B, N, bins, adaptive, theta = case
    args = make_case(n, B, N, bins, dtype, device="cuda", adaptive=adaptive, theta=theta, seed=B + N)
    assert_matches(run_gpu(args), args)


@GPU
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
@pytest.mark.parametrize("need_grad", [True, False], ids=["grad", "nograd"])
def test_gpu_global_tables_match_shared(dtype, need_grad):
    args = make_case(3, 300, 50, [20, 7, 5], dtype, device="cuda", theta="mixed", need_grad=need_grad, seed=5)
    a = run_gpu(args, tables="shared")
    b = run_gpu(args, tables="global")
    assert_matches(a, args)
    assert_matches(b, args)


@GPU
@pytest.mark.parametrize("dtype", [F64, F32], ids=["f64", "f32"])
def test_gpu_full_size_layer(dtype):
    # the paper's hidden layer: B = 1024, K = 20, trivariate, N = 300
    args = make_case(3, 1024, 300, 20, dtype, device="cuda", seed=11)
    assert_matches(run_gpu(args), args)


@GPU
def test_gpu_large_bins_fall_back_to_global_tables():
    # n = 3, K = 40: 3 x 68,920 cells (827 KB) do not fit in shared memory
    args = make_case(3, 257, 6, 40, F32, device="cuda", seed=2)
    plan = cuda_backend._plan(cuda_backend._load(), torch.cuda.current_device(), False, (40, 40, 40), 18, 257, 6,
                              True, cuda_backend.WORKSPACE_BYTES, -1)  # fmt: skip
    assert not plan["shared_tables"]
    assert_matches(run_gpu(args), args)


@GPU
def test_gpu_no_host_sync_and_side_stream():
    args = make_case(3, 512, 100, 20, F32, device="cuda", seed=7)
    run_gpu(args)  # plan cached
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        torch.cuda.set_sync_debug_mode("error")
        try:
            got = run_gpu(args)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    s.synchronize()
    assert_matches(got, args)
