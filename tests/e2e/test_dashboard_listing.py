"""The dashboard's listing of jobs: filters, Load more and Refresh, the counts of a listing with
more pages, a bounded list on a page left open, and listings on their way or failed.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import JOB_TYPES, OFFLINE_ORIGIN, let_time_pass, listing, paused_clock, row


def test_load_more_is_gone_while_another_listing_is_on_its_way(page, api):
    paused_clock(page)  # no list refresh comes due to take the filter's hold, however slow the machine
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


def two_running_and_a_completed(page, api) -> tuple[dict, dict]:
    """The page open on the paused clock (its time moves only by let_time_pass, however busy
    the machine) over two running jobs, the one that will leave and one that stays, and a
    completed one."""
    paused_clock(page)
    started = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z"}
    leaving, staying = api.add(status="running", **started), api.add(status="running", **started)
    api.add(status="completed", **started, finished_at="2026-01-15T10:00:05.000Z")
    api.open()
    expect(page.locator("tr.job")).to_have_count(3)
    return leaving, staying


def complete_while_a_listing_is_held(page, api, leaving: dict) -> None:
    """`leaving` completes; the polls of the rows shown see it go from the `running` view."""
    api.update(leaving["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z",
               progress={**leaving["progress"], "percent": 100.0})
    let_time_pass(api, 12, step_s=1)
    expect(row(page, leaving["id"])).to_have_count(0)


def release_with_the_job_as_it_was(api, leaving: dict) -> None:
    """The held listing answered as it was read, before `leaving` completed: running, at
    version 1; the job completed again for every later read."""
    api.jobs[leaving["id"]] = {**api.jobs[leaving["id"]], "status": "running", "version": 1}
    api.release()
    api.jobs[leaving["id"]].update(status="completed", version=2)
    api.settle()


def test_a_job_that_leaves_the_status_filter_leaves_the_view(page, api):
    """Viewing `running`, a job that completes (or is canceled) goes from the view at the poll
    that sees it, not when the filter next changes; a list answer older than that poll does
    not bring it back."""
    leaving, staying = two_running_and_a_completed(page, api)
    page.get_by_label("Status", exact=True).select_option("running")
    expect(page.locator("tr.job")).to_have_count(2)  # at the change, before its listing answers
    api.settle()  # that listing answered: it is not the one held next
    # The next list refresh is answered as it was before the job completed.
    api.hold_next = "/jobs"
    let_time_pass(api, 10, step_s=1)
    assert api.held and "if-none-match" in api.held[0].request.headers  # the refresh
    complete_while_a_listing_is_held(page, api, leaving)
    expect(page.locator(f'#detail-{leaving["id"]}')).to_have_count(0)
    expect(row(page, staying["id"])).to_have_attribute("data-status", "running")
    expect(page.locator("#summary .status-running .chip-count")).to_have_text("1")
    expect(page.locator("#summary .status-completed .chip-count")).to_have_text("0")
    # Another job moved on: the held list is a new page for the page to merge, not a 304.
    api.update(staying["id"], progress={**staying["progress"], "percent": 40.0})
    release_with_the_job_as_it_was(api, leaving)
    assert row(page, leaving["id"]).count() == 0  # at once: a later poll would hide it again
    api.update(staying["id"], status="canceled", cancel_requested=True)
    let_time_pass(api, 12, step_s=1)
    expect(page.locator("tr.job")).to_have_count(0)
    expect(page.get_by_text("No running jobs.")).to_be_visible()


@pytest.mark.parametrize("listing", ["status filter", "Refresh"])
def test_a_listing_asked_before_a_job_left_the_view_does_not_bring_it_back(page, api, listing):
    """A listing that replaces the jobs shown (a status filter chosen, Refresh) is slow; the
    rows it will replace are polled meanwhile, and one poll sees a job leave the `running`
    view. The listing then answers with the job as it was before: it stays gone. Choosing the
    status it left for shows it at once, at that very version."""
    leaving, staying = two_running_and_a_completed(page, api)
    status = page.get_by_label("Status", exact=True)
    if listing == "Refresh":
        status.select_option("running")
        api.settle()
        api.hold_next = "/jobs"
        page.get_by_role("button", name="Refresh").click()
    else:
        api.hold_next = "/jobs"
        status.select_option("running")
    api.settle()
    assert api.held and "if-none-match" not in api.held[0].request.headers  # the replacing listing
    expect(page.locator("#jobs-table")).to_have_attribute("aria-busy", "true")
    complete_while_a_listing_is_held(page, api, leaving)
    release_with_the_job_as_it_was(api, leaving)
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    assert row(page, leaving["id"]).count() == 0  # at once: a later poll would hide it again
    expect(row(page, staying["id"])).to_have_attribute("data-status", "running")
    expect(page.locator("#summary .status-running .chip-count")).to_have_text("1")
    status.select_option("completed")
    api.settle()
    expect(row(page, leaving["id"])).to_have_attribute("data-status", "completed")
    expect(page.locator("tr.job")).to_have_count(2)


def test_a_later_page_does_not_bring_back_a_job_that_left_the_view(page, api):
    """Viewing `running` over two pages, a job of the second leaves the view (a poll saw it
    complete) and Refresh starts the listing over from its first page. "Load more" then
    answers with the job as it was before (an index that lags the job): it stays gone, as it
    does when the first page shows it so."""
    paused_clock(page)
    started = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z"}
    leaving = api.add(status="running", **started)  # the oldest: on the second page
    for _ in range(30):
        api.add(status="running", **started)
    api.open()
    page.get_by_label("Status", exact=True).select_option("running")
    expect(page.locator("tr.job")).to_have_count(25)
    more = page.get_by_role("button", name="Load more")
    more.click()
    expect(row(page, leaving["id"])).to_have_attribute("data-status", "running")
    api.update(leaving["id"], status="completed", finished_at="2026-01-15T10:00:09.000Z")
    let_time_pass(api, 3, step_s=1)
    expect(row(page, leaving["id"])).to_have_count(0)
    page.get_by_role("button", name="Refresh").click()
    api.settle()
    expect(page.locator("tr.job")).to_have_count(25)
    api.hold_next = "/jobs"
    more.click()
    release_with_the_job_as_it_was(api, leaving)
    expect(page.locator("tr.job")).to_have_count(30)
    assert row(page, leaving["id"]).count() == 0  # at once: a later poll would hide it again


def shown_ids(page: Page) -> list[str]:
    return page.locator("tr.job").evaluate_all("rows => rows.map(r => r.dataset.jobId)")


def test_more_new_jobs_than_a_page_leave_no_gap_in_the_list(page, api):
    """More jobs made between two refreshes than one page holds: the newest page no longer
    reaches the jobs shown, so the page starts over from it instead of showing it above the old
    rows with the jobs in between missing (and "Load more" paging on below the old ones)."""
    paused_clock(page)
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


@pytest.mark.parametrize("loaded", ["every page", "two of three pages", "the first page"])
def test_a_job_that_comes_to_match_the_status_filter_past_the_first_page_shows_without_refresh(page, api, loaded):
    """Viewing `running` over more than one page, old jobs (created before the jobs shown around
    them) start running. The refreshes show those among the pages loaded in their place, and
    leave those past them to "Load more", which is offered for them, the last page loaded too:
    never a view that passes for complete without them until Refresh. Nor do the refreshes page
    on by themselves: the rows shown are those of the pages loaded, and those that came to match."""
    paused_clock(page)
    started = {"attempts": 1, "started_at": "2026-01-15T10:00:00.000Z"}
    late = api.add(status="queued")  # the oldest: past every page of running jobs
    middle = None
    for n in range(60 if loaded == "two of three pages" else 30):
        api.add(status="running", **started)
        if n == 2:
            middle = api.add(status="queued")  # within the last page of running jobs
    api.open()
    page.get_by_label("Status", exact=True).select_option("running")
    expect(page.locator("tr.job")).to_have_count(25)
    more = page.get_by_role("button", name="Load more")
    if loaded != "the first page":
        more.click()
        expect(page.locator("tr.job")).to_have_count(30 if loaded == "every page" else 50)
    if loaded == "two of three pages":
        middle = api.add(status="queued", created_at=api.jobs[shown_ids(page)[40]]["created_at"])
    api.settle()
    shown = len(shown_ids(page))
    api.update(middle["id"], status="running", **started)
    api.update(late["id"], status="running", **started)
    let_time_pass(api, 60, step_s=1)
    running = [i for i in listing(api) if api.jobs[i]["status"] == "running"]
    if loaded == "the first page":
        assert len(shown_ids(page)) == shown
    elif loaded == "two of three pages":
        expect(row(page, middle["id"])).to_be_visible()
        assert shown_ids(page) == running[:shown + 1]
    else:
        expect(row(page, late["id"])).to_be_visible()
        assert shown_ids(page) == running
    expect(more).to_be_visible(visible=loaded != "every page")
    while more.is_visible():
        more.click()
        api.settle()
    assert shown_ids(page) == running


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
    paused_clock(page)
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


def test_the_type_filter_offers_the_types_shown_and_keeps_the_one_chosen(page, api):
    """A type deployed while the page is open (or one /job-types does not list) is offered by
    the type filter, and by the form, once a job of it shows up; a chosen type that no longer
    has jobs or a registration stays chosen, and the empty view says what it filters and
    offers to show every job, instead of an empty list under a filter reading "all"."""
    paused_clock(page)
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


def test_a_listing_on_its_way_says_so_instead_of_showing_no_jobs(page, api):
    """On a slow stack the first listing (or a new filter's) takes seconds: until it answers
    the page says it is loading, and the rows of the filter left are marked busy, instead of
    an empty table (or rows of another filter) passing for the answer."""
    paused_clock(page)  # no list refresh comes due to take a filter's hold, however slow the machine
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


def test_refresh_pressed_again_while_its_listing_is_on_its_way_sends_nothing_more(page, api):
    """On a slow stack an operator presses Refresh again and again: one listing goes, not one
    per press (each a full read, on a stack already slow or throttling); once it has answered,
    or failed, Refresh reads again."""
    paused_clock(page)  # no refresh comes due between the presses, however slow the machine
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


def test_refresh_keeps_the_rows_it_still_shows_with_their_details_open(page, api):
    """Refresh reads the listing afresh, but a job it still shows keeps its row: details the
    user opened stay open (and focus stays where it was); a job the listing no longer has goes."""
    kept, other = api.add(status="running", attempts=1), api.add(status="queued")
    api.open()
    details = row(page, kept["id"]).get_by_role("button", name=re.compile("Details"))
    details.click()
    expect(details).to_have_attribute("aria-expanded", "true")
    del api.jobs[other["id"]]
    page.get_by_role("button", name="Refresh").click()
    expect(page.locator("tr.job")).to_have_count(1)
    expect(page.locator("#jobs-table")).not_to_have_attribute("aria-busy", "true")
    expect(details).to_have_attribute("aria-expanded", "true")
    expect(page.locator(f"#detail-{kept['id']}")).to_be_visible()
