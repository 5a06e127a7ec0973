"""The two pieces of log arithmetic that the oracle (reference.py) and the fused backends' autograd
glue both need, kept apart from both so that the oracle imports nothing of what it judges."""
from __future__ import annotations

import math

import torch

INV_LN2 = 1.0 / math.log(2.0)


def safe_log2(v: torch.Tensor, ok: torch.Tensor) -> torch.Tensor:
    """log2(v) where ok, 0 elsewhere - with a zero gradient (not NaN) where not ok."""
    return torch.where(ok, torch.log2(torch.where(ok, v, torch.ones_like(v))), torch.zeros_like(v))
