"""CorInfoMax training step: this project's against the authors' implementation, side by side, and
the arithmetic floor (the same matrix products timed alone).

    python bench/corinfomax_speed.py --authors DIR [--batches 150] [--threads 1] [--hidden 500]

DIR holds the authors' ``ContrastiveModels.py`` and ``torch_utils.py``
(github.com/BariscanBozkurt/Supervised-CorInfoMax, ``src/``; they run on current torch unchanged);
their code is imported from there, never copied into this project. Both run the MNIST notebook's
settings (784-500-10, batch 20, 30 free + 10 nudged steps, hopfield_g 0.5, the slow-loop neural
step size) on the same MNIST batches (pixels in [0, 1]) with the same torch thread count;
``take_debug_logs`` off for theirs. The floor: per batch, every matrix product our step makes
(the layer-1 drive twice, per step the lateral, backward and forward products, the updates'
products), by ``torch.mm(..., out=...)`` in a loop without anything else. Prints ms per batch
(median of the timed batches after 10 warm-up batches) and an epoch's estimate (2400 batches: the
48,000 training samples of a 20 % validation split; the authors train on all 60,000: 3000).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "python"))

SETTINGS = dict(hopfield_g=0.5, neural_lr_start=0.05, neural_lr_stop=0.001, neural_lr_rule="divide_by_slow_loop_index",
                neural_lr_decay_multiplier=0.01, neural_dynamic_iterations_free=30, neural_dynamic_iterations_nudged=10)


def _batches(n_batches: int, batch: int):
    from infomorph.data import load_dataset

    d = load_dataset("mnist", standardize=False, limit_train=n_batches * batch * 2)
    x, y = d.x_train[: n_batches * batch], d.y_train[: n_batches * batch]
    return list(zip(torch.split(x, batch), torch.split(y, batch)))


def _time(fn, batches, warm: int = 10):
    for b in batches[:warm]:
        fn(*b)
    ts = []
    for b in batches[warm:]:
        t0 = time.perf_counter()
        fn(*b)
        ts.append(time.perf_counter() - t0)
    return statistics.median(ts) * 1e3


def authors(authors_dir: str, batches, hidden: int):
    sys.path.insert(0, authors_dir)
    import numpy as np
    from ContrastiveModels import ContrastiveCorInfoMaxHopfield  # noqa: E402 - theirs, from DIR
    from torch_utils import hard_sigmoid  # noqa: E402

    torch.manual_seed(0)
    np.random.seed(0)
    model = ContrastiveCorInfoMaxHopfield(architecture=[784, hidden, 10], lambda_=0.99999, epsilon=0.15,
                                          activation=hard_sigmoid, device=torch.device("cpu"))
    lr = {"ff": np.array([1.0, 0.7]), "fb": np.array([0.15, 0.15])}
    state = {"beta": 1}

    def step(x, y):
        state["beta"] = (2 * np.random.randint(2) - 1) * state["beta"]
        model.batch_step_hopfield(x.T, torch.nn.functional.one_hot(y, 10).T, SETTINGS["hopfield_g"], lr,
                                  SETTINGS["neural_lr_start"], SETTINGS["neural_lr_stop"], SETTINGS["neural_lr_rule"],
                                  SETTINGS["neural_lr_decay_multiplier"], SETTINGS["neural_dynamic_iterations_free"],
                                  SETTINGS["neural_dynamic_iterations_nudged"], state["beta"], False, False)

    return _time(step, batches)


def ours(batches, hidden: int):
    from infomorph.corinfomax import CorInfoMaxNet

    torch.manual_seed(0)
    net = CorInfoMaxNet(784, [hidden], 10)

    def step(x, y):
        net.train_step(x, torch.nn.functional.one_hot(y, 10).to(x.dtype))

    return _time(step, batches)


def floor(batches, hidden: int, steps: int = 40):
    """Every matrix product of our step, alone, into preallocated outputs."""
    b = batches[0][0].shape[0]
    g = torch.Generator().manual_seed(0)
    r = lambda *s: torch.rand(*s, generator=g)  # noqa: E731
    x, h, o = r(b, 784), r(b, hidden), r(b, 10)
    wff0, wff1, wfb1, lat0, lat1 = r(hidden, 784), r(10, hidden), r(hidden, 10), r(hidden, hidden), r(10, 10)
    oh, oo, ow0, ow1, ob0 = (torch.empty(b, hidden), torch.empty(b, 10), torch.empty(hidden, 784),
                             torch.empty(10, hidden), torch.empty(hidden, hidden))
    ob1, ofb = torch.empty(10, 10), torch.empty(hidden, 10)

    def products(*_):
        for _ in range(2):  # the layer-1 drive of each phase
            torch.mm(x, wff0.T, out=oh)
        for _ in range(steps):
            torch.mm(h, lat0, out=oh)  # lateral
            torch.mm(o, wfb1.T, out=oh)  # backward prediction into the hidden layer
            torch.mm(h, wff1.T, out=oo)  # forward drive of the output
            torch.mm(o, lat1, out=oo)
        for _ in range(2):  # free and nudged: errors and their correlations
            torch.mm(x, wff0.T, out=oh)
            torch.mm(oh.T, x, out=ow0)
            torch.mm(h, wff1.T, out=oo)
            torch.mm(oo.T, h, out=ow1)
            torch.mm(o, wfb1.T, out=oh)
            torch.mm(oh.T, o, out=ofb)
        torch.mm(h, lat0, out=oh)  # lateral updates
        torch.mm(oh.T, oh, out=ob0)
        torch.mm(o, lat1, out=oo)
        torch.mm(oo.T, oo, out=ob1)

    return _time(products, batches)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--authors", default=os.environ.get("CORINFOMAX_SRC"),
                   help="folder with the authors' ContrastiveModels.py and torch_utils.py (or CORINFOMAX_SRC)")
    p.add_argument("--batches", type=int, default=150)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--hidden", type=int, default=500)
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    batches = _batches(a.batches + 10, 20)
    rows = []
    if a.authors:
        rows.append(("authors' ContrastiveCorInfoMaxHopfield", authors(a.authors, batches, a.hidden)))
    rows.append(("infomorph --model corinfomax", ours(batches, a.hidden)))
    rows.append(("matrix products alone (floor)", floor(batches, a.hidden)))
    print(f"784-{a.hidden}-10, batch 20, 30 + 10 steps, {a.threads} thread(s), median of {a.batches} batches\n")
    print("| step | ms per batch | epoch (2400 batches) s | x ours |\n|---|---|---|---|")
    mine = [v for n, v in rows if n.startswith("infomorph")][0]
    for name, ms in rows:
        print(f"| {name} | {ms:.2f} | {ms * 2.4:.1f} | {ms / mine:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
