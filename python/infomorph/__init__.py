"""infomorph: infomorphic network layers, models and training on the infomorph_kernels engine.

The PID itself (binning, atoms, goal and its gradient) lives in the engine; this package only
aggregates inputs, applies activations, samples outputs and maximizes each layer's own goal.
"""
from .activations import FeedforwardActivation, LinearActivation, TrivariateActivation, make_activation
from .data import DataNotFoundError, Splits, load_dataset
from .goals import OPTIMIZED_GAMMA, OUTPUT_GAMMA, PRESETS, goal_as_dict, gamma_names, read_goal_file, resolve_goal
from .layers import InfomorphicLayer, LayerOutput, no_self_mask, sample_pm1, sparse_lateral_mask
from .models import SETUPS, BackpropNet, InfomorphicNet, build_model, read_out
from .train import TrainConfig, evaluate, train

__all__ = [
    "FeedforwardActivation", "LinearActivation", "TrivariateActivation", "make_activation",
    "DataNotFoundError", "Splits", "load_dataset",
    "OPTIMIZED_GAMMA", "OUTPUT_GAMMA", "PRESETS", "goal_as_dict", "gamma_names", "read_goal_file", "resolve_goal",
    "InfomorphicLayer", "LayerOutput", "no_self_mask", "sample_pm1", "sparse_lateral_mask",
    "SETUPS", "BackpropNet", "InfomorphicNet", "build_model", "read_out",
    "TrainConfig", "evaluate", "train",
]
