"""The one door to the PID engine (package ``infomorph_kernels``): imported on first use so that
``import infomorph`` never fails, with a message that says what to install when it is missing."""
from __future__ import annotations

_ENGINE = None


def engine():
    """The imported ``infomorph_kernels`` module."""
    global _ENGINE
    if _ENGINE is None:
        try:
            import infomorph_kernels as ik
        except ImportError as e:  # pragma: no cover - depends on the installation
            raise ImportError(
                "infomorph needs the PID engine package infomorph_kernels: install this repository with "
                "`pip install --no-build-isolation -e .` (from its root)"
            ) from e
        if not hasattr(ik, "pid_goal"):  # pragma: no cover - a half-built checkout
            raise ImportError("infomorph_kernels has no pid_goal: the engine in this checkout is incomplete")
        _ENGINE = ik
    return _ENGINE


def usable_cpus() -> int:
    """The cores this process may use (affinity mask, cgroup quota)."""
    return engine().threads.usable_cpus()


def set_threads(threads) -> None:
    """A command's ``--threads``: N fixes torch's (and so the engine's) thread count; None (auto)
    takes the usable cores that other processes do not keep busy and lets :func:`retune_threads`
    follow the machine's load (:func:`threads_note` says the choice)."""
    import torch

    ik = engine()
    from infomorph_kernels import cpu_backend

    if threads is not None:
        ik.threads.manage_torch(False)  # a fixed count stays fixed (an earlier auto in this process is undone)
        torch.set_num_threads(threads)
        cpu_backend.set_num_threads(threads)  # the engine's too (its default would back off)
        return
    cpu_backend.set_num_threads(None)
    ik.threads.manage_torch(True)


def threads_note():
    """The auto choice in words ("threads auto: 1 of 2 usable cores (1 busy with other
    processes)"), or None when the count is fixed."""
    if _ENGINE is None or _ENGINE.threads.managed() is None:
        return None
    import torch

    return _ENGINE.threads.describe(torch.get_num_threads(), _ENGINE.threads.managed().why)


def retune_threads():
    """Under ``--threads auto``: torch's thread count follows the machine's load (a look at most once
    a second; nothing otherwise)."""
    if _ENGINE is None:
        return None
    return _ENGINE.threads.retune()
