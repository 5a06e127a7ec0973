"""Goal search on optuna: the paper's study of the hidden layer's gamma, on one machine or many.

``python -m infomorph search --trials T --sampler tpe|cmaes|random --out DIR`` searches every gamma
of the hidden goal (each in [-1, 1] unless ``--space``/``--fix`` say otherwise) for the best
validation accuracy of a training run (any train option carries over); the output layer keeps its
goal. The study lives in an optuna RDB storage: an SQLite file in DIR by default, or
``--storage postgresql://...`` that any number of workers on any machines join. Running the same
command again resumes the study; a worker killed mid-trial stops sending heartbeats, its trial is
failed once the grace period passes and queued again with the same goal (and the same seed: a
trial's seed is derived from the study seed and its original trial number). ``--jobs K`` runs K
worker processes here, the cores split among them.

DIR gets ``best_goal.yaml`` (``train --goal DIR/best_goal.yaml`` takes it), ``trials.csv``,
``search.json`` (the summary) and ``trials/N.json`` (each trial's per-epoch history).
``python -m infomorph analyze DIR`` adds parameter importances (mean decrease in impurity, as in
the paper, and fANOVA), the single and the successive ablation of the best goal, and plots.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import TrainingInterrupted, UserError
from .goals import gamma_names, readable_name, resolve_goal

SAMPLERS = ("tpe", "cmaes", "random")
PRUNE_FACTOR = 3  # --prune-factor's default: a third of the trials goes on at each rung
PRUNERS = ("median", "hyperband", "sha", "none")
SEARCH_JSON = "search.json"
N_SOURCES = 3  # the hidden layers are trivariate (F, C, L)


# ---------------------------------------------------------------------------------------- parsers
def add_search_parsers(sub, positive) -> None:
    from .cli import add_model_options

    s = sub.add_parser("search", help="optuna search of the hidden layer's goal (best validation accuracy)")
    s.add_argument("--trials", type=positive, default=100, help="trials the study should complete (pruned count)")
    s.add_argument("--sampler", default="tpe", help="tpe (multivariate), cmaes or random")
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
    a = sub.add_parser("analyze", help="importances, ablations and plots of a search directory")
    a.add_argument("search_dir", metavar="DIR", help="a directory written by search --out")
    a.add_argument("--ablation-seeds", type=positive, default=3, help="seeds per ablated goal (--no-ablation: importances only)")
    a.add_argument("--no-ablation", action="store_true", help="importances and history only")
    a.add_argument("--epochs", type=positive, default=None, help="epochs per ablation run (default: the study's)")
    a.add_argument("--jobs", type=positive, default=1, help="ablation runs at a time (cores split among them)")
    a.add_argument("--threads", type=positive, default=None, help="torch CPU threads in total")


def run_command(args, argv: Sequence[str]) -> int:
    if args.command == "analyze":
        summary = analyze(args.search_dir, seeds=0 if args.no_ablation else args.ablation_seeds,
                          epochs=args.epochs, jobs=args.jobs, threads=args.threads)
        print(json.dumps({"out": args.search_dir, "written": summary["written"]}))
        return 0
    settings = settings_from_args(args)
    if args.worker is not None:
        _set_threads(args.threads)
        run_worker(settings, args.worker)
        return 0
    summary = run_search(settings, argv, jobs=args.jobs, threads=args.threads, show_progress=not args.no_progress)
    print(json.dumps({"out": settings.out, "trials": summary["trials_by_state"], "best_value": summary["best_value"],
                      "best_goal": os.path.join(settings.out, "best_goal.yaml")}))
    return 0


# ------------------------------------------------------------------------------------- settings
@dataclass
class SearchSettings:
    """What defines a study (stored in it; a resumed study must match)."""

    out: str
    storage: str
    study: str
    sampler: str
    prune: str
    trials: int
    seed: int
    startup_trials: int
    heartbeat: int
    space: Dict[str, Tuple[float, float]]  # searched atoms (gamma order) -> (low, high)
    fixed: Dict[str, float]  # atoms held fixed -> value
    train: Dict[str, Any] = field(default_factory=dict)  # TrainConfig fields except goal/seed
    prune_min_epochs: Optional[int] = None  # sha/hyperband first rung (None: a tenth of the epochs)
    prune_factor: int = PRUNE_FACTOR  # sha/hyperband reduction factor

    def identity(self) -> Dict[str, Any]:
        """The part a resumed study must agree on."""
        ident = {"sampler": self.sampler, "prune": self.prune, "space": {k: list(v) for k, v in self.space.items()},
                 "fixed": self.fixed, "train": self.train, "seed": self.seed}
        # named only where set, so that studies started before these options still resume
        if self.prune_min_epochs is not None:
            ident["prune_min_epochs"] = self.prune_min_epochs
        if self.prune_factor != PRUNE_FACTOR:
            ident["prune_factor"] = self.prune_factor
        return ident


def _optuna():
    try:
        import optuna
    except ImportError:
        raise UserError("search needs optuna: pip install optuna cmaes scikit-learn "
                        "(bash scripts/setup.sh installs them)") from None
    import warnings

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # heartbeats and their retry callback are marked experimental; the ask/tell loop here sends its own
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")
    return optuna


def canonical_atom(name: str, option: str) -> str:
    """The gamma-order name of an atom given as ``{1}{2}``, ``{F}{C}`` or ``H_res``."""
    try:
        g = resolve_goal({str(name): 1.0}, N_SOURCES)
    except (ValueError, TypeError) as e:
        raise UserError(f"{option}: {name!r} is no atom of the trivariate goal ({e})") from None
    return gamma_names(N_SOURCES)[int(g.abs().argmax())]


def _number(value: Any, what: str) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not math.isfinite(v):
        raise UserError(f"{what}: expected a finite number, got {value!r}")
    return v


def parse_space(space_file: Optional[str], fixes: Sequence[str]) -> Tuple[Dict[str, Tuple[float, float]], Dict[str, float]]:
    """Ranges and fixed values per atom from ``--space FILE`` and ``--fix NAME=V`` (``--fix`` wins)."""
    names = gamma_names(N_SOURCES)
    ranges: Dict[str, Tuple[float, float]] = {n: (-1.0, 1.0) for n in names}
    fixed: Dict[str, float] = {}
    if space_file is not None:
        from .sweep import read_spec_file

        spec = read_spec_file(space_file, "--space")
        if isinstance(spec, dict) and isinstance(spec.get("space"), dict):
            spec = spec["space"]
        if not isinstance(spec, dict) or not spec:
            raise UserError(f"--space: {space_file} must map atom names to [low, high] or a fixed value")
        for key, val in spec.items():
            atom = canonical_atom(key, f"--space {space_file}")
            if isinstance(val, (list, tuple)):
                if len(val) != 2:
                    raise UserError(f"--space {space_file}: {key} takes [low, high], got {val!r}")
                lo, hi = (_number(v, f"--space {space_file}: {key}") for v in val)
                if not lo < hi:
                    raise UserError(f"--space {space_file}: {key} has an empty or inverted range [{lo}, {hi}] "
                                    "(low must be below high; a single value fixes the atom)")
                ranges[atom] = (lo, hi)
            else:
                fixed[atom] = _number(val, f"--space {space_file}: {key}")
    for item in fixes:
        if "=" not in item:
            raise UserError(f"--fix takes ATOM=VALUE (e.g. H_res=0), got {item!r}")
        key, val = item.split("=", 1)
        fixed[canonical_atom(key.strip(), "--fix")] = _number(val.strip(), f"--fix {key.strip()}")
    space = {n: ranges[n] for n in names if n not in fixed}
    if not space:
        raise UserError("--fix/--space: every atom is fixed; nothing is left to search")
    return space, {n: fixed[n] for n in names if n in fixed}


def settings_from_args(args) -> SearchSettings:
    from .cli import config_from_args

    if args.sampler not in SAMPLERS:
        raise UserError(f"--sampler: unknown sampler {args.sampler!r}; choose one of {', '.join(SAMPLERS)}")
    if args.prune not in PRUNERS:
        raise UserError(f"--prune: unknown pruner {args.prune!r}; choose one of {', '.join(PRUNERS)}")
    if args.prune_factor < 2:
        raise UserError(f"--prune-factor: expected an integer of at least 2, got {args.prune_factor}")
    epochs = args.epochs or 10  # per trial
    if args.prune_min_epochs is not None or args.prune_factor != PRUNE_FACTOR:
        if args.prune not in ("sha", "hyperband"):
            raise UserError(f"--prune-min-epochs/--prune-factor: only for --prune sha or hyperband, got --prune {args.prune}")
        if args.prune_min_epochs is not None and args.prune_min_epochs > epochs:
            raise UserError(f"--prune-min-epochs: the first rung ({args.prune_min_epochs}) must not exceed "
                            f"the epochs per trial ({epochs})")
    space, fixed = parse_space(args.space, args.fix)
    if args.sampler == "cmaes" and len(space) < 2:
        raise UserError("--sampler cmaes needs at least two searched atoms")
    cfg = config_from_args(args, epochs=epochs)
    train = {k: v for k, v in cfg.__dict__.items() if k not in ("goal", "seed", "hidden_gamma", "output_gamma")}
    out = os.path.abspath(args.out)
    storage = args.storage or f"sqlite:///{os.path.join(out, 'study.db')}"
    startup = args.startup_trials or min(100, max(10, args.trials // 5))
    return SearchSettings(out=out, storage=storage, study=args.study, sampler=args.sampler, prune=args.prune,
                          trials=args.trials, seed=args.seed, startup_trials=startup, heartbeat=args.heartbeat,
                          space=space, fixed=fixed, train=train, prune_min_epochs=args.prune_min_epochs,
                          prune_factor=args.prune_factor)


def _hidden_password(url: str) -> str:
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001
        return url


def _with_driver(url: str) -> str:
    """``postgresql://`` with the PostgreSQL driver that is installed (SQLAlchemy 2.1 means psycopg 3
    by it, older versions psycopg2); other URLs as given."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.drivername == "postgresql":
        import importlib.util

        for mod, driver in (("psycopg", "postgresql+psycopg"), ("psycopg2", "postgresql+psycopg2")):
            if importlib.util.find_spec(mod) is not None:
                return u.set(drivername=driver).render_as_string(hide_password=False)
    return url


def open_storage(settings: SearchSettings):
    """optuna's RDB storage with heartbeats and retry of stale trials; one-line errors for a bad URL
    or a database that cannot be reached."""
    optuna = _optuna()
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    url = settings.storage
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise UserError(f"--storage: {url!r} is not a database URL (expected postgresql://USER@HOST:PORT/DB "
                        "or sqlite:///FILE.db)") from None
    kwargs: Dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        kwargs = {"connect_args": {"timeout": 120}}
        db = parsed.database
        if db and db != ":memory:":
            os.makedirs(os.path.dirname(os.path.abspath(db)), exist_ok=True)
    elif parsed.get_backend_name().startswith("postgresql"):
        kwargs = {"connect_args": {"connect_timeout": 10}, "pool_pre_ping": True}
    try:
        for attempt in range(20):
            try:
                return optuna.storages.RDBStorage(
                    _with_driver(url), engine_kwargs=kwargs, heartbeat_interval=settings.heartbeat,
                    grace_period=2 * settings.heartbeat,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=3))
            except Exception as e:  # noqa: BLE001
                # a fresh database whose schema another process (a worker, a watcher) is creating
                # at this moment: "table ... already exists", or both inserting the schema version
                # ("UNIQUE constraint failed: alembic_version...", PostgreSQL's "duplicate key");
                # the next attempt finds the schema complete
                msg = str(getattr(e, "orig", None) or e)
                racing = any(w in msg for w in ("already exists", "UNIQUE constraint failed", "duplicate key"))
                if not racing or attempt == 19:
                    raise
                time.sleep(0.25 + 0.05 * attempt)
    except ImportError as e:
        raise UserError(f"--storage {_hidden_password(url)}: the database driver is missing ({e}); "
                        "for PostgreSQL: pip install 'psycopg[binary]'") from None
    except Exception as e:  # noqa: BLE001 - sqlalchemy's OperationalError and kin: unreachable/refused
        first = str(getattr(e, "orig", None) or e).strip().splitlines()
        raise UserError(f"--storage: cannot open the database {_hidden_password(url)} "
                        f"({first[0] if first else type(e).__name__})") from None


def _sampler(settings: SearchSettings, number: int):
    """The sampler for the trial about to be asked (number ``number``): seeded by the study seed and
    that number, so the suggestions do not depend on which worker asks, and a resumed study does not
    replay its first ones."""
    optuna = _optuna()
    seed = trial_seed(settings.seed, -1 - number)
    if settings.sampler == "tpe":
        return optuna.samplers.TPESampler(multivariate=True, n_startup_trials=settings.startup_trials,
                                          n_ei_candidates=100, constant_liar=True, seed=seed)
    if settings.sampler == "cmaes":
        try:
            import cmaes  # noqa: F401
        except ImportError:
            raise UserError("--sampler cmaes needs the cmaes package: pip install cmaes") from None
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(settings: SearchSettings):
    optuna = _optuna()
    epochs = int(settings.train["epochs"])
    first = settings.prune_min_epochs or max(1, epochs // 10)
    factor = settings.prune_factor
    if settings.prune == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=10, n_warmup_steps=max(1, epochs // 5))
    if settings.prune == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=first, max_resource=epochs, reduction_factor=factor)
    if settings.prune == "sha":
        # hyperband's most aggressive bracket alone: every trial meets the rungs at min_resource * R^k
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first, reduction_factor=factor)
    return optuna.pruners.NopPruner()


def open_study(settings: SearchSettings, worker: int = 0):
    """Create or load the study; a loaded one must have been made with the same settings."""
    optuna = _optuna()
    storage = open_storage(settings)
    study = optuna.create_study(study_name=settings.study, storage=storage, pruner=_pruner(settings),
                                direction="maximize", load_if_exists=True)
    study.sampler = _sampler(settings, len(study.get_trials(deepcopy=False)))
    ident = settings.identity()
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", ident)
        study.set_user_attr("created", datetime.datetime.now().isoformat(timespec="seconds"))
    elif json.loads(json.dumps(stored)) != json.loads(json.dumps(ident)):
        diff = sorted(k for k in ident if json.dumps(ident[k], sort_keys=True) != json.dumps(stored.get(k), sort_keys=True))
        raise UserError(f"--study {settings.study}: this study was started with other settings ({', '.join(diff)} "
                        "differ); run it with its own options, or name a new --study")
    return study


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number`` (the original number for a retried trial)."""
    h = hashlib.sha256(f"infomorph-search:{study_seed}:{number}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def original_number(study, trial) -> int:
    """The number of the trial a retried trial repeats (its own number otherwise)."""
    frozen = study._storage.get_trial(trial._trial_id)
    return int(frozen.system_attrs.get("failed_trial", trial.number))


def goal_of(params: Dict[str, float], fixed: Dict[str, float]) -> Dict[str, float]:
    """The full goal (gamma order) of a trial's parameters plus the fixed atoms."""
    return {n: float(params[n] if n in params else fixed.get(n, 0.0)) for n in gamma_names(N_SOURCES)}


# --------------------------------------------------------------------------------------- training
def load_data(settings_train: Dict[str, Any], seed: int):
    """The data splits of a study (one validation split for all trials: from the study seed)."""
    from .data import DataNotFoundError, load_dataset

    t = settings_train
    try:
        return load_dataset(t["dataset"], t.get("data_dir"), t.get("val_fraction", 0.2), seed, t.get("limit_train"),
                            t.get("limit_test"))
    except DataNotFoundError as e:
        raise UserError(str(e)) from None


def train_goal(settings_train: Dict[str, Any], goal: Dict[str, float], seed: int, data, run_dir: str,
               on_epoch: Optional[Callable[[Dict], None]] = None, epochs: Optional[int] = None) -> Dict:
    """One training run with the hidden goal ``goal``; returns train's results dict."""
    from .train import TrainConfig, train

    # the objective is the validation accuracy: the test set only after the last epoch (trials.csv)
    cfg = TrainConfig.from_dict(dict(settings_train, goal=[goal[n] for n in gamma_names(N_SOURCES)], seed=seed,
                                     test_every_epoch=False))
    if epochs is not None:
        cfg.epochs = epochs
    return train(cfg, run_dir, resume=False, log=lambda s: None, show_progress=False, data=data,
                 on_epoch=on_epoch, plots=False)


def _best_val(history: Sequence[Dict]) -> float:
    vals = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None and math.isfinite(h["val_accuracy"])]
    return max(vals) if vals else 0.0


# ---------------------------------------------------------------------------------------- workers
@contextlib.contextmanager
def study_lock(settings: SearchSettings) -> Iterator[None]:
    """Serialize "count the trials, then ask for one" among workers: a PostgreSQL advisory lock
    (workers on any machine), a file lock beside an SQLite database; other storages rely on the
    check after asking."""
    from sqlalchemy import text
    from sqlalchemy.engine import make_url

    url = make_url(settings.storage)
    key = int.from_bytes(hashlib.sha256(settings.study.encode()).digest()[:8], "little", signed=True)
    if url.get_backend_name().startswith("postgresql"):
        engine = _lock_engine(settings.storage)
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": key})
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                conn.commit()
        return
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with open(os.path.abspath(url.database) + ".lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return
    yield  # other databases: no lock (the check after asking still holds the count)


_ENGINES: Dict[str, Any] = {}


def _lock_engine(url: str):
    from sqlalchemy import create_engine

    if url not in _ENGINES:
        _ENGINES[url] = create_engine(_with_driver(url), pool_pre_ping=True, connect_args={"connect_timeout": 10})
    return _ENGINES[url]


def _counts(study) -> Dict[str, int]:
    c: Dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        c[t.state.name] = c.get(t.state.name, 0) + 1
    return c


def _finished(c: Dict[str, int]) -> int:
    return c.get("COMPLETE", 0) + c.get("PRUNED", 0)


class _Heartbeat:
    """Records the running trial's heartbeat every ``interval`` seconds from a thread (optuna does
    this only inside study.optimize; the ask/tell loop here needs its own)."""

    def __init__(self, storage, trial_id: int, interval: float):
        self.storage, self.trial_id, self.interval = storage, trial_id, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.wait(self.interval):
            with contextlib.suppress(Exception):
                self.storage.record_heartbeat(self.trial_id)

    def __enter__(self):
        self.storage.record_heartbeat(self.trial_id)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


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
            if finished < settings.trials and (finished + active < settings.trials or c.get("WAITING", 0) > 0):
                study.sampler = _sampler(settings, sum(c.values()))  # the number the next new trial gets
                trial = study.ask()
                storage.record_heartbeat(trial._trial_id)  # at once: a trial with no heartbeat never goes stale
        if finished >= settings.trials:
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
    goal = goal_of(params, settings.fixed)
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
    with _Heartbeat(storage, trial._trial_id, settings.heartbeat):
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
    total_threads = threads or (os.cpu_count() or 1)
    if jobs == 1:
        _set_threads(total_threads)
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


# ---------------------------------------------------------------------------------------- outputs
def _write_meta(settings: SearchSettings) -> None:
    """DIR/search.json's first version: where the study is (analyze reads it)."""
    path = os.path.join(settings.out, SEARCH_JSON)
    if not os.path.isfile(path):
        with open(path, "w") as fh:
            json.dump({"storage": _hidden_password(settings.storage), "storage_url": settings.storage,
                       "study": settings.study, "settings": settings.__dict__}, fh, indent=1)


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
            g = goal_of(t.params, settings.fixed) if t.params else {n: "" for n in names}
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
    best_goal = goal_of(best.params, settings.fixed) if best is not None else None
    if best_goal is not None:
        _write_goal_yaml(os.path.join(settings.out, "best_goal.yaml"), best_goal, best, settings)
    starts = [t.datetime_start for t in trials if t.datetime_start is not None and t.state.name in ("COMPLETE", "PRUNED")]
    ends = [t.datetime_complete for t in trials if t.datetime_complete is not None and t.state.name in ("COMPLETE", "PRUNED")]
    hours = (max(ends) - min(starts)).total_seconds() / 3600 if starts and ends else 0.0
    finished = _finished(counts)
    secs = [t.user_attrs["seconds"] for t in trials if "seconds" in t.user_attrs and t.state.name in ("COMPLETE", "PRUNED")]
    summary = {
        "storage": _hidden_password(settings.storage), "storage_url": settings.storage, "study": settings.study,
        "sampler": settings.sampler, "prune": settings.prune, "trials_requested": settings.trials,
        "trials_by_state": counts,
        "best_value": None if best is None else best.value, "best_trial": None if best is None else best.number,
        "best_goal": best_goal,
        "best_goal_readable": None if best_goal is None else {readable_name(k): v for k, v in best_goal.items()},
        "trials_per_hour": finished / hours if hours > 0 else None,
        "seconds_per_trial_mean": sum(secs) / len(secs) if secs else None,
        "wall_hours": hours, "settings": settings.__dict__,
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
    parts += [x for n, v in s.fixed.items() for x in ("--fix", f"{n}={v}")]
    return parts + ["--out", s.out]


def _write_goal_yaml(path: str, goal: Dict[str, float], best, settings: SearchSettings) -> None:
    lines = [f"# best goal of study {settings.study!r}: trial {best.number}, validation accuracy {best.value:.4f}",
             f"# python -m infomorph train --goal {path} ... (atoms: 1 = F feedforward, 2 = C context, 3 = L lateral)",
             "gamma:"]
    lines += [f"  \"{n}\": {v!r}" for n, v in goal.items()]
    tmp = path + ".tmp"
    with open(tmp, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    os.replace(tmp, path)


# ---------------------------------------------------------------------------------------- analyze
def _load_search_dir(search_dir: str):
    path = os.path.join(search_dir, SEARCH_JSON)
    if not os.path.isfile(path):
        raise UserError(f"analyze: {search_dir!r} has no {SEARCH_JSON} (a directory written by search --out)")
    with open(path) as fh:
        meta = json.load(fh)
    s = dict(meta["settings"])
    s["space"] = {k: tuple(v) for k, v in s["space"].items()}
    settings = SearchSettings(**s)
    optuna = _optuna()
    storage = open_storage(settings)
    try:
        study = optuna.load_study(study_name=settings.study, storage=storage)
    except KeyError:
        raise UserError(f"analyze: no study {settings.study!r} in {_hidden_password(settings.storage)}") from None
    return settings, study


def importances(study) -> Dict[str, Dict[str, float]]:
    """Parameter importances of the complete trials: mean decrease in impurity (the paper's) and fANOVA."""
    optuna = _optuna()
    from optuna.importance import FanovaImportanceEvaluator, MeanDecreaseImpurityImportanceEvaluator

    out = {}
    for name, ev in (("mean_decrease_impurity", MeanDecreaseImpurityImportanceEvaluator(seed=0)),
                     ("fanova", FanovaImportanceEvaluator(seed=0))):
        try:
            out[name] = dict(optuna.importance.get_param_importances(study, evaluator=ev))
        except ImportError:
            raise UserError("analyze needs scikit-learn for the importances: pip install scikit-learn") from None
    return out


def _ablation_job(job: Tuple[Dict, Dict[str, float], int, int, str]) -> float:
    train_cfg, goal, seed, epochs, run_dir = job
    data = _ABL_DATA["data"]
    res = train_goal(train_cfg, goal, seed, data, run_dir, epochs=epochs)
    shutil.rmtree(run_dir, ignore_errors=True)
    return _best_val(res["history"])


_ABL_DATA: Dict[str, Any] = {}


def _ablation_init(train_cfg: Dict, data_seed: int, threads: int) -> None:
    _set_threads(threads)
    _ABL_DATA["data"] = load_data(train_cfg, data_seed)


def ablation(settings: SearchSettings, best_goal: Dict[str, float], seeds: int, epochs: int, jobs: int,
             threads: int, out_dir: str, log=print) -> Dict:
    """Set each searched gamma of the best goal to 0 alone (validation accuracy, ``seeds`` seeds),
    then zero them one after another in order of their single effect (smallest loss first).
    Results are cached in DIR/ablation.json: a second call runs only what is missing."""
    from concurrent.futures import ProcessPoolExecutor
    import multiprocessing as mp

    cache_path = os.path.join(out_dir, "ablation_runs.json")
    cache: Dict[str, float] = {}
    if os.path.isfile(cache_path):
        with open(cache_path) as fh:
            cache = json.load(fh)
    seed_list = [trial_seed(settings.seed, 10_000_000 + s) for s in range(seeds)]
    tmp = os.path.join(out_dir, "ablation_tmp")
    os.makedirs(tmp, exist_ok=True)

    def key(goal: Dict[str, float], seed: int) -> str:
        return json.dumps([round(goal[n], 12) for n in gamma_names(N_SOURCES)] + [seed, epochs])

    pool = ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context("spawn"), initializer=_ablation_init,
                               initargs=(settings.train, settings.seed, max(1, threads // jobs)))

    def evaluate(goals: List[Dict[str, float]]) -> List[float]:
        todo = [(g, s) for g in goals for s in seed_list if key(g, s) not in cache]
        jobs_ = [(settings.train, g, s, epochs, os.path.join(tmp, f"run-{i}-{os.getpid()}")) for i, (g, s) in enumerate(todo)]
        for (g, s), acc in zip(todo, pool.map(_ablation_job, jobs_)):
            cache[key(g, s)] = acc
            with open(cache_path + ".tmp", "w") as fh:
                json.dump(cache, fh)
            os.replace(cache_path + ".tmp", cache_path)
        return [sum(cache[key(g, s)] for s in seed_list) / len(seed_list) for g in goals]

    try:
        searched = [n for n in settings.space if best_goal[n] != 0.0]
        log(f"ablation: base goal + {len(searched)} single ablations x {seeds} seeds x {epochs} epochs")
        single_goals = [dict(best_goal, **{n: 0.0}) for n in searched]
        vals = evaluate([best_goal] + single_goals)
        base, singles = vals[0], dict(zip(searched, vals[1:]))
        order = sorted(searched, key=lambda n: base - singles[n])  # least harmful first
        log(f"ablation: successive, {len(order)} steps")
        goal, succ_goals = dict(best_goal), []
        for n in order:
            goal = dict(goal, **{n: 0.0})
            succ_goals.append(goal)
        succ = evaluate(succ_goals)
    finally:
        pool.shutdown()
        shutil.rmtree(tmp, ignore_errors=True)
    return {"base": base, "seeds": seeds, "epochs": epochs,
            "single": {n: {"accuracy": singles[n], "change": singles[n] - base} for n in searched},
            "successive": [{"ablated": n, "accuracy": a} for n, a in zip(order, succ)]}


def analyze(search_dir: str, seeds: int = 3, epochs: Optional[int] = None, jobs: int = 1,
            threads: Optional[int] = None, log=print) -> Dict:
    """importance.json and plots (history, importances, ablations) into the search directory."""
    settings, study = _load_search_dir(search_dir)
    summary = write_outputs(study, settings)
    best = _best_trial(study)
    if best is None:
        raise UserError(f"analyze: the study in {search_dir} has no complete trial yet")
    result: Dict[str, Any] = {"study": settings.study, "best_trial": best.number, "best_value": best.value,
                              "best_goal": summary["best_goal"]}
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    if len(complete) >= 2:
        result["importance"] = importances(study)
    else:
        result["importance"] = None
        log("analyze: fewer than two complete trials, no importances")
    if seeds > 0:
        result["ablation"] = ablation(settings, summary["best_goal"], seeds, epochs or int(settings.train["epochs"]),
                                      jobs, threads or (os.cpu_count() or 1), search_dir, log)
    with open(os.path.join(search_dir, "importance.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    written = ["importance.json"] + _plots(study, result, search_dir)
    result["written"] = written
    return result


def _plots(study, result: Dict, out: str) -> List[str]:
    from ._plots import pyplot, save

    plt = pyplot()
    if plt is None:
        return []
    written = []
    trials = [t for t in study.get_trials(deepcopy=False) if t.state.name in ("COMPLETE", "PRUNED")]
    fig, ax = plt.subplots(figsize=(6, 4))
    comp = [t for t in trials if t.state.name == "COMPLETE" and t.value is not None]
    pr = [t for t in trials if t.state.name == "PRUNED"]
    ax.scatter([t.number for t in comp], [t.value for t in comp], s=10, label="complete")
    if pr:
        ax.scatter([t.number for t in pr], [max(t.intermediate_values.values(), default=0) for t in pr], s=8,
                   marker="x", alpha=0.5, label="pruned (last report)")
    best, run = [], -1.0
    for t in sorted(comp, key=lambda t: t.number):
        run = max(run, t.value)
        best.append((t.number, run))
    if best:
        ax.step([b[0] for b in best], [b[1] for b in best], where="post", color="C3", label="best so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("best validation accuracy")
    ax.set_title("optimization history")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    written.append(os.path.basename(save(fig, os.path.join(out, "history.png"))))
    imp = result.get("importance")
    if imp:
        fig, axes = plt.subplots(1, 2, figsize=(10, 5))
        for ax, (name, vals) in zip(axes, imp.items()):
            items = sorted(vals.items(), key=lambda kv: kv[1])
            ax.barh([readable_name(k) for k, _ in items], [v for _, v in items])
            ax.set_title(name.replace("_", " "))
            ax.tick_params(axis="y", labelsize=7)
        written.append(os.path.basename(save(fig, os.path.join(out, "importance.png"))))
    abl = result.get("ablation")
    if abl:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
        items = sorted(abl["single"].items(), key=lambda kv: kv[1]["change"])
        axes[0].bar([readable_name(k) for k, _ in items], [100 * v["change"] for _, v in items])
        axes[0].set_ylabel("change of validation accuracy (points)")
        axes[0].set_title(f"one gamma set to 0 ({abl['seeds']} seeds, {abl['epochs']} epochs)")
        axes[0].tick_params(axis="x", rotation=90, labelsize=7)
        axes[0].axhline(0, color="k", lw=0.5)
        succ = abl["successive"]
        axes[1].plot(range(len(succ) + 1), [100 * abl["base"]] + [100 * s["accuracy"] for s in succ], marker="o")
        axes[1].set_xticks(range(len(succ) + 1))
        axes[1].set_xticklabels(["best"] + [readable_name(s["ablated"]) for s in succ], rotation=90, fontsize=7)
        axes[1].set_ylabel("validation accuracy %")
        axes[1].set_title("successive ablation (least harmful first)")
        axes[1].grid(alpha=0.3)
        written.append(os.path.basename(save(fig, os.path.join(out, "ablation.png"))))
    return written
