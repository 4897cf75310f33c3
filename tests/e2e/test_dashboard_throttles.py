"""The dashboard throttled (429 with Retry-After): its polls, listings, Refresh, filters and Load
more send nothing before the Retry-After is over, and catch up once it is.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import (
    SENT, THROTTLED, FakeApi, five_pages_running, let_time_pass, paused_clock, row, sent,
    set_hidden,
)


def test_a_throttled_page_waits_as_asked_and_keeps_refreshing(page, api):
    paused_clock(page)
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


def test_a_throttled_poll_waits_out_its_retry_after_whatever_else_happens(page, api):
    """A poll answered 429 with Retry-After: 40 is not sent again sooner, even when a list
    refresh meanwhile brings a new job (which would otherwise poll it at once)."""
    paused_clock(page)
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


def test_a_retry_after_date_is_read_by_the_apis_clock_not_the_browsers(page, api):
    """A Retry-After given as a date is a time on the API's clock: a browser whose clock is
    minutes behind waits out those seconds, not minutes more (nor, minutes ahead, none)."""
    from datetime import datetime, timedelta, timezone
    from email.utils import format_datetime

    server_now = datetime(2026, 1, 16, 12, 0, tzinfo=timezone.utc)
    paused_clock(page, at=server_now - timedelta(minutes=7))
    api.clock_skew = timedelta(minutes=7)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    until = format_datetime(server_now + timedelta(seconds=20), usegmt=True)
    api.fail("POST", "/jobs/status", status=429, headers={"Retry-After": until}, json={"message": "Too Many Requests"})
    let_time_pass(api, 3, step_s=1)
    expect(page.get_by_role("alert").filter(has_text="Too Many Requests")).to_be_visible()
    polls = api.count("POST", "/jobs/status")
    let_time_pass(api, 14, step_s=1)
    assert api.count("POST", "/jobs/status") == polls  # not before the date
    let_time_pass(api, 8, step_s=1)
    assert api.count("POST", "/jobs/status") > polls  # seconds after it, not 7 minutes


# API Gateway's own throttle (a function at its concurrency ceiling) answers 429 without a
# Retry-After: the page holds its polls POLL_MIN_MS (2 s) then, as for Retry-After: 2.
WITHOUT_RETRY_AFTER = {"status": 429, "json": {"message": "Too Many Requests"}}


@pytest.mark.parametrize("throttle", [THROTTLED, WITHOUT_RETRY_AFTER], ids=["retry-after", "no-retry-after"])
def test_a_poll_throttled_sends_none_of_its_batches_still_waiting(page, api, throttle):
    """Of a poll's 5 batches, the first is answered 429 (Retry-After: 2, or none) while 3 are on
    their way: the fifth is not sent when the 429 frees its place, and no batch goes out for 2 s."""
    paused_clock(page)
    five_pages_running(page, api)
    polls = api.count("POST", "/jobs/status")
    api.fail("POST", "/jobs/status", **throttle)
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
    # Its text counts down; its name, read out as it changes while it has the focus, does not.
    waiting = page.get_by_role("button", name="Loading more jobs once the throttle ends", exact=True)
    expect(waiting).to_have_text(re.compile(r"Loading in [12] s…"))
    page.clock.run_for(1000)
    expect(waiting).to_have_text("Loading in 1 s…")
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
    expect(page.locator("#load-more")).not_to_have_attribute("aria-label", re.compile("."))


def test_the_wait_for_a_held_listing_is_read_out_once_not_at_each_second(page, api):
    """While a throttle holds the listings, the note under the filters counts down the seconds
    to the next read. It is a status, which a screen reader reads out at each change: it reads
    out when the jobs will be read once, and the countdown shown beside it, second by second,
    is not read out again at every second of a Retry-After that may last minutes."""
    paused_clock(page)
    api.open()
    api.settle()
    api.fail("GET", "/jobs", status=429, headers={"Retry-After": "30"}, json={"message": "Too Many Requests"})
    page.clock.run_for(10_000)
    api.settle()
    page.get_by_role("button", name="Refresh").click()
    note = page.get_by_role("status").filter(has_text=re.compile(r"jobs will be read in 30 s"))
    expect(note).to_be_visible()
    read_out = """note => {
        const told = note.cloneNode(true);
        told.querySelectorAll('[aria-hidden="true"]').forEach(part => part.remove());
        return told.textContent;
    }"""
    assert note.evaluate(read_out) == "The API is throttling requests: the jobs will be read in 30 s."
    note.evaluate("""note => {
        const writes = window[Symbol.for("read out")] = [];
        new MutationObserver(records => records.forEach(record => {
            const at = record.target.nodeType === Node.ELEMENT_NODE ? record.target : record.target.parentElement;
            if (!at.closest('[aria-hidden="true"]')) writes.push(note.textContent);
        })).observe(note, {childList: true, subtree: true, characterData: true});
    }""")
    for _ in range(20):
        page.clock.run_for(1_000)
        api.settle()
    expect(page.locator("#list-wait")).to_have_text(re.compile(r"read in 10 s\.$"))
    assert page.evaluate('() => window[Symbol.for("read out")]') == []
