"""Backend "triton" (infomorph_kernels/triton_kernels.py) against the float64 oracle.

Without a CUDA device the kernels run on CPU tensors under the Triton interpreter
(TRITON_INTERPRET=1, set for each test by the ``triton_interpreter`` fixture of conftest.py); with one, the same tests run on the GPU
and a larger-shape test is added. The judge is ``reference.pid_kernel_reference`` (same signature):
float64 within 1e-9 bits absolute, float32 within ~2x the reference's own float32 error.
"""
import importlib.util
import sys

import pytest
import torch

HAS_CUDA = torch.cuda.is_available()

pytest.importorskip("triton", reason="backend 'triton' needs the triton package (pip install triton)")

from infomorph_kernels import lattice  # noqa: E402
from infomorph_kernels.binning import make_binning  # noqa: E402
from infomorph_kernels.reference import pid_kernel_reference  # noqa: E402
from infomorph_kernels import triton_kernels as tk  # noqa: E402

DEVICE = "cuda" if HAS_CUDA else "cpu"

# the interpreter is on for each test of this file only (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("triton_interpreter")


def _inputs(B, N, nbins, adaptive, dtype, seed, theta_mode="mixed", need_grad=True, on_edges=True):
    """Seeded contract arguments: x [B, N, n], theta with exact 0/1 entries, a random goal."""
    n = len(nbins)
    g = torch.Generator().manual_seed(seed)
    binning = make_binning(n, list(nbins), "adaptive" if adaptive else (-2.0, 2.0), dtype=dtype, device=DEVICE)
    x = (1.5 * torch.randn(B, N, n, generator=g, dtype=torch.float64)).to(dtype)
    if on_edges and not adaptive:  # ties with the edges exercise the bucketize convention
        for j in range(n):
            k = nbins[j]
            pick = torch.randint(0, k + 1, (B, N), generator=g)
            hit = torch.rand(B, N, generator=g) < 0.3
            x[..., j] = torch.where(hit, binning.edges[j, :k + 1].cpu()[pick], x[..., j])
    if theta_mode == "binary":
        theta = (torch.rand(B, N, generator=g) < 0.5).to(torch.float64)
    else:
        theta = torch.rand(B, N, generator=g, dtype=torch.float64)
        if theta_mode == "mixed":
            theta = torch.where(theta < 0.15, torch.zeros_like(theta), theta)
            theta = torch.where(theta > 0.85, torch.ones_like(theta), theta)
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=g, dtype=torch.float64).numpy()
    w, gamma_h = lattice.goal_weights(gamma, n)
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=torch.int32)
    return (
        x.to(DEVICE).contiguous(), theta.to(dtype).to(DEVICE).contiguous(), binning.edges, binning.nbins,
        binning.clamp_lo, binning.clamp_hi, binning.adaptive, coef,
        torch.as_tensor(w, device=DEVICE), gamma_h, need_grad,
    )


def _check(args, **kw):
    """Run the kernel on ``args`` and compare with the oracle; returns the kernel's outputs."""
    x = args[0]
    B, N, n = x.shape
    A = lattice.n_atoms(n)
    out = tk.pid_kernel_triton(*args, **kw)
    red, h_y, dtheta = out
    assert red.shape == (N, A) and h_y.shape == (N,)
    assert dtheta.shape == ((B, N) if args[-1] else (0,))
    for o in out:
        assert o.dtype == x.dtype and o.device == x.device
        assert torch.isfinite(o).all()
    ref64 = pid_kernel_reference(*args, compute_dtype=torch.float64)
    if x.dtype == torch.float64:
        for o, r, name in zip(out, ref64, ("red", "h_y", "dtheta")):
            err = (o - r).abs().max().item() if r.numel() else 0.0
            assert err < 1e-9, f"{name}: max abs error {err:.3e} vs the float64 oracle"
    else:
        ref32 = pid_kernel_reference(*args)
        for o, r32, r, name in zip(out, ref32, ref64, ("red", "h_y", "dtheta")):
            if not r.numel():
                continue
            err = (o.double() - r).abs().max().item()
            ref_err = (r32.double() - r).abs().max().item()
            scale = max(1.0, r.abs().max().item())
            assert err <= 2.0 * ref_err + 1e-6 * scale, (
                f"{name}: float32 error {err:.3e} vs the reference's own float32 error {ref_err:.3e}"
            )
    return out


# B, N, nbins, adaptive, theta mode, need_grad, launch knobs
CASES = [
    (1, 2, (3, 3), False, "mixed", True, {}),
    (7, 3, (1, 5), True, "binary", True, {}),
    (33, 2, (3, 1, 5), True, "mixed", True, {"block_b": 16, "num_programs": 1}),
    (33, 3, (5, 5, 5), False, "mixed", False, {}),
    (7, 2, (3, 3, 3), False, "binary", True, {"num_programs": 2}),
    (7, 2, (4,), True, "mixed", True, {}),
    (7, 2, (1, 1), False, "mixed", True, {}),
]


@pytest.mark.parametrize("B,N,nbins,adaptive,theta_mode,need_grad,kw", CASES)
def test_matches_reference_float64(B, N, nbins, adaptive, theta_mode, need_grad, kw):
    _check(_inputs(B, N, nbins, adaptive, torch.float64, seed=B * 131 + N, theta_mode=theta_mode,
                   need_grad=need_grad), **kw)


def test_four_sources_float64():
    _check(_inputs(9, 1, (2, 3, 1, 2), True, torch.float64, seed=4))


@pytest.mark.parametrize(
    "B,N,nbins,adaptive", [(33, 2, (5, 3, 4), True), (7, 3, (3, 3), False), (9, 1, (2, 2, 1, 3), False)]
)
def test_matches_reference_float32(B, N, nbins, adaptive):
    _check(_inputs(B, N, nbins, adaptive, torch.float32, seed=7 + B))


def test_textbook_gates():
    """XOR, AND and COPY on two uniform binary sources: atoms {1}, {2}, {1}{2}, {12} (bits)."""
    s1 = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    s2 = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    binning = make_binning(2, 2, (-1.0, 1.0), dtype=torch.float64, device=DEVICE)
    # neurons: XOR and AND (binary targets); COPY is a 4-valued target, outside a binary neuron
    x = torch.stack([s1 - 0.5, s2 - 0.5], dim=-1).unsqueeze(1).expand(4, 2, 2).contiguous().to(DEVICE)
    theta = torch.stack([(s1 != s2).double(), (s1 * s2)], dim=1).to(DEVICE)
    coef = torch.as_tensor(lattice.coef_matrix(2), dtype=torch.int32)
    w = torch.zeros(lattice.n_atoms(2), dtype=torch.float64, device=DEVICE)
    args = (x, theta, binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi, False, coef, w, 0.0, True)
    red, h_y, _ = _check(args)
    atoms = red.cpu() @ torch.as_tensor(lattice.moebius_matrix(2), dtype=torch.float64).T
    expected = torch.tensor([[0.584963, 0.584963, -0.584963, 0.415037],
                             [0.188722, 0.188722, 0.122556, 0.311278]], dtype=torch.float64)
    # XOR in the I_sx order {1}, {2}, {1}{2}, {12}: the unique atoms are the published 0.584963
    assert torch.allclose(atoms, expected, atol=1e-6)
    assert torch.allclose(h_y.cpu(), torch.tensor([1.0, 0.811278124459], dtype=torch.float64), atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_degenerate_inputs_stay_finite(dtype):
    """Constant x (adaptive scale 0), theta all 0 / all 1 / constant, B = 1: no NaN or Inf."""
    args = list(_inputs(5, 4, (3, 2), True, dtype, seed=3))
    x = args[0].clone()
    x[:, 0] = 0.0
    x[:, 1] = 0.7
    theta = args[1].clone()
    theta[:, 0] = 0.0
    theta[:, 1] = 1.0
    theta[:, 2] = 0.5
    args[0], args[1] = x, theta
    _check(tuple(args))
    one = list(_inputs(1, 2, (3, 2), False, dtype, seed=5))
    _check(tuple(one))


def test_deterministic_and_inputs_untouched():
    args = _inputs(33, 2, (3, 4), True, torch.float64, seed=11)
    before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    first = tk.pid_kernel_triton(*args, block_b=16)
    second = tk.pid_kernel_triton(*args, block_b=16)
    if not HAS_CUDA:  # on a GPU the order of the atomic adds varies (float64: ~1e-16)
        for a, b in zip(first, second):
            assert torch.equal(a, b)
    for a, b in zip(args, before):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)


def test_rejects_bad_arguments():
    args = list(_inputs(4, 2, (3, 3), False, torch.float64, seed=1))
    bad = list(args)
    bad[1] = args[1][:, :1]
    with pytest.raises(ValueError, match="theta"):
        tk.pid_kernel_triton(*bad)
    bad = list(args)
    bad[0] = args[0].to(torch.float16)
    with pytest.raises(ValueError, match="x must be"):
        tk.pid_kernel_triton(*bad)


def test_import_without_triton(monkeypatch):
    """The module imports without triton and reports why it is unavailable."""
    monkeypatch.setitem(sys.modules, "triton", None)  # makes `import triton` raise ImportError
    monkeypatch.setitem(sys.modules, "triton.language", None)
    spec = importlib.util.spec_from_file_location("infomorph_kernels._triton_kernels_without_triton", tk.__file__)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert not mod.is_available()
    assert "triton" in mod.unavailable_reason()
    with pytest.raises(RuntimeError, match="not available"):
        mod.pid_kernel_triton(*_inputs(2, 1, (2, 2), False, torch.float64, seed=0))


@pytest.mark.skipif(not HAS_CUDA, reason="large shapes only on a CUDA device")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nbins,adaptive", [((20, 20), True), ((20, 20, 20), False), ((20, 20, 20), True)])
def test_large_shapes_cuda(dtype, nbins, adaptive):
    _check(_inputs(1024, 64, nbins, adaptive, dtype, seed=2024))
