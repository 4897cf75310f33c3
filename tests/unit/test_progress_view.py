import io

import pytest
from rich.console import Console

from jobpipe_client.progress_view import (
    ProgressBoard,
    attempt_text,
    change_line,
    detail,
    exit_code,
    jobs_table,
    status_counts,
    tree_status,
)


def job(job_id="job-1", status="running", percent=0.0, step=None, message=None, **extra):
    return {"id": job_id, "type": "demo.steps", "status": status, "version": 1,
            "progress": {"percent": percent, "step": step, "message": message}, **extra}


@pytest.mark.parametrize(
    "statuses, code",
    [
        (["completed"], 0),
        (["completed", "completed"], 0),
        (["completed", "failed"], 1),
        (["canceled"], 1),
        (["completed", "not_found"], 1),
        ([], 1),
    ],
)
def test_exit_code_is_0_only_when_every_job_completed(statuses, code):
    jobs = {str(i): job(str(i), status) for i, status in enumerate(statuses)}
    assert exit_code(jobs) == code


@pytest.mark.parametrize("statuses, shown", [
    (["running", "completed"], "running"),
    (["retrying", "queued"], "running"),
    (["queued", "completed"], "queued"),
    (["completed", "completed"], "completed"),
    (["completed", "canceled", "failed"], "failed"),
    (["completed", "not_found", "canceled"], "canceled"),
    (["completed", "not_found"], "not_found"),
])
def test_a_parents_children_row_has_one_status_for_them_all(statuses, shown):
    """Running while any runs; once all ended, completed only when all did, else the worst."""
    assert tree_status([{"id": f"c{i}", "status": s} for i, s in enumerate(statuses)]) == shown


def test_status_counts_name_the_ended_statuses_first():
    jobs = [{"status": s} for s in ["running", "queued", "completed", "running", "paused", "failed"]]
    assert status_counts(jobs) == "1 completed, 1 failed, 2 running, 1 queued, 1 paused"


@pytest.mark.parametrize("status, attempts, says", [
    ("queued", 0, "starts at 2027-01-31T15:00:00.000Z"),  # submitted for later
    ("queued", 1, "next attempt at 2027-01-31T15:00:00.000Z"),  # back in the queue after an attempt
    ("retrying", 1, "next attempt at 2027-01-31T15:00:00.000Z"),
    ("running", 1, ""),
])
def test_detail_says_when_a_job_waiting_to_start_starts(status, attempts, says):
    job = {"id": "j1", "status": status, "attempts": attempts, "created_at": "2027-01-31T09:00:00.000Z",
           "not_before": "2027-01-31T15:00:00.000Z"}
    assert detail(job) == says


def test_attempt_text_names_the_bound_only_when_the_job_says_it():
    assert attempt_text({"status": "retrying", "attempts": 2, "max_attempts": 3}) == "attempt 2/3"
    assert attempt_text({"status": "retrying", "attempts": 2}) == "attempt 2"  # not `2/0`


def test_a_watched_job_whose_parent_is_watched_too_is_shown_on_its_own():
    """`jobpipe watch PARENT CHILD`: the child asked for by name is a job of its own, not one
    counted in its parent's children."""
    out = io.StringIO()
    board = ProgressBoard(Console(file=out, width=200), watched=["p1", "c1"])
    board.update({"id": "p1", "type": "demo.fan_out", "status": "completed"})
    board.update({"id": "c1", "type": "demo.steps", "status": "failed", "parent_id": "p1",
                  "error": {"code": "boom", "message": "bad row"}})
    board.summary()
    assert board.children("p1") == []
    assert out.getvalue().splitlines()[-2:] == ["p1 completed", "c1 failed boom: bad row"]


def test_a_childs_line_is_printed_as_its_status_changes_not_at_each_new_state():
    """Off a terminal a fan-out's children (2,000 of them) get a line each as their status
    changes; their progress moving is not a line each."""
    out = io.StringIO()
    board = ProgressBoard(Console(file=out, width=200), watched=["p1"])
    board.update({"id": "p1", "status": "running"})
    for version, (status, percent) in enumerate([("running", 10), ("running", 50), ("running", 90),
                                                 ("completed", 100)]):
        board.update({"id": "c1", "status": status, "parent_id": "p1", "version": version,
                      "progress": {"percent": percent}})
    assert [line.split()[:3] for line in out.getvalue().splitlines()] == [
        ["p1", "running", "0%"], ["c1", "running", "10%"], ["c1", "completed", "100%"]]


def test_the_children_row_is_full_once_they_have_all_ended_whatever_their_last_progress():
    """A child that failed at 30 % has ended: the row of a fan-out that is over is at 100 %."""
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=140)
    with ProgressBoard(console, watched=["p1"]) as board:
        board.update({"id": "p1", "status": "completed", "progress": {"percent": 100}})
        board.update({"id": "c1", "status": "failed", "parent_id": "p1", "progress": {"percent": 30}})
        board.update({"id": "c2", "status": "completed", "parent_id": "p1", "progress": {"percent": 100}})
    last_frame_row = [line for line in out.getvalue().splitlines() if "p1 children (2)" in line][-1]
    assert "100%" in last_frame_row and "1 completed, 1 failed" in last_frame_row


def test_detail_prefers_the_error_of_a_failed_or_retrying_job():
    error = {"code": "timeout", "message": "ran past 3 s"}
    assert detail(job(status="failed", step="s", error=error)) == "timeout: ran past 3 s"
    assert detail(job(status="retrying", error=error)) == "timeout: ran past 3 s"
    assert detail(job(step="load", message="rows")) == "load: rows"
    assert detail(job(message="only a message")) == "only a message"
    assert detail(job()) == ""


def test_change_line_has_id_type_status_percent_and_detail():
    assert change_line(job(percent=42.5, step="step 2/4", message="half")) == "job-1 demo.steps running 42% step 2/4: half"
    assert change_line({"id": "x", "status": "not_found"}) == "x not_found 0%"


def render_live(updates):
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=140, color_system="truecolor")
    with ProgressBoard(console) as board:
        assert board.live
        for update in updates:
            board.update(update)
    return out.getvalue(), board


def test_live_board_shows_a_bar_per_job_with_percent_status_and_step():
    text, board = render_live([
        job("aaaaaaaa-1", "running", 25, "step 1/4", "loading"),
        job("bbbbbbbb-2", "queued"),
        job("aaaaaaaa-1", "running", 75, "step 3/4", "writing"),
    ])
    assert "aaaaaaaa demo.steps" in text and "bbbbbbbb demo.steps" in text
    assert "75%" in text and "step 3/4: writing" in text and "queued" in text
    assert len(board.jobs) == 2


def test_live_board_colours_the_status():
    text, _ = render_live([job("x", "failed", 50, error={"code": "boom", "message": "it broke"})])
    red = "\x1b[31m"
    assert f"{red}failed" in text and "boom: it broke" in text


def test_plain_board_prints_a_line_per_change_and_a_summary():
    out = io.StringIO()
    console = Console(file=out, width=200)
    with ProgressBoard(console) as board:
        assert not board.live
        board.update(job("j1", "running", 50, "s1", "half"))
        board.update(job("j1", "completed", 100, "completed", "wrote 3 rows"))  # as the API ends a job
        board.update(job("j2", "failed", 10, error={"code": "boom", "message": "it broke"}))
    board.summary()
    assert out.getvalue().splitlines() == [
        "j1 demo.steps running 50% s1: half",
        "j1 demo.steps completed 100% completed: wrote 3 rows",
        "j2 demo.steps failed 10% boom: it broke",
        "j1 completed",  # the summary is what went wrong: a completed job says no more
        "j2 failed boom: it broke",
    ]


def test_a_terminal_that_cannot_redraw_gets_a_line_per_change_as_it_happens():
    """TERM=dumb (an editor's shell, a CI log on a pty) is a terminal rich does not redraw: a live
    display there shows nothing until it stops. The board prints a line per change instead."""
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=True, _environ={"TERM": "dumb"})
    with ProgressBoard(console) as board:
        assert not board.live
        board.update(job("j1", "running", 50, "s1", "half"))
        assert out.getvalue().splitlines() == ["j1 demo.steps running 50% s1: half"]


def test_messages_are_shown_as_text_not_markup():
    out = io.StringIO()
    console = Console(file=out, width=200)
    with ProgressBoard(console) as board:
        board.update(job("j1", message="[bold]not markup[/bold]"))
    assert "[bold]not markup[/bold]" in out.getvalue()


def test_jobs_table_lists_each_job():
    out = io.StringIO()
    Console(file=out, width=200).print(jobs_table([job("j1", "running", 40, "load"), job("j2", "completed", 100)]))
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["id", "type", "status", "progress", "attempts", "created", "detail"]
    assert lines[1].split()[:4] == ["j1", "demo.steps", "running", "40%"]
    assert lines[2].split()[:4] == ["j2", "demo.steps", "completed", "100%"]


def test_a_job_on_a_later_attempt_says_which_so_its_bar_starting_again_is_read_as_such():
    """A retried job's next attempt starts again at 0 %: the bar and the line per change name the
    attempt (the failed one's while retrying, with its error), so the drop is not a mystery."""
    error = {"code": "boom", "message": "it broke"}
    first = job(percent=60, attempts=1, max_attempts=3)
    retrying = job(status="retrying", percent=60, attempts=1, max_attempts=3, error=error)
    second = job(percent=0, step="start", attempts=2, max_attempts=3)
    assert change_line(first) == "job-1 demo.steps running 60%"
    assert change_line(retrying) == "job-1 demo.steps retrying attempt 1/3 60% boom: it broke"
    assert change_line(second) == "job-1 demo.steps running attempt 2/3 0% start"
    text, _ = render_live([first, retrying, second])
    last = text.rsplit("job-1", 1)[-1]
    assert "attempt 2/3" in last and " 0%" in last


@pytest.mark.parametrize("percent, text", [(0, "0%"), (0.0, "0%"), (42.5, "42%"), (62.49, "62%"),
                                           (99.99, "99%"), (100, "100%")])
def test_a_percent_reads_the_same_in_a_table_a_line_per_change_and_a_bar(percent, text):
    """A watch showed `0.0%` where `status` and `list` showed `0%`; and a table rounded 99.99 up
    to `100%` while the job still ran. Every view shows a whole percent, rounded down."""
    running = job(percent=percent)
    assert jobs_table_cells(running)[3] == text
    assert change_line(running).split()[3] == text
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, force_interactive=True, width=140, color_system=None)
    with ProgressBoard(console) as board:
        board.update(running)
    assert f" {text} running" in out.getvalue()


def jobs_table_cells(one_job):
    from jobpipe_client.progress_view import plain_table
    return plain_table([one_job]).splitlines()[1].split()


def test_a_job_that_ended_on_a_later_attempt_says_so_though_no_poll_saw_it_retry():
    """A worker lost mid-run is retried at once: the watch's polls can see `running` and then
    `completed` with no `retrying` between. The line per change and the summary name the
    attempt it ended on, so a run that took two reads as such; a first-attempt end, and a
    queued job (its detail says when the next attempt starts), name none."""
    done = job(status="completed", percent=100, attempts=2, max_attempts=3)
    assert change_line(done) == "job-1 demo.steps completed attempt 2/3 100%"
    assert "attempt" not in change_line(job(status="completed", percent=100, attempts=1, max_attempts=3))
    assert attempt_text(job(status="queued", attempts=2, max_attempts=3)) == ""
    out = io.StringIO()
    board = ProgressBoard(Console(file=out, width=200))
    board.update(done)
    board.summary()
    assert out.getvalue().splitlines()[-1].split() == ["job-1", "completed", "attempt", "2/3"]
