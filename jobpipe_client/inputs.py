"""What the client refuses before sending anything: settings it cannot send with (a base URL
that is not http(s) with a host, a token that cannot travel in a header, a timeout that is no
number of seconds), idempotency keys the API would not hold as given, payloads too deep to
encode or not JSON, job ids that would change a path or be split in a batch."""
from __future__ import annotations

import json
import re
from datetime import datetime
from typing import Any, Mapping, Optional
from urllib.parse import urlsplit, urlunsplit

from jobpipe_client.answers import is_finite_number, is_number
from jobpipe_client.errors import ClientRefusalError, JobpipeInputError

# Longer timeouts overflow the socket layer's time_t (about 10**10 s); a day is far beyond any
# real request.
MAX_TIMEOUT_S = 86400.0
MAX_KEY_CHARS = 255  # the API's limit on an Idempotency-Key
# The API reads a body nested at most 100 levels (its MAX_JSON_DEPTH, docs/api.md), a submit's
# envelope being the first: a payload deeper than this is refused here rather than sent to
# come back 400 invalid_json. Well inside what JSON encoders (requests') recurse through.
MAX_PAYLOAD_DEPTH = 99
_LOGIN = re.compile(r"(?<=//)[^/?#]*@")  # a URL's `user:password@`, never quoted


def check_idempotency_key(key: str) -> str:
    """`key` when the API will hold it as given: 1 to MAX_KEY_CHARS printable ASCII characters,
    no space at either end (HTTP drops those, so the API would hold another key, and requests
    refuses a leading one). JobpipeInputError otherwise, never quoting the key."""
    try:
        header_text(key, "the idempotency key")
    except ValueError as exc:
        raise JobpipeInputError(str(exc)) from None
    problem = ("is empty" if not key
               else f"is longer than {MAX_KEY_CHARS} characters" if len(key) > MAX_KEY_CHARS
               else "starts or ends with a space" if key != key.strip(" ")
               else None)
    if problem:
        raise JobpipeInputError(f"the idempotency key {problem}: it must be 1 to {MAX_KEY_CHARS} printable "
                                "ASCII characters, with no space at either end")
    return key


def check_payload(payload: Optional[Mapping[str, Any]]) -> dict[str, Any]:
    """`payload` (None: `{}`) as the dict to send, when it can be sent as JSON. JobpipeInputError
    when it is no mapping (a list is no JSON object: `[]` was sent as `{}`), when it nests deeper than
    MAX_PAYLOAD_DEPTH (encoding it would run out of recursion somewhere below the caller, as a
    RecursionError) or holds what JSON has no form for: NaN, Infinity, a set, any other object
    (requests would raise its own InvalidJSONError, or a TypeError), or a lone surrogate (text
    read with surrogateescape: the API refuses it, 400 invalid_json)."""
    if payload is None:
        return {}
    if not isinstance(payload, Mapping):
        raise JobpipeInputError(f"the payload must be a mapping (a JSON object), not {payload.__class__.__name__}")
    payload = dict(payload)
    if nested_deeper_than(payload, MAX_PAYLOAD_DEPTH):
        raise JobpipeInputError(f"the payload is nested more than {MAX_PAYLOAD_DEPTH} levels deep")
    try:
        json.dumps(payload, allow_nan=False, ensure_ascii=False).encode()  # as requests encodes it, in UTF-8
    except UnicodeEncodeError:
        raise JobpipeInputError("the payload holds a lone surrogate (\\ud800-\\udfff: bytes that were not "
                                "UTF-8), which is no Unicode character") from None
    except (TypeError, ValueError) as exc:
        raise JobpipeInputError(f"the payload is not JSON: {exc}") from None
    return payload


def query_text(value: Optional[str], what: str) -> None:
    """JobpipeInputError when `value` cannot be sent in a URL's query as UTF-8: it holds a lone
    surrogate (an argument read from bytes that were not UTF-8), where requests would raise
    UnicodeEncodeError."""
    try:
        if isinstance(value, str):
            value.encode("utf-8")
    except UnicodeEncodeError:
        raise JobpipeInputError(f"the {what} to list by holds a lone surrogate (\\ud800-\\udfff: bytes that "
                                f"were not UTF-8), which is no Unicode character: {value!r}") from None


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when lists and mappings in `value` nest more than `limit` levels. It walks with its
    own stack, not recursion (the point is a value too deep to recurse through), and stops past
    `limit`, so a value that contains itself ends too."""
    pending = [(value, 1)]
    while pending:
        item, depth = pending.pop()
        children = item.values() if isinstance(item, Mapping) else item if isinstance(item, (list, tuple)) else None
        if children is None:
            continue
        if depth > limit:
            return True
        pending.extend((child, depth + 1) for child in children)
    return False


def _id_text(job_id: Any) -> str:
    """A job id is text: None (a job without an id) or a number is refused, never sent as
    `"None"` to come back job_not_found."""
    if not isinstance(job_id, str):
        raise ClientRefusalError("invalid_job_id", f"a job id is text, not {type(job_id).__name__}")
    return job_id


def check_start(delay_seconds: Any, run_at: Any) -> int:
    """The delay as the API takes it, whole seconds (`timedelta.total_seconds()`'s 21600.0 is
    21600). JobpipeInputError, before any request, for a start the API cannot be sent: a delay
    that is no finite number of seconds (NaN and infinity are no JSON) or not a whole one (the
    API refuses 1.5, and 21600.0 sent as it is), a `run_at` that is neither a datetime nor text
    (a date has no time of day)."""
    if not is_finite_number(delay_seconds):
        raise JobpipeInputError(f"delay_seconds must be a number of seconds, not {delay_seconds!r}")
    if delay_seconds != int(delay_seconds):
        raise JobpipeInputError(f"delay_seconds must be a whole number of seconds, not {delay_seconds!r}")
    if run_at is not None and not isinstance(run_at, (str, datetime)):
        raise JobpipeInputError(f"run_at must be a datetime with a zone or ISO 8601 text, not {type(run_at).__name__}")
    return int(delay_seconds)


def path_id(job_id: str) -> str:
    """Ids go into the path as they are; one that would change the path (or cannot be part of
    one: a control character, a lone surrogate from undecodable bytes) is refused here."""
    job_id = _id_text(job_id).strip()
    if not job_id.isprintable() or not job_id or any(c in job_id for c in "/?#% ") or job_id in (".", ".."):
        raise ClientRefusalError("invalid_job_id", f"{job_id!r} is not a job id")
    return job_id


def batch_id(job_id: Any) -> str:
    """The id as the API answers it in a batch: it trims ids and splits them at commas, so a
    wait keyed by another spelling would never see its job. An id the API would split or drop
    (empty, or holding a comma) is refused here."""
    text = _id_text(job_id).strip()
    if not text or "," in text:
        raise ClientRefusalError("invalid_job_id", f"{text!r} is not a job id")
    return text


def api_url(text: str) -> str:
    """`text` as a base URL: stripped, scheme in lower case, no trailing slash. ValueError unless
    it is http(s) with a host (and a port from 1 to 65535, when given), and nothing after the
    path (a query or fragment would end up in front of every route), and no login (`user:password@`:
    the API reads the token alone, and every failure line would quote the password). A refusal
    never quotes a login."""
    shown = text.strip()
    quoted = repr(_LOGIN.sub("…@", shown, count=1))
    try:
        parts = urlsplit(shown.rstrip("/"))
        # ValueError when not a number from 0 to 65535; a login is refused first, below.
        port = parts.port if parts.username is None else None
    except ValueError as exc:
        raise ValueError(f"{quoted} is not a valid URL ({exc})") from None
    if parts.scheme.lower() not in ("http", "https"):
        raise ValueError(f"{quoted} is not an http(s) URL")
    problem = ("it holds a login (user:password@): the API reads the token alone, so give the URL without it"
               if parts.username is not None
               else "it has no host" if not parts.hostname
               else "it holds a space or control character" if any(c.isspace() or not c.isprintable() for c in shown)
               else "port 0 is no port" if port == 0
               else "a base URL has no query or fragment" if parts.query or parts.fragment
               else _host_problem(parts.hostname, shown))
    if problem:
        raise ValueError(f"{quoted} is not a valid URL: {problem}")
    return urlunsplit(parts._replace(scheme=parts.scheme.lower()))


def _host_problem(host: str, url: str) -> Optional[str]:
    """Why requests or the socket layer would refuse `url` (with `host`) when the first request
    is made, or None. Refused here, it is a configuration error; refused then, it would look like
    a request that failed on the way (urllib3's LocationParseError is not even wrapped)."""
    try:
        host.encode("idna")  # what the socket layer does before it connects
    except UnicodeError:
        return "a label of its host is empty or longer than 63 characters"
    import requests  # here: the CLI's parser reads this module, and `jobpipe --help` needs no requests

    try:
        requests.PreparedRequest().prepare_url(url, None)
    except requests.RequestException as exc:
        return " ".join(str(exc).split())
    return None


def header_text(value: str, what: str) -> str:
    """`value` when it can travel in an HTTP header as it is: printable ASCII, so no line break
    or other control character. ValueError naming `what` otherwise (never the value: it may be
    a secret)."""
    if not isinstance(value, str):
        raise ValueError(f"{what} must be text, not {type(value).__name__}")
    if not (value.isascii() and value.isprintable()):
        raise ValueError(f"{what} must be printable ASCII (no line breaks or other control characters)")
    return value


def timeout_seconds(value: float) -> float:
    """`value` when it is a number of seconds above 0 and up to MAX_TIMEOUT_S; ValueError otherwise."""
    if not is_number(value) or not 0 < value <= MAX_TIMEOUT_S:  # NaN too
        raise ValueError(f"a request timeout must be above 0 and at most {MAX_TIMEOUT_S:g} s, not {value!r}")
    return float(value)
