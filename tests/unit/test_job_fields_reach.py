"""Where each field of a job goes: onto its status events (`JobEvent`, the detail subscribers and
the ERP get) and into `jobpipe status`'s table, or nowhere on purpose. A field added to `Job`
(docs/data-model.md, "Adding a field to a job") fails here until it is carried or excluded with
its reason, so none is left out by forgetting. Each claim is checked against what the code does:
a field said to be carried changes what is published (or shown) when it changes, an excluded one
does not."""
from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any, Callable, Iterator, Literal, get_args, get_origin

import pytest
from pydantic import BaseModel, ValidationError

from chalicelib.domain.events import JobEvent
from chalicelib.domain.job import INTERNAL_FIELDS, Job, JobErrorInfo, Progress
from chalicelib.domain.status import JobStatus
from chalicelib.events.changes import events_for_change
from jobpipe_client.progress_view import plain_table

ROOT = Path(__file__).resolve().parents[2]

# Job field (a nested model's as `field.sub`) -> the JobEvent field carrying it. Seed 002's event
# carries the job's id, status, progress (percent, step, message) and attempt; jobpipe's adds what
# its subscribers route and act on: tenant, type and scope (cache invalidation), the version to
# order by, the error of a failed attempt and when the job ended (docs/events.md, "Detail").
CARRIED_BY_EVENT = {
    "id": "job_id",
    "type": "type",
    "status": "status",
    "tenant": "tenant",
    "scope": "scope",
    "attempts": "attempt",
    "progress.percent": "progress",
    "progress.step": "step",
    "progress.message": "message",
    "error.code": "error",
    "error.message": "error",
    "finished_at": "finished_at",
    "version": "version",
}
# Left off the event on purpose: an event is a status change, small (a PutEvents entry holds
# 256 KB, the ERP webhook is POSTed each one), and a subscriber that needs more reads the job.
NOT_CARRIED_BY_EVENT = {
    "payload": "the submitter's data, up to 64 KiB inline or an S3 reference: read GET /jobs/{id}",
    "result": "as the payload: large, read GET /jobs/{id} once the event says completed",
    "user": "who submitted is not sent outside the stack on every event: the job id leads to it",
    "parent_id": "no subscriber acts on a job's tree; a child's events name the child",
    "rerun_of": "how the job came to be, fixed at its creation: a rerun's events name the rerun, GET shows the link",
    "children": "up to 2,000 ids (74 KB): it would crowd the entry",
    "priority": "how the job is scheduled, not what happened to it",
    "max_attempts": "the status says whether another attempt follows (retrying) or none (failed)",
    "cancel_requested": "a request, not a change of status: the canceled event follows when it ends the job",
    "created_at": "the creation event (none -> queued) is that moment; the record keeps the exact time",
    "started_at": "the first running event is that moment; the record keeps the exact time",
    "attempt_started_at": "each running event is that moment (its `attempt` says which); the record keeps it",
    "not_before": "when the next attempt may start: a schedule, read GET /jobs/{id}",
    "expires_at": "when retention removes the record: no subscriber acts on it",
    "progress.details": "a handler's free JSON, as large as the record allows: read GET /jobs/{id}",
    "progress.updated_at": "`timestamp` is when the write was made, to the second",
    "gone": "set by a read, never stored: a change stream's image never has it",
    # And INTERNAL_FIELDS (domain/job.py): the worker's and the reconciler's bookkeeping.
}
# JobEvent's fields that are the event's own, not a field of the job.
EVENT_OWN = {"event_id", "event_type", "timestamp", "previous_status", "previous_progress"}

# Job field -> the `jobpipe status` column showing it (jobpipe_client/progress_view.py COLUMNS).
SHOWN_BY_STATUS = {
    "id": "id",
    "type": "type",
    "status": "status",
    "progress.percent": "progress",
    "attempts": "attempts",
    "max_attempts": "attempts",
    "created_at": "created",
    "progress.step": "detail",
    "progress.message": "detail",
    "error.code": "detail",
    "error.message": "detail",
}
# Left out of the table on purpose: one line per job, the whole job is `jobpipe status --json`.
NOT_SHOWN_BY_STATUS = {
    "payload": "JSON of any size: --json", "result": "JSON of any size: --json",
    "tenant": "the caller's own tenant, the same on every row", "user": "who submitted: --json",
    "scope": "--json", "parent_id": "--json", "rerun_of": "--json (`jobpipe rerun` prints the new id)",
    "children": "up to 2,000 ids: --json",
    "priority": "--json", "cancel_requested": "the status shows it once it takes effect; --json",
    "started_at": "--json", "attempt_started_at": "--json", "finished_at": "--json", "not_before": "--json",
    "expires_at": "--json", "version": "a write counter, of no use on a line",
    "progress.details": "a handler's free JSON: --json", "progress.updated_at": "--json",
    "gone": "--json (a gone payload or result is not in the table either)",
    # INTERNAL_FIELDS never reach a client (Job.public()).
}


def paths(model: BaseModel, prefix: str = "") -> Iterator[str]:
    """Each field of `model`, a nested model's fields as `field.sub` (the model's own in turn)."""
    for name in type(model).model_fields:
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from paths(value, f"{prefix}{name}.")
        else:
            yield f"{prefix}{name}"


def a_job() -> Job:
    """A failed job with every field set (a failed job's event carries its error and its end)."""
    return Job(
        id="job-1", type="demo.steps", payload={"steps": 3}, status=JobStatus.FAILED, tenant="acme",
        user="ann", scope="p-1", parent_id="job-0", rerun_of="job-00", children=["job-2"], priority="high", attempts=2,
        max_attempts=3, timeout_s=60,
        progress=Progress(percent=40.0, step="step 4/10", message="working", details={"rows": 4},
                          updated_at="2027-01-01T10:00:03.000Z"),
        result={"rows": 10}, error=JobErrorInfo(code="E_BAD", message="bad row"), cancel_requested=False,
        created_at="2027-01-01T10:00:00.000Z", started_at="2027-01-01T10:00:01.000Z",
        attempt_started_at="2027-01-01T10:00:02.000Z", claim_id="claim-1",
        finished_at="2027-01-01T10:00:04.000Z", lease_expires_at="2027-01-01T10:01:02.000Z",
        not_before="2027-01-01T10:00:00.000Z", due_at="2027-01-01T10:02:00.000Z", dispatches=2,
        event_percent=40.0, event_attempt=2, expires_at=1_900_000_000, dead_letter_owed=2, dead_letter_unconfirmed=True,
        version=9, gone=[],
    )


def changed(job: Job, changes: dict[str, Any]) -> Job:
    data = job.model_dump()
    for path, value in changes.items():
        *parents, last = path.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[last] = value
    return Job.model_validate(data)


def value_at(job: Job, path: str) -> Any:
    value: Any = job
    for name in path.split("."):
        value = getattr(value, name)
    return value


def another(value: Any) -> Any:
    """A value of the same kind as `value` but other than it."""
    if isinstance(value, Enum):
        return next(member for member in type(value) if member != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 7
    if isinstance(value, str):
        return value + "-x"
    if isinstance(value, list):
        return [*value, "x"]
    if isinstance(value, dict):
        return {**value, "x": 1}
    raise AssertionError(f"give a_job() a value for the field that is {value!r}")


def with_another(job: Job, path: str) -> Job:
    """`job` with another value at `path`: one of the field's choices, when it has some."""
    value = value_at(job, path)
    annotation = Job.model_fields[path].annotation if path in Job.model_fields else None
    literal = get_origin(annotation) is Literal
    choices = [choice for choice in get_args(annotation) if choice != value] if literal else []
    try:
        return changed(job, {path: choices[0] if choices else another(value)})
    except ValidationError as exc:
        raise AssertionError(f"teach another() a value of {path} Job accepts: {exc}") from exc


# A field may show only in some states (an error on a failed job, a step on a running one): it
# counts as carried or shown when it is in any of these, as left out when it is in none.
STATES = (JobStatus.FAILED, JobStatus.RUNNING)


def moved(render: Callable[[Job], Any], path: str) -> list[Any]:
    """What `render` makes of a job in each of STATES, before and after `path` changes."""
    return [(render(job), render(with_another(job, path)))
            for job in (changed(a_job(), {"status": state}) for state in STATES)]


def event_of(job: Job) -> dict[str, Any]:
    (event,) = events_for_change(None, job, "2027-01-01T10:00:05.000Z")
    return event.model_dump()


def row_of(job: Job) -> str:
    return plain_table([job.public()]).splitlines()[1]


def test_a_job_sets_every_field():
    """The fields below are judged on a job where each has a value: a new one is set in a_job()."""
    job = a_job()
    unset = [path for path in paths(job) if value_at(job, path) is None]
    assert not unset, f"give a_job() a value for {unset}"
    assert not job.gone  # gone is never stored; set, it empties the payload GET shows


def test_every_job_field_is_carried_by_its_events_or_left_off_with_a_reason():
    fields = set(paths(a_job()))
    decided = set(CARRIED_BY_EVENT) | set(NOT_CARRIED_BY_EVENT) | INTERNAL_FIELDS
    assert not fields - decided, (
        f"Job's {sorted(fields - decided)}: carry each on JobEvent (chalicelib/domain/events.py, built in "
        "chalicelib/events/changes.py, listed in docs/events.md) and in CARRIED_BY_EVENT, or say why not "
        "in NOT_CARRIED_BY_EVENT")
    assert not decided - fields, f"{sorted(decided - fields)} are no fields of Job any more: drop them here"
    assert not set(CARRIED_BY_EVENT) & (set(NOT_CARRIED_BY_EVENT) | INTERNAL_FIELDS)


@pytest.mark.parametrize("path", sorted(CARRIED_BY_EVENT))
def test_a_carried_field_reaches_the_event_field_it_is_said_to(path):
    field = CARRIED_BY_EVENT[path]
    assert any(before[field] != after[field] for before, after in moved(event_of, path)), (
        f"{path} changed and the event's {field} did not")


@pytest.mark.parametrize("path", sorted(set(NOT_CARRIED_BY_EVENT) | INTERNAL_FIELDS))
def test_a_field_left_off_the_event_is_left_off(path):
    assert all(before == after for before, after in moved(event_of, path)), (
        f"the event carries {path}: move it to CARRIED_BY_EVENT, naming the event field")


def test_every_event_field_is_a_job_field_or_the_events_own_and_events_md_names_it():
    fields = set(JobEvent.model_fields)
    assert fields == set(CARRIED_BY_EVENT.values()) | EVENT_OWN, sorted(fields ^ (set(CARRIED_BY_EVENT.values())
                                                                             | EVENT_OWN))
    detail = (ROOT / "docs" / "events.md").read_text().split("Detail:", 1)[1].split("\n\n", 1)[0]
    named = set(re.findall(r"`(\w+)`", detail))
    assert fields <= named, f"docs/events.md's Detail does not name {sorted(fields - named)}"


def test_the_erp_outbound_example_shows_every_key_an_event_carries():
    """Every key is on every event (`null` where it does not apply): a consumer built from the
    example meets no key it does not show. `finished_at` was missing from it."""
    text = (ROOT / "docs" / "events.md").read_text().split("**`erp-outbound` messages**", 1)[1]
    example = text.split("```json\n", 1)[1].split("```", 1)[0]
    shown = set(re.findall(r'"(\w+)":', example.split('"detail":', 1)[1]))
    (event,) = events_for_change(None, a_job(), "2027-01-01T10:00:05.000Z")
    published = set(json.loads(event.model_dump_json()))  # the Detail the EventBridge adapter sends
    assert shown == published, sorted(shown ^ published)


def test_every_public_job_field_is_shown_by_jobpipe_status_or_left_out_with_a_reason():
    public = {path for path in paths(a_job()) if path.split(".")[0] not in INTERNAL_FIELDS}
    decided = set(SHOWN_BY_STATUS) | set(NOT_SHOWN_BY_STATUS)
    assert not public - decided, (
        f"Job's {sorted(public - decided)}: show each in `jobpipe status` (jobpipe_client/progress_view.py "
        "COLUMNS, job_row) and in SHOWN_BY_STATUS, or say why not in NOT_SHOWN_BY_STATUS")
    assert not decided - public, f"{sorted(decided - public)} are no public fields of Job: drop them here"


@pytest.mark.parametrize("path", sorted(SHOWN_BY_STATUS))
def test_a_shown_field_is_in_its_column(path):
    from jobpipe_client.progress_view import COLUMNS

    column = COLUMNS.index(SHOWN_BY_STATUS[path])

    def cell(job: Job) -> str:  # every column but the last (`detail`, spaces and all) is one word of the line
        return row_of(job).split(None, len(COLUMNS) - 1)[column]

    assert any(before != after for before, after in moved(cell, path)), (
        f"{path} changed and `jobpipe status`'s {SHOWN_BY_STATUS[path]} did not")


@pytest.mark.parametrize("path", sorted(NOT_SHOWN_BY_STATUS))
def test_a_field_left_out_of_jobpipe_status_is_left_out(path):
    assert all(before == after for before, after in moved(row_of, path)), (
        f"`jobpipe status` shows {path}: move it to SHOWN_BY_STATUS, naming its column")
