"""A listing's page cursor as clients carry it: JSON, base64url, opaque to them. Both job stores
and both artifact stores write theirs here and read them back through `read_cursor`, which
turns anything a client could send (not base64, not JSON, nested a thousand deep, megabytes
long) into one 400."""
from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any, Callable

from chalicelib.defaults import MAX_CURSOR_CHARS
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import is_plausible_job_id


# A job's creation time as records hold it (domain.job.isoformat: 2026-01-31T09:00:00.000Z),
# read leniently (no fraction, an offset), never more than a time.
_CREATED_AT = re.compile(r"\d{4}-\d{2}-\d{2}T[\d:.]{5,20}(?:Z|[+-]\d{2}:\d{2})")


def check_position(created_at: Any, job_id: Any) -> tuple[str, str]:
    """(created_at, job_id) when they are a position a job of a listing could hold: a time as
    records hold it and a plausible job id. Raises ValueError otherwise (a cursor made by hand:
    DynamoDB refuses a start key past its key limits, or not UTF-8, as a malformed request)."""
    if not (isinstance(created_at, str) and _CREATED_AT.fullmatch(created_at)):
        raise ValueError("cursor names no creation time")
    if not (isinstance(job_id, str) and is_plausible_job_id(job_id)):
        raise ValueError("cursor names no job id")
    return created_at, job_id


def write_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(value, separators=(",", ":")).encode()).decode()


def read_cursor(cursor: str, shape: Callable[[Any], Any]) -> Any:
    """`shape(value)` of the cursor's JSON value: it returns what the store needs and raises
    ValueError (or TypeError) for a value that is not one of its cursors for this listing.
    Every refusal is InvalidRequestError with the same message."""
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError(f"cursor is longer than {MAX_CURSOR_CHARS} characters")
        return shape(json.loads(base64.urlsafe_b64decode(cursor.encode())))
    except (ValueError, TypeError, RecursionError, binascii.Error, UnicodeError) as exc:
        raise InvalidRequestError(
            "cursor is not valid for this listing; start again without it",
            details={"cursor": cursor[:200]},
        ) from exc
