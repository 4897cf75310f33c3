"""Enforce a job type's timeout around its handler."""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable, Optional

from chalicelib.defaults import HANDLER_ALARM_LATE_S, HANDLER_GIVE_UP_S, HANDLER_REINTERRUPT_S
from chalicelib.domain.errors import JobTimeoutError
from chalicelib.ports import Clock


def run_with_timeout(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None], *,
                     clock: Clock,
                     give_up: Optional[Callable[[float], None]] = None,
                     give_up_after_s: float = HANDLER_GIVE_UP_S,
                     timeout_s: Optional[float] = None) -> Any:
    """Run `fn`, raising JobTimeoutError after `seconds`, which names `timeout_s` (default
    `seconds`: a job's timeout, of which a slow claim may have spent some already).

    In the main thread (as in Lambda) a SIGALRM interrupts the handler where it is, sleeping
    or computing, and again every HANDLER_REINTERRUPT_S while it goes on (a handler that
    catches the timeout and keeps working); once it went on for `give_up_after_s`,
    `give_up(seconds_over)` is called from the alarm (the worker ends its process there, so
    the attempt never outlives its lease: no interrupt cuts it, its wait for its write or its
    end of the process, short), and the interrupts go on if it returns. The alarm
    is the real signal (a hanging handler is interrupted whatever `clock` says); how long the
    handler went on past its timeout is read on `clock`, the worker's. A handler that takes
    SIGALRM for itself stops the alarm, before its timeout or after catching it: a watchdog
    thread then calls `on_timeout` (its writes fail, and it fails `timeout` when it returns)
    and `give_up` in its place. An alarm that comes once `fn` returned interrupts nothing: the
    run stops its timer and puts SIGALRM's handler back whole, and one that comes while
    `on_timeout` runs (the first alarm came late) interrupts nothing either: the hook runs
    whole, once, and the alarm after it interrupts the handler.
    Elsewhere the handler runs in a daemon thread that is abandoned on timeout; `on_timeout`
    lets its later writes fail instead of landing on a finished attempt."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_alarm(fn, seconds, on_timeout, clock, give_up, give_up_after_s, timeout_s or seconds)
    return _with_thread(fn, seconds, on_timeout, timeout_s or seconds)


def _with_alarm(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None], clock: Clock,
                give_up: Optional[Callable[[float], None]], give_up_after_s: float, timeout_s: float) -> Any:
    expired_at: Optional[float] = None
    alarms = 0  # how many times the alarm came: the watchdog tells from it that it stopped coming
    giving_up = threading.Lock()  # taken once, never released: the alarm and the watchdog give up once
    gave_up = False  # `give_up` returned: the interrupts go on
    returned = False  # `fn` is done: an alarm now would only cut the clean-up below short
    expiring = False  # `on_timeout` runs: an alarm now would cut it short, and none calls it again

    def give_up_once(over_s: float) -> None:
        nonlocal gave_up
        # Not blocking: the alarm may come while this very thread is giving up.
        if give_up is not None and giving_up.acquire(blocking=False):
            try:
                give_up(over_s)
            finally:
                gave_up = True

    def alarm(signum: int, frame: Any) -> None:
        nonlocal expired_at, alarms, expiring
        if returned:
            return  # came as the run stops it: its timer and SIGALRM's handler are being put back
        if expiring:
            # The next alarm, come inside `on_timeout` (the first one came late): raised here it
            # would leave the attempt's time out with its writes still allowed. The alarm after
            # it interrupts the handler.
            return
        if giving_up.locked() and not gave_up:
            # A give-up is under way: it waits for its write, then ends the process. Raised here
            # (in it, when the alarm made it on this thread), the interrupt would cut it short,
            # the process never ended, and the handler, swallowing it, would run on.
            return
        alarms += 1
        if expired_at is None:
            expiring = True  # first: an alarm between these lines would skip the hook for good
            expired_at = clock.monotonic()
            try:
                on_timeout()
            finally:
                expiring = False
            raise JobTimeoutError(JobTimeoutError.exceeded(timeout_s))
        over_s = clock.monotonic() - expired_at
        if over_s >= give_up_after_s:
            give_up_once(over_s)
        raise JobTimeoutError(JobTimeoutError.exceeded(timeout_s, over_s))

    done = threading.Event()

    def watchdog() -> None:
        # The alarm comes at the timeout, then every HANDLER_REINTERRUPT_S. Once it has not come
        # HANDLER_ALARM_LATE_S past when it should have, the handler cleared the timer
        # (`signal.alarm(0)`) or replaced `alarm`, before its timeout or after catching it: nothing
        # interrupts it any more, but its attempt's time ends, and it is given up on when the
        # alarm would have.
        nonlocal expired_at
        if done.wait(seconds + HANDLER_ALARM_LATE_S):
            return
        seen = alarms
        while seen and not done.wait(HANDLER_REINTERRUPT_S + HANDLER_ALARM_LATE_S):
            if alarms == seen:
                break  # no interrupt since the last look: the alarm stopped after the timeout
            seen = alarms
        if done.is_set():
            return
        if expired_at is None:
            expired_at = clock.monotonic()
            on_timeout()
        while give_up is not None and not done.wait(HANDLER_REINTERRUPT_S):
            over_s = clock.monotonic() - expired_at
            if over_s >= give_up_after_s:
                give_up_once(over_s)
                return

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds, HANDLER_REINTERRUPT_S)
    threading.Thread(target=watchdog, name="handler-watchdog", daemon=True).start()
    try:
        return fn()
    finally:
        returned = True  # first, before any call: an alarm taken past here raises nothing
        done.set()
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_thread(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None], timeout_s: float) -> Any:
    outcome: dict[str, Any] = {}

    def target() -> None:
        try:
            outcome["result"] = fn()
        except BaseException as exc:  # handed back to the caller's thread below
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="job-handler", daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        on_timeout()
        raise JobTimeoutError(JobTimeoutError.exceeded(timeout_s))
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
