"""One job-id parser for every batch endpoint, tolerant of what polling clients send.

Accepted: `{"job_ids": [...]}`, `{"jobs": [...]}`, `{"ids": [...]}`, a bare list, a string,
comma-separated strings, a dict's values when none of those keys is present, numbers, and the
`job_id` / `job_ids` query arguments (each value of a repeated one) when the body is empty or
not JSON. Ids are trimmed, de-duplicated, and kept in request order.
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Mapping, Optional, Union

from chalicelib.api.errors import InvalidJsonError
from chalicelib.domain.errors import InvalidRequestError

_ID_KEYS = ("job_ids", "jobs", "ids")
_QUERY_KEYS = ("job_ids", "job_id")
def normalize_job_ids(value: Any) -> list[str]:
    """Flatten strings, comma-separated strings, numbers, lists and dicts into ordered unique ids."""
    ordered: dict[str, None] = {}
    for job_id in _flatten(value):
        job_id = job_id.strip()
        if job_id:
            ordered.setdefault(_text(job_id), None)
    return list(ordered)


def _text(job_id: str) -> str:
    """`job_id` if it is Unicode text; JSON can carry a lone surrogate (`"\\ud800"`), which no
    store, log or tag can encode."""
    try:
        job_id.encode()
    except UnicodeEncodeError:
        raise InvalidRequestError("a job id holds a lone surrogate escape (\\ud800-\\udfff)",
                                  details={"job_id": job_id.encode(errors="backslashreplace").decode()[:128]}) from None
    return job_id


def _flatten(value: Any) -> Iterable[str]:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str):
        yield from value.split(",")
    elif isinstance(value, int):
        yield str(value)
    elif isinstance(value, float):
        yield str(int(value)) if value.is_integer() else str(value)
    elif isinstance(value, Mapping):
        for key in ("id", "job_id"):
            if key in value:
                yield from _flatten(value[key])
                return
        for key in _ID_KEYS:
            if key in value:
                yield from _flatten(value[key])
                return
        for item in value.values():
            yield from _flatten(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _flatten(item)


def _query_values(query: Mapping[str, str], key: str) -> list[str]:
    """Every value of a query argument: a repeated one (`?job_id=a&job_id=b`, how forms and
    URLSearchParams send lists) is a list of ids, not its last value."""
    if key not in query:
        return []  # Chalice's MultiDict.getlist raises KeyError for an absent key
    getlist = getattr(query, "getlist", None)
    if getlist is not None:
        return list(getlist(key))
    value = query[key]
    return [value] if value else []


def extract_job_ids(
    body: Union[bytes, str, None], query: Optional[Mapping[str, str]] = None
) -> list[str]:
    """Job ids from a request body, falling back to query arguments when the body is empty or
    not JSON. Raises InvalidJsonError when neither carries ids and the body is not JSON."""
    text = body.decode("utf-8", errors="replace") if isinstance(body, bytes) else (body or "")
    query_ids = normalize_job_ids([_query_values(query, k) for k in _QUERY_KEYS] if query else [])
    if not text.strip():
        return query_ids
    try:
        payload = json.loads(text)
    except ValueError:
        if query_ids:
            return query_ids
        raise InvalidJsonError("request body is not valid JSON") from None
    except RecursionError:  # the parser recurses once per nesting level
        raise InvalidJsonError("request body is nested too deeply") from None
    try:
        if isinstance(payload, Mapping):
            for key in _ID_KEYS:
                if key in payload:
                    return normalize_job_ids(payload[key])
            ids = normalize_job_ids(list(payload.values()))
        else:
            ids = normalize_job_ids(payload)
    except RecursionError:
        raise InvalidJsonError("request body is nested too deeply") from None
    return ids or query_ids
