"""Backend "cpu" (the fused C++ engine, infomorph_kernels/cpu_backend.py) against the float64 oracle.

The judge is ``reference.pid_kernel_reference`` (same signature, docs/kernel_contract.md): float64
within 1e-9 bits absolute for red, h_y and dtheta; float32 within ~2x the reference's own float32
error (both compared to the float64 oracle). Every output must be finite. The module skips itself,
with the build command as the reason, when the extension is not built.
"""
import numpy as np
import pytest
import torch

from infomorph_kernels import cpu_backend, lattice
from infomorph_kernels.binning import make_binning
from infomorph_kernels.reference import pid_kernel_reference

pytestmark = pytest.mark.skipif(not cpu_backend.is_available(), reason=cpu_backend.unavailable_reason())

NAMES = ("red", "h_y", "dtheta")


def _inputs(B, N, nbins, ranges=(-2.0, 2.0), dtype=torch.float64, seed=0, theta_mode="mixed",
            need_grad=True, on_edges=True, scale=1.5):
    """Seeded contract arguments: x [B, N, n], theta with exact 0/1 entries, a random goal."""
    n = len(nbins)
    g = torch.Generator().manual_seed(seed)
    binning = make_binning(n, list(nbins), ranges, dtype=dtype)
    x = (scale * torch.randn(B, N, n, generator=g, dtype=torch.float64)).to(dtype)
    if on_edges and not binning.adaptive:  # ties with the edges exercise the bucketize convention
        for j in range(n):
            k = nbins[j]
            pick = torch.randint(0, k + 1, (B, N), generator=g)
            hit = torch.rand(B, N, generator=g) < 0.3
            x[..., j] = torch.where(hit, binning.edges[j, : k + 1][pick], x[..., j])
    theta = torch.rand(B, N, generator=g, dtype=torch.float64)
    if theta_mode == "mixed":
        theta = torch.where(theta < 0.15, torch.zeros_like(theta), theta)
        theta = torch.where(theta > 0.85, torch.ones_like(theta), theta)
    elif theta_mode == "binary":
        theta = (theta < 0.5).to(torch.float64)
    elif theta_mode in ("zeros", "ones"):
        theta = torch.full_like(theta, 0.0 if theta_mode == "zeros" else 1.0)
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=g, dtype=torch.float64).numpy()
    w, gamma_h = lattice.goal_weights(gamma, n)
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=torch.int32)
    return [x, theta.to(dtype), binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi,
            binning.adaptive, coef, torch.as_tensor(w), gamma_h, need_grad]


def _check(args, **kw):
    """Run the engine on ``args``, compare with the oracle, return the engine's outputs."""
    x = args[0]
    B, N, n = x.shape
    A = lattice.n_atoms(n)
    out = cpu_backend.pid_kernel_cpu(*args, **kw)
    red, h_y, dtheta = out
    assert red.shape == (N, A) and h_y.shape == (N,)
    assert dtheta.shape == ((B, N) if args[-1] else (0,))
    for o, name in zip(out, NAMES):
        assert o.dtype == x.dtype, name
        assert torch.isfinite(o).all(), f"{name} has NaN/Inf"
    ref64 = pid_kernel_reference(*args, compute_dtype=torch.float64)
    if x.dtype == torch.float64:
        for o, r, name in zip(out, ref64, NAMES):
            err = (o - r).abs().max().item() if r.numel() else 0.0
            assert err < 1e-9, f"{name}: max abs error {err:.3e} vs the float64 oracle"
    else:
        ref32 = pid_kernel_reference(*args)
        for o, r32, r, name in zip(out, ref32, ref64, NAMES):
            if not r.numel():
                continue
            err = (o.double() - r).abs().max().item()
            err_ref = (r32.double() - r).abs().max().item()
            assert err <= 2.0 * err_ref + 1e-6, f"{name}: error {err:.3e} vs the reference's own float32 error {err_ref:.3e}"
    return out


# ---- agreement with the oracle -------------------------------------------------------------------


@pytest.mark.parametrize(
    "B, N, nbins",
    [
        (257, 6, (20, 20)),     # bivariate
        (257, 5, (20, 20, 20)),  # trivariate, the paper's hidden layer
        (1, 3, (20, 20, 20)),   # a single sample
        (7, 4, (3, 1, 20)),     # odd bins, one source with a single bin
        (64, 3, (4, 3, 2, 5)),  # four sources
        (33, 3, (7,)),          # one source
        (257, 3, (5, 3, 20)),   # unequal bins
    ],
)
def test_matches_reference_float64(B, N, nbins):
    _check(_inputs(B, N, nbins, seed=B + N))


@pytest.mark.parametrize("theta_mode", ["mixed", "binary", "zeros", "ones", "soft"])
def test_theta_extremes(theta_mode):
    # theta exactly 0 / 1 (mixed and all): p(y) = 0 terms and N = 0 cells must give 0, never NaN
    _check(_inputs(129, 5, (3, 4, 5), theta_mode=theta_mode, seed=3))


def test_adaptive_ranges_with_all_zero_neuron():
    args = _inputs(96, 5, (20, 20, 20), ranges="adaptive", seed=5)
    args[0][:, 2, :] = 0.0  # max|x| = 0: x is left alone, every sample in one bin
    args[0][:, 4, 1] = 0.0  # one source constant, the others not
    _check(args)


def test_adaptive_float32():
    _check(_inputs(200, 4, (20, 20, 20), ranges="adaptive", dtype=torch.float32, seed=6))


def test_all_samples_in_one_bin_and_constant_inputs():
    args = _inputs(50, 4, (20, 20, 20), seed=7, on_edges=False)
    args[0][:, 0, :] = 100.0   # clamped to hi: all in the last bin
    args[0][:, 1, :] = -100.0  # clamped to lo + 1e-4: all in the first bin
    args[0][:, 2, :] = 0.3     # constant inside the range
    red, h_y, _ = _check(args)
    # one occupied cell: every redundancy is I(Y; constant) = 0
    assert red[:3].abs().max().item() < 1e-12


@pytest.mark.parametrize("nbins", [(1, 1, 1), (3, 3, 3), (20, 20, 20)])
def test_bins_1_3_20(nbins):
    _check(_inputs(129, 3, nbins, seed=sum(nbins)))


def test_float32_within_reference_error():
    _check(_inputs(257, 5, (20, 20, 20), dtype=torch.float32, seed=8))
    _check(_inputs(31, 3, (3, 5), dtype=torch.float32, seed=9, theta_mode="binary"))


def test_large_joint_table_uses_sparse_cells():
    # 300 x 300 joint cells: more than the direct-index limit, the engine hashes occupied cells
    _check(_inputs(500, 3, (300, 300), ranges=(-3.0, 3.0), seed=10, on_edges=False))
    # four sources, 20 bins: 160,000 joint cells
    _check(_inputs(200, 2, (20, 20, 20, 20), seed=11))


def test_batch_beyond_the_count_log_table():
    # B > 2^16: log2 of the integer counts is computed instead of read from a table
    _check(_inputs(70_000, 1, (5, 4), seed=18, on_edges=False))


def test_forward_only_and_wide_values():
    args = _inputs(100, 3, (20, 20, 20), ranges=(-20.0, 20.0), seed=12, need_grad=False, scale=8.0)
    red, h_y, dtheta = _check(args)
    assert dtheta.numel() == 0


# ---- textbook values ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "gate, atoms",
    [
        ("xor", (0.584963, 0.584963, -0.584963, 0.415037)),
        ("and", (0.188722, 0.188722, 0.122556, 0.311278)),
    ],
)
def test_textbook_gates(gate, atoms):
    # two uniform binary sources (one sample per input pattern), target a function of them
    a = torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=torch.float64)
    b = torch.tensor([0.0, 1.0, 0.0, 1.0], dtype=torch.float64)
    t = (a != b) if gate == "xor" else (a * b > 0)
    binning = make_binning(2, 2, (-0.5, 1.5))
    x = torch.stack([a, b], dim=-1).view(4, 1, 2)
    coef = torch.as_tensor(lattice.coef_matrix(2), dtype=torch.int32)
    red, h_y, _ = cpu_backend.pid_kernel_cpu(
        x, t.to(torch.float64).view(4, 1), binning.edges, binning.nbins, binning.clamp_lo,
        binning.clamp_hi, False, coef, torch.zeros(4, dtype=torch.float64), 0.0, False,
    )
    got = torch.as_tensor(lattice.moebius_matrix(2), dtype=torch.float64) @ red[0]
    np.testing.assert_allclose(got.numpy(), atoms, atol=1e-6)


# ---- engine properties ----------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_thread_count_independent(dtype):
    args = _inputs(200, 13, (20, 20, 20), dtype=dtype, seed=13)
    one = cpu_backend.pid_kernel_cpu(*args, num_threads=1)
    two = cpu_backend.pid_kernel_cpu(*args, num_threads=2)
    for a, b, name in zip(one, two, NAMES):
        assert torch.equal(a, b), f"{name} differs between 1 and 2 threads"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_neurons_with_few_and_many_cells_in_turn(dtype):
    """A trained layer's neuron has few joint cells, and the workspace then expects few for the
    next neuron (a speed hint: CellTable::slots_of writes the map only for new cells). Neurons with
    2-40 cells and with hundreds, in runs and alternating: each matches the oracle and equals
    itself computed alone, bit for bit, on 1 and 2 threads."""
    B, N = 1024, 24
    args = _inputs(B, N, (20, 20, 20), dtype=dtype, seed=51, on_edges=False, scale=6.0)
    x = args[0]
    g = torch.Generator().manual_seed(52)
    for j in range(N):
        if j % 3 != 2:  # few distinct values per source: few joint cells
            levels = 1 + (j % 4)
            x[:, j, :] = (torch.randint(0, levels, (B, 3), generator=g) * 5.0 - 7.0).to(dtype)
    for threads in (1, 2):
        red, h_y, dtheta = _check(args, num_threads=threads)
        for j in (0, 1, 2, 5, 6):
            one = list(args)
            one[0], one[1] = args[0][:, j : j + 1].contiguous(), args[1][:, j : j + 1].contiguous()
            r1, h1, d1 = cpu_backend.pid_kernel_cpu(*one, num_threads=1)
            assert torch.equal(red[j], r1[0]) and torch.equal(h_y[j], h1[0]) and torch.equal(dtheta[:, j], d1[:, 0])


@pytest.mark.parametrize("sizes", [(1, 2, 1, 5), (1, 17, 1), (3, 1, 2)])
def test_workspace_follows_the_layer_shape(sizes):
    """A thread's workspace is kept across calls; a layer of one neuron (unblocked, no block
    buffers) followed by a wider one of the same batch and bins must rebuild it (it crashed)."""
    for threads in (1, 2):
        for i, N in enumerate(sizes):
            _check(_inputs(300, N, (20, 20), seed=40 + i), num_threads=threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,N,nbins", [(1, 3, (4, 4)), (7, 5, (6,)), (13, 9, (5, 6, 7)), (67, 33, (4, 5)),
                                       (1021, 13, (8, 8, 8)), (64, 17, (3, 3, 3, 3))])
def test_blocked_layer_equals_each_neuron_alone(B, N, nbins, dtype):
    """run_layer turns blocks of neurons into per-neuron rows and dtheta back (8 x 8 float / 4 x 4
    double register tiles plus scalar tails in the AVX2 flavour): every neuron of a layer must equal,
    bit for bit, that neuron computed alone (a one-neuron layer reads x and theta in place)."""
    args = _inputs(B, N, nbins, dtype=dtype, seed=B + N)
    for threads in (1, 2):
        red, h_y, dtheta = cpu_backend.pid_kernel_cpu(*args, num_threads=threads)
        for j in range(N):
            one = list(args)
            one[0], one[1] = args[0][:, j : j + 1].contiguous(), args[1][:, j : j + 1].contiguous()
            r1, h1, d1 = cpu_backend.pid_kernel_cpu(*one, num_threads=1)
            assert torch.equal(red[j], r1[0]) and torch.equal(h_y[j], h1[0]), (j, threads)
            assert torch.equal(dtheta[:, j], d1[:, 0]), (j, threads)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("B,N,n", [(1024, 100, 3), (1024, 10, 2), (1, 5, 3), (13, 1, 2), (6000, 3, 3),
                                   (17000, 2, 1), (64, 17, 4), (1021, 13, 3)])
def test_separate_sources_equal_the_stacked_layer(B, N, n, dtype):
    """ik.pid / ik.pid_goal with the sources as n tensors [B, N] (read in place by the blocked
    transposition; stacked by the engine where it does not block: one neuron, B n > 16384) equal
    the stacked call bit for bit: goal, gradient, atoms; fixed and adaptive ranges, 1 and 2 threads,
    a non-contiguous part too."""
    import infomorph_kernels as ik

    g = torch.Generator().manual_seed(B + N + n)
    parts = [(5 * torch.randn(B, N, generator=g, dtype=torch.float64)).to(dtype) for _ in range(n)]
    parts[0] = parts[0].t().contiguous().t()  # a strided view: made contiguous on the way in
    theta = torch.rand(B, N, generator=g, dtype=torch.float64).to(dtype)
    theta[::7] = 1.0
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=g, dtype=torch.float64)
    stacked = torch.stack(parts, -1)
    before = torch.get_num_threads()
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for ranges in ((-9.0, 9.0), "adaptive"):
                kw = dict(bins=7, ranges=ranges, backend="cpu")
                t1, t2 = theta.clone().requires_grad_(), theta.clone().requires_grad_()
                a, b = ik.pid_goal(stacked, t1, gamma, **kw), ik.pid_goal(parts, t2, gamma, **kw)
                a.sum().backward()
                b.sum().backward()
                assert torch.equal(a, b) and torch.equal(t1.grad, t2.grad), (threads, ranges)
                r1, r2 = ik.pid(stacked, theta, **kw), ik.pid(parts, theta, **kw)
                assert torch.equal(r1.atoms, r2.atoms) and torch.equal(r1.h_res, r2.h_res), (threads, ranges)
    finally:
        torch.set_num_threads(before)


def test_inputs_not_modified_and_non_contiguous_accepted():
    args = _inputs(65, 4, (5, 6, 7), seed=14)
    before = [a.clone() if isinstance(a, torch.Tensor) else a for a in args]
    out = cpu_backend.pid_kernel_cpu(*args)
    for a, b in zip(args, before):
        if isinstance(a, torch.Tensor):
            assert torch.equal(a, b)
    # the same layer as strided views
    nc = list(args)
    nc[0] = args[0].transpose(0, 1).contiguous().transpose(0, 1)
    nc[1] = args[1].t().contiguous().t()
    assert not nc[0].is_contiguous() and not nc[1].is_contiguous()
    for a, b in zip(out, cpu_backend.pid_kernel_cpu(*nc)):
        assert torch.equal(a, b)


def test_empty_layer():
    args = _inputs(10, 0, (3, 3), seed=15)
    red, h_y, dtheta = cpu_backend.pid_kernel_cpu(*args)
    assert red.shape == (0, 4) and h_y.shape == (0,) and dtheta.shape == (10, 0)


def test_too_many_cells_raises():
    args = _inputs(4, 1, (4, 4, 4), seed=16)
    binning = make_binning(3, [1024, 1024, 512], (-1.0, 1.0))  # 2^29 joint cells
    args[2], args[3], args[4], args[5] = binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi
    with pytest.raises(ValueError, match=r"2\^28"):
        cpu_backend.pid_kernel_cpu(*args)


def test_argument_errors_name_the_argument():
    args = _inputs(8, 2, (3, 3), seed=17)
    bad = list(args)
    bad[1] = args[1].float()
    with pytest.raises(TypeError, match="theta"):
        cpu_backend.pid_kernel_cpu(*bad)
    bad = list(args)
    bad[7] = torch.zeros(4, 5, dtype=torch.int32)  # 5 columns: not 2^2 - 1
    with pytest.raises(ValueError, match="coef"):
        cpu_backend.pid_kernel_cpu(*bad)
    bad = list(args)
    bad[0], bad[1] = args[0][:0], args[1][:0]
    with pytest.raises(ValueError, match="batch"):
        cpu_backend.pid_kernel_cpu(*bad)


def test_thread_setting():
    cpu_backend.set_num_threads(1)
    try:
        assert cpu_backend.get_num_threads() == 1
    finally:
        cpu_backend.set_num_threads(None)
    # the default: torch's count, less the cores other processes keep busy (tests/test_threads.py)
    assert 1 <= cpu_backend.get_num_threads() <= max(1, torch.get_num_threads())
    with pytest.raises(ValueError, match="num_threads"):
        cpu_backend.set_num_threads(0)


# ---- the two compiled flavours and the vector binning ------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("nbins, ranges", [((20, 20, 20), (-2.0, 2.0)), ((60, 7), (-2.0, 2.0)),
                                           ((70, 3), (-2.0, 2.0)), ((20, 20), "adaptive"),
                                           ((30, 31), (-2.0, 2.0)), ((1, 8, 9), (-2.0, 2.0))])
def test_binning_at_edges_and_their_neighbours(dtype, nbins, ranges):
    """Values exactly on the edges, one ulp either side, outside the range, +-inf: the vector
    binning (AVX2 flavour, K <= 62; float32 with K <= 30 looks the edges up in registers, across
    the 8-lane register boundaries at K = 8, 9) and the scalar one (larger K) must both follow
    the contract."""
    args = _inputs(203, 5, nbins, ranges=ranges, dtype=dtype, seed=21, on_edges=False)
    x = args[0]
    g = torch.Generator().manual_seed(22)
    for j, k in enumerate(nbins):
        e = make_binning(len(nbins), list(nbins), (-2.0, 2.0), dtype=dtype).edges[j, : k + 1]
        pick = e[torch.randint(0, k + 1, x.shape[:2], generator=g)]
        step = torch.randint(-1, 2, x.shape[:2], generator=g).to(dtype)
        near = torch.nextafter(pick, pick + step)
        hit = torch.rand(x.shape[:2], generator=g) < 0.6
        x[..., j] = torch.where(hit, torch.where(step == 0, pick, near), x[..., j])
    x[0, :, 0], x[1, :, 0], x[2, :, 0] = 1e30, -1e30, 0.0
    _check(args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("edges_kind", ["uniform", "moved", "uneven"])
def test_binning_certain_vectors_and_the_rest(dtype, edges_kind):
    """The vector binning skips the edge lookups for a vector whose values are all certain (the
    guess ceil(t) off every integer by more than the edges' distance from a uniform grid plus the
    rounding of t, or a value at a clamp). Sparse values near the edges, so that certain and
    uncertain vectors mix: 1 to 64 ulps and 1e-7 to 1e-2 bins from an edge, on the uniform grid
    where edges were moved off it by up to 0.1 bin, at the clamps and beyond; edges uniform, moved,
    or far from uniform (no vector certain). The bins must follow the contract (the oracle's
    torch.bucketize), so the results must match it."""
    nbins, lo, hi = (20, 20, 20), -20.0, 20.0
    args = _inputs(1024, 4, nbins, ranges=(lo, hi), dtype=dtype, seed=31, on_edges=False, scale=8.0)
    x, edges = args[0], args[2]
    g = torch.Generator().manual_seed(32)
    w = (hi - lo) / 20
    grid = torch.linspace(lo, hi, 21, dtype=torch.float64)
    for j in range(3):
        if edges_kind == "moved":
            edges[j, 1:20] = (grid[1:20] + w * 0.1 * (2 * torch.rand(19, generator=g, dtype=torch.float64) - 1)).to(dtype)
        elif edges_kind == "uneven":
            edges[j, :21] = (lo + (hi - lo) * torch.linspace(0, 1, 21, dtype=torch.float64) ** 2).to(dtype)
        e = edges[j, :21].double()
        shape = x.shape[:2]
        k = torch.randint(0, 21, shape, generator=g)
        base = torch.where(torch.rand(shape, generator=g) < 0.5, e[k], grid[k])
        kind = torch.randint(0, 3, shape, generator=g)
        ulps = 2.0 ** torch.randint(0, 7, shape, generator=g).double()
        sign = torch.randint(0, 2, shape, generator=g).double() * 2 - 1
        eps = torch.finfo(dtype).eps
        rel = 10.0 ** -torch.randint(2, 8, shape, generator=g).double()
        near = torch.where(kind == 0, base * (1 + sign * ulps * eps), torch.where(kind == 1, base + sign * rel * w, base))
        pick = torch.rand(shape, generator=g)
        v = x[..., j].double()
        v = torch.where(pick < 0.04, near, v)
        v = torch.where((pick >= 0.04) & (pick < 0.06), sign * 25.0, v)
        v = torch.where((pick >= 0.06) & (pick < 0.07), args[4][j].double(), v)
        x[..., j] = v.to(dtype)
    _check(args)


def test_vector_log2_within_three_ulp():
    """The engine's own log2 (pid_cpu_simd.h: range reduction to [sqrt(1/2), sqrt(2)), fdlibm's
    minimax polynomial) against numpy's log2 over its domain [0, 2^900]: log-uniform values from
    subnormal-adjacent to huge, the integer counts 1..70000, powers of two and the values around the
    sqrt(2) split. Within 1 ulp of the result for 97 % of the values and 3 ulp everywhere (the 3 next
    to x = 1, where the result is tiny): never more than 2 ulp of max(1, |log2 x|) in absolute terms."""
    from infomorph_kernels import _cpu

    rng = np.random.default_rng(7)
    k = np.arange(-1000, 900)
    split = np.sqrt(2.0) * np.ldexp(1.0, k)
    x = np.concatenate([np.exp2(rng.uniform(-1060.0, 900.0, 200_000)), np.arange(1.0, 70_001.0),
                        np.ldexp(1.0, k), split, np.nextafter(split, 0), np.nextafter(split, np.inf),
                        1.0 + rng.uniform(-1e-3, 1e-3, 20_000)])
    out = np.empty_like(x)
    _cpu.log2_lanes(x.ctypes.data, out.ctypes.data, x.size)
    ref = np.log2(x)
    err = np.abs(out - ref) / np.spacing(np.abs(ref)).clip(min=np.spacing(0.0))
    worst = int(np.argmax(err))
    assert err.max() <= 3.0, f"log2({x[worst]!r}) = {out[worst]!r}, numpy {ref[worst]!r}: {err.max():.2f} ulp"
    assert np.mean(err <= 1.0) > 0.97
    assert (np.abs(out - ref) <= 2 * np.spacing(np.maximum(1.0, np.abs(ref)))).all()


def test_baseline_flavour_agrees_with_the_oracle():
    """INFOMORPH_CPU_BASELINE=1 forces the portable kernels (no AVX2): the same checks pass there."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, INFOMORPH_CPU_BASELINE="1")
    code = ("import infomorph_kernels._cpu as c, sys; sys.exit(0 if c.simd_path() == 'baseline' else 3)")
    assert subprocess.run([sys.executable, "-c", code], env=env).returncode == 0, "the flag did not select the baseline"
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__, "-k",
                        "(matches_reference or binning_at_edges or theta_extremes or adaptive or thread_count or blocked_layer or vector_log2 or separate_sources) and not baseline"],
                       env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-2000:]
