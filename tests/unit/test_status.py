import json

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


def test_a_time_is_answered_in_utc_with_its_milliseconds_so_text_order_is_time_order():
    """api.md: every time an answer shows is UTC, ISO 8601 with milliseconds and `Z`."""
    from datetime import datetime, timedelta, timezone

    from chalicelib.domain.job import isoformat

    moment = datetime(2027, 1, 31, 9, 0, 0, 678_901, tzinfo=timezone.utc)
    assert isoformat(moment) == "2027-01-31T09:00:00.678Z"
    assert isoformat(moment.astimezone(timezone(timedelta(hours=-5)))) == "2027-01-31T09:00:00.678Z"
    assert isoformat(moment.replace(microsecond=999_999)) == "2027-01-31T09:00:00.999Z"
    assert isoformat(moment.replace(microsecond=999_000)) == "2027-01-31T09:00:00.999Z"
    moments = [moment + timedelta(microseconds=step) for step in (0, 1_000, 21_000, 321_000, 1_000_000)]
    assert sorted(isoformat(m) for m in moments) == [isoformat(m) for m in moments]


def test_only_a_running_job_shows_an_attempt_start():
    """api.md: `attempt_started_at`, while an attempt runs, when that attempt started; `null`
    otherwise, though the record keeps the last attempt's start."""
    started = "2026-01-01T00:05:00.000Z"
    assert _running(attempts=1, attempt_started_at=started).public()["attempt_started_at"] == started
    for status in (JobStatus.RETRYING, JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELED):
        ended = _running(attempts=1, started_at=started, attempt_started_at=started).model_copy(
            update={"status": status})
        assert ended.current_attempt_start() is None
        assert ended.public()["attempt_started_at"] is None, status


def test_a_field_whose_object_is_gone_is_answered_null_and_named():
    """api.md: a payload or result whose object no longer exists is answered `null` and named
    in `gone`; the key is left out while nothing is gone."""
    whole = _running(payload={"rows": 3}, result=None)
    assert "gone" not in whole.public() and whole.public()["payload"] == {"rows": 3}
    partly = whole.model_copy(update={"gone": ["payload"]})
    shown = partly.public()
    assert shown["payload"] is None and shown["gone"] == ["payload"]


def test_a_job_not_reported_on_shows_no_progress_and_a_run_no_start_end_or_error_it_lacks():
    """api.md: a job's progress is its last report: one with none yet is answered percent 0 with
    `step`, `message`, `details` and `updated_at` null, not as an empty report made at no time;
    a run read from a record that names no start, end or error (one written by its end alone)
    shows each null, which a client tells from a time."""
    from chalicelib.domain.job import Run

    queued = _running().model_copy(update={"status": JobStatus.QUEUED})
    assert queued.public()["progress"] == {"percent": 0, "step": None, "message": None, "details": None,
                                           "updated_at": None}
    bare = Run.model_validate({"job_id": "j", "attempt": 1, "status": "failed"})
    assert bare.model_dump(mode="json") == {"job_id": "j", "attempt": 1, "status": "failed", "started_at": None,
                                            "finished_at": None, "error": None}


def test_a_whole_percent_is_answered_as_an_integer_and_the_job_as_json_data():
    """job.py's Percent: a whole percent is answered `50`, not `50.0` (a reader decoding it into
    an integer, as Go's and Rust's JSON libraries do, refuses `50.0`), any other as it is; the
    answer is JSON data throughout, the status its text."""
    from chalicelib.domain.job import Progress

    shown = _running(progress=Progress(percent=50.0)).public()
    assert json.dumps(shown["progress"]["percent"]) == "50" and type(shown["status"]) is str
    assert json.dumps(_running(progress=Progress(percent=33.33)).public()["progress"]["percent"]) == "33.33"


def test_an_id_a_refusal_echoes_is_cut_past_the_longest_id_with_a_mark():
    from chalicelib.defaults import MAX_JOB_ID_CHARS
    from chalicelib.domain.job import shown_id

    longest = "a" * MAX_JOB_ID_CHARS
    assert shown_id(longest) == longest
    assert shown_id(longest + "bc") == longest + "…"


def test_a_jobs_id_is_a_random_uuid_in_its_canonical_text():
    """migrating.md: ids are UUID strings made by jobpipe. A client stores and compares them as
    such (a uuid column, Go's and Rust's parsers print the canonical form back): lowercase,
    hyphenated, 36 characters, so the id it reads back is the one it was given; random (version
    4), so no two submissions share one."""
    import uuid

    from chalicelib.domain.job import is_plausible_job_id, new_job_id

    made = [new_job_id() for _ in range(3)]
    assert [str(uuid.UUID(i)) for i in made] == made
    assert {uuid.UUID(i).version for i in made} == {4} and len(set(made)) == 3
    assert all(is_plausible_job_id(i) for i in made)


def test_a_childs_id_is_the_one_every_version_derives_from_its_parent_attempt_and_place():
    """A retried parent finds the children its earlier attempts made by their ids (a spawn takes
    on an earlier attempt's child instead of running its work twice), and a read guesses a
    chain's next link by it: the ids earlier versions stored must be the ones this one derives.
    These are what the derivation gave since child jobs were introduced (a UUIDv5 of parent id,
    attempt and place), each input telling ids apart."""
    from chalicelib.domain.job import child_job_id

    parent = "7d1c8a52-0a7e-4f57-9a43-2c3f1e0b6d19"
    assert child_job_id(parent, 1, 1) == "c95cbf5e-31c1-532c-8194-8e9464e375c4"
    assert child_job_id(parent, 2, 1) == "3e246283-58f0-5f27-9c55-e93348d09524"
    assert child_job_id(parent, 1, 2) == "b327587b-ffa6-5f3d-a2be-374e8911f90c"


def test_a_record_is_timed_by_the_latest_time_it_names():
    """A stream record with no time of its own (an emulator's) is timed by the latest time its
    job names, the same on every delivery and replay; a value that is no time is passed by."""
    job = _running(started_at="2026-01-01T00:00:01.000Z", attempt_started_at="2026-01-01T00:05:00.000Z")
    assert job.last_recorded_time() == "2026-01-01T00:05:00.000Z"
    reported = job.model_copy(update={"progress": job.progress.model_copy(update={"updated_at": "2026-01-01T00:06:00.000Z"}),
                                      "finished_at": "not a time"})
    assert reported.last_recorded_time() == "2026-01-01T00:06:00.000Z"
    assert _running().model_copy(update={"created_at": ""}).last_recorded_time() is None


def test_a_record_is_timed_by_its_creation_its_first_start_or_its_end_whichever_is_latest():
    """Every time the record names counts, not only an attempt's start and a report's: a job
    just created is timed by its creation, one started by a version that kept no attempt start
    by its first start, and a finished one by its end."""
    assert _running().last_recorded_time() == "2026-01-01T00:00:00.000Z"
    assert _running(started_at="2026-01-01T00:00:01.000Z").last_recorded_time() == "2026-01-01T00:00:01.000Z"
    ended = _running(started_at="2026-01-01T00:00:01.000Z", attempt_started_at="2026-01-01T00:05:00.000Z",
                     finished_at="2026-01-01T00:07:00.000Z")
    assert ended.last_recorded_time() == "2026-01-01T00:07:00.000Z"


def test_a_job_not_running_shows_only_the_runs_recorded():
    """A run is recorded when its attempt ends; only a running job adds the attempt under way,
    read from the job: a queued, retrying or finished one adds none."""
    from chalicelib.domain.job import Run

    first = Run(job_id="j", attempt=1, status=JobStatus.FAILED)
    for status, attempts in ((JobStatus.QUEUED, 0), (JobStatus.RETRYING, 1), (JobStatus.COMPLETED, 2)):
        job = _running(attempts=attempts).model_copy(update={"status": status})
        recorded = [first] if attempts else []
        assert job.runs(recorded) == recorded, status
