"""Record the published im_net's outputs for tests/test_compat_im_net.py (run by hand, never in CI).

    python tests/data/record_im_net.py --version first   --im-net /path/to/first/checkout
    python tests/data/record_im_net.py --version current --im-net /path/to/current/checkout

``/path/to/.../checkout`` holds the published repository (github.com/Priesemann-Group/
Infomorphic_Networks: the first snapshot 5284adf, the current version ecc3d7e) so that
``import im_net.im_model`` finds it. Neither ships moebius.pkl: it is written into a temporary
working directory from this project's lattice, in the layout that version reads (current:
``{n: (antichains zero-based in gamma order, full set last, M)}``; first: ``{n: (antichains
one-based, M)}``, here in a shuffled order that the code reorders by its own list).

Every case builds a real ``IM_Layer`` of that version with seeded weights and inputs, runs its
forward pass in training mode and records: the layer's sources and thetas from ``save_for_loss``,
its loss for a gamma, its atoms (``return_atoms`` / ``return_information_tensor``), the gradient of
the loss with respect to the thetas and to every weight, and the binning's parameters. Written to
tests/data/im_net_<version>.pt (float64 and float32 cases).
"""
import argparse
import os
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(os.path.dirname(HERE)))
from infomorph_kernels.compat import im_net as im_net_compat  # noqa: E402


def binning_params(b):
    keys = ("n_bins", "normalize", "padding", "symmetric")
    d = {k: getattr(b, k) for k in keys if hasattr(b, k)}
    d["class"] = type(b).__name__
    d["edges"] = None if getattr(b, "edges", None) is None else [[float(v) for v in e] for e in b.edges]
    d["binedges"] = None if getattr(b, "binedges", None) is None else [e.clone() for e in b.binedges]
    return d


def run_case(im_model, prob_estim, version, name, n, activation, act_params, binning, gamma, dtype, scale, seed,
             B=256, N=4, sizes=None):
    torch.set_default_dtype(dtype)
    for f in ("load_reordered_moebius_function", "load_moebius_function"):
        if hasattr(im_model, f):
            getattr(im_model, f).cache_clear()  # cached in the dtype of its first call
    torch.manual_seed(seed)
    sizes = sizes or [12, 8, 6][:n]
    conn = [1] * n
    layer = im_model.IM_Layer(sizes, N, activation, binning, biases=[True] * n, connections=conn,
                              activation_params=act_params)
    with torch.no_grad():
        for s in layer.sources:
            s.weight.mul_(scale)
    layer.train()
    xs = [torch.randn(B, k) for k in sizes]
    layer(xs)
    val, thetas = layer.save_for_loss
    val = [v.detach().clone() for v in val]
    # the loss on leaf thetas (their gradient) and through the layer (the weights' gradients)
    th = thetas.detach().clone().requires_grad_(True)
    layer.save_for_loss = (val, th)
    if version == "current":
        loss_t, atoms = layer.loss(gamma, return_atoms=True)
    else:
        loss_t, atoms = layer.loss(gamma, return_information_tensor=True)
    (g_theta,) = torch.autograd.grad(loss_t, th)
    layer.zero_grad()
    layer(xs)
    loss_w = layer.loss(gamma)
    loss_w.backward()
    grads = {k: p.grad.detach().clone() for k, p in layer.named_parameters() if p.grad is not None}
    return dict(
        name=name, version=version, n=n, activation=activation, act_params=act_params, dtype=str(dtype), scale=scale,
        seed=seed, gamma=list(gamma), inputs=xs, state=dict((k, v.detach().clone()) for k, v in layer.state_dict().items()),
        sources=val, thetas=thetas.detach().clone(), loss=float(loss_t), atoms=atoms.detach().clone(),
        grad_theta=g_theta.detach().clone(), grad_params=grads, loss_w=float(loss_w), binning=binning_params(binning),
    )


def import_im_net(version, path):
    """The published im_model and prob_estim from ``path``, run from a temporary working directory
    that holds the moebius.pkl of that version."""
    sys.path.insert(0, os.path.abspath(path))
    work = tempfile.mkdtemp()
    im_net_compat.write_moebius_pkl(version, os.path.join(work, "moebius.pkl"), shuffle_seed=7 if version == "first" else None)
    os.chdir(work)
    from im_net import im_model, prob_estim

    return im_model, prob_estim


def record(im_model, prob_estim, v):
    """Every case of this version: (layer cases, dense pmf cases)."""
    AF = "im_net.activation_functions."
    g2 = [0.1, 0.1, 1.0, 0.1, 0.1]
    g2b = [0.3, -0.2, 0.7, 0.5, -0.1]
    g3 = list(np.round(np.random.default_rng(3).uniform(-1, 1, 19), 3))
    cases = []

    def fixed(nb, edges):
        return prob_estim.BinningFixedSize("cpu", nb, edges)

    def adaptive(nb, **kw):
        return prob_estim.BinningAdaptiveSize("cpu", nb, **kw)

    for dtype in (torch.float64, torch.float32):
        torch.set_default_dtype(dtype)
        tag = "f64" if dtype == torch.float64 else "f32"
        for scale, sname in ((1.0, "moderate"), (6.0, "saturated")):
            cases.append(run_case(im_model, prob_estim, v, f"tri_fixed20_{sname}_{tag}", 3, AF + "Schneider3SourceActivation", {},
                                  fixed([20, 20, 20], [[-20, 20]] * 3), g3, dtype, scale, 1))
            act = AF + "SumActivation"
            if v == "current":
                cases.append(run_case(im_model, prob_estim, v, f"bi_adaptive_norm_{sname}_{tag}", 2, act, {"beta": 1},
                                      adaptive([20, 20], normalize=True), g2, dtype, scale, 2))
                cases.append(run_case(im_model, prob_estim, v, f"bi_adaptive60_pad_{sname}_{tag}", 2, act, {"beta": 1},
                                      adaptive([20, 60], padding=0.5), g2b, dtype, scale, 3))
                cases.append(run_case(im_model, prob_estim, v, f"bi_fixednorm_{sname}_{tag}", 2, act, {"beta": 1},
                                      prob_estim.BinningFixedSize("cpu", [20, 20], [[-1, 1], [-0.5, 0.5]], normalize=True), g2b,
                                      dtype, scale, 4))
                cases.append(run_case(im_model, prob_estim, v, f"hopfield_fixed_2x60_{sname}_{tag}", 2, act, {"beta": 1},
                                      fixed([2, 60], [[-20, 20], [-20, 20]]), [0, 0, 1, 0, 0], dtype, 3 * scale, 5,
                                      B=20, N=10, sizes=[10, 10]))
            else:
                cases.append(run_case(im_model, prob_estim, v, f"bi_adaptive_norm_{sname}_{tag}", 2, act, {},
                                      adaptive([20, 20], normalize=True, symmetric=True), g2, dtype, scale, 2))
                cases.append(run_case(im_model, prob_estim, v, f"bi_adaptive60_{sname}_{tag}", 2, act, {},
                                      adaptive([20, 60]), g2b, dtype, scale, 3))
                cases.append(run_case(im_model, prob_estim, v, f"bi_adaptive_normonly_{sname}_{tag}", 2, act, {},
                                      adaptive([20, 20], normalize=True), g2b, dtype, scale, 4))
                cases.append(run_case(im_model, prob_estim, v, f"hopfield_fixed_2x60_{sname}_{tag}", 2, act, {},
                                      fixed([2, 60], [[-20, 20], [-20, 20]]), [0, 0, 1, 0, 0], dtype, 3 * scale, 5,
                                      B=20, N=10, sizes=[10, 10]))
            cases.append(run_case(im_model, prob_estim, v, f"bi_graetz_{sname}_{tag}", 2, AF + "GraetzActivation", {},
                                  fixed([20, 20], [[-20, 20], [-20, 20]]), g2b, dtype, scale, 6))
            cases.append(run_case(im_model, prob_estim, v, f"bi_graetz_heaviside_{sname}_{tag}", 2,
                                  AF + "GraetzActivationHeaviside", {}, fixed([20, 20], [[-20, 20], [-20, 20]]), g2b,
                                  dtype, scale, 7))
    # histogram level: the PID of random dense pmfs (float64) and its gradient for a weight tensor
    torch.set_default_dtype(torch.float64)
    dense = []
    for n, K, o in ((2, 5, 2), (3, 4, 2), (2, 4, 3)):
        g = torch.Generator().manual_seed(10 * n + K)
        p = torch.rand(*([K] * n), o, 3, generator=g) ** 3
        p[p < 0.05] = 0
        p = p / p.sum(tuple(range(n + 1)), keepdim=True)
        pl = p.clone().requires_grad_(True)
        if v == "current":
            im_model.load_reordered_moebius_function.cache_clear()
            out = im_model.InformationDecomposition(pl)
        else:
            im_model.load_moebius_function.cache_clear()
            holder = im_model.IM_Layer([2] * n, 1, AF + "SumActivation", fixed([K] * n, [[-1, 1]] * n), biases=[True] * n,
                                       connections=[1] * n)
            out = holder.pid(pl)
        w = torch.rand(out.shape, generator=g)
        (gp,) = torch.autograd.grad((w * out).sum(), pl)
        dense.append(dict(p=p, out=out.detach().clone(), weight=w, grad=gp))
    return cases, dense


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--version", choices=["first", "current"], required=True)
    ap.add_argument("--im-net", required=True)
    args = ap.parse_args()
    v = args.version
    im_model, prob_estim = import_im_net(v, args.im_net)
    cases, dense = record(im_model, prob_estim, v)
    torch.save({"version": v, "cases": cases, "dense": dense,
                "source": f"tests/data/record_im_net.py --version {v} (published im_net {'5284adf' if v == 'first' else 'ecc3d7e'})"},
               os.path.join(HERE, f"im_net_{v}.pt"))
    print(f"recorded {len(cases)} layer cases and {len(dense)} dense pmfs into tests/data/im_net_{v}.pt")


if __name__ == "__main__":
    main()
