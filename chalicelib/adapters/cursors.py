"""A listing's page cursor as clients carry it: JSON, base64url, opaque to them. Both job stores
write theirs here and read them back through `read_cursor`, which turns anything a client
could send (not base64, not JSON, nested a thousand deep, megabytes long) into one 400."""
from __future__ import annotations

import base64
import binascii
import json
from typing import Any, Callable

from chalicelib.domain.errors import InvalidRequestError

# A job store's cursor is a few keys of at most a few hundred bytes; anything far longer did
# not come from a page of ours (and is never parsed).
MAX_CURSOR_CHARS = 2048


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
