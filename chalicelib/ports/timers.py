"""The worker's time: the `Clock` every timing of the worker reads (a batch's turns, its
batch-mates' hand-back and lease extensions, the progress window, cancel polls, a handler's
time left and past its timeout, the waits before an outcome is written again), and the
one-shot `Timer`s it starts."""
from __future__ import annotations

from typing import Callable, Protocol


class Timer(Protocol):
    """A one-shot timer (threading.Timer on the system clock): the progress window's deferred
    write, a batch's hand-back, a lease extension."""

    def start(self) -> None: ...

    def cancel(self) -> None: ...


class Clock(Protocol):
    """Monotonic seconds, a wait on them, and one-shot timers that fire on the same clock."""

    def monotonic(self) -> float:
        """Seconds since an arbitrary point; never goes back."""
        ...

    def sleep(self, seconds: float) -> None:
        """Return once `seconds` have passed on this clock (an outcome's write waiting for a
        store to answer again)."""
        ...

    def timer(self, delay_s: float, fire: Callable[[], None]) -> Timer:
        """A timer that calls `fire()` once `delay_s` has passed after its `start()`, unless
        cancelled first; on another thread (or in whatever moves the clock)."""
        ...
