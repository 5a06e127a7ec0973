"""What the compilers say about the GPU engines, on a machine without a GPU.

    python bench/gpu_compile_report.py            # sm_90 (H100/H200); prints a markdown table
    python bench/gpu_compile_report.py --arch 80  # sm_80 (A100)
    python bench/gpu_compile_report.py --write    # also append it to bench/RESULTS.md

Triton: every specialization the launcher picks for n = 2..4 sources, K = 20, compiled by
``triton_kernels.compile_for_target`` (the launcher's own constexprs) and its PTX assembled by
triton's ptxas with ``-v``. CUDA C++: ``csrc/cuda/pid_cuda.cu`` compiled by nvcc with
``-Xptxas -v`` (needs nvcc; CUDA_HOME or nvcc on PATH). Columns: registers per thread, spill
stores/loads (bytes), static shared memory, and the CTAs per SM that the registers allow (65,536
registers per SM, allocated per warp in units of 256). These are facts about code, not timings:
the timings need a GPU (python -m pytest bench --benchmark-only --bench-device cuda).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import torch  # noqa: E402

from _env import emit, environment  # noqa: E402

PTXAS_RE = re.compile(
    r"(?P<stack>\d+) bytes stack frame, (?P<sst>\d+) bytes spill stores, (?P<sld>\d+) bytes spill loads"
    r"\s*\n.*?Used (?P<regs>\d+) registers(?:, used \d+ barriers)?(?:, (?P<smem>\d+) bytes smem)?",
    re.S,
)


def ctas_by_regs(regs: int, threads: int) -> int:
    per_warp = ((regs * 32 + 255) // 256) * 256
    return 65536 // (per_warp * (threads // 32))


def parse_ptxas(text: str):
    """(entry name, stats) for every 'Compiling entry function' block of ptxas -v output."""
    out = []
    for block in text.split("Compiling entry function")[1:]:
        name = block.split("'")[1]
        m = PTXAS_RE.search(block)
        if m:
            out.append((name, {k: int(v or 0) for k, v in m.groupdict().items()}))
    return out


def triton_rows(arch: int):
    from triton import knobs

    from infomorph_kernels import triton_kernels as tk

    ptxas = knobs.nvidia.ptxas_blackwell.path if arch >= 100 else knobs.nvidia.ptxas.path
    rows = []
    for n in (2, 3, 4):
        for dtype in (torch.float32, torch.float64):
            for need_grad in (True, False):
                t0 = time.perf_counter()
                k = tk.compile_for_target(arch, n=n, nbins=[20] * n, dtype=dtype, need_grad=need_grad)
                secs = time.perf_counter() - t0
                with tempfile.TemporaryDirectory() as d:
                    src = os.path.join(d, "k.ptx")
                    with open(src, "w") as f:
                        f.write(k.asm["ptx"])
                    p = subprocess.run([ptxas, "-v", f"--gpu-name=sm_{arch}{'a' if arch == 90 else ''}", src,
                                        "-o", os.path.join(d, "k.cubin")], capture_output=True, text=True)
                stats = parse_ptxas(p.stdout + p.stderr)
                if p.returncode != 0 or not stats:
                    raise RuntimeError(f"ptxas failed for n={n} {dtype}: {p.stderr[-400:]}")
                s = stats[0][1]
                s["smem"] = int(k.metadata.shared)
                rows.append((f"triton n={n} {str(dtype)[6:]} {'fwd+bwd' if need_grad else 'fwd'}", s,
                             ctas_by_regs(s["regs"], 32 * k.metadata.num_warps), f"{secs:.1f}"))
    return rows


def cuda_rows(arch: int):
    nvcc = shutil.which("nvcc")
    home = os.environ.get("CUDA_HOME")
    if home and os.path.exists(os.path.join(home, "bin", "nvcc")):
        nvcc = os.path.join(home, "bin", "nvcc")
    if nvcc is None:
        return [("cuda (not compiled: nvcc not found)", None, 0, "-")]
    csrc = os.path.join(ROOT, "csrc")
    with tempfile.TemporaryDirectory() as d:
        t0 = time.perf_counter()
        p = subprocess.run([nvcc, f"-arch=sm_{arch}", "-cubin", "-O3", "-std=c++17", "-Xptxas", "-v",
                            "-I", os.path.join(csrc, "common"), "-I", os.path.join(csrc, "cuda"),
                            os.path.join(csrc, "cuda", "pid_cuda.cu"), "-o", os.path.join(d, "k.cubin")],
                           capture_output=True, text=True)
        secs = time.perf_counter() - t0
    if p.returncode != 0:
        raise RuntimeError(f"nvcc failed: {p.stderr[-800:]}")
    rows = []
    for name, s in parse_ptxas(p.stdout + p.stderr):
        m = re.search(r"pid_fused_kernelI([fd])Li(\d)ELb([01])E", name)
        label = f"cuda n={m.group(2)} {'float32' if m.group(1) == 'f' else 'float64'} " \
                f"{'shared' if m.group(3) == '1' else 'global'} tables" if m else name
        rows.append((label, s, ctas_by_regs(s["regs"], 256), f"{secs:.1f} (all)"))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", type=int, default=90)
    ap.add_argument("--write", action="store_true", help="append the table to bench/RESULTS.md")
    args = ap.parse_args()
    rows = triton_rows(args.arch) + cuda_rows(args.arch)
    lines = ["| kernel (K = 20) | registers | spill st/ld bytes | static smem bytes | CTAs/SM by registers | compile s |",
             "|---|---|---|---|---|---|"]
    for label, s, ctas, secs in rows:
        if s is None:
            lines.append(f"| {label} | - | - | - | - | - |")
        else:
            lines.append(f"| {label} | {s['regs']} | {s['sst']}/{s['sld']} | {s['smem']} | {ctas} | {secs} |")
    emit(f"Compiled for sm_{args.arch} (no GPU needed)", environment("cpu"), "\n".join(lines), args.write)

if __name__ == "__main__":
    main()
