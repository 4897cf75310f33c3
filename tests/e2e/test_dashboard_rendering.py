"""The dashboard's rows and details as text: what the API answers shown as text and never
reordering the page's own words, long texts kept in shape, times in the browser's zone gaining
their date at midnight, and the page's scripts keeping their names to themselves.
"""
from __future__ import annotations

import re

import pytest

from playwright.sync_api import expect

from tests.e2e.dashboard_pages import api, browser, page  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import JOB_TYPES, OFFLINE_ORIGIN, FakeApi, iso, paused_clock, row


def test_scheduled_and_retrying_jobs_say_when_they_start(page, api):
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 16, 12, 0, tzinfo=timezone.utc)
    paused_clock(page, at=now)  # the countdowns are read at `now`, however long the page takes to open
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
    expect(row(page, retry["id"]).locator(".schedule")).to_have_text("next attempt in 45 s")
    expect(row(page, retry["id"]).locator(".error-code")).to_have_text("handler_error")
    expect(row(page, due["id"]).locator(".schedule")).to_have_text("")


def test_durations_and_countdowns_near_a_minute_are_written_in_minutes(page, api):
    """A duration is written in tenths of a second under a minute and in whole seconds past it: one
    that rounds to 60.0 s is "1 m 00 s"; a countdown rounds up and says the same of 59.5 s."""
    from datetime import datetime, timedelta, timezone

    now = datetime(2026, 1, 16, 12, 0, tzinfo=timezone.utc)
    paused_clock(page, at=now)
    start = now - timedelta(minutes=10)

    def finished_after(seconds):
        end = (start + timedelta(seconds=seconds)).isoformat(timespec="milliseconds").replace("+00:00", "Z")
        return api.add(status="completed", attempts=1, started_at=iso(start), finished_at=end)

    shown = {finished_after(59.94)["id"]: "59.9 s", finished_after(59.96)["id"]: "1 m 00 s",
             finished_after(60.0)["id"]: "1 m 00 s", finished_after(119.999)["id"]: "1 m 59 s"}
    retry = api.add(status="retrying", attempts=1, started_at=iso(now - timedelta(seconds=20)),
                    not_before=(now + timedelta(seconds=59.5)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                    error={"code": "handler_error", "message": "boom"})
    api.open()
    for job_id, text in shown.items():
        expect(row(page, job_id).locator(".duration")).to_have_text(text)
    expect(row(page, retry["id"]).locator(".schedule")).to_have_text("next attempt in 1 m 00 s")


@pytest.mark.parametrize("browser_off", [-7, 7], ids=["browser behind", "browser ahead"])
def test_durations_and_countdowns_are_counted_by_the_apis_clock(page, api, browser_off):
    """A laptop whose clock is minutes off: a running job's duration and a scheduled job's
    countdown are counted by the API's clock (its answers' `Date`), not the browser's, so
    neither reads minutes too long, nor nothing, nor a negative time; and the correction stays
    put as the page polls on."""
    from datetime import datetime, timedelta, timezone

    server_now = datetime(2026, 1, 16, 12, 0, tzinfo=timezone.utc)
    paused_clock(page, at=server_now + timedelta(minutes=browser_off))
    api.clock_skew = timedelta(minutes=-browser_off)
    running = api.add(status="running", attempts=1, started_at=iso(server_now - timedelta(seconds=20)),
                      attempt_started_at=iso(server_now - timedelta(seconds=20)))
    later = api.add(status="queued", not_before=iso(server_now + timedelta(minutes=3)))
    api.open()
    api.settle()
    duration = row(page, running["id"]).locator(".duration")
    expect(duration).to_have_text(re.compile(r"^2\d\.\d s …$"))
    expect(row(page, later["id"]).locator(".schedule")).to_have_text(re.compile(r"^starts in (3 m 00|2 m 59) s$"))
    shown = duration.inner_text()
    api.hold_next = "/jobs/status"  # a slow answer: its Date was written 3 s after the poll went
    for _ in range(3):
        page.clock.run_for(1000)
        api.settle()
    api.release()
    for _ in range(27):
        page.clock.run_for(1000)
        api.settle()
        assert not duration.inner_text().startswith("-")
    expect(duration).to_have_text(f"{float(shown.split()[0]) + 30:.1f} s …")  # the API's 30 s, not a jump
    # The time the page says it was last updated is the API's too, as the jobs' times are.
    expect(page.locator("#live")).to_have_text(re.compile(r"^live · updated \d\d:00:\d\d$"))
    expect(row(page, later["id"]).locator(".schedule")).to_have_text(re.compile(r"^starts in 2 m (30|29) s$"))


def test_times_shown_before_midnight_gain_their_date_after_it(browser):
    from datetime import datetime, timezone

    context = browser.new_context(timezone_id="America/New_York")
    page = context.new_page()
    api = FakeApi(page)
    paused_clock(page, at=datetime(2026, 1, 16, 4, 59, 40, tzinfo=timezone.utc))  # 23:59:40 in New York
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
    paused_clock(page, at=datetime(2026, 1, 16, 4, 59, 40, tzinfo=timezone.utc))  # 23:59:40 in New York
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
    expect(page.locator(note)).to_contain_text("Not canceled")
    assert page.evaluate(LEFT_OF, [note, "canceled", "refused"])
    assert page.evaluate(LEFT_OF, [note, "send", "another"])


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


def test_a_payload_or_result_kept_in_s3_is_shown_on_demand_not_as_its_claim_check(page, api):
    """Listings and polls carry a payload or result past 64 KiB as `{"claim_check": {"bytes": n}}`:
    the details say it is kept in S3 and how large, and "show it" reads the job whole and shows
    it, there to stay while the details are drawn again."""
    rows = [{"line": n, "text": "x" * 40} for n in range(2_000)]
    job = api.add(status="completed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:05.000Z", payload={"claim_check": {"bytes": 70_029}},
                  result={"claim_check": {"bytes": 122_000}})
    api.kept_in_s3[job["id"]] = {"payload": {"rows": rows}, "result": {"pages": 12}}
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator("pre").first).to_have_text(re.compile(r"^kept in S3 \(70,029 bytes\) show it$"))
    expect(detail.locator("pre").nth(1)).to_have_text(re.compile(r"^kept in S3 \(122,000 bytes\) show it$"))
    detail.get_by_role("button", name=re.compile("Show the result")).click()
    expect(detail.locator("pre").nth(1)).to_have_text('{\n  "pages": 12\n}')
    expect(detail.locator("pre").first).to_contain_text("kept in S3")  # only what was asked for is read
    assert api.count("GET", rf"/jobs/{job['id']}") == 1
    api.update(job["id"], user="bob")  # drawn again: what was read stays shown
    api.settle()
    page.get_by_role("button", name="Refresh").click()
    expect(row(page, job["id"])).to_be_visible()
    api.settle()
    expect(detail).to_contain_text("bob")
    expect(detail.locator("pre").nth(1)).to_have_text('{\n  "pages": 12\n}')


def test_a_value_a_poll_left_out_is_not_said_to_be_kept_in_s3(page, api):
    """A poll whose jobs together would pass what one answer carries shows some of them short:
    a payload kept in the job's record (64 KiB at most) comes as the same placeholder as one
    kept in S3. The details say it was left out, and "show it" reads it as for S3."""
    job = api.add(status="completed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:05.000Z", payload={"claim_check": {"bytes": 60_000}})
    api.kept_in_s3[job["id"]] = {"payload": {"pad": "x" * 59_980}}
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    expect(detail.locator("pre").first).to_have_text(
        re.compile(r"^left out of the status poll, too large with the others \(60,000 bytes\) show it$"))
    detail.get_by_role("button", name=re.compile("Show the payload")).click()
    expect(detail.locator("pre").first).to_contain_text('"pad": "xxx')


def test_a_fan_outs_details_name_its_children_and_a_childs_its_parent(page, api):
    """A parent completes once it has spawned its children, which run on as jobs of their own:
    its details say so and name them (a link to each row shown, the first 20 of a wide one,
    the rest counted); a child's name its parent."""
    parent = api.add(id="parent-1", type="demo.fanout", status="completed", attempts=1,
                     started_at="2026-01-15T10:00:00.000Z", finished_at="2026-01-15T10:00:01.000Z",
                     children=["child-1", "child-2"])
    child = api.add(id="child-1", status="running", attempts=1, started_at="2026-01-15T10:00:01.000Z",
                    parent_id=parent["id"])
    wide = api.add(id="wide-1", type="demo.fanout", status="completed",
                   children=[f"wide-child-{n}" for n in range(25)])
    api.open()
    row(page, parent["id"]).get_by_role("button", name=re.compile("Details")).click()
    facts = page.locator(f'#detail-{parent["id"]} dl')
    expect(facts).to_contain_text("children2 spawned, each a job of its own: child-1, child-2")
    facts.get_by_role("link", name="child-1").click()  # shown on the page: a link to its row
    expect(row(page, child["id"]).get_by_role("button", name=re.compile("Details"))).to_be_focused()
    assert facts.get_by_role("link", name="child-2").count() == 0  # not shown: its id alone
    row(page, child["id"]).get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator(f'#detail-{child["id"]} dl')).to_contain_text("spawned byparent-1")
    row(page, wide["id"]).get_by_role("button", name=re.compile("Details")).click()
    expect(page.locator(f'#detail-{wide["id"]} dl')).to_contain_text("wide-child-19 and 5 more")
    expect(page.locator(f'#detail-{wide["id"]} dl')).not_to_contain_text("wide-child-20")


def test_a_failed_read_of_data_kept_in_s3_is_said_beside_it_and_can_be_read_again(page, api):
    job = api.add(status="completed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:05.000Z", result={"claim_check": {"bytes": 90_000}})
    api.kept_in_s3[job["id"]] = {"result": {"pages": 3}}
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    detail = page.locator(f'#detail-{job["id"]}')
    api.fail("GET", rf"/jobs/{job['id']}", status=503, json={"error": {"code": "store_unavailable",
                                                                       "message": "the store did not answer"}})
    show = detail.get_by_role("button", name=re.compile("Show the result"))
    show.click()
    expect(detail.locator("pre").nth(1)).to_contain_text("Could not read it: the store did not answer")
    show.click()
    expect(detail.locator("pre").nth(1)).to_have_text('{\n  "pages": 3\n}')


def test_a_fan_out_a_poll_showed_without_its_children_says_how_many_and_shows_them_on_demand(page, api):
    """A poll whose jobs together would pass what one answer carries shows a fan-out without its
    children (`children` empty, `children_cut` their number). Its details said nothing of them,
    and a parent that ended in that poll is polled no more: they say how many it spawned, and
    "show them" reads the job whole and names them."""
    paused_clock(page)
    parent = api.add(id="parent-1", type="demo.fanout", status="running", attempts=1,
                     started_at="2026-01-15T10:00:00.000Z", payload={"claim_check": {"bytes": 70_000}})
    api.kept_in_s3[parent["id"]] = {"payload": {"rows": "x" * 69_980}}
    api.open()
    expect(row(page, parent["id"])).to_be_visible()
    api.settle()
    api.update(parent["id"], status="completed", finished_at="2026-01-15T10:00:01.000Z",
               children=["child-1", "child-2", "child-3"])
    bare = {**api.jobs[parent["id"]], "children": [], "children_cut": 3}
    api.fail("POST", "/jobs/status", json={"jobs": {parent["id"]: bare}, "job_ids": [parent["id"]]})
    page.clock.run_for(3000)
    api.settle()
    line = row(page, parent["id"])
    expect(line).to_have_attribute("data-status", "completed")
    line.get_by_role("button", name=re.compile("Details")).click()
    facts = page.locator(f'#detail-{parent["id"]} dl')
    expect(facts).to_contain_text("children3 spawned, each a job of its own: left out of the status poll")
    facts.get_by_role("button", name=re.compile("Show the children")).click()
    expect(facts).to_contain_text("children3 spawned, each a job of its own: child-1, child-2, child-3")
    expect(facts.locator("pre").first).to_have_text(re.compile(r"^kept in S3 \(70,000 bytes\) show it$"))
    assert api.count("GET", rf"/jobs/{parent['id']}") == 1


@pytest.mark.parametrize(("zone", "named"), [("Asia/Tokyo", "Asia/Tokyo"), ("Etc/UTC", "UTC"), ("Etc/GMT+5", "UTC-05:00")])
def test_the_times_shown_name_the_browsers_zone_they_are_written_in(browser, zone, named):
    """The times are written in the browser's zone: the Times column's heading names it, and
    where the jobs are cards (a phone), whose headings are not shown, the list does, so an
    operator comparing them with UTC logs knows which zone "19:00:02" is in."""
    context = browser.new_context(viewport={"width": 1440, "height": 900}, timezone_id=zone)
    page = context.new_page()
    api = FakeApi(page)
    job = api.add(status="completed", attempts=1, started_at="2026-01-15T10:00:00.000Z",
                  finished_at="2026-01-15T10:00:05.000Z")
    api.open()
    expect(row(page, job["id"])).to_be_visible()
    expect(page.get_by_role("columnheader", name=re.compile("^Times"))).to_have_text(re.compile(f"^Times\\s*{named}$"))
    page.set_viewport_size({"width": 390, "height": 740})
    expect(page.locator("#jobs-body")).to_have_attribute("data-zone", named)
    shown = page.locator("#jobs-body").evaluate("b => [getComputedStyle(b, '::before').content, getComputedStyle(b, '::before').display]")
    assert shown == [f'"times in {named}"', "block"], shown
    context.close()


def test_text_selected_in_a_running_jobs_details_stays_selected_as_it_progresses(page, api):
    """An operator selects a running job's payload in its details to copy it: the polls that
    move its progress bar leave the details, whose facts did not change, as they are, so the
    selection is not lost every 2 s; a fact that changes (its progress message) is shown."""
    paused_clock(page)
    job = api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z", payload={"order": "A-1042"},
                  progress={"percent": 10.0, "step": "load", "message": "row 1", "details": None, "updated_at": None})
    api.open()
    row(page, job["id"]).get_by_role("button", name=re.compile("Details")).click()
    payload = page.locator(f'#detail-{job["id"]} pre').first
    expect(payload).to_have_text('{\n  "order": "A-1042"\n}')
    api.settle()
    payload.evaluate("pre => getSelection().selectAllChildren(pre)")
    api.update(job["id"], progress={**job["progress"], "percent": 20.0})
    page.clock.run_for(2_000)
    api.settle()
    expect(row(page, job["id"]).locator(".percent")).to_have_text("20%")
    assert page.evaluate("() => getSelection().toString()") == '{\n  "order": "A-1042"\n}'
    api.update(job["id"], progress={**job["progress"], "percent": 30.0, "message": "row 2"})
    page.clock.run_for(2_000)
    api.settle()
    expect(page.locator(f'#detail-{job["id"]} dd').filter(has_text="row 2")).to_have_count(1)
