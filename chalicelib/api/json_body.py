"""A request body read as JSON, the same way by every route: only what any JSON parser would
read back as the same value is accepted, since what the API stores it serves again (to the
dashboard's JSON.parse, the ERP, a Go worker, a DynamoDB string)."""
from __future__ import annotations

import json
import math
import re
import sys
from typing import Any

from chalicelib.api.errors import InvalidJsonError
from chalicelib.defaults import MAX_JSON_DEPTH
from chalicelib.domain.job import nested_deeper_than, too_deep_message
from chalicelib.domain.text import NOT_UNICODE, holds_lone_surrogate

# A lone surrogate escape (`"\ud800"`) is valid JSON but no UTF-8 string: nothing could store,
# log or hash it. Only bodies holding such an escape are checked whole.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _too_large(text: str) -> ValueError:
    return ValueError(f"the number {text[:40]}{'…' if len(text) > 40 else ''} is too large to be a finite double")


def _finite(text: str) -> float:
    # Python reads 1e400 as inf and writes it back as `Infinity`, which is not JSON.
    value = float(text)
    if not math.isfinite(value):
        raise _too_large(text)
    return value


# The digits of the largest finite double (1.79e308): an integer with more is past any double.
# Only bodies with a run of that many digits have their integers checked. The look starts only
# where a run starts, so it reads each digit once: from every digit of a run it would read the
# rest of the run again, 150 times the body's length for runs just short of the bound.
_DOUBLE_DIGITS = len(str(int(sys.float_info.max)))
_LONG_DIGITS = re.compile(r"(?<!\d)\d{%d}" % _DOUBLE_DIGITS)


def _bounded_int(text: str) -> int:
    # Python keeps an integer of any length exactly; every parser that reads numbers as doubles
    # (JavaScript's JSON.parse) reads one past the largest double as Infinity, as 1e400 is.
    digits = len(text) - text.startswith("-")
    if digits > _DOUBLE_DIGITS or (digits == _DOUBLE_DIGITS and abs(int(text)) > sys.float_info.max):
        raise _too_large(text)
    return int(text)


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


def body_text(body: bytes) -> str:
    """`body` decoded in its JSON encoding (UTF-8, or UTF-16/32 as RFC 4627 let clients send it,
    a byte order mark skipped). Raises InvalidJsonError when it is not in that encoding (a
    surrogate written as raw UTF-8 bytes included)."""
    try:
        # Strict: Python's own decoding of a JSON body would let UTF-8-encoded surrogates through.
        return body.decode(json.detect_encoding(body))
    except UnicodeDecodeError as exc:
        raise InvalidJsonError(f"request body is not valid JSON: {exc}") from None


_TOO_DEEP = too_deep_message("request body")


def parse_json(text: str) -> Any:
    """The JSON value of `text`. Raises InvalidJsonError for text that is not JSON, an object
    giving a key twice, NaN, Infinity or a number too large for a double (written as an
    integer too), or arrays and objects nested more than MAX_JSON_DEPTH levels."""
    try:
        integers = {"parse_int": _bounded_int} if _LONG_DIGITS.search(text) else {}
        value = json.loads(text, parse_constant=_no_constant, parse_float=_finite, object_pairs_hook=_unique_keys,
                           **integers)
    except ValueError as exc:
        raise InvalidJsonError(f"request body is not valid JSON: {exc}") from None
    except RecursionError:  # the parser recurses once per nesting level, far past the limit
        raise InvalidJsonError(_TOO_DEEP) from None
    # Only a body with more brackets than the limit can pass it: most are never walked.
    if text.count("[") + text.count("{") > MAX_JSON_DEPTH and nested_deeper_than(value, MAX_JSON_DEPTH):
        raise InvalidJsonError(_TOO_DEEP)
    return value


def read_json(body: bytes) -> Any:
    """The JSON value of `body` (`body_text`, then `parse_json`). Raises InvalidJsonError for
    an empty body, for whatever those two refuse, and for a lone surrogate escape."""
    if not body.strip():
        raise InvalidJsonError("request body is empty; send a JSON value")
    text = body_text(body)
    value = parse_json(text)
    if _SURROGATE_ESCAPE.search(text) and holds_lone_surrogate(value):  # a pair's escapes are one character
        raise InvalidJsonError(f"request body {NOT_UNICODE}, written as an escape")
    return value
