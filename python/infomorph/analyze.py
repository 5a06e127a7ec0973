"""``python -m infomorph analyze DIR``: what a goal search found, looked at. Parameter importances of
the complete trials (mean decrease in impurity, as in the paper, and fANOVA), the single and the
successive ablation of the chosen goal (each searched gamma set to 0 alone, then one after another,
least harmful first; the runs are cached in DIR/ablation_runs.json), and the plots (history,
importances, ablations). Writes DIR/importance.json and the PNGs."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

from ._engine import usable_cpus
from .errors import UserError
from .goal_runs import GoalRuns
from .goals import readable_name
from .options import positive, threads_option
from .search import SEARCH_JSON, _best_trial, write_outputs
from .study import SearchSettings, _hidden_password, _optuna, open_storage, resolve_storage, trial_seed


def add_analyze_parser(sub) -> None:
    a = sub.add_parser("analyze", help="importances, ablations and plots of a search directory")
    a.add_argument("search_dir", metavar="DIR", help="a directory written by search --out")
    a.add_argument("--ablation-seeds", type=positive, default=3, help="seeds per ablated goal (--no-ablation: importances only)")
    a.add_argument("--no-ablation", action="store_true", help="importances and history only")
    a.add_argument("--epochs", type=positive, default=None, help="epochs per ablation run (default: the study's)")
    a.add_argument("--jobs", type=positive, default=1, help="ablation runs at a time (cores split among them)")
    a.add_argument("--threads", type=threads_option, default=None, metavar="auto|N",
                   help="CPU threads in total (default auto: the usable cores not busy elsewhere)")


def run_command(args) -> int:
    summary = analyze(args.search_dir, seeds=0 if args.no_ablation else args.ablation_seeds,
                      epochs=args.epochs, jobs=args.jobs, threads=args.threads)
    print(json.dumps({"out": args.search_dir, "written": summary["written"]}))
    return 0


def _load_search_dir(search_dir: str):
    path = os.path.join(search_dir, SEARCH_JSON)
    if not os.path.isfile(path):
        raise UserError(f"analyze: {search_dir!r} has no {SEARCH_JSON} (a directory written by search --out)")
    with open(path) as fh:
        meta = json.load(fh)
    s = dict(meta["settings"])
    s["space"] = {k: tuple(v) for k, v in s["space"].items()}
    s["out"] = os.path.abspath(search_dir)  # the files' paths are relative to the directory (portable)
    s["storage"] = resolve_storage(s["storage"], search_dir)
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


def ablation(settings: SearchSettings, best_goal: Dict[str, float], seeds: int, epochs: int, jobs: int,
             threads: int, out_dir: str, log=print) -> Dict:
    """Set each searched gamma of the best goal to 0 alone (validation accuracy, ``seeds`` seeds),
    then zero them one after another in order of their single effect (smallest loss first).
    Results are cached in DIR/ablation_runs.json: a second call runs only what is missing."""
    seed_list = [trial_seed(settings.seed, 10_000_000 + s) for s in range(seeds)]
    with GoalRuns(settings.train, settings.seed, epochs, jobs, threads, os.path.join(out_dir, "ablation_runs.json")) as runs:
        searched = [n for n in settings.space if best_goal[n] != 0.0]
        log(f"ablation: base goal + {len(searched)} single ablations x {seeds} seeds x {epochs} epochs")
        single_goals = [dict(best_goal, **{n: 0.0}) for n in searched]
        vals = runs.mean_values([best_goal] + single_goals, seed_list)
        base, singles = vals[0], dict(zip(searched, vals[1:]))
        order = sorted(searched, key=lambda n: base - singles[n])  # least harmful first
        log(f"ablation: successive, {len(order)} steps")
        goal, succ_goals = dict(best_goal), []
        for n in order:
            goal = dict(goal, **{n: 0.0})
            succ_goals.append(goal)
        succ = runs.mean_values(succ_goals, seed_list)
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
                                      jobs, threads or usable_cpus(), search_dir, log)
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
