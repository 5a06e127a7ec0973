"""The Triton kernel compiled ahead of time for Hopper (sm_90) and Ampere (sm_80), without a GPU.

The interpreter (tests/test_backend_triton.py) checks the numbers but not whether Triton's compiler
accepts the kernel: type rules, constexpr tuples and cache modifiers are only checked by a real
compile. Here every specialization that the launcher can pick for n = 1..4 sources is compiled to
PTX and a cubin (triton brings its own ptxas), and the PTX is checked for what the design relies on
(docs in infomorph_kernels/triton_kernels.py): CTA barriers between the passes, relaxed global
float atomics for the tables, L2-only (.cg) loads of the tables.
"""
import re

import pytest
import torch

pytest.importorskip("triton", reason="backend 'triton' needs the triton package (pip install triton)")

from infomorph_kernels import triton_kernels as tk  # noqa: E402

# n, dtype, need_grad, adaptive: the layer shapes that matter (n = 3 float32 with the backward is
# the training step), each dtype, with and without the backward, fixed and adaptive binning
VARIANTS = [
    (1, torch.float32, True, True),
    (2, torch.float32, True, False),
    (2, torch.float64, False, True),
    (3, torch.float32, True, False),
    (3, torch.float32, False, True),
    (3, torch.float64, True, True),
    (4, torch.float32, True, False),
]


def _ops(ptx: str) -> set:
    return set(re.findall(r"\b(bar\.sync|atom\.global[.\w]*|red\.global[.\w]*|ld\.global\.cg[.\w]*)", ptx))


@pytest.mark.parametrize("n, dtype, need_grad, adaptive", VARIANTS)
def test_compiles_for_hopper(n, dtype, need_grad, adaptive):
    k = tk.compile_for_target(90, n=n, nbins=[20] * n, dtype=dtype, need_grad=need_grad, adaptive=adaptive)
    assert k.metadata.arch == "sm90"
    assert len(k.asm["cubin"]) > 0
    ops = _ops(k.asm["ptx"])
    fty = "f64" if dtype == torch.float64 else "f32"
    assert "bar.sync" in ops, "the passes must be separated by CTA barriers"
    assert any(o.startswith(("atom.global", "red.global")) and o.endswith(f"add.{fty}") for o in ops), ops
    assert any(o.startswith("ld.global.cg") for o in ops), "table reads must bypass L1 (.cg)"


def test_compiles_for_ampere():
    k = tk.compile_for_target(80, n=3, nbins=[20, 20, 20], dtype=torch.float32, need_grad=True)
    assert k.metadata.arch == "sm80" and len(k.asm["cubin"]) > 0


@pytest.mark.parametrize("kw, match", [
    (dict(n=3, nbins=[20, 20]), "nbins must hold 3 ints"),
    (dict(n=2, nbins=[20, 0]), "nbins must hold 2 ints >= 1"),
    (dict(n=5, nbins=[2] * 5), "n must be an int in 1..4"),
    (dict(dtype=torch.float16), "dtype must be"),
    (dict(arch=9.0), "arch must be"),
])  # fmt: skip
def test_compile_for_target_rejects_bad_arguments(kw, match):
    arch = kw.pop("arch", 90)
    with pytest.raises(ValueError, match=match):
        tk.compile_for_target(arch, **kw)


@pytest.mark.parametrize("import_interpreted", [False, True])
def test_compile_whatever_triton_interpret_says(import_interpreted):
    """The compile does not depend on the interpreter switch: with the variable set after triton's
    import (compiled in this process, the switch bypassed) and with triton imported under it (its
    standard library interpreted: compiled in a fresh process). Run in a clean process each, with
    an empty triton cache, so no earlier compile can hide a failure."""
    import os
    import subprocess
    import sys
    import tempfile

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    code = (
        "import os, torch\n"
        + ("os.environ['TRITON_INTERPRET'] = '1'\n" if import_interpreted else "")
        + "import triton.language as tl\n"
        "os.environ['TRITON_INTERPRET'] = '1'\n"
        "from infomorph_kernels import triton_kernels as tk\n"
        "k = tk.compile_for_target(90, n=2, nbins=[5, 5], dtype=torch.float32, need_grad=True)\n"
        "assert k.metadata.arch == 'sm90' and k.asm['cubin'] and 'bar.sync' in k.asm['ptx']\n"
        "assert os.environ['TRITON_INTERPRET'] == '1'\n"
        "print('interpreted' if not tk._stdlib_compilable() else 'compiled', 'ok')\n"
    )
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, TRITON_CACHE_DIR=cache, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr[-3000:]
    assert res.stdout.split() == ["interpreted" if import_interpreted else "compiled", "ok"]
