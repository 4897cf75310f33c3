"""JobpipeClient without sockets: fallback order, error typing, paging, waiting and ETags."""
import pytest

from jobpipe_client import (
    Backoff,
    JobpipeClient,
    JobpipeClientError,
    JobpipeUnavailableError,
    WaitTimeoutError,
)
from tests.support.fake_api import FakeApi, FakeSession, FakeTime, failing, make_response

PRIMARY, FALLBACK, SPARE = "http://primary.test", "http://fallback.test", "http://spare.test"


def make_client(servers, time=None, **kwargs):
    session = FakeSession(servers)
    time = time or FakeTime()
    urls = list(servers)
    client = JobpipeClient(urls[0], "tok", urls[1:], session=session, sleep=time.sleep, clock=time.clock, **kwargs)
    return client, session


def test_submit_sends_the_job_and_a_fresh_idempotency_key():
    api = FakeApi()
    client, session = make_client({PRIMARY: api})
    job = client.submit("demo.steps", {"steps": 2}, priority="high", scope="p-1")
    assert job["type"] == "demo.steps" and job["id"] in api.jobs
    method, path, sent = api.requests[0]
    assert (method, path) == ("POST", "/jobs")
    assert sent["json"] == {"type": "demo.steps", "payload": {"steps": 2}, "delay_seconds": 0,
                            "priority": "high", "scope": "p-1"}
    first_key = sent["headers"]["Idempotency-Key"]
    client.submit("demo.steps", {"steps": 2})
    assert api.requests[1][2]["headers"]["Idempotency-Key"] != first_key
    client.submit("demo.steps", idempotency_key="order-7")
    assert api.requests[2][2]["headers"]["Idempotency-Key"] == "order-7"
    assert session.headers["Authorization"] == "Bearer tok"


def test_submit_sends_run_at_as_iso_8601():
    from datetime import datetime, timezone

    api = FakeApi()
    client, _ = make_client({PRIMARY: api})
    client.submit("demo.steps", run_at=datetime(2027, 1, 31, 9, tzinfo=timezone.utc))
    client.submit("demo.steps", run_at="2027-02-01T09:00:00+01:00")
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


def test_a_4xx_in_another_shape_keeps_what_the_gateway_said():
    def gateway(method, url, **_):
        return make_response(method, url, 403, {"message": "Missing Authentication Token"})

    def proxy(method, url, **_):
        return make_response(method, url, 429, b"slow down")

    for server, code, message in ((gateway, "http_403", "Missing Authentication Token"), (proxy, "http_429", "slow down")):
        client, _ = make_client({PRIMARY: server, FALLBACK: FakeApi()})
        with pytest.raises(JobpipeClientError) as raised:
            client.get("some-id")
        assert (raised.value.code, raised.value.message) == (code, message)


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


def test_a_client_needs_a_url():
    with pytest.raises(ValueError):
        JobpipeClient(" ", "tok")
