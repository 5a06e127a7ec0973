"""The benchmark cases shared by the kernel benchmarks (test_kernels.py) and the scripts beside
them (ab_compare.py, cpu_phases.py, autograd_frame.py): a layer's description (``Case``)
and its seeded inputs (``make_layer``)."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from infomorph_kernels import lattice

BATCH = 1024
# the paper's "optimized" goal for trivariate neurons (H_res last); other n: a seeded goal
GAMMA3 = [0.3307, 0.9781, -0.9935, 0.4017, 0.2428, 0.6255, 0.4713, 0.0212, 0.0605, -0.9470,
          -0.0199, -0.9677, -0.6924, 0.4270, 0.9736, 0.7370, -0.1218, -0.2151, 0.0350]  # fmt: skip


@dataclass(frozen=True)
class Case:
    backend: str
    neurons: int
    n: int
    bins: int
    dtype: str
    mode: str
    adaptive: bool = False

    @property
    def group(self) -> str:
        rng = "adaptive" if self.adaptive else "fixed"
        return f"{self.mode} n={self.n} K={self.bins} {rng} {self.dtype} N={self.neurons}"

    @property
    def id(self) -> str:
        return f"{self.backend}-{self.mode}-n{self.n}-K{self.bins}-{'ad' if self.adaptive else 'fx'}-{self.dtype}-N{self.neurons}"


def make_layer(case: Case, device: str, seed: int = 0):
    """Aggregated inputs spread over the paper's (-20, 20) range, theta correlated with F."""
    g = torch.Generator().manual_seed(seed)
    dtype = getattr(torch, case.dtype)
    scale = torch.tensor([6.0, 3.0, 4.0, 5.0][: case.n])
    x = torch.randn(BATCH, case.neurons, case.n, generator=g) * scale
    theta = torch.sigmoid(x[..., 0] / 4 + torch.randn(BATCH, case.neurons, generator=g))
    if case.n == 3:
        gamma = torch.tensor(GAMMA3, dtype=torch.float64)
    else:
        gamma = torch.randn(lattice.n_atoms(case.n) + 1, generator=g, dtype=torch.float64)
    return x.to(dtype).to(device), theta.to(dtype).to(device), gamma
