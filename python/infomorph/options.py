"""The command line's shared options and their checks: the network, data and engine options that
``train``, ``search`` and ``sweep`` take alike (:func:`add_model_options`), the TrainConfig they make
(:func:`config_from_args`), argparse types that name the option in a one-line error, and the
parser class whose errors are one line (exit 2)."""
from __future__ import annotations

import argparse
from typing import List, Optional

from .data import DATASETS
from .errors import UserError
from .models import DEFAULT_HIDDEN_OPTIM, DEFAULT_OUTPUT_OPTIM
from .config import TrainConfig


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error (no usage block): ``PROG: error: MESSAGE (see PROG -h)``, exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} -h)\n")


def _hidden(s: str) -> List[int]:
    try:
        sizes = [int(v) for v in s.replace("-", ",").split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"takes sizes like 100 or 800,200, got {s!r}") from None
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"takes positive sizes like 100 or 800,200, got {s!r}")
    return sizes


def _int_at_least(s: str, low: int, expected: str) -> int:
    """An argparse type's int >= low; anything else is the one-line error 'takes EXPECTED, got S'."""
    try:
        v = int(s)
    except ValueError:
        v = low - 1
    if v < low:
        raise argparse.ArgumentTypeError(f"takes {expected}, got {s!r}")
    return v


def _lateral(s: str) -> Optional[int]:
    if s.lower() in ("dense", "all", "none"):
        return None
    return _int_at_least(s, 0, "an int >= 0 or 'dense'")


def positive(s: str) -> int:
    return _int_at_least(s, 1, "an int >= 1")


def threads_option(text: str) -> Optional[int]:
    """``--threads auto|N``: None for auto (the usable cores not busy elsewhere, looked at again
    while it runs: infomorph_kernels.threads), else N >= 1 (fixed; bit-repeatable runs)."""
    return None if text == "auto" else _int_at_least(text, 1, "auto or an int >= 1")


def _fraction(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not 0.0 <= v < 1.0:
        raise argparse.ArgumentTypeError(f"takes a number in [0, 1), got {text!r}")
    return v


def _learning_rate(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        v = float("nan")
    if not (v > 0.0 and v < float("inf")):
        raise argparse.ArgumentTypeError(f"takes a positive finite number, got {text!r}")
    return v


def add_model_options(t: argparse.ArgumentParser, epochs_help: str = "epochs (default 100; with --resume: the stored number)") -> None:
    """The options that describe the network, data and engine (train's, and the goal search's)."""
    # "synthetic" is a tiny built-in problem for tests and smoke runs; not advertised
    t.add_argument("--dataset", default="mnist", choices=DATASETS, metavar="{mnist,fashion-mnist,cifar10}")
    t.add_argument("--setup", type=int, default=1, choices=(1, 2, 3),
                   help="1: dense lateral, label context; 2: at most 100 lateral inputs; 3: 2 + output feedback as context")
    t.add_argument("--hidden", type=_hidden, default=[100], help="hidden sizes: 100, or 800,200 for a deeper stack")
    t.add_argument("--output-goal", default="output", help="output layer goal: output (the paper's) or a file")
    t.add_argument("--epochs", type=positive, default=None, help=epochs_help)
    t.add_argument("--backend", default="auto", help="engine backend: auto, reference, cpu, cuda, triton")
    t.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    t.add_argument("--batch-size", type=positive, default=None,
                   help="samples per batch (default 1024; CorInfoMax: 20, the authors')")
    t.add_argument("--model", default="infomorphic", metavar="KIND",
                   help="infomorphic (default), backprop (the baseline, as --backprop) or corinfomax (Bozkurt et "
                        "al. 2023: its own local rule and settings; --hidden sets its layers, default epochs 50)")
    t.add_argument("--limit-train", type=int, default=None, metavar="N", help="use only N training samples")
    t.add_argument("--val-fraction", type=_fraction, default=0.2, metavar="F",
                   help="share of the training set held out for validation (default 0.2; 0: train on all of it, "
                        "as CorInfoMax's and most published MNIST figures, no validation accuracy)")
    t.add_argument("--limit-test", type=positive, default=None, metavar="N", help="use only the first N test samples")
    t.add_argument("--data-dir", default=None, help="where the data files are (default: the installed packages)")
    t.add_argument("--lateral-k", type=_lateral, default=-1, metavar="K",
                   help="lateral inputs per neuron (overrides the setup; 'dense' for all)")
    t.add_argument("--context", default=None, choices=("label", "feedback", "label+feedback"),
                   help="the last hidden layer's context (overrides the setup's): the label, the output layer's "
                        "feedback (Setup 3), or both side by side (the paper's 1600-400-10 stack)")
    t.add_argument("--hidden-sources", default="FCL", choices=("FCL", "FC", "FL"),
                   help="FCL: trivariate hidden neurons (the paper's setups); FC: bivariate, context only; FL: bivariate, lateral only")
    t.add_argument("--activation", default="trivariate", choices=("trivariate", "linear"))
    t.add_argument("--passes", type=positive, default=2, help="passes of the hidden layers per batch")
    t.add_argument("--bins", type=positive, default=20)
    t.add_argument("--hidden-lr", type=_learning_rate, default=None, metavar="LR",
                   help=f"Adam learning rate of every hidden layer (default {DEFAULT_HIDDEN_OPTIM['lr']}, the paper's)")
    t.add_argument("--output-lr", type=_learning_rate, default=None, metavar="LR",
                   help=f"Adam learning rate of the output layer (default {DEFAULT_OUTPUT_OPTIM['lr']}, the paper's)")
    t.add_argument("--eval-context", default="zero", choices=("zero", "bias"))
    t.add_argument("--threads", type=threads_option, default=None, metavar="auto|N",
                   help="CPU threads: auto (default) takes the usable cores that other processes do not keep busy, "
                        "looked at again while it runs; N fixes the count (bit-repeatable runs)")
    t.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args, **overrides) -> TrainConfig:
    """The TrainConfig of parsed model options (``overrides`` set the rest: goal, seed, ...)."""
    if args.limit_train is not None and args.limit_train < 2:
        raise UserError(f"--limit-train takes an int >= 2, got {args.limit_train}")
    batch = args.batch_size or (20 if args.model == "corinfomax" else 1024)
    kw = dict(
        dataset=args.dataset, setup=args.setup, hidden=args.hidden, output_goal=args.output_goal, model=args.model,
        epochs=args.epochs, batch_size=batch, backend=args.backend, device=args.device,
        limit_train=args.limit_train, limit_test=args.limit_test, data_dir=args.data_dir, lateral_k=args.lateral_k,
        activation=args.activation, passes=args.passes, bins=args.bins, eval_context=args.eval_context,
        hidden_sources=args.hidden_sources, context=args.context, val_fraction=args.val_fraction,
    )
    for name in ("hidden_lr", "output_lr"):  # None: TrainConfig's default (the paper's)
        if getattr(args, name, None) is not None:
            kw[name] = getattr(args, name)
    kw.update(overrides)
    return TrainConfig(**kw)


def add_shared_options(p: argparse.ArgumentParser, when: str = "") -> None:
    """A sweep shared by many workers through one optuna storage (sweep_storage.py)."""
    p.add_argument("--storage", default=None, metavar="URL",
                   help=f"{when}share the sweep through this optuna storage (postgresql://... for many machines, "
                        "sqlite:///FILE.db for one): every worker started with the same command takes the next "
                        "(configuration, seed) not yet run")
    p.add_argument("--study", default="infomorph-sweep", help="with --storage: the sweep's name inside the storage")
    p.add_argument("--heartbeat", type=positive, default=30,
                   help="with --storage: seconds between a running cell's heartbeats; a dead worker's cell is run "
                        "again once after 2x that")
    p.add_argument("--summary-only", action="store_true",
                   help="with --storage: write the summary files from the storage into --out, without training")

