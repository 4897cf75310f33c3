"""The dashboard's polls and refreshes: nothing asked from a hidden tab, one batch read of the
unfinished jobs (at most 4 at a time, never sent again before it answers), ETags and 304s,
requests left unanswered, jobs gone, and the token the reads are sent with.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import (
    OFFLINE_ORIGIN, batch_requests, five_pages_running, let_time_pass, paused_clock, row, set_hidden,
)


def test_a_hidden_tab_asks_the_api_nothing_until_it_is_shown_again(page, api):
    paused_clock(page)
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
    paused_clock(page)
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


@pytest.mark.parametrize("status, body", [
    (200, "<html>Sign in to the Wi-Fi</html>"),  # a captive portal's page in place of the API's JSON
    (401, "<html><h1>Access denied</h1></html>"),
    (403, "<html><h1>Access denied</h1></html>"),
    (502, "<html><h1>Bad gateway</h1></html>"),
])
def test_an_error_page_that_is_not_the_apis_says_so_and_the_polls_go_on(page, api, status, body):
    """A proxy, gateway or captive portal in front of the API answers with its own HTML page:
    what it says is not the API's. The banner says the answer did not come from the API, with
    its status, rather than "the API answered 403 Forbidden" (nor does a proxy's 401 ask for
    another token); the polls go on and the banner goes once the API answers again."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.fail("POST", "/jobs/status", status=status, content_type="text/html", body=body)
    let_time_pass(api, 3, step_s=1)
    alert = page.get_by_role("alert")
    expect(alert).to_have_text(re.compile(rf"^The answer to POST /jobs/status did not come from the API: {status}\b"
                                          r".*text/html, not JSON\. Retrying automatically\.$"))
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#live")).to_have_text("offline, retrying")
    polls = api.count("POST", "/jobs/status")
    let_time_pass(api, 10, step_s=2)
    assert api.count("POST", "/jobs/status") > polls
    expect(alert).to_be_hidden()


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
    job = api.add()
    page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={token[:40]}%0A%20%20{token[40:]}")
    expect(page.locator("#workspace")).to_be_visible()
    expect(page.locator("#identity")).to_have_text(re.compile("tenant acme"))
    expect(row(page, job["id"])).to_be_visible()  # the listing asked for and answered: a request made
    assert {headers["authorization"] for _, _, headers in api.requests} == {"Bearer " + token}


def test_answers_to_a_forgotten_token_show_nothing(page, api):
    paused_clock(page)
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


def test_a_link_with_another_tenants_token_asks_before_the_tab_changes_tenant(page, api):
    """A link someone sent, opened in a tab working for acme: the page asks, and sends nothing
    with the link's token unless told to switch (jobs submitted after would be that tenant's)."""
    ours, theirs = api.token(), api.token("globex")
    job = api.add()
    api.open(ours)
    expect(row(page, job["id"])).to_be_visible()

    def senders():
        return {headers["authorization"] for _, _, headers in api.requests}

    # Followed in the open tab (the fragment changes), then loaded afresh.
    for follow in (lambda: page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={theirs}"),
                   lambda: (page.evaluate(f"history.replaceState(null, '', '/dashboard#token={theirs}')"),
                            page.reload())):
        follow()
        panel = page.locator("#switch-panel")
        expect(panel).to_be_visible()
        expect(page.locator("#switch-reason")).to_have_text(re.compile("tenant globex.*tenant acme"))
        expect(page.locator("#workspace")).to_be_hidden()
        assert "token" not in page.url
        expect(page.get_by_role("button", name="Stay with tenant acme")).to_be_focused()
        page.get_by_role("button", name="Stay with tenant acme").click()
        expect(panel).to_be_hidden()
        expect(page.locator("#identity")).to_have_text(re.compile("tenant acme"))
        expect(row(page, job["id"])).to_be_visible()
        assert senders() == {"Bearer " + ours}

    kept = "() => sessionStorage.getItem('jobpipe.dashboard.token')"
    page.goto(f"{OFFLINE_ORIGIN}/dashboard#token={theirs}")
    expect(page.locator("#switch-panel")).to_be_visible()
    assert page.evaluate(kept) == ours  # the link's token kept nowhere until taken
    page.get_by_role("button", name="Switch to tenant globex").click()
    expect(page.locator("#switch-panel")).to_be_hidden()
    expect(page.locator("#identity")).to_have_text(re.compile("tenant globex"))
    expect(page.locator("#workspace")).to_be_visible()
    assert page.evaluate(kept) == theirs
    api.settle()
    assert "Bearer " + theirs in senders()


def test_re_reads_of_unchanged_jobs_send_their_etag_and_a_304_changes_nothing(page, api):
    """Each poll, and each refresh of the list, sends the ETag of the answer before it: while
    nothing it shows changed the API answers 304 with no body, and the page shows what it
    showed, touching nothing; a change is a 200 again and is shown."""
    paused_clock(page)
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
    paused_clock(page)
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


def test_a_poll_whose_batch_is_slow_is_not_sent_again_before_it_answers(page, api):
    """150 unfinished jobs shown are polled in two batches. One answered at once with a 500,
    the other slow (a stack under load: up to 30 s): the next poll waits until the slow one has
    answered, instead of sending both batches again on top of it every few seconds."""
    paused_clock(page)
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
    paused_clock(page)
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


def test_a_poll_sends_at_most_four_batches_at_a_time(page, api):
    """500 unfinished jobs shown are polled in 5 batches: at most 4 on their way at once, the
    fifth sent as one answers; the next poll only once all 5 have answered."""
    paused_clock(page)
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


def test_the_banner_stays_while_the_polls_fail_though_other_reads_are_answered(page, api):
    """The status polls fail (the API answers 503) while the listing's refreshes and the reads of
    attempts are answered: the page says it is offline, and keeps saying so between two failed
    polls, until a poll is answered again."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.settle()
    unavailable = {"status": 503, "json": {"error": {"code": "unavailable", "message": "status reads are down"}}}
    api.fail("POST", "/jobs/status", times=1000, **unavailable)
    banner = page.get_by_role("alert").filter(has_text="status reads are down")
    let_time_pass(api, 3, step_s=1)
    expect(banner).to_be_visible()
    refreshes, shown = api.count("GET", r"/jobs(\?.*)?"), []
    for _ in range(40):  # a step a second: any moment the banner went, between two polls, is seen
        let_time_pass(api, 1, step_s=1)
        shown.append(page.evaluate("() => [!document.getElementById('banner').hidden, document.getElementById('live').textContent]"))
    assert api.count("GET", r"/jobs(\?.*)?") >= refreshes + 3  # the listing was read and answered meanwhile
    assert all(visible and "offline" in live for visible, live in shown), shown
    api.failures.clear()
    let_time_pass(api, 20, step_s=1)
    expect(banner).to_be_hidden()
    expect(page.locator("#live")).to_have_text(re.compile("live"))


def test_a_job_a_poll_showed_short_is_drawn_whole_by_a_later_answer_at_its_version(page, api):
    """A poll whose jobs together would pass what one answer carries shows some of them short:
    the progress message cut to 2,048 characters, the payload as its placeholder, the children
    left out. A later answer at the same version that carries the job whole (the batch smaller,
    a listing) is drawn: the row and details show the message, payload and children whole."""
    paused_clock(page)
    message = "m" * 3000
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z", payload={"rows": 3})
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.settle()
    api.update(job["id"], children=["child-1", "child-2"],
               progress={"percent": 50.0, "step": "half", "message": message, "details": None, "updated_at": None})
    short = {**api.jobs[job["id"]], "children": [], "children_cut": 2, "payload": {"claim_check": {"bytes": 11}},
             "progress": {**api.jobs[job["id"]]["progress"], "message": message[:2047] + "…"}}
    api.fail("POST", "/jobs/status", json={"jobs": {job["id"]: short}, "job_ids": [job["id"]]})
    let_time_pass(api, 3, step_s=1)
    line = row(page, job["id"])
    expect(line.locator(".step")).to_have_text("half")
    let_time_pass(api, 12, step_s=1)  # the next polls answer the same version whole
    assert api.count("POST", "/jobs/status") >= 2
    expect(line.locator(".progress-message")).to_have_attribute("title", message)
    line.get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator("pre").first).to_have_text('{\n  "rows": 3\n}')
    expect(detail.locator("dl")).to_contain_text("2 spawned, each a job of its own")


def test_an_outage_is_announced_once_not_at_every_retry(page, api):
    """The banner is an alert: a screen reader reads it out whenever what it holds is written.
    Through an outage the polls and refreshes fail again and again with the same message: the
    banner says it once and is not written again at each retry (read out every few seconds for
    as long as the outage lasts), and says the next message when there is one."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    api.settle()
    page.evaluate("""() => {
        const writes = window[Symbol.for("banner writes")] = [];
        new MutationObserver(() => writes.push(document.getElementById("banner").textContent))
            .observe(document.getElementById("banner"), {childList: true, subtree: true, characterData: true});
    }""")
    unavailable = {"status": 503, "json": {"error": {"code": "unavailable", "message": "the API is down"}}}
    api.fail("POST", "/jobs/status", times=1000, **unavailable)
    api.fail("GET", "/jobs", times=1000, **unavailable)
    let_time_pass(api, 60, step_s=1)
    assert api.count("POST", "/jobs/status") + api.count("GET", r"/jobs\?.*") >= 10  # retried all along
    writes = page.evaluate('() => window[Symbol.for("banner writes")]')
    assert writes == ["the API is down Retrying automatically."], writes
    expect(page.get_by_role("alert")).to_have_text(re.compile("the API is down"))
    api.failures.clear()
    let_time_pass(api, 20, step_s=1)
    expect(page.get_by_role("alert")).to_be_hidden()


def test_a_poll_the_api_refuses_says_the_page_is_not_updating_until_one_is_answered(page, api):
    """A poll refused with a 4xx (a 403 from a gateway's policy, a 400) showed its banner while
    the indicator beside it still said "live · updated …", its time moving with every other read
    answered: the rows were no longer being updated. It says "not updating" until a poll is
    answered again."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    expect(page.locator("#live")).to_have_text(re.compile("^live"))
    api.fail("POST", "/jobs/status", times=1000, status=403,
             json={"error": {"code": "forbidden", "message": "not allowed by policy"}})
    let_time_pass(api, 30, step_s=1)
    expect(page.get_by_role("alert")).to_have_text(re.compile("Could not poll job status: not allowed by policy"))
    expect(page.locator("#live")).to_have_text("not updating")
    api.failures.clear()
    let_time_pass(api, 30, step_s=1)
    expect(page.get_by_role("alert")).to_be_hidden()
    expect(page.locator("#live")).to_have_text(re.compile("^live"))
