"""One full training step of the paper's Setup 1 (forward with two hidden passes, both PID layers,
backward, Adam), as ``python -m infomorph train`` runs it, at 100 and 2000 hidden neurons; so that
regressions of the network layer (not only of the kernels) show.

    python -m pytest bench/test_train_step.py --benchmark-only
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from infomorph.goals import OPTIMIZED_GAMMA, OUTPUT_GAMMA
from infomorph.models import build_model
from infomorph.train import TrainConfig, make_optimizer

BATCH = 1024


@pytest.mark.parametrize("hidden", [100, 2000])
def test_setup1_step(benchmark, hidden, bench_device):
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.rand(BATCH, 784, generator=g).to(bench_device)  # MNIST-shaped pixels in [0, 1]
    y = torch.randint(0, 10, (BATCH,), generator=g).to(bench_device)
    onehot = F.one_hot(y, 10).to(x.dtype)
    model = build_model(1, [hidden], 784, 10, hidden_goal=OPTIMIZED_GAMMA, output_goal=OUTPUT_GAMMA).to(bench_device)
    opt = make_optimizer(model, TrainConfig())
    sync = torch.cuda.synchronize if bench_device == "cuda" else (lambda: None)

    def step():
        goals, _, _ = model.goals(x, onehot)
        loss = model.loss(goals)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()

    step()  # warm-up
    benchmark.group = f"train step, Setup 1, N={hidden}"
    benchmark.extra_info.update({"hidden": hidden, "batch": BATCH, "setup": 1, "device": bench_device,
                                 "backend": model.layers[0].last_backend, "mode": "train step"})
    if hidden >= 1000:
        benchmark.pedantic(step, rounds=5, iterations=1, warmup_rounds=0)
    else:
        benchmark(step)
