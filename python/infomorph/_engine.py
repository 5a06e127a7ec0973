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
