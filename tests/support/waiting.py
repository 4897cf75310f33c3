"""Waiting in tests for something another process does: read until a condition holds or a
deadline passes. `eventually` fails naming what it waited for, how long and the last value it
read; `last_read` just hands back that last value, for a test that asserts something more
specific itself. Either reads at once, then every `every_s` (the last wait is cut to end at the
deadline, where it reads once more), on `clock` and `sleep` (a unit test passes fakes)."""
from __future__ import annotations

import threading
import time
from typing import Callable, Optional, TypeVar

T = TypeVar("T")

SHOWN_CHARS = 2000  # of the last value's repr in a failure: its start and its end


def _poll(read: Callable[[], T], until: Callable[[T], bool], timeout_s: float, every_s: float,
          clock: Callable[[], float], sleep: Callable[[float], object]) -> tuple[T, bool]:
    if every_s <= 0:
        raise ValueError(f"every_s must be above 0, not {every_s}: no busy loop")
    deadline = clock() + timeout_s
    while True:
        value = read()
        if until(value):
            return value, True
        left = deadline - clock()
        if left <= 0:
            return value, False
        sleep(min(every_s, left))


def eventually(read: Callable[[], T], until: Callable[[T], bool], *, timeout_s: float, every_s: float = 0.5,
               what: str = "the condition", clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], object] = time.sleep) -> T:
    """The first value `read()` returns that `until` accepts. Raises AssertionError naming
    `what`, the timeout and the last value read when none did within `timeout_s`."""
    value, held = _poll(read, until, timeout_s, every_s, clock, sleep)
    if not held:
        shown = repr(value)
        if len(shown) > SHOWN_CHARS:
            half = SHOWN_CHARS // 2
            shown = f"{shown[:half]} … ({len(shown) - SHOWN_CHARS} chars) … {shown[-half:]}"
        raise AssertionError(f"waited {timeout_s:g} s for {what}; last read: {shown}")
    return value


def last_read(read: Callable[[], T], until: Callable[[T], bool], *, timeout_s: float, every_s: float = 0.5,
              clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], object] = time.sleep) -> T:
    """The first value `read()` returns that `until` accepts, or the last one read at the
    deadline: the caller asserts what it needs of it."""
    return _poll(read, until, timeout_s, every_s, clock, sleep)[0]


class WatchedLock:
    """A lock of the code under test, setting `waiting` (its own event unless given one) when a
    second thread waits for it: a test then knows that thread reached it, without a sleep."""

    def __init__(self, lock, waiting: Optional[threading.Event] = None):
        self._lock, self.waiting = lock, waiting or threading.Event()

    def __enter__(self):
        if not self._lock.acquire(blocking=False):
            self.waiting.set()
            self._lock.acquire()
        return self

    def __exit__(self, *exc):
        self._lock.release()
