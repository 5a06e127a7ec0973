"""Threads on a machine that others share: the cores this process may use, less those that other
processes keep busy right now.

On a quiet machine a parallel region of T threads on T cores finishes when its slowest thread does;
with another busy process on one of those cores, that thread runs half the time and every thread
waits for it at the end of each region (measured on 2 cores, issue 43: training 2.5x slower on two
threads than on one beside one busy process, and single epochs 30x slower beside two). So the
default here is *auto*: as many threads as there are usable cores not busy elsewhere, checked
again at most once a second.

- :func:`usable_cpus`: the cores of this process's affinity mask, capped by a cgroup CPU quota
  (v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``).
- :func:`busy_elsewhere`: runnable threads of other processes now (the kernel's ``procs_running``
  less this process's own running threads, median of three looks 0.5 ms apart; where the affinity
  mask covers only part of the machine, scaled to that part). Linux only; elsewhere 0.
- :func:`choose`: ``max(1, min(cap, usable - busy elsewhere))`` and why.
- :class:`AutoThreads`: :func:`choose` cached for ``interval`` seconds, backing off only when two
  looks in a row say so (the engine's default).
- :func:`manage_torch` / :func:`retune`: the same for torch's own thread pool (the commands'
  ``--threads auto``; a training loop calls :func:`retune` once per epoch).

The engine's results do not depend on its thread count (each neuron on one thread, bit-identical);
torch's own reductions may differ in the last bits between thread counts, so a run that must be
repeatable bit for bit fixes the count (``--threads N``, ``torch.set_num_threads``).
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Dict, Optional, Tuple

__all__ = ["usable_cpus", "busy_elsewhere", "choose", "AutoThreads", "manage_torch", "retune", "describe"]


def _cgroup_quota() -> Optional[float]:
    """CPUs allowed by a cgroup quota (None where there is none or it cannot be read)."""
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:  # cgroup v2: "max 100000" or "200000 100000"
            quota, period = fh.read().split()[:2]
        if quota != "max" and float(period) > 0:
            return float(quota) / float(period)
        return None
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as fh:  # cgroup v1
            quota = float(fh.read())
        with open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as fh:
            period = float(fh.read())
        return quota / period if quota > 0 and period > 0 else None
    except (OSError, ValueError):
        return None


def usable_cpus() -> int:
    """Cores this process may run on: its affinity mask, capped by a cgroup CPU quota (rounded up)."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    quota = _cgroup_quota()
    if quota is not None:
        n = min(n, max(1, math.ceil(quota - 1e-9)))
    return max(1, n)


def _procs_running() -> Optional[int]:
    try:
        with open("/proc/stat", "rb") as fh:
            for line in fh:
                if line.startswith(b"procs_running"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def _own_running() -> int:
    """This process's threads in state R (running or runnable) now."""
    n = 0
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:
        return 1
    for tid in tasks:
        try:
            with open(f"/proc/self/task/{tid}/stat", "rb") as fh:
                raw = fh.read()
        except OSError:
            continue
        rest = raw[raw.rfind(b")") + 2:]
        if rest[:1] == b"R":
            n += 1
    return max(1, n)  # the thread reading this is running


def busy_elsewhere(looks: int = 3, gap_s: float = 0.0005) -> float:
    """Runnable threads of other processes now, as a number of this process's usable cores (the
    median of ``looks`` looks ``gap_s`` apart). 0 where the kernel does not say (not Linux)."""
    if not sys.platform.startswith("linux"):
        return 0.0
    counts = []
    for k in range(looks):
        # this process's running threads before and after the machine's count: a pool thread that
        # spun while the kernel counted and slept when we looked must not count as another's
        own = _own_running()
        total = _procs_running()
        if total is None:
            return 0.0
        counts.append(max(0, total - max(own, _own_running())))
        if k + 1 < looks:
            time.sleep(gap_s)
    counts.sort()
    others = float(counts[len(counts) // 2])
    online = os.cpu_count() or 1
    usable = usable_cpus()
    # procs_running counts the whole machine: where this process may use only part of it, the
    # others are taken as spread evenly over the machine's cores
    return others * usable / online if usable < online else others


def choose(cap: Optional[int] = None) -> Tuple[int, Dict[str, float]]:
    """Threads for the next parallel work: the usable cores not busy elsewhere, at least 1, at most
    ``cap``; and the figures behind the choice."""
    usable = usable_cpus()
    busy = busy_elsewhere()
    free = max(1, usable - int(math.floor(busy + 0.5)))
    n = min(free, cap) if cap is not None else free
    return max(1, n), {"usable": usable, "busy_elsewhere": busy}


def describe(n: int, why: Dict[str, float]) -> str:
    busy = why["busy_elsewhere"]
    return (f"threads auto: {n} of {why['usable']} usable cores"
            + (f" ({busy:g} busy with other processes)" if busy else ""))


class AutoThreads:
    """:func:`choose` again at most every ``interval`` seconds; in between the last choice. It starts
    from ``cap`` (all the threads asked for); fewer are taken only when two looks in a row say so (a
    kernel thread that ran for a moment is no reason to halve a run for a second), more at once."""

    def __init__(self, interval: float = 1.0):
        self.interval = interval
        self._at = -math.inf
        self._cap: Optional[int] = None
        self._n: Optional[int] = None
        self._lower_seen = False
        self.why: Dict[str, float] = {}

    def get(self, cap: Optional[int] = None) -> int:
        now = time.monotonic()
        if now - self._at >= self.interval or cap != self._cap:
            n, why = choose(cap)
            if cap != self._cap or self._n is None:
                self._n, self._lower_seen = (cap if cap is not None else n), False  # a fresh start: optimistic
            if n >= self._n or self._lower_seen:
                self._n, self.why, self._lower_seen = n, why, False
            else:
                self._lower_seen, self.why = True, why  # fewer: only if the next look says so too
            self._at, self._cap = now, cap
        return self._n

    def start(self, cap: Optional[int] = None, gap_s: float = 0.01) -> int:
        """A decided first choice: two looks ``gap_s`` apart, the larger of the two."""
        (n1, w1), (n2, w2) = choose(cap), (time.sleep(gap_s), choose(cap))[1]
        self._n, self.why = (n1, w1) if n1 >= n2 else (n2, w2)
        self._at, self._cap, self._lower_seen = time.monotonic(), cap, False
        return self._n


_torch_auto: Optional[AutoThreads] = None


def manage_torch(enable: bool = True, interval: float = 1.0) -> int:
    """Set torch's thread count by :func:`choose` now (``enable``) and let :func:`retune` change it
    as the machine's load changes; ``enable=False`` leaves it where it is. Returns the count."""
    import torch

    global _torch_auto
    if not enable:
        _torch_auto = None
        return torch.get_num_threads()
    _torch_auto = AutoThreads(interval)
    n = _torch_auto.start(usable_cpus())
    torch.set_num_threads(n)
    return n


def retune() -> Optional[int]:
    """Under :func:`manage_torch`: look at the machine again (at most once per interval) and set
    torch's thread count when the choice changed. Returns the count, or None when not managing."""
    if _torch_auto is None:
        return None
    import torch

    n = _torch_auto.get(usable_cpus())
    if n != torch.get_num_threads():
        torch.set_num_threads(n)
    return n


def managed() -> Optional[AutoThreads]:
    """The torch policy of :func:`manage_torch` (its last figures in ``.why``), or None."""
    return _torch_auto
