import io

import pytest
from rich.console import Console

from jobpipe_client.progress_view import ProgressBoard, change_line, detail, exit_code, jobs_table


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


def test_detail_prefers_the_error_of_a_failed_or_retrying_job():
    error = {"code": "timeout", "message": "ran past 3 s"}
    assert detail(job(status="failed", step="s", error=error)) == "timeout: ran past 3 s"
    assert detail(job(status="retrying", error=error)) == "timeout: ran past 3 s"
    assert detail(job(step="load", message="rows")) == "load: rows"
    assert detail(job(message="only a message")) == "only a message"
    assert detail(job()) == ""


def test_change_line_has_id_type_status_percent_and_detail():
    assert change_line(job(percent=42.5, step="step 2/4", message="half")) == "job-1 demo.steps running 42.5% step 2/4: half"
    assert change_line({"id": "x", "status": "not_found"}) == "x not_found 0.0%"


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
    assert "75.0%" in text and "step 3/4: writing" in text and "queued" in text
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
        board.update(job("j1", "completed", 100))
        board.update(job("j2", "failed", 10, error={"code": "boom", "message": "it broke"}))
    board.summary()
    assert out.getvalue().splitlines() == [
        "j1 demo.steps running 50.0% s1: half",
        "j1 demo.steps completed 100.0%",
        "j2 demo.steps failed 10.0% boom: it broke",
        "j1 completed",
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
        assert out.getvalue().splitlines() == ["j1 demo.steps running 50.0% s1: half"]


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
    assert change_line(first) == "job-1 demo.steps running 60.0%"
    assert change_line(retrying) == "job-1 demo.steps retrying attempt 1/3 60.0% boom: it broke"
    assert change_line(second) == "job-1 demo.steps running attempt 2/3 0.0% start"
    text, _ = render_live([first, retrying, second])
    last = text.rsplit("job-1", 1)[-1]
    assert "attempt 2/3" in last and "0.0%" in last
