"""What every benchmark record carries: machine, versions, commit; and the RESULTS.md writer."""
from __future__ import annotations

import datetime
import os
import platform
import subprocess

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)


def commit() -> str:
    """Short commit of the checkout, '+dirty' when tracked files differ from it."""
    try:
        c = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                           check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return c + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine()


def environment(device: str = "cpu") -> dict:
    import torch

    if device == "cuda":
        p = torch.cuda.get_device_properties(0)
        machine = f"{p.name} ({p.multi_processor_count} SMs, CUDA {torch.version.cuda})"
    else:
        machine = f"{cpu_name()}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}"
    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = "-"
    return {"date": datetime.date.today().isoformat(), "machine": machine, "torch": torch.__version__,
            "triton": tv, "python": platform.python_version(), "commit": commit()}


def emit(heading: str, env: dict, body: str, write: bool) -> str:
    """Print a RESULTS.md section (heading, the environment line, a table); with ``write`` append it."""
    text = f"### {heading}\n\n" + ", ".join(f"{k}: {v}" for k, v in env.items()) + "\n\n" + body + "\n"
    print(text)
    if write:
        with open(os.path.join(HERE, "RESULTS.md"), "a") as f:
            f.write("\n" + text)
    return text
