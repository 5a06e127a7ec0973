"""User errors of ``python -m infomorph`` as a new user meets them: one line on stderr naming the
argument or file and what to do, exit code 2, never a traceback; Ctrl-C ends a run cleanly with a
checkpoint that resumes exactly."""
import json
import os
import signal
import subprocess
import sys

import pytest
import torch

import infomorph
from signals import run_and_signal

PKG_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(infomorph.__file__)))
TINY = ["--dataset", "synthetic", "--hidden", "8", "--batch-size", "64", "--limit-train", "160", "--limit-test", "100",
        "--no-progress", "--threads", "1"]


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([PKG_ROOT, env.get("PYTHONPATH", "")])
    return env


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "infomorph", *args], capture_output=True, text=True, env=_env(),
                          timeout=timeout)


def assert_user_error(res, *words):
    """Exit code 2, exactly one line on stderr, no traceback, and the line names ``words``."""
    lines = [l for l in res.stderr.splitlines() if l.strip()]
    assert res.returncode == 2, (res.returncode, res.stderr[-2000:])
    assert "Traceback" not in res.stderr and len(lines) == 1, res.stderr
    for w in words:
        assert w in lines[0], (w, lines[0])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (1 epoch): its checkpoint is the material for the damaged-file cases."""
    out = tmp_path_factory.mktemp("run")
    res = cli("train", *TINY, "--epochs", "1", "--out", str(out))
    assert res.returncode == 0, res.stderr
    return out


@pytest.mark.parametrize("args, words", [
    (["--goal", "/nonexistent.yaml"], ["--goal", "/nonexistent.yaml", "does not exist"]),
    (["--hidden", "0"], ["--hidden", "positive sizes"]),
    (["--hidden", "abc"], ["--hidden", "'abc'"]),
    (["--epochs", "0"], ["--epochs", ">= 1"]),
    (["--setup", "4"], ["--setup", "invalid choice"]),
    (["--restart"], ["--restart", "--resume"]),
    (["--setup", "3", "--backprop"], ["backprop", "setup 1 or 2"]),
    (["--setup", "3", "--hidden-sources", "FL"], ["FL", "feedback"]),
    (["--backprop", "--hidden-sources", "FC"], ["backprop", "FCL"]),
    (["--hidden-sources", "CL"], ["--hidden-sources", "invalid choice"]),
    (["--backprop-loss", "probabilities"], ["--backprop-loss", "goes with --backprop"]),
    (["--context", "label+feedback", "--backprop"], ["backprop", "label context"]),
    (["--context", "feedback", "--hidden-sources", "FL"], ["FL", "feedback"]),
    (["--context", "both"], ["--context", "invalid choice"]),
])  # fmt: skip
def test_bad_options(tmp_path, args, words):
    assert_user_error(cli("train", *TINY, "--out", str(tmp_path / "o"), *args), *words)


@pytest.mark.parametrize("content, words", [
    ([0.1, 0.2, 0.3], ["--goal", "19 values", "got 3"]),
    ({"{1}{2}": 1.0, "{9}": 1.0}, ["--goal", "{9}"]),
])  # fmt: skip
def test_bad_goal_files(tmp_path, content, words):
    goal = tmp_path / "goal.json"
    goal.write_text(json.dumps(content))
    assert_user_error(cli("train", *TINY, "--goal", str(goal), "--out", str(tmp_path / "o")), str(goal), *words)


def test_missing_dataset_names_the_package(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    res = cli("train", "--dataset", "fashion-mnist", "--data-dir", str(empty), "--epochs", "1", "--out",
              str(tmp_path / "o"))
    assert_user_error(res, "Fashion-MNIST", "dataset-fashion-mnist", "--data-dir")


def test_out_is_a_file(tmp_path):
    f = tmp_path / "a_file"
    f.write_text("x")
    assert_user_error(cli("train", *TINY, "--epochs", "1", "--out", str(f)), "--out", str(f), "not a directory")


def test_resume_without_a_run(tmp_path):
    assert_user_error(cli("train", "--resume", str(tmp_path)), "--resume", "checkpoint.pt")


@pytest.mark.parametrize("damage", ["truncated", "foreign"])
def test_damaged_checkpoint_says_so_and_restart_works(finished_run, tmp_path, damage):
    run = tmp_path / "run"
    run.mkdir()
    data = (finished_run / "checkpoint.pt").read_bytes()
    ckpt = run / "checkpoint.pt"
    if damage == "truncated":
        ckpt.write_bytes(data[: len(data) // 2])
    else:
        torch.save({"weights": torch.zeros(3)}, ckpt)
    assert_user_error(cli("train", "--resume", str(run)), str(ckpt), "damaged", "--restart")
    res = cli("train", *TINY, "--epochs", "1", "--resume", str(run), "--restart")
    assert res.returncode == 0, res.stderr
    assert json.loads((run / "results.json").read_text())["epochs_done"] == 1


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["ctrl-c", "sigterm"])
def test_ctrl_c_mid_epoch_checkpoints_and_resumes_exactly(tmp_path, sig):
    """A real SIGINT (or SIGTERM: kill, a batch scheduler's stop) during epoch 2 of 3: exit 130 with one line saying how to resume, no traceback;
    the checkpoint holds the stopped epoch's position, and the resumed run ends exactly where an
    uninterrupted one does."""
    args = ["train", "--dataset", "synthetic", "--hidden", "16", "--batch-size", "16", "--limit-train", "1500",
            "--limit-test", "100", "--epochs", "3", "--seed", "5", "--no-progress", "--threads", "1"]
    cut, whole = tmp_path / "cut", tmp_path / "whole"
    def after_epoch_1(proc):  # wait for the end of epoch 1, then interrupt epoch 2
        for line in proc.stdout:
            if line.startswith("epoch 1/3"):
                return

    rc, _, err = run_and_signal([*args, "--out", str(cut)], _env(), sig, after_epoch_1)
    lines = [l for l in err.splitlines() if l.strip()]
    assert rc == 130, err
    assert "Traceback" not in err and len(lines) == 1 and "--resume" in lines[0] and "epoch 2" in lines[0], err
    state = torch.load(cut / "checkpoint.pt", weights_only=False)
    assert len(state["history"]) == 1 and state["partial"]["epoch"] == 2
    assert 0 <= state["partial"]["next_batch"] < 75
    res = cli("train", "--resume", str(cut), "--no-progress", "--threads", "1")
    assert res.returncode == 0, res.stderr
    ref = cli(*args, "--out", str(whole))
    assert ref.returncode == 0, ref.stderr
    a = json.loads((cut / "results.json").read_text())
    b = json.loads((whole / "results.json").read_text())
    assert a["epochs_done"] == b["epochs_done"] == 3
    for ha, hb in zip(a["history"], b["history"]):
        for key in ("val_accuracy", "test_accuracy", "train_accuracy", "loss"):
            assert ha[key] == hb[key], (ha["epoch"], key)


def test_inspect_writes_local_atoms_per_label(finished_run):
    """inspect on a finished run: JSON and heatmaps; the label-weighted per-label means are the
    layer's mean atoms (the averaging identity of local atoms, over the same batches)."""
    res = cli("inspect", str(finished_run), "--threads", "1")
    assert res.returncode == 0, res.stderr
    data = json.loads((finished_run / "local_atoms.json").read_text())
    assert set(data["layers"]) == {"hidden", "output"} and data["split"] == "test"
    counts = data["label_counts"]
    assert sum(counts) == data["samples"] == 100
    for name, lay in data["layers"].items():
        assert len(lay["atoms"]) == (19 if name == "hidden" else 5) and lay["atoms"][-1] == "H_res"
        for a in lay["atoms"]:
            weighted = sum(counts[int(k)] * v[a] for k, v in lay["per_label"].items()) / sum(counts)
            assert abs(weighted - lay["mean"][a]) < 1e-9, (name, a)
        assert len(lay["per_neuron"]) == (8 if name == "hidden" else 10)
        assert (finished_run / f"local_atoms_{name}.png").stat().st_size > 0
    # the mean over the split is an atom vector of the same kind as training reports (finite, MI >= 0)
    assert all(abs(v) < 10 for v in data["layers"]["hidden"]["mean"].values())


def test_inspect_errors(tmp_path, finished_run):
    assert_user_error(cli("inspect", str(tmp_path / "none")), "inspect", "not a run directory")
    assert_user_error(cli("inspect", str(finished_run), "--split", "train"), "--split", "invalid choice")
    bp = tmp_path / "bp"
    assert cli("train", *TINY, "--epochs", "1", "--backprop", "--out", str(bp)).returncode == 0
    assert_user_error(cli("inspect", str(bp)), "backprop run")
