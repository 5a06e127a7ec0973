"""bench/RESULTS.md tables from pytest-benchmark JSON (the one place tables are made).

    python -m pytest bench --benchmark-only --benchmark-json=bench.json
    python bench/report.py bench.json                 # print the tables
    python bench/report.py bench.json --write         # and append them to bench/RESULTS.md
    python bench/report.py                            # the newest file saved by --benchmark-save

The header names machine, versions, thread count and commit (recorded by bench/conftest.py into
the JSON's machine_info). Speed-ups are against reference_dense in the same comparison group.
"""
from __future__ import annotations

import argparse
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _env import emit  # noqa: E402

BACKEND_ORDER = ["reference_dense", "reference", "cpu", "triton", "cuda"]
MODE_ORDER = ["fwd", "fwd+bwd", "kernel", "local"]


def _newest_saved() -> str:
    files = glob.glob(os.path.join(os.path.dirname(HERE), ".benchmarks", "*", "*.json"))
    if not files:
        sys.exit("no saved benchmark run: pass a --benchmark-json file, or run with --benchmark-save=NAME first")
    return max(files, key=os.path.getmtime)


def _ms(stats, key):
    return stats[key] * 1e3


def _fmt_ms(v: float) -> str:
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def _speed(r: float) -> str:
    return f"{r:.2f}x" if r < 1 else f"{r:.1f}x" if r < 10 else f"{r:.0f}x"


def environment(data: dict) -> dict:
    mi, ci = data.get("machine_info", {}), data.get("commit_info", {})
    return {
        "date": data.get("datetime", "")[:10],
        "machine": f"{mi.get('cpu_name', mi.get('processor', '?'))}, {os.cpu_count() if not mi.get('cpu') else mi['cpu'].get('count', '?')} cores"
                   + (f", GPU {mi['gpu']}" if mi.get("gpu") else ""),
        "torch threads": mi.get("torch_threads", "?"),
        "torch": mi.get("torch", "?"),
        "triton": mi.get("triton", "?"),
        "python": mi.get("python_version", "?"),
        "commit": mi.get("infomorph_commit") or (ci.get("id", "?")[:7] + ("+dirty" if ci.get("dirty") else "")),
    }


def layer_table(benches) -> str:
    rows = [b for b in benches if b.get("extra_info", {}).get("mode") in MODE_ORDER]
    if not rows:
        return ""
    dense = {b["group"]: b["stats"]["median"] for b in rows if b["extra_info"]["backend"] == "reference_dense"}

    def key(b):
        e = b["extra_info"]
        return (MODE_ORDER.index(e["mode"]), e["sources"], e["bins"], e["adaptive"], e["dtype"], e["neurons"],
                BACKEND_ORDER.index(e["backend"]))

    lines = ["| mode | sources | bins | ranges | dtype | neurons | backend | median ms (q1-q3) | rounds | "
             "speed-up vs reference_dense | max err (bits) |", "|" + "---|" * 11]
    for b in sorted(rows, key=key):
        e, s = b["extra_info"], b["stats"]
        d = dense.get(b["group"])
        speed = "1x" if e["backend"] == "reference_dense" else (_speed(d / s["median"]) if d else "-")
        err = f"{e['max_err']:.1e}" if "max_err" in e else "-"
        lines.append(
            f"| {e['mode']} | {e['sources']} | {e['bins']} | {'adaptive' if e['adaptive'] else 'fixed'} | {e['dtype']} | "
            f"{e['neurons']} | {e['backend']} | {_fmt_ms(_ms(s, 'median'))} ({_fmt_ms(_ms(s, 'q1'))}-{_fmt_ms(_ms(s, 'q3'))}) | "
            f"{s['rounds']} | {speed} | {err} |"
        )
    return "\n".join(lines)


def step_table(benches) -> str:
    rows = [b for b in benches if b.get("extra_info", {}).get("mode") == "train step"]
    if not rows:
        return ""
    lines = ["| training step | hidden neurons | backend | median ms (q1-q3) | rounds |", "|---|---|---|---|---|"]
    for b in sorted(rows, key=lambda b: b["extra_info"]["hidden"]):
        e, s = b["extra_info"], b["stats"]
        lines.append(f"| Setup 1, batch {e['batch']}, fwd (2 hidden passes) + both PID layers + backward + Adam | "
                     f"{e['hidden']} | {e['backend']} | {_fmt_ms(_ms(s, 'median'))} "
                     f"({_fmt_ms(_ms(s, 'q1'))}-{_fmt_ms(_ms(s, 'q3'))}) | {s['rounds']} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="?", help="pytest-benchmark JSON (default: newest in .benchmarks/)")
    ap.add_argument("--write", action="store_true", help="append the tables to bench/RESULTS.md")
    ap.add_argument("--title", default="Kernel benchmarks (pytest-benchmark)")
    args = ap.parse_args(argv)
    path = args.json or _newest_saved()
    try:
        with open(path) as f:
            data = json.load(f)
    except (OSError, json.JSONDecodeError) as e:
        sys.exit(f"{path}: not a readable pytest-benchmark JSON file ({e})")
    benches = data.get("benchmarks", [])
    body = "\n\n".join(t for t in (layer_table(benches), step_table(benches)) if t)
    if not body:
        sys.exit(f"{path}: holds no benchmark of bench/ (run python -m pytest bench --benchmark-only)")
    emit(f"{args.title}, batch 1024", environment(data), body, args.write)


if __name__ == "__main__":
    main()
