"""Where a small layer's call goes: the whole `ik.pid_goal(...).sum().backward()`, the call without grad,
and the raw engine call (cpu_backend._run_layer with the same arguments), with and without the gradient.

    python bench/small_layer_breakdown.py [THREADS]

The suite's inputs (bench/cases.make_layer): bivariate adaptive 10 neurons, trivariate 100 neurons.
"""
import inspect, os, statistics, sys, time, torch
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import infomorph_kernels as ik
from infomorph_kernels import cpu_backend
from cases import Case, make_layer
torch.set_num_threads(int(sys.argv[1]) if len(sys.argv) > 1 else 2)
for N, n, K, ad, reps in [(10, 2, 20, True, 2000), (100, 3, 20, False, 200)]:
    x, theta, gamma = make_layer(Case("cpu", N, n, K, "float32", "fwd+bwd", adaptive=ad), "cpu")
    kw = dict(bins=K, ranges="adaptive" if ad else (-20.0, 20.0), backend="cpu", validate=False)
    def full():
        t = theta.detach().requires_grad_()
        ik.pid_goal(x, t, gamma, **kw).sum().backward()
    def fwd_only():
        with torch.no_grad():
            ik.pid_goal(x, theta, gamma, **kw)
    # capture the raw engine call's arguments
    captured = {}
    orig = cpu_backend._run_layer
    def spy(*a):
        captured["a"] = a
        return orig(*a)
    cpu_backend._run_layer = spy
    full()
    cpu_backend._run_layer = orig
    a = captured["a"]
    def raw():
        orig(*a)
    need_grad = list(inspect.signature(orig).parameters).index("need_grad")
    def raw_nograd():
        b = list(a); b[need_grad] = False; orig(*b)
    for name, fn in [("full fwd+bwd", full), ("no-grad call", fwd_only), ("raw engine, grad", raw), ("raw engine, no grad", raw_nograd)]:
        for _ in range(20): fn()
        ts = []
        for _ in range(reps):
            t0 = time.perf_counter(); fn(); ts.append(time.perf_counter() - t0)
        print(f"N={N} n={n} threads={torch.get_num_threads()} {name}: median {statistics.median(ts)*1e6:.1f} us, min {min(ts)*1e6:.1f} us")
