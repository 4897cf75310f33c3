"""ManualClock: the worker's clock a test moves, so a batch's turns, hand-backs and lease
extensions happen where the test puts them whatever the machine's speed; and the guard that
chalicelib/worker/ reads time on that Clock only."""
from __future__ import annotations

import ast
from pathlib import Path

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


# -- the worker reads time only on its Clock -------------------------------------------------

WORKER = Path(__file__).resolve().parents[2] / "chalicelib" / "worker"

# What reads the system's time or starts a timer of its own, beside the Clock.
OWN_TIME = {"time.monotonic", "time.time", "time.perf_counter", "time.monotonic_ns", "time.time_ns",
            "time.process_time", "datetime.now", "datetime.utcnow", "datetime.today", "date.today",
            "threading.Timer", "signal.setitimer", "signal.alarm"}

# (module, what) -> why it stays off the Clock. Not listed, being no reading of time: the real
# waits bounded by a Thread.join(timeout) (timeout.py's handler thread off the main thread,
# outcome.py's give-up write), which like the alarm must hold whatever a test's clock says.
ALLOWED_OWN_TIME: dict[tuple[str, str], str] = {
    ("timeout.py", "signal.setitimer"): (
        "the real interrupt: a handler that hangs (sleeping, computing) is stopped by the kernel's "
        "SIGALRM whatever a test's clock says; only when it expired is read on the Clock"),
}


def own_time_reads(folder: Path = WORKER) -> dict[tuple[str, str], list[int]]:
    """(module, what) -> the lines of the modules in `folder` that reach the system's time or
    timers beside the Clock: anything of `time`, and the OWN_TIME names of datetime, threading
    and signal, as attributes (`time.monotonic()`) or imported (`from time import monotonic`)."""
    found: dict[tuple[str, str], list[int]] = {}
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
                names = [f"{node.value.id}.{node.attr}"]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [f"{node.module}.{alias.name}" for alias in node.names]
            else:
                continue
            for what in names:
                if what in OWN_TIME or what.startswith("time."):
                    found.setdefault((path.name, what), []).append(node.lineno)
    return found


def test_the_worker_reads_time_only_on_its_clock():
    """The composition root's Clock is the worker's one clock (a ManualClock in a test): a module
    of chalicelib/worker/ that reads time.monotonic (or starts a threading.Timer) beside it would
    time a throttle, a cancel poll or a timeout on another clock, and a test of it would sleep."""
    found = own_time_reads()
    stray = [f"chalicelib/worker/{module}:{lines[0]}: {what}" for (module, what), lines in sorted(found.items())
             if (module, what) not in ALLOWED_OWN_TIME]
    assert stray == [], "read the worker's Clock (services.clock, passed down) instead:\n" + "\n".join(stray)
    stale = sorted(set(ALLOWED_OWN_TIME) - set(found))
    assert stale == [], f"allowed but no longer there, drop them: {stale}"


def test_the_clock_guard_finds_each_way_of_reading_time(tmp_path):
    (tmp_path / "reads.py").write_text(
        "import signal\nimport threading\nimport time\nfrom datetime import datetime\n"
        "from time import monotonic as now\n\n"
        "a = time.monotonic()\nb = threading.Timer(1, print)\nc = datetime.now()\n"
        "time.sleep(1)\nsignal.setitimer(signal.ITIMER_REAL, 1)\nlock = threading.Lock()\n")
    assert own_time_reads(tmp_path) == {
        ("reads.py", "time.monotonic"): [5, 7], ("reads.py", "threading.Timer"): [8],
        ("reads.py", "datetime.now"): [9], ("reads.py", "time.sleep"): [10], ("reads.py", "signal.setitimer"): [11],
    }
