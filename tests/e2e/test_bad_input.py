"""Malformed and hostile requests against the deployed API: each is refused with a 4xx and an
`error.code`, none is a 5xx, and nothing a refused request sends is written."""
from __future__ import annotations

import base64
import json
import time
import uuid

import jwt
import pytest

from chalicelib.api.auth import issue_token

TENANT = f"bad-{uuid.uuid4().hex[:8]}"
OTHER = f"other-{uuid.uuid4().hex[:8]}"
STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
INJECTIONS = ["' OR '1'='1", "1; DROP TABLE jobs; --", "../../etc/passwd", "<script>alert(1)</script>",
              '{"$ne": null}', "${jndi:ldap://127.0.0.1/x}", "%00", "\u202e\u0000", "ジョブ🚀", "a" * 5000]


def token_with(secret, **claims):
    now = int(time.time())
    base = {"sub": "mallory", "tenant": TENANT, "iat": now, "exp": now + 600}
    return jwt.encode({**base, **claims}, secret, algorithm="HS256")


def none_token():
    header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
    body = base64.urlsafe_b64encode(json.dumps(
        {"sub": "mallory", "tenant": TENANT, "exp": int(time.time()) + 600}).encode()).rstrip(b"=")
    return f"{header.decode()}.{body.decode()}."


def bad_tokens(secret):
    return {
        "no header": None,
        "not bearer": "Basic bWFsbG9yeTpwdw==",
        "empty bearer": "Bearer ",
        "garbage": "Bearer not.a.jwt",
        "expired": f"Bearer {issue_token(secret, user='mallory', tenant=TENANT, ttl_s=-60)}",
        "other secret": f"Bearer {issue_token('x' * 40, user='mallory', tenant=TENANT)}",
        "alg none": f"Bearer {none_token()}",
        "no tenant": "Bearer " + jwt.encode({"sub": "m", "exp": int(time.time()) + 60}, secret, algorithm="HS256"),
        "tenant list": f"Bearer {token_with(secret, tenant=[TENANT])}",
        "roles string": f"Bearer {token_with(secret, roles='admin')}",
        "tenant reaching into another's keys": f"Bearer {token_with(secret, tenant=OTHER + '#Y#demo.steps')}",
        "tenant with a newline": f"Bearer {token_with(secret, tenant=TENANT + chr(10))}",
        "sub with a newline": f"Bearer {token_with(secret, sub='mallory' + chr(10))}",
        "tenant too long": f"Bearer {token_with(secret, tenant='t' * 65)}",
        "reserved tenant": f"Bearer {token_with(secret, tenant='_system', roles=['operator'])}",
        "no exp": "Bearer " + jwt.encode({"sub": "m", "tenant": TENANT}, secret, algorithm="HS256"),
        "lives 30 days": f"Bearer {token_with(secret, exp=int(time.time()) + 30 * 86400)}",
        "issued in the future": f"Bearer {token_with(secret, iat=int(time.time()) + 3600, exp=int(time.time()) + 7200)}",
        "huge": "Bearer " + "a" * 10000,
    }


def bodies():
    nested = "[" * 5000 + "]" * 5000
    return {
        "not json": b"type=demo.steps",
        "empty": b"",
        "array": b"[]",
        "string": b'"demo.steps"',
        "bad utf-8": b'{"type": "\xff\xfe"}',
        "deeply nested": nested.encode(),
        "deeply nested payload": ('{"type": "demo.steps", "payload": {"a": ' + nested + "}}").encode(),
        "truncated": b'{"type": "demo.steps", "payload": {',
        "missing type": json.dumps({"payload": {"steps": 1, "step_ms": 0}}).encode(),
        "type int": json.dumps({"type": 7, "payload": {}}).encode(),
        "type empty": json.dumps({"type": "", "payload": {}}).encode(),
        "type unicode": json.dumps({"type": "ジョブ🚀\u0000", "payload": {}}).encode(),
        "type long": json.dumps({"type": "x" * 1000}).encode(),
        "payload list": json.dumps({"type": "demo.steps", "payload": [1, 2]}).encode(),
        "payload wrong types": json.dumps({"type": "demo.steps", "payload": {"steps": "ten", "step_ms": None}}).encode(),
        "payload out of range": json.dumps({"type": "demo.steps", "payload": {"steps": -1, "step_ms": 10**12}}).encode(),
        "payload NaN": b'{"type": "demo.steps", "payload": {"steps": NaN, "step_ms": Infinity}}',
        "payload extra": json.dumps({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "rm": "-rf"}}).encode(),
        "extra field": json.dumps({**STEPS, "tenant": OTHER}).encode(),
        "priority": json.dumps({**STEPS, "priority": "urgent"}).encode(),
        "delay too long": json.dumps({**STEPS, "delay_seconds": 365 * 86400 + 1}).encode(),
        "run_at without a zone": json.dumps({**STEPS, "run_at": "2030-01-01T00:00:00"}).encode(),
        "delay string": json.dumps({**STEPS, "delay_seconds": "soon"}).encode(),
        "scope injection": json.dumps({**STEPS, "scope": "'; DROP TABLE jobs; --"}).encode(),
        "scope traversal": json.dumps({**STEPS, "scope": "../../etc passwd"}).encode(),
        "300 KiB": json.dumps({**STEPS, "scope": "s", "payload": {"steps": 1, "step_ms": 0, "pad": "x" * 300_000}}).encode(),
        "2 MiB": b'{"type": "demo.steps", "payload": {"pad": "' + b"x" * 2_000_000 + b'"}}',
    }


def query_cases():
    return [f"/jobs?limit={v}" for v in ("abc", "0", "101", "-1", "1e9", "")] + [
        "/jobs?status=bogus", "/jobs?status=%27%20OR%201%3D1", "/jobs?cursor=garbage", "/jobs?cursor=" + "A" * 3000,
        "/jobs?type=" + "t" * 200, "/jobs?foo=bar",
    ]


def job_count(stack, tenant):
    count, cursor = 0, None
    while True:
        page = stack.call("GET", "/jobs?limit=100" + (f"&cursor={cursor}" if cursor else ""), tenant).json()
        count += len(page["jobs"])
        cursor = page["next_cursor"]
        if not cursor:
            return count


def refused(response):
    """A 4xx with our error shape, or the reason it is not."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}: {response.text[:200]}"
    try:
        code = response.json()["error"]["code"]
    except (ValueError, KeyError, TypeError):
        return f"no error.code in {response.status_code}: {response.text[:200]}"
    return None if isinstance(code, str) and code else f"empty code: {response.text[:200]}"


@pytest.fixture(scope="module")
def counts(stack):
    """Job counts of the hostile tenant and of a victim tenant before the corpus runs, checked after."""
    stack.submit(STEPS, tenant=OTHER)
    before = {TENANT: job_count(stack, TENANT), OTHER: job_count(stack, OTHER)}
    yield before
    assert {TENANT: job_count(stack, TENANT), OTHER: job_count(stack, OTHER)} == before


def test_bad_tokens_are_refused_on_every_kind_of_route(stack, counts):
    problems = []
    for name, header in bad_tokens(stack.secret).items():
        headers = {"Content-Type": "application/json", **({"Authorization": header} if header else {})}
        for method, path in (("POST", "/jobs"), ("GET", "/jobs"), ("GET", f"/jobs/{uuid.uuid4()}"),
                             ("POST", "/jobs/status"), ("PUT", "/cache/s/n"), ("GET", "/api/jobinfo/x"),
                             ("GET", "/api/system/stats"), ("POST", "/api/system/dlq/redrive")):
            response = stack.call(method, path, headers=headers, json=STEPS if method != "GET" else None)
            problem = refused(response) or (None if response.status_code == 401 else f"{response.status_code}")
            if problem:
                problems.append((name, method, path, problem))
    assert not problems, problems


def test_malformed_bodies_are_refused(stack, counts):
    headers = stack.headers(TENANT)
    problems = [(name, refused(r)) for name, body in bodies().items()
                if refused(r := stack.call("POST", "/jobs", headers=headers, data=body))]
    assert not problems, problems


def test_hostile_ids_and_query_strings_are_refused(stack, counts):
    problems = []
    for value in INJECTIONS:
        for method, path in (("GET", "/jobs/{}"), ("DELETE", "/jobs/{}"), ("GET", "/jobs/{}/runs"),
                             ("GET", "/cache/{}/ns"), ("GET", "/scopes/{}/tasks")):
            response = stack.call(method, path.format(_quote(value)), TENANT)
            if problem := refused(response):
                problems.append((method, path, value[:40], problem))
    for path in query_cases():
        if problem := refused(stack.call("GET", path, TENANT)):
            problems.append(("GET", path[:60], problem))
    for body in ({"job_ids": [str(i) for i in range(101)]}, {}, {"job_ids": []}, {"job_ids": [{"$ne": None}]}):
        if problem := refused(stack.call("POST", "/jobs/status", TENANT, json=body)):
            problems.append(("POST", "/jobs/status", str(body)[:60], problem))
    assert not problems, problems


def test_a_cursor_from_another_tenants_listing_is_refused(stack, counts):
    page = stack.call("GET", "/jobs?limit=1", OTHER).json()
    foreign = page["next_cursor"] or base64.urlsafe_b64encode(json.dumps(
        {"gsi1pk": f"T#{OTHER}", "gsi1sk": "x", "pk": "JOB#x", "sk": "JOB"}).encode()).decode()
    response = stack.call("GET", f"/jobs?cursor={foreign}", TENANT)
    assert refused(response) is None and response.status_code == 400


def _quote(value: str) -> str:
    from urllib.parse import quote

    return quote(value, safe="")
