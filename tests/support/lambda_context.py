"""A Lambda context for the code that reads only what is left of its invocation."""
from __future__ import annotations


class TimeLeft:
    """A Lambda context with `millis` left, however late it is asked."""

    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis
