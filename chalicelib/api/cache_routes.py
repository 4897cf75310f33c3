"""Scope caches over HTTP: store a JSON value, read it until a completed job invalidates it."""
from __future__ import annotations

import json
import re
from typing import Any

from chalice import Blueprint

from chalicelib.api.errors import PayloadTooLargeError, json_response
from chalicelib.api.http import Call
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.defaults import MAX_CACHE_VALUE_BYTES
from chalicelib.domain.caches import check_name
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.job import isoformat, utcnow
from chalicelib.domain.numbers import shown_number

cache_api = Blueprint(__name__)


route = router(cache_api)


# A generation as a miss reports it: ASCII digits, bare or as an ETag's quoted string. Not
# int()'s reading, which takes "1_0" as 10, "+3", " 3 " and digits of other scripts.
GENERATION = re.compile(r'([0-9]{1,30})|"([0-9]{1,30})"')


def _generation(header: Any) -> Any:
    if header is None:
        return None
    matched = GENERATION.fullmatch(str(header))
    if matched is None:  # generations count up from 0 and fit a DynamoDB number (38 digits)
        raise InvalidRequestError("If-Match must be the generation number a miss reported")
    return int(matched.group(1) or matched.group(2))


@route("/cache/{scope}/{namespace}", methods=["PUT"], query=())
def put_cache(call: Call, scope: str, namespace: str) -> Any:
    check_name("scope", scope)
    check_name("namespace", namespace)
    value = call.json()
    size = len(json.dumps(value, separators=(",", ":")))  # as the store writes it
    if size > MAX_CACHE_VALUE_BYTES:
        raise PayloadTooLargeError(
            f"a cached value's JSON may take {shown_number(MAX_CACHE_VALUE_BYTES)} bytes; this one takes "
            f"{shown_number(size)}",
            details={"limit": MAX_CACHE_VALUE_BYTES, "bytes": size},
        )
    entry = container().cache_store.put(
        call.user.tenant, scope, namespace, value, isoformat(utcnow()),
        expected_generation=_generation(call.header("if-match")),
    )
    return {"scope": scope, "namespace": namespace, "generation": entry.generation, "cached_at": entry.cached_at}


@route("/cache/{scope}/{namespace}", methods=["GET"])
def get_cache(call: Call, scope: str, namespace: str) -> Any:
    check_name("scope", scope)
    check_name("namespace", namespace)
    entry = container().cache_store.get(call.user.tenant, scope, namespace)
    if not entry.hit:
        return json_response(
            {
                "status": "miss",
                "scope": scope,
                "namespace": namespace,
                "generation": entry.generation,
                "invalidated_at": entry.invalidated_at,
                "invalidated_by": entry.invalidated_by,
            },
            404,
        )
    return {
        "status": "hit",
        "scope": scope,
        "namespace": namespace,
        "value": entry.value,
        "generation": entry.generation,
        "cached_at": entry.cached_at,
    }


@route("/scopes/{scope}/tasks", methods=["GET"])
def scope_tasks(call: Call, scope: str) -> Any:
    check_name("scope", scope)
    completions = container().cache_store.completions(call.user.tenant, scope)
    return {
        "scope": scope,
        "tasks": [{"type": c.type, "completed_at": c.completed_at, "job_id": c.job_id} for c in completions],
    }
