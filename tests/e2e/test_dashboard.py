"""The dashboard in headless Chromium (Debian's, driven by Playwright).

The tests marked `stack` drive the page against the deployed stack (the `stack` fixture: an
emulator and a deploy), each with a tenant of its own, so what the page shows is exactly what
that test made. The others answer the API inside the browser (`FakeApi`) and need no emulator:

    .venv/bin/python -m pytest tests/e2e/test_dashboard.py -m "not stack"
"""
from __future__ import annotations

import json
import os
import re
import secrets
import time

import pytest
from playwright.sync_api import Page, expect, sync_playwright

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
JOB_WAIT_MS = 90_000  # a job's whole life on the emulator, cold starts included
LONG_JOB = {"type": "demo.steps", "payload": {"steps": 120, "step_ms": 250}}  # 30 s unless canceled

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


@pytest.fixture
def tenant() -> str:
    return "dash-" + secrets.token_hex(4)


def open_dashboard(page: Page, stack, tenant: str) -> None:
    page.goto(f"{stack.api_url}/dashboard#token={stack.token(tenant)}")
    expect(page.locator("#workspace")).to_be_visible()


def row(page: Page, job_id: str):
    return page.locator(f'tr.job[data-job-id="{job_id}"]')


def submit_from_page(page: Page, body: dict) -> str:
    """Submit through the page's form; returns the new job's id."""
    status = page.locator("#submit-status")
    before = status.get_attribute("data-job-id")
    page.get_by_label("Job type").select_option(body["type"])
    page.get_by_label("Payload (JSON)").fill(json.dumps(body["payload"]))
    page.get_by_label("Priority").select_option(body.get("priority", ""))
    page.get_by_role("button", name="Submit job").click()
    other = f"^(?!{re.escape(before)}$)" if before else "^"
    expect(status).to_have_attribute("data-job-id", re.compile(other + r"[\w-]+$"))
    expect(status).to_have_text(re.compile(f"Submitted {re.escape(body['type'])} job"))
    return status.get_attribute("data-job-id")


def batch_requests(page: Page) -> list[list[str]]:
    """Record the job ids of every POST /jobs/status the page makes from now on."""
    seen: list[list[str]] = []

    def record(request):
        if request.method == "POST" and request.url.endswith("/jobs/status"):
            seen.append(json.loads(request.post_data or "{}")["job_ids"])

    page.on("request", record)
    return seen


@pytest.mark.stack
def test_a_job_submitted_from_the_page_moves_to_100_and_completes(stack, page, tenant, tmp_path):
    open_dashboard(page, stack, tenant)
    assert "token" not in page.url  # taken out of the address bar once in session storage
    expect(page.locator("#identity")).to_have_text(re.compile(f"tenant {tenant}"))
    expect(page.get_by_label("Job type")).to_have_value("demo.steps")  # the harmless default, never demo.chaos

    page.get_by_label("Job type").select_option("demo.steps")
    expect(page.get_by_label("Payload (JSON)")).to_have_value(re.compile(r'"steps"'))  # the type's example
    job_id = submit_from_page(page, {"type": "demo.steps", "payload": {"steps": 20, "step_ms": 800}})
    stored = stack.job(job_id, tenant)["payload"]
    assert (stored["steps"], stored["step_ms"]) == (20, 800)

    job = row(page, job_id)
    bar = job.get_by_role("progressbar")
    # The bar moves: while running, a value strictly between 0 and 100 (row and bar read in
    # one check, so the two agree), then 100 and completed.
    running_bar = page.locator(f'tr.job[data-job-id="{job_id}"][data-status="running"] [role="progressbar"]')
    expect(running_bar).to_have_attribute("aria-valuenow", re.compile(r"^[1-9]\d?(\.\d+)?$"), timeout=JOB_WAIT_MS)
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=JOB_WAIT_MS)
    expect(job).to_have_attribute("data-status", "completed")
    expect(job.locator(".badge")).to_have_text("completed")
    expect(job.locator(".percent")).to_have_text("100%")
    expect(job.locator(".attempts")).to_have_text("1/3")
    expect(job.locator(".times time")).to_have_count(3)  # created, started, finished
    expect(job.locator(".duration")).to_have_text(re.compile(r"^\d+\.\d s$"))
    expect(job.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    expect(page.locator("#summary .status-completed .chip-count")).to_have_text("1")

    shot = tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True, animations="disabled")
    print(f"dashboard screenshot: {shot}")


@pytest.mark.stack
def test_polling_is_one_batch_of_the_unfinished_jobs(stack, page, tenant):
    requests = batch_requests(page)
    single_gets: list[str] = []
    page.on("request", lambda r: single_gets.append(r.url) if r.method == "GET" and re.search(r"/jobs/[^/?]+$", r.url) else None)
    open_dashboard(page, stack, tenant)
    long_id = submit_from_page(page, LONG_JOB)
    # On the high queue: a worker runs a batch's jobs one after another, so on the long job's
    # queue the short one could land in its batch and wait out the long job's first 30 s. And
    # 6 s long: still unfinished at the first poll after its submit (2 s later, or 2 s after a
    # list refresh that showed it moving); a job of 0.2 s could be seen completed by a list
    # refresh with no poll of the two made yet.
    short_id = submit_from_page(page, {"type": "demo.steps", "priority": "high", "payload": {"steps": 6, "step_ms": 1000}})

    expect(row(page, short_id)).to_have_attribute("data-status", "completed", timeout=JOB_WAIT_MS)
    expect(row(page, long_id)).to_have_attribute("data-status", "running", timeout=JOB_WAIT_MS)
    # Both unfinished jobs went in one request; no job was fetched on its own.
    assert any(sorted(ids) == sorted([long_id, short_id]) for ids in requests), requests
    assert not single_gets, single_gets
    # Once the short job is finished, the polls ask only for the long one.
    with page.expect_request(lambda r: r.method == "POST" and r.url.endswith("/jobs/status"), timeout=JOB_WAIT_MS) as polled:
        pass
    assert json.loads(polled.value.post_data)["job_ids"] == [long_id]
    stack.call("DELETE", f"/jobs/{long_id}", tenant=tenant)


@pytest.mark.stack
def test_cancel_a_running_job_from_the_page(stack, page, tenant):
    job = stack.submit(LONG_JOB, tenant=tenant)
    open_dashboard(page, stack, tenant)
    line = row(page, job["id"])
    bar = line.get_by_role("progressbar")
    expect(line).to_have_attribute("data-status", "running", timeout=JOB_WAIT_MS)
    expect(bar).not_to_have_attribute("aria-valuenow", "0", timeout=JOB_WAIT_MS)

    line.get_by_role("button", name=re.compile("Cancel")).click()
    expect(line.locator(".note")).to_have_text(re.compile("^(cancel requested|canceled)$"))
    expect(line).to_have_attribute("data-status", "canceled", timeout=JOB_WAIT_MS)
    expect(line.locator(".badge")).to_have_text("canceled")
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    assert float(bar.get_attribute("aria-valuenow")) < 100
    assert stack.job(job["id"], tenant)["status"] == "canceled"

    details = line.get_by_role("button", name=re.compile("Details"))
    details.click()
    expect(details).to_have_attribute("aria-expanded", "true")
    attempts = page.locator(f"#detail-{job['id']} .runs-table tr")
    expect(attempts).to_have_count(2)  # the header and the one attempt
    expect(attempts.nth(1)).to_contain_text("canceled")


@pytest.mark.stack
def test_cancel_of_a_job_that_finished_meanwhile_shows_the_409(stack, page, tenant):
    job = stack.submit(LONG_JOB, tenant=tenant)
    open_dashboard(page, stack, tenant)
    line = row(page, job["id"])
    expect(line).to_have_attribute("data-status", re.compile("queued|running"))
    # Cancel it behind the page's back while the page hears nothing new (its reads fail), then
    # press the page's Cancel, still shown: the API answers 409 and the page says so.
    reads = re.compile(r"/jobs(/status)?(\?.*)?$")
    page.route(reads, lambda route: route.continue_() if route.request.method == "DELETE" else route.abort())
    assert stack.call("DELETE", f"/jobs/{job['id']}", tenant=tenant).status_code == 202
    stack.wait_terminal(job["id"], tenant=tenant)
    line.get_by_role("button", name=re.compile("Cancel")).click()
    expect(line.locator(".note")).to_have_text(f"job {job['id']} is already canceled")
    page.unroute(reads)
    expect(line).to_have_attribute("data-status", "canceled", timeout=JOB_WAIT_MS)


@pytest.mark.stack
def test_another_tenants_jobs_are_not_shown(stack, page, tenant):
    other = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, tenant=tenant + "-other")
    mine = [stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, tenant=tenant) for _ in range(2)]
    open_dashboard(page, stack, tenant)
    for job in mine:
        expect(row(page, job["id"])).to_be_visible()
    expect(page.locator("tr.job")).to_have_count(2)
    expect(row(page, other["id"])).to_have_count(0)
    shown = page.locator("tr.job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    listed = [j["id"] for j in stack.call("GET", "/jobs?limit=100", tenant=tenant).json()["jobs"]]
    assert shown == listed  # the same jobs, newest first


@pytest.mark.stack
def test_load_more_and_filters(stack, page, tenant):
    ids = [stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}, tenant=tenant)["id"] for _ in range(12)]
    for job_id in ids:
        assert stack.wait_terminal(job_id, tenant=tenant)["status"] == "completed"
    open_dashboard(page, stack, tenant)
    page.get_by_label("Page size").select_option("10")
    expect(page.locator("tr.job")).to_have_count(10)
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(page.locator("tr.job")).to_have_count(12)
    expect(more).to_be_hidden()
    shown = page.locator("tr.job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")
    assert shown == list(reversed(ids))

    page.get_by_label("Type", exact=True).select_option("demo.sleep")
    expect(page.locator("tr.job")).to_have_count(0)
    expect(page.get_by_text("No jobs of type demo.sleep.")).to_be_visible()
    page.get_by_label("Type", exact=True).select_option("")
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(page.locator("tr.job")).to_have_count(0)
    page.get_by_label("Status", exact=True).select_option("completed")
    expect(page.locator("tr.job")).to_have_count(10)
    expect(page.locator('tr.job[data-status="completed"]')).to_have_count(10)


@pytest.mark.stack
def test_without_a_good_token_the_page_asks_for_one(stack, page, tenant):
    page.goto(f"{stack.api_url}/dashboard")
    expect(page.locator("#token-panel")).to_be_visible()
    expect(page.locator("#workspace")).to_be_hidden()

    page.get_by_label("Bearer token").fill(stack.token(tenant, ttl_s=-120))
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-reason")).to_have_text(re.compile("token has expired"))
    expect(page.locator("#workspace")).to_be_hidden()

    page.get_by_label("Bearer token").fill(stack.token(tenant))
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#identity")).to_have_text(re.compile(f"tenant {tenant}"))
    expect(page.get_by_text("No jobs here yet")).to_be_visible()


@pytest.mark.stack
def test_a_network_failure_shows_a_banner_and_polling_recovers(stack, page, tenant):
    job = stack.submit(LONG_JOB, tenant=tenant)
    open_dashboard(page, stack, tenant)
    line = row(page, job["id"])
    expect(line).to_be_visible()
    page.route(re.compile(r"/jobs(/status)?(\?.*)?$"), lambda route: route.abort("internetdisconnected"))
    banner = page.get_by_role("alert").filter(has_text="Cannot reach the API")
    expect(banner).to_be_visible(timeout=JOB_WAIT_MS)
    expect(page.locator("#live")).to_have_text(re.compile("offline"))
    page.unroute(re.compile(r"/jobs(/status)?(\?.*)?$"))
    # No reload and no click: the page retries by itself.
    expect(banner).to_be_hidden(timeout=JOB_WAIT_MS)
    expect(line).to_have_attribute("data-status", "running", timeout=JOB_WAIT_MS)
    stack.call("DELETE", f"/jobs/{job['id']}", tenant=tenant)


# ---------------------------------------------------------------- the page on its own
# The tests below answer the API inside the browser (Playwright's routing), so they need no
# emulator: each is about how the page reacts to an answer, a failure, the clock or the tab.

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
        deadline = time.monotonic() + 20
        while True:
            started, handled = self.page.evaluate(f"() => window[{FETCHES}]")
            held = sum(1 for route in self.held if route.request.failure is None)
            if started - handled <= held:
                return
            assert time.monotonic() < deadline, f"{started - handled - held} requests left unanswered"
            self.page.wait_for_timeout(5)  # lets the routes be answered meanwhile

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


def test_scheduled_and_retrying_jobs_say_when_they_start(page, api):
    from datetime import datetime, timedelta, timezone

    now = datetime.now(timezone.utc)
    later = api.add(status="queued", not_before=iso(now + timedelta(hours=2, minutes=30, seconds=30)))
    retry = api.add(status="retrying", attempts=1, started_at=iso(now - timedelta(seconds=20)),
                    not_before=iso(now + timedelta(seconds=45)),
                    error={"code": "handler_error", "message": "boom"})
    due = api.add(status="queued", not_before=iso(now - timedelta(seconds=5)))
    next_year = api.add(status="queued", not_before=iso(now + timedelta(days=364, hours=5, minutes=10)))
    api.open()
    # A run_at up to 365 days ahead counts down in days, not in thousands of hours.
    expect(row(page, next_year["id"]).locator(".schedule")).to_have_text(re.compile(r"^starts in 364 d 05 h$"))
    expect(row(page, later["id"]).locator(".schedule")).to_have_text(re.compile(r"^starts in 2 h 30 m$"))
    expect(row(page, later["id"]).locator(".schedule time")).to_have_attribute("datetime", later["not_before"])
    expect(row(page, retry["id"]).locator(".schedule")).to_have_text(re.compile(r"^next attempt in 4\d s$"))
    expect(row(page, retry["id"]).locator(".error-code")).to_have_text("handler_error")
    expect(row(page, due["id"]).locator(".schedule")).to_have_text("")



def test_a_job_waiting_for_its_next_attempt_shows_the_last_ones_duration_not_a_clock(page, api):
    """A retrying job (or one queued again) has started once, but nothing runs while it waits:
    its duration is its last attempt's, fixed, and its status says when it runs next; a
    duration ticks again only once the next attempt runs."""
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 16, 12, 0, 0, tzinfo=timezone.utc)
    page.clock.install(time=now)
    first = {"started_at": iso(now - timedelta(seconds=60)), "error": {"code": "handler_error", "message": "boom"}}
    retrying = api.add(status="retrying", attempts=2, **first, not_before=iso(now + timedelta(seconds=45)))
    again = api.add(status="queued", attempts=1, **first)
    api.runs[retrying["id"]] = [
        {"attempt": 1, "status": "failed", "started_at": iso(now - timedelta(seconds=60)),
         "finished_at": iso(now - timedelta(seconds=50)), "error": first["error"]},
        {"attempt": 2, "status": "failed", "started_at": iso(now - timedelta(seconds=20)),
         "finished_at": "2026-01-16T11:59:43.200Z", "error": first["error"]}]
    api.runs[again["id"]] = [{"attempt": 1, "status": "failed", "started_at": iso(now - timedelta(seconds=60)),
                              "finished_at": "2026-01-16T11:59:05.500Z", "error": first["error"]}]
    api.open()
    waiting, queued = row(page, retrying["id"]), row(page, again["id"])
    expect(waiting.locator(".duration")).to_have_text("last attempt 3.2 s")
    expect(waiting.locator(".schedule")).to_have_text(re.compile(r"^next attempt in 4\d s$"))
    expect(queued.locator(".duration")).to_have_text("last attempt 5.5 s")
    let_time_pass(api, 5, step_s=1)
    expect(waiting.locator(".duration")).to_have_text("last attempt 3.2 s")  # nothing ticks while it waits
    expect(queued.locator(".duration")).to_have_text("last attempt 5.5 s")
    assert api.count("GET", r"/jobs/[^/]+/runs") == 2  # read once, not at each tick or poll
    page_now = datetime.fromtimestamp(page.evaluate("Date.now()") / 1000, timezone.utc)
    api.update(retrying["id"], status="running", attempts=3, not_before=None, attempt_started_at=iso(page_now))
    let_time_pass(api, 12, step_s=1)
    # The third attempt's own time, in seconds: since the first start it would be minutes.
    expect(waiting.locator(".duration")).to_have_text(re.compile(r"^attempt 3 [1-5]\d\.\d s …$"))
    expect(waiting.locator(".duration")).not_to_have_class(re.compile("last-attempt"))


def waiting_jobs(api: FakeApi, count: int) -> list[dict]:
    """`count` jobs waiting for their next attempt, each with its first attempt's runs."""
    jobs = []
    for _ in range(count):
        job = api.add(status="retrying", attempts=1, started_at="2026-01-16T11:59:00.000Z",
                      error={"code": "handler_error", "message": "boom"})
        api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": "2026-01-16T11:59:00.000Z",
                                "finished_at": "2026-01-16T11:59:02.500Z", "error": job["error"]}]
        jobs.append(job)
    return jobs


RUNS = r"/jobs/[^/]+/runs"  # a read of a job's attempts


def forty_waiting_their_reads_held(page: Page, api: FakeApi) -> str:
    """40 jobs waiting to retry shown on one page, every read of their attempts held unanswered
    (`api.release()` answers them); returns the reads' path pattern."""
    waiting_jobs(api, 40)
    api.holding = RUNS
    api.open()
    page.get_by_label("Page size").select_option("50")
    expect(page.locator("tr.job")).to_have_count(40)
    api.settle()
    return RUNS


def test_many_jobs_waiting_to_retry_read_their_last_attempts_a_few_at_a_time(page, api):
    """In an outage 40 jobs wait for their next attempt at once. Each shows its last attempt's
    duration as one such job does, but only the rows on screen read their attempts, at most 4
    reads at a time: not a burst of 40 GETs. A row scrolled to reads its own then."""
    reads = forty_waiting_their_reads_held(page, api)
    assert len(api.held) == api.count("GET", reads) == 4  # the rest wait their turn
    api.holding = None
    api.release()
    api.settle()
    on_screen = page.evaluate("""() => Array.from(document.querySelectorAll("tr.job")).filter(tr => {
        const box = tr.getBoundingClientRect();
        return box.bottom > 0 && box.top < innerHeight;
    }).map(tr => tr.dataset.jobId)""")
    assert 0 < len(on_screen) < 40
    for job_id in on_screen:
        expect(row(page, job_id).locator(".duration")).to_have_text("last attempt 2.5 s")
    first_reads = api.count("GET", reads)
    assert first_reads < 4 + 25, first_reads  # the first listing's 4, the rows on screen and a margin

    last = row(page, listing(api)[-1])
    expect(last.locator(".duration")).to_have_text("")
    last.scroll_into_view_if_needed()
    expect(last.locator(".duration")).to_have_text("last attempt 2.5 s")
    expect(last.locator(".duration")).to_have_attribute("title", "attempt 1 took 2.5 s")
    api.settle()
    read = [path.split("/")[2] for method, path, _ in api.requests if method == "GET" and re.fullmatch(reads, path)]
    assert len(set(read)) < 40, len(set(read))  # the rows scrolled past unseen read nothing
    assert len(read) <= 4 + len(set(read))  # and each row read once (the first listing's 4 aside)


def test_details_opened_while_rows_read_their_attempts_wait_in_the_same_four_and_go_first(page, api):
    """Every read of a job's attempts counts toward the same 4 at a time: opening details on
    several rows while the rows' own reads are on their way sends nothing past those 4. What
    the user asked for goes before the rows' reads still queued: as each read is answered, the
    next sent is an opened details' one, until every opened details has its attempts."""
    reads = forty_waiting_their_reads_held(page, api)
    assert len(api.held) == 4
    first = [route.request.url.split("/")[-2] for route in api.held]
    opened = [job_id for job_id in listing(api)[:12] if job_id not in first][:3]
    for job_id in opened:
        row(page, job_id).get_by_role("button", name=re.compile("Details")).click()
    api.settle()
    assert len(api.held) == 4  # the details' reads wait their turn too
    for job_id in opened:
        expect(page.locator(f"#detail-{job_id} .runs")).to_be_empty()
    most = 0
    while api.held:
        route = api.held.pop(0)
        api.answer(route)
        api.settle()
        most = max(most, len(api.held))
    assert most <= 4
    sent = [path.split("/")[2] for method, path, _ in api.requests if method == "GET" and re.fullmatch(reads, path)]
    assert sent[:4] == first and sent[4:7] == opened, sent
    for job_id in opened:
        expect(page.locator(f"#detail-{job_id} .runs-table tr")).to_have_count(2)


def test_a_running_job_counts_its_current_attempt_not_the_ones_before(page, api):
    """A job on its third attempt started its first minutes ago: its duration counts from the
    running attempt's start (`attempt_started_at`), marked with that attempt's number; a job
    on its first attempt shows the bare duration, as before."""
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 16, 12, 0, 0, tzinfo=timezone.utc)
    page.clock.install(time=now)
    third = api.add(status="running", attempts=3, started_at=iso(now - timedelta(minutes=10)),
                    attempt_started_at=iso(now - timedelta(seconds=20)))
    first = api.add(status="running", attempts=1, started_at=iso(now - timedelta(seconds=5)),
                    attempt_started_at=iso(now - timedelta(seconds=5)))
    api.open()
    expect(row(page, third["id"]).locator(".duration")).to_have_text(re.compile(r"^attempt 3 2\d\.\d s …$"))
    expect(row(page, third["id"]).locator(".duration")).to_have_attribute(
        "title", re.compile(r"^attempt 3 of 3 running since \d\d:\d\d:\d\d; first attempt started "))
    expect(row(page, first["id"]).locator(".duration")).to_have_text(re.compile(r"^\d\.\d s …$"))
    let_time_pass(api, 60, step_s=10)
    expect(row(page, third["id"]).locator(".duration")).to_have_text(re.compile(r"^attempt 3 1 m 2\d s …$"))


def test_a_hidden_tab_asks_the_api_nothing_until_it_is_shown_again(page, api):
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  progress={"percent": 10.0, "step": "a", "message": None, "details": None, "updated_at": None})
    api.open()
    expect(row(page, job["id"])).to_have_attribute("data-status", "running")
    set_hidden(page, True)
    expect(page.locator("#live")).to_have_text(re.compile("paused"))
    asked = len(api.requests)
    let_time_pass(api, 30 * 60)
    assert api.requests[asked:] == []
    api.update(job["id"], status="completed", progress={**job["progress"], "percent": 100.0})
    set_hidden(page, False)
    expect(row(page, job["id"])).to_have_attribute("data-status", "completed")
    expect(page.locator("#live")).to_have_text(re.compile("live"))


def test_a_tab_shown_again_while_its_listing_is_on_its_way_sends_no_second_one(page, api):
    """A slow stack holds the list's refresh; the tab goes to the background and comes back, three
    times. The listing on its way serves: each return sends no other on top of it, and the
    refreshes go on once it has answered."""
    page.clock.install()
    job = api.add(status="completed")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.settle()
    api.holding = "/jobs"
    let_time_pass(api, 10, step_s=1)
    assert len(api.held) == 1  # the refresh, on its way
    for _ in range(3):
        set_hidden(page, True)
        set_hidden(page, False)
    api.settle()
    assert len(api.held) == 1
    api.holding = None
    newer = api.add(status="completed")
    api.release()
    let_time_pass(api, 10, step_s=1)
    expect(row(page, newer["id"])).to_be_visible()


def test_a_throttled_page_waits_as_asked_and_keeps_refreshing(page, api):
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    throttled = {"status": 429, "headers": {"Retry-After": "40"}, "json": {"message": "Too Many Requests"}}
    api.fail("GET", "/jobs", **throttled)
    api.fail("POST", "/jobs/status", **throttled)
    let_time_pass(api, 10, step_s=1)  # the list's refresh and a poll, both throttled
    expect(page.get_by_role("alert").filter(has_text="Too Many Requests")).to_be_visible()
    lists, polls = api.count("GET", r"/jobs\?.*"), api.count("POST", "/jobs/status")
    let_time_pass(api, 25, step_s=5)
    assert (api.count("GET", r"/jobs\?.*"), api.count("POST", "/jobs/status")) == (lists, polls)  # not before 40 s
    newer = api.add(status="queued")
    let_time_pass(api, 30, step_s=5)
    expect(row(page, newer["id"])).to_be_visible()  # the list's refresh goes on after the throttle
    assert api.count("POST", "/jobs/status") > polls
    expect(page.get_by_role("alert")).to_be_hidden()


def test_an_answer_that_is_not_json_does_not_stop_the_polls(page, api):
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    # A proxy's or a captive portal's page, answered 200 in place of the API's JSON.
    api.fail("POST", "/jobs/status", status=200, content_type="text/html", body="<html>Sign in to the Wi-Fi</html>")
    let_time_pass(api, 3, step_s=1)
    expect(page.get_by_role("alert").filter(has_text="not JSON")).to_be_visible()
    polls = api.count("POST", "/jobs/status")
    let_time_pass(api, 30, step_s=2)
    assert api.count("POST", "/jobs/status") > polls
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_submit_whose_answer_was_lost_is_safe_to_press_again(page, api):
    api.open()
    status = page.locator("#submit-status")
    api.fail("POST", "/jobs", lose_answer="connectionreset")
    page.get_by_label("Payload (JSON)").fill('{"steps": 3}')
    page.get_by_role("button", name="Submit job").click()
    expect(status).to_have_text(re.compile(r"may have been accepted.*Submit job.*again.*not be made twice"))
    assert len(api.jobs) == 1  # it was made
    page.get_by_role("button", name="Submit job").click()
    expect(status).to_have_text(re.compile("^Submitted demo.steps job"))
    assert len(api.jobs) == 1
    keys = [headers.get("idempotency-key") for method, path, headers in api.requests if (method, path) == ("POST", "/jobs")]
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    # Once answered, the same form submitted again is a new job with a key of its own.
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("tr.job")).to_have_count(2)
    assert len(api.jobs) == 2


def test_a_token_that_cannot_be_sent_is_refused_with_a_reason(page, api):
    token = api.token()
    page.goto(f"{OFFLINE_ORIGIN}/dashboard")
    page.get_by_label("Bearer token").fill(token[:30] + "…")  # a token copied cut short
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#token-reason")).to_have_text(re.compile("not a token.*“…”"))
    expect(page.locator("#workspace")).to_be_hidden()
    expect(page.locator("#banner")).to_be_hidden()
    assert api.requests == []
    # A token wrapped over two lines (a terminal's copy) is the same token.
    page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={token[:40]}%0A%20%20{token[40:]}")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#identity")).to_have_text(re.compile("tenant acme"))
    assert {headers["authorization"] for _, _, headers in api.requests} == {"Bearer " + token}


def test_answers_to_a_forgotten_token_show_nothing(page, api):
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.hold_next = "/jobs/status"
    let_time_pass(api, 2, step_s=1)  # the next poll comes within 2 s; it waits for its answer
    assert api.held
    page.get_by_role("button", name="Forget token").click()
    expect(page.locator("tr.job")).to_have_count(0)
    api.release()  # the forgotten token's poll is answered now
    # Another tenant's token: while its first list is on its way, nothing of acme's is shown.
    api.hold_next = "/jobs"
    page.get_by_label("Bearer token").fill(api.token("globex"))
    page.get_by_role("button", name="Use token").click()
    expect(page.locator("#identity")).to_have_text(re.compile("tenant globex"))
    api.settle()  # the forgotten token's poll is handled, the new token's listing held
    expect(page.locator("tr.job")).to_have_count(0)
    expect(page.locator("#summary .status-running .chip-count")).to_have_text("0")
    api.release()
    expect(page.get_by_text("No jobs here yet")).to_be_visible()


def test_times_shown_before_midnight_gain_their_date_after_it(browser):
    from datetime import datetime, timezone

    context = browser.new_context(timezone_id="America/New_York")
    page = context.new_page()
    api = FakeApi(page)
    page.clock.install(time=datetime(2026, 1, 16, 4, 59, 40, tzinfo=timezone.utc))  # 23:59:40 in New York
    job = api.add(status="completed", created_at="2026-01-16T04:59:30.000Z", started_at="2026-01-16T04:59:31.000Z",
                  finished_at="2026-01-16T04:59:35.000Z")
    api.open()
    times = row(page, job["id"]).locator(".times time")
    expect(times.first).to_have_text("23:59:30")  # today, in the browser's zone
    page.clock.run_for(30_000)
    expect(times.first).to_have_text("2026-01-15 23:59:30")  # yesterday now
    expect(times.last).to_have_text("2026-01-15 23:59:35")
    context.close()


def test_an_open_details_panel_gains_its_dates_at_midnight_as_the_table_does(browser):
    """The attempts in a job's details are written as the table writes its times: the clock
    only today, the date too for an earlier day, and a panel left open across midnight gains
    its dates at midnight, as the table's times do."""
    from datetime import datetime, timezone

    context = browser.new_context(timezone_id="America/New_York")
    page = context.new_page()
    api = FakeApi(page)
    page.clock.install(time=datetime(2026, 1, 16, 4, 59, 40, tzinfo=timezone.utc))  # 23:59:40 in New York
    job = api.add(status="failed", attempts=1, created_at="2026-01-16T04:59:30.000Z", started_at="2026-01-16T04:59:31.000Z",
                  finished_at="2026-01-16T04:59:35.000Z", error={"code": "handler_error", "message": "boom"})
    api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": job["started_at"],
                            "finished_at": job["finished_at"], "error": job["error"]}]
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    table = row(page, job["id"]).locator(".times time")
    panel = page.locator(f'#detail-{job["id"]} .runs-table time')
    expect(panel).to_have_text(["23:59:31", "23:59:35"])
    expect(table).to_have_text(["23:59:30", "23:59:31", "23:59:35"])
    page.clock.run_for(30_000)
    expect(table).to_have_text(["2026-01-15 23:59:30", "2026-01-15 23:59:31", "2026-01-15 23:59:35"])
    expect(panel).to_have_text(["2026-01-15 23:59:31", "2026-01-15 23:59:35"])
    context.close()


def test_load_more_is_gone_while_another_listing_is_on_its_way(page, api):
    for _ in range(30):
        api.add(status="completed", type="demo.steps")
    api.add(status="completed", type="demo.sleep")
    api.open()
    more = page.get_by_role("button", name="Load more")
    expect(more).to_be_visible()
    api.hold_next = "/jobs"
    page.get_by_label("Type", exact=True).select_option("demo.sleep")
    expect(more).to_be_hidden()  # its cursor belonged to the listing of every type
    api.release()
    expect(page.locator("tr.job")).to_have_count(1)
    expect(more).to_be_hidden()


def test_a_job_that_finished_before_its_cancel_took_effect_says_so(page, api):
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    line = row(page, job["id"])
    line.get_by_role("button", name=re.compile("Cancel")).click()
    expect(line.locator(".note")).to_have_text("cancel requested")
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_disabled()
    api.update(job["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**job["progress"], "percent": 100.0})
    expect(line).to_have_attribute("data-status", "completed")
    expect(line.locator(".note")).to_have_text("cancel requested, but it completed first")
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()


def test_text_from_the_api_is_shown_as_text(page, api):
    evil = '<img src=x onerror="window.pwned=1">"\'&<script>window.pwned=2</script>'
    job = api.add(
        id="job-evil", type=evil, status="failed", user=evil, scope=evil, payload={evil: evil}, result={"r": evil},
        progress={"percent": 40.0, "step": evil, "message": evil, "details": None, "updated_at": None},
        error={"code": evil, "message": evil}, attempts=1, started_at="2026-01-15T10:00:00.000Z",
        finished_at="2026-01-15T10:00:01.000Z",
    )
    api.open(api.token())
    line = row(page, job["id"])
    expect(line.locator(".job-type")).to_have_text(evil)
    expect(line.locator(".error-code")).to_have_text(evil)
    expect(line.locator(".progress-message")).to_have_text(evil)
    line.get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator("#detail-job-evil")).to_contain_text(evil)
    assert page.locator("#jobs-body img, #jobs-body script").count() == 0
    assert page.evaluate("window.pwned") is None


LEFT_OF = """([container, first, second]) => {
    // Whether the word `first` is drawn left of the word `second` in `container`'s text.
    const box = word => {
        const walk = document.createTreeWalker(document.querySelector(container), NodeFilter.SHOW_TEXT);
        for (let node; (node = walk.nextNode());) {
            const at = node.data.indexOf(word);
            if (at < 0) continue;
            const range = document.createRange();
            range.setStart(node, at);
            range.setEnd(node, at + 1);
            return range.getBoundingClientRect().left;
        }
        throw new Error(`${word} is not in ${container}`);
    };
    return box(first) < box(second);
}"""


def test_text_a_handler_or_user_wrote_cannot_reorder_the_text_around_it(page, api):
    """A type, step, message or error may hold right-to-left text or a bidi override (U+202E):
    it is isolated, so it never turns the page's own words around it (the percent beside a
    step, the rest of a sentence after a type or an error code) back to front."""
    rlo, hebrew = "\u202e", "\u05e9\u05dc\u05d1"
    job = api.add(type=rlo + "reports.x", status="failed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:01.000Z",
                  progress={"percent": 40.0, "step": rlo + "load", "message": hebrew + " 12", "details": None,
                            "updated_at": None},
                  error={"code": rlo + "E_BAD", "message": "bad row"})
    api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": job["started_at"],
                            "finished_at": job["finished_at"], "error": job["error"]}]
    api.open()
    line = f'tr.job[data-job-id="{job["id"]}"]'
    assert page.evaluate(LEFT_OF, [f"{line} .progress-line", "%", "load"])
    for selector in (".job-type", ".step", ".progress-message", ".error-code", ".error-message"):
        assert page.locator(f"{line} {selector}").evaluate("e => getComputedStyle(e).unicodeBidi") == "isolate", selector
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = f'#detail-{job["id"]}'
    expect(page.locator(f"{detail} .runs-table tr")).to_have_count(2)
    assert page.evaluate(LEFT_OF, [f"{detail} .runs-table", "bad", "row"])  # after the code's ": "
    assert page.evaluate(LEFT_OF, [f"{detail} .facts", "bad", "row"])
    # A sentence of the page's with a type in it: the words after the type keep their order.
    page.get_by_label("Type", exact=True).select_option(job["type"])
    page.get_by_label("Status", exact=True).select_option("running")
    expect(page.locator("#jobs-empty-text")).to_contain_text("internal")
    assert page.evaluate(LEFT_OF, ["#jobs-empty-text", "API", "internal"])
    api.job_types = [*JOB_TYPES, {**JOB_TYPES[0], "type": job["type"], "description": rlo + "Makes a report."}]
    page.get_by_role("button", name="Refresh").click()
    page.get_by_label("Job type").select_option(job["type"])
    assert page.evaluate(LEFT_OF, ["#job-type-description", "attempts", "timeout"])
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_contain_text("Submitted")
    assert page.evaluate(LEFT_OF, ["#submit-status", "Submitted", "job-"])


def test_user_text_an_api_error_quotes_cannot_reorder_the_banner_or_the_cancel_note(page, api):
    """An error's message quotes a type or a key as the API got it, right-to-left text or a
    bidi override (U+202E) included: the quote is isolated, so the words of the message after
    it, and the page's own around the message, keep their order."""
    rlo, hebrew = "\u202e", "\u05e9\u05dc\u05d1"
    job = api.add(status="queued")
    other = api.add(status="queued")
    api.fail("GET", "/jobs", status=400, json={"error": {
        "code": "invalid_request", "message": f"unknown job type '{rlo}reports.x'; known types: demo.steps"}})
    api.page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={api.token()}")
    banner = page.locator("#banner")
    expect(banner).to_contain_text("Could not list jobs")
    assert page.evaluate(LEFT_OF, ["#banner", "Could", "unknown"])
    assert page.evaluate(LEFT_OF, ["#banner", "types:", "demo.steps"])
    page.get_by_role("button", name="Refresh").click()
    expect(row(page, job["id"])).to_be_visible()

    api.fail("DELETE", f"/jobs/{job['id']}", status=409, json={"error": {
        "code": "job_finished", "message": f"job type '{hebrew}' 2 attempts: already finished"}})
    row(page, job["id"]).get_by_role("button", name=re.compile("Cancel")).click()
    note = f'tr.job[data-job-id="{job["id"]}"] .note'
    expect(page.locator(note)).to_contain_text("already")
    assert page.evaluate(LEFT_OF, [note, hebrew[0], "2"])  # the number after the quote is not pulled into it

    api.fail("DELETE", f"/jobs/{other['id']}", status=422, json={"error": {
        "code": "invalid_request", "message": f'key "{rlo}abc" is refused; send another'}})
    row(page, other["id"]).get_by_role("button", name=re.compile("Cancel")).click()
    note = f'tr.job[data-job-id="{other["id"]}"] .note'
    expect(page.locator(note)).to_contain_text("cancel failed")
    assert page.evaluate(LEFT_OF, [note, "cancel", "refused"])
    assert page.evaluate(LEFT_OF, [note, "send", "another"])


def test_a_job_that_leaves_the_status_filter_leaves_the_view(page, api):
    """Viewing `running`, a job that completes (or is canceled) goes from the view at the poll
    that sees it, not when the filter next changes; a list answer older than that poll does
    not bring it back."""
    page.clock.install()
    started = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z"}
    leaving, staying = api.add(status="running", **started), api.add(status="running", **started)
    api.add(status="completed", **started, finished_at="2026-01-15T10:00:05.000Z")
    api.open()
    expect(page.locator("tr.job")).to_have_count(3)
    page.get_by_label("Status", exact=True).select_option("running")
    expect(page.locator("tr.job")).to_have_count(2)
    # The next list refresh is answered as it was before the job completed.
    api.hold_next = "/jobs"
    let_time_pass(api, 10, step_s=1)
    assert api.held
    api.update(leaving["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**leaving["progress"], "percent": 100.0})
    let_time_pass(api, 12, step_s=1)
    expect(row(page, leaving["id"])).to_have_count(0)
    expect(page.locator(f'#detail-{leaving["id"]}')).to_have_count(0)
    expect(row(page, staying["id"])).to_have_attribute("data-status", "running")
    expect(page.locator("#summary .status-running .chip-count")).to_have_text("1")
    expect(page.locator("#summary .status-completed .chip-count")).to_have_text("0")
    api.jobs[leaving["id"]] = {**api.jobs[leaving["id"]], "status": "running", "version": 1}  # the held list's view
    api.release()
    api.jobs[leaving["id"]].update(status="completed", version=2)
    api.settle()
    assert row(page, leaving["id"]).count() == 0  # at once: a later poll would hide it again
    api.update(staying["id"], status="canceled", cancel_requested=True)
    let_time_pass(api, 12, step_s=1)
    expect(page.locator("tr.job")).to_have_count(0)
    expect(page.get_by_text("No running jobs.")).to_be_visible()


def test_re_reads_of_unchanged_jobs_send_their_etag_and_a_304_changes_nothing(page, api):
    """Each poll, and each refresh of the list, sends the ETag of the answer before it: while
    nothing it shows changed the API answers 304 with no body, and the page shows what it
    showed, touching nothing; a change is a 200 again and is shown."""
    page.clock.install()
    job = api.add(status="queued")
    api.open()
    line = row(page, job["id"])
    expect(line).to_have_attribute("data-status", "queued")
    let_time_pass(api, 4, step_s=1)  # the first poll: a 200 with its tag
    page.evaluate("""() => {
        window.mutations = [];
        new MutationObserver(list => list.forEach(m => window.mutations.push(m.target.id || m.target.className)))
            .observe(document.getElementById("workspace"),
                     {subtree: true, childList: true, attributes: true, characterData: true});
    }""")
    let_time_pass(api, 40, step_s=2)

    def sent(method, path):
        return [h.get("if-none-match") for m, p, h in api.requests if m == method and re.fullmatch(path, p)]

    polls, lists = sent("POST", "/jobs/status"), sent("GET", r"/jobs\?.*")
    assert len(polls) >= 4 and len(lists) >= 4, (polls, lists)
    assert polls[0] is None and set(polls[1:]) == {f'W/"{job["id"]}:1"'}, polls
    assert lists[0] is None and set(lists[1:]) == {f'W/"None|{job["id"]}:1"'}, lists
    assert api.not_modified == len(polls) - 1 + len(lists) - 1
    assert page.evaluate("window.mutations") == []  # nothing re-rendered
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("#live")).to_have_text(re.compile("live"))
    api.update(job["id"], status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    newer = api.add(status="queued")
    let_time_pass(api, 12, step_s=1)
    expect(line).to_have_attribute("data-status", "running")
    expect(row(page, newer["id"])).to_have_attribute("data-status", "queued")
    # The first poll of the two jobs has no tag yet (a tag is kept per batch of ids); once it
    # answered, the polls of the same batch send its tag again.
    let_time_pass(api, 12, step_s=1)
    assert sent("POST", "/jobs/status")[-1] is not None


def test_a_request_left_unanswered_is_given_up_and_shown(page, api):
    """An API that takes a request and never answers (a host gone mid-connection, a proxy that
    holds it) must not leave the page saying "live" while nothing moves: after 30 s (API
    Gateway answers within 29 s) the request is given up, the banner says so and the polls
    go on."""
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_have_attribute("data-status", "running")
    api.hold_next = "/jobs/status"
    for _ in range(10):
        let_time_pass(api, 1, step_s=1)
        if api.held:
            break
    assert api.held
    polls = api.count("POST", "/jobs/status")
    let_time_pass(api, 31, step_s=1)
    expect(page.get_by_role("alert")).to_have_text(re.compile("no answer within 30 s"))
    expect(page.locator("#live")).to_have_text(re.compile("offline"))
    api.update(job["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**job["progress"], "percent": 100.0})
    let_time_pass(api, 12, step_s=1)
    assert api.count("POST", "/jobs/status") > polls
    expect(row(page, job["id"])).to_have_attribute("data-status", "completed")
    expect(page.get_by_role("alert")).to_be_hidden()


def shown_ids(page: Page) -> list[str]:
    return page.locator("tr.job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")


def listing(api: FakeApi) -> list[str]:
    return [j["id"] for j in sorted(api.jobs.values(), key=lambda j: (j["created_at"], j["id"]), reverse=True)]


def test_more_new_jobs_than_a_page_leave_no_gap_in_the_list(page, api):
    """More jobs made between two refreshes than one page holds: the newest page no longer
    reaches the jobs shown, so the page starts over from it instead of showing it above the old
    rows with the jobs in between missing (and "Load more" paging on below the old ones)."""
    page.clock.install()
    finished = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z", "finished_at": "2026-01-15T10:00:01.000Z"}
    for _ in range(30):
        api.add(status="completed", **finished)
    api.open()
    expect(page.locator("tr.job")).to_have_count(25)
    for _ in range(30):  # a batch submitted elsewhere
        api.add(status="completed", **finished)
    let_time_pass(api, 11, step_s=1)
    expect(row(page, listing(api)[0])).to_be_visible()
    shown = shown_ids(page)
    assert shown == listing(api)[:len(shown)]
    more = page.get_by_role("button", name="Load more")
    while more.is_visible():
        more.click()
        api.settle()
    assert shown_ids(page) == listing(api)


def test_counts_of_a_listing_with_more_pages_say_they_count_only_the_jobs_loaded(page, api):
    """A busy tenant's failures may all sit past the first page: its counts then say they are
    of the jobs loaded ("0+ failed", "of the 25 loaded"), each chip's title says how to list
    that status whole (the status filter), and once every page is loaded the counts are exact."""
    finished = {"attempts": 3, "started_at": "2026-01-15T10:00:00.000Z", "finished_at": "2026-01-15T10:00:01.000Z"}
    for _ in range(5):
        api.add(status="failed", **finished, error={"code": "handler_error", "message": "boom"})
    for _ in range(30):
        api.add(status="completed", **finished)
    api.open()
    expect(page.locator("tr.job")).to_have_count(25)
    summary = page.locator("#summary")
    failed = summary.locator(".status-failed")
    expect(failed).to_have_text("0+ failed")
    expect(failed).to_have_attribute("title", re.compile(
        r"^0 failed among the 25 jobs loaded; later pages may hold more\. To list every failed job, choose “failed” in the Status filter\.$"))
    expect(summary.locator(".status-completed")).to_have_text("25+ completed")
    expect(summary.locator(".summary-scope")).to_have_text("of the 25 loaded")
    expect(summary).to_have_attribute("aria-label", re.compile("^Jobs loaded by status: more on later pages"))

    page.get_by_role("button", name="Load more").click()
    api.settle()
    expect(page.locator("tr.job")).to_have_count(35)
    expect(failed).to_have_text("5 failed")
    expect(failed).not_to_have_attribute("title", re.compile("."))
    expect(summary.locator(".status-completed")).to_have_text("30 completed")
    expect(summary.locator(".summary-scope")).to_have_count(0)
    expect(summary).to_have_attribute("aria-label", "Jobs by status")

    # The status filter lists every failed job: its count is exact again once they all are.
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(page.locator("tr.job")).to_have_count(5)
    expect(failed).to_have_text("5 failed")


def test_a_page_left_open_holds_a_bounded_number_of_jobs(page, api):
    """Jobs arriving all day do not pile up rows without end: once the refreshes have brought
    500 jobs, the page starts over from the newest page ("Load more" pages back)."""
    page.clock.install()
    api.open()
    for _ in range(28):
        for _ in range(20):
            api.add(status="completed")
        let_time_pass(api, 10, step_s=10)
    expect(row(page, listing(api)[0])).to_be_visible()
    shown = shown_ids(page)
    assert len(shown) <= 500 + 25, len(shown)
    assert shown == listing(api)[:len(shown)]
    expect(page.get_by_role("button", name="Load more")).to_be_visible()


def test_a_throttled_poll_waits_out_its_retry_after_whatever_else_happens(page, api):
    """A poll answered 429 with Retry-After: 40 is not sent again sooner, even when a list
    refresh meanwhile brings a new job (which would otherwise poll it at once)."""
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.fail("POST", "/jobs/status", status=429, headers={"Retry-After": "40"}, json={"message": "Too Many Requests"})
    let_time_pass(api, 3, step_s=1)
    expect(page.get_by_role("alert").filter(has_text="Too Many Requests")).to_be_visible()
    polls = api.count("POST", "/jobs/status")
    newer = api.add(status="queued")
    let_time_pass(api, 12, step_s=1)
    expect(row(page, newer["id"])).to_be_visible()  # the list refresh went on
    let_time_pass(api, 22, step_s=1)
    assert api.count("POST", "/jobs/status") == polls  # not before 40 s
    let_time_pass(api, 8, step_s=1)
    assert api.count("POST", "/jobs/status") > polls


def test_a_poll_whose_batch_is_slow_is_not_sent_again_before_it_answers(page, api):
    """150 unfinished jobs shown are polled in two batches. One answered at once with a 500,
    the other slow (a stack under load: up to 30 s): the next poll waits until the slow one has
    answered, instead of sending both batches again on top of it every few seconds."""
    page.clock.install()
    for _ in range(150):
        api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    page.get_by_label("Page size").select_option("100")
    expect(page.locator("tr.job")).to_have_count(100)
    page.get_by_role("button", name="Load more").click()
    expect(page.locator("tr.job")).to_have_count(150)
    let_time_pass(api, 3, step_s=1)
    polls = api.count("POST", "/jobs/status")
    assert polls >= 2
    api.fail("POST", "/jobs/status", status=500, json={"error": {"code": "internal", "message": "overloaded"}})
    api.holding = "/jobs/status"
    let_time_pass(api, 25, step_s=1)
    assert api.count("POST", "/jobs/status") == polls + 2  # one poll: its 500 and its slow batch
    assert len(api.held) == 1
    api.holding = None
    api.release()
    let_time_pass(api, 25, step_s=1)
    assert api.count("POST", "/jobs/status") > polls + 2  # the polls go on once it has answered
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_shown_job_the_api_no_longer_finds_is_shown_gone_and_not_polled(page, api):
    """An unfinished job shown, then removed (its retention's clean-up, a purge) or never found
    again: the batch status answers `not_found` for it. It is shown as gone, with no Cancel,
    and left out of every poll after, instead of asked for every 10 s for good; should a
    listing show it again, it is polled again."""
    page.clock.install()
    started = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z"}
    going, staying = api.add(status="running", **started), api.add(status="running", **started)
    api.open()
    line = row(page, going["id"])
    expect(line).to_have_attribute("data-status", "running")
    polled = batch_requests(page)
    kept = api.jobs.pop(going["id"])
    let_time_pass(api, 4, step_s=1)
    expect(line).to_have_attribute("data-status", "gone")
    expect(line.locator(".badge")).to_have_text("gone")
    expect(line.locator(".note")).to_have_text(re.compile("no longer found"))
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    expect(page.locator("#summary .status-running .chip-count")).to_have_text("1")
    polled.clear()
    let_time_pass(api, 60, step_s=2)
    assert polled and all(ids == [staying["id"]] for ids in polled), polled
    api.jobs[going["id"]] = kept  # a read that lagged: the listing shows it again
    let_time_pass(api, 12, step_s=1)
    expect(line).to_have_attribute("data-status", "running")
    expect(line.locator(".note")).to_have_text("")
    polled.clear()
    let_time_pass(api, 12, step_s=1)
    assert any(going["id"] in ids for ids in polled), polled


def test_a_refused_cancel_whose_status_read_fails_says_so_and_is_retried(page, api):
    """A Cancel refused 409 (the job finished meanwhile) reads the job's status to show how it
    ended; that read failing is shown like every other failed request (the banner), and the
    read is retried on the polls' schedule until the row shows the job's final state."""
    page.clock.install()
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    line = row(page, job["id"])
    expect(line).to_have_attribute("data-status", "running")
    api.update(job["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**job["progress"], "percent": 100.0})
    api.fail("POST", "/jobs/status", status=403, json={"error": {"code": "forbidden", "message": "not for this token"}})
    line.get_by_role("button", name=re.compile("Cancel")).click()
    expect(line.locator(".note")).to_have_text(re.compile("already completed"))
    expect(page.get_by_role("alert")).to_have_text(re.compile("not for this token"))
    let_time_pass(api, 3, step_s=1)
    expect(line).to_have_attribute("data-status", "completed")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(line.locator(".note")).to_have_text(re.compile("already completed"))


def test_the_type_filter_offers_the_types_shown_and_keeps_the_one_chosen(page, api):
    """A type deployed while the page is open (or one /job-types does not list) is offered by
    the type filter, and by the form, once a job of it shows up; a chosen type that no longer
    has jobs or a registration stays chosen, and the empty view says what it filters and
    offers to show every job, instead of an empty list under a filter reading "all"."""
    page.clock.install()
    api.add(status="completed")
    api.open()
    type_filter = page.get_by_label("Type", exact=True)
    expect(type_filter.locator("option")).to_have_text(["all", "demo.sleep", "demo.steps"])
    monthly = {**JOB_TYPES[0], "type": "reports.monthly", "description": "Monthly report."}
    api.job_types = [*JOB_TYPES, monthly]
    newer = api.add(status="queued", type="reports.monthly")
    child = api.add(status="completed", type="reports.page")  # internal: /job-types never lists it
    let_time_pass(api, 11, step_s=1)
    expect(row(page, newer["id"])).to_be_visible()
    expect(type_filter.locator("option")).to_have_text(["all", "demo.sleep", "demo.steps", "reports.monthly",
                                                        "reports.page"])
    expect(page.get_by_label("Job type").locator("option")).to_have_text(["demo.steps", "demo.sleep", "reports.monthly"])
    assert api.count("GET", "/job-types") == 2  # once more for the new types, not at every refresh
    let_time_pass(api, 20, step_s=1)
    assert api.count("GET", "/job-types") == 2
    type_filter.select_option("reports.page")
    expect(page.locator("tr.job")).to_have_count(1)
    expect(row(page, child["id"])).to_be_visible()
    type_filter.select_option("reports.monthly")
    expect(page.locator("tr.job")).to_have_count(1)
    # The type is withdrawn and its jobs removed: the filter still says which type it shows.
    api.job_types = list(JOB_TYPES)
    del api.jobs[newer["id"]]
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("tr.job")).to_have_count(0)
    expect(type_filter).to_have_value("reports.monthly")
    empty = page.locator("#jobs-empty")
    expect(empty).to_contain_text("No jobs of type reports.monthly")
    expect(empty).to_contain_text("no longer registered")
    empty.get_by_role("button", name="Show all jobs").click()
    expect(type_filter).to_have_value("")
    expect(page.locator("tr.job")).to_have_count(2)
    expect(empty).to_be_hidden()


def test_very_long_texts_keep_the_table_in_shape_and_are_shown_whole_on_demand(page, api):
    """A job type, step, message or error of hundreds of characters (a stack trace as the
    error) does not widen the table past the window nor make a row a page tall: each is cut
    with its full text as the title, and the job's details show the error and message whole."""
    long_type = "reports." + "monthly_" * 16
    step, message = "s" * 200, " ".join(["word"] * 400)
    code, error = "E_" + "X" * 118, "Traceback: " + " ".join(["frame"] * 1500)
    job = api.add(type=long_type, status="failed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:01.000Z",
                  progress={"percent": 40.0, "step": step, "message": message, "details": None, "updated_at": None},
                  error={"code": code, "message": error})
    api.open()
    line = row(page, job["id"])
    expect(line).to_be_visible()
    wrap = page.locator(".table-wrap").evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert wrap[0] <= wrap[1], wrap
    assert line.evaluate("r => r.getBoundingClientRect().height") < 200
    assert page.evaluate("[document.documentElement.scrollWidth, innerWidth]") == [1440, 1440]
    for selector, text in ((".job-type", long_type), (".step", step), (".progress-message", message),
                           (".error-code", code), (".error-message", error)):
        expect(line.locator(selector)).to_have_attribute("title", text)
    line.get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator("dd", has_text="Traceback")).to_have_text(f"{code}: {error}")
    expect(detail.locator("dd", has_text="word word")).to_have_text(message)
    # A touch screen has no hover for the title: the details show the type and step whole too.
    expect(detail.locator("dd", has_text="monthly_monthly")).to_have_text(long_type)
    expect(detail.locator("dd", has_text="sssss")).to_have_text(step)
    wrap = page.locator(".table-wrap").evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert wrap[0] <= wrap[1], wrap
    filter_width = page.get_by_label("Type", exact=True).evaluate("s => s.getBoundingClientRect().width")
    assert filter_width < 300, filter_width


def test_the_keyboard_keeps_its_place_through_submit_load_more_and_cancel(page, api):
    """A button pressed from the keyboard keeps the focus while its request is on its way (a
    disabled button drops it to the page's start), so Enter again loads the next page or
    submits another job, and a press while one is on its way sends nothing more; a Cancel that
    goes away hands the focus to its job's details. Ctrl+Enter in the payload submits."""
    for _ in range(60):
        api.add(status="completed")
    api.open()
    more = page.get_by_role("button", name="Load more")
    more.focus()
    page.keyboard.press("Enter")
    expect(page.locator("tr.job")).to_have_count(50)
    expect(more).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.locator("tr.job")).to_have_count(60)
    expect(more).to_be_hidden()
    expect(page.locator("tr.job").last.get_by_role("button", name=re.compile("Details"))).to_be_focused()

    submit, status = page.get_by_role("button", name="Submit job"), page.locator("#submit-status")
    submit.focus()
    api.hold_next = "/jobs"
    page.keyboard.press("Enter")
    expect(status).to_have_text("Submitting…")
    page.keyboard.press("Enter")  # still on its way: not sent twice
    expect(submit).to_be_focused()
    api.release()
    expect(status).to_have_text(re.compile("Submitted demo.steps job"))
    assert api.count("POST", "/jobs") == 1
    first = status.get_attribute("data-job-id")
    page.keyboard.press("Enter")
    expect(status).not_to_have_attribute("data-job-id", first)
    second = status.get_attribute("data-job-id")
    page.get_by_label("Payload (JSON)").press("Control+Enter")
    expect(status).not_to_have_attribute("data-job-id", second)
    assert api.count("POST", "/jobs") == 3

    line = row(page, status.get_attribute("data-job-id"))  # queued: a Cancel cancels it at once
    cancel = line.get_by_role("button", name=re.compile("Cancel"))
    cancel.focus()
    page.keyboard.press("Enter")
    expect(line).to_have_attribute("data-status", "canceled")
    expect(cancel).to_be_hidden()
    expect(line.get_by_role("button", name=re.compile("Details"))).to_be_focused()


SUBMIT_REFUSALS = [  # (status, error as the API answers it, what the form says, the field marked invalid)
    (400, {"code": "invalid_json", "message": "request body is not valid JSON: key 'a' is given more than once"},
     "request body is not valid JSON: key 'a' is given more than once (invalid_json)", "Payload (JSON)"),
    (400, {"code": "invalid_request", "message": "request is not valid",
           "details": [{"loc": ["priority"], "msg": "Input should be 'high', 'normal' or 'low'", "type": "literal_error"}]},
     "request is not valid — priority: Input should be 'high', 'normal' or 'low' (invalid_request)", "Priority"),
    (409, {"code": "idempotency_conflict", "message": "Idempotency-Key k was used with another body"},
     "Idempotency-Key k was used with another body (idempotency_conflict)", None),
    (413, {"code": "payload_too_large", "message": "request body is 6000044 bytes; the limit is 5242880",
           "details": {"limit": 5242880}},
     "request body is 6000044 bytes; the limit is 5242880 (payload_too_large)", "Payload (JSON)"),
    (422, {"code": "invalid_payload", "message": "payload is not valid for job type 'demo.steps'",
           "details": [{"loc": ["steps"], "msg": "Input should be a valid integer", "type": "int_parsing"},
                       {"loc": [], "msg": "Value error, give steps or step_ms", "type": "value_error"}]},
     "payload is not valid for job type 'demo.steps' — steps: Input should be a valid integer; "
     "payload: Value error, give steps or step_ms (invalid_payload)", "Payload (JSON)"),
    (422, {"code": "unknown_job_type", "message": "unknown job type 'demo.steps'; known types: demo.sleep"},
     "unknown job type 'demo.steps'; known types: demo.sleep (unknown_job_type)", "Job type"),
    (429, {"code": "quota_exceeded", "message": "tenant has 1000 unfinished jobs, the most it may have is 1000; "
                                                "retry after 30 s or when some finish"},
     "tenant has 1000 unfinished jobs, the most it may have is 1000; retry after 30 s or when some finish "
     "(quota_exceeded)", None),
]


@pytest.mark.parametrize("status,error,said,invalid", SUBMIT_REFUSALS, ids=[e["code"] for _, e, _, _ in SUBMIT_REFUSALS])
def test_a_refused_submit_says_why_and_marks_the_field_at_fault(page, api, status, error, said, invalid):
    api.open()
    fields = ["Job type", "Payload (JSON)", "Priority"]
    api.fail("POST", "/jobs", status=status, json={"error": error})
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text(said)
    for field in fields:
        marked = expect(page.get_by_label(field, exact=True))
        if field == invalid:
            marked.to_have_attribute("aria-invalid", "true")
        else:
            marked.not_to_have_attribute("aria-invalid", "true")
    expect(page.get_by_role("alert")).to_be_hidden()  # the form's own answer: no banner
    assert api.count("POST", "/jobs") == 1
    if error["code"] == "unknown_job_type":  # withdrawn since the form read the types: read again
        expect(page.get_by_label("Job type")).to_have_value("demo.steps")
        assert api.count("GET", "/job-types") == 2
    page.get_by_role("button", name="Submit job").click()  # the API takes it now
    expect(page.locator("#submit-status")).to_have_text(re.compile("Submitted demo.steps job"))
    for field in fields:
        expect(page.get_by_label(field, exact=True)).not_to_have_attribute("aria-invalid", "true")


def test_a_payload_number_the_page_cannot_send_exactly_is_refused_before_sending(page, api):
    """JSON.parse reads 12345678901234567891 as 12345678901234567000 and 1e400 as Infinity,
    which JSON.stringify sends as null: the job would be made with numbers the user did not
    write. The form refuses such a payload and says which number, sending nothing."""
    api.open()
    payload, status = page.get_by_label("Payload (JSON)"), page.locator("#submit-status")
    for number in ("12345678901234567891", "1e400", "-9007199254740993"):
        payload.fill('{"note": "9007199254740993 in text is fine", "order": %s}' % number)
        page.get_by_role("button", name="Submit job").click()
        expect(status).to_have_text(re.compile(f"The payload's number {re.escape(number)} "))
        expect(payload).to_have_attribute("aria-invalid", "true")
    assert api.count("POST", "/jobs") == 0
    payload.fill('{"note": "9007199254740993", "order": 9007199254740991, "ratio": 0.1, "big": 1.5e300}')
    page.get_by_role("button", name="Submit job").click()
    expect(status).to_have_text(re.compile("Submitted"))
    assert api.jobs[status.get_attribute("data-job-id")]["payload"] == {
        "note": "9007199254740993", "order": 9007199254740991, "ratio": 0.1, "big": 1.5e300}


def test_with_no_job_types_the_form_says_there_is_nothing_to_submit(page, api):
    page.clock.install()
    api.job_types = []
    api.hold_next = "/job-types"
    api.open()
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text("Not submitted: the job types are still being read.")
    api.release()
    expect(page.locator("#job-type-description")).to_have_text("The API lists no job types: there is nothing to submit.")
    let_time_pass(api, 30, step_s=1)
    assert api.count("GET", "/job-types") == 1  # an empty list is an answer: not asked again at each refresh
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text("Not submitted: the API lists no job types.")
    expect(page.get_by_label("Job type")).to_have_attribute("aria-invalid", "true")
    assert api.count("POST", "/jobs") == 0
    expect(page.get_by_text("No jobs here yet")).to_be_visible()


def test_a_throttled_submit_says_it_was_not_made_and_when_to_press_again(page, api):
    """The banner's "retrying" is the page's reads: a throttled submit is not sent again by
    itself, and the form says so."""
    api.open()
    api.fail("POST", "/jobs", status=429, headers={"Retry-After": "20"}, json={"message": "Too Many Requests"})
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text(
        "Not submitted: the API is throttling requests (Too Many Requests). Press Submit job again in 20 s.")
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text(re.compile("Submitted demo.steps job"))


@pytest.mark.parametrize("width", [1024, 1280, 1366])
def test_a_laptop_window_shows_every_column_without_scrolling_sideways(browser, width):
    """On a laptop's window the form goes below the jobs where both would not fit side by
    side, so every column, the Cancel button included, is in view."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    api = FakeApi(page)
    job = api.add(status="running", attempts=1, created_at="2026-01-15T10:00:00.000Z", started_at="2026-01-15T10:00:01.000Z",
                  progress={"percent": 40.0, "step": "load rows", "message": "row 400 of 1000", "details": None, "updated_at": None})
    api.add(status="failed", attempts=3, started_at="2026-01-15T10:00:00.000Z", finished_at="2026-01-15T10:00:05.000Z",
            error={"code": "handler_error", "message": "ValueError: bad row 17"})
    api.open()
    cancel = row(page, job["id"]).get_by_role("button", name=re.compile("Cancel"))
    expect(cancel).to_be_visible()
    wrap = page.locator(".table-wrap").evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert wrap[0] <= wrap[1], wrap
    assert cancel.evaluate("b => b.getBoundingClientRect().right") <= width
    context.close()


def test_a_wide_screen_shows_a_job_types_whole_name(browser):
    """A busy tenant's types often share their start (reports.monthly_export, reports.monthly_
    exports_v2): where the table has the room, a wide screen's, a type of some 30 characters is
    shown whole, not cut at 10 rem with the progress bar beside it many times wider."""
    context = browser.new_context(viewport={"width": 1920, "height": 1080})
    page = context.new_page()
    api = FakeApi(page)
    job = api.add(type="reports.monthly_export_by_region", status="running", attempts=1,
                  started_at="2026-01-15T10:00:01.000Z")
    api.open()
    name = row(page, job["id"]).locator(".job-type")
    expect(name).to_have_text(job["type"])
    assert name.evaluate("e => e.scrollWidth <= e.clientWidth"), "the type is cut"
    page.set_viewport_size({"width": 1460, "height": 900})  # the table beside the form, at its narrowest
    wrap = page.locator(".table-wrap").evaluate("w => [w.scrollWidth, w.clientWidth]")
    assert wrap[0] <= wrap[1], wrap
    context.close()


@pytest.mark.parametrize("width", [320, 390, 1024])
def test_a_narrow_window_shows_the_jobs_first_and_new_job_leads_to_the_form(browser, width):
    """An operator opens the page to watch jobs: where the form cannot sit beside the jobs (a
    phone, a laptop) the jobs come first, on screen and for the keyboard and a screen reader
    alike, and "New job" takes the focus to the form; beside the jobs it is not needed."""
    context = browser.new_context(viewport={"width": width, "height": 740})
    page = context.new_page()
    api = FakeApi(page)
    first = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    for _ in range(5):
        api.add(status="completed")
    api.open()
    jobs, form = page.locator(".jobs-panel"), page.locator(".submit-panel")
    expect(row(page, first["id"])).to_be_visible()
    newest = row(page, listing(api)[0])
    assert newest.bounding_box()["y"] < 740, newest.bounding_box()  # a job in view without scrolling
    assert jobs.bounding_box()["y"] < form.bounding_box()["y"]
    assert jobs.evaluate("(jobs, form) => Boolean(jobs.compareDocumentPosition(form) & Node.DOCUMENT_POSITION_FOLLOWING)",
                         form.element_handle())
    new_job = page.get_by_role("button", name="New job")
    new_job.focus()
    page.keyboard.press("Enter")
    job_type = page.get_by_label("Job type")
    expect(job_type).to_be_focused()
    expect(job_type).to_be_in_viewport()
    page.set_viewport_size({"width": 1920, "height": 900})
    expect(new_job).to_be_hidden()
    assert jobs.bounding_box()["y"] == form.bounding_box()["y"]  # side by side
    context.close()


def overflows(page: Page) -> list[str]:
    """What sticks out sideways: the page past the window, the table past its box, a row or a
    cell (of a job or of its details) past the table's box."""
    return page.evaluate("""() => {
        const out = [], root = document.documentElement, wrap = document.querySelector(".table-wrap");
        if (root.scrollWidth > innerWidth) out.push(`page ${root.scrollWidth} > ${innerWidth}`);
        if (wrap.scrollWidth > wrap.clientWidth) out.push(`table ${wrap.scrollWidth} > ${wrap.clientWidth}`);
        const right = wrap.getBoundingClientRect().right + 0.5;
        document.querySelectorAll("#jobs-body tr:not([hidden]), #jobs-body tr:not([hidden]) td, .runs-table").forEach(box => {
            const edge = box.getBoundingClientRect().right;
            if (edge > right) out.push(`${box.closest("tr").dataset.jobId || box.closest("tr").id} ${box.className} ${edge - right}`);
        });
        return out;
    }""")


@pytest.mark.parametrize("day", ["today", "earlier"])
def test_no_width_from_a_phone_to_a_4k_screen_scrolls_sideways(browser, day):
    """Dated or not, with texts of every length and a job's details open, nothing sticks out
    sideways at any window width from 320 px (a phone) to 1920 px."""
    from datetime import datetime, timedelta, timezone

    context = browser.new_context(viewport={"width": 1920, "height": 900}, timezone_id="UTC")
    page = context.new_page()
    api = FakeApi(page)
    now = datetime(2026, 1, 16, 12, 0, 0, tzinfo=timezone.utc)
    page.clock.install(time=now)
    at = now - (timedelta(minutes=30) if day == "today" else timedelta(days=3))
    times = {"created_at": iso(at), "started_at": iso(at + timedelta(seconds=1))}
    ended = {**times, "finished_at": iso(at + timedelta(seconds=5))}
    progress = {"percent": 40.0, "step": "load rows", "message": "row 400 of 1000", "details": None, "updated_at": None}
    long = {"type": "reports." + "monthly_" * 16, "progress": {**progress, "step": "s" * 200, "message": " ".join(["word"] * 400)},
            "error": {"code": "E_" + "X" * 118, "message": "Traceback: " + " ".join(["frame"] * 1500)}}
    api.add(status="running", attempts=1, **times, progress=progress, cancel_requested=True)
    retrying = api.add(status="retrying", attempts=2, **times, not_before=iso(now + timedelta(days=300)),
                       progress=progress, error={"code": "handler_error", "message": "ValueError: bad row 17"})
    api.runs[retrying["id"]] = [{"attempt": 2, "status": "failed", "started_at": iso(at),  # a long last attempt
                                 "finished_at": iso(at + timedelta(hours=23, minutes=59)), "error": retrying["error"]}]
    api.add(status="completed", attempts=3, max_attempts=10, **ended, progress={**progress, "percent": 100.0})
    failed = api.add(status="failed", attempts=1, **ended, **long, user="u" * 200, scope="s" * 200,
                     payload={"k" * 300: "v" * 3000}, result={"r": "x" * 3000})
    api.add(status="running", attempts=1, **times, **long)
    api.runs[failed["id"]] = [{"attempt": 1, "status": "failed", "started_at": failed["started_at"],
                               "finished_at": failed["finished_at"], "error": failed["error"]}]
    api.open()
    row(page, failed["id"]).get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator(f'#detail-{failed["id"]} .runs-table time')).to_have_count(2)
    dated = row(page, failed["id"]).locator(".times time").first
    expect(dated).to_have_text(re.compile(r"^\d\d:" if day == "today" else r"^2026-01-13 "))
    found, shown = {}, {}
    for width in sorted({*range(320, 1921, 20), *range(1270, 1311)}):
        page.set_viewport_size({"width": width, "height": 900})
        page.evaluate("() => new Promise(requestAnimationFrame)")
        if problems := overflows(page):
            found[width] = problems
        shown[width] = row(page, failed["id"]).evaluate("r => getComputedStyle(r).display")
    context.close()
    assert not found, [f"{width} px: {problems[0]} (and {len(problems) - 1} more)" for width, problems in found.items()]
    # A table where it fits (the form beside it from 1441 px), each job a card where it does not.
    assert (shown[320], shown[1000], shown[1100], shown[1440], shown[1460], shown[1920]) == (
        "grid", "grid", "table-row", "table-row", "table-row", "table-row"), shown


@pytest.mark.parametrize("failure", [
    {"status": 503, "json": {"message": "Service Unavailable"}},
    {"status": 504, "json": {"message": "Endpoint request timed out"}},
], ids=["503", "504"])
def test_attempts_that_could_not_be_read_say_so_in_the_details_and_can_be_read_again(page, api, failure):
    """A failed read of a job's attempts (the stack overloaded) is said in its details, not only
    in the banner, which the next good answer takes away: the details would be left without
    attempts and without a word. A button there reads them again. (A throttled read says when
    it is read again, and is: `test_details_whose_attempts_are_throttled_…`.)"""
    job = api.add(status="failed", attempts=1, started_at="2026-01-15T10:00:01.000Z", finished_at="2026-01-15T10:00:05.000Z",
                  error={"code": "handler_error", "message": "boom"})
    api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": job["started_at"],
                            "finished_at": job["finished_at"], "error": job["error"]}]
    api.open()
    api.fail("GET", r"/jobs/[^/]+/runs", **failure)
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator(".runs")).to_contain_text(re.compile("Could not load attempts: .*" + failure["json"]["message"]))
    detail.get_by_role("button", name="Load attempts again").click()
    expect(detail.locator(".runs-table tr")).to_have_count(2)
    expect(detail.locator(".runs")).not_to_contain_text("Could not load")
    assert api.count("GET", r"/jobs/[^/]+/runs") == 2


def test_a_listing_on_its_way_says_so_instead_of_showing_no_jobs(page, api):
    """On a slow stack the first listing (or a new filter's) takes seconds: until it answers
    the page says it is loading, and the rows of the filter left are marked busy, instead of
    an empty table (or rows of another filter) passing for the answer."""
    done = api.add(status="completed", attempts=1, started_at="2026-01-15T10:00:00.000Z", finished_at="2026-01-15T10:00:01.000Z")
    failed = api.add(status="failed", attempts=1, started_at="2026-01-15T10:00:00.000Z", finished_at="2026-01-15T10:00:01.000Z",
                     error={"code": "handler_error", "message": "boom"})
    api.hold_next = "/jobs"
    page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={api.token()}")
    expect(page.locator("#jobs-empty")).to_have_text(re.compile("Loading jobs…"))
    expect(page.locator("#jobs-table")).to_have_attribute("aria-busy", "true")
    api.release()
    expect(page.locator("tr.job")).to_have_count(2)
    expect(page.locator("#jobs-empty")).to_be_hidden()
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    api.hold_next = "/jobs"
    page.get_by_label("Status", exact=True).select_option("failed")
    expect(page.locator("#jobs-table")).to_have_attribute("aria-busy", "true")
    expect(page.locator("#jobs-empty")).to_be_hidden()  # the rows shown meanwhile are marked, not hidden
    api.release()
    expect(page.locator("tr.job")).to_have_count(1)
    expect(row(page, failed["id"])).to_be_visible()
    expect(row(page, done["id"])).to_have_count(0)
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    api.hold_next = "/jobs"
    page.get_by_label("Status", exact=True).select_option("running")
    api.release()
    expect(page.get_by_text("No running jobs.")).to_be_visible()


@pytest.mark.parametrize("failure", [
    {"abort": "internetdisconnected"},
    {"status": 503, "json": {"message": "Service Unavailable"}},
], ids=["offline", "503"])
def test_a_filter_whose_listing_fails_shows_only_its_rows_and_is_listed_afresh(page, api, failure):
    """The status filter is changed and its listing fails: no row of another status stays shown,
    the page says the jobs could not be listed, and the retry lists that filter afresh: the
    rows it answers replace those shown, instead of being merged with them."""
    paused_clock(page)
    done = api.add(status="completed")
    failed = api.add(status="failed")
    api.open()
    expect(page.locator("tr.job")).to_have_count(2)
    api.fail("GET", "/jobs", **failure)
    page.get_by_label("Status", exact=True).select_option("failed")
    api.settle()
    expect(row(page, done["id"])).to_have_count(0)
    note = page.get_by_role("status").filter(has_text="Could not list the jobs")
    expect(note).to_have_text(re.compile(r"trying again in 10 s\.$"))
    expect(page.locator("#jobs-table")).to_have_attribute("aria-busy", "true")
    del api.jobs[failed["id"]]  # purged meanwhile
    newer = api.add(status="failed")
    api.add(status="completed")
    page.clock.run_for(10_000)
    api.settle()
    retry = [headers for method, path, headers in api.requests if method == "GET" and path.startswith("/jobs?")][-1]
    assert "if-none-match" not in retry  # a fresh listing, not a refresh of the one shown
    expect(page.locator("tr.job")).to_have_count(1)
    expect(row(page, newer["id"])).to_be_visible()
    expect(note).to_have_count(0)
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")


@pytest.mark.parametrize("width", [320, 390, 430, 600, 1024])
def test_each_filter_keeps_its_label_beside_it_on_a_phone(browser, width):
    """The filters wrap on a narrow window, but never between a label and its list: "Type" at
    the end of one line with its list on the next reads as the list of the line below."""
    context = browser.new_context(viewport={"width": width, "height": 800})
    page = context.new_page()
    api = FakeApi(page)
    api.add(status="completed", type="reports." + "monthly_" * 6)
    api.open()
    for name in ("Status", "Type", "Page size"):
        control = page.get_by_label(name, exact=True)
        label = page.locator(f'label[for="{control.get_attribute("id")}"]')
        box, text = control.bounding_box(), label.bounding_box()
        middle = text["y"] + text["height"] / 2
        assert box["y"] <= middle <= box["y"] + box["height"] and text["x"] < box["x"], (name, text, box)
        assert box["x"] + box["width"] <= width, (name, box)
    context.close()


def test_refresh_pressed_again_while_its_listing_is_on_its_way_sends_nothing_more(page, api):
    """On a slow stack an operator presses Refresh again and again: one listing goes, not one
    per press (each a full read, on a stack already slow or throttling); once it has answered,
    or failed, Refresh reads again."""
    api.add(status="completed")
    api.open()
    expect(page.locator("tr.job")).to_have_count(1)
    lists = api.count("GET", r"/jobs\?.*")
    refresh = page.get_by_role("button", name="Refresh")
    api.hold_next = "/jobs"
    for _ in range(4):
        refresh.click(force=True)  # aria-disabled while busy: Playwright would wait for it
    expect(refresh).to_have_attribute("aria-disabled", "true")
    assert api.count("GET", r"/jobs\?.*") == lists + 1
    api.release()
    expect(refresh).not_to_have_attribute("aria-disabled", "true")
    api.fail("GET", "/jobs", status=503, json={"message": "Service Unavailable"})
    refresh.click()
    expect(page.get_by_role("alert")).to_contain_text("Service Unavailable")
    expect(refresh).not_to_have_attribute("aria-disabled", "true")
    refresh.click()
    expect(page.get_by_role("alert")).to_be_hidden()
    assert api.count("GET", r"/jobs\?.*") == lists + 3


def test_the_page_adds_one_name_to_the_global_scope(page, api):
    """The scripts keep their names to themselves: the page, running, adds `jobpipe` to
    `window` and nothing else (the names `window` has before the page's first script runs, kept
    under a symbol, are the baseline)."""
    before = 'Symbol.for("names before the page")'
    page.add_init_script(f"Object.defineProperty(window, {before}, {{value: Object.getOwnPropertyNames(window)}})")
    api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(page.locator("tr.job")).to_have_count(1)
    added = page.evaluate(f"Object.getOwnPropertyNames(window).filter(name => !window[{before}].includes(name))")
    assert added == ["jobpipe"], added


def test_an_attempts_times_show_in_the_browsers_zone_with_utc_on_hover(browser):
    context = browser.new_context(timezone_id="Europe/Berlin")
    page = context.new_page()
    api = FakeApi(page)
    job = api.add(status="failed", attempts=1, started_at="2026-01-15T10:00:01.000Z", finished_at="2026-01-15T10:00:05.000Z",
                  error={"code": "handler_error", "message": "boom"})
    api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": job["started_at"],
                            "finished_at": job["finished_at"], "error": job["error"]}]
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    times = page.locator(f'#detail-{job["id"]} .runs-table time')
    expect(times).to_have_text(["2026-01-15 11:00:01", "2026-01-15 11:00:05"])
    expect(times.first).to_have_attribute("title", job["started_at"])
    expect(times.first).to_have_attribute("datetime", job["started_at"])
    context.close()


# ---------------------------------------------------------------- Run again

FINISHED = {"completed": {"finished_at": "2026-01-15T10:00:09.000Z"},
            "failed": {"finished_at": "2026-01-15T10:00:09.000Z", "error": {"code": "boom", "message": "it broke"}},
            "canceled": {"finished_at": "2026-01-15T10:00:09.000Z", "cancel_requested": True}}
RERUN_PATH = r"/jobs/[^/]+/rerun"


def run_again(line):
    return line.get_by_role("button", name=re.compile(r"^Run job .+ again$"))


def rerun_keys(api: FakeApi, job_id: str) -> list[str]:
    return [headers.get("idempotency-key") for method, path, headers in api.requests
            if (method, path) == ("POST", f"/jobs/{job_id}/rerun")]


def finished(api: FakeApi, status: str = "completed", **fields) -> dict:
    return api.add(status=status, attempts=1, started_at="2026-01-15T10:00:00.000Z", **FINISHED[status], **fields)


def test_run_again_is_offered_for_a_finished_job_only(page, api):
    jobs = {status: finished(api, status) for status in FINISHED}
    jobs.update({status: api.add(status=status, attempts=1 if status != "queued" else 0,
                                 started_at=None if status == "queued" else "2026-01-15T10:00:00.000Z")
                 for status in ("queued", "running", "retrying")})
    api.open()
    for status, job in jobs.items():
        line = row(page, job["id"])
        expect(line).to_have_attribute("data-status", status)
        cancel = line.get_by_role("button", name=re.compile("Cancel"))
        if status in FINISHED:
            expect(run_again(line)).to_be_visible()
            expect(run_again(line)).to_have_text("Run again")
            expect(cancel).to_be_hidden()
        else:
            expect(run_again(line)).to_be_hidden()
            expect(cancel).to_be_visible()
    # A job that ends is offered it at the poll that sees it end.
    running = jobs["running"]["id"]
    api.update(running, status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**jobs["running"]["progress"], "percent": 100.0})
    expect(run_again(row(page, running))).to_be_visible()
    expect(row(page, running).get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()
    assert api.count("POST", RERUN_PATH) == 0


def test_run_again_makes_a_new_job_shown_first_and_linked_to_its_original(page, api):
    """From the keyboard: Enter on Run again posts the rerun under a fresh key, the button busy
    (a press meanwhile sends nothing more) and keeping the focus; the new job comes first in
    the list, its details say which job it reruns, and the original's note links to it."""
    old = finished(api, "failed", payload={"steps": 4}, priority="high")
    newer = finished(api, "completed")
    api.open()
    line = row(page, old["id"])
    button, note = run_again(line), line.locator(".note")
    button.focus()
    api.hold_next = RERUN_PATH
    page.keyboard.press("Enter")
    expect(note).to_have_text("running again…")
    expect(button).to_have_attribute("aria-disabled", "true")
    page.keyboard.press("Enter")  # still on its way: not sent twice
    api.release()
    expect(page.locator("tr.job")).to_have_count(3)
    new_id = page.locator("tr.job").first.get_attribute("data-job-id")
    assert new_id not in (old["id"], newer["id"])
    assert api.jobs[new_id]["rerun_of"] == old["id"]
    keys = rerun_keys(api, old["id"])
    assert len(keys) == 1 and re.fullmatch(r"dashboard-[0-9a-f]{32}", keys[0]), keys
    expect(note).to_have_text(f"ran again as {new_id}")
    expect(button).to_be_focused()
    expect(button).not_to_have_attribute("aria-disabled", "true")

    facts = """id => Object.fromEntries(Array.from(document.querySelectorAll(`#detail-${id} .facts dt`),
                                               dt => [dt.textContent, dt.nextElementSibling.textContent]))"""
    row(page, new_id).get_by_role("button", name=re.compile("Details")).click()
    assert page.evaluate(facts, new_id)["rerun of"] == old["id"]
    line.get_by_role("button", name=re.compile("Details")).click()
    assert "rerun of" not in page.evaluate(facts, old["id"])

    # The note's link leads to the new job's row.
    note.get_by_role("link", name=new_id).click()
    expect(row(page, new_id).get_by_role("button", name=re.compile("Details"))).to_be_focused()
    # Pressed again, it is another rerun, under a key of its own.
    button.click()
    expect(page.locator("tr.job")).to_have_count(4)
    keys = rerun_keys(api, old["id"])
    assert len(keys) == 2 and keys[0] != keys[1], keys
    assert [j["rerun_of"] for j in api.jobs.values()].count(old["id"]) == 2


def test_a_rerun_the_status_filter_leaves_out_is_named_but_not_linked(page, api):
    old = finished(api, "failed")
    api.open()
    page.get_by_label("Status", exact=True).select_option("failed")
    line = row(page, old["id"])
    run_again(line).click()
    made = next(j for j in api.jobs.values() if j["rerun_of"] == old["id"])
    expect(line.locator(".note")).to_have_text(f"ran again as {made['id']}")
    expect(line.locator(".note").get_by_role("link")).to_have_count(0)  # it would lead nowhere
    expect(page.locator("tr.job")).to_have_count(1)  # queued: not among the failed


@pytest.mark.parametrize("failure", [{"lose_answer": "connectionreset"}, {"status": 503, "json": {"message": "Service Unavailable"}}],
                         ids=["answer-lost", "503"])
def test_a_rerun_that_got_no_usable_answer_is_safe_to_press_again(page, api, failure):
    job = finished(api)
    api.open()
    line = row(page, job["id"])
    button, note = run_again(line), line.locator(".note")
    api.fail("POST", RERUN_PATH, **failure)
    button.click()
    expect(note).to_have_text(re.compile(r"^No usable answer to the rerun \(.+\)\. It may have been made: "
                                         r"press Run again to make sure; it will not be made twice\.$"))
    expect(button).not_to_have_attribute("aria-disabled", "true")
    button.click()
    expect(note).to_have_text(re.compile(r"^ran again as job-\d+$"))
    expect(page.locator("tr.job")).to_have_count(2)
    assert len(api.jobs) == 2  # one rerun, however many presses its answer took
    keys = rerun_keys(api, job["id"])
    assert len(keys) == 2 and keys[0] and keys[0] == keys[1], keys
    # Once answered, the next press is a new rerun with a key of its own.
    button.click()
    expect(page.locator("tr.job")).to_have_count(3)
    keys = rerun_keys(api, job["id"])
    assert len(keys) == 3 and keys[2] != keys[1], keys


RERUN_REFUSALS = [  # (status, error as the API answers it, headers)
    (409, {"code": "job_not_finished", "message": "job job-0001 is running: only a finished job (completed, failed or "
                                                  "canceled) runs again; wait for it to end, or cancel it first",
           "details": {"status": "running"}}, {}),
    (410, {"code": "blob_not_found", "message": "the payload of job job-0001 is gone from the bucket (deleted by hand or "
                                                "by a lifecycle rule): it cannot run again; submit the payload anew"}, {}),
    (429, {"code": "quota_exceeded", "message": "tenant has 1000 unfinished jobs, the most it may have is 1000; "
                                                "retry after 30 s or when some finish"}, {"Retry-After": "30"}),
    (422, {"code": "unknown_job_type", "message": "unknown job type 'demo.steps'; known types: demo.sleep"}, {}),
    (404, {"code": "job_not_found", "message": "job job-0001 not found"}, {}),
]


@pytest.mark.parametrize("status,error,headers", RERUN_REFUSALS, ids=[e["code"] for _, e, _ in RERUN_REFUSALS])
def test_a_refused_rerun_shows_the_apis_message(page, api, status, error, headers):
    job = finished(api)
    api.open()
    line = row(page, job["id"])
    button, note = run_again(line), line.locator(".note")
    api.fail("POST", RERUN_PATH, status=status, json={"error": error}, headers=headers)
    button.focus()
    page.keyboard.press("Enter")
    expect(note).to_have_text(error["message"])
    expect(page.get_by_role("alert")).to_be_hidden()  # the row's own answer: no banner
    expect(page.locator("tr.job")).to_have_count(1)
    if status == 404:  # gone: nothing more to run again
        expect(line).to_have_attribute("data-status", "gone")
        expect(button).to_be_hidden()
        expect(line.get_by_role("button", name=re.compile("Details"))).to_be_focused()
        return
    expect(line).to_have_attribute("data-status", "completed")
    expect(button).to_be_focused()
    expect(button).not_to_have_attribute("aria-disabled", "true")
    # A refusal is an answer: pressed again, the rerun goes under a new key, and is made.
    page.keyboard.press("Enter")
    expect(note).to_have_text(re.compile(r"^ran again as job-\d+$"))
    keys = rerun_keys(api, job["id"])
    assert len(keys) == 2 and keys[0] != keys[1], keys


def test_a_throttled_rerun_says_it_was_not_made_and_when_to_press_again(page, api):
    job = finished(api)
    api.open()
    line = row(page, job["id"])
    api.fail("POST", RERUN_PATH, status=429, headers={"Retry-After": "20"}, json={"message": "Too Many Requests"})
    run_again(line).click()
    expect(line.locator(".note")).to_have_text(
        "Not run again: the API is throttling requests (Too Many Requests). Press Run again in 20 s.")
    run_again(line).click()
    expect(line.locator(".note")).to_have_text(re.compile(r"^ran again as job-\d+$"))


# ---------------------------------------------------------------- throttles honoured by every read

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


def test_a_poll_sends_at_most_four_batches_at_a_time(page, api):
    """500 unfinished jobs shown are polled in 5 batches: at most 4 on their way at once, the
    fifth sent as one answers; the next poll only once all 5 have answered."""
    page.clock.install()
    five_pages_running(page, api)
    api.holding = "/jobs/status"
    polls = api.count("POST", "/jobs/status")
    let_time_pass(api, 12, step_s=1)
    assert api.count("POST", "/jobs/status") == polls + 4 and len(api.held) == 4
    while api.held:
        api.answer(api.held.pop(0))
        api.settle()
        assert len(api.held) <= 4
    api.holding = None
    assert api.count("POST", "/jobs/status") == polls + 5  # the fifth went once one answered
    let_time_pass(api, 12, step_s=1)
    assert api.count("POST", "/jobs/status") > polls + 5  # and the polls go on


def test_a_poll_throttled_sends_none_of_its_batches_still_waiting(page, api):
    """Of a poll's 5 batches, the first is answered 429, Retry-After: 2, while 3 are on their
    way: the fifth is not sent when the 429 frees its place, and no batch goes out for 2 s."""
    page.clock.install()
    page.add_init_script(LOG_SENT)
    five_pages_running(page, api)
    polls = api.count("POST", "/jobs/status")
    api.fail("POST", "/jobs/status", **THROTTLED)
    api.holding = "/jobs/status"
    let_time_pass(api, 12, step_s=1)
    assert api.count("POST", "/jobs/status") == polls + 4 and len(api.held) == 3
    throttled_at = sent(page, "POST", "/jobs/status")[polls]
    api.holding = None
    api.release()
    api.settle()
    page.clock.run_for(1000)
    api.settle()
    assert api.count("POST", "/jobs/status") == polls + 4
    let_time_pass(api, 12, step_s=1)
    later = sent(page, "POST", "/jobs/status")[polls + 4:]
    assert later and min(later) >= throttled_at + 2000, (throttled_at, later)


def paused_clock(page: Page) -> None:
    """The page's time moves only as the test moves it (`run_for`), from before the page opens,
    however slow the machine; every request the page sends is logged with that time (`sent`)."""
    from datetime import datetime, timedelta, timezone

    start = datetime(2026, 1, 16, 12, 0, tzinfo=timezone.utc)
    page.clock.install(time=start)
    # Paused a minute on: installed, the clock runs until paused, and pausing it at a time it
    # has already passed (a loaded machine between the two calls) is refused.
    page.clock.pause_at(start + timedelta(minutes=1))
    page.add_init_script(LOG_SENT)


def listing_throttled_and_paused(page: Page, api: FakeApi) -> int:
    """The list's refresh answered 429, Retry-After: 2. The page's time moves only as the test
    moves it, from the start, however slow the machine. Returns the page clock's time (ms) at
    which the throttled refresh went: the page's time then."""
    paused_clock(page)
    api.open()
    api.settle()
    api.fail("GET", "/jobs", **THROTTLED)
    page.clock.run_for(10_000)
    api.settle()
    assert len(sent(page, "GET", r"/jobs\?.*")) == 2
    throttled_at = sent(page, "GET", r"/jobs\?.*")[-1]
    assert page.evaluate("Date.now()") == throttled_at
    return throttled_at


def test_a_tab_shown_again_waits_out_its_listings_retry_after(page, api):
    """The list's refresh is answered 429, Retry-After: 2; the tab is hidden and shown again at
    once. It catches up, but not before the 2 s are over."""
    job = api.add(status="completed")
    throttled_at = listing_throttled_and_paused(page, api)
    lists = r"/jobs\?.*"
    expect(row(page, job["id"])).to_be_visible()
    set_hidden(page, True)
    set_hidden(page, False)
    api.settle()
    page.clock.run_for(1900)
    api.settle()
    assert len(sent(page, "GET", lists)) == 2  # shown again within the Retry-After: no listing yet
    newer = api.add(status="completed")
    page.clock.run_for(1500)
    api.settle()
    expect(row(page, newer["id"])).to_be_visible()  # caught up once the throttle was over
    assert sent(page, "GET", lists)[2] >= throttled_at + 2000


def test_a_throttled_read_of_attempts_holds_every_read_of_attempts_until_its_retry_after(page, api):
    """40 jobs wait to retry; the first read of their attempts is answered 429, Retry-After: 2.
    No read of attempts goes out for 2 s: not the rows' queued ones, not a row scrolled on
    screen. Then the queue resumes, the throttled row's read included."""
    paused_clock(page)
    api.fail("GET", RUNS, **THROTTLED)
    reads = forty_waiting_their_reads_held(page, api)
    assert api.count("GET", reads) == 4 and len(api.held) == 3
    throttled_id = next(p.split("/")[2] for m, p, _ in api.requests if m == "GET" and re.fullmatch(reads, p))
    api.holding = None
    api.release()
    api.settle()
    last = row(page, listing(api)[-1])
    last.scroll_into_view_if_needed()  # comes on screen while the throttle lasts
    api.settle()
    throttled_at = sent(page, "GET", reads)[0]
    page.clock.run_for(1000)
    api.settle()
    assert api.count("GET", reads) == 4  # nothing before the Retry-After
    page.clock.run_for(1500)
    api.settle()
    expect(last.locator(".duration")).to_have_text("last attempt 2.5 s")
    throttled = row(page, throttled_id)
    throttled.scroll_into_view_if_needed()
    expect(throttled.locator(".duration")).to_have_text("last attempt 2.5 s")
    later = sent(page, "GET", reads)[4:]
    assert later and min(later) >= throttled_at + 2000, (throttled_at, later)


def test_a_details_read_of_attempts_and_its_rows_are_one_request(page, api):
    """A retrying job's row reads its attempts (its last one's duration) while its details open:
    the read on its way serves the details too. A job whose details are open starts waiting for
    its next attempt: the details' read and the row's are one request. If the job moves on while
    that read is on its way, the details read once more, once."""
    paused_clock(page)
    waiting = waiting_jobs(api, 1)[0]
    running = api.add(status="running", attempts=1, started_at="2026-01-16T11:59:00.000Z")
    api.runs[running["id"]] = [{"attempt": 1, "status": "running", "started_at": running["started_at"],
                                "finished_at": None, "error": None}]
    api.holding = RUNS
    api.open()
    api.settle()
    runs_of = lambda job: api.count("GET", f"/jobs/{job['id']}/runs")
    assert runs_of(waiting) == 1  # the row's, on its way
    row(page, waiting["id"]).get_by_role("button", name=re.compile("Details")).click()
    api.settle()
    assert runs_of(waiting) == 1
    api.holding = None
    api.release()
    expect(page.locator(f"#detail-{waiting['id']} .runs-table tr")).to_have_count(2)
    expect(row(page, waiting["id"]).locator(".duration")).to_have_text("last attempt 2.5 s")
    assert runs_of(waiting) == 1

    row(page, running["id"]).get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator(f"#detail-{running['id']} .runs-table tr")).to_have_count(2)
    assert runs_of(running) == 1
    failed = {"code": "handler_error", "message": "boom"}
    api.runs[running["id"]] = [{**api.runs[running["id"]][0], "status": "failed", "finished_at": "2026-01-16T11:59:04.000Z",
                                "error": failed}]
    api.update(running["id"], status="retrying", error=failed)
    api.holding = RUNS
    page.clock.run_for(2000)  # the poll that sees it retrying
    api.settle()
    assert runs_of(running) == 2  # one read for the details and the row
    api.update(running["id"], status="running", attempts=2, error=None, attempt_started_at="2026-01-16T12:01:02.000Z")
    api.runs[running["id"]].append({"attempt": 2, "status": "running", "started_at": "2026-01-16T12:01:02.000Z",
                                    "finished_at": None, "error": None})
    page.clock.run_for(2000)  # the poll that sees it running again, while that read is on its way
    api.settle()
    assert runs_of(running) == 2
    api.holding = None
    api.release()
    api.settle()
    expect(page.locator(f"#detail-{running['id']} .runs-table tr")).to_have_count(3)  # read once more
    page.clock.run_for(4000)
    api.settle()
    assert runs_of(running) == 3


def test_details_whose_attempts_are_throttled_say_when_they_are_read_and_are_read_then(page, api):
    """The read of an opened details' attempts answered 429, Retry-After: 2: the details say
    they are read in 2 s, and they are, with nothing pressed; not sooner."""
    page.clock.install()
    page.add_init_script(LOG_SENT)
    job = api.add(status="failed", attempts=1, started_at="2026-01-15T10:00:01.000Z", finished_at="2026-01-15T10:00:05.000Z",
                  error={"code": "handler_error", "message": "boom"})
    api.runs[job["id"]] = [{"attempt": 1, "status": "failed", "started_at": job["started_at"],
                            "finished_at": job["finished_at"], "error": job["error"]}]
    api.open()
    reads = r"/jobs/[^/]+/runs"
    api.fail("GET", reads, **THROTTLED)
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator(".runs")).to_contain_text(re.compile(r"Too Many Requests.*read in 2 s"))
    page.clock.run_for(1000)
    api.settle()
    assert api.count("GET", reads) == 1
    page.clock.run_for(1500)
    api.settle()
    expect(detail.locator(".runs-table tr")).to_have_count(2)
    first, second = sent(page, "GET", reads)
    assert second >= first + 2000, (first, second)


def test_details_whose_attempts_failed_are_read_again_with_a_back_off_not_at_every_change(page, api):
    """A running job's details are open and reading its attempts fails (503) while the job moves
    at every poll. The details are read again no sooner than the poll's delay after a failure,
    doubling while it fails, instead of at every poll; once a read works they show."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.runs[job["id"]] = [{"attempt": 1, "status": "running", "started_at": job["started_at"],
                            "finished_at": None, "error": None}]
    api.open()
    reads = r"/jobs/[^/]+/runs"
    api.fail("GET", reads, times=4, status=503, json={"message": "Service Unavailable"})
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator(".runs")).to_contain_text("Could not load attempts")
    for second in range(40):
        api.update(job["id"], progress={**job["progress"], "percent": float(second)})
        page.clock.run_for(1000)
        api.settle()
    expect(detail.locator(".runs-table tr")).to_have_count(2)
    times = sent(page, "GET", reads)
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 5, times  # four failures, then the read that works
    assert gaps[0] >= 2000 and all(b >= 2 * a - 1000 for a, b in zip(gaps, gaps[1:])), gaps


def test_refresh_and_a_filter_pressed_while_the_listing_is_held_read_once_when_it_ends(page, api):
    """Within a listing's Retry-After, Refresh is pressed, then the status filter changed: the
    page says when the jobs will be read, sends nothing before, and then one listing, of the
    filter chosen last."""
    for _ in range(3):
        api.add(status="completed")
    failed = api.add(status="failed")
    throttled_at = listing_throttled_and_paused(page, api)
    lists = r"/jobs\?.*"
    page.get_by_role("button", name="Refresh").click()
    expect(page.get_by_role("status").filter(has_text=re.compile(r"jobs will be read in [12] s"))).to_be_visible()
    page.get_by_label("Status", exact=True).select_option("failed")
    api.settle()
    page.clock.run_for(throttled_at + 1900 - page.evaluate("Date.now()"))
    api.settle()
    assert len(sent(page, "GET", lists)) == 2  # the first listing and the throttled refresh
    page.clock.run_for(1000)
    api.settle()
    later = [p for _, m, p in page.evaluate(f"() => window[{SENT}]") if m == "GET" and re.fullmatch(lists, p)][2:]
    assert len(later) == 1 and "status=failed" in later[0], later
    assert sent(page, "GET", lists)[2] >= throttled_at + 2000
    expect(page.locator("tr.job")).to_have_count(1)
    expect(row(page, failed["id"])).to_be_visible()
    expect(page.get_by_role("status").filter(has_text="will be read")).to_have_count(0)


def test_load_more_pressed_while_the_listing_is_held_reads_the_next_page_once_when_it_ends(page, api):
    """Within a listing's Retry-After, Load more is pressed, twice: the page says when the jobs
    will be read, sends nothing before, and then reads the next page once."""
    for _ in range(30):
        api.add(status="completed")
    throttled_at = listing_throttled_and_paused(page, api)
    more = page.get_by_role("button", name=re.compile("Load more|Loading"))
    more.click()
    more.click(force=True)  # pressed again while it waits (marked busy)
    expect(page.get_by_role("status").filter(has_text=re.compile(r"jobs will be read in [12] s"))).to_be_visible()
    api.settle()
    pages = r"/jobs\?.*cursor=.*"
    page.clock.run_for(throttled_at + 1900 - page.evaluate("Date.now()"))
    api.settle()
    assert sent(page, "GET", pages) == []
    page.clock.run_for(1000)
    api.settle()
    assert len(sent(page, "GET", pages)) == 1 and sent(page, "GET", pages)[0] >= throttled_at + 2000
    expect(page.locator("tr.job")).to_have_count(30)
    expect(page.get_by_role("status").filter(has_text="will be read")).to_have_count(0)
