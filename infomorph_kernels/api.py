"""Public API: ``pid``, ``pid_goal``, ``pid_distribution``.

All three return atoms in gamma order (docs/math.md section 3) with H_res beside them. ``pid`` and
``pid_goal`` take a layer's per-sample sources and firing probabilities, bin them, and run the
backend chosen by :mod:`.dispatch`.
"""
from __future__ import annotations

import math
import numbers
import weakref
from dataclasses import dataclass
from typing import List, Optional, Sequence

import torch

from . import _validate, dispatch, lattice
from .autograd import CellsGoal, CPUGoal, PIDFused, pid_fused
from .binning import _as_int_bins, bin_indices, make_binning
from .reference import (dense_joint, pid_cells, pid_dense, pid_dense_local, pid_dense_published, pid_dense_samples,
                        pid_samples, pid_samples_local)

MAX_SOURCES_FUSED = lattice.MAX_SOURCES_FUSED


@dataclass
class PIDResult:
    """Result of a PID. Leading dims: ``[neurons]`` for ``pid``, the batch dims for ``pid_distribution``.

    atoms, redundancies: [..., n_atoms] in gamma order (bits); h_res, h_y, mutual_information: [...];
    goal: [...] (only when a gamma was given; differentiable with respect to theta);
    names: atom names in that order; backend: the backend that ran.

    With ``local=True`` also the local (pointwise) atoms, SxPID's definitions
    (docs/kernel_contract.md, "Local atoms"), in bits, atoms in gamma order without H_res:
    ``local_informative``, ``local_misinformative`` and ``local_atoms`` (their difference), and
    ``local_h_res`` (-log2 p(y | s)). ``pid_distribution``: ``[..., n_targets, K_1, ..., K_n,
    n_atoms]`` per realization (``local_h_res`` without the last axis); ``pid``: ``[batch,
    neurons, 2, n_atoms]`` at each sample's joint cell for both outputs (index 0 = silent,
    1 = fire; ``local_h_res [batch, neurons, 2]``). Realizations of probability 0 hold 0.
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
    local_atoms: Optional[torch.Tensor] = None
    local_informative: Optional[torch.Tensor] = None
    local_misinformative: Optional[torch.Tensor] = None
    local_h_res: Optional[torch.Tensor] = None

    @classmethod
    def from_redundancies(cls, red: torch.Tensor, h_y: torch.Tensor, goal: Optional[torch.Tensor] = None,
                          labels: Optional[Sequence[str]] = None, backend: str = "reference") -> "PIDResult":
        """The result of redundancies ``red [..., n_atoms]`` (gamma order, bits) and H(Y) ``h_y [...]``:
        atoms by the Moebius inversion, H_res = H(Y) - I(Y:S); n from the number of atoms."""
        n = lattice.n_sources_of(red.shape[-1])
        return _result(red, h_y, goal, n, labels, backend)

    def as_dict(self, index: int = 0) -> dict:
        """Atoms and H_res of one neuron (or batch element) by name, as Python floats."""
        row = self.atoms.reshape(-1, self.atoms.shape[-1])[index].tolist()
        out = dict(zip(self.names, row))
        out[lattice.H_RES] = float(self.h_res.reshape(-1)[index])
        return out


@dataclass(frozen=True)
class _Lattice:
    """What the API needs of the lattice of n sources, as plain data (cheap to look up in a
    torch.compile-traced call, which must not trace the lattice's construction)."""

    n_atoms: int
    full_index: int
    names: tuple
    coef: torch.Tensor  # int32 [A, 2^n - 1]
    moebius: torch.Tensor  # float64 [A, A]


_LATTICES = {}
_ON_DEVICE = {}
_FIXED_GOALS = {}
_TENSOR_GOALS = {}  # (id, n, device) -> (weakref to the CPU gamma tensor, its _version, wg)


def _lattice(n: int) -> _Lattice:
    lat = _LATTICES.get(n)
    if lat is None:
        lat = _LATTICES[n] = _Lattice(
            lattice.n_atoms(n),
            lattice.full_index(n),
            tuple(lattice.atom_names(n)),
            torch.as_tensor(lattice.coef_matrix(n), dtype=torch.int32),
            torch.as_tensor(lattice.moebius_matrix(n), dtype=torch.float64),
        )
    return lat


for _n in range(1, MAX_SOURCES_FUSED + 1):  # built at import (~0.1 s), so compiled code finds them
    _lattice(_n)


def _tables(n: int, device: torch.device):
    """(coef int32, moebius float64) on ``device``, cached per device."""
    key = (n, str(device))
    pair = _ON_DEVICE.get(key)
    if pair is None:
        lat = _lattice(n)
        pair = _ON_DEVICE[key] = (lat.coef.to(device), lat.moebius.to(device))
    return pair


LOCAL_BACKENDS = ("reference", "reference_dense", "cpu")


def _with_local(res: PIDResult, plus: torch.Tensor, minus: torch.Tensor, h_res: torch.Tensor) -> PIDResult:
    """Attach the local atoms: the Moebius inversion of both local redundancy parts."""
    _, moebius = _tables(res.n_sources, plus.device)
    mt = moebius.T.to(plus.dtype)
    res.local_informative = plus @ mt
    res.local_misinformative = minus @ mt
    res.local_atoms = res.local_informative - res.local_misinformative
    res.local_h_res = h_res
    return res


_BINNINGS = {}
_NO_GOAL = {}


def _no_goal(A: int, device) -> torch.Tensor:
    """Zero goal weights [A + 1] (a call without gamma), cached per device."""
    key = (A, str(device))
    z = _NO_GOAL.get(key)
    if z is None:
        z = _NO_GOAL[key] = torch.zeros(A + 1, dtype=torch.float64, device=device)
    return z


_SPLITS = {}  # id(wg) -> (wg, wg[:-1], float(wg[-1])); holds wg, so its id is not reused meanwhile


def _split_weights(wg: torch.Tensor):
    """(weights on the redundancies, gamma_H) of a CPU ``wg`` that needs no gradient, cached: the
    weights come from the API's caches (never written in place), and a slice plus a float() of a
    tensor cost microseconds a call."""
    hit = _SPLITS.get(id(wg))
    if hit is not None and hit[0] is wg:
        return hit[1], hit[2]
    if len(_SPLITS) >= 256:
        _SPLITS.clear()
    _SPLITS[id(wg)] = hit = (wg, wg[:-1], float(wg[-1]))
    return hit[1], hit[2]


def _freeze(v):
    """A hashable form of bins / ranges (None when there is none: such calls are not cached)."""
    if isinstance(v, (str, int, float)):
        return v
    if isinstance(v, (list, tuple)):
        out = tuple(_freeze(e) for e in v)
        return None if any(e is None for e in out) else out
    return None


def _binning(n, bins, ranges, dtype, device):
    """make_binning, cached per (n, bins, ranges, dtype, device): a layer calls with the same
    arguments every step, and building the edge tensors cost tens of microseconds."""
    fb, fr = _freeze(bins), _freeze(ranges)
    if fb is None or fr is None or isinstance(bins, bool):
        return make_binning(n, bins, ranges, dtype, device)
    key = (n, fb, fr, dtype, str(device))
    b = _BINNINGS.get(key)
    if b is None:
        if len(_BINNINGS) >= 256:
            _BINNINGS.clear()
        b = _BINNINGS[key] = make_binning(n, bins, ranges, dtype, device)
    return b


def _result(red, h_y, goal, n, labels, backend) -> PIDResult:
    _, moebius = _tables(n, red.device)
    atoms = red @ moebius.T.to(red.dtype)
    lat = _lattice(n)
    mi = red[..., lat.full_index]
    return PIDResult(
        atoms=atoms,
        redundancies=red,
        h_res=h_y - mi,
        h_y=h_y,
        mutual_information=mi,
        names=list(lat.names) if labels is None else lattice.atom_names(n, labels),
        backend=backend,
        n_sources=n,
        goal=goal,
    )


def _goal_weights(gamma, n, labels, device, validate) -> Optional[torch.Tensor]:
    """gamma -> ``wg`` [A + 1] float64 (weights on the redundancies, then gamma_H), or None.

    A tensor gamma stays a tensor (traceable by torch.compile, differentiable: goals can be learned);
    lists and dicts of names go through :func:`lattice.gamma_vector`.
    """
    if gamma is None:
        return None
    lat = _lattice(n)
    a = lat.n_atoms
    if isinstance(gamma, torch.Tensor):
        if gamma.shape != (a + 1,):
            raise ValueError(
                f"gamma must have n_atoms + 1 = {a + 1} entries for {n} sources (H_res last), got shape {tuple(gamma.shape)}"
            )
        if not gamma.is_floating_point():
            raise TypeError(f"gamma must be a floating tensor, got {gamma.dtype}")
        if gamma.requires_grad or gamma.device.type != "cpu" or torch.compiler.is_compiling():
            if validate and not bool(torch.isfinite(gamma).all()):
                raise ValueError("gamma must be finite (no NaN/Inf)")
            g = gamma.to(device=device, dtype=torch.float64)
        else:  # a fixed goal held as a CPU tensor: reading its values costs no synchronization
            # the same tensor, unchanged since (its version counter), maps to the same weights;
            # lattice.gamma_vector refuses NaN/Inf, so only finite goals are ever cached
            hit = _TENSOR_GOALS.get((id(gamma), n, str(device)))
            if hit is not None and hit[0]() is gamma and hit[1] == gamma._version:
                return hit[2]
            wg = _goal_weights(gamma.detach().numpy(), n, labels, device, validate)
            if len(_TENSOR_GOALS) >= 64:
                _TENSOR_GOALS.clear()
            _TENSOR_GOALS[(id(gamma), n, str(device))] = (weakref.ref(gamma), gamma._version, wg)
            return wg
    if not isinstance(gamma, torch.Tensor):
        # fixed goals (lists, dicts of names) are the common case of a training loop: their weights
        # are cached per device, so a step does no host-to-device copy (which could synchronize);
        # a list or tuple of Python floats is looked up as it is (no conversion per call)
        plain = (isinstance(gamma, (list, tuple)) and len(gamma) == a + 1
                 and all(type(v) is float for v in gamma))
        if plain:
            wg = _FIXED_GOALS.get((n, str(device), tuple(gamma)))
            if wg is not None:
                return wg
        g_np = lattice.gamma_vector(gamma, n, labels)
        key = (n, str(device), g_np.tobytes())
        wg = _FIXED_GOALS.get(key)
        if wg is not None and plain:
            _FIXED_GOALS[(n, str(device), tuple(gamma))] = wg
        if wg is None:
            if len(_FIXED_GOALS) >= 256:
                _FIXED_GOALS.clear()
            w_np, g_h = lattice.goal_weights(g_np, n)
            wg = _FIXED_GOALS[key] = torch.tensor([*w_np, g_h], dtype=torch.float64, device=device)
            if plain:
                _FIXED_GOALS[(n, str(device), tuple(gamma))] = wg
        return wg
    _, moebius = _tables(n, device)
    w = moebius.T @ g[:-1]
    full = torch.zeros(a + 1, dtype=torch.float64, device=device)
    full[lat.full_index] = 1.0
    return torch.cat([w, g[-1:]]) - full * g[-1]


def pid(
    sources: torch.Tensor,
    theta: torch.Tensor,
    bins=20,
    ranges=(-20.0, 20.0),
    backend: str = "auto",
    gamma=None,
    labels: Optional[Sequence[str]] = None,
    validate: bool = True,
    local: bool = False,
) -> PIDResult:
    """I_sx PID of every neuron of a layer for one batch.

    sources: [batch, neurons, n_sources] float32/float64 aggregated inputs (F, C[, L]), or a list
    of n tensors [batch, neurons] (the CPU engine reads them in place; the same numbers);
    theta: [batch, neurons] firing probability p(y = fire | sample), same dtype and device.
    bins: int or one int per source (>= 1). ranges: (lo, hi), one (lo, hi) per source, or
    "adaptive" (per neuron, x / max|x| binned over [-1, 1]). gamma: optional goal (n_atoms + 1
    values, H_res last, or a dict of atom names); then ``result.goal`` [neurons] is differentiable
    with respect to theta. labels: source names for atom names (e.g. "FCL").
    ``validate=False`` skips the value checks (NaN/Inf, theta in [0, 1]), which synchronize a GPU.

    ``local=True`` adds the local atoms at every sample's cell for both outputs (backends
    "reference", "reference_dense" and "cpu"; not differentiable): see :class:`PIDResult`.

    Fused backends return non-differentiable atoms; with backend "reference"/"reference_dense"
    everything is differentiable through torch autograd.
    """
    return _pid(sources, theta, bins, ranges, backend, gamma, labels, validate, local, False)


def _pid(sources, theta, bins, ranges, backend, gamma, labels, validate, local, goal_only):
    """pid(); ``goal_only``: return just the goal tensor (pid_goal), skipping the atoms."""
    max_n = lattice.MAX_SOURCES if backend in dispatch.REFERENCE_BACKENDS else MAX_SOURCES_FUSED
    parts = None  # sources given as n tensors [B, N]: stacked only where a backend needs [B, N, n]
    if isinstance(sources, (list, tuple)):
        parts, theta = _validate.check_source_parts(sources, theta, max_n)
        n, dtype, device = len(parts), parts[0].dtype, parts[0].device
    else:
        sources, theta = _validate.check_layer_inputs(sources, theta, max_n, check_values=False)
        n, dtype, device = sources.shape[2], sources.dtype, sources.device
    if labels is not None:
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"labels must name the {n} sources, got {len(labels)}")
    binning = _binning(n, bins, ranges, dtype, device)
    name = dispatch.choose(backend, device)
    if not isinstance(local, bool):
        raise TypeError(f"local must be a bool, got {type(local).__name__}")
    if local and name not in LOCAL_BACKENDS:
        raise ValueError(f"local=True is supported by backends {list(LOCAL_BACKENDS)}, not by {name!r}")
    compiling = torch.compiler.is_compiling()
    if parts is not None and (name != "cpu" or local or compiling):  # no path but the lean CPU call takes parts
        sources, parts = torch.stack(parts, -1), None
    # the CPU engine checks the values while it bins (no extra pass, no extra synchronization)
    engine_checks = validate and name == "cpu" and not compiling
    if validate and not engine_checks:
        _validate.validate_values(sources, theta)
    wg = _goal_weights(gamma, n, labels, device, validate)
    path = dispatch.route(name, local, compiling, wg is not None and wg.requires_grad)
    if parts is not None and path != "cpu_goal":  # a goal being learned: the generic path
        sources, parts = torch.stack(parts, -1), None
    if path == "reference":
        return _run_reference(sources, theta, binning, wg, n, labels, name, local, goal_only)
    if n > MAX_SOURCES_FUSED:
        raise ValueError(f"backend {name!r} serves up to {MAX_SOURCES_FUSED} sources, got {n}")
    coef, _ = _tables(n, device)
    has_goal = wg is not None
    if not has_goal:
        wg = _no_goal(coef.shape[0], device)
    need_grad = has_goal and theta.requires_grad and torch.is_grad_enabled()
    if path == "cpu_goal":
        # one engine call computes the goal too (autograd.CPUGoal); separate sources go in as they
        # are (the engine's blocked transposition reads each in place)
        w, gamma_h = _split_weights(wg)
        x = tuple(p.detach().contiguous() for p in parts) if parts is not None else sources.detach().contiguous()
        goal, red, h_y = CPUGoal.apply(x, theta.contiguous(), binning, coef, w, gamma_h, need_grad, engine_checks)
        if goal_only:
            return goal
        return _result(red, h_y, goal if has_goal else None, n, labels, name)
    args = (sources.detach().contiguous(), theta.contiguous(), binning.edges, binning.nbins, binning.clamp_lo,
            binning.clamp_hi, binning.adaptive, coef, wg, need_grad, name)
    loc = None
    if path == "local":
        # one pass gives the local atoms and the redundancies; a goal's gradient needs the fused pass too
        from .cpu_backend import local_kernel_cpu

        _, moebius = _tables(n, sources.device)
        red, h_y, *loc = local_kernel_cpu(args[0], theta.detach().contiguous(), binning, coef, moebius,
                                          check_values=engine_checks)
        goal = (red @ wg[:-1].to(red.dtype) + wg[-1].to(red.dtype) * h_y) if has_goal else None
    if path != "local" or need_grad:
        if compiling:
            goal, red, h_y, _ = pid_fused(*args)
        else:
            goal, red, h_y, _ = PIDFused.apply(*args, engine_checks)
    if goal_only:
        return goal
    res = _result(red, h_y, goal if has_goal else None, n, labels, name)
    if loc is not None:
        res.local_informative, res.local_misinformative, res.local_atoms, res.local_h_res = loc
    return res


def _run_reference(sources, theta, binning, wg, n, labels, name, local, goal_only):
    """The reference backends' path: per-sample ("reference") or dense ("reference_dense") sums."""
    b = bin_indices(sources, binning)
    fn = pid_samples if name == "reference" else pid_dense_samples
    red, h_y = fn(b, theta, binning.nbins)
    goal = None
    if wg is not None:
        wg = wg.to(red.dtype)
        goal = red @ wg[:-1] + wg[-1] * h_y
    if goal_only:
        return goal
    res = _result(red, h_y, goal, n, labels, name)
    if local:
        res = _with_local(res, *_reference_local(b, theta, binning.nbins, name))
    return res


def _reference_local(b, theta, nbins, name):
    """(plus, minus, h_res) per sample for the reference backends (y = silent, fire)."""
    if name == "reference":
        return pid_samples_local(b, theta, nbins)
    # reference_dense: the dense pmf's local values, read at each sample's cell
    B, N, n = b.shape
    p = dense_joint(b, theta.detach(), nbins)  # [N, 2 (fire, silent), K...]
    plus, minus, h_res = pid_dense_local(p, n)
    A = plus.shape[-1]
    flat = torch.zeros_like(b[..., 0])
    for j in range(n):
        flat = flat * nbins[j] + b[..., j]
    idx = flat.T  # [N, B]
    out = []
    for t, last in ((plus, (A,)), (minus, (A,)), (h_res, ())):
        t = t.reshape(N, 2, -1, *last).flip(1)  # y = silent, fire
        g = torch.stack([t[:, y].gather(1, idx.view(N, B, *([1] * len(last))).expand(N, B, *last)) for y in range(2)], 2)
        out.append(g.transpose(0, 1))  # [B, N, 2, ...]
    return tuple(out)


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
    return _pid(sources, theta, bins, ranges, backend, gamma, labels, validate, False, True)


NUMERICS = ("exact", "published")


def _check_numerics(numerics):
    if numerics not in NUMERICS:
        raise ValueError(f"numerics must be one of {list(NUMERICS)}, got {numerics!r}")


def pid_distribution(p: torch.Tensor, n_sources: Optional[int] = None, labels=None, local: bool = False,
                     numerics: str = "exact") -> PIDResult:
    """I_sx PID of joint pmfs. p: [..., n_targets, K_1, ..., K_n] (target axis right after the batch
    dims; any target alphabet). ``n_sources`` defaults to ``p.dim() - 1`` (no batch dims).
    Differentiable with respect to p. Uses the dense algorithm. ``local=True`` adds the local
    atoms of every realization (see :class:`PIDResult`). ``numerics="published"``: the published
    infomorphic code's numerics instead of the exact values (1e-10 added to the denominators and
    inside H(Y)'s log, ratios below 1e-7 replaced by 1, the union probability detached; its
    ``h_y`` carries the offset too), to reproduce that code's numbers."""
    p, n = _validate.check_distribution(p, n_sources)
    if n > lattice.MAX_SOURCES:
        raise ValueError(f"n_sources must be at most {lattice.MAX_SOURCES}, got {n}")
    if not isinstance(local, bool):
        raise TypeError(f"local must be a bool, got {type(local).__name__}")
    _check_numerics(numerics)
    if numerics == "published":
        if local:
            raise ValueError("local=True is defined for numerics='exact' only")
        red, h_y = pid_dense_published(p, n)
        return _result(red, h_y, None, n, labels, "reference_dense")
    red, h_y = pid_dense(p, n)
    res = _result(red, h_y, None, n, labels, "reference_dense")
    if local:
        res = _with_local(res, *pid_dense_local(p, n))
    return res


BINNED_BACKENDS = ("auto", "cpu", "reference")


def pid_binned(bins: torch.Tensor, thetas: torch.Tensor, nbins, numerics: str = "exact", gamma=None, labels=None,
               backend: str = "auto") -> PIDResult:
    """I_sx PID of pre-binned samples of a layer, any target alphabet, over the occupied cells.

    bins: [batch, neurons, n_sources] integer bin indices, ``0 <= bins[..., j] < nbins[j]``;
    thetas: [batch, neurons, n_targets] each sample's target distribution, every column as given
    (none derived as 1 - another); nbins: one int per source. ``numerics`` "exact" (I_sx as
    defined) or "published" (the published code's numerics, see :func:`pid_distribution`), the
    latter equal to that code on the dense theta-weighted histogram of these samples. gamma: an
    optional goal as in :func:`pid`; ``result.goal`` [neurons] is then differentiable with
    respect to thetas (every column). backend: "cpu" (the engine's fused forward and analytic
    backward, float64 inside, up to 4 sources and 2^24 joint cells; results in float64),
    "reference" (torch autograd in thetas' dtype: atoms differentiable too) or "auto" (cpu where
    it serves, else reference)."""
    _check_numerics(numerics)
    if backend not in BINNED_BACKENDS:
        raise ValueError(f"backend must be one of {list(BINNED_BACKENDS)}, got {backend!r}")
    if not isinstance(bins, torch.Tensor) or bins.dtype not in (torch.int64, torch.int32, torch.int16, torch.uint8):
        raise TypeError(f"bins must be an integer tensor [batch, neurons, n_sources], got {getattr(bins, 'dtype', type(bins).__name__)}")
    if bins.dim() != 3 or bins.shape[0] < 1 or bins.shape[1] < 1 or bins.shape[2] < 1:
        raise ValueError(f"bins must be [batch, neurons, n_sources] with every size >= 1, got shape {tuple(bins.shape)}")
    B, N, n = bins.shape
    if n > lattice.MAX_SOURCES:
        raise ValueError(f"bins has {n} sources; at most {lattice.MAX_SOURCES} are served")
    if not isinstance(thetas, torch.Tensor) or thetas.dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"thetas must be a float32/float64 tensor [batch, neurons, n_targets], got {getattr(thetas, 'dtype', type(thetas).__name__)}")
    if thetas.dim() != 3 or tuple(thetas.shape[:2]) != (B, N) or thetas.shape[2] < 1:
        raise ValueError(f"thetas must be [batch, neurons, n_targets] = [{B}, {N}, T], got shape {tuple(thetas.shape)}")
    if thetas.device != bins.device:
        raise ValueError(f"bins and thetas must be on one device, got {bins.device} and {thetas.device}")
    if labels is not None and len(list(labels)) != n:
        raise ValueError(f"labels must name the {n} sources, got {len(list(labels))}")
    nb = _as_int_bins(nbins, n, "nbins")
    with torch.no_grad():
        if not bool(torch.isfinite(thetas).all()) or bool((thetas < 0).any()):
            raise ValueError("thetas must be finite and nonnegative")
        top = torch.as_tensor(nb, device=bins.device)
        if bool((bins < 0).any()) or bool((bins >= top).any()):
            raise ValueError(f"bins must lie in [0, nbins) per source, nbins = {list(nb)}")
    wg = _goal_weights(gamma, n, labels, thetas.device, True)
    from . import cpu_backend

    joint = 1
    for k in nb:
        joint *= int(k)
    fits = thetas.device.type == "cpu" and n <= MAX_SOURCES_FUSED and joint <= cpu_backend.CELLS_MAX_JOINT
    if backend == "cpu" and not (fits and cpu_backend.is_available()):
        why = cpu_backend.unavailable_reason() or ("it serves CPU tensors, up to "
                                                  f"{MAX_SOURCES_FUSED} sources and 2^24 joint cells")
        raise ValueError(f"pid_binned: backend 'cpu' cannot serve this call: {why}")
    published = numerics == "published"
    if backend == "cpu" or (backend == "auto" and fits and cpu_backend.is_available()):
        coef, _ = _tables(n, thetas.device)
        need_grad = wg is not None and thetas.requires_grad and torch.is_grad_enabled()
        wfix = wg.detach() if wg is not None else None
        goal, red, h_y = CellsGoal.apply(bins, thetas, list(nb), coef, wfix, published, need_grad)
        if wg is not None and wg.requires_grad:  # a learnable goal: dG/dwg is (red, h_y)
            goal = goal + torch.cat([red, h_y[:, None]], 1) @ (wg - wfix)
        return _result(red, h_y, goal, n, labels, "cpu")
    red, h_y = pid_cells(bins.long(), thetas, nb, published=published)
    goal = None
    if wg is not None:
        wg = wg.to(red.dtype)
        goal = red @ wg[:-1] + wg[-1] * h_y
    return _result(red, h_y, goal, n, labels, "reference")


def available_backends(device=None) -> List[str]:
    """Names of the backends that can run here (for ``device`` if given)."""
    return dispatch.available_backends(device)


def sample_pm1(theta: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Stochastic binary outputs: +1 with probability theta, -1 otherwise (same shape and dtype, no
    gradient). On the CPU with the compiled engine the uniforms come from a keyed hash of the
    element index, seeded by one draw from ``generator`` (torch's default generator when None, so
    ``torch.manual_seed`` reproduces the samples; about 10x ``torch.rand`` + ``torch.where`` on 2
    cores, and the same for every thread count); elsewhere ``torch.rand`` with ``generator``."""
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise TypeError(f"theta must be a floating tensor of probabilities, got {getattr(theta, 'dtype', type(theta).__name__)}")
    with torch.no_grad():
        if theta.device.type == "cpu" and theta.dtype in _validate.FLOAT_DTYPES:
            from . import cpu_backend

            if cpu_backend.is_available():
                return cpu_backend.sample_pm1_cpu(theta, generator)
        u = torch.rand(theta.shape, dtype=theta.dtype, device=theta.device, generator=generator)
        return torch.where(u < theta, 1.0, -1.0).to(theta.dtype)


def trivariate_activation(f: torch.Tensor, c: torch.Tensor, l: torch.Tensor, a1: float = 0.1, a2: float = 0.1,
                          b1: float = 2.0, b2: float = 2.0) -> torch.Tensor:
    """The infomorphic hidden neuron's activation (Makkeh et al., PNAS 2025, Methods), differentiable:
    ``theta = s(f ((1 - a1 - a2) + a1 s(b1 f c) + a2 s(b2 f l)))``, s the logistic function.

    f, c, l: the aggregated feedforward, context and lateral drives (floating tensors that broadcast
    to one shape). float32 CPU tensors run fused on the engine (forward and analytic backward in one
    pass each; at [1024, 100] on 2 cores forward + backward 305 us against 667 us for torch's
    op-by-op graph; exp within 2 ulp); everything else runs as torch ops."""
    for name, t in (("f", f), ("c", c), ("l", l)):
        if not isinstance(t, torch.Tensor) or not t.is_floating_point():
            raise TypeError(f"trivariate_activation: {name} must be a floating tensor, got {getattr(t, 'dtype', type(t).__name__)}")
    params = []
    for name, v in (("a1", a1), ("a2", a2), ("b1", b1), ("b2", b2)):
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(v):
            raise TypeError(f"trivariate_activation: {name} must be a finite number, got {v!r}")
        params.append(float(v))
    params = tuple(params)
    shape = _validate.broadcast_shape(f.shape, c.shape, l.shape)
    if shape is None:
        raise ValueError(f"trivariate_activation: f, c and l must broadcast to one shape, got {tuple(f.shape)}, "
                         f"{tuple(c.shape)} and {tuple(l.shape)}")
    if all(t.device.type == "cpu" and t.dtype == torch.float32 for t in (f, c, l)):
        from . import cpu_backend

        if cpu_backend.is_available():
            from .autograd import TrivariateActivation

            f, c, l = (t.expand(shape).contiguous() for t in (f, c, l))
            return TrivariateActivation.apply(f, c, l, params)
    gain = (1.0 - params[0] - params[1]) + params[0] * torch.sigmoid(params[2] * f * c) + params[1] * torch.sigmoid(params[3] * f * l)
    return torch.sigmoid(f * gain)
