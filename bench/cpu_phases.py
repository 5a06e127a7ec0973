"""Phase profile of the CPU engine (bench/cpu_phases.cpp): rdtsc cycles per neuron of each phase.

    python bench/cpu_phases.py [--neurons 200] [--sources 3] [--reps 5] [--fwd]
    python bench/cpu_phases.py --trained 3 [--reps 30]

Writes the benchmark suite's layer (bench/cases.make_layer: batch 1024, 20 bins over
(-20, 20), float32) to a temporary file, compiles the harness with g++ (AVX2 + FMA flavour, one
thread) and prints the table. The timers cost a few percent; compare phases, not totals, with
the suite's figures.

``--trained E``: instead, the hidden layer of a Setup 1 network (100 neurons, the paper's optimized
goal, seed 0) after E epochs of ``infomorph.train`` on MNIST, on a batch of its validation split:
what a training step's engine call meets (few occupied cells per neuron, values far from edges), unlike the
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
    (the paper's optimized goal, seed 0) trained ``epochs`` epochs on MNIST by the trainer itself,
    on the first 1024 samples of its validation split with their labels as context."""
    sys.path.insert(0, os.path.join(ROOT, "python"))
    import torch.nn.functional as F
    from infomorph.inspect import load_run
    from infomorph.train import TrainConfig, train

    with tempfile.TemporaryDirectory() as out:
        train(TrainConfig(dataset="mnist", setup=1, hidden=[100], goal="optimized", epochs=epochs, seed=0), out,
              log=lambda _: None, show_progress=False, plots=False)
        _, cfg, model, x, y = load_run(out, split="val")
    x, y = x[:1024], y[:1024]
    with torch.no_grad():
        outs, _ = model.run(x, F.one_hot(y, model.n_classes).to(x.dtype), grad=False)
    return outs[0].sources, outs[0].theta.detach(), torch.tensor(cfg.hidden_gamma, dtype=torch.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=200)
    ap.add_argument("--sources", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fwd", action="store_true", help="forward only (no dtheta)")
    ap.add_argument("--trained", type=int, default=None, metavar="E",
                    help="profile a Setup 1 hidden layer after E epochs on MNIST instead of the suite's layer")
    a = ap.parse_args()
    if a.trained is not None and a.trained < 1:
        ap.error(f"--trained must be >= 1 (epochs of training before the profile), got {a.trained}")
    from infomorph_kernels import lattice
    from infomorph_kernels.binning import make_binning

    if a.trained is not None:
        x, theta, gamma = trained_layer(a.trained)
        a.neurons, a.sources = x.shape[1], x.shape[2]
    else:
        from cases import Case, make_layer

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
