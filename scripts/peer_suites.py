"""The peers' own tests with and without the engine swapped in, side by side (issue 39).

    python scripts/peer_suites.py --idtxl PATH/TO/IDTxl [--python PY]   # IDTxl's multivariate-PID tests
    python scripts/peer_suites.py --sxpid PATH/TO/SxPID [--broja PATH/TO/BROJA_2PID] [--python PY]
    python scripts/peer_suites.py --dit                                 # dit's I_sx zoo: dit vs the drop-in

IDTxl: its test files ``test/test_estimators_multivariate_pid.py`` and ``test/test_multivariate_pid.py``
run under pytest twice, as they are and with ``infomorph_kernels.compat.idtxl.install()`` loaded as a
pytest plugin (nothing in IDTxl changes); pass/fail counts and wall seconds per file. IDTxl needs
numpy, scipy, h5py, prettytable, jpype1 and ``pkg_resources`` (setuptools < 81) in the Python given by
``--python`` (default: this one). SxPID: its ``testing/test_gates.py`` and ``testing/test_broja_dist.py``
(the latter imports BROJA_2PID, given by ``--broja``, and needs ecos), once with the checkout's own
``sxpid`` package and once with a stand-in package whose ``sxpid.SxPID`` is
``infomorph_kernels.compat.sxpid``; SxPID's snapshot ships no ``moebius.pkl`` (its own side then
fails to load its lattices; a pickle built for n = 2..4 is not enough for test_broja_dist, which
loads n = 5). dit: every bivariate and trivariate distribution of
``dit.pid.distributions`` through ``dit.pid.PID_SX`` (pointwise) with dit's class and with the
engine's, the largest differences and the seconds. None of the peers' code is in this repository:
``fetch`` or ``git clone`` them beside it.
"""
from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
IDTXL_FILES = ("test_estimators_multivariate_pid.py", "test_multivariate_pid.py")


def _pytest(python: str, test_dir: str, path: list, test_file: str, plugin: str = None):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(path + [os.environ.get("PYTHONPATH", "")]))
    cmd = [python, "-m", "pytest", "-q", "-p", "no:cacheprovider", test_file]
    if plugin:
        cmd[3:3] = ["-p", plugin]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, cwd=test_dir, env=env, capture_output=True, text=True, timeout=3600)
    sec = time.perf_counter() - t0
    last = (r.stdout.strip().splitlines() or [""])[-1]
    counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|error|errors|skipped)", last)}
    return counts, sec, last


def idtxl(checkout: str, python: str) -> None:
    test_dir = os.path.join(checkout, "test")
    if not os.path.isdir(os.path.join(checkout, "idtxl")) or not os.path.isdir(test_dir):
        sys.exit(f"--idtxl: {checkout!r} is no IDTxl checkout (no idtxl/ and test/)")
    with tempfile.TemporaryDirectory() as plug:
        with open(os.path.join(plug, "ik_idtxl_swap.py"), "w") as fh:
            fh.write("from infomorph_kernels.compat import idtxl as _ik\n_ik.install()\n")
        path = [checkout, plug, ROOT, os.path.join(ROOT, "python")]
        print("| IDTxl test file | IDTxl's own | on the engine |\n|---|---|---|")
        for f in IDTXL_FILES:
            own = _pytest(python, test_dir, path, f)
            eng = _pytest(python, test_dir, path, f, plugin="ik_idtxl_swap")
            print(f"| {f} | {_cell(own)} | {_cell(eng)} |")


def sxpid(checkout: str, broja: str, python: str) -> None:
    if not os.path.isfile(os.path.join(checkout, "sxpid", "SxPID.py")):
        sys.exit(f"--sxpid: {checkout!r} is no SxPID checkout (no sxpid/SxPID.py)")
    with tempfile.TemporaryDirectory() as swap:
        os.makedirs(os.path.join(swap, "sxpid"))
        open(os.path.join(swap, "sxpid", "__init__.py"), "w").close()
        with open(os.path.join(swap, "sxpid", "SxPID.py"), "w") as fh:
            fh.write("from infomorph_kernels.compat.sxpid import *  # noqa: F401,F403\n")
        extra = [os.path.join(broja, "broja2pid")] if broja else []
        print("| SxPID test file | SxPID's own | on the engine |\n|---|---|---|")
        for f in ("test_gates.py", "test_broja_dist.py"):
            own = _pytest(python, os.path.join(checkout, "testing"), [checkout] + extra, f)
            eng = _pytest(python, os.path.join(checkout, "testing"), [swap, ROOT, os.path.join(ROOT, "python")] + extra, f)
            print(f"| {f} | {_cell(own)} | {_cell(eng)} |")


def _cell(c) -> str:
    failed = c[0].get("failed", 0) + c[0].get("error", 0) + c[0].get("errors", 0)
    return f"{c[0].get('passed', 0)} passed, {failed} failed, {c[1]:.1f} s"


def dit_zoo() -> None:
    import math

    import dit
    import dit.pid
    from dit.pid.distributions import bivariates, trivariates

    from infomorph_kernels.compat import dit as ik_dit

    zoo = [(f"bivariate {k}", v) for k, v in bivariates.items()] + [(f"trivariate {k}", v) for k, v in trivariates.items()]
    ik_dit.uninstall()
    t0 = time.perf_counter()
    own = [dit.pid.PID_SX(d, pointwise=True) for _, d in zoo]
    t_own = time.perf_counter() - t0
    ik_dit.install()
    t0 = time.perf_counter()
    eng = [dit.pid.PID_SX(d, pointwise=True) for _, d in zoo]
    t_eng = time.perf_counter() - t0
    ik_dit.uninstall()
    atoms = pw = 0.0
    for a, b in zip(own, eng):
        for node in a._lattice:
            atoms = max(atoms, abs(a.get_pi(node) - b.get_pi(node)))
            for f in ("get_pw_pi", "get_pw_pi_plus", "get_pw_pi_minus"):
                x, y = getattr(a, f)(node), getattr(b, f)(node)
                pw = max([pw] + [abs(float(x[o]) - y[o]) for o in x if math.isfinite(float(x[o]))])
    print(f"dit {dit.__version__}: {len(zoo)} distributions, pointwise; largest difference: atoms {atoms:.1e} bits, "
          f"pointwise {pw:.1e}; dit {t_own:.2f} s, on the engine {t_eng:.2f} s ({t_own / t_eng:.0f}x)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idtxl", metavar="PATH", help="an IDTxl checkout")
    p.add_argument("--python", default=sys.executable, help="the Python that runs IDTxl's tests")
    p.add_argument("--sxpid", metavar="PATH", help="a SxPID checkout")
    p.add_argument("--broja", metavar="PATH", help="a BROJA_2PID checkout (SxPID's test_broja_dist imports it)")
    p.add_argument("--dit", action="store_true", help="dit's I_sx zoo, dit vs the drop-in")
    a = p.parse_args(argv)
    if not (a.idtxl or a.sxpid or a.dit):
        p.error("name at least one of --idtxl PATH, --sxpid PATH, --dit")
    if a.idtxl:
        idtxl(a.idtxl, a.python)
    if a.sxpid:
        sxpid(a.sxpid, a.broja, a.python)
    if a.dit:
        dit_zoo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
