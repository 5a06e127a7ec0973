"""Activation functions of infomorphic neurons: source values -> firing probability theta.

Each activation takes the aggregated source values ``F, C[, L]`` (each ``[batch, neurons]``) and
returns ``theta = p(Y = +1)`` in ``[0, 1]``. The context and lateral sources only *modulate* the
feedforward drive: with ``F = 0`` the neuron fires with probability 1/2 whatever C and L say, so
the information about Y has to come through F (Makkeh et al., PNAS 2025, Methods).
"""
from __future__ import annotations

from typing import Dict, Type

import torch
from torch import nn

from ._engine import engine


class Activation(nn.Module):
    """Base class: ``n_sources`` is the number of source classes the activation reads."""

    n_sources: int = 0

    def extra_repr(self) -> str:  # pragma: no cover - cosmetic
        return ", ".join(f"{k}={v}" for k, v in self.config().items())

    def config(self) -> Dict[str, float]:
        return {}


class TrivariateActivation(Activation):
    """``A = F [(1 - a1 - a2) + a1 s(b1 F C) + a2 s(b2 F L)]``, ``theta = s(A)``, s = logistic.

    The paper's hidden-layer activation (a1 = a2 = 0.1, b1 = b2 = 2): context and lateral input
    scale the feedforward drive between ``(1 - a1 - a2) F`` and ``F`` and never flip its sign.
    """

    n_sources = 3

    def __init__(self, a1: float = 0.1, a2: float = 0.1, b1: float = 2.0, b2: float = 2.0):
        super().__init__()
        self.a1, self.a2, self.b1, self.b2 = float(a1), float(a2), float(b1), float(b2)

    def config(self):
        return {"a1": self.a1, "a2": self.a2, "b1": self.b1, "b2": self.b2}

    def forward(self, f: torch.Tensor, c: torch.Tensor, l: torch.Tensor) -> torch.Tensor:
        # the formula lives in the engine (ik.trivariate_activation): its fused kernel on CPU
        # float32 (one pass forward, one backward), torch ops elsewhere
        return engine().trivariate_activation(f, c, l, self.a1, self.a2, self.b1, self.b2)


class BivariateActivation(Activation):
    """``A = F [(1 - a) + 2 a s(b F M)]``, ``theta = s(A)``: a bivariate hidden neuron whose second
    source M (the context, or the lateral input) modulates the feedforward drive between
    ``(1 - a) F`` and ``(1 + a) F`` (a = 0.1, b = 2: the published bivariate setups' activation,
    k1 = 1 - a = 0.9); with M = 0 the gain is 1."""

    n_sources = 2

    def __init__(self, a: float = 0.1, b: float = 2.0):
        super().__init__()
        self.a, self.b = float(a), float(b)

    def config(self):
        return {"a": self.a, "b": self.b}

    def pre_activation(self, f, m, l=None):
        return f * ((1.0 - self.a) + 2.0 * self.a * torch.sigmoid(self.b * f * m))

    def forward(self, f, m, l=None):
        return torch.sigmoid(self.pre_activation(f, m))


class LinearActivation(Activation):
    """``A = F + wc C (+ wl L)``, ``theta = s(A)``: the linear variant (wc = wl = 0.1).

    Works for two sources (F, C) and three (F, C, L); ``n_sources`` is fixed at construction.
    """

    def __init__(self, n_sources: int = 3, wc: float = 0.1, wl: float = 0.1):
        super().__init__()
        if n_sources not in (2, 3):
            raise ValueError(f"LinearActivation: n_sources must be 2 or 3, got {n_sources}")
        self.n_sources = n_sources
        self.wc, self.wl = float(wc), float(wl)

    def config(self):
        return {"n_sources": self.n_sources, "wc": self.wc, "wl": self.wl}

    def pre_activation(self, f, c, l=None):
        a = f + self.wc * c
        if l is not None:
            a = a + self.wl * l
        return a

    def forward(self, f, c, l=None):
        return torch.sigmoid(self.pre_activation(f, c, l))


class FeedforwardActivation(Activation):
    """``theta = s(F)``: the output layer's activation; the context enters only through the goal."""

    n_sources = 2

    def pre_activation(self, f, c=None, l=None):
        return f

    def forward(self, f, c=None, l=None):
        return torch.sigmoid(f)


ACTIVATIONS: Dict[str, Type[Activation]] = {
    "trivariate": TrivariateActivation,
    "bivariate": BivariateActivation,
    "linear": LinearActivation,
    "feedforward": FeedforwardActivation,
}


def make_activation(name: str, n_sources: int) -> Activation:
    """Activation by name ('trivariate', 'bivariate', 'linear', 'feedforward') for ``n_sources``
    sources; 'trivariate' asked for two sources gives the bivariate one (the same kind of
    modulation, one modulating source)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}")
    if name == "linear":
        return LinearActivation(n_sources=n_sources)
    if name == "trivariate" and n_sources == 2:
        name = "bivariate"
    act = ACTIVATIONS[name]()
    if act.n_sources != n_sources:
        raise ValueError(f"activation {name!r} reads {act.n_sources} sources, the layer has {n_sources}")
    return act
