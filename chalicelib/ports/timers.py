"""The worker's runtime: the progress reporter's one-shot `Timer`, and the `Clock` a batch's
timing reads (its turns, its batch-mates' hand-back and lease extensions)."""
from __future__ import annotations

from typing import Callable, Protocol


class Timer(Protocol):
    """A one-shot timer (threading.Timer): the progress reporter's deferred write."""

    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]


class Clock(Protocol):
    """Monotonic seconds, and one-shot timers that fire on the same clock."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary point; never goes back."""
        ...

    def timer(self, delay_s: float, fire: Callable[[], None]) -> Timer:
        """A timer that calls `fire()` once `delay_s` has passed after its `start()`, unless
        cancelled first; on another thread (or in whatever moves the clock)."""
        ...
