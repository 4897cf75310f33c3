"""Every route of the app, walked with a second tenant's token over the first tenant's ids,
scope, cache, cursors, Idempotency-Key and ETags (Chalice test client on moto).

For each route the intruder's answer on the owner's things must be the answer it gets on
things that do not exist (ids swapped back), must carry nothing of the owner's, and must leave
the owner's jobs, cache, scope tasks and artifacts as they were; operator routes refuse it.
A route added to the app fails `test_every_route_has_a_walk` until it is given one here."""
from __future__ import annotations

import json
import re
from typing import Any, Optional

import pytest

from chalicelib import composition
from chalicelib.domain.job import new_job_id
from tests.functional.conftest import auth, drain, token

OWNER, INTRUDER = "acme", "globex"
SECRET_MARK = "acme-private-7f3e"  # in the owner's payload and cached value: never in an intruder's answer
PUBLIC = {("/health", "GET"), ("/openapi.json", "GET"), ("/dashboard", "GET")}


def owner(**extra: str) -> dict[str, str]:
    return auth(OWNER, "ann", **extra)


def intruder(roles: Optional[list[str]] = None, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token(INTRUDER, 'bob', roles=roles)}", "Content-Type": "application/json",
            **extra}


def _ok(response, status: int = 200) -> Any:
    assert response.status_code == status, (response.status_code, response.body[:300])
    return response.json_body


@pytest.fixture
def world(app, client, aws):
    """The owner's things: a finished job with a claim-checked payload, artifacts (one in S3), a
    scope with a completion and a cached value, made under an Idempotency-Key; a finished
    parent with a child; a queued job; a cursor into its listing and one into the artifacts."""
    keyed = {"type": "demo.outputs", "scope": "proj-1",
             "payload": {"artifact_bytes": 10_000, "pad": SECRET_MARK + "x" * (70 * 1024)}}
    done = _ok(client.http.post("/jobs", headers=owner(**{"Idempotency-Key": "order-42"}), body=json.dumps(keyed)), 202)
    parent = _ok(client.http.post("/jobs", headers=owner(), body=json.dumps(
        {"type": "demo.fanout", "payload": {"children": 1, "steps": 1, "step_ms": 0}})), 202)
    steps = _ok(client.http.post("/jobs", headers=owner(), body=json.dumps(
        {"type": "demo.steps", "scope": "proj-1", "payload": {"steps": 1, "step_ms": 0}})), 202)
    _ok(client.http.put("/cache/proj-1/steps-summary", headers=owner(), body=json.dumps({"v": 0})))
    drain(app, aws)  # the steps job's completion invalidates the namespace: generation 1
    queued = _ok(client.http.post("/jobs", headers=owner(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}, "delay_seconds": 3600})), 202)
    _ok(client.http.put("/cache/proj-1/steps-summary", headers=owner(), body=json.dumps({"v": SECRET_MARK})))
    listing = _ok(client.http.get("/jobs?limit=1", headers=owner()))
    artifacts = _ok(client.http.get(f"/jobs/{done['id']}/artifacts?limit=1", headers=owner()))
    child = _ok(client.http.get(f"/jobs/{parent['id']}", headers=owner()))["children"][0]
    assert _ok(client.http.get(f"/jobs/{done['id']}", headers=owner()))["status"] == "completed"
    assert {t["job_id"] for t in _ok(client.http.get("/scopes/proj-1/tasks", headers=owner()))["tasks"]} \
        == {done["id"], steps["id"]}
    assert _ok(client.http.get("/cache/proj-1/steps-summary", headers=owner()))["generation"] == 1
    return {"done": done["id"], "parent": parent["id"], "child": child, "queued": queued["id"], "keyed": keyed,
            "scope": "proj-1", "namespace": "steps-summary", "cursor": listing["next_cursor"],
            "artifact_cursor": artifacts["next_cursor"]}


def owner_view(client, w) -> dict[str, Any]:
    jobs = _ok(client.http.get("/jobs?limit=100", headers=owner()))["jobs"]
    return {
        "jobs": sorted((j["id"], j["version"], j["status"], j["cancel_requested"]) for j in jobs),
        "cache": client.http.get(f"/cache/{w['scope']}/{w['namespace']}", headers=owner()).json_body,
        "tasks": _ok(client.http.get(f"/scopes/{w['scope']}/tasks", headers=owner())),
        "artifacts": _ok(client.http.get(f"/jobs/{w['done']}/artifacts", headers=owner())),
    }


def _walks(w: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(path, METHOD) -> the owner's things the intruder names, and the missing ones to compare:
    `on` (path parameters, body, query) for the owner's, `missing` for things nobody has."""
    mine = {"job_id": w["done"], "name": "data.bin", "scope": w["scope"], "namespace": w["namespace"]}
    none = {"job_id": new_job_id(), "name": "data.bin", "scope": "never-used", "namespace": w["namespace"]}
    ids = [w["done"], w["parent"], w["child"], w["queued"]]
    nobody = [new_job_id() for _ in ids]
    batch = ({"job_ids": ids}, {"job_ids": nobody})
    return {
        ("/jobs/{job_id}", "GET"): {"on": mine, "missing": none},
        ("/jobs/{job_id}", "DELETE"): {"on": {**mine, "job_id": w["queued"]}, "missing": none},
        ("/jobs/{job_id}/runs", "GET"): {"on": mine, "missing": none},
        # The owner's finished job with its claim-checked payload: run again by nobody but the owner.
        ("/jobs/{job_id}/rerun", "POST"): {"on": mine, "missing": none},
        ("/jobs/{job_id}/artifacts", "GET"): {"on": mine, "missing": none},
        ("/jobs/{job_id}/artifacts/{name}", "GET"): {"on": mine, "missing": none},
        ("/api/jobstatus/{job_id}", "GET"): {"on": {**mine, "job_id": w["parent"]}, "missing": none},
        ("/api/jobinfo/{job_id}", "GET"): {"on": {**mine, "job_id": w["parent"]}, "missing": none},
        ("/jobs/status", "POST"): {"on": {}, "missing": {}, "body": batch},
        ("/api/jobinfo", "POST"): {"on": {}, "missing": {}, "body": batch},
        ("/cache/{scope}/{namespace}", "GET"): {"on": mine, "missing": none},
        ("/cache/{scope}/{namespace}", "PUT"): {"on": mine, "missing": none, "body": ({"v": 1}, {"v": 1})},
        ("/scopes/{scope}/tasks", "GET"): {"on": mine, "missing": none},
        # No id in the path: the owner's listing cursor, against one of a listing nobody has.
        ("/jobs", "GET"): {"on": {}, "missing": {}, "query": ({"cursor": w["cursor"]}, {"cursor": _other_cursor(w)})},
        ("/job-types", "GET"): {"on": {}, "missing": {}},
        # The owner's request under the owner's Idempotency-Key makes the intruder a job of its own.
        ("/jobs", "POST"): {"submit": True},
    }


def _other_cursor(w: dict[str, Any]) -> str:
    """A cursor shaped like the owner's, of a tenant nobody is."""
    import base64

    plain = json.loads(base64.urlsafe_b64decode(w["cursor"]))
    text = json.dumps(plain, separators=(",", ":")).replace(f"T#{OWNER}", "T#nobody")
    return base64.urlsafe_b64encode(text.encode()).decode()


def _call(client, method: str, path: str, params: dict[str, str], headers: dict[str, str],
          body: Any = None, query: Optional[dict[str, str]] = None):
    url = path.format(**{k: v for k, v in params.items() if "{" + k + "}" in path})
    url += "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
    return client.http.request(method, url, headers=headers, body=json.dumps(body) if body is not None else b"")


def _values(body: Any, params: dict[str, str], query: Optional[dict[str, str]]) -> list[str]:
    """The names a request gives, in order: its body's ids, its path parameters, its query's
    values (and the first 200 characters of each, as a refusal echoes a cursor)."""
    given = [*(body or {}).get("job_ids", []), *params.values(), *(query or {}).values()]
    return [*given, *(v[:200] for v in given)]


def _shown(response, swaps: dict[str, str]) -> tuple[int, Any, set[str]]:
    """What a client can tell of an answer: its status, its body with `swaps` applied and the
    times that move by themselves dropped, and its header names (values such as an ETag are
    hashes of the ids)."""
    text = response.body.decode() if isinstance(response.body, bytes) else str(response.body)
    for old, new in swaps.items():
        text = text.replace(old, new)
    text = re.sub(r'"(cached_at|elapsed_s)":\s*("[^"]*"|[0-9.]+|null)', r'"\1": "-"', text)
    return response.status_code, text, set(response.headers)


def test_every_route_has_a_walk(app, world):
    routes = {(path, method) for path, methods in app.routes.items() for method in methods}
    system = {r for r in routes if r[0].startswith("/api/system/")}
    assert routes == set(_walks(world)) | system | PUBLIC


@pytest.mark.parametrize("roles", [None, ["admin"], ["operator"]])
def test_another_tenant_gets_on_the_owners_things_what_it_gets_on_missing_ones(app, client, aws, world, roles):
    """Status, body (ids swapped back) and header names alike; nothing of the owner's in it; the
    owner's things unchanged; and no object of the owner's read from S3 on the intruder's behalf.
    Whatever its roles: `admin` and `operator` open no other tenant's things on these routes."""
    before = owner_view(client, world)
    reads = []
    composition.container().blobs._s3.meta.events.register(
        "before-call.s3.GetObject", lambda params, **_: reads.append(params["url_path"]))
    problems = []
    for (path, method), walk in sorted(_walks(world).items()):
        if walk.get("submit"):
            continue
        foreign_body, missing_body = walk.get("body", (None, None))
        foreign_query, missing_query = walk.get("query", (None, None))
        foreign = _call(client, method, path, walk["on"], intruder(roles), foreign_body, foreign_query)
        missing = _call(client, method, path, walk["missing"], intruder(roles), missing_body, missing_query)
        swaps = {a: b for a, b in zip(_values(foreign_body, walk["on"], foreign_query),
                                      _values(missing_body, walk["missing"], missing_query)) if a != b}
        if _shown(foreign, swaps) != _shown(missing, {}):
            problems.append((method, path, _shown(foreign, swaps), _shown(missing, {})))
        text = foreign.body.decode() if isinstance(foreign.body, bytes) else str(foreign.body)
        if SECRET_MARK in text or f'"{OWNER}"' in text or '"ann"' in text:
            problems.append((method, path, "shows the owner's data", text[:300]))
        if foreign.status_code >= 500:
            problems.append((method, path, foreign.status_code, text[:300]))
    assert not problems, "\n".join(map(str, problems))
    assert reads == [], f"the intruder's requests read the owner's objects: {reads}"
    assert owner_view(client, world) == before


def test_the_owners_etag_is_no_key_to_its_job(client, world):
    """If-None-Match with the owner's own tag: the intruder gets the missing answer, never a 304."""
    for path in (f"/jobs/{world['done']}", f"/api/jobstatus/{world['done']}", f"/api/jobinfo/{world['done']}"):
        tag = client.http.get(path, headers=owner()).headers["ETag"]
        assert client.http.get(path, headers=owner(**{"If-None-Match": tag})).status_code == 304
        response = client.http.get(path, headers=intruder(**{"If-None-Match": tag}))
        assert response.status_code in (200, 404) and response.status_code != 304, path
        assert SECRET_MARK not in response.body.decode()
    batch = json.dumps({"job_ids": [world["done"]]})
    tag = client.http.post("/jobs/status", headers=owner(), body=batch).headers["ETag"]
    assert client.http.post("/jobs/status", headers=intruder(**{"If-None-Match": tag}), body=batch).status_code == 200


def test_the_owners_idempotency_key_makes_the_intruder_its_own_job(client, world):
    before = owner_view(client, world)
    response = client.http.post("/jobs", headers=intruder(**{"Idempotency-Key": "order-42"}),
                                body=json.dumps(world["keyed"]))
    job = _ok(response, 202)
    assert job["id"] != world["done"] and job["tenant"] == INTRUDER and job["status"] == "queued"
    assert owner_view(client, world) == before


def test_the_owners_artifact_cursor_opens_nothing(client, world):
    path = f"/jobs/{world['done']}/artifacts?cursor={world['artifact_cursor']}"
    response = client.http.get(path, headers=intruder())
    assert (response.status_code, response.json_body["error"]["code"]) == (404, "job_not_found")


def test_every_route_but_the_public_ones_refuses_a_request_without_a_token(app, client):
    """Only PUBLIC answers a request that carries no token; every other route is 401 before it
    reads anything, whatever its path names: what a route serves is its token's tenant's."""
    for path, methods in app.routes.items():
        for method in methods:
            answer = client.http.request(method, re.sub(r"\{[^}]+\}", "x", path))
            assert answer.status_code == (200 if (path, method) in PUBLIC else 401), (method, path)


@pytest.mark.parametrize("roles", [None, ["admin"]])
def test_every_system_route_refuses_a_tenant_and_its_admin(app, client, world, roles):
    for path, method in _system_routes(app):
        url = path.replace("{task_id}", world["done"])
        response = client.http.request(method, url, headers=intruder(roles))
        assert (response.status_code, response.json_body["error"]["code"]) == (403, "forbidden"), (method, path)
        assert client.http.request(method, url).status_code == 401, (method, path)


def _system_routes(app):
    """(path, method) of every /api/system/* route the app serves."""
    for path, methods in app.routes.items():
        if path.startswith("/api/system/"):
            for method in methods:
                yield path, method


@pytest.mark.parametrize("roles", [None, ["admin"]])
def test_a_system_route_refuses_a_tenant_before_it_reads_the_request(app, client, world, roles):
    """The role is checked first: a tenant's request that also breaks the route's rules (a
    parameter it does not take, a bad value, a body, a malformed key or id) is the same 403,
    never a 400 whose details describe the route's parameters, and starts or moves nothing."""
    operator = {"Authorization": f"Bearer {token('ops', 'root', roles=['operator'])}"}
    odd = ["?bogus=1", "?limit=0&priority=nope&max_age_hours=-1&window_hours=x&queue=" + "q" * 300,
           "?cursor=not-a-cursor", "?limit=1&limit=2"]
    for path, method in _system_routes(app):
        for task_id in (world["done"], "bad id!", "x" * 300):
            url = path.replace("{task_id}", task_id).replace("{message_id}", task_id)
            plain = client.http.request(method, url, headers=intruder(roles))
            for query in odd:
                for extra, body in (({}, b""), ({"Idempotency-Key": "\u00e9"}, b'{"max_age_hours": 1}'),
                                    ({}, b"not json")):
                    response = client.http.request(method, url + query, headers=intruder(roles, **extra),
                                                    body=body)
                    assert (response.status_code, response.body) == (plain.status_code, plain.body) \
                        and response.json_body["error"]["code"] == "forbidden", (method, url + query)
    assert _ok(client.http.get("/api/system/maintenance/tasks", headers=operator))["tasks"] == []
    # the operator's same request is read, and refused for what it is
    assert client.http.get("/api/system/dlq?bogus=1", headers=operator).status_code == 400


@pytest.mark.parametrize("roles", [None, ["admin"], ["operator"]])
def test_no_token_submits_or_sees_a_maintenance_task_as_a_job(client, roles):
    """Maintenance tasks work across tenants (a clean-up deletes every tenant's finished jobs):
    they start only at the operator's routes. POST /jobs knows no `maintenance.*` type, whatever
    the token's roles, and writes nothing; /job-types does not list them."""
    from chalicelib.maintenance import TASKS

    for task in TASKS:
        response = client.http.post("/jobs", headers=intruder(roles), body=json.dumps(
            {"type": f"maintenance.{task}", "payload": {}}))
        assert (response.status_code, response.json_body["error"]["code"]) == (422, "unknown_job_type"), task
    assert _ok(client.http.get("/jobs", headers=intruder(roles)))["jobs"] == []
    listed = [t["type"] for t in _ok(client.http.get("/job-types", headers=intruder(roles)))["job_types"]]
    assert listed and not [t for t in listed if t.startswith("maintenance.")]


def test_public_routes_answer_every_tenant_alike(client):
    for path, method in sorted(PUBLIC):
        mine = client.http.request(method, path, headers=owner())
        theirs = client.http.request(method, path, headers=intruder())
        assert mine.status_code == theirs.status_code == 200 and mine.body == theirs.body, path


def test_the_intruder_costs_the_same_requests_on_the_owners_things_as_on_missing_ones(client, world, monkeypatch):
    """Timing follows the work done: for every route, the AWS requests the intruder's call makes
    on the owner's things (operation, consistency, table or bucket) are those its call on missing
    ones makes, in the same order; so are they for a keyed rerun and an If-None-Match poll."""
    import botocore.client

    made: list[tuple[str, str, Any, Any]] = []
    real = botocore.client.BaseClient._make_api_call

    def recorded(self, operation, params):
        made.append((self.meta.service_model.service_name, operation, params.get("ConsistentRead"),
                     params.get("TableName") or params.get("Bucket")))
        return real(self, operation, params)

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", recorded)
    walks = {(path, method, ()): walk for (path, method), walk in _walks(world).items() if not walk.get("submit")}
    for path, method in (("/jobs/{job_id}/rerun", "POST"), ("/jobs/{job_id}", "DELETE")):
        walks[(path, method, (("Idempotency-Key", "order-42"),))] = _walks(world)[(path, method)]
    for path in ("/jobs/{job_id}", "/api/jobstatus/{job_id}", "/api/jobinfo/{job_id}"):
        walks[(path, "GET", (("If-None-Match", 'W/"0"'),))] = _walks(world)[(path, "GET")]
    problems = []
    for (path, method, headers), walk in sorted(walks.items()):
        foreign_body, missing_body = walk.get("body", (None, None))
        foreign_query, missing_query = walk.get("query", (None, None))
        made.clear()
        _call(client, method, path, walk["on"], intruder(**dict(headers)), foreign_body, foreign_query)
        foreign = list(made)
        made.clear()
        _call(client, method, path, walk["missing"], intruder(**dict(headers)), missing_body, missing_query)
        if foreign != made:
            problems.append((method, path, headers, foreign, list(made)))
    assert not problems, "\n".join(map(str, problems))


@pytest.fixture
def intruders_older_jobs(client) -> list[str]:
    """Two jobs of the intruder's made before the owner's things (asked for before `world`):
    older than any place in the owner's listings, and completed by the world's drain."""
    return [_ok(client.http.post("/jobs", headers=intruder(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})), 202)["id"] for _ in range(2)]


@pytest.mark.parametrize("query", ["", "status=completed&", "type=demo.steps&", "status=completed&type=demo.steps&"])
def test_the_owners_cursor_rewritten_into_the_intruders_listing_shows_the_intruders_jobs_only(
        client, intruders_older_jobs, world, query):
    """A cursor is base64 JSON a client can rewrite: the owner's, its partition changed to the
    intruder's so that it passes as the intruder's own, starts the intruder's listing at the
    owner's job's place: it shows the intruder's jobs older than that place, never the owner's."""
    import base64

    cursor = _ok(client.http.get(f"/jobs?{query}limit=1", headers=owner()))["next_cursor"]
    plain = json.loads(base64.urlsafe_b64decode(cursor))
    rewritten = {k: v.replace(f"T#{OWNER}", f"T#{INTRUDER}") for k, v in plain.items()}
    assert rewritten != plain
    text = base64.urlsafe_b64encode(json.dumps(rewritten, separators=(",", ":")).encode()).decode()
    response = client.http.get(f"/jobs?{query}limit=100&cursor={text}", headers=intruder())
    page = _ok(response)
    assert sorted(j["id"] for j in page["jobs"]) == sorted(intruders_older_jobs) and page["next_cursor"] is None
    assert SECRET_MARK not in response.body.decode() and f'"{OWNER}"' not in response.body.decode()


def test_the_owners_keyed_rerun_is_none_of_the_intruders(client, world):
    """The owner reran its job under a key; the intruder's rerun of that job under the same key is
    answered as a missing job's, and its rerun of a job of its own under it makes its own job."""
    made = _ok(client.http.post(f"/jobs/{world['done']}/rerun", headers=owner(**{"Idempotency-Key": "again-1"})), 202)
    foreign = client.http.post(f"/jobs/{world['done']}/rerun", headers=intruder(**{"Idempotency-Key": "again-1"}))
    missing_id = new_job_id()
    missing = client.http.post(f"/jobs/{missing_id}/rerun", headers=intruder(**{"Idempotency-Key": "again-1"}))
    assert (foreign.status_code, foreign.body.decode().replace(world["done"], missing_id)) \
        == (missing.status_code, missing.body.decode()) and foreign.status_code == 404
    own = _ok(client.http.post("/jobs", headers=intruder(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})), 202)
    _ok(client.http.delete(f"/jobs/{own['id']}", headers=intruder()), 202)  # canceled: finished
    again = _ok(client.http.post(f"/jobs/{own['id']}/rerun", headers=intruder(**{"Idempotency-Key": "again-1"})), 202)
    assert again["id"] != made["id"] and (again["tenant"], again["rerun_of"]) == (INTRUDER, own["id"])


def test_the_intruders_job_in_the_owners_scope_leaves_the_owners_scope_as_it_was(app, client, aws, world):
    """Scopes are per tenant: a job of the intruder's that completes in a scope of the owner's
    name invalidates the intruder's cache of that name and lists in its tasks, not the owner's."""
    before = owner_view(client, world)
    job = _ok(client.http.post("/jobs", headers=intruder(), body=json.dumps(
        {"type": "demo.steps", "scope": world["scope"], "payload": {"steps": 1, "step_ms": 0}})), 202)
    drain(app, aws)
    assert _ok(client.http.get(f"/jobs/{job['id']}", headers=intruder()))["status"] == "completed"
    tasks = _ok(client.http.get(f"/scopes/{world['scope']}/tasks", headers=intruder()))["tasks"]
    assert [t["job_id"] for t in tasks] == [job["id"]]
    assert owner_view(client, world) == before


@pytest.mark.parametrize("roles", [None, ["admin"], ["operator"]])
def test_a_maintenance_task_is_no_tenants_job(client, world, roles):
    """Tasks are jobs of the reserved `_system` tenant: every tenant route answers a task's id
    as a missing id, whatever the token's roles, and leaves the task as it was."""
    operator = {"Authorization": f"Bearer {token('ops', 'root', roles=['operator'])}"}
    task = _ok(client.http.post("/api/system/maintenance/cleanup-temp-files", headers=operator), 202)["task_id"]
    assert task is not None
    before = _ok(client.http.get(f"/api/system/maintenance/tasks/{task}", headers=operator))
    missing = new_job_id()
    for path, method in sorted(_walks(world)):
        if "{job_id}" not in path:
            continue
        on_task = client.http.request(method, path.format(job_id=task, name="data.bin"), headers=intruder(roles))
        on_missing = client.http.request(method, path.format(job_id=missing, name="data.bin"), headers=intruder(roles))
        assert (on_task.status_code, on_task.body.decode().replace(task, missing)) \
            == (on_missing.status_code, on_missing.body.decode()), (method, path)
    batch = client.http.post("/jobs/status", headers=intruder(roles), body=json.dumps({"job_ids": [task]}))
    assert _ok(batch)["jobs"][task] == {"id": task, "status": "not_found"}
    assert _ok(client.http.get(f"/api/system/maintenance/tasks/{task}", headers=operator)) == before


@pytest.mark.parametrize("state", ["queued", "running", "cancel_requested", "completed", "canceled"])
def test_the_owners_job_in_every_state_answers_the_intruder_as_a_missing_one(client, aws, state):
    """The owner's answers differ by state (a cancel: 202, or 409 job_finished; a rerun: 202,
    or 409 job_not_finished with the status); the intruder's never do: whatever the job's
    state, each route on it answers as on an id nobody has, and the job is left as it was."""
    from chalicelib.ports import JobMessage

    job = _ok(client.http.post("/jobs", headers=owner(), body=json.dumps(
        {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})), 202)
    lifecycle = composition.container().lifecycle
    if state in ("running", "cancel_requested", "completed"):
        running = lifecycle.claim(JobMessage(job["id"], 1)).job
        if state == "cancel_requested":
            lifecycle.cancel(OWNER, job["id"])
        if state == "completed":
            lifecycle.complete(running, {"done": SECRET_MARK})
    if state == "canceled":
        lifecycle.cancel(OWNER, job["id"])
    before = _ok(client.http.get(f"/jobs/{job['id']}", headers=owner()))
    assert before["status"] == {"cancel_requested": "running"}.get(state, state)
    missing = new_job_id()
    for method, path in (("GET", "/jobs/{id}"), ("DELETE", "/jobs/{id}"), ("POST", "/jobs/{id}/rerun"),
                         ("GET", "/jobs/{id}/runs"), ("GET", "/jobs/{id}/artifacts"),
                         ("GET", "/api/jobstatus/{id}"), ("GET", "/api/jobinfo/{id}")):
        foreign = client.http.request(method, path.format(id=job["id"]), headers=intruder())
        nobody = client.http.request(method, path.format(id=missing), headers=intruder())
        assert _shown(foreign, {job["id"]: missing}) == _shown(nobody, {}), (method, path)
        assert SECRET_MARK not in foreign.body.decode()
    assert _ok(client.http.get(f"/jobs/{job['id']}", headers=owner())) == before


def test_the_intruders_fanout_in_the_owners_scope_spawns_the_intruders_children(app, client, aws, world):
    """ctx.spawn makes each child in its parent's tenant, in its parent's scope: the intruder's
    fan-out in a scope of the owner's name has children the intruder lists and reads, the owner
    neither, and their completions land in the intruder's scope tasks, not the owner's."""
    before = owner_view(client, world)
    parent = _ok(client.http.post("/jobs", headers=intruder(), body=json.dumps(
        {"type": "demo.fanout", "scope": world["scope"], "payload": {"children": 2, "steps": 1, "step_ms": 0}})), 202)
    drain(app, aws)
    children = _ok(client.http.get(f"/jobs/{parent['id']}", headers=intruder()))["children"]
    assert len(children) == 2
    shown = _ok(client.http.post("/jobs/status", headers=intruder(), body=json.dumps({"job_ids": children})))["jobs"]
    assert {(j["tenant"], j["user"], j["scope"], j["parent_id"], j["status"]) for j in shown.values()} \
        == {(INTRUDER, "bob", world["scope"], parent["id"], "completed")}
    listed = {j["id"] for j in _ok(client.http.get("/jobs?limit=100", headers=intruder()))["jobs"]}
    assert set(children) <= listed
    mine = _ok(client.http.post("/jobs/status", headers=owner(), body=json.dumps({"job_ids": children})))["jobs"]
    assert [j["status"] for j in mine.values()] == ["not_found", "not_found"]
    tasks = _ok(client.http.get(f"/scopes/{world['scope']}/tasks", headers=intruder()))["tasks"]
    assert {t["type"] for t in tasks} == {"demo.fanout", "demo.steps"}
    assert {t["job_id"] for t in tasks} & set(children)
    assert owner_view(client, world) == before
