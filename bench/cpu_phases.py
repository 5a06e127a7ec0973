"""Phase profile of the CPU engine (bench/cpu_phases.cpp): rdtsc cycles per neuron of each phase.

    python bench/cpu_phases.py [--neurons 200] [--sources 3] [--reps 5] [--fwd]
    python bench/cpu_phases.py --trained 3 [--reps 30]

Writes the benchmark suite's layer (bench/test_kernels.make_layer: batch 1024, 20 bins over
(-20, 20), float32) to a temporary file, compiles the harness with g++ (AVX2 + FMA flavour, one
thread) and prints the table. The timers cost a few percent; compare phases, not totals, with
the suite's figures.

``--trained E``: instead, the hidden layer of a Setup 1 network (100 neurons, the paper's optimized
goal, seed 0) after E epochs on MNIST, on one fresh batch of its training set: what a training
step's engine call meets (few occupied cells per neuron, values far from edges), unlike the
suite's random layer. Needs MNIST (see README, Data).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)


def trained_layer(epochs: int):
    """(sources [1024, 100, 3], theta [1024, 100], gamma) of the hidden layer of a Setup 1 network
    trained ``epochs`` epochs on MNIST (seed 0, the trainer's batches and optimizer), on one fresh
    batch of the training set."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import torch.nn.functional as F
    from infomorph.data import load_dataset
    from infomorph.goals import OPTIMIZED_GAMMA, OUTPUT_GAMMA
    from infomorph.models import build_model
    from infomorph.train import TrainConfig, make_optimizer

    torch.manual_seed(0)
    data = load_dataset("mnist")
    model = build_model(1, [100], data.in_features, data.n_classes, hidden_goal=OPTIMIZED_GAMMA,
                        output_goal=OUTPUT_GAMMA)
    opt = make_optimizer(model, TrainConfig())
    gen = torch.Generator().manual_seed(0)
    n = data.x_train.shape[0]

    def batch(idx):
        x = data.x_train.index_select(0, idx)
        return x, F.one_hot(data.y_train.index_select(0, idx), data.n_classes).to(x.dtype)

    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - 1023, 1024):
            goals, _, _ = model.goals(*batch(perm[i:i + 1024]))
            opt.zero_grad(set_to_none=True)
            model.loss(goals).backward()
            opt.step()
    with torch.no_grad():
        outs, _ = model.run(*batch(torch.randperm(n, generator=gen)[:1024]), grad=False)
    return outs[0].sources, outs[0].theta.detach(), torch.tensor(OPTIMIZED_GAMMA, dtype=torch.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=200)
    ap.add_argument("--sources", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fwd", action="store_true", help="forward only (no dtheta)")
    ap.add_argument("--trained", type=int, default=None, metavar="E",
                    help="profile a Setup 1 hidden layer after E epochs on MNIST instead of the suite's layer")
    a = ap.parse_args()
    if a.trained is not None and a.trained < 0:
        ap.error(f"--trained must be >= 0, got {a.trained}")
    from infomorph_kernels import lattice
    from infomorph_kernels.binning import make_binning

    if a.trained is not None:
        x, theta, gamma = trained_layer(a.trained)
        a.neurons, a.sources = x.shape[1], x.shape[2]
    else:
        from test_kernels import Case, make_layer

        x, theta, gamma = make_layer(Case("cpu", a.neurons, a.sources, 20, "float32", "fwd+bwd"), "cpu")
    b = make_binning(a.sources, 20, (-20.0, 20.0), torch.float32, "cpu")
    coef = np.asarray(lattice.coef_matrix(a.sources), dtype=np.int32)
    w, gh = lattice.goal_weights(gamma.numpy(), a.sources)
    with tempfile.TemporaryDirectory() as d:
        case_file, exe = os.path.join(d, "case.bin"), os.path.join(d, "cpu_phases")
        with open(case_file, "wb") as f:
            np.array([1024, a.neurons, a.sources, coef.shape[0], 20, 0 if a.fwd else 1], dtype=np.int64).tofile(f)
            for t in (x, theta, b.edges, b.clamp_lo, b.clamp_hi):
                t.contiguous().numpy().astype(np.float32).tofile(f)
            coef.tofile(f)
            np.asarray([*w, gh], dtype=np.float64).tofile(f)
        subprocess.run(["g++", "-O3", "-std=c++17", "-fno-math-errno", f"-I{ROOT}/csrc/common", f"-I{ROOT}/csrc/cpu",
                        os.path.join(HERE, "cpu_phases.cpp"), "-o", exe], check=True)
        subprocess.run([exe, case_file, str(a.reps)], check=True)


if __name__ == "__main__":
    main()
