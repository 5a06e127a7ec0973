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
from .config import TrainConfig, standardized
from .rundir import CHECKPOINT, load_checkpoint
from .train import batch_views, build_from_config, layer_names

OUTPUT = "local_atoms.json"


def load_run(run_dir: str, split: str = "test", data_dir: Optional[str] = None, backprop_ok: bool = True):
    """A trained run: ``(checkpoint state, TrainConfig, model with the final weights in eval
    mode, x, labels of the split)``, with one-line errors for a bad directory, split or run."""
    if split not in ("test", "val"):
        raise UserError(f"--split takes test or val, got {split!r}")
    if not os.path.isdir(run_dir):
        raise UserError(f"inspect: {run_dir!r} is not a run directory (one that python -m infomorph train --out wrote)")
    state = load_checkpoint(os.path.join(run_dir, CHECKPOINT), run_dir)
    cfg = TrainConfig.from_dict(state["config"])
    if cfg.model != "infomorphic" and not backprop_ok:
        raise UserError(f"inspect: {run_dir!r} is a {cfg.model} run; local atoms are of infomorphic layers "
                        f"(inspect --complexity takes any model)")
    data = load_dataset(cfg.dataset, data_dir or cfg.data_dir, cfg.val_fraction, cfg.seed, cfg.limit_train,
                        cfg.limit_test, standardize=standardized(cfg))
    x_all, y_all = (data.x_test, data.y_test) if split == "test" else (data.x_val, data.y_val)
    if x_all.shape[0] == 0:
        raise UserError(f"inspect: the {split} split of this run is empty")
    model = build_from_config(cfg, data.in_features, data.n_classes)
    model.load_state_dict(state["model"])
    model.eval()
    return state, cfg, model, x_all, y_all


def inspect_run(run_dir: str, split: str = "test", data_dir: Optional[str] = None, log=print,
                plots: bool = True) -> Dict:
    """Mean local atoms per label of every layer of the run in ``run_dir``; returns the JSON dict."""
    state, cfg, model, x_all, y_all = load_run(run_dir, split, data_dir, backprop_ok=False)
    names = layer_names(model)
    ik = engine()
    K = model.n_classes
    per = {}  # layer -> (sum [N, K, A + 1], weighted total [A + 1])
    counts = torch.zeros(K, dtype=torch.float64)
    gen_state = torch.get_rng_state()
    torch.manual_seed(cfg.seed)  # the passes sample +-1 outputs: reproducible per run
    try:
        for x, y in batch_views(cfg.batch_size, x_all, y_all):
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


# ------------------------------------------------------------------------------- --complexity
COMPLEXITY = "complexity.json"


@torch.no_grad()
def layer_activations(model, x: torch.Tensor) -> List[torch.Tensor]:
    """Firing probabilities ``[batch, N]`` of every layer (hidden..., output) in evaluation mode
    (no label context), for infomorphic and backprop networks alike; a model of its own kind
    (CorInfoMax) gives its activities in [0, 1] (``activations``)."""
    from .models import BackpropNet

    if hasattr(model, "activations"):
        return model.activations(x)
    if isinstance(model, BackpropNet):
        thetas, logits = model.passes_and_logits(x, None)
        return thetas + [torch.sigmoid(logits)]
    outs, out = model.run(x, None, grad=False)
    return [o.theta for o in outs] + [out.theta]


def complexity_of(activations: Dict[str, torch.Tensor], labels: torch.Tensor, group_size: int = 3,
                  groups="all", levels: int = 8, ranges=(0.0, 1.0), seed: int = 0) -> Dict[str, Dict]:
    """Degree-of-synergy profile and representational complexity about ``labels`` per named layer
    of activations ``[batch, N]`` (from any model: binned into ``levels`` over ``ranges``)."""
    ik = engine()
    out = {}
    for name, a in activations.items():
        n = min(group_size, a.shape[1])
        try:
            out[name] = ik.complexity_profile(a.double(), labels, n, groups=groups, bins=levels, ranges=ranges,
                                              seed=seed)
        except ValueError as e:
            raise UserError(f"--complexity ({name}): {e}") from None
    return out


def _checkpoints(run_dir: str) -> List[tuple]:
    """(epoch, path) of the kept checkpoints and the final one, by epoch."""
    found = {}
    folder = os.path.join(run_dir, "checkpoints")
    if os.path.isdir(folder):
        for f in os.listdir(folder):
            if f.startswith("epoch-") and f.endswith(".pt"):
                try:
                    found[int(f[6:-3])] = os.path.join(folder, f)
                except ValueError:
                    pass
    return sorted(found.items())


def complexity_run(run_dir: str, split: str = "test", data_dir: Optional[str] = None, group_size: int = 3,
                   groups="all", levels: int = 8, log=print, plots: bool = True) -> Dict:
    """``inspect --complexity``: per layer and per checkpoint (kept epochs, then the final model)
    the degree-of-synergy profile and the representational complexity about the label on the
    split; writes RUN_DIR/complexity.json and complexity.png."""
    import time

    state, cfg, model, x_all, y_all = load_run(run_dir, split, data_dir)
    stages = [(ep, torch.load(p, map_location="cpu", weights_only=False)["model"]) for ep, p in _checkpoints(run_dir)]
    final_epoch = len(state["history"])
    if not stages or stages[-1][0] != final_epoch:
        stages.append((final_epoch, state["model"]))
    names = layer_names(model)
    result = {"run": os.path.abspath(run_dir), "split": split, "group_size": group_size, "groups": groups,
              "levels": levels, "backprop": bool(cfg.backprop), "model": cfg.model, "epochs": [], "layers": {n: [] for n in names}}
    gen_state = torch.get_rng_state()
    try:
        for epoch, weights in stages:
            model.load_state_dict(weights)
            model.eval()
            torch.manual_seed(cfg.seed)  # the evaluation passes sample +-1 lateral outputs
            acts = [[] for _ in names]
            for (x,) in batch_views(cfg.batch_size, x_all):
                for k, a in enumerate(layer_activations(model, x)):
                    acts[k].append(a)
            t0 = time.perf_counter()
            prof = complexity_of({n: torch.cat(a) for n, a in zip(names, acts)}, y_all, group_size, groups, levels)
            result["epochs"].append(epoch)
            for n in names:
                result["layers"][n].append(dict(prof[n], epoch=epoch))
            log(f"epoch {epoch}: " + ", ".join(f"{n} complexity {prof[n]['complexity']:.3f}" for n in names)
                + f" ({time.perf_counter() - t0:.1f} s)")
    finally:
        torch.set_rng_state(gen_state)
    with open(os.path.join(run_dir, COMPLEXITY), "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=1)
    log(f"wrote {os.path.join(run_dir, COMPLEXITY)}")
    if plots:
        p = plot_complexity(result, os.path.join(run_dir, "complexity.png"))
        if p:
            log(f"wrote {p}")
    return result


def plot_complexity(result: Dict, path: str) -> Optional[str]:
    """Left: the degree-of-synergy profile (mean atoms per group by degree) of the last checkpoint
    per layer; right: the representational complexity per layer over the checkpoints."""
    plt = pyplot()
    if plt is None:
        return None
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    layers = list(result["layers"])
    n = result["group_size"]
    width = 0.8 / max(1, len(layers))
    for k, name in enumerate(layers):
        last = result["layers"][name][-1]
        axes[0].bar([d + 1 + (k - (len(layers) - 1) / 2) * width for d in range(len(last["profile_mean"]))],
                    last["profile_mean"], width=width, label=name)
        eps = [e["epoch"] for e in result["layers"][name]]
        axes[1].plot(eps, [e["complexity"] for e in result["layers"][name]], marker="o", label=name)
    axes[0].set_xticks(range(1, n + 1))
    axes[0].set_xlabel("degree of synergy")
    axes[0].set_ylabel("bits per group (mean)")
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set_title(f"profile, epoch {result['epochs'][-1]} ({result['split']} split)")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("representational complexity")
    axes[1].set_title(f"groups of {n}, {result['levels']} levels, {result.get('model') or ('backprop' if result['backprop'] else 'infomorphic')}")
    axes[1].grid(alpha=0.3)
    axes[1].legend(fontsize=8)
    return save(fig, path)
