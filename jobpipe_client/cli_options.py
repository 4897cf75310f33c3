"""What the `jobpipe` command line accepts: each option's parser. A refusal is one line: an
argparse.ArgumentTypeError (argparse names the option) or, for the payload, a UsageError."""
from __future__ import annotations

import argparse
import codecs
import json
import math
import re
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from jobpipe_client.answers import finite_float, not_json_constant
from jobpipe_client.inputs import MAX_PAYLOAD_DEPTH, header_text, nested_deeper_than, timeout_seconds


class UsageError(Exception):
    """Input the CLI refuses before calling the API."""


# The most a --payload @FILE (or @-) is read of. The API takes a request of a few MiB: a file
# this large cannot be a payload it takes, however much of it is indentation, and a file with no
# end (`@/dev/zero`, a pipe that never closes) is refused at this size instead of read for ever.
MAX_PAYLOAD_FILE_BYTES = 64 * 1024 * 1024


def parse_payload(text: str) -> dict[str, Any]:
    """The --payload value (JSON, or @file holding JSON as UTF-8, with or without a leading byte
    order mark; `@-` reads it from standard input, as curl does) as an object; UsageError
    otherwise."""
    if text == "@":  # `@"$FILE"` with FILE unset: reading "" would read the working directory
        raise UsageError("--payload: '@' names no file: give @FILE, or @- to read standard input")
    if text.startswith("@"):
        source = "standard input" if text == "@-" else f"payload file {text[1:]!r}"
        if text == "@-" and sys.stdin is None:  # closed (`<&-`): Python has no sys.stdin
            raise UsageError("--payload @-: standard input is closed; give the payload on it, or as @FILE")
        try:
            data = _read_bounded(sys.stdin.buffer) if text == "@-" else _read_file_bounded(Path(text[1:]))
        except OSError as exc:
            raise UsageError(f"cannot read {source}: {exc.strerror}") from None
        if len(data) > MAX_PAYLOAD_FILE_BYTES:
            raise UsageError(f"--payload: {source} holds more than {MAX_PAYLOAD_FILE_BYTES // (1024 * 1024)} MiB: "
                             "more than any request the API takes")
        # Windows editors save UTF-8 with a byte order mark, which json.loads refuses.
        bom = len(codecs.BOM_UTF8) if data.startswith(codecs.BOM_UTF8) else 0
        try:
            text = data[bom:].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UsageError(f"payload file {text[1:]!r} is not UTF-8 text (byte {bom + exc.start})") from None
        if not text.strip():  # nothing piped, an empty file: json.loads would say "Expecting value"
            raise UsageError(f"--payload: {source} is empty; give a JSON object, e.g. '{{\"steps\": 10}}'")
    else:
        text = text.removeprefix("\ufeff")  # `--payload "$(cat file)"` keeps the file's mark
    try:
        payload = json.loads(text, parse_constant=not_json_constant, parse_float=finite_float,
                             object_pairs_hook=_one_value_per_key)
    except ValueError as exc:
        raise UsageError(f"--payload is not valid JSON: {exc}") from None
    except RecursionError:
        raise UsageError("--payload is nested too deeply") from None
    if not isinstance(payload, dict):
        raise UsageError("--payload must be a JSON object, e.g. '{\"steps\": 10}'")
    # json.loads took it, but sending it means encoding it again, deeper in the stack.
    if nested_deeper_than(payload, MAX_PAYLOAD_DEPTH):
        raise UsageError(f"--payload is nested too deeply (more than {MAX_PAYLOAD_DEPTH} levels)")
    return payload


def _read_bounded(stream: Any) -> bytes:
    """What `stream` holds, up to one byte past MAX_PAYLOAD_FILE_BYTES (so a larger one shows)."""
    return stream.read(MAX_PAYLOAD_FILE_BYTES + 1)


def _read_file_bounded(path: Path) -> bytes:
    with path.open("rb") as file:
        return _read_bounded(file)


def _one_value_per_key(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object as JSON reads it, refusing a key given twice: json.loads would keep the last
    value and send only that, where the API refuses such a body (parsers differ on which wins),
    so the payload the user wrote is not silently another."""
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:
            raise ValueError(f"key {key[:100]!r} is given more than once in one object")
        obj[key] = value
    return obj


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
MAX_NUMBER_DIGITS = 12  # more than any delay or listing takes; a longer number is refused, not parsed
QUOTED_ARGUMENT_CHARS = 40


def parse_delay(text: str) -> int:
    """`90`, `90s`, `15m`, `6h`, `3d` -> seconds (argparse reports a refusal in one line)."""
    value = text.strip().lower()
    unit = _UNITS.get(value[-1:], None)
    number = value[:-1] if unit else value
    if not (number.isascii() and number.isdigit()):
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a duration: give seconds or a number with s, m, h or d")
    digits = number.lstrip("0") or "0"  # int() counts leading zeros against its 4,300 digits too
    if len(digits) > MAX_NUMBER_DIGITS:  # the API takes up to 365 days
        raise argparse.ArgumentTypeError(f"{quoted(text)} is longer than any start the API takes (up to 365 days)")
    return int(digits) * (unit or 1)


def parse_limit(text: str) -> int:
    """--limit: a whole number, 1 or more (at most MAX_NUMBER_DIGITS digits)."""
    digits = text.strip().lstrip("0")  # int() counts leading zeros against its 4,300 digits too
    if not (digits.isascii() and digits.isdigit() and len(digits) <= MAX_NUMBER_DIGITS):  # "" is 0
        raise argparse.ArgumentTypeError(f"{quoted(text)} is not a number of jobs from 1 to {10 ** MAX_NUMBER_DIGITS - 1}")
    return int(digits)


def quoted(text: str) -> str:
    """`text` as a refusal names it: repr, cut to QUOTED_ARGUMENT_CHARS (a pasted file is no name)."""
    return repr(text) if len(text) <= QUOTED_ARGUMENT_CHARS else repr(text[:QUOTED_ARGUMENT_CHARS]) + "…"


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def parse_request_timeout(text: str) -> float:
    """--request-timeout: seconds above 0, up to a day (a request has to end: no nan or inf)."""
    try:
        return timeout_seconds(_seconds(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_wait_timeout(text: str) -> float:
    """--timeout: seconds, 0 or more, finite (a wait for nan seconds would never run out)."""
    seconds = _seconds(text)
    if not 0 <= seconds < math.inf:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds, 0 or more")
    return seconds


def parse_idempotency_key(text: str) -> str:
    """--idempotency-key: text that can go in a header as it is. The client checks the rest (not
    empty, no space at either end, at most 255 characters) before sending."""
    try:
        return header_text(text, "the idempotency key")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_run_at(text: str) -> str:
    """ISO 8601 with a zone, passed on as given (the API checks the range)."""
    try:
        moment = datetime.fromisoformat(re.sub(r"[zZ]$", "+00:00", text.strip()))  # RFC 3339 allows "z"
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO 8601 time (e.g. 2027-01-31T09:00:00Z)") from None
    if moment.tzinfo is None:
        raise argparse.ArgumentTypeError(f"{text!r} needs a zone, e.g. 2027-01-31T09:00:00Z or +01:00")
    return moment.isoformat()
