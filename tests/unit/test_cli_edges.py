"""The `jobpipe` CLI and the client at their edges, from their users' side: idempotency keys
(refused when they cannot be sent as given, quoted for a shell when named, kept through Ctrl-C),
payloads and URLs that cannot be sent (one line, exit 2, never a traceback), a request timeout
that bounds a slowly trickling answer, waits that end for ids the API trims, a cancel answered
late by one URL and refused by the next, and a 5xx that keeps the API's own code.

Each test's docstring says what a user would meet otherwise and what docs/api.md promises. Most
run in-process over fakes (a real requests.Session over an in-memory adapter where requests'
own checks matter); the one about a server that trickles its headers starts a loopback server
on 127.0.0.1 (a free port) and stops it by its handle."""
import argparse
import io
import json
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import pytest
import requests
from requests.adapters import BaseAdapter
from rich.console import Console

from chalicelib.api.job_ids import normalize_job_ids
from jobpipe_client import JobpipeClient, JobpipeClientError, JobpipeInputError, SubmitOutcomeUnknownError
from jobpipe_client.cli import Terminated, main
from jobpipe_client.deadline import deadline_session
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession, FakeTime, failing, make_response
from tests.unit.test_cli import ENV, ROOT, STEPS, URL, Run, run_cli

PRIMARY, FALLBACK = "http://primary.test", "http://fallback.test"


def run_main(argv, environ, make_client=None):
    """`main` as the console script runs it; an exception that escapes it (which the user sees
    as a traceback) becomes the result instead of an error in the test."""
    out, err = io.StringIO(), io.StringIO()
    kwargs = {"make_client": make_client} if make_client else {}
    try:
        code = main(argv, environ=environ, out=Console(file=out, width=200), err=err, **kwargs)
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - what the user would see as a traceback
        return Run(f"traceback: {type(exc).__name__}: {exc}", out.getvalue(), err.getvalue())
    return Run(code, out.getvalue(), err.getvalue())


class ApiAdapter(BaseAdapter):
    """A requests transport adapter answering from a FakeApi, so a real requests.Session
    (header checks, URL preparation, JSON encoding) runs without a socket."""

    def __init__(self, api):
        super().__init__()
        self.api = api
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        body = json.loads(request.body) if request.body else None
        return self.api(request.method, request.url, headers=dict(request.headers), json=body)

    def close(self):
        pass


def real_session_client(api, adapter_box):
    def make_client(args, env):
        adapter = ApiAdapter(api)
        adapter_box.append(adapter)
        session = requests.Session()
        session.mount("http://", adapter)
        return JobpipeClient(URL, "tok", session=session)

    return make_client


# -- idempotency keys ------------------------------------------------------------------------------

def test_an_empty_idempotency_key_is_refused_not_silently_replaced_by_a_random_one():
    """`jobpipe submit demo.steps --idempotency-key "$KEY"` with KEY unset: swapping the empty
    key for a fresh random one would make a retry of the same command a second job. The API
    takes 1-255 characters: an empty key is bad input (exit 2), nothing sent."""
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--idempotency-key", ""], api)
    assert result.code == 2 and len(result.err_lines) == 1, (result.code, result.err, api.requests)
    assert api.requests == []


def test_the_client_refuses_an_empty_idempotency_key():
    """`client.submit(..., idempotency_key="")` is refused (ValueError), never sent with a
    random key in its place."""
    api = FakeApi()
    client = JobpipeClient(URL, "tok", session=FakeSession({URL: api}))
    with pytest.raises(ValueError, match="idempotency key"):
        client.submit("demo.steps", idempotency_key="")
    assert api.requests == []


def test_a_key_with_a_leading_space_is_bad_input_not_a_submit_that_may_have_been_accepted():
    """`jobpipe submit demo.steps --idempotency-key ' k1'`: requests would refuse the header
    before sending anything, which must not read as a submit that may have been accepted (exit 3,
    naming the key without its space). Nothing is sent; it is bad input: exit 2, one line, about
    the key."""
    api, adapters = FakeApi(), []
    result = run_main(["submit", "demo.steps", "--idempotency-key", " k1"], ENV, real_session_client(api, adapters))
    assert adapters[0].sent == [] and api.requests == []
    assert result.code == 2, result.err
    assert "may have been accepted" not in result.err and "idempotency key" in result.err


def test_the_client_refuses_a_key_it_cannot_send_with_a_value_error_before_any_request():
    """docs/api.md: an idempotency key that cannot be sent raises ValueError before any
    request; a leading space is such a key, not a SubmitOutcomeUnknownError ("may have been
    accepted")."""
    session = requests.Session()
    adapter = ApiAdapter(FakeApi())
    session.mount("http://", adapter)
    client = JobpipeClient(URL, "tok", session=session)
    with pytest.raises(ValueError, match="idempotency key"):
        try:
            client.submit("demo.steps", idempotency_key=" k1")
        except SubmitOutcomeUnknownError as exc:
            pytest.fail(f"raised SubmitOutcomeUnknownError for a key nothing was sent with: {exc}")


@pytest.mark.parametrize("key", ["k1 ", "x" * 256])
def test_the_client_refuses_a_key_the_api_would_not_hold_as_given(key):
    """A trailing space is dropped on the way (HTTP trims header values), and the API takes at
    most 255 characters: either way the key repeated later would not be the one the API holds."""
    api = FakeApi()
    client = JobpipeClient(URL, "tok", session=FakeSession({URL: api}))
    with pytest.raises(ValueError, match="idempotency key"):
        client.submit("demo.steps", json.loads(STEPS), idempotency_key=key)
    assert api.requests == []
    client.submit("demo.steps", json.loads(STEPS), idempotency_key="k" * 255)
    assert api.requests[0][2]["headers"]["Idempotency-Key"] == "k" * 255


def test_the_key_to_repeat_a_submit_with_can_be_pasted_into_a_shell():
    """A key with a space inside (printable ASCII, accepted) named unquoted, `--idempotency-key
    nightly run is safe`, would make `run` a stray argument once pasted: the key is shell-quoted,
    `--idempotency-key 'nightly run'`."""
    result = run_cli(["submit", "demo.steps", "--idempotency-key", "nightly run"], server=failing("timeout"))
    assert result.code == 3 and len(result.err_lines) == 1
    assert "--idempotency-key 'nightly run' is safe" in result.err, result.err


# -- Ctrl-C ------------------------------------------------------------------------------------------

def test_ctrl_c_while_a_submit_waits_for_its_answer_names_the_key_to_repeat_it_with():
    """Ctrl-C while `jobpipe submit` waits for the API (a slow answer): the request was sent and
    the job may exist; a bare `jobpipe: interrupted` would lose the random idempotency key, and
    with it a safe repeat. As for a submit that timed out: exit 130, and the line says the job
    may have been accepted and names the key."""
    api = FakeApi()

    def interrupted_after_arriving(method, url, **kwargs):
        api(method, url, **kwargs)  # the API made the job
        raise KeyboardInterrupt

    result = run_cli(["submit", "demo.steps", "--payload", STEPS], server=interrupted_after_arriving)
    assert len(api.jobs) == 1
    assert result.code == 130 and len(result.err_lines) == 1
    assert "may have been accepted" in result.err and "--idempotency-key client-" in result.err, result.err


def test_ctrl_c_outside_a_submit_is_a_plain_interruption():
    """Only a submit may leave a job behind: Ctrl-C during `status` is `interrupted`, exit 130."""
    def interrupted(method, url, **kwargs):
        raise KeyboardInterrupt

    result = run_cli(["status", "j-1"], server=interrupted)
    assert (result.code, result.err_lines) == (130, ["jobpipe: interrupted"])


WATCH_UNTIL_TERMINATED = """
import functools, sys
from rich.console import Console
from jobpipe_client import JobpipeClient, cli
from tests.support.fake_api import FakeApi
from tests.support.fake_http import FakeSession

api = FakeApi()
job = api.add(status="running", progress={"percent": 40.0, "step": "s", "message": None})
session = FakeSession({"http://api.test": api})
console = Console(force_terminal=True, force_interactive=True, width=120)
cli.main = functools.partial(cli.main, out=console,
                             make_client=lambda *_: JobpipeClient("http://api.test", "tok", session=session))
sys.argv = ["jobpipe", "watch", job["id"]]
cli.run()
"""


def test_sigterm_mid_watch_ends_it_as_ctrl_c_does_with_the_terminal_restored():
    """`timeout 600 jobpipe watch ID`, `kill`, a CI job canceled: SIGTERM ended the process where
    it stood, the live display's hidden cursor left hidden and its line unfinished. It ends the
    watch as Ctrl-C does: the display closed, the cursor shown, the summary, one line, exit 143."""
    process = subprocess.Popen([sys.executable, "-c", WATCH_UNTIL_TERMINATED], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    shown = b""
    while b" 40%" not in shown:  # the display is up: the watch waits for its next poll
        piece = process.stdout.read1(4096)
        assert piece, process.stderr.read().decode()
        shown += piece
    process.send_signal(signal.SIGTERM)
    out = shown + process.stdout.read()
    err = process.stderr.read().decode()
    assert process.wait(timeout=60) == 143, err
    assert out.rfind(b"\x1b[?25h") > out.rfind(b"\x1b[?25l") >= 0  # the cursor hidden, then shown again
    assert err == "jobpipe: terminated\n"


def test_sigterm_while_a_submit_waits_for_its_answer_names_the_key():
    """A submit ended by SIGTERM may have made its job, as one ended by Ctrl-C: the line names the
    key to repeat it with, and the exit code is 143."""
    api = FakeApi()

    def terminated_after_arriving(method, url, **kwargs):
        api(method, url, **kwargs)
        raise Terminated

    result = run_cli(["submit", "demo.steps"], server=terminated_after_arriving)
    assert result.code == 143 and len(result.err_lines) == 1
    assert result.err.startswith("jobpipe: terminated while the submit waited for its answer")
    assert "may have been accepted" in result.err and "--idempotency-key client-" in result.err


# -- payloads ----------------------------------------------------------------------------------------

def test_a_payload_nested_just_below_the_parsers_limit_is_refused_in_one_line_not_a_traceback():
    """`jobpipe submit demo.steps --payload '{"a": [[[...]]]}'` with about 985 levels: json.loads
    in parse_payload can take it, and requests' json.dumps, deeper in the stack, would then raise
    RecursionError (a traceback). Every depth ends as a submit (exit 0) or one line, exit 2,
    nothing sent."""
    limit = sys.getrecursionlimit()
    failures = []
    for depth in range(limit - 200, limit + 5):
        api, adapters = FakeApi(), []
        payload = '{"a": ' + "[" * depth + "]" * depth + "}"
        result = run_main(["submit", "demo.steps", "--payload", payload], ENV, real_session_client(api, adapters))
        if not (result.code == 0 or (result.code == 2 and len(result.err_lines) == 1 and api.requests == [])):
            failures.append((depth, result.code))
    assert failures == [], f"depths that did not end in exit 0 or one line/exit 2: {failures[:3]}..."


@pytest.mark.parametrize(("payload", "refusal"), [
    ({"ratio": float("nan")}, "payload"), ({"limit": float("inf")}, "payload"), ({"at": object()}, "payload"),
    ({"ids": {1, 2}}, "payload"),
    ({"name": "caf\udce9"}, "lone surrogate"), ({"\ud800": 1}, "lone surrogate"),
    ({"rows": [["ok", "\udfff"]]}, "lone surrogate"),
])
def test_a_payload_the_api_would_refuse_is_the_clients_input_error_before_any_request(payload, refusal):
    """`client.submit(type, {"ratio": nan})`: requests refuses to encode NaN, Infinity or an
    object JSON has no form for, and raised its own InvalidJSONError (or a TypeError), which a
    caller catching JobpipeError, or the ValueError docs/api.md names for a payload the client
    refuses, never saw. It is JobpipeInputError, naming the problem, and nothing is sent. So is a
    lone surrogate (a file name read with surrogateescape, `"caf\\udce9"` for latin-1 bytes): valid
    JSON as an escape, which the API refuses 400 invalid_json."""
    api = FakeApi()
    session = requests.Session()
    session.mount("http://", ApiAdapter(api))
    client = JobpipeClient(URL, "tok", session=session)
    with pytest.raises(JobpipeInputError, match=refusal):
        client.submit("demo.steps", payload)
    assert api.requests == []


@pytest.mark.parametrize("number", ["1e999", "-1e999"])
def test_a_payload_number_no_float_holds_is_refused_before_any_request(number):
    """`--payload '{"n": 1e999}'` read as infinity and was sent as `Infinity`, which is no JSON."""
    api = FakeApi()
    result = run_cli(["submit", "demo.steps", "--payload", f'{{"n": {number}}}'], api)
    assert result.code == 2 and result.err_lines == [
        f"jobpipe: --payload is not valid JSON: {number} is too large for a number"]
    assert api.requests == []


@pytest.mark.parametrize("argv, said", [
    (["submit", "demo.steps", "--delay", "9" * 5000], "is longer than any start the API takes (up to 365 days)"),
    (["list", "--limit", "9" * 5000], "is not a number of jobs from 1 to 999999999999"),
    (["list", "--limit", "0"], "is not a number of jobs from 1 to 999999999999"),
    (["list", "--limit", "00"], "is not a number of jobs from 1 to 999999999999"),
], ids=["delay", "limit", "limit-0", "limit-00"])
def test_a_number_too_long_for_its_flag_is_one_short_line_exit_2(argv, said, capsys):
    """`--delay` of 5,000 digits got argparse's `invalid parse_delay value: '999…'` (int() stops
    at 4,300 digits), naming a function and echoing every digit; `--limit` echoed them too."""
    with pytest.raises(SystemExit) as ended:
        run_cli(argv)
    err = capsys.readouterr().err
    assert ended.value.code == 2 and len(err.splitlines()) == 1 and said in err and len(err) < 300, err


def test_leading_zeros_are_the_number_they_lead_however_many():
    """int() counts leading zeros against its 4,300 digits: `--delay 000…05` was refused with
    argparse's `invalid parse_delay value` and every zero echoed."""
    from jobpipe_client.cli_options import parse_delay, parse_limit

    assert parse_delay("0" * 4999 + "5") == 5 and parse_delay("0" * 4999 + "5m") == 300
    assert parse_limit("0" * 4999 + "7") == 7


def test_a_number_is_parsed_up_to_max_number_digits_and_refused_past_them():
    """MAX_NUMBER_DIGITS is the bound: a delay or a limit of that many digits is the number it
    is (the API says whether it takes it), one more digit is refused before it is parsed."""
    from jobpipe_client.cli_options import MAX_NUMBER_DIGITS, parse_delay, parse_limit

    largest = "9" * MAX_NUMBER_DIGITS
    assert parse_delay(largest) == int(largest) and parse_delay(largest + "s") == int(largest)
    assert parse_limit(largest) == int(largest)
    with pytest.raises(argparse.ArgumentTypeError, match="longer than any start the API takes"):
        parse_delay(largest + "9")
    with pytest.raises(argparse.ArgumentTypeError, match=f"not a number of jobs from 1 to {largest}$"):
        parse_limit(largest + "9")


@pytest.mark.parametrize("job_id", ["", "  ", "a,b"])
def test_status_refuses_an_id_the_api_would_drop_or_split_before_any_request(job_id):
    """`jobpipe status ''` sent it, and the API's answer left it out: exit 3, "answered HTTP 200
    with JSON that is not the jobs asked for", as if the API were at fault."""
    api = FakeApi()
    result = run_cli(["status", job_id], api)
    assert result.code == 2 and result.err_lines == [f"jobpipe: refused by the client before sending: "
                                                     f"{job_id.strip()!r} is not a job id (invalid_job_id)"]
    assert api.requests == []


@pytest.mark.parametrize("argv", [["status", "a,b"], ["watch", " , "], ["result", "a?b"], ["cancel", ".."],
                                  ["rerun", "a b"], ["artifacts", "a/b"]])
def test_a_refusal_the_client_made_says_so_and_names_no_http_status(argv):
    """A bad id never leaves the client, yet `jobpipe result 'a/b'` said `refused: … (invalid_job_id)`
    as the API's refusals read, and the client's error `(invalid_job_id, HTTP 400)`: a user
    looked for the request in the API's logs. The line now says the client refused it before
    sending; a refusal the API made keeps its code (and, in the error, its HTTP status)."""
    api = FakeApi()
    result = run_cli(argv, api)
    assert result.code == 2 and len(result.err_lines) == 1, result.err_lines
    assert result.err_lines[0].startswith("jobpipe: refused by the client before sending: ")
    assert result.err_lines[0].endswith("(invalid_job_id)") and "HTTP" not in result.err_lines[0]
    assert api.requests == []


def test_the_clients_refusal_has_no_status_and_the_apis_keeps_its_own():
    from jobpipe_client import ClientRefusalError

    api = FakeApi()
    client = JobpipeClient(URL, "tok", session=FakeSession({URL: api}))
    with pytest.raises(ClientRefusalError) as local:
        client.get("a/b")
    assert (local.value.status, local.value.code) == (None, "invalid_job_id") and api.requests == []
    assert "HTTP" not in str(local.value) and "refused by the client before sending" in str(local.value)
    with pytest.raises(JobpipeClientError) as remote:
        client.get("no-such-job")
    assert not isinstance(remote.value, ClientRefusalError)
    assert (remote.value.status, remote.value.code) == (404, "job_not_found") and "HTTP 404" in str(remote.value)
    result = run_cli(["cancel", "no-such-job"], api)
    assert (result.code, result.err_lines) == (2, ["jobpipe: refused: job no-such-job not found (job_not_found)"])


def test_a_payload_argument_of_undecodable_bytes_is_one_line_exit_2_nothing_sent():
    """`jobpipe submit demo.steps --payload '{"name": "caf\xe9"}'` from a latin-1 terminal:
    Python hands the argument over with the byte as a lone surrogate."""
    api = FakeApi()
    argv = ["submit", "demo.steps", "--payload", b'{"name": "caf\xe9"}'.decode("utf-8", "surrogateescape")]
    result = run_main(argv, ENV, real_session_client(api, []))
    assert (result.code, len(result.err_lines), api.requests) == (2, 1, []), result.err_lines
    assert "lone surrogate" in result.err_lines[0]


@pytest.mark.parametrize("argv", [["list", "--type", "demo.st\udce9ps"],
                                  ["list", "--status", "completed", "--type", "\udcff"]], ids=["alone", "with-status"])
def test_a_listing_type_of_undecodable_bytes_is_one_line_exit_2_nothing_sent(argv):
    """`jobpipe list --type "$T"` with bytes that are not UTF-8 in T: Python hands the argument
    over with them as lone surrogates, which requests cannot encode into the query (a
    UnicodeEncodeError traceback). It is bad input: one line, exit 2, nothing sent."""
    api = FakeApi()
    result = run_main(argv, ENV, real_session_client(api, []))
    assert (result.code, len(result.err_lines), api.requests) == (2, 1, []), (result.code, result.err)
    assert "--type" in result.err_lines[0] or "type" in result.err_lines[0]


# -- URLs the client cannot use ------------------------------------------------------------------

@pytest.mark.parametrize("url", ["http://api..example.com", "http://" + "x" * 64 + ".example.com"])
@pytest.mark.parametrize("argv", [["submit", "demo.steps"], ["status", "j-1"], ["list"]], ids=lambda a: a[0])
def test_a_url_whose_host_has_an_empty_or_too_long_label_is_one_line_exit_2_not_a_traceback(argv, url):
    """`JOBPIPE_API_URL=http://api..example.com jobpipe list` (a typo): urllib3 would raise
    LocationParseError at the first request, which requests does not wrap (a traceback). The
    configuration is refused: one line, exit 2."""
    result = run_main(argv, {"JOBPIPE_API_URL": url, "JOBPIPE_TOKEN": "t"})
    assert result.code == 2 and len(result.err_lines) == 1, result.code


def test_a_url_requests_cannot_prepare_is_bad_configuration_not_a_submit_that_may_have_been_accepted():
    """`JOBPIPE_API_URL=http://.example.com jobpipe submit demo.steps`: requests would raise
    InvalidURL before connecting, which must not read as a submit that may have been accepted.
    Nothing can have been sent: exit 2, one line about the URL."""
    result = run_main(["submit", "demo.steps"], {"JOBPIPE_API_URL": "http://.example.com", "JOBPIPE_TOKEN": "t"})
    assert result.code == 2 and len(result.err_lines) == 1, (result.code, result.err)
    assert "may have been accepted" not in result.err


# -- the token ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("entry", ["default login someone password s3cret",
                                   "machine api.test login someone password s3cret"])
def test_the_token_is_sent_even_with_a_netrc_entry_for_the_host(tmp_path, monkeypatch, entry):
    """requests reads ~/.netrc ($NETRC) for a request that has no auth of its own and puts its
    login in Authorization as Basic, over the session's header: a user with a `default` entry (or
    one for the API's host) had their netrc password sent to the API in place of the token, and
    every command refused as unauthorized. The token is always what is sent."""
    netrc = tmp_path / "netrc"
    netrc.write_text(entry + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    api, adapters = FakeApi(), []
    result = run_main(["list"], ENV, real_session_client(api, adapters))
    assert result.code == 0, result.err
    assert [r.headers["Authorization"] for r in adapters[0].sent] == ["Bearer tok"]


# -- a server that answers slowly ---------------------------------------------------------------

@pytest.fixture
def no_sockets():
    """This module's loopback test opens a socket to 127.0.0.1 (overrides conftest's ban)."""


HEADERS_BEGUN = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: "


@contextmanager
def trickling_server(first: bytes = HEADERS_BEGUN):
    """A server on 127.0.0.1 that sends `first` (a status line and headers begun), then one
    byte every 0.2 s for up to 30 s: each read gets something well within any timeout, the
    answer never completes. Yields its URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(10)
    stop = threading.Event()

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(first)
            for _ in range(150):
                if stop.wait(0.2):
                    return
                try:
                    conn.sendall(b"a")
                except OSError:
                    return

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        listener.close()
        thread.join(timeout=5)


@pytest.fixture
def trickling_headers_server():
    with trickling_server() as url:
        yield url


@pytest.mark.parametrize("first", [b"HTTP/1.1 2", HEADERS_BEGUN])
def test_a_deadline_session_request_cut_mid_answer_is_the_read_timeout_it_is(first):
    """deadline.py: the watchdog cuts a request whose status line or headers trickle in once its
    timeout has passed, and the request fails as requests' ReadTimeout, naming the bound (not
    as a dropped connection, nor an answer parsed from what came before the cut)."""
    session = deadline_session()
    started = time.monotonic()
    try:
        with trickling_server(first) as url, \
                pytest.raises(requests.exceptions.ReadTimeout, match="no answer within 1 s"):
            session.get(f"{url}/jobs/j-1", timeout=1)
    finally:
        session.close()
    assert time.monotonic() - started < 15


def test_request_timeout_bounds_an_answer_whose_headers_trickle_in(trickling_headers_server):
    """`jobpipe --request-timeout 1 status j-1` against a server sending its headers a byte at a
    time: docs/api.md says --request-timeout bounds each request, its whole answer included, so
    the status line and headers too, not only the body; a per-read timeout would wait as long as
    the server keeps trickling (here 30 s; forever for one that never stops). One line, exit 3,
    well before the trickle ends (held to 15 s: a busy machine's slower run is not a bound missed)."""
    started = time.monotonic()
    result = run_main(["--request-timeout", "1", "status", "j-1"],
                      {"JOBPIPE_API_URL": trickling_headers_server, "JOBPIPE_TOKEN": "t"})
    elapsed = time.monotonic() - started
    assert result.code == 3 and len(result.err_lines) == 1, result.err
    assert elapsed < 15, f"--request-timeout 1 took {elapsed:.1f} s"


def test_watch_timeout_bounds_its_first_read_against_a_server_that_never_answers(trickling_headers_server):
    """`jobpipe watch ID --timeout 1` ran about 10 s: the first read (which checks the ids exist)
    was bounded only by --request-timeout, though the help says --timeout gives up "after
    SECONDS in all". It ends near 1 s (held to 5 s: a busy machine's slower run is not a bound
    missed), one line, exit 3: no answer came."""
    started = time.monotonic()
    result = run_main(["watch", "j-1", "--timeout", "1"],
                      {"JOBPIPE_API_URL": trickling_headers_server, "JOBPIPE_TOKEN": "t"})
    elapsed = time.monotonic() - started
    assert result.code == 3 and len(result.err_lines) == 1, result.err
    assert "timed out after 1 s" in result.err
    assert elapsed < 5, f"watch --timeout 1 took {elapsed:.1f} s"


def test_watch_timeout_counts_the_first_read_in_all():
    """The first read took 2.5 of --timeout 3's seconds: the wait has what is left, not 3 s more,
    and its line still says the --timeout given."""
    api = FakeApi()
    job = api.add(status="running")
    clock = FakeTime()

    def slow_first_read(method, url, **kwargs):
        if not slow_first_read.answered:
            clock.now += 2.5
        slow_first_read.answered += 1
        return api(method, url, **kwargs)

    slow_first_read.answered = 0
    session = FakeSession({URL: slow_first_read})
    began = clock.now
    result = run_main(["watch", job["id"], "--timeout", "3"], ENV,
                      lambda args, env: JobpipeClient(URL, "tok", session=session, sleep=clock.sleep, clock=clock.clock))
    assert (result.code, result.err_lines) == (4, [f"jobpipe: gave up after 3 s waiting for {job['id']}"])
    assert session.timeouts[0] == 3, "the first read had what --timeout left, not --request-timeout's 10 s"
    assert clock.now - began == 3


# -- waiting -----------------------------------------------------------------------------------------

def normalizing(api):
    """The API as it reads POST /jobs/status: ids trimmed and split at commas
    (chalicelib/api/job_ids.py, the server's own normaliser)."""
    def answer(method, url, json=None, **kwargs):
        if method == "POST" and url.endswith("/jobs/status"):
            json = {"job_ids": normalize_job_ids(json["job_ids"])}
        return api(method, url, json=json, **kwargs)

    return answer


def test_wait_many_ends_for_an_id_the_api_answers_under_its_trimmed_spelling():
    """`client.wait_many([line for line in open("ids.txt")])` (ids with their line ends): the
    API trims ids and answers the job under "<id>"; a client waiting for "<id>\\n" would never
    see it and poll until the timeout (forever without one). Like `client.wait("<id>\\n")`, it
    ends with the completed job."""
    api = FakeApi()
    job = api.add(status="completed")
    time_ = FakeTime()
    client = JobpipeClient(URL, "tok", session=FakeSession({URL: normalizing(api)}), sleep=time_.sleep, clock=time_.clock)
    assert client.wait(job["id"] + "\n", timeout=60)["status"] == "completed"
    final = client.wait_many([job["id"] + "\n"], timeout=60)
    assert [j["status"] for j in final.values()] == ["completed"]


@pytest.mark.parametrize("job_id", ["", "  ", "a,b"])
def test_wait_many_refuses_an_id_the_api_would_drop_or_split_before_any_request(job_id):
    """The API drops an empty id and splits one at its commas: a wait keyed by it would never
    end. It is refused as an invalid job id, nothing sent."""
    api = FakeApi()
    session = FakeSession({URL: api})
    client = JobpipeClient(URL, "tok", session=session)
    with pytest.raises(JobpipeClientError) as raised:
        client.wait_many([job_id], timeout=60)
    assert raised.value.code == "invalid_job_id" and session.calls == []


# -- fallbacks ---------------------------------------------------------------------------------------

def finished_is_409(api):
    """The API's DELETE: a finished job answers 409 job_finished."""
    def answer(method, url, **kwargs):
        job = api.jobs.get(url.rsplit("/", 1)[-1])
        if method == "DELETE" and job and job["status"] in ("completed", "failed", "canceled"):
            return make_response(method, url, 409, {"error": {"code": "job_finished", "message": f"job {job['id']} is {job['status']}"}})
        return api(method, url, **kwargs)

    return answer


def test_a_cancel_that_the_primary_applied_but_answered_too_late_is_not_reported_as_refused():
    """`jobpipe cancel ID` with a fallback URL: the primary cancels the job but its answer times
    out; the fallback (same API) then answers 409 job_finished. `refused: job ... is canceled
    (job_finished)`, exit 2, would report the cancel the user asked for as refused: exit 0 and
    `ID canceled`."""
    api = FakeApi()
    job = api.add(status="queued")
    served = finished_is_409(api)

    def applies_then_times_out(method, url, **kwargs):
        served(method, url, **kwargs)
        raise requests.ReadTimeout("read timed out")

    def make_client(args, env):
        session = FakeSession({PRIMARY: applies_then_times_out, FALLBACK: served})
        return JobpipeClient(PRIMARY, "tok", [FALLBACK], session=session)

    result = run_main(["cancel", job["id"]], ENV, make_client)
    assert api.jobs[job["id"]]["status"] == "canceled"
    assert result.code == 0 and result.out.strip() == f"{job['id']} canceled", (result.code, result.err)


def test_a_cancel_of_a_finished_job_answered_by_the_first_url_is_still_refused():
    """Without an earlier URL that may have applied it, 409 job_finished is the answer: the job
    had ended before this cancel (exit 2, the API's line)."""
    api = FakeApi()
    job = api.add(status="canceled")
    result = run_main(["cancel", job["id"]], ENV,
                      lambda args, env: JobpipeClient(PRIMARY, "tok", session=FakeSession({PRIMARY: finished_is_409(api)})))
    assert result.code == 2 and "(job_finished)" in result.err


def test_a_late_cancel_whose_job_completed_meanwhile_is_still_refused():
    """The primary timed out and the fallback answers 409 job_finished, but the job completed:
    no cancel happened, so the refusal stands."""
    api = FakeApi()
    job = api.add(status="completed")
    session = FakeSession({PRIMARY: failing("timeout"), FALLBACK: finished_is_409(api)})
    client = JobpipeClient(PRIMARY, "tok", [FALLBACK], session=session)
    with pytest.raises(JobpipeClientError) as raised:
        client.cancel(job["id"])
    assert raised.value.code == "job_finished"


# -- a primary that answers what is no answer --------------------------------------------------------

@pytest.mark.parametrize("argv", [["status", "J"], ["watch", "J"], ["submit", "demo.steps", "--payload", STEPS]],
                         ids=["status", "watch", "submit"])
def test_a_primary_answering_an_html_page_falls_back_to_a_healthy_url(argv):
    """`JOBPIPE_FALLBACK_URLS` set, the primary behind a proxy answering `200 text/html`: status,
    watch and submit exited 3 (`answered HTTP 200 with a body that is not JSON`) and never asked
    the fallback, as they would have for a primary that was down."""
    api = FakeApi()
    api.jobs["J"] = {**api.add(status="completed"), "id": "J"}

    def nginx(method, url, **_):
        return make_response(method, url, 200, b"<html><body>Welcome to nginx!</body></html>",
                             {"Content-Type": "text/html"})

    def make_client(args, env):
        return JobpipeClient(PRIMARY, "tok", [FALLBACK], session=FakeSession({PRIMARY: nginx, FALLBACK: api}))

    before = set(api.jobs)
    result = run_main(argv, ENV, make_client)
    assert (result.code, result.err) == (0, ""), result.err
    shown = (api.jobs.keys() - before).pop() if argv[0] == "submit" else "J"  # the job submitted, or J
    assert shown in result.out.split() and api.requests, result.out


# -- the API's own 5xx -------------------------------------------------------------------------------

def test_a_503_from_the_api_keeps_its_code_instead_of_saying_it_could_not_be_reached():
    """`jobpipe status ID` while the store is down: the API answers 503 with
    `{"error": {"code": "store_unavailable", "message": "down"}}`. `the jobpipe API could not be
    reached (http://api.test: HTTP 503)` would point at the network and drop what the API said:
    the line names `store_unavailable`."""
    result = run_cli(["status", "j-1"], server=failing("503"))
    assert result.code == 3 and len(result.err_lines) == 1
    assert "store_unavailable" in result.err and "could not be reached" not in result.err, result.err


@pytest.fixture
def keep_alive_server():
    """A server on 127.0.0.1 answering every request on one kept-alive connection with a job."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(10)
    body = json.dumps({"id": "j-1", "type": "demo.steps", "status": "running", "version": 1}).encode()
    answer = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    connections = []

    def serve():
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        connections.append(conn)
        with conn:
            while conn.recv(65536):
                conn.sendall(answer)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}", connections
    finally:
        listener.close()
        for conn in connections:  # wakes the thread's recv with end of stream; the thread closes it
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        thread.join(timeout=5)


def test_the_headers_deadline_ends_with_its_request_not_on_the_next_one(keep_alive_server):
    """The request timeout's watch over the headers stops once they arrived: a later request on
    the same kept-alive connection, made once the first one's watch is over, is answered. The
    watch is waited for, not slept past: a timeout short enough to sleep past is one a busy
    machine's loopback answer can miss."""
    url, connections = keep_alive_server
    client = JobpipeClient(url, "tok", timeout=5)
    assert client.get("j-1")["id"] == "j-1"
    for watch in [t for t in threading.enumerate() if t.name == "jobpipe-request-deadline"]:
        watch.join(10)  # at once when stopped; one left watching cuts at the 5 s deadline, then ends
    assert client.get("j-1")["id"] == "j-1" and len(connections) == 1
