"""An API URL that answers a redirect (an http:// URL in front of a proxy that sends every
request to https://, a moved host) is not followed by the client, over a real connection as
requests would follow it: a POST followed as a redirect becomes a GET without its body, and
one to another port or host loses the token, so what came back would answer another request.
The redirect is a failed URL naming where it points, and nothing reached the API."""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console

from jobpipe_client import JobpipeClient, JobpipeUnavailableError, SubmitOutcomeUnknownError
from jobpipe_client.cli import main
from tests.support.local_server import LocalServer, QuietHandler

JOB = {"id": "j-1", "type": "demo.steps", "status": "queued", "version": 1}


class _Moved(LocalServer):
    """One HTTP server on 127.0.0.1: every request under /old answers `status` to the same path
    under /new, which answers as the API would (a page of jobs to a GET /jobs, the job to
    anything else) and counts what reaches it."""

    def __init__(self, status: int) -> None:
        moved = self
        self.reached: list[tuple[str, str]] = []

        class Handler(QuietHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                if self.path.startswith("/old/"):
                    self.send_response(status)
                    self.send_header("Location", f"{moved.url}/new/{self.path[len('/old/'):]}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                moved.reached.append((self.command, self.path))
                body = {"jobs": [JOB], "next_cursor": None} if self.path.startswith("/new/jobs?") else JOB
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = _answer

        super().__init__(Handler)


@pytest.mark.parametrize("status", [301, 302, 307, 308])
def test_a_redirect_is_not_followed_and_names_where_it_points(status):
    with _Moved(status) as moved:
        jobpipe = JobpipeClient(f"{moved.url}/old", "tok", timeout=5)
        with pytest.raises(JobpipeUnavailableError) as raised:
            jobpipe.submit("demo.steps", {"steps": 1, "step_ms": 0}, idempotency_key="order-1")
        # Nothing reached the API: no "the job may have been accepted" for a job that cannot exist.
        assert not isinstance(raised.value, SubmitOutcomeUnknownError)
        assert f"redirected (HTTP {status}) to {moved.url}/new/jobs" in str(raised.value)
        for call in (lambda: jobpipe.get("j-1"), lambda: jobpipe.status_many(["j-1"]), lambda: jobpipe.cancel("j-1")):
            with pytest.raises(JobpipeUnavailableError, match=rf"redirected \(HTTP {status}\)"):
                call()
    assert moved.reached == []


def test_the_cli_says_where_a_redirect_points_and_exits_3():
    with _Moved(301) as moved:
        err = io.StringIO()
        code = main(["status", "j-1"], environ={"JOBPIPE_API_URL": f"{moved.url}/old", "JOBPIPE_TOKEN": "tok"},
                    out=Console(file=io.StringIO()), err=err)
    assert code == 3 and moved.reached == []
    assert err.getvalue() == (f"jobpipe: the jobpipe API could not be reached ({moved.url}/old: redirected (HTTP 301) "
                              f"to {moved.url}/new/jobs/status: is that the API's URL?)\n")
