"""Clock: what the worker's batch timing reads, the system's and the manual one a test moves.
Each timer fires once its delay has passed after `start()`, never once cancelled, and the clock
reads at least its due time then."""
from __future__ import annotations

import threading
import time

import pytest

from chalicelib.adapters.clocks import ManualClock, SystemClock


@pytest.fixture(params=["system", "manual"])
def clock(request):
    return SystemClock() if request.param == "system" else ManualClock(start=100.0)


def let_pass(clock, seconds: float) -> None:
    if isinstance(clock, ManualClock):
        clock.advance(seconds)
    else:
        time.sleep(seconds)


def test_a_started_timer_fires_once_its_delay_has_passed(clock):
    fired: list[float] = []
    done = threading.Event()
    started = clock.monotonic()
    timer = clock.timer(0.05, lambda: (fired.append(clock.monotonic()), done.set()))
    timer.start()
    let_pass(clock, 0.05)
    assert done.wait(10)
    assert len(fired) == 1 and fired[0] - started >= 0.05 - 1e-9
    assert clock.monotonic() >= fired[0]


def test_a_cancelled_timer_never_fires(clock):
    fired: list[str] = []
    timer = clock.timer(0.05, lambda: fired.append("fired"))
    timer.start()
    timer.cancel()
    let_pass(clock, 0.2)  # a cancelled timer's time comes and goes
    assert fired == []


def test_a_timer_not_started_never_fires(clock):
    fired: list[str] = []
    clock.timer(0.0, lambda: fired.append("fired"))
    let_pass(clock, 0.1)
    assert fired == []


def test_a_sleep_returns_once_its_time_has_passed_on_the_clock(clock):
    started = clock.monotonic()
    clock.sleep(0.05)
    assert clock.monotonic() - started >= 0.05 - 1e-9


def test_a_sleep_lets_the_timers_due_meanwhile_fire(clock):
    fired = threading.Event()
    timer = clock.timer(0.02, fired.set)
    timer.start()
    clock.sleep(0.05)
    assert fired.wait(10)
