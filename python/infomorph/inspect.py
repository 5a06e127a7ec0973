"""``python -m infomorph inspect RUN_DIR``: which labels each layer's information is made of.

Loads a trained run, replays the training pass (label context, as each layer's goal sees it) on
the test or validation split batch by batch, asks the engine for the local atoms of every sample
(``ik.pid(..., local=True)``), weights them by p(y | sample) and averages them per label, per
neuron and over the layer. Writes into RUN_DIR:

- ``local_atoms.json``: per layer the atom names (machine-readable, with H_res), the mean local
  atoms per label (over neurons), per neuron and label, and over the whole split;
- ``local_atoms_<layer>.png``: a label x atom heatmap per layer (atoms in the paper's F/C/L names;
  H_res, an entropy of another scale, only in the JSON).

The label-frequency-weighted mean of the per-label rows is the layer's mean atoms over the split
(the averaging identity of local atoms), which the JSON lets anyone check.
"""
from __future__ import annotations

import json
import os
from typing import Dict, List, Optional

import torch
import torch.nn.functional as F

from ._engine import engine
from .data import load_dataset
from .errors import UserError
from ._plots import pyplot, save
from .goals import gamma_names, readable_name
from .train import CHECKPOINT, TrainConfig, _batches, _load_checkpoint, build_from_config, layer_names

OUTPUT = "local_atoms.json"


def inspect_run(run_dir: str, split: str = "test", data_dir: Optional[str] = None, log=print,
                plots: bool = True) -> Dict:
    """Mean local atoms per label of every layer of the run in ``run_dir``; returns the JSON dict."""
    if split not in ("test", "val"):
        raise UserError(f"--split takes test or val, got {split!r}")
    if not os.path.isdir(run_dir):
        raise UserError(f"inspect: {run_dir!r} is not a run directory (one that python -m infomorph train --out wrote)")
    state = _load_checkpoint(os.path.join(run_dir, CHECKPOINT), run_dir)
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.backprop:
        raise UserError(f"inspect: {run_dir!r} is a backprop run; local atoms are of infomorphic layers")
    data = load_dataset(cfg.dataset, data_dir or cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit_train,
                        cfg.limit_test)
    x_all, y_all = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    if x_all.shape[0] == 0:
        raise UserError(f"inspect: the {split} split of this run is empty")
    model = build_from_config(cfg, data.in_features, data.n_classes)
    model.load_state_dict(state["model"])
    model.eval()
    names = layer_names(model)
    ik = engine()
    K = data.n_classes
    per = {}  # layer -> (sum [N, K, A + 1], weighted total [A + 1])
    counts = torch.zeros(K, dtype=torch.float64)
    gen_state = torch.get_rng_state()
    torch.manual_seed(cfg.seed)  # the passes sample +-1 outputs: reproducible per run
    try:
        for idx in _batches(x_all.shape[0], cfg.batch_size):
            x, y = x_all[idx], y_all[idx]
            with torch.no_grad():
                outs, out = model.run(x, F.one_hot(y, K).to(x.dtype), grad=False)
            counts += torch.bincount(y, minlength=K).double()
            for name, layer, o in zip(names, model.layers, list(outs) + [out]):
                res = ik.pid(o.sources, o.theta, bins=layer.bins, ranges=layer.ranges, backend=layer.backend,
                             local=True)
                w = torch.stack([1 - o.theta, o.theta], dim=-1).double()  # p(y | sample): silent, fire
                la = (w.unsqueeze(-1) * res.local_atoms.double()).sum(2)  # [B, N, A]
                lh = (w * res.local_h_res.double()).sum(2)  # [B, N]
                vals = torch.cat([la, lh.unsqueeze(-1)], dim=-1)  # [B, N, A + 1]
                acc = per.setdefault(name, torch.zeros(vals.shape[1], K, vals.shape[2], dtype=torch.float64))
                acc.index_add_(1, y, vals.transpose(0, 1))
    finally:
        torch.set_rng_state(gen_state)
    result = {"run": os.path.abspath(run_dir), "split": split, "samples": int(counts.sum()),
              "label_counts": [int(c) for c in counts], "layers": {}}
    present = counts > 0
    for name, layer in zip(names, model.layers):
        acc = per[name]
        per_label = torch.zeros_like(acc)
        per_label[:, present] = acc[:, present] / counts[present].view(1, -1, 1)
        mean_label = per_label.mean(0)  # [K, A + 1], over neurons
        overall = acc.sum(1).mean(0) / counts.sum()
        atom_names = gamma_names(layer.n_sources)
        result["layers"][name] = {
            "atoms": atom_names,
            "per_label": {str(k): dict(zip(atom_names, mean_label[k].tolist())) for k in range(K)},
            "per_neuron": per_label.tolist(),  # [neuron][label][atom]
            "mean": dict(zip(atom_names, overall.tolist())),
        }
    with open(os.path.join(run_dir, OUTPUT), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    log(f"wrote {os.path.join(run_dir, OUTPUT)}")
    if plots:
        for p in plot_local_atoms(result, run_dir):
            log(f"wrote {p}")
    return result


def plot_local_atoms(result: Dict, out_dir: str) -> List[str]:
    """One label x atom heatmap per layer (diverging, centred at 0 bits; H_res only in the JSON)."""
    plt = pyplot()
    if plt is None:
        return []
    written = []
    for name, lay in result["layers"].items():
        atoms = [a for a in lay["atoms"] if a != "H_res"]  # an entropy, of another scale: in the JSON
        labels = sorted(lay["per_label"], key=int)
        m = torch.tensor([[lay["per_label"][k][a] for a in atoms] for k in labels])
        lim = float(m.abs().max()) or 1.0
        fig, ax = plt.subplots(figsize=(2 + 0.45 * len(atoms), 1.5 + 0.35 * len(labels)))
        im = ax.imshow(m.numpy(), cmap="RdBu_r", vmin=-lim, vmax=lim, aspect="auto")
        ax.set_xticks(range(len(atoms)))
        ax.set_xticklabels([readable_name(a) for a in atoms], rotation=90, fontsize=7)
        ax.set_yticks(range(len(labels)))
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_ylabel("label")
        ax.set_title(f"{name}: mean local atoms per label ({result['split']} split), bits", fontsize=9)
        fig.colorbar(im, ax=ax, fraction=0.03)
        written.append(save(fig, os.path.join(out_dir, f"local_atoms_{name}.png")))
    return written
