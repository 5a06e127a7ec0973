"""The dit drop-in (infomorph_kernels.compat.dit): dit.pid.PID_SX on the engine equals dit's own
class on dit's distribution zoo, averaged and pointwise, and install/uninstall restore dit."""
import math

import pytest

dit = pytest.importorskip("dit", reason="the dit drop-in's tests need dit: pip install dit (bash scripts/setup.sh does)")
import dit.pid  # noqa: E402
from dit.pid.distributions import bivariates, trivariates  # noqa: E402

from infomorph_kernels.compat import dit as ik_dit  # noqa: E402

POINTWISE = ("get_pw_red", "get_pw_pi", "get_pw_red_plus", "get_pw_red_minus", "get_pw_pi_plus", "get_pw_pi_minus")


def _pair(d, **kw):
    """(dit's own result, the engine's) for one distribution."""
    ik_dit.uninstall()
    own = dit.pid.PID_SX(d, **kw)
    ik_dit.install()
    try:
        eng = dit.pid.PID_SX(d, **kw)
    finally:
        ik_dit.uninstall()
    return own, eng


def _assert_same(own, eng, pointwise):
    assert type(eng).__name__ == "PID_SX" and isinstance(eng, type(own)) and type(eng) is not type(own)
    assert list(eng._lattice) == list(own._lattice)
    for node in own._lattice:
        assert eng.get_pi(node) == pytest.approx(own.get_pi(node), abs=1e-13)
        assert eng.get_red(node) == pytest.approx(own.get_red(node), abs=1e-13)
        if not pointwise:
            continue
        for f in POINTWISE:
            a, b = getattr(own, f)(node), getattr(eng, f)(node)
            assert set(a) == set(b), f
            for o in a:
                assert math.isfinite(b[o]) and b[o] == pytest.approx(float(a[o]), abs=1e-12), (f, node, o)


@pytest.mark.parametrize("name", sorted(bivariates))
def test_bivariate_zoo_equals_dit(name):
    own, eng = _pair(bivariates[name], pointwise=True)
    _assert_same(own, eng, True)


@pytest.mark.parametrize("name", ["sum", "synergy", "redundant", "xor cat", "anddup"])
def test_trivariate_zoo_equals_dit(name):
    if name not in trivariates:
        pytest.fail(f"dit's trivariate zoo has no {name!r} (names: {sorted(trivariates)})")
    own, eng = _pair(trivariates[name], pointwise=name == "sum")
    _assert_same(own, eng, name == "sum")


def test_grouped_sources_log_pmf_and_string_report():
    """Sources of two variables, a target of two variables, a log-base pmf: the same as dit."""
    d = dit.Distribution(["0000", "0110", "1011", "1101", "0011"], [0.3, 0.2, 0.2, 0.2, 0.1])
    own, eng = _pair(d, sources=[[0, 1], [2]], target=[3], pointwise=True)
    _assert_same(own, eng, True)
    own, eng = _pair(d, sources=[[0], [1]], target=[2, 3])
    _assert_same(own, eng, False)
    dl = d.copy(base=2)
    own, eng = _pair(dl, pointwise=True)
    _assert_same(own, eng, True)
    assert eng.to_string() == own.to_string()


def test_install_and_uninstall_restore_every_place():
    import dit.pid.measures as measures
    import dit.pid.measures.isx as isx

    original = isx.PID_SX
    ik_dit.install()
    ik_dit.install()  # idempotent
    try:
        assert ik_dit.installed()
        assert dit.pid.PID_SX is isx.PID_SX and isx.PID_SX is not original
        assert getattr(measures, "PID_SX", isx.PID_SX) is isx.PID_SX
        assert issubclass(isx.PID_SX, original)
    finally:
        ik_dit.uninstall()
    assert not ik_dit.installed()
    assert dit.pid.PID_SX is original and isx.PID_SX is original
    assert getattr(measures, "PID_SX", original) is original
