"""Every fused backend that can run here, through the public API (binning, dispatch, custom op,
H(Y) term, autograd), against the float64 reference backend."""
import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import lattice

from conftest import triton_status

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
# triton runs on CPU tensors under the interpreter, switched on per test (conftest.py)
FUSED = [b for b in ("cpu", "triton", "cuda") if (triton_status()[0] if b == "triton" else ik.backend_status(b, DEVICE)[0])]
pytestmark = pytest.mark.usefixtures("triton_interpreter")
F64 = torch.float64


def case(seed, B, N, n, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, N, n, generator=g, dtype=F64) * 4
    theta = torch.rand(B, N, generator=g, dtype=F64)
    theta[: B // 8] = 0.0  # exact 0 and 1 firing probabilities
    theta[B // 8: B // 4] = 1.0
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=g, dtype=F64)
    return x.to(dtype).to(DEVICE), theta.to(dtype).to(DEVICE), gamma


def run(backend, x, theta, gamma, **kw):
    t = theta.clone().requires_grad_()
    res = ik.pid(x, t, backend=backend, gamma=gamma, **kw)
    res.goal.sum().backward()
    return res, t.grad


def test_a_fused_backend_runs_here():
    # CI builds the CPU engine: if it is missing, the build is broken, not the test's business to skip
    assert "cpu" in FUSED, ik.backend_status("cpu", "cpu")[1]
    assert ik.pid(*case(0, 16, 2, 3)[:2]).backend == ("cpu" if DEVICE == "cpu" else FUSED[0])


@pytest.mark.parametrize("backend", FUSED)
@pytest.mark.parametrize("n,bins,ranges", [(2, 7, (-8.0, 8.0)), (3, [5, 3, 1], "adaptive"), (3, 20, (-20.0, 20.0)), (4, 3, [(-5.0, 5.0)] * 4)])
def test_backend_matches_reference_float64(backend, n, bins, ranges):
    B = 65 if backend == "triton" and DEVICE == "cpu" else 257
    x, theta, gamma = case(1, B, 3, n)
    got, g_got = run(backend, x, theta, gamma, bins=bins, ranges=ranges)
    ref, g_ref = run("reference", x, theta, gamma, bins=bins, ranges=ranges)
    assert got.backend == backend
    for a, b in [(got.atoms, ref.atoms), (got.h_res, ref.h_res), (got.goal, ref.goal), (g_got, g_ref)]:
        assert torch.isfinite(a).all()
        torch.testing.assert_close(a, b.detach(), atol=1e-9, rtol=0)


@pytest.mark.parametrize("backend", FUSED)
def test_backend_float32_within_reference_float32_error(backend):
    x, theta, gamma = case(2, 64 if DEVICE == "cpu" else 1024, 4, 3, dtype=torch.float32)
    got, g_got = run(backend, x, theta, gamma, bins=6)
    ref32, g_ref32 = run("reference", x, theta, gamma, bins=6)
    ref64, g_ref64 = run("reference", x.double(), theta.double(), gamma, bins=6)
    for a, r32, r64 in [(got.atoms, ref32.atoms, ref64.atoms), (g_got, g_ref32, g_ref64)]:
        own = (r32.double() - r64).abs().max().item()
        err = (a.double() - r64).abs().max().item()
        assert err <= 4 * own + 1e-6, (err, own)


@pytest.mark.skipif(DEVICE != "cpu", reason="CPU engine check; CUDA runs are covered by the other tests")
def test_cpu_engine_under_torch_compile():
    x, theta, gamma = case(3, 128, 5, 3, dtype=torch.float32)

    def step(t):
        return ik.pid_goal(x, t, gamma, bins=8, backend="cpu", validate=False).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    t1, t2 = theta.clone().requires_grad_(), theta.clone().requires_grad_()
    g1, g2 = compiled(t1), step(t2)
    g1.backward()
    g2.backward()
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(t1.grad, t2.grad)
