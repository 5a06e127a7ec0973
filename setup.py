"""Build infomorph-kernels.

The CPU engine (csrc/cpu, OpenMP, pybind11) is always built. The CUDA engine (csrc/cuda) is built
whenever nvcc is found - no GPU is needed to compile it:
  INFOMORPH_SKIP_CUDA=1   skip the CUDA engine
  INFOMORPH_FORCE_CUDA=1  make a missing nvcc an error
  INFOMORPH_SKIP_CPU=1    skip the CPU engine (only for working on the CUDA engine alone)
  TORCH_CUDA_ARCH_LIST    GPU architectures (default "8.0;9.0+PTX")
Neither extension includes the torch headers: the kernels take raw pointers, which keeps the build
fast and the compiled modules independent of the torch C++ ABI. torch is still needed at build time
(its BuildExtension drives nvcc), so install with `pip install --no-build-isolation -e .`.
"""
import glob
import os
import shutil
import sys

from setuptools import find_packages, setup


def _find_cuda_home():
    """The toolkit folder that holds lib64/libcudart.so, or None. Never queries a GPU."""
    if os.environ.get("CUDA_HOME"):
        return os.environ["CUDA_HOME"]
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        return None
    root = os.path.dirname(os.path.dirname(os.path.realpath(nvcc)))
    plain = os.path.dirname(os.path.dirname(nvcc))
    for cand in (root, plain, os.path.join(plain, "cuda"), "/usr/local/cuda"):
        if os.path.exists(os.path.join(cand, "lib64", "libcudart.so")) and os.path.exists(
            os.path.join(cand, "bin", "nvcc")
        ):
            return cand
    return root


def _want_cuda(cuda_home):
    if os.environ.get("INFOMORPH_SKIP_CUDA") == "1":
        return False
    have = cuda_home is not None and os.path.exists(os.path.join(cuda_home, "bin", "nvcc"))
    if os.environ.get("INFOMORPH_FORCE_CUDA") == "1" and not have:
        sys.exit("INFOMORPH_FORCE_CUDA=1 but no nvcc was found (set CUDA_HOME to the CUDA toolkit)")
    return have


cuda_home = _find_cuda_home()
build_cuda = _want_cuda(cuda_home)
if build_cuda:
    os.environ["CUDA_HOME"] = cuda_home  # torch reads it when cpp_extension is imported
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0+PTX")

import pybind11  # noqa: E402
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

here = os.path.dirname(os.path.abspath(__file__))
common_inc = [os.path.join(here, "csrc", "common"), pybind11.get_include()]
cxx_flags = ["-O3", "-std=c++17", "-fopenmp", "-fno-math-errno"]

ext_modules = []
cpu_sources = sorted(glob.glob("csrc/cpu/*.cpp"))
if cpu_sources and os.environ.get("INFOMORPH_SKIP_CPU") != "1":  # SKIP_CPU: for developing the CUDA engine alone
    ext_modules.append(
        CppExtension(
            "infomorph_kernels._cpu",
            cpu_sources,
            include_dirs=common_inc,
            extra_compile_args=cxx_flags,
            extra_link_args=["-fopenmp"],
            depends=sorted(glob.glob("csrc/common/*.h") + glob.glob("csrc/cpu/*.h")),
        )
    )
cuda_sources = sorted(glob.glob("csrc/cuda/*.cu")) + sorted(glob.glob("csrc/cuda/*.cpp"))
if build_cuda and cuda_sources:
    ext_modules.append(
        CUDAExtension(
            "infomorph_kernels._cuda",
            cuda_sources,
            include_dirs=common_inc,
            # --threads: the per-architecture passes of nvcc run in parallel
            extra_compile_args={"cxx": ["-O3", "-std=c++17"], "nvcc": ["-O3", "-std=c++17", "--threads=2"]},
            depends=sorted(glob.glob("csrc/common/*.h") + glob.glob("csrc/cuda/*.h") + glob.glob("csrc/cuda/*.cuh")),
        )
    )


class _Build(BuildExtension):
    def build_extensions(self):
        # the extensions use raw pointers and pybind11 only: drop torch's libraries from the link
        for ext in self.extensions:
            ext.libraries = [lib for lib in ext.libraries if not lib.startswith(("torch", "c10"))]
        super().build_extensions()


# name, version, dependencies, extras and the `infomorph` console script: pyproject.toml ([project])
setup(
    packages=find_packages(include=["infomorph_kernels", "infomorph_kernels.*"])
    + find_packages("python", include=["infomorph", "infomorph.*"]),
    package_dir={"infomorph": "python/infomorph"},
    ext_modules=ext_modules,
    cmdclass={"build_ext": _Build.with_options(use_ninja=False)},
    zip_safe=False,
)
