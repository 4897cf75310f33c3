import pytest

from chalicelib.domain.status import TERMINAL, TRANSITIONS, JobStatus, can_transition

ALLOWED = {
    ("queued", "running"),
    ("queued", "canceled"),
    ("queued", "failed"),  # its message was dead-lettered
    ("running", "completed"),
    ("running", "failed"),
    ("running", "canceled"),
    ("running", "retrying"),
    ("retrying", "running"),
    ("retrying", "canceled"),
    ("retrying", "failed"),
}


@pytest.mark.parametrize("current", list(JobStatus))
@pytest.mark.parametrize("target", list(JobStatus))
def test_transition_table_is_exactly_the_documented_one(current, target):
    assert can_transition(current, target) == ((current.value, target.value) in ALLOWED)


def test_terminal_statuses_have_no_way_out():
    for status in TERMINAL:
        assert status.is_terminal
        assert TRANSITIONS[status] == frozenset()
    assert not JobStatus.RETRYING.is_terminal


def test_status_is_a_string_enum():
    assert JobStatus("queued") is JobStatus.QUEUED
    assert JobStatus.RUNNING == "running"


def _running(**fields):
    from chalicelib.domain.job import Job

    return Job(id="j", type="t", tenant="a", user="u", created_at="2026-01-01T00:00:00.000Z",
               status=JobStatus.RUNNING, **fields)


def test_an_attempts_event_mark_is_its_own_or_none():
    """A mark written without its attempt was written by a version that marked every attempt it
    started: the running one's. A mark of another attempt is no mark of this one."""
    assert _running(attempts=2, event_percent=40.0).event_mark == 40.0
    assert _running(attempts=2, event_percent=40.0, event_attempt=2).event_mark == 40.0
    assert _running(attempts=2, event_percent=40.0, event_attempt=1).event_mark is None


def test_a_running_attempt_shows_its_own_start_and_one_run():
    from chalicelib.domain.job import Run

    job = _running(attempts=2, started_at="2026-01-01T00:00:01.000Z", attempt_started_at="2026-01-01T00:05:00.000Z")
    assert job.current_attempt_start() == "2026-01-01T00:05:00.000Z"
    assert _running(attempts=1, started_at="2026-01-01T00:00:01.000Z").current_attempt_start() == \
        "2026-01-01T00:00:01.000Z"  # started by a version that kept no attempt start
    first = Run(job_id="j", attempt=1, status=JobStatus.FAILED)
    assert [(r.attempt, r.status) for r in job.runs([first])] == [(1, JobStatus.FAILED), (2, JobStatus.RUNNING)]
    claimed = Run(job_id="j", attempt=2, status=JobStatus.RUNNING, started_at="2026-01-01T00:05:00.000Z")
    assert job.runs([first, claimed]) == [first, claimed]  # its run record written at its claim (older versions)
