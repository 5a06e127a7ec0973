"""Pure-torch implementations: the oracle every fused backend is judged against.

* :func:`pid_samples` - backend ``"reference"``: sample-based (docs/math.md section 4), batched
  over neurons, differentiable by torch autograd. Its autograd gradient is the oracle for the fused
  backward (section 5); the conventions of section 6 come out of the safe logarithms below.
* :func:`pid_kernel_reference` - the same computation behind the kernel contract's signature
  (docs/kernel_contract.md), so tests can call every backend and the oracle alike.
* :func:`pid_dense` - the published algorithm step by step on a dense joint pmf: all marginals,
  a Python loop over antichains, inclusion-exclusion over the subsets of each antichain. It serves
  ``pid_distribution`` (any target alphabet) and backend ``"reference_dense"`` (dense K^n
  theta-weighted histogram first), the yardstick of the benchmarks.
"""
from __future__ import annotations

import itertools
from typing import List, Optional, Sequence, Tuple

import torch

from . import lattice
from ._logmath import safe_log2 as _safe_log2
from .binning import Binning, bin_indices



def _subset_members(mask: int, n: int) -> List[int]:
    return [j for j in range(n) if mask >> j & 1]


def _segment_tables(keys: torch.Tensor, values: Sequence[torch.Tensor]) -> List[torch.Tensor]:
    """Sum each of ``values`` over equal ``keys`` and gather the sums back per element.

    Only the occupied cells are materialized (``torch.unique``), so this works for any number of
    bins. keys: [B, N] int64; values: [B, N] each. Returns [B, N] each (differentiable).
    """
    flat = keys.reshape(-1)
    uniq, inv = torch.unique(flat, return_inverse=True)
    out = []
    for v in values:
        table = torch.zeros(uniq.numel(), dtype=v.dtype, device=v.device).index_add(0, inv, v.reshape(-1))
        out.append(table[inv].reshape(keys.shape))
    return out


def _sample_marginals(bins: torch.Tensor, thetas, nbins: Sequence[int]):
    """Per sample, for both entries of ``thetas`` ([B, N] each) and every source subset s (mask
    order), the marginal m_s(y, cell_s(b_i)) and q_s(cell_s(b_i)): lists ``(m[y][s], q[s])`` of
    [B, N] tensors. q comes from counts: D carries no gradient (docs/math.md section 5)."""
    B, N, n = bins.shape
    ones = torch.ones_like(thetas[0]).detach()
    neuron = torch.arange(N, device=bins.device).view(1, N)
    m_cols = ([], [])
    q_cols = []
    for s in range(1, 1 << n):
        key = neuron.clone()
        for j in _subset_members(s, n):
            key = key * nbins[j] + bins[..., j]
        m0, m1, cnt = _segment_tables(key, (thetas[0], thetas[1], ones))
        m_cols[0].append(m0 / B)
        m_cols[1].append(m1 / B)
        q_cols.append(cnt / B)
    return m_cols, q_cols


def pid_samples(
    bins: torch.Tensor, theta: torch.Tensor, nbins: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Redundancies of every antichain and H(Y), sample-based.

    bins: [B, N, n] int64 bin indices; theta: [B, N] firing probability (any float dtype; the
    computation runs in it; gradients flow through theta).
    Returns ``red [N, A]`` (gamma order) and ``h_y [N]``, in bits.
    """
    B, N, n = bins.shape
    dtype, device = theta.dtype, theta.device
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=dtype, device=device)  # [A, S]
    thetas = (theta, 1.0 - theta)  # y = fire, silent
    m_cols, q_cols = _sample_marginals(bins, thetas, nbins)
    q = torch.stack(q_cols, dim=-1)  # [B, N, S]
    d = q @ coef.T  # [B, N, A]
    log_d = torch.log2(d)  # D >= q_full > 0 on every occupied cell
    p_y = torch.stack([t.mean(dim=0) for t in thetas])  # [2, N]
    ok_p = p_y > 0
    log_p = _safe_log2(p_y, ok_p)
    red = torch.zeros(N, coef.shape[0], dtype=dtype, device=device)
    for y in range(2):
        num = torch.stack(m_cols[y], dim=-1) @ coef.T  # N_alpha(y, b_i): [B, N, A]
        ok = num > 0
        ell = torch.where(ok, _safe_log2(num, ok) - log_d - log_p[y].view(1, N, 1), torch.zeros_like(num))
        red = red + (thetas[y].unsqueeze(-1) * ell).sum(dim=0) / B
    h_y = -(p_y * log_p).sum(dim=0)
    return red, h_y


def pid_kernel_reference(
    x: torch.Tensor,
    theta: torch.Tensor,
    edges: torch.Tensor,
    nbins: Sequence[int],
    clamp_lo: torch.Tensor,
    clamp_hi: torch.Tensor,
    adaptive: bool,
    coef: torch.Tensor,
    w: torch.Tensor,
    gamma_h: float,
    need_grad: bool,
    compute_dtype: Optional[torch.dtype] = None,
    check_values: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel contract (docs/kernel_contract.md) computed by :func:`pid_samples` + autograd.

    Binning happens in x's dtype with the given edges; the rest runs in ``compute_dtype``
    (default x's dtype; pass torch.float64 to get the oracle for a float32 kernel). ``coef`` must
    be the lattice's coefficient matrix (it is checked). Outputs are in ``compute_dtype``.
    ``check_values``: raise the public API's ValueError for non-finite x or theta outside [0, 1].
    """
    if check_values:
        from ._validate import validate_values

        validate_values(x, theta)
    n = x.shape[-1]
    if not torch.equal(torch.as_tensor(coef).cpu().to(torch.int64), torch.as_tensor(lattice.coef_matrix(n))):
        raise ValueError("coef must be lattice.coef_matrix(n) (gamma order)")
    cdt = compute_dtype or x.dtype
    binning = Binning(list(nbins), edges, clamp_lo, clamp_hi, bool(adaptive))
    b = bin_indices(x, binning)
    with torch.enable_grad():
        th = theta.detach().to(cdt).requires_grad_(need_grad)
        red, h_y = pid_samples(b, th, binning.nbins)
        if need_grad:
            w_t = torch.as_tensor(w, dtype=cdt, device=x.device)
            goal = (red @ w_t + float(gamma_h) * h_y).sum()
            (dtheta,) = torch.autograd.grad(goal, th)
        else:
            dtheta = torch.empty(0, dtype=cdt, device=x.device)
    return red.detach(), h_y.detach(), dtheta


# ----------------------------------------------------------------------------------------------
# Dense: the published algorithm
# ----------------------------------------------------------------------------------------------


def _dense_marginals(p: torch.Tensor, n: int):
    """Source axes, target axis, the marginal m_A(t, s_A) of every source subset (kept dims) and p(t)."""
    src_dims = [p.dim() - n + j for j in range(n)]
    t_dim = p.dim() - n - 1
    marg = {}
    for s in range(1, 1 << n):
        drop = [src_dims[j] for j in range(n) if not s >> j & 1]
        marg[s] = p.sum(dim=drop, keepdim=True) if drop else p
    return src_dims, t_dim, marg, p.sum(dim=src_dims, keepdim=True)


def _union_probs(alpha, marg, t_dim: int, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
    """N_alpha(t, s) = P(T = t, union) and D_alpha(s) = P(union) by inclusion-exclusion over the
    subsets J of the antichain (a Python loop, on purpose: the published algorithm's yardstick)."""
    num = torch.zeros_like(like)
    den = torch.zeros_like(like)
    for r in range(1, len(alpha) + 1):
        sign = 1.0 if r % 2 else -1.0
        for subset in itertools.combinations(alpha, r):
            union = 0
            for m in subset:
                union |= m
            num = num + sign * marg[union]
            den = den + sign * marg[union].sum(dim=t_dim, keepdim=True)
    return num, den


def pid_dense(p: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """Redundancies and H(Y) of a dense joint pmf, step by step as in the published code.

    p: [..., T, K_1, ..., K_n] (any target alphabet T). Returns ``red [..., A]``, ``h_y [...]``.
    Union probabilities by inclusion-exclusion over the subsets J of each antichain (a Python loop,
    on purpose: this is the yardstick). Differentiable; terms with N = 0 contribute 0.
    """
    src_dims, t_dim, marg, p_y = _dense_marginals(p, n)
    ok_y = p_y > 0
    log_p_y = _safe_log2(p_y, ok_y)
    reds = []
    for alpha in lattice.antichains(n):
        num, den = _union_probs(alpha, marg, t_dim, p)
        ok = num > 0
        ratio = _safe_log2(num, ok) - _safe_log2(den, ok) - log_p_y
        reds.append(torch.where(ok, p * ratio, torch.zeros_like(p)).sum(dim=[t_dim] + src_dims))
    h_y = -(p_y * log_p_y).sum(dim=[t_dim] + src_dims)
    return torch.stack(reds, dim=-1), h_y


def pid_dense_local(p: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local (pointwise) redundancy parts of a dense joint pmf (SxPID's definitions).

    p: [..., T, K_1, ..., K_n]. For every realization (t, s) and antichain alpha:
    informative ``i+ = -log2 P(union_{a in alpha} {S_a = s_a})``, misinformative
    ``i- = -log2 P(union | T = t)``; the local redundancy is ``i+ - i-``. Also the local residual
    entropy ``-log2 p(t | s)``. Realizations of probability 0 hold 0.
    Returns ``plus [..., T, K..., A]``, ``minus [..., T, K..., A]``, ``h_res [..., T, K...]``.
    """
    _, t_dim, marg, p_y = _dense_marginals(p, n)
    occupied = p > 0
    log_p_y = _safe_log2(p_y, p_y > 0)
    plus, minus = [], []
    for alpha in lattice.antichains(n):
        num, den = _union_probs(alpha, marg, t_dim, p)
        # on an occupied realization the union events hold it: num >= p > 0, den >= p > 0
        ok = occupied & (num > 0) & (den > 0)
        plus.append(torch.where(ok, -_safe_log2(den.expand_as(p), ok), torch.zeros_like(p)))
        minus.append(torch.where(ok, log_p_y - _safe_log2(num, ok), torch.zeros_like(p)))
    q = p.sum(dim=t_dim, keepdim=True)
    ok = occupied & (q > 0)
    h_res = torch.where(ok, _safe_log2(q.expand_as(p), ok) - _safe_log2(p, ok), torch.zeros_like(p))
    return torch.stack(plus, dim=-1), torch.stack(minus, dim=-1), h_res


def pid_samples_local(
    bins: torch.Tensor, theta: torch.Tensor, nbins: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Local redundancy parts at every sample's joint cell, for both outputs, sample-based.

    bins: [B, N, n]; theta: [B, N]. Returns ``plus [B, N, 2, A]``, ``minus [B, N, 2, A]``,
    ``h_res [B, N, 2]`` with y = 0 silent, 1 fire (definitions of :func:`pid_dense_local`);
    a realization (y, cell) the batch gives probability 0 holds 0.
    """
    B, N, n = bins.shape
    dtype, device = theta.dtype, theta.device
    coef = torch.as_tensor(lattice.coef_matrix(n), dtype=dtype, device=device)
    theta = theta.detach()
    thetas = (1.0 - theta, theta)  # y = silent, fire (the order of the local outputs)
    m_cols, q_cols = _sample_marginals(bins, thetas, nbins)
    d = torch.stack(q_cols, dim=-1) @ coef.T  # [B, N, A], >= q_full > 0
    p_y = torch.stack([t.mean(dim=0) for t in thetas])  # [2, N]
    plus, minus, h_res = [], [], []
    for y in range(2):
        num = torch.stack(m_cols[y], dim=-1) @ coef.T
        ok = (m_cols[y][-1] > 0).unsqueeze(-1) & (num > 0)  # p(y, cell) > 0
        plus.append(torch.where(ok, -torch.log2(d), torch.zeros_like(d)))
        minus.append(torch.where(ok, _safe_log2(p_y[y], p_y[y] > 0).view(1, N, 1) - _safe_log2(num, ok),
                                 torch.zeros_like(num)))
        okc = m_cols[y][-1] > 0
        h_res.append(torch.where(okc, torch.log2(q_cols[-1]) - _safe_log2(m_cols[y][-1], okc), torch.zeros_like(d[..., 0])))
    return torch.stack(plus, dim=2), torch.stack(minus, dim=2), torch.stack(h_res, dim=2)


def dense_joint(bins: torch.Tensor, theta: torch.Tensor, nbins: Sequence[int]) -> torch.Tensor:
    """Theta-weighted dense histogram p(y, s): [N, 2, K_1, ..., K_n] (differentiable in theta)."""
    B, N, n = bins.shape
    cells = 1
    for k in nbins:
        cells *= k
    flat = torch.zeros_like(bins[..., 0])
    for j in range(n):
        flat = flat * nbins[j] + bins[..., j]
    idx = (torch.arange(N, device=bins.device).view(1, N) * 2 * cells + flat).reshape(-1)
    out = torch.zeros(N * 2 * cells, dtype=theta.dtype, device=theta.device)
    out = out.index_add(0, idx, theta.reshape(-1) / B)
    out = out.index_add(0, idx + cells, (1.0 - theta).reshape(-1) / B)
    return out.view(N, 2, *nbins)


def pid_dense_samples(
    bins: torch.Tensor, theta: torch.Tensor, nbins: Sequence[int]
) -> Tuple[torch.Tensor, torch.Tensor]:
    """Backend ``"reference_dense"``: dense histogram, then :func:`pid_dense`."""
    return pid_dense(dense_joint(bins, theta, nbins), bins.shape[-1])


# --- the published code's numerics (github.com/Priesemann-Group/Infomorphic_Networks) --------------
# Its I_sx: ratio = N / (D p(y) + 1e-10), ratios below 1e-7 replaced by 1 (a constant: no gradient
# there), D = sum_y of the union marginal, detached; H(Y) = -sum p(y) log2(p(y) + 1e-10). Offered so
# that a user can reproduce that code's numbers exactly (compat.im_net mode "published").
PUBLISHED_EPS = 1.0e-10
PUBLISHED_RATIO_FLOOR = 1.0e-7


def _published_log2(num: torch.Tensor, den: torch.Tensor, p_y: torch.Tensor) -> torch.Tensor:
    frac = num / (den * p_y + PUBLISHED_EPS)
    return torch.log2(torch.where(frac < PUBLISHED_RATIO_FLOOR, torch.ones_like(frac), frac))


def pid_dense_published(p: torch.Tensor, n: int) -> Tuple[torch.Tensor, torch.Tensor]:
    """The published numerics on a dense pmf p [..., T, K_1, ..., K_n]: ``red [..., A]`` and
    ``H(Y)`` with its 1e-10 offset (so that ``h_y - red[full]`` is that code's H_res).
    Differentiable with respect to p as that code is (the union probability D detached)."""
    src_dims, t_dim, marg, p_y = _dense_marginals(p, n)
    dims = [t_dim] + src_dims
    coef = lattice.coef_matrix(n)
    q = {s: m.detach().sum(dim=t_dim, keepdim=True) for s, m in marg.items()}
    reds = []
    for row in coef:
        num = sum(int(c) * marg[s + 1] for s, c in enumerate(row) if c)
        den = sum(int(c) * q[s + 1] for s, c in enumerate(row) if c)
        reds.append((p * _published_log2(num, den, p_y)).sum(dim=dims))
    h_y = -(p_y * torch.log2(p_y + PUBLISHED_EPS)).sum(dim=dims)
    return torch.stack(reds, dim=-1), h_y


def pid_cells(
    bins: torch.Tensor, thetas: torch.Tensor, nbins: Sequence[int], published: bool = False
) -> Tuple[torch.Tensor, torch.Tensor]:
    """I_sx of pre-binned samples with any target alphabet, over the occupied cells only.

    bins: [B, N, n] int64 bin indices; thetas: [B, N, T] the target distribution of each sample
    (every column as given, none derived from the others); nbins: bins per source. Returns
    ``red [N, A]`` and ``h_y [N]``. ``published``: the published code's numerics (equal, as a
    function of thetas, to that code on the dense theta-weighted histogram of these samples: each
    term of its sums over the grid is a sum over the samples in the cell); else exact I_sx with
    the conventions of docs/math.md section 6. D = sum_y of the union marginal (detached in the
    published numerics, as that code does; differentiated in the exact ones, as ``pid_dense`` is).
    Differentiable with respect to thetas (torch autograd)."""
    B, N, n = bins.shape
    T = thetas.shape[-1]
    coef = lattice.coef_matrix(n)
    neuron = torch.arange(N, device=bins.device).view(1, N)
    flat = thetas.reshape(B * N, T)
    marg, q = {}, {}
    for s in range(1, 1 << n):
        key = neuron.clone()
        for j in _subset_members(s, n):
            key = key * int(nbins[j]) + bins[..., j]
        cols = _segment_tables(key, [thetas[..., y] for y in range(T)])
        marg[s] = torch.stack(cols, -1).reshape(B * N, T) / B  # m_s(y, cell_s of each sample)
        q[s] = (marg[s].detach() if published else marg[s]).sum(1, keepdim=True)
    p_y = thetas.sum(0) / B  # [N, T]
    p_y_s = p_y.expand(B, N, T).reshape(B * N, T)
    reds = []
    for row in coef:
        num = sum(int(c) * marg[s + 1] for s, c in enumerate(row) if c)
        den = sum(int(c) * q[s + 1] for s, c in enumerate(row) if c)
        if published:
            ratio = _published_log2(num, den, p_y_s)
        else:
            ok = (num > 0) & (den > 0) & (p_y_s > 0)
            ratio = _safe_log2(num, ok) - _safe_log2(den, ok) - _safe_log2(p_y_s, ok)
        reds.append((flat * ratio).reshape(B, N, T).sum((0, 2)) / B)
    if published:
        h_y = -(p_y * torch.log2(p_y + PUBLISHED_EPS)).sum(1)
    else:
        h_y = -(p_y * _safe_log2(p_y, p_y > 0)).sum(1)
    return torch.stack(reds, dim=-1), h_y
