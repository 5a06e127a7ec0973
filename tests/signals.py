"""Test helper: run a command, send it a signal once it has got far enough, collect its output."""
import subprocess
import sys


def run_and_signal(argv, env, sig, ready, timeout=300):
    """Start ``python -m infomorph *argv``; ``ready(proc)`` returns once the signal should go (it
    may read proc.stdout); send ``sig``; return ``(returncode, stdout, stderr)``. The process is
    killed if anything fails on the way."""
    proc = subprocess.Popen([sys.executable, "-m", "infomorph", *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        ready(proc)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, err
