"""Issue 38's diagnosis of the goal search: the scale question and how well early epochs rank goals.

    python scripts/search_diagnosis.py write             # goal files + two sweep files (committed)
    python -m infomorph sweep docs/experiments/diagnosis/scale.yaml --out runs/diag-scale --jobs 2
    python -m infomorph sweep docs/experiments/diagnosis/rank.yaml  --out runs/diag-rank  --jobs 2
    python scripts/search_diagnosis.py report runs/diag-scale runs/diag-rank --out docs/results/search_diagnosis

``write`` makes the goals (the paper's six optimized goals, the presets, the best goals of the
committed studies, a spread of the 1000-trial study's trials, the paper's goal and the heuristic
scaled by 0.25, 0.5, 2) and the sweep files; both sweeps are ordinary ``sweep`` runs (the same
command resumes them). ``report`` reads the run directories: per scale, the test accuracy over
seeds; per rung (epochs 1, 3, 9, 27, 81), Spearman's rank correlation between the validation
accuracy at that epoch and the 100-epoch test accuracy, and where each goal sits.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXP = os.path.join(ROOT, "docs", "experiments", "diagnosis")
GOALS = os.path.join(EXP, "goals")
RUNGS = (1, 3, 9, 27, 81)

NAMES = ["{1}{2}{3}", "{1}{2}", "{1}{3}", "{2}{3}", "{1}{23}", "{2}{13}", "{3}{12}", "{1}", "{2}", "{3}",
         "{12}{13}{23}", "{12}{13}", "{12}{23}", "{13}{23}", "{12}", "{13}", "{23}", "{123}", "H_res"]

# The published configuration's six goals optimized at N = 100 (paper_trivariate/conf/goals/
# infomorphic_context_lateral/opt_{1,2,3}_100_{tpe,cmaes}.yaml of Priesemann-Group/Infomorphic_Networks,
# snapshots 5284adf / ecc3d7e), gamma order as the engine's. opt_1_100_tpe is the "optimized" preset.
PAPER = {
    "paper_tpe_1": [0.3307, 0.9781, -0.9935, 0.4017, 0.2428, 0.6255, 0.4713, 0.0212, 0.0605, -0.9470,
                    -0.0199, -0.9677, -0.6924, 0.4270, 0.9736, 0.7370, -0.1218, -0.2151, 0.0350],
    "paper_tpe_2": [0.4063135506411676, 0.59642166494369, -0.8235204285446064, 0.9654765761019054,
                    0.5364842713869633, 0.5807958977979149, -0.3774872905728335, 0.20916590739897695,
                    -0.6977798433941902, 0.694756257614332, -0.9706972360830098, -0.24991966366746965,
                    -0.1526133221412383, -0.044334681899615896, 0.05911586780462447, -0.9609138708592532,
                    -0.7670746910676481, -0.34865750277047475, 0.06870920081104473],
    "paper_tpe_3": [0.004673879439999862, 0.9309777589132915, -0.7651052254240589, 0.6217247288394926,
                    0.8812527440395411, -0.09925207692605181, 0.40139583567089476, 0.039309939935334215,
                    0.45069424950903547, 0.23407029839336696, -0.2552550407621431, 0.07487422433634684,
                    0.5513869857887319, 0.7033284197785392, -0.13705318733144678, -0.3116118316643789,
                    -0.06500373208414506, -0.4912864312816089, 0.007691717436092205],
    "paper_cmaes_1": [0.21015528909422065, 0.986042844320863, -0.44867761323689065, 0.4683457097422675,
                      -0.6237555701283991, 0.43270029582303726, 0.8412668868268378, 0.009733914135339042,
                      -0.4120943286023191, -0.4813479632488419, -0.14115376106328242, -0.7057867218129715,
                      -0.5328849254593179, 0.14942040366049106, 0.7098626364076295, 0.3391552454909269,
                      0.7866424327513093, 0.05718732638281174, 0.0],
    "paper_cmaes_2": [-0.04317877469673284, 0.5292351400041198, -0.9112867464562194, -0.2560558459519244,
                      0.4608500686428271, -0.19348305888463146, 0.4576466736392613, -0.06561337575458076,
                      -0.4901344180605686, -0.6261647609773964, -0.17032612495650984, 0.16578047742445834,
                      -0.4323563514144559, 0.14677089048946018, 0.4752523903931801, -0.6428682822262763,
                      -0.1899536816265111, 0.3085049047894687, 0.035001249394734923],
    "paper_cmaes_3": [0.14956977148776304, 0.778956621291974, -0.78089208012629, 0.6631149140213546,
                      0.6466615969262965, 0.835835318439909, 0.4122717888704891, 0.016746152980997023,
                      0.22905860326514704, -0.8100915427563122, -0.20902454382181096, -0.5307962161900797,
                      -0.45924474501665513, -0.044334681899615896, -0.174890213965818, -0.2895764722229578,
                      -0.33714439432675436, 0.14698031908149956, 0.06870920081104473],
}
HEURISTIC = [0.0, 1.0] + [0.0] * 17
STUDIES = ("search_sha100_min1", "search_sha1000", "search_sha30", "search_sha400")


def _write_goal(name, gamma, note):
    os.makedirs(GOALS, exist_ok=True)
    path = os.path.join(GOALS, f"{name}.yaml")
    with open(path, "w") as fh:
        fh.write(f"# {note}\ngamma:\n")
        for n, v in zip(NAMES, gamma):
            fh.write(f'  "{n}": {float(v)!r}\n' if n != "H_res" else f"  H_res: {float(v)!r}\n")
    return os.path.relpath(path, ROOT)


def _read_goal(path):
    import yaml

    with open(path) as fh:
        g = yaml.safe_load(fh)["gamma"]
    return [float(g[n]) for n in NAMES]


def _study_trials():
    """A spread of the 1000-trial study's trials that learn (validation above 50 % at their last
    rung): by the rung each stopped at, five per rung spread over their values."""
    with open(os.path.join(ROOT, "docs", "results", "search_sha100_min1", "trials.csv")) as fh:
        rows = [r for r in csv.DictReader(fh) if r["value"] and float(r["value"]) > 0.5]
    picked = []
    for stop in (1, 3, 9, 27, 81, 100):
        group = sorted((r for r in rows if int(r["epochs"]) == stop), key=lambda r: float(r["value"]))
        if not group:
            continue
        k = 5 if stop != 100 else 6
        idx = sorted({round(i * (len(group) - 1) / max(1, k - 1)) for i in range(k)})
        picked += [(group[i], stop) for i in idx]
    return picked


def write():
    os.makedirs(EXP, exist_ok=True)
    rank, scale = {}, {}
    for name, g in PAPER.items():
        rank[name] = _write_goal(name, g, f"the published configuration's {name.replace('paper_', 'opt_?_100_')} "
                                 "goal (see scripts/search_diagnosis.py)")
    rank["heuristic"] = _write_goal("heuristic", HEURISTIC, "the heuristic goal: {F}{C} = 1")
    rank["hierarchical"] = "hierarchical"
    rank["paper_opt_1_1000"] = "docs/experiments/goals/optimized_1_1000.yaml"
    for s in STUDIES:
        rank[f"best_{s}"] = f"docs/results/{s}/best_goal.yaml"
    for r, stop in _study_trials():
        n = f"trial_{int(r['number']):04d}"
        rank[n] = _write_goal(n, [float(r[c]) for c in NAMES], f"trial {r['number']} of docs/results/search_sha100_min1 "
                              f"(stopped after {stop} epochs, validation {float(r['value']):.4f})")
    for base, g in (("paper_tpe_1", PAPER["paper_tpe_1"]), ("heuristic", HEURISTIC),
                    ("best_sha100_min1", _read_goal(os.path.join(ROOT, "docs/results/search_sha100_min1/best_goal.yaml")))):
        for c in (0.25, 0.5, 1.0, 2.0):
            n = f"{base}_x{c:g}"
            scale[n] = _write_goal(n, [c * v for v in g], f"{base} times {c:g}")
    header = ("# Issue 38's diagnosis ({what}); written by `python scripts/search_diagnosis.py write`.\n"
              "#   python -m infomorph sweep docs/experiments/diagnosis/{file} --out runs/diag-{stem} --jobs 2\n")
    for stem, runs, seeds, epochs, what in (("scale", scale, "0-2", 30, "does multiplying gamma by c > 0 change training?"),
                                            ("rank", rank, "0", 100, "do early epochs rank goals by their 100-epoch accuracy?")):
        with open(os.path.join(EXP, f"{stem}.yaml"), "w") as fh:
            fh.write(header.format(what=what, file=f"{stem}.yaml", stem=stem))
            fh.write(f"seeds: {seeds}\nbase:\n  dataset: mnist\n  setup: 1\n  hidden: 100\n  epochs: {epochs}\nruns:\n")
            for n, p in runs.items():
                fh.write(f"  {n}:\n    goal: {p}\n")
    print(f"{len(scale)} scaled goals, {len(rank)} goals to rank -> {os.path.relpath(EXP, ROOT)}")


def _history(run_dir):
    """A finished run's history and results (a run still going raises KeyError)."""
    with open(os.path.join(run_dir, "results.json")) as fh:
        r = json.load(fh)
    if r.get("epochs_done", 0) < r["config"]["epochs"]:
        raise KeyError("not finished")
    return r["history"], r


def _spearman(a, b):
    def ranks(x):
        order = sorted(range(len(x)), key=lambda i: x[i])
        rk = [0.0] * len(x)
        i = 0
        while i < len(x):
            j = i
            while j + 1 < len(x) and x[order[j + 1]] == x[order[i]]:
                j += 1
            for k in range(i, j + 1):
                rk[order[k]] = (i + j) / 2
            i = j + 1
        return rk

    ra, rb = ranks(a), ranks(b)
    ma, mb = statistics.mean(ra), statistics.mean(rb)
    num = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    den = (sum((x - ma) ** 2 for x in ra) * sum((y - mb) ** 2 for y in rb)) ** 0.5
    return num / den if den else float("nan")


def report(scale_dir, rank_dir, out, studies=()):
    os.makedirs(out, exist_ok=True)
    result = {"scale": {}, "rank": {}}
    lines = ["# Search diagnosis (issue 38)", ""]
    if scale_dir and os.path.isdir(scale_dir):
        lines += ["## Scale: gamma times c, 3 seeds, 30 epochs (test accuracy after 30 epochs)", "",
                  "| goal | c | test % per seed | mean | best validation mean |", "|---|---|---|---|---|"]
        for name in sorted(os.listdir(scale_dir)):
            d = os.path.join(scale_dir, name)
            seeds = sorted(s for s in os.listdir(d) if s.startswith("seed-") and os.path.isdir(os.path.join(d, s))) if os.path.isdir(d) else []
            tests, vals = [], []
            for s in seeds:
                try:
                    h, r = _history(os.path.join(d, s))
                except (OSError, KeyError, ValueError):
                    continue
                tests.append(r["test_accuracy"])
                vals.append(max(e["val_accuracy"] for e in h))
            if not tests:
                continue
            base, c = name.rsplit("_x", 1)
            result["scale"][name] = {"goal": base, "c": float(c), "test": tests, "best_val": vals}
            lines.append(f"| {base} | {c} | {', '.join(f'{100 * t:.2f}' for t in tests)} | {100 * statistics.mean(tests):.2f} "
                         f"| {100 * statistics.mean(vals):.2f} |")
        lines.append("")
    if rank_dir and os.path.isdir(rank_dir):
        goals = {}
        for name in sorted(os.listdir(rank_dir)):
            run = os.path.join(rank_dir, name, "seed-0")
            try:
                h, r = _history(run)
            except (OSError, KeyError, ValueError):
                continue
            if len(h) < 100:
                continue
            goals[name] = {"val": [e["val_accuracy"] for e in h], "test": r["test_accuracy"]}
        names = sorted(goals, key=lambda n: -goals[n]["test"])
        final = [goals[n]["test"] for n in names]
        lines += [f"## Ranking: {len(names)} goals, seed 0, 100 epochs", "",
                  "Spearman's rank correlation between the validation accuracy after e epochs and the test "
                  "accuracy after 100 epochs (all goals; and the goals above 90 % at 100 epochs):", "",
                  "| epoch e | all goals | goals above 90 % | top-5 by epoch e (their 100-epoch test %) |", "|---|---|---|---|"]
        good = [n for n in names if goals[n]["test"] > 0.90]
        for e in RUNGS:
            at = [goals[n]["val"][e - 1] for n in names]
            rho = _spearman(at, final)
            rho_good = _spearman([goals[n]["val"][e - 1] for n in good], [goals[n]["test"] for n in good]) if len(good) > 2 else float("nan")
            top = sorted(names, key=lambda n: -goals[n]["val"][e - 1])[:5]
            result["rank"][str(e)] = {"spearman": rho, "spearman_above_90": rho_good, "top5": top}
            lines.append(f"| {e} | {rho:.3f} | {rho_good:.3f} | " + ", ".join(f"{n} ({100 * goals[n]['test']:.2f})" for n in top) + " |")
        lines += ["", "| goal | " + " | ".join(f"val % at {e}" for e in RUNGS) + " | test % at 100 |",
                  "|---|" + "---|" * (len(RUNGS) + 1)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(f"{100 * goals[n]['val'][e - 1]:.2f}" for e in RUNGS)
                         + f" | {100 * goals[n]['test']:.2f} |")
        result["goals"] = goals
    for study in studies:
        lines += _placement(study, result.get("goals", {}), result)
    with open(os.path.join(out, "diagnosis.json"), "w") as fh:
        json.dump(result, fh, indent=1)
    with open(os.path.join(out, "diagnosis.md"), "w") as fh:
        fh.write("\n".join(lines) + "\n")
    print("\n".join(lines))


def _placement(study_dir, goals, result):
    """Where the paper's goal and the heuristic (their seed-0 runs of the ranking sweep) sit among a
    study's trials at each rung: the share of the trials that reached the rung whose best
    validation accuracy so far is below theirs."""
    import glob

    curves = []
    for f in glob.glob(os.path.join(study_dir, "trials", "*.json")):
        with open(f) as fh:
            rec = json.load(fh)
        vals = [h["val_accuracy"] for h in rec.get("history", []) if h.get("val_accuracy") is not None]
        if vals:
            curves.append([max(vals[:i + 1]) for i in range(len(vals))])
    name = os.path.basename(os.path.normpath(study_dir))
    lines = [f"## Where known goals sit among the trials of {name} ({len(curves)} trials)", "",
             "At each rung: the trials that reached it, their median best validation accuracy so far, "
             "and the share of them below each goal's own (seed 0, same epochs).", "",
             "| epoch | trials reached | median % | best % | " + " | ".join(f"{g} % (share below)" for g in
                                                                   ("paper_tpe_1", "heuristic") if g in goals) + " |",
             "|---|---|---|---|" + "---|" * sum(g in goals for g in ("paper_tpe_1", "heuristic"))]
    place = {}
    for e in RUNGS:
        at = sorted(c[e - 1] for c in curves if len(c) >= e)
        if not at:
            continue
        row = f"| {e} | {len(at)} | {100 * statistics.median(at):.2f} | {100 * at[-1]:.2f} |"
        for g in ("paper_tpe_1", "heuristic"):
            if g in goals:
                v = max(goals[g]["val"][:e])
                share = sum(x < v for x in at) / len(at)
                place.setdefault(g, {})[str(e)] = {"val": v, "share_below": share}
                row += f" {100 * v:.2f} ({100 * share:.1f} %) |"
        lines.append(row)
    result.setdefault("placement", {})[name] = place
    return lines + [""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("write")
    r = sub.add_parser("report")
    r.add_argument("scale_dir")
    r.add_argument("rank_dir")
    r.add_argument("--out", required=True)
    r.add_argument("--study", action="append", default=[], help="a search directory (trials/N.json): where the "
                   "paper's goal and the heuristic sit among its trials at each rung")
    a = p.parse_args(argv)
    if a.cmd == "write":
        write()
    else:
        report(a.scale_dir, a.rank_dir, a.out, a.study)
    return 0


if __name__ == "__main__":
    sys.exit(main())
