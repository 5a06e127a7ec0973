"""CorInfoMax (python/infomorph/corinfomax.py): its fused dynamics and updates against a plain
transcription of the published equations, the lateral matrix against a direct inverse, learning,
checkpoints, the commands around it."""
import json
import os
import subprocess
import sys

import pytest
import torch

from infomorph.cli import main
from infomorph.corinfomax import DATASET_SETTINGS, DEFAULTS, CorInfoMaxNet, settings_for

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _plain_step(net, x, y, beta):
    """The model's equations written out as the paper and the authors' code state them: neurons in
    columns [n, batch], every product recomputed, one layer after the other (float64)."""
    L, s = net.n_weight_layers, net.s
    eps, g, lam = s["epsilon"], s["hopfield_g"], s["lambda_"]
    gam = (1 - lam) / lam
    Wff = [net.wff(k).clone() for k in range(L)]
    Wfb = [net.wfb(k).clone() for k in range(L)]
    B = [net.lat(k).clone() for k in range(L)]
    X, Y = x.T, y.T

    def dynamics(neurons, steps, beta):
        u = [n.clone() for n in neurons]
        neurons = [n.clone() for n in neurons]
        for t in range(steps):
            lr = max(s["neural_lr_start"] / (t * s["neural_lr_decay"] + 1), s["neural_lr_stop"])
            for k in range(L):
                layers = [X] + neurons
                basal = Wff[k] @ layers[k]
                if k == L - 1:
                    apical = gam * B[k] @ layers[k + 1] + g * layers[k + 1] - beta * (layers[k + 1] - Y)
                    grad = -g * u[k] + (basal - u[k]) / eps + (apical - u[k])
                else:
                    apical = eps * (2 * gam * B[k] @ layers[k + 1] + g * layers[k + 1]) + Wfb[k + 1] @ layers[k + 2]
                    grad = -g * u[k] + (basal - u[k]) / eps + (apical - u[k]) / eps
                u[k] = u[k] + lr * grad
                neurons[k] = torch.clamp(u[k], 0, 1)
        return neurons

    free = dynamics([torch.zeros(n, X.shape[1], dtype=X.dtype) for n in net.sizes[1:]], s["free_steps"], 0.0)
    nudged = dynamics(free, s["nudged_steps"], beta)
    lf, ln = [X] + free, [X] + nudged
    b = X.shape[1]
    for k in range(L):
        ef, en = lf[k + 1] - Wff[k] @ lf[k], ln[k + 1] - Wff[k] @ ln[k]
        Wff[k] = Wff[k] - (1 / beta) * net.lr_ff[k] * (ef @ lf[k].T - en @ ln[k].T) / b
    for k in range(1, L):
        ef, en = lf[k] - Wfb[k] @ lf[k + 1], ln[k] - Wfb[k] @ ln[k + 1]
        Wfb[k] = Wfb[k] - (1 / beta) * net.lr_fb[k] * (ef @ lf[k + 1].T - en @ ln[k + 1].T) / b
    for k in range(L):
        z = B[k] @ nudged[k]
        B[k] = (B[k] - gam * (z @ z.T) / b) / lam
    return [f.T for f in free], Wff, Wfb, B


@pytest.mark.parametrize("hidden", [[7], [6, 5]])
def test_fused_step_equals_the_written_out_equations(hidden):
    torch.manual_seed(3)
    net = CorInfoMaxNet(12, hidden, 4).double()
    g = torch.Generator().manual_seed(4)
    x = torch.rand(9, 12, generator=g, dtype=torch.float64)
    y = torch.nn.functional.one_hot(torch.randint(0, 4, (9,), generator=g), 4).double()
    for step in range(3):  # three batches: the weights the second and third start from are updated ones
        state = torch.get_rng_state()
        beta = (float(torch.randint(0, 2, (1,)).item()) * 2 - 1) * DEFAULTS["beta"]  # the sign train_step draws
        torch.set_rng_state(state)
        free, Wff, Wfb, B = _plain_step(net, x, y, beta)
        loss, scores = net.train_step(x, y)
        torch.testing.assert_close(scores, free[-1], rtol=0, atol=1e-12)
        for k in range(net.n_weight_layers):
            torch.testing.assert_close(net.wff(k), Wff[k], rtol=0, atol=1e-12)
            torch.testing.assert_close(net.lat(k), B[k], rtol=0, atol=1e-12)
            if k >= 1:
                torch.testing.assert_close(net.wfb(k), Wfb[k], rtol=0, atol=1e-12)
        assert loss == pytest.approx(float(((free[-1] - y) ** 2).sum(1).mean()), abs=1e-12)
        assert torch.all(scores >= 0) and torch.all(scores <= 1)


def test_lateral_matrix_stays_the_inverse_of_the_running_correlation():
    """B starts as R^-1; after 300 batch updates B is within 0.3 % of the direct inverse of
    R = lambda R + (1 - lambda) mean(h h^T), which itself moved by over 20 %."""
    torch.manual_seed(0)
    n = 6
    net = CorInfoMaxNet(4, [n], 3, lambda_=0.999).double()
    g = torch.Generator().manual_seed(1)
    a = torch.randn(n, n, generator=g, dtype=torch.float64)
    R = a @ a.T / n + torch.eye(n, dtype=torch.float64)
    net.lat(0).copy_(torch.linalg.inv(R))
    start = torch.linalg.inv(R)
    mix = torch.rand(n, n, generator=g, dtype=torch.float64)
    for _ in range(300):
        h = torch.rand(20, n, generator=g, dtype=torch.float64) @ mix  # correlated activities
        R = 0.999 * R + 0.001 * (h.T @ h) / 20
        net.update_lateral(0, h)
    direct = torch.linalg.inv(R)
    rel = lambda m: float(torch.linalg.norm(m - direct) / torch.linalg.norm(direct))  # noqa: E731
    assert rel(start) > 0.2, rel(start)
    assert rel(net.lat(0)) < 3e-3, rel(net.lat(0))
    torch.testing.assert_close(net.lat(0), net.lat(0).T, rtol=0, atol=1e-12)


def test_settings_per_data_set_and_the_rate_schedule():
    """The authors' settings per data set reach the model that a run builds, and the learning-rate
    schedule is theirs: lr * base ** e (e from 0), base from the phase that epoch e is in."""
    from infomorph.config import TrainConfig
    from infomorph.train import build_from_config

    for dataset in ("mnist", "fashion-mnist", "cifar10"):
        cfg = TrainConfig(dataset=dataset, hidden=[7], model="corinfomax")
        net = build_from_config(cfg, 12, 3)
        assert net.s == settings_for(dataset) == dict(DEFAULTS, **DATASET_SETTINGS.get(dataset, {}))
    fashion = build_from_config(TrainConfig(dataset="fashion-mnist", hidden=[7], model="corinfomax"), 12, 3)
    assert fashion.s["lr_ff"] == (0.3, 0.22) and fashion.s["hopfield_g"] == 0.3 and fashion.s["neural_lr_start"] == 0.07
    expect = {1: 1.0, 2: 0.95, 20: 0.95 ** 19, 21: 0.9 ** 20, 25: 0.9 ** 24, 26: 0.8 ** 25, 50: 0.8 ** 49}
    for epoch, scale in expect.items():
        fashion.start_epoch(epoch)
        assert fashion.rate_scale == pytest.approx(scale, rel=1e-12), epoch
    mnist = CorInfoMaxNet(12, [7], 3)
    for epoch, scale in {1: 1.0, 15: 0.95 ** 14, 16: 0.9 ** 15, 50: 0.9 ** 49}.items():
        mnist.start_epoch(epoch)
        assert mnist.rate_scale == pytest.approx(scale, rel=1e-12), epoch


def test_evaluation_batches_do_not_change_predictions():
    torch.manual_seed(0)
    net = CorInfoMaxNet(10, [8], 3)
    x = torch.rand(50, 10)
    whole = net.free(x)[-1]
    parts = torch.cat([net.free(xb)[-1] for xb in torch.split(x, 7)])
    torch.testing.assert_close(parts, whole, rtol=1e-5, atol=1e-6)
    assert net.predict(x).tolist() == whole.argmax(1).tolist()
    acts = net.activations(x)
    assert [a.shape for a in acts] == [(50, 8), (50, 3)]


ARGS = ["train", "--model", "corinfomax", "--dataset", "synthetic", "--hidden", "100", "--no-progress", "--threads", "1"]


def test_one_epoch_learns_and_resume_equals_an_uninterrupted_run(tmp_path, capsys):
    assert main(ARGS + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["config"]["model"] == "corinfomax" and res["config"]["batch_size"] == 20
    # 1600 training samples, 10 classes (chance 0.1): well above chance after one epoch, better after two
    assert res["history"][0]["val_accuracy"] > 0.5 and res["test_accuracy"] > res["history"][0]["val_accuracy"] - 0.05
    assert "goals" not in res
    assert main(ARGS + ["--epochs", "1", "--out", str(tmp_path / "b")]) == 0
    assert main(["train", "--resume", str(tmp_path / "b"), "--epochs", "2", "--no-progress", "--threads", "1"]) == 0
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["model"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["model"]
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    capsys.readouterr()


def test_inspect_complexity_takes_a_corinfomax_run(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(ARGS + ["--epochs", "1", "--out", str(out)]) == 0
    assert main(["inspect", str(out), "--complexity", "--group-size", "2", "--no-plots", "--threads", "1"]) == 0
    prof = json.loads((out / "complexity.json").read_text())
    assert prof["model"] == "corinfomax" and set(prof["layers"]) == {"hidden", "output"}
    assert 0 <= prof["layers"]["hidden"][0]["complexity"] <= 2
    capsys.readouterr()
    assert main(["inspect", str(out), "--no-plots"]) == 2
    err = capsys.readouterr().err
    assert "is a corinfomax run; local atoms are of infomorphic layers" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("args, needle", [
    (["--model", "hebbian"], "--model: unknown model 'hebbian'"),
    (["--model", "corinfomax", "--backprop"], "--backprop is the backprop model; it does not go with --model corinfomax"),
    (["--model", "corinfomax", "--hidden-lr", "0.1"], "--model corinfomax has its own rule"),
])
def test_bad_model_options_are_one_line_and_exit_2(tmp_path, args, needle):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT, os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-m", "infomorph", "train", "--dataset", "synthetic", "--epochs", "1",
                        "--out", str(tmp_path / "x"), *args], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and needle in r.stderr, r.stderr
