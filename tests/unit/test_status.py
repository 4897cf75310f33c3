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
