"""Each refusal the API words, built once beside its error class: the API raises it, and the
fake API the client's tests run against answers with the same builder, word for word."""
from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, ValidationError

from chalicelib.defaults import MAX_LOC_PART_CHARS, MAX_PROBLEMS_LISTED

from chalicelib.domain.errors import (
    ArtifactNotFoundError,
    BlobNotFoundError,
    DeadLetterOwedError,
    IdempotencyConflictError,
    InvalidPayloadError,
    JobAlreadyFinishedError,
    JobNotFinishedError,
    LetterUnconfirmedError,
    NextAttemptUnsentError,
    NotRedrivableError,
    RecordTooLargeError,
    WebhookDeliveryError,
    validation_problems,
)


def test_a_cancel_of_a_finished_job_names_it_and_its_status():
    error = JobAlreadyFinishedError.of("j-1", "completed")
    assert (error.code, error.message, error.details) == (
        "job_finished", "job j-1 is already completed", {"status": "completed"})


def test_a_missing_artifact_is_named_cut_to_128_characters():
    error = ArtifactNotFoundError.of("j-1", "report.txt")
    assert (error.code, error.message) == ("artifact_not_found", "job j-1 has no artifact 'report.txt'")
    assert ArtifactNotFoundError.of("j-1", "r" * 200).message == f"job j-1 has no artifact {'r' * 128!r}"


def test_a_rerun_of_an_unfinished_job_says_which_jobs_run_again():
    error = JobNotFinishedError.of("j-1", "running")
    assert (error.code, error.details) == ("job_not_finished", {"status": "running"})
    assert error.message == ("job j-1 is running: only a finished job (completed, failed or canceled) runs "
                             "again; wait for it to end, or cancel it first")


def test_a_cancel_or_a_rerun_of_a_maintenance_task_speaks_of_the_task():
    """An operator cancels and reruns maintenance tasks, which are jobs of the system's: the
    refusals name a task where a tenant's name a job."""
    finished = JobAlreadyFinishedError.of("t-1", "failed", what="task")
    assert (finished.message, finished.details) == ("task t-1 is already failed", {"status": "failed"})
    unfinished = JobNotFinishedError.of("t-1", "queued", what="task")
    assert (unfinished.message, unfinished.details) == (
        "task t-1 is queued: only a finished task (completed, failed or canceled) runs again; wait for it to "
        "end, or cancel it first", {"status": "queued"})


def test_a_key_used_with_another_request_is_a_conflict():
    error = IdempotencyConflictError.of()
    assert (error.code, error.message) == (
        "idempotency_conflict", "this Idempotency-Key was already used for a different request (another body, or a rerun of another job); send this one under a new key")


def test_a_rerun_whose_payload_object_is_gone_says_to_submit_it_anew():
    error = BlobNotFoundError.payload_gone("j-1")
    assert error.code == "blob_not_found"
    assert error.message == ("the payload of job j-1 is gone from the bucket (deleted by hand or by a lifecycle "
                             "rule): it cannot run again; submit the payload anew")


def test_a_redrive_of_a_dead_letter_queue_of_descriptions_names_the_queue():
    error = NotRedrivableError.of("stream_failure")
    assert (error.code, error.details) == ("not_redrivable", {"queue": "stream_failure"})
    assert error.message == ("messages on the stream_failure dead-letter queue cannot be sent again as they are; "
                             "see docs/reliability.md")


def test_a_delete_of_a_failed_batchs_description_names_the_queue_and_who_removes_it():
    error = NotRedrivableError.deleting("stream_failure")
    assert (error.code, error.details) == ("not_redrivable", {"queue": "stream_failure"})
    assert error.message == (
        "this letter on the stream_failure dead-letter queue describes a failed stream batch, which the "
        "reconciler replays and removes itself; see docs/reliability.md")


@pytest.mark.parametrize("error, code", [
    (LetterUnconfirmedError("the letter's answer was lost"), "queue_unavailable"),
    (DeadLetterOwedError("the queue did not answer", job=None), "queue_unavailable"),
    (NextAttemptUnsentError("the queue did not answer", job=None), "queue_unavailable"),
    (RecordTooLargeError("no room in the item"), "store_unavailable"),
], ids=["letter_unconfirmed", "dead_letter_owed", "next_attempt_unsent", "record_too_large"])
def test_each_kind_of_a_service_failure_is_answered_as_that_services(error, code):
    """The finer kinds of a queue's or the store's failure (which the worker and the reconciler
    tell apart) are each still that service's failure to whatever does not: the API answers them
    503 with the service's code, which tells a client to try again, not 500 `internal_error`."""
    from chalicelib.api.errors import error_response

    answer = error_response(error)
    assert (answer.status_code, answer.body["error"]["code"]) == (503, code)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def problems_of(data: dict) -> tuple[str, list]:
    with pytest.raises(ValidationError) as refused:
        Strict.model_validate(data)
    return validation_problems(refused.value, "request is not valid")


def test_a_refusal_lists_every_problem_up_to_its_limit_and_counts_them_past_it():
    """Up to MAX_PROBLEMS_LISTED problems, each is listed and the message is the plain one; one
    more, and the message says how many there were and that the first are listed."""
    message, listed = problems_of({f"k{i}": 0 for i in range(MAX_PROBLEMS_LISTED)})
    assert (message, len(listed)) == ("request is not valid", MAX_PROBLEMS_LISTED)
    assert listed[0] == {"loc": ["k0"], "msg": "Extra inputs are not permitted", "type": "extra_forbidden"}
    message, listed = problems_of({f"k{i}": 0 for i in range(MAX_PROBLEMS_LISTED + 1)})
    assert len(listed) == MAX_PROBLEMS_LISTED
    assert message == (f"request is not valid: {MAX_PROBLEMS_LISTED + 1:,} problems, "
                       f"the first {MAX_PROBLEMS_LISTED} listed")


def test_a_problems_key_is_named_whole_up_to_its_limit_and_by_its_first_characters_past_it():
    whole, longer = "k" * MAX_LOC_PART_CHARS, "k" * MAX_LOC_PART_CHARS + "tail"
    _, listed = problems_of({whole: 0, longer: 0})
    assert [problem["loc"] for problem in listed] == [[whole], ["k" * MAX_LOC_PART_CHARS + "…"]]


def test_a_refused_payloads_text_names_each_field_it_can_read_and_the_payload_for_the_whole():
    """What a job's error says of a spawn refused so (it has no details): each problem as
    `field: why`, `payload` for the payload as a whole; details of another shape (an author's
    own InvalidPayloadError) leave the message as it is rather than failing the outcome."""
    error = InvalidPayloadError("payload is not valid", details=[
        {"loc": ["rows", 2, "sku"], "msg": "Field required"}, {"loc": [], "msg": "too large"}])
    assert error.with_fields() == "payload is not valid: rows.2.sku: Field required; payload: too large"
    for details in (None, [], ["row 3 is bad"], [{"loc": ["rows"]}], [{"msg": "no place"}]):
        assert InvalidPayloadError("payload is not valid", details=details).with_fields() == "payload is not valid"


def test_a_webhook_that_gave_no_answer_in_time_is_told_its_limit_as_a_person_reads_it():
    """Every sender words it alike; a limit worked out as a float reads `10 s`, not `10.0 s`."""
    assert WebhookDeliveryError.unanswered(10.0).message == "webhook did not answer within 10 s"
    assert WebhookDeliveryError.unanswered(2.5).message == "webhook did not answer within 2.5 s"
