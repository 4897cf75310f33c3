"""JobpipeClient without sockets: fallback order, error typing, paging, waiting and ETags, and
servers that answer badly (late, cut off, the wrong shape, in a loop)."""
import json
import ssl
import time

import pytest
import requests
import urllib3

from jobpipe_client import (
    Backoff,
    JobpipeAnswerError,
    JobpipeClient,
    JobpipeClientError,
    JobpipeUnavailableError,
    ResultGoneError,
    SubmitOutcomeUnknownError,
    WaitTimeoutError,
)
from jobpipe_client.transport import THROTTLE_FIRST_WAIT_S
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, FakeTime, failing, make_response, throttling
from tests.unit.bad_servers import Body, answering, at_most, raising, streamed

PRIMARY, FALLBACK, SPARE = "http://primary.test", "http://fallback.test", "http://spare.test"
STEPS = {"steps": 2, "step_ms": 0}  # a demo.steps payload the API takes


def make_client(servers, time=None, **kwargs):
    session = FakeSession(servers)
    time = time or FakeTime()
    urls = list(servers)
    client = JobpipeClient(urls[0], "tok", urls[1:], session=session, sleep=time.sleep, clock=time.clock, **kwargs)
    return client, session


def test_submit_sends_the_job_and_a_fresh_idempotency_key():
    api = FakeApi()
    client, session = make_client({PRIMARY: api})
    job = client.submit("demo.steps", STEPS, priority="high", scope="p-1")
    assert job["type"] == "demo.steps" and job["id"] in api.jobs
    method, path, sent = api.requests[0]
    assert (method, path) == ("POST", "/jobs")
    assert sent["json"] == {"type": "demo.steps", "payload": STEPS, "delay_seconds": 0,
                            "priority": "high", "scope": "p-1"}
    first_key = sent["headers"]["Idempotency-Key"]
    client.submit("demo.steps", STEPS)
    assert api.requests[1][2]["headers"]["Idempotency-Key"] != first_key
    client.submit("demo.steps", STEPS, idempotency_key="order-7")
    assert api.requests[2][2]["headers"]["Idempotency-Key"] == "order-7"
    assert all(sent["headers"]["Authorization"] == "Bearer tok" for _, _, sent in api.requests)
    assert "Authorization" not in session.headers  # the caller's session is left as it was given


def test_submit_sends_run_at_as_iso_8601():
    from datetime import datetime, timezone

    api = FakeApi()
    client, _ = make_client({PRIMARY: api})
    client.submit("demo.steps", STEPS, run_at=datetime(2027, 1, 31, 9, tzinfo=timezone.utc))
    client.submit("demo.steps", STEPS, run_at="2027-02-01T09:00:00+01:00")
    assert [r[2]["json"]["run_at"] for r in api.requests] == ["2027-01-31T09:00:00+00:00", "2027-02-01T09:00:00+01:00"]


@pytest.mark.parametrize("down", ["refused", "timeout", "500", "502", "503"])
def test_a_failing_primary_falls_back_and_the_next_call_tries_it_first(down):
    api = FakeApi()
    job = api.add()
    client, session = make_client({PRIMARY: failing(down), FALLBACK: api})
    assert client.get(job["id"])["id"] == job["id"]
    assert client.transport.last_url == FALLBACK
    client.get(job["id"])
    assert session.calls == [(PRIMARY, "GET"), (FALLBACK, "GET")] * 2


def test_fallbacks_are_tried_in_order_and_the_primary_wins_once_back():
    api = FakeApi()
    job = api.add()
    servers = {PRIMARY: failing("refused"), FALLBACK: failing("503"), SPARE: api}
    client, session = make_client(servers)
    client.get(job["id"])
    assert [base for base, _ in session.calls] == [PRIMARY, FALLBACK, SPARE]
    servers[PRIMARY] = api
    session.calls.clear()
    client.get(job["id"])
    assert session.calls == [(PRIMARY, "GET")] and client.transport.last_url == PRIMARY


def test_a_4xx_is_an_answer_raised_with_the_api_code_and_never_retried_elsewhere():
    client, session = make_client({PRIMARY: FakeApi(), FALLBACK: FakeApi()})
    with pytest.raises(JobpipeClientError) as raised:
        client.get("no-such-job")
    assert raised.value.status == 404 and raised.value.code == "job_not_found"
    assert "not found" in raised.value.message
    assert [base for base, _ in session.calls] == [PRIMARY]


def refusing(status, body):
    """A server in front of the API (a proxy, a CDN, a gateway) that refuses every request."""
    def answer(method, url, **_):
        return make_response(method, url, status, body)
    return answer


# What answers 4xx before jobpipe's function runs: another API Gateway stage or a proxy (their
# own shapes), and this stack's gateway (its responses in the API's shape, with its own codes).
IN_FRONT = {
    "gateway-403": refusing(403, {"message": "Missing Authentication Token"}),
    "proxy-404-html": refusing(404, b"<html><body>404 Not Found</body></html>"),
    "proxy-413": refusing(413, b"body too large"),
    "route_not_found": refusing(404, {"error": {"code": "route_not_found", "message": "no route matches"}}),
    "gateway_refused": refusing(403, {"error": {"code": "gateway_refused", "message": "Forbidden"}}),
}


@pytest.mark.parametrize("refusal", list(IN_FRONT))
def test_a_4xx_the_api_did_not_answer_falls_back_like_any_error(refusal):
    """rq-engine's clients fall back on any error: a URL whose 4xx did not come from jobpipe's
    function (nothing ran there) is a URL that failed, so the fallback is asked."""
    api = FakeApi()
    job = api.add()
    client, session = make_client({PRIMARY: IN_FRONT[refusal], FALLBACK: api})
    assert client.get(job["id"])["id"] == job["id"]
    assert session.calls == [(PRIMARY, "GET"), (FALLBACK, "GET")] and client.transport.last_url == FALLBACK
    made = client.submit("demo.steps", STEPS, idempotency_key="order-3")
    assert made["id"] in api.jobs and api.requests[-1][2]["headers"]["Idempotency-Key"] == "order-3"


def test_a_4xx_in_another_shape_keeps_what_the_gateway_said_when_no_url_answers():
    # (A 429 is a throttle, asked again: test_a_url_throttling_for_the_whole_timeout_fails_over...)
    for refusal, code, message in (("gateway-403", "http_403", "Missing Authentication Token"),
                                   ("proxy-413", "http_413", "body too large"),
                                   ("route_not_found", "route_not_found", "no route matches")):
        for servers in ({PRIMARY: IN_FRONT[refusal]}, {PRIMARY: IN_FRONT[refusal], FALLBACK: failing("refused")},
                        {PRIMARY: IN_FRONT[refusal], FALLBACK: IN_FRONT["proxy-404-html"]}):
            client, session = make_client(servers)
            with pytest.raises(JobpipeClientError) as raised:
                client.get("some-id")
            assert (raised.value.code, raised.value.message) == (code, message)
            assert [base for base, _ in session.calls] == list(servers)
    # A URL that reached the API and failed (a 5xx) makes it an outage, which names both.
    client, _ = make_client({PRIMARY: IN_FRONT["gateway-403"], FALLBACK: failing("503")})
    with pytest.raises(JobpipeUnavailableError) as outage:
        client.get("some-id")
    assert dict(outage.value.failures) == {PRIMARY: "HTTP 403, not from the jobpipe API",
                                           FALLBACK: "HTTP 503 store_unavailable: down"}


def test_a_submit_refused_in_front_after_a_url_that_may_have_made_it_names_its_key():
    client, _ = make_client({PRIMARY: failing("timeout"), FALLBACK: IN_FRONT["gateway-403"]})
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        client.submit("demo.steps", idempotency_key="order-12")
    assert raised.value.idempotency_key == "order-12"
    assert dict(raised.value.failures)[FALLBACK] == "HTTP 403, not from the jobpipe API"


def test_api_gateways_own_throttle_in_the_apis_shape_is_asked_again():
    """This stack's gateway answers its throttle (429) through its DEFAULT_4XX response, in the
    API's shape with code `gateway_refused`: the function did not run, so it is a throttle."""
    api = FakeApi()
    calls = []

    def gateway_throttle(method, url, **kwargs):
        calls.append(url)
        if len(calls) <= 2:
            return make_response(method, url, 429, {"error": {"code": "gateway_refused", "message": "Too Many Requests"}})
        return api(method, url, **kwargs)

    client, _ = make_client({PRIMARY: gateway_throttle})
    assert client.submit("demo.steps", STEPS)["id"] in api.jobs
    assert len(calls) == 3 and client.transport.throttled == 2


def test_when_every_url_fails_the_error_says_why_for_each():
    client, _ = make_client({PRIMARY: failing("refused"), FALLBACK: failing("timeout")})
    with pytest.raises(JobpipeUnavailableError) as raised:
        client.get("x")
    reasons = dict(raised.value.failures)
    assert "connection failed" in reasons[PRIMARY] and "timed out" in reasons[FALLBACK]


@pytest.mark.parametrize("job_id", ["../jobs", "a/b", "a?b", "", " ", "%2e"])
def test_ids_that_would_change_the_path_are_refused_before_any_request(job_id):
    client, session = make_client({PRIMARY: FakeApi()})
    with pytest.raises(JobpipeClientError) as raised:
        client.get(job_id)
    assert raised.value.code == "invalid_job_id" and session.calls == []


def test_status_many_keeps_order_marks_unknown_and_splits_past_100_ids():
    api = FakeApi()
    ids = [api.add()["id"] for _ in range(150)]
    client, session = make_client({PRIMARY: api})
    wanted = [ids[149], "missing", *ids[:120]]
    jobs = client.status_many(wanted + [ids[0]])
    assert list(jobs) == wanted
    assert jobs["missing"] == {"id": "missing", "status": "not_found"}
    assert [len(sent["json"]["job_ids"]) for _, _, sent in api.requests] == [100, 22]


def test_wait_many_returns_a_large_result_whole_not_the_batch_routes_claim_check():
    """A batch poll shows a payload or result kept in S3 as `{"claim_check": {"bytes": n}}`; the
    final state wait_many returns (and on_change sees) carries the job's result itself, read
    once with GET /jobs/{id} when the job ends."""
    api = FakeApi(inline_limit=1000)
    big, pad = {"text": "r" * 5000}, {"pad": "p" * 2000}
    small = api.add(status="completed", result={"n": 1}, version=4)
    job = api.add(status="running", payload=pad, version=2)
    api.script(job["id"], {}, {"status": "completed", "result": big, "version": 3})
    seen = []
    client, _ = make_client({PRIMARY: api})
    final = client.wait_many([job["id"], small["id"]], timeout=600, on_change=seen.append)
    assert final[job["id"]]["result"] == big and final[job["id"]]["payload"] == pad
    assert final[small["id"]]["result"] == {"n": 1}
    assert seen[-1]["result"] == big
    assert [path for method, path, _ in api.requests if method == "GET"] == [f"/jobs/{job['id']}"]


def test_wait_many_given_jobs_a_batch_showed_ended_returns_their_large_results_whole():
    """Jobs given as status_many showed them, already ended with their result in S3 (the
    `{"claim_check": ...}` in its place): wait_many reads each whole once, as it does one that
    ends while it waits, instead of returning the placeholder as its final state."""
    api = FakeApi(inline_limit=1000)
    big = {"text": "r" * 5000}
    ended = api.add(status="completed", result=big, version=4)
    small = api.add(status="failed", result={"n": 1}, version=3)
    client, _ = make_client({PRIMARY: api})
    shown = client.status_many([ended["id"], small["id"]])
    assert shown[ended["id"]]["result"] == {"claim_check": {"bytes": 5011}}  # its JSON as stored: {"text":"r…r"}
    seen = []
    final = client.wait_many(shown.values(), timeout=600, on_change=seen.append)
    assert final[ended["id"]]["result"] == big and final[small["id"]]["result"] == {"n": 1}
    assert [j["result"] for j in seen if j["id"] == ended["id"]][-1] == big
    assert [path for method, path, _ in api.requests if method == "GET"] == [f"/jobs/{ended['id']}"]


def test_a_listing_shows_a_large_result_as_its_claim_check_and_a_wait_on_it_reads_it_whole():
    """GET /jobs shows a payload or result kept in S3 as `{"claim_check": {"bytes": n}}`, n the
    bytes of its JSON as stored; a job a listing showed ended that way, given to wait or
    wait_many, comes back with the value itself, never the placeholder."""
    api = FakeApi(inline_limit=1000)
    big = {"text": "r" * 5000}
    ended = api.add(status="completed", result=big, version=4)
    small = api.add(status="completed", result={"n": 1}, version=3)
    client, _ = make_client({PRIMARY: api})
    listed = {job["id"]: job for job in client.list(status="completed")}
    assert listed[ended["id"]]["result"] == {"claim_check": {"bytes": 5011}}  # {"text":"r…r"}
    assert listed[small["id"]]["result"] == {"n": 1}
    assert client.wait(listed[ended["id"]], timeout=600)["result"] == big
    final = client.wait_many(listed.values(), timeout=600)
    assert final[ended["id"]]["result"] == big and final[small["id"]]["result"] == {"n": 1}


def test_a_listing_whose_jobs_would_pass_what_an_answer_carries_goes_on_from_the_next_page():
    """The API ends a page before the job that would take its answer past what Lambda returns
    (100 payloads just under the inline limit would), its cursor going on from that job:
    list(limit=100) still gives the 100 jobs, newest first, over two requests."""
    api = FakeApi()
    jobs = [api.add(status="completed", payload={"pad": "p" * 63_000}) for _ in range(100)]
    client, _ = make_client({PRIMARY: api})
    assert [j["id"] for j in client.list(limit=100)] == [j["id"] for j in reversed(jobs)]
    pages = [sent["params"] for _, path, sent in api.requests if path == "/jobs"]
    assert [page["limit"] for page in pages][0] == 100 and len(pages) == 2 and pages[1]["limit"] < 100


def test_wait_many_reads_whole_the_ended_jobs_a_full_batch_showed_short():
    """A batch whose jobs would take its answer past what Lambda returns shows those past that
    point short, their results as `{"claim_check": ...}` although kept in the record: wait_many
    reads each of them whole once, and returns every result itself."""
    api = FakeApi()
    results = [{"n": n, "text": "r" * 63_000} for n in range(100)]  # each kept in the record
    jobs = [api.add(status="completed", result=result, version=2) for result in results]
    client, _ = make_client({PRIMARY: api})
    final = client.wait_many([j["id"] for j in jobs], timeout=600)
    assert [final[j["id"]]["result"] for j in jobs] == results
    read_whole = [path for method, path, _ in api.requests if method == "GET"]
    assert read_whole and read_whole == [f"/jobs/{j['id']}" for j in jobs[-len(read_whole):]]


def test_wait_given_a_job_a_batch_showed_ended_returns_its_large_result_whole():
    api = FakeApi(inline_limit=1000)
    big = {"text": "r" * 5000}
    ended = api.add(status="completed", result=big, version=4)
    client, _ = make_client({PRIMARY: api})
    assert client.wait(client.status_many([ended["id"]])[ended["id"]], timeout=600)["result"] == big


class RemovedOnceSeenEnded(FakeApi):
    """A job removed (purged, or expired) right after a batch poll showed it ended."""

    def _read(self, job_id):
        job = super()._read(job_id)
        if job is not None and job["status"] == "completed":
            del self.jobs[job_id]
        return job


def test_wait_many_ends_a_job_removed_before_its_whole_read_as_not_found():
    """A job the batch showed ended with its result in S3 is read whole; removed in between,
    the wait ends it `not_found`, as a batch ends an unknown id, instead of raising for it and
    losing every other job's final state."""
    api = RemovedOnceSeenEnded(inline_limit=1000)
    job = api.add(status="running", version=2)
    other = api.add(status="failed", version=3)
    api.script(job["id"], {}, {"status": "completed", "result": {"text": "r" * 5000}, "version": 3})
    client, _ = make_client({PRIMARY: api})
    final = client.wait_many([job["id"], other["id"]], timeout=600)
    assert final[job["id"]] == {"id": job["id"], "status": "not_found"}
    assert final[other["id"]]["status"] == "failed"


def test_wait_many_raises_a_whole_read_refused_for_another_reason_than_a_removed_job():
    """Only `job_not_found` means the job went away; any other refusal of the whole read (here
    403) is raised as the refusal it is, not turned into a job that ended `not_found`."""
    api = FakeApi(inline_limit=1000)
    job = api.add(status="running", version=2)
    api.script(job["id"], {}, {"status": "completed", "result": {"text": "r" * 5000}, "version": 3})

    def refusing_whole_reads(method, url, **kwargs):
        if method == "GET" and url.endswith(job["id"]):
            return make_response(method, url, 403, {"error": {"code": "forbidden", "message": "not yours"}})
        return api(method, url, **kwargs)

    client, _ = make_client({PRIMARY: refusing_whole_reads})
    with pytest.raises(JobpipeClientError) as refused:
        client.wait_many([job["id"]], timeout=600)
    assert refused.value.code == "forbidden"


def test_a_result_of_the_tenants_that_holds_a_claim_check_key_is_no_claim_check():
    """Only `{"claim_check": {...}}` alone stands for a value kept in S3: a result of the
    handler's own with such a key among others is the value, and an ended job given with it
    is not read again."""
    api = FakeApi()
    job = api.add(status="completed", result={"claim_check": "ticket 12", "rows": 3})
    client, _ = make_client({PRIMARY: api})
    assert client.wait_many([job]) == {job["id"]: job} and api.requests == []


def test_list_follows_cursors_up_to_the_limit():
    api = FakeApi()
    for _ in range(7):
        api.add()
    api.add(status="failed")
    client, _ = make_client({PRIMARY: api})
    assert len(list(client.list())) == 8
    newest = list(api.jobs)[::-1]
    assert [j["id"] for j in client.list(limit=5)] == newest[:5]
    assert [j["status"] for j in client.list(status="failed")] == ["failed"]
    api.requests.clear()
    assert len(list(client.list(limit=150))) == 8
    assert api.requests[0][2]["params"]["limit"] == 100


@pytest.mark.parametrize("limit", [-1, "5", 2.5, True])
def test_a_listing_limit_that_is_no_count_of_jobs_is_refused_at_the_call(limit):
    """`list(limit=-1)` listed nothing and `limit="5"` raised a TypeError from inside the
    generator at the first `next()`: the call itself refuses them now, before any request."""
    api = FakeApi()
    api.add()
    client, _ = make_client({PRIMARY: api})
    with pytest.raises(ValueError, match="limit must be a whole number"):
        client.list(limit=limit)
    assert api.requests == [] and list(client.list(limit=0)) == []


@pytest.mark.parametrize("bound", [{"timeout": "5"}, {"give_up_after": "60"}, {"timeout": True},
                                   {"started": "0"}])
def test_a_wait_bound_given_as_text_is_a_value_error_not_a_type_error(bound):
    api = FakeApi()
    job = api.add(status="running")
    client, _ = make_client({PRIMARY: api})
    with pytest.raises(ValueError, match="a wait's"):
        client.wait(job["id"], **bound)
    with pytest.raises(ValueError, match="a wait's"):
        client.wait_many([job["id"]], **bound)


def test_wait_backs_off_while_nothing_changes_and_resets_on_a_change():
    api = FakeApi()
    job = api.add()
    unchanged = {}
    api.script(
        job["id"],
        unchanged, unchanged, unchanged,
        {"status": "running", "version": 2, "progress": {"percent": 50.0, "step": "s1", "message": "half"}},
        unchanged, unchanged, unchanged, unchanged, unchanged, unchanged, unchanged, unchanged, unchanged,
        {"status": "completed", "version": 3, "progress": {"percent": 100.0, "step": "done", "message": None}},
    )
    time = FakeTime()
    client, _ = make_client({PRIMARY: api}, time)
    seen = []
    final = client.wait(job, on_change=lambda j: seen.append((j["status"], j["version"])))
    assert final["status"] == "completed" and final["version"] == 3
    assert seen == [("queued", 1), ("running", 2), ("completed", 3)]
    assert time.sleeps[:4] == [2.0, 3.0, 4.5, 6.75]
    assert time.sleeps[4] == 2.0  # the poll after the change is back at the start
    assert max(time.sleeps) == 30.0 and time.sleeps[-1] == 30.0
    # every poll that saw no change was a 304, but the first: it had no tag to send yet
    assert api.not_modified == 11


def test_wait_from_an_id_reads_the_job_at_once():
    api = FakeApi()
    job = api.add(status="completed")
    time = FakeTime()
    client, _ = make_client({PRIMARY: api}, time)
    assert client.wait(job["id"])["status"] == "completed" and time.sleeps == []


def test_wait_gives_up_after_its_timeout_with_the_last_state():
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    client, _ = make_client({PRIMARY: api}, time)
    with pytest.raises(WaitTimeoutError) as raised:
        client.wait(job, timeout=10)
    assert raised.value.jobs[job["id"]]["status"] == "running"
    assert sum(time.sleeps) == pytest.approx(10)


def test_wait_for_an_unknown_job_raises_not_found():
    client, _ = make_client({PRIMARY: FakeApi()})
    with pytest.raises(JobpipeClientError) as raised:
        client.wait("missing")
    assert raised.value.code == "job_not_found"


def test_wait_many_believes_the_first_not_found_of_a_job_it_was_given():
    """Only a child the wait found (made in the write that listed it: a replica may lag) is
    asked again; an id the caller gave ends `not_found` at the first poll, with no pause."""
    api = FakeApi()
    time = FakeTime()
    client, _ = make_client({PRIMARY: api}, time=time)
    assert client.wait_many(["missing"]) == {"missing": {"id": "missing", "status": "not_found"}}
    assert len(api.requests) == 1 and time.sleeps == []


def test_the_polls_of_a_wait_are_conditional_once_it_has_an_answers_tag():
    """A job that has not changed costs a 304, not its whole state again: each poll after the
    first sends back the tag of the last answer, the batch's and a lone job's alike."""
    api = FakeApi()
    a, b, c = api.add("running"), api.add("running"), api.add("running")
    for job in (a, b, c):
        api.script(job["id"], {}, {}, {"status": "completed", "version": 5})
    client, _ = make_client({PRIMARY: api})
    client.wait_many([a["id"], b["id"]])
    client.wait(c["id"])
    tags = {route: [sent["headers"].get("If-None-Match") for method, path, sent in api.requests
                    if (method, path) == route] for route in [("POST", "/jobs/status"), ("GET", f"/jobs/{c['id']}")]}
    for route, sent in tags.items():
        assert len(sent) >= 3 and sent[0] is None and all(sent[1:]), (route, sent)


def test_a_304_without_a_tag_keeps_the_wait_conditional():
    """A proxy may drop the ETag of a 304 (RFC 9110 asks for it, not every cache sends it): the
    job has not changed, so the tag held still stands, and the next poll sends it again."""
    api = FakeApi()
    job = api.add("running")
    api.script(job["id"], {}, {}, {}, {"status": "completed", "version": 5})

    def untagged_304s(method, url, **kwargs):
        response = api(method, url, **kwargs)
        if response.status_code == 304:
            del response.headers["ETag"]
        return response

    client, _ = make_client({PRIMARY: untagged_304s})
    assert client.wait(job["id"])["status"] == "completed"
    sent = [sent["headers"].get("If-None-Match") for method, _, sent in api.requests if method == "GET"]
    assert len(sent) >= 4 and sent[0] is None and all(sent[1:]), sent


def test_wait_many_polls_in_one_batch_and_ends_unknown_ids_as_not_found():
    api = FakeApi()
    a, b = api.add(), api.add()
    api.script(a["id"], {}, {"status": "completed", "version": 2})
    api.script(b["id"], {"status": "running", "version": 2}, {}, {"status": "failed", "version": 3})
    client, _ = make_client({PRIMARY: api}, backoff=lambda: Backoff(initial_s=1, maximum_s=1))
    changes = []
    final = client.wait_many([a["id"], b, "missing"], on_change=lambda j: changes.append((j["id"], j["status"])))
    assert {i: j["status"] for i, j in final.items()} == {a["id"]: "completed", b["id"]: "failed", "missing": "not_found"}
    assert list(final) == [a["id"], b["id"], "missing"]
    assert changes[0] == (b["id"], "queued")
    assert (a["id"], "completed") in changes and (b["id"], "running") in changes
    assert {path for _, path, _ in api.requests} == {"/jobs/status"}


def test_the_fallback_serves_the_polls_of_a_wait():
    api = FakeApi()
    job = api.add()
    api.script(job["id"], {"status": "completed", "version": 2})
    client, session = make_client({PRIMARY: failing("refused"), FALLBACK: api})
    assert client.wait(job)["status"] == "completed"
    assert [base for base, _ in session.calls] == [PRIMARY, FALLBACK]


def test_cancel_returns_the_job_as_the_api_left_it():
    api = FakeApi()
    job = api.add()
    client, _ = make_client({PRIMARY: api})
    assert client.cancel(job["id"])["status"] == "canceled"
    assert api.requests[-1][:2] == ("DELETE", f"/jobs/{job['id']}")


def test_result_returns_the_result_as_recorded_and_raises_when_its_object_is_gone():
    """GET /jobs/{id} shows a job whose result object is gone as recorded, `result` null and
    named in `gone`: `result()` does not pass that null off as the result."""
    api = FakeApi()
    done = api.add(status="completed", result={"n": 1})
    running = api.add(status="running")
    gone = api.add(status="completed", result=None, gone=["result"], finished_at="2026-01-01T00:01:00.000Z")
    payload_gone = api.add(status="completed", result=[1], payload=None, gone=["payload"])
    client, _ = make_client({PRIMARY: api})
    assert client.result(done["id"]) == {"n": 1}
    assert client.result(running["id"]) is None
    assert client.result(payload_gone["id"]) == [1]
    with pytest.raises(ResultGoneError) as raised:
        client.result(gone["id"])
    assert (raised.value.code, raised.value.job_id) == ("blob_not_found", gone["id"])
    assert raised.value.job["finished_at"] == "2026-01-01T00:01:00.000Z"
    assert str(raised.value) == (f"the result of job {gone['id']} (completed) is gone: its stored object no longer "
                                 "exists (blob_not_found)")
    with pytest.raises(JobpipeClientError) as unknown:
        client.result("no-such-job")
    assert unknown.value.code == "job_not_found"


def test_a_client_needs_a_url():
    with pytest.raises(ValueError):
        JobpipeClient(" ", "tok")


def test_a_throttled_request_is_asked_again_after_short_jittered_waits():
    api = FakeApi()
    server = throttling(3, api)
    time = FakeTime()
    client, session = make_client({PRIMARY: server}, time=time)
    job = client.submit("demo.steps", STEPS)
    assert job["id"] in api.jobs and len(api.jobs) == 1
    assert session.calls == [(PRIMARY, "POST")] * 4
    assert client.transport.throttled == 3
    first, second, third = time.sleeps
    assert 0.025 <= first <= 0.05 and 0.05 <= second <= 0.1 and 0.1 <= third <= 0.2


def test_a_throttle_honours_retry_after_and_keeps_the_idempotency_key():
    api = FakeApi()
    keys = []

    def recording(method, url, **kwargs):
        keys.append(kwargs["headers"]["Idempotency-Key"])
        return api(method, url, **kwargs)

    time = FakeTime()
    client, _ = make_client({PRIMARY: throttling(1, recording, retry_after="0.3")}, time=time)
    client.submit("demo.steps", STEPS, idempotency_key="order-9")
    assert time.sleeps == [0.3] and keys == ["order-9"]


def test_a_url_throttling_for_the_whole_timeout_fails_over_and_is_no_answer():
    api = FakeApi()
    job = api.add()
    time = FakeTime()
    client, _ = make_client({PRIMARY: throttling(10**6, api), FALLBACK: api}, time=time, timeout=2)
    assert client.get(job["id"])["id"] == job["id"]
    assert client.transport.last_url == FALLBACK
    assert sum(time.sleeps) < 2
    alone, _ = make_client({PRIMARY: throttling(10**6, api)}, timeout=2)
    with pytest.raises(JobpipeUnavailableError) as raised:
        alone.submit("demo.steps")
    assert not isinstance(raised.value, SubmitOutcomeUnknownError)  # a throttle never ran the function
    assert "throttled (HTTP 429)" in str(raised.value)


@pytest.mark.parametrize("down", ["timeout", "502", "503"])
def test_a_submit_without_an_answer_that_may_have_arrived_names_its_idempotency_key(down):
    client, _ = make_client({PRIMARY: failing(down), FALLBACK: failing("refused")})
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        client.submit("demo.steps", idempotency_key="order-11")
    assert raised.value.idempotency_key == "order-11"
    assert "may have been accepted" in str(raised.value) and "order-11" in str(raised.value)
    with pytest.raises(SubmitOutcomeUnknownError) as generated:
        client.submit("demo.steps")
    assert generated.value.idempotency_key.startswith("client-")


def test_a_submit_no_url_received_is_plainly_unavailable():
    client, _ = make_client({PRIMARY: failing("refused")})
    with pytest.raises(JobpipeUnavailableError) as raised:
        client.submit("demo.steps")
    assert not isinstance(raised.value, SubmitOutcomeUnknownError)
    assert raised.value.may_have_arrived is False


def proxy_error(cause):
    """What requests raises when the connection to an HTTP(S)_PROXY fails with `cause`."""
    proxy = urllib3.HTTPConnectionPool("proxy.test", 3128)
    wrapped = urllib3.exceptions.ProxyError("Unable to connect to proxy", cause)
    return requests.exceptions.ProxyError(urllib3.exceptions.MaxRetryError(proxy, "/jobs", reason=wrapped))


@pytest.mark.parametrize("cause", [
    urllib3.exceptions.NameResolutionError("proxy.test", None, OSError("Name or service not known")),
    OSError("Tunnel connection failed: 407 Proxy Authentication Required"),
    urllib3.exceptions.ConnectTimeoutError(None, "Connection to proxy.test timed out"),
])
def test_a_submit_whose_proxy_could_not_be_reached_is_plainly_unavailable(cause):
    """urllib3 raises ProxyError only before the connection through the proxy is made (a proxy
    that cannot be resolved, reached, or refuses the tunnel): the API was never asked, so the
    submit made no job and the error says so, without a key to repeat it with."""
    client, _ = make_client({PRIMARY: raising(proxy_error(cause))})
    with pytest.raises(JobpipeUnavailableError) as raised:
        client.submit("demo.steps")
    assert not isinstance(raised.value, SubmitOutcomeUnknownError)
    assert raised.value.may_have_arrived is False and "ProxyError" in str(raised.value)


def tls_error(inner):
    """What requests raises when the TLS handshake with an https URL fails with `inner`."""
    pool = urllib3.HTTPSConnectionPool("api.test", 443)
    return requests.exceptions.SSLError(urllib3.exceptions.MaxRetryError(
        pool, "/jobs", reason=urllib3.exceptions.SSLError(inner)))


def cert_unverified():
    error = ssl.SSLCertVerificationError(1, "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: "
                                            "self-signed certificate (_ssl.c:1006)")
    error.reason, error.verify_message = "CERTIFICATE_VERIFY_FAILED", "self-signed certificate"
    return error


def not_tls():
    error = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)")
    error.reason = "WRONG_VERSION_NUMBER"
    return error


@pytest.mark.parametrize("inner, said", [
    (cert_unverified(), "TLS handshake failed (certificate verify failed: self-signed certificate)"),
    (not_tls(), "TLS handshake failed (the server does not speak TLS there: is the URL http?)"),
])
def test_a_submit_whose_tls_handshake_failed_is_plainly_unavailable_and_says_why(inner, said):
    """A certificate that does not verify (self-signed, an intercepting proxy's, expired, for
    another host) or an https URL on a port that speaks plain HTTP fails in the handshake, before
    a byte of the request is sent. The submit was reported as one the API may have accepted, with
    `connection failed (SSLError)` as the only reason: it made no job, and the reason is the
    handshake's."""
    client, _ = make_client({PRIMARY: raising(tls_error(inner))})
    with pytest.raises(JobpipeUnavailableError) as raised:
        client.submit("demo.steps")
    assert not isinstance(raised.value, SubmitOutcomeUnknownError)
    assert raised.value.may_have_arrived is False and raised.value.failures == [(PRIMARY, said)]


def test_a_429_in_jobpipes_error_shape_is_the_apis_answer_not_a_throttle():
    def over_quota(method, url, **_):
        return make_response(method, url, 429, {"error": {"code": "quota_exceeded", "message": "too many unfinished jobs"}},
                             {"Retry-After": "30"})

    time = FakeTime()
    client, session = make_client({PRIMARY: over_quota, FALLBACK: FakeApi()}, time=time)
    with pytest.raises(JobpipeClientError) as raised:
        client.submit("demo.steps")
    assert (raised.value.status, raised.value.code) == (429, "quota_exceeded")
    assert session.calls == [(PRIMARY, "POST")] and time.sleeps == []  # asked once, never elsewhere
    assert raised.value.retry_after_s == 30  # when to try again, as the API said
    with pytest.raises(JobpipeClientError) as unknown:
        make_client({PRIMARY: FakeApi()})[0].get("no-such-job")
    assert unknown.value.retry_after_s is None


# -- servers that misbehave --------------------------------------------------------------------

JOB_BYTES = json.dumps({"id": "j-1", "type": "demo.steps", "status": "queued", "version": 1}).encode()


# -- reading answers ---------------------------------------------------------------------------

def test_a_body_that_trickles_in_times_out_at_the_request_deadline_not_per_read():
    time = FakeTime()
    body = Body(JOB_BYTES, time, pause=0.4)
    client, _ = make_client({PRIMARY: streamed(201, body)}, time=time, timeout=1)
    start = time.now
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        client.submit("demo.steps", idempotency_key="order-21")
    assert "timed out after 1 s" in str(raised.value) and raised.value.idempotency_key == "order-21"
    assert time.now - start == pytest.approx(1.2)  # the read that crossed the deadline, no more
    assert body.timeouts == pytest.approx([1.0, 0.6, 0.2])  # each read waits only for what is left


def test_a_body_read_in_time_is_the_answer():
    time = FakeTime()
    client, _ = make_client({PRIMARY: streamed(201, Body(JOB_BYTES, time, pause=0.001, piece=8))}, time=time, timeout=1)
    assert client.submit("demo.steps")["id"] == "j-1"


@pytest.mark.parametrize("error", [urllib3.exceptions.ProtocolError("Connection broken: IncompleteRead"),
                                   urllib3.exceptions.DecodeError("not gzip")])
def test_a_body_cut_off_or_badly_encoded_fails_over_and_a_submit_may_have_been_accepted(error):
    api = FakeApi()
    job = api.add()
    time = FakeTime()
    client, _ = make_client({PRIMARY: streamed(200, Body(JOB_BYTES, time, piece=8, error=error, fail_after=8)),
                             FALLBACK: api}, time=time)
    assert client.get(job["id"])["id"] == job["id"] and client.transport.last_url == FALLBACK
    alone, _ = make_client({PRIMARY: streamed(201, Body(JOB_BYTES, time, piece=8, error=error, fail_after=8))})
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        alone.submit("demo.steps", idempotency_key="order-22")
    assert "could not be read" in str(raised.value) and raised.value.idempotency_key == "order-22"


@pytest.mark.parametrize("exc", [
    requests.exceptions.ChunkedEncodingError("reset mid-body"),
    requests.exceptions.ContentDecodingError("not gzip"),
    requests.exceptions.TooManyRedirects("30 redirects"),
    requests.exceptions.InvalidHeader("bad header"),
    requests.exceptions.RetryError("retries"),
])
def test_any_requests_failure_is_a_failed_url_and_a_submit_may_have_been_accepted(exc):
    api = FakeApi()
    job = api.add()
    client, _ = make_client({PRIMARY: raising(exc), FALLBACK: api})
    assert client.get(job["id"])["id"] == job["id"] and client.transport.last_url == FALLBACK
    alone, _ = make_client({PRIMARY: raising(exc)})
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        alone.submit("demo.steps", idempotency_key="order-23")
    assert f"could not be read ({type(exc).__name__})" in str(raised.value)
    assert raised.value.idempotency_key == "order-23"


GOOD_JOB = {"id": "j-1", "type": "demo.steps", "status": "running", "version": 2,
            "progress": {"percent": 10.0, "step": None, "message": None}, "error": None}


@pytest.mark.parametrize("body", [
    [1, 2], {}, b"null", b"not json", b"{\"id\": \"j-1\", \"status\": NaN}", b"[" * 100_000 + b"]" * 100_000,
    {**GOOD_JOB, "id": 7}, {**GOOD_JOB, "status": None}, {**GOOD_JOB, "progress": {"percent": "abc"}},
    {**GOOD_JOB, "progress": "half"}, {**GOOD_JOB, "error": "plain string"},
    {**GOOD_JOB, "attempts": "2"}, {**GOOD_JOB, "attempts": True}, {**GOOD_JOB, "max_attempts": 3.0},
])
def test_a_job_answer_of_the_wrong_shape_is_an_answer_error(body):
    for call in (lambda c: c.get("j-1"), lambda c: c.cancel("j-1"), lambda c: c.wait("j-1")):
        client, _ = make_client({PRIMARY: answering(200, body)})
        with pytest.raises(JobpipeAnswerError) as raised:
            call(client)
        assert raised.value.url.startswith(PRIMARY) and "answered HTTP 200" in str(raised.value)


@pytest.mark.parametrize("body", [
    {}, {"jobs": [1]}, {"jobs": {}, "next_cursor": None}, {"jobs": [GOOD_JOB], "next_cursor": 5}, b"null",
])
def test_a_page_of_the_wrong_shape_is_an_answer_error(body):
    client, _ = make_client({PRIMARY: answering(200, body)})
    with pytest.raises(JobpipeAnswerError, match="not a page of jobs|not JSON"):
        list(client.list())


@pytest.mark.parametrize("body", [
    {}, b"null", {"job_ids": ["j-1"], "jobs": {}}, {"job_ids": "j-1", "jobs": {"j-1": GOOD_JOB}},
    {"job_ids": ["j-1"], "jobs": {"j-1": {**GOOD_JOB, "progress": {"percent": "abc"}}}},
])
def test_a_status_answer_of_the_wrong_shape_is_an_answer_error(body):
    for call in (lambda c: c.status_many(["j-1"]), lambda c: c.wait_many(["j-1"])):
        client, _ = make_client({PRIMARY: answering(200, body)})
        with pytest.raises(JobpipeAnswerError, match="not the jobs asked for|not JSON"):
            call(client)


def test_a_304_to_a_request_that_sent_no_tag_is_an_answer_error():
    for call in (lambda c: c.get("j-1"), lambda c: c.status_many(["j-1"]), lambda c: c.wait("j-1"),
                 lambda c: list(c.list())):
        client, _ = make_client({PRIMARY: answering(304)})
        with pytest.raises(JobpipeAnswerError, match="answered HTTP 304 to a request that was not conditional"):
            call(client)


@pytest.mark.parametrize("status, body", [(200, b"not json"), (201, b"null"), (201, {}), (201, [1]), (304, None),
                                          (202, {**GOOD_JOB, "error": "x"})])
def test_a_submit_whose_answer_is_unusable_may_have_been_accepted(status, body):
    client, _ = make_client({PRIMARY: answering(status, body)})
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        client.submit("demo.steps", idempotency_key="order-24")
    assert raised.value.idempotency_key == "order-24" and raised.value.may_have_arrived
    ((url, reason),) = raised.value.failures
    assert url == PRIMARY and f"answered HTTP {status}" in reason


# What a proxy or a half-deployed URL may answer in the API's place: a 2xx that is no answer.
UNUSABLE_2XX = {
    "html page": (200, b"<html><body>Welcome to nginx!</body></html>"),
    "wrong shape": (200, {"unexpected": True}),
    "not a job": (201, {**GOOD_JOB, "progress": {"percent": "abc"}}),
    "304 unasked": (304, None),
}
# Calls safe to send to the next URL: reads, and the POSTs made under an idempotency key.
READS_AND_KEYED = {
    "get": lambda c, job: c.get(job["id"]),
    "status_many": lambda c, job: c.status_many([job["id"]])[job["id"]],
    "list": lambda c, job: next(iter(c.list(limit=1))),
    "wait": lambda c, job: c.wait(job["id"]),
    "wait_many": lambda c, job: c.wait_many([job["id"]])[job["id"]],
    "artifacts": lambda c, job: next(iter(c.artifacts(job["id"]))),
    "job_types": lambda c, job: c.job_types(),
    "artifact": lambda c, job: c.artifact(job["id"], "notes.txt"),
    "submit": lambda c, job: c.submit("demo.steps", STEPS, idempotency_key="order-25"),
    "rerun": lambda c, job: c.rerun(job["id"], idempotency_key="order-26"),
}


@pytest.mark.parametrize("unusable", UNUSABLE_2XX.values(), ids=UNUSABLE_2XX.keys())
@pytest.mark.parametrize("call", READS_AND_KEYED.values(), ids=READS_AND_KEYED.keys())
def test_an_unusable_2xx_moves_a_read_or_a_keyed_submit_on_to_the_fallback(call, unusable):
    """A primary behind a proxy answering `200 text/html` (or any 2xx that is not what the route
    returns) ended every call with JobpipeAnswerError, exit 3 in the CLI, with a healthy fallback
    never asked. Clients fall back on any error, and an answer that cannot be read is one."""
    api = FakeApi()
    job = api.add(status="completed", payload=STEPS)
    api.add_artifact(job["id"], "notes.txt", b"hello\n")
    client, session = make_client({PRIMARY: answering(*unusable), FALLBACK: api})
    assert call(client, job) is not None
    assert client.transport.last_url == FALLBACK
    assert [base for base, _ in session.calls][:2] == [PRIMARY, FALLBACK]


def test_when_no_url_answers_usably_the_first_unusable_answer_is_raised_naming_every_url():
    client, _ = make_client({PRIMARY: answering(200, b"<html>maintenance</html>"), FALLBACK: failing("timeout")})
    with pytest.raises(JobpipeAnswerError) as raised:
        client.get("j-1")
    assert raised.value.url == f"{PRIMARY}/jobs/j-1" and "not JSON" in raised.value.reason
    assert dict(raised.value.failures).keys() == {PRIMARY, FALLBACK}
    assert str(raised.value).endswith("; no other URL gave a usable answer (http://fallback.test: timed out after 10 s)")
    with pytest.raises(SubmitOutcomeUnknownError) as unknown:
        client.submit("demo.steps", STEPS, idempotency_key="order-27")
    assert dict(unknown.value.failures).keys() == {PRIMARY, FALLBACK} and unknown.value.may_have_arrived


@pytest.mark.parametrize("status", ["queued", "running"])
@pytest.mark.parametrize("unusable", UNUSABLE_2XX.values(), ids=UNUSABLE_2XX.keys())
def test_a_cancel_answered_with_an_unusable_2xx_moves_on_to_the_fallback(unusable, status):
    """A DELETE is safe to repeat: a queued job is canceled once, a running one asked once."""
    api = FakeApi()
    job = api.add(status=status)
    client, session = make_client({PRIMARY: answering(*unusable), FALLBACK: api})
    answered = client.cancel(job["id"])
    assert [base for base, _ in session.calls] == [PRIMARY, FALLBACK]
    assert answered == api.jobs[job["id"]]
    assert (answered["status"], answered["cancel_requested"]) == (
        ("canceled", True) if status == "queued" else ("running", True))


def test_a_cancel_the_primary_applied_behind_an_unusable_answer_returns_the_canceled_job():
    """The primary canceled the job and a proxy replaced its answer: the fallback's 409
    `job_finished` is that cancel's, and the canceled job is the answer."""
    api = FakeApi()
    job = api.add(status="queued")

    def applied_then_mangled(method, url, **kwargs):
        api(method, url.replace(PRIMARY, FALLBACK), **kwargs)
        return answering(200, b"<html>proxy</html>")(method, url, **kwargs)

    client, _ = make_client({PRIMARY: applied_then_mangled, FALLBACK: api})
    assert client.cancel(job["id"])["status"] == "canceled"
    api.add(status="completed", id="j-done")
    with pytest.raises(JobpipeClientError) as refused:  # finished before: the API's refusal stands
        client.cancel("j-done")
    assert refused.value.code == "job_finished"


def test_a_cancel_behind_an_unusable_answer_keeps_a_refusal_it_cannot_confirm():
    """Only a 409 `job_finished` is read as the earlier URL's cancel: any other refusal stands
    as the API gave it, with no read; and `job_finished` stands too when the job cannot be read
    (not the read's failure in its place: the API did answer the cancel)."""
    api = FakeApi()
    job = api.add(status="queued")

    def applied_then_mangled(method, url, **kwargs):
        if method == "DELETE":
            api(method, url.replace(PRIMARY, FALLBACK), **kwargs)
        return answering(200, b"<html>proxy</html>")(method, url, **kwargs)

    def refusing_deletes(method, url, **kwargs):
        if method == "DELETE":
            return make_response(method, url, 403, {"error": {"code": "forbidden", "message": "not here"}})
        return api(method, url, **kwargs)

    client, _ = make_client({PRIMARY: applied_then_mangled, FALLBACK: refusing_deletes})
    with pytest.raises(JobpipeClientError) as refused:
        client.cancel(job["id"])
    assert refused.value.code == "forbidden" and api.jobs[job["id"]]["status"] == "canceled"
    assert [method for method, _, _ in api.requests] == ["DELETE"]  # the primary's, passed on: no read

    other = api.add(status="queued")

    def unreadable(method, url, **kwargs):
        return api(method, url, **kwargs) if method == "DELETE" else failing("503")(method, url, **kwargs)

    client, _ = make_client({PRIMARY: applied_then_mangled, FALLBACK: unreadable})
    with pytest.raises(JobpipeClientError) as refused:
        client.cancel(other["id"])
    assert refused.value.code == "job_finished" and api.jobs[other["id"]]["status"] == "canceled"


def test_a_listing_that_repeats_its_cursor_is_an_answer_error_not_a_loop():
    server = answering(200, {"jobs": [], "next_cursor": "c"})
    client, _ = make_client({PRIMARY: server})
    with pytest.raises(JobpipeAnswerError, match="already given"):
        list(client.list())
    assert server.asked == 2


def test_a_listing_follows_an_empty_page_that_has_a_new_cursor():
    # The store filters a page after reading it (by type within a status), so a page may be empty.
    pages = {None: {"jobs": [], "next_cursor": "p2"}, "p2": {"jobs": [GOOD_JOB], "next_cursor": None}}

    def paging(method, url, params=None, **_):
        return make_response(method, url, 200, pages[(params or {}).get("cursor")])

    client, _ = make_client({PRIMARY: paging})
    assert [j["id"] for j in client.list(status="running", type="demo.steps")] == ["j-1"]


def test_a_retry_after_of_0_still_backs_off_and_the_attempts_end():
    time = FakeTime()
    server = at_most(1000, throttling(10**6, FakeApi(), retry_after="0"))
    client, _ = make_client({PRIMARY: server}, time=time, timeout=2)
    with pytest.raises(JobpipeUnavailableError, match="throttled"):
        client.get("j-1")
    assert time.sleeps and min(time.sleeps) >= THROTTLE_FIRST_WAIT_S / 2
    assert server.asked == len(time.sleeps) + 1 < 60


@pytest.mark.parametrize("timeout", [float("nan"), -1])
def test_a_wait_refuses_a_timeout_that_is_nan_or_negative_before_any_request(timeout):
    client, session = make_client({PRIMARY: FakeApi()})
    for call in (lambda: client.wait("j-1", timeout=timeout), lambda: client.wait_many(["j-1"], timeout=timeout)):
        with pytest.raises(ValueError):
            call()
    assert session.calls == []


@pytest.mark.parametrize("argument, value, error", [
    ("on_change", 5, TypeError), ("on_change", "print", TypeError), ("on_outage", True, TypeError),
    ("timeout", "5", ValueError), ("give_up_after", "60", ValueError), ("started", "now", ValueError),
])
def test_a_wait_refuses_a_bad_argument_at_the_call_naming_it_before_any_request(argument, value, error):
    """`client.wait(job, on_change=5)` read the job, then failed deep inside the wait with
    "TypeError: 'int' object is not callable" once it had a state to show; an `on_outage` that
    is no function failed only when the API stopped answering, hours into a wait."""
    api = FakeApi()
    job = api.add("queued")
    api.script(job["id"], {"status": "completed", "version": 2})
    client, session = make_client({PRIMARY: api})
    for call in (lambda: client.wait(job["id"], **{argument: value}),
                 lambda: client.wait(job, **{argument: value}),
                 lambda: client.wait_many([job["id"]], **{argument: value})):
        with pytest.raises(error, match=argument):
            call()
    assert session.calls == []


def test_wait_many_and_status_many_refuse_what_is_no_list_or_no_timeout_naming_it():
    client, session = make_client({PRIMARY: FakeApi()})
    with pytest.raises(TypeError, match="wait_many's jobs"):
        client.wait_many(5)
    with pytest.raises(ValueError, match="timeout"):
        client.status_many(["j-1"], timeout="5")
    assert session.calls == []


@pytest.mark.parametrize("url", ["http://", "http:///jobs", "http://[::1", "http://127.0.0.1:99999", "http://h:0",
                                 "http://h:abc", "http://exa mple.com", "ftp://h", "h.test", "http://h/?x=1"])
def test_a_client_refuses_a_url_that_is_not_http_with_a_host(url):
    with pytest.raises(ValueError):
        JobpipeClient(url, "tok")
    with pytest.raises(ValueError):
        JobpipeClient("http://ok.test", "tok", [url])


@pytest.mark.parametrize("url", ["http://ann:s3cret@api.test", "https://ann:s3cret@api.test/prod?x=1",
                                 "http://:s3cret@api.test:99999", "http://s3cret@api.test"])
def test_a_client_refuses_a_url_with_a_login_never_echoing_it(url):
    """The token is what the API reads (a login in the URL is never sent); kept, it would be
    quoted in every failure line, a password on stderr and in CI logs."""
    for make in (lambda: JobpipeClient(url, "tok"), lambda: JobpipeClient(PRIMARY, "tok", [url])):
        with pytest.raises(ValueError) as raised:
            make()
        assert "holds a login" in str(raised.value) and "s3cret" not in str(raised.value)


def test_urls_are_taken_in_any_case_and_normalised():
    client = JobpipeClient(" HTTP://Api.test:8080/prod/ ", "tok", ["HTTPS://b.test"])
    assert client.transport.urls == ["http://Api.test:8080/prod", "https://b.test"]


@pytest.mark.parametrize("token", ["тoken", "a\nb", "a\rb", "tab\there"])
def test_a_client_refuses_a_token_that_cannot_go_in_a_header(token):
    with pytest.raises(ValueError, match="token") as raised:
        JobpipeClient(PRIMARY, token)
    assert token not in str(raised.value)  # a token is a secret: never echoed


@pytest.mark.parametrize("key", ["ключ", "a\nb", "a\r\nX-Injected: 1"])
def test_a_submit_refuses_an_idempotency_key_that_cannot_go_in_a_header(key):
    client, session = make_client({PRIMARY: FakeApi()})
    with pytest.raises(ValueError, match="idempotency key"):
        client.submit("demo.steps", idempotency_key=key)
    assert session.calls == []


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf"), 1e12])
def test_a_client_refuses_a_request_timeout_that_is_not_a_bound(timeout):
    with pytest.raises(ValueError, match="timeout"):
        JobpipeClient(PRIMARY, "tok", timeout=timeout)


@pytest.mark.parametrize("page", [b"<html>" + b"<script" * 100_000, b"<html>" + b"<title" * 100_000,
                                  b"<html><script>" + b"<" * 100_000, b"<" + b"<a " * 100_000, b"< >" * 1000])
def test_a_4xx_page_of_broken_markup_is_read_in_one_pass(page):
    """Its title or text is looked for with finds that never go back: a page of unclosed tags
    costs what its length does (a backtracking pattern took seconds over 64 KiB of them)."""
    client, _ = make_client({PRIMARY: answering(400, page)})
    started = time.monotonic()
    with pytest.raises(JobpipeClientError) as raised:
        client.get("j-1")
    assert time.monotonic() - started < 1 and raised.value.code == "http_400"


def test_a_4xx_not_in_jobpipes_shape_is_one_line_of_what_it_said():
    html = b"<html>\n<body>\n<h1>Bad Request</h1>\n</body>\n</html>\n"
    cases = [(answering(400, {"error": {"message": "something wrong"}}), "something wrong"),
             (answering(400, {"message": "gateway says\nno\nway"}), "gateway says no way"),
             (answering(400, html), "Bad Request")]
    for server, message in cases:
        client, _ = make_client({PRIMARY: server})
        with pytest.raises(JobpipeClientError) as raised:
            client.get("j-1")
        assert (raised.value.code, raised.value.message) == ("http_400", message)
    client, _ = make_client({PRIMARY: answering(404, b"<p>\n" + b"x" * 5000)})
    with pytest.raises(JobpipeClientError) as raised:
        client.get("j-1")
    assert len(raised.value.message) == 200 and raised.value.message.endswith("…") and "\n" not in raised.value.message


def test_a_client_given_its_fallback_urls_as_one_string_says_they_are_a_list():
    """JobpipeClient(url, token, "http://b.test") (or JOBPIPE_FALLBACK_URLS passed as it is) was
    refused with "'h' is not an http(s) URL": the string was read a character at a time."""
    for fallbacks in ("http://b.test", "http://b.test,http://c.test"):
        with pytest.raises(ValueError, match=r"fallback_urls is a list of URLs"):
            JobpipeClient(PRIMARY, "tok", fallbacks)


def test_a_poll_that_lags_a_state_already_seen_is_no_change():
    """Polls are eventually consistent reads: one may come from a replica a write has not reached
    yet and show an older version of the job than the last poll did. That is no new state: the
    wait keeps the newer one, and on_change (a progress bar, a line per change) never goes back."""
    api = FakeApi()
    job = api.add(status="running", version=2, progress={"percent": 20.0, "step": "s", "message": None})
    api.script(
        job["id"],
        {"version": 3, "progress": {"percent": 50.0, "step": "s", "message": None}},
        {"version": 2, "progress": {"percent": 20.0, "step": "s", "message": None}},  # a lagging replica
        {"status": "completed", "version": 4, "progress": {"percent": 100.0, "step": "done", "message": None}},
    )
    client, _ = make_client({PRIMARY: api})
    seen = []
    final = client.wait(job, on_change=lambda j: seen.append((j["version"], j["progress"]["percent"])))
    assert final["status"] == "completed"
    assert seen == [(2, 20.0), (3, 50.0), (4, 100.0)]

    other = api.add(status="running", version=5, progress={"percent": 80.0, "step": "s", "message": None})
    api.script(other["id"], {"version": 4, "progress": {"percent": 60.0, "step": "s", "message": None}},
               {"status": "completed", "version": 6, "progress": {"percent": 100.0, "step": "done", "message": None}})
    seen.clear()
    client.wait_many([other], on_change=lambda j: seen.append((j["version"], j["progress"]["percent"])))
    assert seen == [(5, 80.0), (6, 100.0)]


def test_a_refusals_text_names_each_problem_of_its_details():
    """A traceback of an uncaught refusal says which field is wrong, not only `request is not valid`."""
    refusal = {"error": {"code": "invalid_payload", "message": "payload is not valid for job type 'demo.steps'",
                         "details": [{"loc": ["steps"], "msg": "Input should be greater than or equal to 1",
                                      "type": "greater_than_equal"},
                                     {"loc": ["step_ms"], "msg": "Field required", "type": "missing"}]}}

    def server(method, url, **_):
        return make_response(method, url, 422, refusal)

    client, _ = make_client({PRIMARY: server})
    with pytest.raises(JobpipeClientError) as raised:
        client.submit("demo.steps", {"steps": 0})
    assert str(raised.value) == ("payload is not valid for job type 'demo.steps' (invalid_payload, HTTP 422): "
                                 "steps: Input should be greater than or equal to 1; step_ms: Field required")
    assert raised.value.message == "payload is not valid for job type 'demo.steps'"  # the API's own words


def test_a_wait_given_status_manys_answer_says_what_it_takes_instead_of_none_is_no_id():
    api = FakeApi()
    job = api.add("completed")
    client, session = make_client({PRIMARY: api})
    answer = client.status_many([job["id"]])  # {id: job}: a natural thing to hand to wait
    session.calls.clear()
    for wait in (lambda: client.wait(answer, timeout=5), lambda: client.wait_many([answer], timeout=5)):
        with pytest.raises(JobpipeClientError) as raised:
            wait()
        assert raised.value.code == "invalid_job_id" and "'id'" in raised.value.message
        assert "status_many" in raised.value.message and "NoneType" not in str(raised.value)
    assert session.calls == []
    assert client.wait(answer[job["id"]], timeout=5)["status"] == "completed"  # one of its values is a job


def test_submit_without_a_payload_sends_an_empty_object_not_null():
    """The API's POST /jobs takes an object: `submit(type)` sends `{}` as its payload."""
    api = FakeApi()
    client, _ = make_client({PRIMARY: api})
    client.submit("demo.model")  # a type whose payload fields all have defaults
    client.submit("demo.model", None)
    assert [sent["json"]["payload"] for _, _, sent in api.requests] == [{}, {}]


@pytest.mark.parametrize("kwargs", [{"initial_s": 0}, {"initial_s": -1}, {"initial_s": 5, "maximum_s": 2},
                                    {"factor": 0.5}])
def test_a_backoff_that_would_poll_without_pause_or_shrink_is_refused(kwargs):
    with pytest.raises(ValueError, match="need 0 < initial_s <= maximum_s and factor >= 1"):
        Backoff(**kwargs)
    Backoff(initial_s=2, maximum_s=2, factor=1)  # the bounds themselves are taken


def test_wait_many_follows_the_children_of_a_parent_a_full_batch_showed_without_them():
    """A batch of wide fan-outs would not fit one answer (a parent lists up to 2,000 children):
    past what it carries the API shows a parent without them (`children: []`, `children_cut`
    their number). The wait reads such a parent whole and follows its children while it runs,
    as it follows those of a parent shown whole, not only once it has ended."""
    api = FakeApi(answer_budget=3_500)  # one parent whole (about 2,300 bytes), the other bare (about 700)
    parents = []
    for _ in range(2):
        kids = [api.add(status="completed", version=2) for _ in range(40)]
        parents.append(api.add(status="running", type="demo.fanout", children=[k["id"] for k in kids], version=3))
    client, _ = make_client({PRIMARY: api})
    shown = client.status_many([p["id"] for p in parents])
    assert len(shown[parents[0]["id"]]["children"]) == 40 and "children_cut" not in shown[parents[0]["id"]]
    assert shown[parents[1]["id"]]["children"] == [] and shown[parents[1]["id"]]["children_cut"] == 40
    for parent in parents:  # each read of it (a batch's, a GET) takes the next state: it ends at its fourth
        api.script(parent["id"], {}, {}, {}, {"status": "completed", "version": 4})
    seen = []
    final = client.wait_many([p["id"] for p in parents], timeout=600, on_change=seen.append)
    assert set(final) == {p["id"] for p in parents} | {c for p in parents for c in p["children"]}
    ended = next(i for i, job in enumerate(seen) if job["id"] == parents[1]["id"] and job["status"] == "completed")
    assert any(job["id"] in parents[1]["children"] for job in seen[:ended]), "its children seen while it ran"
