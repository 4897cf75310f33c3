"""Progress rules: percent clamped to 0-100, never decreasing within an attempt, and which
changes are worth an event."""
from __future__ import annotations

import json
import math
import numbers
from decimal import Decimal
from typing import Any, Optional

from chalicelib.defaults import (
    MAX_JSON_DEPTH,
    MAX_LABEL_CHARS,
    MAX_PROGRESS_DETAILS_BYTES,
    MAX_PROGRESS_MESSAGE_CHARS,
    MAX_PROGRESS_REPORT_BYTES,
    PROGRESS_SIGNIFICANT_JUMP,
)
from chalicelib.domain.errors import ProgressRejectedError
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, nested_deeper_than, non_text_key, too_deep_message
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.status import JobStatus
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate, is_unicode, unicode_text

MILESTONES = (0.0, 25.0, 50.0, 75.0, 100.0)


def clamp_percent(value: Any) -> float:
    """A finite number clamped to [0, 100] and rounded to 2 places; ProgressRejectedError
    otherwise (NaN, ±Infinity: a result of dividing by zero is no percent reached; a whole
    number too large for a float). Any real number counts: an int, a float, a Decimal (what
    boto3 reads a DynamoDB number as), a Fraction; text ("50") and a bool do not."""
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, Decimal)):
        raise ProgressRejectedError(f"progress percent must be a number, not {value!r:.100}")
    try:
        number = float(value)
    except OverflowError:  # repr of an int of thousands of digits would raise in turn
        size = f"a whole number of {value.bit_length():,} bits" if isinstance(value, int) else "a fraction"
        raise ProgressRejectedError(f"progress percent must be a finite number, not {size}, "
                                    "too large for a float") from None
    except ValueError:  # Decimal("sNaN") refuses to become a float
        raise ProgressRejectedError(f"progress percent must be a finite number, not {value!r:.100}") from None
    if not math.isfinite(number):
        raise ProgressRejectedError(f"progress percent must be a finite number, not {value!r}")
    return round(min(100.0, max(0.0, number)), 2)


def check_report(step: Optional[str], message: Optional[str], details: Optional[dict[str, Any]]) -> None:
    """Raises ProgressRejectedError for a report that cannot be stored as given: a step or
    message that is not text or too long, details that are not a JSON object (NaN and
    Infinity included), nested more than MAX_JSON_DEPTH levels or too large, any of the
    three holding a lone surrogate (no store could write it), and a message and details
    taking more than MAX_PROGRESS_REPORT_BYTES together as the record keeps them."""
    for name, text, limit in (("step", step, MAX_LABEL_CHARS), ("message", message, MAX_PROGRESS_MESSAGE_CHARS)):
        if text is not None and not isinstance(text, str):
            raise ProgressRejectedError(f"progress {name} must be text, not {type(text).__name__}")
        if text is not None and len(text) > limit:
            raise ProgressRejectedError(f"progress {name} is {len(text)} characters; at most {limit}")
        if text is not None and not is_unicode(text):
            raise ProgressRejectedError(f"progress {name} {NOT_UNICODE}")
    size = _details_bytes(details)
    message_bytes = 0 if message is None else len(message.encode())
    if message_bytes + size > MAX_PROGRESS_REPORT_BYTES:
        with_details = f" and its details {shown_number(size)} as JSON" if size else ""
        raise ProgressRejectedError(
            f"progress message is {shown_number(message_bytes)} bytes in UTF-8{with_details}; a report "
            f"takes at most {shown_number(MAX_PROGRESS_REPORT_BYTES)} bytes of its job's record (400 KB): "
            "send a shorter message")


def fitting_message(message: Optional[str], details: Optional[dict[str, Any]]) -> Optional[str]:
    """`message` cut, marked with "…", to what check_report takes beside `details` (details
    already taken once): MAX_PROGRESS_MESSAGE_CHARS characters, and MAX_PROGRESS_REPORT_BYTES
    with the details. For a report that is never refused (a failure's, fail_job's)."""
    if message is None:
        return None
    text = clip(unicode_text(message), MAX_PROGRESS_MESSAGE_CHARS)
    # Measured as _details_bytes does, without its checks: this report is never refused.
    room = MAX_PROGRESS_REPORT_BYTES - (0 if details is None else len(json.dumps(details, separators=(",", ":"))))
    encoded = text.encode()
    if len(encoded) <= room:
        return text
    # Cut in bytes, then back to whole characters: "…" itself takes 3 bytes in UTF-8.
    return encoded[:max(0, room - len("…".encode()))].decode(errors="ignore") + "…"


def _details_bytes(details: Optional[dict[str, Any]]) -> int:
    """The bytes `details` take on the record (0 for none); ProgressRejectedError for details
    check_report refuses."""
    if details is None:
        return 0
    if not isinstance(details, dict):
        raise ProgressRejectedError(f"progress details must be a JSON object, not {type(details).__name__}")
    if nested_deeper_than(details, MAX_JSON_DEPTH):  # no read of the job could serialize them
        raise ProgressRejectedError(too_deep_message("progress details object"))
    try:
        size = len(json.dumps(details, allow_nan=False, separators=(",", ":")).encode())
    except (TypeError, ValueError) as exc:
        raise ProgressRejectedError(f"progress details must be JSON: {exc}") from None
    if size > MAX_PROGRESS_DETAILS_BYTES:
        raise ProgressRejectedError(f"progress details are {shown_number(size)} bytes as JSON; "
                                    f"at most {shown_number(MAX_PROGRESS_DETAILS_BYTES)}")
    if holds_lone_surrogate(details):
        raise ProgressRejectedError(f"progress details {NOT_UNICODE}")
    key = non_text_key(details)
    if key is not None:  # json.dumps writes {1: ...} as {"1": ...}: it would not read back as given
        raise ProgressRejectedError(f"progress details must be a JSON object: its keys are text, not {key:.100}")
    return size


def check_not_decreasing(current: float, requested: float) -> None:
    if requested < current:
        raise _decrease_refusal(current, requested)


def _decrease_refusal(current: float, requested: float) -> ProgressRejectedError:
    return ProgressRejectedError(
        f"progress cannot decrease from {current:g} to {requested:g}",
        details={"current": current, "requested": requested},
    )


def progress_refusal(job_id: str, attempt: int, requested: float, current: Optional[Job]) -> ProgressRejectedError:
    """Why a store refused to record progress `requested` for `attempt` of `job_id`, from the job
    as stored when it did (None: there is none). Every JobStore adapter words it so: the job does
    not exist; the attempt is not running (`details`: the job's status and attempt); or the
    percent would decrease (`details`: current and requested)."""
    if current is None:
        return ProgressRejectedError(f"job {job_id} does not exist")
    if current.status != JobStatus.RUNNING or current.attempts != attempt:
        return ProgressRejectedError(
            f"attempt {attempt} of job {job_id} is not running (job is {current.status.value})",
            details={"status": current.status.value, "attempt": current.attempts},
        )
    return _decrease_refusal(current.progress.percent, requested)


def is_notable_change(previous: float, current: float) -> bool:
    """True when progress moving from `previous` to `current` deserves an event (seed 002's
    rule): it reaches a milestone (25/50/75/100) or moves by 10 points or more. The 0
    milestone is where every attempt starts: the `queued` and `running` transitions carry it,
    so a write that leaves progress at 0 (a cancel request, the reconciler's bookkeeping, a
    handler's "started" report) publishes nothing. Finer progress is not published either: no
    rule routes it anywhere (pollers read the job)."""
    if current <= previous:
        return False
    if round(current - previous, 2) >= PROGRESS_SIGNIFICANT_JUMP:  # percents have 2 places: 22.4 - 12.4 is 10
        return True
    return any(previous < m <= current for m in MILESTONES)
