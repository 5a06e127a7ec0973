"""Disentanglement from biological constraints (Whittington et al., ICLR 2023), small and offline.

Six i.i.d. uniform factors s are mixed by a random orthogonal matrix into x = Q s; the target y is
a random linear transform of x (dimension 6). A network with one hidden layer of N units reads y
out of x: z = act(W1 x + b1), y_hat = W2 z + b2, trained with Adam on

    MSE(y_hat, y) + beta_act * mean ||z||^2 + beta_w * (||W1||^2 + ||W2||^2)

in five variants: no constraint (linear, no energies), all constraints (ReLU nonnegativity,
activity energy, weight energy), and all but one. The mutual information between every hidden
unit and every factor (``ik.mutual_information_matrix``, plug-in, 20 equal bins each) gives MIR
(``ik.mir``: how much each active unit is about one factor) and MIG (``ik.mig``). The paper's
finding: only the fully constrained network disentangles (high MIR); remove nonnegativity or the
activity energy and it does not.

    python examples/disentanglement.py --seeds 5 --out runs/disentanglement

writes results.json, results.md (mean and standard error over seeds per variant) and
mi_matrices.png (one MI matrix per variant, seed 0).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from typing import Optional

import torch

import infomorph_kernels as ik

FACTORS = 6
VARIANTS = {  # name: (nonnegative, activity energy, weight energy)
    "no constraint": (False, False, False),
    "all constraints": (True, True, True),
    "without nonnegativity": (False, True, True),
    "without activity energy": (True, False, True),
    "without weight energy": (True, True, False),
}


def make_task(seed: int, n: int, sample_seed: Optional[int] = None):
    """(factors, x, y) of n samples of the task of ``seed`` (its mixing Q and readout M); the
    samples come after Q and M from the same generator, or from ``sample_seed`` (fresh draws)."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(FACTORS, FACTORS, generator=g, dtype=torch.float64))
    m = torch.randn(FACTORS, FACTORS, generator=g, dtype=torch.float64) / math.sqrt(FACTORS)
    gs = g if sample_seed is None else torch.Generator().manual_seed(sample_seed)
    s = torch.rand(n, FACTORS, generator=gs, dtype=torch.float64) * 2 - 1  # i.i.d. uniform factors
    x = s @ q.T
    return s, x, x @ m.T


def train_variant(variant: str, seed: int, hidden: int, steps: int, beta: float, batch: int = 512):
    nonneg, act_energy, w_energy = VARIANTS[variant]
    s, x, y = make_task(seed, 20000)
    torch.manual_seed(seed)
    lin1, lin2 = torch.nn.Linear(FACTORS, hidden).double(), torch.nn.Linear(hidden, FACTORS).double()
    opt = torch.optim.Adam(list(lin1.parameters()) + list(lin2.parameters()), lr=3e-3)
    gen = torch.Generator().manual_seed(seed + 1)
    for step in range(steps):
        idx = torch.randint(0, x.shape[0], (batch,), generator=gen)
        z = lin1(x[idx])
        if nonneg:
            z = torch.relu(z)
        loss = torch.mean((lin2(z) - y[idx]) ** 2)
        if act_energy:
            loss = loss + beta * z.pow(2).sum(1).mean()
        if w_energy:
            loss = loss + beta * (lin1.weight.pow(2).sum() + lin2.weight.pow(2).sum())
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        s_eval, x_eval, y_eval = make_task(seed, 20000, sample_seed=seed + 7777)  # new samples of the same task
        z = lin1(x_eval)
        if nonneg:
            z = torch.relu(z)
        mse = float(torch.mean((lin2(z) - y_eval) ** 2))
    return z, s_eval, mse


def scores(z: torch.Tensor, s: torch.Tensor, bins: int = 20):
    active = z.std(0) > 1e-3 * max(float(z.std(0).max()), 1e-12)
    mi = ik.mutual_information_matrix(z, s, bins=bins, factor_bins=bins)
    h_f = torch.full((FACTORS,), math.log2(bins), dtype=torch.float64)  # uniform factors, equal bins
    return mi, float(ik.mir(mi, active=active)), float(ik.mig(mi[active], h_f)), int(active.sum())


def _se(v):
    return statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--seeds", type=int, default=5)
    p.add_argument("--hidden", type=int, default=12, help="hidden units (more than the 6 factors)")
    p.add_argument("--steps", type=int, default=4000)
    p.add_argument("--beta", type=float, default=0.01, help="weight of the activity and weight energies")
    p.add_argument("--out", default="runs/disentanglement")
    args = p.parse_args(argv)
    if args.seeds < 1 or args.hidden < 2 or args.steps < 1 or not args.beta > 0:
        p.error("--seeds, --steps >= 1, --hidden >= 2 and --beta > 0")
    os.makedirs(args.out, exist_ok=True)
    results, matrices = {}, {}
    t0 = time.perf_counter()
    for variant in VARIANTS:
        rows = []
        for seed in range(args.seeds):
            z, s, mse = train_variant(variant, seed, args.hidden, args.steps, args.beta)
            mi, mir_v, mig_v, n_active = scores(z, s)
            rows.append({"seed": seed, "mir": mir_v, "mig": mig_v, "mse": mse, "active_units": n_active})
            if seed == 0:
                matrices[variant] = mi
        results[variant] = {
            "runs": rows,
            "mir_mean": statistics.fmean(r["mir"] for r in rows), "mir_se": _se([r["mir"] for r in rows]),
            "mig_mean": statistics.fmean(r["mig"] for r in rows), "mig_se": _se([r["mig"] for r in rows]),
            "mse_mean": statistics.fmean(r["mse"] for r in rows),
        }
        r = results[variant]
        print(f"{variant:26s} MIR {r['mir_mean']:.3f} +- {r['mir_se']:.3f}  MIG {r['mig_mean']:.3f} +- {r['mig_se']:.3f}"
              f"  MSE {r['mse_mean']:.4f}", flush=True)
    meta = {"command": "python examples/disentanglement.py " + " ".join(sys.argv[1:] if argv is None else argv),
            "seconds": time.perf_counter() - t0, "settings": vars(args), "variants": results}
    with open(os.path.join(args.out, "results.json"), "w") as fh:
        json.dump(meta, fh, indent=1)
    with open(os.path.join(args.out, "results.md"), "w") as fh:
        fh.write(f"| variant | MIR (mean +- s.e., {args.seeds} seeds) | MIG | test MSE |\n|---|---|---|---|\n")
        for v, r in results.items():
            fh.write(f"| {v} | {r['mir_mean']:.3f} +- {r['mir_se']:.3f} | {r['mig_mean']:.3f} +- {r['mig_se']:.3f} | "
                     f"{r['mse_mean']:.4f} |\n")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("note: matplotlib is not installed, no heatmaps (pip install matplotlib)")
        return 0
    fig, axes = plt.subplots(1, len(matrices), figsize=(3.2 * len(matrices), 4))
    for ax, (v, mi) in zip(axes, matrices.items()):
        im = ax.imshow(mi.numpy(), cmap="viridis", aspect="auto", vmin=0)
        ax.set_title(f"{v}\nMIR {results[v]['runs'][0]['mir']:.2f}", fontsize=8)
        ax.set_xlabel("factor")
        ax.set_ylabel("hidden unit")
        fig.colorbar(im, ax=ax, fraction=0.05)
    fig.tight_layout()
    fig.savefig(os.path.join(args.out, "mi_matrices.png"), dpi=110)
    print(f"wrote {args.out}/results.json, results.md, mi_matrices.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())
