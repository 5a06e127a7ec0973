"""Time the engine's backends on a trivariate layer step and write the table to bench/RESULTS.md.

    python bench/bench_backends.py                      # CPU: reference_dense, reference, cpu
    python bench/bench_backends.py --device cuda --backends reference_dense triton cuda --neurons 100 1000 2000
    python bench/bench_backends.py --write              # also record the table in bench/RESULTS.md

Each (backend, neurons) row runs in its own subprocess, so its peak RSS is its own. The backend's atoms and dG/dtheta are checked against the float64 reference on the first neurons
(column "max err": atoms and dG/dtheta, worst absolute difference in bits; checked after
the timing so that the peak RSS column is the backend's own: peak of the timed calls, and in brackets
the baseline of torch + inputs before them). Modes: "fwd" = pid() (atoms only), "fwd+bwd" = pid_goal() + backward.
Times are medians over repeats (CUDA: with events around each repeat), with the 20/80 % quantiles.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)

GAMMA_OPTIMIZED = [0.3307, 0.9781, -0.9935, 0.4017, 0.2428, 0.6255, 0.4713, 0.0212, 0.0605, -0.9470,
                   -0.0199, -0.9677, -0.6924, 0.4270, 0.9736, 0.7370, -0.1218, -0.2151, 0.0350]


def make_inputs(B, N, device, dtype, seed=0):
    import torch

    g = torch.Generator().manual_seed(seed)
    # aggregated inputs of a hidden layer: spread over the (-20, 20) range of the paper
    x = (torch.randn(B, N, 3, generator=g) * torch.tensor([6.0, 3.0, 4.0])).to(dtype)
    theta = torch.sigmoid(x[..., 0] / 4 + torch.randn(B, N, generator=g).to(dtype))
    return x.to(device), theta.to(device)


def run_one(backend, B, N, K, device, dtype_name, repeats, modes):
    import torch

    import infomorph_kernels as ik

    dtype = getattr(torch, dtype_name)
    x, theta = make_inputs(B, N, device, dtype)
    gamma = torch.tensor(GAMMA_OPTIMIZED, dtype=torch.float64)
    kw = dict(bins=K, ranges=(-20.0, 20.0), backend=backend, validate=False)

    rss_inputs = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    def fwd():
        with torch.no_grad():
            ik.pid(x, theta, **kw)

    def full():
        t = theta.detach().requires_grad_()
        ik.pid_goal(x, t, gamma, **kw).sum().backward()

    out = {"backend": backend, "neurons": N, "batch": B, "bins": K, "dtype": dtype_name}
    for mode in modes:
        fn = fwd if mode == "fwd" else full
        t0 = time.perf_counter()
        fn()  # warm-up (compilation, allocation); a second one unless a call takes seconds
        sync()
        if time.perf_counter() - t0 < 1.0:
            fn()
            sync()
        times = []
        budget = time.perf_counter() + 60.0
        for _ in range(repeats):
            if device == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
            if time.perf_counter() > budget and len(times) >= 3:
                break
        times.sort()
        q = lambda f: times[min(len(times) - 1, int(f * len(times)))]  # noqa: E731
        out[mode] = {"median_ms": statistics.median(times), "q20_ms": q(0.2), "q80_ms": q(0.8), "n": len(times)}
    # peak RSS of the timed calls (before the check below), and what torch + inputs took before them
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["base_rss_mb"] = rss_inputs
    if device == "cuda":
        out["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
    # correctness (reported with the row): against the float64 reference on the first neurons
    nc = min(N, 32)
    xs, ts = x[:, :nc].double().cpu(), theta[:, :nc].double().cpu()
    t_ref = ts.clone().requires_grad_()
    ref = ik.pid(xs, t_ref, bins=K, backend="reference", gamma=gamma)
    ref.goal.sum().backward()
    t_b = theta[:, :nc].clone().requires_grad_()
    got = ik.pid(x[:, :nc], t_b, gamma=gamma, **kw)
    got.goal.sum().backward()
    err = max((got.atoms.double().cpu() - ref.atoms).abs().max().item(),
              (t_b.grad.double().cpu() - t_ref.grad).abs().max().item())

    out["max_err"] = err
    return out


def environment(device):
    import torch

    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                                text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        commit += "+dirty" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    if device == "cuda":
        machine = torch.cuda.get_device_name(0)
    else:
        cpu = platform.processor() or platform.machine()
        try:
            with open("/proc/cpuinfo") as f:
                cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
        except (OSError, StopIteration):
            pass
        machine = f"{cpu}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "-"
    return {"date": datetime.date.today().isoformat(), "machine": machine, "torch": torch.__version__,
            "triton": tv, "python": platform.python_version(), "commit": commit}


def emit(heading, env, body, write):
    """Print a RESULTS.md section (heading, the environment line, a table); with ``write`` append it."""
    text = f"### {heading}\n\n" + ", ".join(f"{k}: {v}" for k, v in env.items()) + "\n\n" + body + "\n"
    print(text)
    if write:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text)


def table(rows, modes):
    head = "| backend | neurons | " + " | ".join(f"{m} median ms (q20-q80)" for m in modes)
    head += " | speed-up vs reference_dense (fwd+bwd) | max err | peak RSS MB |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    dense = {r["neurons"]: r for r in rows if r["backend"] == "reference_dense" and "fwd+bwd" in r}
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['backend']} | {r['neurons']} | {r['error']} |")
            continue
        cells = [f"{r[m]['median_ms']:.2f} ({r[m]['q20_ms']:.2f}-{r[m]['q80_ms']:.2f})" for m in modes]
        d = dense.get(r["neurons"])
        speed = f"{d['fwd+bwd']['median_ms'] / r['fwd+bwd']['median_ms']:.0f}x" if d and "fwd+bwd" in r else "-"
        mem = f"{r['peak_rss_mb']:.0f} (base {r['base_rss_mb']:.0f})" + (f" (GPU {r['peak_gpu_mb']:.0f})" if "peak_gpu_mb" in r else "")
        lines.append(f"| {r['backend']} | {r['neurons']} | " + " | ".join(cells) + f" | {speed} | {r['max_err']:.1e} | {mem} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--backends", nargs="+", default=["reference_dense", "reference", "cpu"])
    ap.add_argument("--neurons", nargs="+", type=int, default=[100, 1000])
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--bins", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--modes", nargs="+", default=["fwd", "fwd+bwd"])
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: one row as JSON
    args = ap.parse_args()
    if args.one:
        b, n = args.one.split(":")
        print(json.dumps(run_one(b, args.batch, int(n), args.bins, args.device, args.dtype, args.repeats, args.modes)))
        return
    rows = []
    for n in args.neurons:
        for b in args.backends:
            cmd = [sys.executable, __file__, "--one", f"{b}:{n}", "--batch", str(args.batch), "--bins", str(args.bins),
                   "--device", args.device, "--dtype", args.dtype, "--repeats", str(args.repeats), "--modes", *args.modes]
            p = subprocess.run(cmd, capture_output=True, text=True)
            if p.returncode != 0:
                msg = (p.stderr.strip().splitlines() or ["failed"])[-1][:120]
                rows.append({"backend": b, "neurons": n, "error": msg})
            else:
                rows.append(json.loads(p.stdout.strip().splitlines()[-1]))
            print(f"  {b} N={n}: " + (rows[-1].get("error") or f"{rows[-1][args.modes[-1]]['median_ms']:.2f} ms"),
                  file=sys.stderr)
    emit(f"Trivariate layer step, batch {args.batch}, {args.bins} bins, {args.dtype}, device {args.device}",
         environment(args.device), table(rows, args.modes), args.write)


if __name__ == "__main__":
    main()
