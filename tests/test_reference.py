"""The float64 references against the definition (brute force), the textbook gates, the
consistency equations, each other, and finite differences."""
import itertools

import numpy as np
import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import lattice
from infomorph_kernels.binning import bin_indices, make_binning
from infomorph_kernels.reference import dense_joint, pid_kernel_reference

import brute_force

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import given, strategies as st  # noqa: E402

F64 = torch.float64


def gate(fn, n_targets):
    p = torch.zeros(n_targets, 2, 2, dtype=F64)
    for a, b in itertools.product(range(2), range(2)):
        p[fn(a, b), a, b] = 0.25
    return p


TEXTBOOK = {  # atoms {1}, {2}, {1}{2}, {12} in bits (docs/math.md section 6)
    "xor": (gate(lambda a, b: a ^ b, 2), [0.584963, 0.584963, -0.584963, 0.415037]),
    "and": (gate(lambda a, b: a & b, 2), [0.188722, 0.188722, 0.122556, 0.311278]),
    "copy": (gate(lambda a, b: 2 * a + b, 4), [0.584963, 0.584963, 0.415037, 0.415037]),
}


@pytest.mark.parametrize("gate_name", list(TEXTBOOK))
def test_textbook_gates(gate_name):
    p, expected = TEXTBOOK[gate_name]
    res = ik.pid_distribution(p)
    assert res.names == ["{1}", "{2}", "{1}{2}", "{12}"]
    np.testing.assert_allclose(res.atoms.numpy(), expected, atol=5e-7)
    bf = brute_force.atoms(p.numpy())
    np.testing.assert_allclose(res.atoms.numpy(), [bf[k] for k in res.names], atol=1e-12)


def test_redundant_and_unique_gates():
    # redundant: Y = S1 = S2 -> one bit of shared information (atom {1}{2} = 1, others 0)
    p = torch.zeros(2, 2, 2, dtype=F64)
    p[0, 0, 0] = p[1, 1, 1] = 0.5
    np.testing.assert_allclose(ik.pid_distribution(p).atoms.numpy(), [0, 0, 1, 0], atol=1e-12)
    # unique: Y = S1, S2 independent of both -> the I_sx atoms of this gate, from the brute force
    p = torch.zeros(2, 2, 2, dtype=F64)
    for a, b in itertools.product(range(2), range(2)):
        p[a, a, b] = 0.25
    res = ik.pid_distribution(p)
    assert res.mutual_information.item() == pytest.approx(1.0, abs=1e-12)
    bf = brute_force.atoms(p.numpy())
    np.testing.assert_allclose(res.atoms.numpy(), [bf[k] for k in res.names], atol=1e-12)
    # and the three-source XOR: all of I(Y:S) = 1 bit above the pairs
    p3 = torch.zeros(2, 2, 2, 2, dtype=F64)
    for a, b, c in itertools.product(range(2), repeat=3):
        p3[a ^ b ^ c, a, b, c] = 0.125
    res3 = ik.pid_distribution(p3)
    assert res3.atoms.sum().item() == pytest.approx(1.0, abs=1e-12)
    bf3 = brute_force.atoms(p3.numpy())
    np.testing.assert_allclose(res3.atoms.numpy(), [bf3[k] for k in res3.names], atol=1e-12)


def random_pmf(seed, n, k, n_targets=2, sparsity=0.3):
    rng = np.random.default_rng(seed)
    shape = (n_targets,) + (k,) * n
    p = rng.gamma(0.7, size=shape) * (rng.random(shape) > sparsity)
    if p.sum() == 0:
        p.flat[0] = 1.0
    return torch.tensor(p / p.sum(), dtype=F64)


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([2, 3, 4]), targets=st.sampled_from([2, 3]))
def test_random_pmfs_against_brute_force(seed, n, targets):
    k = {2: 3, 3: 2, 4: 2}[n]
    p = random_pmf(seed, n, k, targets)
    res = ik.pid_distribution(p)
    bf = brute_force.atoms(p.numpy())
    np.testing.assert_allclose(res.atoms.numpy(), [bf[name] for name in res.names], atol=1e-9, rtol=0)
    assert abs(res.h_res.item() - bf["H_res"]) < 1e-9


@given(seed=st.integers(0, 2**31 - 1), n=st.sampled_from([2, 3, 4]))
def test_consistency_equations(seed, n):
    """Atoms below the single-set antichain {A} sum to I(Y : S_A), computed from the joint."""
    p = random_pmf(seed, n, 2 if n == 4 else 3)
    res = ik.pid_distribution(p)
    acs = lattice.antichains(n)
    z = lattice.zeta_matrix(n)
    for s in range(1, 1 << n):
        i = acs.index((s,))
        members = [j for j in range(n) if s >> j & 1]
        total = float(z[i] @ res.atoms.numpy())
        assert abs(total - brute_force.mutual_information(p.numpy(), members)) < 1e-9
    # all atoms and H_res add up to H(Y)
    assert abs(res.atoms.sum().item() + res.h_res.item() - res.h_y.item()) < 1e-9


def layer(gen, B, N, n, dtype=F64, spread=3.0):
    x = torch.randn(B, N, n, generator=gen, dtype=dtype) * spread
    theta = torch.rand(B, N, generator=gen, dtype=dtype)
    return x, theta


@pytest.mark.parametrize("n,bins,B", [(2, 4, 50), (3, [3, 1, 5], 33), (4, 2, 40), (3, 20, 257)])
def test_sample_reference_matches_dense_and_distribution(gen, n, bins, B):
    x, theta = layer(gen, B, 4, n)
    r1 = ik.pid(x, theta, bins=bins, ranges=(-6.0, 6.0), backend="reference")
    r2 = ik.pid(x, theta, bins=bins, ranges=(-6.0, 6.0), backend="reference_dense")
    torch.testing.assert_close(r1.atoms, r2.atoms, atol=1e-12, rtol=0)
    torch.testing.assert_close(r1.h_res, r2.h_res, atol=1e-12, rtol=0)
    binning = make_binning(n, bins, (-6.0, 6.0), F64)
    p = dense_joint(bin_indices(x, binning), theta, binning.nbins)  # [N, 2, K...]
    r3 = ik.pid_distribution(p, n_sources=n)
    torch.testing.assert_close(r1.atoms, r3.atoms, atol=1e-12, rtol=0)


@pytest.mark.parametrize("n", [2, 3])
def test_layer_reference_against_brute_force(gen, n):
    x, theta = layer(gen, 60, 2, n)
    res = ik.pid(x, theta, bins=2 if n == 3 else 3, ranges=(-4.0, 4.0), backend="reference")
    binning = make_binning(n, 2 if n == 3 else 3, (-4.0, 4.0), F64)
    p = dense_joint(bin_indices(x, binning), theta, binning.nbins)
    for i in range(2):
        bf = brute_force.atoms(p[i].numpy())
        np.testing.assert_allclose(res.atoms[i].numpy(), [bf[k] for k in res.names], atol=1e-9, rtol=0)


@pytest.mark.parametrize("backend", ["reference", "reference_dense"])
@pytest.mark.parametrize("n", [2, 3])
def test_gradcheck_goal(gen, backend, n):
    x, theta = layer(gen, 24, 3, n)
    theta = (0.05 + 0.9 * theta).requires_grad_()
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=gen, dtype=F64)
    fn = lambda t: ik.pid_goal(x, t, gamma, bins=3, ranges=(-5.0, 5.0), backend=backend)  # noqa: E731
    assert torch.autograd.gradcheck(fn, (theta,), eps=1e-6, atol=1e-7)


def test_fused_backward_formula_matches_autograd(gen):
    """docs/math.md section 5 written out in numpy per sample, against the reference's autograd."""
    n, B, K = 3, 40, 3
    x, theta = layer(gen, B, 1, n)
    theta[:5] = 0.0
    theta[5:9] = 1.0
    binning = make_binning(n, K, (-4.0, 4.0), F64)
    coef = lattice.coef_matrix(n)
    w, g_h = lattice.goal_weights(np.random.default_rng(3).normal(size=19), n)
    args = (x, theta, binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi, False)
    red, h_y, dtheta = pid_kernel_reference(*args, torch.as_tensor(coef), torch.as_tensor(w), g_h, True)
    b = bin_indices(x, binning)[:, 0].numpy()
    th = np.stack([theta[:, 0].numpy(), 1 - theta[:, 0].numpy()], axis=1)  # [B, 2]
    cells = lambda s, i: tuple(b[i, j] for j in range(n) if s >> j & 1)  # noqa: E731
    subsets = range(1, 1 << n)
    m = {(s, y, cells(s, i)): 0.0 for s in subsets for y in range(2) for i in range(B)}
    q = {(s, cells(s, i)): 0.0 for s in subsets for i in range(B)}
    for i in range(B):
        for s in subsets:
            q[s, cells(s, i)] += 1 / B
            for y in range(2):
                m[s, y, cells(s, i)] += th[i, y] / B
    p_y = th.mean(axis=0)
    num = np.array([[[sum(coef[a, s - 1] * m[s, y, cells(s, i)] for s in subsets) for a in range(len(coef))]
                     for y in range(2)] for i in range(B)])
    den = np.array([[sum(coef[a, s - 1] * q[s, cells(s, i)] for s in subsets) for a in range(len(coef))]
                    for i in range(B)])
    with np.errstate(divide="ignore", invalid="ignore"):
        ell = np.where(num > 0, np.log2(num) - np.log2(den)[:, None, :] - np.log2(p_y)[None, :, None], 0.0)
        inv = np.where(num > 0, 1 / num, 0.0)
    u = {(s, y, i): th[i, y] / B * sum(w[a] * coef[a, s - 1] * inv[i, y, a] for a in range(len(coef)))
         for s in subsets for y in range(2) for i in range(B)}
    t = {}
    for (s, y, i), v in u.items():
        t[s, y, cells(s, i)] = t.get((s, y, cells(s, i)), 0.0) + v
    ln2 = np.log(2)
    g = np.zeros((B, 2))
    for j in range(B):
        for y in range(2):
            g[j, y] = (ell[j, y] @ w + sum(t[s, y, cells(s, j)] for s in subsets) / ln2
                       - (w.sum() / ln2 + g_h * (np.log2(p_y[y]) + 1 / ln2))) / B
    np.testing.assert_allclose(dtheta[:, 0].numpy(), g[:, 0] - g[:, 1], atol=1e-12, rtol=0)
    np.testing.assert_allclose(red[0].numpy(), (th[:, :, None] * ell).sum(axis=(0, 1)) / B, atol=1e-12)


@pytest.mark.parametrize("backend", ["reference", "reference_dense"])
def test_degenerate_inputs_give_finite_results(backend):
    cases = {
        "batch of one": (torch.ones(1, 2, 3, dtype=F64), torch.full((1, 2), 0.3, dtype=F64)),
        "constant inputs": (torch.full((16, 2, 3), 2.5, dtype=F64), torch.linspace(0, 1, 32, dtype=F64).view(16, 2)),
        "theta all zero": (torch.randn(16, 2, 3, dtype=F64), torch.zeros(16, 2, dtype=F64)),
        "theta all one": (torch.randn(16, 2, 3, dtype=F64), torch.ones(16, 2, dtype=F64)),
        "theta 0/1 mixed": (torch.randn(16, 2, 3, dtype=F64), (torch.arange(32).view(16, 2) % 3 == 0).to(F64)),
        "all zero sources, adaptive": (torch.zeros(8, 2, 3, dtype=F64), torch.rand(8, 2, dtype=F64)),
    }
    gamma = torch.randn(19, dtype=F64)
    for label, (x, theta) in cases.items():
        for ranges in [(-20.0, 20.0), "adaptive"]:
            t = theta.clone().requires_grad_()
            res = ik.pid(x, t, bins=[20, 3, 1], ranges=ranges, backend=backend, gamma=gamma)
            res.goal.sum().backward()
            for field in (res.atoms, res.h_res, res.goal, t.grad):
                assert torch.isfinite(field).all(), (label, ranges)
            if label in ("theta all zero", "theta all one"):
                assert res.atoms.abs().max() == 0 and res.h_res.abs().max() == 0, label


def test_float32_reference_close_to_float64(gen):
    x, theta = layer(gen, 1024, 5, 3, dtype=torch.float32)
    r32 = ik.pid(x, theta, backend="reference")
    r64 = ik.pid(x.double(), theta.double(), backend="reference")
    assert r32.atoms.dtype == torch.float32
    torch.testing.assert_close(r32.atoms.double(), r64.atoms, atol=1e-4, rtol=0)


def test_adaptive_binning_rule():
    x = torch.tensor([[[-4.0]], [[0.0]], [[2.0]], [[4.0]]], dtype=F64)
    binning = make_binning(1, 4, "adaptive", F64)
    # x / 4 = -1, 0, 0.5, 1 -> clamp(-0.9999, 1) -> edges -1, -.5, 0, .5, 1 (edge_k < v <= edge_k+1)
    assert bin_indices(x, binning).view(-1).tolist() == [0, 1, 2, 3]
    fixed = make_binning(1, 4, (-2.0, 2.0), F64)
    assert bin_indices(x, fixed).view(-1).tolist() == [0, 1, 3, 3]
