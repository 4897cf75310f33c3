"""A request body read as JSON, the same way by every route: only what any JSON parser would
read back as the same value is accepted, since what the API stores it serves again (to the
dashboard's JSON.parse, the ERP, a Go worker, a DynamoDB string)."""
from __future__ import annotations

import json
import math
import re
from typing import Any

from chalicelib.api.errors import InvalidJsonError

# A lone surrogate escape (`"\ud800"`) is valid JSON but no UTF-8 string: nothing could store,
# log or hash it. Only bodies holding such an escape are checked whole.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _finite(text: str) -> float:
    # Python reads 1e400 as inf and writes it back as `Infinity`, which is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is too large to be a finite double")
    return value


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Parsers disagree on which of two equal keys wins (Python keeps the last, others the first).
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise ValueError(f"key {key[:100]!r} is given more than once in one object")
            seen.add(key)
    return value


def read_json(body: bytes) -> Any:
    """The JSON value of `body` (UTF-8, or UTF-16/32 as RFC 4627 let clients send it, with or
    without a byte order mark). Raises InvalidJsonError for an empty body, one that is not
    JSON or not in its encoding (a surrogate written as raw bytes included), an object giving a
    key twice, NaN, Infinity or a number too large for a double, a lone surrogate escape, or
    nesting too deep to parse."""
    if not body.strip():
        raise InvalidJsonError("request body is empty; send a JSON value")
    try:
        # Strict: Python's own bytes decoding would let UTF-8-encoded surrogates through.
        text = body.decode(json.detect_encoding(body))
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJsonError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # the parser recurses once per nesting level
        raise InvalidJsonError("request body is nested too deeply") from None
    if _SURROGATE_ESCAPE.search(text):
        try:
            json.dumps(value, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise InvalidJsonError("request body holds a lone surrogate escape (\\ud800-\\udfff), "
                                   "which is no Unicode character") from None
    return value
