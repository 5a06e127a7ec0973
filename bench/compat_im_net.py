"""The published im_net with and without the drop-in (infomorph_kernels.compat.im_net), side by side.

    python bench/compat_im_net.py --im-net DIR [--version first|current] [--reps 7] [--threads 2]

DIR holds the published repository at that version (github.com/Priesemann-Group/
Infomorphic_Networks: 5284adf first, ecc3d7e current), so that ``import im_net`` finds it; a
moebius.pkl is written into a temporary working directory. In one process, on the same inputs,
each workload's training step (forward, ``IM_Layer.loss``, backward, Adam step) is timed with the
published code, then with the drop-in in "exact" and in "published" mode (rounds interleaved;
medians of the rounds' medians, ms). The published-mode loss and weight gradients are checked
against the published code's on the first step of every workload. Workloads:

- paper_trivariate: the hidden layer of Setup 1 (inputs 784 + 10 label context + 100 lateral,
  100 neurons, Schneider3SourceActivation, fixed 20 bins over (-20, 20), batch 1024);
- paper_hopfield: an IMHopfield layer (external pattern and internal state, 100 neurons each,
  SumActivation, fixed bins [2, 60] over (-20, 20)) with 20 patterns (its demo) and 200 patterns
  (alpha = 2.0, the capacity sweep's largest load).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from infomorph_kernels.compat import im_net as C  # noqa: E402


def workloads(im_model, prob_estim, version):
    AF = "im_net.activation_functions."
    g = torch.Generator().manual_seed(0)
    tri = dict(sizes=[784, 10, 100], N=100, B=1024, act=AF + "Schneider3SourceActivation", params={},
               binning=lambda: prob_estim.BinningFixedSize("cpu", [20, 20, 20], [[-20, 20]] * 3),
               gamma=[float(v) for v in torch.rand(19, generator=g) * 2 - 1])
    hop_params = {"beta": 1} if version == "current" else {}
    out = {"paper_trivariate (100 neurons, batch 1024)": tri}
    for P in (20, 200):
        out[f"paper_hopfield ({P} patterns, 100 neurons)"] = dict(
            sizes=[100, 100], N=100, B=P, act=AF + "SumActivation", params=hop_params,
            binning=lambda: prob_estim.BinningFixedSize("cpu", [2, 60], [[-20, 20], [-20, 20]]),
            gamma=[0.0, 0.0, 1.0, 0.0, 0.0])
    return out


def build(im_model, w):
    torch.manual_seed(1)
    n = len(w["sizes"])
    layer = im_model.IM_Layer(w["sizes"], w["N"], w["act"], w["binning"](), biases=[True] * n, connections=[1] * n,
                              activation_params=w["params"])
    layer.train()
    g = torch.Generator().manual_seed(2)
    if w["B"] == 1024:  # MNIST-like inputs: pixels in [0, 1], one-hot labels, +-1 lateral activity
        x = [torch.rand(w["B"], 784, generator=g), torch.eye(10)[torch.randint(0, 10, (w["B"],), generator=g)],
             torch.randint(0, 2, (w["B"], 100), generator=g).float() * 2 - 1]
    else:  # +-1 patterns: external input and internal state
        pat = torch.randint(0, 2, (w["B"], 100), generator=g).float() * 2 - 1
        x = [pat, pat.clone()]
    return layer, x


def step(layer, opt, x, gamma):
    opt.zero_grad()
    layer(x)
    loss = layer.loss(gamma)
    loss.backward()
    opt.step()
    return loss


def first_step(im_model, w):
    layer, x = build(im_model, w)
    layer(x)
    loss = layer.loss(w["gamma"])
    loss.backward()
    return float(loss), {k: p.grad.clone() for k, p in layer.named_parameters() if p.grad is not None}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--im-net", required=True)
    ap.add_argument("--version", choices=["first", "current"], default=None)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sys.path.insert(0, os.path.abspath(args.im_net))
    work = tempfile.mkdtemp()
    os.chdir(work)
    from im_net import im_model, prob_estim

    version = args.version or ("current" if hasattr(im_model, "InformationDecomposition") else "first")
    C.write_moebius_pkl(version, os.path.join(work, "moebius.pkl"))
    print(f"im_net {version} from {args.im_net}; torch {torch.__version__}, {args.threads} threads, float32")
    print("| workload | published code (ms) | drop-in exact (ms) | drop-in published (ms) | speed-up exact | speed-up published | published-mode max rel. error (loss, dW) |")
    print("|---|---|---|---|---|---|---|")
    for name, w in workloads(im_model, prob_estim, version).items():
        want_loss, want_g = first_step(im_model, w)
        with C.install(mode="published", module=im_model):
            got_loss, got_g = first_step(im_model, w)
        err_l = abs(got_loss - want_loss) / max(abs(want_loss), 1e-30)
        err_g = max(float((got_g[k] - want_g[k]).abs().max() / want_g[k].abs().max().clamp_min(1e-30)) for k in want_g)
        times = {"published code": [], "exact": [], "published": []}
        layers = {}
        for key in times:
            layer, x = build(im_model, w)
            layers[key] = (layer, torch.optim.Adam(layer.parameters(), lr=1e-3), x)
        for _ in range(args.rounds):
            for key in times:
                layer, opt, x = layers[key]
                handle = None if key == "published code" else C.install(mode=key, module=im_model)
                try:
                    step(layer, opt, x, w["gamma"])  # warm-up
                    ts = []
                    for _ in range(args.reps):
                        t0 = time.perf_counter()
                        step(layer, opt, x, w["gamma"])
                        ts.append(time.perf_counter() - t0)
                    times[key].append(statistics.median(ts))
                finally:
                    if handle is not None:
                        handle.uninstall()
        med = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        print(f"| {name} | {med['published code']:.2f} | {med['exact']:.2f} | {med['published']:.2f} | "
              f"{med['published code'] / med['exact']:.1f}x | {med['published code'] / med['published']:.1f}x | "
              f"{err_l:.1e}, {err_g:.1e} |", flush=True)


if __name__ == "__main__":
    main()
