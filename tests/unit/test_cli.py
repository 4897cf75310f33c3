"""The `jobpipe` CLI's commands, output and exit codes, over the in-memory API (no sockets)."""
import argparse
import codecs
import io
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from rich.console import Console

from jobpipe_client import Backoff, JobpipeClient
from jobpipe_client import cli_exits
from jobpipe_client.cli import build_parser, client_from, main, UsageError
from jobpipe_client.cli_options import parse_payload
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, FakeTime, failing, make_response
from tests.unit.bad_servers import at_most

URL = "http://api.test"
ENV = {"JOBPIPE_API_URL": URL, "JOBPIPE_TOKEN": "tok"}
STEPS = '{"steps": 2, "step_ms": 0}'  # a demo.steps payload the API takes
ROOT = Path(__file__).resolve().parents[2]


class Run:
    def __init__(self, code, out, err):
        self.code, self.out, self.err = code, out, err

    def __iter__(self):  # code, out, err = run
        return iter((self.code, self.out, self.err))

    @property
    def err_lines(self):
        return self.err.splitlines()


def nothing_sent(*_):  # a make_client for a command that must be refused before any request
    pytest.fail("nothing is sent")


def exited(capsys, call: Callable[[], object]) -> Run:
    """What `call` exits with (argparse's refusals, --help, --version) and wrote meanwhile."""
    with pytest.raises(SystemExit) as raised:
        call()
    said = capsys.readouterr()
    return Run(raised.value.code, said.out, said.err)


def run_cli(argv, api=None, server=None, environ=ENV, terminal=False):
    api = api if api is not None else FakeApi()
    time = FakeTime()

    def make_client(args, env):
        client_from(args, env)  # the real configuration checks
        session = FakeSession({URL: server or api})
        return JobpipeClient(URL, "tok", session=session, sleep=time.sleep, clock=time.clock,
                             backoff=lambda: Backoff(initial_s=1, maximum_s=4))

    out, err = io.StringIO(), io.StringIO()
    # Into a pipe rich's console is 80 columns wide, as `jobpipe ... | grep` gets it.
    console = Console(file=out, width=200 if terminal else 80, force_terminal=terminal, force_interactive=terminal)
    code = main(argv, environ=environ, out=console, err=err, make_client=make_client)
    return Run(code, out.getvalue(), err.getvalue())


def test_submit_prints_the_job_id():
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", '{"steps": 2, "step_ms": 0}'], api)
    (job_id,) = api.jobs
    assert result.code == 0 and result.out.strip() == job_id and result.err == ""
    assert api.requests[0][2]["json"]["payload"] == {"steps": 2, "step_ms": 0}


# `jobpipe submit` with every option that goes into the body (--delay and --run-at exclude each other).
EVERY_SUBMIT_OPTION = [
    ["submit", "demo.steps", "--payload", STEPS, "--priority", "high", "--delay", "60", "--scope", "p-7"],
    ["submit", "demo.steps", "--payload", STEPS, "--run-at", "2027-01-31T09:00:00Z"],
]


def test_submit_can_send_every_field_of_post_jobs():
    """A field POST /jobs takes (SubmitJobRequest) and the CLI and the client cannot send is
    one a user of them never gets: each is sent by some `jobpipe submit` option, through
    JobpipeClient.submit, and the API's model reads the body as sent."""
    from chalicelib.api.requests import SubmitJobRequest

    api = FakeApi()
    for argv in EVERY_SUBMIT_OPTION:
        assert run_cli(argv, api).code == 0, argv
    bodies = [sent["json"] for method, path, sent in api.requests if (method, path) == ("POST", "/jobs")]
    for body in bodies:
        SubmitJobRequest.model_validate(body)
    sent = {field for body in bodies for field in body}
    missing = set(SubmitJobRequest.model_fields) - sent
    assert missing == set(), (f"no `jobpipe submit` option sends {sorted(missing)}: add it to JobpipeClient.submit, "
                              "the CLI's submit parser and EVERY_SUBMIT_OPTION")


def test_each_submit_option_sends_the_value_it_was_given():
    """Sending every field is not enough: `--delay 60` sent as `delay_seconds: 0` would start
    the job at once, and nothing above would see it."""
    api = FakeApi()
    for argv in EVERY_SUBMIT_OPTION:
        assert run_cli(argv, api).code == 0, argv
    bodies = [sent["json"] for method, path, sent in api.requests if (method, path) == ("POST", "/jobs")]
    common = {"type": "demo.steps", "payload": json.loads(STEPS)}
    assert bodies == [{**common, "priority": "high", "delay_seconds": 60, "scope": "p-7"},
                      {**common, "delay_seconds": 0, "run_at": "2027-01-31T09:00:00+00:00"}]


def test_submit_watch_exits_0_when_the_job_completes():
    api = FakeApi()
    original_add = api.add

    def add_scripted(**fields):
        job = original_add(**fields)
        api.script(job["id"], {"status": "running", "version": 2, "progress": {"percent": 50.0, "step": "step 1/2", "message": "half way"}},
                   {"status": "completed", "version": 3, "progress": {"percent": 100.0, "step": "completed", "message": None}})
        return job

    api.add = add_scripted
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch"], api)
    (job_id,) = api.jobs
    assert result.code == 0, result.err
    assert f"{job_id} demo.steps running 50% step 1/2: half way" in result.out
    assert f"{job_id} completed" in result.out.splitlines()[-1]
    assert result.out.splitlines()[0] == job_id  # the id first, then the changes


@pytest.mark.parametrize("final", [
    {"status": "failed", "version": 2, "error": {"code": "demo_failure", "message": "failing at step 1"}},
    {"status": "canceled", "version": 2},
])
def test_watch_exits_1_when_a_job_fails_or_is_canceled(final):
    api = FakeApi()
    good, bad = api.add(status="completed"), api.add(status="running")
    api.script(bad["id"], final)
    result = run_cli(["watch", good["id"], bad["id"]], api)
    assert result.code == 1
    summary = result.out.splitlines()[-2:]
    assert summary[0] == f"{good['id']} completed"
    assert summary[1].startswith(f"{bad['id']} {final['status']}")
    if final["status"] == "failed":
        assert summary[1].endswith("demo_failure: failing at step 1")


def test_watch_json_of_a_job_that_ended_with_a_large_result_prints_the_result():
    """`jobpipe watch` reads the jobs with one batch, which shows a result kept in S3 as its
    `{"claim_check": ...}`; a job that had already ended is printed with its result itself."""
    api = FakeApi(inline_limit=1000)
    big = {"text": "r" * 5000}
    job = api.add(status="completed", result=big, version=4)
    result = run_cli(["watch", job["id"], "--json"], api)
    assert result.code == 0 and json.loads(result.out)[0]["result"] == big


def test_status_json_prints_whole_jobs_a_result_kept_in_s3_included():
    """The batch route shows a payload or result kept in S3 as `{"claim_check": ...}`, and
    `status --json` printed that where its docs promise the whole job: `jobpipe status ID
    --json | jq .[0].result` gave the placeholder. Jobs without one cost no second read."""
    api = FakeApi(inline_limit=1000)
    big = {"text": "r" * 5000}
    large, small = api.add(status="completed", result=big), api.add(status="completed", result={"rows": 3})
    result = run_cli(["status", large["id"], small["id"], "--json"], api)
    assert result.code == 0
    assert [job["result"] for job in json.loads(result.out)] == [big, {"rows": 3}]
    assert [(method, url.rsplit("/", 2)[-2:]) for method, url, _ in api.requests if method == "GET"] == [
        ("GET", ["jobs", large["id"]])]
    assert run_cli(["result", small["id"], "--json"], api).out == run_cli(["result", small["id"]], api).out


def test_watch_of_an_unknown_job_is_one_line_and_exit_2():
    api = FakeApi()
    known = api.add(status="completed")
    result = run_cli(["watch", known["id"], "nope"], api)
    assert result.code == 2 and result.err_lines == ["jobpipe: job nope not found"]


def test_watch_timeout_exits_4_after_showing_the_last_state():
    api = FakeApi()
    job = api.add(status="running")
    result = run_cli(["watch", job["id"], "--timeout", "5"], api)
    assert result.code == 4 and len(result.err_lines) == 1 and "gave up after 5 s" in result.err
    assert f"{job['id']} running" in result.out


@pytest.mark.parametrize(
    "payload, fragment",
    [("{oops", "--payload is not valid JSON"), ("[1, 2]", "must be a JSON object"), ("@/nonexistent/p.json", "cannot read payload file"),
     # json.loads keeps the last value and would send steps 2 alone; the API refuses a key given twice
     ('{"steps": 1, "step_ms": 0, "steps": 2}', "--payload is not valid JSON: key 'steps' is given more than once"),
     ('{"a": {"b": 1, "b": 1}}', "key 'b' is given more than once")],
)
def test_bad_payload_is_one_line_exit_2_and_sends_nothing(payload, fragment):
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", payload], api)
    assert result.code == 2 and len(result.err_lines) == 1 and fragment in result.err
    assert api.requests == [] and result.out == ""


def test_payload_from_a_file(tmp_path):
    path = tmp_path / "payload.json"
    path.write_text('{"steps": 3}')
    assert parse_payload(f"@{path}") == {"steps": 3}


@pytest.mark.parametrize(
    "environ, fragment",
    [({}, "no API URL"), ({"JOBPIPE_API_URL": URL}, "no token"),
     ({"JOBPIPE_API_URL": "ftp://x", "JOBPIPE_TOKEN": "t"}, "not an http(s) URL")],
)
def test_missing_configuration_is_one_line_exit_2(environ, fragment):
    result = run_cli(["list"], environ=environ)
    assert result.code == 2 and len(result.err_lines) == 1 and fragment in result.err


def test_api_refusal_is_one_line_exit_2_with_the_code():
    def refusing(method, url, **_):
        from tests.support.fake_http import make_response

        return make_response(method, url, 422, {"error": {"code": "invalid_payload", "message": "payload is not valid"}})

    result = run_cli(["submit", "demo.steps"], server=refusing)
    assert result.code == 2
    assert result.err_lines == ["jobpipe: refused: payload is not valid (invalid_payload)"]


def test_a_quota_refusal_is_a_refusal_exit_2_its_line_saying_when_to_try_again():
    """The tenant's quota refused the job (429 quota_exceeded, jobpipe's answer, not a throttle):
    nothing was made, the API answered, so it is a refusal like any other 4xx, not an outage."""
    def over_quota(method, url, **_):
        from tests.support.fake_http import make_response

        return make_response(method, url, 429, {"error": {
            "code": "quota_exceeded", "details": {"unfinished": 5, "limit": 5},
            "message": "tenant has 5 unfinished jobs, the most it may have is 5; retry after 30 s or when some finish"}},
            {"Retry-After": "30"})

    result = run_cli(["submit", "demo.steps"], server=over_quota)
    assert result.code == 2
    (line,) = result.err_lines
    assert line.startswith("jobpipe: refused: tenant has 5 unfinished jobs") and "retry after 30 s" in line
    assert "(quota_exceeded)" in line


def test_unreachable_api_is_one_line_exit_3():
    result = run_cli(["status", "x"], server=failing("refused"))
    assert result.code == 3 and len(result.err_lines) == 1 and "could not be reached" in result.err


@pytest.mark.parametrize("down", ["timeout", "504"])
def test_a_submit_that_got_no_answer_names_the_key_to_repeat_it_with(down):
    result = run_cli(["submit", "demo.steps", "--payload", '{"steps": 2}'], server=failing(down))
    assert result.code == 3 and len(result.err_lines) == 1 and result.out == ""
    (line,) = result.err_lines
    key = re.search(r"--idempotency-key (client-[0-9a-f-]{36}) is safe", line).group(1)
    assert line.startswith("jobpipe: no answer to the submit (") and "the job may have been accepted" in line
    given = run_cli(["submit", "demo.steps", "--idempotency-key", "nightly-7"], server=failing(down))
    assert given.code == 3 and "--idempotency-key nightly-7 is safe" in given.err and key not in given.err


def test_a_submit_refused_at_the_connection_says_only_that():
    result = run_cli(["submit", "demo.steps"], server=failing("refused"))
    assert result.code == 3 and "could not be reached" in result.err and "idempotency" not in result.err


def test_status_shows_known_jobs_and_names_unknown_ones():
    api = FakeApi()
    job = api.add(status="running", progress={"percent": 40.0, "step": "load", "message": "rows"})
    result = run_cli(["status", job["id"], "ghost"], api)
    assert result.code == 2 and result.err_lines == ["jobpipe: job ghost not found"]
    assert job["id"] in result.out and "40%" in result.out and "load: rows" in result.out
    as_json = run_cli(["status", job["id"], "--json"], api)
    assert as_json.code == 0 and json.loads(as_json.out)[0]["id"] == job["id"]


def test_result_prints_the_result_as_json_and_a_gone_one_is_one_line_exit_1():
    api = FakeApi()
    done = api.add(status="completed", result={"rows": 3})
    gone = api.add(status="completed", result=None, gone=["result"])
    printed = run_cli(["result", done["id"]], api)
    assert (printed.code, json.loads(printed.out), printed.err) == (0, {"rows": 3}, "")
    assert json.loads(run_cli(["result", api.add()["id"]], api).out) is None  # none yet
    failed = run_cli(["result", gone["id"]], api)
    assert (failed.code, failed.out) == (1, "")
    assert failed.err_lines == [f"jobpipe: the result of job {gone['id']} (completed) is gone: its stored object "
                                "no longer exists (blob_not_found)"]
    unknown = run_cli(["result", "ghost"], api)
    assert unknown.code == 2 and len(unknown.err_lines) == 1 and "job_not_found" in unknown.err


def test_list_and_cancel(capsys):
    api = FakeApi()
    queued = api.add()
    api.add(status="completed")
    listing = run_cli(["list", "--status", "queued", "--json"], api)
    assert [j["id"] for j in json.loads(listing.out)] == [queued["id"]]
    table = run_cli(["list", "--limit", "5"], api)
    assert table.code == 0 and queued["id"] in table.out and "completed" in table.out
    canceled = run_cli(["cancel", queued["id"]], api)
    assert canceled.code == 0 and canceled.out.strip() == f"{queued['id']} canceled"
    # argparse's refusal (test_cli_edges: its line)
    assert exited(capsys, lambda: run_cli(["list", "--limit", "0"], api)).code == 2


@pytest.mark.parametrize(
    "argv", [[], ["submit"], ["frobnicate"], ["list", "--status", "bogus"], ["submit", "t", "--delay", "soon"]]
)
def test_usage_errors_are_one_line_exit_2(argv, capsys):
    code, _, err = exited(capsys, lambda: main(argv, environ=ENV))
    assert code == 2 and len(err.splitlines()) == 1 and "error:" in err


def test_connection_flags_win_over_the_environment_and_work_before_or_after_the_command():
    parser = build_parser()
    for argv in (["--api-url", "http://flag.test", "list"], ["list", "--api-url", "http://flag.test"]):
        args = parser.parse_args(argv + ["--fallback-url", "http://b.test", "--fallback-url", "http://c.test"])
        client = client_from(args, {"JOBPIPE_API_URL": "http://env.test", "JOBPIPE_TOKEN": "t",
                                    "JOBPIPE_FALLBACK_URLS": "http://x.test"})
        assert client.transport.urls == ["http://flag.test", "http://b.test", "http://c.test"]
    args = parser.parse_args(["list"])
    client = client_from(args, {"JOBPIPE_API_URL": "http://env.test/", "JOBPIPE_TOKEN": "t",
                                "JOBPIPE_FALLBACK_URLS": "http://a.test, ,http://b.test"})
    assert client.transport.urls == ["http://env.test", "http://a.test", "http://b.test"]


@pytest.mark.parametrize("argv, seconds", [(["list"], 10.0), (["--request-timeout", "2.5", "list"], 2.5),
                                           (["list", "--request-timeout", "3"], 3.0)])
def test_request_timeout_is_the_clients_bound_on_each_request(argv, seconds):
    """The flag is checked by the parser; the client must get it too, not its 10 s default."""
    assert client_from(build_parser().parse_args(argv), ENV).transport.timeout_s == seconds


def test_payload_parsing_refuses_non_objects():
    with pytest.raises(UsageError):
        parse_payload('"text"')


@pytest.mark.parametrize("text, seconds", [("90", 90), ("90s", 90), ("15m", 900), ("6h", 21600), ("3d", 259200)])
def test_delay_takes_seconds_or_a_unit(text, seconds):
    from jobpipe_client.cli_options import parse_delay

    assert parse_delay(text) == seconds


@pytest.mark.parametrize("argv", [
    ["submit", "demo.steps", "--delay", "soon"],
    ["submit", "demo.steps", "--run-at", "2027-01-31T09:00:00"],
    ["submit", "demo.steps", "--run-at", "next tuesday"],
    ["submit", "demo.steps", "--run-at", "2027-01-31T09:00:00Z", "--delay", "5"],
])
def test_bad_schedules_are_one_line_and_exit_2(argv, capsys):
    from jobpipe_client.cli import build_parser

    code, _, err = exited(capsys, lambda: build_parser().parse_args(argv))
    assert code == 2 and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("text", ["soon", "²", "1.5h", "-5"])
def test_a_delay_that_is_no_duration_says_what_a_duration_is(text, capsys):
    """Not argparse's `invalid parse_delay value`: the line says what --delay takes."""
    code, _, err = exited(capsys, lambda: build_parser().parse_args(["submit", "demo.steps", "--delay", text]))
    (line,) = err.splitlines()
    assert code == 2
    assert f"{text!r} is not a duration: give seconds or a number with s, m, h or d" in line, line


def test_a_refusal_quotes_an_argument_whole_up_to_its_bound_and_cut_past_it():
    from jobpipe_client.cli_options import QUOTED_ARGUMENT_CHARS, quoted

    at_bound = "a" * QUOTED_ARGUMENT_CHARS
    assert quoted(at_bound) == repr(at_bound)
    assert quoted(at_bound + "b") == repr(at_bound) + "…"


def test_list_shows_25_jobs_unless_limit_says_otherwise():
    api = FakeApi()
    for _ in range(30):
        api.add("queued")
    assert len(json.loads(run_cli(["list", "--json"], api).out)) == 25
    assert len(json.loads(run_cli(["list", "--json", "--limit", "26"], api).out)) == 26


def test_version_of_a_client_run_from_a_checkout_never_installed_says_so(monkeypatch, capsys):
    from importlib import metadata

    def not_installed(name):
        raise metadata.PackageNotFoundError(name)

    monkeypatch.setattr(metadata, "version", not_installed)
    said = exited(capsys, lambda: build_parser().parse_args(["--version"]))
    assert (said.code, said.out) == (0, "jobpipe unknown (not installed)\n")


LONG_TYPE = "reports.quarterly-revenue-by-region-and-product-line"
LONG_MESSAGE = "processing the second half of the regional ledgers,\nwith every\tadjustment " + "x" * 150


def test_list_into_a_pipe_prints_whole_values_in_aligned_columns():
    api = FakeApi()
    running = api.add(status="running", type=LONG_TYPE,
                      progress={"percent": 62.5, "step": "ledgers", "message": LONG_MESSAGE})
    done = api.add(status="completed", progress={"percent": 100.0, "step": None, "message": None})
    result = run_cli(["list"], api)
    assert result.code == 0 and result.err == ""
    header, *rows = result.out.splitlines()
    assert header.split() == ["id", "type", "status", "progress", "attempts", "created", "detail"]
    assert len(rows) == 2  # one line per job: nothing wrapped
    by_id = {row.split()[0]: row for row in rows}
    line = by_id[running["id"]]
    assert line.split()[:6] == [running["id"], LONG_TYPE, "running", "62%", "0/3", "2026-01-01T00:00:00.000Z"]
    assert line.endswith("ledgers: " + " ".join(LONG_MESSAGE.split()))  # whole, line breaks and tabs as spaces
    assert "…" not in result.out
    assert by_id[done["id"]].split()[2:] == ["completed", "100%", "0/3", "2026-01-01T00:00:00.000Z", "-"]
    # every column starts where its header does
    for name in ("type", "status", "progress", "attempts", "created", "detail"):
        start = header.index(name)
        for row in rows:
            assert row[start - 2:start] == "  " and row[start] != " "


def test_a_cancel_into_a_pipe_is_one_line_however_long():
    """A running job's cancel is a request (202, still running): its one line stays one line
    in an 80-column pipe, so `jobpipe cancel ID | grep requested` finds it."""
    api = FakeApi()
    job = api.add(status="running", type=LONG_TYPE)

    def server(method, url, **kwargs):
        if method == "DELETE":
            return make_response(method, url, 202, {**job, "cancel_requested": True})
        return api(method, url, **kwargs)

    result = run_cli(["cancel", job["id"]], server=server)
    assert result.code == 0
    assert result.out.splitlines() == [f"{job['id']} cancel requested: it is running and stops at its next check"]


def test_status_into_a_pipe_prints_whole_values():
    api = FakeApi()
    job = api.add(status="failed", type=LONG_TYPE, error={"code": "demo_failure", "message": LONG_MESSAGE})
    result = run_cli(["status", job["id"]], api)
    (header, row) = result.out.splitlines()
    assert row.split()[:3] == [job["id"], LONG_TYPE, "failed"]
    assert row.endswith("demo_failure: " + " ".join(LONG_MESSAGE.split()))


def test_an_empty_list_into_a_pipe_is_the_header_alone():
    result = run_cli(["list"], FakeApi())
    assert result.code == 0 and result.out.split() == ["id", "type", "status", "progress", "attempts", "created", "detail"]


def test_list_on_a_terminal_is_the_fitted_table():
    api = FakeApi()
    api.add(status="running", type=LONG_TYPE)
    out, err = io.StringIO(), io.StringIO()
    time = FakeTime()

    def make_client(args, env):
        return JobpipeClient(URL, "tok", session=FakeSession({URL: api}), sleep=time.sleep, clock=time.clock)

    code = main(["list"], environ=ENV, out=Console(file=out, width=60, force_terminal=True), err=err,
                make_client=make_client)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", out.getvalue())
    assert code == 0 and all(len(line) <= 60 for line in shown.splitlines())


def test_json_on_every_command():
    api = FakeApi()
    submitted = run_cli(["submit", "demo.steps", "--payload", STEPS, "--json"], api)
    job = json.loads(submitted.out)
    assert submitted.code == 0 and job["id"] in api.jobs and job["status"] == "queued"
    assert submitted.out == json.dumps(job, indent=2) + "\n"  # one document, indented for a reader
    assert json.loads(run_cli(["status", job["id"], "--json"], api).out)[0]["id"] == job["id"]
    assert [j["id"] for j in json.loads(run_cli(["list", "--json"], api).out)] == [job["id"]]
    canceled = run_cli(["cancel", job["id"], "--json"], api)
    assert canceled.code == 0 and json.loads(canceled.out)["status"] == "canceled"
    watched = run_cli(["watch", job["id"], "--json"], api)
    assert watched.code == 1 and [j["status"] for j in json.loads(watched.out)] == ["canceled"]


def test_json_is_one_document_or_nothing_when_the_command_fails():
    """docs/api.md: a failing command prints nothing on stdout with --json, but `status`, which
    prints the jobs it found and names the rest on stderr."""
    api = FakeApi()
    job = api.add(status="running")
    for argv in (["watch", "ghost"], ["cancel", "ghost"], ["watch", job["id"], "--timeout", "3"]):
        failed = run_cli([*argv, "--json"], api)
        assert failed.code in (2, 4) and failed.out == "" and len(failed.err_lines) == 1
    down = run_cli(["list", "--json"], server=failing("503"))
    assert down.code == 3 and down.out == ""
    partly = run_cli(["status", job["id"], "ghost", "--json"], api)
    assert partly.code == 2 and [j["id"] for j in json.loads(partly.out)] == [job["id"]]
    assert partly.err_lines == ["jobpipe: job ghost not found"]


def test_submit_watch_json_prints_only_the_final_job():
    api = FakeApi()
    original_add = api.add

    def add_scripted(**fields):
        job = original_add(**fields)
        api.script(job["id"], {"status": "running", "version": 2},
                   {"status": "completed", "version": 3, "result": {"ok": True}})
        return job

    api.add = add_scripted
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch", "--json"], api)
    assert result.code == 0 and json.loads(result.out)["result"] == {"ok": True}


def refusing_with(status, error):
    def refusing(method, url, **_):
        from tests.support.fake_http import make_response

        return make_response(method, url, status, {"error": error})

    return refusing


def test_a_refused_payload_names_each_field_and_what_is_wrong_in_one_line():
    error = {"code": "invalid_payload", "message": "payload is not valid for job type 'demo.steps'",
             "details": [{"loc": ["steps"], "msg": "Input should be greater than or equal to 1", "type": "x"},
                         {"loc": ["step_ms"], "msg": "Field required", "type": "missing"},
                         {"loc": [], "msg": "Value error, fail_at (5) must not exceed\nsteps (2)", "type": "value_error"}]}
    result = run_cli(["submit", "demo.steps", "--payload", '{"steps": 0}'], server=refusing_with(422, error))
    assert result.code == 2 and result.out == ""
    assert result.err_lines == [
        "jobpipe: refused: payload is not valid for job type 'demo.steps' (invalid_payload): "
        "steps: Input should be greater than or equal to 1; step_ms: Field required; "
        "Value error, fail_at (5) must not exceed steps (2)"
    ]


def test_a_refusal_with_mapping_details_is_one_line():
    error = {"code": "invalid_request", "message": "too many ids", "details": {"limit": 100}}
    result = run_cli(["status", "a"], server=refusing_with(400, error))
    assert result.code == 2 and result.err_lines == ["jobpipe: refused: too many ids (invalid_request): limit=100"]


# -- bad input: refused before anything is sent, in one line, exit 2 ------------------------------

def test_the_client_refuses_a_payload_past_the_apis_depth_before_sending_it(tmp_path):
    """The API reads a body nested at most MAX_JSON_DEPTH levels, a submit's envelope one of
    them: the client's own limit was 500, so a payload of 100 to 500 levels was sent and came
    back 400 invalid_json, not refused here."""
    from chalicelib.defaults import MAX_JSON_DEPTH
    from jobpipe_client.inputs import MAX_PAYLOAD_DEPTH

    assert MAX_PAYLOAD_DEPTH == MAX_JSON_DEPTH - 1
    deepest = json.loads('{"a": ' + "[" * (MAX_PAYLOAD_DEPTH - 1) + "]" * (MAX_PAYLOAD_DEPTH - 1) + "}")
    path = tmp_path / "payload.json"
    for payload, refused in ((deepest, False), ({"b": deepest}, True)):
        path.write_text(json.dumps(payload))
        api = FakeApi()
        result = run_cli(["submit", "demo.steps", "--payload", f"@{path}"], api)
        assert (result.code == 2 and api.requests == []) == refused, result.err
        if refused:
            assert result.err_lines == [f"jobpipe: --payload is nested too deeply (more than {MAX_PAYLOAD_DEPTH} levels)"]


@pytest.mark.parametrize("content, fragment", [
    (b'{"a": "\xff\xfe"}', "is not UTF-8 text"),
    (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    (b'{"x": NaN}', "NaN is not a JSON value"),
])
def test_a_payload_file_that_is_not_utf8_too_deep_or_not_strict_json_is_one_line_exit_2(tmp_path, content, fragment):
    path = tmp_path / "payload.json"
    path.write_bytes(content)
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", f"@{path}"], api)
    assert result.code == 2 and len(result.err_lines) == 1 and fragment in result.err
    assert api.requests == []


@pytest.mark.parametrize("payload", ['{"x": NaN}', '{"x": Infinity}', '{"x": -Infinity}'])
def test_a_payload_with_nan_or_infinity_is_one_line_exit_2(payload):
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", payload], api)
    assert result.code == 2 and len(result.err_lines) == 1 and "is not a JSON value" in result.err
    assert api.requests == []


@pytest.mark.parametrize("argv", [
    ["submit", "demo.steps", "--idempotency-key", "ключ"],
    ["submit", "demo.steps", "--idempotency-key", "a\nb"],
    ["list", "--request-timeout", "0"], ["list", "--request-timeout", "-1"],
    ["list", "--request-timeout", "nan"], ["list", "--request-timeout", "inf"], ["list", "--request-timeout", "abc"],
    ["watch", "x", "--timeout", "nan"], ["watch", "x", "--timeout", "-5"], ["watch", "x", "--timeout", "inf"],
    ["submit", "demo.steps", "--watch", "--timeout", "nan"], ["submit", "demo.steps", "--delay", "²"],
])
def test_unusable_header_values_and_timeouts_are_usage_errors(argv, capsys):
    code, _, err = exited(capsys, lambda: main(argv, environ=ENV, make_client=nothing_sent))
    assert code == 2 and len(err.splitlines()) == 1 and "error: argument" in err


def test_a_watch_whose_timeout_is_nan_ends_and_is_refused(capsys):
    api = FakeApi()
    job = api.add(status="running")
    assert exited(capsys, lambda: run_cli(["watch", job["id"], "--timeout", "nan"], server=at_most(50, api))).code == 2


def test_timeout_without_watch_is_one_line_exit_2():
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--timeout", "5"], api)
    assert result.code == 2 and len(result.err_lines) == 1 and "--timeout needs --watch" in result.err
    assert api.requests == []


@pytest.mark.parametrize("environ, fragment", [
    ({**ENV, "JOBPIPE_TOKEN": "тoken"}, "JOBPIPE_TOKEN: the token must be printable ASCII"),
    ({**ENV, "JOBPIPE_TOKEN": "a\rb"}, "JOBPIPE_TOKEN: the token must be printable ASCII"),
    ({**ENV, "JOBPIPE_API_URL": "http://"}, "JOBPIPE_API_URL: 'http://' is not a valid URL: it has no host"),
    ({**ENV, "JOBPIPE_API_URL": "http:///jobs"}, "JOBPIPE_API_URL: "),
    ({**ENV, "JOBPIPE_API_URL": "http://[::1"}, "not a valid URL"),
    ({**ENV, "JOBPIPE_API_URL": "http://127.0.0.1:99999"}, "not a valid URL"),
    ({**ENV, "JOBPIPE_API_URL": "http://127.0.0.1:abc"}, "not a valid URL"),
    ({**ENV, "JOBPIPE_API_URL": "http://exa mple.com"}, "space"),
    # the variable is named: one exported long ago is not in sight when the URL is refused
    ({**ENV, "JOBPIPE_FALLBACK_URLS": "http://"}, "JOBPIPE_FALLBACK_URLS: 'http://' is not a valid URL: it has no host"),
    ({**ENV, "JOBPIPE_FALLBACK_URLS": "http://api-2.test,nonsense"}, "JOBPIPE_FALLBACK_URLS: 'nonsense' is not an http(s) URL"),
    ({**ENV, "JOBPIPE_API_URL": "https://ann:s3cret@api.test"}, "JOBPIPE_API_URL: 'https://…@api.test' is not a valid URL: it holds a login"),
])
def test_unusable_tokens_and_urls_are_one_line_exit_2(environ, fragment):
    result = run_cli(["list"], environ=environ)
    assert result.code == 2 and len(result.err_lines) == 1 and fragment in result.err
    assert "тoken" not in result.err and "a\rb" not in result.err  # a token is never echoed
    assert "s3cret" not in result.err  # nor a URL's password


@pytest.mark.parametrize("flags, line", [
    (["--api-url", "ftp://a"], "jobpipe: --api-url: 'ftp://a' is not an http(s) URL"),
    (["--fallback-url", "x"], "jobpipe: --fallback-url: 'x' is not an http(s) URL"),
    (["--token", "a\u2026"], "jobpipe: --token: the token must be printable ASCII (no line breaks or other control characters)"),
])
def test_an_unusable_flag_is_named_in_its_line(flags, line):
    result = run_cli([*flags, "list"])
    assert result.code == 2 and result.err_lines == [line]


def test_an_upper_case_scheme_is_an_http_url():
    args = build_parser().parse_args(["list"])
    client = client_from(args, {"JOBPIPE_API_URL": "HTTP://api.test/prod", "JOBPIPE_TOKEN": "t"})
    assert client.transport.urls == ["http://api.test/prod"]


def test_status_of_several_unknown_jobs_is_one_line():
    result = run_cli(["status", "n1", "n2", "n3"])
    assert result.code == 2 and result.err_lines == ["jobpipe: jobs n1, n2, n3 not found"]
    assert result.out == ""  # no table of no jobs: not even its header


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
def test_status_of_unknown_jobs_alone_prints_nothing_on_stdout(terminal):
    """Into a pipe an empty table is its header alone, which reads as "these jobs exist, with
    no values": with every id unknown there is no table, only the line on stderr."""
    result = run_cli(["status", "ghost"], terminal=terminal)
    assert (result.code, result.out, result.err_lines) == (2, "", ["jobpipe: job ghost not found"])


# -- payloads saved with a byte order mark ----------------------------------------------------

def test_a_payload_file_saved_with_a_utf8_bom_is_read(tmp_path):
    """Notepad and other Windows editors save UTF-8 with a leading byte order mark; json.loads
    refuses it (`Unexpected UTF-8 BOM`), so `--payload @payload.json` said "not valid JSON"."""
    path = tmp_path / "payload.json"
    path.write_bytes(codecs.BOM_UTF8 + b'{"result_bytes": 3, "pad": "caf\xc3\xa9"}')
    assert parse_payload(f"@{path}") == {"result_bytes": 3, "pad": "café"}
    api = FakeApi()
    result = run_cli(["submit", "demo.outputs", "--payload", f"@{path}"], api)
    assert result.code == 0 and api.requests[0][2]["json"]["payload"] == {"result_bytes": 3, "pad": "café"}
    path.write_bytes(codecs.BOM_UTF8 + b'{"a": "\xff"}')
    result = run_cli(["submit", "demo.steps", "--payload", f"@{path}"], FakeApi())
    assert result.code == 2 and "is not UTF-8 text (byte 10)" in result.err  # counted in the file


def test_a_payload_given_inline_with_a_bom_is_read():
    """`--payload "$(cat payload.json)"` keeps the file's BOM as the first character."""
    assert parse_payload('\ufeff{"steps": 2}') == {"steps": 2}


def test_only_one_leading_bom_is_taken():
    with pytest.raises(UsageError, match="not valid JSON"):
        parse_payload('\ufeff\ufeff{"steps": 2}')


# -- stdout closed early ---------------------------------------------------------------------

LIST_INTO_A_CLOSED_PIPE = """
import functools, sys
from jobpipe_client import JobpipeClient, cli
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession

api = FakeApi()
for _ in range(2000):
    api.add()
session = FakeSession({"http://api.test": api})
cli.main = functools.partial(cli.main, make_client=lambda *_: JobpipeClient("http://api.test", "tok", session=session))
sys.argv = ["jobpipe", "list", "--json", "--limit", "2000"]
cli.run()
"""


def test_a_reader_that_goes_away_ends_the_command_quietly():
    # Far more than a pipe holds, into a pipe whose reader is gone: the write fails (EPIPE).
    process = subprocess.Popen([sys.executable, "-c", LIST_INTO_A_CLOSED_PIPE], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and err == ""


def test_help_lists_every_exit_code_and_what_each_submit_option_does(capsys):
    """A script calling `jobpipe watch` branches on its exit code: `jobpipe --help` names each
    one, as docs/api.md does, and `jobpipe submit --help` says what --priority, --scope and
    --idempotency-key do (they had no help at all)."""
    code, out, _ = exited(capsys, lambda: build_parser().parse_args(["--help"]))
    assert code == 0
    text = " ".join(out.split())
    for code, meaning in [(0, "completed"), (1, "failed or was canceled"), (2, "bad input"), (3, "unavailable"),
                          (4, "--timeout ran out"), (130, "interrupted"), (141, "stdout was closed"),
                          (143, "terminated")]:
        assert re.search(rf"\b{code} [^0-9]*{re.escape(meaning)}", text), (code, text)
    # every code the CLI exits with is listed: 143 (SIGTERM) was left out of the help
    codes = {v for k, v in vars(cli_exits).items() if k.startswith("EXIT_") and isinstance(v, int)}
    assert codes and all(re.search(rf"(^| ){code} ", text) for code in codes), (codes, text)
    text = " ".join(exited(capsys, lambda: build_parser().parse_args(["submit", "--help"])).out.split())
    for option, says in [("--priority", "job type's"), ("--scope", "cache"), ("--idempotency-key", "same key")]:
        assert re.search(rf"{option} \S+ [^-]*{re.escape(says)}", text), (option, text)


COMMANDS = ["submit", "rerun", "status", "list", "result", "cancel", "watch", "types", "artifacts", "artifact"]


@pytest.mark.parametrize("command", COMMANDS)
def test_each_commands_help_says_what_it_does_and_lists_the_exit_codes(capsys, command):
    """`jobpipe submit --help` showed its usage and flags alone: nothing said what the command
    does (rerun's alone did) nor what it exits with, which a script branches on."""
    code, out, _ = exited(capsys, lambda: build_parser().parse_args([command, "--help"]))
    assert code == 0
    described = out.split("\n\n")[1]  # the paragraph after the usage
    assert not described.startswith(("positional arguments:", "options:")), out
    summary = build_parser()._subparsers._group_actions[0].choices[command].description
    assert summary and " ".join(summary.split()) in " ".join(out.split())
    text = " ".join(out.split())
    assert "exit codes:" in text and all(re.search(rf"(^| ){c} ", text) for c in (0, 1, 2, 3, 4, 130, 141, 143))


def test_a_watched_job_that_disappears_ends_the_watch_as_not_found_exit_1_as_the_help_says():
    api = FakeApi()
    job = api.add("running")
    reads = iter([True, True])
    real_read = api._read
    api._read = lambda job_id: real_read(job_id) if next(reads, False) else None  # deleted meanwhile
    result = run_cli(["watch", job["id"]], api)
    assert result.code == 1 and result.out.splitlines()[-1] == f"{job['id']} not_found"
    assert "is no longer found (not_found:" in " ".join(build_parser().format_help().split())


# -- what a shell hands over ------------------------------------------------------------------

def test_a_payload_of_at_dash_is_read_from_standard_input(monkeypatch):
    """`generate | jobpipe submit demo.steps --payload @-`, as curl reads `-d @-`."""
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(codecs.BOM_UTF8 + b'{"steps": 3, "step_ms": 0}')))
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", "@-"], api)
    assert result.code == 0 and api.requests[0][2]["json"]["payload"] == {"steps": 3, "step_ms": 0}
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"")))
    result = run_cli(["submit", "demo.steps", "--payload", "@-"], FakeApi())
    # nothing piped: said so, not json's "Expecting value: line 1 column 1 (char 0)"
    assert result.code == 2 and result.err_lines == [
        "jobpipe: --payload: standard input is empty; give a JSON object, e.g. '{\"steps\": 10}'"]


def test_a_payload_of_at_dash_with_standard_input_closed_or_unreadable_is_one_line(monkeypatch):
    """`jobpipe submit demo.steps --payload @- <&-` (a job runner that closes stdin) ended in a
    traceback (AttributeError: Python has no sys.stdin then); stdin that could not be read was
    named "payload file '-'"."""
    monkeypatch.setattr(sys, "stdin", None)
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", "@-"], api)
    assert (result.code, result.err_lines, api.requests) == (
        2, ["jobpipe: --payload @-: standard input is closed; give the payload on it, or as @FILE"], [])

    class Unreadable(io.RawIOBase):
        def readable(self):
            return True

        def readinto(self, buffer):
            raise IsADirectoryError(21, "Is a directory")

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Unreadable())))
    result = run_cli(["submit", "demo.steps", "--payload", "@-"], api)
    assert (result.code, result.err_lines) == (2, ["jobpipe: cannot read standard input: Is a directory"])


def test_a_payload_file_or_stdin_with_no_end_is_refused_at_its_bound_not_read_for_ever(monkeypatch, tmp_path):
    """`--payload @/dev/zero`, or a pipe that never closes, was read until memory ran out. What
    is read stops one byte past MAX_PAYLOAD_FILE_BYTES, and a payload larger is refused in one
    line: no request could carry it."""
    import jobpipe_client.cli_options as cli_options

    monkeypatch.setattr(cli_options, "MAX_PAYLOAD_FILE_BYTES", 2 * 1024 * 1024)
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", "@/dev/zero"], api)
    assert (result.code, result.err_lines, api.requests) == (
        2, ["jobpipe: --payload: payload file '/dev/zero' holds more than 2 MiB: more than any request the API takes"], [])

    class Endless(io.RawIOBase):
        read_bytes = 0

        def readable(self):
            return True

        def readinto(self, buffer):
            Endless.read_bytes += len(buffer)
            assert Endless.read_bytes < 3 * 1024 * 1024, "read past the bound"
            buffer[:] = b" " * len(buffer)
            return len(buffer)

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BufferedReader(Endless())))
    result = run_cli(["submit", "demo.steps", "--payload", "@-"], api)
    assert (result.code, result.err_lines) == (
        2, ["jobpipe: --payload: standard input holds more than 2 MiB: more than any request the API takes"])
    (tmp_path / "p.json").write_bytes(b'{"steps": 3}' + b" " * (2 * 1024 * 1024 - 12))  # at the bound: read whole
    assert parse_payload(f"@{tmp_path / 'p.json'}") == {"steps": 3}


def test_an_empty_payload_file_is_said_to_be_empty(tmp_path):
    (tmp_path / "p.json").write_bytes(codecs.BOM_UTF8 + b" \n")
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", f"@{tmp_path / 'p.json'}"], api)
    assert result.code == 2 and api.requests == []
    assert result.err_lines == [f"jobpipe: --payload: payload file '{tmp_path / 'p.json'}' is empty; "
                                "give a JSON object, e.g. '{\"steps\": 10}'"]


def test_an_at_sign_alone_as_the_payload_says_it_names_no_file():
    """`--payload @"$FILE"` with FILE unset is `--payload @`: reading '' read the working
    directory, and the line said "cannot read payload file '': Is a directory"."""
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", "@"], api)
    assert result.code == 2 and api.requests == []
    assert result.err_lines == ["jobpipe: --payload: '@' names no file: give @FILE, or @- to read standard input"]


@pytest.mark.parametrize("moment", ["2027-01-31T09:00:00z", "2027-01-31t09:00:00Z", "2027-01-31 09:00:00z"])
def test_run_at_takes_every_spelling_of_utc_rfc_3339_allows(moment):
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", '{"steps": 1, "step_ms": 0}', "--run-at", moment], api)
    assert result.code == 0, result.err
    assert api.requests[0][2]["json"]["run_at"] == "2027-01-31T09:00:00+00:00"


@pytest.mark.parametrize("flag, fragment", [("--api-url", "--api-url is empty"), ("--token", "--token is empty")])
def test_an_empty_connection_flag_is_refused_not_replaced_by_the_environment(flag, fragment):
    """`--api-url "$STAGING_URL"` with the variable unset must not send the job to the URL in
    JOBPIPE_API_URL (often another stack)."""
    api = FakeApi()
    result = run_cli([flag, " ", "submit", "demo.steps"], api)
    assert result.code == 2 and len(result.err_lines) == 1 and fragment in result.err
    assert api.requests == []


def test_every_option_of_every_command_says_what_it_does():
    """`jobpipe list --help` showed `--status {queued,...}` and `--type TYPE` with no word on
    what they do (a filter? of what?): every option and argument of every command has a help."""
    parser = build_parser()
    (commands,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    silent = [(name, action.dest) for name, command in commands.choices.items() for action in command._actions
              if not (action.help or "").strip()]
    assert silent == []


def test_a_job_submitted_for_later_or_between_attempts_says_when_it_starts():
    """A `--delay 6h` job read `queued 0% -` in status, list and watch, with no word of when it runs."""
    api = FakeApi()
    later = api.add("queued", created_at="2027-01-31T09:00:00.000Z", not_before="2027-01-31T15:00:00.000Z")
    now = api.add("queued", created_at="2027-01-31T09:00:00.000Z", not_before="2027-01-31T09:00:00.000Z")
    backing_off = api.add("retrying", attempts=1, created_at="2027-01-31T09:00:00.000Z",
                          not_before="2027-01-31T09:00:30.000Z", error={"code": "boom", "message": "try again"})
    result = run_cli(["status", later["id"], now["id"], backing_off["id"]], api)
    assert result.code == 0
    lines = result.out.splitlines()[1:]
    assert lines[0].endswith(" starts at 2027-01-31T15:00:00.000Z")
    assert lines[1].endswith(" -")  # starts as submitted: nothing to say
    assert lines[2].endswith(" boom: try again; next attempt at 2027-01-31T09:00:30.000Z")
    watched = run_cli(["watch", "--timeout", "0", later["id"]], api)
    assert "queued 0% starts at 2027-01-31T15:00:00.000Z" in watched.out


def test_version_prints_the_installed_clients_version_and_exits_0(capsys):
    """`jobpipe --version` answered 'the following arguments are required: COMMAND', exit 2."""
    from importlib import metadata

    said = exited(capsys, lambda: build_parser().parse_args(["--version"]))
    assert (said.code, said.out) == (0, f"jobpipe {metadata.version('jobpipe-client')}\n")


@pytest.mark.parametrize("argv, hinted", [
    (["submit", "demo.steps", '{"steps": 3}'], True), (["submit", "demo.steps", "@payload.json"], True),
    (["submit", "demo.steps", "--watch", '{"steps":', "3}"], True),
    (["list", "extra"], False),  # another unrecognized argument: no word on the payload
])
def test_a_payload_given_without_its_flag_is_refused_naming_the_flag(argv, hinted, capsys):
    code, _, err = exited(capsys, lambda: main(argv, environ=ENV, make_client=nothing_sent))
    assert code == 2 and len(err.splitlines()) == 1
    assert "unrecognized arguments: " in err and argv[-1] in err and ("--payload" in err) is hinted


@pytest.mark.parametrize("argv", [
    ["cancel", "a", "b"], ["cancel", "a", "b", "c", "--json"], ["result", "a", "b"],
    ["rerun", "a", "b", "--watch"], ["artifacts", "a", "b"],
])
def test_a_second_id_to_a_command_that_takes_one_is_named_as_such(argv, capsys):
    """`jobpipe cancel a b` answered `unrecognized arguments: b`, as if b were a mistyped flag."""
    code, out, err = exited(capsys, lambda: main(argv, environ=ENV, make_client=nothing_sent))
    ids = [word for word in argv[1:] if not word.startswith("-")]
    assert (code, out) == (2, "") and err.splitlines() == [
        f"jobpipe {argv[0]}: error: takes one job id, not {len(ids)} ({' '.join(ids)}): "
        f"run `jobpipe {argv[0]} ID` for each (see 'jobpipe {argv[0]} --help')"]


def test_many_ids_to_a_command_that_takes_one_are_counted_not_all_named(capsys):
    """`jobpipe cancel $(jobpipe list ...)`: the line names three of the ids, not 25 UUIDs."""
    ids = [f"job-{i}" for i in range(25)]
    code, _, err = exited(capsys, lambda: main(["cancel", *ids], environ=ENV, make_client=nothing_sent))
    assert code == 2 and err.splitlines() == [
        "jobpipe cancel: error: takes one job id, not 25 (job-0 job-1 job-2 and 22 more): "
        "run `jobpipe cancel ID` for each (see 'jobpipe cancel --help')"]


def test_an_unknown_flag_after_a_commands_one_id_is_still_unrecognized(capsys):
    code, _, err = exited(capsys, lambda: main(["cancel", "a", "b", "--bogus"], environ=ENV, make_client=nothing_sent))
    assert code == 2 and err.splitlines() == ["jobpipe: error: unrecognized arguments: b --bogus (see 'jobpipe --help')"]


def test_a_refusal_with_thousands_of_problems_names_ten_and_counts_the_rest():
    """A payload with 3,000 stray keys was refused in one line of 116 KB, every problem named. The
    API lists the first 100 of them and says how many there were."""
    payload = json.dumps({"steps": 1, "step_ms": 0, **{f"k{i}": i for i in range(3000)}})
    result = run_cli(["submit", "demo.steps", "--payload", payload])
    (line,) = result.err_lines
    assert result.code == 2 and len(line) < 600
    assert line.startswith("jobpipe: refused: payload is not valid for job type 'demo.steps': 3,000 problems, "
                           "the first 100 listed (invalid_payload): k0: Extra inputs are not permitted; k1: ")
    assert line.endswith("k9: Extra inputs are not permitted; and 90 more")


def test_a_refusals_text_is_bounded_however_long_one_problem_is():
    from jobpipe_client.errors import JobpipeClientError

    refusal = JobpipeClientError(422, "invalid_payload", "payload is not valid",
                                 [{"loc": ["rows"], "msg": "x" * 100_000}, {"loc": ["n"], "msg": "bad"}])
    assert len(str(refusal)) < 2200 and str(refusal).endswith("…") and len(refusal.details) == 2
