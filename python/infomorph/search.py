"""Goal search on optuna: the paper's study of the hidden layer's gamma, on one machine or many.

``python -m infomorph search --trials T --sampler tpe|cmaes|random --out DIR`` searches every gamma
of the hidden goal (each in [-1, 1] unless ``--space``/``--fix`` say otherwise) for the best
validation accuracy of a training run (any train option carries over); the output layer keeps its
goal. The study lives in an optuna RDB storage: an SQLite file in DIR by default, or
``--storage postgresql://...`` that any number of workers on any machines join. Running the same
command again resumes the study; a worker killed mid-trial stops sending heartbeats, its trial is
failed once the grace period passes and queued again with the same goal (and the same seed: a
trial's seed is derived from the study seed and its original trial number). ``--jobs K`` runs K
worker processes here, the cores split among them. ``--hours H`` is the study's time budget (the
time its trials ran, pauses between sessions not counted). ``--confirm TOP:SEEDS`` ends the command
with the confirmation stage: the TOP best goals trained again on fresh seeds, the best mean taken
(a single run's value is the best of many noisy runs, biased upward).

DIR gets ``best_goal.yaml`` (``train --goal DIR/best_goal.yaml`` takes it), ``trials.csv``,
``search.json`` (the summary), ``trials/N.json`` (each trial's per-epoch history) and, with
``--confirm``, ``confirm.json``.
``python -m infomorph analyze DIR`` (analyze.py) adds parameter importances, ablations and plots.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from ._engine import set_threads, usable_cpus
from .errors import TrainingInterrupted, UserError
from .goal_runs import GoalRuns, best_val as _best_val, load_data, train_goal
from .goals import gamma_names, readable_name
from .options import add_model_options, config_from_args, positive
from .study import (FORMS, N_SOURCES, PRUNE_FACTOR, PRUNERS, SAMPLERS, SearchSettings, _hidden_password, _optuna,
                    _sampler, enqueue_goals, goal_of, open_study, original_number,
                    Heartbeat, parse_space, portable, resolve_storage, study_hours, study_lock, trial_seed)

SEARCH_JSON = "search.json"
CONFIRM_JSON = "confirm.json"
CONFIRM_SEED_BASE = 20_000_000  # confirmation seeds: trial_seed(study seed, this + k), apart from the trials'


# ---------------------------------------------------------------------------------------- parsers
def add_search_parser(sub) -> None:
    s = sub.add_parser("search", help="optuna search of the hidden layer's goal (best validation accuracy)")
    s.add_argument("--trials", type=positive, default=100, help="trials the study should complete (pruned count)")
    s.add_argument("--sampler", default="tpe",
                   help="tpe (multivariate), cmaes (a pruned trial counts with its last value), gp (optuna's "
                        "Gaussian-process sampler) or random")
    s.add_argument("--form", default="box",
                   help="box: a trial's numbers are the goal; direction: the goal is the trial's numbers divided by "
                        "their largest magnitude (only gamma's direction is searched: every goal lies on the box's "
                        "surface, where its faces and corners are)")
    s.add_argument("--enqueue", action="append", default=[], metavar="FILE|PRESET",
                   help="a known goal (goal file or preset, e.g. optimized) run as one of the study's first trials; "
                        "repeatable (a warm start; the study's fixed atoms keep their values)")
    s.add_argument("--cma-popsize", type=positive, default=None, metavar="N",
                   help="--sampler cmaes: the population per generation (default 4 + 3 ln(searched atoms))")
    s.add_argument("--fix", action="append", default=[], metavar="ATOM=VALUE",
                   help="hold a gamma fixed (e.g. H_res=0, as the paper's CMA-ES studies); repeatable")
    s.add_argument("--space", metavar="FILE.yaml",
                   help="ranges per atom ({1}{2}: [-1, 1]) or fixed values (H_res: 0); atoms not named: [-1, 1]")
    s.add_argument("--prune", default="median",
                   help="median, hyperband, sha (asynchronous successive halving: rungs at a tenth, three tenths "
                        "and nine tenths of the epochs, a third goes on) or none (validation accuracy per epoch)")
    s.add_argument("--prune-min-epochs", type=positive, default=None, metavar="N",
                   help="sha and hyperband: the first rung, in epochs (default a tenth of the epochs); rungs at "
                        "N, N*R, N*R^2, ... epochs")
    s.add_argument("--prune-factor", type=int, default=PRUNE_FACTOR, metavar="R",
                   help=f"sha and hyperband: reduction factor, a 1/R share of the trials goes on at a rung "
                        f"(default {PRUNE_FACTOR})")
    s.add_argument("--prune-floor", default=None, metavar="ACC@EPOCH",
                   help="also stop, from epoch EPOCH on, a trial whose best validation accuracy is below ACC (e.g. "
                        "0.5@3: goals that do not learn), with any --prune")
    s.add_argument("--hours", default=None, metavar="H",
                   help="the study's time budget: no new trial starts once the study has run H hours (the union of "
                        "its trials' running times, any worker anywhere; pauses between sessions do not count)")
    s.add_argument("--confirm", default=None, metavar="TOP:SEEDS",
                   help="after the trials, train the TOP best goals again on SEEDS fresh seeds each (full epochs, "
                        "the same seeds for every goal) and take the one with the best mean validation accuracy of "
                        "these runs as best_goal.yaml: a single run's best value is luck as much as goal (e.g. 5:3; "
                        "confirm.json has the table; run in the command that has it, cached for resumes)")
    s.add_argument("--jobs", type=positive, default=1, help="worker processes on this machine (cores split among them)")
    s.add_argument("--storage", help="optuna storage URL (default: sqlite:///DIR/study.db); postgresql://... for many machines")
    s.add_argument("--study", default="infomorph-goal", help="study name inside the storage")
    s.add_argument("--seed", type=int, default=0, help="study seed (sampler, validation split, trial seeds)")
    s.add_argument("--startup-trials", type=positive, default=None,
                   help="TPE's random start-up trials (default min(100, max(10, trials/5)); the paper: 100)")
    s.add_argument("--heartbeat", type=positive, default=30,
                   help="seconds between a running trial's heartbeats; a trial is failed and retried after 2x that")
    s.add_argument("--out", required=True, help="output directory (best_goal.yaml, trials.csv, search.json)")
    s.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)  # set by --jobs for its workers
    add_model_options(s, epochs_help="epochs per trial (default 10)")


def run_command(args, argv: Sequence[str]) -> int:
    settings = settings_from_args(args)
    if args.worker is not None:
        _set_threads(args.threads)
        run_worker(settings, args.worker)
        return 0
    summary = run_search(settings, argv, jobs=args.jobs, threads=args.threads, show_progress=not args.no_progress)
    print(json.dumps({"out": settings.out, "trials": summary["trials_by_state"], "best_value": summary["best_value"],
                      "chosen_trial": summary["chosen_trial"], "best_goal": os.path.join(settings.out, "best_goal.yaml")}))
    return 0


def _prune_floor(text: str, epochs: int) -> Tuple[float, int]:
    """``--prune-floor ACC@EPOCH`` (e.g. 0.5@3) -> (accuracy, epoch)."""
    try:
        acc_s, ep_s = text.split("@")
        acc, ep = float(acc_s), int(ep_s)
    except ValueError:
        acc, ep = float("nan"), 0
    if not (0.0 < acc < 1.0) or not 1 <= ep <= epochs:
        raise UserError(f"--prune-floor: expected ACCURACY@EPOCH with 0 < ACCURACY < 1 and 1 <= EPOCH <= the epochs "
                        f"per trial ({epochs}), e.g. 0.5@3; got {text!r}")
    return acc, ep


def _hours(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    try:
        h = float(text)
    except ValueError:
        h = float("nan")
    if not (math.isfinite(h) and h > 0):
        raise UserError(f"--hours: expected a positive number of hours (e.g. 2.5), got {text!r}")
    return h


def _confirm(text: Optional[str]) -> Optional[Tuple[int, int]]:
    """``--confirm TOP:SEEDS`` (e.g. 5:3) -> (top, seeds)."""
    if text is None:
        return None
    try:
        top_s, seeds_s = text.split(":")
        top, seeds = int(top_s), int(seeds_s)
    except ValueError:
        top = seeds = 0
    if top < 1 or seeds < 1:
        raise UserError(f"--confirm: expected TOP:SEEDS, two positive integers (e.g. 5:3: the 5 best goals, 3 fresh "
                        f"seeds each), got {text!r}")
    return top, seeds


def settings_from_args(args) -> SearchSettings:
    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if args.prune not in PRUNERS:
        raise UserError(f"--prune: unknown pruner {args.prune!r}; choose one of {', '.join(PRUNERS)}")
    floor = _prune_floor(args.prune_floor, args.epochs or 10) if args.prune_floor is not None else None
    if args.prune_factor < 2:
        raise UserError(f"--prune-factor: expected an integer of at least 2, got {args.prune_factor}")
    epochs = args.epochs or 10  # per trial
    if args.prune_min_epochs is not None or args.prune_factor != PRUNE_FACTOR:
        if args.prune not in ("sha", "hyperband"):
            raise UserError(f"--prune-min-epochs/--prune-factor: only for --prune sha or hyperband, got --prune {args.prune}")
        if args.prune_min_epochs is not None and args.prune_min_epochs > epochs:
            raise UserError(f"--prune-min-epochs: the first rung ({args.prune_min_epochs}) must not exceed "
                            f"the epochs per trial ({epochs})")
    if args.form not in FORMS:
        raise UserError(f"--form: unknown form {args.form!r}; choose one of {', '.join(FORMS)}")
    if args.cma_popsize is not None and args.sampler != "cmaes":
        raise UserError(f"--cma-popsize: only for --sampler cmaes, got --sampler {args.sampler}")
    space, fixed = parse_space(args.space, args.fix)
    if args.sampler == "cmaes" and len(space) < 2:
        raise UserError("--sampler cmaes needs at least two searched atoms")
    if args.form == "direction" and len(space) < 2:
        raise UserError("--form direction needs at least two searched atoms")
    cfg = config_from_args(args, epochs=epochs)
    if cfg.val_fraction == 0:
        raise UserError("--val-fraction: the search's objective is the validation accuracy; it needs a validation "
                        "split (a fraction > 0)")
    if cfg.model != "infomorphic":
        raise UserError(f"--model: the search looks for goals of infomorphic networks, got --model {cfg.model}")
    # the model kind is not part of a study's settings (always infomorphic; studies from before it resume)
    train = {k: v for k, v in cfg.__dict__.items() if k not in ("goal", "seed", "hidden_gamma", "output_gamma", "model")}
    out = os.path.abspath(args.out)
    storage = resolve_storage(args.storage, os.getcwd()) if args.storage else f"sqlite:///{os.path.join(out, 'study.db')}"
    startup = args.startup_trials or min(100, max(10, args.trials // 5))
    settings = SearchSettings(out=out, storage=storage, study=args.study, sampler=args.sampler, prune=args.prune,
                              trials=args.trials, seed=args.seed, startup_trials=startup, heartbeat=args.heartbeat,
                              space=space, fixed=fixed, train=train, prune_min_epochs=args.prune_min_epochs,
                              prune_factor=args.prune_factor, form=args.form, cma_popsize=args.cma_popsize,
                              prune_floor=floor, hours=_hours(args.hours), confirm=_confirm(args.confirm))
    if args.enqueue:
        if len(args.enqueue) > args.trials:
            raise UserError(f"--enqueue: {len(args.enqueue)} goals for a study of --trials {args.trials}")
        # the worker processes of --jobs get the same options: only the parent speaks of fixed atoms
        settings.enqueue = enqueue_goals(args.enqueue, settings, log=print if args.worker is None else (lambda m: None))
    return settings


# ---------------------------------------------------------------------------------------- workers
def _counts(study) -> Dict[str, int]:
    c: Dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        c[t.state.name] = c.get(t.state.name, 0) + 1
    return c


def _finished(c: Dict[str, int]) -> int:
    return c.get("COMPLETE", 0) + c.get("PRUNED", 0)


def run_worker(settings: SearchSettings, worker: int = 0,
               on_trial: Optional[Callable[[Any], None]] = None, log=print) -> None:
    """Run trials until the study has ``settings.trials`` finished (complete or pruned) trials."""
    optuna = _optuna()
    from optuna.trial import TrialState

    study = open_study(settings, worker)
    storage = study._storage
    data = load_data(settings.train, settings.seed)
    trial_dir = os.path.join(settings.out, "trials")
    os.makedirs(trial_dir, exist_ok=True)
    failures_in_a_row = 0
    waited = False
    while True:
        with study_lock(settings):
            optuna.storages.fail_stale_trials(study)  # dead workers' trials: failed, queued again
            c = _counts(study)
            finished, active = _finished(c), c.get("RUNNING", 0) + c.get("WAITING", 0)
            trial = None
            spent = settings.hours is not None and study_hours(study.get_trials(deepcopy=False)) >= settings.hours
            if not spent and finished < settings.trials and (finished + active < settings.trials or c.get("WAITING", 0) > 0):
                study.sampler = _sampler(settings, sum(c.values()))  # the number the next new trial gets
                trial = study.ask()
                storage.record_heartbeat(trial._trial_id)  # at once: a trial with no heartbeat never goes stale
        if finished >= settings.trials:
            return
        if spent:  # running trials elsewhere finish; trials queued for a retry stay queued
            log(f"worker {worker}: the study has run its {settings.hours:g} h (--hours): no new trial")
            return
        if trial is None:  # the rest is running elsewhere: wait (it may die and come back as WAITING)
            if not waited:
                log(f"worker {worker}: waiting for {active} running trial(s) of other workers")
                waited = True
            time.sleep(min(5.0, settings.heartbeat / 2))
            continue
        waited = False
        # a race with a storage that has no lock: more trials than asked for -> give this one back
        alive = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                                      TrialState.RUNNING, TrialState.WAITING))
                 if t.number <= trial.number]
        if len(alive) > settings.trials:
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        ok = _run_trial(study, storage, trial, settings, data, trial_dir, worker)
        failures_in_a_row = 0 if ok else failures_in_a_row + 1
        if failures_in_a_row >= 3:
            raise UserError(f"worker {worker}: three trials in a row failed (see {trial_dir}/N.error); stopping")
        if on_trial is not None:
            on_trial(study)


def _run_trial(study, storage, trial, settings: SearchSettings, data, trial_dir: str, worker: int) -> bool:
    optuna = _optuna()
    from optuna.trial import TrialState

    params = {n: trial.suggest_float(n, lo, hi) for n, (lo, hi) in settings.space.items()}
    goal = goal_of(params, settings)
    number = original_number(study, trial)
    seed = trial_seed(settings.seed, number)
    trial.set_user_attr("seed", seed)
    trial.set_user_attr("worker", worker)
    run_dir = os.path.join(trial_dir, f"run-{trial.number}")
    best = [0.0]

    def on_epoch(entry: Dict) -> None:
        if math.isfinite(entry["val_accuracy"]):
            best[0] = max(best[0], entry["val_accuracy"])
        trial.report(best[0], entry["epoch"])
        if trial.should_prune():
            raise optuna.TrialPruned()

    t0 = time.perf_counter()
    state, value, error = TrialState.COMPLETE, None, None
    with Heartbeat(storage, trial._trial_id, settings.heartbeat):
        try:
            res = train_goal(settings.train, goal, seed, data, run_dir, on_epoch)
            value = _best_val(res["history"])
            trial.set_user_attr("test_accuracy", res["test_accuracy"])
        except optuna.TrialPruned:
            state = TrialState.PRUNED
        except FloatingPointError as e:  # a goal that makes training diverge: a (bad) result, not a bug
            value = best[0]
            trial.set_user_attr("diverged", str(e))
        except (TrainingInterrupted, KeyboardInterrupt):
            # Ctrl-C: this trial goes back into the queue with its goal and seed, then we stop
            study.tell(trial, state=TrialState.FAIL)
            storage.get_heartbeat_stale_trial_callback()(study, study._storage.get_trial(trial._trial_id))
            shutil.rmtree(run_dir, ignore_errors=True)
            raise TrainingInterrupted(f"interrupted in trial {trial.number}; it is queued again: run the same "
                                      f"command to resume the study in {settings.out}", settings.out) from None
        except UserError:
            raise
        except Exception as e:  # noqa: BLE001 - recorded, the study goes on
            state, error = TrialState.FAIL, f"{type(e).__name__}: {e}"
    seconds = time.perf_counter() - t0
    trial.set_user_attr("seconds", seconds)
    history = _read_history(run_dir)
    trial.set_user_attr("epochs", len(history))
    with open(os.path.join(trial_dir, f"{trial.number}.json"), "w") as fh:
        json.dump({"number": trial.number, "original": number, "seed": seed, "goal": goal, "state": state.name,
                   "value": value, "seconds": seconds, "history": history, "error": error}, fh, indent=1)
    if error is not None:
        with open(os.path.join(trial_dir, f"{trial.number}.error"), "w") as fh:
            fh.write(error + "\n")
    shutil.rmtree(run_dir, ignore_errors=True)
    if state == TrialState.PRUNED:
        study.tell(trial, state=TrialState.PRUNED)
    elif state == TrialState.FAIL:
        study.tell(trial, state=TrialState.FAIL)
    else:
        study.tell(trial, value)
    return state != TrialState.FAIL


def _read_history(run_dir: str) -> List[Dict]:
    path = os.path.join(run_dir, "results.json")
    try:
        with open(path) as fh:
            return [{k: h.get(k) for k in ("epoch", "val_accuracy", "test_accuracy", "train_accuracy", "seconds")}
                    for h in json.load(fh).get("history", [])]
    except (OSError, ValueError):
        return []


def _set_threads(threads: Optional[int]) -> None:
    if threads is not None:
        import torch

        torch.set_num_threads(threads)


def _worker_argv(argv: Sequence[str], worker: int, threads: int) -> List[str]:
    """The command line of worker ``worker``: this search's options minus those set per worker."""
    argv = list(argv)
    rest = argv[argv.index("search") + 1:] if "search" in argv else argv
    out, k = [], 0
    while k < len(rest):
        a = rest[k]
        key = a.split("=", 1)[0]
        if key in ("--jobs", "--threads", "--worker"):
            k += 1 if "=" in a else 2
            continue
        if key != "--no-progress":
            out.append(a)
        k += 1
    return [sys.executable, "-m", "infomorph", "search", *out, "--worker", str(worker), "--threads", str(threads),
            "--no-progress"]


def run_search(settings: SearchSettings, argv: Sequence[str], jobs: int = 1, threads: Optional[int] = None,
               show_progress: bool = True, log=print) -> Dict:
    """Run (or resume) the study with ``jobs`` workers here, then write the outputs."""
    if os.path.exists(settings.out) and not os.path.isdir(settings.out):
        raise UserError(f"--out: {settings.out!r} is a file, not a directory")
    os.makedirs(settings.out, exist_ok=True)
    study = open_study(settings)  # checks the storage and the settings before any worker starts
    _write_meta(settings)
    bar = _TrialBar(settings.trials, enabled=show_progress)
    bar.update(study)
    total_threads = threads or usable_cpus()
    if jobs == 1:
        set_threads(threads)  # None: auto, the usable cores not busy elsewhere
        run_worker(settings, 0, on_trial=bar.update, log=log)
    else:
        per = max(1, total_threads // jobs)
        env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
        procs = []
        for w in range(jobs):
            logf = open(os.path.join(settings.out, f"worker-{w}.log"), "a")
            procs.append((subprocess.Popen(_worker_argv(list(argv), w, per), stdout=logf, stderr=subprocess.STDOUT,
                                           env=env), logf))
        try:
            while any(p.poll() is None for p, _ in procs):
                time.sleep(2.0)
                with contextlib.suppress(Exception):
                    bar.update(study)
        except KeyboardInterrupt:
            for p, _ in procs:  # workers queue their running trial again and stop
                with contextlib.suppress(OSError):
                    p.send_signal(signal.SIGINT)
            raise TrainingInterrupted(f"interrupted; running trials are queued again: run the same command to "
                                      f"resume the study in {settings.out}", settings.out) from None
        finally:
            for p, f in procs:
                p.wait()
                f.close()
        bad = [w for w, (p, _) in enumerate(procs) if p.returncode != 0]
        if bad:
            tail = _last_line(os.path.join(settings.out, f"worker-{bad[0]}.log"))
            raise UserError(f"search: worker(s) {bad} failed ({tail}; logs: {settings.out}/worker-N.log)")
    bar.update(study)
    bar.close()
    if settings.confirm is not None:
        confirm(study, settings, jobs, total_threads, log)
    return write_outputs(study, settings)


def _last_line(path: str) -> str:
    try:
        with open(path) as fh:
            lines = [l.strip() for l in fh if l.strip()]
        return lines[-1] if lines else "no output"
    except OSError:
        return "no log"


class _TrialBar:
    def __init__(self, total: int, enabled: bool):
        self.bar = None
        if enabled:
            try:
                from tqdm.auto import tqdm

                self.bar = tqdm(total=total, desc="trials", file=sys.stderr)
            except ImportError:
                self.bar = None
        self.total, self.enabled, self.n = total, enabled, 0

    def update(self, study) -> None:
        if not self.enabled:
            return
        c = _counts(study)
        done = min(self.total, _finished(c))
        best = _best_value(study)
        text = f"best {best:.4f}" if best is not None else "best -"
        if self.bar is not None:
            self.bar.update(done - self.bar.n)
            self.bar.set_postfix_str(f"{text}, running {c.get('RUNNING', 0)}, failed {c.get('FAIL', 0)}")
        elif done != self.n:
            print(f"trials {done}/{self.total} ({text})", file=sys.stderr)
        self.n = done

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _best_value(study) -> Optional[float]:
    from optuna.trial import TrialState

    vals = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(vals) if vals else None


def _best_trial(study):
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


# ----------------------------------------------------------------------------------- confirmation
def _top_trials(study, top: int) -> List[Any]:
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    return sorted(done, key=lambda t: (-t.value, t.number))[:top]


def _read_confirm(out: str) -> Dict[str, Any]:
    path = os.path.join(out, CONFIRM_JSON)
    if not os.path.isfile(path):
        return {}
    with open(path) as fh:
        return json.load(fh)


def confirm(study, settings: SearchSettings, jobs: int, threads: int, log=print) -> Optional[Dict[str, Any]]:
    """The confirmation stage (``--confirm TOP:SEEDS``): the TOP complete trials' goals trained again
    for the full epochs on SEEDS fresh seeds (the same seeds for each goal), the goal with the best
    mean validation accuracy of these runs chosen. The trials' own values are left out of the mean:
    being the best of many noisy runs, they are biased upward. Writes DIR/confirm.json; the runs
    are cached in DIR/confirm_runs.json (a resumed or extended study trains only new ones)."""
    top, n_seeds = settings.confirm
    cands = _top_trials(study, top)
    if not cands:
        log("confirm: no complete trial to confirm")
        return None
    seeds = [trial_seed(settings.seed, CONFIRM_SEED_BASE + k) for k in range(n_seeds)]
    epochs = int(settings.train["epochs"])
    goals = [goal_of(t.params, settings) for t in cands]
    log(f"confirm: the {len(cands)} best goals x {n_seeds} fresh seeds x {epochs} epochs")
    prev = _read_confirm(settings.out)
    with GoalRuns(settings.train, settings.seed, epochs, jobs, threads,
                  os.path.join(settings.out, "confirm_runs.json")) as runs:
        results = runs.run(goals, seeds)
        trained = runs.trained_seconds
    rows = []
    for t, rs in zip(cands, results):
        vals = [r["value"] for r in rs]
        rows.append({"trial": t.number, "trial_value": t.value, "values": vals, "mean": sum(vals) / len(vals),
                     "min": min(vals), "test_accuracy": [r.get("test_accuracy") for r in rs],
                     "seconds": [r.get("seconds") for r in rs]})
    chosen = max(rows, key=lambda r: (r["mean"], r["trial_value"], -r["trial"]))
    rec = {"top": top, "seeds": seeds, "epochs": epochs, "chosen_trial": chosen["trial"],
           "chosen_mean": chosen["mean"], "candidates": rows,
           "wall_seconds": float(prev.get("wall_seconds", 0.0)) + trained,
           "note": "chosen by the mean validation accuracy of the fresh seeds; test accuracies are recorded, not used"}
    with open(os.path.join(settings.out, CONFIRM_JSON + ".tmp"), "w") as fh:
        json.dump(rec, fh, indent=1)
    os.replace(os.path.join(settings.out, CONFIRM_JSON + ".tmp"), os.path.join(settings.out, CONFIRM_JSON))
    for r in sorted(rows, key=lambda r: -r["mean"]):
        log(f"confirm: trial {r['trial']}: its run {r['trial_value']:.4f}, fresh seeds "
            f"{', '.join(f'{v:.4f}' for v in r['values'])} (mean {r['mean']:.4f})"
            + ("  <- chosen" if r is chosen else ""))
    return rec


def _confirmed(study, out: str) -> Tuple[Optional[Dict[str, Any]], Optional[Any]]:
    """confirm.json and its chosen trial where it still speaks of the study's top trials; else
    (the record or None, None)."""
    rec = _read_confirm(out)
    if not rec:
        return None, None
    if [c["trial"] for c in rec["candidates"]] != [t.number for t in _top_trials(study, rec["top"])]:
        return rec, None  # the study has new best trials since: run the confirmation again
    chosen = [t for t in study.get_trials(deepcopy=False) if t.number == rec["chosen_trial"]]
    return rec, chosen[0]


# ---------------------------------------------------------------------------------------- outputs
def _write_meta(settings: SearchSettings) -> None:
    """DIR/search.json's first version: where the study is (analyze reads it)."""
    path = os.path.join(settings.out, SEARCH_JSON)
    if not os.path.isfile(path):
        with open(path, "w") as fh:
            rec = portable(settings)
            json.dump({"storage": _hidden_password(rec["storage"]), "storage_url": rec["storage"],
                       "study": settings.study, "settings": rec}, fh, indent=1)


def write_outputs(study, settings: SearchSettings) -> Dict:
    """trials.csv, best_goal.yaml and search.json from the study as it stands."""
    trials = study.get_trials(deepcopy=False)
    names = gamma_names(N_SOURCES)
    with open(os.path.join(settings.out, "trials.csv"), "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["number", "state", *names, "value", "seconds", "epochs", "seed", "test_accuracy", "retry_of"])
        for t in trials:
            if t.user_attrs.get("surplus"):
                continue
            g = goal_of(t.params, settings) if t.params else {n: "" for n in names}
            retry = t.system_attrs.get("failed_trial", "")
            w.writerow([t.number, t.state.name, *[g[n] for n in names], "" if t.value is None else t.value,
                        t.user_attrs.get("seconds", ""), t.user_attrs.get("epochs", ""), t.user_attrs.get("seed", ""),
                        t.user_attrs.get("test_accuracy", ""), retry])
    counts = _counts(study)
    surplus = sum(1 for t in trials if t.user_attrs.get("surplus"))
    if surplus:
        counts["FAIL"] -= surplus
        counts = {k: v for k, v in counts.items() if v}
    best = _best_trial(study)
    conf, chosen = _confirmed(study, settings.out)
    pick = chosen if chosen is not None else best
    best_goal = goal_of(pick.params, settings) if pick is not None else None
    if best_goal is not None:
        _write_goal_yaml(os.path.join(settings.out, "best_goal.yaml"), best_goal, pick, settings,
                         confirmed=conf if chosen is not None else None)
    ran = [t for t in trials if t.state.name in ("COMPLETE", "PRUNED")]
    hours = study_hours(ran)  # the time the study ran (pauses between sessions do not count)
    span = (max(t.datetime_complete for t in ran) - min(t.datetime_start for t in ran)).total_seconds() / 3600 if ran else 0.0
    confirm_hours = float(conf.get("wall_seconds", 0.0)) / 3600 if chosen is not None else 0.0
    finished = _finished(counts)
    secs = [t.user_attrs["seconds"] for t in trials if "seconds" in t.user_attrs and t.state.name in ("COMPLETE", "PRUNED")]
    rec = portable(settings)  # paths relative to the search directory
    summary = {
        "storage": _hidden_password(rec["storage"]), "storage_url": rec["storage"], "study": settings.study,
        "sampler": settings.sampler, "prune": settings.prune, "trials_requested": settings.trials,
        "trials_by_state": counts,
        "best_value": None if best is None else best.value, "best_trial": None if best is None else best.number,
        "chosen_trial": None if pick is None else pick.number,
        "confirm": None if conf is None else ({"stale": True} if chosen is None else
                                               {k: conf[k] for k in ("top", "seeds", "chosen_mean", "wall_seconds")}),
        "best_goal": best_goal,
        "best_goal_readable": None if best_goal is None else {readable_name(k): v for k, v in best_goal.items()},
        "trials_per_hour": finished / hours if hours > 0 else None,
        "seconds_per_trial_mean": sum(secs) / len(secs) if secs else None,
        "study_hours": hours, "span_hours": span, "confirm_hours": confirm_hours,
        "wall_hours": hours + confirm_hours, "settings": rec,
        "command": "python -m infomorph search " + " ".join(_cmd_line(settings)),
    }
    with open(os.path.join(settings.out, SEARCH_JSON), "w") as fh:
        json.dump(summary, fh, indent=1, default=str)
    return summary


def _cmd_line(s: SearchSettings) -> List[str]:
    t = s.train
    parts = ["--dataset", str(t["dataset"]), "--setup", str(t["setup"]), "--hidden", ",".join(map(str, t["hidden"])),
             "--epochs", str(t["epochs"]), "--trials", str(s.trials), "--sampler", s.sampler, "--prune", s.prune,
             "--seed", str(s.seed), "--study", s.study]
    if s.prune_min_epochs is not None:
        parts += ["--prune-min-epochs", str(s.prune_min_epochs)]
    if s.prune_factor != PRUNE_FACTOR:
        parts += ["--prune-factor", str(s.prune_factor)]
    if s.prune_floor is not None:
        parts += ["--prune-floor", f"{s.prune_floor[0]:g}@{s.prune_floor[1]}"]
    if s.form != "box":
        parts += ["--form", s.form]
    if s.cma_popsize is not None:
        parts += ["--cma-popsize", str(s.cma_popsize)]
    if s.hours is not None:
        parts += ["--hours", f"{s.hours:g}"]
    if s.confirm is not None:
        parts += ["--confirm", f"{s.confirm[0]}:{s.confirm[1]}"]
    parts += [x for n, v in s.fixed.items() for x in ("--fix", f"{n}={v}")]
    rel = os.path.relpath(s.out)  # as run from here; a directory elsewhere by its name alone (no machine paths)
    return parts + ["--out", rel if not rel.startswith(os.pardir) else os.path.basename(s.out)]


def _write_goal_yaml(path: str, goal: Dict[str, float], best, settings: SearchSettings,
                     confirmed: Optional[Dict[str, Any]] = None) -> None:
    lines = [f"# best goal of study {settings.study!r}: trial {best.number}, validation accuracy {best.value:.4f}"]
    if confirmed is not None:
        lines.append(f"# chosen by --confirm: mean validation accuracy {confirmed['chosen_mean']:.4f} on "
                     f"{len(confirmed['seeds'])} fresh seeds, best of the {confirmed['top']} best trials")
    lines += ["# python -m infomorph train --goal THIS_FILE ... (atoms: 1 = F feedforward, 2 = C context, 3 = L lateral)",
              "gamma:"]
    lines += [f"  \"{n}\": {v!r}" for n, v in goal.items()]
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
