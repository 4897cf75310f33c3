"""A wait that rides out a short outage.

`jobpipe watch ID` (and `submit --watch`, `client.wait` / `wait_many`) follows a job for as long
as it runs, often hours: one poll that times out, answers 502/503/504 or has its connection
reset must not end the watch (exit 3) while the job is fine and the next poll would answer.
docs/api.md promises: a poll no URL answered is retried with a backoff (longer when
`Retry-After` asks) until the API answers again, shown as one `reconnecting` status line; the
wait gives up (one line, exit 3) only once the polls have failed for `--give-up-after` seconds
in a row (default 60), or when `--timeout` runs out meanwhile. A 4xx (401, 403, 404, a refusal
with the API's code) and an answer of the wrong shape still end it at once; Ctrl-C still ends it
(exit 130).

Everything runs in-process over the fake API with a FakeTime: the clock moves only when the
code under test sleeps, so no test depends on wall-clock speed."""
import io
import re

import pytest
import requests
from rich.console import Console

from jobpipe_client import (
    DEFAULT_GIVE_UP_AFTER_S,
    Backoff,
    JobpipeAnswerError,
    JobpipeClient,
    JobpipeClientError,
    JobpipeUnavailableError,
    WaitTimeoutError,
    WaitUnavailableError,
)
from jobpipe_client.cli import main
from jobpipe_client.progress_view import ProgressBoard
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, FakeTime, make_response
from tests.unit.bad_servers import at_most
from tests.unit.test_cli import ENV, STEPS, URL, Run


def down(kind, method, url):
    """What one failed request looks like from the client's side."""
    if kind == "timeout":
        raise requests.ReadTimeout(f"read timed out: {url}")
    if kind == "reset":
        raise requests.ConnectionError(ConnectionResetError(104, "Connection reset by peer"))
    if kind == "refused":
        raise requests.ConnectionError(f"connection refused: {url}")
    if kind.startswith("503+"):  # the API's own 503, asking to come back later
        return make_response(method, url, 503, {"error": {"code": "store_unavailable", "message": "down"}},
                             {"Retry-After": kind[4:]})
    if kind.startswith("429+"):  # a throttle in front of the API, with a Retry-After
        return make_response(method, url, 429, {"message": "Rate Exceeded"}, {"Retry-After": kind[4:]})
    if kind in ("502", "504"):  # a gateway's page
        return make_response(method, url, int(kind), b"<html><h1>Bad Gateway</h1></html>")
    return make_response(method, url, int(kind), {"error": {"code": "store_unavailable", "message": "down"}})


def flaky(api, *plan):
    """`api`, except that request n fails as plan[n] says (None: answered); past the plan every
    request is answered. `asked` counts the requests; at most 200 (a loop fails the test)."""
    plan = list(plan)

    def answer(method, url, **kwargs):
        kind = plan.pop(0) if plan else None
        if kind is None:
            return api(method, url, **kwargs)
        return down(kind, method, url)

    return at_most(200, answer)


def always(kind):
    def answer(method, url, **_):
        return down(kind, method, url)

    return at_most(200, answer)


def interrupted_at_pause(time, n):
    """A sleep on `time` that is interrupted (Ctrl-C) at its `n`th pause."""

    def sleep(seconds):
        time.sleep(seconds)
        if len(time.sleeps) == n:
            raise KeyboardInterrupt

    return sleep


def client_over(server, time, **kwargs):
    return JobpipeClient(URL, "tok", session=FakeSession({URL: server}), sleep=time.sleep, clock=time.clock,
                         backoff=lambda: Backoff(initial_s=1, maximum_s=4), **kwargs)


# -- the client ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["timeout", "reset", "refused", "502", "503", "504"])
def test_wait_rides_out_one_failed_poll(kind):
    """One poll that fails (a timeout, a reset, a refused connection, a 502/503/504) used to end
    `client.wait` with JobpipeUnavailableError while the job ran on. The wait polls again after
    a short pause and ends with the job's final state."""
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {}, {"status": "completed", "version": 2})
    time = FakeTime()
    client = client_over(flaky(api, kind), time)
    assert client.wait(job)["status"] == "completed"


def test_wait_backs_off_between_failed_polls_and_gives_up_after_a_minute_of_them():
    """With the API down for good, the wait polls again after 1, 2, 4, 8, then every 10 s, and
    gives up once the polls have failed for DEFAULT_GIVE_UP_AFTER_S (60 s) in a row, with a
    JobpipeUnavailableError (WaitUnavailableError) that says why and carries the last state."""
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    server = always("503")
    client = client_over(server, time)
    start = time.now
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait(job)
    assert DEFAULT_GIVE_UP_AFTER_S == 60
    # the ordinary pause before the first poll, then the reconnect pauses; the last ends at the bound
    assert time.sleeps == [1, 1, 2, 4, 8, 10, 10, 10, 10, 5]
    assert time.now - start == 61 and server.asked == 10
    error = raised.value
    assert isinstance(error, JobpipeUnavailableError) and error.outage_s == 60
    assert error.jobs[job["id"]]["status"] == "running" and error.api_errors == {URL: "store_unavailable"}
    assert "store_unavailable" in str(error) and "60 s" in str(error) and job["id"] in str(error)


def test_the_bound_counts_consecutive_failures_only():
    """Two outages of 45 s with an answer between them are two short outages, not 90 s of one:
    the wait rides out both."""
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {}, {}, {"status": "completed", "version": 2})
    outage = ["503"] * 7  # paused 1+2+4+8+10+10+10 = 45 s
    time = FakeTime()
    client = client_over(flaky(api, None, *outage, None, *outage), time)
    assert client.wait(job["id"])["status"] == "completed"
    assert time.sleeps.count(10) == 6


def test_give_up_after_is_a_parameter_and_0_gives_up_at_the_first_failure():
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    client = client_over(always("timeout"), time)
    with pytest.raises(WaitUnavailableError):
        client.wait(job, give_up_after=0)
    assert time.sleeps == [1]  # the ordinary pause before the first poll, none after it
    time = FakeTime()
    client = client_over(always("timeout"), time)
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait_many([job], give_up_after=5)
    assert sum(time.sleeps) == 1 + 5 and raised.value.outage_s == 5


def test_an_outage_that_ends_a_wait_on_ids_never_read_carries_no_state_for_them():
    """The error's `jobs` holds only the states a poll has shown: an id no poll answered for is
    left out, not given as None."""
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    client = client_over(flaky(api, *["timeout"] * 3), time)
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait(job["id"], give_up_after=0)
    assert raised.value.jobs == {} and time.sleeps == []  # an id is read at once
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait_many([job, "j-unread"], give_up_after=0)
    assert list(raised.value.jobs) == [job["id"]]


def test_a_wait_on_jobs_given_final_returns_them_without_a_poll_and_on_change_sees_each_once():
    api = FakeApi()
    done = dict(api.add(status="completed"))
    failed = dict(api.add(status="failed"))
    server = always("timeout")
    time = FakeTime()
    client = client_over(server, time)
    seen = []
    assert client.wait(done, on_change=lambda j: seen.append(j["id"])) == done
    assert client.wait_many([done, failed], on_change=lambda j: seen.append(j["id"])) == {
        done["id"]: done, failed["id"]: failed}
    assert seen == [done["id"], done["id"], failed["id"]] and server.asked == 0 and time.sleeps == []


@pytest.mark.parametrize("give_up_after", [float("nan"), -1])
def test_a_wait_refuses_a_give_up_after_that_is_nan_or_negative_before_any_request(give_up_after):
    session = FakeSession({URL: FakeApi()})
    client = JobpipeClient(URL, "tok", session=session)
    for call in (lambda: client.wait("j-1", give_up_after=give_up_after),
                 lambda: client.wait_many(["j-1"], give_up_after=give_up_after)):
        with pytest.raises(ValueError, match="give_up_after"):
            call()
    assert session.calls == []


def test_a_retry_after_sets_the_pause_within_the_bound():
    """A 503 asking `Retry-After: 7` is asked again 7 s later, not after the 1 s backoff; so is
    a throttle that lasted the whole request (after the transport's own short waits); a
    Retry-After past the bound is cut to it."""
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {"status": "completed", "version": 2})
    time = FakeTime()
    client = client_over(flaky(api, "503+7"), time)
    assert client.wait(job)["status"] == "completed"
    assert time.sleeps == [1, 7]
    time = FakeTime()
    client = client_over(always("429+20"), time, timeout=2)
    with pytest.raises(WaitUnavailableError, match="throttled"):
        client.wait(job["id"], give_up_after=30)
    assert time.sleeps.count(20) == 1 and max(time.sleeps) == 20  # then what is left of the bound
    time = FakeTime()
    client = client_over(always("503+3600"), time)
    with pytest.raises(WaitUnavailableError):
        client.wait(job["id"], give_up_after=30)
    assert time.sleeps == [30]
    api = FakeApi()  # with no bound (give_up_after=None) a Retry-After is still held to RETRY_AFTER_MAX_S
    job = api.add(status="running")
    api.script(job["id"], {"status": "completed", "version": 2})
    time = FakeTime()
    client = client_over(flaky(api, "503+86400"), time)
    assert client.wait(job, give_up_after=None)["status"] == "completed"
    assert time.sleeps == [1, 600]


@pytest.mark.parametrize("status, body, code", [
    (404, {"error": {"code": "job_not_found", "message": "job j-1 not found"}}, "job_not_found"),
    (401, {"message": "Unauthorized"}, "http_401"),
    (403, {"message": "Missing Authentication Token"}, "http_403"),
    (400, {"error": {"code": "invalid_request", "message": "bad"}}, "invalid_request"),
])
def test_a_4xx_during_an_outage_ends_the_wait_at_once(status, body, code):
    """The API answered: a refusal is no hiccup, so the wait ends with it, outage or not."""
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()

    def refusing(method, url, **_):
        return make_response(method, url, status, body)

    client = client_over(flaky(refusing, "timeout", "503"), time)
    with pytest.raises(JobpipeClientError) as raised:
        client.wait(job)
    assert raised.value.code == code and time.sleeps == [1, 1, 2]


def test_an_answer_of_the_wrong_shape_still_ends_the_wait_at_once():
    job = {"id": "j-1", "type": "demo.steps", "status": "running", "version": 1}
    time = FakeTime()

    def html(method, url, **_):
        return make_response(method, url, 200, b"<html>maintenance</html>")

    client = client_over(flaky(html, "timeout"), time)
    with pytest.raises(JobpipeAnswerError):
        client.wait(job)
    assert time.sleeps == [1, 1]


def test_a_job_that_ends_while_the_api_is_down_is_reported_once_it_answers():
    """The job completes during the outage; the first poll that gets an answer (conditional on
    the tag the wait last saw) shows it, and on_change sees it once."""
    api = FakeApi()
    job = api.add(status="running")
    state = {"polls": 0}

    def completes_while_down(method, url, **kwargs):
        state["polls"] += 1
        if 2 <= state["polls"] <= 4:
            api.jobs[job["id"]].update(status="completed", version=2)
            raise requests.ReadTimeout("read timed out")
        return api(method, url, **kwargs)

    time = FakeTime()
    client = client_over(at_most(50, completes_while_down), time)
    seen = []
    final = client.wait(job["id"], on_change=lambda j: seen.append(j["status"]))
    assert final["status"] == "completed" and seen == ["running", "completed"]
    assert state["polls"] == 5


def test_wait_many_never_loses_a_change_a_batch_saw_when_another_batch_failed():
    """150 jobs poll in two batches. A job of the first batch completes at a poll whose second
    batch fails: had the first batch's tag been kept, the next poll would be answered 304 and the
    completion never seen (the wait would run to its timeout). Tags are kept only from a poll
    that answered whole."""
    api = FakeApi()
    jobs = [api.add(status="running") for _ in range(150)]
    for job in jobs:
        job["status"] = "completed"
    jobs[0]["status"] = "running"
    state = {"asked": 0}

    def second_batch_fails_once(method, url, json=None, **kwargs):
        state["asked"] += 1
        if state["asked"] == 3:  # the second poll's first batch: the job completes
            api.jobs[jobs[0]["id"]].update(status="completed", version=2)
        if state["asked"] == 4:  # the second poll's second batch
            raise requests.ReadTimeout("read timed out")
        return api(method, url, json=json, **kwargs)

    time = FakeTime()
    client = client_over(at_most(50, second_batch_fails_once), time)
    final = client.wait_many([j["id"] for j in jobs], timeout=120)
    assert all(j["status"] == "completed" for j in final.values())


def test_a_timeout_that_runs_out_during_an_outage_is_unavailable_not_a_hang():
    """`timeout` still bounds the wait: running out while no poll answers ends it with the
    outage (the job's state is not known: the API is not answering)."""
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    client = client_over(flaky(api, None, *["timeout"] * 100), time)
    start = time.now
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait(job["id"], timeout=20)
    assert time.now - start == 20 and raised.value.timed_out
    assert "20 s" in str(raised.value)
    # without an outage it is the plain timeout
    with pytest.raises(WaitTimeoutError):
        client_over(api, FakeTime()).wait(job["id"], timeout=20)


def test_on_outage_sees_each_failed_poll_and_the_answer_that_ends_it():
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {}, {"status": "completed", "version": 2})
    time = FakeTime()
    client = client_over(flaky(api, None, "timeout", "503"), time)
    seen = []
    client.wait(job["id"], on_outage=lambda o: seen.append((o.ended, o.failures, o.since_s, o.retry_in_s)))
    assert seen == [(False, 1, 0, 1), (False, 2, 1, 2), (True, 2, 3, 0)]


def test_ctrl_c_during_a_reconnect_pause_ends_the_wait():
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    client = JobpipeClient(URL, "tok", session=FakeSession({URL: always("timeout")}),
                           sleep=interrupted_at_pause(time, 3), clock=time.clock)
    with pytest.raises(KeyboardInterrupt):
        client.wait(job)


# -- the CLI ---------------------------------------------------------------------------------------

def run(argv, server, terminal=False, sleep=None):
    time = FakeTime()

    def make_client(args, env):
        return JobpipeClient(URL, "tok", session=FakeSession({URL: server}), sleep=sleep or time.sleep,
                             clock=time.clock, backoff=lambda: Backoff(initial_s=1, maximum_s=4))

    out, err = io.StringIO(), io.StringIO()
    console = Console(file=out, width=200, force_terminal=terminal, force_interactive=terminal)
    code = main(argv, environ=ENV, out=console, err=err, make_client=make_client)
    result = Run(code, out.getvalue(), err.getvalue())
    result.time = time
    return result


def plain(text):
    return re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", text)


def test_watch_rides_out_a_short_outage_with_one_line_as_it_begins_and_one_as_it_ends():
    """`jobpipe watch ID | tee log` over a 503, a timeout and a reset: the job's changes on
    stdout as before, and on stderr one line as the outage begins and one as it ends, whatever
    number of polls failed; exit 0."""
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {}, {}, {"status": "completed", "version": 2})  # read by `watch`, then by the polls
    result = run(["watch", job["id"]], flaky(api, None, None, "503", "timeout", "reset"))
    assert result.code == 0, result.err
    assert len(result.err_lines) == 2, result.err
    assert result.err_lines[0].startswith("jobpipe: reconnecting: no answer from the API (")
    assert "store_unavailable" in result.err_lines[0] and "giving up after 60 s" in result.err_lines[0]
    assert result.err_lines[1] == "jobpipe: reconnected after 7 s"
    assert result.out.splitlines()[-1] == f"{job['id']} completed"


def test_watch_gives_up_after_give_up_after_seconds_with_one_line_and_exit_3():
    api = FakeApi()
    job = api.add(status="running")
    result = run(["watch", job["id"], "--give-up-after", "20"], flaky(api, None, *["504"] * 100))
    assert result.code == 3
    note, failure = result.err_lines
    assert note.startswith("jobpipe: reconnecting:") and "giving up after 20 s" in note
    assert failure.startswith("jobpipe: ") and "HTTP 504" in failure and "20 s" in failure
    assert f"{job['id']} running" in result.out  # the summary keeps the last state seen


def test_give_up_after_0_is_the_first_failure_one_line_exit_3():
    api = FakeApi()
    job = api.add(status="running")
    result = run(["watch", job["id"], "--give-up-after", "0"], flaky(api, None, "timeout"))
    assert result.code == 3 and len(result.err_lines) == 1 and "timed out" in result.err


def test_watch_on_a_terminal_shows_reconnecting_in_the_display_and_nothing_on_stderr():
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {}, {}, {"status": "completed", "version": 2})  # read by `watch`, then by the polls
    result = run(["watch", job["id"]], flaky(api, None, None, "timeout", "timeout"), terminal=True)
    assert result.code == 0 and result.err == ""
    assert "reconnecting: no answer from the API" in plain(result.out)


def test_watch_on_a_terminal_that_gives_up_clears_the_status_and_says_so_in_one_line():
    api = FakeApi()
    job = api.add(status="running")
    result = run(["watch", job["id"], "--give-up-after", "10"], flaky(api, None, *["reset"] * 100), terminal=True)
    assert result.code == 3 and len(result.err_lines) == 1
    assert "connection failed" in result.err and "Traceback" not in result.err + result.out


def test_submit_watch_rides_out_an_outage_and_json_stays_quiet():
    api = FakeApi()
    original_add = api.add

    def add_scripted(**fields):
        job = original_add(**fields)
        api.script(job["id"], {"status": "running", "version": 2}, {"status": "completed", "version": 3})
        return job

    api.add = add_scripted
    result = run(["submit", "demo.steps", "--payload", STEPS, "--watch", "--json"], flaky(api, None, "timeout", "502", None))
    assert result.code == 0 and result.err == ""
    assert '"status": "completed"' in result.out


def test_a_job_that_fails_during_an_outage_ends_the_watch_with_exit_1():
    api = FakeApi()
    job = api.add(status="running")
    state = {"asked": 0}

    def fails_while_down(method, url, **kwargs):
        state["asked"] += 1
        if state["asked"] in (3, 4):
            api.jobs[job["id"]].update(status="failed", version=2, error={"code": "boom", "message": "it broke"})
            raise requests.ReadTimeout("read timed out")
        return api(method, url, **kwargs)

    result = run(["watch", job["id"]], at_most(50, fails_while_down))
    assert result.code == 1
    assert result.out.splitlines()[-1] == f"{job['id']} failed boom: it broke"


def test_a_404_during_an_outage_is_one_line_exit_2():
    api = FakeApi()
    job = api.add(status="running")

    def gone(method, url, **kwargs):
        if gone.asked == 0:
            gone.asked += 1
            return api(method, url, **kwargs)
        return make_response(method, url, 404, {"error": {"code": "job_not_found", "message": "job x not found"}})

    gone.asked = 0
    result = run(["watch", job["id"]], flaky(gone, None, "timeout"))
    assert result.code == 2 and result.err_lines[-1] == "jobpipe: refused: job x not found (job_not_found)"


def test_ctrl_c_during_a_reconnect_pause_is_exit_130():
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    result = run(["watch", job["id"]], flaky(api, None, *["timeout"] * 10), sleep=interrupted_at_pause(time, 3))
    assert result.code == 130 and result.err_lines[-1] == "jobpipe: interrupted"


def test_a_timeout_during_an_outage_is_one_line_exit_3():
    api = FakeApi()
    job = api.add(status="running")
    result = run(["watch", job["id"], "--timeout", "15", "--json"], flaky(api, None, *["timeout"] * 100))
    assert result.code == 3 and len(result.err_lines) == 1 and "--timeout" not in result.err
    assert "15 s" in result.err and "timed out" in result.err


@pytest.mark.parametrize("argv", [
    ["watch", "x", "--give-up-after", "nan"], ["watch", "x", "--give-up-after", "-1"],
    ["watch", "x", "--give-up-after", "inf"], ["watch", "x", "--give-up-after", "soon"],
])
def test_an_unusable_give_up_after_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as raised:
        main(argv, environ=ENV, make_client=lambda *_: pytest.fail("nothing is sent"))
    err = capsys.readouterr().err
    assert raised.value.code == 2 and len(err.splitlines()) == 1 and "--give-up-after" in err


def test_give_up_after_without_watch_is_one_line_exit_2():
    api = FakeApi()
    result = run(["submit", "demo.steps", "--give-up-after", "5"], api)
    assert result.code == 2 and len(result.err_lines) == 1 and "--give-up-after needs --watch" in result.err
    assert api.requests == []


def test_the_help_names_give_up_after_and_its_default(capsys):
    for command in ("watch", "submit"):
        with pytest.raises(SystemExit):
            main([command, "--help"], environ=ENV)
        assert "--give-up-after SECONDS" in capsys.readouterr().out


def test_the_live_board_status_line_is_replaced_and_cleared():
    from jobpipe_client.polling import Outage

    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=120)
    error = JobpipeUnavailableError([(URL, "timed out after 10 s")])
    with ProgressBoard(console) as board:
        board.update({"id": "j-1", "type": "demo.steps", "status": "running", "version": 1})
        board.outage(Outage(error, failures=1, since_s=0, retry_in_s=1, give_up_after_s=60))
        assert board.note is not None and "reconnecting" in board.note.plain
        board.outage(Outage(error, failures=2, since_s=1, retry_in_s=2, give_up_after_s=60))
        assert "no answer from the API for 1 s" in board.note.plain
        assert "next try in 2 s, giving up after 60 s" in board.note.plain
        board.outage(Outage(error, failures=2, since_s=3, retry_in_s=0, give_up_after_s=60, ended=True))
        assert board.note is None
    with ProgressBoard(console) as board:  # the wait gave up mid-outage: no next try is coming
        board.outage(Outage(error, failures=9, since_s=60, retry_in_s=4, give_up_after_s=60))
    assert board.note is None, "the display's last frame still says when the next try is"


def test_a_wait_whose_polls_hang_ends_at_its_timeout_not_a_request_timeout_per_url_later():
    """Each request of a poll is bounded by what is left of the wait: a poll whose URLs all hang
    for the request's whole timeout (10 s each, here 2 URLs) cannot carry a 15 s wait to 22 s."""
    api = FakeApi()
    job = api.add(status="running")
    time = FakeTime()
    servers = {}

    def hanging(method, url, **_):
        time.now += session.timeouts[-1]  # the request waits out its whole timeout
        raise requests.ReadTimeout(f"read timed out: {url}")

    session = FakeSession({URL: hanging, "http://other.test": hanging})
    client = JobpipeClient(URL, "tok", ["http://other.test"], session=session, sleep=time.sleep, clock=time.clock)
    start = time.now
    with pytest.raises(WaitUnavailableError) as raised:
        client.wait(job, timeout=15)
    assert time.now - start == pytest.approx(15) and raised.value.timed_out
    assert session.timeouts[-2:] == [10, pytest.approx(3)]  # the second URL had 3 s of the wait left
    # outside a wait, a request has its whole timeout again
    with pytest.raises(JobpipeUnavailableError):
        client.get(job["id"])
    assert session.timeouts[-2:] == [10, 10]


def test_a_poll_sent_as_the_wait_runs_out_still_has_a_moment_to_answer():
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {"status": "completed", "version": 2})
    time = FakeTime()
    session = FakeSession({URL: api})
    client = JobpipeClient(URL, "tok", session=session, sleep=time.sleep, clock=time.clock)
    assert client.wait(job, timeout=2)["status"] == "completed"  # polled at 2 s, the deadline
    assert session.timeouts == [1]


def test_what_on_change_asks_of_the_api_keeps_its_whole_timeout_and_its_fallbacks():
    """The wait's bound is its polls': a request `on_change` sends (here as the wait runs out,
    reading the job whole once it completed) was cut to a second with no fallback asked."""
    api = FakeApi()
    job = api.add(status="running")
    api.script(job["id"], {"status": "completed", "version": 2})
    time = FakeTime()
    session = FakeSession({URL: api})
    client = JobpipeClient(URL, "tok", session=session, sleep=time.sleep, clock=time.clock)
    seen = []

    def on_change(j):
        if j["status"] == "completed":
            seen.append(client.get(j["id"])["status"])

    assert client.wait(job, timeout=2, on_change=on_change)["status"] == "completed"
    assert seen == ["completed"] and session.timeouts == [1, 10]  # the poll at the deadline, then on_change's


def test_a_wait_inside_another_waits_on_change_leaves_the_outer_waits_polls_bounded():
    """A wait run inside another's `on_change` ended by lifting every bound: the outer wait's
    later polls had the whole request timeout per URL again, past its own timeout."""
    api = FakeApi()
    outer, inner = api.add(status="queued"), api.add(status="running")
    api.script(outer["id"], {"status": "running", "version": 2})
    api.script(inner["id"], {"status": "completed", "version": 2})
    time = FakeTime()
    hang = {"on": False}

    def server(method, url, **kwargs):
        if hang["on"]:
            time.now += session.timeouts[-1]  # the request waits out its whole timeout
            raise requests.ReadTimeout(f"read timed out: {url}")
        return api(method, url, **kwargs)

    session = FakeSession({URL: server, "http://other.test": server})
    client = JobpipeClient(URL, "tok", ["http://other.test"], session=session, sleep=time.sleep, clock=time.clock)

    def on_change(j):
        if j["id"] == outer["id"] and j["status"] == "running":
            client.wait(inner, timeout=60)
            hang["on"] = True  # from here every URL hangs

    start = time.now
    with pytest.raises(WaitUnavailableError):
        client.wait(outer, timeout=15, on_change=on_change)
    assert time.now - start == pytest.approx(15)
