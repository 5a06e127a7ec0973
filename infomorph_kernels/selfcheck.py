"""Check the fused backends of this installation against the float64 oracle.

    python -m infomorph_kernels check                       # every backend that can run here
    python -m infomorph_kernels check --device cuda --backends cuda triton --neurons 256

For each fused backend that can run on the device (``cpu`` on CPU; ``cuda`` and ``triton`` on a
GPU; ``triton`` on CPU only under TRITON_INTERPRET=1), in float64 and float32, on seeded layers of
full size (batch 1024, 20 bins, trivariate by default) with the corner cases folded in (values
beyond the range, a constant neuron, theta exactly 0 and 1, fixed and adaptive binning):

* the kernel (docs/kernel_contract.md: redundancies, H(Y), dG/dtheta) against
  ``reference.pid_kernel_reference`` in float64;
* the public API, ``pid_goal(...).sum().backward()`` in float64, against ``backend="reference"``.

Tolerances: float64 within 1e-9 (relative to the output's scale where that is above 1); float32
within 4x the error of the reference's own float32 computation plus 8 ulp of the output's scale.
Prints one row per check and exits with status 1 if any fails: the first thing to run on a new GPU.
"""
from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence

import torch

from . import dispatch, lattice
from .api import pid_goal
from .binning import make_binning
from .reference import pid_kernel_reference

F32, F64 = torch.float32, torch.float64
OUTPUTS = ("red", "h_y", "dtheta")


def make_case(n, B, N, bins, dtype, device="cpu", adaptive=False, theta="uniform", seed=0, need_grad=True):
    """Seeded layer inputs in the kernel contract's argument order, with the corner cases folded in:
    values beyond the range (clamps), a constant neuron (adaptive scale 0), theta exactly 0 and 1.

    theta: "uniform" (interior values), "binary" (exactly 0 / 1: empty (y, cell) pairs everywhere),
    "mixed" (exact 0 and 1 among interior values) or "ones" (p(silent) = 0 for every neuron)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, n, generator=g, dtype=F64) * 8.0
    if N > 1:
        x[:, -1, 0] = 0.0  # constant source: adaptive scale 0, one bin
    if B > 2:
        x[0, 0, :] = 25.0  # beyond hi = 20: clamped into the last bin
        x[1, 0, :] = -25.0  # below lo: clamped to lo + 1e-4, first bin
    if theta == "uniform":
        t = torch.rand(B, N, generator=g, dtype=F64)
    elif theta == "binary":
        t = (torch.rand(B, N, generator=g, dtype=F64) < 0.5).to(F64)
    elif theta == "mixed":
        t = torch.rand(B, N, generator=g, dtype=F64)
        t[torch.rand(B, N, generator=g) < 0.3] = 0.0
        t[torch.rand(B, N, generator=g) < 0.3] = 1.0
    elif theta == "ones":
        t = torch.ones(B, N, dtype=F64)
    else:
        raise ValueError(f"theta must be 'uniform', 'binary', 'mixed' or 'ones', got {theta!r}")
    binning = make_binning(n, bins, "adaptive" if adaptive else (-20.0, 20.0), dtype, device)
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=torch.int32, device=device)
    w = torch.randn(coef.shape[0], generator=g, dtype=F64).to(device)
    gamma_h = float(torch.randn(1, generator=g, dtype=F64))
    return (
        x.to(device=device, dtype=dtype), t.to(device=device, dtype=dtype), binning.edges, binning.nbins,
        binning.clamp_lo, binning.clamp_hi, binning.adaptive, coef, w, gamma_h, need_grad,
    )  # fmt: skip


def reference(args, compute_dtype):
    """The oracle on the CPU (a CUDA reference would give the same numbers, slower to set up)."""
    cpu = [a.cpu() if isinstance(a, torch.Tensor) else a for a in args]
    return pid_kernel_reference(*cpu, compute_dtype=compute_dtype)


def _tolerance(dtype, scale: float, err_ref: float) -> float:
    if dtype == F64:
        return 1e-9 * max(1.0, scale)
    # float32: dtheta is ~1/B small, so the ulp floor follows each output's own scale
    return 4.0 * err_ref + 8 * torch.finfo(F32).eps * scale + 1e-12


def compare(got, args) -> List[dict]:
    """Compare a backend's ``(red, h_y, dtheta)`` for the kernel arguments ``args`` with the oracle.

    One dict per output: name, err (max abs difference from the float64 oracle), tol, and problem
    (None when the output passes, else what is wrong: dtype, shape, NaN/Inf or the error)."""
    need_grad = args[-1]
    dtype = args[0].dtype
    ref64 = reference(args, F64)
    ref32 = reference(args, F32) if dtype == F32 else None
    rows = []
    for k, name in enumerate(OUTPUTS):
        g = got[k].detach().cpu()
        r = ref64[k]
        row = {"name": name, "err": 0.0, "tol": 0.0, "problem": None}
        rows.append(row)
        if name == "dtheta" and not need_grad:
            if g.numel() != 0 or g.dtype != dtype:
                row["problem"] = f"dtheta: expected an empty {dtype} tensor without need_grad"
            continue
        if g.dtype != dtype:
            row["problem"] = f"{name}: dtype {g.dtype}, expected {dtype}"
        elif g.shape != r.shape:
            row["problem"] = f"{name}: shape {tuple(g.shape)}, expected {tuple(r.shape)}"
        elif not torch.isfinite(g).all():
            row["problem"] = f"{name}: NaN or Inf"
        elif r.numel():
            row["err"] = (g.to(F64) - r).abs().max().item()
            err_ref = (ref32[k].to(F64) - r).abs().max().item() if ref32 is not None else 0.0
            row["tol"] = _tolerance(dtype, r.abs().max().item(), err_ref)
            if not row["err"] <= row["tol"]:
                row["problem"] = f"{name}: max abs error {row['err']:.3e} > tolerance {row['tol']:.3e} ({dtype})"
    return rows


def check_api(backend: str, device, n: int, B: int, N: int, bins: int, seed: int = 0) -> dict:
    """``pid_goal`` forward and theta's gradient in float64 through ``backend`` vs ``reference``."""
    args = make_case(n, B, N, bins, F64, device=device, theta="mixed", seed=seed)
    x, theta = args[0], args[1]
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=torch.Generator().manual_seed(seed + 1), dtype=F64)
    out = {}
    for b in (backend, "reference"):
        t = theta.clone().requires_grad_(True)
        goal = pid_goal(x, t, gamma, bins=bins, ranges=(-20.0, 20.0), backend=b)
        goal.sum().backward()
        out[b] = (goal.detach().cpu(), t.grad.detach().cpu())
    err = max((out[backend][i] - out["reference"][i]).abs().max().item() for i in range(2))
    scale = max(out["reference"][i].abs().max().item() for i in range(2))
    tol = _tolerance(F64, scale, 0.0)
    return {"err": err, "tol": tol, "problem": None if err <= tol else f"max abs error {err:.3e} > {tol:.3e}"}


def _raised(e: Exception) -> str:
    return f"raised {type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}"


# the kernel cases: (n, theta, adaptive); each in float64 and float32
CASES = ((3, "uniform", False), (3, "mixed", True), (3, "binary", False), (2, "mixed", False))


def run(device: str, backends: Optional[Sequence[str]] = None, batch: int = 1024, neurons: int = 64,
        bins: int = 20, out=sys.stdout) -> bool:  # fmt: skip
    """Run the checks and print a table; True when every check passed."""
    device = torch.device(device)
    names = list(backends) if backends else [b for b in dispatch.FUSED_BACKENDS if dispatch.backend_status(b, device)[0]]
    if not names:
        print(f"no fused backend can run on {device}: "
              + "; ".join(f"{b}: {dispatch.backend_status(b, device)[1]}" for b in dispatch.FUSED_BACKENDS), file=out)
        return False
    print(f"checking {', '.join(names)} on {device} (batch {batch}, neurons {neurons}, {bins} bins) "
          f"against the float64 oracle", file=out)
    print(f"{'backend':8} {'check':34} {'dtype':8} {'max err':>10} {'tolerance':>10}  result", file=out)
    ok = True
    for b in names:
        can, why = dispatch.backend_status(b, device)
        if not can:
            print(f"{b:8} cannot run: {why}", file=out)
            ok = False
            continue
        kernel = dispatch.kernel(b)
        for dtype in (F64, F32):
            for i, (n, theta, adaptive) in enumerate(CASES):
                args = make_case(n, batch, neurons, bins, dtype, device=device, adaptive=adaptive, theta=theta, seed=i)
                t0 = time.perf_counter()
                try:
                    rows = compare(kernel(*args), args)
                except Exception as e:  # noqa: BLE001 - a launch or shape error is a failed check
                    rows = [{"name": "call", "err": 0.0, "tol": 0.0, "problem": _raised(e)}]
                label = f"kernel n={n} {theta} {'adaptive' if adaptive else 'fixed'}"
                bad = [r["problem"] for r in rows if r["problem"]]
                worst = max(rows, key=lambda r: r["err"] / r["tol"] if r["tol"] else 0.0)
                ok &= not bad
                print(f"{b:8} {label:34} {str(dtype)[6:]:8} {worst['err']:10.2e} {worst['tol']:10.2e}  "
                      + ("; ".join(bad) if bad else f"ok ({time.perf_counter() - t0:.1f} s)"), file=out)
        try:
            r = check_api(b, device, 3, batch, neurons, bins)
        except Exception as e:  # noqa: BLE001
            r = {"err": 0.0, "tol": 0.0, "problem": _raised(e)}
        ok &= r["problem"] is None
        print(f"{b:8} {'pid_goal + backward vs reference':34} {'float64':8} {r['err']:10.2e} {r['tol']:10.2e}  "
              + (r["problem"] or "ok"), file=out)
    print("all checks passed" if ok else "SOME CHECKS FAILED", file=out)
    return ok


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m infomorph_kernels check", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--backends", nargs="+", choices=dispatch.FUSED_BACKENDS,
                    help="default: every fused backend that can run on the device")
    ap.add_argument("--batch", type=int, default=1024)
    ap.add_argument("--neurons", type=int, default=64)
    ap.add_argument("--bins", type=int, default=20)
    args = ap.parse_args(argv)
    for name in ("batch", "neurons", "bins"):
        if getattr(args, name) < 1:
            ap.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return 0 if run(args.device, args.backends, args.batch, args.neurons, args.bins) else 1
