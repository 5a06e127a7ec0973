# Records IDTxl's own pid_goettingen.pid outputs into tests/data/idtxl_recorded.json. Run outside the project
# with a checkout of IDTxl (github.com/pwollstadt/IDTxl) on PYTHONPATH and prettytable installed:
#   PYTHONPATH=IDTxl python tests/data/record_idtxl.py tests/data/idtxl_recorded.json
import json, random, sys, time
import idtxl.pid_goettingen as g, idtxl.lattices as lt

def rnd_pdf(n, k, seed, drop=0.0, scale=1.0):
    r = random.Random(seed)
    import itertools
    keys = list(itertools.product(*[range(k)] * (n + 1)))
    r.shuffle(keys)
    keys = keys[: max(2, int(len(keys) * (1 - drop)))]
    w = [r.random() for _ in keys]
    s = sum(w)
    return {k_: scale * x / s for k_, x in zip(keys, w)}

cases = {
    "xor": {(0, 0, 0): .25, (0, 1, 1): .25, (1, 0, 1): .25, (1, 1, 0): .25},
    "and": {(0, 0, 0): .25, (0, 1, 0): .25, (1, 0, 0): .25, (1, 1, 1): .25},
    "copy": {(0, 0, (0, 0)): .25, (0, 1, (0, 1)): .25, (1, 0, (1, 0)): .25, (1, 1, (1, 1)): .25},
    "zero_mass": {(0, 0, 0): .5, (1, 1, 1): .5, (0, 1, 0): 0.0},
    "rnd2_k3": rnd_pdf(2, 3, 1),
    "rnd2_k4_sparse": rnd_pdf(2, 4, 2, drop=0.5),
    "rnd3_k2": rnd_pdf(3, 2, 3),
    "rnd3_k3_sparse": rnd_pdf(3, 3, 4, drop=0.6),
    "rnd3_sum_1_minus_1e-8": rnd_pdf(3, 2, 5, scale=1 - 1e-8),
    "rnd4_k2_sparse": rnd_pdf(4, 2, 6, drop=0.5),
}
out = {}
for name, pdf in cases.items():
    n = len(next(iter(pdf))) - 1
    ch, ac = lt.lattices[n]
    t0 = time.time()
    ptw, avg = g.pid(n, pdf_orig=pdf, chld=ch, achain=ac, printing=False)
    sec = time.time() - t0
    enc = lambda k: json.dumps(k)
    out[name] = {"n": n, "pdf": [[list(k) if not any(isinstance(x, tuple) for x in k) else [list(x) if isinstance(x, tuple) else x for x in k], v] for k, v in pdf.items()],
                 "avg": [[[list(a) for a in alpha], list(map(float, v))] for alpha, v in avg.items()],
                 "ptw": [[list(k) if not any(isinstance(x, tuple) for x in k) else [list(x) if isinstance(x, tuple) else x for x in k],
                          [[[list(a) for a in alpha], list(map(float, v))] for alpha, v in atoms.items()]] for k, atoms in ptw.items()],
                 "seconds": sec}
    print(name, n, len(pdf), f"{sec:.2f} s", file=sys.stderr)
json.dump({"source": "IDTxl d78480d idtxl/pid_goettingen.pid with idtxl.lattices (recorded by the project's maintainers)", "cases": out}, open(sys.argv[1], "w"), indent=0)
