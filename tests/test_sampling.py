"""ik.sample_pm1: the stochastic +-1 outputs of a layer (the engine's sampler on the CPU)."""
import math

import pytest
import torch

import infomorph_kernels as ik
from infomorph_kernels import cpu_backend

needs_cpu = pytest.mark.skipif(not cpu_backend.is_available(), reason=cpu_backend.unavailable_reason())


@needs_cpu
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_frequencies_follow_theta(dtype):
    """Per theta level the share of +1 lies within 5 standard errors of theta; 0 and 1 are exact."""
    levels = torch.tensor([0.0, 1e-3, 0.1, 0.37, 0.5, 0.9, 0.999, 1.0], dtype=dtype)
    n = 200_000
    theta = levels.repeat_interleave(n).reshape(len(levels), n).T.contiguous()  # [n, levels]
    torch.manual_seed(3)
    y = ik.sample_pm1(theta)
    assert y.dtype == dtype and y.shape == theta.shape
    assert set(y.unique().tolist()) <= {-1.0, 1.0}
    share = (y == 1).to(torch.float64).mean(0)
    for p, s in zip(levels.tolist(), share.tolist()):
        if p in (0.0, 1.0):
            assert s == p
        else:
            assert abs(s - p) < 5 * math.sqrt(p * (1 - p) / n) + 1e-12, (p, s)


@needs_cpu
def test_reproducible_by_seed_and_independent_of_threads():
    theta = torch.rand(1024, 100, generator=torch.Generator().manual_seed(0))
    a = ik.sample_pm1(theta, torch.Generator().manual_seed(7))
    b = ik.sample_pm1(theta, torch.Generator().manual_seed(7))
    assert torch.equal(a, b)
    cpu_backend.set_num_threads(1)
    try:
        c = ik.sample_pm1(theta, torch.Generator().manual_seed(7))
    finally:
        cpu_backend.set_num_threads(None)
    assert torch.equal(a, c)
    torch.manual_seed(11)
    d = ik.sample_pm1(theta)
    torch.manual_seed(11)
    assert torch.equal(d, ik.sample_pm1(theta))


@needs_cpu
def test_successive_calls_are_uncorrelated():
    """Two draws from one generator (the two passes of a step): agreement of the signs at theta =
    1/2 is 1/2 within 5 standard errors, also between neighbouring indices (no shifted stream)."""
    g = torch.Generator().manual_seed(5)
    theta = torch.full((500_000,), 0.5)
    a, b = ik.sample_pm1(theta, g), ik.sample_pm1(theta, g)
    n = theta.numel()
    for x, y in ((a, b), (a[1:], b[:-1]), (a[:-1], a[1:])):
        agree = (x == y).double().mean().item()
        assert abs(agree - 0.5) < 5 * 0.5 / math.sqrt(n), agree


def test_other_devices_and_bad_input():
    with pytest.raises(TypeError, match="theta must be a floating tensor"):
        ik.sample_pm1(torch.ones(3, dtype=torch.int64))
    y = ik.sample_pm1(torch.tensor([0.0, 1.0], dtype=torch.float16))  # not the engine's dtypes: torch samples
    assert y.tolist() == [-1.0, 1.0]
