"""SxPID's API on the engine: ``from infomorph_kernels.compat import sxpid as SxPID``.

SxPID (github.com/Abzinger/SxPID) is the I_sx estimator behind nninfo and IDTxl. This module
takes the same calls and returns the same structures, computed by
``ik.pid_distribution(p, local=True)`` (exact, float64) instead of a loop over realizations:

- ``pid(pdf, achains=None, verbose=2, n_threads=1, parts="all", pointwise=True, **ignored)``:
  ``pdf`` a dict ``{(s_1, ..., s_n, t): probability}`` (symbols that sort; target last) or a
  :class:`PDF`. Returns ``(ptw, avg)`` when ``pointwise`` is True or ``"target"``, else ``avg``.
  ``avg``: ``{antichain: (informative, misinformative, atom)}``, antichains as SxPID's keys
  (tuples of 1-based source tuples: ``((1,), (2,))``, ``((1, 2),)``; any order of the sets
  inside a key is accepted on lookup); ``ptw``: ``{realization: {antichain: (...)}}`` with the
  caller's own realization tuples, or with ``pointwise="target"`` ``{t: {antichain: (...)}}``,
  the p(s | t)-weighted means (their p(t)-weighted sum is ``avg``). ``parts="inf"`` / ``"mis"``
  leave the other part NaN (and the atom), as SxPID's targetpointwise branch does.
- ``PDF(coords, probs, labels=None)`` and ``PDF.from_dict(d)``: SxPID's sparse pmf.

``verbose``, ``n_threads`` and ``showProgress`` are accepted and ignored (nothing to wait for).
n = 1..5 sources (the dense reference; 5 only for small alphabets).
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .. import api, lattice

__all__ = ["PDF", "pid"]


class PDF:
    """A sparse joint pmf of nVar variables (the last is the target), as SxPID's ``PDF``.

    coords: int array ``[nRlz, nVar]`` of symbol indices; probs: ``[nRlz]``; labels: per variable
    the sorted symbols (index -> symbol), or None (the indices are the symbols)."""

    def __init__(self, coords, probs, labels=None):
        coords = np.asarray(coords)
        probs = np.asarray(probs, dtype=np.float64)
        if coords.ndim != 2:
            raise ValueError(f"coords must be [nRealisations, nVariables], got shape {coords.shape}")
        if probs.ndim != 1 or probs.shape[0] != coords.shape[0]:
            raise ValueError(f"probs must be [nRealisations] = [{coords.shape[0]}], got shape {probs.shape}")
        if coords.shape[1] < 2:
            raise ValueError("a pdf needs at least one source and the target (nVar >= 2)")
        if not np.all(np.isfinite(probs)) or np.any(probs < 0):
            raise ValueError("probs must be finite and nonnegative")
        if abs(probs.sum() - 1.0) > 1e-9:
            raise ValueError(f"probabilities must sum to 1, got {probs.sum()!r}")
        self.coords, self.probs, self.labels = coords, probs, labels
        self.nVar = coords.shape[1]
        self.nRlz = coords.shape[0]

    @classmethod
    def from_dict(cls, pdf_dict: Dict[tuple, float]) -> "PDF":
        """From ``{realization tuple: probability}``; impossible realizations are dropped."""
        if not isinstance(pdf_dict, dict) or not pdf_dict:
            raise ValueError("pdf must be a non-empty dict {(s_1, ..., s_n, t): probability}")
        items = [(k, float(v)) for k, v in pdf_dict.items() if float(v) > 1.0e-300]
        if not items:
            raise ValueError("pdf has no realization of positive probability")
        n_var = {len(k) if isinstance(k, tuple) else -1 for k, _ in items}
        if len(n_var) != 1 or -1 in n_var:
            raise ValueError("pdf keys must be tuples of one length (sources, then the target)")
        n_var = n_var.pop()
        labels, coords = [], np.empty((len(items), n_var), dtype=np.int64)
        for j in range(n_var):
            try:
                symbols = sorted({k[j] for k, _ in items})
            except TypeError:
                raise TypeError(f"pdf: the symbols of variable {j} must sort (as SxPID's np.unique needs)") from None
            index = {s: i for i, s in enumerate(symbols)}
            coords[:, j] = [index[k[j]] for k, _ in items]
            labels.append(symbols)
        return cls(coords, np.array([v for _, v in items]), labels)

    def get_labels(self):
        """The realizations as tuples of the original symbols (index tuples without labels)."""
        if self.labels is None:
            return [tuple(int(c) for c in row) for row in self.coords]
        return [tuple(self.labels[j][int(c)] for j, c in enumerate(row)) for row in self.coords]


class _Antichains(dict):
    """A dict keyed by antichains that also finds a key written with its sets in another order."""

    @staticmethod
    def _norm(key):
        try:
            return tuple(sorted((tuple(sorted(a)) for a in key), key=lambda s: (len(s), s)))
        except TypeError:
            return key

    def __getitem__(self, key):
        return super().__getitem__(self._norm(key))

    def __contains__(self, key):
        return super().__contains__(self._norm(key))

    def get(self, key, default=None):
        return super().get(self._norm(key), default)


def _keys(n: int):
    """SxPID's antichain keys in gamma order: sets as sorted 1-based tuples, by size then members."""
    return [tuple(sorted((tuple(j + 1 for j in range(n) if m >> j & 1) for m in a), key=lambda s: (len(s), s)))
            for a in lattice.antichains(n)]


def _triples(inf, mis, keys) -> _Antichains:
    atom = inf - mis
    return _Antichains((k, (float(a), float(b), float(c))) for k, a, b, c in zip(keys, inf, mis, atom))


def pid(pdf, achains=None, verbose: int = 2, n_threads=1, parts: str = "all", pointwise=True, **ignored: Any):
    """SxPID's ``pid`` on the engine (see the module docstring)."""
    if isinstance(pdf, dict):
        pdf = PDF.from_dict(pdf)
    if not isinstance(pdf, PDF):
        raise TypeError(f"pdf must be a dict {{(s_1, ..., s_n, t): p}} or a PDF, got {type(pdf).__name__}")
    if parts not in ("all", "inf", "mis"):
        raise ValueError(f"parts must be 'all', 'inf' or 'mis', got {parts!r}")
    if pointwise not in (True, False, "target"):
        raise ValueError(f"pointwise must be True, False or 'target', got {pointwise!r}")
    n = pdf.nVar - 1
    if not 1 <= n <= lattice.MAX_SOURCES:
        raise ValueError(f"pdf: 1 to {lattice.MAX_SOURCES} sources (and the target), got {n}")
    keys = _keys(n)
    if isinstance(achains, dict):
        given = {_Antichains._norm(a) for a in achains}
        if given != set(keys):
            raise ValueError(f"achains must be the {len(keys)} antichains of the {n}-source lattice")
    # dense pmf [T, K_1, ..., K_n] (target axis first), float64
    sizes = [int(pdf.coords[:, j].max()) + 1 for j in range(pdf.nVar)]
    if pdf.labels is not None:
        sizes = [max(s, len(lab)) for s, lab in zip(sizes, pdf.labels)]
    if math.prod(sizes) > (1 << 26):
        raise ValueError(f"pdf: the dense joint table would have {math.prod(sizes)} cells (alphabets {sizes}); too many")
    p = torch.zeros([sizes[-1]] + sizes[:-1], dtype=torch.float64)
    idx = torch.as_tensor(np.concatenate([pdf.coords[:, -1:], pdf.coords[:, :-1]], axis=1), dtype=torch.int64)
    p.index_put_(tuple(idx.T), torch.as_tensor(pdf.probs, dtype=torch.float64), accumulate=True)
    p = p / p.sum()
    res = api.pid_distribution(p, n_sources=n, local=True)
    li = res.local_informative.numpy()  # [T, K..., A]
    lm = res.local_misinformative.numpy()
    if parts == "inf":
        lm = np.full_like(lm, np.nan)
    elif parts == "mis":
        li = np.full_like(li, np.nan)
    pn = p.numpy()
    A = len(keys)

    def mean(w, values):  # sum of w * values over all realizations (NaN parts stay NaN)
        return (w.reshape(-1, 1) * values.reshape(-1, A)).sum(0)

    avg = _triples(mean(pn, li), mean(pn, lm), keys)
    if pointwise is False:
        return avg
    if pointwise == "target":
        labels_t = pdf.labels[-1] if pdf.labels is not None else list(range(sizes[-1]))
        ptw = {}
        for t in range(sizes[-1]):
            pt = pn[t].sum()
            if pt > 0:
                ptw[labels_t[t]] = _triples(mean(pn[t] / pt, li[t]), mean(pn[t] / pt, lm[t]), keys)
        return ptw, avg
    ptw = {}
    for row, label in zip(pdf.coords, pdf.get_labels()):
        cell = (int(row[-1]),) + tuple(int(c) for c in row[:-1])
        ptw[label] = _triples(li[cell], lm[cell], keys)
    return ptw, avg
