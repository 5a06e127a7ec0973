"""python -m infomorph train on the tiny built-in synthetic data set."""
import json
import os
import subprocess
import sys

import pytest
import torch

import infomorph
from infomorph.cli import build_parser, main


ARGS = ["train", "--dataset", "synthetic", "--hidden", "8", "--batch-size", "64", "--limit-train", "160",
        "--limit-test", "100", "--seed", "1", "--no-progress", "--threads", "1"]


def test_cli_train_and_resume(tmp_path, capsys):
    out = str(tmp_path / "run")
    assert main(ARGS + ["--epochs", "1", "--goal", "heuristic", "--setup", "2", "--out", out]) == 0
    printed = capsys.readouterr().out
    assert "epoch 1/1: val" in printed and "test" in printed
    res = json.loads(open(os.path.join(out, "results.json")).read())
    assert res["epochs_done"] == 1 and 0 <= res["test_accuracy"] <= 1
    assert res["config"]["setup"] == 2 and res["config"]["goal"] == "heuristic"
    assert main(["train", "--resume", out, "--epochs", "2", "--no-progress", "--threads", "1"]) == 0
    res = json.loads(open(os.path.join(out, "results.json")).read())
    assert [h["epoch"] for h in res["history"]] == [1, 2] and res["config"]["goal"] == "heuristic"
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["epochs_done"] == 2
    # --resume without --epochs keeps the stored number: nothing left to do
    assert main(["train", "--resume", out, "--no-progress", "--threads", "1"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_cli_goal_file_and_options(tmp_path, capsys):
    goal = tmp_path / "goal.json"
    goal.write_text(json.dumps({"{1}{2}": 1.0, "{1}{2}{3}": 0.5}))
    out = str(tmp_path / "run")
    assert main(ARGS + ["--epochs", "1", "--goal", str(goal), "--setup", "3", "--hidden", "6,4", "--out", out]) == 0
    res = json.loads(open(os.path.join(out, "results.json")).read())
    assert res["goals"]["hidden1"]["{1}{2}{3}"] == 0.5 and set(res["goals"]) == {"hidden1", "hidden2", "output"}
    capsys.readouterr()


def test_cli_errors(capsys):
    assert main(["train", "--dataset", "synthetic"]) == 2
    assert "--out" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--hidden", "x"])
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--setup", "4"])
    capsys.readouterr()


def test_console_script_names_itself(capsys, monkeypatch):
    """pip's ``infomorph`` command names itself in its one-line errors and usage, ``python -m`` its own."""
    from infomorph.cli import console

    monkeypatch.setattr(sys, "argv", ["infomorph", "train", "--setup", "4"])
    with pytest.raises(SystemExit) as e:
        console()
    assert e.value.code == 2 and capsys.readouterr().err.startswith("infomorph train: error: argument --setup")
    assert build_parser().format_usage().startswith("usage: python -m infomorph")


def test_cli_learning_rates(tmp_path, capsys):
    """--hidden-lr / --output-lr reach the run's config (and its optimizer); bad values and
    --backprop with them end with one line and exit 2."""
    out = str(tmp_path / "run")
    assert main(ARGS + ["--epochs", "1", "--hidden-lr", "0.004", "--output-lr", "1e-3", "--out", out]) == 0
    cfg = json.loads(open(os.path.join(out, "results.json")).read())["config"]
    assert cfg["hidden_lr"] == 0.004 and cfg["output_lr"] == 0.001
    ckpt = torch.load(os.path.join(out, "checkpoint.pt"), weights_only=False)
    lrs = sorted(g["lr"] for g in ckpt["optimizer"]["param_groups"])
    assert lrs == [0.001, 0.004], lrs
    capsys.readouterr()
    for bad in ("0", "-1", "nan", "inf", "fast"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--dataset", "synthetic", "--hidden-lr", bad, "--out", out])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--hidden-lr" in err and "positive finite" in err and len(err.strip().splitlines()) == 1
    assert main(ARGS + ["--backprop", "--output-lr", "0.01", "--out", str(tmp_path / "bp")]) == 2
    assert "--backprop trains with its own" in capsys.readouterr().err


def test_python_dash_m_help():
    env = dict(os.environ)
    pkg_root = os.path.dirname(os.path.dirname(os.path.abspath(infomorph.__file__)))
    env["PYTHONPATH"] = os.pathsep.join([pkg_root, env.get("PYTHONPATH", "")])
    r = subprocess.run([sys.executable, "-m", "infomorph", "train", "--help"], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 0 and "--limit-train" in r.stdout and "--resume" in r.stdout


def test_cli_threads_auto_is_the_default_and_said_once(tmp_path, capsys, monkeypatch):
    """--threads auto (the default) sets torch's count to the usable cores not busy elsewhere and says
    so once with the training log; each epoch records its count; --threads N fixes it; bad values:
    one line."""
    from infomorph_kernels import threads as T

    monkeypatch.setattr(T, "usable_cpus", lambda: 2)
    monkeypatch.setattr(T, "busy_elsewhere", lambda *a, **k: 1.0)
    args = ARGS[:-2]
    assert ARGS[-2:] == ["--threads", "1"]
    try:
        assert main(args + ["--epochs", "2", "--out", str(tmp_path / "a")]) == 0
        said = capsys.readouterr()
        assert said.out.count("threads auto: 1 of 2 usable cores (1 busy with other processes)") == 1, said.out
        assert "threads auto" not in said.err
        hist = json.loads((tmp_path / "a" / "results.json").read_text())["history"]
        assert [h["threads"] for h in hist] == [1, 1]
        assert main(args + ["--epochs", "1", "--threads", "2", "--out", str(tmp_path / "b")]) == 0
        assert "threads auto" not in capsys.readouterr().out
        assert json.loads((tmp_path / "b" / "results.json").read_text())["history"][0]["threads"] == 2
    finally:
        T.manage_torch(False)
    for bad in ("0", "all", "-2"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--dataset", "synthetic", "--threads", bad, "--out", str(tmp_path / "c")])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--threads" in err and "takes auto or an int >= 1" in err and len(err.strip().splitlines()) == 1


def test_cli_val_fraction(tmp_path, capsys):
    """--val-fraction 0 trains on the whole training set (no validation accuracy: None, not NaN);
    another fraction holds out that share; bad values: one line, exit 2."""
    base = [a for a in ARGS if a not in ("--limit-test", "100")]
    assert main(base + ["--epochs", "1", "--val-fraction", "0", "--out", str(tmp_path / "a")]) == 0
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    assert res["config"]["val_fraction"] == 0.0 and res["history"][0]["val_accuracy"] is None
    assert "val -" in capsys.readouterr().out
    assert main(base + ["--epochs", "1", "--val-fraction", "0.5", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "results.json").read_text())["history"][0]["val_accuracy"] is not None
    capsys.readouterr()
    for bad in ("1", "-0.1", "half"):
        with pytest.raises(SystemExit) as e:
            main(["train", "--dataset", "synthetic", "--val-fraction", bad, "--out", str(tmp_path / "c")])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "--val-fraction" in err and "takes a number in [0, 1)" in err and len(err.strip().splitlines()) == 1
    assert main(["search", "--dataset", "synthetic", "--val-fraction", "0", "--trials", "1", "--no-progress",
                 "--out", str(tmp_path / "s")]) == 2
    assert "--val-fraction: the search's objective is the validation accuracy" in capsys.readouterr().err
