"""A goal study: what defines it, the space it searches, its storage, sampler and pruner.

``SearchSettings`` is what a study is made with (stored in it; a resumed study must agree).
The searched space is a box per atom (``--space``/``--fix``) seen through a *form*: ``box`` (the
trial's numbers are the goal) or ``direction`` (the goal is the trial's numbers divided by their
largest magnitude, so only the direction of gamma is searched; ``--enqueue``d goals map back
exactly). The storage is optuna's RDB storage (an SQLite file or PostgreSQL, with heartbeats and
retry of dead workers' trials); ``study_lock`` serializes "count, then ask" among workers.
The workers, outputs and analysis live in ``search.py``.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import hashlib
import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

from .errors import UserError
from .goals import gamma_names, resolve_goal

SAMPLERS = ("tpe", "cmaes", "gp", "random")
FORMS = ("box", "direction")
PRUNE_FACTOR = 3  # --prune-factor's default: a third of the trials goes on at each rung
PRUNERS = ("median", "hyperband", "sha", "none")
N_SOURCES = 3  # the hidden layers are trivariate (F, C, L)


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
    prune_floor: Optional[Tuple[float, int]] = None  # (accuracy, epoch): below it from that epoch on, stop
    form: str = "box"  # box: the trial's numbers are the goal; direction: divided by their largest magnitude
    cma_popsize: Optional[int] = None  # CMA-ES population (None: cmaes' 4 + 3 ln(dimensions))
    enqueue: List[Dict[str, float]] = field(default_factory=list)  # known goals run as the first trials
    # not part of the study's identity (a resumed study may change them):
    hours: Optional[float] = None  # no new trial once the study has run this long (study_hours)
    confirm: Optional[Tuple[int, int]] = None  # (top, seeds): the confirmation stage after the trials

    def identity(self) -> Dict[str, Any]:
        """The part a resumed study must agree on."""
        ident = {"sampler": self.sampler, "prune": self.prune, "space": {k: list(v) for k, v in self.space.items()},
                 "fixed": self.fixed, "train": self.train, "seed": self.seed}
        # named only where set, so that studies started before these options still resume
        if self.prune_min_epochs is not None:
            ident["prune_min_epochs"] = self.prune_min_epochs
        if self.prune_factor != PRUNE_FACTOR:
            ident["prune_factor"] = self.prune_factor
        if self.prune_floor is not None:
            ident["prune_floor"] = list(self.prune_floor)
        if self.form != "box":
            ident["form"] = self.form
        if self.cma_popsize is not None:
            ident["cma_popsize"] = self.cma_popsize
        if self.enqueue:
            ident["enqueue"] = self.enqueue
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


def open_storage(settings: SearchSettings, max_retry: int = 3):
    """optuna's RDB storage with heartbeats and retry of stale trials (``max_retry`` times each); one-line
    errors for a bad URL or a database that cannot be reached. ``settings`` needs ``storage`` and
    ``heartbeat``."""
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
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=max_retry))
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
        # a pruned trial counts with its last reported value (the best validation accuracy it
        # reached): CMA-ES ranks its population, and a trial stopped at an early rung ranks below
        # those that went on; without that, each generation would wait for popsize trials that
        # pass every rung. optuna >= 4.4 has no restarts (restart_strategy moved to OptunaHub).
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, popsize=settings.cma_popsize,
                                            consider_pruned_trials=settings.prune != "none")
    if settings.sampler == "gp":
        try:
            import scipy  # noqa: F401
        except ImportError:
            raise UserError("--sampler gp needs scipy: pip install scipy") from None
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=settings.startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def _pruner(settings: SearchSettings):
    main = _rank_pruner(settings)
    if settings.prune_floor is None:
        return main
    return _Either(_optuna().pruners.ThresholdPruner(lower=float(settings.prune_floor[0]),
                                                     n_warmup_steps=int(settings.prune_floor[1])), main)


class _Either:
    """Prunes where either pruner would (optuna combines no pruners itself): the floor stops the goals
    that do not learn early, the ranking pruner compares the rest at its rungs."""

    def __init__(self, *pruners):
        self.pruners = pruners

    def prune(self, study, trial) -> bool:
        return any(p.prune(study, trial) for p in self.pruners)


def _rank_pruner(settings: SearchSettings):
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
        # the study's known goals, once: a process that created the study at the same moment finds
        # them queued already (skip_if_exists compares the parameters)
        for goal in settings.enqueue:
            study.enqueue_trial(params_of(goal, settings), user_attrs={"enqueued": True}, skip_if_exists=True)
    if stored is not None and json.loads(json.dumps(stored)) != json.loads(json.dumps(ident)):
        diff = sorted(k for k in ident if json.dumps(ident[k], sort_keys=True) != json.dumps(stored.get(k), sort_keys=True))
        raise UserError(f"--study {settings.study}: this study was started with other settings ({', '.join(diff)} "
                        "differ); run it with its own options, or name a new --study")
    return study


def study_hours(trials) -> float:
    """How long a study has run, in hours: the union of its finished trials' running intervals (any
    worker on any machine), so that pauses between sessions, when nothing ran, do not count."""
    spans = sorted((t.datetime_start, t.datetime_complete) for t in trials
                   if t.datetime_start is not None and t.datetime_complete is not None)
    total, cur = 0.0, None
    for a, b in spans:
        if cur is None or a > cur[1]:
            if cur is not None:
                total += (cur[1] - cur[0]).total_seconds()
            cur = [a, b]
        else:
            cur[1] = max(cur[1], b)
    if cur is not None:
        total += (cur[1] - cur[0]).total_seconds()
    return total / 3600


def trial_seed(study_seed: int, number: int) -> int:
    """The training seed of trial ``number`` (the original number for a retried trial)."""
    h = hashlib.sha256(f"infomorph-search:{study_seed}:{number}".encode()).digest()
    return int.from_bytes(h[:4], "little") & 0x7FFFFFFF


def original_number(study, trial) -> int:
    """The number of the trial a retried trial repeats (its own number otherwise)."""
    optuna = _optuna()
    frozen = study.get_trials(deepcopy=False)[trial.number]  # a study's trials are numbered 0, 1, ...
    retried = optuna.storages.RetryFailedTrialCallback.retried_trial_number(frozen)
    return trial.number if retried is None else int(retried)


def goal_of(params: Dict[str, float], settings: SearchSettings) -> Dict[str, float]:
    """The full goal (gamma order) of a trial's parameters plus the fixed atoms. In the direction
    form the searched atoms are divided by their largest magnitude (the fixed ones stay)."""
    scale = 1.0
    if settings.form == "direction":
        top = max((abs(float(v)) for n, v in params.items() if n in settings.space), default=0.0)
        scale = 1.0 / top if top > 0 else 1.0
    return {n: float(params[n]) * scale if n in params else float(settings.fixed.get(n, 0.0))
            for n in gamma_names(N_SOURCES)}


def params_of(goal: Dict[str, float], settings: SearchSettings, what: str = "--enqueue") -> Dict[str, float]:
    """The trial parameters that ``goal_of`` turns into ``goal`` (its searched atoms; the fixed ones
    are the study's): the goal itself in the box form, the goal divided by its largest searched
    magnitude in the direction form. A goal outside the searched ranges is refused naming ``what``."""
    searched = {n: float(goal.get(n, 0.0)) for n in settings.space}
    if settings.form == "direction":
        top = max(abs(v) for v in searched.values())
        if top == 0:
            raise UserError(f"{what}: the goal is zero on every searched atom; it has no direction")
        searched = {n: v / top for n, v in searched.items()}
    for n, v in searched.items():
        lo, hi = settings.space[n]
        if not lo <= v <= hi:
            form = " (after dividing by its largest magnitude)" if settings.form == "direction" else ""
            raise UserError(f"{what}: the goal's {n} = {v:.6g}{form} lies outside the searched range [{lo}, {hi}]")
    return searched


def enqueue_goals(specs: Sequence[str], settings: SearchSettings, log=print) -> List[Dict[str, float]]:
    """``--enqueue FILE|preset`` (repeatable) -> full goals in gamma order, checked against the space.
    A goal whose fixed atoms differ from the study's runs with the study's values (said once)."""
    goals = []
    for spec in specs:
        try:
            vec = resolve_goal(spec, N_SOURCES)
        except (ValueError, TypeError, FileNotFoundError, ImportError) as e:
            raise UserError(f"--enqueue {spec}: {e}") from None
        goal = dict(zip(gamma_names(N_SOURCES), (float(v) for v in vec)))
        for n, v in settings.fixed.items():
            if goal[n] != v:
                log(f"--enqueue {spec}: {n} = {goal[n]:.6g} runs as the study's fixed {n} = {v:g}")
                goal[n] = v
        params_of(goal, settings, f"--enqueue {spec}")
        goals.append(goal)
    return goals


def portable(settings: SearchSettings) -> Dict[str, Any]:
    """The settings as a search directory's files record them: paths relative to that directory
    (``out`` is "."; an SQLite file inside it is named by its relative path), so that committed
    results carry no path of the machine that made them. :func:`resolve_storage` reverses it."""
    d = dict(settings.__dict__)
    d["out"] = "."
    d["storage"] = _relative_storage(settings.storage, settings.out)
    return d


def _relative_storage(url: str, out: str) -> str:
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001
        return url
    db = u.database
    if u.get_backend_name() == "sqlite" and db and db != ":memory:" and os.path.isabs(db):
        rel = os.path.relpath(db, out)
        if not rel.startswith(os.pardir):
            return f"sqlite:///{rel}"
    return url


def resolve_storage(url: str, search_dir: str) -> str:
    """A storage URL read from a search directory's files: an SQLite path that is relative is
    relative to that directory (see :func:`portable`)."""
    from sqlalchemy.engine import make_url

    try:
        u = make_url(url)
    except Exception:  # noqa: BLE001
        return url
    db = u.database
    if u.get_backend_name() == "sqlite" and db and db != ":memory:" and not os.path.isabs(db):
        return f"sqlite:///{os.path.abspath(os.path.join(search_dir, db))}"
    return url


# ------------------------------------------------------------------------------ the lock, heartbeats
class Heartbeat:
    """Records the running trial's heartbeat every ``interval`` seconds from a thread (optuna does
    this only inside study.optimize; the ask/tell loops of the search and the shared sweep need
    their own: study.optimize cannot hold "count, then ask" under the study lock)."""

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


