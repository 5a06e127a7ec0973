"""Infomorphic networks (Setups 1-3, deeper stacks) and the backprop baseline.

Every hidden layer is trivariate: feedforward F (the image or the layer below), context C (the
one-hot label through a learned linear map; in Setup 3 the output layer's feedback instead, or
label and feedback side by side: ``context="label+feedback"``) and
lateral L (the layer's own sampled +-1 outputs of the previous pass; 0 on the first pass). The
output layer is bivariate: F = the last hidden layer's sampled outputs, C = the neuron's own
element of the one-hot label through a fixed weight 1; ``theta = s(F)``.

Each layer learns only from its own goal; layers see each other's *sampled* outputs, which carry
no gradient, so no global loss reaches an infomorphic layer.

Passes. The hidden stack runs ``passes`` times per batch (2 in the paper): the first pass only
produces the lateral input (and, in Setup 3, the output layer's feedback) of the second. As in the
published reference code ("the hidden layer is recurrent and only the last time step is used for
training"), the goal of a hidden layer is evaluated on its *last* pass only, where its lateral
input is real; earlier passes run under ``torch.no_grad``. One batch therefore costs one engine
call per hidden layer plus one for the output layer (2 for Setups 1-3), not 3; the same call also
returns the atoms that are logged. Sources whose input does not change between passes (the first
layer's F from the image, label contexts) are aggregated once per batch.

Evaluation. Without the label: every label-driven context is exactly 0 (``eval_context="zero"``;
``"bias"`` feeds a zero label through the learned map instead, as the reference code does).
Setup 3's feedback needs no label and stays on. Prediction is the argmax of the output neurons'
firing probabilities, each neuron whose mean probability over the batch is >= 0.5 read inverted
(1 - theta): a PID goal cannot tell Y from its relabeling, so a neuron may learn either polarity.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .activations import make_activation
from .goals import GoalSpec
from .layers import InfomorphicLayer, LayerOutput, lateral_mask, output_layer, sample_pm1

DEFAULT_HIDDEN_OPTIM = {"lr": 0.002, "weight_decay": 0.00035}
DEFAULT_OUTPUT_OPTIM = {"lr": 0.003, "weight_decay": 0.00015}
DEFAULT_BACKPROP_OPTIM = {"lr": 0.001, "weight_decay": 0.0}


def read_out(theta: torch.Tensor, invert: bool = True) -> torch.Tensor:
    """Output firing probabilities ``[batch, classes]`` -> scores whose argmax is the prediction.
    A neuron whose mean firing probability over the batch is >= 0.5 is read inverted (1 - theta)."""
    if not invert:
        return theta
    inverted = theta.mean(dim=0) >= 0.5
    return torch.where(inverted, 1.0 - theta, theta)


class InfomorphicNet(nn.Module):
    """Hidden stack of trivariate infomorphic layers and a bivariate output layer.

    Args:
        in_features: input size (784 for MNIST).
        hidden: neurons per hidden layer, e.g. ``(100,)`` or ``(800, 200)``.
        n_classes: output neurons (= label size).
        lateral_k: None for dense lateral connections (no self-connection), or at most k lateral
            inputs per neuron chosen at random.
        context: "label" (Setups 1, 2) or "feedback" (Setup 3: the last hidden layer's context is
            the output layer's sampled outputs of the previous pass; lower layers keep the label),
            or "label+feedback" (the last hidden layer's context reads both, label and feedback
            one learned map over their 2 x n_classes inputs; at evaluation the label part is 0
            and the feedback stays; lower layers keep the label).
        hidden_goal, output_goal: goals (presets, files, vectors; see :mod:`infomorph.goals`).
        activation: "trivariate" (the paper's) or "linear" for the hidden layers.
        passes: passes of the hidden stack per batch (>= 1; 2 in the paper).
        bins, hidden_range, output_range: binning of the goals.
        backend: engine backend.
        mask_seed: seed of the random sparse lateral masks (None: the global RNG).
        eval_context: "zero" (C = 0 at evaluation) or "bias" (zero label through the learned map).
        hidden_sources: "FCL" (trivariate hidden neurons: feedforward, context, lateral; the
            paper's setups), or bivariate hidden neurons "FC" (context only) or "FL" (lateral
            only), binned adaptively (per neuron x / max|x|, as the published bivariate setups).
    """

    invert_outputs = True

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (100,),
        n_classes: int = 10,
        lateral_k: Optional[int] = None,
        context: str = "label",
        hidden_goal: GoalSpec = "optimized",
        output_goal: GoalSpec = "output",
        activation: str = "trivariate",
        passes: int = 2,
        bins: int = 20,
        hidden_range=(-20.0, 20.0),
        output_range="adaptive",
        backend: str = "auto",
        mask_seed: Optional[int] = None,
        eval_context: str = "zero",
        hidden_sources: str = "FCL",
    ):
        super().__init__()
        if hidden_sources not in HIDDEN_SOURCES:
            raise ValueError(f"hidden_sources must be one of {', '.join(HIDDEN_SOURCES)}, got {hidden_sources!r}")
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {', '.join(CONTEXTS)}, got {context!r}")
        if context != "label" and hidden_sources == "FL":
            raise ValueError(f"hidden_sources 'FL' has no context source for the output layer's feedback (context {context!r})")
        if eval_context not in ("zero", "bias"):
            raise ValueError(f"eval_context must be 'zero' or 'bias', got {eval_context!r}")
        if passes < 1:
            raise ValueError(f"passes must be >= 1, got {passes}")
        hidden = [int(h) for h in hidden]
        if not hidden:
            raise ValueError("at least one hidden layer is needed")
        self.in_features, self.hidden_sizes, self.n_classes = int(in_features), hidden, int(n_classes)
        self.context, self.passes, self.eval_context = context, int(passes), eval_context
        self.hidden_sources = hidden_sources
        # which of (feedforward, context, lateral) each hidden layer reads, in source order
        self._slots = ["FCL".index(ch) for ch in hidden_sources]
        ns = len(self._slots)
        gen = torch.Generator().manual_seed(mask_seed) if mask_seed is not None else None
        layers = []
        n_in = self.in_features
        for i, n in enumerate(hidden):
            n_ctx = 2 * n_classes if context == "label+feedback" and i == len(hidden) - 1 else n_classes
            fan_in = [(n_in, n_ctx, n)[j] for j in self._slots]
            masks = [lateral_mask(n, lateral_k, gen) if ch == "L" else None for ch in hidden_sources]
            layers.append(
                InfomorphicLayer(
                    fan_in,
                    n,
                    make_activation(activation, ns),
                    gamma=hidden_goal,
                    masks=masks,
                    bins=bins,
                    ranges=hidden_range if ns == 3 else "adaptive",
                    backend=backend,
                    source_names=list(hidden_sources),
                )
            )
            n_in = n
        self.hidden = nn.ModuleList(layers)
        self.output = output_layer(n_in, n_classes, output_goal, bins, output_range, backend)

    @property
    def layers(self) -> List[InfomorphicLayer]:
        return list(self.hidden) + [self.output]

    def optimizer_groups(self, hidden_optim=None, output_optim=None) -> List[Dict]:
        """Adam parameter groups: the paper's lr / weight decay per layer role."""
        h = dict(DEFAULT_HIDDEN_OPTIM, **(hidden_optim or {}))
        o = dict(DEFAULT_OUTPUT_OPTIM, **(output_optim or {}))
        groups = [dict(params=list(layer.parameters()), **h) for layer in self.hidden]
        groups.append(dict(params=list(self.output.parameters()), **o))
        return groups

    def _context(self, label: Optional[torch.Tensor]) -> Tuple[Optional[torch.Tensor], Tuple[int, ...]]:
        if label is not None:
            return label, ()
        return None, ((1,) if self.eval_context == "zero" and "C" in self.hidden_sources else ())

    def _feedback_layer(self, i: int) -> bool:
        """Whether hidden layer ``i``'s context reads the output layer's feedback."""
        return self.context != "label" and i == len(self.hidden) - 1

    def _feedback_context(self, label: Optional[torch.Tensor], fb: Optional[torch.Tensor],
                          batch: int, like: torch.Tensor) -> Optional[torch.Tensor]:
        """The feedback layer's context input: the feedback (Setup 3), or label and feedback side by
        side (zeros for what is missing: no label at evaluation, no feedback on the first pass)."""
        if self.context == "feedback":
            return fb
        if label is None and fb is None:
            return None  # the context is its bias alone, as for Setup 3's first pass
        zeros = like.new_zeros(batch, self.n_classes)
        return torch.cat([label if label is not None else zeros, fb if fb is not None else zeros], dim=1)

    def _pick(self, inputs: Sequence[Optional[torch.Tensor]]) -> List[Optional[torch.Tensor]]:
        """(feedforward, context, lateral) -> the hidden layers' own source list."""
        return [inputs[i] for i in self._slots]

    def run(self, x: torch.Tensor, label: Optional[torch.Tensor] = None, grad: bool = False):
        """All passes of one batch.

        x: [batch, in_features]; label: [batch, n_classes] one-hot, or None (evaluation: no context).
        Returns (hidden_outs, output_out): the last pass of every hidden layer and the output layer.
        With ``grad`` the returned thetas carry gradients (earlier passes never do).
        """
        n_hidden = len(self.hidden)
        lat: List[Optional[torch.Tensor]] = [None] * n_hidden
        fb: Optional[torch.Tensor] = None
        outs: List[Optional[LayerOutput]] = [None] * n_hidden
        label_ctx, label_zero = self._context(label)
        out_ctx = label if label is not None else None
        out_zero = () if label is not None else (1,)
        # Sources whose input is the same in every pass (the first layer's F from the image, label
        # contexts) are aggregated once, with gradient; earlier passes read them detached.
        pre: List[Dict[int, torch.Tensor]] = [{} for _ in range(n_hidden)]
        with torch.set_grad_enabled(grad):
            for i, layer in enumerate(self.hidden):
                fixed = {0: x} if i == 0 else {}
                if label_ctx is not None and "C" in self.hidden_sources and not self._feedback_layer(i):
                    fixed[1] = label_ctx
                if self.passes > 1:
                    pre[i] = {j: layer.source(j, v) for j, v in fixed.items()}
        for p in range(self.passes):
            last = p == self.passes - 1
            with torch.set_grad_enabled(grad and last):
                inp = x
                for i, layer in enumerate(self.hidden):
                    if self._feedback_layer(i):
                        c, zero = self._feedback_context(label, fb, x.shape[0], x), ()
                    else:
                        c, zero = label_ctx, label_zero
                    pre_i = pre[i] if last else {j: v.detach() for j, v in pre[i].items()}
                    outs[i] = layer(self._pick([inp, c, lat[i]]), sample=True, zero=zero, pre=pre_i)
                    lat[i] = outs[i].y
                    inp = outs[i].y
            if self.context != "label" and not last:
                with torch.no_grad():
                    fb = self.output([inp, out_ctx], sample=True, zero=out_zero).y
        with torch.set_grad_enabled(grad):
            out = self.output([inp, out_ctx], sample=False, zero=out_zero)
        return outs, out

    def goals(self, x: torch.Tensor, label: torch.Tensor):
        """Training pass: ``(goals, atoms)``, per layer (hidden..., output) ``G [neurons]`` with
        gradient and the mean atoms + H_res ``[n_atoms + 1]`` of the same engine call, and the
        output layer's pass (its theta ``[batch, n_classes]``)."""
        outs, out = self.run(x, label, grad=True)
        pairs = [layer.goal_and_atoms(o) for layer, o in zip(self.layers, list(outs) + [out])]
        return [g for g, _ in pairs], [a for _, a in pairs], out

    def loss(self, goals: Sequence[torch.Tensor]) -> torch.Tensor:
        """Sum of ``-G`` over neurons and layers; layers share no parameters or gradients, so one
        backward of this sum gives every layer exactly the gradient of its own goal."""
        return -sum(g.sum() for g in goals)

    def atoms(self, outs: Sequence[LayerOutput], out: LayerOutput) -> List[torch.Tensor]:
        """Mean atoms (+ H_res) per layer of one pass: list of ``[n_atoms + 1]``."""
        return [layer.atoms(o) for layer, o in zip(self.layers, list(outs) + [out])]

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        """Output firing probabilities ``[batch, n_classes]`` without context."""
        return self.run(x, None, grad=False)[1].theta

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted class per sample ``[batch]`` (inversion rule applied over this batch)."""
        return read_out(self.predict_proba(x), self.invert_outputs).argmax(dim=1)


class BackpropNet(nn.Module):
    """Backprop baseline with Setup 1's connectivity (dense lateral, label context during training,
    two passes, output theta = s(F)), trained end to end with cross-entropy on the output layer's
    feedforward drive F (the logits). The sampled +-1 hidden outputs pass gradients straight
    through (d y / d theta = 2, the derivative of the mean 2 theta - 1). No inversion at read-out:
    cross-entropy fixes the polarity of every output neuron.

    ``loss="probabilities"`` is the published baseline's loss instead: cross-entropy with the
    output neurons' firing probabilities theta = s(F) in place of the logits (``CrossEntropyLoss``
    applied to theta in paper_trivariate/base_model.py): a softmax over numbers in (0, 1), whose
    gradients are far weaker than those of the logits."""

    invert_outputs = False

    def __init__(
        self,
        in_features: int = 784,
        hidden: Sequence[int] = (100,),
        n_classes: int = 10,
        lateral_k: Optional[int] = None,
        activation: str = "trivariate",
        passes: int = 2,
        mask_seed: Optional[int] = None,
        eval_context: str = "zero",
        loss: str = "logits",
    ):
        super().__init__()
        if loss not in BACKPROP_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(BACKPROP_LOSSES)}, got {loss!r}")
        hidden = [int(h) for h in hidden]
        self.in_features, self.hidden_sizes, self.n_classes = int(in_features), hidden, int(n_classes)
        self.passes, self.eval_context, self.context = int(passes), eval_context, "label"
        self.loss_kind = loss
        gen = torch.Generator().manual_seed(mask_seed) if mask_seed is not None else None
        layers, n_in = [], self.in_features
        for n in hidden:
            layers.append(
                InfomorphicLayer(
                    (n_in, n_classes, n), n, make_activation(activation, 3),
                    masks=(None, None, lateral_mask(n, lateral_k, gen)),
                )
            )
            n_in = n
        self.hidden = nn.ModuleList(layers)
        self.output = output_layer(n_in, n_classes, None, 20, "adaptive", "auto")

    @property
    def layers(self) -> List[InfomorphicLayer]:
        return list(self.hidden) + [self.output]

    def optimizer_groups(self, optim=None) -> List[Dict]:
        return [dict(params=list(self.parameters()), **dict(DEFAULT_BACKPROP_OPTIM, **(optim or {})))]

    def passes_and_logits(self, x: torch.Tensor, label: Optional[torch.Tensor] = None):
        """``(hidden thetas of the last pass, each [batch, N_i], output layer's F [batch,
        n_classes])``; differentiable through both passes."""
        zero = () if label is not None or self.eval_context == "bias" else (1,)
        lat: List[Optional[torch.Tensor]] = [None] * len(self.hidden)
        thetas: List[torch.Tensor] = []
        for _ in range(self.passes):
            inp, thetas = x, []
            for i, layer in enumerate(self.hidden):
                srcs = layer.aggregate([inp, label, lat[i]], zero=zero)
                theta = layer.activation(*srcs)
                thetas.append(theta)
                y = sample_pm1(theta) + 2.0 * (theta - theta.detach())  # straight-through
                lat[i] = y
                inp = y
        return thetas, self.output.aggregate([inp, None], zero=(1,))[0]

    def logits(self, x: torch.Tensor, label: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Output layer's F ``[batch, n_classes]``; differentiable through both passes."""
        return self.passes_and_logits(x, label)[1]

    def loss_of_logits(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The training loss of the output layer's F (``loss``: of the logits or of s(F))."""
        return F.cross_entropy(logits if self.loss_kind == "logits" else torch.sigmoid(logits), target)

    def loss_fn(self, x: torch.Tensor, label: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.loss_of_logits(self.logits(x, label), target)

    @torch.no_grad()
    def predict_proba(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logits(x, None))

    @torch.no_grad()
    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.predict_proba(x).argmax(dim=1)


HIDDEN_SOURCES = ("FCL", "FC", "FL")
BACKPROP_LOSSES = ("logits", "probabilities")
CONTEXTS = ("label", "feedback", "label+feedback")

SETUPS = {
    1: {"lateral_k": None, "context": "label"},
    2: {"lateral_k": 100, "context": "label"},
    3: {"lateral_k": 100, "context": "feedback"},
}


def build_model(
    setup: int = 1,
    hidden: Sequence[int] = (100,),
    in_features: int = 784,
    n_classes: int = 10,
    backprop: bool = False,
    lateral_k: Optional[int] = -1,
    context: Optional[str] = None,
    **kwargs,
) -> nn.Module:
    """A model by setup number: 1 (dense lateral, label context), 2 (at most 100 lateral inputs),
    3 (Setup 2 with the output layer's feedback as the hidden context). ``lateral_k`` overrides
    the setup's (-1: keep it; None: dense), ``context`` the setup's context (label, feedback,
    label+feedback). ``backprop`` gives the baseline with the setup's connectivity (setups 1 and 2)."""
    if setup not in SETUPS:
        raise ValueError(f"setup must be one of {sorted(SETUPS)}, got {setup!r}")
    spec = dict(SETUPS[setup])
    if lateral_k != -1:
        spec["lateral_k"] = lateral_k
    if context is not None:
        spec["context"] = context
    if backprop:
        if kwargs.get("hidden_sources", "FCL") != "FCL":
            raise ValueError("the backprop baseline has trivariate hidden connectivity: hidden_sources must be 'FCL'")
        if spec["context"] != "label":
            raise ValueError("the backprop baseline has label context: use setup 1 or 2")
        keep = {k: v for k, v in kwargs.items() if k in ("activation", "passes", "mask_seed", "eval_context", "loss")}
        return BackpropNet(in_features, hidden, n_classes, lateral_k=spec["lateral_k"], **keep)
    return InfomorphicNet(in_features, hidden, n_classes, **spec, **kwargs)
