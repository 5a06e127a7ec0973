"""GPU benchmark of one trivariate layer step (forward + backward) per backend.

    python bench/bench_gpu.py                                   # N = 100, 1000, 2000; B = 1024; K = 20; float32
    python bench/bench_gpu.py --neurons 2000 --dtype float64 --repeats 50
    python bench/bench_gpu.py --backends cuda --tables global   # the CUDA engine's global-table fallback

Providers: "cuda" (csrc/cuda), "triton" (infomorph_kernels.triton_kernels, if importable) and the
dense reference "reference_dense" (torch ops, the yardstick). Modes:
* "kernel": the fused kernel alone (docs/kernel_contract.md, need_grad=True: red, H(Y) and
  dG/dtheta in one call) - what a training step pays for the PID;
* "step": the public API step ``ik.pid_goal(x, theta, gamma) .sum().backward()`` (binning arrays,
  custom op, autograd); the only mode of reference_dense.
Every provider is first checked against the float64 oracle (pid_kernel_reference) on the first
16 neurons (column "max err": worst absolute difference of red and dtheta). Times: CUDA events around
each repeat after warm-up; median and 20/80 % quantiles in ms. The header records device, driver,
versions, compiled architectures and commit; paste the table into bench/RESULTS.md.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

import torch  # noqa: E402

import infomorph_kernels as ik  # noqa: E402
from infomorph_kernels import cuda_backend, lattice  # noqa: E402
from infomorph_kernels.binning import make_binning  # noqa: E402
from infomorph_kernels.reference import pid_kernel_reference  # noqa: E402

# a goal of the paper's kind (19 gamma values of the trivariate lattice, H_res last)
GAMMA = [0.3307, 0.9781, -0.9935, 0.4017, 0.2428, 0.6255, 0.4713, 0.0212, 0.0605, -0.9470,
         -0.0199, -0.9677, -0.6924, 0.4270, 0.9736, 0.7370, -0.1218, -0.2151, 0.0350]  # fmt: skip


def triton_kernel():
    try:
        from infomorph_kernels import triton_kernels
    except Exception as e:  # noqa: BLE001 - any import problem means "not available"
        return None, f"not importable ({type(e).__name__}: {e})"
    if not triton_kernels.is_available():
        return None, triton_kernels.unavailable_reason()
    return triton_kernels.pid_kernel_triton, ""


def make_layer(B, N, K, dtype, seed=0, device="cuda"):
    """Aggregated inputs spread over the paper's (-20, 20) range and the kernel arguments."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, N, 3, generator=g) * torch.tensor([6.0, 3.0, 4.0])).to(dtype)
    theta = torch.sigmoid(x[..., 0] / 4 + torch.randn(B, N, generator=g).to(dtype))
    x, theta = x.to(device), theta.to(device)
    binning = make_binning(3, K, (-20.0, 20.0), dtype, device)
    coef = torch.as_tensor(lattice.coef_matrix(3), dtype=torch.int32, device=device)
    w, gamma_h = lattice.goal_weights(GAMMA, 3)
    w = torch.as_tensor(w, dtype=torch.float64, device=device)
    args = (x, theta, binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi, False, coef, w, gamma_h, True)
    return x, theta, args


def time_ms(fn, repeats, warmup=3):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end))
    times.sort()
    q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
    return statistics.median(times), q(0.2), q(0.8)


def check(kernel, args, nc=16):
    """Worst absolute error of red and dtheta against the float64 oracle on the first nc neurons."""
    x, theta = args[0][:, :nc].contiguous(), args[1][:, :nc].contiguous()
    sub = (x, theta) + args[2:]
    red, _, dth = kernel(*sub)
    cpu = [a.cpu() if isinstance(a, torch.Tensor) else a for a in sub]
    rr, _, rd = pid_kernel_reference(*cpu, compute_dtype=torch.float64)
    return max((red.double().cpu() - rr).abs().max().item(), (dth.double().cpu() - rd).abs().max().item())


def environment(dtype):
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()  # fmt: skip
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True).stdout.strip().splitlines()[0]  # fmt: skip
    except (OSError, IndexError):
        driver = "unknown"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "-"
    p = torch.cuda.get_device_properties(0)
    info = cuda_backend.build_info()
    return (f"device: {p.name} ({p.multi_processor_count} SMs, {p.total_memory / 2**30:.0f} GiB), driver {driver}, "
            f"torch {torch.__version__} (CUDA {torch.version.cuda}), triton {tv}, "
            f"_cuda archs {info.get('compiled_archs', '-')}, dtype {dtype}, commit {commit}")  # fmt: skip


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--neurons", nargs="+", type=int, default=[100, 1000, 2000])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--backends", nargs="+", default=["cuda", "triton", "reference_dense"])
    ap.add_argument("--tables", default="auto", choices=["auto", "shared", "global"],
                    help="table placement of the cuda backend in the kernel column (the step uses auto)")  # fmt: skip
    args = ap.parse_args()
    if not torch.cuda.is_available():
        sys.exit("bench_gpu.py needs a CUDA GPU")
    dtype = getattr(torch, args.dtype)

    kernels = {}
    notes = []
    if "cuda" in args.backends:
        if cuda_backend.is_available():
            kernels["cuda"] = lambda *a: cuda_backend.pid_kernel_cuda(*a, tables=args.tables)
        else:
            notes.append(f"cuda: {cuda_backend.unavailable_reason()}")
    if "triton" in args.backends:
        k, why = triton_kernel()
        if k is not None:
            kernels["triton"] = k
        else:
            notes.append(f"triton: {why}")

    head = "| backend | neurons | kernel ms median (q20-q80) | step ms median (q20-q80) | step speed-up vs dense | max err | notes |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for N in args.neurons:
        x, theta, kargs = make_layer(args.batch, N, args.bins, dtype)
        dense_step = None
        rows = []
        for name in args.backends:
            if name not in kernels and name != "reference_dense":
                continue
            note = ""
            kernel_t = "-"
            if name in kernels:
                # each provider's no-sync calling convention: triton bakes coef in at compile time and
                # reads it on the host (a CPU coef avoids a device-to-host copy per call)
                pargs = kargs[:7] + (kargs[7].cpu(),) + kargs[8:] if name == "triton" else kargs
                err = check(kernels[name], pargs)
                kernel_t = "%.3f (%.3f-%.3f)" % time_ms(lambda: kernels[name](*pargs), args.repeats)
                if name == "cuda":
                    p = cuda_backend._plan(cuda_backend._load(), torch.cuda.current_device(), dtype == torch.float64,
                                           tuple(kargs[3]), 18, args.batch, N, True, cuda_backend.WORKSPACE_BYTES,
                                           cuda_backend._FORCE[args.tables])  # fmt: skip
                    note = (f"{'shared' if p['shared_tables'] else 'global'} tables, grid {p['grid']}, "
                            f"{p['blocks_per_sm']} blocks/SM, {p['smem_bytes'] / 1024:.1f} KB smem")  # fmt: skip
            else:
                err = float("nan")

            def step(backend=name):
                t = theta.detach().requires_grad_()
                ik.pid_goal(x, t, GAMMA, bins=args.bins, ranges=(-20.0, 20.0), backend=backend,
                            validate=False).sum().backward()  # fmt: skip

            try:
                med, lo, hi = time_ms(step, args.repeats if name != "reference_dense" else max(3, args.repeats // 4))
                step_t = f"{med:.3f} ({lo:.3f}-{hi:.3f})"
            except (RuntimeError, torch.cuda.OutOfMemoryError) as e:
                med, step_t = None, f"failed: {str(e).splitlines()[0][:60]}"
            if name == "reference_dense":
                dense_step = med
            rows.append([name, N, kernel_t, step_t, med, err, note])
        for name, n, kt, st, med, err, note in rows:
            speed = f"{dense_step / med:.0f}x" if dense_step and med else "-"
            # float32 engines agree with the float64 oracle to ~1e-6; far more means a wrong result
            bad = err == err and err > (1e-4 if dtype == torch.float32 else 1e-8)
            err_s = "-" if err != err else f"{err:.1e}" + (" WRONG" if bad else "")
            lines.append(f"| {name} | {n} | {kt} | {st} | {speed} | {err_s} | {note} |")
        print(f"  N={N} done", file=sys.stderr)
        torch.cuda.empty_cache()

    print(f"### Trivariate layer step, batch {args.batch}, {args.bins} bins, {args.dtype}\n")
    print(environment(args.dtype) + "\n")
    print("\n".join(lines))
    for n in notes:
        print(f"\n- not run: {n}")


if __name__ == "__main__":
    main()
