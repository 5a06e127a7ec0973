"""Argument checks shared by every backend: each error names the argument and the expectation."""
from __future__ import annotations

from typing import List, Optional, Tuple

import torch

FLOAT_DTYPES = (torch.float32, torch.float64)


def broadcast_shape(*shapes) -> Optional[Tuple[int, ...]]:
    """The shape ``shapes`` broadcast to, or None where they do not. (torch.broadcast_shapes does
    the same but imports sympy on its first call: 0.3 s of a training run's start.)"""
    ndim = max(len(s) for s in shapes)
    out = []
    for i in range(ndim):
        size = 1
        for s in shapes:
            d = s[i - ndim + len(s)] if i >= ndim - len(s) else 1
            if d != 1:
                if size not in (1, d):
                    return None
                size = d
        out.append(size)
    return tuple(out)


def _describe(t: torch.Tensor) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def check_layer_inputs(sources, theta, max_sources: int, check_values: bool = True) -> Tuple[torch.Tensor, torch.Tensor]:
    """sources: [batch, neurons, n_sources] float32/float64, finite; theta: [batch, neurons], same
    dtype and device, finite, in [0, 1]. ``check_values=False`` skips the value checks (they read
    the data, which synchronizes a GPU)."""
    _check_float_tensor(sources, "sources", "[batch, neurons, n_sources]", 3)
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a torch.Tensor [batch, neurons], got {type(theta).__name__}")
    B, N, n = sources.shape
    if B < 1:
        raise ValueError(f"sources must hold at least one sample (batch >= 1), got {_describe(sources)}")
    if not 1 <= n <= max_sources:
        raise ValueError(f"sources must have 1..{max_sources} sources in the last dimension, got {n}")
    _check_theta_like(theta, sources, B, N)
    if check_values:
        validate_values(sources, theta)
    return sources, theta


def check_source_parts(parts, theta, max_sources: int) -> Tuple[List[torch.Tensor], torch.Tensor]:
    """sources given as a list or tuple of n tensors [batch, neurons] (F, C[, L] as the layer
    computed them): each float32/float64, of one shape, dtype and device, theta [batch, neurons]
    like them. Returns the parts as a list (values are not checked here)."""
    parts = list(parts)
    if not 1 <= len(parts) <= max_sources:
        raise ValueError(f"sources must hold 1..{max_sources} tensors [batch, neurons] (one per source), got {len(parts)}")
    first = parts[0]
    for i, p in enumerate(parts):
        _check_float_tensor(p, f"sources[{i}]", "[batch, neurons]", 2)
        if i and (p.shape != first.shape or p.dtype != first.dtype or p.device != first.device):
            raise ValueError(f"sources[{i}] must match sources[0] ({_describe(first)}), got {_describe(p)}")
    B, N = first.shape
    if B < 1:
        raise ValueError(f"sources must hold at least one sample (batch >= 1), got {_describe(first)}")
    if not isinstance(theta, torch.Tensor):
        raise TypeError(f"theta must be a torch.Tensor [batch, neurons], got {type(theta).__name__}")
    _check_theta_like(theta, first, B, N)
    return parts, theta


def _check_float_tensor(t, name: str, layout: str, dim: int) -> None:
    """``t`` a float32/float64 tensor of ``dim`` dimensions (``layout`` names them in the error)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor {layout}, got {type(t).__name__}")
    if t.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must be float32 or float64, got {t.dtype}")
    if t.dim() != dim:
        raise ValueError(f"{name} must be {layout}, got {_describe(t)}")


def _check_theta_like(theta: torch.Tensor, sources: torch.Tensor, B: int, N: int) -> None:
    """theta [batch, neurons] = [B, N] with the dtype and device of ``sources``."""
    if theta.dtype != sources.dtype:
        raise TypeError(f"theta must have the dtype of sources ({sources.dtype}), got {theta.dtype}")
    if theta.shape != (B, N):
        raise ValueError(f"theta must be [batch, neurons] = [{B}, {N}] like sources, got {_describe(theta)}")
    if theta.device != sources.device:
        raise ValueError(f"theta must be on the device of sources ({sources.device}), got {theta.device}")


def validate_values(sources: torch.Tensor, theta: torch.Tensor, name: str = "sources") -> None:
    """The value checks of :func:`check_layer_inputs`: ``name`` (sources) finite, theta finite and
    in [0, 1]."""
    if not sources.numel():
        return
    t = theta.detach()
    # one synchronization in the common case: theta in [0, 1] is false for NaN too
    if bool(torch.isfinite(sources).all() & ((t >= 0) & (t <= 1)).all()):
        return
    if not bool(torch.isfinite(sources).all()):
        raise ValueError(f"{name} must be finite (found NaN or Inf)")
    if not bool(torch.isfinite(t).all()):
        raise ValueError("theta must be finite (found NaN or Inf)")
    raise ValueError(
        f"theta must be a probability in [0, 1], got values in [{t.min().item():.6g}, {t.max().item():.6g}]"
    )


def check_distribution(p, n_sources) -> Tuple[torch.Tensor, int]:
    """p: [..., n_targets, K_1, ..., K_n] float32/float64 joint pmf: finite, >= 0, sums to 1."""
    if not isinstance(p, torch.Tensor):
        raise TypeError(f"p must be a torch.Tensor [..., n_targets, K_1, ..., K_n], got {type(p).__name__}")
    if p.dtype not in FLOAT_DTYPES:
        raise TypeError(f"p must be float32 or float64, got {p.dtype}")
    if n_sources is None:
        n_sources = p.dim() - 1
    if isinstance(n_sources, bool) or not isinstance(n_sources, int) or n_sources < 1:
        raise ValueError(f"n_sources must be an int >= 1, got {n_sources!r}")
    if p.dim() < n_sources + 1:
        raise ValueError(f"p must have at least n_sources + 1 = {n_sources + 1} dimensions, got {_describe(p)}")
    if p.numel() == 0:
        raise ValueError(f"p must not be empty, got {_describe(p)}")
    if not bool(torch.isfinite(p).all()):
        raise ValueError("p must be finite (found NaN or Inf)")
    if bool((p < 0).any()):
        raise ValueError("p must be nonnegative")
    total = p.sum(dim=list(range(p.dim() - n_sources - 1, p.dim())))
    tol = 1e-5 if p.dtype == torch.float32 else 1e-9
    if not bool(((total - 1).abs() <= tol).all()):
        raise ValueError(f"p must sum to 1 over its target and source axes, got sums in [{total.min().item()}, {total.max().item()}]")
    return p, n_sources


def kernel_tensor(name: str, t, backend: str, device=None, dtype=None, shape=None) -> torch.Tensor:
    """One argument of a fused kernel (docs/kernel_contract.md): a tensor on ``device`` (or any
    CPU device when ``device`` is "cpu"), of ``dtype`` and ``shape`` where given; returned detached
    and contiguous (never the caller's storage written)."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if device is not None and t.device != torch.device(device):
        raise ValueError(f"{name} must be on {device} for backend {backend!r}, got device {t.device}")
    if dtype is not None and t.dtype != dtype:
        raise TypeError(f"{name} must have dtype {dtype}, got {t.dtype}")
    if shape is not None and tuple(t.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(t.shape)}")
    return t.detach().contiguous()


def int_list(v) -> List[int]:
    """A list of Python ints from a sequence or tensor (``nbins``)."""
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    return [int(k) for k in v]
