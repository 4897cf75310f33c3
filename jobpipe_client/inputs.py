"""What the client refuses before sending anything: idempotency keys the API would not hold as
given, payloads too deep to encode or not JSON, job ids that would change a path or be split in a batch."""
from __future__ import annotations

import json
from typing import Any, Mapping

from jobpipe_client.errors import JobpipeClientError, JobpipeInputError
from jobpipe_client.transport import header_text

MAX_KEY_CHARS = 255  # the API's limit on an Idempotency-Key
# The API reads a body nested at most 100 levels (its MAX_JSON_DEPTH, docs/api.md), a submit's
# envelope being the first: a payload deeper than this is refused here rather than sent to
# come back 400 invalid_json. Well inside what JSON encoders (requests') recurse through.
MAX_PAYLOAD_DEPTH = 99


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


def check_payload(payload: dict[str, Any]) -> dict[str, Any]:
    """`payload` when it can be sent as JSON. JobpipeInputError when it nests deeper than
    MAX_PAYLOAD_DEPTH (encoding it would run out of recursion somewhere below the caller, as a
    RecursionError) or holds what JSON has no form for: NaN, Infinity, a set, any other object
    (requests would raise its own InvalidJSONError, or a TypeError), or a lone surrogate (text
    read with surrogateescape: the API refuses it, 400 invalid_json)."""
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


def path_id(job_id: str) -> str:
    """Ids go into the path as they are; one that would change the path (or cannot be part of
    one: a control character, a lone surrogate from undecodable bytes) is refused here."""
    job_id = str(job_id).strip()
    if not job_id.isprintable() or not job_id or any(c in job_id for c in "/?#% ") or job_id in (".", ".."):
        raise JobpipeClientError(400, "invalid_job_id", f"{job_id!r} is not a job id")
    return job_id


def batch_id(job_id: Any) -> str:
    """The id as the API answers it in a batch: it trims ids and splits them at commas, so a
    wait keyed by another spelling would never see its job. An id the API would split or drop
    (empty, or holding a comma) is refused here."""
    text = str(job_id).strip()
    if not text or "," in text:
        raise JobpipeClientError(400, "invalid_job_id", f"{text!r} is not a job id")
    return text
