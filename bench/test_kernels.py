"""Kernel benchmarks: backends x neurons x sources x bins x dtype x mode, one pytest-benchmark each.

    python -m pytest bench --benchmark-only                      # default set, a few minutes on 2 cores
    python -m pytest bench --benchmark-only --full               # the whole matrix
    python -m pytest bench --benchmark-only --bench-device cuda --full   # GPU backends

Each benchmark times one layer call through the public API (batch 1024): ``fwd`` = ``ik.pid``
(atoms, no gradient), ``fwd+bwd`` = ``ik.pid_goal(...).sum().backward()`` (the training step's PID
part); ``kernel`` (fused backends, --full) = the fused kernel alone with the backward
(docs/kernel_contract.md); ``local`` = ``ik.pid(..., local=True)`` (local atoms of every
sample, docs/kernel_contract.md "Local atoms"). Groups (``--benchmark-group-by=group``, the default) are one comparison
each: the same layer and mode across backends, with ``reference_dense`` (the published algorithm:
dense K^n histogram, Python loop over antichains) first; each row's ``extra_info`` has its
speed-up against it and its worst error against the float64 reference (checked before timing).
"""
from __future__ import annotations

import math
import time

import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import dispatch, lattice
from infomorph_kernels.binning import make_binning

from cases import BATCH, Case, make_layer

BACKENDS = ("reference_dense", "reference", "cpu", "triton", "cuda")
DENSE_BYTES = 6 << 30  # reference_dense builds [N, 2, K^n] float64 tables and a few of that size


def _default_cases():
    """What a quick regression run needs: the training layers of the paper at every size."""
    out = []
    for N in (10, 100, 1000, 2000):
        for mode in ("fwd", "fwd+bwd"):
            for b in BACKENDS:
                if b in ("reference_dense", "reference") and N > 100:
                    continue  # 30 s and 2 s per call: --full
                out.append(Case(b, N, 3, 20, "float32", mode))
    for mode in ("fwd", "fwd+bwd"):  # the paper's output layer: 10 bivariate neurons, adaptive bins
        for b in BACKENDS:
            out.append(Case(b, 10, 2, 20, "float32", mode, adaptive=True))
    for N in (100, 1000):  # local atoms (ik.pid(local=True)) next to the plain forward above
        for b in ("reference_dense", "reference", "cpu"):
            if b != "cpu" and N > 100:
                continue
            out.append(Case(b, N, 3, 20, "float32", "local"))
    return out


def _full_cases():
    out = []
    for n in (2, 3, 4):
        for K in (20, 60):
            for dtype in ("float32", "float64"):
                for N in (10, 100, 1000, 2000):
                    for mode in ("fwd", "fwd+bwd", "kernel"):
                        for b in BACKENDS:
                            if mode == "kernel" and b in dispatch.REFERENCE_BACKENDS:
                                continue
                            out.append(Case(b, N, n, K, dtype, mode))
    return out


def _params():
    default = _default_cases()
    seen = set(default)
    params = [pytest.param(c, id=c.id) for c in default]
    params += [pytest.param(c, id=c.id, marks=pytest.mark.full) for c in _full_cases() if c not in seen]
    return params


def _kwargs(case: Case):
    return dict(bins=case.bins, ranges="adaptive" if case.adaptive else (-20.0, 20.0), backend=case.backend,
                validate=False)


def _runnable(case: Case, device: str):
    ok, why = dispatch.backend_status(case.backend, device)
    if case.backend == "triton" and device == "cpu":
        ok, why = False, "backend 'triton' is timed on a CUDA device only (on the CPU it runs under the interpreter)"
    if not ok:
        pytest.skip(why)
    if case.backend == "reference_dense":
        need = case.neurons * 2 * case.bins**case.n * 8 * 4
        if need > DENSE_BYTES:
            pytest.skip(f"reference_dense would need ~{need / 2**30:.0f} GiB for this layer")


def max_error(case: Case, x, theta, gamma, nc: int = 8) -> float:
    """Worst absolute error (bits) of the atoms and dG/dtheta on the first neurons against the
    float64 reference backend on the same inputs."""
    xs, ts = x[:, :nc].double().cpu(), theta[:, :nc].double().cpu()
    kw = _kwargs(case)
    t_ref = ts.clone().requires_grad_()
    ref = ik.pid(xs, t_ref, gamma=gamma, **dict(kw, backend="reference"))
    ref.goal.sum().backward()
    t_b = theta[:, :nc].clone().requires_grad_()
    got = ik.pid(x[:, :nc].contiguous(), t_b, gamma=gamma, **kw)
    got.goal.sum().backward()
    return max((got.atoms.double().cpu() - ref.atoms).abs().max().item(),
               (t_b.grad.double().cpu() - t_ref.grad).abs().max().item())


def _call(case: Case, x, theta, gamma, device):
    kw = _kwargs(case)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    if case.mode in ("fwd", "local"):
        local = case.mode == "local"

        def fn():
            with torch.no_grad():
                ik.pid(x, theta, local=local, **kw)
            sync()
    elif case.mode == "fwd+bwd":
        def fn():
            t = theta.detach().requires_grad_()
            ik.pid_goal(x, t, gamma, **kw).sum().backward()
            sync()
    else:  # the fused kernel alone, with the backward, as the custom op calls it
        binning = make_binning(case.n, case.bins, kw["ranges"], x.dtype, x.device)
        coef = torch.as_tensor(lattice.coef_matrix(case.n), dtype=torch.int32, device=device)
        if case.backend == "triton":
            coef = coef.cpu()  # triton bakes coef in at compile time and reads it on the host
        w, _ = lattice.goal_weights(gamma.numpy(), case.n)
        w = torch.as_tensor(w, dtype=torch.float64, device=device)
        kernel = dispatch.kernel(case.backend)
        args = (x, theta, binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi, binning.adaptive, coef,
                w, 0.0, True)

        def fn():
            kernel(*args)
            sync()
    return fn


def run_benchmark(benchmark, fn, slow_rounds=(2.0, 1), medium_rounds=(0.2, 5)):
    """Calibrated rounds for fast calls; few fixed rounds for calls of seconds (the baseline)."""
    t0 = time.perf_counter()
    fn()  # warm-up: compilation, allocation, first-use imports
    dt = time.perf_counter() - t0
    if dt > slow_rounds[0]:
        benchmark.pedantic(fn, rounds=slow_rounds[1], iterations=1, warmup_rounds=0)
    elif dt > medium_rounds[0]:
        benchmark.pedantic(fn, rounds=medium_rounds[1], iterations=1, warmup_rounds=0)
    else:
        benchmark(fn)
    return benchmark.stats.stats.median if benchmark.stats else None  # None under --benchmark-disable


@pytest.mark.parametrize("case", _params())
def test_layer(benchmark, case, bench_device, baseline_medians):
    _runnable(case, bench_device)
    benchmark.group = case.group
    x, theta, gamma = make_layer(case, bench_device)
    info = {"backend": case.backend, "neurons": case.neurons, "sources": case.n, "bins": case.bins,
            "dtype": case.dtype, "mode": case.mode, "adaptive": case.adaptive, "batch": BATCH,
            "device": bench_device}
    if case.mode == "local" and case.backend not in ik.api.LOCAL_BACKENDS:
        pytest.skip(f"local atoms: backends {list(ik.api.LOCAL_BACKENDS)}")
    if case.backend != "reference_dense":  # correctness first (the baseline is the tests' business)
        err = max_error(case, x, theta, gamma)
        info["max_err"] = err
        tol = 1e-9 if case.dtype == "float64" else 1e-4
        assert math.isfinite(err) and err < tol, f"{case.id}: error {err:.3e} against the float64 reference"
    median = run_benchmark(benchmark, _call(case, x, theta, gamma, bench_device))
    if median is None:
        pass
    elif case.backend == "reference_dense":
        baseline_medians[case.group] = median
    elif case.group in baseline_medians:
        info["speedup_vs_reference_dense"] = baseline_medians[case.group] / median
    benchmark.extra_info.update(info)
