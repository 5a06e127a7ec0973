"""Group PID about the label on a trained layer (issue 19's benchmark): all pairs and all
triplets of a 100-neuron hidden layer about the 10 MNIST labels on the 10,000 test images, each
neuron's firing probability binned into 8 levels over [0, 1].

    python bench/analysis_groups.py RUN_DIR [--threads 2] [--sxpid PATH_TO_SXPID_CHECKOUT]

RUN_DIR: a Setup 1 run with 100 hidden neurons (python -m infomorph train --out). With --sxpid the
real SxPID (its package folder, moebius.pkl inside) decomposes the first triplet's pmf once, for
the per-triplet comparison. Prints one JSON line with the timings and the fused engine's agreement
with the dense reference on a sample of groups.
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))

import infomorph_kernels as ik  # noqa: E402
from _env import environment  # noqa: E402


def activations(run_dir: str):
    """The first hidden layer's firing probabilities on the run's test split, and the labels."""
    from infomorph.inspect import layer_activations, load_run
    from infomorph.train import batch_indices as _batches

    _, cfg, model, x, y = load_run(run_dir, "test")
    torch.manual_seed(cfg.seed)
    acts = torch.cat([layer_activations(model, x[idx])[0] for idx in _batches(x.shape[0], 1024)])
    return acts.double(), y


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("run_dir")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--levels", type=int, default=8)
    p.add_argument("--sxpid", default=None, help="folder of a SxPID checkout (the one holding sxpid/)")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = activations(args.run_dir)
    B, N = x.shape
    sym, L = ik.analysis._symbols(x, args.levels, (0.0, 1.0))
    out = {"batch": B, "neurons": N, "levels": L, "labels": int(y.max()) + 1, "threads": torch.get_num_threads(),
           "environment": environment()}
    for name, k in (("pairs", 2), ("triplets", 3)):
        groups = torch.tensor(list(itertools.combinations(range(N), k)))
        t0 = time.perf_counter()
        res = ik.pid_labels(sym, y, groups=groups, bins=None, n_labels=10)
        out[f"{name}_seconds"] = time.perf_counter() - t0
        out[f"{name}_groups"] = groups.shape[0]
        out[f"{name}_backend"] = res.backend
        sample = groups[torch.randperm(groups.shape[0], generator=torch.Generator().manual_seed(0))[:200]]
        t0 = time.perf_counter()
        ref = ik.pid_labels(sym, y, groups=sample, bins=None, n_labels=10, backend="reference")
        out[f"{name}_reference_seconds_per_group"] = (time.perf_counter() - t0) / sample.shape[0]
        fused = ik.pid_labels(sym, y, groups=sample, bins=None, n_labels=10)
        out[f"{name}_max_abs_diff_vs_reference"] = float((fused.atoms - ref.atoms).abs().max())
        out[f"{name}_complexity"] = ik.complexity_profile(sym, y, k, groups=groups, bins=None)["complexity"]
        print(json.dumps({k2: v for k2, v in out.items() if k2.startswith(name)}), flush=True)
    if args.sxpid:
        import types

        sys.path.insert(0, args.sxpid)
        pr = types.ModuleType("pkg_resources")
        pr.resource_filename = lambda pkg, name: os.path.join(args.sxpid, "sxpid", name)
        sys.modules.setdefault("pkg_resources", pr)
        from sxpid import SxPID

        g = [0, 1, 2]
        counts = {}
        for i in range(B):
            key = tuple(int(sym[i, j]) for j in g) + (int(y[i]),)
            counts[key] = counts.get(key, 0) + 1
        pdf = {k2: v / B for k2, v in counts.items()}
        t0 = time.perf_counter()
        _, avg = SxPID.pid(pdf, verbose=0, n_threads=1, pointwise=True)
        out["sxpid_one_triplet_seconds"] = time.perf_counter() - t0
        out["sxpid_one_triplet_realizations"] = len(pdf)
        out["sxpid_all_triplets_hours_estimate"] = out["sxpid_one_triplet_seconds"] * out["triplets_groups"] / 3600
        ours = ik.pid_labels(sym, y, groups=torch.tensor([g]), bins=None, n_labels=10)
        # SxPID's avg is {antichain: (informative, misinformative, average)}, keyed by 1-based source
        # tuples; the engine's atoms come in gamma order (ik.lattice.antichains, bitmasks over sources)
        keys = [tuple(tuple(j + 1 for j in range(3) if m >> j & 1) for m in a) for a in ik.lattice.antichains(3)]
        find = {tuple(sorted(map(tuple, map(sorted, k)))): v for k, v in avg.items()}
        diffs = [abs(find[tuple(sorted(k))][2] - float(ours.atoms[0, i])) for i, k in enumerate(keys)]
        out["sxpid_max_abs_diff"] = max(diffs)
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
