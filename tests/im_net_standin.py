"""Stand-ins for the published ``im_net.im_model`` / ``prob_estim`` of both versions (test doubles).

They have what ``infomorph_kernels.compat.im_net`` reads (the classes' names and attributes,
``save_for_loss``, the activation's ``has_surrogate`` / name) and nothing of the published
computation: their own ``loss`` / ``pid`` / ``InformationDecomposition`` raise, so a test passes
only where the drop-in replaced them. The numbers they are checked against were recorded from the
real code (tests/data/record_im_net.py).
"""
import sys
import types

import torch
from torch import nn


class _NotPatched(AssertionError):
    pass


def _refuse(*_a, **_k):
    raise _NotPatched("the stand-in's own PID ran: the drop-in did not patch it")


class Activation(nn.Module):
    def __init__(self, name, has_surrogate):
        super().__init__()
        self._name, self.has_surrogate = name, has_surrogate

    def _get_name(self):
        return self._name


def make(version: str, tag: str = ""):
    """Fresh modules ``standin_<version><tag>.im_model`` and ``.prob_estim`` in sys.modules."""
    pkg = f"standin_{version}{tag}"
    pe = types.ModuleType(pkg + ".prob_estim")
    im = types.ModuleType(pkg + ".im_model")

    class BaseBinning:
        def __init__(self, device, n_bins, **kw):
            self.device, self.n_bins = device, list(n_bins)
            for k, v in kw.items():
                setattr(self, k, v)

        def get_theta_hist(self, *a):
            raise _NotPatched("the stand-in's histogram ran")

    class BinningFixedSize(BaseBinning):
        pass

    class BinningAdaptiveSize(BaseBinning):
        pass

    pe.BaseBinning, pe.BinningFixedSize, pe.BinningAdaptiveSize = BaseBinning, BinningFixedSize, BinningAdaptiveSize

    class IM_Layer(nn.Module):
        def __init__(self, input_sizes, output_size, activation, binning):
            super().__init__()
            self.input_sizes, self.output_size, self.binning = list(input_sizes), output_size, binning
            self.sources = nn.ModuleList(nn.Linear(k, output_size) for k in input_sizes)
            self.activation = activation
            self.save_for_loss = None

        loss = _refuse

    im.IM_Layer = IM_Layer
    im.prob_estim = pe
    if version == "first":
        IM_Layer.pid = _refuse
    else:
        im.InformationDecomposition = _refuse
        im.compute_isx = _refuse
    sys.modules[pe.__name__] = pe
    sys.modules[im.__name__] = im
    return im, pe


def binning_from_record(pe, rec, version):
    """The recorded binning rebuilt with the stand-in's classes (fixed ones keep the version's own
    recorded bin edges, adaptive ones rebuild theirs per call)."""
    cls = getattr(pe, rec["class"])
    kw = {"normalize": rec.get("normalize", False)}
    if rec["class"] == "BinningFixedSize":
        kw["edges"] = [torch.tensor(e) for e in rec["edges"]]
        kw["binedges"] = [e.clone() for e in rec["binedges"]]
        if version == "first":
            del kw["normalize"]  # the first version's fixed binning has no such attribute
    elif version == "first":
        kw["symmetric"] = rec.get("symmetric", False)
    else:
        kw["padding"] = rec.get("padding", 0)
    return cls("cpu", rec["n_bins"], **kw)


def activation_from_record(rec):
    name = rec["activation"].rsplit(".", 1)[-1]
    return Activation(name, has_surrogate=name.endswith("Heaviside"))
