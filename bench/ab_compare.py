"""Interleaved before/after timing of two checkouts (each with its engine built in place).

    python bench/ab_compare.py BEFORE_ROOT AFTER_ROOT [--rounds 3]

Each case runs in a fresh process with PYTHONPATH=ROOT:ROOT/python (so both the engine and the
network package come from that checkout): a layer's ``ik.pid_goal(...).sum().backward()`` through
the public API on the suite's inputs (bench/cases.make_layer of AFTER_ROOT), or a Setup 1
training step (on random pixels, or on a batch of MNIST images). Rounds alternate before and
after, so both sides see the same machine noise; the table gives the median of the rounds' medians
and, in brackets, the fastest call (ms).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

LAYER = r"""
import json, statistics, sys, time, torch
sys.path.insert(0, sys.argv[7])
import infomorph_kernels as ik
from cases import Case, make_layer
torch.set_num_threads(2)
N, n, K, dt, ad, reps = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5] == "ad", int(sys.argv[6])
x, theta, gamma = make_layer(Case("cpu", N, n, K, dt, "fwd+bwd", adaptive=ad), "cpu")
kw = dict(bins=K, ranges="adaptive" if ad else (-20.0, 20.0), backend="cpu", validate=False)
def f():
    t = theta.detach().requires_grad_()
    ik.pid_goal(x, t, gamma, **kw).sum().backward()
f(); f()
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); f(); ts.append(time.perf_counter() - t0)
print(json.dumps({"median": statistics.median(ts) * 1e3, "min": min(ts) * 1e3}))
"""

STEP = r"""
import json, statistics, sys, time, torch
import torch.nn.functional as F
from infomorph.goals import OPTIMIZED_GAMMA, OUTPUT_GAMMA
from infomorph.models import build_model
from infomorph.train import TrainConfig, make_optimizer
torch.manual_seed(0); torch.set_num_threads(2)
hidden, reps, inputs = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if inputs == "mnist":  # a batch of the trainer's own inputs (81 % blank pixels)
    from infomorph.data import load_dataset
    data = load_dataset("mnist")
    x, y = data.x_train[:1024].contiguous(), data.y_train[:1024]
else:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(1024, 784, generator=g); y = torch.randint(0, 10, (1024,), generator=g)
onehot = F.one_hot(y, 10).to(x.dtype)
model = build_model(1, [hidden], 784, 10, hidden_goal=OPTIMIZED_GAMMA, output_goal=OUTPUT_GAMMA)
opt = make_optimizer(model, TrainConfig())
def step():
    goals, _, _ = model.goals(x, onehot); loss = model.loss(goals)
    opt.zero_grad(set_to_none=True); loss.backward(); opt.step()
for _ in range(3): step()
ts = []
for _ in range(reps):
    t0 = time.perf_counter(); step(); ts.append(time.perf_counter() - t0)
print(json.dumps({"median": statistics.median(ts) * 1e3, "min": min(ts) * 1e3}))
"""

RUN = r"""
import json, os, subprocess, sys, tempfile, time
epochs = sys.argv[1]
with tempfile.TemporaryDirectory() as out:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "infomorph", "train", "--dataset", "mnist", "--setup", "1", "--hidden", "100",
                    "--epochs", epochs, "--threads", "2", "--no-progress", "--out", out], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    ep = sorted(h["seconds"] for h in json.load(open(os.path.join(out, "results.json")))["history"])
print(json.dumps({"median": wall * 1e3, "min": ep[len(ep) // 2] * 1e3}))
"""

CASES = [("bivariate adaptive, 10 neurons", LAYER, ["10", "2", "20", "float32", "ad", "400"]),
         ("trivariate, 100 neurons", LAYER, ["100", "3", "20", "float32", "fx", "100"]),
         ("trivariate, 1000 neurons", LAYER, ["1000", "3", "20", "float32", "fx", "15"]),
         ("trivariate, 2000 neurons", LAYER, ["2000", "3", "20", "float32", "fx", "8"]),
         ("trivariate, 100 neurons, float64", LAYER, ["100", "3", "20", "float64", "fx", "100"]),
         ("trivariate, 100 neurons, 60 bins", LAYER, ["100", "3", "60", "float32", "fx", "60"]),
         ("4 sources, 100 neurons, 20 bins", LAYER, ["100", "4", "20", "float32", "fx", "10"]),
         ("4 sources, 10 neurons, 60 bins", LAYER, ["10", "4", "60", "float32", "fx", "10"]),
         ("bivariate, 100 neurons, 60 bins, float64", LAYER, ["100", "2", "60", "float64", "fx", "100"]),
         ("Setup 1 training step, 100 hidden", STEP, ["100", "60", "random"]),
         ("Setup 1 training step, 2000 hidden", STEP, ["2000", "6", "random"]),
         ("Setup 1 training step on MNIST, 100 hidden", STEP, ["100", "60", "mnist"]),
         ("Setup 1 training step on MNIST, 2000 hidden", STEP, ["2000", "6", "mnist"]),
         # the whole command (start-up, data, epochs with validation and test, plots); in brackets: its median epoch
         ("python -m infomorph train, Setup 1, 100 hidden, 10 epochs (wall)", RUN, ["10"]),
         ("python -m infomorph train, Setup 1, 100 hidden, 40 epochs (wall)", RUN, ["40"])]  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("before")
    ap.add_argument("after")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--only", default="", help="run only the cases whose name contains this text")
    a = ap.parse_args()
    cases = [c for c in CASES if a.only in c[0]]
    bench_dir = os.path.join(os.path.abspath(a.after), "bench")
    res = {}
    for _ in range(a.rounds):
        for name, code, args in cases:
            for side, root in (("before", a.before), ("after", a.after)):
                root = os.path.abspath(root)
                env = dict(os.environ, PYTHONPATH=f"{root}{os.pathsep}{os.path.join(root, 'python')}")
                extra = [bench_dir] if code is LAYER else []
                out = subprocess.run([sys.executable, "-c", code, *args, *extra], cwd="/", env=env,
                                     capture_output=True, text=True)
                if out.returncode != 0:
                    print(f"{name} ({side}) failed: {out.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
                    continue
                res.setdefault((name, side), []).append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| case | before | after | speed-up |\n|---|---|---|---|")
    for name, _, _ in cases:
        b, f = res.get((name, "before")), res.get((name, "after"))
        if not b or not f:
            continue
        bm, fm = statistics.median(r["median"] for r in b), statistics.median(r["median"] for r in f)
        print(f"| {name} | {bm:.3g} ({min(r['min'] for r in b):.3g}) | {fm:.3g} ({min(r['min'] for r in f):.3g}) | {bm / fm:.2f}x |")


if __name__ == "__main__":
    main()
