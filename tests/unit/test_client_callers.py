"""JobpipeClient as a Python caller meets it at its edges: a wait whose whole read of an ended
job comes back from before the end, a client shared by threads, the caller's own session, and
arguments the API cannot be sent (refused with the library's errors, before any request)."""
import copy
import threading
from datetime import date

import pytest
import requests

from jobpipe_client import JobpipeClient, JobpipeClientError, JobpipeInputError
from tests.support.fake_api import FakeApi
from tests.support.fake_http import make_response
from tests.unit.test_client import FALLBACK, PRIMARY, make_client



def test_a_whole_read_from_before_the_end_does_not_stop_the_wait_from_seeing_the_end():
    """The batch showed the job completed (its result kept in S3); GET /jobs/{id}, an
    eventually consistent read, answered the job one write behind, running. The wait kept that
    and stored the batch's tag: every poll after was a 304, and it waited out its timeout (or
    forever) on a job that had ended."""
    api = FakeApi(inline_limit=10)
    job = api.add(status="running", version=3)
    lagging = {"reads": 1}

    def server(method, url, **kwargs):
        if method == "GET" and url.endswith(f"/jobs/{job['id']}") and lagging["reads"]:
            lagging["reads"] -= 1  # a replica the last write has not reached
            before = {**copy.deepcopy(api.jobs[job["id"]]), "status": "running", "version": 4, "result": None}
            return make_response(method, url, 200, before, {"ETag": 'W/"before"'})
        return api(method, url, **kwargs)

    api.jobs[job["id"]].update(status="completed", version=5, result={"big": "x" * 100})
    final = make_client({PRIMARY: server})[0].wait_many([job["id"]], timeout=3600)
    assert (final[job["id"]]["status"], final[job["id"]]["result"]) == ("completed", {"big": "x" * 100})


def test_a_cancel_reads_its_own_call_not_another_threads():
    """The primary applied the cancel and its answer was lost; the fallback answered 409
    job_finished. Whether an earlier URL may have acted was one attribute of the shared
    transport: another thread's call in between reset it, and this cancel raised job_finished
    for the cancel it made."""
    api = FakeApi()
    job, other = api.add(status="queued"), api.add(status="running")
    reads = {"n": 0}
    client = None

    def primary(method, url, **kwargs):
        if method == "DELETE":
            api(method, url, **kwargs)
            raise requests.ReadTimeout("read timed out")
        return api(method, url, **kwargs)

    def fallback(method, url, **kwargs):
        answer = api(method, url, **kwargs)
        if method == "DELETE":
            read = answer.json

            def json(*args, **kw):  # while this thread reads its 409, another makes a call
                reads["n"] += 1
                if reads["n"] == 2:
                    elsewhere = threading.Thread(target=lambda: client.get(other["id"]))
                    elsewhere.start()
                    elsewhere.join()
                return read(*args, **kw)

            answer.json = json
        return answer

    client = make_client({PRIMARY: primary, FALLBACK: fallback})[0]
    assert client.cancel(job["id"])["status"] == "canceled"


def test_the_callers_session_is_left_as_it_was_given_and_its_other_requests_carry_no_token():
    session = requests.Session()
    JobpipeClient(PRIMARY, "secret-token", session=session)
    assert "Authorization" not in session.headers and session.auth is None
    elsewhere = session.prepare_request(requests.Request("GET", "https://unrelated.example.com/"))
    assert "Authorization" not in elsewhere.headers


@pytest.mark.parametrize("call, said", [
    (lambda c: c.submit("demo.steps", {}, delay_seconds=float("nan")), "delay_seconds"),
    (lambda c: c.submit("demo.steps", {}, delay_seconds=float("inf")), "delay_seconds"),
    (lambda c: c.submit("demo.steps", {}, delay_seconds=10**400), "delay_seconds"),  # past a float: no OverflowError
    (lambda c: c.rerun("j-1", delay_seconds="60"), "delay_seconds"),
    (lambda c: c.submit("demo.steps", {}, delay_seconds=1.5), "whole number"),  # the API takes whole seconds
    (lambda c: c.submit("demo.steps", {}, run_at=date(2027, 1, 31)), "run_at"),
    (lambda c: c.submit("demo.steps", [1, 2]), "mapping"),
    (lambda c: c.submit("demo.steps", []), "mapping"),  # it was sent as {}
    (lambda c: c.submit("demo.steps", 5), "mapping"),
], ids=["nan", "inf", "huge", "text-delay", "fraction", "date", "list", "empty-list", "number"])
def test_an_argument_the_api_cannot_be_sent_is_an_input_error_before_any_request(call, said):
    api = FakeApi()
    with pytest.raises(JobpipeInputError, match=said):
        call(make_client({PRIMARY: api})[0])
    assert api.requests == []


def test_a_delay_of_whole_seconds_given_as_a_float_is_sent_as_the_whole_number():
    """`timedelta(hours=6).total_seconds()` is 21600.0: sent as it is, the API (whose
    delay_seconds is an integer, strictly) refused it, 400 invalid_request."""
    from datetime import timedelta

    api = FakeApi()
    done = api.add(status="completed", payload={"steps": 1, "step_ms": 0})
    client = make_client({PRIMARY: api})[0]
    later = client.submit("demo.steps", {"steps": 1, "step_ms": 0}, delay_seconds=timedelta(hours=6).total_seconds())
    rerun = client.rerun(done["id"], delay_seconds=60.0)
    assert [sent["json"]["delay_seconds"] for _, _, sent in api.requests] == [21600, 60]
    assert later["status"] == "queued" and rerun["rerun_of"] == done["id"]


@pytest.mark.parametrize("call", [
    lambda c: c.get(None), lambda c: c.status_many([None]), lambda c: c.wait({"status": "queued"}),
    lambda c: c.wait({"id": None, "status": "queued"}), lambda c: c.cancel(7),
], ids=["get-none", "status-none", "wait-no-id", "wait-none", "cancel-number"])
def test_a_job_id_that_is_no_text_is_refused_before_any_request(call):
    """None reached the network as the text "None" (job_not_found), a job without an id was a
    KeyError."""
    api = FakeApi()
    with pytest.raises(JobpipeClientError) as refused:
        call(make_client({PRIMARY: api})[0])
    assert refused.value.code == "invalid_job_id" and api.requests == []


@pytest.mark.parametrize("call", [lambda c, i: c.status_many(i), lambda c, i: c.wait_many(i)],
                         ids=["status_many", "wait_many"])
def test_one_id_given_where_a_list_is_taken_is_refused_not_split_into_characters(call):
    api = FakeApi()
    job = api.add()
    with pytest.raises(ValueError, match="list"):
        call(make_client({PRIMARY: api})[0], job["id"])
    assert api.requests == []


def test_a_wait_started_at_nan_is_refused_it_would_never_time_out():
    api = FakeApi()
    job = api.add(status="running")
    with pytest.raises(ValueError, match="started"):
        make_client({PRIMARY: api})[0].wait(job["id"], timeout=5, started=float("nan"))


def test_a_wait_with_no_time_looks_once_before_it_times_out():
    """wait(job, timeout=0) raised WaitTimeoutError with the state it was given, asking nothing:
    a job that had ended meanwhile was reported as not ended."""
    api = FakeApi()
    given = dict(api.add(status="running"))  # as submit or an earlier read returned it
    api.jobs[given["id"]].update(status="completed", version=given["version"] + 1)
    assert make_client({PRIMARY: api})[0].wait(given, timeout=0)["status"] == "completed"
    assert len(api.requests) == 1


@pytest.mark.parametrize("kwargs", [{"timeout": None}, {"token": None}, {"base_url": None}])
def test_constructor_arguments_of_the_wrong_kind_are_value_errors(kwargs):
    arguments = {"base_url": PRIMARY, "token": "tok", **kwargs}
    with pytest.raises(ValueError):
        JobpipeClient(**arguments)


def test_no_fallbacks_may_be_said_with_none_and_a_client_closes_its_own_session_only(monkeypatch):
    closed = []
    monkeypatch.setattr(requests.Session, "close", lambda session: closed.append(session))
    with JobpipeClient(PRIMARY, "tok", fallback_urls=None) as client:
        assert client.transport.urls == [PRIMARY]
    assert closed == [client.transport.session]
    given = requests.Session()
    JobpipeClient(PRIMARY, "tok", session=given).close()
    assert closed == [client.transport.session]  # the caller's session is left open
