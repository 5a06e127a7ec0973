"""The thread policy on a shared machine (infomorph_kernels.threads): usable cores, the cores other
processes keep busy, the engine's default and the commands' --threads auto."""
import shutil
import subprocess
import sys

import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import cpu_backend
from infomorph_kernels import threads as T


def test_usable_cpus_follows_affinity_and_cgroup_quota(monkeypatch):
    monkeypatch.setattr(T.os, "sched_getaffinity", lambda pid: {0, 1, 2, 3})
    monkeypatch.setattr(T, "_cgroup_quota", lambda: None)
    assert T.usable_cpus() == 4
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 1.5)  # 150 ms per 100 ms period: two cores, partly
    assert T.usable_cpus() == 2
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 0.25)
    assert T.usable_cpus() == 1
    monkeypatch.setattr(T, "_cgroup_quota", lambda: 8.0)
    assert T.usable_cpus() == 4


def test_cgroup_quota_files(monkeypatch, tmp_path):
    v2 = tmp_path / "cpu.max"
    real_open = open

    def fake_open(path, *a, **k):
        if path == "/sys/fs/cgroup/cpu.max":
            return real_open(v2, *a, **k)
        if path.startswith("/sys/fs/cgroup/"):
            raise OSError("not here")
        return real_open(path, *a, **k)

    monkeypatch.setattr("builtins.open", fake_open)
    v2.write_text("250000 100000\n")
    assert T._cgroup_quota() == 2.5
    v2.write_text("max 100000\n")
    assert T._cgroup_quota() is None


@pytest.mark.parametrize("usable, total, own, online, want_busy, want_threads", [
    (2, 1, 1, 2, 0, 2),  # quiet: only the reading thread runs
    (2, 2, 1, 2, 1, 1),  # one busy core elsewhere
    (2, 4, 2, 2, 2, 1),  # two busy cores; our two threads running are not counted
    (4, 5, 2, 4, 3, 1),
    (4, 3, 1, 4, 2, 2),
    (2, 9, 1, 16, 1, 1),  # affinity on 2 of 16 cores: 8 others spread over the machine -> 1 on ours
])
def test_choice_from_the_kernel_counts(monkeypatch, usable, total, own, online, want_busy, want_threads):
    monkeypatch.setattr(T.sys, "platform", "linux")
    monkeypatch.setattr(T, "usable_cpus", lambda: usable)
    monkeypatch.setattr(T, "_procs_running", lambda: total)
    monkeypatch.setattr(T, "_own_running", lambda: own)
    monkeypatch.setattr(T.os, "cpu_count", lambda: online)
    assert T.busy_elsewhere(gap_s=0) == pytest.approx(want_busy)
    n, why = T.choose()
    assert n == want_threads and why == {"usable": usable, "busy_elsewhere": pytest.approx(want_busy)}
    assert T.choose(cap=1)[0] == 1
    assert "threads auto: " in T.describe(n, why)


@pytest.mark.skipif(not sys.platform.startswith("linux") or shutil.which("yes") is None,
                    reason="the kernel's runnable-thread count (/proc/stat) and the `yes` program: Linux")
def test_a_real_busy_process_is_seen():
    hog = subprocess.Popen(["yes"], stdout=subprocess.DEVNULL)
    try:
        import time

        time.sleep(0.2)
        assert T.busy_elsewhere(looks=5) >= 1 or T.usable_cpus() < (T.os.cpu_count() or 1)
        assert T._own_running() >= 1
    finally:
        hog.kill()
        hog.wait()


def test_engine_default_backs_off_with_torchs_pool_and_gives_it_back(monkeypatch):
    """The short-call default: torch's count less the busy cores, torch's own pool lowered with it
    and given back (up to the count it found) when the machine is quiet; a count the user sets
    (engine or torch) is kept; long calls keep the user's count."""
    monkeypatch.setattr(T, "usable_cpus", lambda: 4)
    busy = {"n": 0.0}
    monkeypatch.setattr(T, "busy_elsewhere", lambda *a, **k: busy["n"])
    before = torch.get_num_threads()
    monkeypatch.setattr(cpu_backend, "_auto", T.AutoThreads(interval=0.0))
    monkeypatch.setattr(cpu_backend, "_lowered", None)
    monkeypatch.setattr(cpu_backend, "_num_threads", None)  # the default, whatever ran before
    try:
        torch.set_num_threads(3)
        assert cpu_backend.get_num_threads() == 3 and torch.get_num_threads() == 3  # quiet: torch's count
        busy["n"] = 2.0
        assert cpu_backend.get_num_threads() == 3  # one look: not yet
        assert cpu_backend.get_num_threads() == 2 and torch.get_num_threads() == 2  # two of four cores busy
        assert cpu_backend.long_call_threads() == 3  # the user's count for long calls
        busy["n"] = 4.0
        cpu_backend.get_num_threads()
        assert cpu_backend.get_num_threads() == 1 and torch.get_num_threads() == 1
        busy["n"] = 0.0
        assert cpu_backend.get_num_threads() == 3 and torch.get_num_threads() == 3  # given back, not more
        busy["n"] = 2.0
        cpu_backend.set_num_threads(3)
        assert cpu_backend.get_num_threads() == 3 and torch.get_num_threads() == 3  # fixed: no back-off
        cpu_backend.set_num_threads(None)
        cpu_backend.get_num_threads()
        assert cpu_backend.get_num_threads() == 2
        torch.set_num_threads(1)  # the user's own change counts from now on
        busy["n"] = 0.0
        assert cpu_backend.get_num_threads() == 1 and torch.get_num_threads() == 1
        assert cpu_backend.long_call_threads() == 1
    finally:
        cpu_backend.set_num_threads(None)
        monkeypatch.setattr(cpu_backend, "_lowered", None)
        torch.set_num_threads(before)


def test_back_off_needs_two_looks_in_a_row(monkeypatch):
    seq = iter([2, 1, 2, 1, 1, 2])
    monkeypatch.setattr(T, "choose", lambda cap=None: (next(seq), {"usable": 2, "busy_elsewhere": 0}))
    a = T.AutoThreads(interval=0.0)
    # 2 (first), 1 (a blip: kept 2), 2, 1 (kept), 1 (twice: taken), 2 (more: at once)
    assert [a.get(2) for _ in range(6)] == [2, 2, 2, 2, 1, 2]


def test_cached_choice_is_looked_at_again_after_its_interval(monkeypatch):
    calls = []
    monkeypatch.setattr(T, "choose", lambda cap=None: (calls.append(cap) or (1, {"usable": 1, "busy_elsewhere": 0})))
    clock = {"t": 100.0}
    monkeypatch.setattr(T.time, "monotonic", lambda: clock["t"])
    a = T.AutoThreads(interval=1.0)
    a.get(2), a.get(2)
    assert calls == [2]
    clock["t"] += 0.5
    a.get(2)
    assert calls == [2]
    a.get(3)  # another cap: at once
    clock["t"] += 1.0
    a.get(3)
    assert calls == [2, 3, 3]


def test_manage_torch_and_retune(monkeypatch):
    monkeypatch.setattr(T, "usable_cpus", lambda: 2)
    busy = {"n": 0.0}
    monkeypatch.setattr(T, "busy_elsewhere", lambda *a, **k: busy["n"])
    before = torch.get_num_threads()
    try:
        assert T.retune() is None or T.managed() is not None
        T.manage_torch(False)
        assert T.retune() is None and T.managed() is None
        assert T.manage_torch(True, interval=0.0) == 2 and torch.get_num_threads() == 2
        busy["n"] = 1.0
        assert T.retune() == 2  # one look: not yet
        assert T.retune() == 1 and torch.get_num_threads() == 1
        busy["n"] = 0.0
        assert T.retune() == 2 and torch.get_num_threads() == 2
        T.manage_torch(False)
        busy["n"] = 2.0
        assert T.retune() is None and torch.get_num_threads() == 2
    finally:
        T.manage_torch(False)
        torch.set_num_threads(before)


def test_package_exports_the_policy():
    assert ik.threads is T and callable(ik.threads.choose)
