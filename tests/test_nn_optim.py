"""infomorph.optim.FusedAdam: torch's fused Adam bit for bit, its state_dict layout, and a trainer
that never imports torch._dynamo (the 1.5 s start-up it exists to avoid)."""
import subprocess
import sys

import pytest
import torch

from infomorph.models import build_model
from infomorph.optim import FusedAdam, adam
from infomorph.train import TrainConfig, make_optimizer

pytestmark = pytest.mark.usefixtures("one_thread")


def _model(seed=0):
    torch.manual_seed(seed)
    return build_model(1, [6], 12, 3, lateral_k=None)


def _steps(model, opt, n, seed=1):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # the layers sample their outputs from the default generator
    for _ in range(n):
        x = torch.randn(64, 12, generator=g)
        y = torch.randint(0, 3, (64,), generator=g)
        goals, _, _ = model.goals(x, torch.nn.functional.one_hot(y, 3).float())
        opt.zero_grad(set_to_none=True)
        model.loss(goals).backward()
        opt.step()


def _groups(model):
    return model.optimizer_groups({"lr": 0.01, "weight_decay": 0.001}, {"lr": 0.02, "weight_decay": 0.0})


def _same_params(a, b):
    return all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_equals_torch_fused_adam_bit_for_bit():
    ma, mb = _model(), _model()
    ta = torch.optim.Adam(_groups(ma), fused=True)
    fb = FusedAdam(_groups(mb))
    _steps(ma, ta, 4)
    _steps(mb, fb, 4)
    assert _same_params(ma, mb)
    sa, sb = ta.state_dict(), fb.state_dict()
    assert sa["param_groups"] == sb["param_groups"]
    assert sa["state"].keys() == sb["state"].keys()
    for k in sa["state"]:
        assert sa["state"][k].keys() == sb["state"][k].keys()
        for name in sa["state"][k]:
            assert sa["state"][k][name].dtype == sb["state"][k][name].dtype
            assert torch.equal(sa["state"][k][name], sb["state"][k][name]), (k, name)


@pytest.mark.parametrize("direction", ["torch->ours", "ours->torch"])
def test_state_dict_loads_across(direction):
    # two optimizers of different kinds step the same model copies; after a state hand-over the
    # continued runs agree bit for bit with an uninterrupted one
    ref_model = _model()
    ref = torch.optim.Adam(_groups(ref_model), fused=True)
    _steps(ref_model, ref, 3, seed=1)
    _steps(ref_model, ref, 2, seed=2)

    first_model = _model()
    first_cls = (lambda g: torch.optim.Adam(g, fused=True)) if direction == "torch->ours" else FusedAdam
    second_cls = FusedAdam if direction == "torch->ours" else (lambda g: torch.optim.Adam(g, fused=True))
    first = first_cls(_groups(first_model))
    _steps(first_model, first, 3, seed=1)
    second_model = _model(seed=5)  # other initial weights, replaced below
    second_model.load_state_dict(first_model.state_dict())
    second = second_cls(_groups(second_model))
    second.load_state_dict(first.state_dict())
    _steps(second_model, second, 2, seed=2)
    assert _same_params(ref_model, second_model)


def test_any_layout_of_grad_and_loaded_moments_gives_the_same_steps():
    """The fused kernel walks parameter, gradient and moments as flat arrays: a gradient or a
    loaded moment in another layout than the parameter (a user's column-major or transposed
    weights; a checkpoint written with row-major moments) must give the steps of matching layouts, bit for bit.
    (Compared between parameters of one layout: torch's kernel rounds its vector body and its tail
    alike only up to an ulp, and the layout decides which elements fall in the tail.)"""
    torch.manual_seed(0)
    w = torch.randn(7, 5).t().contiguous().t()
    a, b = torch.nn.Parameter(w.clone()), torch.nn.Parameter(w.clone())
    assert a.stride() == b.stride() == (1, 7)
    o_a, o_b = FusedAdam([{"params": [a], "lr": 0.01}]), FusedAdam([{"params": [b], "lr": 0.01}])
    g = torch.Generator().manual_seed(1)
    for _ in range(3):
        grad = torch.randn(7, 5, generator=g)
        a.grad, b.grad = grad.t().contiguous().t(), grad.clone()  # b's gradient row-major
        o_a.step()
        o_b.step()
    assert torch.equal(a, b)
    saved = o_a.state_dict()  # as a checkpoint of row-major weights holds the moments
    saved["state"] = {i: {k: v.contiguous() for k, v in st.items()} for i, st in saved["state"].items()}
    c = torch.nn.Parameter(a.detach().clone())
    o_c = FusedAdam([{"params": [c], "lr": 0.01}])
    o_c.load_state_dict(saved)
    assert o_c.state[c]["exp_avg"].stride() == c.stride()
    for _ in range(3):
        grad = torch.randn(7, 5, generator=g).t().contiguous().t()
        a.grad, c.grad = grad.clone(), grad.clone()
        o_a.step()
        o_c.step()
    assert torch.equal(a, c)


def test_unsupported_options_and_zero_grad():
    p = torch.nn.Parameter(torch.ones(3))
    with pytest.raises(ValueError, match="amsgrad"):
        FusedAdam([{"params": [p], "amsgrad": True}])
    with pytest.raises(ValueError, match="nesterov"):
        FusedAdam([{"params": [p], "nesterov": True}])
    opt = FusedAdam([{"params": [p], "lr": 0.1}])
    p.grad = torch.ones(3)
    opt.zero_grad(set_to_none=False)
    assert torch.equal(p.grad, torch.zeros(3))
    opt.step()  # a zero gradient moves nothing (no weight decay) but counts the step
    assert torch.equal(p.detach(), torch.ones(3)) and float(opt.state[p]["step"]) == 1.0
    opt.zero_grad()
    assert p.grad is None
    opt.step()  # no gradient: skipped, as torch does
    assert float(opt.state[p]["step"]) == 1.0
    with pytest.raises(ValueError, match="different number"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    other = torch.optim.Adam([torch.nn.Parameter(torch.ones(3))], amsgrad=True)
    with pytest.raises(ValueError, match="amsgrad"):  # a step it would not take as asked
        opt.load_state_dict(other.state_dict())


def test_trainer_uses_it_and_falls_back(monkeypatch):
    model = _model()
    assert isinstance(make_optimizer(model, TrainConfig()), FusedAdam)
    meta = torch.nn.Parameter(torch.ones(2, device="meta"))
    assert isinstance(adam([{"params": [meta]}]), torch.optim.Adam)
    monkeypatch.setattr(torch, "__version__", "2.3.1")  # before torch's CPU fused kernel
    assert isinstance(adam(_groups(model)), torch.optim.Adam)


def test_training_never_imports_dynamo(tmp_path):
    code = (
        "import sys\n"
        "from infomorph.train import TrainConfig, train\n"
        f"train(TrainConfig(dataset='synthetic', hidden=[8], epochs=1, batch_size=64, limit_train=128, limit_test=64),"
        f" {str(tmp_path)!r}, log=lambda m: None, show_progress=False)\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo')\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "no dynamo"
