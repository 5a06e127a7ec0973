"""The public API's fused path (custom op, autograd, torch.compile), driven by the float64 reference
kernel standing in for a fused backend, and the API's result fields."""
import concurrent.futures

import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import dispatch, lattice
from infomorph_kernels.reference import pid_kernel_reference

F64 = torch.float64


@pytest.fixture
def reference_as_cpu_engine(monkeypatch):
    """Route backend "cpu" to the reference kernel, so this file tests the layer around kernels."""
    monkeypatch.setattr(dispatch, "backend_status", lambda name, device="cpu": (True, ""))
    # custom-op bodies run below the autograd dispatch key; the reference needs autograd for its
    # gradient, so it runs in a fresh thread (dispatch keys are thread-local)
    def kernel(*args, **kw):
        with concurrent.futures.ThreadPoolExecutor(1) as pool:
            return pool.submit(pid_kernel_reference, *args, **kw).result()

    monkeypatch.setattr(dispatch, "kernel", lambda name: kernel)


def inputs(gen, B=64, N=3, n=3):
    x = torch.randn(B, N, n, generator=gen, dtype=F64) * 4
    t = torch.rand(B, N, generator=gen, dtype=F64)
    return x, t


@pytest.mark.parametrize("n", [2, 3, 4])
def test_fused_path_matches_reference(gen, reference_as_cpu_engine, n):
    x, t = inputs(gen, n=n)
    gamma = torch.randn(lattice.n_atoms(n) + 1, generator=gen, dtype=F64)
    t1 = t.clone().requires_grad_()
    t2 = t.clone().requires_grad_()
    r1 = ik.pid(x, t1, bins=5, ranges=(-8.0, 8.0), backend="cpu", gamma=gamma)
    r2 = ik.pid(x, t2, bins=5, ranges=(-8.0, 8.0), backend="reference", gamma=gamma)
    assert r1.backend == "cpu" and r2.backend == "reference"
    for a, b in [(r1.atoms, r2.atoms), (r1.h_res, r2.h_res), (r1.goal, r2.goal)]:
        torch.testing.assert_close(a, b.detach(), atol=1e-12, rtol=0)
    upstream = torch.randn(3, generator=gen, dtype=F64)
    (r1.goal * upstream).sum().backward()
    (r2.goal * upstream).sum().backward()
    torch.testing.assert_close(t1.grad, t2.grad, atol=1e-12, rtol=0)
    assert not r1.atoms.requires_grad


def test_fused_goal_gradcheck(gen, reference_as_cpu_engine):
    x, t = inputs(gen, B=20, N=2)
    t = (0.1 + 0.8 * t).requires_grad_()
    gamma = {"{1}{2}": 1.0, "{123}": -0.5, "H_res": 0.1}
    assert torch.autograd.gradcheck(lambda th: ik.pid_goal(x, th, gamma, bins=3, backend="cpu"), (t,), atol=1e-7)


def test_torch_compile_traces_the_custom_op(gen, reference_as_cpu_engine):
    x, t = inputs(gen)
    gamma = torch.randn(19, generator=gen, dtype=F64)

    def step(th):
        return ik.pid_goal(x, th, gamma, bins=4, backend="cpu", validate=False).sum()

    compiled = torch.compile(step, fullgraph=True, backend="aot_eager")
    t1 = t.clone().requires_grad_()
    t2 = t.clone().requires_grad_()
    g1 = compiled(t1)
    g1.backward()
    g2 = step(t2)
    g2.backward()
    torch.testing.assert_close(g1, g2)
    torch.testing.assert_close(t1.grad, t2.grad)


def test_result_fields_and_names(gen):
    x, t = inputs(gen)
    res = ik.pid(x, t, backend="reference", labels="FCL")
    assert res.names[:2] == ["{F}{C}{L}", "{F}{C}"]
    assert res.atoms.shape == (3, 18) and res.redundancies.shape == (3, 18)
    assert res.h_res.shape == (3,) and res.goal is None
    torch.testing.assert_close(res.atoms.sum(-1) + res.h_res, res.h_y)
    d = res.as_dict(1)
    assert list(d)[-1] == "H_res" and d["{F}{C}{L}"] == pytest.approx(res.atoms[1, 0].item())
    # atoms are the Moebius inversion of the redundancies
    m = torch.as_tensor(lattice.moebius_matrix(3), dtype=F64)
    torch.testing.assert_close(res.atoms, res.redundancies @ m.T)


def test_goal_is_the_gamma_weighted_sum(gen):
    x, t = inputs(gen)
    gamma = torch.randn(19, generator=gen, dtype=F64)
    res = ik.pid(x, t, backend="reference", gamma=gamma)
    torch.testing.assert_close(res.goal, res.atoms @ gamma[:-1] + gamma[-1] * res.h_res)
    by_name = dict(zip(lattice.gamma_names(3), gamma.tolist()))
    torch.testing.assert_close(ik.pid_goal(x, t, by_name, backend="reference"), res.goal)


def test_auto_picks_an_available_backend(gen):
    x, t = inputs(gen)
    res = ik.pid(x, t)
    assert res.backend in ik.available_backends("cpu")
    assert res.backend == dispatch.AUTO_ORDER["cpu"][[ik.backend_status(b)[0] for b in dispatch.AUTO_ORDER["cpu"]].index(True)]


def test_goal_weights_can_be_learned(gen, reference_as_cpu_engine):
    """A tensor gamma that requires grad gets dG/dgamma = (atoms, H_res), fused and reference alike."""
    x, t = inputs(gen)
    gamma = torch.randn(19, generator=gen, dtype=F64)
    grads = []
    for backend in ("cpu", "reference"):
        g = gamma.clone().requires_grad_()
        res = ik.pid(x, t, bins=4, backend=backend, gamma=g)
        res.goal.sum().backward()
        grads.append(g.grad)
        expected = torch.cat([res.atoms.sum(0), res.h_res.sum().view(1)]).detach()
        torch.testing.assert_close(g.grad, expected, atol=1e-12, rtol=0)
    torch.testing.assert_close(grads[0], grads[1])


def test_double_backward_names_the_backends_that_support_it(gen):
    """A fused backend's backward is analytic and first-order: create_graph=True still gives the
    right first-order gradient, and differentiating it again raises a clear error (the reference
    backends, torch autograd, do support it)."""
    if "cpu" not in ik.available_backends("cpu"):
        pytest.skip("backend 'cpu' is not built")
    x = torch.randn(64, 3, 2, generator=gen, dtype=torch.float64) * 4
    theta = torch.rand(64, 3, generator=gen, dtype=torch.float64)
    gamma = [0.2, -0.4, 1.0, 0.3, 0.1]
    grads = {}
    for backend in ("cpu", "reference"):
        t = theta.clone().requires_grad_()
        (g,) = torch.autograd.grad(ik.pid_goal(x, t, gamma, bins=4, backend=backend).sum(), t, create_graph=True)
        grads[backend] = g
    assert torch.allclose(grads["cpu"], grads["reference"], atol=1e-10, rtol=0)
    grads["reference"].pow(2).sum().backward()  # autograd: any order
    with pytest.raises(RuntimeError, match="double backward .* backend 'cpu'.*'reference'"):
        grads["cpu"].pow(2).sum().backward()


def test_tensor_goal_cache_follows_in_place_changes(gen):
    """A fixed goal held as a CPU tensor is cached per tensor: changing it in place (its version
    counter moves) gives the new goal; a new tensor never reuses an old one's weights."""
    x = torch.randn(64, 4, 2, generator=gen, dtype=torch.float64) * 4
    theta = torch.rand(64, 4, generator=gen, dtype=torch.float64)
    gamma = torch.tensor([0.2, -0.4, 1.0, 0.3, 0.1], dtype=torch.float64)
    for backend in ik.available_backends("cpu"):
        kw = dict(bins=4, backend=backend)
        a = ik.pid_goal(x, theta, gamma, **kw)
        torch.testing.assert_close(ik.pid_goal(x, theta, gamma, **kw), a, rtol=0, atol=0)
        gamma[2] = -1.0
        c = ik.pid_goal(x, theta, gamma, **kw)
        torch.testing.assert_close(c, ik.pid_goal(x, theta, gamma.tolist(), **kw), rtol=0, atol=1e-12)
        assert not torch.allclose(a, c), backend
        gamma[2] = 1.0
        torch.testing.assert_close(ik.pid_goal(x, theta, gamma, **kw), a, rtol=0, atol=1e-12)
        for _ in range(3):  # fresh tensors (ids may be reused) with other values
            other = torch.tensor([0.0, 0.0, 0.0, 0.0, float(_ + 1)], dtype=torch.float64)
            torch.testing.assert_close(ik.pid_goal(x, theta, other, **kw),
                                       ik.pid_goal(x, theta, other.tolist(), **kw), rtol=0, atol=1e-12)
            del other


def test_non_finite_goal_refused_cached_or_not(gen):
    """A goal tensor with NaN/Inf is refused with the argument's name, validate or not, also when the
    same tensor (cached while finite) is made non-finite in place, and with gradient or without."""
    x = torch.randn(64, 4, 2, generator=gen, dtype=torch.float64) * 4
    theta = torch.rand(64, 4, generator=gen, dtype=torch.float64)
    for backend in ik.available_backends("cpu"):
        for validate in (True, False):
            gamma = torch.tensor([0.2, -0.4, 1.0, 0.3, 0.1], dtype=torch.float64)
            ok = ik.pid_goal(x, theta, gamma, bins=4, backend=backend, validate=validate)
            assert torch.isfinite(ok).all()
            for bad in (float("nan"), float("inf")):
                gamma[1] = bad
                with pytest.raises(ValueError, match="gamma must be finite"):
                    ik.pid_goal(x, theta, gamma, bins=4, backend=backend, validate=validate)
                if validate:  # a goal being learned: checked when asked to
                    with pytest.raises(ValueError, match="gamma must be finite"):
                        ik.pid_goal(x, theta, gamma.clone().requires_grad_(), bins=4, backend=backend)
                gamma[1] = -0.4
                torch.testing.assert_close(ik.pid_goal(x, theta, gamma, bins=4, backend=backend, validate=validate),
                                           ok, rtol=0, atol=0)


def test_fixed_goal_cache_follows_the_values(gen):
    """Goals given as lists are cached by value: the same list gives the tensor goal's result, and a
    list changed in place gives the new goal, not the cached one."""
    x = torch.randn(64, 4, 2, generator=gen, dtype=torch.float64) * 4
    theta = torch.rand(64, 4, generator=gen, dtype=torch.float64)
    gamma = [0.2, -0.4, 1.0, 0.3, 0.1]
    for backend in ik.available_backends("cpu"):
        kw = dict(bins=4, backend=backend)
        a = ik.pid_goal(x, theta, gamma, **kw)
        b = ik.pid_goal(x, theta, torch.tensor(gamma, dtype=torch.float64), **kw)
        assert torch.allclose(a, b, atol=1e-12, rtol=0), backend
        gamma[2] = -1.0
        c = ik.pid_goal(x, theta, gamma, **kw)
        d = ik.pid_goal(x, theta, torch.tensor(gamma, dtype=torch.float64), **kw)
        assert torch.allclose(c, d, atol=1e-12, rtol=0) and not torch.allclose(a, c), backend
        gamma[2] = 1.0
