"""The goal search (python -m infomorph search / analyze): real optuna studies on small budgets.

SQLite (the default storage) and a real PostgreSQL server that the tests start themselves (initdb
and pg_ctl into a temporary folder, a free loopback port, as the postgres user when run as root).
Training is the tiny built-in synthetic problem, so a trial takes a fraction of a second (trials
that must be killed mid-way get more epochs)."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

optuna = pytest.importorskip("optuna", reason="the goal search needs optuna: bash scripts/setup.sh installs it")

from infomorph import search as S  # noqa: E402
from infomorph import study as St  # noqa: E402
from infomorph.goals import gamma_names, resolve_goal  # noqa: E402
from pgserver import postgres  # noqa: E402,F401  (the fixture: a server of this module's own)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ["--dataset", "synthetic", "--hidden", "8", "--threads", "1", "--no-progress"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), ROOT, env.get("PYTHONPATH", "")])
    return env


def _cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "infomorph", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout, cwd=ROOT)


def _popen(*args, log):
    return subprocess.Popen([sys.executable, "-m", "infomorph", *args], stdout=log, stderr=subprocess.STDOUT,
                            env=_env(), cwd=ROOT)


def _trials(storage, study="infomorph-goal"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def _wait_for_running(storage, deadline_s=120, study="infomorph-goal"):
    t0 = time.time()
    while time.time() - t0 < deadline_s:
        try:
            running = [t for t in _trials(storage, study) if t.state.name == "RUNNING"]
        except Exception:  # noqa: BLE001 - the study may not exist yet
            running = []
        if running:
            time.sleep(1.5)  # well into the trial: it has sent heartbeats
            return running
        time.sleep(0.2)
    raise AssertionError("no trial started running in time")


def test_search_writes_files_and_best_goal_trains(tmp_path):
    out = tmp_path / "s"
    r = _cli("search", *TINY, "--epochs", "1", "--trials", "3", "--fix", "H_res=0", "--fix", "{F}{C}=0.5",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    assert summary["trials"] == {"COMPLETE": 3}
    meta = json.loads((out / "search.json").read_text())
    for key in ("sampler", "trials_by_state", "best_value", "best_goal", "trials_per_hour", "command"):
        assert key in meta
    # the files name paths relative to the search directory: none of this machine's paths
    for f in ("search.json", "best_goal.yaml"):
        assert str(tmp_path) not in (out / f).read_text(), f
    assert meta["settings"]["out"] == "." and meta["storage_url"] == "sqlite:///study.db"
    trials = _trials(St.resolve_storage(meta["storage_url"], str(out)))
    best = max((t for t in trials if t.state.name == "COMPLETE"), key=lambda t: (t.value, -t.number))
    assert meta["best_value"] == best.value and meta["best_trial"] == best.number
    # best_goal.yaml: the best trial's parameters plus the fixed atoms, and train takes it as is
    goal = resolve_goal(str(out / "best_goal.yaml"), 3).tolist()
    names = gamma_names(3)
    want = [0.0 if n == "H_res" else 0.5 if n == "{1}{2}" else best.params[n] for n in names]
    assert goal == pytest.approx(want, abs=0, rel=0)
    assert "H_res" not in best.params and "{1}{2}" not in best.params and len(best.params) == 17
    # trials.csv: one row per trial with every gamma, the value and the seconds
    rows = (out / "trials.csv").read_text().strip().splitlines()
    head = rows[0].split(",")
    assert head[:2] == ["number", "state"] and head[2:2 + len(names)] == names and "value" in head
    assert len(rows) == 4 and all(r.split(",")[1] == "COMPLETE" for r in rows[1:])
    assert sorted(int(r.split(",")[0]) for r in rows[1:]) == [0, 1, 2]
    # each trial's history, and a re-run of a trial alone gives the same accuracy (seed from study seed + number)
    rec = json.loads((out / "trials" / f"{best.number}.json").read_text())
    assert rec["seed"] == St.trial_seed(0, best.number) and len(rec["history"]) == 1
    settings = St.SearchSettings(**{**meta["settings"], "space": {k: tuple(v) for k, v in meta["settings"]["space"].items()}})
    import torch

    torch.set_num_threads(1)
    data = S.load_data(settings.train, settings.seed)
    again = S.train_goal(settings.train, rec["goal"], rec["seed"], data, str(tmp_path / "again"))
    assert S._best_val(again["history"]) == best.value
    t = _cli("train", *TINY, "--epochs", "1", "--goal", str(out / "best_goal.yaml"), "--out", str(tmp_path / "t"))
    assert t.returncode == 0, t.stderr
    res = json.loads((tmp_path / "t" / "results.json").read_text())
    assert res["goals"]["hidden"] == dict(zip(names, want))
    # the same command with more trials resumes the study: the 3 complete trials are kept, 2 more run
    r2 = _cli("search", *TINY, "--epochs", "1", "--trials", "5", "--fix", "H_res=0", "--fix", "{F}{C}=0.5",
              "--out", str(out))
    assert r2.returncode == 0, r2.stderr
    after = _trials(St.resolve_storage(meta["storage_url"], str(out)))
    assert [t.number for t in after] == [0, 1, 2, 3, 4] and all(t.state.name == "COMPLETE" for t in after)
    assert [after[i].params for i in range(3)] == [trials[i].params for i in range(3)]
    assert after[3].params != after[0].params  # a resumed sampler does not replay the first suggestions
    # other settings on the same study are refused with one line
    r3 = _cli("search", *TINY, "--epochs", "2", "--trials", "5", "--out", str(out))
    assert r3.returncode == 2 and "other settings" in r3.stderr and "Traceback" not in r3.stderr


def test_killed_search_resumes_and_retries_the_killed_trial(tmp_path):
    out = tmp_path / "s"
    # 300 epochs of the tiny model: a few seconds per trial, so the worker dies inside its first
    # trial (60 epochs took under the 1.5 s _wait_for_running waits once start-up got faster)
    args = ["search", *TINY, "--epochs", "300", "--trials", "2", "--heartbeat", "1", "--prune", "none", "--out", str(out)]
    storage = f"sqlite:///{out / 'study.db'}"
    with open(tmp_path / "first.log", "w") as log:
        p = _popen(*args, log=log)
        try:
            _wait_for_running(storage)
        finally:
            p.send_signal(signal.SIGKILL)
            p.wait()
    left = [t for t in _trials(storage) if t.state.name == "RUNNING"]  # as the dead worker left it
    assert len(left) == 1
    killed = left[0]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr + (tmp_path / "first.log").read_text()
    trials = _trials(storage)
    by_state = {}
    for t in trials:
        by_state.setdefault(t.state.name, []).append(t)
    assert len(by_state["COMPLETE"]) == 2 and len(by_state["FAIL"]) == 1
    assert by_state["FAIL"][0].number == killed.number
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed.number]
    failed = by_state["FAIL"][0]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == failed.params
    assert len(failed.params) == 19
    assert retry[0].user_attrs["seed"] == St.trial_seed(0, killed.number)  # the retry trains with the same seed
    rows = (out / "trials.csv").read_text().strip().splitlines()
    assert any(r.split(",")[-1] == str(killed.number) for r in rows[1:])


def test_pruned_trial_stops_early(tmp_path):
    out = tmp_path / "p"
    out.mkdir()
    settings = St.SearchSettings(out=str(out), storage=f"sqlite:///{out / 'db.sqlite'}", study="p", sampler="random",
                                 prune="none", trials=1, seed=0, startup_trials=1, heartbeat=5,
                                 space={n: (-1.0, 1.0) for n in gamma_names(3)}, fixed={},
                                 train={"dataset": "synthetic", "hidden": [8], "epochs": 5})
    study = St.open_study(settings)
    study.pruner = optuna.pruners.ThresholdPruner(upper=0.0)  # any accuracy above 0 prunes at the first report
    trial = study.ask()
    import torch

    torch.set_num_threads(1)
    data = S.load_data(settings.train, 0)
    assert S._run_trial(study, study._storage, trial, settings, data, str(out / "trials"), 0)
    (t,) = study.get_trials()
    assert t.state.name == "PRUNED" and t.user_attrs["epochs"] == 1 and list(t.intermediate_values) == [1]
    assert not os.path.exists(out / "trials" / f"run-{t.number}")


def _replay(study, curve, epochs: int = 100) -> int:
    """One trial of ``study`` reporting ``curve(epoch)`` after each epoch until pruned: the epoch it
    stopped at (``epochs`` if it ran to the end)."""
    trial = study.ask()
    for epoch in range(1, epochs + 1):
        acc = curve(epoch)
        trial.report(acc, epoch)
        if trial.should_prune():
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            return epoch
    study.tell(trial, acc)
    return epochs


def test_successive_halving_stops_trials_at_its_rungs():
    """--prune sha: rungs at a tenth, three tenths and nine tenths of the epochs; a trial goes on past
    a rung only in the top third of the trials that reached it. Replayed on an in-memory study with
    known curves (each trial's accuracy a constant): the first trials pass (nothing to compare), a
    trial worse than two thirds of those before it stops at the first rung, the best runs on."""
    settings = St.SearchSettings(out=".", storage="", study="r", sampler="random", prune="sha", trials=1, seed=0,
                                 startup_trials=1, heartbeat=5, space={}, fixed={}, train={"epochs": 100})
    pruner = St._pruner(settings)
    assert isinstance(pruner, optuna.pruners.SuccessiveHalvingPruner)
    study = optuna.create_study(direction="maximize", pruner=pruner)
    stops = [_replay(study, lambda epoch, a=a: a) for a in (0.5, 0.6, 0.7, 0.8, 0.9, 0.1, 0.95, 0.2)]
    assert stops[-3] == 10 and stops[-1] == 10  # below the top third at the first rung (epoch 10)
    assert stops[-2] == 100  # the best so far passes every rung
    from dataclasses import replace

    assert St._pruner(replace(settings, prune="none")).__class__.__name__ == "NopPruner"


def test_successive_halving_first_rung_and_factor_are_options():
    """--prune-min-epochs 1 --prune-factor 4: rungs at 1, 4, 16 and 64 epochs, a quarter goes on.
    Trials with constant accuracies: the first passes every rung; a trial below the top quarter stops
    at epoch 1; a trial that is the best at the first rungs but not at 16 stops there."""
    settings = St.SearchSettings(out=".", storage="", study="r", sampler="random", prune="sha", trials=1, seed=0,
                                 startup_trials=1, heartbeat=5, space={}, fixed={}, train={"epochs": 100},
                                 prune_min_epochs=1, prune_factor=4)
    study = optuna.create_study(direction="maximize", pruner=St._pruner(settings))
    assert _replay(study, lambda e: 0.5) == 100
    for a in (0.6, 0.7, 0.8):
        _replay(study, lambda e, a=a: a)
    assert _replay(study, lambda e: 0.1) == 1  # below the top quarter at the first rung
    assert _replay(study, lambda e: 0.99 if e < 16 else 0.2) == 16  # passes rungs 1 and 4, not 16
    ident = settings.identity()
    assert ident["prune_min_epochs"] == 1 and ident["prune_factor"] == 4
    from dataclasses import replace

    plain = replace(settings, prune_min_epochs=None, prune_factor=3).identity()
    assert "prune_min_epochs" not in plain and "prune_factor" not in plain  # earlier studies still resume
    line = S._cmd_line(replace(settings, train={"dataset": "mnist", "setup": 1, "hidden": [100], "epochs": 100}))
    assert line[-6:-2] == ["--prune-min-epochs", "1", "--prune-factor", "4"]


def test_prune_floor_stops_goals_below_it_from_its_epoch_on():
    """--prune-floor 0.5@3 beside successive halving from epoch 9: a trial below 50 % stops at epoch 3
    (not before), one above it goes on to the first rung; the floor is part of the study's identity."""
    settings = St.SearchSettings(out=".", storage="", study="f", sampler="random", prune="sha", trials=1, seed=0,
                                 startup_trials=1, heartbeat=5, space={}, fixed={}, train={"epochs": 100},
                                 prune_min_epochs=9, prune_floor=(0.5, 3))
    study = optuna.create_study(direction="maximize", pruner=St._pruner(settings))
    assert _replay(study, lambda e: 0.9) == 100  # the first trial passes every rung
    assert _replay(study, lambda e: 0.2) == 3  # does not learn: stopped at the floor's epoch
    assert _replay(study, lambda e: 0.2 if e < 3 else 0.6) == 9  # learns late: on to the first rung
    assert settings.identity()["prune_floor"] == [0.5, 3]
    from dataclasses import replace

    assert "prune_floor" not in replace(settings, prune_floor=None).identity()  # earlier studies still resume
    line = S._cmd_line(replace(settings, train={"dataset": "mnist", "setup": 1, "hidden": [100], "epochs": 100}))
    assert line[line.index("--prune-floor") + 1] == "0.5@3"


def test_analyze_writes_importances_ablations_and_plots(tmp_path):
    out = tmp_path / "s"
    r = _cli("search", *TINY, "--epochs", "1", "--trials", "6", "--sampler", "random", "--fix", "H_res=0",
             "--out", str(out))
    assert r.returncode == 0, r.stderr
    a = _cli("analyze", str(out), "--ablation-seeds", "1", "--epochs", "1", "--threads", "1")
    assert a.returncode == 0, a.stderr
    res = json.loads((out / "importance.json").read_text())
    searched = [n for n in gamma_names(3) if n != "H_res"]
    for how in ("mean_decrease_impurity", "fanova"):
        imp = res["importance"][how]
        assert sorted(imp) == sorted(searched) and sum(imp.values()) == pytest.approx(1.0)
    abl = res["ablation"]
    assert sorted(abl["single"]) == sorted(searched)
    assert [s["ablated"] for s in abl["successive"]] == sorted(searched, key=lambda n: -abl["single"][n]["change"])
    for n, v in abl["single"].items():
        assert v["change"] == pytest.approx(v["accuracy"] - abl["base"])
    # every ablation run is cached: a second analyze trains nothing and agrees
    runs = json.loads((out / "ablation_runs.json").read_text())
    assert len(runs) == 1 + 2 * len(searched) - 1  # the last successive step = all zero; one of them may repeat
    for png in ("history.png", "importance.png", "ablation.png"):
        assert (out / png).stat().st_size > 1000


@pytest.mark.parametrize("args, needle", [
    (["--sampler", "grid"], "--sampler: unknown sampler 'grid'"),
    (["--prune", "always"], "--prune: unknown pruner 'always'"),
    (["--prune", "median", "--prune-min-epochs", "1"], "--prune-min-epochs/--prune-factor: only for --prune sha"),
    (["--prune", "sha", "--prune-factor", "1"], "--prune-factor: expected an integer of at least 2"),
    (["--prune", "sha", "--prune-min-epochs", "11"], "--prune-min-epochs: the first rung (11) must not exceed"),
    (["--storage", "not a url"], "--storage: 'not a url' is not a database URL"),
    (["--storage", "postgresql://nobody@127.0.0.1:1/none"], "--storage: cannot open the database"),
    (["--fix", "{1}{9}=0"], "--fix: '{1}{9}' is no atom"),
    (["--fix", "H_res"], "--fix takes ATOM=VALUE"),
    (["--fix", "H_res=abc"], "--fix H_res: expected a finite number"),
    (["--form", "sphere"], "--form: unknown form 'sphere'"),
    (["--prune-floor", "0.5"], "--prune-floor: expected ACCURACY@EPOCH"),
    (["--prune-floor", "1.5@3"], "--prune-floor: expected ACCURACY@EPOCH"),
    (["--prune-floor", "0.5@11"], "--prune-floor: expected ACCURACY@EPOCH"),
    (["--cma-popsize", "8"], "--cma-popsize: only for --sampler cmaes"),
    (["--hours", "0"], "--hours: expected a positive number of hours"),
    (["--hours", "soon"], "--hours: expected a positive number of hours"),
    (["--confirm", "5"], "--confirm: expected TOP:SEEDS"),
    (["--confirm", "0:3"], "--confirm: expected TOP:SEEDS"),
    (["--enqueue", "no-such-goal"], "--enqueue no-such-goal: goal 'no-such-goal' is neither a preset"),
    (["--enqueue", "optimized", "--enqueue", "heuristic"], "--enqueue: 2 goals for a study of --trials 1"),
])
def test_bad_search_input_is_one_line_and_exit_2(tmp_path, args, needle):
    r = _cli("search", *TINY, "--trials", "1", "--out", str(tmp_path / "x"), *args, timeout=120)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], r.stderr
    assert not (tmp_path / "x" / "trials").exists()


@pytest.mark.parametrize("space, needle", [
    ("'{1}{2}': [0.5, -0.5]\n", "empty or inverted range [0.5, -0.5]"),
    ("'{1}{2}': [0.3, 0.3]\n", "empty or inverted range [0.3, 0.3]"),
    ("'{F}{Q}': [0, 1]\n", "is no atom"),
    ("'{1}{2}': [0, 1, 2]\n", "takes [low, high]"),
    ("[1, 2]\n", "must map atom names"),
])
def test_bad_space_file(tmp_path, space, needle):
    f = tmp_path / "space.yaml"
    f.write_text(space)
    r = _cli("search", *TINY, "--trials", "1", "--space", str(f), "--out", str(tmp_path / "x"), timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
    assert f"--space {f}" in r.stderr or "--space" in r.stderr


def test_space_file_ranges_and_fixed_values(tmp_path):
    f = tmp_path / "space.yaml"
    f.write_text("'{F}{C}': [0.2, 0.4]\nH_res: 0\n'{123}': -0.5\n")
    space, fixed = St.parse_space(str(f), ["{3}=0.25"])
    assert space["{1}{2}"] == (0.2, 0.4) and space["{1}{2}{3}"] == (-1.0, 1.0)
    assert fixed == {"{3}": 0.25, "{123}": -0.5, "H_res": 0.0}
    assert len(space) + len(fixed) == len(gamma_names(3))


def test_direction_form_round_trips_to_the_goal_train_uses():
    """--form direction: the goal is the searched numbers over their largest magnitude (fixed atoms
    as they are); params_of inverts it for any goal, so an enqueued goal trains as itself."""
    import random

    names = gamma_names(3)
    space = {n: (-1.0, 1.0) for n in names if n != "H_res"}
    settings = St.SearchSettings(out=".", storage="", study="d", sampler="tpe", prune="none", trials=1, seed=0,
                                 startup_trials=1, heartbeat=30, space=space, fixed={"H_res": 0.125},
                                 form="direction")
    rng = random.Random(5)
    for _ in range(20):
        p = {n: rng.uniform(-1, 1) for n in space}
        g = St.goal_of(p, settings)
        top = max(abs(v) for v in p.values())
        assert g["H_res"] == 0.125 and max(abs(g[n]) for n in space) == pytest.approx(1.0, abs=1e-15)
        assert all(g[n] == pytest.approx(p[n] / top, rel=1e-15) for n in space)
        back = St.params_of(g, settings)  # a goal on the surface is its own parameters
        assert St.goal_of(back, settings) == pytest.approx(g, rel=1e-15)
        scaled = {n: 0.3 * v for n, v in g.items()}  # any positive multiple maps to the same goal
        assert St.goal_of(St.params_of(scaled, settings), settings) == pytest.approx(g, rel=1e-14)
    box = St.SearchSettings(**{**settings.__dict__, "form": "box"})
    p = {n: 0.5 for n in space}
    assert St.goal_of(p, box) == {**p, "H_res": 0.125} and St.params_of(St.goal_of(p, box), box) == p
    with pytest.raises(St.UserError, match="zero on every searched atom"):
        St.params_of({n: 0.0 for n in names}, settings)


def test_enqueued_goals_are_the_first_trials(tmp_path):
    """--enqueue puts known goals in as the first trials (the study's fixed atoms kept), in the
    direction form too; the trials train exactly those goals; a resumed study does not enqueue again."""
    out = tmp_path / "e"
    args = ["search", *TINY, "--epochs", "1", "--trials", "3", "--sampler", "random", "--form", "direction",
            "--fix", "H_res=0", "--enqueue", "optimized", "--enqueue", "heuristic", "--out", str(out)]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    assert "H_res = 0.035 runs as the study's fixed H_res = 0" in r.stdout
    names = gamma_names(3)
    opt, heur = resolve_goal("optimized", 3).tolist(), resolve_goal("heuristic", 3).tolist()
    want = [[v / max(abs(x) for x in opt[:-1]) for v in opt[:-1]] + [0.0], heur]
    for number, goal in enumerate(want):
        rec = json.loads((out / "trials" / f"{number}.json").read_text())
        assert [rec["goal"][n] for n in names] == pytest.approx(goal, rel=1e-12, abs=1e-15)
    rows = (out / "trials.csv").read_text().strip().splitlines()[1:]
    assert [float(x) for x in rows[1].split(",")[2:2 + len(names)]] == pytest.approx(heur, abs=1e-15)
    r2 = _cli(*[a if a != "3" else "4" for a in args])  # resumed with one trial more
    assert r2.returncode == 0, r2.stderr
    assert len(_trials(f"sqlite:///{out / 'study.db'}")) == 4
    # a goal outside the searched ranges is refused with one line naming it
    space = tmp_path / "space.yaml"
    space.write_text("'{F}{C}': [0, 0.5]\n")
    r3 = _cli("search", *TINY, "--trials", "2", "--space", str(space), "--enqueue", "heuristic",
              "--out", str(tmp_path / "x"), timeout=120)
    assert r3.returncode == 2 and len(r3.stderr.strip().splitlines()) == 1, r3.stderr
    assert "--enqueue heuristic: the goal's {1}{2} = 1 lies outside the searched range [0.0, 0.5]" in r3.stderr


def test_confirm_trains_the_best_goals_again_and_picks_the_best_mean(tmp_path):
    """--confirm TOP:SEEDS: the TOP best complete trials' goals, trained again on the same fresh
    seeds (not the trials' own), are ranked by their mean validation accuracy; best_goal.yaml is the
    winner; the runs are cached, so an extended study trains only its new candidates; without
    --confirm a stale confirmation is named as such and the best single trial is taken."""
    import torch

    out = tmp_path / "c"
    args = ["search", *TINY, "--epochs", "2", "--sampler", "random", "--fix", "H_res=0", "--out", str(out)]
    r = _cli(*args, "--trials", "5", "--confirm", "3:2")
    assert r.returncode == 0, r.stderr
    storage = f"sqlite:///{out / 'study.db'}"
    done = sorted((t for t in _trials(storage) if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number))
    conf = json.loads((out / "confirm.json").read_text())
    assert [c["trial"] for c in conf["candidates"]] == [t.number for t in done[:3]]
    seeds = [St.trial_seed(0, S.CONFIRM_SEED_BASE + k) for k in range(2)]
    assert conf["seeds"] == seeds and not set(seeds) & {St.trial_seed(0, t.number) for t in done}
    meta = json.loads((out / "search.json").read_text())
    settings = St.SearchSettings(**{**meta["settings"], "space": {k: tuple(v) for k, v in meta["settings"]["space"].items()}})
    torch.set_num_threads(1)
    data = S.load_data(settings.train, settings.seed)
    for c, t in zip(conf["candidates"], done):  # each value is that goal's run with that seed, reproduced alone
        again = [S._best_val(S.train_goal(settings.train, St.goal_of(t.params, settings), sd, data,
                                          str(tmp_path / f"a{t.number}-{sd}"))["history"]) for sd in seeds]
        assert c["values"] == again and c["mean"] == pytest.approx(sum(again) / 2) and c["trial_value"] == t.value
    chosen = max(conf["candidates"], key=lambda c: (c["mean"], c["trial_value"], -c["trial"]))
    assert conf["chosen_trial"] == chosen["trial"] == meta["chosen_trial"] and meta["best_trial"] == done[0].number
    goal = resolve_goal(str(out / "best_goal.yaml"), 3).tolist()
    want = St.goal_of(next(t for t in done if t.number == chosen["trial"]).params, settings)
    assert goal == [want[n] for n in gamma_names(3)]
    assert "chosen by --confirm" in (out / "best_goal.yaml").read_text()
    assert meta["wall_hours"] == pytest.approx(meta["study_hours"] + meta["confirm_hours"]) and meta["confirm_hours"] > 0
    assert "--confirm 3:2" in meta["command"]
    # extended by 3 trials: the candidates already run come from the cache (one line per new run)
    cache = json.loads((out / "confirm_runs.json").read_text())
    r2 = _cli(*args, "--trials", "8", "--confirm", "3:2")
    assert r2.returncode == 0, r2.stderr
    done2 = sorted((t for t in _trials(storage) if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number))
    conf2 = json.loads((out / "confirm.json").read_text())
    assert [c["trial"] for c in conf2["candidates"]] == [t.number for t in done2[:3]]
    cache2 = json.loads((out / "confirm_runs.json").read_text())
    assert set(cache) <= set(cache2) and all(cache2[k] == v for k, v in cache.items())
    assert len(cache2) == 2 * len({c["trial"] for c in conf["candidates"] + conf2["candidates"]})
    # more trials without --confirm: when the top has changed, the confirmation is stale and not used
    r3 = _cli(*args, "--trials", "14")
    assert r3.returncode == 0, r3.stderr
    done3 = sorted((t for t in _trials(storage) if t.state.name == "COMPLETE"), key=lambda t: (-t.value, t.number))
    meta3 = json.loads((out / "search.json").read_text())
    if [t.number for t in done3[:3]] != [c["trial"] for c in conf2["candidates"]]:
        assert meta3["confirm"] == {"stale": True} and meta3["chosen_trial"] == done3[0].number
    else:
        assert meta3["chosen_trial"] == conf2["chosen_trial"]


def test_hours_budget_stops_new_trials_and_counts_no_pause():
    """--hours: study_hours is the union of the trials' running intervals (overlapping workers count
    once, a pause between sessions not at all)."""
    import datetime as dt
    from types import SimpleNamespace as T

    t0 = dt.datetime(2026, 1, 1)
    m = lambda a, b: T(datetime_start=t0 + dt.timedelta(minutes=a), datetime_complete=t0 + dt.timedelta(minutes=b))
    trials = [m(0, 30), m(10, 40), m(40, 60), m(600, 630), T(datetime_start=t0, datetime_complete=None)]
    assert St.study_hours(trials) == pytest.approx(1.5)
    assert St.study_hours([]) == 0.0


def test_hours_budget_ends_the_study_early(tmp_path):
    out = tmp_path / "h"
    args = ["search", *TINY, "--epochs", "3", "--trials", "500", "--sampler", "random", "--hours", "0.0005",
            "--out", str(out)]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr
    meta = json.loads((out / "search.json").read_text())
    n = sum(meta["trials_by_state"].values())
    assert 1 <= n < 500 and meta["study_hours"] >= 0.0005 and "--hours 0.0005" in meta["command"]
    assert "the study has run its 0.0005 h (--hours): no new trial" in r.stdout
    # resumed with the same budget: nothing more runs; with a larger one it goes on
    assert _cli(*args).returncode == 0
    assert sum(json.loads((out / "search.json").read_text())["trials_by_state"].values()) == n
    r2 = _cli(*[a if a != "0.0005" else "0.001" for a in args])
    assert r2.returncode == 0 and sum(json.loads((out / "search.json").read_text())["trials_by_state"].values()) > n


@pytest.mark.parametrize("sampler", ["cmaes", "gp"])
def test_cmaes_with_pruning_and_gp_samplers_run(tmp_path, sampler):
    extra = ["--cma-popsize", "3", "--prune", "sha", "--prune-min-epochs", "1"] if sampler == "cmaes" else []
    r = _cli("search", *TINY, "--epochs", "2", "--trials", "4", "--sampler", sampler, "--fix", "H_res=0",
             "--form", "direction", "--startup-trials", "2", *extra, "--out", str(tmp_path / "c"))
    assert r.returncode == 0, r.stderr
    meta = json.loads((tmp_path / "c" / "search.json").read_text())
    assert sum(meta["trials_by_state"].values()) == 4 and meta["sampler"] == sampler
    assert ("--cma-popsize" in meta["command"]) == (sampler == "cmaes") and "--form direction" in meta["command"]
    for t in _trials(St.resolve_storage(meta["storage_url"], str(tmp_path / "c"))):
        g = St.goal_of(t.params, St.SearchSettings(**{**meta["settings"], "space": {
            k: tuple(v) for k, v in meta["settings"]["space"].items()}}))
        assert max(abs(v) for n, v in g.items() if n != "H_res") == pytest.approx(1.0)


# ------------------------------------------------------------------------------------ PostgreSQL
def _lock_waiters(storage) -> int:
    """How many sessions wait for an advisory lock on the server."""
    from sqlalchemy import text

    with St._lock_engine(storage).connect() as conn:
        return conn.execute(text("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar()


def test_postgres_two_workers_complete_exactly_the_trials(tmp_path, postgres):
    # Both workers must get trials whatever their start-up times (one tiny worker could otherwise run
    # all 7 trials before the other has imported torch): the test holds the study's own lock until
    # both wait for it, then lets go; the server hands the lock on in queue order.
    from types import SimpleNamespace

    with open(tmp_path / "cli.log", "w") as log:
        with St.study_lock(SimpleNamespace(storage=postgres, study="two")):
            p = _popen("search", *TINY, "--epochs", "1", "--trials", "7", "--jobs", "2", "--storage", postgres,
                       "--study", "two", "--out", str(tmp_path / "s"), log=log)
            t0 = time.time()
            while _lock_waiters(postgres) < 2:
                assert p.poll() is None, (tmp_path / "cli.log").read_text()
                assert time.time() - t0 < 240, "the two workers did not reach the study lock in time"
                time.sleep(0.2)
        assert p.wait(timeout=300) == 0, (tmp_path / "cli.log").read_text()
    trials = _trials(postgres, "two")
    assert [t.number for t in trials] == list(range(7)) and all(t.state.name == "COMPLETE" for t in trials)
    assert {t.user_attrs["worker"] for t in trials} == {0, 1}  # both workers ran trials
    assert len({json.dumps(t.params, sort_keys=True) for t in trials}) == 7
    logs = sorted(os.listdir(tmp_path / "s"))
    assert "worker-0.log" in logs and "worker-1.log" in logs


def test_postgres_worker_killed_mid_trial_study_still_completes(tmp_path, postgres):
    # two workers started independently (as on two machines) on one study; one is killed mid-trial
    # (300 epochs: a few seconds per trial, so the worker dies inside its first trial)
    args = ["search", *TINY, "--epochs", "300", "--trials", "3", "--heartbeat", "1", "--prune", "none",
            "--storage", postgres, "--study", "kill"]
    with open(tmp_path / "a.log", "w") as la, open(tmp_path / "b.log", "w") as lb:
        a = _popen(*args, "--out", str(tmp_path / "a"), log=la)
        try:
            _wait_for_running(postgres, study="kill")
        finally:
            a.send_signal(signal.SIGKILL)
            a.wait()
        left = [t for t in _trials(postgres, "kill") if t.state.name == "RUNNING"]  # as the dead worker left it
        assert len(left) == 1
        b = _popen(*args, "--out", str(tmp_path / "b"), log=lb)
        assert b.wait(timeout=600) == 0, (tmp_path / "b.log").read_text()
    trials = _trials(postgres, "kill")
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 3 and states.count("FAIL") == 1, states
    killed = left[0].number
    assert trials[killed].state.name == "FAIL"
    retry = [t for t in trials if t.system_attrs.get("failed_trial") == killed]
    assert len(retry) == 1 and retry[0].state.name == "COMPLETE" and retry[0].params == trials[killed].params
    assert len(retry[0].params) == 19
    summary = json.loads((tmp_path / "b" / "search.json").read_text())
    assert summary["trials_by_state"] == {"COMPLETE": 3, "FAIL": 1}


def _settings(tmp_path, storage):
    from infomorph.search import SearchSettings

    return SearchSettings(out=str(tmp_path), storage=storage, study="s", sampler="random", prune="none", trials=1,
                          seed=0, startup_trials=1, heartbeat=2, space={}, fixed={})


def test_storage_open_waits_for_a_schema_another_process_is_creating(tmp_path, monkeypatch):
    """Two processes opening a fresh database at once: one of them sees "table ... already exists"
    while the other creates the schema (it ended a search with an error); opening retries."""
    import optuna
    import sqlalchemy.exc

    from infomorph import search as S

    real = optuna.storages.RDBStorage
    calls = []

    def flaky(*a, **kw):
        calls.append(1)
        if len(calls) <= 2:
            raise sqlalchemy.exc.OperationalError("CREATE TABLE studies", {}, Exception("table studies already exists"))
        return real(*a, **kw)

    monkeypatch.setattr(optuna.storages, "RDBStorage", flaky)
    storage = St.open_storage(_settings(tmp_path, f"sqlite:///{tmp_path / 'a.db'}"))
    assert len(calls) == 3 and storage.get_all_studies() == []

    def broken(*a, **kw):
        raise sqlalchemy.exc.OperationalError("connect", {}, Exception("unable to open database file"))

    monkeypatch.setattr(optuna.storages, "RDBStorage", broken)
    with pytest.raises(St.UserError, match="cannot open the database"):
        St.open_storage(_settings(tmp_path, f"sqlite:///{tmp_path / 'b.db'}"))


def test_many_processes_open_one_fresh_database(tmp_path):
    """Six processes create the same fresh SQLite study database at once: all succeed."""
    code = (
        "import sys, time; sys.path.insert(0, sys.argv[3]);"
        "from infomorph.study import SearchSettings, open_storage;"
        "t = float(sys.argv[2]);"
        "time.sleep(max(0.0, t - time.time()));"
        "open_storage(SearchSettings(out='.', storage=sys.argv[1], study='s', sampler='random', prune='none',"
        " trials=1, seed=0, startup_trials=1, heartbeat=2, space={}, fixed={}));"
        "print('ok')"
    )
    storage = f"sqlite:///{tmp_path / 'race.db'}"
    start = time.time() + 4.0  # all processes imported by then, then open at once
    pkg = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "python")
    procs = [subprocess.Popen([sys.executable, "-c", code, storage, repr(start), pkg], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(6)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert all(p.returncode == 0 for p in procs), [o[1][-500:] for o in outs]
    assert all(o[0].strip() == "ok" for o in outs)
