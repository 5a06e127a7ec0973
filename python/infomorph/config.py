"""A training run's configuration: :class:`TrainConfig`, everything that defines a run (saved in
its checkpoint and results.json), with the defaults of every option (the learning rates are the
models' own: models.DEFAULT_*_OPTIM)."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Dict, List, Optional

from .errors import UserError
from .models import DEFAULT_HIDDEN_OPTIM, DEFAULT_OUTPUT_OPTIM

MODELS = ("infomorphic", "backprop", "corinfomax")


@dataclass
class TrainConfig:
    """Everything that defines a run (saved in the checkpoint and results.json)."""

    dataset: str = "mnist"
    setup: int = 1
    hidden: List[int] = field(default_factory=lambda: [100])
    goal: str = "optimized"
    output_goal: str = "output"
    epochs: Optional[int] = 100
    seed: int = 0
    batch_size: int = 1024
    model: str = "infomorphic"  # infomorphic, backprop (the baseline) or corinfomax (corinfomax.py)
    backprop: bool = False  # model == "backprop" (kept: configs and checkpoints of earlier versions)
    backprop_loss: str = "logits"  # cross-entropy of the logits, or of s(F) as the published baseline
    backend: str = "auto"
    device: str = "cpu"
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None
    data_dir: Optional[str] = None
    lateral_k: Optional[int] = -1  # -1: the setup's (dense for 1, 100 for 2 and 3); None: dense
    activation: str = "trivariate"
    passes: int = 2
    bins: int = 20
    eval_context: str = "zero"
    hidden_sources: str = "FCL"  # FCL: trivariate hidden neurons; FC / FL: bivariate (context / lateral only)
    context: Optional[str] = None  # None: the setup's; label, feedback or label+feedback (last hidden layer)
    hidden_lr: float = DEFAULT_HIDDEN_OPTIM["lr"]  # the paper's rates and decays: models.py holds them
    hidden_weight_decay: float = DEFAULT_HIDDEN_OPTIM["weight_decay"]
    output_lr: float = DEFAULT_OUTPUT_OPTIM["lr"]
    output_weight_decay: float = DEFAULT_OUTPUT_OPTIM["weight_decay"]
    backprop_lr: float = 0.001
    val_fraction: float = 0.2
    keep_checkpoints: List[int] = field(default_factory=list)  # epochs whose model stays in checkpoints/
    # False: the test set is evaluated after the last epoch only (goal-search trials, whose objective
    # is the validation accuracy: ~5 % of an epoch saved); the other epochs record test_accuracy None
    test_every_epoch: bool = True
    # resolved goal vectors (filled in by train(); a resumed run never rereads a goal file)
    hidden_gamma: Optional[List[float]] = None
    output_gamma: Optional[List[float]] = None

    @classmethod
    def from_dict(cls, d: Dict) -> "TrainConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})  # backprop: true -> model backprop

    def __post_init__(self):
        if self.model not in MODELS:
            raise UserError(f"--model: unknown model {self.model!r}; choose one of {', '.join(MODELS)}")
        if self.backprop and self.model not in ("infomorphic", "backprop"):
            raise UserError(f"--backprop is the backprop model; it does not go with --model {self.model}")
        if self.backprop:
            self.model = "backprop"
        self.backprop = self.model == "backprop"


def standardized(cfg: TrainConfig) -> bool:
    """Whether the run's images are standardized (all but CorInfoMax, trained on pixels in [0, 1])."""
    return cfg.model != "corinfomax"
