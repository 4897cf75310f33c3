"""Enforce a job type's timeout around its handler."""
from __future__ import annotations

import signal
import threading
from typing import Any, Callable

from chalicelib.domain.errors import JobTimeoutError


def run_with_timeout(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None]) -> Any:
    """Run `fn`, raising JobTimeoutError after `seconds`.

    In the main thread (as in Lambda) a SIGALRM interrupts the handler where it is, sleeping
    or computing. Elsewhere the handler runs in a daemon thread that is abandoned on timeout;
    `on_timeout` lets its later writes fail instead of landing on a finished attempt."""
    if threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer"):
        return _with_alarm(fn, seconds, on_timeout)
    return _with_thread(fn, seconds, on_timeout)


def _with_alarm(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None]) -> Any:
    def alarm(signum: int, frame: Any) -> None:
        on_timeout()
        raise JobTimeoutError(f"handler exceeded its timeout of {seconds:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _with_thread(fn: Callable[[], Any], seconds: float, on_timeout: Callable[[], None]) -> Any:
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
        raise JobTimeoutError(f"handler exceeded its timeout of {seconds:g} s")
    if "error" in outcome:
        raise outcome["error"]
    return outcome.get("result")
