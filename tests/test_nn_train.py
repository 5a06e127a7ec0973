"""infomorph training loop: results.json, exact resume from a checkpoint, plots."""
import json
import math
import sys

import pytest
import torch

from infomorph.errors import UserError
from infomorph.train import TrainConfig, train


pytestmark = pytest.mark.usefixtures("one_thread")


def _cfg(**kw):
    base = dict(dataset="synthetic", hidden=[8], epochs=2, batch_size=64, limit_train=160, limit_test=100, seed=3)
    base.update(kw)
    return TrainConfig(**base)


def _quiet(_msg):
    pass


def test_results_json(tmp_path):
    res = train(_cfg(), str(tmp_path), log=_quiet, show_progress=False)
    on_disk = json.loads((tmp_path / "results.json").read_text())
    assert on_disk["test_accuracy"] == res["test_accuracy"] == res["history"][-1]["test_accuracy"]
    assert on_disk["epochs_done"] == 2 and (tmp_path / "checkpoint.pt").is_file()
    h = on_disk["history"]
    assert [e["epoch"] for e in h] == [1, 2]
    for e in h:
        assert {"epoch", "val_accuracy", "test_accuracy", "seconds", "atoms", "goal"} <= set(e)
        assert 0 <= e["val_accuracy"] <= 1 and e["seconds"] > 0
        assert len(e["atoms"]["hidden"]) == 19 and len(e["atoms"]["output"]) == 5
        assert "H_res" in e["atoms"]["output"]
    assert on_disk["config"]["hidden_gamma"] == list(res["goals"]["hidden"].values()) and len(res["goals"]["hidden"]) == 19
    assert on_disk["goals"]["hidden"]["{1}{3}"] == -0.9935


def test_resume_continues_exactly(tmp_path):
    straight = train(_cfg(), str(tmp_path / "a"), log=_quiet, show_progress=False)
    train(_cfg(epochs=1), str(tmp_path / "b"), log=_quiet, show_progress=False)
    # on resume the stored config wins, except epochs/device/backend/data_dir
    resumed = train(_cfg(epochs=2, seed=99, hidden=[5]), str(tmp_path / "b"), resume=True, log=_quiet,
                    show_progress=False)
    assert resumed["config"]["seed"] == 3 and resumed["config"]["hidden"] == [8]
    for a, b in zip(straight["history"], resumed["history"]):
        for key in ("val_accuracy", "test_accuracy", "train_accuracy", "loss", "goal", "atoms"):
            assert a[key] == b[key], key
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_test_set_after_the_last_epoch_only_trains_the_same(tmp_path):
    """test_every_epoch=False (goal-search trials) evaluates the test set after the last epoch only;
    evaluation draws its samples from a forked random state, so the training is the same either
    way: the same losses, validation accuracies, final test accuracy and weights."""
    every = train(_cfg(epochs=3), str(tmp_path / "a"), log=_quiet, show_progress=False)
    msgs = []
    last = train(_cfg(epochs=3, test_every_epoch=False), str(tmp_path / "b"), log=msgs.append, show_progress=False)
    assert [h["test_accuracy"] is None for h in last["history"]] == [True, True, False]
    assert all(h["test_accuracy"] is not None for h in every["history"])
    assert last["test_accuracy"] == every["test_accuracy"] == every["history"][-1]["test_accuracy"]
    for a, b in zip(every["history"], last["history"]):
        for key in ("val_accuracy", "train_accuracy", "loss", "goal", "atoms"):
            assert a[key] == b[key], key
    lines = [m for m in msgs if m.startswith("epoch ")]
    assert ["test -" in m for m in lines] == [True, True, False]
    sa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    sb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_resume_needs_a_checkpoint(tmp_path):
    with pytest.raises(UserError, match="checkpoint"):
        train(_cfg(), str(tmp_path), resume=True, log=_quiet)


def test_backprop_run(tmp_path):
    res = train(_cfg(backprop=True, epochs=1), str(tmp_path), log=_quiet, show_progress=False)
    assert res["epochs_done"] == 1 and "atoms" not in res["history"][0] and "goals" not in res


def test_plots_are_optional(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    notes = []
    train(_cfg(epochs=1), str(tmp_path), log=notes.append, show_progress=False)
    assert any("matplotlib is not installed" in n for n in notes)
    assert not list(tmp_path.glob("*.png"))


def test_plots_written(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    ticks = []
    real = Axes.set_xticklabels
    monkeypatch.setattr(Axes, "set_xticklabels", lambda self, labels, **kw: ticks.append(list(labels)) or real(self, labels, **kw))
    train(_cfg(epochs=1), str(tmp_path), log=_quiet, show_progress=False)
    assert (tmp_path / "accuracy.png").stat().st_size > 0 and (tmp_path / "atoms.png").stat().st_size > 0
    # people read the paper's source letters; results.json keeps the numbered names
    assert ticks[0][:3] == ["{F}{C}{L}", "{F}{C}", "{F}{L}"] and ticks[1] == ["{F}", "{C}", "{F}{C}", "{FC}", "H_res"]
    assert "{1}{2}{3}" in json.loads((tmp_path / "results.json").read_text())["history"][0]["atoms"]["hidden"]


def test_progress_fallback_without_tqdm(monkeypatch):
    import io

    from infomorph import _progress

    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    stream = io.StringIO()
    bar = _progress.progress(range(8), 8, "epoch 1/1", stream=stream)
    bar.set_postfix_str("loss 0.1")
    assert list(bar) == list(range(8))
    lines = stream.getvalue().strip().splitlines()
    assert len(lines) == 4 and lines[-1].strip().startswith("epoch 1/1 8/8")
    assert list(_progress.progress(range(3), 3, enabled=False)) == [0, 1, 2]


def test_evaluate_batches_as_the_training_split_does():
    """evaluate() reads consecutive batches of nearly equal size (here 4, 3, 3 of 10 samples), each
    with its own inversion rule: equal to predicting each batch of _batches(...) on its own."""
    from infomorph.models import build_model
    from infomorph.train import batch_indices as _batches, evaluate

    torch.manual_seed(0)
    model = build_model(1, [6], 12, 3)
    x = torch.rand(10, 12)
    y = torch.randint(0, 3, (10,))
    for bs in (4, 10, 3):
        torch.manual_seed(1)
        got = evaluate(model, x, y, bs)
        torch.manual_seed(1)
        want = sum(int((model.predict(x[idx]) == y[idx]).sum()) for idx in _batches(10, bs)) / 10
        assert got == want
    torch.manual_seed(1)
    assert math.isnan(evaluate(model, x[:0], y[:0]))  # no samples
