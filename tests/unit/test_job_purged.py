"""The answer to a keyed replay whose job was removed: one builder, the API's and the fake API's."""
from __future__ import annotations

from datetime import datetime, timezone

from chalicelib.domain.errors import JobPurgedError

KEY_EXPIRES_AT = int(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc).timestamp())


def test_a_purged_jobs_refusal_names_the_job_and_when_its_key_is_free():
    error = JobPurgedError.of("j-1", KEY_EXPIRES_AT)
    assert error.code == "job_purged"
    assert error.details == {"job_id": "j-1", "key_expires_at": "2026-01-02T03:04:05.000Z"}
    assert error.message == (
        "job j-1, made with this Idempotency-Key, has finished and been removed; the key makes no other job "
        "until 2026-01-02T03:04:05.000Z: to run the request again, submit it under a new key")


def test_a_purged_tasks_refusal_speaks_of_the_task_an_operator_sends():
    """A maintenance task is started by a POST with no body: the refusal says to send it again
    under a new key (there is nothing to submit), of a task, with its time as the refusal held it."""
    error = JobPurgedError.of("t-1", "2026-01-02T03:04:05.000Z", what="task")
    assert error.details == {"job_id": "t-1", "key_expires_at": "2026-01-02T03:04:05.000Z"}
    assert error.message == (
        "task t-1, made with this Idempotency-Key, has finished and been removed; the key makes no other task "
        "until 2026-01-02T03:04:05.000Z: to run the request again, send it under a new key")
