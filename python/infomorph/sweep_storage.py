"""Sweeps shared by many workers through one optuna storage (``sweep ... --storage URL``).

A sweep is a list of cells, one per (configuration, seed). The first worker to open the study
records the cells and queues one optuna trial per cell (``enqueue_trial``, with the cell as its one
parameter); every worker started with the same command then takes the next queued trial, trains
its (configuration, seed) with the one training loop (``python -m infomorph train`` in a
subprocess, into ``OUT/NAME/seed-N`` on the worker's own disk) and stores the run's record (final
and best accuracies, test curve, seconds, machine) with the trial. A worker that dies stops
sending heartbeats; after the grace period its trial is failed and queued again once, with the
same cell (optuna's ``RetryHeartbeatStaleTrialCallback``), and whichever worker is free runs it: on
the same machine it resumes from the checkpoint, elsewhere it starts over. Finished cells are never
run again. Summaries (sweep.json, sweep.md, plots) are built from the stored records on any
machine (``--summary-only``).

Why queued trials and not optuna's ``GridSampler``: the grid sampler calls ``study.stop()`` when
its grid is exhausted, which optuna allows only inside ``study.optimize`` (an ask/tell loop gets
a RuntimeError from ``tell``), and near the end it hands a running cell to an idle worker a second
time (it re-evaluates unfinished grid points rather than wait). The queue pops each trial to
exactly one worker (the storage changes its state from WAITING to RUNNING atomically), and the
study lock (``study.study_lock``) serializes the one-time queueing.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import time
from types import SimpleNamespace
from typing import Dict, List, Optional, Sequence, Tuple

from .errors import TrainingInterrupted, UserError
from .study import Heartbeat, _hidden_password, _optuna, open_storage, study_lock
from .sweep import _Runner, run_record, summarize_records, write_experiment, write_summary

CELL = "cell"  # the trials' one parameter: "NAME|SEED"
SINGLE = "train"  # the configuration name of `train --seeds ... --storage`


def cells_of(plan: Sequence[Tuple], seeds: Sequence[int]) -> List[str]:
    return [f"{name}|{seed}" for name, *_ in plan for seed in seeds]


def _open(storage: str, study: str, heartbeat: int, plan, seeds, create: bool = True):
    """The sweep's study; the first process to open it records its cells and queues them. A study
    of another sweep under that name is refused."""
    optuna = _optuna()
    where = SimpleNamespace(storage=storage, study=study, heartbeat=heartbeat)
    st = open_storage(where, max_retry=1)  # a dead worker's cell runs once more, not again and again
    cells = cells_of(plan, seeds)
    ident = {"cells": cells, "configurations": {name: list(args) for name, args, *_ in plan}}
    with study_lock(where):
        if create:
            s = optuna.create_study(study_name=study, storage=st, direction="maximize", load_if_exists=True,
                                    sampler=optuna.samplers.RandomSampler(seed=0))
        else:
            try:
                s = optuna.load_study(study_name=study, storage=st)
            except KeyError:
                raise UserError(f"--study {study}: no such sweep in {_hidden_password(storage)}") from None
        stored = s.user_attrs.get("sweep")
        if stored is None and create:
            s.set_user_attr("sweep", ident)
            s.set_user_attr("created", datetime.datetime.now().isoformat(timespec="seconds"))
            for cell in cells:
                s.enqueue_trial({CELL: cell}, skip_if_exists=True)
        elif stored is not None and json.loads(json.dumps(stored)) != json.loads(json.dumps(ident)):
            differ = "cells" if stored.get("cells") != ident["cells"] else "configurations' train options"
            raise UserError(f"--study {study}: this study holds another sweep (its {differ} differ); run it with "
                            "its own experiment file and options, or name a new --study")
    return s, where, cells


def run_shared(plan, seeds: Sequence[int], out_dir: str, storage: str, study: str, jobs: int = 1,
               threads: Optional[int] = None, heartbeat: int = 30, log=print) -> Dict[str, Dict]:
    """Run this worker's share of the sweep (``jobs`` cells at a time) until no cell is left to start
    and none is running elsewhere; returns the summaries per configuration from the storage."""
    optuna = _optuna()
    from concurrent.futures import ThreadPoolExecutor
    from optuna.trial import TrialState

    s, where, cells = _open(storage, study, heartbeat, plan, seeds)
    st = s._storage  # noqa: SLF001 - the heartbeat is recorded by trial id (optuna has no public door for it)
    args_of = {name: list(args) for name, args, *_ in plan}
    runner = _Runner(jobs, log, threads)
    os.makedirs(out_dir, exist_ok=True)
    machine = socket.gethostname()

    def take():
        with study_lock(where):
            optuna.storages.fail_stale_trials(s)  # dead workers' cells: failed, queued again once
            states = [t.state for t in s.get_trials(deepcopy=False)]
            if TrialState.WAITING not in states:
                return None, states.count(TrialState.RUNNING)
            trial = s.ask()
            st.record_heartbeat(trial._trial_id)  # noqa: SLF001 - at once: a trial with no heartbeat never goes stale
            return trial, None

    def work(slot: int) -> None:
        waited = False
        while not runner.stopping:
            trial, running = take()
            if trial is None:
                if not running:
                    return
                if not waited:
                    log(f"worker slot {slot}: waiting for {running} running cell(s) of other workers")
                    waited = True
                time.sleep(min(5.0, heartbeat / 2))
                continue
            waited = False
            cell = trial.suggest_categorical(CELL, cells)
            name, seed = cell.rsplit("|", 1)
            trial.set_user_attr("machine", machine)
            try:
                os.makedirs(os.path.join(out_dir, name), exist_ok=True)
                with Heartbeat(st, trial._trial_id, heartbeat):  # noqa: SLF001
                    done = runner.one(args_of[name], int(seed), os.path.join(out_dir, name), f"{name} ")
            except BaseException:  # not this cell's fault: back into the queue (once), then up
                s.tell(trial, state=TrialState.FAIL)
                st.get_heartbeat_stale_trial_callback()(s, st.get_trial(trial._trial_id))  # noqa: SLF001
                raise
            if done["rc"] is None:  # this sweep is stopping: the cell goes back into the queue
                s.tell(trial, state=TrialState.FAIL)
                st.get_heartbeat_stale_trial_callback()(s, st.get_trial(trial._trial_id))  # noqa: SLF001
                return
            if done["rc"] != 0:
                trial.set_user_attr("error", f"train exited {done['rc']} (log: {done['dir']}.log on {machine})")
                s.tell(trial, state=TrialState.FAIL)
                continue
            record = run_record(done["dir"])
            record["machine"] = machine
            trial.set_user_attr("record", record)
            s.tell(trial, record["test_accuracy"] if record["test_accuracy"] is not None else 0.0)

    with runner.stopping_on_signals(), ThreadPoolExecutor(max_workers=jobs) as pool:
        for f in [pool.submit(work, k) for k in range(jobs)]:
            f.result()
    if runner.stopping:
        raise TrainingInterrupted("sweep interrupted: this worker's running cells are queued again; run the same "
                                  "command to go on", out_dir)
    return summaries(s, plan, seeds)


def summaries(s, plan, seeds: Sequence[int]) -> Dict[str, Dict]:
    """Per configuration: the summary of its stored run records (as a local sweep's), plus the
    seeds without a finished run (``failed_seeds``: failed for good, or not run yet)."""
    records: Dict[str, Dict[int, Dict]] = {name: {} for name, *_ in plan}
    for t in s.get_trials(deepcopy=False):
        rec = t.user_attrs.get("record")
        if t.state.name == "COMPLETE" and rec is not None:
            name, seed = t.params[CELL].rsplit("|", 1)
            records.setdefault(name, {})[int(seed)] = rec
    out = {}
    for name, args, *_ in plan:
        got = records.get(name, {})
        summary = summarize_records([got[k] for k in sorted(got)])
        summary["command"] = ["python", "-m", "infomorph", "train", *args, "--seeds", ",".join(map(str, seeds))]
        summary["failed_seeds"] = [k for k in seeds if k not in got]
        out[name] = summary
    return out


def report(storage: str, study: str, plan, seeds, out_dir: str, experiment: Optional[str]) -> Dict[str, Dict]:
    """--summary-only: the sweep's files from the storage, without training."""
    s, _, _ = _open(storage, study, 30, plan, seeds, create=False)
    results = summaries(s, plan, seeds)
    write(results, plan, seeds, out_dir, experiment)
    return results


def write(results: Dict[str, Dict], plan, seeds, out_dir: str, experiment: Optional[str]) -> None:
    """sweep.json/sweep.md/plots (an experiment file), or summary.json/md/accuracy.png (train --seeds)."""
    os.makedirs(out_dir, exist_ok=True)
    if experiment is None:
        write_summary(results[SINGLE], out_dir)
    else:
        write_experiment(out_dir, experiment, seeds, plan, results)
