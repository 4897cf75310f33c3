"""The dashboard's reads of a job's attempts (GET /jobs/{id}/runs): a waiting or running job's
duration from its attempts, at most 4 reads at a time with opened details first, one read shared
by a row and its details, and failed or throttled reads said and read again.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import (
    THROTTLED, FakeApi, iso, let_time_pass, listing, paused_clock, row, sent, set_hidden,
)
from tests.support.waiting import eventually


def test_a_job_waiting_for_its_next_attempt_shows_the_last_ones_duration_not_a_clock(page, api):
    """A retrying job (or one queued again) has started once, but nothing runs while it waits:
    its duration is its last attempt's, fixed, and its status says when it runs next; a
    duration ticks again only once the next attempt runs."""
    now = datetime(2026, 1, 16, 12, 0, 0, tzinfo=timezone.utc)
    paused_clock(page, at=now)
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
    expect(waiting.locator(".schedule")).to_have_text("next attempt in 45 s")
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
    now = datetime(2026, 1, 16, 12, 0, 0, tzinfo=timezone.utc)
    paused_clock(page, at=now)
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


def test_reads_of_attempts_queued_behind_a_throttle_wait_while_the_tab_is_hidden(page, api):
    """The reads of attempts are held by a throttle's Retry-After when the tab goes to the
    background: none goes out from the hidden tab once the Retry-After has passed, nor while it
    stays hidden; shown again, the queue goes on."""
    paused_clock(page)
    api.fail("GET", RUNS, **THROTTLED)
    reads = forty_waiting_their_reads_held(page, api)
    api.holding = None
    api.release()
    api.settle()
    asked = api.count("GET", reads)
    set_hidden(page, True)
    let_time_pass(api, 60, step_s=1)
    assert api.count("GET", reads) == asked
    set_hidden(page, False)
    let_time_pass(api, 3, step_s=1)
    assert api.count("GET", reads) > asked


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
    runs_of = lambda job: api.count("GET", f"/jobs/{job['id']}/runs")
    # The row reads once it is on screen (an IntersectionObserver's callback, which a loaded
    # machine may run after the page's first requests are answered): waited for, not assumed.
    eventually(lambda: runs_of(waiting), lambda count: count >= 1, timeout_s=20, every_s=0.01,
               sleep=lambda s: page.wait_for_timeout(s * 1000), what="the row's read of its attempts")
    api.settle()
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
    paused_clock(page)
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
