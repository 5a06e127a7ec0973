"""infomorph goals: presets, atom names, goal files (JSON, YAML, the reference code's format)."""
import json
import sys

import pytest
import torch

from infomorph.goals import OPTIMIZED_GAMMA, PRESETS, gamma_names, goal_as_dict, read_goal_file, resolve_goal


def test_gamma_names_order():
    assert gamma_names(2) == ["{1}", "{2}", "{1}{2}", "{12}", "H_res"]
    assert gamma_names(3)[:4] == ["{1}{2}{3}", "{1}{2}", "{1}{3}", "{2}{3}"]
    assert gamma_names(3)[-2:] == ["{123}", "H_res"] and len(gamma_names(3)) == 19


def test_presets():
    h = resolve_goal("heuristic", 3)
    assert h.dtype == torch.float64 and h.shape == (19,)
    assert h[1] == 1.0 and h.abs().sum() == 1.0
    o = resolve_goal("optimized", 3)
    assert o.tolist() == OPTIMIZED_GAMMA
    d = goal_as_dict(o, 3)
    assert d["{1}{2}{3}"] == 0.3307 and d["{1}{3}"] == -0.9935 and d["{3}"] == -0.9470 and d["H_res"] == 0.0350
    assert resolve_goal("output", 2).tolist() == [-0.2, 0.1, 1.0, 0.1, 0.0]
    with pytest.raises(ValueError, match="for 3 sources"):
        resolve_goal("optimized", 2)
    assert set(PRESETS) == {"heuristic", "optimized", "optimized-cifar10", "hierarchical", "optimized-fc", "optimized-fl",
                            "output"}
    # CIFAR-10's (the published opt_1_100_CIFAR.yaml, rounded to 4 places as the others)
    c = goal_as_dict(resolve_goal("optimized-cifar10", 3), 3)
    assert c["{1}{2}{3}"] == 0.9838 and c["{12}{13}"] == -0.8475 and c["{123}"] == -0.2629 and c["H_res"] == 0.0
    # bivariate hidden layers: the heuristic is {1}{2} for two sources too; their optimized goals
    h2 = resolve_goal("heuristic", 2)
    assert goal_as_dict(h2, 2) == {"{1}{2}": 1.0, "{1}": 0.0, "{2}": 0.0, "{12}": 0.0, "H_res": 0.0}
    fc = goal_as_dict(resolve_goal("optimized-fc", 2), 2)
    assert fc["{1}{2}"] == 0.5118 and fc["{12}"] == 0.5942 and fc["{1}"] == -0.0990
    fl = goal_as_dict(resolve_goal("optimized-fl", 2), 2)
    assert fl["{1}"] == 0.8281 and fl["{2}"] == -0.2038 and fl["H_res"] == 0.1350
    with pytest.raises(ValueError, match="for 2 sources"):
        resolve_goal("optimized-fc", 3)


def test_mappings_and_sequences():
    g = resolve_goal({"{1}{2}": 1.0, "h_res": 0.1}, 3)
    assert g[1] == 1.0 and g[-1] == 0.1 and g.abs().sum() == pytest.approx(1.1)
    assert torch.equal(resolve_goal({"{F}{C}": 1.0, "H_res": 0.1}, 3), g)  # source letters
    assert torch.equal(resolve_goal({"{2}{1}": 1.0, "H_res": 0.1}, 3), g)  # sets in any order
    assert resolve_goal([0.0, 0.0, 1.0, 0.0, 0.5], 2).tolist() == [0.0, 0.0, 1.0, 0.0, 0.5]
    with pytest.raises(ValueError, match="5 values"):
        resolve_goal([1.0, 2.0], 2)
    with pytest.raises(ValueError, match="unknown atom"):
        resolve_goal({"{1}{4}": 1.0}, 3)
    with pytest.raises(ValueError, match="finite"):
        resolve_goal([float("nan")] * 5, 2)
    with pytest.raises(ValueError, match="neither a preset"):
        resolve_goal("optimised", 3)


def test_goal_files(tmp_path):
    j = tmp_path / "g.json"
    j.write_text(json.dumps({"{1}{2}": 0.5, "{123}": -1}))
    g = resolve_goal(str(j), 3)
    assert g[1] == 0.5 and g[17] == -1.0
    y = tmp_path / "g.yaml"
    y.write_text("hidden:\n  gamma:\n    '{1}{2}': 1.0\n    H_res: 0.2\noutput: [0, 0, 1, 0, 0]\n")
    assert resolve_goal(y, 3)[1] == 1.0 and resolve_goal(y, 3)[-1] == 0.2
    assert resolve_goal(y, 2, role="output").tolist() == [0, 0, 1, 0, 0]
    # the published reference code's hydra goal files work unchanged
    ref = tmp_path / "opt.yaml"
    ref.write_text("# @package _global_\nlayer_params:\n  hidden_layer1:\n    gamma:\n"
                   + "".join(f"      - {v}  # c\n" for v in OPTIMIZED_GAMMA))
    assert resolve_goal(str(ref), 3).tolist() == OPTIMIZED_GAMMA
    with pytest.raises(FileNotFoundError):
        resolve_goal(str(tmp_path / "missing.json"), 3)


def test_yaml_is_optional(tmp_path, monkeypatch):
    y = tmp_path / "g.yml"
    y.write_text("[1, 0, 0, 0, 0]\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ImportError, match="PyYAML"):
        read_goal_file(y)
    j = tmp_path / "g.json"
    j.write_text("[1, 0, 0, 0, 0]")
    assert resolve_goal(str(j), 2).tolist() == [1, 0, 0, 0, 0]


def test_readable_names_use_source_letters():
    from infomorph.goals import readable_name

    assert readable_name("{1}{23}") == "{F}{CL}" and readable_name("{12}") == "{FC}"
    assert readable_name("H_res") == "H_res"
    assert [readable_name(n) for n in gamma_names(2)] == ["{F}", "{C}", "{F}{C}", "{FC}", "H_res"]
