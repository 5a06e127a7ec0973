"""Backend ``"triton"``: the fused I_sx PID kernel (docs/kernel_contract.md) in Triton.

One launch per layer computes, for every neuron, the redundancies of all antichains, H(Y) and
(optionally) the fused gradient ``dG/dtheta`` (docs/math.md sections 4 and 5). No host
synchronization, no Python loop over neurons or antichains.

Design
------
*Persistent programs, one neuron at a time.* The grid holds ``G = min(N, SMs x resident CTAs,
workspace budget)`` programs (resident CTAs learned from the compiled kernel's registers after the
first launch, 4 before); program ``p`` handles neurons ``p, p + G, ...``. Each program owns a
private slot of a global workspace (allocated with ``torch.empty`` by the launcher: no memset):

* ``mws [G, CELLS, 4]``: per cell of every source subset ``(m_fire, m_silent, count, pad)`` as raw
  sums (not divided by B); the three values of a record share one 32-byte sector, and the tables
  of the neurons in flight mostly stay in L2 (n = 3, K = 20, float32: 9,260 cells x 16 B = 148 KB
  per program, ~60 MB for 396 resident programs on an H100);
* ``tws [G, CELLS, 2]``: the backward tables ``T_s(y, cell)``;
* ``codes [G, B]`` int32: the joint bin code of every sample of the current neuron.

``CELLS = sum over subsets s of prod_{j in s} K_j``. Per neuron the program makes 4 passes over
its B samples in chunks of BLOCK_B, separated by CTA barriers (``tl.debug_barrier``, which also
orders the CTA's global-memory accesses); workspace reads use ``.cg`` (served by L2, where the
atomics land, never by a stale L1 line from the previous neuron):

1. bin (binary search over the passed edges, after a max|x| pass when adaptive), store the joint
   code, zero exactly the cells this neuron will touch (why the workspace needs no memset and is
   never cleaned), sum theta for p(y);
2. scatter: ``tl.atomic_add`` (relaxed) of theta, 1 - theta and 1 into the subset cells;
3. gather the 2^n - 1 records per sample, inclusion-exclusion, one logarithm per (antichain, y),
   per-lane partial sums of the redundancies (reduced once per neuron); with ``need_grad``,
   ``sum_a w_a l_a(y)`` is parked in ``dtheta`` and ``u(y, s)`` is scattered into ``tws``;
4. (need_grad) gather T, finish ``dtheta``.

For n <= 3 (<= 18 antichains) the antichain loop is unrolled at compile time with the coefficient
matrix as constexpr (zero terms pruned, +-1 without multiplies) and the per-lane sums live in
registers. For n = 4 (166 antichains) full unrolling took ~6 minutes to compile and spilled ~6 KB
per thread, so the antichain loop is a runtime loop that reads ``coef`` from memory (copied to the
device once) and keeps the per-lane sums in a scratch ``[G, A, BLOCK_B]``.

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

import contextlib
import math
import os
from types import SimpleNamespace
from typing import Dict, NamedTuple, Optional, Sequence, Tuple

import torch

from . import lattice
from ._validate import int_list

try:  # importing this module must never fail without triton
    import triton
    import triton.language as tl

    _TRITON_ERROR: Optional[str] = None
except Exception as _e:  # pragma: no cover - exercised only where triton is missing
    triton = None
    tl = None
    _TRITON_ERROR = f"triton is not importable ({type(_e).__name__}: {_e})"

MAX_SOURCES = lattice.MAX_SOURCES_FUSED
# Workspace budget (bytes) for the per-program tables; bounds the grid for large tables (n = 4).
WORKSPACE_BYTES = int(os.environ.get("INFOMORPH_TRITON_WORKSPACE_BYTES", str(512 << 20)))
PROGRAMS_PER_SM = 4
# Up to this many antichains (n <= 3) the antichain loop is unrolled at compile time with the
# coefficients as constants and per-lane sums in registers; beyond (n = 4: 166 antichains) it is a
# runtime loop reading coef from memory, with the per-lane sums in a small scratch.
UNROLL_MAX_ANTICHAINS = 32


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
        red_ptr, hy_ptr, dth_ptr, code_ptr, mws_ptr, tws_ptr, rl_ptr, coef_ptr,
        B, N, edge_stride,
        NSRC: tl.constexpr, KS: tl.constexpr, JSTR: tl.constexpr, NSTEPS: tl.constexpr,
        S: tl.constexpr, SUBOFF: tl.constexpr, SUBSTR: tl.constexpr, CELLS: tl.constexpr,
        COEF: tl.constexpr, NA: tl.constexpr, APAD: tl.constexpr,
        ADAPTIVE: tl.constexpr, NEED_GRAD: tl.constexpr, IS_F64: tl.constexpr,
        UNROLL: tl.constexpr, BLOCK_B: tl.constexpr,
    ):
        """Fused I_sx PID of neurons pid, pid + G, ... (docs/math.md sections 4-5).

        x: [B, N, NSRC]; theta, dth: [B, N]; red: [N, NA]; hy: [N]; wg: [NA + 1] = (w, gamma_h).
        Per sample i and antichain a (raw sums, i.e. B times the probabilities):
          N_a(y) = sum_s C[a, s] m_s(y, cell_s(b_i)),  D_a = sum_s C[a, s] count_s(cell_s(b_i))
          l_a(y) = log2(N_a(y) B / (D_a P(y)))   (0 where N_a(y) = 0; P(y) = sum_i theta_i(y))
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
        mslot = mws_ptr + pid.to(tl.int64) * (CELLS * 4)
        tslot = tws_ptr + pid.to(tl.int64) * (CELLS * 2)
        cslot = code_ptr + pid.to(tl.int64) * B
        rslot = rl_ptr + pid.to(tl.int64) * (NA * BLOCK_B)
        b_f = (B * 1.0).to(ACC)

        W = ()
        wsum = tl.load(wg_ptr + 0) * 0.0
        gamma_h = tl.load(wg_ptr + NA)
        if NEED_GRAD:
            if UNROLL:
                for a in tl.static_range(NA):
                    wa = tl.load(wg_ptr + a)
                    W = W + (wa,)
                    wsum += wa
            else:
                for a in range(NA):
                    wsum += tl.load(wg_ptr + a)

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
                zero = tl.zeros([BLOCK_B], ACC)
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += bs[j] * SUBSTR[s * NSRC + j]
                    tl.store(mslot + cell * 4, zero, mask=msk)
                    tl.store(mslot + cell * 4 + 1, zero, mask=msk)
                    tl.store(mslot + cell * 4 + 2, zero, mask=msk)
                    if NEED_GRAD:
                        tl.store(tslot + cell * 2, zero, mask=msk)
                        tl.store(tslot + cell * 2 + 1, zero, mask=msk)
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
                th1 = 1.0 - th
                ones = tl.zeros([BLOCK_B], ACC) + 1.0
                bs = ()
                for j in tl.static_range(NSRC):
                    bs = bs + ((code // JSTR[j]) % KS[j],)
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += bs[j] * SUBSTR[s * NSRC + j]
                    tl.atomic_add(mslot + cell * 4, th, mask=msk, sem="relaxed")
                    tl.atomic_add(mslot + cell * 4 + 1, th1, mask=msk, sem="relaxed")
                    tl.atomic_add(mslot + cell * 4 + 2, ones, mask=msk, sem="relaxed")
            tl.debug_barrier()

            # ---- pass 3: gather, inclusion-exclusion, logarithms, backward scatter -------------
            # l = log2(N_raw * B / (D_raw * P_raw)): one logarithm of an O(1) ratio per (a, y) keeps
            # the float32 error below that of log N - log D - log p (terms of magnitude ~log2 B)
            q0 = b_f / tl.where(p0 > 0, p0, 1.0)  # 1 / p(fire)
            q1 = b_f / tl.where(p1 > 0, p1, 1.0)
            RL = ()  # UNROLL: per-lane partial sums, one vector per antichain, reduced per neuron
            if UNROLL:
                for a in tl.static_range(NA):
                    RL = RL + (tl.zeros([BLOCK_B], ACC),)
            else:  # the same partial sums in this program's scratch rows [NA, BLOCK_B]
                for a in range(NA):
                    tl.store(rslot + a * BLOCK_B + lanes, tl.zeros([BLOCK_B], ACC))
            for start in range(0, B, BLOCK_B):
                offs = start + lanes
                msk = offs < B
                row = offs.to(tl.int64) * N + nid
                code = tl.load(cslot + offs, mask=msk, other=0)
                th = tl.load(theta_ptr + row, mask=msk, other=0.0)
                th1 = tl.where(msk, 1.0 - th, 0.0)
                bs = ()
                for j in tl.static_range(NSRC):
                    bs = bs + ((code // JSTR[j]) % KS[j],)
                CELL = ()
                M0 = ()
                M1 = ()
                CN = ()
                for s in tl.static_range(S):
                    cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                    for j in tl.static_range(NSRC):
                        if SUBSTR[s * NSRC + j] != 0:
                            cell += bs[j] * SUBSTR[s * NSRC + j]
                    # masked lanes read 1s: every N, D is then 1 (the coefficients sum to 1)
                    rec = mslot + cell * 4
                    CELL = CELL + (cell,)
                    M0 = M0 + (tl.load(rec, mask=msk, other=1.0, cache_modifier=".cg"),)
                    M1 = M1 + (tl.load(rec + 1, mask=msk, other=1.0, cache_modifier=".cg"),)
                    CN = CN + (tl.load(rec + 2, mask=msk, other=1.0, cache_modifier=".cg"),)
                wl0 = tl.zeros([BLOCK_B], ACC)
                wl1 = tl.zeros([BLOCK_B], ACC)
                U0 = ()
                U1 = ()
                if NEED_GRAD:
                    for s in tl.static_range(S):
                        U0 = U0 + (tl.zeros([BLOCK_B], ACC),)
                        U1 = U1 + (tl.zeros([BLOCK_B], ACC),)
                if UNROLL:
                    # coefficients are compile-time constants: zero terms vanish, +-1 need no multiply
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
                        rd = 1.0 / tl.where(dd > 0, dd, 1.0)  # D >= count_full >= 1 on valid lanes
                        l0 = tl.where(ok0, tl.log2(tl.where(ok0, n0 * (rd * q0), 1.0)), 0.0)
                        l1 = tl.where(ok1, tl.log2(tl.where(ok1, n1 * (rd * q1), 1.0)), 0.0)
                        NRL = ()
                        for a2 in tl.static_range(NA):
                            if a2 == a:
                                NRL = NRL + (RL[a2] + (th * l0 + th1 * l1),)
                            else:
                                NRL = NRL + (RL[a2],)
                        RL = NRL
                        if NEED_GRAD:
                            wl0 += W[a] * l0
                            wl1 += W[a] * l1
                            r0 = tl.where(ok0, 1.0 / tl.where(ok0, n0, 1.0), 0.0)
                            r1 = tl.where(ok1, 1.0 / tl.where(ok1, n1, 1.0), 0.0)
                            # U[s] += w_a C[a, s] / N_a(y): the tuples are rebuilt at compile time
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
                else:
                    # n = 4 (166 antichains): a runtime loop with the coefficients read from coef_ptr;
                    # fully unrolled, the kernel takes minutes to compile and spills heavily
                    for a in range(NA):
                        n0 = tl.zeros([BLOCK_B], ACC)
                        n1 = tl.zeros([BLOCK_B], ACC)
                        dd = tl.zeros([BLOCK_B], ACC)
                        CS = ()
                        for s in tl.static_range(S):
                            c = tl.load(coef_ptr + a * S + s).to(ACC)
                            CS = CS + (c,)
                            n0 += c * M0[s]
                            n1 += c * M1[s]
                            dd += c * CN[s]
                        ok0 = n0 > 0
                        ok1 = n1 > 0
                        rd = 1.0 / tl.where(dd > 0, dd, 1.0)
                        l0 = tl.where(ok0, tl.log2(tl.where(ok0, n0 * (rd * q0), 1.0)), 0.0)
                        l1 = tl.where(ok1, tl.log2(tl.where(ok1, n1 * (rd * q1), 1.0)), 0.0)
                        # each lane's row entry is read and written by the thread that owns it
                        rl = rslot + a * BLOCK_B + lanes
                        tl.store(rl, tl.load(rl) + (th * l0 + th1 * l1))
                        if NEED_GRAD:
                            wa = tl.load(wg_ptr + a).to(ACC)
                            wl0 += wa * l0
                            wl1 += wa * l1
                            r0 = tl.where(ok0, 1.0 / tl.where(ok0, n0, 1.0), 0.0)
                            r1 = tl.where(ok1, 1.0 / tl.where(ok1, n1, 1.0), 0.0)
                            NU0 = ()
                            NU1 = ()
                            for s in tl.static_range(S):
                                cw = wa * CS[s]
                                NU0 = NU0 + (U0[s] + cw * r0,)
                                NU1 = NU1 + (U1[s] + cw * r1,)
                            U0 = NU0
                            U1 = NU1
                if NEED_GRAD:
                    for s in tl.static_range(S):
                        tl.atomic_add(tslot + CELL[s] * 2, th * U0[s], mask=msk, sem="relaxed")
                        tl.atomic_add(tslot + CELL[s] * 2 + 1, th1 * U1[s], mask=msk, sem="relaxed")
                    tl.store(dth_ptr + row, wl0 - wl1, mask=msk)  # parked until pass 4
            if UNROLL:
                redacc = tl.zeros([APAD], ACC)
                for a in tl.static_range(NA):
                    redacc += tl.where(a_idx == a, tl.sum(RL[a], axis=0), 0.0)
                tl.store(red_ptr + nid * NA + a_idx, redacc / b_f, mask=a_idx < NA)
            else:
                tl.debug_barrier()  # the rows are now read across lanes
                for a in range(NA):
                    tot = tl.sum(tl.load(rslot + a * BLOCK_B + lanes, cache_modifier=".cg"), axis=0)
                    tl.store(red_ptr + nid * NA + a, tot / b_f)
            lp0 = tl.log2(tl.where(p0 > 0, p0 / b_f, 1.0))  # log2 p(fire), 0 where p = 0
            lp1 = tl.log2(tl.where(p1 > 0, p1 / b_f, 1.0))
            h0 = (p0 / b_f) * lp0
            h1 = (p1 / b_f) * lp1
            tl.store(hy_ptr + nid, -(h0 + h1))

            # ---- pass 4: gather the backward tables, finish dtheta ----------------------------
            if NEED_GRAD:
                tl.debug_barrier()
                c0 = tl.where(p0 > 0, wsum * INV_LN2 + gamma_h * (lp0 + INV_LN2), 0.0)
                c1 = tl.where(p1 > 0, wsum * INV_LN2 + gamma_h * (lp1 + INV_LN2), 0.0)
                for start in range(0, B, BLOCK_B):
                    offs = start + lanes
                    msk = offs < B
                    row = offs.to(tl.int64) * N + nid
                    code = tl.load(cslot + offs, mask=msk, other=0)
                    bs = ()
                    for j in tl.static_range(NSRC):
                        bs = bs + ((code // JSTR[j]) % KS[j],)
                    tdiff = tl.zeros([BLOCK_B], ACC)
                    for s in tl.static_range(S):
                        cell = tl.zeros([BLOCK_B], tl.int32) + SUBOFF[s]
                        for j in tl.static_range(NSRC):
                            if SUBSTR[s * NSRC + j] != 0:
                                cell += bs[j] * SUBSTR[s * NSRC + j]
                        t0 = tl.load(tslot + cell * 2, mask=msk, other=0.0, cache_modifier=".cg")
                        t1 = tl.load(tslot + cell * 2 + 1, mask=msk, other=0.0, cache_modifier=".cg")
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
# CTAs of one configuration that fit on an SM, learned from the compiled kernel after its first
# launch: a persistent grid larger than what is resident would leave a tail of late programs.
_RESIDENT: Dict[tuple, int] = {}


def _resident_ctas(compiled, num_warps: int) -> Optional[int]:
    try:
        n_regs = int(compiled.n_regs)
        shared = int(compiled.metadata.shared)
    except Exception:  # pragma: no cover - attribute names differ between triton versions
        return None
    by_regs = 65536 // max(1, ((n_regs + 7) // 8) * 8 * 32 * num_warps)
    by_smem = (227 << 10) // max(1, shared)
    return max(1, min(by_regs, by_smem, 64 // num_warps, 32))


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


_COEF_DEV: Dict[tuple, torch.Tensor] = {}
# coef rows read from a device tensor, keyed by (data_ptr, version, shape, device); the entry keeps
# the tensor alive, so its address cannot be reused by another tensor while it is cached.
_COEF_ROWS: Dict[tuple, Tuple[torch.Tensor, list]] = {}


def _coef_rows(coef) -> list:
    """coef as nested python lists; a CUDA tensor is read (a host sync) once, then cached."""
    if not isinstance(coef, torch.Tensor) or coef.device.type == "cpu":
        return torch.as_tensor(coef).to(torch.int64).tolist()
    key = (coef.data_ptr(), coef._version, tuple(coef.shape), str(coef.device))
    hit = _COEF_ROWS.get(key)
    if hit is None:
        if len(_COEF_ROWS) >= 16:
            _COEF_ROWS.clear()
        hit = _COEF_ROWS[key] = (coef, coef.to("cpu", torch.int64).tolist())
    return hit[1]


def _coef_on(device: torch.device, flat: tuple) -> torch.Tensor:
    """The coefficients as an int32 tensor on ``device`` (copied once per device and matrix)."""
    key = (str(device), flat)
    t = _COEF_DEV.get(key)
    if t is None:
        t = torch.tensor(flat, dtype=torch.int32).to(device)
        _COEF_DEV[key] = t
    return t


def _constexprs(nb: Sequence[int], flat_coef: tuple, A: int, adaptive: bool, need_grad: bool,
                dtype: torch.dtype, block_b: int) -> dict:
    """The compile-time arguments of one kernel specialization (shared by launch and AOT compile)."""
    n = len(nb)
    jstr, suboff, substr, cells = _layout(nb)
    unroll = A <= UNROLL_MAX_ANTICHAINS
    return dict(
        NSRC=n, KS=tuple(nb), JSTR=jstr, NSTEPS=(max(nb) + 1).bit_length(),
        S=(1 << n) - 1, SUBOFF=suboff, SUBSTR=substr, CELLS=cells,
        COEF=flat_coef if unroll else (), NA=A, APAD=triton.next_power_of_2(A),
        ADAPTIVE=bool(adaptive), NEED_GRAD=bool(need_grad), IS_F64=dtype == torch.float64,
        UNROLL=unroll, BLOCK_B=block_b,
    )


def compile_for_target(
    arch: int = 90,
    *,
    n: int = 3,
    nbins: Sequence[int] = (20, 20, 20),
    dtype: torch.dtype = torch.float32,
    need_grad: bool = True,
    adaptive: bool = False,
    block_b: int = 128,
    num_warps: int = 4,
):
    """Compile the kernel ahead of time for ``sm_<arch>`` without a GPU; returns a :class:`CompiledForTarget`.

    The specialization is the one :func:`pid_kernel_triton` launches for these arguments (the same
    constexprs, from the lattice's coefficient matrix), so a compile error or an unsupported
    operation shows up on a machine without a GPU, which the interpreter cannot do. The result
    holds ``asm["ptx"]`` (str), ``asm["cubin"]`` (bytes) and triton's ``metadata`` (``arch``,
    ``shared``, ``num_warps``, ...); ``bench/gpu_compile_report.py`` prints registers and spills.

    The real compiler runs whatever TRITON_INTERPRET says. Where triton itself was imported with
    the interpreter on (its standard library is then made of interpreted functions, which the
    compiler cannot take), the compile runs in a fresh Python process with the switch off.
    """
    if triton is None:
        raise RuntimeError(f"backend 'triton' is not available: {unavailable_reason()}")
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    from .lattice import coef_matrix

    if not isinstance(n, int) or not 1 <= n <= MAX_SOURCES:
        raise ValueError(f"n must be an int in 1..{MAX_SOURCES}, got {n!r}")
    if dtype not in (torch.float32, torch.float64):
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
    if not isinstance(arch, int) or arch < 70:
        raise ValueError(f"arch must be a CUDA compute capability as an int >= 70 (90 = sm_90), got {arch!r}")
    nb = int_list(nbins)
    if len(nb) != n or min(nb) < 1:
        raise ValueError(f"nbins must hold {n} ints >= 1, got {nb}")
    block_b = triton.next_power_of_2(max(16, int(block_b)))  # as the launcher rounds it
    rows = torch.as_tensor(coef_matrix(n)).to(torch.int64).tolist()
    flat = tuple(int(c) for r in rows for c in r)
    cx = _constexprs(nb, flat, len(rows), adaptive, need_grad, dtype, block_b)
    if not _stdlib_compilable():
        return _compile_in_subprocess(arch, n, nb, dtype, need_grad, adaptive, block_b, num_warps)
    ptr = "*fp64" if dtype == torch.float64 else "*fp32"
    with _real_compiler():
        fn = triton.JITFunction(_pid_fused_kernel)
        sig = {name: _arg_type(name, cx, ptr) for name in fn.arg_names}
        k = triton.compile(ASTSource(fn, sig, cx), target=GPUTarget("cuda", arch, 32),
                           options=dict(num_warps=num_warps))
    meta = {f: getattr(k.metadata, f) for f in k.metadata._fields}
    return CompiledForTarget({"ptx": k.asm["ptx"], "cubin": bytes(k.asm["cubin"])}, SimpleNamespace(**meta))


class CompiledForTarget(NamedTuple):
    """What :func:`compile_for_target` returns: ``asm`` {"ptx": str, "cubin": bytes} and
    triton's compile ``metadata`` as attributes (``arch`` e.g. "sm90", ``shared``, ``num_warps``)."""

    asm: dict
    metadata: SimpleNamespace


def _stdlib_compilable() -> bool:
    """False where triton was imported under TRITON_INTERPRET=1 (its tl.sum etc. are interpreted)."""
    from triton.runtime.jit import JITFunction

    return isinstance(getattr(tl, "sum", None), JITFunction)


def _compile_in_subprocess(arch, n, nbins, dtype, need_grad, adaptive, block_b, num_warps) -> "CompiledForTarget":
    import base64
    import json
    import subprocess
    import sys

    kw = dict(n=n, nbins=list(nbins), dtype=str(dtype).split(".")[-1], need_grad=bool(need_grad),
              adaptive=bool(adaptive), block_b=int(block_b), num_warps=int(num_warps))
    code = (
        "import base64, json, sys, torch\n"
        "from infomorph_kernels import triton_kernels as tk\n"
        "kw = json.loads(sys.argv[2]); kw['dtype'] = getattr(torch, kw['dtype'])\n"
        "k = tk.compile_for_target(int(sys.argv[1]), **kw)\n"
        "meta = {f: v for f, v in vars(k.metadata).items() if isinstance(v, (int, float, str, bool, type(None)))}\n"
        "print(json.dumps({'ptx': k.asm['ptx'], 'cubin': base64.b64encode(k.asm['cubin']).decode(), 'meta': meta}))\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")  # this very package, installed or not
    res = subprocess.run([sys.executable, "-c", code, str(arch), json.dumps(kw)], capture_output=True, text=True, env=env)
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"compile_for_target: the compile (run in a fresh process, since triton was imported "
                           f"with TRITON_INTERPRET=1) failed:\n{tail}")
    out = json.loads(res.stdout.strip().splitlines()[-1])
    return CompiledForTarget({"ptx": out["ptx"], "cubin": base64.b64decode(out["cubin"])}, SimpleNamespace(**out["meta"]))


def _arg_type(name: str, cx: dict, ptr: str) -> str:
    """Triton signature type of kernel argument ``name`` (constexprs by value in ``cx``)."""
    if name in cx:
        return "constexpr"
    if name in ("B", "N", "edge_stride"):
        return "i32"
    if name in ("code_ptr", "coef_ptr"):
        return "*i32"
    return ptr


@contextlib.contextmanager
def _real_compiler():
    """Triton's code generator with the interpreter switched off, whatever TRITON_INTERPRET says.

    Triton reads the switch while it builds the IR (constexpr handling differs in interpreter
    mode), so an ahead-of-time compile in a process that runs the interpreter fails on a cold
    cache. The environment variable and triton's knob are restored afterwards.
    """
    saved_env = os.environ.pop("TRITON_INTERPRET", None)
    runtime = getattr(getattr(triton, "knobs", None), "runtime", None)
    missing = object()
    saved_knob = runtime.__dict__.get("interpret", missing) if runtime is not None else missing
    if runtime is not None:
        runtime.__dict__["interpret"] = False  # an override, so a knob set in code is bypassed too
    try:
        yield
    finally:
        if saved_env is not None:
            os.environ["TRITON_INTERPRET"] = saved_env
        if runtime is not None:
            if saved_knob is missing:
                runtime.__dict__.pop("interpret", None)
            else:
                runtime.__dict__["interpret"] = saved_knob


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
    Host synchronization: none once a CUDA ``coef`` has been read (cached per tensor; a CPU
    ``coef`` is never a sync) and when ``w`` lives on x's device (copying a CPU ``w`` may sync).
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
    nb = int_list(nbins)
    if len(nb) != n or min(nb) < 1:
        raise ValueError(f"nbins must hold {n} ints >= 1, got {nb}")
    coef_rows = _coef_rows(coef)
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

    cells = _layout(nb)[3]
    if math.prod(nb) >= 2**31 or cells * 4 >= 2**31:
        raise ValueError(f"nbins {nb}: the joint bin code and the table offsets must fit in int32")
    if block_b is None:
        block_b = min(128, triton.next_power_of_2(B)) if interp else 128
    block_b = triton.next_power_of_2(max(16, int(block_b)))  # tl.arange needs a power of two
    unroll = A <= UNROLL_MAX_ANTICHAINS
    elt = x.element_size()
    slot_bytes = cells * (4 + (2 if need_grad else 0)) * elt + B * 4 + (0 if unroll else A * block_b * elt)
    config = (str(device), n, tuple(nb), A, bool(adaptive), bool(need_grad), dtype, block_b, num_warps)
    if num_programs is None:
        if interp:
            cap = 4
        else:
            cap = _sm_count(device) * _RESIDENT.get(config, PROGRAMS_PER_SM)
        num_programs = min(N, cap, max(1, WORKSPACE_BYTES // slot_bytes))
    G = max(1, min(int(num_programs), N))

    mws = torch.empty(G * cells * 4, dtype=dtype, device=device)
    tws = torch.empty(G * cells * 2 if need_grad else 2, dtype=dtype, device=device)
    codes = torch.empty(G * B, dtype=torch.int32, device=device)
    flat_coef = tuple(int(c) for r in coef_rows for c in r)
    if unroll:
        rl = torch.empty(1, dtype=dtype, device=device)
        coef_dev = codes
    else:
        rl = torch.empty(G * A * block_b, dtype=dtype, device=device)
        coef_dev = _coef_on(device, flat_coef)

    compiled = _kernel()[(G,)](
        x, theta, edges, clo, chi, wg,
        red, h_y, dtheta if need_grad else red, codes, mws, tws, rl, coef_dev,
        B, N, edges.shape[1],
        **_constexprs(nb, flat_coef, A, adaptive, need_grad, dtype, block_b), num_warps=num_warps,
    )
    if not interp and config not in _RESIDENT:
        resident = _resident_ctas(compiled, num_warps)
        if resident is not None:
            _RESIDENT[config] = resident
    return red, h_y, dtheta
