"""The dashboard against the deployed stack (the `stack` fixture: an emulator and a deploy),
each test with a tenant of its own, so what the page shows is exactly what that test made.
"""
from __future__ import annotations

import json
import re
import secrets

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard_pages import browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import batch_requests, row


JOB_WAIT_MS = 90_000  # a job's whole life on the emulator, cold starts included
LONG_JOB = {"type": "demo.steps", "payload": {"steps": 120, "step_ms": 250}}  # 30 s unless canceled


@pytest.fixture
def tenant() -> str:
    return "dash-" + secrets.token_hex(4)


def open_dashboard(page: Page, stack, tenant: str) -> None:
    page.goto(f"{stack.api_url}/dashboard#token={stack.token(tenant)}")
    expect(page.locator("#workspace")).to_be_visible()


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
