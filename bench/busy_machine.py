"""Training and the engine on a busy machine: seconds with 0, 1, 2 busy cores, default threads vs one.

    python bench/busy_machine.py [--hogs 0,1,2] [--threads default,1] [--epochs 3] [--what epoch,layer,labels]

Issue 43's table as a measurement anyone can repeat. For each number of busy cores (a "hog" is a
``yes > /dev/null`` process, started by this script and killed when the row is done, whatever
happens) and each thread setting (``default``: no --threads, torch's and the engine's choice; or a
number), it measures in fresh processes:

- ``epoch``: ``python -m infomorph train --dataset mnist --setup 1 --hidden 100 --goal optimized
  --epochs E`` (seconds of each epoch from its results.json);
- ``layer``: ``ik.pid_goal(...).sum().backward()`` on 100 trivariate neurons, batch 1024 (the
  suite's layer, bench/cases.make_layer), 200 calls: median and 90th percentile in ms;
- ``labels``: ``ik.pid_labels`` of all triplets of a 30-neuron layer about 10 labels (4060 groups,
  2000 samples, 8 levels): seconds of one call, median of 3.

Every child has a time limit (``--limit`` seconds); a row that runs over says so instead of a figure.
Prints a markdown table; ``--json FILE`` writes the raw numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LAYER = r"""
import sys, time, statistics, torch
sys.path.insert(0, {bench!r})
import infomorph_kernels as ik
from cases import Case, make_layer
if {threads} is not None:
    torch.set_num_threads({threads})
x, theta, gamma = make_layer(Case("cpu", 100, 3, 20, "float32", "fwd+bwd"), "cpu")
def call():
    t = theta.detach().requires_grad_()
    ik.pid_goal(x, t, gamma, bins=20, ranges=(-20.0, 20.0), validate=False).sum().backward()
for _ in range(20):
    call()
ts = []
for _ in range(200):
    t0 = time.perf_counter(); call(); ts.append(time.perf_counter() - t0)
ts.sort()
print(statistics.median(ts) * 1e3, ts[int(0.9 * len(ts))] * 1e3)
"""

LABELS = r"""
import time, statistics, torch
import infomorph_kernels as ik
if {threads} is not None:
    torch.set_num_threads({threads})
g = torch.Generator().manual_seed(0)
acts = torch.rand(2000, 30, generator=g)
labels = torch.randint(0, 10, (2000,), generator=g)
ts = []
for _ in range(3):
    t0 = time.perf_counter()
    ik.pid_labels(acts, labels, groups="triplets", bins=8, ranges=(0.0, 1.0))
    ts.append(time.perf_counter() - t0)
print(statistics.median(ts))
"""


def _hogs(k: int):
    yes = shutil.which("yes")
    if yes is None:
        sys.exit("busy_machine: needs the `yes` program for the busy cores")
    return [subprocess.Popen([yes], stdout=subprocess.DEVNULL) for _ in range(k)]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.path.join(ROOT, "python"), os.environ.get("PYTHONPATH", "")]))


def _epochs(threads, epochs: int, limit: int):
    with tempfile.TemporaryDirectory() as out:
        cmd = [sys.executable, "-m", "infomorph", "train", "--dataset", "mnist", "--setup", "1", "--hidden", "100",
               "--goal", "optimized", "--epochs", str(epochs), "--no-progress", "--out", out]
        if threads is not None:
            cmd += ["--threads", str(threads)]
        try:
            subprocess.run(cmd, env=_env(), capture_output=True, timeout=limit, check=True)
        except subprocess.TimeoutExpired:
            return None
        with open(os.path.join(out, "results.json")) as fh:
            return [round(h["seconds"], 2) for h in json.load(fh)["history"]]


def _script(code: str, limit: int):
    try:
        r = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=limit,
                           check=True)
    except subprocess.TimeoutExpired:
        return None
    return [float(v) for v in r.stdout.split()]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--hogs", default="0,1,2", help="numbers of busy cores, e.g. 0,1,2")
    p.add_argument("--threads", default="default,1", help="thread settings: default and/or numbers")
    p.add_argument("--epochs", type=int, default=3)
    p.add_argument("--what", default="epoch,layer,labels")
    p.add_argument("--limit", type=int, default=600, help="seconds each measurement may take")
    p.add_argument("--json", default=None, help="also write the numbers here")
    a = p.parse_args(argv)
    try:
        hogs = [int(v) for v in a.hogs.split(",")]
        settings = [None if v == "default" else int(v) for v in a.threads.split(",")]
    except ValueError:
        p.error("--hogs takes numbers like 0,1,2; --threads takes default and/or numbers like default,1")
    what = a.what.split(",")
    if any(w not in ("epoch", "layer", "labels") for w in what) or a.epochs < 1 or a.limit < 1:
        p.error("--what takes epoch, layer, labels; --epochs and --limit take ints >= 1")
    rows = []
    for k in hogs:
        procs = _hogs(k)
        try:
            time.sleep(1.0 if k else 0.0)
            for t in settings:
                row = {"busy_cores": k, "threads": "default" if t is None else t}
                if "epoch" in what:
                    row["epoch_seconds"] = _epochs(t, a.epochs, a.limit)
                if "layer" in what:
                    row["layer_ms_median_p90"] = _script(LAYER.format(bench=os.path.join(ROOT, "bench"), threads=t), a.limit)
                if "labels" in what:
                    row["labels_seconds"] = _script(LABELS.format(threads=t), a.limit)
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
        finally:
            for proc in procs:
                proc.kill()
                proc.wait()
    print(f"{os.cpu_count()} cores; busy cores = `yes` processes\n")
    print("| busy cores | threads | epoch seconds | layer fwd+bwd ms (median, p90) | pid_labels s |\n|---|---|---|---|---|")
    for r in rows:
        ep = r.get("epoch_seconds")
        lay = r.get("layer_ms_median_p90")
        lab = r.get("labels_seconds")
        print(f"| {r['busy_cores']} | {r['threads']} | {'over the limit' if ep is None and 'epoch_seconds' in r else ', '.join(map(str, ep or []))} "
              f"| {'' if lay is None else f'{lay[0]:.2f}, {lay[1]:.2f}'} | {'' if lab is None else f'{lab[0]:.2f}'} |")
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"cores": os.cpu_count(), "rows": rows}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
