"""The dashboard's browser tests' shared parts: Debian's headless Chromium (a browser per test
module, a fresh tab per test that fails it on a script error or a Content-Security-Policy
violation), and `FakeApi`, which answers the API inside the browser (Playwright's routing)
so a test needs no emulator: each is about how the page reacts to an answer, a failure, the
clock or the tab. The tests are `test_dashboard_*.py` beside this module; those marked `stack`
drive the deployed stack instead, and `-m "not stack"` runs only the others:

    .venv/bin/python -m pytest tests/e2e/test_dashboard_*.py -m "not stack"
"""
from __future__ import annotations

import json
import os
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from tests.support.waiting import eventually


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]

expect.set_options(timeout=20_000)


@pytest.fixture(scope="module")
def browser():
    if not os.access(CHROMIUM, os.X_OK):
        pytest.fail(f"{CHROMIUM} is missing: `make test` (or `make browser`) installs Debian's chromium", pytrace=False)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    """A fresh tab; fails the test on a script error or a Content-Security-Policy violation."""
    context = browser.new_context(viewport={"width": 1440, "height": 900})
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on(
        "console",
        lambda message: problems.append(f"console: {message.text}")
        if "Content Security Policy" in message.text or "Refused to" in message.text else None,
    )
    yield page
    context.close()
    assert not problems, problems


def row(page: Page, job_id: str):
    return page.locator(f'tr.job[data-job-id="{job_id}"]')


def batch_requests(page: Page) -> list[list[str]]:
    """Record the job ids of every POST /jobs/status the page makes from now on."""
    seen: list[list[str]] = []

    def record(request):
        if request.method == "POST" and request.url.endswith("/jobs/status"):
            seen.append(json.loads(request.post_data or "{}")["job_ids"])

    page.on("request", record)
    return seen


OFFLINE_ORIGIN = "http://127.0.0.1:9"  # nothing listens there: every request is answered by FakeApi
JOB_TYPES = [{"type": "demo.steps", "description": "Steps.", "max_attempts": 3, "timeout_s": 60, "priority": "normal",
              "payload_schema": {"type": "object", "properties": {"steps": {"type": "integer"}}, "required": []}},
             {"type": "demo.sleep", "description": "Sleeps.", "max_attempts": 3, "timeout_s": 60, "priority": "normal",
              "payload_schema": {"type": "object", "properties": {}, "required": []}}]


FETCHES = 'Symbol.for("fetches")'  # [started, handled], kept under a symbol: no name added to `window`
# An answer is handled once its body is read: the page reads every answer's text, and what it
# does with it after is promise callbacks, run before the next task (a test's next evaluate).
COUNT_FETCHES = f"""(() => {{
    const count = window[{FETCHES}] = [0, 0], fetch = window.fetch;
    const handled = () => {{ count[1]++; }};
    window.fetch = function (...args) {{
        count[0]++;
        return fetch.apply(this, args).then(response => {{
            const text = response.text.bind(response);
            response.text = () => text().finally(handled);
            return response;
        }}, error => {{ handled(); throw error; }});
    }};
}})()"""


class AnswerLost:
    """A route whose request the fake API carries out but whose answer is dropped."""

    def __init__(self, route):
        self.request = route.request

    def fulfill(self, **_):
        pass


class Dated:
    """A route whose answer carries the `Date` header of a server whose clock is `skew` off the
    page's (the page's own clock, paused or not, read when the answer is given)."""

    def __init__(self, route, page: Page, skew: timedelta):
        self.route, self.request, self.page, self.skew = route, route.request, page, skew

    def fulfill(self, **response):
        from email.utils import format_datetime

        now = datetime.fromtimestamp(self.page.evaluate("() => Date.now()") / 1000, timezone.utc) + self.skew
        date = format_datetime(now.replace(microsecond=0), usegmt=True)  # HTTP dates are whole seconds
        self.route.fulfill(**{**response, "headers": {**response.get("headers", {}), "Date": date}})

    def abort(self, *args):
        self.route.abort(*args)


class FakeApi:
    """The job routes as the page uses them, over an in-memory dict of public jobs; records
    every request. `fail` answers the next matching requests with a given response instead."""

    def __init__(self, page: Page, tenant: str = "acme"):
        from chalicelib.dashboard.page import build_page

        self.page = page
        self.built = build_page()
        self.jobs: dict[str, dict] = {}
        self.requests: list[tuple[str, str, dict]] = []
        self.failures: list[tuple[str, str, dict]] = []  # (method, path regex, fulfil kwargs)
        self.held: list = []
        self.hold_next: str | None = None  # a path regex: its next request waits for release()
        self.holding: str | None = None  # a path regex: each of its requests waits for release() while set
        self.idempotency: dict[str, str] = {}
        self.not_modified = 0  # 304s answered (to polls and listings)
        self.created = 0
        self.tenant = tenant
        self.job_types = list(JOB_TYPES)  # GET /job-types: the registry as deployed now
        self.runs: dict[str, list[dict]] = {}  # GET /jobs/{id}/runs, by job id
        # A payload or result kept in S3, by job id and field: listings and polls show the job's
        # claim check in its place (as `add` was given it), GET /jobs/{id} the value whole.
        self.kept_in_s3: dict[str, dict[str, Any]] = {}
        # The API's clock, off the page's by this: its answers then carry a `Date` header (none while None).
        self.clock_skew: timedelta | None = None
        page.route(re.compile(re.escape(OFFLINE_ORIGIN) + "/.*"), self.handle)
        page.add_init_script(COUNT_FETCHES)

    def token(self, tenant: str | None = None) -> str:
        from chalicelib.api.auth import issue_token

        return issue_token("fake-api-secret-0123456789abcdef-0123", user="ann", tenant=tenant or self.tenant)

    @staticmethod
    def tenant_of(request) -> str | None:
        import jwt

        bearer = (request.headers.get("authorization") or "").removeprefix("Bearer ")
        return jwt.decode(bearer, options={"verify_signature": False})["tenant"] if bearer else None

    def open(self, token: str | None = None) -> None:
        self.page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={token or self.token()}")
        expect(self.page.locator("#workspace")).to_be_visible()

    def add(self, **fields) -> dict:
        self.created += 1
        job = {
            "id": fields.pop("id", f"job-{self.created:04d}"), "type": "demo.steps", "payload": {}, "status": "queued",
            "tenant": self.tenant, "user": "ann", "scope": None, "parent_id": None, "children": [], "rerun_of": None,
            "priority": "normal", "attempts": 0, "max_attempts": 3,
            "progress": {"percent": 0.0, "step": None, "message": None, "details": None, "updated_at": None},
            "result": None, "error": None, "cancel_requested": False,
            "created_at": f"2026-01-15T10:{self.created // 60:02d}:{self.created % 60:02d}.000Z",
            "started_at": None, "attempt_started_at": None, "finished_at": None, "not_before": None, "expires_at": None, "version": 1,
        }
        job.update(fields)
        self.jobs[job["id"]] = job
        return job

    def update(self, job_id: str, **fields) -> dict:
        job = self.jobs[job_id]
        job.update(fields)
        job["version"] += 1
        return job

    def settle(self) -> None:
        """Return once every request the page has made is answered and the page has handled the
        answer, or is held (`hold_next`): what a step of the clock set off is over, however
        loaded the machine. Raises AssertionError if that takes 20 s."""
        def unanswered_and_held() -> tuple[int, int]:
            started, handled = self.page.evaluate(f"() => window[{FETCHES}]")
            return started - handled, sum(1 for route in self.held if route.request.failure is None)
        eventually(unanswered_and_held, lambda counts: counts[0] <= counts[1], timeout_s=20, every_s=0.005,
                   sleep=lambda s: self.page.wait_for_timeout(s * 1000),  # lets the routes be answered meanwhile
                   what="the page's requests to be answered or held, read as (unanswered, held)")

    def fail(self, method: str, path: str, times: int = 1, **response) -> None:
        self.failures.extend([(method, path, response)] * times)

    def count(self, method: str, path: str) -> int:
        return sum(1 for m, p, _ in self.requests if m == method and re.fullmatch(path, p))

    def release(self) -> None:
        """Answer the requests held, once the one `hold_next` waits for has come: a request the
        page has not even sent yet is waited for (up to 10 s), then the others settle."""
        for _ in range(500):
            if not self.hold_next or self.held:
                break
            self.page.wait_for_timeout(20)  # lets Playwright route the request meanwhile
        assert not self.hold_next, f"no request matching {self.hold_next!r} came to be held"
        self.settle()
        held, self.held = self.held, []
        for route in held:
            self.answer(route)

    def handle(self, route) -> None:
        request = route.request
        path = request.url[len(OFFLINE_ORIGIN):].split("#")[0]
        if self.clock_skew is not None and path != "/dashboard":
            route = Dated(route, self.page, self.clock_skew)
        if path != "/dashboard":
            self.requests.append((request.method, path, request.headers))
        for i, (method, pattern, response) in enumerate(self.failures):
            if method == request.method and re.fullmatch(pattern, path.split("?")[0]):
                del self.failures[i]
                if response.get("abort"):
                    route.abort(response["abort"])
                elif response.get("lose_answer"):  # done, but the answer never arrives
                    self.answer(AnswerLost(route))
                    route.abort(response["lose_answer"])
                else:
                    route.fulfill(**response)
                return
        if self.hold_next and re.fullmatch(self.hold_next, path.split("?")[0]):
            self.hold_next = None
            self.held.append(route)
            return
        if self.holding and re.fullmatch(self.holding, path.split("?")[0]):
            self.held.append(route)
            return
        self.answer(route)

    def answer(self, route) -> None:
        from urllib.parse import parse_qs, urlsplit

        if self.clock_skew is not None and not isinstance(route, (Dated, AnswerLost)) and \
                not route.request.url.endswith("/dashboard"):
            route = Dated(route, self.page, self.clock_skew)
        request = route.request
        url = urlsplit(request.url)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        method, path = request.method, url.path
        mine = {i: j for i, j in self.jobs.items() if j["tenant"] == self.tenant_of(request)}
        if path == "/dashboard":
            route.fulfill(status=200, body=self.built.html, headers={
                "Content-Type": "text/html; charset=utf-8",
                "Content-Security-Policy": self.built.content_security_policy})
        elif (method, path) == ("GET", "/job-types"):
            route.fulfill(json={"job_types": self.job_types})
        elif (method, path) == ("GET", "/jobs"):
            jobs = sorted(mine.values(), key=lambda j: (j["created_at"], j["id"]), reverse=True)
            jobs = [j for j in jobs if query.get("status") in (None, j["status"]) and query.get("type") in (None, j["type"])]
            # As the API's: a cursor is where its page ended, so jobs made since do not shift it.
            limit = int(query.get("limit", 25))
            if "cursor" in query:
                jobs = [j for j in jobs if f"{j['created_at']}|{j['id']}" < query["cursor"]]
            shown = jobs[:limit]
            more = len(jobs) > limit
            page = {"jobs": shown, "next_cursor": f"{shown[-1]['created_at']}|{shown[-1]['id']}" if more else None}
            tag = 'W/"' + "|".join([str(page["next_cursor"])] + [f"{j['id']}:{j['version']}" for j in page["jobs"]]) + '"'
            headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
            if tag in (request.headers.get("if-none-match") or "").split(", "):
                self.not_modified += 1
                route.fulfill(status=304, headers=headers, body="")
                return
            route.fulfill(json=page, headers=headers)
        elif (method, path) == ("POST", "/jobs/status"):
            ids = json.loads(request.post_data)["job_ids"]
            # As the API tags it: the (id, version) pairs shown, weak; 304 while they are unchanged.
            tag = 'W/"' + "|".join(f"{i}:{mine[i]['version'] if i in mine else '-'}" for i in ids) + '"'
            headers = {"ETag": tag, "Cache-Control": "private, no-cache"}
            if tag in (request.headers.get("if-none-match") or "").split(", "):
                self.not_modified += 1
                route.fulfill(status=304, headers=headers, body="")
                return
            route.fulfill(json={"jobs": {i: mine.get(i, {"id": i, "status": "not_found"}) for i in ids}, "job_ids": ids},
                          headers=headers)
        elif (method, path) == ("POST", "/jobs"):
            key = request.headers.get("idempotency-key")
            if key in self.idempotency:
                route.fulfill(status=202, json=self.jobs[self.idempotency[key]])
                return
            body = json.loads(request.post_data)
            job = self.add(type=body["type"], payload=body["payload"])
            if key:
                self.idempotency[key] = job["id"]
            route.fulfill(status=202, json=job)
        elif method == "POST" and re.fullmatch(r"/jobs/[^/]+/rerun", path):
            self.rerun(route, mine, path.split("/")[2])
        elif method == "DELETE" and path.startswith("/jobs/"):
            job = mine[path.split("/")[2]]
            if job["status"] in ("completed", "failed", "canceled"):
                message = f"job {job['id']} is already {job['status']}"
                route.fulfill(status=409, json={"error": {"code": "job_finished", "message": message}})
                return
            if job["status"] == "running":
                job = self.update(job["id"], cancel_requested=True)
            else:
                job = self.update(job["id"], status="canceled", cancel_requested=True)
            route.fulfill(status=202, json=job)
        elif method == "GET" and path.endswith("/runs"):
            route.fulfill(json={"job_id": path.split("/")[2], "runs": self.runs.get(path.split("/")[2], [])})
        elif method == "GET" and re.fullmatch(r"/jobs/[^/]+", path) and path.split("/")[2] in mine:
            job_id = path.split("/")[2]
            route.fulfill(json={**mine[job_id], **self.kept_in_s3.get(job_id, {})})
        else:
            route.fulfill(status=404, json={"error": {"code": "route_not_found", "message": path}})


    def rerun(self, route, mine: dict, job_id: str) -> None:
        """POST /jobs/{id}/rerun as the API answers it: the same key answers the job it made."""
        key = route.request.headers.get("idempotency-key")
        if key in self.idempotency:
            made = self.jobs[self.idempotency[key]]
            if made["rerun_of"] == job_id:
                route.fulfill(status=202, json=made)
            else:
                route.fulfill(status=409, json={"error": {
                    "code": "idempotency_conflict", "message": f"Idempotency-Key {key} was used with another request"}})
            return
        if job_id not in mine:
            route.fulfill(status=404, json={"error": {"code": "job_not_found", "message": f"job {job_id} not found"}})
            return
        original = mine[job_id]
        if original["status"] not in ("completed", "failed", "canceled"):
            route.fulfill(status=409, json={"error": {
                "code": "job_not_finished", "message": f"job {job_id} is {original['status']}",
                "details": {"status": original["status"]}}})
            return
        job = self.add(type=original["type"], payload=original["payload"], priority=original["priority"],
                       scope=original["scope"], tenant=original["tenant"], rerun_of=job_id)
        if key:
            self.idempotency[key] = job["id"]
        route.fulfill(status=202, json=job)


@pytest.fixture
def api(page) -> FakeApi:
    return FakeApi(page)


def iso(moment) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def set_hidden(page: Page, hidden: bool) -> None:
    """As the browser does when the tab goes to the background (or comes back)."""
    page.evaluate(
        """hidden => {
            Object.defineProperty(document, "hidden", {configurable: true, get: () => hidden});
            Object.defineProperty(document, "visibilityState", {configurable: true, get: () => hidden ? "hidden" : "visible"});
            document.dispatchEvent(new Event("visibilitychange"));
        }""",
        hidden,
    )


def let_time_pass(api: FakeApi, seconds: int, step_s: int = 30) -> None:
    """Advance the page's clock in steps, each step's requests answered and handled before the
    next (`FakeApi.settle`): the page's state, not the wall clock, ends a step."""
    for _ in range(seconds // step_s):
        api.page.clock.run_for(step_s * 1000)
        api.settle()


def listing(api: FakeApi) -> list[str]:
    return [j["id"] for j in sorted(api.jobs.values(), key=lambda j: (j["created_at"], j["id"]), reverse=True)]


SENT = 'Symbol.for("sent")'  # [page clock ms, method, path] of every request the page starts
LOG_SENT = f"""(() => {{
    const sent = window[{SENT}] = [], fetch = window.fetch;
    window.fetch = function (url, init) {{
        sent.push([Date.now(), (init && init.method) || "GET", new URL(url).pathname + new URL(url).search]);
        return fetch.apply(this, arguments);
    }};
}})()"""
THROTTLED = {"status": 429, "headers": {"Retry-After": "2"}, "json": {"message": "Too Many Requests"}}


def sent(page: Page, method: str, path: str) -> list[int]:
    """The page clock's times (ms) at which the page sent each request matching method and path."""
    return [at for at, m, p in page.evaluate(f"() => window[{SENT}]") if m == method and re.fullmatch(path, p)]


def five_pages_running(page: Page, api: FakeApi) -> None:
    """500 running jobs shown, 100 a page: each poll reads them in 5 batches of 100."""
    for _ in range(500):
        api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    page.get_by_label("Page size").select_option("100")
    for shown in (200, 300, 400, 500):
        page.get_by_role("button", name="Load more").click()
        expect(page.locator("tr.job")).to_have_count(shown)
    let_time_pass(api, 3, step_s=1)


def paused_clock(page: Page, at=None) -> None:
    """The page's time stands at `at` (a datetime; 2026-01-16 12:01 UTC unless given) and moves
    only as the test moves it (`run_for`), from before the page opens, however slow the
    machine; every request the page sends is logged with that time (`sent`)."""
    at = at or datetime(2026, 1, 16, 12, 1, tzinfo=timezone.utc)
    # Installed a minute before: installed, the clock runs until paused, and pausing it at a
    # time it has already passed (a loaded machine between the two calls) is refused.
    page.clock.install(time=at - timedelta(minutes=1))
    page.clock.pause_at(at)
    page.add_init_script(LOG_SENT)
