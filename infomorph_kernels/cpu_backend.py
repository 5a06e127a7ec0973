"""Backend ``"cpu"``: the fused C++ engine (csrc/cpu, OpenMP over neurons, pybind11 module ``_cpu``).

One call computes a whole layer: binning, the theta-weighted marginal tables, the redundancies of
every antichain, H(Y) and (``need_grad``) dG/dtheta - docs/kernel_contract.md is the contract and
``infomorph_kernels.reference.pid_kernel_reference`` the oracle.

Importing this module never fails: the compiled module is loaded lazily, and
:func:`is_available` / :func:`unavailable_reason` say whether it is there and how to build it.

Threads: by default as many as ``torch.get_num_threads()`` (which follows ``OMP_NUM_THREADS`` and
``torch.set_num_threads``) less the cores that other processes keep busy now (``threads.py``,
looked at again at most twice a second). A layer call is short (milliseconds, between torch's own
small operations): beside a busy process its threads wait for one another and torch's idle pool
threads spin against the engine, so while other processes keep cores busy the default lowers
torch's thread count with the engine's, and gives it back (up to the count it found) when they are
gone (measured, issue 43: one busy core, a 100-neuron layer 12.0 ms with torch on 2 threads and the
engine on 1, 6.9 ms with both on 1). Long calls (the group engine of ``pid_labels``, local atoms)
keep the user's count: their work is handed out in small chunks, so a descheduled thread delays only
its chunk, and a thread more is a larger share of a shared machine (``pid_labels`` beside two busy
cores: 1.38 s on 1 thread, 0.95 s on 2). :func:`set_num_threads` fixes the count for this backend
(and leaves torch's alone), ``pid_kernel_cpu(..., num_threads=k)`` for one call. Results do not
depend on the thread count (each neuron runs on one thread, bit-identical).
"""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch

from . import _ext
from .threads import AutoThreads
from ._validate import int_list, kernel_tensor, validate_values

_BUILD_HINT = "run `pip install --no-build-isolation -e .` (or `python setup.py build_ext --inplace`)"
_num_threads: Optional[int] = None
_auto = AutoThreads(interval=0.5)
_lowered: Optional[Tuple[int, int]] = None  # (torch's count as found, the count set): while backed off


def _load():
    return _ext.load("_cpu")[0]


def _require():
    """The compiled module, or RuntimeError saying why it cannot run and how to build it."""
    mod = _load()
    if mod is None:
        raise RuntimeError(f"backend 'cpu' cannot run: {unavailable_reason()}")
    return mod


def is_available() -> bool:
    """True if the compiled C++ CPU engine can be imported."""
    return _load() is not None


def unavailable_reason() -> str:
    """Why the engine cannot run ("" if it can), with the command that builds it."""
    if _load() is not None:
        return ""
    return f"the C++ CPU engine (infomorph_kernels._cpu) is not built: {_BUILD_HINT} [import error: {_ext.load('_cpu')[1]}]"


def set_num_threads(num_threads: Optional[int]) -> None:
    """Threads used by this backend; ``None``: the default again (torch's count less the cores
    busy elsewhere)."""
    global _num_threads
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ValueError(f"num_threads must be an int >= 1 or None, got {num_threads!r}")
    _num_threads = num_threads


def _user_threads() -> int:
    """torch's thread count as the user set it (the count found before a back-off lowered it)."""
    global _lowered
    t = max(1, torch.get_num_threads())
    if _lowered is not None and t != _lowered[1]:
        _lowered = None  # changed since by the user: theirs counts
    return _lowered[0] if _lowered is not None else t


def get_num_threads() -> int:
    """Threads the next (short) call will use unless it passes num_threads: see the module's text."""
    global _lowered
    if _num_threads is not None:
        return _num_threads
    cap = _user_threads()
    if cap <= 1:
        return 1
    n = _auto.get(cap)
    if n != torch.get_num_threads():  # torch's pool follows (back up to the count found)
        torch.set_num_threads(n)
        _lowered = (cap, n) if n < cap else None
    return n


def long_call_threads() -> int:
    """Threads of a long call (the group engine, local atoms): the set count, else the user's."""
    return _num_threads if _num_threads is not None else _user_threads()


def _raise_on_status(status: int, x: torch.Tensor, theta: torch.Tensor) -> None:
    """The engine flagged invalid values while binning (check_values): raise the API's message."""
    if status:
        validate_values(torch.stack(x, -1) if isinstance(x, tuple) else x, theta)
        raise ValueError(f"the engine found invalid values (status {status}) that the argument checks did not")


def _check_cpu_tensor(name: str, t, dtype, shape) -> torch.Tensor:
    return kernel_tensor(name, t, "cpu", "cpu", dtype, shape)


def pid_kernel_cpu(
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
    num_threads: Optional[int] = None,
    check_values: bool = False,
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The kernel contract on the CPU engine.

    x: [B, N, n] float32/float64; theta: [B, N] same dtype, in [0, 1]; edges: [n, Kmax + 1];
    nbins: n ints >= 1; clamp_lo/clamp_hi: [n]; coef: [A, 2^n - 1] integer; w: [A] (need_grad);
    returns ``red [N, A]``, ``h_y [N]``, ``dtheta [B, N]`` (numel 0 unless need_grad), in x's dtype.
    The caller's tensors are never written. ``check_values``: the engine itself checks, while it
    bins, that x is finite and theta in [0, 1] (no extra pass over the data) and raises the
    public API's ValueError otherwise.
    """
    mod = _require()
    if not isinstance(x, torch.Tensor) or x.dim() != 3:
        raise ValueError(f"x must be a [batch, neurons, sources] tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if x.dtype not in (torch.float32, torch.float64):
        raise TypeError(f"x must be float32 or float64, got {x.dtype}")
    B, N, n = (int(v) for v in x.shape)
    dt = x.dtype
    nbins = int_list(nbins)
    if len(nbins) != n:
        raise ValueError(f"nbins must have one entry per source ({n}), got {len(nbins)}")
    x = _check_cpu_tensor("x", x, dt, None)
    theta = _check_cpu_tensor("theta", theta, dt, (B, N))
    if edges.dim() != 2 or edges.shape[0] != n:
        raise ValueError(f"edges must be [{n}, Kmax + 1], got shape {tuple(edges.shape)}")
    edges = _check_cpu_tensor("edges", edges, dt, None)
    clamp_lo = _check_cpu_tensor("clamp_lo", clamp_lo, dt, (n,))
    clamp_hi = _check_cpu_tensor("clamp_hi", clamp_hi, dt, (n,))
    S = (1 << n) - 1
    coef = torch.as_tensor(coef)
    if coef.dim() != 2 or coef.shape[1] != S:
        raise ValueError(f"coef must be [A, {S}] for {n} sources, got shape {tuple(coef.shape)}")
    coef = _check_cpu_tensor("coef", coef.to(torch.int32), torch.int32, None)
    A = int(coef.shape[0])
    if need_grad:
        w = _check_cpu_tensor("w", torch.as_tensor(w, dtype=torch.float64), torch.float64, (A,))
    _, red, h_y, dtheta = _run_layer(mod, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef,
                                     w if need_grad else None, gamma_h, need_grad, check_values, num_threads, False)
    return red, h_y, dtheta


_EMPTY = {}
_NO_LOCAL: list = []  # pid_layer's local_out: none


def _run_layer(mod, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, gamma_h, need_grad,
               check_values, num_threads, with_goal):
    """One engine call on checked, contiguous CPU tensors: ``goal (or None), red, h_y, dtheta``
    (dtheta empty unless need_grad; the goal needs w). x: [B, N, n], or a tuple of n [B, N]."""
    if isinstance(x, tuple):
        B, N = x[0].shape
        dt = x[0].dtype
        x_ptr, srcs = 0, [p.data_ptr() for p in x]
    else:
        B, N, _ = x.shape
        dt = x.dtype
        x_ptr, srcs = x.data_ptr(), _NO_LOCAL
    A = coef.shape[0]
    red = torch.empty((N, A), dtype=dt)
    h_y = torch.empty((N,), dtype=dt)
    goal = torch.empty((N,), dtype=dt) if with_goal else None
    if need_grad:
        dtheta = torch.empty((B, N), dtype=dt)
    else:
        dtheta = _EMPTY.get(dt)
        if dtheta is None:
            dtheta = _EMPTY[dt] = torch.empty((0,), dtype=dt)
    threads = get_num_threads() if num_threads is None else int(num_threads)
    status = mod.pid_layer(
        x_ptr, theta.data_ptr(), edges.data_ptr(), edges.shape[1], nbins,
        clamp_lo.data_ptr(), clamp_hi.data_ptr(), bool(adaptive),
        coef.data_ptr(), A, w.data_ptr() if w is not None else 0, float(gamma_h), bool(need_grad),
        B, N, dt == torch.float64,
        red.data_ptr(), h_y.data_ptr(), dtheta.data_ptr() if need_grad else 0, threads, bool(check_values),
        _NO_LOCAL, 0, 0, goal.data_ptr() if goal is not None else 0, srcs,  # positional: keywords cost ~2 us
    )  # fmt: skip
    if status:
        _raise_on_status(status, x, theta)
    return goal, red, h_y, dtheta


def local_kernel_cpu(x: torch.Tensor, theta: torch.Tensor, binning, coef: torch.Tensor, moebius: torch.Tensor,
                     num_threads: Optional[int] = None, check_values: bool = False) -> Tuple[torch.Tensor, ...]:
    """Local atoms at every sample's joint cell, fused (one pass, no dense tables).

    x: [B, N, n], theta: [B, N] (shapes validated by the caller; ``check_values`` as in
    :func:`pid_kernel_cpu`); binning: :class:`~.binning.Binning`; coef: the lattice's
    [A, 2^n - 1]; moebius: its float64 [A, A]. Returns ``red [N, A]``, ``h_y [N]`` (as the
    forward), then ``informative``,
    ``misinformative``, ``atoms`` ``[B, N, 2, A]`` and ``h_res [B, N, 2]`` in x's dtype (views of
    neuron-major storage), y = 0 silent, 1 fire (reference.pid_samples_local + the Moebius inversion is the oracle).
    """
    from .lattice import full_index

    mod = _require()
    B, N, n = (int(v) for v in x.shape)
    A = int(coef.shape[0])
    dt = x.dtype
    x = _check_cpu_tensor("x", x, dt, None)
    theta = _check_cpu_tensor("theta", theta, dt, (B, N))
    coef = _check_cpu_tensor("coef", torch.as_tensor(coef).to(torch.int32), torch.int32, None)
    moebius = _check_cpu_tensor("moebius", moebius.to(torch.float64), torch.float64, (A, A))
    red = torch.empty((N, A), dtype=dt)
    h_y = torch.empty((N,), dtype=dt)
    # written neuron-major (each neuron's block contiguous, as the engine runs), returned as
    # [B, N, ...] views: a sample-major write from a neuron-major pass thrashes the TLB (9x slower)
    outs = [torch.empty((N, B, 2, A), dtype=dt) for _ in range(3)] + [torch.empty((N, B, 2), dtype=dt)]
    threads = long_call_threads() if num_threads is None else int(num_threads)
    status = mod.pid_layer(
        x.data_ptr(), theta.data_ptr(), binning.edges.data_ptr(), int(binning.edges.shape[1]), list(binning.nbins),
        binning.clamp_lo.data_ptr(), binning.clamp_hi.data_ptr(), bool(binning.adaptive),
        coef.data_ptr(), A, 0, 0.0, False, B, N, dt == torch.float64,
        red.data_ptr(), h_y.data_ptr(), 0, threads, bool(check_values), [o.data_ptr() for o in outs], full_index(n),
        moebius.data_ptr(),
    )  # fmt: skip
    _raise_on_status(status, x, theta)
    return (red, h_y) + tuple(o.transpose(0, 1) for o in outs)


def goal_kernel_cpu(x: torch.Tensor, theta: torch.Tensor, binning, coef: torch.Tensor, w: torch.Tensor,
                    gamma_h: float, need_grad: bool, check_values: bool = False,
                    num_threads: Optional[int] = None) -> Tuple[torch.Tensor, ...]:
    """The public API's lean call: ``goal [N], red [N, A], h_y [N], dtheta [B, N]`` in one engine
    call, the goal ``G = w . red + gamma_h h_y`` computed by the engine from its float64
    redundancies. The caller has checked every argument (``ik.pid``): x [B, N, n] (or a tuple
    of n [B, N], the sources unstacked) and theta [B, N] contiguous CPU tensors of one float dtype, ``binning`` a cached
    :class:`~.binning.Binning` of that dtype, coef the lattice's int32 [A, 2^n - 1], w a
    contiguous float64 [A]. dtheta is empty unless need_grad."""
    mod = _require()
    return _run_layer(mod, x, theta, binning.edges, binning.nbins, binning.clamp_lo, binning.clamp_hi,
                      binning.adaptive, coef, w, gamma_h, need_grad, check_values, num_threads, True)


def sample_pm1_cpu(theta: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """+1 with probability theta, -1 otherwise, for a float32/float64 CPU tensor, on the engine
    (about 10x torch.rand + torch.where on 2 cores). The seed is drawn from ``generator`` (torch's
    default generator when None), so ``torch.manual_seed`` makes the samples reproducible; the
    uniforms come from a counter-based hash of (seed, index): no dependence on the thread count."""
    mod = _require()
    t = theta.detach().contiguous()
    out = torch.empty_like(t)
    seed = int(torch.randint(-(2**63), 2**63 - 1, (1,), dtype=torch.int64, generator=generator)) & (2**64 - 1)
    mod.sample_pm1(t.data_ptr(), out.data_ptr(), t.numel(), t.dtype == torch.float64, seed, get_num_threads())
    return out


def trivariate_forward_cpu(f: torch.Tensor, c: torch.Tensor, l: torch.Tensor, params: Sequence[float]) -> torch.Tensor:
    """theta of the trivariate activation (csrc/cpu/activation.h) for contiguous float32 CPU tensors
    of one shape (checked by the caller); params (a1, a2, b1, b2)."""
    mod = _require()
    theta = torch.empty_like(f)
    mod.trivariate_fwd(f.data_ptr(), c.data_ptr(), l.data_ptr(), theta.data_ptr(), f.numel(), list(params),
                       get_num_threads())
    return theta


def trivariate_backward_cpu(f, c, l, theta, grad, params) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(df, dc, dl) of the trivariate activation for the upstream gradient ``grad`` of theta."""
    mod = _require()
    g = grad.contiguous()
    df, dc, dl = torch.empty_like(f), torch.empty_like(f), torch.empty_like(f)
    mod.trivariate_bwd(f.data_ptr(), c.data_ptr(), l.data_ptr(), theta.data_ptr(), g.data_ptr(), df.data_ptr(),
                       dc.data_ptr(), dl.data_ptr(), f.numel(), list(params), get_num_threads())
    return df, dc, dl


CELLS_MAX_JOINT = 1 << 24  # csrc/cpu/pid_cells.h kCellsMaxJoint: the joint map is dense


def cells_kernel_cpu(bins: torch.Tensor, thetas: torch.Tensor, nbins: Sequence[int], coef: torch.Tensor,
                     wg: Optional[torch.Tensor], published: bool, need_grad: bool,
                     num_threads: Optional[int] = None) -> Tuple[torch.Tensor, ...]:
    """``ik.pid_binned`` on the engine (csrc/cpu/pid_cells.h): bins [B, N, n] integer, thetas
    [B, N, T] float (checked by the caller), wg the API's goal weights [A + 1] float64 or None.
    Returns ``red [N, A], h_y [N], goal [N] or None, dthetas [B, N, T] or None``, float64."""
    mod = _require()
    B, N, n = bins.shape
    T = thetas.shape[2]
    A = coef.shape[0]
    b = bins.to(torch.int32).permute(1, 0, 2).contiguous()
    t = thetas.detach().to(torch.float64).permute(1, 0, 2).contiguous()
    red = torch.empty((N, A), dtype=torch.float64)
    h_y = torch.empty((N,), dtype=torch.float64)
    goal = torch.empty((N,), dtype=torch.float64) if wg is not None else None
    dth = torch.empty((N, B, T), dtype=torch.float64) if need_grad else None
    w = wg[:-1].contiguous() if wg is not None else None
    mod.pid_cells(b.data_ptr(), t.data_ptr(), N, B, n, T, [int(k) for k in nbins], coef.data_ptr(), A,
                  w.data_ptr() if w is not None else 0, float(wg[-1]) if wg is not None else 0.0, published,
                  need_grad, red.data_ptr(), h_y.data_ptr(), goal.data_ptr() if goal is not None else 0,
                  dth.data_ptr() if dth is not None else 0,
                  long_call_threads() if num_threads is None else int(num_threads))  # fmt: skip
    return red, h_y, goal, (dth.permute(1, 0, 2) if dth is not None else None)


def groups_kernel_cpu(sym: torch.Tensor, idx: torch.Tensor, labels: torch.Tensor, K: int, L: int, n: int,
                      h_t: float, coef: torch.Tensor) -> torch.Tensor:
    """Redundancies ``[G, A]`` (float64) of groups of discrete neurons about a label on the group
    engine (csrc/cpu/pid_groups.h): ``sym [B, N]`` symbols in 0..L-1, ``idx [G, n]`` the neurons of
    each group, ``labels [B]`` in 0..K-1, ``h_t`` = H(label) in bits, ``coef`` the int32 coefficient
    table of n sources. A long call: the user's thread count (see the module's text)."""
    mod = _require()
    B, N = sym.shape
    symT = sym.t().contiguous().to(torch.int32)  # [N, B]: each group reads n contiguous columns
    lab = labels.to(torch.int32).contiguous().cpu()
    g = idx.to(torch.int64).contiguous().cpu()
    coef = coef.to(torch.int32).contiguous()
    A = coef.shape[0]
    red = torch.empty(g.shape[0], A, dtype=torch.float64)
    mod.pid_groups(symT.data_ptr(), N, B, L, lab.data_ptr(), K, g.data_ptr(), g.shape[0], n, coef.data_ptr(), A,
                   h_t, red.data_ptr(), long_call_threads())
    return red
