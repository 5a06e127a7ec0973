"""Seed runs and sweeps (python -m infomorph train --seeds / sweep): aggregation on known numbers,
resume after a killed run, and the experiment file."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import infomorph
from infomorph.errors import UserError
from infomorph.sweep import parse_seeds, strip_own_options, summarize, write_summary
from signals import run_and_signal

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(infomorph.__file__)))
TINY = ["--dataset", "synthetic", "--hidden", "6", "--batch-size", "64", "--limit-train", "200", "--limit-test", "60"]


def _env():
    return dict(os.environ, PYTHONPATH=os.pathsep.join([PKG_ROOT, os.environ.get("PYTHONPATH", "")]))


def cli(*args):
    return subprocess.run([sys.executable, "-m", "infomorph", *args], capture_output=True, text=True, env=_env(),
                          timeout=600)


def test_parse_seeds_and_own_options():
    assert parse_seeds("0-3") == [0, 1, 2, 3] and parse_seeds("5,1,2-3") == [1, 2, 3, 5]
    for bad in ("", "a", "3-1", "-2"):
        with pytest.raises(UserError, match="--seeds"):
            parse_seeds(bad)
    assert strip_own_options(["--setup", "2", "--seeds", "0-9", "--jobs", "2", "--out", "D", "--seed=3",
                              "--threads", "1", "--no-progress", "--hidden", "10"]) == ["--setup", "2", "--hidden", "10"]


def _fake_run(d, seed, test, vals, secs):
    os.makedirs(d)
    hist = [{"epoch": i + 1, "val_accuracy": v, "test_accuracy": test - 0.01 * (len(vals) - 1 - i)} for i, v in enumerate(vals)]
    with open(os.path.join(d, "results.json"), "w") as fh:
        json.dump({"config": {"seed": seed, "epochs": len(vals)}, "epochs_done": len(vals), "test_accuracy": test,
                   "wall_seconds": secs, "history": hist}, fh)


def test_summary_of_known_numbers(tmp_path):
    runs = [(0, 0.90, [0.5, 0.8], 10.0), (1, 0.94, [0.9, 0.7], 20.0), (2, 0.92, [0.6, 0.95], 30.0)]
    dirs = []
    for seed, test, vals, secs in runs:
        d = str(tmp_path / f"seed-{seed}")
        _fake_run(d, seed, test, vals, secs)
        dirs.append(d)
    s = summarize(dirs)
    t = s["test_accuracy"]
    assert t["n"] == 3 and t["min"] == 0.90 and t["max"] == 0.94 and t["median"] == 0.92
    assert abs(t["mean"] - 0.92) < 1e-12 and abs(t["std"] - 0.02) < 1e-12
    assert s["best_val_accuracy"]["min"] == 0.8 and s["best_val_accuracy"]["max"] == 0.95
    assert s["seconds_per_run"]["mean"] == 20.0
    assert s["runs"][1]["test_curve"] == pytest.approx([0.93, 0.94], abs=1e-12)


def test_summary_of_runs_without_validation(tmp_path):
    """--val-fraction 0: no validation accuracy in any epoch; the table says '-' there (it raised
    KeyError at the end of a 50-epoch sweep)."""
    dirs = []
    for seed, test in ((0, 0.97), (1, 0.98)):
        d = str(tmp_path / f"seed-{seed}")
        _fake_run(d, seed, test, [None, None], 5.0)
        dirs.append(d)
    s = summarize(dirs)
    assert not s["best_val_accuracy"]
    write_summary(s, str(tmp_path))
    row = open(tmp_path / "summary.md").read().splitlines()[-1]
    assert row.startswith("| all seeds | 2 | 97.50 |") and row.endswith("| - | 5.0 |"), row


def test_seed_sweep_resumes_after_a_killed_run(tmp_path):
    out = tmp_path / "sweep"
    args = ["train", *TINY, "--epochs", "2", "--seeds", "0-1", "--jobs", "2", "--out", str(out)]
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"]["n"] == 2 and (out / "summary.md").is_file() and (out / "accuracy.png").is_file()
    done0 = (out / "seed-0" / "results.json").stat().st_mtime_ns
    # seed 1 "killed" after its first epoch: its results say 1 of 2 epochs, the checkpoint holds epoch 1
    r1 = json.loads((out / "seed-1" / "results.json").read_text())
    keep = r1["history"][-1]["test_accuracy"]
    cut = tmp_path / "cut"
    assert cli("train", *TINY, "--epochs", "1", "--seed", "1", "--out", str(cut), "--no-progress").returncode == 0
    for f in ("results.json", "checkpoint.pt"):
        (out / "seed-1" / f).write_bytes((cut / f).read_bytes())
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "seed 0: done already" in res.stdout and "seed 1: resuming" in res.stdout
    assert (out / "seed-0" / "results.json").stat().st_mtime_ns == done0  # finished seeds are never re-run
    r1 = json.loads((out / "seed-1" / "results.json").read_text())
    assert r1["epochs_done"] == 2 and r1["history"][-1]["test_accuracy"] == keep  # resumed exactly


def test_experiment_file_and_bad_input(tmp_path):
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"seeds": "0", "base": {"dataset": "synthetic", "batch_size": 64, "limit_train": 200,
                                                     "limit_test": 60, "epochs": 1},
                               "runs": {"small": {"hidden": 4, "band": "infomorphic"},
                                        "large": {"hidden": 12, "band": "infomorphic", "model": "infomorphic"},
                                        "bp": {"hidden": 4, "backprop": True}}}))
    out = tmp_path / "exp"
    res = cli("sweep", str(exp), "--out", str(out), "--jobs", "2")
    assert res.returncode == 0, res.stderr
    table = (out / "sweep.md").read_text()
    assert all(f"| {n} | 1 |" in table for n in ("small", "large", "bp"))
    assert (out / "accuracy_vs_hidden.png").is_file()
    assert json.loads((out / "large" / "seed-0" / "results.json").read_text())["config"]["hidden"] == [12]
    assert json.loads((out / "sweep.json").read_text())["runs"]["large"]["band"] == "infomorphic"
    old = tmp_path / "old.json"  # a file from before the model option: 'model' as a band label
    old.write_text(json.dumps({"runs": {"a": {"model": "Setup 1", "hidden": 4}}}))
    for args, words in ((["sweep", str(old), "--out", str(out)], "model 'Setup 1' is not a model (infomorphic, backprop, corinfomax); a plot band's label is 'band:'"),
                        (["sweep", str(tmp_path / "none.yaml"), "--out", str(out)], "does not exist"),
                        (["train", *TINY, "--seeds", "x", "--out", str(out)], "--seeds"),
                        (["train", *TINY, "--seeds", "0-1"], "--seeds goes with --out")):
        r = cli(*args)
        lines = [l for l in r.stderr.splitlines() if l.strip()]
        assert r.returncode == 2 and len(lines) == 1 and words in lines[0] and "Traceback" not in r.stderr, r.stderr


def test_experiment_queues_every_seed_of_every_configuration_in_one_pool(tmp_path, monkeypatch):
    # 2 configurations x 3 seeds on 2 jobs: the third seed of "a" must run beside the first of "b"
    # (per-configuration pools would leave a job idle). "a" seed 2 waits for "b" seed 0 to start.
    import threading

    from infomorph import sweep

    b_started = threading.Event()
    overlapped = []

    def fake_one(self, train_args, seed, out_dir, label=""):
        name = os.path.basename(out_dir)
        if (name, seed) == ("b", 0):
            b_started.set()
        if (name, seed) == ("a", 2):
            overlapped.append(b_started.wait(timeout=20))
        d = os.path.join(out_dir, f"seed-{seed}")
        _fake_run(d, seed, 0.9 + 0.01 * seed, [0.5], 1.0)
        return {"seed": seed, "dir": d, "rc": 1 if (name, seed) == ("b", 1) else 0}

    monkeypatch.setattr(sweep._Runner, "one", fake_one)
    exp = tmp_path / "exp.json"
    exp.write_text(json.dumps({"seeds": "0-2", "runs": {"a": {"hidden": 4}, "b": {"hidden": 8}}}))
    with pytest.raises(UserError, match="b seed 1 failed"):  # a failed run fails the sweep, after the rest ran
        sweep.run_experiment(str(exp), str(tmp_path / "out"), jobs=2, log=lambda *_: None)
    assert overlapped == [True]
    res = json.loads((tmp_path / "out" / "sweep.json").read_text())["runs"]
    assert res["a"]["test_accuracy"]["n"] == 3 and res["b"]["test_accuracy"]["n"] == 2
    assert res["b"]["failed_seeds"] == [1]


def test_threads_per_run_default_and_given():
    from infomorph import sweep

    assert sweep._Runner(1, threads=1).threads == 1
    assert sweep._Runner(2).threads == max(1, (os.cpu_count() or 1) // 2)
    with pytest.raises(UserError, match="--threads"):
        sweep._Runner(1, threads=0)


def _wait_for(path, proc, timeout=300.0):
    import time
    t0 = time.monotonic()
    while not os.path.exists(path):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout, f"{path} did not appear"
        time.sleep(0.05)


def test_sigterm_stops_the_sweep_and_its_running_training(tmp_path):
    """SIGTERM to a running sweep (kill, a scheduler's stop): the running training is asked to stop
    too (it saves its checkpoint) instead of running on as an orphan, no further seed starts, the
    command exits 130 with one line saying how to resume, and the same command then finishes."""
    import signal

    out = tmp_path / "sweep"
    args = ["train", "--dataset", "synthetic", "--hidden", "16", "--batch-size", "16", "--limit-train", "1500",
            "--limit-test", "100", "--epochs", "3", "--seeds", "0-1", "--jobs", "1", "--threads", "1",
            "--out", str(out)]
    child = []

    def after_epoch_1(proc):  # seed 0 has finished epoch 1
        _wait_for(out / "seed-0" / "results.json", proc)
        child.append(int((out / "seed-0" / ".lock").read_text()))

    rc, stdout, stderr = run_and_signal(args, _env(), signal.SIGTERM, after_epoch_1)
    lines = [l for l in stderr.splitlines() if l.strip()]
    assert rc == 130, stderr
    assert "Traceback" not in stderr and len(lines) == 1 and "resume" in lines[0], stderr
    with pytest.raises(ProcessLookupError):  # the training stopped with the sweep (and was reaped)
        os.kill(child[0], 0)
    assert not (out / "seed-1").exists() and "seed 1" not in stdout  # nothing new started
    assert "seed 0: stopped" in stdout
    res = cli(*args)
    assert res.returncode == 0, res.stderr
    assert "seed 0: resuming" in res.stdout
    for seed in (0, 1):
        assert json.loads((out / f"seed-{seed}" / "results.json").read_text())["epochs_done"] == 3


def test_a_second_training_into_a_busy_run_directory_stops_at_once(tmp_path):
    """Two writers to one checkpoint are refused: while a training holds DIR, another `train --out
    DIR` (or --resume DIR) ends with one line naming the directory and the holder, exit 2."""
    from infomorph.rundir import RunLock as _RunLock

    run = tmp_path / "run"
    run.mkdir()
    lock = _RunLock(str(run)).acquire()
    try:
        for extra in (["--out", str(run)], ["--resume", str(run)]):
            res = cli("train", *TINY, "--epochs", "1", "--no-progress", *extra)
            lines = [l for l in res.stderr.splitlines() if l.strip()]
            assert res.returncode == 2 and len(lines) == 1 and "Traceback" not in res.stderr, res.stderr
            assert str(run) in lines[0] and "another process" in lines[0] and f"pid {os.getpid()}" in lines[0]
    finally:
        lock.release()
    res = cli("train", *TINY, "--epochs", "1", "--no-progress", "--out", str(run))
    assert res.returncode == 0, res.stderr


# ------------------------------------------------------------------- sweeps shared through a storage
from pgserver import postgres  # noqa: E402,F401  (the fixture: a server of this module's own)

SHARED_EXP = """seeds: 0-2
base:
  dataset: synthetic
  hidden: 6
  batch_size: 64
  limit_train: 200
  limit_test: 60
  epochs: {epochs}
runs:
  heur:
    goal: heuristic
  opt:
    goal: optimized
"""


def _sweep_trials(storage, study):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _accuracies(sweep_json):
    runs = json.loads(open(sweep_json).read())["runs"]
    return {(name, r["seed"]): r["test_accuracy"] for name, s in runs.items() for r in s["runs"]}


def test_shared_sweep_two_workers_one_killed(tmp_path, postgres):
    """Two workers of one sweep (2 configurations x 3 seeds) started together on a real PostgreSQL
    server, as on two machines; one is SIGKILLed inside its first run: that (configuration, seed) is
    failed once its heartbeat stops and run again by the other worker; every cell ends with exactly one result; the summary
    equals a local sweep's of the same file, and --summary-only writes it on any machine."""
    exp = tmp_path / "exp.yaml"
    exp.write_text(SHARED_EXP.format(epochs=150))
    common = ["sweep", str(exp), "--storage", postgres, "--study", "kill", "--heartbeat", "1", "--threads", "1"]
    env = _env()
    with open(tmp_path / "a.log", "w") as la, open(tmp_path / "b.log", "w") as lb:
        a = subprocess.Popen([sys.executable, "-m", "infomorph", *common, "--out", str(tmp_path / "a")],
                             stdout=la, stderr=subprocess.STDOUT, env=env)
        b = subprocess.Popen([sys.executable, "-m", "infomorph", *common, "--out", str(tmp_path / "b")],
                             stdout=lb, stderr=subprocess.STDOUT, env=env)
        try:
            t0 = time.time()  # a's first cell has begun once its run log exists
            while not list((tmp_path / "a").glob("*/seed-*.log")):
                assert a.poll() is None, (tmp_path / "a.log").read_text()
                assert time.time() - t0 < 180, "worker a started no cell"
                time.sleep(0.1)
            time.sleep(1.0)  # inside the run
        finally:
            a.send_signal(signal.SIGKILL)
            a.wait()
        killed_cell = next((tmp_path / "a").glob("*/seed-*.log"))
        killed_cell = f"{killed_cell.parent.name}|{killed_cell.stem.split('-')[1]}"
        assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()
    trials = _sweep_trials(postgres, "kill")
    done = [t.params["cell"] for t in trials if t.state.name == "COMPLETE"]
    assert sorted(done) == sorted(f"{n}|{s}" for n in ("heur", "opt") for s in range(3))  # each exactly once
    fails = [t for t in trials if t.state.name == "FAIL"]
    assert [t.params["cell"] for t in fails] == [killed_cell]  # a's cell, failed once its heartbeat stopped
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == fails[0].number]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == fails[0].params
    assert retry[0].user_attrs["record"]["dir"].startswith(str(tmp_path / "b"))  # run again by the other worker
    # the same sweep run locally (one process, no storage): the same accuracies per (configuration, seed)
    r = cli("sweep", str(exp), "--out", str(tmp_path / "local"), "--threads", "1")
    assert r.returncode == 0, r.stderr
    want = _accuracies(tmp_path / "local" / "sweep.json")
    assert len(want) == 6 and _accuracies(tmp_path / "b" / "sweep.json") == want
    # --summary-only: the files from the storage alone, on any machine, without training
    r = cli("sweep", str(exp), "--storage", postgres, "--study", "kill", "--summary-only", "--out", str(tmp_path / "r"))
    assert r.returncode == 0, r.stderr
    assert _accuracies(tmp_path / "r" / "sweep.json") == want and not (tmp_path / "r" / "heur").exists()
    # another experiment under the same study name is refused with one line
    exp2 = tmp_path / "exp2.yaml"
    exp2.write_text(SHARED_EXP.format(epochs=2))
    r = cli("sweep", str(exp2), "--storage", postgres, "--study", "kill", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "holds another sweep" in r.stderr and len(r.stderr.strip().splitlines()) == 1


def test_shared_seeds_and_bad_input(tmp_path):
    """train --seeds --storage: one configuration shared (SQLite here: workers on one machine); the
    same summary as train --seeds alone; bad combinations are one line, exit 2."""
    db = f"sqlite:///{tmp_path / 's.db'}"
    args = ["train", *TINY, "--epochs", "2", "--seeds", "0-1", "--threads", "1"]
    r = cli(*args, "--storage", db, "--study", "seeds", "--out", str(tmp_path / "shared"))
    assert r.returncode == 0, r.stderr
    r2 = cli(*args, "--out", str(tmp_path / "plain"))
    assert r2.returncode == 0, r2.stderr
    got = json.loads((tmp_path / "shared" / "summary.json").read_text())
    want = json.loads((tmp_path / "plain" / "summary.json").read_text())
    assert [x["test_accuracy"] for x in got["runs"]] == [x["test_accuracy"] for x in want["runs"]]
    assert got["test_accuracy"] == want["test_accuracy"] and got["failed_seeds"] == []
    # the same command again: nothing is run twice
    r3 = cli(*args, "--storage", db, "--study", "seeds", "--out", str(tmp_path / "shared"))
    assert r3.returncode == 0 and len(_sweep_trials(db, "seeds")) == 2
    for bad, needle in ((["train", *TINY, "--storage", db, "--out", str(tmp_path / "y")], "go with --seeds"),
                        (["sweep", "nofile.yaml", "--summary-only", "--out", str(tmp_path / "y")], "--summary-only reads"),
                        ([*args, "--storage", db, "--study", "nope", "--summary-only", "--out", str(tmp_path / "y")],
                         "--study nope: no such sweep")):
        r = cli(*bad)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
