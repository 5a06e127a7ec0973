"""Plots of the network layer share one way to get matplotlib: the non-interactive Agg backend,
or None where matplotlib is not installed (plots are optional; results are the JSON files); and a
training run's own plots (:func:`plot_results`)."""
from __future__ import annotations

import os
from typing import Callable, Dict, List

from .goals import readable_name


def pyplot():
    """matplotlib.pyplot on the Agg backend, or None when matplotlib is missing."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def save(fig, path: str) -> str:
    """Lay out, write as PNG (100 dpi), close; returns the path."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def plot_results(results: Dict, out_dir: str, log: Callable[[str], None] = print) -> List[str]:
    """accuracy.png (val/test per epoch) and atoms.png (last epoch's mean atoms per layer)."""
    plt = pyplot()
    if plt is None:
        log("note: matplotlib is not installed, skipping plots (pip install matplotlib)")
        return []
    hist = results["history"]
    if not hist:
        return []
    written = []
    ep = [h["epoch"] for h in hist]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ep, [float("nan") if h["val_accuracy"] is None else h["val_accuracy"] for h in hist], label="validation")
    tested = [h for h in hist if h.get("test_accuracy") is not None]
    ax.plot([h["epoch"] for h in tested], [h["test_accuracy"] for h in tested], label="test", marker="." if len(tested) < 2 else None)
    ax.plot(ep, [h["train_accuracy"] for h in hist], label="train (with context)", alpha=0.5)
    ax.set_xlabel("epoch")
    ax.set_ylabel("accuracy")
    cfg = results["config"]
    kind = cfg.get("model") or ("backprop" if cfg.get("backprop") else "infomorphic")
    title = kind if kind != "infomorphic" else f"goal {os.path.basename(str(cfg.get('goal')))}"
    sizes = "-".join(str(h) for h in cfg.get("hidden", []))
    ax.set_title(f"{cfg.get('dataset')}, setup {cfg.get('setup')}, N = {sizes}, {title}")
    ax.grid(alpha=0.3)
    ax.legend()
    written.append(save(fig, os.path.join(out_dir, "accuracy.png")))
    atoms = next((h["atoms"] for h in reversed(hist) if "atoms" in h), None)
    if atoms:
        fig, axes = plt.subplots(1, len(atoms), figsize=(4 + 3.5 * len(atoms), 4), squeeze=False,
                                 gridspec_kw={"width_ratios": [len(v) for v in atoms.values()]})
        for ax, (layer, vals) in zip(axes[0], atoms.items()):
            ax.bar(range(len(vals)), list(vals.values()), color=["C0"] * (len(vals) - 1) + ["C7"])
            ax.set_xticks(range(len(vals)))
            ax.set_xticklabels([readable_name(k) for k in vals], rotation=90, fontsize=7)
            ax.axhline(0, color="k", lw=0.5)
            ax.set_title(f"{layer} (epoch {hist[-1]['epoch']})")
            ax.set_ylabel("bits (mean over neurons)")
        written.append(save(fig, os.path.join(out_dir, "atoms.png")))
    return written
