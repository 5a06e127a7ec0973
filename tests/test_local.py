"""Local (pointwise) atoms: SxPID's informative / misinformative parts per realization.

Judges: textbook gates with values worked out by hand from the definitions, an independent brute
force (union probabilities by direct summation, atoms by a linear solve; tests/brute_force.py's
lattice), the averaging identities, and the backends against each other."""
import itertools
import math

import numpy as np
import pytest
import torch

import infomorph_kernels as ik
from brute_force import antichains, below, name

from test_reference import TEXTBOOK, random_pmf

F64 = torch.float64
L34 = math.log2(4 / 3)  # -log2 P(S1 = s1 or S2 = s2) for two uniform bits


def test_xor_every_realization_carries_the_same_local_atoms():
    """XOR of two uniform bits (atoms {1}, {2}, {1}{2}, {12}): i+({1}) = 1, i+({1}{2}) = log2 4/3,
    i+({12}) = 2; given t, i-({1}) = 1, i-({1}{2}) = 1, i-({12}) = 1. Inverted over the lattice:
    informative (1 - L, 1 - L, L, L), misinformative (0, 0, 1, 0), L = log2 4/3."""
    p, _ = TEXTBOOK["xor"]
    res = ik.pid_distribution(p, local=True)
    occ = p > 0
    inf = res.local_informative[occ]
    mis = res.local_misinformative[occ]
    assert inf.shape == (4, 4)
    torch.testing.assert_close(inf, torch.tensor([[1 - L34, 1 - L34, L34, L34]] * 4, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(mis, torch.tensor([[0.0, 0.0, 1.0, 0.0]] * 4, dtype=F64), rtol=0, atol=1e-12)
    torch.testing.assert_close(res.local_atoms[occ], (inf - mis), rtol=0, atol=0)
    torch.testing.assert_close(res.local_atoms[occ][0], res.atoms, rtol=0, atol=1e-12)
    assert (res.local_atoms[~occ] == 0).all() and (res.local_h_res[~occ] == 0).all()


def test_copy_gate_local_unique_information():
    """COPY (t = both bits): nothing is misinformative, every realization carries 1 - L bits of
    each unique information, L shared and L synergistic."""
    p, _ = TEXTBOOK["copy"]
    res = ik.pid_distribution(p, local=True)
    occ = p > 0
    torch.testing.assert_close(res.local_informative[occ], torch.tensor([[1 - L34, 1 - L34, L34, L34]] * 4, dtype=F64),
                               rtol=0, atol=1e-12)
    assert res.local_misinformative[occ].abs().max() < 1e-12
    assert res.local_h_res[occ].abs().max() < 1e-12  # s determines t


def brute_local(p):
    """Local i+ and i- of every antichain by direct summation, and the local atoms by a linear
    solve of the zeta matrix, straight from the definitions. p: numpy [T, K...]."""
    n = p.ndim - 1
    acs = antichains(n)
    z = np.array([[1.0 if below(b, a) else 0.0 for b in acs] for a in acs])
    q = p.sum(axis=0)
    p_t = p.reshape(p.shape[0], -1).sum(axis=1)
    cells = list(itertools.product(*[range(k) for k in p.shape[1:]]))
    out = {}
    for t in range(p.shape[0]):
        for s in cells:
            if p[(t,) + s] <= 0:
                continue
            plus, minus = [], []
            for alpha in acs:
                union = [c for c in cells if any(all(c[j] == s[j] for j in range(n) if a >> j & 1) for a in alpha)]
                plus.append(-math.log2(sum(q[c] for c in union)))
                minus.append(-math.log2(sum(p[(t,) + c] for c in union) / p_t[t]))
            out[(t,) + s] = ({name(a): v for a, v in zip(acs, np.linalg.solve(z, plus))},
                             {name(a): v for a, v in zip(acs, np.linalg.solve(z, minus))})
    return out


@pytest.mark.parametrize("seed, n, k, targets", [(0, 2, 3, 2), (1, 2, 2, 3), (2, 3, 2, 2), (3, 3, 2, 3)])
def test_random_pmfs_against_brute_force(seed, n, k, targets):
    p = random_pmf(seed, n, k, targets)
    res = ik.pid_distribution(p, local=True)
    bf = brute_local(p.numpy())
    for cell, (inf, mis) in bf.items():
        np.testing.assert_allclose(res.local_informative[cell].numpy(), [inf[nm] for nm in res.names], atol=1e-11)
        np.testing.assert_allclose(res.local_misinformative[cell].numpy(), [mis[nm] for nm in res.names], atol=1e-11)
    assert len(bf) == int((p > 0).sum())


@pytest.mark.parametrize("seed, n, k", [(5, 2, 4), (6, 3, 3), (7, 4, 2)])
def test_averages_are_the_atoms(seed, n, k):
    p = random_pmf(seed, n, k, 3).unsqueeze(0).repeat(2, 1, *([1] * n))  # a batch dim too
    res = ik.pid_distribution(p, n_sources=n, local=True)
    w = p.unsqueeze(-1)
    dims = list(range(1, p.dim()))
    torch.testing.assert_close((w * res.local_atoms).sum(dims), res.atoms, rtol=0, atol=1e-12)
    torch.testing.assert_close((p * res.local_h_res).sum(dims), res.h_res, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.local_atoms, res.local_informative - res.local_misinformative, rtol=0, atol=0)
    assert res.local_atoms.shape == p.shape + (len(res.names),)
    assert (res.local_atoms[p == 0] == 0).all()


def layer(seed, B, N, n, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    x = (torch.randn(B, N, n, generator=g, dtype=F64) * 4).to(dtype)
    theta = torch.rand(B, N, generator=g, dtype=F64)
    theta[: B // 8] = 0.0  # exact 0 and 1: realizations of probability 0
    theta[B // 8: B // 4] = 1.0
    return x, theta.to(dtype)


LOCAL_FIELDS = ("local_atoms", "local_informative", "local_misinformative", "local_h_res")


@pytest.mark.parametrize("n, bins, ranges", [(1, 4, (-20.0, 20.0)), (2, 5, "adaptive"), (3, 4, (-8.0, 8.0)),
                                             (4, 3, (-8.0, 8.0))])
def test_layer_backends_agree_and_average_to_the_atoms(n, bins, ranges):
    x, theta = layer(n, 97, 5, n)
    backends = ["reference", "reference_dense"] + (["cpu"] if "cpu" in ik.available_backends("cpu") else [])
    got = {b: ik.pid(x, theta, bins=bins, ranges=ranges, backend=b, local=True) for b in backends}
    ref = got["reference"]
    A = len(ref.names)
    assert ref.local_atoms.shape == (97, 5, 2, A) and ref.local_h_res.shape == (97, 5, 2)
    for b, r in got.items():
        for f in LOCAL_FIELDS:
            err = (getattr(r, f) - getattr(ref, f)).abs().max().item()
            assert err < 1e-9, (b, f, err)
    w = torch.stack([1 - theta, theta], dim=-1)  # p(y | sample): index 0 = silent, 1 = fire
    torch.testing.assert_close((w.unsqueeze(-1) * ref.local_atoms).sum(2).mean(0), ref.atoms, rtol=0, atol=1e-12)
    torch.testing.assert_close((w * ref.local_h_res).sum(2).mean(0), ref.h_res, rtol=0, atol=1e-12)
    # theta = 0: the fire realization has probability 0 at cells where no sample fires
    assert torch.isfinite(ref.local_atoms).all()


def test_layer_local_matches_the_distribution_of_its_histogram():
    """One neuron: pid(local=True) at each sample's cell = pid_distribution(local=True) of the
    theta-weighted histogram at that cell."""
    x, theta = layer(11, 64, 1, 2)
    res = ik.pid(x, theta, bins=3, ranges=(-6.0, 6.0), backend="reference", local=True)
    b = ik.binning.bin_indices(x, ik.binning.make_binning(2, 3, (-6.0, 6.0), F64))
    p = torch.zeros(2, 3, 3, dtype=F64)  # y = silent, fire
    for i in range(64):
        p[0, b[i, 0, 0], b[i, 0, 1]] += (1 - theta[i, 0]) / 64
        p[1, b[i, 0, 0], b[i, 0, 1]] += theta[i, 0] / 64
    dist = ik.pid_distribution(p, local=True)
    for i in range(64):
        for y in range(2):
            cell = (y, b[i, 0, 0], b[i, 0, 1])
            torch.testing.assert_close(res.local_atoms[i, 0, y], dist.local_atoms[cell], rtol=0, atol=1e-12)
            torch.testing.assert_close(res.local_h_res[i, 0, y], dist.local_h_res[cell], rtol=0, atol=1e-12)


def test_cpu_float32_close_to_float64():
    if "cpu" not in ik.available_backends("cpu"):
        pytest.skip("backend 'cpu' is not built")
    x, theta = layer(3, 300, 4, 3)
    r64 = ik.pid(x, theta, bins=6, backend="cpu", local=True)
    r32 = ik.pid(x.float(), theta.float(), bins=6, backend="cpu", local=True)
    ref32 = ik.pid(x.float(), theta.float(), bins=6, backend="reference", local=True)
    for f in LOCAL_FIELDS:
        assert getattr(r32, f).dtype == torch.float32
        err = (getattr(r32, f).double() - getattr(r64, f)).abs().max().item()
        ref_err = (getattr(ref32, f).double() - getattr(r64, f)).abs().max().item()
        assert err <= 2 * ref_err + 1e-6, (f, err, ref_err)


def test_batch_of_one_and_constant_inputs_stay_finite():
    for backend in ["reference"] + (["cpu"] if "cpu" in ik.available_backends("cpu") else []):
        r = ik.pid(torch.zeros(1, 2, 3, dtype=F64), torch.tensor([[0.0, 1.0]], dtype=F64), backend=backend, local=True)
        for f in LOCAL_FIELDS:
            assert torch.isfinite(getattr(r, f)).all()
        # one sample: silent with probability 1 for neuron 0, fire for neuron 1; the other output is 0
        assert (r.local_atoms[0, 0, 1] == 0).all() and (r.local_atoms[0, 1, 0] == 0).all()


def test_unsupported_backend_names_the_ones_that_are(triton_interpreter):
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        pytest.skip("the interpreter check is for CPU machines")
    x, theta = layer(0, 16, 2, 2)
    with pytest.raises(ValueError, match=r"local=True is supported by backends \['reference', 'reference_dense', 'cpu'\]"):
        ik.pid(x, theta, bins=3, backend="triton", local=True)
    with pytest.raises(TypeError, match="local must be a bool"):
        ik.pid(x, theta, local="yes")
