"""A store's clock a test moves by hand: `now` from the wall clock at its making (or `start`),
moved only by `advance`."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Optional


class SteppedClock:
    def __init__(self, start: Optional[datetime] = None) -> None:
        self.now = start or datetime.now(timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
