"""infomorph layers: shapes, masks, activations, sampling, and the goal's gradient."""
import math

import pytest
import torch

import infomorph_kernels as ik
from infomorph.activations import FeedforwardActivation, LinearActivation, TrivariateActivation, make_activation
from infomorph.layers import InfomorphicLayer, no_self_mask, sample_pm1, sparse_lateral_mask


pytestmark = pytest.mark.usefixtures("one_thread")


def _layer(n_in=12, n_ctx=3, n=7, k=None, dtype=torch.float64, backend="auto", gamma="optimized", seed=0):
    torch.manual_seed(seed)
    mask = no_self_mask(n) if k is None else sparse_lateral_mask(n, k, torch.Generator().manual_seed(seed))
    layer = InfomorphicLayer((n_in, n_ctx, n), n, TrivariateActivation(), gamma=gamma, masks=(None, None, mask),
                             backend=backend, ranges=(-3.0, 3.0), bins=5)
    return layer.to(dtype)


def _inputs(batch, n_in=12, n_ctx=3, n=7, dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, n_in, generator=g, dtype=dtype)
    c = torch.nn.functional.one_hot(torch.randint(0, n_ctx, (batch,), generator=g), n_ctx).to(dtype)
    lat = torch.randint(0, 2, (batch, n), generator=g).to(dtype) * 2 - 1
    return [x, c, lat]


def test_forward_shapes_and_ranges():
    layer = _layer()
    out = layer(_inputs(33))
    assert out.sources.shape == (33, 7, 3)
    assert out.theta.shape == out.y.shape == (33, 7)
    assert not out.sources.requires_grad and out.theta.requires_grad and not out.y.requires_grad
    assert ((out.theta >= 0) & (out.theta <= 1)).all()
    assert set(out.y.unique().tolist()) <= {-1.0, 1.0}
    assert layer(_inputs(33), sample=False).y is None
    g = layer.goal(out)
    assert g.shape == (7,) and torch.isfinite(g).all()


def test_aggregate_is_masked_linear_map_and_zero_context():
    layer = _layer()
    inp = _inputs(9)
    srcs = layer.aggregate(inp)
    for j, (x, s) in enumerate(zip(inp, srcs)):
        w = getattr(layer, f"w{j}")
        m = getattr(layer, f"mask{j}")
        w_eff = w if m is None else w * m
        torch.testing.assert_close(s, x @ w_eff.T + getattr(layer, f"b{j}"))
    zero = layer.aggregate(inp, zero=(1,))
    assert (zero[1] == 0).all()
    torch.testing.assert_close(zero[0], srcs[0])
    none = layer.aggregate([inp[0], None, None])  # an all-zero input leaves the bias
    torch.testing.assert_close(none[1], layer.b1.expand(9, 7))
    torch.testing.assert_close(none[2], layer.b2.expand(9, 7))


@pytest.mark.parametrize("n,k", [(10, 3), (10, 9), (10, 50), (25, 0), (1, 4)])
def test_sparse_lateral_mask(n, k):
    m = sparse_lateral_mask(n, k, torch.Generator().manual_seed(3))
    assert m.dtype == torch.bool and m.shape == (n, n)
    assert not m.diagonal().any()
    assert (m.sum(1) == min(k, n - 1)).all()


def test_sparse_mask_is_seeded():
    a = sparse_lateral_mask(30, 5, torch.Generator().manual_seed(7))
    b = sparse_lateral_mask(30, 5, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    assert not torch.equal(a, sparse_lateral_mask(30, 5, torch.Generator().manual_seed(8)))


def test_absent_connections_stay_zero_with_zero_gradient():
    layer = _layer(n=9, k=3)
    mask = layer.mask2
    assert (layer.w2[~mask] == 0).all()
    opt = torch.optim.Adam(layer.parameters(), lr=0.05, weight_decay=0.01)
    for step in range(3):
        out = layer(_inputs(40, n=9, seed=step))
        loss = -layer.goal(out).sum()
        opt.zero_grad()
        loss.backward()
        assert (layer.w2.grad[~mask] == 0).all()
        assert layer.w2.grad[mask].abs().sum() > 0
        opt.step()
    assert (layer.w2[~mask] == 0).all()
    assert (layer.w2.diagonal() == 0).all()


def test_fixed_weights_are_buffers():
    eye = torch.eye(4)
    layer = InfomorphicLayer((6, 4), 4, FeedforwardActivation(), gamma="output", masks=(None, eye.bool()),
                             bias=(True, False), fixed=(None, eye), ranges="adaptive")
    names = {n for n, _ in layer.named_parameters()}
    assert names == {"w0", "b0"}
    assert torch.equal(layer.w1, eye)
    c = torch.randn(5, 4)
    torch.testing.assert_close(layer.aggregate([torch.randn(5, 6), c])[1], c)


@pytest.mark.parametrize("k", [None, 2])
def test_weight_gradient_equals_reference_autograd(k):
    """The layer's gradient (fused engine, backend auto) equals d(-G)/dW computed by hand with the
    float64 reference engine through torch autograd."""
    layer = _layer(n=6, k=k, backend="auto")
    inp = _inputs(57, n=6, seed=5)
    out = layer(inp, sample=False)
    loss = -layer.goal(out).sum()
    loss.backward()

    params = {n: p.detach().clone().requires_grad_(True) for n, p in layer.named_parameters()}
    srcs = []
    for j, x in enumerate(inp):
        w = params[f"w{j}"]
        m = getattr(layer, f"mask{j}")
        srcs.append(x @ (w if m is None else w * m).T + params[f"b{j}"])
    f, c, l = srcs
    a = f * (0.8 + 0.1 * torch.sigmoid(2 * f * c) + 0.1 * torch.sigmoid(2 * f * l))
    theta = torch.sigmoid(a)
    g_ref = ik.pid_goal(torch.stack([s.detach() for s in srcs], -1), theta, layer.gamma.tolist(),
                        bins=5, ranges=(-3.0, 3.0), backend="reference")
    (-g_ref.sum()).backward()
    for name, p in layer.named_parameters():
        torch.testing.assert_close(p.grad, params[name].grad, rtol=1e-7, atol=1e-10)


def test_goal_and_atoms_agree_with_pid():
    layer = _layer()
    out = layer(_inputs(64))
    g, atoms = layer.goal_and_atoms(out)
    res = ik.pid(out.sources, out.theta.detach(), bins=5, ranges=(-3.0, 3.0), backend="reference")
    expect = torch.cat([res.atoms.mean(0), res.h_res.mean().reshape(1)])
    torch.testing.assert_close(atoms, expect.double(), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(layer.atoms(out), atoms)
    per_neuron = torch.cat([res.atoms, res.h_res[:, None]], 1) @ layer.gamma
    torch.testing.assert_close(g.detach(), per_neuron, rtol=1e-9, atol=1e-12)


def test_sampling_statistics():
    torch.manual_seed(0)
    theta = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0], dtype=torch.float64).repeat(20000, 1)
    y = sample_pm1(theta)
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    freq = ((y + 1) / 2).mean(0)
    p = theta[0]
    sd = torch.sqrt(p * (1 - p) / theta.shape[0])
    assert freq[0] == 0 and freq[-1] == 1
    assert ((freq - p).abs() <= 5 * sd + 1e-12).all()
    # independent across neurons and samples: correlation of two p = 0.5 columns is ~ 0
    y2 = sample_pm1(torch.full((20000, 2), 0.5, dtype=torch.float64))
    assert abs(float((y2[:, 0] * y2[:, 1]).mean())) < 5 / math.sqrt(20000)


def test_trivariate_activation_formula():
    act = TrivariateActivation()
    f, c, l = torch.randn(3, 50, dtype=torch.float64)
    expect = torch.sigmoid(f * (0.8 + 0.1 * torch.sigmoid(2 * f * c) + 0.1 * torch.sigmoid(2 * f * l)))
    torch.testing.assert_close(act(f, c, l), expect)
    # no feedforward drive -> p = 1/2, whatever context and lateral say
    torch.testing.assert_close(act(torch.zeros(50, dtype=torch.float64), c, l), torch.full((50,), 0.5, dtype=torch.float64))


def test_linear_and_feedforward_activations():
    f, c, l = torch.randn(3, 20, dtype=torch.float64)
    torch.testing.assert_close(LinearActivation(3)(f, c, l), torch.sigmoid(f + 0.1 * l + 0.1 * c))
    torch.testing.assert_close(LinearActivation(2)(f, c), torch.sigmoid(f + 0.1 * c))
    torch.testing.assert_close(FeedforwardActivation()(f, c), torch.sigmoid(f))
    assert make_activation("trivariate", 3).n_sources == 3
    assert make_activation("trivariate", 2).n_sources == 2  # the bivariate modulation
    with pytest.raises(ValueError, match="reads 3 sources"):
        make_activation("trivariate", 4)
    with pytest.raises(ValueError, match="reads 2 sources"):
        make_activation("bivariate", 3)
    with pytest.raises(ValueError, match="unknown activation"):
        make_activation("tanh", 3)


def test_layer_argument_checks():
    with pytest.raises(ValueError, match="activation reads"):
        InfomorphicLayer((4, 4), 3, TrivariateActivation())
    with pytest.raises(ValueError, match="mask of source 2"):
        InfomorphicLayer((4, 4, 3), 3, TrivariateActivation(), masks=(None, None, torch.ones(2, 2, dtype=torch.bool)))
    layer = InfomorphicLayer((4, 4, 3), 3, TrivariateActivation())
    with pytest.raises(ValueError, match="expects 3 inputs"):
        layer([torch.zeros(2, 4)])
    with pytest.raises(RuntimeError, match="no goal"):
        layer.goal(layer([torch.zeros(2, 4), None, None]))
