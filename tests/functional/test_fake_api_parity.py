"""The fake API the client's tests run against (tests/support/fake_api.py) answers as the real
app does, request for request: the same status and error code, `details` where the client reads
them, the ETag and 304 of a conditional read, and a large value shown in a listing or a batch as
the same placeholder. A fake that drifted from the API would hide the client's bugs behind it."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Optional
from urllib.parse import urlsplit

import pytest

from chalice.local import RouteMatcher

from chalicelib import composition
from chalicelib.adapters.dynamodb_items import JSON_FIELDS, job_key
from chalicelib.defaults import MAX_SCHEDULE_S
from tests.functional.conftest import drain, token
from tests.functional.test_doc_examples import URL, _bridge
from tests.functional.test_operations import _feed_stream
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, route_not_found

LARGE_RESULT_BYTES = 70_000  # past the store's inline limit (64 KiB): kept in S3


class Both:
    """The real app (through the Chalice test client) and a FakeApi, each holding the same jobs
    by its own ids, asked the same requests."""

    def __init__(self, app, aws, client, monkeypatch) -> None:
        session = FakeSession({})
        session.headers["Authorization"] = f"Bearer {token()}"
        self.servers = {"api": _staged(app, _bridge(client, session)), "fake": FakeApi()}
        self._app, self._aws, self._monkeypatch = app, aws, monkeypatch
        self.ids: dict[str, dict[str, str]] = {"api": {}, "fake": {}}

    def submit(self, name: str, body: dict[str, Any]) -> None:
        for side, server in self.servers.items():
            answer = server("POST", f"{URL}/jobs", json=body, headers={})
            assert answer.status_code == 202, (side, answer.content)
            self.ids[side][name] = answer.json()["id"]

    def finish(self, *names: str) -> None:
        """The named jobs run to the end: the app's workers run them, and the fake's show each
        as the app then shows it (status, version, result)."""
        drain(self._app, self._aws)
        fake: FakeApi = self.servers["fake"]
        for name in names:
            ended = self.servers["api"]("GET", f"{URL}/jobs/{self.ids['api'][name]}").json()
            assert ended["status"] == "completed", ended
            fake.jobs[self.ids["fake"][name]].update(status="completed", version=ended["version"],
                                                     result=ended["result"])

    def limit_unfinished(self, most: int) -> None:
        """Each side admits a tenant's submission only while it has fewer than `most` unfinished
        jobs (the app counting them from its jobs table's stream, fed now and by `counted`)."""
        self.servers["fake"].max_unfinished = most
        self._monkeypatch.setenv("JOBPIPE_TENANT_MAX_UNFINISHED_JOBS", str(most))
        composition.use(None)
        self.counted()

    def counted(self) -> None:
        """The app's counts of unfinished jobs brought up to date (its jobs table's stream fed)."""
        _feed_stream(self._app, self._aws)

    def purge(self, name: str) -> None:
        """The named job is removed, as retention's clean-up removes it (a key it was made
        under still kept)."""
        self._aws["ddb"].delete_item(TableName="jobs", Key=job_key(self.ids["api"][name]))
        self.servers["fake"].purge(self.ids["fake"][name])

    def keep(self, name: str, **fields: Any) -> None:
        """The named job kept with its `type` or `payload` changed, as a job that finished before
        its type was removed, or its type's model changed, is kept."""
        stored = {"type" if f == "type" else JSON_FIELDS[f]: {"S": v if f == "type" else json.dumps(v)}
                  for f, v in fields.items()}
        self._aws["ddb"].update_item(
            TableName="jobs", Key=job_key(self.ids["api"][name]),
            UpdateExpression="SET " + ", ".join(f"#{i} = :{i}" for i in range(len(stored))),
            ExpressionAttributeNames={f"#{i}": k for i, k in enumerate(stored)},
            ExpressionAttributeValues={f":{i}": v for i, v in enumerate(stored.values())})
        self.servers["fake"].jobs[self.ids["fake"][name]].update(fields)

    def lose_payload(self, name: str) -> None:
        """The named job's payload, kept in S3, gone from the bucket (deleted by hand or by a
        lifecycle rule)."""
        job_id = self.ids["api"][name]
        self._aws["s3"].delete_object(Bucket="jobs-bucket", Key=f"jobs/{job_id}/payload.json")
        self.servers["fake"].lose_payload(self.ids["fake"][name])

    def ask(self, method: str, path: str, *, body: Any = None, params: Optional[dict] = None,
            etag_of: Optional[tuple[str, str]] = None, headers: Optional[dict] = None) -> dict[str, Any]:
        """Each side's answer to `path` (`{name}` placeholders filled with its own job ids), as
        (status, error code, message and the message with the side's job ids as their
        `{name}`, details, whether it is tagged, its Cache-Control and Retry-After, the body). `etag_of` (method, path) sends If-None-Match with the tag that
        request answered with, on each side."""
        answers = {}
        sent = dict(headers or {})
        for side, server in self.servers.items():
            headers = dict(sent)
            shown_body = _fill(body, self.ids[side])
            if etag_of is not None:
                first = server(etag_of[0], URL + etag_of[1].format(**self.ids[side]), json=shown_body, params=params)
                headers["If-None-Match"] = first.headers["ETag"]
            response = server(method, URL + path.format(**self.ids[side]), json=shown_body, params=params,
                              headers=headers)
            payload = response.json() if response.content else None
            error = payload.get("error") if isinstance(payload, dict) else None
            message = error and error.get("message")
            said = message
            for name, job_id in self.ids[side].items():  # each side names its own jobs
                said = said and said.replace(job_id, f"{{{name}}}")
            answers[side] = {"status": response.status_code, "code": error and error.get("code"),
                             "message": message, "said": said,
                             "details": error and error.get("details"), "tagged": "ETag" in response.headers,
                             "cache": response.headers.get("Cache-Control"),
                             "retry after": response.headers.get("Retry-After"), "body": payload}
        return answers


def _staged(app, server):
    """`server` (the app through Chalice's local gateway) behind the deployed stage: a method
    and path no route takes is answered by the stage's gateway response (infra/resources.json),
    as chalice_wsgi answers it, not by the local gateway's 403."""
    matcher = RouteMatcher(list(app.routes))

    def answer(method, url, **kwargs):
        try:
            route = matcher.match_route(urlsplit(url).path).route
        except ValueError:
            route = None
        if route is None or method not in app.routes[route]:
            return route_not_found(method, url)
        return server(method, url, **kwargs)

    return answer


def _fill(body: Any, ids: dict[str, str]) -> Any:
    if isinstance(body, dict):
        return {k: _fill(v, ids) for k, v in body.items()}
    if isinstance(body, list):
        return [_fill(v, ids) for v in body]
    return body.format(**ids) if isinstance(body, str) else body


def same(answers: dict[str, dict[str, Any]], *fields: str) -> None:
    api, fake = ({f: answers[side][f] for f in fields} for side in ("api", "fake"))
    assert fake == api, f"the fake answered {fake}, the API {api}"


@pytest.fixture
def both(app, aws, client, monkeypatch) -> Both:
    both = Both(app, aws, client, monkeypatch)
    both.submit("done", {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    both.submit("large", {"type": "demo.outputs", "payload": {"result_bytes": LARGE_RESULT_BYTES}})
    both.finish("done", "large")
    both.submit("queued", {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    return both


def test_a_job_is_read_tagged_and_an_unchanged_one_is_a_304(both):
    # The fake answers through the API's own conditional_response: alike alone would hold if
    # both stopped answering 304, so the answer itself is checked too.
    read = both.ask("GET", "/jobs/{done}")
    same(read, "status", "tagged")
    assert (read["api"]["status"], read["api"]["tagged"]) == (200, True), read["api"]
    unchanged = both.ask("GET", "/jobs/{done}", etag_of=("GET", "/jobs/{done}"))
    same(unchanged, "status", "tagged")
    assert (unchanged["api"]["status"], unchanged["api"]["tagged"]) == (304, True), unchanged["api"]
    same(both.ask("GET", "/jobs/no-such-job"), "status", "code", "message")


def test_a_batch_is_tagged_and_shows_an_unknown_id_and_a_large_result_alike(both):
    ask = {"job_ids": ["{done}", "{large}", "no-such-job"]}
    answers = both.ask("POST", "/jobs/status", body=ask)
    same(answers, "status", "tagged")
    for side in ("api", "fake"):
        jobs = answers[side]["body"]["jobs"]
        answers[side]["shown"] = (jobs["no-such-job"], jobs[both.ids[side]["large"]]["result"])
    same(answers, "shown")
    assert set(answers["api"]["shown"][1]) == {"claim_check"}
    same(both.ask("POST", "/jobs/status", body=ask, etag_of=("POST", "/jobs/status")), "status", "tagged")


def test_a_listing_is_tagged_and_shows_a_large_result_as_its_placeholder(both):
    answers = both.ask("GET", "/jobs", params={"status": "completed"})
    same(answers, "status", "tagged")
    assert (answers["api"]["status"], answers["api"]["tagged"]) == (200, True), answers["api"]  # alike is not enough
    for side in ("api", "fake"):
        listed = {j["id"]: j for j in answers[side]["body"]["jobs"]}
        answers[side]["shown"] = listed[both.ids[side]["large"]]["result"]
    same(answers, "shown")
    assert set(answers["api"]["shown"]) == {"claim_check"}


def test_cancels_and_reruns_are_refused_alike(both):
    same(both.ask("DELETE", "/jobs/{done}"), "status", "code", "said", "details")
    same(both.ask("POST", "/jobs/{queued}/rerun", body={}), "status", "code", "said", "details")
    same(both.ask("DELETE", "/jobs/no-such-job"), "status", "code", "message")
    same(both.ask("POST", "/jobs/no-such-job/rerun", body={}), "status", "code", "message")
    canceled = both.ask("DELETE", "/jobs/{queued}")
    same(canceled, "status")
    assert [canceled[side]["body"]["status"] for side in ("api", "fake")] == ["canceled", "canceled"]


def test_a_keyed_submit_repeated_answers_its_job_and_another_body_under_the_key_is_refused(both):
    body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
    keyed = {"Idempotency-Key": "nightly-1"}
    answers = {side: [server("POST", f"{URL}/jobs", json=b, headers=dict(keyed))
                      for b in (body, body, {**body, "priority": "high"})]
               for side, server in both.servers.items()}
    for side, (first, again, other) in answers.items():
        error = other.json().get("error") or {}
        answers[side] = {"statuses": [first.status_code, again.status_code, other.status_code],
                         "same job": first.json()["id"] == again.json()["id"], "code": error.get("code"),
                         "message": error.get("message")}
    same(answers, "statuses", "same job", "code", "message")


def test_a_keyed_submit_repeated_with_its_defaults_spelled_out_answers_its_job_alike(both):
    body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
    spelled = {**body, "payload": {**body["payload"], "fail_mode": "retry"}, "priority": "normal", "delay_seconds": 0,
               "run_at": None, "scope": None}
    keyed = {"Idempotency-Key": "spelled-1"}
    answers = {}
    for side, server in both.servers.items():
        first, again, other = (server("POST", f"{URL}/jobs", json=b, headers=dict(keyed))
                               for b in (body, spelled, {**spelled, "priority": "low"}))
        answers[side] = {"statuses": [first.status_code, again.status_code, other.status_code],
                         "same job": first.json()["id"] == again.json()["id"],
                         "code": (other.json().get("error") or {}).get("code")}
    same(answers, "statuses", "same job", "code")
    assert answers["api"]["statuses"] == [202, 202, 409]


def test_a_keyed_rerun_repeated_answers_its_job_and_the_key_refuses_a_submit(both):
    keyed = {"Idempotency-Key": "again-1"}
    answers = {}
    for side, server in both.servers.items():
        path = f"{URL}/jobs/{both.ids[side]['done']}/rerun"
        first, again = (server("POST", path, json={}, headers=dict(keyed)) for _ in range(2))
        submit = server("POST", f"{URL}/jobs", json={"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}},
                        headers=dict(keyed))
        answers[side] = {"statuses": [first.status_code, again.status_code, submit.status_code],
                         "same job": first.json()["id"] == again.json()["id"],
                         "rerun of": first.json()["rerun_of"] == both.ids[side]["done"],
                         "code": (submit.json().get("error") or {}).get("code")}
    same(answers, "statuses", "same job", "rerun of", "code")


def test_artifacts_are_listed_and_missing_ones_refused_alike(both):
    listed = both.ask("GET", "/jobs/{done}/artifacts")
    same(listed, "status")
    assert [listed[side]["body"]["artifacts"] for side in ("api", "fake")] == [[], []]
    same(both.ask("GET", "/jobs/{done}/artifacts/report.txt"), "status", "code", "said")
    same(both.ask("GET", "/jobs/{done}/artifacts/" + "r" * 200), "status", "code", "said")
    same(both.ask("GET", "/jobs/no-such-job/artifacts"), "status", "code", "message")


@pytest.mark.parametrize("body", [
    {"type": "no.such.type", "payload": {}}, {"type": "demo.steps", "payload": []}, {"payload": {}},
    # payloads the type's model refuses: a field missing, every field missing, one it does not take
    {"type": "demo.steps", "payload": {"steps": 2}}, {"type": "demo.steps"},
    {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "name": "x"}}])
def test_a_submit_of_an_unknown_type_or_a_body_the_api_refuses_is_refused_alike(both, body):
    answers = both.ask("POST", "/jobs", body=body)
    same(answers, "status", "code", "message", "details")
    assert answers["api"]["status"] in (400, 422), answers["api"]


def test_a_submitted_payload_is_kept_with_its_models_defaults_alike(both):
    made = both.ask("POST", "/jobs", body={"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}})
    for side in ("api", "fake"):
        made[side]["payload"] = made[side]["body"]["payload"]
    same(made, "status", "payload")
    assert made["api"]["payload"]["fail_mode"] == "retry", made["api"]  # a default the body left out


def test_a_tenant_at_its_unfinished_jobs_is_refused_alike_with_retry_after(both):
    both.limit_unfinished(2)  # one job of the fixture is queued
    body = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
    same(both.ask("POST", "/jobs", body=body), "status")
    both.counted()
    refused = both.ask("POST", "/jobs", body=body)
    same(refused, "status", "code", "details", "retry after")
    assert refused["api"]["status"] == 429 and refused["api"]["retry after"], refused["api"]


def test_a_keyed_replay_whose_job_was_purged_is_410_job_purged_alike(both):
    body = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
    keyed = {"Idempotency-Key": "purged-1"}
    for side, server in both.servers.items():
        both.ids[side]["keyed"] = server("POST", f"{URL}/jobs", json=body, headers=dict(keyed)).json()["id"]
    both.purge("keyed")
    answers = both.ask("POST", "/jobs", body=body, headers=keyed)
    same(answers, "status", "code")
    for side in ("api", "fake"):
        answers[side]["detailed"] = sorted(answers[side]["details"])
        answers[side]["names the job"] = both.ids[side]["keyed"] == answers[side]["details"]["job_id"]
    same(answers, "detailed", "names the job")
    same(both.ask("GET", "/jobs/{keyed}"), "status", "code")


@pytest.mark.parametrize("method, path", [("GET", "/no-such-route"), ("PUT", "/jobs"), ("GET", "/jobs/x/y/z")])
def test_a_method_and_path_no_route_takes_is_refused_alike(both, method, path):
    same(both.ask(method, path), "status", "code", "message")


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/jobs/{done}", None), ("GET", "/jobs/no-such-job", None), ("GET", "/jobs", None),
    ("POST", "/jobs/status", {"job_ids": ["{done}"]}), ("POST", "/jobs", {"type": "no.such.type"}),
    ("POST", "/jobs", {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}),
    ("DELETE", "/jobs/{queued}", None), ("DELETE", "/jobs/{done}", None),
    ("GET", "/jobs/{done}/artifacts", None), ("GET", "/jobs/{done}/artifacts/report.txt", None),
    ("GET", "/job-types", None)])
def test_answers_say_alike_how_they_may_be_cached(both, method, path, body):
    same(both.ask(method, path, body=body), "status", "cache")


def test_an_unchanged_read_answered_304_says_how_it_may_be_cached_alike(both):
    unchanged = both.ask("GET", "/jobs/{done}", etag_of=("GET", "/jobs/{done}"))
    same(unchanged, "status", "cache")
    assert unchanged["api"]["status"] == 304 and unchanged["api"]["cache"], unchanged["api"]


def test_the_job_types_are_listed_alike(both):
    answers = both.ask("GET", "/job-types")
    same(answers, "status", "body")
    assert "demo.steps" in {t["type"] for t in answers["api"]["body"]["job_types"]}  # alike is not enough


def test_a_job_carries_the_same_fields_in_every_answer(both):
    answers = {side: {} for side in ("api", "fake")}
    read = both.ask("GET", "/jobs/{done}")
    listed = both.ask("GET", "/jobs")
    batch = both.ask("POST", "/jobs/status", body={"job_ids": ["{queued}"]})
    made = both.ask("POST", "/jobs", body={"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    for side in ("api", "fake"):
        answers[side]["fields"] = {
            "read": sorted(read[side]["body"]), "listed": sorted(listed[side]["body"]["jobs"][0]),
            "batch": sorted(batch[side]["body"]["jobs"][both.ids[side]["queued"]]),
            "submitted": sorted(made[side]["body"])}
    same(answers, "fields")


def test_a_rerun_past_the_tenants_quota_is_refused_alike_with_retry_after(both):
    both.limit_unfinished(1)  # one job of the fixture is queued
    refused = both.ask("POST", "/jobs/{done}/rerun", body={})
    same(refused, "status", "code", "message", "details", "retry after")
    assert refused["api"]["status"] == 429 and refused["api"]["retry after"], refused["api"]


@pytest.mark.parametrize("kept", [{"type": "no.such.type"}, {"type": "maintenance.health_check"},
                                  {"payload": {"steps": 0, "step_ms": 0}}])
def test_a_rerun_of_a_type_no_longer_taken_or_a_payload_its_model_refuses_is_refused_alike(both, kept):
    """A job finished under a type since removed (or one only maintenance runs), or with a
    payload its type's model no longer takes, runs again no more."""
    both.keep("done", **kept)
    refused = both.ask("POST", "/jobs/{done}/rerun", body={})
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 422, refused["api"]


def test_a_rerun_whose_payload_object_is_gone_is_refused_alike(both):
    both.submit("kept", {"type": "demo.outputs", "payload": {"pad": "p" * LARGE_RESULT_BYTES}})
    both.finish("kept")
    both.lose_payload("kept")
    read = both.ask("GET", "/jobs/{kept}")
    for side in ("api", "fake"):
        read[side]["shown"] = {f: read[side]["body"].get(f) for f in ("payload", "gone")}
    same(read, "status", "shown")
    refused = both.ask("POST", "/jobs/{kept}/rerun", body={})
    same(refused, "status", "code", "said")
    assert refused["api"]["status"] == 410, refused["api"]


@pytest.mark.parametrize("body", [{"delay_seconds": -1}, {"type": "demo.sleep"}, {"run_at": "tomorrow"},
                                  {"delay_seconds": 5, "run_at": "2027-01-31T09:00:00Z"}])
def test_a_rerun_body_the_api_refuses_is_refused_alike(both, body):
    refused = both.ask("POST", "/jobs/{done}/rerun", body=body)
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 400, refused["api"]


STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}
BEYOND_SCHEDULE = [{"run_at": (datetime.now(timezone.utc) + timedelta(days=400)).isoformat()},
                   {"delay_seconds": MAX_SCHEDULE_S + 1}]


@pytest.mark.parametrize("replayed", [
    {"type": "no.such.type", "payload": {}}, {"payload": {}}, {"type": "demo.steps", "payload": {"steps": 0}},
    {**STEPS, **BEYOND_SCHEDULE[0]}, {**STEPS, **BEYOND_SCHEDULE[1]}])
def test_a_keyed_replay_the_api_refuses_before_its_key_is_refused_alike(both, replayed):
    """The body, its type and its payload are checked before the key is looked up: a used key
    with a body the API refuses is that body's refusal, not a conflict."""
    keyed = {"Idempotency-Key": "checked-1"}
    same(both.ask("POST", "/jobs", body=STEPS, headers=keyed), "status")
    refused = both.ask("POST", "/jobs", body=replayed, headers=keyed)
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] in (400, 422), refused["api"]


@pytest.mark.parametrize("start", BEYOND_SCHEDULE)
def test_a_start_further_ahead_than_a_job_may_wait_is_refused_alike(both, start):
    for path, body in (("/jobs", {**STEPS, **start}), ("/jobs/{done}/rerun", start)):
        refused = both.ask("POST", path, body=body)
        same(refused, "status", "code", "message", "details")
        assert refused["api"]["status"] == 400, refused["api"]


def test_a_job_no_answer_could_carry_is_413_alike(both):
    """A quote takes 2 bytes in the body and 4 in the answer (its JSON written again as a
    string): the body passes, the job it would make does not."""
    body = {"type": "demo.outputs", "payload": {"pad": '"' * 1_600_000}}
    refused = both.ask("POST", "/jobs", body=body)
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 413, refused["api"]


@pytest.mark.parametrize("path, body", [("/jobs", STEPS), ("/jobs/{done}/rerun", {})])
def test_an_idempotency_key_that_is_no_key_is_refused_alike(both, path, body):
    refused = both.ask("POST", path, body=body, headers={"Idempotency-Key": "k" * 256})
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 400, refused["api"]


@pytest.mark.parametrize("params", [{"type": ""}, {"type": "Demo Steps"}, {"status": "completed", "type": "a/b"},
                                    {"status": "done"}, {"limit": "0"}, {"limit": "many"}, {"cursor": ""}])
def test_a_listing_query_the_api_refuses_is_refused_alike(both, params):
    """`jobpipe list --type ""` (or a name no job type can have) is the API's 400; the fake
    listed no jobs, so the CLI's tests saw an empty listing where a user sees a refusal."""
    refused = both.ask("GET", "/jobs", params=params)
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 400, refused["api"]


def test_a_keyed_submit_at_a_time_with_no_utc_date_is_taken_and_answered_again_alike(both):
    """`jobpipe submit ... --run-at 0001-01-01T00:00:00+14:00`: a start in the past, which the API
    takes (the job starts now) and compares as written, having no UTC date. The test API failed
    with OverflowError converting it to UTC."""
    body = {**STEPS, "run_at": "0001-01-01T00:00:00+14:00"}
    keyed = {"Idempotency-Key": "year-one-1"}
    answers = {}
    for side, server in both.servers.items():
        first, again = (server("POST", f"{URL}/jobs", json=body, headers=dict(keyed)) for _ in range(2))
        answers[side] = {"statuses": [first.status_code, again.status_code],
                         "same job": first.json()["id"] == again.json()["id"]}
    same(answers, "statuses", "same job")
    assert answers["api"] == {"statuses": [202, 202], "same job": True}


def test_a_batch_naming_an_id_of_undecodable_bytes_is_refused_alike(both):
    """`jobpipe status "$ID"` with bytes that are not UTF-8 in ID sends a lone surrogate, which
    the API refuses (400); the test API failed with UnicodeEncodeError tagging its answer."""
    refused = both.ask("POST", "/jobs/status", body={"job_ids": ["{done}", "caf\udce9"]})
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 400, refused["api"]


@pytest.mark.parametrize("ids", [["{done}", "j" * 129], [f"id-{i}" for i in range(101)]], ids=["overlong", "101"])
def test_a_batch_naming_an_id_no_job_can_have_or_too_many_is_refused_alike(both, ids):
    """`jobpipe status` with an id past 128 characters (a pasted log line) or more ids than a
    batch takes: the API refuses the batch (400), where the test API answered the id not_found
    and the batch whole, so the client's tests saw an answer users never get."""
    refused = both.ask("POST", "/jobs/status", body={"job_ids": ids})
    same(refused, "status", "code", "message", "details")
    assert refused["api"]["status"] == 400, refused["api"]
