"""Repeats and sweeps: one training per seed (and per configuration), K processes at a time.

``python -m infomorph train ... --seeds 0-9 --jobs 2 --out DIR`` runs ``train`` once per seed into
``DIR/seed-N/`` (each a normal run directory) and writes ``DIR/summary.json``, ``DIR/summary.md``
(mean, median, min, max, std of the final test and the best validation accuracy, seconds per run)
and ``DIR/accuracy.png`` (test accuracy over epochs: mean line, min-max band).
``python -m infomorph sweep EXPERIMENT.yaml --out DIR`` does that for several configurations side
by side (one table, and accuracy against hidden size with one band per ``band:`` label of the
runs when the configurations differ in size; ``model:`` is the train option, e.g. corinfomax). Running the same command again resumes: finished seeds are kept,
an interrupted one continues from its checkpoint (train --resume). Ctrl-C or SIGTERM stops the
sweep cleanly: the running trainings are asked to stop (each saves its checkpoint at the next batch
boundary), no further run starts, and the command exits 130 saying how to resume.

Every run is ``python -m infomorph train`` in its own process (the one training loop), with the
machine's cores split among the K processes.
"""
from __future__ import annotations

import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Dict, List, Optional, Sequence, Tuple

from ._engine import usable_cpus
from ._plots import pyplot, save
from .errors import TrainingInterrupted, UserError

# options of `train` that the sweep sets itself for every run
_OWN = {"--seeds": 1, "--jobs": 1, "--out": 1, "--seed": 1, "--threads": 1, "--resume": 1, "--restart": 0,
        "--no-progress": 0, "--storage": 1, "--study": 1, "--heartbeat": 1, "--summary-only": 0}


def parse_seeds(spec: str, option: str = "--seeds") -> List[int]:
    """``"0-9"``, ``"0,3,5"`` or ``"0-2,7"`` -> sorted distinct seeds."""
    seeds = set()
    try:
        for part in str(spec).split(","):
            part = part.strip()
            if not part:
                continue
            if "-" in part:
                a, b = part.split("-", 1)
                lo, hi = int(a), int(b)
                if hi < lo:
                    raise ValueError
                seeds.update(range(lo, hi + 1))
            else:
                seeds.add(int(part))
    except ValueError:
        raise UserError(f"{option} takes numbers like 0-9 or 0,3,5, got {spec!r}") from None
    if not seeds or min(seeds) < 0:
        raise UserError(f"{option} takes non-negative numbers like 0-9 or 0,3,5, got {spec!r}")
    return sorted(seeds)


def strip_own_options(argv: Sequence[str]) -> List[str]:
    """The train options of ``argv`` without those the sweep sets per run."""
    out, i = [], 0
    argv = list(argv)
    while i < len(argv):
        a = argv[i]
        key = a.split("=", 1)[0]
        if key in _OWN:
            i += 1 + (_OWN[key] if "=" not in a else 0)
            continue
        out.append(a)
        i += 1
    return out


def _state(run_dir: str, epochs: Optional[int]) -> str:
    """'done', 'partial' (a checkpoint to resume) or 'new'."""
    res = os.path.join(run_dir, "results.json")
    if os.path.isfile(res):
        try:
            with open(res) as fh:
                r = json.load(fh)
            want = epochs if epochs is not None else r["config"].get("epochs")
            if r.get("epochs_done", 0) >= want:
                return "done"
        except (OSError, ValueError, KeyError, TypeError):
            pass
    return "partial" if os.path.isfile(os.path.join(run_dir, "checkpoint.pt")) else "new"


def _epochs_option(train_args: Sequence[str]) -> Optional[int]:
    for i, a in enumerate(train_args):
        if a == "--epochs" and i + 1 < len(train_args):
            return int(train_args[i + 1])
        if a.startswith("--epochs="):
            return int(a.split("=", 1)[1])
    return None


class _Runner:
    """Trains (configuration, seed) pairs, ``jobs`` processes at a time, the cores split among them."""

    def __init__(self, jobs: int, log=print, threads: Optional[int] = None):
        if jobs < 1:
            raise UserError(f"--jobs takes an int >= 1, got {jobs}")
        if threads is not None and threads < 1:
            raise UserError(f"--threads takes an int >= 1, got {threads}")
        self.jobs, self.log = jobs, log
        # each run's torch threads: the cores split among the jobs unless given (two sweeps side by side)
        self.threads = threads or max(1, usable_cpus() // jobs)
        self.env = dict(os.environ)
        pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.env["PYTHONPATH"] = os.pathsep.join([pkg_root, self.env.get("PYTHONPATH", "")])
        # a training ends (saving its checkpoint) when the sweep that started it dies, however it dies
        # (cli.follow_parent): a killed worker of a shared sweep leaves nothing writing behind it
        self.env["INFOMORPH_PARENT_PID"] = str(os.getpid())
        self.stopping = False
        self._live: Dict[int, subprocess.Popen] = {}
        self._lock = threading.Lock()

    def _stop(self, signum, frame) -> None:
        """Ctrl-C or SIGTERM: start nothing more, and ask every running training to stop (SIGTERM:
        it saves its checkpoint at the next batch boundary; after Ctrl-C it has had the terminal's
        SIGINT already, and a second request changes nothing)."""
        self.stopping = True
        with self._lock:
            for proc in self._live.values():
                try:
                    proc.send_signal(signal.SIGTERM)
                except OSError:
                    pass

    @contextlib.contextmanager
    def stopping_on_signals(self):
        """Ctrl-C and SIGTERM call :meth:`_stop` while inside (in the main thread; elsewhere the
        process's handlers stay)."""
        main = threading.current_thread() is threading.main_thread()
        old = {sig: signal.signal(sig, self._stop) for sig in (signal.SIGINT, signal.SIGTERM)} if main else {}
        try:
            yield
        finally:
            for sig, handler in old.items():
                signal.signal(sig, handler)

    def one(self, train_args: Sequence[str], seed: int, out_dir: str, label: str = "") -> Dict:
        run_dir = os.path.join(out_dir, f"seed-{seed}")
        epochs = _epochs_option(train_args)
        state = _state(run_dir, epochs)
        who = f"{label}seed {seed}"
        if state == "done":
            self.log(f"{who}: done already ({run_dir})")
            return {"seed": seed, "dir": run_dir, "rc": 0}
        if state == "partial":
            cmd = ["train", "--resume", run_dir] + (["--epochs", str(epochs)] if epochs is not None else [])
        else:
            cmd = ["train", *train_args, "--seed", str(seed), "--out", run_dir]
        cmd = [sys.executable, "-m", "infomorph", *cmd, "--threads", str(self.threads), "--no-progress"]
        t0 = time.perf_counter()
        with self._lock:
            if self.stopping:
                return {"seed": seed, "dir": run_dir, "rc": None}
            self.log(f"{who}: {'resuming' if state == 'partial' else 'starting'} ({run_dir})")
            fh = open(os.path.join(out_dir, f"seed-{seed}.log"), "a")
            proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, env=self.env)
            self._live[proc.pid] = proc
        try:
            rc = proc.wait()
        finally:
            with self._lock:
                self._live.pop(proc.pid, None)
            fh.close()
        if self.stopping and rc != 0:
            self.log(f"{who}: stopped (exit {rc}); the same command continues it from its checkpoint")
            return {"seed": seed, "dir": run_dir, "rc": None}
        self.log(f"{who}: {'finished' if rc == 0 else f'failed (exit {rc}, see {out_dir}/seed-{seed}.log)'} "
                 f"in {time.perf_counter() - t0:.0f} s")
        return {"seed": seed, "dir": run_dir, "rc": rc}

    def run(self, configs: Sequence[tuple], seeds: Sequence[int]) -> List[List[Dict]]:
        """``configs``: (train_args, out_dir, label) each; every seed of every configuration goes into
        one queue in order, so the last seeds of one configuration share the cores with the first of
        the next (3 seeds on 2 jobs no longer leave a core idle). Returns the outcomes per configuration."""
        for _, out_dir, _ in configs:
            if os.path.exists(out_dir) and not os.path.isdir(out_dir):
                raise UserError(f"--out: {out_dir!r} is a file, not a directory")
            os.makedirs(out_dir, exist_ok=True)
        with self.stopping_on_signals(), ThreadPoolExecutor(max_workers=self.jobs) as pool:
            futures = [[pool.submit(self.one, args, seed, out_dir, label) for seed in seeds]
                       for args, out_dir, label in configs]
            done = [[f.result() for f in row] for row in futures]
        if self.stopping:
            where = sorted({out_dir for _, out_dir, _ in configs})
            raise TrainingInterrupted(
                "sweep interrupted: finished runs are kept and stopped ones continue from their checkpoints; "
                "run the same command again to resume", where[0] if len(where) == 1 else os.path.dirname(where[0]))
        return done


def _finish(train_args: Sequence[str], seeds: Sequence[int], out_dir: str, jobs: int,
            done: List[Dict]) -> Dict:
    failed = [d["seed"] for d in done if d["rc"] != 0]
    summary = summarize([d["dir"] for d in done if d["rc"] == 0])
    summary["command"] = ["python", "-m", "infomorph", "train", *train_args, "--seeds",
                          ",".join(map(str, seeds)), "--jobs", str(jobs), "--out", out_dir]
    summary["failed_seeds"] = failed
    write_summary(summary, out_dir)
    return summary


def run_seeds(train_args: Sequence[str], seeds: Sequence[int], out_dir: str, jobs: int = 1,
              log=print, threads: Optional[int] = None) -> Dict:
    """Train once per seed into ``out_dir/seed-N`` (resuming what is there) and summarize."""
    runner = _Runner(jobs, log, threads)
    train_args = strip_own_options(train_args)
    done = runner.run([(train_args, out_dir, "")], seeds)[0]
    summary = _finish(train_args, seeds, out_dir, jobs, done)
    if summary["failed_seeds"]:
        raise UserError(f"seeds {summary['failed_seeds']} failed (logs: {out_dir}/seed-N.log); "
                        "run the same command again to retry them")
    return summary


def read_spec_file(path: str, option: str, what: str = "the file"):
    """A YAML (or .json) file's content; a missing or unparsable file is a UserError naming ``option``."""
    if not os.path.isfile(path):
        raise UserError(f"{option}: {what} {path!r} does not exist")
    with open(path) as fh:
        text = fh.read()
    try:
        if path.endswith(".json"):
            return json.loads(text)
        import yaml

        return yaml.safe_load(text)
    except Exception as e:  # noqa: BLE001 - any parse error is the file's
        raise UserError(f"{option}: {path} is not valid YAML/JSON ({str(e).splitlines()[0]})") from None


def _stats(values: List[float]) -> Dict[str, float]:
    if not values:
        return {}
    return {"mean": statistics.fmean(values), "median": statistics.median(values), "min": min(values),
            "max": max(values), "std": statistics.stdev(values) if len(values) > 1 else 0.0, "n": len(values)}


def run_record(run_dir: str) -> Dict:
    """What a sweep keeps of one finished run (its directory's results.json)."""
    with open(os.path.join(run_dir, "results.json")) as fh:
        r = json.load(fh)
    hist = r.get("history", [])
    return {
        "dir": run_dir, "seed": r["config"].get("seed"), "epochs": r.get("epochs_done"),
        "test_accuracy": r.get("test_accuracy"),
        "best_val_accuracy": max((h["val_accuracy"] for h in hist if h["val_accuracy"] is not None), default=None),
        "seconds": r.get("wall_seconds"),
        "test_curve": [h["test_accuracy"] for h in hist],
    }


def summarize(run_dirs: Sequence[str]) -> Dict:
    """Aggregate finished run directories: per run and over runs (mean, median, min, max, std)."""
    return summarize_records([run_record(d) for d in run_dirs])


def summarize_records(runs: Sequence[Dict]) -> Dict:
    """Aggregate run records (:func:`run_record`, or a shared sweep's stored ones)."""
    runs = list(runs)
    return {
        "runs": runs,
        "test_accuracy": _stats([r["test_accuracy"] for r in runs if r["test_accuracy"] is not None]),
        "best_val_accuracy": _stats([r["best_val_accuracy"] for r in runs if r["best_val_accuracy"] is not None]),
        "seconds_per_run": _stats([r["seconds"] for r in runs if r["seconds"] is not None]),
    }


def _row(name: str, s: Dict) -> str:
    t, v, sec = s["test_accuracy"], s["best_val_accuracy"], s["seconds_per_run"]
    if not t:
        return f"| {name} | 0 | - | - | - | - | - | - | - |"
    pct = lambda x: f"{100 * x:.2f}"  # noqa: E731
    val = pct(v["mean"]) if v else "-"  # runs without a validation split (--val-fraction 0)
    secs = f"{sec['mean']:.1f}" if sec else "-"
    return (f"| {name} | {t['n']} | {pct(t['mean'])} | {pct(t['median'])} | {pct(t['min'])} | {pct(t['max'])} | "
            f"{pct(t['std'])} | {val} | {secs} |")


TABLE_HEAD = ("| run | seeds | test mean % | median | min | max | std | best val mean % | s per run |\n"
              "|---|---|---|---|---|---|---|---|---|")


def write_summary(summary: Dict, out_dir: str, name: str = "all seeds") -> None:
    with open(os.path.join(out_dir, "summary.json"), "w") as fh:
        json.dump(summary, fh, indent=1)
    with open(os.path.join(out_dir, "summary.md"), "w") as fh:
        fh.write(TABLE_HEAD + "\n" + _row(name, summary) + "\n")
    plot_band({name: summary}, os.path.join(out_dir, "accuracy.png"))


def plot_band(summaries: Dict[str, Dict], path: str) -> Optional[str]:
    """Test accuracy over epochs per summary: mean line and min-max band over seeds."""
    plt = pyplot()
    if plt is None:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, s in summaries.items():
        curves = [r["test_curve"] for r in s["runs"] if r["test_curve"]]
        if not curves:
            continue
        length = min(len(c) for c in curves)
        cols = list(zip(*[c[:length] for c in curves]))
        ep = range(1, length + 1)
        ax.plot(ep, [statistics.fmean(c) for c in cols], label=f"{name} (n={len(curves)})")
        ax.fill_between(ep, [min(c) for c in cols], [max(c) for c in cols], alpha=0.25)
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    return save(fig, path)


def _options(mapping: Dict) -> List[str]:
    """A YAML mapping of train options -> argv (``hidden: [800, 200]`` -> ``--hidden 800,200``)."""
    out = []
    for key, value in (mapping or {}).items():
        flag = "--" + str(key).replace("_", "-")
        if value is True:
            out.append(flag)
        elif value is False or value is None:
            continue
        elif isinstance(value, (list, tuple)):
            out += [flag, ",".join(str(v) for v in value)]
        else:
            out += [flag, str(value)]
    return out


def plan_experiment(path: str) -> Tuple[List[int], List[Tuple[str, List[str], str, object]]]:
    """An experiment file -> (seeds, [(name, train args, band, hidden) per configuration]):

    ``seeds: 0-2``, ``base: {dataset: mnist, epochs: 100}``, ``runs: {name: {train options}}``. A
    run's ``band`` names its band in the plots (default: its name); ``model`` is the train option
    (infomorphic, backprop, corinfomax), as every other key."""
    spec = read_spec_file(path, "sweep", "the experiment file")
    if not isinstance(spec, dict) or not isinstance(spec.get("runs"), dict) or not spec["runs"]:
        raise UserError(f"sweep: {path} needs a 'runs' mapping of name -> train options (and optional seeds, base)")
    seeds = parse_seeds(str(spec.get("seeds", "0")))
    base = spec.get("base") or {}
    from .config import MODELS

    plan = []
    for name, opts in spec["runs"].items():
        opts = dict(opts or {})
        band = str(opts.pop("band", name))
        for where in (opts, base):
            if "model" in where and where["model"] not in MODELS:
                raise UserError(f"sweep: {path}: run {name}: model {where['model']!r} is not a model ({', '.join(MODELS)}); "
                                f"a plot band's label is 'band:' (files before the model option used 'model:')")
        args = strip_own_options(_options(base) + _options(opts))
        plan.append((str(name), args, band, opts.get("hidden", base.get("hidden", 100))))
    return seeds, plan


def run_experiment(path: str, out_dir: str, jobs: int = 1, log=print, threads: Optional[int] = None) -> Dict:
    """Several configurations x seeds from a YAML (or JSON) file (:func:`plan_experiment`).
    Writes DIR/<name>/ per configuration, DIR/sweep.json, DIR/sweep.md and DIR/accuracy.png (and
    DIR/accuracy_vs_hidden.png when the configurations differ in hidden size: a ``band`` key
    groups them into one band each)."""
    seeds, plan = plan_experiment(path)
    runner = _Runner(jobs, log, threads)
    configs = []
    for name, args, _, _ in plan:
        log(f"== {name}: train {' '.join(args)}")
        configs.append((args, os.path.join(out_dir, name), f"{name} "))
    outcomes = runner.run(configs, seeds)
    results, failed = {}, []
    for (args, run_out, _), (name, _, model, hidden), done in zip(configs, plan, outcomes):
        summary = _finish(args, seeds, run_out, jobs, done)
        failed += [f"{name} seed {s}" for s in summary["failed_seeds"]]
        results[name] = summary
    write_experiment(out_dir, path, seeds, plan, results)
    if failed:
        raise UserError(f"{', '.join(failed)} failed (logs: {out_dir}/NAME/seed-N.log); "
                        "run the same command again to retry them")
    return results


def write_experiment(out_dir: str, path: str, seeds: Sequence[int], plan, results: Dict[str, Dict]) -> None:
    """DIR/sweep.json, sweep.md and the plots of an experiment's summaries (one per configuration)."""
    for name, _, band, hidden in plan:
        if name in results:
            results[name]["band"] = band
            results[name]["hidden"] = hidden
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, "sweep.json"), "w") as fh:
        json.dump({"experiment": os.path.relpath(path), "seeds": list(seeds), "runs": results}, fh, indent=1)
    with open(os.path.join(out_dir, "sweep.md"), "w") as fh:
        fh.write(TABLE_HEAD + "\n" + "\n".join(_row(n, s) for n, s in results.items()) + "\n")
    plot_band(results, os.path.join(out_dir, "accuracy.png"))
    _plot_vs_hidden(results, os.path.join(out_dir, "accuracy_vs_hidden.png"))


def _plot_vs_hidden(results: Dict[str, Dict], path: str) -> Optional[str]:
    sizes = {str(s["hidden"]) for s in results.values()}
    if len(sizes) < 2:
        return None
    plt = pyplot()
    if plt is None:
        return None
    by_model: Dict[str, list] = {}
    for s in results.values():
        h = s["hidden"]
        h = h[0] if isinstance(h, (list, tuple)) else int(str(h).split(",")[0])
        if s["test_accuracy"]:
            by_model.setdefault(s.get("band", s.get("model")), []).append((h, s["test_accuracy"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for model, pts in by_model.items():
        pts.sort()
        xs = [p[0] for p in pts]
        ax.plot(xs, [p[1]["median"] for p in pts], marker="o", label=model)
        ax.fill_between(xs, [p[1]["min"] for p in pts], [p[1]["max"] for p in pts], alpha=0.25)
    ax.set_xscale("log")
    ax.set_xlabel("hidden neurons")
    ax.set_ylabel("test accuracy (median, min-max)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return save(fig, path)
