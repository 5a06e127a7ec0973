"""Representational complexity about the label: ik.complexity_profile and
``python -m infomorph inspect RUN_DIR --complexity`` over kept checkpoints."""
import itertools
import json
import os
import subprocess
import sys

import pytest
import torch

import infomorph_kernels as ik

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_profile_sums_atoms_by_degree_and_complexity_is_the_ratio_of_sums():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(3000, 6, generator=g, dtype=torch.float64)
    labels = ((x[:, 0] > 0.5).long() ^ (x[:, 1] > 0.5).long()) + 2 * (x[:, 2] > 0.7).long()
    prof = ik.complexity_profile(x, labels, group_size=3, groups="all", bins=4)
    groups = torch.tensor(list(itertools.combinations(range(6), 3)))
    res = ik.pid_labels(x, labels, groups=groups, bins=4, ranges=(0.0, 1.0))
    deg = ik.degree_of_synergy(3)
    want = [float(res.atoms[:, deg == d].sum()) for d in (1, 2, 3)]
    assert prof["groups"] == 20 and prof["profile"] == pytest.approx(want, abs=1e-12)
    assert prof["complexity"] == pytest.approx(sum((d + 1) * v for d, v in enumerate(want)) / sum(want), abs=1e-12)
    assert sum(prof["profile"]) == pytest.approx(float(res.mutual_information.sum()), abs=1e-9)
    assert 1.0 < prof["complexity"] < 3.0
    r = ik.complexity_profile(x, labels, group_size=2, groups="random:7", bins=4, seed=1)
    assert r["groups"] == 7 and len(r["profile"]) == 2
    with pytest.raises(ValueError, match="random:K"):
        ik.complexity_profile(x, labels, group_size=3, groups="all", bins=4, max_groups=10)
    with pytest.raises(ValueError, match="group_size"):
        ik.complexity_profile(x, labels, group_size=7, bins=4)
    with pytest.raises(ValueError, match="group_size must be an int"):
        ik.complexity_profile(x, labels, group_size=2.5, bins=4)
    with pytest.raises(ValueError, match="max_groups must be an int >= 1"):
        ik.complexity_profile(x, labels, group_size=2, bins=4, max_groups=0)
    with pytest.raises(ValueError, match="groups must be 'all', 'random:K'"):
        ik.complexity_profile(x, labels, group_size=2, groups="pairs", bins=4)
    with pytest.raises(ValueError, match=r"x must be activations \[batch, N\]"):
        ik.complexity_profile(x[:, :, None], labels, group_size=2, bins=4)


def _cli(*args):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.join(ROOT, "python"), ROOT, env.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-m", "infomorph", *args], capture_output=True, text=True, env=env,
                          timeout=600, cwd=ROOT)


@pytest.mark.parametrize("backprop", [False, True])
def test_inspect_complexity_over_kept_checkpoints(tmp_path, backprop):
    run = tmp_path / "run"
    extra = ["--backprop"] if backprop else []
    r = _cli("train", "--dataset", "synthetic", "--hidden", "6", "--epochs", "3", "--keep-checkpoints", "1-2",
             "--no-progress", "--threads", "1", "--out", str(run), *extra)
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(run / "checkpoints")) == ["epoch-1.pt", "epoch-2.pt"]
    r = _cli("inspect", str(run), "--complexity", "--group-size", "2", "--levels", "4")
    assert r.returncode == 0, r.stderr
    res = json.loads((run / "complexity.json").read_text())
    assert res["epochs"] == [1, 2, 3] and res["backprop"] is backprop and set(res["layers"]) == {"hidden", "output"}
    for entries in res["layers"].values():
        assert [e["epoch"] for e in entries] == [1, 2, 3]
        for e in entries:
            assert e["groups"] == (15 if entries is res["layers"]["hidden"] else 45)
            total = sum(e["profile"])
            if total > 0:
                assert e["complexity"] == pytest.approx((e["profile"][0] + 2 * e["profile"][1]) / total)
    assert (run / "complexity.png").stat().st_size > 1000
    bad = _cli("inspect", str(run), "--complexity", "--groups", "pairs")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--complexity" in bad.stderr, bad.stderr


def test_keep_checkpoints_bad_value_is_one_line():
    r = _cli("train", "--dataset", "synthetic", "--keep-checkpoints", "x-y", "--out", "/tmp/never-made-ik")
    assert r.returncode == 2 and "--keep-checkpoints takes numbers" in r.stderr and len(r.stderr.strip().splitlines()) == 1
