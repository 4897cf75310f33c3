"""What `jobpipe watch` shows: a live progress bar per job on a terminal, a line per change
otherwise (logs, pipes, a terminal that cannot be redrawn: TERM=dumb), and the exit code the
jobs' final states make. A watched job's children (the jobs its handler spawned, theirs in
turn) share one row under it on a terminal, `ID children (N)`, their mean progress and a count
by status, and one line each as their status changes otherwise: a fan-out may have 2,000 of
them, which no terminal shows as bars. The summary names each child that did not complete.
While the API does not answer, a terminal shows one `reconnecting` status line under the bars,
replaced after each failed poll and removed once a poll is answered."""
from __future__ import annotations

import math
from typing import Any, Iterable, Optional, Sequence

from rich.console import Console, RenderableType
from rich.progress import BarColumn, Progress, ProgressBar, ProgressColumn, Task, TaskID, TextColumn
from rich.table import Table
from rich.text import Text

from jobpipe_client.cli_exits import EXIT_JOB_FAILED, EXIT_OK
from jobpipe_client.cli_stdout import stdout_console
from jobpipe_client.polling import Outage
from jobpipe_client.terminal_text import shown

STATUS_STYLES = {
    "queued": "cyan",
    "running": "blue",
    "retrying": "yellow",
    "completed": "green",
    "failed": "red",
    "canceled": "magenta",
    "not_found": "red",
}


def exit_code(jobs: dict[str, dict[str, Any]]) -> int:
    """0 when every job (children included) completed; EXIT_JOB_FAILED when any failed, was
    canceled or is unknown."""
    return EXIT_OK if jobs and all(j.get("status") == "completed" for j in jobs.values()) else EXIT_JOB_FAILED


ENDED = ("completed", "failed", "canceled", "not_found")


def status_counts(jobs: Iterable[dict[str, Any]]) -> str:
    """`3 completed, 1 failed, 2 running`: how many jobs are in each status, ended ones first."""
    counts: dict[str, int] = {}
    for job in jobs:
        status = str(job.get("status") or "")
        counts[status] = counts.get(status, 0) + 1
    order = [*ENDED, "running", "retrying", "queued"]
    ranked = sorted(counts, key=lambda status: order.index(status) if status in order else len(order))
    return shown(", ".join(f"{counts[status]} {status}" for status in ranked))


def tree_status(jobs: list[dict[str, Any]]) -> str:
    """One status for a parent's children: while any runs, `running` (else `queued`); once all
    have ended, `completed` when all did, else the first of failed, canceled, not_found."""
    statuses = {job.get("status") for job in jobs}
    if not statuses <= set(ENDED):
        return "running" if statuses & {"running", "retrying"} else "queued"
    return next((s for s in ENDED[1:] if s in statuses), "completed")


def status_text(status: str) -> Text:
    return Text(shown(status), style=STATUS_STYLES.get(status, "white"))


def progress_of(job: dict[str, Any]) -> dict[str, Any]:
    return job.get("progress") or {}


def detail(job: dict[str, Any]) -> str:
    """`step: message`, or the error of a failed job, or "" when there is nothing to say, and
    when a job submitted for later (or waiting out a retry's backoff) starts; in one line, its
    control characters escaped (the handler's text, fed by tenant input)."""
    error = job.get("error")
    if job.get("status") in ("failed", "retrying") and error:
        text = f"{error.get('code')}: {error.get('message')}"
    else:
        progress = progress_of(job)
        text = ": ".join(str(p) for p in (progress.get("step"), progress.get("message")) if p)
    start = _later_start(job)
    if start:
        text = f"{text}; {start}" if text else start
    return shown(text)


def _later_start(job: dict[str, Any]) -> str:
    """`starts at T` for a queued job whose `not_before` is past its submission (--delay,
    --run-at), `next attempt at T` for a retrying one: else a delayed job reads `queued 0%`
    with no word of when it runs. Both times are the API's, UTC ISO 8601 text, which compare
    as times."""
    not_before, created = job.get("not_before"), job.get("created_at")
    if not (isinstance(not_before, str) and isinstance(created, str) and not_before > created):
        return ""
    status = job.get("status")
    if status == "queued" and not job.get("attempts"):
        return f"starts at {not_before}"
    if status in ("queued", "retrying"):
        return f"next attempt at {not_before}"
    return ""


def attempt_text(job: dict[str, Any]) -> str:
    """`attempt N/M` for a retrying job and for one past its first attempt, running or ended,
    else "": each attempt's progress starts again at 0 %, and a bar that drops back says why;
    and a job whose first attempt died between two polls (its worker lost, retried at once)
    ends saying it took more than one. Not for a queued job: its attempts are those made, its
    detail says when the next starts."""
    attempts, most = int(job.get("attempts") or 0), int(job.get("max_attempts") or 0)
    status = job.get("status")
    if not (status == "retrying" or (attempts > 1 and status != "queued")):
        return ""
    return f"attempt {attempts}/{most}" if most else f"attempt {attempts}"


def percent_text(percent: float) -> str:
    """A percent as every view shows it, whole: `0%`, `42%`, `100%`. Rounded down, so a job
    at 99.5 % never reads `100%` while it still runs."""
    return f"{math.floor(percent)}%"


def change_line(job: dict[str, Any]) -> str:
    """One plain line for a job's new state (non-terminal output), control characters escaped."""
    percent = float(progress_of(job).get("percent") or 0)
    parts = [job["id"], job.get("type"), job.get("status"), attempt_text(job), percent_text(percent), detail(job)]
    return shown(" ".join(str(p) for p in parts if p))


class _StatusColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        text = status_text(task.fields.get("status", ""))
        if task.fields.get("attempt"):
            text.append(f" {task.fields['attempt']}")
        return text


class _PercentColumn(ProgressColumn):
    """The bar's percent, as the tables and the lines per change show it."""

    def render(self, task: Task) -> Text:
        return Text(percent_text(task.percentage).rjust(4))


class _DetailColumn(ProgressColumn):
    def render(self, task: Task) -> Text:
        return Text(task.fields.get("detail", ""), overflow="ellipsis", no_wrap=True)


class _StatusBarColumn(BarColumn):
    """A bar coloured by the job's status."""

    def render(self, task: Task) -> ProgressBar:
        colour = STATUS_STYLES.get(task.fields.get("status", ""), "white")
        return ProgressBar(total=100, completed=max(0.0, task.completed), width=self.bar_width,
                           complete_style=colour, finished_style=colour)


def outage_line(outage: Outage) -> str:
    """One line for a poll no URL answered: why each URL failed, when the next try is and when
    the wait gives up, e.g. `reconnecting: no answer from the API for 3 s (http://…: timed out
    after 10 s); next try in 4 s, giving up after 60 s`."""
    reasons = "; ".join(f"{url}: {reason}" for url, reason in outage.error.failures)
    lasted = f" for {outage.since_s:.0f} s" if outage.since_s >= 1 else ""
    bound = f", giving up after {outage.give_up_after_s:g} s" if outage.give_up_after_s is not None else ""
    return " ".join(shown(f"reconnecting: no answer from the API{lasted} ({reasons}); "
                          f"next try in {outage.retry_in_s:.0f} s{bound}").split())


class _BoardProgress(Progress):
    """Progress with an optional status line under the bars."""

    note: Optional[Text] = None

    def get_renderables(self) -> Iterable[RenderableType]:
        yield from super().get_renderables()
        if self.note is not None:
            yield self.note


class ProgressBoard:
    """Shows jobs as they change. Use as a context manager around the wait; feed `update(job)`.
    A job is a child when its `parent_id` is a job the board has shown and it is not one of
    `watched` (the jobs asked for, each shown on its own)."""

    def __init__(self, console: Optional[Console] = None, watched: Iterable[str] = ()) -> None:
        self.console = console or stdout_console()
        # A terminal rich can redraw: a dumb one (TERM=dumb) would show a live display only
        # when it stops, so it gets a line per change like a pipe.
        self.live = self.console.is_interactive
        self.jobs: dict[str, dict[str, Any]] = {}
        self._watched = set(watched)
        self._root_of: dict[str, str] = {}  # a child's id -> the shown job it descends from
        self._descendants: dict[str, list[str]] = {}  # a shown job's id -> its descendants' ids, as seen
        self._tasks: dict[str, TaskID] = {}
        self._children_tasks: dict[str, TaskID] = {}  # a shown job's id -> its children's row
        self._progress = _BoardProgress(
            TextColumn("{task.description}", markup=False),  # ids and types are the server's text
            _StatusBarColumn(bar_width=30),
            _PercentColumn(),
            _StatusColumn(),
            _DetailColumn(),
            console=self.console,
            auto_refresh=self.live,
            transient=False,
        )

    def __enter__(self) -> "ProgressBoard":
        if self.live:
            try:
                self._progress.start()
            except BaseException:  # Ctrl-C or SIGTERM mid-start: show the cursor it hid
                self._progress.stop()
                raise
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live:
            self._progress.note = None  # the status of an outage ends with the display
            self._progress.stop()

    @property
    def note(self) -> Optional[Text]:
        """The status line shown under the bars, if any."""
        return self._progress.note

    def outage(self, outage: Outage) -> None:
        """On a terminal, the `reconnecting` status line (replaced each time, removed when the
        outage has ended); elsewhere nothing (the caller says it in its own lines)."""
        if not self.live:
            return
        self._progress.note = None if outage.ended else Text(outage_line(outage), style="yellow",
                                                              overflow="ellipsis", no_wrap=True)
        self._progress.refresh()

    def update(self, job: dict[str, Any]) -> None:
        before = self.jobs.get(job["id"])
        self.jobs[job["id"]] = job
        root = self._root(job)
        if root is not None:
            self._update_child(root, job, before)
            return
        if not self.live:
            self.console.print(Text(change_line(job)), soft_wrap=True)
            return
        fields = {"status": job.get("status", ""), "attempt": attempt_text(job), "detail": detail(job)}
        percent = float(progress_of(job).get("percent") or 0)
        if job["id"] not in self._tasks:
            label = shown(f"{job['id'][:8]} {job.get('type', '')}".strip())
            self._tasks[job["id"]] = self._progress.add_task(label, total=100, completed=percent, **fields)
        else:
            self._progress.update(self._tasks[job["id"]], completed=percent, **fields)

    def _root(self, job: dict[str, Any]) -> Optional[str]:
        """The shown job `job` descends from, or None when it is shown on its own (watched, or
        its parent not on the board)."""
        job_id, parent = job["id"], job.get("parent_id")
        if job_id in self._root_of:
            return self._root_of[job_id]
        if job_id in self._watched or parent not in self.jobs:
            return None
        root = self._root_of[job_id] = self._root_of.get(parent, parent)
        self._descendants.setdefault(root, []).append(job_id)
        return root

    def children(self, root: str) -> list[dict[str, Any]]:
        """The descendants of shown job `root` the board has seen, in the order seen."""
        return [self.jobs[i] for i in self._descendants.get(root, ())]

    def _update_child(self, root: str, job: dict[str, Any], before: Optional[dict[str, Any]]) -> None:
        """A child's new state: a line when its status changed (not on a terminal), else its
        parent's children row."""
        if not self.live:
            if before is None or before.get("status") != job.get("status"):
                self.console.print(Text(change_line(job)), soft_wrap=True)
            return
        children = self.children(root)
        percent = sum(100.0 if j.get("status") in ENDED else float(progress_of(j).get("percent") or 0)
                      for j in children) / len(children)
        fields = {"status": tree_status(children), "attempt": "", "detail": status_counts(children)}
        label = shown(f"{root[:8]} children ({len(children)})")
        if root not in self._children_tasks:
            self._children_tasks[root] = self._progress.add_task(label, total=100, completed=percent, **fields)
        else:
            self._progress.update(self._children_tasks[root], description=label, completed=percent, **fields)

    def summary(self) -> None:
        """One line per shown job with its final status, and the error of those that failed;
        under one with children, a line counting them by status and one per child that did
        not complete (failed, canceled, not found, or not ended when the watch stopped)."""
        for job in self.jobs.values():
            if job["id"] in self._root_of:
                continue
            self._summary_line(job)
            children = self.children(job["id"])
            if children:
                self.console.print(Text(f"{shown(job['id'])} children: {len(children)} "
                                        f"({status_counts(children)})"), soft_wrap=True)
            for child in children:
                if child.get("status") != "completed":
                    self._summary_line(child, f"child of {child.get('parent_id')}")

    def _summary_line(self, job: dict[str, Any], whose: str = "") -> None:
        line = Text(f"{shown(job['id'])} ")
        line.append_text(status_text(job.get("status", "")))
        attempt = attempt_text(job)
        if attempt:
            line.append(f" {attempt}")
        note = detail(job) if job.get("status") != "completed" else ""
        if note:
            line.append(f" {note}")
        if whose:
            line.append(f" ({shown(whose)})")
        self.console.print(line, soft_wrap=True)


COLUMNS = ("id", "type", "status", "progress", "attempts", "created", "detail")


def job_row(job: dict[str, Any]) -> list[str]:
    """A job's values for the COLUMNS, whole, control characters escaped."""
    found = job.get("status") != "not_found"
    return [shown(value) for value in [
        str(job["id"]),
        str(job.get("type") or ""),
        str(job.get("status") or ""),
        percent_text(float(progress_of(job).get("percent") or 0)) if found else "",
        f"{job.get('attempts', 0)}/{job.get('max_attempts', 0)}" if found else "",
        str(job.get("created_at") or ""),
        detail(job),
    ]]


def jobs_table(jobs: list[dict[str, Any]]) -> Table:
    """`jobpipe status` / `jobpipe list` on a terminal: one row per job, fitted to its width.
    Every cell is Text: a value is the server's, never rich markup."""
    table = Table(box=None, pad_edge=False)
    for column in COLUMNS:
        table.add_column(column, no_wrap=column in ("id", "status"))
    for job in jobs:
        row = job_row(job)
        table.add_row(*map(Text, row[:2]), status_text(row[2]), *map(Text, row[3:]))
    return table


def plain_table(jobs: list[dict[str, Any]]) -> str:
    """`jobpipe status` / `jobpipe list` into a pipe or file: a header and one line per job,
    columns aligned with spaces, every value whole (never cut or wrapped; line breaks and
    tabs inside a value become spaces). An empty value is `-`, so every line has the same
    number of fields before the last column (`detail`, which may hold spaces)."""
    return aligned(COLUMNS, [job_row(job) for job in jobs])


def aligned(columns: Sequence[str], values: list[list[str]]) -> str:
    """A header and one line per row of `values` (escaped already), columns aligned with spaces,
    every value whole: line breaks and tabs become spaces, an empty value `-`, and only the last
    column may hold spaces."""
    rows = [list(columns)] + [[" ".join(v.split()) or "-" for v in row] for row in values]
    widths = [max(len(row[i]) for row in rows) for i in range(len(columns) - 1)]
    lines = ["  ".join([*(value.ljust(width) for value, width in zip(row, widths)), row[-1]]).rstrip()
             for row in rows]
    return "\n".join(lines) + "\n"
