"""Binning of the continuous sources (docs/math.md section 1).

Fixed range ``[lo, hi]``: clamp x to ``[lo + 1e-4, hi]``, then bin ``k`` holds
``edge_k < x <= edge_{k+1}`` with ``K + 1`` equally spaced edges (``torch.bucketize(x, edges) - 1``).
Adaptive range: per batch and neuron, x is divided by ``max |x|`` (left alone where that is 0) and
binned over ``[-1, 1]`` by the same rule. Binning has no gradient.

:class:`Binning` holds exactly the arrays the fused kernels take (docs/kernel_contract.md), computed
once in the input dtype so that every backend puts every sample in the same bin.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Sequence, Tuple, Union

import torch

CLAMP_OFFSET = 1e-4
RangesArg = Union[str, Tuple[float, float], Sequence[Tuple[float, float]]]


@dataclass(frozen=True)
class Binning:
    """Binning of ``n`` sources: ``edges [n, Kmax + 1]`` (padded with +inf), ``nbins``,
    ``clamp_lo``/``clamp_hi`` ``[n]``, all in the sources' dtype and device, and ``adaptive``."""

    nbins: List[int]
    edges: torch.Tensor
    clamp_lo: torch.Tensor
    clamp_hi: torch.Tensor
    adaptive: bool

    @property
    def n_sources(self) -> int:
        return len(self.nbins)


def _as_int_bins(bins, n: int, name: str = "bins") -> List[int]:
    if isinstance(bins, torch.Tensor):
        bins = bins.tolist()
    if isinstance(bins, bool):
        raise TypeError(f"{name} must be an int or {n} ints, got {bins!r}")
    if isinstance(bins, int):
        bins = [bins] * n
    try:
        bins = list(bins)
    except TypeError:
        raise TypeError(f"{name} must be an int or a sequence of {n} ints, got {type(bins).__name__}") from None
    if len(bins) != n:
        raise ValueError(f"{name} must be an int or one int per source ({n}), got {len(bins)} values")
    out = []
    for b in bins:
        if isinstance(b, bool) or not isinstance(b, int) and not (hasattr(b, "__index__")):
            raise TypeError(f"{name} must hold ints, got {b!r}")
        b = int(b)
        if b <= 0:
            raise ValueError(f"{name} must be >= 1, got {b}")
        out.append(b)
    return out


def _as_ranges(ranges, n: int) -> Union[str, List[Tuple[float, float]]]:
    if isinstance(ranges, str):
        if ranges != "adaptive":
            raise ValueError(f"ranges must be (lo, hi), a list of per-source (lo, hi) or 'adaptive', got {ranges!r}")
        return ranges
    if isinstance(ranges, torch.Tensor):
        ranges = ranges.tolist()
    try:
        seq = list(ranges)
    except TypeError:
        raise TypeError(f"ranges must be (lo, hi), a list of (lo, hi) or 'adaptive', got {type(ranges).__name__}") from None
    if len(seq) == 2 and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in seq):
        pairs = [tuple(seq)] * n
    else:
        if len(seq) != n:
            raise ValueError(f"ranges must be one (lo, hi) or one per source ({n}), got {len(seq)} entries")
        pairs = []
        for p in seq:
            try:
                lo, hi = p
            except (TypeError, ValueError):
                raise ValueError(f"ranges: each entry must be a pair (lo, hi), got {p!r}") from None
            pairs.append((lo, hi))
    out = []
    for lo, hi in pairs:
        if isinstance(lo, bool) or isinstance(hi, bool):
            raise TypeError(f"ranges must hold numbers, got ({lo!r}, {hi!r})")
        lo, hi = float(lo), float(hi)
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"ranges must be finite, got ({lo}, {hi})")
        if not lo < hi:
            raise ValueError(f"ranges must have lo < hi, got ({lo}, {hi})")
        if hi - lo <= CLAMP_OFFSET:
            raise ValueError(f"ranges must be wider than the clamp offset {CLAMP_OFFSET}, got ({lo}, {hi})")
        out.append((lo, hi))
    return out


def make_binning(n: int, bins=20, ranges: RangesArg = (-20.0, 20.0), dtype=torch.float64, device="cpu") -> Binning:
    """Validate ``bins``/``ranges`` for ``n`` sources and build the kernel arrays."""
    nbins = _as_int_bins(bins, n)
    rng = _as_ranges(ranges, n)
    adaptive = rng == "adaptive"
    pairs = [(-1.0, 1.0)] * n if adaptive else rng
    kmax = max(nbins)
    edges = torch.full((n, kmax + 1), math.inf, dtype=dtype, device=device)
    for j, ((lo, hi), k) in enumerate(zip(pairs, nbins)):
        edges[j, : k + 1] = torch.linspace(lo, hi, k + 1, dtype=dtype, device=device)
    clamp_lo = torch.tensor([lo + CLAMP_OFFSET for lo, _ in pairs], dtype=dtype, device=device)
    clamp_hi = torch.tensor([hi for _, hi in pairs], dtype=dtype, device=device)
    return Binning(nbins, edges, clamp_lo, clamp_hi, adaptive)


def adaptive_scale(x: torch.Tensor) -> torch.Tensor:
    """x / max|x| per (neuron, source) over the batch; unchanged where max|x| = 0. x: [B, N, n]."""
    scale = x.abs().amax(dim=0, keepdim=True)
    return torch.where(scale > 0, x / torch.where(scale > 0, scale, torch.ones_like(scale)), x)


def bin_indices(x: torch.Tensor, binning: Binning) -> torch.Tensor:
    """Bin index of every sample: x [B, N, n] -> int64 [B, N, n] (no gradient)."""
    x = x.detach()
    if binning.adaptive:
        x = adaptive_scale(x)
    out = torch.empty(x.shape, dtype=torch.int64, device=x.device)
    for j, k in enumerate(binning.nbins):
        v = x[..., j].clamp(binning.clamp_lo[j], binning.clamp_hi[j])
        b = torch.bucketize(v, binning.edges[j, : k + 1].contiguous()) - 1
        out[..., j] = b.clamp_(0, k - 1)
    return out
