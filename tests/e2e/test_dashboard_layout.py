"""The dashboard's layout at every window width, from a phone to a 4K screen: nothing scrolls
sideways, the jobs come first where the form cannot sit beside them, each filter keeps its label.
"""
from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.dashboard_pages import browser  # noqa: F401 - fixtures
from tests.e2e.dashboard_pages import FakeApi, iso, listing, row


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
    # Its dates stand still (no duration ticks between two widths measured), while its timers
    # and animation frames run: a paused clock would hold the frame each width waits for.
    page.clock.set_fixed_time(now)
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


@pytest.mark.parametrize("width", [320, 390])
def test_the_longest_tenant_and_user_names_keep_a_phone_from_scrolling_sideways(browser, width):
    """A token may name a tenant and a user of up to 64 characters each, with no space to break
    at (an organisation's id, an email-like name): the top bar says them whole, over as many
    lines as they need, and the page does not scroll sideways on a phone."""
    from chalicelib.api.auth import issue_token

    tenant, user = "tenant-" + "7f3c9a2e" * 7 + "0", "operator." + "x" * 55
    assert len(tenant) == len(user) == 64
    context = browser.new_context(viewport={"width": width, "height": 740})
    page = context.new_page()
    api = FakeApi(page, tenant=tenant)
    api.add(status="running", attempts=1, started_at="2026-01-15T10:00:00.000Z")
    api.open(issue_token("fake-api-secret-0123456789abcdef-0123", user=user, tenant=tenant))
    identity = page.locator("#identity")
    expect(identity).to_have_text(f"tenant {tenant} · {user}")
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert identity.evaluate("e => e.getBoundingClientRect().right") <= width
    # A link with another such tenant's token: the page asks, naming both, on its buttons too.
    other = "tenant-" + "0b5d1e44" * 7 + "1"
    page.evaluate("token => { location.hash = 'token=' + token }",
                  issue_token("fake-api-secret-0123456789abcdef-0123", user=user, tenant=other))
    stay = page.get_by_role("button", name=f"Stay with tenant {tenant}")
    expect(stay).to_be_visible()
    assert page.evaluate("document.documentElement.scrollWidth") <= width
    assert stay.evaluate("e => e.getBoundingClientRect().right") <= width
    context.close()
