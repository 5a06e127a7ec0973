import numpy as np
import pytest

from infomorph_kernels import lattice

import brute_force


@pytest.mark.parametrize("n,count", [(1, 1), (2, 4), (3, 18), (4, 166), (5, 7579)])
def test_antichain_counts(n, count):
    acs = lattice.antichains(n)
    assert len(acs) == count
    assert len(set(acs)) == count
    for a in acs:  # each really is an antichain of nonempty subsets, sorted
        assert list(a) == sorted(a) and all(0 < m < 1 << n for m in a)
        assert all((x & y) not in (x, y) for i, x in enumerate(a) for y in a[i + 1:])


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_antichains_match_independent_enumeration(n):
    ours = {frozenset(a) for a in lattice.antichains(n)}
    assert ours == set(brute_force.antichains(n))


def test_published_gamma_order():
    assert lattice.gamma_names(2) == ["{1}", "{2}", "{1}{2}", "{12}", "H_res"]
    assert lattice.gamma_names(3) == [
        "{1}{2}{3}", "{1}{2}", "{1}{3}", "{2}{3}", "{1}{23}", "{2}{13}", "{3}{12}",
        "{1}", "{2}", "{3}", "{12}{13}{23}", "{12}{13}", "{12}{23}", "{13}{23}",
        "{12}", "{13}", "{23}", "{123}", "H_res",
    ]
    assert lattice.atom_names(3, "FCL")[4] == "{F}{CL}"


def test_order_for_four_sources_is_documented_and_stable():
    names = lattice.atom_names(4)
    assert names[0] == "{1}{2}{3}{4}" and names[-1] == "{1234}"
    assert len(set(names)) == 166


@pytest.mark.parametrize("n", [1, 2, 3, 4])
def test_moebius_inverts_zeta_exactly(n):
    z, m = lattice.zeta_matrix(n), lattice.moebius_matrix(n)
    assert m.dtype == np.int64
    assert np.array_equal(m @ z, np.eye(len(z), dtype=np.int64))
    # the zeta matrix follows the definition of the order (independent check)
    acs = lattice.antichains(n)
    for i, a in enumerate(acs):
        for k, b in enumerate(acs):
            assert z[i, k] == int(brute_force.below(b, a))


def test_two_source_moebius_by_hand():
    # Pi_{1}{2} = I_{1}{2}; Pi_{1} = I_{1} - I_{1}{2}; Pi_{12} = I_{12} - I_{1} - I_{2} + I_{1}{2}
    m = lattice.moebius_matrix(2)
    assert m.tolist() == [[1, 0, -1, 0], [0, 1, -1, 0], [0, 0, 1, 0], [-1, -1, 1, 1]]


@pytest.mark.parametrize("n", [2, 3, 4])
def test_coefficients_are_inclusion_exclusion(n):
    # the union of an antichain's cylinder events, evaluated on all 2^(2^n) "which subsets hit"
    # patterns, equals the signed sum of the coefficients over the subsets that hit
    c = lattice.coef_matrix(n)
    acs = lattice.antichains(n)
    for row, alpha in zip(c, acs):
        # a point s' matches subset A of the target cell s iff s' agrees on A; agreeing on a set of
        # sources "agree" means matching every subset of it. Union indicator = any a in alpha within agree.
        for agree in range(1 << n):
            union = any(a & agree == a for a in alpha)
            signed = sum(row[s - 1] for s in range(1, 1 << n) if s & agree == s)
            assert signed == int(union)


def test_gamma_vector_from_names_and_errors():
    g = lattice.gamma_vector({"{1}{2}": 1.0, "H_res": 0.05, "{21}": 0.5}, 2)
    assert g.tolist() == [0.0, 0.0, 1.0, 0.5, 0.05]
    g = lattice.gamma_vector({"{F}{CL}": 2.0}, 3, labels="FCL")
    assert g[4] == 2.0 and g.sum() == 2.0
    with pytest.raises(ValueError, match="unknown atom name"):
        lattice.gamma_vector({"{1}{3}": 1.0}, 2)
    with pytest.raises(ValueError, match="not an antichain"):
        lattice.gamma_vector({"{1}{12}": 1.0}, 2)
    with pytest.raises(ValueError, match="n_atoms \\+ 1 = 5"):
        lattice.gamma_vector([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="finite"):
        lattice.gamma_vector([float("nan")] * 5, 2)
    with pytest.raises(ValueError, match="n_sources"):
        lattice.antichains(6)


def test_goal_weights_reproduce_goal():
    rng = np.random.default_rng(0)
    for n in (2, 3, 4):
        a = lattice.n_atoms(n)
        red = rng.normal(size=a)
        h_y = 1.3
        gamma = rng.normal(size=a + 1)
        atoms = lattice.moebius_matrix(n) @ red
        h_res = h_y - red[lattice.full_index(n)]
        w, g_h = lattice.goal_weights(gamma, n)
        assert np.isclose(w @ red + g_h * h_y, gamma[:-1] @ atoms + gamma[-1] * h_res)
