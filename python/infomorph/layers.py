"""Infomorphic layers: per-class linear aggregation, activation, stochastic +-1 output, local goal.

A layer of ``N`` neurons reads ``n`` input classes (2: feedforward F and context C; 3: F, C and
lateral L). Class ``j`` is aggregated by its own linear map ``s_j = x_j (W_j * M_j)^T + b_j`` with
a fixed 0/1 connection mask ``M_j``; absent connections are zero in the parameter and, because the
mask multiplies the weight in the forward, receive exactly zero gradient (and Adam keeps them 0).
The activation turns ``(s_1 .. s_n)`` into the firing probability ``theta``; the output is
``+1`` with probability theta and ``-1`` otherwise. The layer's only learning signal is its goal
``G = ik.pid_goal(sources, theta, gamma)`` (one value per neuron), maximized by the caller.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from ._engine import engine
from .activations import Activation, FeedforwardActivation
from .goals import GoalSpec, resolve_goal

Ranges = Union[str, Tuple[float, float], Sequence[Tuple[float, float]]]


class LayerOutput:
    """What one pass of a layer produced.

    sources: [batch, neurons, n_sources] aggregated source values (detached: binning has no
             gradient); stacked on first use, since passes that feed no goal (earlier passes,
             evaluation) never need it
    theta:   [batch, neurons] firing probability (carries the gradient to the layer's weights)
    y:       [batch, neurons] sampled +-1 outputs (no gradient), or None when not sampled
    """

    __slots__ = ("_parts", "_sources", "theta", "y")

    def __init__(self, sources, theta: torch.Tensor, y: Optional[torch.Tensor]):
        # sources: the stacked tensor, or the list of per-class [batch, neurons] tensors
        self._parts, self._sources = (sources, None) if isinstance(sources, (list, tuple)) else (None, sources)
        self.theta, self.y = theta, y

    @property
    def sources(self) -> torch.Tensor:
        if self._sources is None:
            self._sources = torch.stack([s.detach() for s in self._parts], dim=-1)
            self._parts = None
        return self._sources

    def engine_sources(self):
        """The sources as the engine takes them: the per-class tensors [batch, neurons] (detached)
        while not stacked (the CPU engine reads them in place), else the stacked tensor."""
        if self._sources is None:
            return [s.detach() for s in self._parts]
        return self._sources

    def __iter__(self):  # unpacks like the (sources, theta, y) triple it was
        return iter((self.sources, self.theta, self.y))


def sample_pm1(theta: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """+1 with probability theta, -1 otherwise (no gradient). theta: [batch, neurons].
    ``infomorph_kernels.sample_pm1``: on the CPU the engine samples (seeded from ``generator`` /
    torch's default generator), elsewhere torch does."""
    return engine().sample_pm1(theta, generator)


def no_self_mask(n: int, device=None) -> torch.Tensor:
    """Dense lateral mask ``[n, n]``: every neuron sees every other one, never itself."""
    return ~torch.eye(n, dtype=torch.bool, device=device)


def sparse_lateral_mask(n: int, k: int, generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """Lateral mask ``[n, n]`` with ``min(k, n - 1)`` inputs per neuron chosen uniformly at random
    among the other neurons (never itself)."""
    if k < 0:
        raise ValueError(f"sparse_lateral_mask: k must be >= 0, got {k}")
    if k >= n - 1:
        return no_self_mask(n)
    scores = torch.rand((n, n), generator=generator)
    scores.fill_diagonal_(-1.0)  # the diagonal is never among the k largest
    idx = scores.topk(k, dim=1).indices
    mask = torch.zeros((n, n), dtype=torch.bool)
    mask.scatter_(1, idx, True)
    return mask


def lateral_mask(n: int, k: Optional[int], generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """A layer's lateral mask: every other neuron (``k`` None) or ``k`` of them drawn per neuron."""
    return no_self_mask(n) if k is None else sparse_lateral_mask(n, k, generator)


class InfomorphicLayer(nn.Module):
    """A layer of infomorphic neurons with ``n = len(in_features)`` source classes.

    Args:
        in_features: input size of each class, e.g. ``(784, 10, N)`` for (F, C, L).
        out_features: number of neurons N.
        activation: an :class:`~infomorph.activations.Activation` reading n sources.
        gamma: the layer's goal (see :func:`infomorph.goals.resolve_goal`), or None for a layer
            trained by something else (the backprop baseline).
        masks: per class None (dense) or a bool ``[N, in_j]`` connection mask.
        bias: per class (or for all) whether the aggregation has a learned bias.
        fixed: per class None (learned) or a fixed ``[N, in_j]`` weight (a buffer, never trained).
        bins, ranges: binning of the sources for the goal (``ranges="adaptive"`` for per-batch
            max-abs scaling).
        backend: engine backend for the goal ("auto", "reference", "cpu", ...).
    """

    def __init__(
        self,
        in_features: Sequence[int],
        out_features: int,
        activation: Activation,
        gamma: Optional[GoalSpec] = None,
        masks: Optional[Sequence[Optional[torch.Tensor]]] = None,
        bias: Union[bool, Sequence[bool]] = True,
        fixed: Optional[Sequence[Optional[torch.Tensor]]] = None,
        bins: Union[int, Sequence[int]] = 20,
        ranges: Ranges = (-20.0, 20.0),
        backend: str = "auto",
        source_names: Optional[Sequence[str]] = None,
    ):
        super().__init__()
        n = len(in_features)
        if n not in (2, 3, 4):
            raise ValueError(f"InfomorphicLayer: 2 to 4 source classes, got {n}")
        if activation.n_sources != n:
            raise ValueError(f"activation reads {activation.n_sources} sources, the layer has {n} classes")
        self.in_features = [int(i) for i in in_features]
        self.out_features = int(out_features)
        self.n_sources = n
        self.activation = activation
        self.bins = bins
        self.ranges = ranges
        self.backend = backend
        self.source_names = list(source_names) if source_names is not None else ["F", "C", "L", "M"][:n]
        masks = list(masks) if masks is not None else [None] * n
        fixed = list(fixed) if fixed is not None else [None] * n
        biases = [bool(bias)] * n if isinstance(bias, bool) else [bool(b) for b in bias]
        if not (len(masks) == len(fixed) == len(biases) == n):
            raise ValueError(f"masks, fixed and bias need one entry per source class ({n})")
        for j, (fan_in, mask, fix, has_bias) in enumerate(zip(self.in_features, masks, fixed, biases)):
            shape = (self.out_features, fan_in)
            if mask is not None:
                mask = torch.as_tensor(mask).to(torch.bool)
                if tuple(mask.shape) != shape:
                    raise ValueError(f"mask of source {j} must be {shape}, got {tuple(mask.shape)}")
            self.register_buffer(f"mask{j}", mask)
            if fix is not None:
                fix = torch.as_tensor(fix, dtype=torch.get_default_dtype())
                if tuple(fix.shape) != shape:
                    raise ValueError(f"fixed weight of source {j} must be {shape}, got {tuple(fix.shape)}")
                if mask is not None:
                    fix = fix * mask
                self.register_buffer(f"w{j}", fix.clone())
            else:
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                w = torch.empty(shape).uniform_(-bound, bound)
                if mask is not None:
                    w = w * mask
                self.register_parameter(f"w{j}", nn.Parameter(w))
            if has_bias:
                bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
                self.register_parameter(f"b{j}", nn.Parameter(torch.empty(self.out_features).uniform_(-bound, bound)))
            else:
                self.register_parameter(f"b{j}", None)
        self.last_backend: Optional[str] = None  # the engine backend that ran the last goal
        # the engine's value checks (NaN, theta in [0, 1]) synchronize a GPU; the trainer turns
        # them off there and checks the loss once per epoch instead
        self.validate = True
        if gamma is not None:
            self.register_buffer("gamma", resolve_goal(gamma, n))
        else:
            self.gamma = None

    # -- pieces -------------------------------------------------------------------------------
    def weight(self, j: int) -> torch.Tensor:
        """Effective weight ``W_j * M_j`` of source class j: ``[N, in_j]``."""
        w = getattr(self, f"w{j}")
        m = getattr(self, f"mask{j}")
        return w if m is None else w * m

    def bias(self, j: int) -> Optional[torch.Tensor]:
        return getattr(self, f"b{j}")

    def aggregate(
        self,
        inputs: Sequence[Optional[torch.Tensor]],
        zero: Sequence[int] = (),
        pre: Optional[Dict[int, torch.Tensor]] = None,
    ) -> List[torch.Tensor]:
        """Source values ``[batch, N]`` per class. ``inputs[j]`` is ``[batch, in_j]``, or None for an
        all-zero input (the source is then its bias); classes listed in ``zero`` are exactly 0;
        ``pre[j]`` is an already aggregated source j (reused across passes, see the models)."""
        batch = next((x.shape[0] for x in inputs if x is not None), None)
        if batch is None:
            raise ValueError("aggregate: at least one input must be given")
        ref = next(x for x in inputs if x is not None)
        out = []
        for j, x in enumerate(inputs):
            b = self.bias(j)
            if pre is not None and j in pre:
                s = pre[j]
            elif j in zero:
                s = ref.new_zeros(batch, self.out_features)
            elif x is None:
                s = (b if b is not None else ref.new_zeros(self.out_features)).expand(batch, self.out_features)
            else:
                s = self.source(j, x)
            out.append(s)
        return out

    def source(self, j: int, x: torch.Tensor) -> torch.Tensor:
        """Aggregated source j ``[batch, N]`` of input ``x`` ``[batch, in_j]``."""
        b = self.bias(j)
        return torch.addmm(b, x, self.weight(j).t()) if b is not None else x @ self.weight(j).t()

    def forward(
        self,
        inputs: Sequence[Optional[torch.Tensor]],
        sample: bool = True,
        zero: Sequence[int] = (),
        generator: Optional[torch.Generator] = None,
        pre: Optional[Dict[int, torch.Tensor]] = None,
    ) -> LayerOutput:
        """One pass: ``inputs`` one tensor (or None) per class -> :class:`LayerOutput`."""
        if len(inputs) != self.n_sources:
            raise ValueError(f"layer expects {self.n_sources} inputs (one per class), got {len(inputs)}")
        srcs = self.aggregate(inputs, zero, pre)
        theta = self.activation(*srcs)
        y = sample_pm1(theta, generator) if sample else None
        return LayerOutput(list(srcs), theta, y)

    def goal(self, out: LayerOutput) -> torch.Tensor:
        """The goal ``G`` per neuron ``[N]`` of one pass, differentiable w.r.t. the weights."""
        return self.goal_and_atoms(out)[0]

    def goal_and_atoms(self, out: LayerOutput) -> Tuple[torch.Tensor, torch.Tensor]:
        """One engine call: ``(G [N], mean atoms and H_res [n_atoms + 1])``; the atoms (averaged
        over the neurons, float64, on the layer's device, in gamma order) come without gradient."""
        if self.gamma is None:
            raise RuntimeError("this layer has no goal (gamma=None)")
        res = engine().pid(
            out.engine_sources(), out.theta, bins=self.bins, ranges=self.ranges, backend=self.backend,
            gamma=self.gamma_list(), validate=self.validate,
        )
        self.last_backend = res.backend
        with torch.no_grad():
            atoms = torch.cat([res.atoms.detach().mean(0), res.h_res.detach().mean().reshape(1)])
        return res.goal, atoms.double()

    def gamma_list(self) -> List[float]:
        """The goal as Python floats, cached (no device synchronization per call)."""
        key = (self.gamma.data_ptr(), self.gamma._version, self.gamma.device)
        if getattr(self, "_gamma_key", None) != key:
            self._gamma_cache = self.gamma.tolist()
            self._gamma_key = key
        return self._gamma_cache

    @torch.no_grad()
    def atoms(self, out: LayerOutput) -> torch.Tensor:
        """PID atoms and H_res averaged over the neurons: ``[n_atoms + 1]`` in gamma order."""
        res = engine().pid(out.engine_sources(), out.theta.detach(), bins=self.bins, ranges=self.ranges, backend=self.backend)
        return torch.cat([res.atoms.mean(0), res.h_res.mean().reshape(1)]).double().cpu()

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"sources={self.source_names}, bins={self.bins}, ranges={self.ranges}, "
            f"goal={'none' if self.gamma is None else 'set'}"
        )


def output_layer(n_in: int, n_classes: int, gamma, bins, ranges, backend) -> InfomorphicLayer:
    """The bivariate output layer: feedforward from the last hidden layer, context = each neuron's
    own label element (fixed weight 1, no bias)."""
    eye = torch.eye(n_classes)
    return InfomorphicLayer(
        (n_in, n_classes),
        n_classes,
        FeedforwardActivation(),
        gamma=gamma,
        masks=(None, eye.bool()),
        bias=(True, False),
        fixed=(None, eye),  # context = own label element, fixed weight 1
        bins=bins,
        ranges=ranges,
        backend=backend,
    )
