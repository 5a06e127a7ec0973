"""dit's I_sx on the engine: ``install()`` makes ``dit.pid.PID_SX`` compute on ``ik.pid_distribution``.

dit (PyPI ``dit``, 2.3 and later) has the shared-exclusion PID as ``dit.pid.PID_SX``, average and
pointwise (``pointwise=True``: per-outcome redundancies and atoms, with their informative and
misinformative parts). It evaluates each lattice node by a loop over outcomes in Python; the engine
computes every node and every outcome in one exact float64 call. Usage::

    from infomorph_kernels.compat import dit as ik_dit
    ik_dit.install()            # dit.pid.PID_SX (and dit.pid.measures.isx.PID_SX) now run on the engine
    ...                         # dit code unchanged: dit.pid.PID_SX(d, pointwise=True).get_pw_pi(node)
    ik_dit.uninstall()          # dit's own class again

The installed class is a subclass of dit's ``PID_SX`` with dit's name; only its ``_compute`` differs:
it fills the same fields (``_reds``, ``_pis`` and, with ``pointwise=True``, ``_pw_reds``, ``_pw_pis``,
``_pw_reds_plus/minus``, ``_pw_pis_plus/minus``) with the engine's numbers, so every method of dit's
class (``get_pi``, ``get_pw_pi_plus``, ``to_string``, ``consistent``, ...) works as before. Sources may
be several variables each and the target several variables (each is one symbol to the engine); 1 to
5 sources (the dense reference's limit). One difference, on purpose: an outcome of probability 0 in
``dist.outcomes`` gets 0 in every pointwise value (the engine's 0 log 0 = 0), where dit computes the
logarithm of a zero probability (inf or nan).
"""
from __future__ import annotations

import importlib
from typing import Dict, Tuple

import numpy as np
import torch

from .. import lattice, pid_distribution

__all__ = ["install", "uninstall", "installed", "decompose"]

_SAVED: Dict[str, object] = {}
_PLACES = ("dit.pid", "dit.pid.measures.isx", "dit.pid.measures")


def _symbols(values):
    """Index of each distinct value, in sorted order where the values sort."""
    distinct = list(dict.fromkeys(values))
    try:
        distinct = sorted(distinct)
    except TypeError:
        pass
    return {v: i for i, v in enumerate(distinct)}


def _node_of(antichain, sources) -> Tuple[Tuple[int, ...], ...]:
    """dit's node (tuple of sorted variable tuples) of an engine antichain (bitmasks over sources)."""
    sets = []
    for mask in antichain:
        variables = sorted({v for j, src in enumerate(sources) if mask >> j & 1 for v in src})
        sets.append(tuple(variables))
    return tuple(sets)


def _key(node) -> frozenset:
    return frozenset(frozenset(s) for s in node)


def decompose(dist, sources, target, pointwise: bool = False) -> Dict[str, object]:
    """The I_sx PID of a dit distribution: ``{"reds", "pis"}`` by node key (a frozenset of frozensets of
    variables) and, with ``pointwise``, per-outcome dicts ``{"pw_reds", "pw_pis", "pw_reds_plus",
    "pw_reds_minus", "pw_pis_plus", "pw_pis_minus"}`` (node key -> {outcome: value})."""
    sources = tuple(tuple(s) for s in sources)
    target = tuple(target)
    n = len(sources)
    linear = dist.copy(base="linear") if dist.is_log() else dist
    outcomes = list(linear.outcomes)
    probs = np.asarray(linear.pmf, dtype=np.float64)
    sym = [tuple(o[v] for v in target) for o in outcomes]
    src_syms = [[tuple(o[v] for v in s) for o in outcomes] for s in sources]
    t_index = _symbols(sym)
    s_index = [_symbols(col) for col in src_syms]
    shape = (len(t_index), *(len(ix) for ix in s_index))
    cells = [(t_index[sym[k]], *(s_index[j][src_syms[j][k]] for j in range(n))) for k in range(len(outcomes))]
    p = np.zeros(shape, dtype=np.float64)
    for c, pr in zip(cells, probs):
        p[c] += pr
    res = pid_distribution(torch.from_numpy(p), n_sources=n, local=pointwise)
    nodes = [_key(_node_of(a, sources)) for a in lattice.antichains(n)]
    out: Dict[str, object] = {
        "reds": dict(zip(nodes, res.redundancies.tolist())),
        "pis": dict(zip(nodes, res.atoms.tolist())),
    }
    if pointwise:
        zeta_t = torch.as_tensor(lattice.zeta_matrix(n), dtype=torch.float64).T  # local I = local Pi @ Z^T
        parts = {"pis": res.local_atoms, "pis_plus": res.local_informative, "pis_minus": res.local_misinformative}
        for name, atoms in list(parts.items()):
            parts[name.replace("pis", "reds")] = atoms @ zeta_t
        for name, values in parts.items():
            table = {node: {} for node in nodes}
            for o, c in zip(outcomes, cells):
                row = values[c].tolist()
                for node, v in zip(nodes, row):
                    table[node][o] = v
            out[f"pw_{name}"] = table
    return out


def _engine_class(base):
    """dit's ``PID_SX`` with ``_compute`` on the engine."""

    def _compute(self):
        by_key = decompose(self._dist, self._sources, self._target, pointwise=self._pointwise)
        nodes = {_key(node): node for node in self._lattice}
        for field in ("reds", "pis"):
            getattr(self, f"_{field}").update({nodes[k]: v for k, v in by_key[field].items()})
        if self._pointwise:
            for field in ("reds", "pis", "reds_plus", "reds_minus", "pis_plus", "pis_minus"):
                getattr(self, f"_pw_{field}").update({nodes[k]: v for k, v in by_key[f"pw_{field}"].items()})

    cls = type(base.__name__, (base,), {"_compute": _compute, "__doc__": base.__doc__,
                                         "__module__": base.__module__, "_on_engine": True})
    cls.__qualname__ = base.__qualname__
    return cls


def installed() -> bool:
    mod = importlib.import_module("dit.pid")
    return bool(getattr(mod.PID_SX, "_on_engine", False))


def install() -> None:
    """Put the engine's ``PID_SX`` where dit's code and its users find it (idempotent)."""
    try:
        isx = importlib.import_module("dit.pid.measures.isx")
    except ImportError as e:
        raise ImportError(f"install(): dit is not importable ({e}); pip install dit") from None
    if installed():
        return
    base = isx.PID_SX
    engine = _engine_class(base)
    for place in _PLACES:
        mod = importlib.import_module(place)
        if getattr(mod, "PID_SX", None) is base:
            _SAVED[place] = base
            setattr(mod, "PID_SX", engine)


def uninstall() -> None:
    """dit's own ``PID_SX`` back in every place ``install`` changed."""
    for place, original in list(_SAVED.items()):
        setattr(importlib.import_module(place), "PID_SX", original)
        del _SAVED[place]
