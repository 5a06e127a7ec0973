"""infomorph models: setups, passes, locality of learning, evaluation without context, read-out."""
import pytest
import torch
import torch.nn.functional as F

import infomorph_kernels as ik
from infomorph.models import BackpropNet, InfomorphicNet, build_model, read_out


pytestmark = pytest.mark.usefixtures("one_thread")


def _batch(b=48, d=20, k=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, d, generator=g)
    y = torch.randint(0, k, (b,), generator=g)
    return x, y, F.one_hot(y, k).float()


def _model(setup=1, hidden=(12,), **kw):
    torch.manual_seed(0)
    kw.setdefault("bins", 5)
    return build_model(setup, hidden, in_features=20, n_classes=10, mask_seed=0, **kw)


def test_setups_connectivity():
    m1, m2, m3 = (_model(s, hidden=(130,)) for s in (1, 2, 3))
    for m in (m1, m2, m3):
        lat = m.hidden[0].mask2
        assert not lat.diagonal().any()
        assert m.hidden[0].in_features == [20, 10, 130]
        assert m.output.in_features == [130, 10]
        assert m.hidden[0].ranges == (-20.0, 20.0) and m.output.ranges == "adaptive"
    assert (m1.hidden[0].mask2.sum(1) == 129).all()
    assert (m2.hidden[0].mask2.sum(1) == 100).all() and (m3.hidden[0].mask2.sum(1) == 100).all()
    assert m1.context == m2.context == "label" and m3.context == "feedback"
    # the output layer's context is its own label element with a fixed weight 1
    assert torch.equal(m1.output.w1, torch.eye(10))
    assert "w1" not in dict(m1.output.named_parameters()) and m1.output.b1 is None


def test_presets_reach_the_layers():
    m = _model(hidden_goal="heuristic")
    expect = torch.zeros(19, dtype=torch.float64)
    expect[1] = 1.0
    assert torch.equal(m.hidden[0].gamma, expect)
    assert m.output.gamma.tolist() == [-0.2, 0.1, 1.0, 0.1, 0.0]


@pytest.mark.parametrize("setup", [1, 3])
def test_two_engine_calls_per_batch_and_goal_on_last_pass(setup, monkeypatch):
    m = _model(setup)
    calls = []
    real = ik.pid

    def counting(sources, theta, *a, **kw):
        # the per-class tensors [batch, neurons], unstacked (the engine reads them in place)
        assert isinstance(sources, list) and len({tuple(s.shape) for s in sources}) == 1
        calls.append((tuple(sources[0].shape) + (len(sources),), theta.requires_grad))
        return real(sources, theta, *a, **kw)

    monkeypatch.setattr(ik, "pid", counting)
    x, _, onehot = _batch()
    goals, atoms, out = m.goals(x, onehot)
    assert [c[0] for c in calls] == [(48, 12, 3), (48, 10, 2)]
    assert all(c[1] for c in calls)
    assert [g.shape for g in goals] == [(12,), (10,)]
    assert [a.shape for a in atoms] == [(19,), (5,)]


def test_first_pass_feeds_lateral_and_has_no_graph():
    m = _model(1)
    seen = []
    hook = m.hidden[0].register_forward_hook(lambda mod, inp, out: seen.append((inp[0][2], out)))
    x, _, onehot = _batch()
    m.run(x, onehot, grad=True)
    hook.remove()
    (lat1, out1), (lat2, out2) = seen
    assert lat1 is None  # first pass: lateral input 0 (only the bias)
    assert torch.equal(lat2, out1.y)  # second pass: the first pass's sampled outputs
    assert not out1.theta.requires_grad and out2.theta.requires_grad


def test_feedback_context_is_output_of_first_pass():
    m = _model(3)
    hid, outp = [], []
    h1 = m.hidden[0].register_forward_hook(lambda mod, inp, out: hid.append(inp[0][1]))
    h2 = m.output.register_forward_hook(lambda mod, inp, out: outp.append(out))
    x, _, onehot = _batch()
    m.run(x, onehot, grad=False)
    h1.remove()
    h2.remove()
    assert hid[0] is None and torch.equal(hid[1], outp[0].y)


def test_no_global_loss_reaches_hidden_layer():
    m = _model(1)
    x, _, onehot = _batch()
    goals, _, _ = m.goals(x, onehot)
    (-goals[-1].sum()).backward(retain_graph=True)
    assert all(p.grad is None for p in m.hidden.parameters())
    assert m.output.w0.grad is not None and m.output.w0.grad.abs().sum() > 0
    m.zero_grad(set_to_none=True)
    (-goals[0].sum()).backward()
    assert all(p.grad is None for p in m.output.parameters())


def test_evaluation_has_no_context():
    m = _model(1, hidden=(8, 6))
    srcs = []
    hooks = [layer.register_forward_hook(lambda mod, inp, out: srcs.append(out.sources)) for layer in m.layers]
    x, _, _ = _batch()
    m.predict(x)
    for h in hooks:
        h.remove()
    assert len(srcs) == 2 * 2 + 1
    assert all((s[..., 1] == 0).all() for s in srcs)
    # Setup 3: the hidden context is the output layer's feedback, which needs no label
    m3 = _model(3)
    out3 = m3.run(x, None)[0][0]
    assert (out3.sources[..., 1] != 0).any()
    # eval_context="bias": a zero label through the learned map leaves the bias
    mb = _model(1, eval_context="bias")
    outb = mb.run(x, None)[0][0]
    torch.testing.assert_close(outb.sources[:, :, 1], mb.hidden[0].b1.detach().expand(48, 12))


def test_prediction_does_not_depend_on_label_and_is_seeded():
    m = _model(1)
    x, _, _ = _batch(seed=3)
    torch.manual_seed(5)
    a = m.predict_proba(x)
    torch.manual_seed(5)
    b = m.predict_proba(x)
    assert torch.equal(a, b)
    assert a.shape == (48, 10)


def test_inversion_rule():
    theta = torch.tensor([[0.9, 0.2, 0.6], [0.1, 0.4, 0.55], [0.95, 0.1, 0.5]])
    # column means: 0.65 (>= 0.5: inverted), 0.233, 0.55 (inverted)
    out = read_out(theta)
    torch.testing.assert_close(out, torch.tensor([[0.1, 0.2, 0.4], [0.9, 0.4, 0.45], [0.05, 0.1, 0.5]]))
    assert out.argmax(1).tolist() == [2, 0, 2]
    assert torch.equal(read_out(theta, invert=False), theta)
    # exactly 0.5 on average counts as inverted
    assert read_out(torch.tensor([[0.25], [0.75]])).tolist() == [[0.75], [0.25]]


def test_predict_uses_inversion_rule(monkeypatch):
    m = _model(1)
    theta = torch.tensor([[0.9, 0.2, 0.0] + [0.0] * 7, [0.8, 0.1, 0.05] + [0.0] * 7])
    monkeypatch.setattr(m, "predict_proba", lambda x: theta)
    # neuron 0 fires for most samples -> read inverted (0.1, 0.2): neuron 1 / 0 win
    assert m.predict(torch.zeros(2, 20)).tolist() == [1, 0]


def test_deep_stack_and_goal_calls():
    m = _model(1, hidden=(16, 8), lateral_k=3)
    assert [l.in_features for l in m.hidden] == [[20, 10, 16], [16, 10, 8]]
    assert (m.hidden[0].mask2.sum(1) == 3).all() and (m.hidden[1].mask2.sum(1) == 3).all()
    x, _, onehot = _batch()
    goals, atoms, out = m.goals(x, onehot)
    assert [g.shape[0] for g in goals] == [16, 8, 10]
    m.loss(goals).backward()
    assert all(p.grad is not None for p in m.parameters())


def test_optimizer_groups_defaults():
    groups = _model(1).optimizer_groups()
    assert [(g["lr"], g["weight_decay"]) for g in groups] == [(0.002, 0.00035), (0.003, 0.00015)]


def test_backprop_baseline_learns_and_reads_without_inversion():
    torch.manual_seed(0)
    m = build_model(1, (16,), in_features=20, n_classes=10, backprop=True, mask_seed=0)
    assert isinstance(m, BackpropNet) and not m.invert_outputs
    assert not m.hidden[0].mask2.diagonal().any()
    x, _, _ = _batch(b=200, seed=1)
    y = x[:, :10].argmax(1)  # a learnable rule
    onehot = F.one_hot(y, 10).float()
    opt = torch.optim.Adam(m.parameters(), lr=0.01)
    first = None
    for _ in range(100):  # 60 steps end near 0.6 x for every seed (0.58-0.62): too close to the bound
        loss = m.loss_fn(x, onehot, y)
        first = float(loss.detach()) if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.6 * first
    assert m.predict(x).shape == (200,)


def test_bad_arguments():
    with pytest.raises(ValueError, match="setup"):
        build_model(4)
    with pytest.raises(ValueError, match="context"):
        InfomorphicNet(20, (4,), 10, context="label+")
    with pytest.raises(ValueError, match="passes"):
        InfomorphicNet(20, (4,), 10, passes=0)
    with pytest.raises(ValueError, match="setup 1 or 2"):
        build_model(3, (4,), in_features=20, backprop=True)
    assert (build_model(2, (120,), in_features=20, backprop=True).hidden[0].mask2.sum(1) == 100).all()


@pytest.mark.parametrize("sources", ["FC", "FL"])
def test_bivariate_hidden_layers(sources):
    """Context-only and lateral-only hidden layers: two sources each, the bivariate activation and
    goal, adaptive binning; the lateral input is the previous pass's output; at evaluation the
    context is zero and the lateral input is the network's own."""
    from infomorph.activations import BivariateActivation
    from infomorph.goals import OPTIMIZED_FC_GAMMA, OPTIMIZED_FL_GAMMA

    gamma = OPTIMIZED_FC_GAMMA if sources == "FC" else OPTIMIZED_FL_GAMMA
    m = _model(1, hidden=(12,), hidden_sources=sources, hidden_goal=gamma)
    layer = m.hidden[0]
    assert layer.n_sources == 2 and layer.source_names == ["F", sources[1]]
    assert isinstance(layer.activation, BivariateActivation) and layer.ranges == "adaptive"
    assert layer.in_features == [20, 10 if sources == "FC" else 12]
    assert layer.gamma.tolist() == gamma
    if sources == "FL":
        assert not layer.mask1.diagonal().any()  # no self-connection
    x, _, onehot = _batch()
    outs, out = m.run(x, onehot, grad=True)
    assert outs[0].sources.shape == (48, 12, 2)
    if sources == "FC":
        torch.testing.assert_close(outs[0].sources[..., 1], layer.source(1, onehot).detach())
    goals, atoms, _ = m.goals(x, onehot)
    assert goals[0].shape == (12,) and atoms[0].shape == (5,)
    m.loss(goals).backward()
    assert layer.w0.grad is not None and layer.w1.grad.abs().sum() > 0
    ev = m.run(x, None)[0][0]
    if sources == "FC":
        assert (ev.sources[..., 1] == 0).all()
    else:
        assert (ev.sources[..., 1] != 0).any()  # the lateral input needs no label


def test_bivariate_activation_formula():
    from infomorph.activations import BivariateActivation, make_activation

    f, m = torch.randn(2, 40, dtype=torch.float64)
    act = BivariateActivation()
    torch.testing.assert_close(act(f, m), torch.sigmoid(f * (0.9 + 0.2 * torch.sigmoid(2 * f * m))))
    torch.testing.assert_close(act(f, torch.zeros_like(f)), torch.sigmoid(f))  # M = 0: gain 1
    assert isinstance(make_activation("trivariate", 2), BivariateActivation)


def test_bivariate_hidden_bad_arguments():
    with pytest.raises(ValueError, match="hidden_sources"):
        InfomorphicNet(20, (4,), 10, hidden_sources="CL")
    with pytest.raises(ValueError, match="feedback"):
        InfomorphicNet(20, (4,), 10, context="feedback", hidden_sources="FL")
    with pytest.raises(ValueError, match="FCL"):
        build_model(1, (4,), in_features=20, backprop=True, hidden_sources="FC")


def test_label_and_feedback_context_side_by_side():
    # the paper's 1600-400-10 stack: the last hidden layer's context reads [label, feedback]
    m = build_model(1, (8, 6), in_features=20, context="label+feedback", passes=3, mask_seed=0)
    assert m.hidden[0].w1.shape == (8, 10) and m.hidden[1].w1.shape == (6, 20)
    seen_low, seen_top, outs = [], [], []
    hooks = [m.hidden[0].register_forward_hook(lambda mod, inp, out: seen_low.append(inp[0][1])),
             m.hidden[1].register_forward_hook(lambda mod, inp, out: seen_top.append(inp[0][1])),
             m.output.register_forward_hook(lambda mod, inp, out: outs.append(out))]
    x, _, onehot = _batch()
    m.run(x, onehot, grad=False)
    # training: the lower layer keeps the label; the top layer sees the label and, from the second
    # pass on, the output layer's sampled outputs of the pass before (zeros on the first)
    assert all(torch.equal(c, onehot) for c in seen_low)
    assert torch.equal(seen_top[0], torch.cat([onehot, torch.zeros_like(onehot)], 1))
    for p in (1, 2):
        assert torch.equal(seen_top[p], torch.cat([onehot, outs[p - 1].y], 1))
    seen_top.clear()
    outs.clear()
    m.predict(x)  # evaluation: no label; the feedback stays, on the first pass nothing (bias only)
    for h in hooks:
        h.remove()
    assert seen_top[0] is None
    for p in (1, 2):
        assert torch.equal(seen_top[p], torch.cat([torch.zeros_like(onehot), outs[p - 1].y], 1))
    goals, _, _ = m.goals(x, onehot)  # the goals of every layer are finite and carry gradients
    assert all(torch.isfinite(g).all() and g.requires_grad for g in goals)
    with pytest.raises(ValueError, match="context"):
        build_model(1, (4,), in_features=20, context="labels")
    with pytest.raises(ValueError, match="label context"):
        build_model(1, (4,), in_features=20, context="label+feedback", backprop=True)


def test_hierarchical_goal_preset_is_the_published_multilayer_goal():
    from infomorph.goals import resolve_goal

    g = resolve_goal("hierarchical", 3)
    want = torch.zeros(19, dtype=g.dtype)
    want[[0, 1, 7, 8]] = torch.tensor([0.3, 1.0, 0.1, 0.1], dtype=g.dtype)  # {1}{2}{3}, {1}{2}, {1}, {2}
    assert torch.equal(g, want)


def test_backprop_published_loss_is_cross_entropy_of_the_firing_probabilities():
    x, y, onehot = _batch()
    torch.manual_seed(0)
    a = build_model(1, (6,), in_features=20, backprop=True, mask_seed=0)
    torch.manual_seed(0)
    b = build_model(1, (6,), in_features=20, backprop=True, mask_seed=0, loss="probabilities")
    logits = torch.randn(48, 10, dtype=torch.float64)
    torch.testing.assert_close(a.loss_of_logits(logits, y), F.cross_entropy(logits, y))
    torch.testing.assert_close(b.loss_of_logits(logits, y), F.cross_entropy(torch.sigmoid(logits), y))
    # a softmax over numbers in (0, 1): the loss can never fall below that of theta = the one-hot target
    floor = F.cross_entropy(onehot.double(), y)
    assert b.loss_of_logits(1e3 * (2 * onehot.double() - 1), y) >= floor - 1e-12
    with pytest.raises(ValueError, match="loss"):
        build_model(1, (4,), in_features=20, backprop=True, loss="mse")
