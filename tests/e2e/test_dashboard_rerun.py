"""Run again from the dashboard: offered for a finished job only, the new job shown first and
linked to its original, safe to press again after a lost answer, a refusal shown as the API says it.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import FakeApi, let_time_pass, paused_clock, row


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
    paused_clock(page)
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
    let_time_pass(api, 2, step_s=1)  # the poll that sees it end
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


def test_a_rerun_pressed_while_a_filters_listing_is_on_its_way_keeps_its_note(page, api):
    """The listing a filter change sends replaces the jobs shown, but a row it still shows is
    the same row: what the user just did there (its note) stays when that listing answers."""
    paused_clock(page)  # no list refresh comes due to take the filter's hold, however slow the machine
    old = finished(api, "failed")
    api.open()
    expect(page.locator("tr.job")).to_have_count(1)
    api.hold_next = "/jobs"
    page.get_by_label("Status", exact=True).select_option("failed")
    line = row(page, old["id"])
    run_again(line).click()
    api.settle()  # the rerun answered (the listing stays held): its job is made
    made = next(j for j in api.jobs.values() if j["rerun_of"] == old["id"])
    expect(line.locator(".note")).to_have_text(f"ran again as {made['id']}")
    api.release()
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    expect(line.locator(".note")).to_have_text(f"ran again as {made['id']}")
    expect(page.locator("tr.job")).to_have_count(1)  # queued: not among the failed
