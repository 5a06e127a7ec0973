"""infomorph_kernels.compat.sxpid against outputs recorded from the real SxPID.

tests/data/sxpid_recorded.json holds SxPID's own ``pid(pdf, pointwise=True)`` results (master
55046f3, github.com/Abzinger/SxPID) on its demo gates, dice pdfs and seeded random pdfs with 2,
3 and 4 sources (its ``source`` field says how they were made). The target-pointwise mode
(nninfo's call, SxPID's targetpointwise branch) is checked against the p(s | t)-weighted means of
the recorded pointwise values, which is what that branch computes."""
import json
import math
import os

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
    ({(0, 0, 0): 0.7}, "sum to 1"),
    ({(0, "a", 0): 0.5, (1, 2, 1): 0.5}, "must sort"),
])  # fmt: skip
def test_bad_pdfs_name_the_problem(bad, match):
    with pytest.raises((ValueError, TypeError), match=match):
        SxPID.pid(bad)
    with pytest.raises(ValueError, match="parts must be"):
        SxPID.pid({(0, 0): 1.0}, parts="both")
