"""Submit and Cancel from the dashboard: a lost answer safe to press again, a refusal said with
the field at fault, numbers the browser cannot hold refused before sending, a cancel the job
outran, and the keyboard keeping its place.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import OFFLINE_ORIGIN, let_time_pass, paused_clock, row
from tests.support.waiting import eventually


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


def test_a_payload_begun_while_the_job_types_are_read_is_kept_whole(page, api):
    """The form fills an empty payload with the type's example once the job types are read. The
    user who is already in that empty box, about to write their own, keeps what they type: the
    example landing under the cursor first made it `{}{"steps": 3}`, refused as not JSON."""
    api.hold_next = "/job-types"
    api.open()
    payload = page.get_by_label("Payload (JSON)")
    payload.click()
    api.release()
    expect(page.locator("#job-type-description")).to_contain_text("attempts")
    expect(payload).to_have_value("")
    page.keyboard.type('{"steps": 3}')
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text(re.compile("^Submitted demo.steps job"))
    assert [job["payload"] for job in api.jobs.values()] == [{"steps": 3}]
    # Out of the box, it is the form's to fill again: another type puts that type's example.
    payload.fill("")
    page.get_by_label("Job type").focus()
    page.get_by_label("Job type").select_option(index=1)
    expect(payload).not_to_have_value("")


@pytest.mark.parametrize("answer", ["lost", "given"])
@pytest.mark.parametrize("how", ["Forget token", "a link's token, switched to"])
def test_another_token_leaves_nothing_the_form_said_of_the_last_ones_submits(page, api, how, answer):
    """The form names the job a submit made, or offers to press again for one whose answer was
    lost. Another token may be another tenant's: neither stays once the page works for it, and
    a submit then is the new token's own, under a key of its own."""
    api.open()
    status = page.locator("#submit-status")
    if answer == "lost":
        api.fail("POST", "/jobs", lose_answer="connectionreset")
    page.get_by_label("Payload (JSON)").fill('{"steps": 3}')
    page.get_by_role("button", name="Submit job").click()
    expect(status).to_have_text(re.compile("may have been accepted" if answer == "lost" else "^Submitted demo.steps job"))
    if how == "Forget token":
        page.get_by_role("button", name="Forget token").click()
        page.get_by_label("Bearer token").fill(api.token("globex"))
        page.get_by_role("button", name="Use token").click()
    else:
        page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={api.token('globex')}")
        page.get_by_role("button", name="Switch to tenant globex").click()
    expect(page.locator("#identity")).to_have_text(re.compile("tenant globex"))
    expect(status).to_have_text("")
    assert status.get_attribute("data-job-id") is None
    page.get_by_role("button", name="Submit job").click()
    expect(status).to_have_text(re.compile("^Submitted demo.steps job"))
    keys = [headers.get("idempotency-key") for method, path, headers in api.requests if (method, path) == ("POST", "/jobs")]
    assert len(keys) == 2 and keys[0] != keys[1], keys


def test_a_job_that_finished_before_its_cancel_took_effect_says_so(page, api):
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    line = row(page, job["id"])
    line.get_by_role("button", name=re.compile("Cancel")).click()
    expect(line.locator(".note")).to_have_text("cancel requested")
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_disabled()
    api.update(job["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**job["progress"], "percent": 100.0})
    let_time_pass(api, 2, step_s=1)  # the poll the cancel asked for
    expect(line).to_have_attribute("data-status", "completed")
    expect(line.locator(".note")).to_have_text("cancel requested, but it completed first")
    expect(line.get_by_role("button", name=re.compile("Cancel"))).to_be_hidden()


def test_a_refused_cancel_whose_status_read_fails_says_so_and_is_retried(page, api):
    """A Cancel refused 409 (the job finished meanwhile) reads the job's status to show how it
    ended; that read failing is shown like every other failed request (the banner), and the
    read is retried on the polls' schedule until the row shows the job's final state."""
    paused_clock(page)
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
    let_time_pass(api, 4, step_s=1)  # the poll after a failed one: twice the 2 s delay
    expect(line).to_have_attribute("data-status", "completed")
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(line.locator(".note")).to_have_text(re.compile("already completed"))


CANCEL_FAILURES = [  # (what the DELETE got, the note beside the job)
    ({"status": 503, "json": {"error": {"code": "store_unavailable", "message": "store down"}}},
     "No usable answer to the cancel (store down). It may have been canceled: press Cancel again to make sure."),
    ({"lose_answer": "connectionreset"}, re.compile(r"^No usable answer to the cancel \(.*\)\. It may have been canceled")),
    ({"status": 403, "content_type": "text/html", "body": "<html><h1>403 Forbidden</h1>blocked by policy</html>"},
     re.compile(r"^No usable answer to the cancel \(The answer to DELETE /jobs/job-0001 did not come from the API: "
                r"403( Forbidden)?, text/html, not JSON\.\)\. It may have been canceled")),
    ({"status": 429, "headers": {"Retry-After": "20"}, "json": {"message": "Too Many Requests"}},
     "Not canceled: the API is throttling requests (Too Many Requests). Press Cancel again in 20 s."),
    ({"status": 409, "json": {"error": {"code": "conflict", "message": "job job-0001 kept changing; try again"}}},
     "Not canceled: job job-0001 kept changing; try again"),
]


@pytest.mark.parametrize("failure, said", CANCEL_FAILURES, ids=["5xx", "lost", "proxy-page", "throttled", "conflict"])
def test_a_cancel_that_failed_says_so_beside_the_job_and_can_be_pressed_again(page, api, failure, said):
    """A cancel with no usable answer, throttled, or refused 409 `conflict` (the job kept
    changing) left an empty note and a banner saying "Retrying automatically", though the cancel
    is never sent again unasked; the 409 kept Cancel disabled until the job ended."""
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    line = row(page, job["id"])
    cancel = line.get_by_role("button", name=re.compile("Cancel"))
    api.fail("DELETE", f"/jobs/{job['id']}", **failure)
    cancel.click()
    expect(line.locator(".note")).to_have_text(said)
    expect(page.get_by_role("alert")).to_be_hidden()  # the row's own answer: no banner
    expect(cancel).not_to_have_attribute("aria-disabled", "true")
    assert api.count("DELETE", f"/jobs/{job['id']}") == 1  # never sent again unasked
    cancel.click()
    expect(line.locator(".note")).to_have_text(re.compile("^cancel requested$|^canceled$"))
    assert api.count("DELETE", f"/jobs/{job['id']}") == 2


def test_the_keyboard_keeps_its_place_through_submit_load_more_and_cancel(page, api):
    """A button pressed from the keyboard keeps the focus while its request is on its way (a
    disabled button drops it to the page's start), so Enter again loads the next page or
    submits another job, and a press while one is on its way sends nothing more; a Cancel that
    goes away hands the focus to its job's details. Ctrl+Enter in the payload submits."""
    paused_clock(page)  # no list refresh comes due to take the submit's hold, however slow the machine
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
    (413, {"code": "payload_too_large", "message": "request body is 6,000,044 bytes; the limit is 5,242,880 bytes",
           "details": {"limit": 5242880}},
     "request body is 6,000,044 bytes; the limit is 5,242,880 bytes (payload_too_large)", "Payload (JSON)"),
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
    paused_clock(page)
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


def test_a_job_canceled_out_of_the_status_filter_hands_the_focus_to_the_next_job(page, api):
    """An operator works down the queued jobs from the keyboard, the status filter on `queued`:
    a job canceled leaves that view, its row with it. The focus goes to the next job's details
    (the one before, for the last job), not to the page's start, so the next Tab does not begin
    again from the top; and never to a Cancel, which a second Enter would press."""
    paused_clock(page)
    oldest, middle, newest = api.add(status="queued"), api.add(status="queued"), api.add(status="queued")
    api.open()
    page.get_by_label("Status", exact=True).select_option("queued")
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    for canceled, focused in ((middle, oldest), (oldest, newest)):
        cancel = row(page, canceled["id"]).get_by_role("button", name=re.compile("Cancel"))
        cancel.focus()
        page.keyboard.press("Enter")
        expect(row(page, canceled["id"])).to_have_count(0)
        expect(row(page, focused["id"]).get_by_role("button", name=re.compile("Details"))).to_be_focused()
    assert api.jobs[middle["id"]]["status"] == api.jobs[oldest["id"]]["status"] == "canceled"


def test_a_submit_while_the_job_types_could_not_be_read_says_so_and_reads_them_again(page, api):
    """GET /job-types failing (a 503, no answer) left the form saying "the job types are still
    being read" at every Submit, though nothing was being read: the page asked again only after
    a listing refresh. It says the read failed and reads them again at once."""
    paused_clock(page)
    # Refused at the page's start and at the read again its first listing makes.
    api.fail("GET", "/job-types", times=2, status=503, json={"error": {"code": "unavailable", "message": "try later"}})
    api.open()
    expect(page.get_by_label("Job type")).to_have_value("")
    # A Submit while the second refused read is still on its way (a loaded machine answers it
    # late) rightly says "still being read", and sends no read; the first once it has ended says
    # the read failed.
    status = page.locator("#submit-status")

    def submitted() -> str:
        page.get_by_role("button", name="Submit job").click()
        return status.inner_text()

    eventually(submitted, lambda said: "still being read" not in said, timeout_s=20, every_s=0.2,
               what="a Submit once the refused reads ended", sleep=lambda s: page.wait_for_timeout(s * 1000))
    expect(status).to_have_text(
        re.compile(r"^Not submitted: the job types could not be read \(.+\); they are being read again\.$"))
    expect(page.get_by_label("Job type")).to_have_value("demo.steps")  # read again, answered this time
    assert api.count("GET", "/job-types") == 3 and api.count("POST", "/jobs") == 0
    page.get_by_role("button", name="Submit job").click()
    expect(page.locator("#submit-status")).to_have_text(re.compile("Submitted demo.steps job"))
