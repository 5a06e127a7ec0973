"""Backend ``"triton"``: the fused I_sx PID kernel (docs/kernel_contract.md) in Triton.

One launch per layer computes, for every neuron, the redundancies of all antichains, H(Y) and
(optionally) the fused gradient ``dG/dtheta`` (PID_MATH.md sections 4 and 5). No host
synchronization, no Python loop over neurons or antichains.

Design
------
*Persistent programs, one neuron at a time.* The grid holds ``G = min(N, ~4 x SMs, memory budget)``
programs; program ``p`` handles neurons ``p, p + G, ...``. Each program owns a private slot of a
global workspace (allocated with ``torch.empty`` by the launcher, so no memset):

* ``mws [G, CELLS, 4]``: per cell of every source subset ``(m_fire, m_silent, count, pad)`` as raw
  sums (not divided by B); one 16-byte record (one sector in float32) per cell, so a gather is one
  vector load and the tables of the ~4 x SMs neurons in flight stay mostly L2-resident
  (n = 3, K = 20, float32: 9,260 cells x 16 B = 148 KB per program);
* ``tws [G, CELLS, 2]``: the backward tables ``T_s(y, cell)``;
* ``codes [G, B]`` int32: the joint bin code of every sample of the current neuron.

``CELLS = sum over subsets s of prod_{j in s} K_j``. Per neuron the program makes 4 passes over
its B samples in chunks of BLOCK_B, separated by CTA barriers (``tl.debug_barrier``; it also
orders the global-memory accesses of the CTA, and workspace reads use ``.cg`` so they are served by
L2, where the atomics land):

1. bin (binary search over the passed edges, adaptive scaling first when asked - a preceding
   max|x| pass), store the joint code, zero exactly the cells this neuron will touch (this is why
   the workspace needs no memset and is never cleaned), sum theta for p(y);
2. scatter: ``tl.atomic_add`` of (theta, 1 - theta) and 1 into the subset cells of every sample;
3. gather the 2^n - 1 records per sample, inclusion-exclusion with the coefficient matrix baked in
   as constexpr (unrolled at compile time, zero terms pruned), logarithms, per-antichain sums into
   a register vector [APAD]; with ``need_grad``: ``sum_a w_a l_a(y)`` is parked in ``dtheta`` and
   ``u(y, s)`` is scattered into ``tws``;
4. (need_grad) gather T, finish ``dtheta``.

Alternatives considered
-----------------------
* Full per-neuron workspace ``[N, CELLS, ...]`` and three launches (bin+scatter, gather+logs+
  backward scatter, final gather) with kernel boundaries as the global barrier: simpler, but the
  workspace grows with N (n = 4, K = 20: 3 MB per neuron) and needs a memset each call.
* Sort / segment formulation: sort the per-sample subset codes (7 keys for n = 3) and reduce
  segments - no atomics and deterministic, but 2^n - 1 sorts of B keys per neuron and a permutation
  back through global memory.
* One-hot (equality-matrix) products ``[key_i == key_j] @ theta`` on tensor cores: O(B^2) per subset
  and the float32 sums would need split-precision tricks; attractive only for small B.

Numerics
--------
Accumulation is in x's dtype (float32 or float64). The tables are built with atomic float adds,
so in float32 the result depends on the order in which the atomics land (differences at the
~1e-7 relative level; runs on a GPU are not bitwise reproducible). In float64 the same effect is
~1e-16 relative, far below the 1e-9 bits contract. ``D`` is computed from integer-valued counts
(exact), ``l := 0`` where ``N = 0`` (then every involved table entry is an exact 0), ``p(y) = 0``
terms are dropped, so no NaN/Inf is produced for theta exactly 0/1, empty bins or B = 1.
Under ``TRITON_INTERPRET=1`` the programs run one after the other, so results are deterministic.
"""
from __future__ import annotations

import math
import os
from typing import Dict, List, Optional, Sequence, Tuple

import torch

try:  # importing this module must never fail without triton
    import triton
    import triton.language as tl

    _TRITON_ERROR: Optional[str] = None
except Exception as _e:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None
    _TRITON_ERROR = f"triton is not importable ({type(_e).__name__}: {_e})"

MAX_SOURCES = 4
# Workspace budget (bytes) for the per-program tables; bounds the grid for large tables (n = 4).
WORKSPACE_BYTES = int(os.environ.get("INFOMORPH_TRITON_WORKSPACE_BYTES", str(512 << 20)))
PROGRAMS_PER_SM = 4


def _interpret() -> bool:
    return os.environ.get("TRITON_INTERPRET") == "1"


def is_available() -> bool:
    """triton importable and either a CUDA device or the interpreter (TRITON_INTERPRET=1)."""
    if triton is None:
        return False
    return _interpret() or torch.cuda.is_available()


def unavailable_reason() -> str:
    """Why :func:`is_available` is false ('' when it is true)."""
    if triton is None:
        return f"{_TRITON_ERROR}; install it with `pip install triton`"
    if not (_interpret() or torch.cuda.is_available()):
        return "triton needs a CUDA device, or TRITON_INTERPRET=1 to run its kernels on the CPU"
    return ""


# ----------------------------------------------------------------------------------------------
# The kernel. Plain Python function, turned into a JITFunction / InterpretedFunction on first use
# (see _kernel): triton decides between the two at decoration time from TRITON_INTERPRET, and this
# module may have been imported before a test switched the interpreter on.
# ----------------------------------------------------------------------------------------------
if triton is not None:

    def _pid_fused_kernel(
        x_ptr, theta_ptr, edges_ptr, clo_ptr, chi_ptr, wg_ptr,
        red_ptr, hy_ptr, dth_ptr, code_ptr, mws_ptr, tws_ptr,
        B, N, edge_stride,
        NSRC: tl.constexpr, KS: tl.constexpr, JSTR: tl.constexpr, NSTEPS: tl.constexpr,
        S: tl.constexpr, SUBOFF: tl.constexpr, SUBSTR: tl.constexpr, CELLS: tl.constexpr,
        COEF: tl.constexpr, NA: tl.constexpr, APAD: tl.constexpr,
        ADAPTIVE: tl.constexpr, NEED_GRAD: tl.constexpr, IS_F64: tl.constexpr,
        BLOCK_B: tl.constexpr,
    ):
        """Fused I_sx PID of neurons pid, pid + G, ... (PID_MATH.md sections 4-5).

        x: [B, N, NSRC]; theta, dth: [B, N]; red: [N, NA]; hy: [N]; wg: [NA + 1] = (w, gamma_h).
        Per sample i and antichain a (raw sums, i.e. B times the probabilities):
          N_a(y) = sum_s C[a, s] m_s(y, cell_s(b_i)),  D_a = sum_s C[a, s] count_s(cell_s(b_i))
          l_a(y) = log2 N_a(y) - log2 D_a - log2 P(y) + log2 B   (0 where N_a(y) = 0)
          red[a] = (1/B) sum_i sum_y theta_i(y) l_a(y)
        Backward: u(y, s) = theta_i(y) sum_a w_a C[a, s] / N_a(y), T_s = scatter of u,
          B g_i(y) = sum_a w_a l_a(y) + (1/ln2) sum_s T_s(y, cell_s(b_i)) - [P(y) > 0] c(y).
        """
        ACC = x_ptr.dtype.element_ty
        INV_LN2 = tl.full([], 1.4426950408889634, ACC)  # a bare float literal would be float32
        pid = tl.program_id(0)
        nprog = tl.num_programs(0)
        lanes = tl.arange(0, BLOCK_B)
        a_idx = tl.arange(0, APAD)
        col4 = tl.arange(0, 4)
        col2 = tl.arange(0, 2)
        mslot = mws_ptr + pid.to(tl.int64) * (CELLS * 4)
        tslot = tws_ptr + pid.to(tl.int64) * (CELLS * 2)
        cslot = code_ptr + pid.to(tl.int64) * B
        b_f = (B * 1.0).to(ACC)
        log2_b = tl.log2(b_f)

        if NEED_GRAD:
            W = ()
            wsum = tl.load(wg_ptr + 0).to(ACC) * 0.0
            for a in tl.static_range(NA):
                wa = tl.load(wg_ptr + a).to(ACC)
                W = W + (wa,)
                wsum += wa
            gamma_h = tl.load(wg_ptr + NA).to(ACC)

        for nid in range(pid, N, nprog):
            # ---- adaptive scale: max |x| per source over the batch --------------------------
            mx0 = tl.zeros([BLOCK_B], ACC)
            mx1 = tl.zeros([BLOCK_B], ACC)
            mx2 = tl.zeros([BLOCK_B], ACC)
            mx3 = tl.zeros([BLOCK_B], ACC)
            if ADAPTIVE:
                for start in range(0, B, BLOCK_B):
                    offs = start + lanes
                    msk = offs < B
                    xrow = x_ptr + (offs.to(tl.int64) * N + nid) * NSRC
                    mx0 = tl.maximum(mx0, tl.abs(tl.load(xrow + 0, mask=msk, other=0.0)))
                    if NSRC > 1:
                        mx1 = tl.maximum(mx1, tl.abs(tl.load(xrow + 1, mask=msk, other=0.0)))
                    if NSRC > 2:
                        mx2 = tl.maximum(mx2, tl.abs(tl.load(xrow + 2, mask=msk, other=0.0)))
                    if NSRC > 3:
                        mx3 = tl.maximum(mx3, tl.abs(tl.load(xrow + 3, mask=msk, other=0.0)))
            MX = (tl.max(mx0, axis=0), tl.max(mx1, axis=0), tl.max(mx2, axis=0), tl.max(mx3, axis=0))

            # ---- pass 1: bin, store codes, zero the cells this neuron touches, sum theta ------
            pv0 = tl.zeros([BLOCK_B], ACC)
            pv1 = tl.zeros([BLOCK_B], ACC)
            for start in range(0, B, BLOCK_B):
                offs = start + lanes
                msk = offs < B
                row = offs.to(tl.int64) * N + nid
                code = tl.zeros([BLOCK_B], tl.int32)
                bs = ()
                for j in tl.static_range(NSRC):
                    xv = tl.load(x_ptr + row * NSRC + j, mask=msk, other=0.0)
                    if ADAPTIVE:
                        sc = MX[j]
                        pos = sc > 0
                        sc_safe = tl.where(pos, sc, 1.0).to(ACC)
                        if IS_F64:
                            xs = xv / sc_safe
                        else:
                            xs = tl.div_rn(xv, tl.zeros([BLOCK_B], ACC) + sc_safe)
                        xv = tl.where(pos, xs, xv)
                    v = tl.minimum(tl.maximum(xv, tl.load(clo_ptr + j)), tl.load(chi_ptr + j))
                    # torch.bucketize(v, edges[j, :K+1]) = number of edges < v (binary search)
                    lo = tl.zeros([BLOCK_B], tl.int32)
                    hi = tl.zeros([BLOCK_B], tl.int32) + (KS[j] + 1)
                    for _step in tl.static_range(NSTEPS):
                        act = lo < hi
                        mid = (lo + hi) >> 1
                        e = tl.load(edges_ptr + j * edge_stride + mid, mask=act, other=0.0)
                        lt = e < v
                        lo = tl.where(act & lt, mid + 1, lo)
                        hi = tl.where(act & (e >= v), mid, hi)
                    b = tl.minimum(tl.maximum(lo - 1, 0), KS[j] - 1)
                    bs = bs + (b,)
                    code += b * JSTR[j]
                tl.store(cslot + offs, code, mask=msk)
                zero4 = tl.zeros([BLOCK_B, 4], ACC)
                zero2 = tl.zeros([BLOCK_B, 2], ACC)
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += bs[j] * SUBSTR[s * NSRC + j]
                    tl.store(mslot + cell[:, None] * 4 + col4[None, :], zero4, mask=msk[:, None])
                    if NEED_GRAD:
                        tl.store(tslot + cell[:, None] * 2 + col2[None, :], zero2, mask=msk[:, None])
                th = tl.load(theta_ptr + row, mask=msk, other=0.0)
                pv0 += th
                pv1 += tl.where(msk, 1.0 - th, 0.0)
            p0 = tl.sum(pv0, axis=0)  # B p(fire)
            p1 = tl.sum(pv1, axis=0)  # B p(silent)
            tl.debug_barrier()

            # ---- pass 2: scatter theta-weighted sums and counts --------------------------------
            for start in range(0, B, BLOCK_B):
                offs = start + lanes
                msk = offs < B
                row = offs.to(tl.int64) * N + nid
                code = tl.load(cslot + offs, mask=msk, other=0)
                th = tl.load(theta_ptr + row, mask=msk, other=0.0)
                vals = tl.join(th, 1.0 - th)  # [BLOCK_B, 2]
                ones = tl.zeros([BLOCK_B], ACC) + 1.0
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += ((code // JSTR[j]) % KS[j]) * SUBSTR[s * NSRC + j]
                    tl.atomic_add(mslot + cell[:, None] * 4 + col2[None, :], vals,
                                  mask=msk[:, None], sem="relaxed")
                    tl.atomic_add(mslot + cell * 4 + 2, ones, mask=msk, sem="relaxed")
            tl.debug_barrier()

            # ---- pass 3: gather, inclusion-exclusion, logarithms, backward scatter -------------
            lp0 = tl.log2(tl.where(p0 > 0, p0, 1.0))
            lp1 = tl.log2(tl.where(p1 > 0, p1, 1.0))
            redacc = tl.zeros([APAD], ACC)
            for start in range(0, B, BLOCK_B):
                offs = start + lanes
                msk = offs < B
                row = offs.to(tl.int64) * N + nid
                code = tl.load(cslot + offs, mask=msk, other=0)
                th = tl.load(theta_ptr + row, mask=msk, other=0.0)
                th1 = tl.where(msk, 1.0 - th, 0.0)
                CELL = ()
                M0 = ()
                M1 = ()
                CN = ()
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += ((code // JSTR[j]) % KS[j]) * SUBSTR[s * NSRC + j]
                    rec = tl.load(mslot + cell[:, None] * 4 + col4[None, :], mask=msk[:, None],
                                  other=1.0, cache_modifier=".cg")  # (m_fire, m_silent, count, pad)
                    ev, od = tl.split(tl.reshape(rec, [BLOCK_B, 2, 2]))  # cols (0, 2), (1, 3)
                    f0, f2 = tl.split(ev)
                    f1, _f3 = tl.split(od)
                    CELL = CELL + (cell,)
                    M0 = M0 + (f0,)
                    M1 = M1 + (f1,)
                    CN = CN + (f2,)
                if NEED_GRAD:
                    wl0 = tl.zeros([BLOCK_B], ACC)
                    wl1 = tl.zeros([BLOCK_B], ACC)
                    U0 = ()
                    U1 = ()
                    for s in tl.static_range(S):
                        U0 = U0 + (tl.zeros([BLOCK_B], ACC),)
                        U1 = U1 + (tl.zeros([BLOCK_B], ACC),)
                for a in tl.static_range(NA):
                    n0 = tl.zeros([BLOCK_B], ACC)
                    n1 = tl.zeros([BLOCK_B], ACC)
                    dd = tl.zeros([BLOCK_B], ACC)
                    for s in tl.static_range(S):
                        if COEF[a * S + s] == 1:
                            n0 += M0[s]
                            n1 += M1[s]
                            dd += CN[s]
                        elif COEF[a * S + s] == -1:
                            n0 -= M0[s]
                            n1 -= M1[s]
                            dd -= CN[s]
                        elif COEF[a * S + s] != 0:
                            n0 += COEF[a * S + s] * M0[s]
                            n1 += COEF[a * S + s] * M1[s]
                            dd += COEF[a * S + s] * CN[s]
                    ok0 = n0 > 0
                    ok1 = n1 > 0
                    lpd = tl.log2(tl.where(dd > 0, dd, 1.0)) + lp0 - log2_b  # D >= count_full >= 1
                    l0 = tl.where(ok0, tl.log2(tl.where(ok0, n0, 1.0)) - lpd, 0.0)
                    lpd1 = lpd - lp0 + lp1
                    l1 = tl.where(ok1, tl.log2(tl.where(ok1, n1, 1.0)) - lpd1, 0.0)
                    contrib = tl.sum(th * l0 + th1 * l1, axis=0)
                    redacc += tl.where(a_idx == a, contrib, 0.0)
                    if NEED_GRAD:
                        wl0 += W[a] * l0
                        wl1 += W[a] * l1
                        r0 = tl.where(ok0, 1.0 / tl.where(ok0, n0, 1.0), 0.0)
                        r1 = tl.where(ok1, 1.0 / tl.where(ok1, n1, 1.0), 0.0)
                        # U[s] += w_a C[a, s] / N_a(y): rebuild the tuples (compile-time only)
                        NU0 = ()
                        NU1 = ()
                        for s in tl.static_range(S):
                            if COEF[a * S + s] != 0:
                                cw = W[a] * COEF[a * S + s]
                                NU0 = NU0 + (U0[s] + cw * r0,)
                                NU1 = NU1 + (U1[s] + cw * r1,)
                            else:
                                NU0 = NU0 + (U0[s],)
                                NU1 = NU1 + (U1[s],)
                        U0 = NU0
                        U1 = NU1
                if NEED_GRAD:
                    for s in tl.static_range(S):
                        u = tl.join(th * U0[s], th1 * U1[s])
                        tl.atomic_add(tslot + CELL[s][:, None] * 2 + col2[None, :], u,
                                      mask=msk[:, None], sem="relaxed")
                    tl.store(dth_ptr + row, wl0 - wl1, mask=msk)  # parked until pass 4
            tl.store(red_ptr + nid * NA + a_idx, redacc / b_f, mask=a_idx < NA)
            h0 = tl.where(p0 > 0, (p0 / b_f) * (lp0 - log2_b), 0.0)
            h1 = tl.where(p1 > 0, (p1 / b_f) * (lp1 - log2_b), 0.0)
            tl.store(hy_ptr + nid, -(h0 + h1))

            # ---- pass 4: gather the backward tables, finish dtheta ----------------------------
            if NEED_GRAD:
                tl.debug_barrier()
                c0 = tl.where(p0 > 0, wsum * INV_LN2 + gamma_h * (lp0 - log2_b + INV_LN2), 0.0)
                c1 = tl.where(p1 > 0, wsum * INV_LN2 + gamma_h * (lp1 - log2_b + INV_LN2), 0.0)
                for start in range(0, B, BLOCK_B):
                    offs = start + lanes
                    msk = offs < B
                    row = offs.to(tl.int64) * N + nid
                    code = tl.load(cslot + offs, mask=msk, other=0)
                    tdiff = tl.zeros([BLOCK_B], ACC)
                    for s in tl.static_range(S):
                        cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                        for j in tl.static_range(NSRC):
                            if SUBSTR[s * NSRC + j] != 0:
                                cell += ((code // JSTR[j]) % KS[j]) * SUBSTR[s * NSRC + j]
                        rec = tl.load(tslot + cell[:, None] * 2 + col2[None, :], mask=msk[:, None],
                                      other=0.0, cache_modifier=".cg")
                        t0, t1 = tl.split(rec)
                        tdiff += t0 - t1
                    part = tl.load(dth_ptr + row, mask=msk, other=0.0)
                    g = (part + tdiff * INV_LN2 - (c0 - c1)) / b_f
                    tl.store(dth_ptr + row, g, mask=msk)
            # the next neuron re-zeroes cells that other threads may still be reading
            tl.debug_barrier()


_KERNELS: Dict[bool, object] = {}


def _kernel():
    """The kernel as a JITFunction, or an InterpretedFunction under TRITON_INTERPRET=1."""
    interp = _interpret()
    k = _KERNELS.get(interp)
    if k is None:
        if interp:
            from triton.runtime.interpreter import InterpretedFunction

            k = InterpretedFunction(_pid_fused_kernel)
        else:
            k = triton.JITFunction(_pid_fused_kernel)
        _KERNELS[interp] = k
    return k


# ----------------------------------------------------------------------------------------------
# Launcher
# ----------------------------------------------------------------------------------------------
_SM_COUNT: Dict[int, int] = {}


def _sm_count(device: torch.device) -> int:
    idx = device.index if device.index is not None else torch.cuda.current_device()
    if idx not in _SM_COUNT:
        _SM_COUNT[idx] = torch.cuda.get_device_properties(idx).multi_processor_count
    return _SM_COUNT[idx]


def _layout(nbins: Sequence[int]) -> Tuple[tuple, tuple, tuple, int]:
    """Joint strides, per-subset table offsets, per-subset strides [S * n] and total cells."""
    n = len(nbins)
    jstr, acc = [], 1
    for k in nbins:
        jstr.append(acc)
        acc *= k
    suboff, substr, cells = [], [], 0
    for s in range(1, 1 << n):
        suboff.append(cells)
        stride = 1
        for j in range(n):
            if s >> j & 1:
                substr.append(stride)
                stride *= nbins[j]
            else:
                substr.append(0)
        cells += stride
    return tuple(jstr), tuple(suboff), tuple(substr), cells


def _as_int_list(v) -> List[int]:
    if isinstance(v, torch.Tensor):
        v = v.tolist()
    return [int(k) for k in v]


def pid_kernel_triton(
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
    *,
    num_programs: Optional[int] = None,
    block_b: Optional[int] = None,
    num_warps: int = 4,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel contract (docs/kernel_contract.md) in one Triton launch.

    x: [B, N, n] float32/float64; theta: [B, N]; edges: [n, Kmax + 1]; clamp_lo/hi: [n];
    coef: [A, 2^n - 1] int; w: [A] float64. Returns ``red [N, A]``, ``h_y [N]`` and
    ``dtheta [B, N]`` (empty unless need_grad), in x's dtype.
    Keyword-only tuning knobs: ``num_programs`` (grid size G; default ~4 x SMs, bounded by the
    workspace budget), ``block_b`` (samples per chunk, a power of two), ``num_warps``.
    Host synchronization: none when ``coef`` is a CPU tensor and ``w`` lives on x's device
    (reading a CUDA ``coef`` for the compile-time constants, or copying a CPU ``w``, syncs).
    """
    if triton is None:
        raise RuntimeError(f"backend 'triton' is not available: {unavailable_reason()}")
    if x.dim() != 3 or x.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"x must be [batch, neurons, sources] float32/float64, got {tuple(x.shape)} {x.dtype}")
    B, N, n = x.shape
    if not 1 <= n <= MAX_SOURCES:
        raise ValueError(f"backend 'triton' supports 1..{MAX_SOURCES} sources, got {n}")
    if theta.shape != (B, N) or theta.dtype != x.dtype:
        raise ValueError(f"theta must be [{B}, {N}] {x.dtype}, got {tuple(theta.shape)} {theta.dtype}")
    interp = _interpret()
    if not interp and not x.is_cuda:
        raise ValueError("backend 'triton' needs CUDA tensors (or TRITON_INTERPRET=1 for CPU tensors)")
    nb = _as_int_list(nbins)
    if len(nb) != n or min(nb) < 1:
        raise ValueError(f"nbins must hold {n} ints >= 1, got {nb}")
    coef_rows = torch.as_tensor(coef).to("cpu", torch.int64).tolist()
    S = (1 << n) - 1
    A = len(coef_rows)
    if A == 0 or any(len(r) != S for r in coef_rows):
        raise ValueError(f"coef must be [A, {S}], got {torch.as_tensor(coef).shape}")
    dtype, device = x.dtype, x.device

    red = torch.empty(N, A, dtype=dtype, device=device)
    h_y = torch.empty(N, dtype=dtype, device=device)
    dtheta = torch.empty(B, N, dtype=dtype, device=device) if need_grad else torch.empty(0, dtype=dtype, device=device)
    if N == 0 or B == 0:
        red.zero_()
        h_y.zero_()
        if need_grad:
            dtheta.zero_()
        return red, h_y, dtheta

    x = x.contiguous()
    theta = theta.contiguous()
    edges = edges.to(device=device, dtype=dtype).contiguous()
    clo = clamp_lo.to(device=device, dtype=dtype).contiguous()
    chi = clamp_hi.to(device=device, dtype=dtype).contiguous()
    if need_grad:
        wg = torch.cat([torch.as_tensor(w).to(device=device, dtype=dtype).reshape(-1),
                        torch.full((1,), float(gamma_h), dtype=dtype, device=device)])
    else:
        wg = torch.zeros(1, dtype=dtype, device=device)

    jstr, suboff, substr, cells = _layout(nb)
    elt = x.element_size()
    slot_bytes = cells * (4 + (2 if need_grad else 0)) * elt + B * 4
    if num_programs is None:
        cap = 4 if interp else _sm_count(device) * PROGRAMS_PER_SM
        num_programs = min(N, cap, max(1, WORKSPACE_BYTES // slot_bytes))
    G = max(1, min(int(num_programs), N))
    if block_b is None:
        block_b = min(128, triton.next_power_of_2(B)) if interp else 128
    block_b = max(16, int(block_b))

    mws = torch.empty(G * cells * 4, dtype=dtype, device=device)
    tws = torch.empty(G * cells * 2 if need_grad else 2, dtype=dtype, device=device)
    codes = torch.empty(G * B, dtype=torch.int32, device=device)

    _kernel()[(G,)](
        x, theta, edges, clo, chi, wg,
        red, h_y, dtheta if need_grad else red, codes, mws, tws,
        B, N, edges.shape[1],
        NSRC=n, KS=tuple(nb), JSTR=jstr, NSTEPS=(max(nb) + 1).bit_length(),
        S=S, SUBOFF=suboff, SUBSTR=substr, CELLS=cells,
        COEF=tuple(int(c) for r in coef_rows for c in r), NA=A, APAD=triton.next_power_of_2(A),
        ADAPTIVE=bool(adaptive), NEED_GRAD=bool(need_grad), IS_F64=dtype == torch.float64,
        BLOCK_B=block_b, num_warps=num_warps,
    )
    return red, h_y, dtheta
