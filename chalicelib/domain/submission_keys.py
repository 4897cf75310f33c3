"""A submission's `Idempotency-Key`: what a key may be, and the hash that tells a replay of the
first request from another request under the same key."""
from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Mapping

from chalicelib.domain.errors import InvalidRequestError

MAX_KEY_LENGTH = 255


def check_key(key: str) -> str:
    """`key` unchanged; raises InvalidRequestError unless it is 1 to MAX_KEY_LENGTH printable
    characters."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequestError(f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters")
    return key


def request_hash(request: Mapping[str, Any]) -> str:
    """SHA-256 of the request's canonical JSON (keys sorted, times as ISO 8601): equal for the same
    request however its JSON was laid out."""

    def plain(value: Any) -> Any:
        if isinstance(value, datetime):
            return value.isoformat()
        raise TypeError(f"{type(value).__name__} is not part of a job request")

    text = json.dumps(dict(request), sort_keys=True, separators=(",", ":"), default=plain)
    return hashlib.sha256(text.encode()).hexdigest()
