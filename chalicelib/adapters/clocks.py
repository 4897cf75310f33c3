"""The worker's `Clock`: the system's (time.monotonic, threading.Timer), and a manual one that
moves only when told, so a test decides how long a job runs instead of the machine's speed."""
from __future__ import annotations

import itertools
import threading
import time
from typing import Callable, Optional

from chalicelib.ports import Timer


class SystemClock:
    """time.monotonic; each timer a daemon thread (threading.Timer), which a process that
    ends does not wait for."""

    def monotonic(self) -> float:
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def timer(self, delay_s: float, fire: Callable[[], None]) -> Timer:
        timer = threading.Timer(delay_s, fire)
        timer.daemon = True
        return timer


class ManualClock:
    """A clock that reads `start` until `advance(seconds)` moves it. The timers due by then fire
    inside that call, on its thread, earliest first, each with the clock reading its due time."""

    def __init__(self, start: float = 0.0) -> None:
        self._now = start
        self._armed: dict[int, tuple[float, Callable[[], None]]] = {}
        self._order = itertools.count()
        self._lock = threading.Lock()

    def monotonic(self) -> float:
        return self._now

    def sleep(self, seconds: float) -> None:
        """The clock moved on by `seconds` (`advance`): a test's wait takes no time."""
        self.advance(seconds)

    def timer(self, delay_s: float, fire: Callable[[], None]) -> Timer:
        return _ManualTimer(self, delay_s, fire)

    @property
    def armed(self) -> int:
        """How many timers are started and neither fired nor cancelled."""
        return len(self._armed)

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` on, firing each timer due by then (one a due timer arms
        fires too, if it is due by then)."""
        if seconds < 0:
            raise ValueError("a monotonic clock does not go back")
        until = self._now + seconds
        while True:
            with self._lock:
                due = self._next_due(until)
                if due is None:
                    self._now = until
                    return
                key, (at, fire) = due
                del self._armed[key]
                self._now = max(self._now, at)
            fire()  # outside the lock: it may read the clock, arm or cancel a timer

    def _next_due(self, until: float) -> Optional[tuple[int, tuple[float, Callable[[], None]]]]:
        due = [(at, key) for key, (at, _) in self._armed.items() if at <= until]
        if not due:
            return None
        key = min(due)[1]
        return key, self._armed[key]

    def _arm(self, delay_s: float, fire: Callable[[], None]) -> int:
        with self._lock:
            key = next(self._order)
            self._armed[key] = (self._now + max(0.0, delay_s), fire)
            return key

    def _disarm(self, key: int) -> None:
        with self._lock:
            self._armed.pop(key, None)


class _ManualTimer:
    def __init__(self, clock: ManualClock, delay_s: float, fire: Callable[[], None]) -> None:
        self._clock = clock
        self._delay_s = delay_s
        self._fire = fire
        self._key: Optional[int] = None

    def start(self) -> None:
        if self._key is not None:
            raise RuntimeError("a timer can be started once")
        self._key = self._clock._arm(self._delay_s, self._fire)

    def cancel(self) -> None:
        if self._key is not None:
            self._clock._disarm(self._key)
