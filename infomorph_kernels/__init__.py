"""infomorph-kernels: fast, exact, differentiable I_sx PID for infomorphic neurons.

    import infomorph_kernels as ik
    res = ik.pid(sources, theta, bins=20, ranges=(-20.0, 20.0))      # atoms per neuron
    g = ik.pid_goal(sources, theta, gamma)                           # differentiable goal

Importing never needs a compiled module or a GPU; asking for a backend that is not there raises,
naming what is missing. See README.md and docs/math.md for the math.
"""
from . import lattice, threads
from .analysis import complexity_profile, degree_of_synergy, mig, mir, mutual_information_matrix, pid_labels, representational_complexity
from .api import PIDResult, available_backends, pid, pid_binned, pid_distribution, pid_goal, sample_pm1, trivariate_activation
from .binning import adaptive_scale, make_binning
from .dispatch import BACKENDS, backend_status

__version__ = "0.1.0"

__all__ = [
    "BACKENDS",
    "PIDResult",
    "adaptive_scale",
    "available_backends",
    "backend_status",
    "complexity_profile",
    "degree_of_synergy",
    "lattice",
    "make_binning",
    "mig",
    "mir",
    "mutual_information_matrix",
    "pid",
    "pid_binned",
    "pid_distribution",
    "pid_goal",
    "pid_labels",
    "representational_complexity",
    "sample_pm1",
    "trivariate_activation",
]
