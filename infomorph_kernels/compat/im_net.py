"""The published infomorphic code (github.com/Priesemann-Group/Infomorphic_Networks) on the engine.

Two lines in a user's script::

    from infomorph_kernels.compat import im_net as ik_im_net
    ik_im_net.install()            # or: with ik_im_net.install(mode="published"): ...

``install`` patches the ``im_net.im_model`` that is imported (or importable from ``sys.path``) and
returns a :class:`Handle` (also a context manager); ``uninstall()`` restores every patched name.
Both versions of that code are served, told apart by what the module has (``handle.version``):

- ``"first"``: the first public snapshot (5284adf): ``IM_Layer.pid(p)`` and
  ``IM_Layer.loss(gamma, return_information=False, return_information_tensor=False)``;
- ``"current"``: the maintained version (ecc3d7e, with paper_hopfield): module-level
  ``InformationDecomposition(p)`` and ``IM_Layer.loss(gamma, return_atoms=False)``.

Patched: ``IM_Layer.loss`` (every return form of both versions, on both versions: the current
version's own callers still pass ``return_information=True``), and the histogram-level entry point
(``IM_Layer.pid`` of the first version, ``InformationDecomposition`` of the current one), so that
soft binnings and user code calling it directly run here too. Neither needs ``moebius.pkl``.

``loss`` with a hard binning (``BinningFixedSize``, ``BinningAdaptiveSize`` of that version,
exactly those classes) makes one fused engine call per layer from ``save_for_loss``; any other
binning (soft ones, ``BinningMaxEntropy``, subclasses) is asked for its own ``get_theta_hist`` and
the histogram goes through the histogram-level path. Outputs with more than two values (ternary
activations) go the histogram way too. The firing column is the one the activation produced:
column 1 of ``[1 - theta, theta]`` for probabilistic activations, column 0 of ``[out, 1 - out]``
for surrogate and ``BinaryHeaviside`` ones (never ``1 -`` the other column).

Modes:

- ``"exact"``: the engine as it is (exact I_sx, no epsilons; the engine's own bin edges, computed
  in float64). ``backend`` picks the engine's backend ("auto", "cpu", "cuda", "triton",
  "reference").
- ``"published"``: the published numerics (1e-10 added to the denominators and inside H(Y)'s log,
  ratios below 1e-7 replaced by 1, with the gradient that implies; the union probabilities of the
  sources detached) and the published binning of that version (its edges in its dtype: float64
  for the first version, the default dtype for the current one), evaluated over the samples'
  occupied cells instead of the dense K^n grid (``ik.pid_binned(..., numerics="published")``: the
  same function of the thetas, both columns as the activation produced them, on the CPU engine's
  fused forward and analytic backward).
"""
from __future__ import annotations

import importlib
import sys
import types
from typing import List, Optional

import torch

from .. import adaptive_scale, api, lattice

__all__ = ["Handle", "install", "uninstall", "information_decomposition", "write_moebius_pkl", "MODES"]

MODES = api.NUMERICS  # "exact", "published"
_VERSIONS = {"first": "5284adf (first public snapshot)", "current": "ecc3d7e (maintained version)"}

_ACTIVE: List["Handle"] = []


# ----------------------------------------------------------------------------------------------
# the histogram level: InformationDecomposition(p) / IM_Layer.pid(p)
# ----------------------------------------------------------------------------------------------


def _stack(res) -> torch.Tensor:
    """[n_atoms + 1, N]: the atoms in gamma order, then H_res (the published layout)."""
    return torch.cat([res.atoms.T, res.h_res[None]])


def information_decomposition(p: torch.Tensor, mode: str = "exact") -> torch.Tensor:
    """``InformationDecomposition`` of the current im_net: p [K_1, ..., K_n, o, N] (o target
    values, N neurons) -> [n_atoms + 1, N] (gamma order, H_res last), differentiable with respect
    to p. ``mode`` "exact" (I_sx as defined; the gradient differentiates the union probabilities
    too, as ``ik.pid_distribution``) or "published" (that code's numerics and gradient). On the CPU
    engine every grid cell is one weighted sample of ``ik.pid_binned`` (fused forward and
    backward); elsewhere ``ik.pid_distribution`` (torch autograd)."""
    if not isinstance(p, torch.Tensor) or not p.is_floating_point():
        raise TypeError(f"p must be a floating tensor [K_1, ..., K_n, o, N], got {type(p).__name__}")
    if p.dim() < 3:
        raise ValueError(f"p must be [K_1, ..., K_n, o, N] with n >= 1 sources, got shape {tuple(p.shape)}")
    _check_mode(mode)
    n = p.dim() - 2
    K = list(p.shape[:n])
    o, N = p.shape[n], p.shape[n + 1]
    cells = 1
    for k in K:
        cells *= k
    if not (p.device.type == "cpu" and n <= lattice.MAX_SOURCES_FUSED and cells <= (1 << 22) and "cpu" in api.available_backends()):
        return _stack(api.pid_distribution(p.movedim((-1, -2), (0, 1)), n_sources=n, numerics=mode))
    grid = torch.cartesian_prod(*[torch.arange(k) for k in K]) if n > 1 else torch.arange(K[0])[:, None]
    bins = grid[:, None, :].expand(cells, N, n)
    thetas = p.reshape(cells, o, N).permute(0, 2, 1) * cells  # each cell a sample: (1/cells) sum = p

    def goal_of(gam, t):
        return api.pid_binned(bins, t, K, numerics=mode, gamma=gam, backend="cpu").goal

    res = api.pid_binned(bins, thetas.detach(), K, numerics=mode, backend="cpu")
    return _AtomsWithGraph.apply(thetas, _stack(res).to(p.dtype), goal_of)


# ----------------------------------------------------------------------------------------------
# binning as each version defines it
# ----------------------------------------------------------------------------------------------


def _hard_kind(binning, prob_estim) -> Optional[str]:
    """"fixed" / "adaptive" for exactly those classes of the patched version, else None."""
    for kind, name in (("fixed", "BinningFixedSize"), ("adaptive", "BinningAdaptiveSize")):
        cls = getattr(prob_estim, name, None)
        if cls is not None and type(binning) is cls:
            return kind
    return None


def _normalized(x: List[torch.Tensor]) -> List[torch.Tensor]:
    return [t / t.abs().max(dim=0, keepdim=True)[0] for t in x]


def _published_edges(binning, kind: str, version: str, x: List[torch.Tensor]):
    """(x as binned, edges per source) exactly as that version computes them: fixed edges are the
    binning's own ``binedges``; adaptive ones are rebuilt per call by the same expressions (so in
    the same dtypes: float64 linspace in the first version, the default dtype in the current)."""
    nb = list(binning.n_bins)
    first = version == "first"
    if getattr(binning, "normalize", False) and not (first and kind == "fixed"):  # the first version's fixed binning ignores it
        x = _normalized(x)
    if kind == "fixed":
        return x, list(binning.binedges)
    dev = binning.device
    if first:
        if binning.symmetric and binning.normalize:
            ends = [torch.tensor([-1, 1], device=dev) for _ in x]
        else:
            ends = [torch.tensor([t.min() - 1, t.max() + 1], device=dev) for t in x]
        return x, [torch.linspace(e[0], e[1], nb[i] + 1, dtype=torch.double, device=dev) for i, e in enumerate(ends)]
    pad = binning.padding
    if binning.normalize:
        ends = [torch.tensor([-1 - pad, 1 + pad], device=dev) for _ in x]
    else:
        ends = [torch.tensor([t.min() - pad, t.max() + pad], device=dev) for t in x]
    return x, [torch.linspace(e[0], e[1], nb[i] + 1, device=dev) for i, e in enumerate(ends)]


def _published_bins(binning, kind, version, x):
    """Bin indices as that version computes them. Where its rule yields an index outside
    [0, K) - a constant source under an adaptive range of zero padding makes every edge equal and
    bucketize return -1, on which that code's scatter fails - the sample is put in the edge bin."""
    x, edges = _published_edges(binning, kind, version, x)
    return [(torch.bucketize(torch.clamp(t, e[0] + 1e-4, e[-1]), e) - 1).clamp_(0, e.numel() - 2)
            for t, e in zip(x, edges)]


def _engine_normalized(x: List[torch.Tensor]) -> List[torch.Tensor]:
    """x / max|x| per neuron by the engine's own rule (a source that is 0 throughout stays 0)."""
    return list(adaptive_scale(torch.stack(x, -1)).unbind(-1))


def _engine_binning(binning, kind: str, version: str, x: List[torch.Tensor]):
    """(sources as the engine bins them, ranges) for the exact mode: the same rule (clamp to
    [lo + 1e-4, hi], bin k holds edge_k < x <= edge_k+1) with the engine's float64 edges and its
    normalization."""
    if version == "first":
        if kind == "fixed":
            return x, [(float(e[0]), float(e[1])) for e in binning.edges]
        if binning.normalize and binning.symmetric:
            return x, "adaptive"
        if binning.normalize:
            x = _engine_normalized(x)
        return x, [_span(float(t.min()) - 1, float(t.max()) + 1) for t in x]
    pad = float(binning.padding) if kind == "adaptive" else 0.0
    if kind == "fixed":
        ranges = [(float(e[0]), float(e[1])) for e in binning.edges]
        if binning.normalize:
            if all(r == (-1.0, 1.0) for r in ranges):
                return x, "adaptive"
            x = _engine_normalized(x)
        return x, ranges
    if binning.normalize:
        if pad == 0.0:
            return x, "adaptive"
        return _engine_normalized(x), [(-1.0 - pad, 1.0 + pad)] * len(x)
    return x, [_span(float(t.min()) - pad, float(t.max()) + pad) for t in x]


def _span(lo: float, hi: float):
    return (lo, hi) if hi > lo else (lo, lo + 1.0)  # a constant source: one bin holds every sample


# ----------------------------------------------------------------------------------------------
# the patched IM_Layer.loss
# ----------------------------------------------------------------------------------------------


def _gamma(gamma, n: int, device) -> torch.Tensor:
    if isinstance(gamma, torch.Tensor):
        g = gamma.to(device)
    else:
        try:
            values = [float(v) for v in gamma]  # lists, tuples, numpy arrays, OmegaConf ListConfig
        except TypeError:
            raise TypeError(f"gamma must be a sequence of {lattice.n_atoms(n) + 1} numbers or a tensor, "
                            f"got {type(gamma).__name__}") from None
        g = torch.tensor(values, dtype=torch.get_default_dtype(), device=device)
    want = lattice.n_atoms(n) + 1
    if g.dim() != 1 or g.shape[0] != want:
        raise ValueError(f"gamma must have {want} entries for {n} sources ({lattice.n_atoms(n)} atoms, then H_res), "
                         f"got shape {tuple(g.shape)}")
    return g


def _fire_column(layer) -> int:
    act = layer.activation
    name = act._get_name() if hasattr(act, "_get_name") else type(act).__name__
    return 0 if name == "BinaryHeaviside" or getattr(act, "has_surrogate", False) else 1


class _AtomsWithGraph(torch.autograd.Function):
    """Atoms and H_res [A + 1, N] computed by a fused call, attached to theta's graph: the backward
    of sum(grad * atoms) is the goal gradient with gamma = grad, one more fused call when every
    neuron has the same grad column (as in ``-gamma @ atoms.sum(-1)``), one per neuron otherwise.
    ``goal_of(gamma, theta)`` returns the goal per neuron, differentiable with respect to theta."""

    @staticmethod
    def forward(ctx, theta, values, goal_of):
        ctx.save_for_backward(theta)
        ctx.goal_of = goal_of
        return values.clone()

    @staticmethod
    def backward(ctx, grad):
        (theta,) = ctx.saved_tensors
        with torch.enable_grad():
            t = theta.detach().requires_grad_(True)
            if bool((grad == grad[:, :1]).all()):
                g = ctx.goal_of(grad[:, 0].double(), t).sum()
            else:
                g = sum(ctx.goal_of(grad[:, k].double(), t)[k] for k in range(grad.shape[1]))
            (dt,) = torch.autograd.grad(g, t)
        return dt.to(theta.dtype), None, None


def _binned_backend(backend: str) -> str:
    return "reference" if backend in ("reference", "reference_dense") else "auto"


def _layer_pid(layer, x, thetas, gamma, mode, backend, version, prob_estim):
    """(goal summed over neurons [differentiable] or None, atoms [A + 1, N] with graph)."""
    n = len(x)
    B = x[0].shape[0]
    kind = _hard_kind(layer.binning, prob_estim)
    if kind is None or thetas.shape[-1] != 2:
        if not hasattr(layer.binning, "get_theta_hist"):
            raise TypeError(f"binning {type(layer.binning).__name__} has no get_theta_hist: neither the engine's "
                            "samples path nor its histogram path can serve it")
        if version == "first":
            hist = layer.binning.get_theta_hist(thetas, x, layer.output_size)
        else:
            hist = layer.binning.get_theta_hist(thetas, x)
        p = (hist / B).permute(*range(2, 2 + n), 1, 0)
        return None, information_decomposition(p, mode)
    g64 = gamma.detach().double()
    nbins = [int(k) for k in layer.binning.n_bins]
    if mode == "published":
        bins = torch.stack(_published_bins(layer.binning, kind, version, [t.detach() for t in x]), -1)
        bb = _binned_backend(backend)

        def goal_of(gam, t):
            return api.pid_binned(bins, t, nbins, numerics="published", gamma=gam, backend=bb).goal

        theta = thetas
        res = api.pid_binned(bins, theta, nbins, numerics="published", gamma=g64, backend=bb)
    else:
        theta = thetas[..., _fire_column(layer)]
        xs, ranges = _engine_binning(layer.binning, kind, version, [t.detach().to(theta.dtype) for t in x])
        sources = list(xs)  # [batch, neurons] each: the CPU engine reads them in place

        def goal_of(gam, t):
            return api.pid_goal(sources, t, gam, bins=nbins, ranges=ranges, backend=backend)

        res = api.pid(sources, theta, bins=nbins, ranges=ranges, backend=backend, gamma=g64)
    if res.atoms.requires_grad:  # the reference backends: the atoms carry theta's graph already
        return res.goal.sum(), _stack(res).to(thetas.dtype)
    values = _stack(res).to(thetas.dtype)
    goal = res.goal.sum()
    if gamma.requires_grad:  # a differentiable goal vector: its gradient is the atoms summed over neurons
        goal = goal + (gamma.double() - g64) @ values.double().sum(-1).detach()
    return goal, _AtomsWithGraph.apply(theta, values, goal_of)


_DEFAULT_GAMMA = (0.1, 0.1, 1.0, 0.1, 0.1)


def _make_loss(handle: "Handle"):
    version, mode, backend, prob_estim = handle.version, handle.mode, handle.backend, handle._prob_estim

    def loss(self, gamma=None, return_atoms=False, return_information=False, return_information_tensor=False):
        if self.save_for_loss is None:
            raise RuntimeError("IM_Layer.loss: save_for_loss is None (run a forward pass in training mode first)")
        x, thetas = self.save_for_loss
        x = list(x)
        g = _gamma(_DEFAULT_GAMMA if gamma is None else gamma, len(x), x[0].device)
        goal, atoms = _layer_pid(self, x, thetas, g, mode, backend, version, prob_estim)
        dt = torch.get_default_dtype()
        if goal is None:
            value = -(g @ atoms.sum(-1).to(g.dtype)) if g.is_floating_point() else -(g.to(dt) @ atoms.sum(-1).to(dt))
            value = value.to(dt)
        else:
            value = (-goal).to(dt)
        if return_information_tensor or return_atoms:
            return value, atoms
        if return_information:
            return value, atoms.detach().cpu().numpy()
        return value

    loss.__doc__ = (f"IM_Layer.loss on infomorph-kernels (mode {mode!r}, backend {backend!r}): "
                    "loss(gamma, return_atoms=False, return_information=False, return_information_tensor=False)")
    return loss


def _make_pid(handle: "Handle"):
    mode = handle.mode

    def pid(self, p_all_neurons):
        return information_decomposition(p_all_neurons, mode)

    return pid


# ----------------------------------------------------------------------------------------------
# install / uninstall
# ----------------------------------------------------------------------------------------------


def _check_mode(mode):
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")


class Handle:
    """What :func:`install` patched: ``version`` ("first" or "current"), ``mode``, ``backend``,
    ``module`` (the patched ``im_net.im_model``). ``uninstall()`` restores every patched name;
    as a context manager it uninstalls on exit."""

    def __init__(self, module, version, mode, backend, prob_estim):
        self.module, self.version, self.mode, self.backend = module, version, mode, backend
        self._prob_estim = prob_estim
        self._saved = []
        self.installed = False

    def _patch(self, owner, name, value):
        self._saved.append((owner, name, owner.__dict__.get(name, _MISSING)))
        setattr(owner, name, value)

    def uninstall(self) -> None:
        while self._saved:
            owner, name, old = self._saved.pop()
            if old is _MISSING:
                delattr(owner, name)
            else:
                setattr(owner, name, old)
        self.installed = False
        if self in _ACTIVE:
            _ACTIVE.remove(self)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.uninstall()
        return False

    def __repr__(self):
        state = "installed" if self.installed else "uninstalled"
        return (f"<infomorph_kernels.compat.im_net {state}: im_net {self.version} ({_VERSIONS[self.version]}), "
                f"mode={self.mode!r}, backend={self.backend!r}>")


_MISSING = object()


def _find_module(module):
    if module is None:
        try:
            return importlib.import_module("im_net.im_model")
        except ImportError as e:
            raise ImportError("install(): im_net is not importable; put the published repository "
                              "(github.com/Priesemann-Group/Infomorphic_Networks) on sys.path, or pass "
                              f"module=<its im_net.im_model> ({e})") from None
    if isinstance(module, str):
        return importlib.import_module(module)
    if not isinstance(module, types.ModuleType):
        raise TypeError(f"module must be im_net.im_model (a module or its name), got {type(module).__name__}")
    return module


def _detect(mod) -> str:
    layer = getattr(mod, "IM_Layer", None)
    if layer is None:
        raise ValueError(f"{mod.__name__} has no IM_Layer: not the published im_net.im_model")
    if callable(getattr(mod, "InformationDecomposition", None)):
        return "current"
    if callable(getattr(layer, "pid", None)):
        return "first"
    raise ValueError(f"{mod.__name__}: neither InformationDecomposition (current version) nor IM_Layer.pid "
                     "(first version) found: an im_net version this drop-in does not know")


def install(mode: str = "exact", backend: str = "auto", module=None) -> Handle:
    """Patch the published ``im_net.im_model`` (imported or importable; or ``module``) to run on
    the engine. Returns a :class:`Handle` (``.version``, ``.uninstall()``, a context manager)."""
    _check_mode(mode)
    if not isinstance(backend, str):
        raise TypeError(f"backend must be a string, got {type(backend).__name__}")
    if backend != "auto" and backend not in ("cpu", "cuda", "triton", "reference", "reference_dense"):
        raise ValueError(f"backend must be 'auto', 'cpu', 'cuda', 'triton' or 'reference', got {backend!r}")
    mod = _find_module(module)
    for h in _ACTIVE:
        if h.module is mod:
            raise RuntimeError(f"{mod.__name__} is already patched ({h!r}); uninstall() it first")
    version = _detect(mod)
    prob_estim = getattr(mod, "prob_estim", None) or sys.modules.get(mod.__name__.rsplit(".", 1)[0] + ".prob_estim")
    h = Handle(mod, version, mode, backend, prob_estim)
    h._patch(mod.IM_Layer, "loss", _make_loss(h))
    if version == "current":
        h._patch(mod, "InformationDecomposition", lambda p_all_neurons: information_decomposition(p_all_neurons, mode))
    else:
        h._patch(mod.IM_Layer, "pid", _make_pid(h))
    h.installed = True
    _ACTIVE.append(h)
    return h


def uninstall() -> None:
    """Restore every im_net patched by :func:`install`."""
    for h in list(_ACTIVE):
        h.uninstall()


def write_moebius_pkl(version: str, path: str = "moebius.pkl", shuffle_seed: Optional[int] = None) -> str:
    """Write the ``moebius.pkl`` that the published code reads from its working directory (neither
    version ships it), built from this project's lattice (n = 2, 3) in that version's layout:
    current ``{n: (antichains zero-based in gamma order, full set last, M)}``; first ``{n:
    (antichains one-based, M)}`` (that code reorders by its own list; ``shuffle_seed`` writes them
    in a shuffled order to exercise that). Each antichain's sets in the order its name writes them
    (``{3}{12}``: ``(3,), (1, 2)``), as that code's ``index`` lookups need. Returns ``path``."""
    import pickle

    import numpy as np

    if version not in _VERSIONS:
        raise ValueError(f"version must be 'first' or 'current', got {version!r}")
    rng = np.random.default_rng(shuffle_seed) if shuffle_seed is not None else None
    data = {}
    for n in (2, 3):
        one = 1 if version == "first" else 0
        acs = [tuple(tuple(int(c) - 1 + one for c in part) for part in name[1:-1].split("}{"))
               for name in lattice.atom_names(n)]
        M = np.asarray(lattice.moebius_matrix(n), dtype=np.float64)
        if version == "first" and rng is not None:
            perm = rng.permutation(len(acs))
            acs, M = [acs[k] for k in perm], M[np.ix_(perm, perm)]
        data[n] = (acs, M)
    with open(path, "wb") as f:
        pickle.dump(data, f)
    return path
