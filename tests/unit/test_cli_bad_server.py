"""The `jobpipe` CLI against servers that answer badly: whatever comes back (the wrong shape, a
body cut off, a loop, markup, an HTML page), the command ends with one line on stderr and its
exit code, never a traceback; a submit that may have made a job names the key to repeat it
with, and a job that was made is never lost from the output."""
import json
import re

import pytest
import requests

from tests.support.fake_api import FakeApi
from tests.support.fake_http import failing, make_response
from tests.unit.bad_servers import answering, at_most, raising
from tests.unit.test_cli import STEPS, run_cli

JOB_COMMANDS = [["submit", "demo.steps"], ["status", "j-1"], ["list"], ["cancel", "j-1"], ["watch", "j-1"]]
COMMANDS = [*JOB_COMMANDS, ["types"]]  # every answer a command reads, a job or not
JOB = {"id": "j-1", "type": "demo.steps", "status": "running", "version": 2,
       "progress": {"percent": 10.0, "step": None, "message": None}, "error": None}
WRONG_SHAPES = [
    b"not json", b"null", [1, 2], {}, {"unexpected": True}, b"[" * 100_000 + b"]" * 100_000,
    {**JOB, "progress": {"percent": "abc"}}, {**JOB, "error": "plain string"}, {**JOB, "id": None},
    {"job_ids": ["j-1"], "jobs": {}}, {"jobs": [JOB], "next_cursor": 7},
]


def key_in(line):
    return re.search(r"--idempotency-key (client-[0-9a-f-]{36}) is safe", line)


def assert_one_line(result, code):
    assert result.code == code and len(result.err_lines) == 1, result.err
    assert result.err.startswith("jobpipe: ")


@pytest.mark.parametrize("body", WRONG_SHAPES)
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_a_2xx_of_the_wrong_shape_is_one_line_exit_3(argv, body):
    result = run_cli(argv, server=answering(200, body))
    assert_one_line(result, 3)
    if argv[0] == "submit":  # the POST arrived: the job may exist
        assert "may have been accepted" in result.err and key_in(result.err)
    else:
        assert "answered HTTP 200 with" in result.err


@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_a_304_to_a_request_that_sent_no_tag_is_one_line_exit_3_never_silent(argv):
    result = run_cli(argv, server=answering(304))
    assert_one_line(result, 3)
    assert result.out == "" and "304" in result.err


@pytest.mark.parametrize("exc", [
    requests.exceptions.ChunkedEncodingError("Connection broken: IncompleteRead"),
    requests.exceptions.ContentDecodingError("not gzip"),
    requests.exceptions.TooManyRedirects("Exceeded 30 redirects"),
    requests.exceptions.InvalidHeader("bad header"),
])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_an_answer_that_cannot_be_read_is_one_line_exit_3(argv, exc):
    result = run_cli(argv, server=raising(exc))
    assert_one_line(result, 3)
    assert f"could not be read ({type(exc).__name__})" in result.err
    if argv[0] == "submit":
        assert "may have been accepted" in result.err and key_in(result.err)


def test_a_listing_that_loops_ends_with_one_line_exit_3():
    server = answering(200, {"jobs": [], "next_cursor": "c"})
    result = run_cli(["list"], server=server)
    assert_one_line(result, 3)
    assert "already given" in result.err and server.asked == 2


@pytest.mark.parametrize("status, body, message", [
    (400, b"<html>\n<body>\n<h1>Bad Request</h1>\n</body>\n</html>\n", "Bad Request"),
    (404, b"<html>\n<body>\n<h1>Not Found</h1>\n</body>\n</html>\n", "Not Found"),
    (400, {"message": "gateway says\nno\nway"}, "gateway says no way"),
    (400, {"error": {"message": "something wrong"}}, "something wrong"),
    (400, {"error": {"code": "bad", "message": "first\nsecond"}}, "first second"),
])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_an_error_body_on_several_lines_is_one_line_exit_2(argv, status, body, message):
    result = run_cli(argv, server=answering(status, body))
    assert_one_line(result, 2)
    assert f"refused: {message} (" in result.err


NGINX_413 = (b"<html>\r\n<head><title>413 Request Entity Too Large</title></head>\r\n<body>\r\n<center><h1>413 "
             b"Request Entity Too Large</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n")
CLOUDFRONT_403 = (b'<!DOCTYPE HTML PUBLIC "-//W3C//DTD HTML 4.01 Transitional//EN" "http://www.w3.org/TR/html4/loose.dtd">'
                  b'\n<HTML><HEAD><META HTTP-EQUIV="Content-Type" CONTENT="text/html; charset=iso-8859-1">\n'
                  b"<TITLE>ERROR: The request could not be satisfied</TITLE>\n</HEAD><BODY>\n<H1>403 ERROR</H1>\n"
                  b"<H2>The request could not be satisfied.</H2>\n<HR noshade size=\"1px\">\nRequest blocked.\n</BODY></HTML>")
UNTITLED = b"<html><head><style>h1 {color: red}</style><script>var a = '<b>';</script></head><body><h1>Too &amp; many</h1></body></html>"


@pytest.mark.parametrize("status, page, message", [
    (413, NGINX_413, "413 Request Entity Too Large"),
    (403, CLOUDFRONT_403, "ERROR: The request could not be satisfied"),
    (400, UNTITLED, "Too & many"),
])
@pytest.mark.parametrize("argv", COMMANDS, ids=lambda argv: argv[0])
def test_an_html_page_refusing_the_request_is_named_by_what_it_says_not_its_markup(argv, status, page, message):
    """A proxy's `413 Request Entity Too Large` page was quoted tags and all: `refused: <html>
    <head><title>413 Request Entity Too Large</title></head> <body> <center><h1>…`."""
    result = run_cli(argv, server=answering(status, page, {"Content-Type": "text/html"}))
    assert_one_line(result, 2)
    assert result.err == f"jobpipe: refused: {message} (http_{status})\n"


MARKUP_ID = "[/]"
MARKUP_TEXT = "[bold red]not markup[/bold red]"


def markup_server():
    job = {**JOB, "id": MARKUP_ID, "type": MARKUP_TEXT, "status": "canceled",
           "progress": {"percent": 100.0, "step": MARKUP_TEXT, "message": None}}

    def answer(method, url, json=None, **_):
        if url.endswith("/jobs/status"):
            return make_response(method, url, 200, {"job_ids": json["job_ids"], "jobs": {i: job for i in json["job_ids"]}})
        if method == "GET" and url.endswith("/jobs"):
            return make_response(method, url, 200, {"jobs": [job], "next_cursor": None})
        return make_response(method, url, 201, job)

    return answer


@pytest.mark.parametrize("terminal", [False, True], ids=["pipe", "terminal"])
@pytest.mark.parametrize("argv", [["submit", "demo.steps"], ["submit", "demo.steps", "--watch"], ["status", "x"],
                                  ["list"], ["cancel", "x"], ["watch", "x"]], ids=" ".join)
def test_the_servers_text_is_shown_as_it_is_never_as_markup(argv, terminal):
    result = run_cli(argv, server=markup_server(), terminal=terminal)
    shown = re.sub(r"\x1b\[[0-9;?]*[a-zA-Z]", "", result.out)
    assert result.err == "" and MARKUP_ID in shown
    if argv[0] in ("status", "list", "watch") or "--watch" in argv:
        assert MARKUP_TEXT in shown or "[bold red]" in shown  # a fitted table may cut the type short


def submit_then(down):
    """The API for the submit; then every poll fails with `down`."""
    api = FakeApi()

    def answer(method, url, **kwargs):
        if method == "POST" and url.endswith("/jobs"):
            return api(method, url, **kwargs)
        return failing(down)(method, url, **kwargs)

    return api, answer


@pytest.mark.parametrize("down", ["503", "refused", "timeout"])
def test_submit_watch_json_whose_watch_fails_still_names_the_job(down):
    api, server = submit_then(down)
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch", "--json"], server=server)
    (job_id,) = api.jobs
    assert_one_line(result, 3)
    assert result.out == "" and f"job {job_id} was submitted" in result.err


def test_submit_watch_json_that_times_out_names_the_job():
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch", "--json", "--timeout", "3"], api)
    (job_id,) = api.jobs
    assert_one_line(result, 4)
    assert f"job {job_id} was submitted" in result.err


@pytest.mark.parametrize("extra", [["--timeout", "3"], ["--json", "--timeout", "3"]], ids=["lines", "json"])
def test_submit_watch_that_times_out_names_the_job_only_when_stdout_has_not(extra):
    """Without --json the id is stdout's first line before the watch starts: the timeout's line
    then says only that it timed out, not that a job was submitted as though it were lost."""
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch", *extra], api)
    (job_id,) = api.jobs
    assert_one_line(result, 4)
    if "--json" in extra:
        assert result.out == "" and f"job {job_id} was submitted" in result.err
    else:
        assert result.out.splitlines()[0] == job_id and "was submitted" not in result.err


def test_submit_watch_json_that_ends_prints_the_job_and_nothing_on_stderr():
    api = FakeApi()
    original_add = api.add

    def add_scripted(**fields):
        job = original_add(**fields)
        api.script(job["id"], {"status": "completed", "version": 2})
        return job

    api.add = add_scripted
    result = run_cli(["submit", "demo.steps", "--payload", STEPS, "--watch", "--json"], api)
    assert result.code == 0 and result.err == "" and json.loads(result.out)["status"] == "completed"


JOB_TEXT = json.dumps({**JOB, "attempts": 1, "max_attempts": 3})
# Jobs whose JSON parses, with a value the views could not show: a percent beyond a float
# (10**400) or infinite (1e400), attempts that are infinite or not a number.
UNSHOWABLE_JOBS = {
    "percent 10**400": JOB_TEXT.replace('"percent": 10.0', '"percent": 1' + "0" * 400),
    "percent 1e400": JOB_TEXT.replace('"percent": 10.0', '"percent": 1e400'),
    "attempts 1e400": JOB_TEXT.replace('"attempts": 1', '"attempts": 1e400'),
    "attempts two": JOB_TEXT.replace('"attempts": 1', '"attempts": "two"').replace("running", "retrying"),
    "max_attempts three": JOB_TEXT.replace('"max_attempts": 3', '"max_attempts": "three"').replace("running", "retrying"),
}


def answering_with_job(job_text):
    """Each route's answer in its own shape, holding the job `job_text` (JSON text, as sent)."""
    def answer(method, url, **_):
        path = url.split("://", 1)[1].split("/", 1)[1].split("?")[0]
        body = {"jobs/status": f'{{"jobs": {{"j-1": {job_text}}}, "job_ids": ["j-1"]}}',
                "jobs": f'{{"jobs": [{job_text}]}}' if method == "GET" else job_text}.get(path, job_text)
        return make_response(method, url, 201 if (method, path) == ("POST", "jobs") else 200, body.encode())

    return at_most(100, answer)


@pytest.mark.parametrize("job_text", UNSHOWABLE_JOBS.values(), ids=UNSHOWABLE_JOBS.keys())
@pytest.mark.parametrize("argv", JOB_COMMANDS, ids=lambda argv: argv[0])
def test_a_job_whose_values_cannot_be_shown_is_not_a_job_one_line_exit_3(argv, job_text):
    """A percent of 10**400 or 1e400, or attempts of 1e400 or "two", passed the shape checks and
    crashed the views (OverflowError, ValueError: a traceback): such an answer is not a job."""
    result = run_cli([*argv, "--payload", STEPS] if argv[0] == "submit" else argv, server=answering_with_job(job_text))
    assert_one_line(result, 3)
    if argv[0] == "submit":  # the POST arrived: the job may exist
        assert "may have been accepted" in result.err and key_in(result.err)
    else:
        # 1e400 reads as no number at all (a body that is not JSON), the rest as no job.
        assert re.search(r"answered HTTP 200 with (JSON that is not (a job|a page of jobs|the jobs asked for)"
                         r"|a body that is not JSON)", result.err), result.err


@pytest.mark.parametrize("argv", [["result", "j-1"], ["status", "j-1", "--json"], ["watch", "j-1", "--json"],
                                  ["list", "--json"]], ids=lambda argv: argv[0])
def test_a_number_no_float_holds_is_an_unreadable_answer_never_infinity_on_stdout(argv):
    """A result holding 1e999 read as infinity, and `--json` printed it back as `Infinity`,
    which is not JSON: `jobpipe result ID | jq` failed on it after an exit 0."""
    job_text = JOB_TEXT.replace('"status": "running"', '"status": "completed"').replace(
        '"error": null', '"error": null, "result": {"x": 1e999}')
    assert "1e999" in job_text
    result = run_cli(argv, server=answering_with_job(job_text))
    assert_one_line(result, 3)
    assert result.out == "" and "with a body that is not JSON" in result.err


@pytest.mark.parametrize("details, shown", [
    ([{"loc": 5, "msg": "x"}], "5: x"),
    ([{"loc": "payload", "msg": "x"}], "payload: x"),
    ([{"loc": ["payload", 0, None, {"k": 1}], "msg": {"why": [1]}}], 'payload.0.null.{"k":1}: {"why":[1]}'),
    ([{"loc": None, "msg": None}, 7, None], "null; 7; null"),
    ({"limit": {"max": 5}, "ok": None}, 'limit={"max":5}, ok=null'),
    (12.5, "12.5"),
])
def test_a_refusals_details_of_any_json_are_shown_as_text(details, shown):
    """A 400 in the API's shape whose details held `"loc": 5` crashed the refusal line
    (TypeError: 'int' object is not iterable), and `"loc": "payload"` read as `p.a.y.l.o.a.d`."""
    body = {"error": {"code": "invalid_payload", "message": "bad", "details": details}}
    result = run_cli(["submit", "demo.steps"], server=answering(400, body))
    assert_one_line(result, 2)
    assert result.err == f"jobpipe: {' '.join(f'refused: bad (invalid_payload): {shown}'.split())}\n"
