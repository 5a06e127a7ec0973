"""The CLI's processes keep freed memory mapped (python/infomorph/_malloc.py): a training step
then page-faults nothing in, where glibc's defaults re-map ~150 pages per Setup 1 step."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

STEPS = r"""
import json, resource, torch
import torch.nn.functional as F
from infomorph._malloc import keep_freed_memory
from infomorph.goals import OPTIMIZED_GAMMA, OUTPUT_GAMMA
from infomorph.models import build_model
from infomorph.train import TrainConfig, make_optimizer

took = keep_freed_memory()
torch.manual_seed(0)
torch.set_num_threads(1)
x, y = torch.rand(1024, 784), torch.randint(0, 10, (1024,))
onehot = F.one_hot(y, 10).to(x.dtype)
model = build_model(1, [100], 784, 10, hidden_goal=OPTIMIZED_GAMMA, output_goal=OUTPUT_GAMMA)
opt = make_optimizer(model, TrainConfig())


def step():
    goals, _, _ = model.goals(x, onehot)
    loss = model.loss(goals)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()


for _ in range(3):
    step()
f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
print(json.dumps({"took": took, "faults": (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / 10}))
"""


def _steps(**env):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]), **env)
    r = subprocess.run([sys.executable, "-c", STEPS], capture_output=True, text=True, env=e, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_training_steps_fault_no_pages_in():
    tuned, default = _steps(), _steps(INFOMORPH_MALLOC="default")
    assert tuned["took"] is True and default["took"] is False
    assert tuned["faults"] <= 2, tuned
    # the defaults' faults (~150 a step here) are what the setting removes; they depend on glibc's
    # adaptive thresholds, so only their direction is checked
    assert default["faults"] >= tuned["faults"], (default, tuned)


def test_cli_sets_it(monkeypatch):
    """`python -m infomorph` calls keep_freed_memory before its command runs (here one that stops
    at once: train without --out)."""
    import infomorph.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["train", "--dataset", "synthetic", "--epochs", "1"]) == 2
    assert calls == [1]
