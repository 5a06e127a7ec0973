"""The analysis backend (infomorph_kernels.analysis): PID of neuron groups about a multi-valued
label, representational complexity, MI matrices, MIG and MIR."""
import itertools
import math

import numpy as np
import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import cpu_backend

F64 = torch.float64


def _hist(sym, labels, group, K, L):
    """Joint pmf [K, L, ..., L] of (label, neurons of group), by a Python loop."""
    p = torch.zeros((K,) + (L,) * len(group), dtype=F64)
    for i in range(sym.shape[0]):
        p[(int(labels[i]),) + tuple(int(sym[i, j]) for j in group)] += 1.0 / sym.shape[0]
    return p


@pytest.mark.parametrize("n, K, L, groups", [(2, 3, 3, "pairs"), (3, 4, 2, "triplets"), (1, 5, 4, "random:3:1"),
                                             (4, 2, 2, torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))])
def test_groups_equal_the_pid_of_their_histograms(n, K, L, groups):
    g = torch.Generator().manual_seed(n)
    sym = torch.randint(0, L, (300, 5), generator=g)
    labels = (sym[:, 0] + torch.randint(0, K, (300,), generator=g)) % K
    res = ik.pid_labels(sym, labels, groups=groups, bins=None, n_labels=K, per_label=True, seed=4)
    idx = ik.analysis._groups(groups, 5, None, 4)
    assert res.atoms.shape == (idx.shape[0], ik.lattice.n_atoms(n))
    for row, group in enumerate(idx.tolist()):
        ref = ik.pid_distribution(_hist(sym, labels, group, K, L), n_sources=n, local=True)
        assert (res.atoms[row] - ref.atoms).abs().max() < 1e-12
        assert abs(res.h_res[row] - ref.h_res) < 1e-12
    # target-pointwise atoms: their p(label)-weighted sum is the atoms
    torch.testing.assert_close((res.label_probs.view(1, -1, 1) * res.label_atoms).sum(1), res.atoms, rtol=0, atol=1e-12)
    torch.testing.assert_close(res.label_atoms, res.label_informative - res.label_misinformative, rtol=0, atol=0)


@pytest.mark.parametrize("n, K, L, B", [(1, 3, 6, 500), (2, 100, 4, 3000), (3, 10, 8, 2000), (4, 5, 3, 1500),
                                        (3, 2, 1, 50), (2, 1, 3, 40)])
def test_fused_cpu_groups_equal_the_reference(n, K, L, B):
    """The fused C++ group engine (backend 'cpu', what 'auto' picks) against the dense reference on
    the same symbols: redundancies, atoms and H_res to 1e-12 bits; bit-identical for 1 and 2 threads."""
    if not cpu_backend.is_available():
        pytest.fail(cpu_backend.unavailable_reason())
    g = torch.Generator().manual_seed(10 * n + K)
    sym = torch.randint(0, L, (B, 7), generator=g)
    labels = (sym[:, 0] * 3 + sym[:, -1] + torch.randint(0, 2, (B,), generator=g)) % K
    groups = ik.analysis._groups(f"random:25:{n}", 7, None, n)
    ref = ik.pid_labels(sym, labels, groups=groups, bins=None, n_labels=K, backend="reference")
    outs = []
    for threads in (1, 2):
        cpu_backend.set_num_threads(threads)
        try:
            outs.append(ik.pid_labels(sym, labels, groups=groups, bins=None, n_labels=K, backend="cpu"))
        finally:
            cpu_backend.set_num_threads(None)
    res = outs[0]
    assert res.backend == "cpu"
    assert torch.equal(outs[0].redundancies, outs[1].redundancies)
    for name in ("redundancies", "atoms", "h_res", "mutual_information"):
        assert (getattr(res, name) - getattr(ref, name)).abs().max() < 1e-12, name
    assert torch.isfinite(res.atoms).all()
    auto = ik.pid_labels(sym, labels, groups=groups, bins=None, n_labels=K)
    assert auto.backend == "cpu" and torch.equal(auto.redundancies, res.redundancies)
    # grouped input [batch, groups, n] takes the same path
    grouped = ik.pid_labels(sym[:, groups], labels, bins=None, n_labels=K, backend="cpu")
    assert torch.equal(grouped.redundancies, res.redundancies)


def test_grouped_input_and_float_binning_like_the_engine():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(200, 4, 2, generator=g, dtype=F64) * 3
    labels = torch.randint(0, 3, (200,), generator=g)
    res = ik.pid_labels(x, labels, bins=5, ranges=(-6.0, 6.0))
    b = ik.binning.bin_indices(x, ik.make_binning(2, 5, (-6.0, 6.0), F64))
    for gi in range(4):
        ref = ik.pid_distribution(_hist(b[:, gi, :], labels, [0, 1], 3, 5), n_sources=2)
        assert (res.atoms[gi] - ref.atoms).abs().max() < 1e-12


def test_textbook_labels():
    """I_sx values (docs/math.md section 6): label = XOR of two uniform bits has unique 0.585 each,
    shared -0.585, synergy 0.415 (I_sx is not 'all synergy' for XOR); label = a copy of one bit
    (the other independent): I = 1 bit, with the independent bit's unique information -0.415."""
    a = torch.tensor([0, 0, 1, 1] * 25)
    b = torch.tensor([0, 1, 0, 1] * 25)
    xor = ik.pid_labels(torch.stack([a, b], 1), a ^ b, groups="pairs", bins=None)
    torch.testing.assert_close(xor.atoms[0], torch.tensor([0.584963, 0.584963, -0.584963, 0.415037], dtype=F64),
                               rtol=0, atol=1e-6)
    assert abs(ik.representational_complexity(xor.atoms, 2)[0] - (1 + 0.415037)) < 1e-6
    copy = ik.pid_labels(torch.stack([a, b], 1), a, groups="pairs", bins=None)
    assert abs(copy.mutual_information[0] - 1.0) < 1e-12
    torch.testing.assert_close(copy.atoms[0], torch.tensor([0.584963, -0.415037, 0.415037, 0.415037], dtype=F64),
                               rtol=0, atol=1e-6)
    # three bits, label = their parity: the full-set atom is the only positive synergy of degree 3
    bits = torch.tensor(list(itertools.product(range(2), repeat=3)) * 10)
    par = ik.pid_labels(bits, bits[:, 0] ^ bits[:, 1] ^ bits[:, 2], groups="triplets", bins=None)
    assert abs(par.mutual_information[0] - 1.0) < 1e-12


def test_degree_and_complexity():
    d3 = ik.degree_of_synergy(3)
    names = ik.lattice.atom_names(3)
    assert d3[names.index("{1}{2}{3}")] == 1 and d3[names.index("{1}{23}")] == 1
    assert d3[names.index("{12}{13}{23}")] == 2 and d3[names.index("{123}")] == 3
    pure_syn = torch.zeros(18, dtype=F64)
    pure_syn[names.index("{123}")] = 0.7
    pure_red = torch.zeros(18, dtype=F64)
    pure_red[names.index("{1}{2}{3}")] = 0.7
    assert abs(ik.representational_complexity(pure_syn, 3) - 3) < 1e-12
    assert abs(ik.representational_complexity(pure_red, 3) - 1) < 1e-12
    with pytest.raises(ValueError, match="18 entries"):
        ik.representational_complexity(torch.zeros(4), 3)


def _plugin_mi(a, f):
    a, f = np.asarray(a), np.asarray(f)
    mi = 0.0
    for u in np.unique(a):
        for v in np.unique(f):
            pj = np.mean((a == u) & (f == v))
            if pj > 0:
                mi += pj * math.log2(pj / (np.mean(a == u) * np.mean(f == v)))
    return mi


def test_mutual_information_matrix_against_a_plugin_estimate():
    g = torch.Generator().manual_seed(1)
    f = torch.randint(0, 3, (400, 2), generator=g)
    act = torch.stack([f[:, 0] + 0.3 * torch.randn(400, generator=g), torch.randn(400, generator=g),
                       f[:, 1] * 1.0], 1)
    mi = ik.mutual_information_matrix(act, f, bins=6)
    assert mi.shape == (3, 2)
    lo, hi = act.min(0).values, act.max(0).values
    binned = ((act - lo) / ((hi - lo) / 6)).floor().clamp(0, 5).long()
    for i in range(3):
        for j in range(2):
            assert abs(mi[i, j] - _plugin_mi(binned[:, i], f[:, j])) < 1e-10
    assert mi[0, 0] > 1.0 and mi[2, 1] > 1.5 and mi[1].max() < 0.1


def test_mig_and_mir_on_hand_made_matrices():
    mi = torch.tensor([[1.0, 0.0], [0.2, 0.5], [0.0, 0.0]], dtype=F64)
    h = torch.tensor([2.0, 1.0], dtype=F64)
    assert abs(ik.mig(mi, h) - ((1.0 - 0.2) / 2.0 + (0.5 - 0.0) / 1.0) / 2) < 1e-12
    # neuron 0: r = 1; neuron 1: r = 0.5 / 0.7; neuron 2 inactive
    r = (1.0 + 0.5 / 0.7) / 2
    assert abs(ik.mir(mi) - (r - 0.5) / 0.5) < 1e-12
    assert abs(ik.mir(torch.eye(3, dtype=F64)) - 1.0) < 1e-12  # perfectly disentangled
    assert abs(ik.mir(torch.ones(3, 3, dtype=F64))) < 1e-12  # fully entangled


def test_bad_arguments():
    x = torch.randint(0, 2, (10, 4))
    labels = torch.randint(0, 2, (10,))
    with pytest.raises(ValueError, match="need groups"):
        ik.pid_labels(x, labels, bins=None)
    with pytest.raises(ValueError, match="groups must be"):
        ik.pid_labels(x, labels, groups="quads", bins=None)
    with pytest.raises(TypeError, match="labels must be an integer"):
        ik.pid_labels(x, labels.float(), groups="pairs", bins=None)
    with pytest.raises(ValueError, match="backends"):
        ik.pid_labels(x, labels, groups="pairs", bins=None, backend="triton")
    with pytest.raises(ValueError, match="bins=None takes integer"):
        ik.pid_labels(x.float(), labels, groups="pairs", bins=None)
    with pytest.raises(TypeError, match="per_label must be a bool"):
        ik.pid_labels(x, labels, groups="pairs", bins=None, per_label=1)
    with pytest.raises(ValueError, match="n_labels must be an int >= 1"):
        ik.pid_labels(x, labels, groups="pairs", bins=None, n_labels=0)
    with pytest.raises(ValueError, match="factor_bins must be an int >= 1"):
        ik.mutual_information_matrix(torch.randn(10, 2), torch.randn(10, 1), factor_bins=0)
