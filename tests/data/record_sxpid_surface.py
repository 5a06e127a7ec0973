# Records SxPID's own module surface into tests/data/sxpid_surface_recorded.json. Run outside the
# project with SxPID (github.com/Abzinger/SxPID, master 55046f3; its snapshot ships no moebius.pkl:
# build one for n = 2..4 with its own Lattice, as its generate_lattices.py does) importable as
# sxpid.SxPID, with prettytable, tqdm and setuptools < 81 (pkg_resources):
#   python tests/data/record_sxpid_surface.py tests/data/sxpid_surface_recorded.json
import json
import random
import sys

import numpy as np
import sxpid.SxPID as S


def broja_like(n, k, seed, drop):
    """A random pdf whose smallest probabilities were dropped: it sums to 1 - 1e-8 or so."""
    r = random.Random(seed)
    import itertools

    keys = list(itertools.product(*[range(k)] * (n + 1)))
    w = {key: r.random() for key in keys}
    s = sum(w.values())
    w = {key: v / s for key, v in w.items()}
    small = sorted(w, key=w.get)[:drop]
    for key in small:
        w[key] = 1e-9 / drop
    total = sum(w.values())
    return {key: (v / total if key not in small else 0.0) for key, v in w.items()}, 1.0 - sum(
        v / total for key, v in w.items() if key in small)


def enc(x):
    if isinstance(x, (tuple, list)):
        return [enc(v) for v in x]
    if isinstance(x, np.generic):
        return x.item()
    return x


out = {"source": "SxPID master 55046f3 (sxpid/SxPID.py), moebius.pkl built by its own Lattice for n = 2..4",
       "achains": {n: enc(S.load_achains(n)) for n in (2, 3, 4)},
       "moebius": {n: np.asarray(S.load_moebius_function(n)).tolist() for n in (2, 3, 4)},
       "cases": {}}
for name, (n, k, seed, drop) in {"broja_n2": (2, 3, 1, 4), "broja_n3": (3, 2, 2, 3), "broja_n4": (4, 2, 3, 5)}.items():
    pdf, total = broja_like(n, k, seed, drop)
    pdf = {key: v for key, v in pdf.items() if v > 0}
    ptw, avg = S.pid(pdf, verbose=0)
    P = S.PDF.from_dict(pdf)
    m = P.marginalize(1)
    mask = S.get_bool_mask(n, S.load_achains(n)[-2], True)
    out["cases"][name] = {
        "pdf": [[list(key), v] for key, v in pdf.items()], "sum": float(sum(pdf.values())),
        "avg": [[enc(a), enc(v)] for a, v in avg.items()],
        "ptw": [[enc(rlz), [[enc(a), enc(v)] for a, v in d.items()]] for rlz, d in ptw.items()],
        "coords": P.coords.tolist(), "coords_dtype": str(P.coords.dtype), "labels": enc(P.get_labels()),
        "marginalize_1": {"coords": m.coords.tolist(), "probs": m.probs.tolist()},
        "getitem_rlz3": float(P[P.coords[3]]),
        "probu_rlz2": float(P.probu_one_rlz(P.coords[2], mask)), "probu_mask": mask.tolist(),
        "i_cap_plus_rlz0": enc(S.compute_i_cap_plus(P, [S.get_bool_mask(n, a, False) for a in S.load_achains(n)], P.coords[0]).tolist()),
        "i_cap_minus_rlz0": enc(S.compute_i_cap_minus(P, [S.get_bool_mask(n, a, True) for a in S.load_achains(n)], P.coords[0]).tolist()),
    }
json.dump(out, open(sys.argv[1], "w"))
