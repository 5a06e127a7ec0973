"""ik.trivariate_activation: the hidden neuron's activation, fused on the CPU engine for float32."""
import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import cpu_backend

needs_cpu = pytest.mark.skipif(not cpu_backend.is_available(), reason=cpu_backend.unavailable_reason())

PARAMS = [(0.1, 0.1, 2.0, 2.0), (0.3, 0.05, -1.5, 0.7), (0.0, 0.0, 2.0, 2.0)]


def reference(f, c, l, a1, a2, b1, b2):
    f, c, l = (t.double() for t in (f, c, l))
    return torch.sigmoid(f * ((1 - a1 - a2) + a1 * torch.sigmoid(b1 * f * c) + a2 * torch.sigmoid(b2 * f * l)))


def inputs(shape, seed, scale=(4.0, 1.5, 1.5)):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) * s for s in scale]


@needs_cpu
@pytest.mark.parametrize("params", PARAMS)
@pytest.mark.parametrize("shape", [(1,), (7,), (1024, 100), (3, 8195)])  # tails of every length, several chunks
def test_float32_forward_and_backward_match_float64(params, shape):
    f, c, l = inputs(shape, seed=len(shape) * 10 + int(params[0] * 10))
    leaves = [t.clone().requires_grad_() for t in (f, c, l)]
    theta = ik.trivariate_activation(*leaves, *params)
    assert theta.dtype == torch.float32 and theta.shape == f.shape
    up = torch.randn(shape, generator=torch.Generator().manual_seed(5))
    theta.backward(up)
    ref_leaves = [t.double().requires_grad_() for t in (f, c, l)]
    ref = reference(*ref_leaves, *params)
    ref.backward(up.double())
    # float32 arithmetic: within a few float32 ulps of the float64 values (absolute, theta in [0, 1])
    assert (theta.double() - ref).abs().max() < 5e-7
    for got, want in zip(leaves, ref_leaves):
        scale = want.grad.abs().max().item()
        assert torch.isfinite(got.grad).all()
        assert (got.grad.double() - want.grad).abs().max() < 2e-5 * scale + 1e-8


@needs_cpu
def test_extremes_stay_finite_and_in_range():
    """Huge drives saturate theta (and the inner sigmoids) without Inf or NaN, forward or backward."""
    big = [0.0, 1e-30, -1e-30, 30.0, -30.0, 100.0, -100.0, 1e4, -1e4, 3e38, -3e38]
    vals = torch.tensor(big, dtype=torch.float32)
    f, c, l = torch.cartesian_prod(vals, vals, vals).T.contiguous()
    leaves = [t.clone().requires_grad_() for t in (f, c, l)]
    theta = ik.trivariate_activation(*leaves)
    theta.sum().backward()
    assert torch.isfinite(theta).all() and (theta >= 0).all() and (theta <= 1).all()
    assert all(torch.isfinite(t.grad).all() for t in leaves)
    ref = reference(f, c, l, 0.1, 0.1, 2.0, 2.0)
    ok = torch.isfinite(ref)
    assert (theta.double()[ok] - ref[ok]).abs().max() < 1e-6
    # no feedforward drive: 1/2 whatever context and lateral say
    assert (theta[f == 0] == 0.5).all()


@needs_cpu
def test_independent_of_threads():
    f, c, l = inputs((1024, 100), seed=3)
    up = torch.randn(1024, 100, generator=torch.Generator().manual_seed(4))
    outs = []
    for threads in (1, 2, 3):
        cpu_backend.set_num_threads(threads)
        try:
            leaves = [t.clone().requires_grad_() for t in (f, c, l)]
            theta = ik.trivariate_activation(*leaves)
            theta.backward(up)
            outs.append([theta] + [t.grad for t in leaves])
        finally:
            cpu_backend.set_num_threads(None)
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


@needs_cpu
def test_broadcast_inputs_get_summed_gradients():
    """A context given as a bias [N] broadcast over the batch gets the batch-summed gradient."""
    f = torch.randn(64, 10, generator=torch.Generator().manual_seed(1)).requires_grad_()
    bias = torch.randn(10, generator=torch.Generator().manual_seed(2)).requires_grad_()
    l = torch.zeros(64, 10)
    ik.trivariate_activation(f, bias, l).sum().backward()
    f64, b64 = f.detach().double().requires_grad_(), bias.detach().double().requires_grad_()
    reference(f64, b64.expand(64, 10), l, 0.1, 0.1, 2.0, 2.0).sum().backward()
    torch.testing.assert_close(bias.grad.double(), b64.grad, rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(f.grad.double(), f64.grad, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("params", PARAMS)
def test_float64_path_gradcheck(params):
    """float64 (torch ops, the same formula) passes gradcheck; so does the engine's float32 path
    against its own finite differences in float64 arithmetic through the reference."""
    f, c, l = (t.double().requires_grad_() for t in inputs((6, 5), seed=9))
    assert torch.autograd.gradcheck(lambda a, b, d: ik.trivariate_activation(a, b, d, *params), (f, c, l))
    torch.testing.assert_close(ik.trivariate_activation(f, c, l, *params), reference(f, c, l, *params))


def test_bad_input_named():
    with pytest.raises(TypeError, match="trivariate_activation: c must be a floating tensor"):
        ik.trivariate_activation(torch.zeros(3), torch.zeros(3, dtype=torch.int64), torch.zeros(3))
    with pytest.raises(TypeError, match="trivariate_activation: f must be a floating tensor"):
        ik.trivariate_activation([0.0], torch.zeros(3), torch.zeros(3))
    with pytest.raises(ValueError, match=r"f, c and l must broadcast to one shape, got \(3,\), \(4,\) and \(3,\)"):
        ik.trivariate_activation(torch.zeros(3), torch.zeros(4), torch.zeros(3))
    for name, bad in (("a1", "0.1"), ("b2", float("nan")), ("a2", None), ("b1", True)):
        with pytest.raises(TypeError, match=f"trivariate_activation: {name} must be a finite number"):
            ik.trivariate_activation(torch.zeros(3), torch.zeros(3), torch.zeros(3), **{name: bad})


@needs_cpu
def test_baseline_flavour_matches_float64(tmp_path):
    """The portable flavour (no AVX2, as on CPUs without it) is as exact as the vector one."""
    import os
    import subprocess
    import sys

    out = tmp_path / "theta.pt"
    code = (
        "import sys, torch, infomorph_kernels as ik, infomorph_kernels.cpu_backend as cb;"
        "assert cb._load().simd_path() == 'baseline';"
        "g = torch.Generator().manual_seed(0);"
        "f, c, l = [(torch.randn(4099, generator=g) * 3).requires_grad_() for _ in range(3)];"
        "t = ik.trivariate_activation(f, c, l); t.sum().backward();"
        "torch.save([x.detach() for x in (f, c, l, t, f.grad, c.grad, l.grad)], sys.argv[1])"
    )
    env = dict(os.environ, INFOMORPH_CPU_BASELINE="1")
    subprocess.run([sys.executable, "-c", code, str(out)], env=env, check=True)
    f, c, l, theta, df, dc, dl = torch.load(out)
    leaves = [t.double().requires_grad_() for t in (f, c, l)]
    ref = reference(*leaves, 0.1, 0.1, 2.0, 2.0)
    ref.sum().backward()
    assert (theta.double() - ref).abs().max() < 5e-7
    for got, want in zip((df, dc, dl), leaves):
        assert (got.double() - want.grad).abs().max() / want.grad.abs().max() < 2e-5
