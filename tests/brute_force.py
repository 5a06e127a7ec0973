"""An independent brute-force evaluation of the I_sx PID, straight from the definition.

Shares no code with the engine: its own lattice enumeration (all subsets of source subsets,
filtered), its own order, union probabilities by direct summation over the cells of the union
event (no inclusion-exclusion), atoms by a numpy linear solve. Only for tiny alphabets.
"""
import itertools
import math

import numpy as np


def antichains(n):
    masks = list(range(1, 1 << n))
    out = []
    for r in range(1, len(masks) + 1):
        for combo in itertools.combinations(masks, r):
            if all((a & b) not in (a, b) for a, b in itertools.combinations(combo, 2)):
                out.append(frozenset(combo))
            # antichains of n sources have at most C(n, n//2) sets
        if r > math.comb(n, n // 2):
            break
    return out


def name(alpha):
    sets = sorted(([j + 1 for j in range(8) if m >> j & 1] for m in alpha), key=lambda s: (len(s), s))
    return "".join("{" + "".join(map(str, s)) + "}" for s in sets)


def below(beta, alpha):
    return all(any(b & a == b for b in beta) for a in alpha)


def redundancies(p):
    """p: numpy [T, K_1..K_n] joint pmf -> dict antichain -> I_sx in bits, and H(Y)."""
    n = p.ndim - 1
    shape = p.shape[1:]
    p_y = p.reshape(p.shape[0], -1).sum(axis=1)
    q = p.sum(axis=0)
    cells = list(itertools.product(*[range(k) for k in shape]))
    out = {}
    for alpha in antichains(n):
        total = 0.0
        for s in cells:
            in_union = [
                c for c in cells if any(all(c[j] == s[j] for j in range(n) if a >> j & 1) for a in alpha)
            ]
            pu = sum(q[c] for c in in_union)
            for y in range(p.shape[0]):
                if p[(y,) + s] > 0:
                    pyu = sum(p[(y,) + c] for c in in_union)
                    total += p[(y,) + s] * math.log2(pyu / (pu * p_y[y]))
        out[alpha] = total
    h_y = -sum(v * math.log2(v) for v in p_y if v > 0)
    return out, h_y


def atoms(p):
    """dict name -> atom (bits) plus 'H_res', from :func:`redundancies` by a linear solve."""
    red, h_y = redundancies(p)
    acs = list(red)
    z = np.array([[1.0 if below(b, a) else 0.0 for b in acs] for a in acs])
    pi = np.linalg.solve(z, np.array([red[a] for a in acs]))
    n = p.ndim - 1
    full = frozenset([(1 << n) - 1])
    out = {name(a): v for a, v in zip(acs, pi)}
    out["H_res"] = h_y - red[full]
    return out


def mutual_information(p, subset):
    """I(Y : S_A) from the joint, A a list of source indices (0-based)."""
    n = p.ndim - 1
    drop = tuple(1 + j for j in range(n) if j not in subset)
    m = p.sum(axis=drop) if drop else p
    m = m.reshape(p.shape[0], -1)
    p_y = m.sum(axis=1, keepdims=True)
    p_s = m.sum(axis=0, keepdims=True)
    nz = m > 0
    return float((m[nz] * np.log2(m[nz] / (p_y * p_s)[nz])).sum())
