"""Where a small layer's goal call goes: the whole public call, and torch's autograd frame alone.

    python bench/autograd_frame.py [--rounds 20] [--threads 2]

First the public calls on the suite's inputs (bench/cases.make_layer: bivariate adaptive 10 neurons,
trivariate 100 neurons): ``ik.pid_goal(...).sum().backward()`` and the same call without grad.
Then the frame alone (this replaced bench/small_layer_breakdown.py, whose raw-engine rows needed
a patched private function):

The bivariate 10-neuron call (`ik.pid_goal(...).sum().backward()`) is an engine call plus a frame:
an autograd node whose forward returns the goal [N] (saving dG/dtheta [B, N]) and whose backward
scales the saved derivative by the incoming gradient, then `.sum()` and `.backward()`. This times
that frame alone, around a dummy engine that only allocates the outputs, in three forms:

  builtin      ``(t * 2).sum().backward()``: two of torch's own C++ nodes, the least any frame costs
  python node  a torch.autograd.Function (as infomorph_kernels.autograd.CPUGoal)
  c++ node     the same node as a torch::autograd::Function compiled against torch's C++ API
               (torch.utils.cpp_extension.load_inline into a temporary folder: needs a C++
               compiler and ~30 s; the engine itself never links torch, see setup.py)

Rounds interleave the forms; the table gives the median and the fastest of the rounds' medians (us).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python"))
from infomorph.options import positive as _positive  # noqa: E402  (an int >= 1; argparse names the option)

CPP = r"""
#include <torch/extension.h>
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;
struct GoalNode : public torch::autograd::Function<GoalNode> {
  static variable_list forward(AutogradContext* ctx, torch::Tensor x, torch::Tensor theta, int64_t A) {
    const auto B = theta.size(0), N = theta.size(1);
    auto goal = torch::zeros({N}, theta.options());
    auto red = torch::empty({N, A}, theta.options()), h_y = torch::empty({N}, theta.options());
    auto dtheta = torch::empty({B, N}, theta.options());
    ctx->save_for_backward({dtheta});
    ctx->mark_non_differentiable({red, h_y});
    ctx->set_materialize_grads(false);
    return {goal, red, h_y};
  }
  static variable_list backward(AutogradContext* ctx, variable_list g) {
    if (!g[0].defined()) return {torch::Tensor(), torch::Tensor(), torch::Tensor()};
    return {torch::Tensor(), g[0].unsqueeze(0) * ctx->get_saved_variables()[0], torch::Tensor()};
  }
};
std::vector<torch::Tensor> goal(torch::Tensor x, torch::Tensor theta, int64_t A) {
  auto r = GoalNode::apply(x, theta, A);
  return {r[0], r[1], r[2]};
}
"""


class PyGoal(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, theta, A):
        B, N = theta.shape
        goal = torch.zeros((N,))
        red, h_y, dtheta = torch.empty((N, A)), torch.empty((N,)), torch.empty((B, N))
        ctx.save_for_backward(dtheta)
        ctx.mark_non_differentiable(red, h_y)
        ctx.set_materialize_grads(False)
        return goal, red, h_y

    @staticmethod
    def backward(ctx, g_goal, g_red, g_hy):
        if g_goal is None:
            return None, None, None
        return None, g_goal.unsqueeze(0) * ctx.saved_tensors[0], None


def public_calls(threads: int) -> None:
    """The whole call with and without the gradient, public API only."""
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import infomorph_kernels as ik
    from cases import Case, make_layer

    print(f"public calls, {threads} threads (median / fastest of the repeats, us)")
    print("| layer | pid_goal fwd+bwd | pid_goal without grad |\n|---|---|---|")
    for N, n, ad, reps in [(10, 2, True, 2000), (100, 3, False, 200)]:
        x, theta, gamma = make_layer(Case("cpu", N, n, 20, "float32", "fwd+bwd", adaptive=ad), "cpu")
        kw = dict(bins=20, ranges="adaptive" if ad else (-20.0, 20.0), validate=False)

        def full():
            t = theta.detach().requires_grad_()
            ik.pid_goal(x, t, gamma, **kw).sum().backward()

        def no_grad():
            with torch.no_grad():
                ik.pid_goal(x, theta, gamma, **kw)

        cells = []
        for fn in (full, no_grad):
            for _ in range(20):
                fn()
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            cells.append(f"{statistics.median(ts) * 1e6:.1f} / {min(ts) * 1e6:.1f}")
        print(f"| n={n} N={N}{' adaptive' if ad else ''} | {cells[0]} | {cells[1]} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=_positive, default=20)
    ap.add_argument("--threads", type=_positive, default=2)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    public_calls(a.threads)
    from torch.utils.cpp_extension import load_inline

    with tempfile.TemporaryDirectory() as build:
        ext = load_inline("goal_node_bench", cpp_sources=CPP, functions=["goal"], build_directory=build,
                          extra_cflags=["-O2"])
    theta, x = torch.rand(1024, 10), torch.rand(1024, 10, 2)

    def builtin():
        t = theta.detach().requires_grad_()
        (t * 2).sum().backward()

    def python_node():
        t = theta.detach().requires_grad_()
        PyGoal.apply(x, t, 4)[0].sum().backward()

    def cpp_node():
        t = theta.detach().requires_grad_()
        ext.goal(x, t, 4)[0].sum().backward()

    forms = {"builtin": builtin, "python node": python_node, "c++ node": cpp_node}
    for fn in forms.values():
        for _ in range(300):
            fn()
    res = {k: [] for k in forms}
    for _ in range(a.rounds):
        for k, fn in forms.items():
            ts = []
            for _ in range(200):
                t0 = time.perf_counter()
                fn()
                ts.append(time.perf_counter() - t0)
            res[k].append(statistics.median(ts) * 1e6)
    print(f"frame of a 10-neuron goal, batch 1024, {a.threads} threads, {a.rounds} rounds")
    print("| form | median (us) | fastest round (us) |\n|---|---|---|")
    for k, v in res.items():
        print(f"| {k} | {statistics.median(v):.1f} | {min(v):.1f} |")


if __name__ == "__main__":
    main()
