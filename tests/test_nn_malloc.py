"""The CLI's processes keep freed memory mapped (python/infomorph/_malloc.py): large blocks come
from the heap and stay mapped after a free, where glibc's defaults map and unmap them (page faults
every training step)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

PROBE = r"""
import ctypes, json, torch
from infomorph._malloc import keep_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                "fsmblks", "uordblks", "fordblks", "keepcost")]


libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
took = keep_freed_memory()
a = libc.mallinfo2()
t = torch.empty(2 << 20)  # an 8 MB tensor, as a 2000-neuron layer's sources
b = libc.mallinfo2()
del t
c = libc.mallinfo2()
print(json.dumps({"took": took, "mapped": b.hblkhd - a.hblkhd, "heap_grew": b.arena - a.arena,
                  "heap_kept": c.arena - a.arena}))
"""


def _probe(**env):
    e = dict(os.environ, PYTHONPATH=os.pathsep.join([os.path.join(ROOT, "python"), ROOT]), **env)
    r = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, env=e, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mallopt is glibc's (Linux)")
def test_freed_blocks_stay_in_the_heap():
    """glibc's defaults serve an 8 MB block by a fresh mapping (unmapped again when freed: the next
    step faults its pages in anew, ~150 minor faults per Setup 1 step measured in bench/RESULTS.md);
    with keep_freed_memory it comes from the heap, which keeps it mapped after the free."""
    mb = 1 << 20
    tuned, default = _probe(), _probe(INFOMORPH_MALLOC="default")
    assert tuned["took"] is True and default["took"] is False
    assert default["mapped"] >= 8 * mb and default["heap_grew"] < mb, default
    # the heap grows by the block less what it had free already
    assert tuned["mapped"] == 0 and tuned["heap_grew"] >= 6 * mb and tuned["heap_kept"] == tuned["heap_grew"], tuned


def test_cli_sets_it(monkeypatch):
    """`python -m infomorph` calls keep_freed_memory before its command runs (here one that stops
    at once: train without --out)."""
    import infomorph.cli as cli

    calls = []
    monkeypatch.setattr(cli, "keep_freed_memory", lambda: calls.append(1) or True)
    assert cli.main(["train", "--dataset", "synthetic", "--epochs", "1"]) == 2
    assert calls == [1]
