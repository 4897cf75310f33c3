"""ManualClock: the worker's clock a test moves, so a batch's turns, hand-backs and lease
extensions happen where the test puts them whatever the machine's speed."""
from __future__ import annotations

import pytest

from chalicelib.adapters.clocks import ManualClock


def test_timers_fire_within_advance_earliest_first_each_at_its_due_time():
    clock = ManualClock()
    fired: list[tuple[str, float]] = []
    for name, delay in (("late", 3.0), ("early", 1.0), ("also early", 1.0)):
        clock.timer(delay, lambda name=name: fired.append((name, clock.monotonic()))).start()
    clock.advance(0.5)
    assert fired == [] and clock.monotonic() == 0.5 and clock.armed == 3
    clock.advance(10)
    assert fired == [("early", 1.0), ("also early", 1.0), ("late", 3.0)]
    assert clock.monotonic() == 10.5 and clock.armed == 0


def test_a_timer_armed_by_a_firing_one_fires_in_the_same_advance_if_due_by_then():
    clock = ManualClock()
    fired: list[float] = []

    def first() -> None:
        fired.append(clock.monotonic())
        clock.timer(2, lambda: fired.append(clock.monotonic())).start()

    clock.timer(1, first).start()
    clock.advance(5)
    assert fired == [1, 3]


def test_the_clock_does_not_go_back_and_a_timer_starts_once():
    clock = ManualClock(start=7.0)
    with pytest.raises(ValueError):
        clock.advance(-1)
    timer = clock.timer(1, lambda: None)
    timer.start()
    with pytest.raises(RuntimeError):
        timer.start()
    assert clock.monotonic() == 7.0
