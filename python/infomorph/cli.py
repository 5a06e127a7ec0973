"""Command line: ``python -m infomorph train --dataset mnist --setup 1 --hidden 100 --goal optimized
--epochs 100 --seed 0 --out DIR`` (``python -m infomorph train -h`` lists every option)."""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from typing import List, Optional

from ._malloc import keep_freed_memory
from .data import DataNotFoundError
from .errors import TrainingInterrupted, UserError
from ._engine import set_threads
from .options import Parser, add_model_options, add_shared_options, config_from_args, positive, threads_option
from .analyze import add_analyze_parser
from .search import add_search_parser
from .train import train


def build_parser(prog: str = "python -m infomorph") -> argparse.ArgumentParser:
    p = Parser(prog=prog, description="Infomorphic networks on the I_sx PID engine.")
    sub = p.add_subparsers(dest="command", required=True, parser_class=Parser)
    t = sub.add_parser("train", help="train a network and write results.json, a checkpoint and plots")
    t.add_argument("--goal", default="optimized", help="hidden goal: heuristic, optimized, or a .yaml/.json file")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--out", help="output directory (results.json, checkpoint.pt, plots)")
    t.add_argument("--resume", metavar="DIR", help="continue the run in DIR (its stored config; --epochs may extend it)")
    t.add_argument("--restart", action="store_true",
                   help="with --resume DIR: start that run over from epoch 1 with the options given (e.g. its checkpoint is damaged)")
    t.add_argument("--backprop", action="store_true", help="the backprop baseline (Setup 1 connectivity, cross-entropy)")
    t.add_argument("--backprop-loss", default="logits", choices=("logits", "probabilities"),
                   help="with --backprop: cross-entropy of the output logits, or of the firing probabilities "
                        "s(F) as the published baseline does")
    add_model_options(t)
    t.add_argument("--keep-checkpoints", metavar="EPOCHS", default="",
                   help="also keep the model after these epochs (1,2,5,10 or 0-100) in OUT/checkpoints/ (inspect --complexity)")
    t.add_argument("--seeds", metavar="SEEDS", help="one run per seed (0-9 or 0,3,5) into OUT/seed-N, then a summary")
    t.add_argument("--jobs", type=positive, default=1, help="with --seeds: runs at a time (cores are split among them)")
    add_shared_options(t, "with --seeds: ")
    add_search_parser(sub)
    add_analyze_parser(sub)
    w = sub.add_parser("sweep", help="several configurations x seeds from a YAML file: one table and plots")
    w.add_argument("experiment", metavar="EXPERIMENT.yaml",
                   help="seeds: 0-2; base: {train options}; runs: {name: {train options, band: plot band label}}")
    w.add_argument("--out", required=True, help="output directory (one folder per configuration)")
    w.add_argument("--jobs", type=positive, default=1, help="runs at a time (cores are split among them)")
    w.add_argument("--threads", type=threads_option, default=None, metavar="auto|N",
                   help="torch threads per run (default: the cores split among the jobs)")
    add_shared_options(w)
    i = sub.add_parser("inspect", help="mean local atoms per label of every layer of a trained run (JSON + heatmaps)")
    i.add_argument("run_dir", metavar="RUN_DIR", help="a directory written by train --out")
    i.add_argument("--split", default="test", choices=("test", "val"))
    i.add_argument("--data-dir", default=None, help="where the data files are (default: the run's)")
    i.add_argument("--threads", type=threads_option, default=None, metavar="auto|N",
                   help="CPU threads: auto (default: the usable cores not busy elsewhere) or N")
    i.add_argument("--no-plots", action="store_true", help="JSON only")
    i.add_argument("--complexity", action="store_true",
                   help="degree-of-synergy profile and representational complexity about the label, per layer "
                        "(every checkpoint in RUN_DIR/checkpoints/ too: the curve over training)")
    i.add_argument("--group-size", type=int, default=3, choices=(2, 3, 4), help="with --complexity: neurons per group")
    i.add_argument("--groups", default=None, help="with --complexity: all or random:K (default: all for 2 and 3, random:20000 for 4)")
    i.add_argument("--levels", type=positive, default=8, help="with --complexity: levels per neuron (firing probability binned over [0, 1])")
    return p


def follow_parent() -> None:
    """A command started by a sweep (INFOMORPH_PARENT_PID set) gets SIGTERM when that sweep's process
    ends, however it ends (Linux prctl PR_SET_PDEATHSIG; elsewhere nothing): a training then saves
    its checkpoint and stops instead of running on unseen."""
    parent = os.environ.pop("INFOMORPH_PARENT_PID", None)
    if parent is None or not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if str(os.getppid()) != parent:  # the sweep died before the request took hold
        os.kill(os.getpid(), signal.SIGTERM)


def main(argv: Optional[List[str]] = None, prog: str = "python -m infomorph") -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(prog).parse_args(argv)
    follow_parent()
    keep_freed_memory()  # no page faults re-mapping each step's buffers (_malloc.py)
    try:
        return _run(args, argv)
    except TrainingInterrupted as e:
        print(str(e), file=sys.stderr)
        return 130
    except (UserError, DataNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


def _run(args, argv: List[str]) -> int:
    if args.command == "search":
        from .search import run_command

        return run_command(args, argv)
    if args.command == "analyze":
        from .analyze import run_command as analyze_command

        return analyze_command(args)
    shared = getattr(args, "storage", None) is not None or getattr(args, "summary_only", False)
    if shared and args.command == "train" and args.seeds is None:
        raise UserError("--storage/--summary-only go with --seeds (a sweep of seeds shared through the storage)")
    if shared:
        return _run_shared(args, argv)
    if args.command == "sweep":
        from .sweep import run_experiment

        run_experiment(args.experiment, args.out, args.jobs, threads=args.threads)
        print(f"wrote {args.out}/sweep.md, sweep.json and plots")
        return 0
    if args.command == "train" and args.seeds is not None:
        from .sweep import parse_seeds, run_seeds

        if args.out is None or args.resume is not None:
            raise UserError("--seeds goes with --out DIR (the sweep folder; run the same command again to resume)")
        summary = run_seeds(argv[argv.index("train") + 1:], parse_seeds(args.seeds), args.out, args.jobs,
                            threads=args.threads)
        t = summary["test_accuracy"]
        print(json.dumps({"out": args.out, "seeds": t.get("n", 0), "test_mean": t.get("mean"), "test_min": t.get("min"),
                          "test_max": t.get("max")}))
        return 0
    if args.command == "inspect":
        from .inspect import inspect_run

        set_threads(args.threads)
        if args.complexity:
            from .inspect import complexity_run

            groups = args.groups or ("random:20000" if args.group_size == 4 else "all")
            complexity_run(args.run_dir, args.split, args.data_dir, args.group_size, groups, args.levels,
                           plots=not args.no_plots)
            return 0
        inspect_run(args.run_dir, args.split, args.data_dir, plots=not args.no_plots)
        return 0
    if args.command == "train":
        if args.resume is None and args.out is None:
            raise UserError("--out DIR (or --resume DIR) is required")
        if args.restart and args.resume is None:
            raise UserError("--restart goes with --resume DIR (the run to start over)")
        from .sweep import parse_seeds

        keep = parse_seeds(args.keep_checkpoints, "--keep-checkpoints") if args.keep_checkpoints else []
        backprop = args.backprop or args.model == "backprop"
        if args.backprop_loss != "logits" and not backprop:
            raise UserError("--backprop-loss goes with --backprop (the infomorphic layers learn from their goals)")
        if backprop and (args.hidden_lr is not None or args.output_lr is not None):
            raise UserError("--hidden-lr/--output-lr set the infomorphic layers' rates; --backprop trains with its own (1e-3)")
        if args.model == "corinfomax" and (args.hidden_lr is not None or args.output_lr is not None):
            raise UserError("--hidden-lr/--output-lr set the infomorphic layers' rates; --model corinfomax has its own "
                            "rule and rates (corinfomax.DEFAULTS, per data set DATASET_SETTINGS)")
        cfg = config_from_args(args, goal=args.goal, seed=args.seed, backprop=args.backprop,
                               backprop_loss=args.backprop_loss, keep_checkpoints=keep)
        set_threads(args.threads)
        out = args.resume or args.out
        resume = args.resume is not None and not args.restart
        res = train(cfg, out, resume=resume, show_progress=not args.no_progress)
        print(json.dumps({"out": out, "epochs_done": res["epochs_done"], "test_accuracy": res["test_accuracy"],
                          "val_accuracy": res["val_accuracy"], "wall_seconds": round(res["wall_seconds"], 1)}))
    return 0


def _run_shared(args, argv: List[str]) -> int:
    """sweep / train --seeds with --storage: this worker's share of a sweep shared through the
    storage, or (--summary-only) the summary files from it."""
    from . import sweep_storage as shared
    from .sweep import parse_seeds, plan_experiment, strip_own_options

    if args.storage is None:
        raise UserError("--summary-only reads the sweep from --storage URL (the database the workers share)")
    from .study import resolve_storage

    args.storage = resolve_storage(args.storage, os.getcwd())  # a relative SQLite file: from here
    if args.command == "train":
        if args.out is None or args.resume is not None:
            raise UserError("--seeds goes with --out DIR (the sweep folder; run the same command again to resume)")
        seeds = parse_seeds(args.seeds)
        train_args = strip_own_options(argv[argv.index("train") + 1:])
        plan = [(shared.SINGLE, train_args, shared.SINGLE, args.hidden)]
        experiment = None
    else:
        seeds, plan = plan_experiment(args.experiment)
        experiment = args.experiment
    if args.summary_only:
        results = shared.report(args.storage, args.study, plan, seeds, args.out, experiment)
    else:
        results = shared.run_shared(plan, seeds, args.out, args.storage, args.study, args.jobs, threads=args.threads,
                                    heartbeat=args.heartbeat)
        shared.write(results, plan, seeds, args.out, experiment)
    missing = {n: r["failed_seeds"] for n, r in results.items() if r["failed_seeds"]}
    print(json.dumps({"out": args.out, "study": args.study, "runs": {n: r["test_accuracy"].get("n", 0) for n, r in results.items()},
                      "without_result": missing}))
    return 0


def console() -> None:
    """The ``infomorph`` console script (pip installs it beside ``python -m infomorph``)."""
    sys.exit(main(prog="infomorph"))

