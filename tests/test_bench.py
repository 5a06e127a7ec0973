"""The benchmark suite (bench/, pytest-benchmark) runs and its report is right: one tiny case per
benchmark file with timing disabled (no timings are judged in tests), and bench/report.py's table
on a hand-made JSON with known numbers."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_benchmarks_run_and_check_correctness():
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--benchmark-disable",
           os.path.join(ROOT, "bench", "test_kernels.py"), "-k",
           "cpu-fwd+bwd-n2-K20-ad-float32-N10 or reference-fwd-n2-K20-ad-float32-N10"]
    res = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "2 passed" in res.stdout, res.stdout[-2000:]


def _bench(backend, median, group="fwd n=3 K=20 fixed float32 N=100", **extra):
    info = {"backend": backend, "neurons": 100, "sources": 3, "bins": 20, "dtype": "float32", "mode": "fwd",
            "adaptive": False, "batch": 1024}
    info.update(extra)
    return {"group": group, "name": backend, "extra_info": info,
            "stats": {"median": median, "q1": median * 0.9, "q3": median * 1.1, "rounds": 7}}


def test_report_table(tmp_path):
    data = {"datetime": "2026-12-01T00:00:00", "machine_info": {"cpu_name": "Test CPU", "cpu": {"count": 2},
            "torch": "9.9", "triton": "-", "python_version": "3.11", "torch_threads": 2, "infomorph_commit": "abc1234"},
            "benchmarks": [_bench("cpu", 0.002, max_err=3e-8), _bench("reference_dense", 1.5),
                           _bench("reference", 0.1, max_err=1e-7)]}
    path = tmp_path / "b.json"
    path.write_text(json.dumps(data))
    res = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "report.py"), str(path)], capture_output=True,
                         text=True)
    assert res.returncode == 0, res.stderr
    rows = [l for l in res.stdout.splitlines() if l.startswith("| fwd |")]
    assert [r.split("|")[7].strip() for r in rows] == ["reference_dense", "reference", "cpu"]  # baseline first
    assert "| 2.00 (1.80-2.20) | 7 | 750x | 3.0e-08 |" in rows[2]
    assert "| 15x |" in rows[1] and "| 1x | - |" in rows[0]
    assert "Test CPU, 2 cores" in res.stdout and "commit: abc1234" in res.stdout
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    res = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "report.py"), str(bad)], capture_output=True,
                         text=True)
    assert res.returncode == 1 and "not a readable pytest-benchmark JSON" in res.stderr
