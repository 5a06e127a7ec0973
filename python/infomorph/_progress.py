"""A progress bar: tqdm when it is installed, else a small fallback (no hard dependency)."""
from __future__ import annotations

import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")


class _Fallback:
    """Counts on one line of stderr (rewritten in place on a terminal, a few lines otherwise)."""

    def __init__(self, iterable: Iterable[T], total: int, desc: str, stream):
        self.iterable, self.total, self.desc, self.stream = iterable, total, desc, stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.postfix = ""

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        self.postfix = s

    def __iter__(self) -> Iterator[T]:
        t0 = time.perf_counter()
        step = max(1, self.total // 4)
        for i, item in enumerate(self.iterable, 1):
            yield item
            if self.tty or i % step == 0 or i == self.total:
                start = "\r" if self.tty else ""
                end = "\n" if (not self.tty or i == self.total) else ""
                line = f"{self.desc} {i}/{self.total} [{time.perf_counter() - t0:.1f}s] {self.postfix}".rstrip()
                self.stream.write(start + line + end)
                self.stream.flush()


def progress(iterable: Iterable[T], total: int, desc: str = "", enabled: bool = True, stream=None):
    """Wrap ``iterable`` in a progress bar; ``enabled=False`` returns a silent wrapper."""
    if not enabled:
        return _Silent(iterable)
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return _Fallback(iterable, total, desc, stream or sys.stderr)
    return tqdm(iterable, total=total, desc=desc, leave=False, file=stream or sys.stderr)


class _Silent:
    def __init__(self, iterable):
        self.iterable = iterable

    def close(self) -> None:
        pass

    def set_postfix_str(self, s: str) -> None:
        pass

    def __iter__(self):
        return iter(self.iterable)
