"""A submission's `Idempotency-Key`: what a key may be, and the hash that tells a replay of the
first request from another request under the same key."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime, timezone
from typing import Any, Mapping

from chalicelib.defaults import MAX_IDEMPOTENCY_KEY_CHARS
from chalicelib.domain.errors import InvalidRequestError


def check_key(key: str) -> str:
    """`key` unchanged; raises InvalidRequestError unless it is 1 to MAX_IDEMPOTENCY_KEY_CHARS printable
    ASCII characters. A header's other bytes reach the API read as ISO-8859-1 or as UTF-8
    depending on the hop, so the same key could be held as two (or refused as control
    characters): the client sends ASCII only, and so must every caller."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY_CHARS or not (key.isascii() and key.isprintable()):
        raise InvalidRequestError(f"Idempotency-Key must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} printable ASCII characters")
    return key


def request_hash(request: Mapping[str, Any]) -> str:
    """SHA-256 of the request's canonical JSON (keys sorted, times as the instant they name, ISO
    8601 in UTC): equal for the same request however its JSON was laid out and whatever UTC
    offset a time was written at."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            try:
                return value.astimezone(timezone.utc).isoformat() if value.tzinfo is not None else value.isoformat()
            except OverflowError:  # no UTC date (the year 1 at +01:00): as written
                return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not part of a job request")

    text = json.dumps(dict(request), sort_keys=True, separators=(",", ":"), default=plain)
    return hashlib.sha256(text.encode()).hexdigest()
