"""The worker's runtime: the progress reporter's one-shot `Timer`."""
from __future__ import annotations

from typing import Callable, Protocol


class Timer(Protocol):
    """A one-shot timer (threading.Timer): the progress reporter's deferred write."""

    def start(self) -> None: ...

    def cancel(self) -> None: ...


TimerFactory = Callable[[float, Callable[[], None]], Timer]
