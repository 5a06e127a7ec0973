"""glibc's malloc kept from handing a training step's freed buffers back to the kernel.

A training step frees and re-allocates the same few hundred kilobytes to megabytes of tensors
(sources, activations, gradients). glibc returns the top of its heap to the kernel once more than
its trim threshold is free and serves blocks above its (adaptive) mmap threshold with fresh
mappings, so the next step page-faults its buffers in again: ~150 minor faults per Setup 1 step at
100 hidden neurons (bench/RESULTS.md, issue 14). The CLI's processes (train, sweep, search
workers) therefore keep freed memory: blocks up to 32 MB (glibc's largest mmap threshold) come
from the heap and up to 1 GB of free heap stays mapped. The resident size then stays at its peak
(what the step needs anyway). Library users' processes are not touched; set INFOMORPH_MALLOC=default
to leave glibc's defaults in the CLI too.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # glibc's maximum (DEFAULT_MMAP_THRESHOLD_MAX on 64-bit)
TRIM_THRESHOLD = 1 << 30


def keep_freed_memory() -> bool:
    """Set the two thresholds in this process; True if glibc took them (False elsewhere: other
    C libraries, other systems, or INFOMORPH_MALLOC=default)."""
    if os.environ.get("INFOMORPH_MALLOC", "").strip().lower() == "default" or not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others have no mallopt
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))
