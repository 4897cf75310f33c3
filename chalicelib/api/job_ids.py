"""One job-id parser for every batch endpoint, tolerant of what polling clients send.

Accepted: `{"job_ids": [...]}`, `{"jobs": [...]}`, `{"ids": [...]}`, a bare list, a string,
comma-separated strings, a dict's values when none of those keys is present, numbers, and the
`job_id` / `job_ids` query arguments (each value of a repeated one) when the body is empty, not
JSON, or names no id. The body is read as every route reads one. Ids are trimmed,
de-duplicated, and kept in request order.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional, Union

from chalicelib.api.errors import InvalidJsonError
from chalicelib.api.json_body import body_text, parse_json
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.text import NOT_UNICODE, is_unicode

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
    if not is_unicode(job_id):
        raise InvalidRequestError(f"a job id {NOT_UNICODE}",
                                  details={"job_id": job_id.encode(errors="backslashreplace").decode()[:128]})
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


def extract_job_ids(
    body: Union[bytes, str, None], query: Optional[Mapping[str, str]] = None
) -> list[str]:
    """Job ids from a request body, read as every route reads one (chalicelib/api/json_body.py),
    falling back to the query arguments (every value of a repeated one) when the body is empty,
    not JSON, or names no id (`[]`, `{}`, `{"job_ids": []}`). Raises InvalidJsonError when
    neither carries ids and the body is not JSON."""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else (body or b"")
    query_ids = normalize_job_ids([_query_values(query, k) for k in _QUERY_KEYS])
    if not raw.strip():
        return query_ids
    try:
        payload = parse_json(body_text(raw))
    except InvalidJsonError:
        if query_ids:
            return query_ids
        raise
    try:
        if isinstance(payload, Mapping):
            named = [normalize_job_ids(payload[key]) for key in _ID_KEYS if key in payload]
            if named:
                # The first key that names any, as rq-engine reads `job_ids or jobs or ids`: an empty
                # or null `job_ids` beside `ids` is not the request's answer. Every key empty: the
                # query's, as for any body naming none (rq-engine reads the query then too).
                ids = next((ids for ids in named if ids), [])
            else:
                ids = normalize_job_ids(list(payload.values()))
        else:
            ids = normalize_job_ids(payload)
    except RecursionError:
        raise InvalidJsonError("request body is nested too deeply") from None
    return ids or query_ids


def _query_values(query: Optional[Mapping[str, str]], key: str) -> list[str]:
    """Every value of `key` (Chalice's MultiDict keeps each of a repeated argument)."""
    if not query or key not in query:
        return []
    getlist = getattr(query, "getlist", None)
    return list(getlist(key)) if getlist is not None else [query[key]]
