"""`JobpipeClient.rerun` and `jobpipe rerun` over the in-memory API (no sockets): always keyed as
a submit is, a timeout naming the key that repeats it safely, output and exit codes as submit's."""
from __future__ import annotations

import re
from datetime import datetime, timezone

import pytest

from jobpipe_client import JobpipeClient, JobpipeClientError, SubmitOutcomeUnknownError
from jobpipe_client.cli import build_parser
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, failing
from tests.unit.test_cli import URL, run_cli

STEPS = {"steps": 2, "step_ms": 0}  # a demo.steps payload the API takes (and so runs again)


def a_client(server):
    return JobpipeClient(URL, "tok", session=FakeSession({URL: server}))


def test_rerun_posts_to_the_jobs_rerun_route_always_with_a_key():
    api = FakeApi()
    failed = api.add(status="failed", payload=STEPS)
    client = a_client(api)
    again = client.rerun(failed["id"])
    assert again["rerun_of"] == failed["id"] and again["id"] != failed["id"] and again["status"] == "queued"
    method, path, sent = api.requests[0]
    assert (method, path) == ("POST", f"/jobs/{failed['id']}/rerun")
    assert sent["json"] == {"delay_seconds": 0}
    assert sent["headers"]["Idempotency-Key"].startswith("client-")
    client.rerun(failed["id"], idempotency_key="again-1", run_at=datetime(2027, 1, 31, 9, tzinfo=timezone.utc))
    assert api.requests[1][2]["headers"]["Idempotency-Key"] == "again-1"
    assert api.requests[1][2]["json"] == {"delay_seconds": 0, "run_at": "2027-01-31T09:00:00+00:00"}
    client.rerun(failed["id"], delay_seconds=30)
    assert api.requests[2][2]["json"] == {"delay_seconds": 30}


def test_a_refused_rerun_is_a_client_error_with_the_apis_code():
    api = FakeApi()
    running = api.add(status="running")
    with pytest.raises(JobpipeClientError) as refused:
        a_client(api).rerun(running["id"])
    assert refused.value.code == "job_not_finished" and refused.value.status == 409
    with pytest.raises(JobpipeClientError) as unknown:
        a_client(api).rerun("ghost")
    assert unknown.value.code == "job_not_found"


@pytest.mark.parametrize("down", ["timeout", "502"])
def test_a_rerun_without_an_answer_names_the_key_that_repeats_it_safely(down):
    with pytest.raises(SubmitOutcomeUnknownError) as raised:
        a_client(failing(down)).rerun("j-1", idempotency_key="again-2")
    assert raised.value.idempotency_key == "again-2"
    assert "repeating the rerun with idempotency key again-2 is safe" in str(raised.value)


def test_a_rerun_refuses_a_key_that_cannot_go_in_a_header_before_any_request():
    api = FakeApi()
    with pytest.raises(ValueError, match="idempotency key"):
        a_client(api).rerun("j-1", idempotency_key=" padded")
    assert api.requests == []


def test_jobpipe_rerun_prints_the_new_job_id():
    api = FakeApi()
    failed = api.add(status="failed", payload=STEPS)
    result = run_cli(["rerun", failed["id"]], api)
    (new_id,) = set(api.jobs) - {failed["id"]}
    assert result.code == 0 and result.out.strip() == new_id and result.err == ""
    assert api.jobs[new_id]["rerun_of"] == failed["id"]


def test_jobpipe_rerun_sends_its_start_and_key():
    api = FakeApi()
    failed = api.add(status="failed", payload=STEPS)
    assert run_cli(["rerun", failed["id"], "--delay", "15m", "--idempotency-key", "again-3"], api).code == 0
    assert run_cli(["rerun", failed["id"], "--run-at", "2027-01-31T09:00:00Z"], api).code == 0
    (_, _, delayed), (_, _, at) = api.requests
    assert delayed["json"] == {"delay_seconds": 900} and delayed["headers"]["Idempotency-Key"] == "again-3"
    assert at["json"]["run_at"].startswith("2027-01-31T09:00:00")


class EndingApi(FakeApi):
    """A FakeApi whose reruns go through `states` as they are read."""

    def __init__(self, *states):
        super().__init__()
        self.states = states

    def add(self, status="queued", **fields):
        job = super().add(status, **fields)
        if "rerun_of" in fields:
            self.script(job["id"], *self.states)
        return job


def test_jobpipe_rerun_watch_exits_as_the_new_job_ends():
    api = EndingApi({"status": "running", "version": 2},
                    {"status": "completed", "result": {"rows": 2}, "version": 3})
    failed = api.add(status="failed", payload=STEPS)
    done = run_cli(["rerun", failed["id"], "--watch", "--json"], api)
    assert done.code == 0 and '"status": "completed"' in done.out and f'"rerun_of": "{failed["id"]}"' in done.out
    api = EndingApi({"status": "failed", "error": {"code": "boom", "message": "the ERP was down"}, "version": 2})
    failed = api.add(status="failed", payload=STEPS)
    assert run_cli(["rerun", failed["id"], "--watch"], api).code == 1


@pytest.mark.parametrize("argv, says", [
    (["rerun", "j-1", "--timeout", "5"], "--timeout needs --watch"),
    (["rerun", "j-1", "--give-up-after", "5"], "--give-up-after needs --watch"),
])
def test_jobpipe_rerun_flags_that_need_watch_are_bad_input(argv, says):
    result = run_cli(argv)
    assert result.code == 2 and len(result.err_lines) == 1 and says in result.err


def test_jobpipe_rerun_refused_is_one_line_and_exit_2():
    api = FakeApi()
    running = api.add(status="running")
    result = run_cli(["rerun", running["id"]], api)
    assert result.code == 2 and len(result.err_lines) == 1
    assert "(job_not_finished)" in result.err


@pytest.mark.parametrize("down", ["timeout", "504"])
def test_jobpipe_rerun_without_an_answer_names_the_key_to_repeat_it_with(down):
    result = run_cli(["rerun", "j-1"], server=failing(down))
    assert result.code == 3 and len(result.err_lines) == 1 and result.out == ""
    (line,) = result.err_lines
    assert line.startswith("jobpipe: no answer to the rerun (")
    assert re.search(r"repeating it with --idempotency-key client-[0-9a-f-]{36} is safe", line), line


def test_jobpipe_rerun_watch_json_that_times_out_names_the_job_it_made():
    """As a submit's: stdout shows nothing before the job ends, so the line names the new job,
    as made (a rerun submits nothing)."""
    api = FakeApi()
    failed = api.add(status="failed", payload=STEPS)
    result = run_cli(["rerun", failed["id"], "--watch", "--json", "--timeout", "3"], api)
    (new_id,) = set(api.jobs) - {failed["id"]}
    assert result.code == 4 and result.out == "" and len(result.err_lines) == 1
    assert result.err_lines[0].endswith(f" (job {new_id} was made: `jobpipe watch {new_id}` follows it)")


def test_jobpipe_rerun_help_says_what_it_does(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert re.search(r"rerun\s+run a finished job again", capsys.readouterr().out)
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rerun", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for option in ("--delay", "--run-at", "--idempotency-key", "--watch", "--timeout", "--give-up-after", "--json"):
        assert option in text, (option, text)
