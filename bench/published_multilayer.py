"""The published code's deep model (800-200-10), trained on this project's MNIST files (issue 12).

    python bench/published_multilayer.py --im-net DIR [--seed 0] [--epochs 100] [--threads 2]
        [--mode published|exact] [--out runs/published_multilayer]

DIR holds the published repository (github.com/Priesemann-Group/Infomorphic_Networks; its first
snapshot 5284adf has the ``im_net`` package this needs) so that ``import im_net`` finds it. Its
layers (``im_net.im_model.IM_Layer``, its activations, binnings and read-out helpers) run
unchanged; only ``IM_Layer.loss`` runs on this engine through the drop-in
(:mod:`infomorph_kernels.compat.im_net`, ``--mode published``: the published numerics and bins).

What this script supplies is what the published multilayer script (paper_trivariate/
base_model_multilayer.py of ecc3d7e, with models/infomorphic_context_lateral_multilayer.yaml,
base_config.yaml and goals/infomorphic_context_lateral/hierarchical.yaml) configures, read from
those files and restated here:

- data: MNIST standardized by the training images' mean and standard deviation (of the pixel values
  0..255), 20 % of the training images held out for validation by ``random_split`` with the seed,
  batches of 1024 in a fresh random order each epoch (also for validation and test);
- hidden layers 800 and 200 neurons, sources (feedforward, label, lateral), at most 100 lateral
  inputs per neuron without self-connection, ``Schneider3SourceActivation`` c1 = c2 = 0.1, all
  biases, fixed 20 bins over (-20, 20) per source (``normalize: True``, unused by that binning);
  the hierarchical goal in both;
- output layer: 10 neurons, sources (the second hidden layer's output, the own label element with
  weight 1 reset before every batch), ``GraetzActivation`` k1 = 1, adaptive 20 bins, normalized,
  goal (-0.2, 0.1, 1.0, 0.1, 0);
- 8 passes per batch: hidden layer 1, hidden layer 2 and the output layer each sampled per pass
  (label as every context), then the output layer's probabilities; every layer's goal on its last
  call; the losses backpropagated one after another;
- optimizers: each layer's Adam appended twice (``configure_optimizers`` appends in its ``else``
  branch and once more after it), so two Adam steps with the same gradient per batch; layer 1
  lr 0.002 weight decay 3.5e-4, layer 2 lr 0.003 weight decay 1.5e-4 (optimizer1 and 2 of
  base_config.yaml). The output layer's optimizer is commented out in that file (optimizer3: lr
  0.004, weight decay 1e-4): this script uses those commented values (``--output-lr``,
  ``--output-wd`` change them);
- epoch 0 evaluates without updates; evaluation with a zero label, sampled hidden passes, each
  output neuron with batch mean >= 0.5 read inverted (``correct_inverse_neurons(...,
  invert_others=True)`` then ``acc_continuous``), accuracy the mean over the batches.

Writes ``OUT/seed-S/results.json`` (per epoch: train / validation / test accuracy, seconds) after
every epoch, so a stopped run keeps what it did. An epoch takes ~46 s of training and ~17 s of
evaluation on 2 cores (the 8 passes recompute every product): ``--eval-every 5`` saves most of the
latter. The batch orders of training and evaluation share one generator, so the training of a run
with another ``--eval-every`` is not the same sequence.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import types

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HIERARCHICAL = [0.3, 1, 0, 0, 0, 0, 0, 0.1, 0.1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]  # hierarchical.yaml
OUTPUT_GOAL = [-0.2, 0.1, 1.0, 0.1, 0]  # base_config.yaml output_layer.gamma


def sparse_connectivity(n: int, max_con: int, gen: torch.Generator) -> torch.Tensor:
    """At most ``max_con`` of the other n - 1 neurons per row, never the neuron itself."""
    if max_con >= n:
        return 1 - torch.eye(n)
    con = torch.zeros(n, n)
    for i in range(n):
        others = torch.zeros(n - 1)
        others[torch.randperm(n - 1, generator=gen)[:max_con]] = 1
        con[i] = torch.cat((others[:i], torch.zeros(1), others[i:]))
    return con


def load_data(seed: int):
    sys.path.insert(0, os.path.join(ROOT, "python"))
    from infomorph import data as D

    x_tr, y_tr, x_te, y_te = D.load_mnist_raw()
    # this project's copy holds k / 256 (k = 0..255) in float32: back to the pixel values k
    k_tr = torch.from_numpy(np.rint(x_tr * 256.0)).float().reshape(-1, 784)
    k_te = torch.from_numpy(np.rint(x_te * 256.0)).float().reshape(-1, 784)
    mean, std = k_tr.mean(), k_tr.std()
    x_train, x_test = (k_tr - mean) / std, (k_te - mean) / std
    n_val = int(np.ceil(0.2 * len(x_train)))
    perm = torch.randperm(len(x_train), generator=torch.Generator().manual_seed(seed))
    val_idx, tr_idx = perm[len(x_train) - n_val:], perm[: len(x_train) - n_val]  # random_split's order
    return ((x_train[tr_idx], torch.from_numpy(y_tr)[tr_idx]), (x_train[val_idx], torch.from_numpy(y_tr)[val_idx]),
            (x_test, torch.from_numpy(y_te)))


def batches(x, y, size, gen):
    order = torch.randperm(len(x), generator=gen)
    for s in range(0, len(x), size):
        idx = order[s: s + size]
        yield x.index_select(0, idx), y.index_select(0, idx)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--im-net", required=True, help="directory holding the published im_net package")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--epochs", type=int, default=100)
    ap.add_argument("--passes", type=int, default=8)
    ap.add_argument("--hidden", default="800,200")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--mode", default="published", choices=("published", "exact"))
    ap.add_argument("--output-lr", type=float, default=0.004)
    ap.add_argument("--output-wd", type=float, default=1e-4)
    ap.add_argument("--eval-every", type=int, default=1,
                    help="validation and test every this many epochs (and after epochs 0 and the last)")
    ap.add_argument("--out", default=os.path.join(ROOT, "runs", "published_multilayer"))
    args = ap.parse_args(argv)
    for name in ("epochs", "passes", "threads", "eval_every"):
        if getattr(args, name) < (0 if name == "epochs" else 1):
            ap.error(f"--{name.replace('_', '-')} must be >= {0 if name == 'epochs' else 1}, got {getattr(args, name)}")
    try:
        h1, h2 = (int(v) for v in args.hidden.split(","))
    except ValueError:
        ap.error(f"--hidden must be two sizes like 800,200, got {args.hidden!r}")
    if min(h1, h2) < 1:
        ap.error(f"--hidden sizes must be >= 1, got {args.hidden!r}")
    if not os.path.isdir(os.path.join(args.im_net, "im_net")):
        ap.error(f"--im-net: {args.im_net!r} holds no im_net package (the published repository's root is expected)")
    torch.set_num_threads(args.threads)
    torch.set_default_dtype(torch.float32)
    # im_net.helper_functions imports sklearn for a confusion matrix this script does not use
    if "sklearn" not in sys.modules:
        try:
            import sklearn.metrics  # noqa: F401
        except ImportError:
            sk, skm = types.ModuleType("sklearn"), types.ModuleType("sklearn.metrics")
            skm.confusion_matrix = None
            sk.metrics = skm
            sys.modules.update({"sklearn": sk, "sklearn.metrics": skm})
    sys.path.insert(0, os.path.abspath(args.im_net))
    sys.path.insert(0, ROOT)
    from im_net import helper_functions as hf
    from im_net import im_model, prob_estim

    from infomorph_kernels.compat import im_net as drop_in

    handle = drop_in.install(mode=args.mode)

    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    (xtr, ytr), (xva, yva), (xte, yte) = load_data(args.seed)
    hidden_bins = prob_estim.BinningFixedSize("cpu", [20, 20, 20], [[-20, 20]] * 3, normalize=True)
    output_bins = prob_estim.BinningAdaptiveSize("cpu", [20, 20], normalize=True)
    gen = torch.Generator().manual_seed(args.seed)
    AF = "im_net.activation_functions."

    def layer(sizes, n, act, bins, connections, params):
        return im_model.IM_Layer(sizes, n, AF + act, binning=bins, connections=connections,
                                 biases=[True] * len(sizes), discrete_output_values=[-1, 1], activation_params=params)

    tri = {"c1": 0.1, "c2": 0.1}
    l1 = layer([784, 10, h1], h1, "Schneider3SourceActivation", hidden_bins, [1, 1, sparse_connectivity(h1, 100, gen)], tri)
    l2 = layer([h1, 10, h2], h2, "Schneider3SourceActivation", hidden_bins, [1, 1, sparse_connectivity(h2, 100, gen)], tri)
    out = layer([h2, 10], 10, "GraetzActivation", output_bins, [1, torch.eye(10)], {"k1": 1})
    eye = torch.eye(10)
    groups = [(l1, 0.002, 3.5e-4), (l2, 0.003, 1.5e-4), (out, args.output_lr, args.output_wd)]
    optims = [torch.optim.Adam(m.parameters(), lr=lr, weight_decay=wd) for m, lr, wd in groups for _ in range(2)]

    def forward(x, c):
        B = x.shape[0]
        o1, o2 = torch.zeros(B, h1), torch.zeros(B, h2)
        for _ in range(args.passes):
            o1 = l1.forward([x, c, o1], sample=True).detach()
            o2 = l2.forward([o1, c, o2], sample=True).detach()
            out.forward([o2, c], sample=True)
        return out.forward([o2, c], sample=False).detach()

    def accuracy(pred, onehot):
        return hf.acc_continuous(hf.correct_inverse_neurons(pred[:, :, 1], invert_others=True), onehot)

    def evaluate(x, y, order_gen):
        accs = []
        with torch.no_grad():
            for xb, yb in batches(x, y, 1024, order_gen):
                onehot = torch.nn.functional.one_hot(yb, 10).float()
                accs.append(accuracy(forward(xb, torch.zeros_like(onehot)), onehot))
        return float(np.mean(accs))

    run_dir = os.path.join(args.out, f"seed-{args.seed}")
    os.makedirs(run_dir, exist_ok=True)
    log = dict(command=" ".join(sys.argv), drop_in=dict(version=handle.version, mode=args.mode),
               hidden=[h1, h2], passes=args.passes, output_optim=dict(lr=args.output_lr, weight_decay=args.output_wd),
               threads=args.threads, torch=torch.__version__, epochs=[])
    order = torch.Generator().manual_seed(args.seed + 1)
    t_start = time.time()
    for epoch in range(args.epochs + 1):
        t0 = time.time()
        train_accs = []
        for xb, yb in batches(xtr, ytr, 1024, order):
            with torch.no_grad():
                out.sources[1].weight[:] = eye
            for o in optims:
                o.zero_grad(set_to_none=True)
            onehot = torch.nn.functional.one_hot(yb, 10).float()
            pred = forward(xb, onehot)
            losses = [l1.loss(gamma=HIERARCHICAL, return_information=True), l2.loss(gamma=HIERARCHICAL, return_information=True),
                      out.loss(gamma=OUTPUT_GOAL, return_information=True)]
            for i, (loss, _) in enumerate(losses):
                loss.backward(retain_graph=i < len(losses) - 1)
            if epoch > 0:
                for o in optims:
                    o.step()
            train_accs.append(accuracy(pred, onehot))
        t_train = time.time() - t0
        if epoch % args.eval_every == 0 or epoch == args.epochs:
            val, test = evaluate(xva, yva, order), evaluate(xte, yte, order)
        else:
            val = test = None
        row = dict(epoch=epoch, train=float(np.mean(train_accs)), val=val, test=test,
                   train_seconds=round(t_train, 2), seconds=round(time.time() - t0, 2))
        log["epochs"].append(row)
        log["seconds"] = round(time.time() - t_start, 1)
        with open(os.path.join(run_dir, "results.json.tmp"), "w") as fh:
            json.dump(log, fh, indent=1)
        os.replace(os.path.join(run_dir, "results.json.tmp"), os.path.join(run_dir, "results.json"))
        print(f"epoch {epoch}: train {row['train']:.4f} val {val} test {test} ({row['seconds']} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
