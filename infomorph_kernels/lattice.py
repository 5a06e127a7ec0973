"""The redundancy lattice of the I_sx PID, built from its definition (docs/math.md section 3).

A *source subset* is a bitmask ``s`` in 1 .. 2^n - 1 (bit ``j`` = source ``j``, sources numbered
from 0 here and from 1 in names). An *antichain* is a tuple of subset masks, sorted ascending, none
containing another. ``beta <= alpha`` iff every set of ``alpha`` contains some set of ``beta``.
Redundancies are sums of the atoms below them, ``I = Z Pi``; atoms are ``Pi = M I`` with
``M = Z^-1`` (the Moebius inverse), an exact small-integer matrix.

Everything here is exact integer arithmetic on Python ints / numpy int64, cached per ``n``.
"""
from __future__ import annotations

import functools
import itertools
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

Antichain = Tuple[int, ...]

# Sources served: the references (pure torch) take up to MAX_SOURCES; the fused engines (cpu,
# triton, cuda: their tables are sized at compile time) up to MAX_SOURCES_FUSED.
MAX_SOURCES = 5
MAX_SOURCES_FUSED = 4

# The published reference code's order of the goal parameters (docs/math.md section 3), written with
# sources numbered 1..n. H_res follows as the last gamma entry.
_PUBLISHED_ORDER = {
    1: ["{1}"],
    2: ["{1}", "{2}", "{1}{2}", "{12}"],
    3: [
        "{1}{2}{3}", "{1}{2}", "{1}{3}", "{2}{3}", "{1}{23}", "{2}{13}", "{3}{12}",
        "{1}", "{2}", "{3}", "{12}{13}{23}", "{12}{13}", "{12}{23}", "{13}{23}",
        "{12}", "{13}", "{23}", "{123}",
    ],
}

H_RES = "H_res"


def _check_n(n: int) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 1 <= n <= MAX_SOURCES:
        raise ValueError(f"n_sources must be an int in 1..{MAX_SOURCES}, got {n!r}")
    return int(n)


def _members(mask: int) -> List[int]:
    return [j for j in range(mask.bit_length()) if mask >> j & 1]


def _enumerate_antichains(n: int) -> List[Antichain]:
    """All antichains by backtracking over subsets in increasing mask order (7579 for n = 5)."""
    masks = list(range(1, 1 << n))
    out: List[Antichain] = []

    def extend(start: int, chosen: List[int]) -> None:
        if chosen:
            out.append(tuple(chosen))
        for k in range(start, len(masks)):
            m = masks[k]
            # incomparable with everything chosen: neither contains the other
            if all((m & c) != c and (m & c) != m for c in chosen):
                chosen.append(m)
                extend(k + 1, chosen)
                chosen.pop()

    extend(0, [])
    return out


def _canonical_key(a: Antichain):
    """Documented order for n >= 4: by largest set size, then more sets first, then the sorted
    member lists of the sets (sets ordered by size, then lexicographically)."""
    sets = sorted((_members(m) for m in a), key=lambda s: (len(s), s))
    return (max(len(s) for s in sets), -len(sets), [len(s) for s in sets], sets)


def format_antichain(a: Antichain, labels: Optional[Sequence[str]] = None) -> str:
    """Name of an antichain: ``{1}{23}``, or with labels ``{F}{CL}``. Sets ordered by size, then
    lexicographically; members ascending."""
    n = max(m.bit_length() for m in a)
    if labels is None:
        labels = [str(j + 1) for j in range(max(n, 1))]
    sets = sorted((_members(m) for m in a), key=lambda s: (len(s), s))
    return "".join("{" + "".join(labels[j] for j in s) + "}" for s in sets)


def parse_antichain(name: str, n: int, labels: Optional[Sequence[str]] = None) -> Antichain:
    """Inverse of :func:`format_antichain`. Raises ValueError on anything that is not an antichain."""
    n = _check_n(n)
    labels = list(labels) if labels is not None else [str(j + 1) for j in range(n)]
    index = {lab: j for j, lab in enumerate(labels)}
    s = name.replace(" ", "")
    if not (s.startswith("{") and s.endswith("}")):
        raise ValueError(f"atom name {name!r} is not of the form '{{1}}{{23}}'")
    masks = []
    for part in s[1:-1].split("}{"):
        mask = 0
        # labels may be longer than one character: greedy match, longest label first
        rest = part
        while rest:
            for lab in sorted(index, key=len, reverse=True):
                if rest.startswith(lab):
                    mask |= 1 << index[lab]
                    rest = rest[len(lab):]
                    break
            else:
                raise ValueError(f"atom name {name!r}: unknown source in {part!r} (labels {labels})")
        if mask == 0:
            raise ValueError(f"atom name {name!r} has an empty set")
        masks.append(mask)
    a = tuple(sorted(set(masks)))
    for x, y in itertools.combinations(a, 2):
        if (x & y) in (x, y):
            raise ValueError(f"atom name {name!r} is not an antichain (one set contains another)")
    return a


@functools.lru_cache(maxsize=None)
def antichains(n: int) -> Tuple[Antichain, ...]:
    """Antichains in gamma order: the published order for n <= 3, :func:`_canonical_key` beyond."""
    n = _check_n(n)
    all_ac = _enumerate_antichains(n)
    if n in _PUBLISHED_ORDER:
        order = [parse_antichain(s, n) for s in _PUBLISHED_ORDER[n]]
        assert sorted(order) == sorted(all_ac)
        return tuple(order)
    return tuple(sorted(all_ac, key=_canonical_key))


def n_atoms(n: int) -> int:
    return len(antichains(n))


def n_sources_of(n_atoms_: int) -> int:
    """The number of sources whose lattice has ``n_atoms_`` atoms (1, 4, 18, 166, 7579)."""
    for n in range(1, MAX_SOURCES + 1):
        if n_atoms(n) == n_atoms_:
            return n
    raise ValueError(f"no lattice of 1..{MAX_SOURCES} sources has {n_atoms_} atoms")


def atom_names(n: int, labels: Optional[Sequence[str]] = None) -> List[str]:
    """Atom names in gamma order (without H_res)."""
    if labels is not None and len(labels) != _check_n(n):
        raise ValueError(f"labels must have {n} entries, got {len(labels)}")
    return [format_antichain(a, labels) for a in antichains(n)]


def gamma_names(n: int, labels: Optional[Sequence[str]] = None) -> List[str]:
    """Names of the gamma entries: the atoms in gamma order, then ``H_res``."""
    return atom_names(n, labels) + [H_RES]


def full_index(n: int) -> int:
    """Index of the antichain {1..n} (its redundancy is I(Y : S))."""
    return antichains(n).index(((1 << _check_n(n)) - 1,))


def leq(beta: Antichain, alpha: Antichain) -> bool:
    """beta <= alpha: every set of alpha contains some set of beta."""
    return all(any((b & a) == b for b in beta) for a in alpha)


@functools.lru_cache(maxsize=None)
def zeta_matrix(n: int) -> np.ndarray:
    """Z[alpha, beta] = 1 iff beta <= alpha (int64, gamma order), so that I = Z Pi."""
    ac = antichains(n)
    z = np.zeros((len(ac), len(ac)), dtype=np.int64)
    for i, a in enumerate(ac):
        for k, b in enumerate(ac):
            if leq(b, a):
                z[i, k] = 1
    return z


@functools.lru_cache(maxsize=None)
def moebius_matrix(n: int) -> np.ndarray:
    """M = Z^-1 (int64), so that Pi = M I. Exact: forward substitution over a linear extension.

    Z is unitriangular in any linear extension of the order; row by row
    ``M[a] = e_a - sum_{b < a} Z[a, b] M[b]`` in that order. Cost grows as A^3 (seconds for n = 4;
    minutes and ~0.5 GB for n = 5).
    """
    z = zeta_matrix(n)
    a_count = z.shape[0]
    # linear extension: fewer elements below first
    order = np.argsort(z.sum(axis=1), kind="stable")
    m = np.zeros_like(z)
    for a in order:
        below = np.nonzero(z[a])[0]
        below = below[below != a]
        row = -z[a, below] @ m[below] if below.size else np.zeros(a_count, dtype=np.int64)
        row[a] += 1
        m[a] = row
    return m


@functools.lru_cache(maxsize=None)
def coef_matrix(n: int) -> np.ndarray:
    """Inclusion-exclusion coefficients C[alpha, s - 1] (int64): the probability of the union event
    of antichain alpha is ``sum_s C[alpha, s-1] P(sources in subset s take their values)``.

    ``C(alpha, A) = sum over nonempty J subset of alpha with union(J) = A of (-1)^(|J|-1)``.
    """
    ac = antichains(n)
    c = np.zeros((len(ac), (1 << n) - 1), dtype=np.int64)
    for i, a in enumerate(ac):
        for r in range(1, len(a) + 1):
            sign = 1 if r % 2 else -1
            for j in itertools.combinations(a, r):
                u = 0
                for m in j:
                    u |= m
                c[i, u - 1] += sign
    return c


def gamma_vector(
    goal: Union[Mapping[str, float], Sequence[float], "np.ndarray", "object"],
    n: int,
    labels: Optional[Sequence[str]] = None,
) -> np.ndarray:
    """Turn a goal into the float64 gamma vector of length n_atoms(n) + 1 (H_res last).

    ``goal`` is a sequence / array / tensor of that length in gamma order, or a mapping from atom
    names (``"{1}{2}"``, with labels ``"{F}{C}"``; sets in any order) and ``"H_res"`` to weights;
    atoms not named get weight 0. Unknown names raise ValueError.
    """
    n = _check_n(n)
    size = n_atoms(n) + 1
    if isinstance(goal, Mapping):
        index = {a: i for i, a in enumerate(antichains(n))}
        out = np.zeros(size, dtype=np.float64)
        for key, value in goal.items():
            if not isinstance(key, str):
                raise TypeError(f"gamma: keys must be atom names (str), got {key!r}")
            if key == H_RES:
                i = size - 1
            else:
                try:
                    a = parse_antichain(key, n, labels)
                except ValueError as e:
                    raise ValueError(f"gamma: unknown atom name {key!r} for {n} sources ({e})") from None
                if a not in index:
                    raise ValueError(f"gamma: unknown atom name {key!r} for {n} sources")
                i = index[a]
            out[i] += float(value)
    else:
        try:
            out = np.asarray(
                goal.detach().cpu().numpy() if hasattr(goal, "detach") else goal, dtype=np.float64
            )
        except (TypeError, ValueError):
            raise TypeError(
                f"gamma must be a sequence of {size} numbers or a dict of atom names, got {type(goal).__name__}"
            ) from None
        if out.shape != (size,):
            raise ValueError(
                f"gamma must have n_atoms + 1 = {size} entries for {n} sources (H_res last), got shape {tuple(out.shape)}"
            )
    if not np.all(np.isfinite(out)):
        raise ValueError("gamma must be finite (no NaN/Inf)")
    return out


def goal_weights(gamma: np.ndarray, n: int) -> Tuple[np.ndarray, float]:
    """Weights on the redundancies: ``G = w . I + gamma_H H(Y)`` (docs/math.md section 5)."""
    gamma = np.asarray(gamma, dtype=np.float64)
    w = moebius_matrix(n).T.astype(np.float64) @ gamma[:-1]
    w[full_index(n)] -= gamma[-1]
    return w, float(gamma[-1])


def describe(n: int, labels: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """A small summary, handy for printing: names, sizes."""
    return {
        "n_sources": n,
        "n_atoms": n_atoms(n),
        "gamma_names": gamma_names(n, labels),
        "n_subsets": (1 << n) - 1,
    }


def subsets_of(mask: int) -> Iterable[int]:
    """Nonempty submasks of ``mask``."""
    s = mask
    while s:
        yield s
        s = (s - 1) & mask
