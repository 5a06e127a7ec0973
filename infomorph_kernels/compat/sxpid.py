"""SxPID's API on the engine: ``from infomorph_kernels.compat import sxpid as SxPID``.

SxPID (github.com/Abzinger/SxPID, module ``sxpid.SxPID``) is the I_sx estimator behind nninfo (and,
as a bundled copy, IDTxl: see :mod:`infomorph_kernels.compat.idtxl`). This module has its public
surface with its semantics, the PID itself computed exactly by ``ik.pid_distribution(p, local=True)``
instead of a loop over realizations:

- ``pid(pdf, achains=None, verbose=2, n_threads=1, parts="all", pointwise=True)``: ``pdf`` a dict
  ``{(s_1, ..., s_n, t): probability}`` (target last) or a :class:`PDF`. Returns ``(ptw, avg)``, or
  ``avg`` with ``pointwise=False``. ``avg = {antichain: (informative, misinformative, atom)}`` and
  ``ptw = {realization: {antichain: (...)}}`` (realizations as ``PDF.get_labels()`` gives them, i.e.
  the caller's own tuples), values numpy float64, antichains as SxPID's keys (tuples of 1-based
  source tuples) in SxPID's order (:func:`load_achains`); a key with its sets in another order is
  found too. ``achains`` (a dict, as SxPID takes it) sets the keys and their order. ``verbose`` is
  SxPID's bitmask: 1 prints the steps, 4 the table of every realization and the average (needs
  ``pointwise``); 2 (SxPID's progress bar) prints nothing here, there is nothing to wait for.
  ``pointwise="target"`` (nninfo's call, SxPID's targetpointwise branch) returns
  ``({t: {antichain: (...)}}, avg)``, the p(s | t)-weighted means.
- :class:`PDF` (``coords``, ``probs``, ``labels``; ``from_dict``, ``get_labels``, ``__getitem__``,
  ``probu_one_rlz``, ``marginalize``), :class:`Lattice` (``powerset``, ``less_than``, ``antichain``,
  ``downset``, ``children``, ``compute_moebius_inversion``), :func:`load_achains`,
  :func:`load_moebius_function` (both built from the definitions: no pickle file), :func:`get_bool_mask`,
  :func:`compute_i_cap_plus`, :func:`compute_i_cap_minus`, :func:`get_full`.

The pdf is computed on as given, as SxPID does: a PDF whose probabilities sum to more than
1 + 1e-10 is refused (the message names the sum); any smaller sum is accepted, and the values are
SxPID's for that pdf (each informative redundancy carries -log2 of the sum). Where SxPID fails and
this module answers soundly, the answer stays: ``parts="inf"``/``"mis"`` with ``pointwise=True``
(SxPID indexes a 1-D array there and raises) give the other part and the atom as NaN, pointwise and
averaged; ``PDF[rlz]`` of a realization that is not in the pdf is 0.0 (SxPID returns the first
realization's probability); n = 5 sources work (SxPID's antichain enumeration of 2^30 candidates
does not finish), up to the dense reference's size limit.
"""
from __future__ import annotations

import functools
import math
from itertools import chain, combinations
from typing import Any, Dict, List, Tuple

import numpy as np
import torch

from .. import api, lattice

__all__ = ["PDF", "Lattice", "pid", "load_achains", "load_moebius_function", "get_bool_mask", "compute_i_cap_plus",
           "compute_i_cap_minus", "get_full"]


class SxPIDInputError(ValueError, AssertionError):
    """Bad input. A ValueError, and an AssertionError as SxPID raises for it."""


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise SxPIDInputError(message)


# ------------------------------------------------------------------------------------ antichains
def _pset(n: int) -> List[Tuple[int, ...]]:
    """Nonempty subsets of 1..n as sorted tuples, by size then lexicographically (SxPID's powerset)."""
    items = list(range(1, n + 1))
    return list(chain.from_iterable(combinations(items, r) for r in range(1, n + 1)))


@functools.lru_cache(maxsize=None)
def _sxpid_order(n: int) -> Tuple[Tuple[Tuple[int, ...], ...], Tuple[int, ...]]:
    """(SxPID's antichain keys in SxPID's order, the engine's index of each).

    SxPID enumerates the up-closed families of the nonempty proper subsets (its "parthood
    distributions") as ``itertools.product([False, True], repeat=2^n - 2)`` does, each family giving
    the antichain of its minimal sets in powerset order (the empty family: the full set). The same
    order is the lexicographic order of those indicator vectors, computed here from the engine's
    antichains directly (no 2^(2^n - 2) loop)."""
    pset = _pset(n)[:-1]  # without the full set
    full = tuple(range(1, n + 1))
    rows = []
    for i, a in enumerate(lattice.antichains(n)):
        sets = [frozenset(j + 1 for j in range(n) if m >> j & 1) for m in a]
        if sets == [frozenset(full)]:
            rows.append(((False,) * len(pset), (full,), i))
            continue
        up = tuple(any(s <= frozenset(p) for s in sets) for p in pset)
        minimal = tuple(p for p in pset if frozenset(p) in sets)  # the antichain's sets, powerset order
        rows.append((up, minimal, i))
    rows.sort(key=lambda r: r[0])
    return tuple(r[1] for r in rows), tuple(r[2] for r in rows)


def _norm(key) -> Tuple[Tuple[int, ...], ...]:
    try:
        return tuple(sorted((tuple(sorted(a)) for a in key), key=lambda s: (len(s), s)))
    except TypeError:
        return key


class _Antichains(dict):
    """A dict keyed by antichains that also finds a key written with its sets in another order."""

    def _find(self, key):
        if dict.__contains__(self, key):
            return key
        want = _norm(key)
        for k in self.keys():
            if _norm(k) == want:
                return k
        return key

    def __getitem__(self, key):
        return super().__getitem__(self._find(key))

    def __contains__(self, key):
        return super().__contains__(self._find(key))

    def get(self, key, default=None):
        return super().get(self._find(key), default)


@functools.lru_cache(maxsize=None)
def load_achains(n: int) -> List[Tuple[Tuple[int, ...], ...]]:
    """SxPID's antichains of the n-source lattice, in its order (built, not loaded from moebius.pkl)."""
    _check(isinstance(n, (int, np.integer)) and 1 <= n <= lattice.MAX_SOURCES,
           f"load_achains(n): n must be 1..{lattice.MAX_SOURCES}, got {n!r}")
    return list(_sxpid_order(int(n))[0])


@functools.lru_cache(maxsize=None)
def load_moebius_function(n: int) -> np.ndarray:
    """SxPID's Moebius function: the inverse of the zeta matrix in :func:`load_achains` order (int8)."""
    _, order = _sxpid_order(int(n))
    m = lattice.moebius_matrix(int(n))
    return np.asarray(m)[np.ix_(order, order)].astype(np.byte)


class Lattice:
    """SxPID's redundancy lattice of ``n`` sources (antichains given, or built by :meth:`antichain`)."""

    def __init__(self, n, achains):
        self.n = n
        self.lis = [i for i in range(1, self.n + 1)]
        self._achains = achains

    def powerset(self):
        return chain.from_iterable(combinations(self.lis, r) for r in range(1, len(self.lis) + 1))

    def less_than(self, beta, alpha):
        """beta <= alpha: every set of alpha contains some set of beta."""
        return all(any(frozenset(b) <= frozenset(a) for b in beta) for a in alpha)

    def antichain(self):
        """The antichains in SxPID's order (as its enumeration gives them, without enumerating)."""
        self._achains = list(_sxpid_order(self.n)[0])
        return self._achains

    def downset(self, alpha):
        return [beta for beta in self._achains if self.less_than(beta, alpha) and beta != alpha]

    def children(self, alpha):
        assert self._achains is not None
        below = self.downset(alpha)
        return [b for b in below if all(not self.less_than(b, g) for g in below if g != b)]

    def compute_moebius_inversion(self):
        assert self._achains is not None
        print("Generating forward function...")
        forward = [[1 if beta == alpha or self.less_than(beta, alpha) else 0 for beta in self._achains]
                   for alpha in self._achains]
        print("Inverting matrix")
        inversion = np.around(np.linalg.inv(forward)).astype(np.byte)
        print("Done!")
        return inversion


# ------------------------------------------------------------------------------------------- PDF
class PDF:
    """A sparse joint pmf of nVar variables (the last is the target), as SxPID's ``PDF``.

    coords: int array ``[nRlz, nVar]`` of symbol indices; probs: ``[nRlz]``; labels: per variable
    the sorted symbols (index -> symbol), or None (the indices are the symbols)."""

    def __init__(self, coords, probs, labels=None):
        _check(type(coords) is np.ndarray, "Coordinates must be numpy array")
        _check(type(probs) is np.ndarray, "Probabilities must be numpy array")
        _check(coords.ndim == 2, "Coordinate array must have dimensions (nRealisations, nVariables)")
        _check(probs.ndim == 1, "Probability array must have dimension (nRealisations,)")
        _check(coords.shape[0] == probs.shape[0], "Dimensions of coordinate array (nRealisations, nVariables) and "
               "probability array (nRealisations,) do not match")
        total = float(np.sum(probs))
        _check(total - 1 < 1e-10, f"Probabilities must sum up to 1 (at most 1 + 1e-10), got a sum of {total:.12g}")
        _check(bool(np.all(np.isfinite(probs))) and not bool(np.any(probs < 0)),
               "Probabilities must be finite and nonnegative")
        self.coords = coords
        self.probs = probs
        self.labels = labels
        self.nVar = self.coords.shape[1]
        self.nRlz = self.coords.shape[0]

    @classmethod
    def from_dict(cls, pdf_dict: Dict[tuple, float]) -> "PDF":
        """From ``{realization tuple: probability}``; realizations of probability <= 1e-300 are dropped;
        coordinates in the smallest unsigned integer type, labels the sorted symbols per variable."""
        _check(isinstance(pdf_dict, dict) and len(pdf_dict) > 0,
               "pdf must be a non-empty dict {(s_1, ..., s_n, t): probability}")
        pdf_dict = {k: v for k, v in pdf_dict.items() if v > 1.0e-300}
        _check(len(pdf_dict) > 0, "pdf has no realization of positive probability")
        lengths = {len(k) if isinstance(k, tuple) else -1 for k in pdf_dict}
        _check(len(lengths) == 1 and -1 not in lengths, "pdf keys must be tuples of one length (sources, then the target)")
        keys, vals = zip(*pdf_dict.items())
        n_var = len(keys[0])
        events = np.empty((len(keys), n_var), dtype=object)
        events[:] = keys
        coords = np.empty((len(keys), n_var), order="F", dtype=np.uint64)
        labels = []
        for i in range(n_var):
            try:
                column, inverse = np.unique(events[:, i], return_inverse=True)
            except TypeError:
                raise TypeError(f"pdf: the symbols of variable {i} must sort (as SxPID's np.unique needs)") from None
            coords[:, i] = inverse.reshape(-1)
            labels.append(column)
        widest = max(len(lab) for lab in labels)
        for t in (np.uint8, np.uint16, np.uint32, np.uint64):
            if widest <= np.iinfo(t).max:
                coords = coords.astype(t)
                break
        return cls(coords, np.array(vals), labels)

    def __getitem__(self, rlz):
        """The probability of the realization with coordinates ``rlz`` (0.0 if it is not in the pdf)."""
        hit = np.all(self.coords == np.asarray(rlz), axis=1)
        return self.probs[int(np.argmax(hit))] if hit.any() else np.float64(0.0)

    def get_labels(self) -> List[tuple]:
        """The realizations as tuples of the original symbols (coordinates without labels)."""
        cols = tuple(list(self.labels[i][self.coords[:, i]] if self.labels else self.coords[:, i])
                     for i in range(self.nVar))
        return list(zip(*cols))

    def probu_one_rlz(self, rlz, union_masks):
        """The probability of the union over the rows of ``union_masks`` (which variables each event
        fixes) of the events that agree with ``rlz`` on those variables."""
        same = np.asarray(rlz) == self.coords
        hit = np.zeros(self.nRlz, dtype=bool)
        for mask in np.asarray(union_masks, dtype=bool):
            hit |= np.all(~mask | same, axis=-1)
        return np.sum(self.probs, where=hit)

    def marginalize(self, *coords):
        """The pdf without the variables ``coords`` (negative counts from the end); no labels."""
        coords = [c if c >= 0 else self.coords.shape[1] + c for c in coords]
        reduced = np.delete(self.coords, obj=coords, axis=1)
        unique, inverse = np.unique(reduced, return_inverse=True, axis=0)
        return PDF(np.asfortranarray(unique), np.bincount(inverse.reshape(-1), weights=self.probs))


def get_bool_mask(n, sett, condition_on_target):
    """``((1,), (1, 2, 4))`` -> one boolean row per set over the n sources, plus the target's column
    set to ``condition_on_target``."""
    ret = np.full((len(sett), n + 1), False)
    for i in range(len(sett)):
        ret[i, np.array(sett[i]) - 1] = True
        ret[i, -1] = condition_on_target
    return ret


@functools.lru_cache(maxsize=None)
def get_full(n):
    full = np.full((1, n), False)
    full[:, -1] = True
    return full


def compute_i_cap_plus(pdf, achains_t, rlz):
    """Local informative redundancies -log2 P(union of the antichain's events) at ``rlz``."""
    return -np.log2(np.array([pdf.probu_one_rlz(rlz, alphat) for alphat in achains_t]))


def compute_i_cap_minus(pdf, achains_t, rlz):
    """Local misinformative redundancies log2 p(t) / P(union of the antichain's events and t)."""
    full = get_full(pdf.nVar)
    return np.log2(pdf.probu_one_rlz(rlz, full) / np.array([pdf.probu_one_rlz(rlz, alphat) for alphat in achains_t]))


# ------------------------------------------------------------------------------------------- pid
def _local_parts(pdf: PDF, n: int):
    """Local informative and misinformative atoms of every realization, [nRlz, A] each in the engine's
    antichain order, for the pdf as given (sum c <= 1 + 1e-10)."""
    sizes = [int(pdf.coords[:, j].max()) + 1 for j in range(pdf.nVar)]
    if pdf.labels is not None:
        sizes = [max(s, len(lab)) for s, lab in zip(sizes, pdf.labels)]
    return _local_parts_of(np.asarray(pdf.coords, dtype=np.int64), pdf.probs, sizes, n)


def _local_parts_of(coords: np.ndarray, probs, sizes, n: int):
    """:func:`_local_parts` of realizations given as symbol indices ``coords [nRlz, n + 1]`` (target
    last) with alphabet ``sizes`` and probabilities ``probs`` as given (also IDTxl's drop-in's)."""
    if math.prod(sizes) > (1 << 26):
        raise SxPIDInputError(f"pdf: the dense joint table would have {math.prod(sizes)} cells (alphabets {sizes}); too many")
    total = float(np.sum(probs))
    _check(total > 0, "pdf: the probabilities sum to 0")
    cells = np.concatenate([coords[:, -1:], coords[:, :-1]], axis=1)  # target axis first
    p = torch.zeros([sizes[-1]] + list(sizes[:-1]), dtype=torch.float64)
    idx = torch.as_tensor(cells, dtype=torch.int64)
    p.index_put_(tuple(idx.T), torch.as_tensor(np.asarray(probs), dtype=torch.float64) / total, accumulate=True)
    res = api.pid_distribution(p, n_sources=n, local=True)
    sel = tuple(idx.T)
    inf = res.local_informative[sel].numpy().copy()  # [nRlz, A]
    mis = res.local_misinformative[sel].numpy().copy()
    # on the pdf as given (sum c): every union probability is c times the normalized one, so every
    # informative redundancy gains -log2 c, which the Moebius inversion puts on the bottom atom alone
    if total != 1.0:
        inf[:, lattice.antichains(n).index(tuple(1 << j for j in range(n)))] -= math.log2(total)
    return inf, mis


def _print_table(ptw, avg, keys) -> None:
    def name(alpha):
        return "".join("{" + "".join(str(i) for i in a) + "}" for a in alpha)

    rows = [("RLZ", "Atom", "pi+", "pi-", "pi")]
    for rlz, atoms in ptw.items():
        for i, alpha in enumerate(keys):
            rows.append((str(rlz) if i == 0 else " ", name(alpha), *map(str, atoms[alpha])))
        rows.append(("*",) * 5)
    rows.append(("-",) * 5)
    for i, alpha in enumerate(keys):
        rows.append(("avg" if i == 0 else " ", name(alpha), *map(str, avg[alpha])))
    widths = [max(len(r[j]) for r in rows) for j in range(5)]
    rule = "+" + "+".join("-" * (w + 2) for w in widths) + "+"
    print(rule)
    for i, r in enumerate(rows):
        print("| " + " | ".join(v.center(w) for v, w in zip(r, widths)) + " |")
        if i == 0:
            print(rule)
    print(rule)


def pid(pdf, achains=None, verbose: int = 2, n_threads=1, parts: str = "all", pointwise=True, **ignored: Any):
    """SxPID's ``pid`` on the engine (see the module docstring)."""
    if pointwise not in (True, False, "target"):
        raise ValueError(f"pointwise must be True, False or 'target', got {pointwise!r}")
    if parts not in ("all", "inf", "mis"):
        raise ValueError(f"parts must be 'all', 'inf' or 'mis', got {parts!r}")
    verbose = int(verbose or 0)
    _check(bool(pointwise) or not verbose & 4, "pointwise must be true to print result tables!")
    if isinstance(pdf, dict):
        if verbose & 1:
            print("Converting PDF dict to internal format...", end="")
        pdf = PDF.from_dict(pdf)
        if verbose & 1:
            print("[Done]")
    if not isinstance(pdf, PDF):
        raise TypeError(f"pdf must be a dict {{(s_1, ..., s_n, t): p}} or a PDF, got {type(pdf).__name__}")
    n = pdf.nVar - 1
    _check(1 <= n <= lattice.MAX_SOURCES, f"pdf: 1 to {lattice.MAX_SOURCES} sources (and the target), got {n}")
    if verbose & 1:
        print("Loading antichains and moebius function...", end="")
    sx_keys, order = _sxpid_order(n)
    if isinstance(achains, dict):
        given = list(achains)
        where = {_norm(k): i for k, i in zip(sx_keys, order)}
        _check({_norm(a) for a in given} == set(where),
               f"achains must be the {len(sx_keys)} antichains of the {n}-source lattice")
        keys, cols = given, [where[_norm(a)] for a in given]
    else:
        keys, cols = list(sx_keys), list(order)
    if verbose & 1:
        print("[Done]")
        print(f"Calculating {n}-variable PID atoms...", end="\n" if verbose & 2 else "")
    inf, mis = _local_parts(pdf, n)
    inf, mis = inf[:, cols], mis[:, cols]
    if parts == "mis":
        inf[:] = np.nan
    elif parts == "inf":
        mis[:] = np.nan
    atom = inf - mis
    probs = np.asarray(pdf.probs, dtype=np.float64)
    if verbose & 1:
        print("[Done]")
        print("Computing Moebius inverse...", end="")
    avg_parts = [probs @ v for v in (inf, mis, atom)]
    avg = _Antichains((k, (a, b, c)) for k, a, b, c in zip(keys, *avg_parts))
    if verbose & 1:
        print("[Done]")
    if pointwise is False:
        return avg
    if pointwise == "target":
        t = np.asarray(pdf.coords[:, -1], dtype=np.int64)
        labels_t = pdf.labels[-1] if pdf.labels is not None else None
        ptw_t = {}
        for symbol in np.unique(t):
            rows = t == symbol
            w = probs[rows] / probs[rows].sum()
            means = [w @ v[rows] for v in (inf, mis, atom)]
            label = labels_t[symbol] if labels_t is not None else symbol
            ptw_t[label] = _Antichains((k, (a, b, c)) for k, a, b, c in zip(keys, *means))
        return ptw_t, avg
    ptw = {label: _Antichains((k, (a, b, c)) for k, a, b, c in zip(keys, inf[r], mis[r], atom[r]))
           for r, label in enumerate(pdf.get_labels())}
    if verbose & 4:
        _print_table(ptw, avg, keys)
    return ptw, avg
