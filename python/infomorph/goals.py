"""Goal functions (the gamma vectors) of infomorphic layers: named presets and goal files.

A goal is ``G = sum_alpha gamma_alpha Pi_alpha + gamma_H H_res`` over the PID atoms of the layer's
sources (1 = F feedforward, 2 = C context, 3 = L lateral). Gamma vectors are in the engine's gamma
order (``infomorph_kernels.lattice.gamma_names(n)``, H_res last; docs/math.md section 3).

Accepted goal specifications (:func:`resolve_goal`):
- a preset name: ``"heuristic"``, ``"optimized"``, ``"optimized-cifar10"``, ``"hierarchical"``
  (trivariate), ``"optimized-fc"``,
  ``"optimized-fl"`` (bivariate hidden layers), ``"output"`` (bivariate);
- a sequence / tensor of ``n_atoms + 1`` numbers in gamma order;
- a mapping of atom names to weights (``{"{1}{2}": 1.0, "H_res": 0.1}``, or with source letters
  ``{"{F}{C}": 1.0}``); atoms not named get 0;
- a path to a ``.json``, ``.yaml`` or ``.yml`` file holding any of the above, or
  ``{"gamma": ...}``, or ``{"hidden": ..., "output": ...}`` (one goal per layer role), or the
  published reference code's files (``layer_params: {hidden_layer1: {gamma: [...]}}``).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Mapping, Sequence, Union

import torch

# Trivariate gamma order (F=1, C=2, L=3):
# {1}{2}{3}, {1}{2}, {1}{3}, {2}{3}, {1}{23}, {2}{13}, {3}{12}, {1}, {2}, {3},
# {12}{13}{23}, {12}{13}, {12}{23}, {13}{23}, {12}, {13}, {23}, {123}, H_res
OPTIMIZED_GAMMA = [
    0.3307, 0.9781, -0.9935, 0.4017, 0.2428, 0.6255, 0.4713, 0.0212, 0.0605, -0.9470,
    -0.0199, -0.9677, -0.6924, 0.4270, 0.9736, 0.7370, -0.1218, -0.2151, 0.0350,
]
# The published configuration's goal optimized on CIFAR-10 (Setup 1, N = 100; the paper's Fig. 4D;
# goals/infomorphic_context_lateral/opt_1_100_CIFAR.yaml of the first snapshot), same order.
OPTIMIZED_CIFAR_GAMMA = [
    0.9838, 0.6048, -0.2133, 0.2427, 0.3396, -0.5790, 0.0500, 0.0336, 0.5974, -0.0782,
    0.4762, -0.8475, -0.3992, 0.5563, 0.2715, -0.4623, -0.0628, -0.2629, 0.0,
]
# Bivariate order ({1}, {2}, {1}{2}, {12}, H_res): the output layer of every setup.
OUTPUT_GAMMA = [-0.2, 0.1, 1.0, 0.1, 0.0]

# Bivariate hidden layers (F and one modulating source M): the published configuration's goals
# optimized for them (MNIST, N = 100), context only (M = C) and lateral only (M = L).
OPTIMIZED_FC_GAMMA = [-0.0990, 0.3916, 0.5118, 0.5942, 0.0885]
OPTIMIZED_FL_GAMMA = [0.8281, -0.2038, 0.9030, 0.5267, 0.1350]

PRESETS: Dict[str, Dict[str, Any]] = {
    # maximize the information F and C share about Y, nothing else (any number of sources)
    "heuristic": {"n_sources": (2, 3), "gamma": {"{1}{2}": 1.0}},
    # the paper's optimized trivariate goal (hyper-parameter search on MNIST, Setup 1, N = 100)
    "optimized": {"n_sources": 3, "gamma": OPTIMIZED_GAMMA},
    # the same search on CIFAR-10 (train --dataset cifar10 --goal optimized-cifar10)
    "optimized-cifar10": {"n_sources": 3, "gamma": OPTIMIZED_CIFAR_GAMMA},
    # the published configuration's goal for its two-hidden-layer model (goals/
    # infomorphic_context_lateral/hierarchical.yaml, every hidden layer): the heuristic's shared
    # F-C information plus the three-way redundancy and a little of each unique atom of F and C
    "hierarchical": {"n_sources": 3, "gamma": {"{1}{2}{3}": 0.3, "{1}{2}": 1.0, "{1}": 0.1, "{2}": 0.1}},
    # the same search's goals for the bivariate hidden layers (train --hidden-sources FC / FL
    # picks them for --goal optimized)
    "optimized-fc": {"n_sources": 2, "gamma": OPTIMIZED_FC_GAMMA},
    "optimized-fl": {"n_sources": 2, "gamma": OPTIMIZED_FL_GAMMA},
    "output": {"n_sources": 2, "gamma": OUTPUT_GAMMA},
}

GoalSpec = Union[str, os.PathLike, Sequence[float], Mapping[str, float], torch.Tensor]

_LABELS = ("F", "C", "L", "M")
_GOAL_FILE_SUFFIXES = (".json", ".yaml", ".yml")


def _lattice():
    from ._engine import engine

    return engine().lattice


def gamma_names(n_sources: int) -> List[str]:
    """Names of the gamma entries for ``n_sources`` sources (atoms in gamma order, H_res last)."""
    return list(_lattice().gamma_names(n_sources))


def readable_name(name: str) -> str:
    """An atom name for people: sources as letters, as in the paper (``{1}{23}`` -> ``{F}{CL}``);
    JSON keys and goal files keep the numbered names."""
    return name.translate(str.maketrans({str(i + 1): c for i, c in enumerate(_LABELS)}))


def _from_mapping(goal: Mapping[str, Any], n_sources: int) -> torch.Tensor:
    lat = _lattice()
    norm = {}
    for key, value in goal.items():
        if not isinstance(key, str):
            raise TypeError(f"goal: atom names must be strings, got {key!r}")
        k = key.strip().replace(" ", "")
        if k.lower() in ("h_res", "hres", "h"):
            k = lat.H_RES if hasattr(lat, "H_RES") else "H_res"
        norm[k] = float(value)
    errors = []
    for labels in (None, _LABELS[:n_sources]):
        try:
            return torch.as_tensor(lat.gamma_vector(norm, n_sources, labels), dtype=torch.float64)
        except ValueError as e:
            errors.append(str(e))
    raise ValueError(
        f"goal: {errors[0]}; names are {gamma_names(n_sources)} "
        f"(or with source letters {''.join(_LABELS[:n_sources])})"
    )


def _unwrap(data: Any, role: str) -> Any:
    """Pick the gamma out of a parsed goal file."""
    if not isinstance(data, Mapping):
        return data
    if role in data:
        return _unwrap(data[role], role)
    if "gamma" in data:
        return data["gamma"]
    if "layer_params" in data:  # the published reference code's hydra goal files
        lp = data["layer_params"]
        key = "output_layer" if role == "output" else "hidden_layer1"
        if isinstance(lp, Mapping) and isinstance(lp.get(key), Mapping) and "gamma" in lp[key]:
            return lp[key]["gamma"]
        raise ValueError(f"goal file: no layer_params.{key}.gamma for the {role} layer")
    return data


def read_goal_file(path: Union[str, os.PathLike], role: str = "hidden") -> Any:
    """Parse a JSON or YAML goal file and return the raw gamma (list or mapping) for ``role``."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"goal file {path!r} does not exist")
    with open(path, "r", encoding="utf-8") as fh:
        text = fh.read()
    if path.endswith(".json"):
        data = json.loads(text)
    else:
        try:
            import yaml
        except ImportError:
            raise ImportError(
                f"reading the YAML goal file {path!r} needs PyYAML: `pip install pyyaml`, or write the goal as JSON"
            ) from None
        data = yaml.safe_load(text)
    return _unwrap(data, role)


def resolve_goal(goal: GoalSpec, n_sources: int, role: str = "hidden") -> torch.Tensor:
    """The float64 gamma vector ``[n_atoms + 1]`` (H_res last) of a goal specification."""
    if isinstance(goal, (str, os.PathLike)):
        name = os.fspath(goal)
        if name in PRESETS:
            preset = PRESETS[name]
            allowed = preset["n_sources"] if isinstance(preset["n_sources"], tuple) else (preset["n_sources"],)
            if n_sources not in allowed:
                raise ValueError(
                    f"goal preset {name!r} is for {' or '.join(map(str, allowed))} sources, the layer has {n_sources}"
                )
            return resolve_goal(preset["gamma"], n_sources, role)
        if name.endswith(_GOAL_FILE_SUFFIXES) or os.path.isfile(name):
            return resolve_goal(read_goal_file(name, role), n_sources, role)
        raise ValueError(
            f"goal {name!r} is neither a preset ({', '.join(sorted(PRESETS))}) nor a .json/.yaml file"
        )
    if isinstance(goal, Mapping):
        return _from_mapping(goal, n_sources)
    gamma = torch.as_tensor(goal, dtype=torch.float64).detach().cpu().reshape(-1)
    size = len(gamma_names(n_sources))
    if gamma.numel() != size:
        raise ValueError(
            f"goal must have n_atoms + 1 = {size} values for {n_sources} sources (H_res last), got {gamma.numel()}"
        )
    if not torch.isfinite(gamma).all():
        raise ValueError("goal values must be finite")
    return gamma.clone()


def goal_as_dict(gamma: torch.Tensor, n_sources: int) -> Dict[str, float]:
    """``{atom name: weight}`` of a gamma vector (for results files and goal files)."""
    return {name: float(v) for name, v in zip(gamma_names(n_sources), gamma.tolist())}
