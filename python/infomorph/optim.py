"""Adam for the trainer without torch.optim's start-up cost.

``torch.optim.Adam`` runs its methods through ``torch._disable_dynamo``, whose first call imports
``torch._dynamo`` (and with it much of torch.fx): about 1.5 s of every training process on a
2-core machine, more than a short run's training itself (bench/RESULTS.md, "Start-up"). The
trainer never compiles anything, so :class:`FusedAdam` takes the same step with the same kernel
``torch.optim.Adam(groups, fused=True)`` calls (``torch._fused_adam_``, one kernel per device and
dtype), and keeps the same state: its ``state_dict`` is torch's layout, so checkpoints written by
either load into the other. :func:`adam` picks it where that kernel is there (CPU and CUDA
parameters, a torch that has it) and falls back to ``torch.optim.Adam(fused=True)`` otherwise.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, List

import torch

# The keys of a param group in torch.optim.Adam's state_dict (torch 2.14), with defaults.
_GROUP_DEFAULTS: Dict[str, Any] = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=False,
                                       maximize=False, foreach=None, capturable=False, differentiable=False,
                                       fused=True, decoupled_weight_decay=False)


# options whose only supported value is torch's default
_FIXED = ("amsgrad", "maximize", "capturable", "differentiable", "decoupled_weight_decay")


def _off_default(group: Dict[str, Any]) -> Dict[str, Any]:
    """The options of a param group (given or loaded) set to a value FusedAdam's step does not take."""
    return {k: group[k] for k in _FIXED if k in group and group[k] != _GROUP_DEFAULTS[k]}


class FusedAdam:
    """``torch.optim.Adam(param_groups, fused=True)``: the same update bit for bit (the same fused
    kernel), ``zero_grad``, ``step``, ``param_groups``, ``state``, ``state_dict`` and
    ``load_state_dict`` in torch's layout. Options other than lr, betas, eps and weight_decay keep
    torch's defaults (a group asking for another value is refused)."""

    def __init__(self, param_groups: List[Dict[str, Any]]):
        self.param_groups: List[Dict[str, Any]] = []
        self.state: Dict[torch.Tensor, Dict[str, torch.Tensor]] = defaultdict(dict)
        for g in param_groups:
            bad = {**{k: v for k, v in g.items() if k != "params" and k not in _GROUP_DEFAULTS}, **_off_default(g)}
            if bad:
                raise ValueError(f"FusedAdam: unsupported param group options {sorted(bad)}")
            group = dict(_GROUP_DEFAULTS, **{k: v for k, v in g.items() if k != "params"})
            group["params"] = list(g["params"])
            self.param_groups.append(group)

    @staticmethod
    def supported(params) -> bool:
        """Whether the fused kernel serves these parameters here (its CPU kernel came in torch 2.4)."""
        if not hasattr(torch, "_fused_adam_"):
            return False
        major, minor = (int(v) for v in torch.__version__.split(".")[:2])
        cpu_ok = (major, minor) >= (2, 4)
        return all(p.device.type == "cuda" or (p.device.type == "cpu" and cpu_ok) for p in params)

    def zero_grad(self, set_to_none: bool = True) -> None:
        for g in self.param_groups:
            for p in g["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_().zero_()

    @torch.no_grad()
    def step(self) -> None:
        for g in self.param_groups:
            params = [p for p in g["params"] if p.grad is not None]
            if not params:
                continue
            for p in params:  # torch's _init_group: step on the parameter's device (fused), zero moments
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float32, device=p.device)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                if p.grad.stride() != p.stride():  # the layout the fused kernel assumes (autograd's layout contract)
                    p.grad = torch.empty_like(p, memory_format=torch.preserve_format).copy_(p.grad)
            groups: Dict[tuple, List[torch.Tensor]] = {}
            for p in params:  # one kernel per device and dtype, as torch groups them
                groups.setdefault((p.device, p.dtype), []).append(p)
            beta1, beta2 = g["betas"]
            for ps in groups.values():
                steps = [self.state[p]["step"] for p in ps]
                torch._foreach_add_(steps, 1)
                torch._fused_adam_(
                    ps, [p.grad for p in ps], [self.state[p]["exp_avg"] for p in ps],
                    [self.state[p]["exp_avg_sq"] for p in ps], [], steps,
                    amsgrad=False, lr=g["lr"], beta1=beta1, beta2=beta2, weight_decay=g["weight_decay"],
                    eps=g["eps"], maximize=False, grad_scale=None, found_inf=None,
                )

    def state_dict(self) -> Dict[str, Any]:
        index: Dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            groups.append(dict({k: v for k, v in g.items() if k != "params"}, params=ids))
        state = {index[id(p)]: dict(s) for p, s in self.state.items() if s}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: Dict[str, Any]) -> None:
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups) or any(
                len(s["params"]) != len(g["params"]) for s, g in zip(saved, self.param_groups)):
            raise ValueError("loaded state dict has a different number of parameter groups or parameters")
        for s in saved:
            bad = _off_default(s)
            if bad:
                raise ValueError(f"FusedAdam: the loaded state dict asks for unsupported options {sorted(bad)}")
        by_index = {}
        for s, g in zip(saved, self.param_groups):
            for i, p in zip(s["params"], g["params"]):
                by_index[i] = p
            g.update({k: v for k, v in s.items() if k != "params"})
        self.state = defaultdict(dict)
        for i, st in state_dict["state"].items():
            p = by_index[i]
            # the moments in the parameter's own layout (the fused kernel walks param, grad and
            # moments as one flat array each: a saved moment of another layout would be misread)
            self.state[p] = {k: (v.to(device=p.device).clone() if k == "step"
                                 else torch.empty_like(p, memory_format=torch.preserve_format).copy_(v))
                             for k, v in st.items()}


def adam(param_groups: List[Dict[str, Any]]):
    """The trainer's optimizer: :class:`FusedAdam` where it serves, else torch's fused Adam, else
    torch's default Adam (a torch whose fused kernel does not serve these parameters' device)."""
    if FusedAdam.supported([p for g in param_groups for p in g["params"]]):
        return FusedAdam(param_groups)
    try:
        return torch.optim.Adam(param_groups, fused=True)
    except (RuntimeError, ValueError):
        return torch.optim.Adam(param_groups)
