"""What `python -m infomorph train` (Setup 1, MNIST) would take if the PID engine cost nothing.

    python bench/engine_floor.py [--epochs 10] [--rounds 3] [--hidden 100] [--threads 2]

Runs the training command as a user does (a fresh process: start-up, data, epochs with validation
and test, plots), alternately as it is ("engine") and with the engine's PID call replaced by a
stub that only allocates its outputs and fills them with zeros ("stub": no binning, no tables, no
PID, zero goals and gradients; sampling and the activation still run on the engine, the dense
products, autograd, Adam and evaluation as always). The stub's gradients are zero, so its weights
only decay; subnormals are flushed in both modes (else the stub's decayed weights turn every
product ~30x slower after ~30 epochs). The work per step has the same shape. The difference of
the two is the PID engine's share of a training run; the stub's time is the floor that no engine
work can go below.

Prints per mode the median wall time of the whole command, its median epoch, and the 100-epoch
wall time they extrapolate to (start-up + 100 epochs).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))
from infomorph.options import positive as _positive  # noqa: E402  (an int >= 1; argparse names the option)

RUN = r"""
import sys, torch
mode = sys.argv[1]
# With zero gradients, the L2 weight decay alone drives weights and Adam's moments into the
# subnormal range within ~30 epochs, where every product slows ~30x: flush them (in both modes,
# so both do the same arithmetic; a real run holds no subnormals, see bench/RESULTS.md).
torch.set_flush_denormal(True)
if mode == "stub":
    from infomorph_kernels import cpu_backend
    def _stub(mod, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, gamma_h, need_grad,
              check_values, num_threads, with_goal):
        B, N = (x[0].shape if isinstance(x, tuple) else x.shape[:2])
        dt = theta.dtype
        goal = torch.zeros((N,), dtype=dt) if with_goal else None
        dtheta = torch.zeros((B, N), dtype=dt) if need_grad else torch.empty((0,), dtype=dt)
        return goal, torch.zeros((N, coef.shape[0]), dtype=dt), torch.zeros((N,), dtype=dt), dtheta
    cpu_backend._run_layer = _stub
from infomorph.cli import main
sys.exit(main(sys.argv[2:]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=_positive, default=10)
    ap.add_argument("--rounds", type=_positive, default=3)
    ap.add_argument("--hidden", type=_positive, default=100)
    ap.add_argument("--threads", type=_positive, default=2)
    a = ap.parse_args()
    env = dict(os.environ, PYTHONPATH=f"{ROOT}{os.pathsep}{os.path.join(ROOT, 'python')}")
    res = {"engine": [], "stub": []}
    for _ in range(a.rounds):
        for mode in res:
            with tempfile.TemporaryDirectory() as out:
                cmd = [sys.executable, "-c", RUN, mode, "train", "--dataset", "mnist", "--setup", "1",
                       "--hidden", str(a.hidden), "--epochs", str(a.epochs), "--threads", str(a.threads),
                       "--no-progress", "--out", out]
                t0 = time.perf_counter()
                p = subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True)
                wall = time.perf_counter() - t0
                if p.returncode != 0:
                    sys.exit(f"{mode} run failed: {(p.stderr.strip().splitlines() or ['?'])[-1]}")
                hist = json.load(open(os.path.join(out, "results.json")))["history"]
                epochs = [h["seconds"] for h in hist]
                res[mode].append((wall, statistics.median(epochs), wall - sum(epochs)))
    print(f"Setup 1, {a.hidden} hidden, {a.epochs} epochs, {a.threads} threads, {a.rounds} rounds (medians)")
    print("| mode | wall (s) | median epoch (s) | start-up and the rest (s) | 100 epochs, extrapolated (s) |")
    print("|---|---|---|---|---|")
    for mode, rs in res.items():
        wall, ep, rest = (statistics.median(r[i] for r in rs) for i in range(3))
        print(f"| {mode} | {wall:.2f} | {ep:.3f} | {rest:.2f} | {rest + 100 * ep:.1f} |")


if __name__ == "__main__":
    main()
