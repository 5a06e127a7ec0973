"""`python -m infomorph_kernels check` (infomorph_kernels/selfcheck.py): the installation check a
user runs first on a new machine. It must pass on a correct backend and must catch a wrong one."""
import io
import os
import subprocess
import sys

import pytest
import torch

from infomorph_kernels import cpu_backend, dispatch, selfcheck

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMALL = dict(batch=40, neurons=3, bins=5)


def test_cpu_backend_passes():
    out = io.StringIO()
    assert selfcheck.run("cpu", ["cpu"], out=out, **SMALL)
    text = out.getvalue()
    assert "all checks passed" in text
    assert text.count(" ok") == 2 * len(selfcheck.CASES) + 1  # kernel cases x 2 dtypes + the API check


@pytest.mark.parametrize("fault", ["offset", "nan", "dtype", "no_grad_out"])
def test_a_wrong_kernel_is_caught(monkeypatch, fault):
    real = dispatch.kernel("cpu")

    def broken(*args, **kw):
        red, h_y, dth = real(*args, **kw)
        if fault == "offset":
            red = red + 1e-4
        elif fault == "nan":
            dth = dth.clone()
            dth[0, 0] = float("nan")
        elif fault == "dtype":
            h_y = h_y.to(torch.float64 if h_y.dtype == torch.float32 else torch.float32)
        else:
            dth = torch.empty(0, dtype=red.dtype)
        return red, h_y, dth

    real_goal = cpu_backend.goal_kernel_cpu

    def broken_goal(*args, **kw):  # the API's lean entry point into the same engine, same fault
        goal, red, h_y, dth = real_goal(*args, **kw)
        if fault == "no_grad_out":
            dth = torch.empty(0, dtype=red.dtype)
        elif fault == "offset":
            goal = goal + 1e-4
        return goal, red, h_y, dth

    monkeypatch.setattr(dispatch, "kernel", lambda name: broken)
    monkeypatch.setattr(cpu_backend, "goal_kernel_cpu", broken_goal)
    out = io.StringIO()
    assert not selfcheck.run("cpu", ["cpu"], out=out, **SMALL)
    text = out.getvalue()
    assert "SOME CHECKS FAILED" in text
    expect = {"offset": "red: max abs error", "nan": "dtheta: NaN or Inf", "dtype": "h_y: dtype",
              "no_grad_out": "dtheta: shape"}[fault]  # fmt: skip
    assert expect in text
    if fault == "no_grad_out":  # the public API cannot use the missing gradient: reported, not raised
        assert "pid_goal + backward vs reference   float64" in text and "raised RuntimeError" in text


def test_float32_tolerance_follows_the_references_own_error():
    args = selfcheck.make_case(3, 64, 2, 6, torch.float32, theta="mixed", seed=1)
    got = [r.clone() for r in selfcheck.reference(args, torch.float32)]
    rows = selfcheck.compare(got, args)
    assert all(r["problem"] is None for r in rows)  # the reference's own float32 result passes
    got[0] = got[0] + 50 * max(r["tol"] for r in rows)
    assert selfcheck.compare(got, args)[0]["problem"].startswith("red: max abs error")


def test_backend_that_cannot_run_fails_the_check():
    if torch.cuda.is_available():
        pytest.skip("a CUDA GPU is present: backend 'cuda' may run")
    out = io.StringIO()
    assert not selfcheck.run("cpu", ["cuda"], out=out, **SMALL)
    assert "cuda     cannot run" in out.getvalue()


def test_triton_under_the_interpreter(triton_interpreter):
    pytest.importorskip("triton", reason="needs the triton package")
    if torch.cuda.is_available():
        pytest.skip("covered on the GPU by `python -m infomorph_kernels check`")
    out = io.StringIO()
    assert selfcheck.run("cpu", ["triton"], out=out, batch=17, neurons=2, bins=3), out.getvalue()


def test_command_line():
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    cmd = [sys.executable, "-m", "infomorph_kernels"]
    res = subprocess.run(cmd + ["check", "--device", "cpu", "--backends", "cpu", "--batch", "30", "--neurons", "2",
                                "--bins", "4"], capture_output=True, text=True, env=env)  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    assert "all checks passed" in res.stdout
    res = subprocess.run(cmd + ["check", "--bins", "0"], capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "--bins must be >= 1" in res.stderr
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    assert res.returncode == 2 and "usage: python -m infomorph_kernels check" in res.stderr
