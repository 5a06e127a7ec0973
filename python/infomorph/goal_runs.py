"""Training runs of given hidden goals, for the goal search: one trial's run, and a pool of runs
(goal x seed, cached on disk) that the search's confirmation stage and analyze's ablation share.

The value of a run is the search's objective: the best validation accuracy over its epochs (the
test set is read once, after the last epoch)."""
from __future__ import annotations

import json
import math
import os
import shutil
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .errors import UserError
from .goals import gamma_names
from .study import N_SOURCES


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
    from .config import TrainConfig
    from .train import train

    # the objective is the validation accuracy: the test set only after the last epoch (trials.csv)
    cfg = TrainConfig.from_dict(dict(settings_train, goal=[goal[n] for n in gamma_names(N_SOURCES)], seed=seed,
                                     test_every_epoch=False))
    if epochs is not None:
        cfg.epochs = epochs
    return train(cfg, run_dir, resume=False, log=lambda s: None, show_progress=False, data=data,
                 on_epoch=on_epoch, plots=False)


def best_val(history: Sequence[Dict]) -> float:
    """The objective of a run: its best finite validation accuracy (0 where there is none)."""
    vals = [h["val_accuracy"] for h in history if h.get("val_accuracy") is not None and math.isfinite(h["val_accuracy"])]
    return max(vals) if vals else 0.0


# ------------------------------------------------------------------------------------ pooled runs
_POOL_DATA: Dict[str, Any] = {}


def _pool_init(train_cfg: Dict, data_seed: int, threads: int) -> None:
    import torch

    torch.set_num_threads(threads)
    _POOL_DATA["data"] = load_data(train_cfg, data_seed)


def _pool_job(job: Tuple[Dict, Dict[str, float], int, int, str]) -> Dict[str, float]:
    train_cfg, goal, seed, epochs, run_dir = job
    t0 = time.perf_counter()
    res = train_goal(train_cfg, goal, seed, _POOL_DATA["data"], run_dir, epochs=epochs)
    shutil.rmtree(run_dir, ignore_errors=True)
    return {"value": best_val(res["history"]), "test_accuracy": res["test_accuracy"],
            "seconds": time.perf_counter() - t0}


class GoalRuns:
    """Runs of (goal, seed) pairs with ``jobs`` processes (cores split among them), each result
    cached in ``cache_path`` (JSON) as soon as it is in: a second call, or a resumed command,
    trains only what is missing. Use as a context manager (the pool starts on first need)."""

    def __init__(self, train_cfg: Dict[str, Any], data_seed: int, epochs: int, jobs: int, threads: int,
                 cache_path: str):
        self.train_cfg, self.data_seed, self.epochs = train_cfg, data_seed, epochs
        self.jobs, self.threads, self.cache_path = jobs, threads, cache_path
        self.tmp = os.path.join(os.path.dirname(cache_path), os.path.basename(cache_path) + ".tmpdir")
        self.cache: Dict[str, Any] = {}
        if os.path.isfile(cache_path):
            with open(cache_path) as fh:
                self.cache = json.load(fh)
        self.pool = None
        self.trained_seconds = 0.0  # wall time spent training in this object (cached runs cost none)

    def key(self, goal: Dict[str, float], seed: int) -> str:
        return json.dumps([round(goal[n], 12) for n in gamma_names(N_SOURCES)] + [seed, self.epochs])

    def _result(self, goal: Dict[str, float], seed: int) -> Dict[str, float]:
        r = self.cache[self.key(goal, seed)]
        return r if isinstance(r, dict) else {"value": r}  # caches written before the dict form: the value

    def run(self, goals: Sequence[Dict[str, float]], seeds: Sequence[int]) -> List[List[Dict[str, float]]]:
        """Every goal with every seed: per goal, one result dict (value, test_accuracy, seconds) per seed."""
        todo = [(g, s) for g in goals for s in seeds if self.key(g, s) not in self.cache]
        if todo:
            self._start()
            os.makedirs(self.tmp, exist_ok=True)
            jobs = [(self.train_cfg, g, s, self.epochs, os.path.join(self.tmp, f"run-{i}-{os.getpid()}"))
                    for i, (g, s) in enumerate(todo)]
            t0 = time.perf_counter()
            for (g, s), res in zip(todo, self.pool.map(_pool_job, jobs)):
                self.cache[self.key(g, s)] = res
                with open(self.cache_path + ".tmp", "w") as fh:
                    json.dump(self.cache, fh)
                os.replace(self.cache_path + ".tmp", self.cache_path)
            self.trained_seconds += time.perf_counter() - t0
        return [[self._result(g, s) for s in seeds] for g in goals]

    def mean_values(self, goals: Sequence[Dict[str, float]], seeds: Sequence[int]) -> List[float]:
        return [sum(r["value"] for r in rs) / len(rs) for rs in self.run(goals, seeds)]

    def _start(self) -> None:
        if self.pool is None:
            from concurrent.futures import ProcessPoolExecutor
            import multiprocessing as mp

            self.pool = ProcessPoolExecutor(max_workers=self.jobs, mp_context=mp.get_context("spawn"),
                                            initializer=_pool_init,
                                            initargs=(self.train_cfg, self.data_seed, max(1, self.threads // self.jobs)))

    def __enter__(self) -> "GoalRuns":
        return self

    def __exit__(self, *exc) -> None:
        if self.pool is not None:
            self.pool.shutdown()
        shutil.rmtree(self.tmp, ignore_errors=True)
