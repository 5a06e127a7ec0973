"""Bad input raises ValueError/TypeError naming the argument and the expectation."""
import pytest
import torch

import infomorph_kernels as ik

F64 = torch.float64


def good(B=8, N=2, n=3, dtype=F64):
    g = torch.Generator().manual_seed(0)
    return torch.randn(B, N, n, generator=g, dtype=dtype), torch.rand(B, N, generator=g, dtype=dtype)


def bad_cases():
    x, t = good()
    nan_x = x.clone()
    nan_x[0, 0, 0] = float("nan")
    inf_t = t.clone()
    inf_t[1, 1] = float("inf")
    return [
        ("sources", TypeError, dict(sources=x.numpy())),
        ("sources", TypeError, dict(sources=x.to(torch.int64))),
        ("sources", ValueError, dict(sources=x[0])),
        ("sources", ValueError, dict(sources=x[:0], theta=t[:0])),
        ("sources", ValueError, dict(sources=nan_x)),
        ("sources", ValueError, dict(sources=torch.randn(8, 2, 6, dtype=F64))),
        ("theta", TypeError, dict(theta=t.float())),
        ("theta", ValueError, dict(theta=t[:5])),
        ("theta", ValueError, dict(theta=t.unsqueeze(-1))),
        ("theta", ValueError, dict(theta=inf_t)),
        ("theta", ValueError, dict(theta=t + 1.0)),
        ("theta", ValueError, dict(theta=t - 1.0)),
        ("theta", TypeError, dict(theta=[0.5] * 16)),
        ("bins", ValueError, dict(bins=0)),
        ("bins", ValueError, dict(bins=[20, 20])),
        ("bins", ValueError, dict(bins=[20, -1, 3])),
        ("bins", TypeError, dict(bins=2.5)),
        ("ranges", ValueError, dict(ranges=(1.0, 1.0))),
        ("ranges", ValueError, dict(ranges=(2.0, -2.0))),
        ("ranges", ValueError, dict(ranges=[(0.0, 1.0)] * 2)),
        ("ranges", ValueError, dict(ranges=(float("-inf"), 1.0))),
        ("ranges", ValueError, dict(ranges="auto")),
        ("backend", ValueError, dict(backend="fastest")),
        ("gamma", ValueError, dict(gamma=[1.0] * 5)),
        ("gamma", ValueError, dict(gamma={"{1}{4}": 1.0})),
        ("labels", ValueError, dict(labels="FC")),
    ]


@pytest.mark.parametrize("name,exc,kwargs", bad_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_input_names_the_argument(name, exc, kwargs):
    x, t = good()
    args = dict(sources=x, theta=t, backend="reference")
    args.update(kwargs)
    with pytest.raises(exc, match=name):
        ik.pid(**args)


def bad_part_cases():
    x, t = good()
    parts = [x[..., j].contiguous() for j in range(3)]
    nan_part = parts[1].clone()
    nan_part[2, 1] = float("nan")
    return [
        ("sources\\[1\\] must be a torch.Tensor", TypeError, [parts[0], parts[1].numpy(), parts[2]]),
        ("sources\\[0\\] must be float32 or float64", TypeError, [p.to(torch.int64) for p in parts]),
        ("sources\\[2\\] must be \\[batch, neurons\\]", ValueError, [parts[0], parts[1], x]),
        ("sources\\[1\\] must match sources\\[0\\]", ValueError, [parts[0], parts[1][:5], parts[2]]),
        ("sources\\[2\\] must match sources\\[0\\]", ValueError, [parts[0], parts[1], parts[2].float()]),
        ("sources must hold 1..", ValueError, []),
        ("sources must hold at least one sample", ValueError, [p[:0] for p in parts]),
        ("sources must be finite", ValueError, [parts[0], nan_part, parts[2]]),
    ]


@pytest.mark.parametrize("backend", ["reference", "cpu"])
@pytest.mark.parametrize("words,exc,parts", bad_part_cases(), ids=lambda v: v if isinstance(v, str) else "")
def test_bad_source_list_names_the_part(backend, words, exc, parts):
    """sources given as a list of [batch, neurons] tensors: each problem names the part."""
    if backend not in ik.available_backends("cpu"):
        pytest.skip("the CPU engine is not built here")
    _, t = good()
    if parts and parts[0].shape[0] == 0:
        t = t[:0]
    with pytest.raises(exc, match=words):
        ik.pid(parts, t, backend=backend)
    with pytest.raises(ValueError, match="theta must be \\[batch, neurons\\] = \\[8, 2\\]"):
        ik.pid(list(good()[0].unbind(-1)), t[:4], backend=backend)


def test_mismatched_devices():
    x, t = good()
    with pytest.raises(ValueError, match="theta must be on the device of sources"):
        ik.pid(x, t.to("meta"), backend="reference")


def test_explicit_backend_that_cannot_run_raises():
    x, t = good()
    unavailable = [b for b in ik.BACKENDS if b not in ik.available_backends("cpu")]
    for b in unavailable:
        with pytest.raises(RuntimeError, match=f"backend '{b}' cannot run"):
            ik.pid(x, t, backend=b)
    assert "reference" in ik.available_backends("cpu")


def test_pid_goal_needs_gamma_and_distribution_checks():
    x, t = good()
    with pytest.raises(ValueError, match="gamma"):
        ik.pid_goal(x, t, None)
    with pytest.raises(ValueError, match="p must sum to 1"):
        ik.pid_distribution(torch.ones(2, 2, 2, dtype=F64))
    with pytest.raises(ValueError, match="p must be nonnegative"):
        ik.pid_distribution(torch.tensor([[[0.5, -0.25], [0.5, 0.25]]], dtype=F64).view(1, 2, 2))
    with pytest.raises(ValueError, match="n_sources"):
        ik.pid_distribution(torch.ones(2, 2, dtype=F64) / 4, n_sources=3)
    with pytest.raises(TypeError, match="p must be"):
        ik.pid_distribution([[0.5, 0.5]])
