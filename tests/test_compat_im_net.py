"""infomorph_kernels.compat.im_net against outputs recorded from the published im_net.

tests/data/im_net_first.pt and im_net_current.pt hold, for real IM_Layers of the first snapshot
(5284adf) and the current version (ecc3d7e) - trivariate and bivariate, fixed / adaptive /
normalized / padded binnings, 2 x 60 bins (paper_hopfield's), probabilistic and surrogate
activations, moderate and saturated theta, float64 and float32 - the layer's save_for_loss, its
loss, atoms, and gradients to the thetas and weights, plus the histogram-level PID of dense pmfs
(tests/data/record_im_net.py made them). The drop-in is installed into stand-ins of both modules
(tests/im_net_standin.py) whose own PID refuses to run.
"""
import os

import numpy as np
import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels.compat import im_net as C

import im_net_standin as S

DATA = os.path.join(os.path.dirname(__file__), "data")
REC = {v: torch.load(os.path.join(DATA, f"im_net_{v}.pt"), weights_only=False) for v in ("first", "current")}
CASES = [(v, c["name"]) for v in REC for c in REC[v]["cases"]]
# the checks read losses that carry a graph as Python floats on purpose
pytestmark = pytest.mark.filterwarnings("ignore:Converting a tensor with requires_grad=True to a scalar")


def _case(version, name):
    return next(c for c in REC[version]["cases"] if c["name"] == name)


@pytest.fixture
def default_dtype():
    old = torch.get_default_dtype()
    yield torch.set_default_dtype
    torch.set_default_dtype(old)


def _layer(version, case, tag):
    im, pe = S.make(version, tag)
    n = case["n"]
    sizes = [case["state"][f"sources.{i}.weight"].shape[1] for i in range(n)]
    N = case["state"]["sources.0.weight"].shape[0]
    layer = im.IM_Layer(sizes, N, S.activation_from_record(case), S.binning_from_record(pe, case["binning"], version))
    return im, layer


def _loss(layer, version, gamma, **kw):
    return layer.loss(gamma, **kw)


def _tol(case):
    return (1e-12, 1e-12) if case["dtype"] == "torch.float64" else (2e-5, 1e-4)


@pytest.mark.parametrize("version,name", CASES)
def test_published_mode_equals_the_published_code(version, name, default_dtype):
    case = _case(version, name)
    dt = torch.float64 if case["dtype"] == "torch.float64" else torch.float32
    default_dtype(dt)
    im, layer = _layer(version, case, "_pub")
    th = case["thetas"].clone().requires_grad_(True)
    layer.save_for_loss = ([s.clone() for s in case["sources"]], th)
    with C.install(mode="published", module=im) as h:
        assert h.version == version
        form = {"return_atoms": True} if version == "current" else {"return_information_tensor": True}
        loss, atoms = layer.loss(case["gamma"], **form)
        (g,) = torch.autograd.grad(loss, th)
    rel, rel_g = _tol(case)
    scale = max(1.0, float(case["atoms"].abs().max()))
    assert loss.dtype == dt and atoms.shape == case["atoms"].shape
    assert abs(float(loss.detach()) - case["loss"]) <= rel * max(1.0, abs(case["loss"]))
    assert float((atoms.detach().double() - case["atoms"].double()).abs().max()) <= rel * scale
    gs = float(case["grad_theta"].abs().max())
    assert float((g.double() - case["grad_theta"].double()).abs().max()) <= rel_g * gs


def _sum_activation_cases():
    return [(v, c["name"]) for v, c in ((v, c) for v in REC for c in REC[v]["cases"])
            if c["activation"].endswith("SumActivation") and c["dtype"] == "torch.float64"]


@pytest.mark.parametrize("version,name", _sum_activation_cases())
def test_published_mode_weight_gradients(version, name, default_dtype):
    """Through a whole layer: Linear sources and the SumActivation of that version (theta =
    sigmoid(r + c) current, sigmoid(r + 0.1 c) first), the loss's gradient to every weight."""
    case = _case(version, name)
    default_dtype(torch.float64)
    im, layer = _layer(version, case, "_w")
    layer.load_state_dict({k: v for k, v in case["state"].items() if k.startswith("sources")})
    val = [src(x) for src, x in zip(layer.sources, case["inputs"])]
    theta = torch.sigmoid(val[0] + val[1]) if version == "current" else torch.sigmoid(val[0] + 0.1 * val[1])
    layer.save_for_loss = (val, torch.stack([1 - theta, theta], dim=2))
    with C.install(mode="published", module=im):
        loss = layer.loss(case["gamma"])
        loss.backward()
    assert abs(float(loss.detach()) - case["loss_w"]) <= 1e-12 * max(1.0, abs(case["loss_w"]))
    for k, want in case["grad_params"].items():
        got = dict(layer.named_parameters())[k].grad
        assert float((got - want).abs().max()) <= 1e-12 * max(1.0, float(want.abs().max())), k


def _engine_view(version, rec, sources):
    """The exact mode's binning, written out independently: (sources [B, N, n], ranges)."""
    x = [s.clone() for s in sources]
    norm = lambda t: t / t.abs().max(0, keepdim=True)[0]  # noqa: E731
    if rec["class"] == "BinningFixedSize":
        if version == "current" and rec["normalize"]:
            x = [norm(t) for t in x]
        return torch.stack(x, -1), [tuple(e) for e in rec["edges"]]
    if version == "first":
        if rec["normalize"] and rec.get("symmetric"):
            return torch.stack(x, -1), "adaptive"
        if rec["normalize"]:
            x = [norm(t) for t in x]
        return torch.stack(x, -1), [(float(t.min()) - 1, float(t.max()) + 1) for t in x]
    pad = rec["padding"]
    if rec["normalize"]:
        return torch.stack(x, -1), "adaptive"
    return torch.stack(x, -1), [(float(t.min()) - pad, float(t.max()) + pad) for t in x]


@pytest.mark.parametrize("version,name", [c for c in CASES if "f64" in c[1]])
def test_exact_mode_is_the_engine(version, name, default_dtype):
    """Exact mode: the engine's I_sx on the engine's bins (the float64 reference's values and
    autograd gradient), the gradient under theta(silent) = 1 - theta(fire) on the produced column
    only; within the published epsilons' effect of the recorded numbers wherever the published
    float32 edges put every sample in the same bin as the engine's float64 edges."""
    case = _case(version, name)
    default_dtype(torch.float64)
    im, layer = _layer(version, case, "_ex")
    th = case["thetas"].clone().requires_grad_(True)
    layer.save_for_loss = ([s.clone() for s in case["sources"]], th)
    with C.install(mode="exact", backend="cpu" if "cpu" in ik.available_backends() else "reference", module=im):
        loss, atoms = layer.loss(case["gamma"], return_atoms=True)
        (g,) = torch.autograd.grad(loss, th)
    col = 0 if case["activation"].endswith("Heaviside") else 1
    assert float(g[..., 1 - col].abs().max()) == 0.0
    src, ranges = _engine_view(version, case["binning"], case["sources"])
    t = case["thetas"][..., col].clone().requires_grad_(True)
    ref = ik.pid(src, t, bins=case["binning"]["n_bins"], ranges=ranges, backend="reference")
    ref_atoms = torch.cat([ref.atoms.T, ref.h_res[None]])
    assert float((atoms.detach() - ref_atoms.detach()).abs().max()) < 1e-12
    (g_ref,) = torch.autograd.grad(-(torch.tensor(case["gamma"], dtype=torch.float64) @ ref_atoms.sum(-1)), t)
    assert float((g[..., col] - g_ref).abs().max()) < 1e-10 * max(1.0, float(g_ref.abs().max()))
    if "adaptive60" not in name:  # there float32 and float64 edges put a sample in neighbouring bins
        assert abs(float(loss.detach()) - case["loss"]) < 1e-5 and float((atoms.detach() - case["atoms"]).abs().max()) < 1e-5
        want = case["grad_theta"][..., col] - case["grad_theta"][..., 1 - col]
        assert float((g[..., col] - want).abs().max()) <= 1e-4 * float(want.abs().max())


@pytest.mark.parametrize("version", ["first", "current"])
def test_histogram_level_entry_point(version, default_dtype):
    default_dtype(torch.float64)
    im, layer = S.make(version, "_hist")
    for rec in REC[version]["dense"]:
        for mode in ("published", "exact"):
            with C.install(mode=mode, module=im):
                p = rec["p"].clone().requires_grad_(True)
                out = im.InformationDecomposition(p) if version == "current" else im.IM_Layer.pid(None, p)
                (gp,) = torch.autograd.grad((rec["weight"] * out).sum(), p)
            out = out.detach()
            if mode == "published":
                assert float((out - rec["out"]).abs().max()) < 1e-12
                assert float((gp - rec["grad"]).abs().max()) < 1e-12
            else:
                assert float((out - rec["out"]).abs().max()) < 1e-6
                # the exact values and gradient: the engine's dense reference under torch autograd
                p2 = rec["p"].clone().requires_grad_(True)
                ref = ik.pid_distribution(p2.movedim((-1, -2), (0, 1)), n_sources=p.dim() - 2)
                ref_out = torch.cat([ref.atoms.T, ref.h_res[None]])
                (g_ref,) = torch.autograd.grad((rec["weight"] * ref_out).sum(), p2)
                assert float((out - ref_out.detach()).abs().max()) < 1e-12
                assert float((gp - g_ref).abs().max()) < 1e-12 * max(1.0, float(g_ref.abs().max()))
                # the exact gradient differentiates the union probability too; along directions
                # that keep sum_y p(y, s) (every theta-weighted histogram's) the two agree
                n = p.dim() - 2
                d = (gp - rec["grad"]).movedim(n, 0)
                d = d - d.mean(0, keepdim=True)
                assert float(d.abs().max()) < 1e-5 * float(rec["grad"].abs().max())


def test_install_uninstall_restores_every_name():
    for version in ("first", "current"):
        im, _ = S.make(version, "_iu")
        before = (im.IM_Layer.__dict__["loss"], im.IM_Layer.__dict__.get("pid"), getattr(im, "InformationDecomposition", None))
        h = C.install(module=im)
        assert h.installed and h.version == version and "installed" in repr(h)
        assert im.IM_Layer.__dict__["loss"] is not before[0]
        with pytest.raises(RuntimeError, match="already patched"):
            C.install(module=im)
        h.uninstall()
        after = (im.IM_Layer.__dict__["loss"], im.IM_Layer.__dict__.get("pid"), getattr(im, "InformationDecomposition", None))
        assert after == before and not h.installed
        with C.install(module=im) as h2:  # a context manager; module-level uninstall() too
            assert h2.installed
        assert im.IM_Layer.__dict__["loss"] is before[0]
        C.install(module=im)
        C.uninstall()
        assert im.IM_Layer.__dict__["loss"] is before[0]


def test_bad_arguments_are_named():
    im, _ = S.make("current", "_bad")
    with pytest.raises(ValueError, match="mode"):
        C.install(mode="fast", module=im)
    with pytest.raises(ValueError, match="backend"):
        C.install(backend="gpu", module=im)
    with pytest.raises(TypeError, match="module"):
        C.install(module=42)
    import types
    with pytest.raises(ValueError, match="IM_Layer"):
        C.install(module=types.ModuleType("not_im_net"))
    odd = types.ModuleType("odd_im_model")
    odd.IM_Layer = type("IM_Layer", (), {})
    with pytest.raises(ValueError, match="version"):
        C.install(module=odd)
    with pytest.raises(ImportError, match="sys.path"):
        import sys
        saved = {k: sys.modules.pop(k) for k in list(sys.modules) if k == "im_net" or k.startswith("im_net.")}
        try:
            C.install()
        finally:
            sys.modules.update(saved)


def _toy_layer(version, tag, binning_kind="fixed", n=2, N=3, B=64, seed=0, surrogate=False):
    im, pe = S.make(version, tag)
    if binning_kind == "fixed":
        b = pe.BinningFixedSize("cpu", [8] * n, edges=[torch.tensor([-3.0, 3.0])] * n,
                                binedges=[torch.linspace(-3, 3, 9, dtype=torch.double)] * n, normalize=False)
    else:
        b = binning_kind(pe)
    name = "GraetzActivationHeaviside" if surrogate else "SumActivation"
    layer = im.IM_Layer([4] * n, N, S.Activation(name, surrogate), b)
    g = torch.Generator().manual_seed(seed)
    x = [torch.randn(B, N, generator=g, dtype=torch.float64) for _ in range(n)]
    theta = torch.rand(B, N, generator=g, dtype=torch.float64)
    if surrogate:
        theta = (theta > 0.5).double()
    th = torch.stack([theta, 1 - theta] if surrogate else [1 - theta, theta], 2).requires_grad_(True)
    layer.save_for_loss = (x, th)
    return im, layer, x, th


def test_return_forms_and_gamma_forms(default_dtype):
    default_dtype(torch.float64)
    for version in ("first", "current"):
        im, layer, x, th = _toy_layer(version, "_rf")
        gam = [0.2, -0.1, 1.0, 0.3, 0.05]
        with C.install(module=im):
            plain = layer.loss(gam)
            l1, info = layer.loss(gam, return_information=True)  # the first version's keywords, on both
            l2, atoms_t = layer.loss(gam, return_information_tensor=True)
            l3, atoms = layer.loss(torch.tensor(gam), return_atoms=True)
            l4 = layer.loss(tuple(gam))
            l5 = layer.loss(np.array(gam))
            default = layer.loss()
            assert isinstance(info, np.ndarray) and info.shape == (5, 3)
            for v in (l1, l2, l3, l4, l5):
                assert abs(float(v) - float(plain)) < 1e-12
            assert abs(float(plain) + float(torch.tensor(gam) @ atoms.detach().sum(-1))) < 1e-12
            assert abs(float(default) + float(torch.tensor([0.1, 0.1, 1, 0.1, 0.1]) @ atoms.detach().sum(-1))) < 1e-12
            # the atoms carry theta's graph: any function of them differentiates like the reference
            w = torch.arange(15.0).reshape(5, 3) / 10
            (g_atoms,) = torch.autograd.grad((w * atoms).sum(), th)
            thr = th.detach()[..., 1].clone().requires_grad_(True)
            ref = ik.pid(torch.stack(x, -1), thr, bins=8, ranges=(-3.0, 3.0), backend="reference")
            (g_ref,) = torch.autograd.grad((w * torch.cat([ref.atoms.T, ref.h_res[None]])).sum(), thr)
            assert float((g_atoms[..., 1] - g_ref).abs().max()) < 1e-10
            # a differentiable gamma gets the summed atoms as its gradient
            gt = torch.tensor(gam, requires_grad=True)
            (g_gamma,) = torch.autograd.grad(layer.loss(gt), gt)
            assert float((g_gamma + atoms.detach().sum(-1)).abs().max()) < 1e-12
            with pytest.raises(ValueError, match="gamma must have 5 entries"):
                layer.loss([1.0, 2.0])
            with pytest.raises(TypeError, match="gamma"):
                layer.loss(3.0)
            layer.save_for_loss = None
            with pytest.raises(RuntimeError, match="save_for_loss"):
                layer.loss(gam)


def test_surrogate_column_and_saturation(default_dtype):
    """[out, 1 - out] with hard 0/1 outputs: column 0 fires; no NaN anywhere."""
    default_dtype(torch.float64)
    for mode in ("exact", "published"):
        im, layer, x, th = _toy_layer("current", "_sur" + mode, surrogate=True)
        with C.install(mode=mode, module=im):
            loss, atoms = layer.loss([0.2, -0.1, 1.0, 0.3, 0.05], return_atoms=True)
            (g,) = torch.autograd.grad(loss, th)
        assert torch.isfinite(atoms).all() and torch.isfinite(g).all()
        ref = ik.pid(torch.stack(x, -1), th.detach()[..., 0], bins=8, ranges=(-3.0, 3.0), backend="reference")
        assert float((atoms[:-1].T - ref.atoms).abs().max()) < 1e-6
        if mode == "exact":
            assert float(g[..., 1].abs().max()) == 0.0


def test_other_binnings_go_through_their_histogram(default_dtype):
    """A binning that is not exactly the version's fixed / adaptive class (a soft one, a subclass)
    is asked for its own theta-weighted histogram; the PID then runs at histogram level."""
    default_dtype(torch.float64)

    def hard_hist_class(pe):
        class MyBinning(pe.BinningFixedSize):  # a subclass: its own get_theta_hist is used
            def get_theta_hist(self, thetas, x, *n):
                bins = [torch.bucketize(torch.clamp(t, e[0] + 1e-4, e[-1]), e) - 1 for t, e in zip(x, self.binedges)]
                B, N, o = thetas.shape
                flat = bins[0] * 8 + bins[1]
                out = torch.zeros(64, N, o, dtype=thetas.dtype).scatter_add(0, flat[..., None].expand(B, N, o), thetas)
                return out.view(8, 8, N, o).movedim((-2, -1), (0, 1))

        return MyBinning("cpu", [8, 8], edges=[torch.tensor([-3.0, 3.0])] * 2,
                         binedges=[torch.linspace(-3, 3, 9, dtype=torch.double)] * 2, normalize=False)

    for version in ("first", "current"):
        for mode in ("published", "exact"):
            im, layer, x, th = _toy_layer(version, f"_soft{mode}", binning_kind=hard_hist_class)
            im2, layer2, _, th2 = _toy_layer(version, f"_hard{mode}")
            with C.install(mode=mode, module=im), C.install(mode=mode, module=im2):
                a = layer.loss([0.2, -0.1, 1.0, 0.3, 0.05], return_atoms=True)[1]
                b = layer2.loss([0.2, -0.1, 1.0, 0.3, 0.05], return_atoms=True)[1]
            assert float((a - b).abs().max()) < 1e-12


def test_a_binning_neither_path_serves_is_named(default_dtype):
    default_dtype(torch.float64)

    class Opaque:  # not the version's hard class and no histogram of its own
        n_bins = [4, 4]

    im, layer, x, th = _toy_layer("current", "_opaque", binning_kind=lambda pe: Opaque())
    with C.install(module=im), pytest.raises(TypeError, match="binning Opaque has no get_theta_hist"):
        layer.loss([0.1, 0.1, 1.0, 0.1, 0.1])


def test_ternary_outputs_use_the_histogram_path(default_dtype):
    default_dtype(torch.float64)
    im, pe = S.make("current", "_tern")

    class Hist(pe.BaseBinning):
        def get_theta_hist(self, thetas, x):
            bins = [torch.clamp(((t + 3) / 6 * 4).long(), 0, 3) for t in x]
            B, N, o = thetas.shape
            flat = bins[0] * 4 + bins[1]
            out = torch.zeros(16, N, o, dtype=thetas.dtype).scatter_add(0, flat[..., None].expand(B, N, o), thetas)
            return out.view(4, 4, N, o).movedim((-2, -1), (0, 1))

    layer = im.IM_Layer([3, 3], 2, S.Activation("LinearTernaryActivation", False), Hist("cpu", [4, 4]))
    g = torch.Generator().manual_seed(1)
    x = [torch.randn(50, 2, generator=g, dtype=torch.float64) for _ in range(2)]
    th = torch.softmax(torch.randn(50, 2, 3, generator=g, dtype=torch.float64), -1).requires_grad_(True)
    layer.save_for_loss = (x, th)
    with C.install(mode="exact", module=im):
        loss, atoms = layer.loss([0.1, 0.1, 1.0, 0.1, 0.1], return_atoms=True)
    p = layer.binning.get_theta_hist(th.detach(), x) / 50  # [N, o, K, K]
    ref = ik.pid_distribution(p, n_sources=2)
    assert float((atoms[:-1].T - ref.atoms).abs().max()) < 1e-12
    (gt,) = torch.autograd.grad(loss, th)
    assert torch.isfinite(gt).all()


def test_pid_binned_api(default_dtype):
    default_dtype(torch.float64)
    g = torch.Generator().manual_seed(3)
    B, N, n = 200, 3, 3
    x = torch.randn(B, N, n, generator=g, dtype=torch.float64) * 5
    theta = torch.rand(B, N, generator=g, dtype=torch.float64)
    bins = torch.bucketize(torch.clamp(x, -20 + 1e-4, 20), torch.linspace(-20, 20, 21, dtype=torch.float64)) - 1
    thetas = torch.stack([1 - theta, theta], -1)
    ex = ik.pid_binned(bins, thetas, 20)
    ref = ik.pid(x, theta, bins=20, ranges=(-20.0, 20.0), backend="reference")
    assert float((ex.atoms - ref.atoms).abs().max()) < 1e-12 and float((ex.h_res - ref.h_res).abs().max()) < 1e-12
    pub = ik.pid_binned(bins, thetas, [20, 20, 20], numerics="published")
    assert float((pub.atoms - ex.atoms).abs().max()) < 1e-5
    with pytest.raises(TypeError, match="bins must be an integer"):
        ik.pid_binned(x, thetas, 20)
    with pytest.raises(ValueError, match=r"bins must lie in \[0, nbins\)"):
        ik.pid_binned(bins + 5, thetas, 20)
    with pytest.raises(ValueError, match="thetas must be"):
        ik.pid_binned(bins, thetas[:10], 20)
    with pytest.raises(ValueError, match="numerics"):
        ik.pid_binned(bins, thetas, 20, numerics="fast")
    with pytest.raises(ValueError, match="finite and nonnegative"):
        ik.pid_binned(bins, thetas * float("nan"), 20)
    with pytest.raises(ValueError, match=r"nbins must be an int or one int per source \(3\)"):
        ik.pid_binned(bins, thetas, [20, 20])
    with pytest.raises(ValueError, match="nbins must be >= 1"):
        ik.pid_binned(bins, thetas, 0)
    with pytest.raises(ValueError, match="backend must be one of"):
        ik.pid_binned(bins, thetas, 20, backend="cuda")
    with pytest.raises(ValueError, match="labels must name"):
        ik.pid_binned(bins, thetas, 20, labels="FC")
    with pytest.raises(ValueError, match="local=True"):
        ik.pid_distribution(torch.full((2, 2, 2), 0.125, dtype=torch.float64), local=True, numerics="published")


@pytest.mark.skipif("cpu" not in ik.available_backends(), reason="needs the compiled CPU engine")
@pytest.mark.parametrize("n,T,K", [(1, 2, 6), (2, 2, 8), (3, 2, 5), (2, 3, 4), (4, 2, 3)])
@pytest.mark.parametrize("numerics", ["exact", "published"])
def test_pid_binned_engine_equals_torch_autograd(n, T, K, numerics):
    """The engine's pid_binned (forward and analytic backward, csrc/cpu/pid_cells) against the
    same function under torch autograd in float64, with empty cells, theta exactly 0 and 1, any
    target alphabet; bit-identical for 1 and 2 threads."""
    from infomorph_kernels import cpu_backend

    g = torch.Generator().manual_seed(10 * n + T)
    B, N = 300, 4
    bins = torch.randint(0, K, (B, N, n), generator=g)
    th = torch.rand(B, N, T, generator=g, dtype=torch.float64) ** 3
    th[th < 0.05] = 0
    th[:, 1] = 0
    th[:, 1, 0] = 1  # a neuron whose target never varies
    th = th / th.sum(-1, keepdim=True).clamp_min(1e-300)
    th[th.sum(-1) == 0] = 1.0 / T
    gam = torch.rand(ik.lattice.n_atoms(n) + 1, generator=g, dtype=torch.float64) * 2 - 1
    t_ref = th.clone().requires_grad_(True)
    ref = ik.pid_binned(bins, t_ref, K, numerics=numerics, gamma=gam, backend="reference")
    (g_ref,) = torch.autograd.grad(ref.goal.sum(), t_ref)
    outs = []
    for threads in (1, 2):
        cpu_backend.set_num_threads(threads)
        try:
            t = th.clone().requires_grad_(True)
            res = ik.pid_binned(bins, t, K, numerics=numerics, gamma=gam, backend="cpu")
            (gt,) = torch.autograd.grad(res.goal.sum(), t)
        finally:
            cpu_backend.set_num_threads(None)
        outs.append((res.atoms, res.h_res, res.goal.detach(), gt))
        assert res.backend == "cpu"
        assert float((res.atoms - ref.atoms).abs().max()) < 1e-12
        assert float((res.h_res - ref.h_res).abs().max()) < 1e-12
        assert float((res.goal - ref.goal).abs().max()) < 1e-12
        assert float((gt - g_ref).abs().max()) < 1e-12 * max(1.0, float(g_ref.abs().max()))
        assert torch.isfinite(gt).all()
    assert all(torch.equal(a, b) for a, b in zip(*outs))
    # a learnable goal: its gradient is (red, h_y) through the weights, as with the reference
    gl = gam.clone().requires_grad_(True)
    (gg,) = torch.autograd.grad(ik.pid_binned(bins, th, K, numerics=numerics, gamma=gl, backend="cpu").goal.sum(), gl)
    gl2 = gam.clone().requires_grad_(True)
    (gg2,) = torch.autograd.grad(ik.pid_binned(bins, th, K, numerics=numerics, gamma=gl2, backend="reference").goal.sum(), gl2)
    assert float((gg - gg2).abs().max()) < 1e-12


def test_exact_mode_normalizes_as_the_engine(default_dtype):
    """normalize=True with edges other than (-1, 1): x / max|x| by the engine's rule, so a source
    that is 0 throughout stays 0 (a plain division would give 0 / 0 = NaN and an error)."""
    default_dtype(torch.float64)
    im, pe = S.make("current", "_zero")
    b = pe.BinningFixedSize("cpu", [5, 5], edges=[torch.tensor([-0.5, 0.5])] * 2,
                            binedges=[torch.linspace(-0.5, 0.5, 6)] * 2, normalize=True)
    layer = im.IM_Layer([2, 2], 2, S.Activation("SumActivation", False), b)
    g = torch.Generator().manual_seed(5)
    x = [torch.randn(16, 2, generator=g, dtype=torch.float64), torch.zeros(16, 2, dtype=torch.float64)]
    th = torch.rand(16, 2, generator=g, dtype=torch.float64)
    layer.save_for_loss = (x, torch.stack([1 - th, th], 2).requires_grad_(True))
    with C.install(module=im):
        loss, atoms = layer.loss([0.1, 0.1, 1.0, 0.1, 0.1], return_atoms=True)
    ref = ik.pid(torch.stack([x[0] / x[0].abs().max(0, keepdim=True)[0], x[1]], -1), th, bins=5,
                 ranges=(-0.5, 0.5), backend="reference")
    assert torch.isfinite(loss) and float((atoms.detach()[:-1].T - ref.atoms).abs().max()) < 1e-12


def test_degenerate_inputs_stay_finite(default_dtype):
    """Constant sources (adaptive range of width 0), theta exactly 0 and 1, batch 1."""
    default_dtype(torch.float64)
    for version in ("first", "current"):
        for mode in ("exact", "published"):
            im, pe = S.make(version, f"_deg{mode}")
            kw = {"symmetric": False} if version == "first" else {"padding": 0}
            b = pe.BinningAdaptiveSize("cpu", [5, 5], normalize=False, **kw)
            layer = im.IM_Layer([2, 2], 2, S.Activation("SumActivation", False), b)
            for B in (1, 7):
                x = [torch.full((B, 2), 0.5, dtype=torch.float64), torch.zeros(B, 2, dtype=torch.float64)]
                theta = torch.tensor([[0.0, 1.0]] * B, dtype=torch.float64)
                th = torch.stack([1 - theta, theta], 2).requires_grad_(True)
                layer.save_for_loss = (x, th)
                with C.install(mode=mode, module=im):
                    loss, atoms = layer.loss([0.1, 0.1, 1.0, 0.1, 0.1], return_atoms=True)
                    (gt,) = torch.autograd.grad(loss, th)
                assert torch.isfinite(atoms).all() and torch.isfinite(gt).all() and torch.isfinite(loss)
