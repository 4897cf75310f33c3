"""docs/migrating.md's rq-engine poller, run as written in Chromium: it reads a job from
jobpipe's rq route and, as rq-engine's pollers do, falls back to the legacy route on any error.
Both routes are answered inside the browser (Playwright's routing): no emulator is needed."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.e2e.dashboard_pages import browser, page  # noqa: F401  (fixtures)

ROOT = Path(__file__).resolve().parents[2]
ORIGIN = "http://127.0.0.1:9"  # nothing listens there: every request is answered by the routes below
JOB_ID = "7d06c49d-ab2c-43df-bd96-b3f86caee3f5"
LEGACY = {"id": JOB_ID, "status": "finished", "source": "legacy"}
JOBPIPE = {"id": JOB_ID, "status": "started", "source": "jobpipe"}


def example() -> str:
    """The poller's code block of docs/migrating.md."""
    blocks = re.findall(r"```js\n(.*?)```", (ROOT / "docs/migrating.md").read_text(), re.S)
    (poller,) = [b for b in blocks if "async function jobinfo" in b]
    return poller


def poll(page, jobpipe_answer) -> dict:
    """`jobinfo(JOB_ID, token)` of the example on a page of ORIGIN, jobpipe's route answered by
    `jobpipe_answer(route)`, the legacy route with LEGACY."""
    page.route(f"{ORIGIN}/", lambda route: route.fulfill(status=200, content_type="text/html", body="<!doctype html>"))
    page.route(f"{ORIGIN}/jobpipe/**", jobpipe_answer)
    page.route(f"{ORIGIN}/weppcloud/**", lambda route: route.fulfill(
        status=200, content_type="application/json", body=json.dumps(LEGACY)))
    page.goto(f"{ORIGIN}/")
    return page.evaluate(f"async () => {{\n{example()}\nreturn await jobinfo({JOB_ID!r}, 't0k3n');\n}}")


def test_a_job_jobpipe_holds_is_read_from_jobpipe(page):
    asked = []

    def jobpipe(route):
        asked.append(route.request.headers.get("authorization"))
        route.fulfill(status=200, content_type="application/json", body=json.dumps(JOBPIPE))

    assert poll(page, jobpipe) == JOBPIPE
    assert asked == ["Bearer t0k3n"]


@pytest.mark.parametrize("answer", [
    {"status": 200, "content_type": "application/json", "body": json.dumps({"id": JOB_ID, "status": "not_found"})},
    {"status": 502, "content_type": "application/json", "body": json.dumps({"message": "Internal server error"})},
    {"status": 401, "content_type": "application/json", "body": json.dumps({"error": {"code": "unauthorized"}})},
    # A proxy or single sign-on page in front of the API answers its own 200 page, not JSON.
    {"status": 200, "content_type": "text/html", "body": "<!doctype html><title>Sign in</title>"},
    {"status": 200, "content_type": "application/json", "body": '{"id": "cut off'},
    None,  # no answer: the connection fails
], ids=["not-found", "502", "401", "html-200", "cut-off-json", "no-connection"])
def test_any_error_falls_back_to_the_legacy_route(page, answer):
    def jobpipe(route):
        if answer is None:
            route.abort("connectionrefused")
        else:
            route.fulfill(**answer)

    assert poll(page, jobpipe) == LEGACY
