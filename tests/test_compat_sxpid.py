"""infomorph_kernels.compat.sxpid against outputs recorded from the real SxPID.

tests/data/sxpid_recorded.json holds SxPID's own ``pid(pdf, pointwise=True)`` results (master
55046f3, github.com/Abzinger/SxPID) on its demo gates, dice pdfs and seeded random pdfs with 2,
3 and 4 sources (its ``source`` field says how they were made). The target-pointwise mode
(nninfo's call, SxPID's targetpointwise branch) is checked against the p(s | t)-weighted means of
the recorded pointwise values, which is what that branch computes."""
import json
import math
import os

import numpy as np
import pytest

from infomorph_kernels.compat import sxpid as SxPID

DATA = json.load(open(os.path.join(os.path.dirname(__file__), "data", "sxpid_recorded.json")))
CASES = DATA["cases"]


def _tup(x):
    return tuple(_tup(v) for v in x) if isinstance(x, list) else x


def _pdf(case):
    return {tuple(_tup(v) for v in k): p for k, p in case["pdf"]}


def _antichains(rows):
    return {_tup(a): tuple(v) for a, v in rows}


@pytest.mark.parametrize("name", sorted(CASES))
def test_pointwise_and_average_equal_sxpid(name):
    case = CASES[name]
    ptw, avg = SxPID.pid(_pdf(case), verbose=2, n_threads=1)
    want_avg = _antichains(case["avg"])
    assert set(avg) == set(want_avg)
    for a, v in want_avg.items():
        assert all(abs(x - y) < 1e-12 for x, y in zip(avg[a], v)), (a, avg[a], v)
    want_ptw = {_tup(r): _antichains(d) for r, d in case["ptw"]}
    assert set(ptw) == set(want_ptw)  # the caller's own realization tuples (tuple targets too)
    for r, d in want_ptw.items():
        for a, v in d.items():
            assert all(abs(x - y) < 1e-12 for x, y in zip(ptw[r][a], v)), (r, a, ptw[r][a], v)
            assert all(isinstance(x, float) for x in ptw[r][a])


@pytest.mark.parametrize("name", ["xor", "and", "copy", "dice_a2_l0.5", "random1_n3_K3_T2", "random3_n4_K2_T2"])
def test_target_pointwise_as_nninfo_calls_it(name):
    case = CASES[name]
    pdf = _pdf(case)
    ptw_t, avg = SxPID.pid(pdf, verbose=0, n_threads=1, pointwise="target", showProgress="print")
    rec = {_tup(r): _antichains(d) for r, d in case["ptw"]}
    p_t = {}
    for r, p in pdf.items():
        p_t[r[-1]] = p_t.get(r[-1], 0.0) + p
    assert set(ptw_t) == set(p_t)
    for t, pt in p_t.items():
        for a in ptw_t[t]:
            want = [sum(pdf[r] * rec[r][a][k] for r in rec if r[-1] == t) / pt for k in range(3)]
            assert all(abs(x - y) < 1e-12 for x, y in zip(ptw_t[t][a], want)), (t, a)
    for a, v in avg.items():  # the p(t)-weighted sum of the target values is avg
        assert abs(sum(p_t[t] * ptw_t[t][a][2] for t in p_t) - v[2]) < 1e-12


def test_parts_pointwise_false_and_key_order():
    pdf = _pdf(CASES["random0_n3_K2_T2"])
    avg = SxPID.pid(pdf, pointwise=False)
    assert isinstance(avg, dict) and len(avg) == 18
    ptw, inf = SxPID.pid(pdf, parts="inf")  # SxPID's branch: the other part (and the atom) NaN
    assert all(math.isnan(v[1]) and math.isnan(v[2]) and v[0] == avg[a][0] for a, v in inf.items())
    ptw, mis = SxPID.pid(pdf, parts="mis")
    assert all(math.isnan(v[0]) and v[1] == avg[a][1] for a, v in mis.items())
    assert avg[((3,), (1, 2))] == avg[((1, 2), (3,))]  # a key with its sets in another order
    pdf_obj = SxPID.PDF.from_dict(pdf)
    assert SxPID.pid(pdf_obj, pointwise=False) == avg
    assert pdf_obj.nVar == 4 and pdf_obj.nRlz == len(pdf)


@pytest.mark.parametrize("bad, match", [
    ({}, "non-empty dict"),
    ({(0, 0): 0.5, (1,): 0.5}, "tuples of one length"),
    ({(0, 0, 0): 0.7, (1, 1, 1): 0.6}, "at most 1 \\+ 1e-10\\), got a sum of 1.3"),
    ({(0, "a", 0): 0.5, (1, 2, 1): 0.5}, "must sort"),
])  # fmt: skip
def test_bad_pdfs_name_the_problem(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SxPID.pid(bad)
    with pytest.raises(ValueError, match="parts must be"):
        SxPID.pid({(0, 0): 1.0}, parts="both")


# ------------------------------------------------------------------ SxPID's whole module surface
SURFACE = json.load(open(os.path.join(os.path.dirname(__file__), "data", "sxpid_surface_recorded.json")))


def _sxpid_enumeration(n):
    """SxPID's own way to list the antichains, written out: the up-closed families of the nonempty
    proper subsets in itertools.product order, each giving its minimal sets (the empty one: the full set)."""
    import itertools

    pset = [c for r in range(1, n + 1) for c in itertools.combinations(range(1, n + 1), r)][:-1]
    out = []
    for bits in itertools.product([False, True], repeat=len(pset)):
        chosen = [p for p, b in zip(pset, bits) if b]
        if any(not bits[j] for i, p in enumerate(pset) if bits[i] for j, q in enumerate(pset) if set(p) < set(q)):
            continue
        minimal = tuple(p for p in chosen if not any(set(q) < set(p) for q in chosen))
        out.append(minimal if minimal else (tuple(range(1, n + 1)),))
    return out


@pytest.mark.parametrize("n", [2, 3, 4])
def test_antichains_and_moebius_in_sxpid_order(n):
    assert SxPID.load_achains(n) == [_tup(a) for a in SURFACE["achains"][str(n)]]
    if n < 4:  # 2^14 candidates for n = 4: the recording covers it
        assert SxPID.load_achains(n) == _sxpid_enumeration(n)
    m = SxPID.load_moebius_function(n)
    assert m.tolist() == SURFACE["moebius"][str(n)] and m.dtype == np.int8
    lat = SxPID.Lattice(n, None)
    ac = lat.antichain()
    zeta = np.array([[1 if b == a or lat.less_than(b, a) else 0 for b in ac] for a in ac])
    assert (m @ zeta == np.eye(len(ac))).all()
    assert all(set(lat.children(a)) <= set(lat.downset(a)) for a in ac)
    assert lat.children(ac[-1]) == [] or lat.less_than(lat.children(ac[-1])[0], ac[-1])


@pytest.mark.parametrize("name", sorted(SURFACE["cases"]))
def test_pdfs_that_sum_below_one_and_every_pdf_method(name):
    """BROJA-style pdfs (tiny probabilities dropped, sums 1 - 1e-9): computed on as given, as SxPID
    does, and every PDF method, against SxPID's recorded outputs."""
    case = SURFACE["cases"][name]
    pdf = {tuple(k): v for k, v in case["pdf"]}
    ptw, avg = SxPID.pid(pdf, verbose=0)
    assert [_tup(a) for a, _ in case["avg"]] == list(avg)  # SxPID's order
    for a, v in case["avg"]:
        assert avg[_tup(a)] == pytest.approx(tuple(v), abs=1e-12)
        assert all(type(x) is np.float64 for x in avg[_tup(a)])
    for rlz, d in case["ptw"]:
        for a, v in d:
            assert ptw[_tup(rlz)][_tup(a)] == pytest.approx(tuple(v), abs=1e-11)
    P = SxPID.PDF.from_dict(pdf)
    assert P.coords.tolist() == case["coords"] and str(P.coords.dtype) == case["coords_dtype"]
    assert [list(x) for x in P.get_labels()] == case["labels"]
    m = P.marginalize(1)
    assert m.coords.tolist() == case["marginalize_1"]["coords"]
    assert m.probs.tolist() == pytest.approx(case["marginalize_1"]["probs"], abs=1e-15)
    assert P[P.coords[3]] == case["getitem_rlz3"]
    assert P.probu_one_rlz(P.coords[2], np.array(case["probu_mask"])) == pytest.approx(case["probu_rlz2"], abs=1e-15)
    n = P.nVar - 1
    masks = [SxPID.get_bool_mask(n, a, False) for a in SxPID.load_achains(n)]
    assert SxPID.compute_i_cap_plus(P, masks, P.coords[0]).tolist() == pytest.approx(case["i_cap_plus_rlz0"], abs=1e-12)
    masks = [SxPID.get_bool_mask(n, a, True) for a in SxPID.load_achains(n)]
    assert SxPID.compute_i_cap_minus(P, masks, P.coords[0]).tolist() == pytest.approx(case["i_cap_minus_rlz0"], abs=1e-12)
    assert P[np.array([9] * P.nVar)] == 0.0  # not in the pdf (SxPID would return the first one's)


def test_verbose_prints_steps_and_tables(capsys):
    xor = {(0, 0, 0): .25, (0, 1, 1): .25, (1, 0, 1): .25, (1, 1, 0): .25}
    SxPID.pid(xor, verbose=2)
    assert capsys.readouterr().out == ""  # SxPID's progress bar: nothing to wait for here
    ptw, avg = SxPID.pid(xor, verbose=5)
    out = capsys.readouterr().out
    assert "Loading antichains and moebius function...[Done]" in out and "RLZ" in out and "avg" in out
    assert out.count("{1}{2}") == 5  # the atom in each of the 4 realizations' rows and the average's
    with pytest.raises(AssertionError, match="pointwise must be true to print"):
        SxPID.pid(xor, verbose=4, pointwise=False)


def test_nninfo_reing_marginalizes():
    """nninfo's reing measure marginalizes the pdf (PDF.marginalize) and runs pid on the result."""
    pdf = _pdf(CASES["random0_n3_K2_T2"])
    P = SxPID.PDF.from_dict(pdf)
    two = P.marginalize(2)  # drop the third source
    assert two.nVar == 3 and abs(float(two.probs.sum()) - 1.0) < 1e-12
    avg = SxPID.pid(two, pointwise=False)
    assert len(avg) == 4 and abs(sum(v[2] for v in avg.values()) - _mutual_information(two)) < 1e-12
    none = P.marginalize(*range(P.nVar))  # reing's C_0: every variable marginalized out
    assert none.coords.shape == (1, 0) and none.probs.tolist() == pytest.approx([1.0])


def _mutual_information(P):
    """I(T : S) in bits of a PDF (target last), for the atoms' sum."""
    joint, ps, pt = {}, {}, {}
    for row, p in zip(P.coords.tolist(), P.probs.tolist()):
        s, t = tuple(row[:-1]), row[-1]
        joint[(s, t)] = joint.get((s, t), 0.0) + p
        ps[s] = ps.get(s, 0.0) + p
        pt[t] = pt.get(t, 0.0) + p
    return sum(p * math.log2(p / (ps[s] * pt[t])) for (s, t), p in joint.items() if p > 0)
