"""The request bodies and query parameters the API accepts (chalicelib/api/requests.py), read
as the routes read them: what each takes, what it refuses, and what it says."""
from __future__ import annotations

import time

import pytest
from pydantic import ValidationError

from chalicelib.api.requests import ListArtifactsQuery, ListJobsQuery, SubmitJobRequest
from chalicelib.defaults import ARTIFACT_PAGE, LISTING_PAGE, MAX_CURSOR_CHARS


def submit(**fields) -> SubmitJobRequest:
    return SubmitJobRequest(type="demo.steps", **fields)


def refusal(**fields) -> str:
    with pytest.raises(ValidationError) as refused:
        submit(**fields)
    return str(refused.value)


@pytest.mark.parametrize("run_at", ["2030-01-01T00:00:00Z", "2030-01-01t00:00:00Z", "2030-01-01 00:00:00+02:00"])
def test_run_at_is_iso_8601_with_either_separator_iso_allows(run_at):
    assert submit(run_at=run_at).run_at.year == 2030


@pytest.mark.parametrize("seconds", [60, 60_000])
def test_run_at_given_as_epoch_digits_is_refused_even_within_the_schedule_bound(seconds):
    """Digits are a guess at seconds or milliseconds; a time a minute ahead is no exception."""
    for run_at in (str(int(time.time()) + seconds), int(time.time()) + seconds):
        assert "run_at must be an ISO 8601 date and time with a zone, as text" in refusal(run_at=run_at)


@pytest.mark.parametrize("delay", [True, "10", 10.0, -1])
def test_a_delay_is_a_whole_number_of_seconds_from_zero(delay):
    assert "delay_seconds" in refusal(delay_seconds=delay)


def test_run_at_and_a_delay_together_are_refused():
    assert "give either run_at or delay_seconds, not both" in refusal(run_at="2030-01-01T00:00:00Z", delay_seconds=5)


@pytest.mark.parametrize("priority", ["high", "normal", "low"])
def test_each_priority_is_taken(priority):
    assert submit(priority=priority).priority == priority


@pytest.mark.parametrize("priority", ["urgent", "HIGH", ""])
def test_another_priority_is_refused(priority):
    assert "priority" in refusal(priority=priority)


@pytest.mark.parametrize("payload", [[1, 2], "text", 3])
def test_a_payload_is_an_object(payload):
    assert "payload" in refusal(payload=payload)


def test_a_type_filter_is_kept_and_a_name_no_type_can_have_is_refused_saying_what_names_are():
    assert ListJobsQuery(type="demo.steps").type == "demo.steps"
    with pytest.raises(ValidationError) as refused:
        ListJobsQuery(type="Demo Steps")
    assert "a job type's name is dotted lower-case words" in str(refused.value)


def test_pages_default_to_the_defaults_page_sizes():
    assert (ListJobsQuery().limit, ListArtifactsQuery().limit) == (LISTING_PAGE, ARTIFACT_PAGE)


def test_a_run_at_given_as_null_is_no_run_at():
    assert submit(run_at=None, delay_seconds=5).run_at is None


@pytest.mark.parametrize("query", [ListJobsQuery, ListArtifactsQuery])
def test_a_cursor_at_the_bound_is_taken_and_one_past_it_refused(query):
    assert query(cursor="c" * MAX_CURSOR_CHARS).cursor == "c" * MAX_CURSOR_CHARS
    with pytest.raises(ValidationError, match="cursor"):
        query(cursor="c" * (MAX_CURSOR_CHARS + 1))
