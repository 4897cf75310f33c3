"""Progress rules: percent clamped to 0-100, never decreasing within an attempt, and which
changes are worth an event."""
from __future__ import annotations

import math
from typing import Any

from chalicelib.domain.errors import ProgressRejectedError

MILESTONES = (0.0, 25.0, 50.0, 75.0, 100.0)
SIGNIFICANT_JUMP = 10.0


def clamp_percent(value: Any) -> float:
    """A number clamped to [0, 100] and rounded to 2 places; ProgressRejectedError otherwise."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ProgressRejectedError(f"progress percent must be a number, not {value!r}")
    return round(min(100.0, max(0.0, float(value))), 2)


def check_not_decreasing(current: float, requested: float) -> None:
    if requested < current:
        raise ProgressRejectedError(
            f"progress cannot decrease from {current:g} to {requested:g}",
            details={"current": current, "requested": requested},
        )


def is_notable_change(previous: float, current: float) -> bool:
    """True when progress moving from `previous` to `current` deserves an event (seed 002's
    rule): it reaches a milestone (25/50/75/100) or moves by 10 points or more. The 0
    milestone is where every attempt starts: the `queued` and `running` transitions carry it,
    so a write that leaves progress at 0 (a cancel request, the reconciler's bookkeeping, a
    handler's "started" report) publishes nothing. Finer progress is not published either: no
    rule routes it anywhere (pollers read the job)."""
    if current <= previous:
        return False
    if current - previous >= SIGNIFICANT_JUMP:
        return True
    return any(previous < m <= current for m in MILESTONES)
