"""The engine as an analysis backend: PID of neuron groups about a multi-valued label,
representational complexity, mutual-information matrices (MIG, MIR).

* :func:`pid_labels`: the I_sx PID of what groups of n neurons carry about a K-valued label
  (nninfo's measure, Ehrlich et al., TMLR 2023), for many groups at once: the groups' joint
  histograms are built by one bincount per chunk of groups (never a [batch, G, n] gather of the
  activations' values) and decomposed by the dense engine, vectorized over the chunk.
* :func:`degree_of_synergy`, :func:`representational_complexity` (TMLR definition).
* :func:`mutual_information_matrix`, :func:`mig`, :func:`mir` (Chen et al. 2018; Whittington et
  al., ICLR 2023).

Binning of float activations follows the engine's rule (``ik.pid``: clamp, bucketize, fixed
``ranges`` or ``"adaptive"`` per neuron); integer inputs are symbols as they are.
"""
from __future__ import annotations

import itertools
import math
import operator
from typing import Optional, Sequence, Union

import torch

from . import lattice
from .api import PIDResult, pid_distribution
from .binning import bin_indices, make_binning

__all__ = ["pid_labels", "degree_of_synergy", "representational_complexity", "complexity_profile",
           "mutual_information_matrix", "mig", "mir"]

_CELL_BUDGET = 1 << 23  # cells of the joint histograms decomposed at once (x ~10 tensors of that size)


def _symbols(x: torch.Tensor, bins, ranges) -> (torch.Tensor, int):
    """x [B, M] float (binned per column by the engine's rule) or integer symbols -> (int64 [B, M], levels)."""
    if not x.is_floating_point():
        if bins is not None and bins is not ...:
            raise ValueError("bins must be None for integer symbols (they are used as they are)")
        s = x.to(torch.int64)
        if s.numel() and int(s.min()) < 0:
            raise ValueError("integer symbols must be >= 0")
        return s, int(s.max()) + 1 if s.numel() else 1
    if bins is None:
        raise ValueError("bins=None takes integer symbols; float activations need a number of bins")
    if not bool(torch.isfinite(x).all()):
        raise ValueError("x must be finite (found NaN or Inf)")
    k = 20 if bins is ... else int(bins)
    b = make_binning(1, k, ranges, x.dtype, x.device)
    return bin_indices(x.unsqueeze(-1), b)[..., 0], k


def _all_groups(N: int, k: int) -> torch.Tensor:
    """Every group of k of N neurons, ``[comb(N, k), k]`` in lexicographic order."""
    return torch.tensor(list(itertools.combinations(range(N), k)), dtype=torch.int64).view(-1, k)


def _groups(spec, N: int, n: Optional[int], seed: int) -> torch.Tensor:
    if isinstance(spec, torch.Tensor):
        g = spec.to(torch.int64)
        if g.dim() != 2 or g.shape[0] < 1:
            raise ValueError(f"groups must be a [G, n] tensor of neuron indices, got shape {tuple(spec.shape)}")
        if int(g.min()) < 0 or int(g.max()) >= N:
            raise ValueError(f"groups must index neurons 0..{N - 1}")
        return g
    if spec in ("pairs", "triplets"):
        k = 2 if spec == "pairs" else 3
        if N < k:
            raise ValueError(f"groups={spec!r} needs at least {k} neurons, got {N}")
        return _all_groups(N, k)
    if isinstance(spec, str) and spec.startswith("random:"):
        try:
            _, count, size = spec.split(":")
            count, size = int(count), int(size)
        except ValueError:
            raise ValueError(f"groups='random:K:n' takes two ints, got {spec!r}") from None
        if count < 1 or not 1 <= size <= N:
            raise ValueError(f"groups='random:K:n' needs K >= 1 and 1 <= n <= {N}, got {spec!r}")
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([torch.randperm(N, generator=gen)[:size] for _ in range(count)])
    raise ValueError(f"groups must be None, a [G, n] tensor, 'pairs', 'triplets' or 'random:K:n', got {spec!r}")


def pid_labels(
    x: torch.Tensor,
    labels: torch.Tensor,
    groups=None,
    bins=...,
    ranges=(-20.0, 20.0),
    n_labels: Optional[int] = None,
    backend: str = "auto",
    per_label: bool = False,
    seed: int = 0,
) -> PIDResult:
    """I_sx PID of groups of neurons about a K-valued label.

    x: ``[batch, groups, n]`` (``groups=None``), or activations ``[batch, N]`` with ``groups`` a
    ``[G, n]`` index tensor, ``"pairs"``, ``"triplets"`` or ``"random:K:n"`` (drawn with
    ``seed``). Float x is binned (``bins``, default 20, and ``ranges`` as in ``ik.pid``; per
    neuron); integer x holds symbols (``bins=None``). labels: ``[batch]`` int64 in 0..K-1.
    Returns a :class:`PIDResult` with ``atoms [G, n_atoms]`` (gamma order), ``mutual_information``
    and ``h_res [G]``; with ``per_label`` also ``label_atoms``, ``label_informative``,
    ``label_misinformative`` ``[G, K, n_atoms]`` (SxPID's ``pointwise="target"``: the
    p(s | label)-weighted local atoms; their p(label)-weighted sum is ``atoms``) and
    ``label_probs [K]``. Backends: ``"cpu"``, the fused C++ group engine (n = 1..4, levels^n <=
    2^26, no ``per_label``), which ``"auto"`` picks where it fits; ``"reference"``, the dense
    engine vectorized over groups (n = 1..5, ``per_label``).
    """
    if not isinstance(per_label, bool):
        raise TypeError(f"per_label must be a bool, got {type(per_label).__name__}")
    if n_labels is not None and (isinstance(n_labels, bool) or not isinstance(n_labels, int) or n_labels < 1):
        raise ValueError(f"n_labels must be an int >= 1, got {n_labels!r}")
    if backend not in ("auto", "cpu", "reference", "reference_dense"):
        raise ValueError(f"pid_labels runs on backends ['auto', 'cpu', 'reference'], not {backend!r}")
    if not isinstance(x, torch.Tensor) or x.dim() not in (2, 3):
        raise ValueError("x must be [batch, groups, n] or activations [batch, N] with groups")
    if not isinstance(labels, torch.Tensor) or labels.dim() != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be [batch] = [{x.shape[0]}] integers, got {getattr(labels, 'shape', labels)}")
    if labels.is_floating_point() or labels.dtype == torch.bool:
        raise TypeError(f"labels must be an integer tensor, got {labels.dtype}")
    if labels.numel() and int(labels.min()) < 0:
        raise ValueError("labels must be >= 0")
    K = int(n_labels) if n_labels is not None else int(labels.max()) + 1
    if labels.numel() and int(labels.max()) >= K:
        raise ValueError(f"labels must be < n_labels = {K}")
    B = x.shape[0]
    if x.dim() == 3:
        if groups is not None:
            raise ValueError("groups goes with activations x [batch, N]; x [batch, groups, n] is grouped already")
        G, n = x.shape[1], x.shape[2]
        sym, L = _symbols(x.reshape(B, G * n), bins, ranges)
        sym = sym.reshape(B, G, n)
        idx = None
    else:
        if groups is None:
            raise ValueError("activations x [batch, N] need groups (a [G, n] tensor, 'pairs', 'triplets', 'random:K:n')")
        sym, L = _symbols(x, bins, ranges)
        idx = _groups(groups, x.shape[1], None, seed).to(sym.device)
        G, n = idx.shape
    if not 1 <= n <= lattice.MAX_SOURCES:
        raise ValueError(f"groups of 1 to {lattice.MAX_SOURCES} neurons, got {n}")
    use_cpu = backend == "cpu" or (backend == "auto" and not per_label and _cpu_fits(sym, n, L, K, B))
    if use_cpu:
        if per_label:
            raise ValueError("per_label=True runs on the reference backend (backend='auto' or 'reference')")
        if not _cpu_fits(sym, n, L, K, B):
            raise ValueError(f"backend='cpu' needs CPU tensors, n <= {lattice.MAX_SOURCES_FUSED}, levels^n <= 2^26 and the built C++ engine")
        if idx is None:
            idx = torch.arange(G * n, dtype=torch.int64).view(G, n)
            sym = sym.reshape(B, G * n)
        h_t = _label_entropy(labels, K)
        red = _pid_groups_cpu(sym, idx, labels, K, L, n, h_t)
        return PIDResult.from_redundancies(red, torch.full((G,), h_t, dtype=torch.float64), backend="cpu")
    cells = K * L ** n
    chunk = max(1, _CELL_BUDGET // cells)
    lab = labels.to(torch.int64).to(sym.device)
    weights = [L ** (n - 1 - j) for j in range(n)]
    out = {k: [] for k in ("red", "h_y", "li", "lm", "pt")}
    for g0 in range(0, G, chunk):
        g1 = min(G, g0 + chunk)
        if idx is None:
            s = sym[:, g0:g1, :]  # [B, g, n]
        else:
            s = sym[:, idx[g0:g1]]  # [B, g, n]: symbols only (int64), gathered per chunk
        code = lab.view(B, 1) * L ** n + sum(s[..., j] * weights[j] for j in range(n))
        flat = code + torch.arange(g1 - g0, device=code.device).view(1, -1) * cells
        p = torch.bincount(flat.reshape(-1), minlength=(g1 - g0) * cells).to(torch.float64) / B
        p = p.view(g1 - g0, K, *([L] * n))
        res = pid_distribution(p, n_sources=n, local=per_label)
        out["red"].append(res.redundancies)
        out["h_y"].append(res.h_y)
        if per_label:
            pt = p.flatten(2).sum(2)  # [g, K]
            w = (p / torch.where(pt > 0, pt, torch.ones_like(pt)).view(g1 - g0, K, *([1] * n))).unsqueeze(-1)
            dims = list(range(2, 2 + n))
            out["li"].append((w * res.local_informative).sum(dims))
            out["lm"].append((w * res.local_misinformative).sum(dims))
            out["pt"].append(pt)
    red, h_y = torch.cat(out["red"]), torch.cat(out["h_y"])
    result = PIDResult.from_redundancies(red, h_y, backend="reference_dense")
    if per_label:
        result.label_informative = torch.cat(out["li"])
        result.label_misinformative = torch.cat(out["lm"])
        result.label_atoms = result.label_informative - result.label_misinformative
        result.label_probs = out["pt"][0][0]
    return result


def _cpu_fits(sym: torch.Tensor, n: int, L: int, K: int, B: int) -> bool:
    from . import cpu_backend

    if sym.device.type != "cpu" or not 1 <= n <= lattice.MAX_SOURCES_FUSED or L ** n > (1 << 26) or min(B, L ** n) * K > (1 << 28):
        return False
    if B >= (1 << 31) or K >= (1 << 31) or L >= (1 << 31):
        return False
    return cpu_backend.is_available()


def _label_entropy(labels: torch.Tensor, K: int) -> float:
    c = torch.bincount(labels.to(torch.int64).cpu(), minlength=K).to(torch.float64)
    return float(_entropy_bits(c)) if c.sum() > 0 else 0.0


def _pid_groups_cpu(sym: torch.Tensor, idx: torch.Tensor, labels: torch.Tensor, K: int, L: int, n: int,
                    h_t: float) -> torch.Tensor:
    """Redundancies [G, A] on the fused C++ group engine; h_t = H(label) bits."""
    from .cpu_backend import groups_kernel_cpu

    return groups_kernel_cpu(sym, idx, labels, K, L, n, h_t, torch.as_tensor(lattice.coef_matrix(n)))


def degree_of_synergy(n: int) -> torch.Tensor:
    """Per atom (gamma order, without H_res) the size of the antichain's smallest part:
    1 for redundant and unique atoms, n for the purely synergistic atom {1..n}."""
    return torch.tensor([min(bin(m).count("1") for m in a) for a in lattice.antichains(n)], dtype=torch.float64)


def representational_complexity(atoms: torch.Tensor, n: int) -> torch.Tensor:
    """sum over atoms of degree x atom / total mutual information (the sum of the atoms), per
    leading index (TMLR 2023). 1 for a purely redundant or unique code, n for pure synergy;
    NaN where the total is 0."""
    if atoms.shape[-1] != lattice.n_atoms(n):
        raise ValueError(f"atoms must have {lattice.n_atoms(n)} entries (gamma order, no H_res) for n = {n}")
    d = degree_of_synergy(n).to(atoms.device, atoms.dtype)
    total = atoms.sum(-1)
    return (atoms * d).sum(-1) / total


def complexity_profile(x: torch.Tensor, labels: torch.Tensor, group_size: int = 3, groups="all", bins=8,
                       ranges=(0.0, 1.0), n_labels: Optional[int] = None, seed: int = 0,
                       max_groups: int = 2_000_000) -> dict:
    """The degree-of-synergy profile and representational complexity of a layer about a label.

    x: activations ``[batch, N]`` (float, binned into ``bins`` levels over ``ranges``; integer
    symbols with ``bins=None``); groups: ``"all"`` (every group of ``group_size`` neurons),
    ``"random:K"`` (K random groups drawn with ``seed``) or a ``[G, group_size]`` tensor. Returns
    ``{"group_size", "groups", "profile": [sum over groups of the atoms of degree d, d = 1..n],
    "profile_mean": the same / G, "complexity": sum_d d * profile_d / sum_d profile_d (the ratio
    of sums over groups: groups that carry no information add nothing), "complexity_mean_of_groups"
    (the mean of the per-group values where a group's MI > 1e-9), "mutual_information_mean",
    "atoms_mean" [n_atoms]}``."""
    if isinstance(max_groups, bool) or not isinstance(max_groups, int) or max_groups < 1:
        raise ValueError(f"max_groups must be an int >= 1, got {max_groups!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 2:
        raise ValueError(f"x must be activations [batch, N], got {getattr(x, 'shape', type(x).__name__)}")
    try:
        n = operator.index(group_size)
    except TypeError:
        raise ValueError(f"group_size must be an int, got {group_size!r}") from None
    N = x.shape[1]
    if not 1 <= n <= lattice.MAX_SOURCES or n > N:
        raise ValueError(f"group_size must be 1..{min(N, lattice.MAX_SOURCES)}, got {group_size!r}")
    if isinstance(groups, str) and groups == "all":
        count = math.comb(N, n)
        if count > max_groups:
            raise ValueError(f"groups='all' would be {count} groups of {n} of {N} neurons (over {max_groups}); "
                             "use groups='random:K'")
        spec = _all_groups(N, n)
    elif isinstance(groups, str) and groups.startswith("random:") and groups.count(":") == 1:
        spec = f"{groups}:{n}"
    elif isinstance(groups, torch.Tensor) and groups.dim() == 2 and groups.shape[1] == n:
        spec = groups
    else:
        raise ValueError(f"groups must be 'all', 'random:K' or a [G, {n}] index tensor, got {groups!r}")
    res = pid_labels(x, labels, groups=spec, bins=bins, ranges=ranges, n_labels=n_labels, seed=seed)
    deg = degree_of_synergy(n)
    atoms = res.atoms.double()
    profile = torch.stack([atoms[:, deg == d].sum() for d in range(1, n + 1)])
    total = float(profile.sum())
    per_group = representational_complexity(atoms, n)
    ok = atoms.sum(-1) > 1e-9
    G = atoms.shape[0]
    return {
        "group_size": n, "groups": G, "profile": profile.tolist(), "profile_mean": (profile / G).tolist(),
        "complexity": sum((d + 1) * v for d, v in enumerate(profile.tolist())) / total if total > 0 else float("nan"),
        "complexity_mean_of_groups": float(per_group[ok].mean()) if bool(ok.any()) else float("nan"),
        "mutual_information_mean": float(res.mutual_information.double().mean()),
        "atoms_mean": atoms.mean(0).tolist(), "backend": res.backend,
    }


def _entropy_bits(counts: torch.Tensor) -> torch.Tensor:
    p = counts / counts.sum(-1, keepdim=True)
    return -(torch.where(p > 0, p * torch.log2(torch.where(p > 0, p, torch.ones_like(p))), torch.zeros_like(p))).sum(-1)


def mutual_information_matrix(activations: torch.Tensor, factors: torch.Tensor, bins=20, factor_bins=20,
                              ranges="minmax") -> torch.Tensor:
    """Plug-in I(neuron_n; factor_f) in bits, ``[N, F]``.

    activations: [batch, N] float (binned into ``bins`` equal bins over each neuron's range when
    ``ranges="minmax"``, or by the engine's rule with ``ranges=(lo, hi)`` / ``"adaptive"``) or
    integer symbols; factors: [batch, F] integer (discrete) or float (binned like the activations
    with ``factor_bins``)."""
    if activations.dim() != 2 or factors.dim() != 2 or activations.shape[0] != factors.shape[0]:
        raise ValueError("activations must be [batch, N] and factors [batch, F] with the same batch")
    a, La = _discretize(activations, bins, ranges, "bins")
    f, Lf = _discretize(factors, factor_bins, ranges, "factor_bins")
    B, N = a.shape
    F = f.shape[1]
    joint = (a.unsqueeze(2) * Lf + f.unsqueeze(1))  # [B, N, F]
    flat = joint + (torch.arange(N * F, device=a.device).view(1, N, F) * (La * Lf))
    counts = torch.bincount(flat.reshape(-1), minlength=N * F * La * Lf).view(N, F, La, Lf).to(torch.float64)
    h_a = _entropy_bits(counts.sum(3))
    h_f = _entropy_bits(counts.sum(2))
    h_af = _entropy_bits(counts.flatten(2))
    return (h_a + h_f - h_af).clamp_min(0.0)


def _discretize(x: torch.Tensor, bins, ranges, name: str):
    if not x.is_floating_point():
        s = x.to(torch.int64)
        if s.numel() and int(s.min()) < 0:
            raise ValueError("integer symbols must be >= 0")
        return s, int(s.max()) + 1 if s.numel() else 1
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"{name} must be an int >= 1 for float values, got {bins!r}")
    if ranges != "minmax":
        return _symbols(x, bins, ranges)
    k = bins
    lo = x.min(0).values
    hi = x.max(0).values
    width = torch.where(hi > lo, (hi - lo) / k, torch.ones_like(hi))
    return ((x - lo) / width).floor().clamp(0, k - 1).to(torch.int64), k


def mig(mi: torch.Tensor, factor_entropy: torch.Tensor) -> torch.Tensor:
    """Mutual information gap: per factor, (largest - second largest MI over neurons) / H(factor),
    averaged over factors. mi: [N, F] bits; factor_entropy: [F] bits (> 0)."""
    if mi.dim() != 2 or mi.shape[0] < 2:
        raise ValueError("mi must be [N >= 2, F]")
    top = mi.topk(2, dim=0).values  # [2, F]
    return ((top[0] - top[1]) / factor_entropy.to(mi.dtype)).mean()


def mir(mi: torch.Tensor, active: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Mutual information ratio: per active neuron r_n = max_f I_nf / sum_f I_nf, and
    MIR = (mean_n r_n - 1/F) / (1 - 1/F). ``active``: bool [N] (default: neurons with any MI)."""
    if mi.dim() != 2 or mi.shape[1] < 2:
        raise ValueError("mi must be [N, F >= 2]")
    total = mi.sum(1)
    if active is None:
        active = total > 0
    active = active.to(torch.bool)
    if not bool(active.any()):
        raise ValueError("mir: no active neuron")
    r = mi[active].max(1).values / total[active]
    F = mi.shape[1]
    return (r.mean() - 1.0 / F) / (1.0 - 1.0 / F)
