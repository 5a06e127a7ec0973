"""Command line: ``python -m infomorph train --dataset mnist --setup 1 --hidden 100 --goal optimized
--epochs 100 --seed 0 --out DIR`` (``python -m infomorph train -h`` lists every option)."""
from __future__ import annotations

import argparse
import json
import sys
from typing import List, Optional

import torch

from .data import DATASETS
from .train import TrainConfig, train


def _hidden(s: str) -> List[int]:
    try:
        sizes = [int(v) for v in s.replace("-", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--hidden takes sizes like 100 or 800,200, got {s!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"--hidden takes positive sizes, got {s!r}")
    return sizes


def _lateral(s: str) -> Optional[int]:
    if s.lower() in ("dense", "all", "none"):
        return None
    k = int(s)
    if k < 0:
        raise argparse.ArgumentTypeError("--lateral-k must be >= 0 or 'dense'")
    return k


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m infomorph", description="Infomorphic networks on the I_sx PID engine.")
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a network and write results.json, a checkpoint and plots")
    # "synthetic" is a tiny built-in problem for tests and smoke runs; not advertised
    t.add_argument("--dataset", default="mnist", choices=DATASETS, metavar="{mnist,fashion-mnist}")
    t.add_argument("--setup", type=int, default=1, choices=(1, 2, 3),
                   help="1: dense lateral, label context; 2: at most 100 lateral inputs; 3: 2 + output feedback as context")
    t.add_argument("--hidden", type=_hidden, default=[100], help="hidden sizes: 100, or 800,200 for a deeper stack")
    t.add_argument("--goal", default="optimized", help="hidden goal: heuristic, optimized, or a .yaml/.json file")
    t.add_argument("--output-goal", default="output", help="output layer goal: output (the paper's) or a file")
    t.add_argument("--epochs", type=int, default=None, help="epochs (default 100; with --resume: the stored number)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output directory (results.json, checkpoint.pt, plots)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR (its stored config; --epochs may extend it)")
    t.add_argument("--backprop", action="store_true", help="the backprop baseline (Setup 1 connectivity, cross-entropy)")
    t.add_argument("--backend", default="auto", help="engine backend: auto, reference, cpu, cuda, triton")
    t.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    t.add_argument("--batch-size", type=int, default=1024)
    t.add_argument("--limit-train", type=int, default=None, metavar="N", help="use only N training samples")
    t.add_argument("--limit-test", type=int, default=None, metavar="N", help="use only the first N test samples")
    t.add_argument("--data-dir", default=None, help="where the data files are (default: the installed packages)")
    t.add_argument("--lateral-k", type=_lateral, default=-1, metavar="K",
                   help="lateral inputs per neuron (overrides the setup; 'dense' for all)")
    t.add_argument("--activation", default="trivariate", choices=("trivariate", "linear"))
    t.add_argument("--passes", type=int, default=2, help="passes of the hidden layers per batch")
    t.add_argument("--bins", type=int, default=20)
    t.add_argument("--eval-context", default="zero", choices=("zero", "bias"))
    t.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "train":
        if args.resume is None and args.out is None:
            print("error: --out DIR (or --resume DIR) is required", file=sys.stderr)
            return 2
        cfg = TrainConfig(
            dataset=args.dataset, setup=args.setup, hidden=args.hidden, goal=args.goal, output_goal=args.output_goal,
            epochs=args.epochs, seed=args.seed, batch_size=args.batch_size, backprop=args.backprop,
            backend=args.backend, device=args.device, limit_train=args.limit_train, limit_test=args.limit_test,
            data_dir=args.data_dir, lateral_k=args.lateral_k, activation=args.activation, passes=args.passes,
            bins=args.bins, eval_context=args.eval_context,
        )
        if args.threads is not None:
            torch.set_num_threads(max(1, args.threads))
        out = args.resume or args.out
        res = train(cfg, out, resume=args.resume is not None, show_progress=not args.no_progress)
        print(json.dumps({"out": out, "epochs_done": res["epochs_done"], "test_accuracy": res["test_accuracy"],
                          "val_accuracy": res["val_accuracy"], "wall_seconds": round(res["wall_seconds"], 1)}))
    return 0
