"""Public API: ``pid``, ``pid_goal``, ``pid_distribution``.

All three return atoms in gamma order (PID_MATH.md section 3) with H_res beside them. ``pid`` and
``pid_goal`` take a layer's per-sample sources and firing probabilities, bin them, and run the
backend chosen by :mod:`.dispatch`.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from . import _validate, dispatch, lattice
from .autograd import pid_fused
from .binning import bin_indices, make_binning
from .reference import pid_dense, pid_dense_samples, pid_samples

MAX_SOURCES_FUSED = 4


@dataclass
class PIDResult:
    """Result of a PID. Leading dims: ``[neurons]`` for ``pid``, the batch dims for ``pid_distribution``.

    atoms, redundancies: [..., n_atoms] in gamma order (bits); h_res, h_y, mutual_information: [...];
    goal: [...] (only when a gamma was given; differentiable with respect to theta);
    names: atom names in that order; backend: the backend that ran.
    """

    atoms: torch.Tensor
    redundancies: torch.Tensor
    h_res: torch.Tensor
    h_y: torch.Tensor
    mutual_information: torch.Tensor
    names: List[str]
    backend: str
    n_sources: int
    goal: Optional[torch.Tensor] = None

    def as_dict(self, index: int = 0) -> dict:
        """Atoms and H_res of one neuron (or batch element) by name, as Python floats."""
        row = self.atoms.reshape(-1, self.atoms.shape[-1])[index].tolist()
        out = dict(zip(self.names, row))
        out[lattice.H_RES] = float(self.h_res.reshape(-1)[index])
        return out


@functools.lru_cache(maxsize=64)
def _tables(n: int, device: torch.device):
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=torch.int32, device=device)
    moebius = torch.as_tensor(lattice.moebius_matrix(n), dtype=torch.float64, device=device)
    return coef, moebius


def _result(red, h_y, goal, n, labels, backend) -> PIDResult:
    _, moebius = _tables(n, red.device)
    atoms = red @ moebius.T.to(red.dtype)
    mi = red[..., lattice.full_index(n)]
    return PIDResult(
        atoms=atoms,
        redundancies=red,
        h_res=h_y - mi,
        h_y=h_y,
        mutual_information=mi,
        names=lattice.atom_names(n, labels),
        backend=backend,
        n_sources=n,
        goal=goal,
    )


def pid(
    sources: torch.Tensor,
    theta: torch.Tensor,
    bins=20,
    ranges=(-20.0, 20.0),
    backend: str = "auto",
    gamma=None,
    labels: Optional[Sequence[str]] = None,
    validate: bool = True,
) -> PIDResult:
    """I_sx PID of every neuron of a layer for one batch.

    sources: [batch, neurons, n_sources] float32/float64 aggregated inputs (F, C[, L]);
    theta: [batch, neurons] firing probability p(y = fire | sample), same dtype and device.
    bins: int or one int per source (>= 1). ranges: (lo, hi), one (lo, hi) per source, or
    "adaptive" (per neuron, x / max|x| binned over [-1, 1]). gamma: optional goal (n_atoms + 1
    values, H_res last, or a dict of atom names); then ``result.goal`` [neurons] is differentiable
    with respect to theta. labels: source names for atom names (e.g. "FCL").
    ``validate=False`` skips the value checks (NaN/Inf, theta in [0, 1]), which synchronize a GPU.

    Fused backends return non-differentiable atoms; with backend "reference"/"reference_dense"
    everything is differentiable through torch autograd.
    """
    max_n = lattice.MAX_SOURCES if backend in dispatch.REFERENCE_BACKENDS else MAX_SOURCES_FUSED
    sources, theta = _validate.check_layer_inputs(sources, theta, max_n, validate)
    B, N, n = sources.shape
    if labels is not None:
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"labels must name the {n} sources, got {len(labels)}")
    binning = make_binning(n, bins, ranges, sources.dtype, sources.device)
    name = dispatch.choose(backend, sources.device)
    gamma_np = lattice.gamma_vector(gamma, n, labels) if gamma is not None else None
    if name in dispatch.REFERENCE_BACKENDS:
        b = bin_indices(sources, binning)
        fn = pid_samples if name == "reference" else pid_dense_samples
        red, h_y = fn(b, theta, binning.nbins)
        goal = None
        if gamma_np is not None:
            w, g_h = lattice.goal_weights(gamma_np, n)
            goal = red @ torch.as_tensor(w, dtype=red.dtype, device=red.device) + g_h * h_y
        return _result(red, h_y, goal, n, labels, name)
    if n > MAX_SOURCES_FUSED:
        raise ValueError(f"backend {name!r} serves up to {MAX_SOURCES_FUSED} sources, got {n}")
    coef, _ = _tables(n, sources.device)
    if gamma_np is not None:
        w_np, g_h = lattice.goal_weights(gamma_np, n)
    else:
        w_np, g_h = [0.0] * coef.shape[0], 0.0
    w = torch.as_tensor(w_np, dtype=torch.float64, device=sources.device)
    need_grad = gamma_np is not None and theta.requires_grad and torch.is_grad_enabled()
    goal, red, h_y, _ = pid_fused(
        sources.detach().contiguous(),
        theta.contiguous(),
        binning.edges,
        binning.nbins,
        binning.clamp_lo,
        binning.clamp_hi,
        binning.adaptive,
        coef,
        w,
        g_h,
        need_grad,
        name,
    )
    return _result(red, h_y, goal if gamma_np is not None else None, n, labels, name)


def pid_goal(
    sources: torch.Tensor,
    theta: torch.Tensor,
    gamma,
    bins=20,
    ranges=(-20.0, 20.0),
    backend: str = "auto",
    labels: Optional[Sequence[str]] = None,
    validate: bool = True,
) -> torch.Tensor:
    """Goal ``G = gamma . (atoms, H_res)`` of every neuron: [neurons], differentiable with respect to
    theta (theta(silent) = 1 - theta). Arguments as in :func:`pid`; gamma is required."""
    if gamma is None:
        raise ValueError("gamma must be given (n_atoms + 1 values, H_res last, or a dict of atom names)")
    return pid(sources, theta, bins, ranges, backend, gamma, labels, validate).goal


def pid_distribution(p: torch.Tensor, n_sources: Optional[int] = None, labels=None) -> PIDResult:
    """I_sx PID of joint pmfs. p: [..., n_targets, K_1, ..., K_n] (target axis right after the batch
    dims; any target alphabet). ``n_sources`` defaults to ``p.dim() - 1`` (no batch dims).
    Differentiable with respect to p. Uses the dense algorithm."""
    p, n = _validate.check_distribution(p, n_sources)
    if n > lattice.MAX_SOURCES:
        raise ValueError(f"n_sources must be at most {lattice.MAX_SOURCES}, got {n}")
    red, h_y = pid_dense(p, n)
    return _result(red, h_y, None, n, labels, "reference_dense")


def available_backends(device=None) -> List[str]:
    """Names of the backends that can run here (for ``device`` if given)."""
    return dispatch.available_backends(device)
