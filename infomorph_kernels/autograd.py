"""The autograd of the fused engines: each forward runs a fused kernel that returns the goal G
and dG/dtheta in the same call (docs/math.md section 5); each backward only scales that saved
derivative by the incoming gradient. The redundancies and H(Y) returned alongside are not
differentiable: gradients reach theta through the goal.

One Function per real difference in what runs (:func:`dispatch.route` picks among them):

- ``infomorph_kernels::pid_fused``, a torch.library custom op with a fake implementation:
  torch.compile traces through it without a graph break (route "traced");
- ``PIDFused``, its eager twin with the same forward and backward (routes "fused", "local"): the
  custom op's dispatch costs ~0.1 ms a call, most of a small layer's time;
- ``CPUGoal``, the lean CPU call for a fixed goal (route "cpu_goal"): the engine adds the goal
  itself and takes the binning as one object;
- ``CellsGoal``, ``ik.pid_binned`` (samples already binned, any target alphabet): another engine
  entry point with other inputs;
- ``TrivariateActivation``, the fused activation of three sources (not a PID);
- ``_FirstOrderOnly``, which makes a second derivative raise instead of being silently zero.
"""
from __future__ import annotations

from typing import List, Tuple

import torch
from torch import Tensor

from . import dispatch
from ._logmath import INV_LN2 as _INV_LN2, safe_log2 as _safe_log2



def _entropy_grad(theta: Tensor) -> Tensor:
    """dH(Y)/dtheta(fire) - dH(Y)/dtheta(silent) per neuron, [N] (the same for every sample):
    ``-(1/B) sum_y sign(y) [p(y) > 0] (log2 p(y) + 1/ln2)`` (docs/kernel_contract.md)."""
    B = theta.shape[0]
    p_fire = theta.sum(dim=0, dtype=torch.float64) / B
    p_silent = (1.0 - theta.to(torch.float64)).sum(dim=0) / B

    def term(p):  # [p > 0] (log2 p + 1/ln2)
        ok = p > 0
        return _safe_log2(p, ok) + ok * _INV_LN2

    return -(term(p_fire) - term(p_silent)) / B


def _forward(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, wg, need_grad, backend, check_values=False):
    """The fused forward: ``goal [N], red [N, A], h_y [N], dtheta [B, N]`` (dtheta empty unless
    need_grad). ``check_values`` (backend "cpu" only): the engine checks x and theta as it bins."""
    fn = dispatch.kernel(backend)
    w = wg[:-1].detach()
    if backend == "cpu":
        # a CPU tensor: gamma_H as a float costs no synchronization, and the engine adds the H(Y)
        # part of the gradient itself (docs/math.md section 5)
        red, h_y, dtheta = fn(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, float(wg[-1]), need_grad,
                              check_values=check_values)
        gamma_h = wg[-1].detach().to(red.dtype)
    else:
        # The GPU kernels run with gamma_H = 0 and the H(Y) part is added here from device tensors:
        # reading gamma_H as a Python float would synchronize a GPU on every step.
        red, h_y, dtheta = fn(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, w, 0.0, need_grad)
        gamma_h = wg[-1].detach().to(red.dtype)
        if need_grad:
            dtheta = dtheta + gamma_h * _entropy_grad(theta).to(dtheta.dtype)
    goal = red @ w.to(red.dtype) + gamma_h * h_y
    return goal, red, h_y, dtheta


@torch.library.custom_op("infomorph_kernels::pid_fused", mutates_args=())
def pid_fused(
    x: Tensor,
    theta: Tensor,
    edges: Tensor,
    nbins: List[int],
    clamp_lo: Tensor,
    clamp_hi: Tensor,
    adaptive: bool,
    coef: Tensor,
    wg: Tensor,
    need_grad: bool,
    backend: str,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Returns ``goal [N], red [N, A], h_y [N], dtheta [B, N]`` (dtheta empty unless need_grad).

    ``wg`` [A + 1] float64: the goal weights on the redundancies, then gamma_H
    (``G = wg[:-1] . I + wg[-1] H(Y)``, :func:`lattice.goal_weights`). This is what torch.compile
    traces; eager calls take :class:`PIDFused` (the same forward and backward, less dispatch).
    """
    return _forward(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, wg, need_grad, backend)


@pid_fused.register_fake
def _pid_fused_fake(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, wg, need_grad, backend):
    B, N, _ = x.shape
    A = coef.shape[0]
    dtheta = x.new_empty((B, N)) if need_grad else x.new_empty((0,))
    return x.new_empty((N,)), x.new_empty((N, A)), x.new_empty((N,)), dtheta


class _FirstOrderOnly(torch.autograd.Function):
    """dG/dtheta as a function of theta whose own derivative raises a clear error.

    Used only when a backward builds a graph (``create_graph=True``): a first-order gradient taken
    that way works; differentiating it again (double backward) names the backends that can."""

    @staticmethod
    def forward(ctx, dtheta, theta, backend):
        ctx.backend = backend
        return dtheta.view_as(dtheta)

    @staticmethod
    def backward(ctx, grad):
        raise RuntimeError(
            f"double backward (the gradient of a gradient) is not supported by backend {ctx.backend!r}: its "
            "backward is the fused analytic dG/dtheta, which has no derivative of its own; use backend="
            f"'reference' or 'reference_dense' (torch autograd, any order) for higher-order gradients"
        )


def _setup_context(ctx, inputs, output):
    _, red, h_y, dtheta = output
    ctx.save_for_backward(red, h_y, dtheta, inputs[1])
    ctx.backend = inputs[10]
    ctx.mark_non_differentiable(red, h_y, dtheta)
    ctx.set_materialize_grads(False)  # no zero tensors for the outputs that never carry a gradient


def _backward(ctx, g_goal, g_red, g_hy, g_dtheta):
    red, h_y, dtheta, theta = ctx.saved_tensors
    return _grads(ctx, red, h_y, dtheta, theta, g_goal)


def _grads(ctx, red, h_y, dtheta, theta, g_goal):
    grad_theta = grad_wg = None
    if g_goal is None:  # reached only through the non-differentiable outputs: no gradient
        return (None,) * 11
    if ctx.needs_input_grad[1]:
        if dtheta.numel() == 0:
            raise RuntimeError(
                "pid_fused: backward called but the forward ran without need_grad "
                "(theta did not require grad when the goal was computed)"
            )
        if torch.is_grad_enabled():  # create_graph=True: the result may be differentiated again
            dtheta = _FirstOrderOnly.apply(dtheta, theta, ctx.backend)
        grad_theta = g_goal.unsqueeze(0) * dtheta
    if ctx.needs_input_grad[8]:  # the goal is linear in its weights
        grad_wg = torch.cat([g_goal @ red, (g_goal * h_y).sum().view(1)]).to(torch.float64)
    return (None, grad_theta) + (None,) * 6 + (grad_wg, None, None)


pid_fused.register_autograd(_backward, setup_context=_setup_context)


class PIDFused(torch.autograd.Function):
    """Eager twin of the custom op: same arguments (plus ``check_values``), forward and backward,
    without the custom-op dispatch (~0.1 ms a call, most of a small layer's time)."""

    @staticmethod
    def forward(ctx, x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, wg, need_grad, backend, check_values):
        goal, red, h_y, dtheta = _forward(x, theta, edges, nbins, clamp_lo, clamp_hi, adaptive, coef, wg, need_grad,
                                          backend, check_values)
        ctx.save_for_backward(red, h_y, dtheta, theta)
        ctx.backend = backend
        ctx.mark_non_differentiable(red, h_y, dtheta)
        ctx.set_materialize_grads(False)
        return goal, red, h_y, dtheta

    @staticmethod
    def backward(ctx, g_goal, g_red, g_hy, g_dtheta):
        red, h_y, dtheta, theta = ctx.saved_tensors
        return _grads(ctx, red, h_y, dtheta, theta, g_goal) + (None,)


class CPUGoal(torch.autograd.Function):
    """The eager path of backend "cpu" for a fixed goal (weights that need no gradient): one engine
    call gives the goal and dG/dtheta (:func:`cpu_backend.goal_kernel_cpu`), with none of the
    generic op's argument plumbing (a small layer's call is mostly such overhead). Returns
    ``goal, red, h_y``; only the goal is differentiable (with respect to theta)."""

    @staticmethod
    def forward(ctx, x, theta, binning, coef, w, gamma_h, need_grad, check_values):
        from .cpu_backend import goal_kernel_cpu

        goal, red, h_y, dtheta = goal_kernel_cpu(x, theta.detach(), binning, coef, w, gamma_h, need_grad, check_values)
        ctx.save_for_backward(dtheta, theta)
        ctx.mark_non_differentiable(red, h_y)
        ctx.set_materialize_grads(False)  # red and h_y never carry a gradient: no zero tensors built for them
        return goal, red, h_y

    @staticmethod
    def backward(ctx, g_goal, g_red, g_hy):
        if g_goal is None:  # only reachable through the non-differentiable outputs: no gradient
            return (None,) * 8
        dtheta = _saved_gradient(ctx, "pid")
        return None, g_goal.unsqueeze(0) * dtheta, None, None, None, None, None, None


def _saved_gradient(ctx, who: str) -> torch.Tensor:
    """The fused dG/dtheta a CPU forward saved (with theta), ready to scale by the goal's grad."""
    dtheta, theta = ctx.saved_tensors
    if dtheta.numel() == 0:
        raise RuntimeError(
            f"{who}: backward called but the forward ran without need_grad "
            "(theta did not require grad when the goal was computed)"
        )
    if torch.is_grad_enabled():  # create_graph=True: differentiating this again raises
        dtheta = _FirstOrderOnly.apply(dtheta, theta, "cpu")
    return dtheta


class CellsGoal(torch.autograd.Function):
    """``ik.pid_binned`` with a goal on backend "cpu": the engine's forward and analytic backward
    (:func:`cpu_backend.cells_kernel_cpu`). Returns ``goal, red, h_y`` (float64); only the goal is
    differentiable (with respect to thetas)."""

    @staticmethod
    def forward(ctx, bins, thetas, nbins, coef, wg, published, need_grad):
        from .cpu_backend import cells_kernel_cpu

        red, h_y, goal, dth = cells_kernel_cpu(bins, thetas, nbins, coef, wg, published, need_grad)
        ctx.save_for_backward(dth if dth is not None else torch.empty(0), thetas)
        ctx.mark_non_differentiable(red, h_y)
        return goal, red, h_y

    @staticmethod
    def backward(ctx, g_goal, g_red, g_hy):
        dth = _saved_gradient(ctx, "pid_binned")
        return None, (g_goal.view(1, -1, 1) * dth).to(ctx.saved_tensors[1].dtype), None, None, None, None, None


class TrivariateActivation(torch.autograd.Function):
    """The trivariate activation on the CPU engine (float32, one shape, contiguous): theta with
    the analytic backward of csrc/cpu/activation.h (recomputes the two inner sigmoids)."""

    @staticmethod
    def forward(ctx, f, c, l, params):
        from . import cpu_backend

        theta = cpu_backend.trivariate_forward_cpu(f, c, l, params)
        ctx.save_for_backward(f, c, l, theta)
        ctx.params = params
        return theta

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        from . import cpu_backend

        f, c, l, theta = ctx.saved_tensors
        df, dc, dl = cpu_backend.trivariate_backward_cpu(f, c, l, theta, g, ctx.params)
        need = ctx.needs_input_grad
        return (df if need[0] else None), (dc if need[1] else None), (dl if need[2] else None), None
