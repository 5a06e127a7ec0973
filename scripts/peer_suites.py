"""The peers' own tests with and without the engine swapped in, side by side (issue 39).

    python scripts/peer_suites.py --idtxl PATH/TO/IDTxl [--python PY]   # IDTxl's multivariate-PID tests
    python scripts/peer_suites.py --sxpid PATH/TO/SxPID [--broja PATH/TO/BROJA_2PID] [--python PY]
    python scripts/peer_suites.py --dit                                 # dit's I_sx zoo: dit vs the drop-in
    python scripts/peer_suites.py --nninfo PATH/TO/nninfo --sxpid PATH/TO/SxPID --broja PATH/TO/BROJA_2PID \
        [--python PY] [--epochs 1000] [--chapters 30]                   # nninfo's PID measures, both ways

IDTxl: its test files ``test/test_estimators_multivariate_pid.py`` and ``test/test_multivariate_pid.py``
run under pytest twice, as they are and with ``infomorph_kernels.compat.idtxl.install()`` loaded as a
pytest plugin (nothing in IDTxl changes); pass/fail counts and wall seconds per file. IDTxl needs
numpy, scipy, h5py, prettytable, jpype1 and ``pkg_resources`` (setuptools < 81) in the Python given by
``--python`` (default: this one). SxPID: its ``testing/test_gates.py`` and ``testing/test_broja_dist.py``
(the latter imports BROJA_2PID, given by ``--broja``, and needs ecos), once with the checkout's own
``sxpid`` package and once with a stand-in package whose ``sxpid.SxPID`` is
``infomorph_kernels.compat.sxpid``; where the checkout lacks its ``moebius.pkl`` (a snapshot without
large files), SxPID's own side runs on a copy with one made by SxPID's own code for n = 2..4 (see
nninfo below): enough for test_gates, not for test_broja_dist, which loads n = 5. dit: every bivariate and trivariate distribution of
``dit.pid.distributions`` through ``dit.pid.PID_SX`` (pointwise) with dit's class and with the
engine's, the largest differences and the seconds. nninfo: its demo experiment (tmlr_scripts/
5_tmlr_demo.ipynb: the 12-12-4-4-4-1 tanh network on the Tishby data, 8-level quantized layers, 30
log-spaced checkpoints) trained once in a copy of the checkout, then every PID measure nninfo offers
through its own ``PIDMeasurement`` on layer L3's four neurons (and the average on L2 and L4) about
the output, each on all checkpoints: once with SxPID (nninfo imports ``from sxpid import SxPID``;
SxPID's targetpointwise branch, which nninfo pins) and once with the stand-in package; the results
tables compared cell by cell, and the seconds. SxPID's own side needs its ``moebius.pkl``: when the
checkout lacks it (a snapshot without large files), it is made for n = 2..4 by SxPID's own
``Lattice.compute_moebius_inversion`` from its ``lattices.pkl``, in the copy. Shims for current
packages, in the driver only: ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` (nninfo's checkpoints hold numpy
objects) and pandas >= 3's keyword-only ``to_hdf`` key. nninfo needs pandas, tables (PyTables),
filelock, matplotlib, h5py, prettytable, pyyaml, scipy, ecos and ``pkg_resources`` (setuptools < 81)
in ``--python``. None of the peers' code is in this repository: ``fetch`` or ``git clone`` them
beside it.
"""
from __future__ import annotations

import argparse
import os
import pickle
import re
import shutil
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
        own_copy = _sxpid_with_moebius(checkout, swap, python)  # SxPID's own side, with its moebius.pkl
        os.makedirs(os.path.join(swap, "sxpid"))
        open(os.path.join(swap, "sxpid", "__init__.py"), "w").close()
        with open(os.path.join(swap, "sxpid", "SxPID.py"), "w") as fh:
            fh.write("from infomorph_kernels.compat.sxpid import *  # noqa: F401,F403\n")
        extra = [os.path.join(broja, "broja2pid")] if broja else []
        print("| SxPID test file | SxPID's own | on the engine |\n|---|---|---|")
        for f in ("test_gates.py", "test_broja_dist.py"):
            own = _pytest(python, os.path.join(own_copy, "testing"), [own_copy] + extra, f)
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


_NNINFO_TRAIN = """
import random, sys
import numpy as np, torch
torch.manual_seed(0); np.random.seed(0); random.seed(0)
import nninfo, nninfo.utils
L = nninfo.LayerInfo
layers = [L(connection_layer='input', activation_function='input')] + [
    L(connection_layer='linear', connection_layer_kwargs={'in_features': a, 'out_features': b}, activation_function='tanh')
    for a, b in ((12, 12), (12, 4), (4, 4), (4, 4))] + [
    L(connection_layer='linear', connection_layer_kwargs={'in_features': 4, 'out_features': 1}, activation_function='sigmoid')]
task = nninfo.TaskManager('tishby_dat')
task['full_set'].train_test_val_random_split(2796, 1300, 0, seed=42)
trainer = nninfo.Trainer(dataset_name='full_set/train', optim_str='SGD', loss_str='BCELoss', lr=0.01, shuffle=True,
                         batch_size=64, quantizer=[None] + 4 * [{'levels': 8, 'rounding_point': 'stochastic'}] + [None])
schedule = nninfo.Schedule()
schedule.create_log_spaced_chapters(int(sys.argv[1]), int(sys.argv[2]))
exp = nninfo.Experiment('tishby_demo', nninfo.NeuralNetwork(layer_infos=layers, init_str='xavier'), task, trainer,
                        nninfo.Tester(dataset_name='full_set/test'), schedule)
exp.run_following_schedule(compute_test_loss=False)
"""

_NNINFO_MEASURE = """
import pickle, sys, time
import pandas as pd
_to_hdf = pd.DataFrame.to_hdf
pd.DataFrame.to_hdf = lambda self, path, key=None, **k: _to_hdf(self, path, key=key, **k)  # pandas >= 3
import nninfo
from nninfo.model.neural_network import NeuronID
side, out = sys.argv[1], sys.argv[2]
exp = nninfo.experiment.Experiment.load('tishby_demo')
q = [None] + 4 * [{'levels': 8, 'rounding_point': 'center_saturating'}] + [None]
res = {}
for name, definition, layer, kw in MEASURES:
    m = nninfo.analysis.pid_measurement.PIDMeasurement(
        experiment=exp, measurement_id=name.replace(' ', '_') + '_' + side, dataset_name='full_set/train',
        quantizer_params=q, pid_definition=definition, pid_kwargs=kw, binning_kwargs={'binning_method': 'none'},
        target_id_list=[NeuronID('Y', (1,))], source_id_lists=[[NeuronID('L%d' % layer, (i,))] for i in (1, 2, 3, 4)])
    t0 = time.perf_counter()
    m.perform_measurements(run_ids=[0], chapter_ids='all', exists_ok=False)
    res[name] = (time.perf_counter() - t0, m.results)
    print('MEASURED', side, name, '%.2f s' % res[name][0], flush=True)
pickle.dump(res, open(out, 'wb'))
"""
NNINFO_MEASURES = [(f"sxpid L{layer}", "sxpid", layer, {}) for layer in (2, 3, 4)] + [
    ("sxpid target-pointwise L3", "sxpid", 3, {"pointwise": "target"}),
    ("deg_red L3", "deg_red", 3, {}),
    ("reing L3", "reing", 3, {}),
]


def _copy_tree(src: str, dst: str) -> str:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "experiments", "__pycache__"))
    return dst


def _sxpid_with_moebius(checkout: str, work: str, python: str) -> str:
    """A copy of a SxPID checkout that has its moebius.pkl: a snapshot without large files lacks it,
    and SxPID's own ``Lattice.compute_moebius_inversion`` makes it (n = 2..4) from its lattices.pkl."""
    sx = _copy_tree(checkout, os.path.join(work, "SxPID"))
    if not os.path.isfile(os.path.join(sx, "sxpid", "moebius.pkl")):
        subprocess.run([python, "-c", (
            "import pickle as pkl, sxpid.SxPID as S\n"
            "lat = pkl.load(open('sxpid/lattices.pkl', 'rb'))\n"
            "m = {n: [list(lat[n]), S.Lattice(n, list(lat[n])).compute_moebius_inversion()] for n in (2, 3, 4)}\n"
            "pkl.dump(m, open('sxpid/moebius.pkl', 'wb'))\n")], cwd=sx, check=True, capture_output=True,
            env=dict(os.environ, PYTHONPATH=sx))
    return sx


def nninfo(checkout: str, sxpid_checkout: str, broja: str, python: str, epochs: int, chapters: int) -> None:
    if not os.path.isfile(os.path.join(checkout, "nninfo", "analysis", "pid_measurement.py")):
        sys.exit(f"--nninfo: {checkout!r} is no nninfo checkout (no nninfo/analysis/pid_measurement.py)")
    if not sxpid_checkout or not broja:
        sys.exit("--nninfo needs --sxpid PATH (its targetpointwise branch) and --broja PATH (nninfo imports both)")
    with tempfile.TemporaryDirectory() as work:
        nn = _copy_tree(checkout, os.path.join(work, "nninfo"))  # nninfo writes its experiments beside itself
        os.makedirs(os.path.join(nn, "experiments"))
        sx = _sxpid_with_moebius(sxpid_checkout, work, python)
        env = dict(os.environ, TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD="1")
        swap = os.path.join(work, "swap")
        os.makedirs(os.path.join(swap, "sxpid"))
        open(os.path.join(swap, "sxpid", "__init__.py"), "w").close()
        with open(os.path.join(swap, "sxpid", "SxPID.py"), "w") as fh:
            fh.write("from infomorph_kernels.compat.sxpid import *  # noqa: F401,F403\n")
        sides = {"SxPID": [nn, sx, broja], "engine": [nn, swap, ROOT, os.path.join(ROOT, "python"), broja]}

        def run(side, code, *args):
            e = dict(env, PYTHONPATH=os.pathsep.join(sides[side]))
            r = subprocess.run([python, "-c", code, *args], cwd=nn, env=e, capture_output=True, text=True)
            if r.returncode:
                sys.exit(f"nninfo ({side}) failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")

        t0 = time.perf_counter()
        run("SxPID", _NNINFO_TRAIN, str(epochs), str(chapters))
        print(f"nninfo demo experiment trained ({epochs} epochs, {chapters} checkpoints) in {time.perf_counter() - t0:.0f} s")
        code = f"MEASURES = {NNINFO_MEASURES!r}\n" + _NNINFO_MEASURE
        out = {}
        for side in ("SxPID", "engine"):
            run(side, code, side, os.path.join(work, side + ".pkl"))
            with open(os.path.join(work, side + ".pkl"), "rb") as fh:
                out[side] = pickle.load(fh)
        print("| nninfo measure (run 0, all checkpoints) | rows | largest difference | SxPID | on the engine | speed-up |")
        print("|---|---|---|---|---|---|")
        for name, *_ in NNINFO_MEASURES:
            (t_own, a), (t_eng, b) = out["SxPID"][name], out["engine"][name]
            num_a, num_b = a.select_dtypes("number"), b.select_dtypes("number")
            same_shape = list(a.columns) == list(b.columns) and a.shape == b.shape
            diff = float((num_a - num_b).abs().max().max()) if same_shape else float("nan")
            print(f"| {name} | {len(a)} | {diff:.1e} | {t_own:.1f} s | {t_eng:.1f} s | {t_own / t_eng:.0f}x |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--idtxl", metavar="PATH", help="an IDTxl checkout")
    p.add_argument("--python", default=sys.executable, help="the Python that runs IDTxl's tests")
    p.add_argument("--sxpid", metavar="PATH", help="a SxPID checkout")
    p.add_argument("--broja", metavar="PATH", help="a BROJA_2PID checkout (SxPID's test_broja_dist imports it)")
    p.add_argument("--dit", action="store_true", help="dit's I_sx zoo, dit vs the drop-in")
    p.add_argument("--nninfo", metavar="PATH", help="an nninfo checkout (with --sxpid and --broja)")
    p.add_argument("--epochs", type=int, default=1000, help="nninfo's demo training epochs (default: the demo's 1000)")
    p.add_argument("--chapters", type=int, default=30, help="its log-spaced checkpoints, each measured (default: the demo's 30)")
    a = p.parse_args(argv)
    if a.epochs < 1 or a.chapters < 1:
        p.error(f"--epochs and --chapters must be >= 1, got {a.epochs} and {a.chapters}")
    if not (a.idtxl or a.sxpid or a.dit or a.nninfo):
        p.error("name at least one of --idtxl PATH, --sxpid PATH, --dit, --nninfo PATH")
    if a.nninfo:
        nninfo(a.nninfo, a.sxpid, a.broja, a.python, a.epochs, a.chapters)
        return 0
    if a.idtxl:
        idtxl(a.idtxl, a.python)
    if a.sxpid:
        sxpid(a.sxpid, a.broja, a.python)
    if a.dit:
        dit_zoo()
    return 0


if __name__ == "__main__":
    sys.exit(main())
