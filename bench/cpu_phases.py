"""Phase profile of the CPU engine (bench/cpu_phases.cpp): rdtsc cycles per neuron of each phase.

    python bench/cpu_phases.py [--neurons 200] [--sources 3] [--reps 5] [--fwd]

Writes the benchmark suite's layer (bench/test_kernels.make_layer: batch 1024, 20 bins over
(-20, 20), float32) to a temporary file, compiles the harness with g++ (AVX2 + FMA flavour, one
thread) and prints the table. The timers cost a few percent; compare phases, not totals, with
the suite's figures.
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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--neurons", type=int, default=200)
    ap.add_argument("--sources", type=int, default=3, choices=(2, 3, 4))
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--fwd", action="store_true", help="forward only (no dtheta)")
    a = ap.parse_args()
    from test_kernels import Case, make_layer

    from infomorph_kernels import lattice
    from infomorph_kernels.binning import make_binning

    case = Case("cpu", a.neurons, a.sources, 20, "float32", "fwd+bwd")
    x, theta, gamma = make_layer(case, "cpu")
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
