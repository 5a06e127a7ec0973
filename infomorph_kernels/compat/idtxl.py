"""IDTxl's SxPID on the engine: ``install()`` puts :func:`pid` in the place of ``idtxl.pid_goettingen.pid``.

IDTxl does not import SxPID: it carries its own copy as ``idtxl.pid_goettingen`` and calls
``pid_goettingen.pid(n, pdf_orig=..., chld=..., achain=..., printing=...)`` from its ``SxPID``
estimator (``idtxl.estimators_multivariate_pid``) with the lattices of ``idtxl.lattices``. That copy
evaluates every realization and antichain in Python (a 4-source case: minutes); :func:`pid` takes the
same arguments, returns the same ``(ptw, avg)`` and computes exactly on ``ik.pid_distribution``::

    from infomorph_kernels.compat import idtxl as ik_idtxl
    ik_idtxl.install()          # IDTxl's SxPID estimator now runs on the engine
    ik_idtxl.uninstall()        # IDTxl's own function again

Semantics kept from IDTxl's copy: ``pdf_orig`` a dict ``{(s_1, ..., s_n, t): probability}`` (target
last) whose values sum to 1 within 1e-7 and are computed on as given (no renormalization: with a sum
c != 1 the informative parts carry the same -log2 c that IDTxl's have); realizations of probability
at most 1e-300 are dropped; ``ptw = {realization: {antichain: (pi+, pi-, pi)}}`` and
``avg = {antichain: (pi+, pi-, pi)}``, keyed by the caller's own ``achain`` tuples; bad input raises
AssertionError with IDTxl's messages (its tests expect that type). ``chld`` is checked to be a dict
and otherwise not needed (the engine builds the lattice itself). ``printing=True`` prints the same
table as plain text (no PrettyTable needed).
"""
from __future__ import annotations

import importlib
from typing import Dict

import numpy as np

from .. import lattice
from .sxpid import _local_parts_of, _norm, _print_table  # SxPID's copy: the same computation and table

__all__ = ["pid", "install", "uninstall", "installed"]

_SAVED: Dict[str, object] = {}


def pid(n, pdf_orig, chld, achain, printing=False):
    """IDTxl's ``pid_goettingen.pid`` on the engine (see the module docstring)."""
    assert type(pdf_orig) is dict, "pid_goettingen.pid(pdf, chld, achain): pdf must be a dictionary"
    assert type(chld) is dict, "pid_goettingen.pid(pdf, chld, achain): chld must be a dictionary"
    assert type(achain) is list, "pid_goettingen.pid(pdf, chld, achain): pdf must be a list"
    sum_p = 0.0
    for k, v in pdf_orig.items():
        assert type(k) is tuple, "pid_goettingen.pid(pdf, chld, achain): pdf keys must be tuples"
        assert len(k) < 6, "pid_goettingen.pid(pdf, chld, achain): pdf keys must be tuplesof length at most 5"
        assert type(v) is float or (type(v) is int and v == 0), \
            "pid_goettingen.pid(pdf, chld, achain): pdf values must be floats"
        assert v > -0.1, "pid_goettingen.pid(pdf, chld, achain): pdf values must be nonnegative"
        sum_p += v
    assert abs(sum_p - 1) < 1.0e-7, \
        "pid_goettingen.pid(pdf, chld, achain): pdf keys must sum up to 1(tolerance of precision is 1.e-7)"
    assert type(printing) is bool, "pid_goettingen.pid(pdf, chld, achain, printing): printing must be a bool"
    pdf = {k: v for k, v in pdf_orig.items() if v > 1.0e-300}
    assert pdf and all(len(k) == n + 1 for k in pdf), \
        f"pid_goettingen.pid(n, pdf, ...): pdf keys must be tuples of n + 1 = {n + 1} symbols (sources, then the target)"
    rlzs = list(pdf)
    probs = np.array([pdf[k] for k in rlzs], dtype=np.float64)
    index = []
    for j in range(n + 1):
        symbols = list(dict.fromkeys(k[j] for k in rlzs))
        try:
            symbols = sorted(symbols)
        except TypeError:
            pass
        index.append({s: i for i, s in enumerate(symbols)})
    coords = np.array([[index[j][k[j]] for j in range(n + 1)] for k in rlzs], dtype=np.int64)
    inf, mis = _local_parts_of(coords, probs, [len(ix) for ix in index], n)  # [nRlz, A], the pdf as given
    ours = lattice.antichains(n)
    where = {_norm(tuple(tuple(j + 1 for j in range(n) if m >> j & 1) for m in a)): i for i, a in enumerate(ours)}
    try:
        cols = [where[_norm(alpha)] for alpha in achain]
    except KeyError as e:
        raise AssertionError(f"pid_goettingen.pid(n, pdf, chld, achain): {e.args[0]} is no antichain of the "
                             f"{n}-source lattice") from None
    ptw = {}
    total = np.zeros((3, len(achain)))
    for r, (k, pr) in enumerate(zip(rlzs, probs)):
        plus, minus = inf[r, cols], mis[r, cols]
        ptw[k] = {alpha: (float(a), float(b), float(a - b)) for alpha, a, b in zip(achain, plus, minus)}
        total += pr * np.stack([plus, minus, plus - minus])
    avg = {alpha: (float(total[0, i]), float(total[1, i]), float(total[2, i])) for i, alpha in enumerate(achain)}
    if printing:
        _print_table(ptw, avg, achain)
    return ptw, avg


def installed() -> bool:
    try:
        mod = importlib.import_module("idtxl.pid_goettingen")
    except ImportError:
        return False
    return mod.pid is pid


def install() -> None:
    """Put :func:`pid` where IDTxl's estimators call it (idempotent)."""
    try:
        mod = importlib.import_module("idtxl.pid_goettingen")
    except ImportError as e:
        raise ImportError(f"install(): idtxl.pid_goettingen is not importable ({e}); put IDTxl on sys.path "
                          "(and its PrettyTable dependency, which its module imports)") from None
    if mod.pid is not pid:
        _SAVED["idtxl.pid_goettingen"] = mod.pid
        mod.pid = pid


def uninstall() -> None:
    """IDTxl's own function back."""
    original = _SAVED.pop("idtxl.pid_goettingen", None)
    if original is not None:
        importlib.import_module("idtxl.pid_goettingen").pid = original
