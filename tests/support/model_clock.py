"""The worker's Clock on a model's own time, for the state-machine tests whose runner writes
progress at once (progress_interval_s=0), so it arms no timer."""
from __future__ import annotations

from typing import Callable

from chalicelib.ports import Timer


class ModelTime:
    """`monotonic()` reads the model's `now()`; a timer or a wait is refused (none is due in such
    a model, whose store always answers, and one that never fired would hide a report)."""

    def __init__(self, now: Callable[[], float]) -> None:
        self._now = now

    def monotonic(self) -> float:
        return self._now()

    def timer(self, delay_s: float, fire: Callable[[], None]) -> Timer:
        raise AssertionError(f"a timer of {delay_s} s on a model's time: give its runner progress_interval_s=0")

    def sleep(self, seconds: float) -> None:
        raise AssertionError(f"a wait of {seconds} s on a model's time: its store always answers")
