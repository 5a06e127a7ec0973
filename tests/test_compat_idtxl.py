"""The IDTxl drop-in (infomorph_kernels.compat.idtxl): pid() against outputs recorded from IDTxl's own
pid_goettingen.pid (tests/data/record_idtxl.py), and install/uninstall on a stand-in module."""
import json
import math
import os
import sys
import types

import pytest

from infomorph_kernels.compat import idtxl as ik_idtxl

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "idtxl_recorded.json")


def _tup(x):
    return tuple(_tup(v) for v in x) if isinstance(x, list) else x


def _cases():
    with open(DATA) as fh:
        return json.load(fh)["cases"]


@pytest.mark.parametrize("name", sorted(_cases()))
def test_equals_idtxl_recorded(name):
    case = _cases()[name]
    pdf = {_tup(k): v for k, v in case["pdf"]}
    achain = [_tup(alpha) for alpha, _ in case["avg"]]
    ptw, avg = ik_idtxl.pid(case["n"], pdf, {alpha: [] for alpha in achain}, achain)
    assert list(avg) == achain  # the caller's keys, in the caller's order
    for alpha, want in case["avg"]:
        assert avg[_tup(alpha)] == pytest.approx(tuple(want), abs=1e-12, rel=1e-12)
    want_ptw = {_tup(k): {_tup(a): tuple(v) for a, v in atoms} for k, atoms in case["ptw"]}
    assert set(ptw) == set(want_ptw)  # realizations of probability 0 are dropped, as IDTxl does
    for k, atoms in want_ptw.items():
        for alpha, v in atoms.items():
            assert all(math.isfinite(x) for x in ptw[k][alpha])
            assert ptw[k][alpha] == pytest.approx(v, abs=1e-11, rel=1e-12), (k, alpha)


def test_bad_input_raises_idtxl_assertions(capsys):
    achain = [((1,),), ((2,),), ((1, 2),), ((1,), (2,))]
    xor = {(0, 0, 0): .25, (0, 1, 1): .25, (1, 0, 1): .25, (1, 1, 0): .25}
    with pytest.raises(AssertionError, match="pdf keys must sum up to 1"):
        ik_idtxl.pid(2, {k: 0.2 for k in xor}, {}, achain)
    with pytest.raises(AssertionError, match="pdf must be a dictionary"):
        ik_idtxl.pid(2, list(xor.items()), {}, achain)
    with pytest.raises(AssertionError, match="pdf values must be floats"):
        ik_idtxl.pid(2, {**xor, (0, 0, 0): "0.25"}, {}, achain)
    with pytest.raises(AssertionError, match="no antichain"):
        ik_idtxl.pid(2, xor, {}, achain + [((1, 3),)])
    ptw, avg = ik_idtxl.pid(2, xor, {}, achain, printing=True)
    out = capsys.readouterr().out
    assert "RLZ" in out and "{1}{2}" in out and "avg" in out
    assert avg[((1, 2),)][2] == pytest.approx(0.415037, abs=1e-6)  # XOR's I_sx synergy (textbook value)
    assert sum(v[2] for v in avg.values()) == pytest.approx(1.0, abs=1e-12)  # the atoms sum to I(T : S1, S2) = 1 bit


def test_install_and_uninstall_on_a_stand_in_module(monkeypatch):
    pkg, mod = types.ModuleType("idtxl"), types.ModuleType("idtxl.pid_goettingen")

    def original(n, pdf_orig, chld, achain, printing=False):
        return "idtxl's own"

    mod.pid = original
    pkg.pid_goettingen = mod
    monkeypatch.setitem(sys.modules, "idtxl", pkg)
    monkeypatch.setitem(sys.modules, "idtxl.pid_goettingen", mod)
    ik_idtxl.install()
    ik_idtxl.install()  # idempotent
    assert ik_idtxl.installed() and mod.pid is ik_idtxl.pid
    ik_idtxl.uninstall()
    assert mod.pid is original and not ik_idtxl.installed()
