"""A run directory on disk: the checkpoint (written atomically, read with one-line errors for a
damaged one), results.json, the lock that keeps a second training out, and the signals that stop a
training at a batch boundary."""
from __future__ import annotations

import dataclasses
import json
import os
import signal
import threading
from typing import Dict, List

import torch

from .config import TrainConfig
from .errors import UserError

CHECKPOINT = "checkpoint.pt"
RESULTS = "results.json"


def atomic_save(obj, path: str) -> None:
    tmp = path + ".tmp"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def atomic_json(obj, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(obj, fh, indent=1)
    os.replace(tmp, path)


def damaged(path: str, out_dir: str, why: str) -> str:
    return (f"--resume: the checkpoint {path} is damaged or not a checkpoint of this program ({why}); "
            f"start the run over with the same command plus --restart")


_CHECKPOINT_KEYS = ("config", "model", "optimizer", "history", "rng_cpu")


def load_checkpoint(path: str, out_dir: str) -> Dict:
    if not os.path.isfile(path):
        raise UserError(f"--resume: no {CHECKPOINT} in {out_dir!r} (start a run there with --out {out_dir})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle, ...: all mean "damaged"
        raise UserError(damaged(path, out_dir, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")) from None
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise UserError(damaged(path, out_dir, f"it lacks {', '.join(missing)}"))
    try:
        TrainConfig.from_dict(state["config"])
    except TypeError as e:
        raise UserError(damaged(path, out_dir, f"its config is unreadable: {e}")) from None
    return state


def checkpoint_state(cfg: TrainConfig, model, opt, history: List[Dict], device, wall: float) -> Dict:
    return {
        "config": dataclasses.asdict(cfg),
        "model": model.state_dict(),
        "optimizer": opt.state_dict() if opt is not None else {},
        "history": history,
        "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "wall_seconds": wall,
    }


class Interrupt:
    """Ctrl-C (SIGINT) or SIGTERM (``kill``, a batch scheduler's stop, the sweep runner passing on
    its own stop) asks training to stop at the next batch boundary (a step is never cut in half);
    a second Ctrl-C stops at once. Only in the main thread (signals are delivered there)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self):
        self.requested = False
        self._old: Dict[int, object] = {}

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:  # second Ctrl-C: the default behaviour
            raise KeyboardInterrupt
        self.requested = True

    def install(self):
        if threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._old[sig] = signal.signal(sig, self._handle)

    def restore(self):
        for sig, old in self._old.items():
            signal.signal(sig, old)
        self._old = {}


LOCK = ".lock"


class RunLock:
    """An exclusive lock on a run directory for as long as a training writes into it (``flock`` on
    DIR/.lock, released by the system when the process ends, however it ends): a second training
    into the same directory (a sweep started twice, a stray process) stops at once with a UserError
    instead of two writers interleaving one checkpoint."""

    def __init__(self, out_dir: str):
        self.path = os.path.join(out_dir, LOCK)
        self._fh = None

    def acquire(self) -> "RunLock":
        try:
            import fcntl
        except ImportError:  # no flock (Windows): no guard
            return self
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown"
            fh.close()
            raise UserError(f"--out: {os.path.dirname(self.path)!r} is being trained into by another process "
                            f"(pid {holder}); wait for it to finish or stop it, then run again") from None
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        self._fh = fh
        return self

    def release(self) -> None:
        if self._fh is not None:
            self._fh.close()  # closing the descriptor releases the flock
            self._fh = None
