"""Domain errors. Adapters translate AWS errors into these; the API maps them to HTTP in one place."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Optional

from chalicelib.defaults import MAX_ANSWER_BYTES, MAX_LABEL_CHARS, MAX_LOC_PART_CHARS, MAX_PROBLEMS_LISTED
from chalicelib.domain.job import isoformat
from chalicelib.domain.numbers import shown_number

if TYPE_CHECKING:
    from pydantic import ValidationError


class JobpipeError(Exception):
    """Base of every error jobpipe raises on purpose."""

    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


def describe(exc: BaseException) -> str:
    """`Type: text` of any exception; its type name alone when its `str()` is empty or raises
    (an author's exception with a broken __str__ must not keep an outcome from being recorded)."""
    try:
        text = str(exc)
    except Exception:
        text = ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def text_of(value: Any) -> str:
    """`value` as a failure's text (a handler error's message, fail_job's), which is never
    refused: one whose `str()` raises is named by its type, as `describe` names an exception."""
    try:
        return str(value)
    except Exception:
        return type(value).__name__


def describe_failure(exc: Exception) -> str:
    """`code: message` of a jobpipe error, `Type: text` (the text cut to 200 characters) of any
    other, as `describe` words it: a reconciler pass's error, a clean-up's failed purge."""
    if isinstance(exc, JobpipeError):
        return f"{exc.code}: {exc.message}"
    return describe(exc)[: len(type(exc).__name__) + len(": ") + 200]


def validation_problems(exc: "ValidationError", message: str) -> tuple[str, list[dict[str, Any]]]:
    """(message, details) of a refusal of what pydantic found wrong: each problem as
    `{"loc", "msg", "type"}`, the first MAX_PROBLEMS_LISTED of them, each key in a `loc` cut to
    MAX_LOC_PART_CHARS characters and `…`; past that many, `message` says how many there were."""
    problems = [
        {"loc": [_cut(part) for part in err["loc"]], "msg": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)[:MAX_PROBLEMS_LISTED]
    ]
    count = exc.error_count()
    if count > MAX_PROBLEMS_LISTED:
        message = f"{message}: {shown_number(count)} problems, the first {MAX_PROBLEMS_LISTED} listed"
    return message, problems


def _cut(part: Any) -> Any:
    if isinstance(part, str) and len(part) > MAX_LOC_PART_CHARS:
        return part[:MAX_LOC_PART_CHARS] + "…"
    return part


class JobNotFoundError(JobpipeError):
    code = "job_not_found"


class JobPurgedError(JobpipeError):
    """A submission replayed under an Idempotency-Key whose job was removed (its retention ended,
    the clean-up purged it) while the key is still kept: the request was accepted once, and the
    key makes no other job until it expires. `details`: `job_id`, `key_expires_at`."""

    code = "job_purged"

    @classmethod
    def of(cls, job_id: str, key_expires_at: int | str, *, what: str = "job") -> "JobPurgedError":
        """The refusal of a replay whose key made `job_id` and is kept until `key_expires_at`
        (epoch seconds, or the ISO 8601 time a refusal's details hold): what the API answers,
        and the client's tests' fake of it. `what` the job is to the caller (a maintenance task is
        a job of the system's)."""
        free_at = (key_expires_at if isinstance(key_expires_at, str)
                   else isoformat(datetime.fromtimestamp(key_expires_at, timezone.utc)))
        again = "submit it" if what == "job" else "send it"
        return cls(f"{what} {job_id}, made with this Idempotency-Key, has finished and been removed; the key "
                   f"makes no other {what} until {free_at}: to run the request again, {again} under a new key",
                   details={"job_id": job_id, "key_expires_at": free_at})


class UnknownJobTypeError(JobpipeError):
    code = "unknown_job_type"


class InvalidPayloadError(JobpipeError):
    """`details`: pydantic's errors, each `{"loc", "msg", "type"}`."""

    code = "invalid_payload"

    def with_fields(self) -> str:
        """The message followed by each field and what is wrong with it (`rows: Input should be
        ...`): what a job's `error`, which has no details, says of a spawn refused so."""
        problems = [f"{'.'.join(str(part) for part in d['loc']) or 'payload'}: {d['msg']}"
                    for d in self.details or () if isinstance(d, dict) and "loc" in d and "msg" in d]
        return f"{self.message}: {'; '.join(problems)}" if problems else self.message


class InvalidRequestError(JobpipeError):
    code = "invalid_request"


class PayloadTooLargeError(JobpipeError):
    """A request, or the job it would make, is larger than the API can take or answer."""

    code = "payload_too_large"

    @classmethod
    def unanswerable(cls, size: int) -> "PayloadTooLargeError":
        """The refusal of a job that would be `size` bytes as the API answers it, past what one
        answer carries (MAX_ANSWER_BYTES)."""
        return cls(f"the job would be {shown_number(size)} bytes as the API answers it, past the "
                   f"{shown_number(MAX_ANSWER_BYTES)} it can return (Lambda's 6 MB, with JSON's escapes: a "
                   "non-ASCII character takes 7 bytes); pass a reference to large input (an object in S3) instead",
                   details={"answer_bytes": size, "limit": MAX_ANSWER_BYTES})


class InvalidTransitionError(JobpipeError):
    """The transition table does not allow the requested status change."""

    code = "invalid_transition"


class StaleJobError(JobpipeError):
    """A conditional write lost a race: the job is no longer in the expected status/version."""

    code = "conflict"


class ProgressRejectedError(JobpipeError):
    """A progress report would move the percent backwards, or the attempt is no longer current."""

    code = "progress_rejected"


class IdempotencyConflictError(JobpipeError):
    """The Idempotency-Key was used before for a different request: another body, or a rerun of
    another job (whose body, empty, is the same)."""

    code = "idempotency_conflict"

    @classmethod
    def of(cls, *, what: str = "job") -> "IdempotencyConflictError":
        """The refusal of a request under a key kept for another one: what the API answers, and
        the client's tests' fake of it. `what` the request starts: a `job` (its body is the
        request) or a maintenance `task` (no body: its task and query parameters are)."""
        if what == "task":
            return cls("this Idempotency-Key was already used for a different request (another task, other "
                       "parameters, or a task's rerun where this is a start, or the other way round); send this "
                       "one under a new key")
        return cls("this Idempotency-Key was already used for a different request (another body, or a rerun of another job); send this one under a new key")


class JobAlreadyFinishedError(JobpipeError):
    """A cancel of a job that has ended. `details`: `status`."""

    code = "job_finished"

    @classmethod
    def of(cls, job_id: str, status: str, *, what: str = "job") -> "JobAlreadyFinishedError":
        """The refusal of a cancel of `job_id`, ended as `status` (completed, failed, canceled);
        `what` it is to the caller (a maintenance task is a job of the system's)."""
        return cls(f"{what} {job_id} is already {status}", details={"status": status})


class JobNotFinishedError(JobpipeError):
    """A rerun of a job that has not ended (queued, running, retrying): only a finished job is
    run again. `details`: `status`."""

    code = "job_not_finished"

    @classmethod
    def of(cls, job_id: str, status: str, *, what: str = "job") -> "JobNotFinishedError":
        """The refusal of a rerun of `job_id`, still `status` (queued, running, retrying); `what`
        it is to the caller (a maintenance task is a job of the system's)."""
        return cls(f"{what} {job_id} is {status}: only a finished {what} (completed, failed or canceled) runs "
                   "again; wait for it to end, or cancel it first", details={"status": status})


class QueueUnavailableError(JobpipeError):
    code = "queue_unavailable"


class LetterUnconfirmedError(QueueUnavailableError):
    """A dead letter was sent but its answer never came (a read timeout, a connection closed
    under it): it may be on its queue. Sent again, it could be parked twice, so it is left owed
    for the reconciler, which looks on the dead-letter queue before parking an owed letter."""


class DeadLetterOwedError(QueueUnavailableError):
    """A job was failed (the write landed) but its dead letter could not be sent: `job`, as
    written, keeps the attempt whose letter is owed, and that attempt's message, delivered
    again, parks it."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class NextAttemptUnsentError(QueueUnavailableError):
    """A job's attempt failed and the job was written retrying (the write landed), but the
    message for its next attempt could not be sent: `job`, as written, waits for it, and the
    failed attempt's message, delivered again, starts that attempt (the reconciler sends it once
    the job is due, if no delivery comes)."""

    def __init__(self, message: str, *, job: Any) -> None:
        super().__init__(message)
        self.job = job


class StoreUnavailableError(JobpipeError):
    code = "store_unavailable"


class RecordTooLargeError(StoreUnavailableError):
    """The job's record has no room for a write (DynamoDB's 400 KB item): its progress message
    beside a large payload and result. The write itself is not retried as it is."""


class JobCancelledError(JobpipeError):
    """Raised inside a handler (by ctx.progress, ctx.check_cancelled, ctx.spawn) when a cancel
    was requested; a job store refuses to make a child of a job whose cancel was requested with it."""

    code = "canceled"


class AttemptEndedError(JobpipeError):
    """Raised by a job context used to write (progress, spawn, artifact, complete, fail) after
    its attempt ended: a context kept past the handler's return changes nothing; and by its
    spawn and its complete once the handler's fail_job decided the job fails. A store
    refuses a child or an artifact of an attempt that is no longer the job's running one with
    it too (`refusing`): a worker that lost its lease and woke after the next attempt started."""

    code = "attempt_ended"

    @classmethod
    def refusing(cls, job_id: str, attempt: int, refused: str) -> "AttemptEndedError":
        """A store's refusal of a write for an attempt that is over: `refused` says what was
        not written ("child <id> is not spawned", "artifact <name> is not stored")."""
        return cls(f"attempt {attempt} of job {job_id} is no longer running: {refused}")


def error_code(code: Any, default: str) -> str:
    """A handler's failure code as the job's error keeps it and consumers branch on it: text
    (`code=404`, `code=response.status_code` is "404"), never empty or None (`default` then:
    no code given is not the code "None"), never a paragraph (cut to MAX_LABEL_CHARS)."""
    if code is None:
        return default
    try:
        text = str(code).strip()
    except Exception:  # an object whose __str__ is broken names no code
        text = ""
    return text[:MAX_LABEL_CHARS] or default


class HandlerError(JobpipeError):
    """Base of the errors a job handler raises to end an attempt; `code`, when given, is the
    failure's code on the job's record instead of the class's (`error_code`: as text)."""

    def __init__(self, message: str, *, code: Any = None, details: Any = None) -> None:
        super().__init__(message, details=details)
        if code is not None:
            self.code = error_code(code, type(self).code)


class RetryableJobError(HandlerError):
    """Raise from a handler to fail this attempt and retry (while attempts remain)."""

    code = "retryable_error"


class FatalJobError(HandlerError):
    """Raise from a handler to fail the job now, without retrying."""

    code = "fatal_error"


class JobTimeoutError(RetryableJobError):
    code = "timeout"

    @staticmethod
    def exceeded(timeout_s: float, over_s: Optional[float] = None) -> str:
        """What an attempt past its handler's `timeout_s` says, `over_s` how long the handler
        went on after it (when it did): every timeout's message starts so."""
        said = f"handler exceeded its timeout of {shown_number(timeout_s)} s"
        return said if over_s is None else f"{said} and went on for {over_s:.0f} s"


class TooManyChildrenError(FatalJobError):
    """A spawn past the children a job may list (defaults.MAX_CHILDREN): the job fails, not
    retried, since its list of children only grows."""

    code = "too_many_children"


class AnswerFullError(FatalJobError):
    """A spawn whose child's id would take its parent's answer (GET /jobs/{id}, a listing page
    holding it) past what the API returns beside what the parent holds: its payload, progress
    and children (defaults.MAX_ANSWER_BYTES, less SPAWN_ANSWER_ROOM_BYTES kept for the job's
    outcome). No child is made and, uncaught, the job fails, not retried, since its next attempt
    holds the same payload and its list of children only grows."""

    code = "answer_full"


class PayloadTooDeepError(FatalJobError):
    """A spawn whose payload nests deeper than a submitted one may (defaults.MAX_JSON_DEPTH, the
    body's envelope one of its levels): no child is made and, uncaught, the job fails, not
    retried, since its handler builds the same payload again."""

    code = "payload_too_deep"


class PayloadGoneError(FatalJobError):
    """A claimed job whose claim-checked payload object is gone (deleted by hand or by a bucket
    rule): the attempt fails for good, since no attempt can ever read the payload again."""

    code = "payload_gone"

    @classmethod
    def of(cls, job_id: str) -> "PayloadGoneError":
        return cls(f"the payload of job {job_id} is gone from the bucket (deleted by hand or by a "
                   "lifecycle rule): no attempt can run it")


class RecordFullError(FatalJobError):
    """A spawn its parent's record has no room to list (DynamoDB's 400 KB item, which also holds
    the job's payload, progress and children): the job fails, not retried, since its next
    attempt lists the same children and its handler reports the same progress."""

    code = "record_full"


class ChildPlaceTakenError(JobpipeError):
    """A spawn's place (its index in the attempt) holds a child of another request: one an
    earlier spawn of the attempt made though the store did not answer it. That child stays the
    job's; the spawn is made at the next place. Never reaches a handler."""

    code = "child_place_taken"

    def __init__(self, message: str, *, child_id: str) -> None:
        super().__init__(message)
        self.child_id = child_id


class EventPublishError(JobpipeError):
    """Some events could not be published after retries."""

    code = "event_publish_failed"

    def __init__(self, message: str, *, unpublished: list[str] | None = None) -> None:
        super().__init__(message, details={"unpublished": unpublished or []})
        self.unpublished = unpublished or []


class WebhookDeliveryError(JobpipeError):
    code = "webhook_delivery_failed"

    @classmethod
    def unanswered(cls, limit_s: float) -> "WebhookDeliveryError":
        """The webhook gave no whole answer within `limit_s` (each sender says it alike)."""
        return cls(f"webhook did not answer within {shown_number(limit_s)} s")


class WebhookRefusedError(WebhookDeliveryError):
    """The webhook refused the event for good (a 4xx other than 408, 425 and 429): sent again
    as it is, it would be refused again. Parked on the subscriber's dead-letter queue, not retried."""

    code = "webhook_refused"


class DeliveryInProgressError(JobpipeError):
    """Another process holds the event's delivery under an unexpired lease: try again later."""

    code = "delivery_in_progress"


class CacheGenerationChangedError(JobpipeError):
    """A cache write expected a generation that an invalidation has since replaced."""

    code = "cache_generation_changed"


class ArtifactNotFoundError(JobpipeError):
    code = "artifact_not_found"

    @classmethod
    def of(cls, job_id: str, name: str) -> "ArtifactNotFoundError":
        """The refusal of a read of `job_id`'s artifact `name`, which it has not: the name cut to
        128 characters (a route takes any length)."""
        return cls(f"job {job_id} has no artifact {name[:128]!r}")


class InvalidArtifactError(JobpipeError):
    """A handler wrote an artifact with a bad name or an unsupported value."""

    code = "invalid_artifact"


class BlobNotFoundError(JobpipeError):
    """An object the record points at is gone (expired by the bucket's lifecycle rule)."""

    code = "blob_not_found"

    @classmethod
    def payload_gone(cls, job_id: str) -> "BlobNotFoundError":
        """The refusal of a rerun of `job_id`, whose payload's object is gone: nothing can read
        it back, so only the tenant can submit it again."""
        return cls(f"the payload of job {job_id} is gone from the bucket (deleted by hand or by a lifecycle rule): "
                   "it cannot run again; submit the payload anew")


class TaskNotFoundError(JobpipeError):
    code = "task_not_found"


class LetterNotFoundError(JobpipeError):
    """No letter of that id was among those a dead-letter queue handed out."""

    code = "letter_not_found"


class QuotaExceededError(JobpipeError):
    """The tenant has as many unfinished jobs as it may; `retry_after_s` says when to try again."""

    code = "quota_exceeded"

    def __init__(self, message: str, *, retry_after_s: int, details: Any = None) -> None:
        super().__init__(message, details=details)
        self.retry_after_s = retry_after_s


class TaskTimeError(JobpipeError):
    """A maintenance task was not started: the time left cannot fit even a part of it."""

    code = "task_out_of_time"


class DeadLetterUnavailableError(JobpipeError):
    code = "dlq_unavailable"


class NotRedrivableError(JobpipeError):
    """The dead-letter queue holds descriptions of failures (a stream batch's range), not
    messages that can be sent to a queue again."""

    code = "not_redrivable"

    @classmethod
    def of(cls, queue: str) -> "NotRedrivableError":
        """The refusal of a redrive of the dead-letter queue named `queue`. `details`: `queue`."""
        return cls(f"messages on the {queue} dead-letter queue cannot be sent again as they are; "
                   "see docs/reliability.md", details={"queue": queue})

    @classmethod
    def deleting(cls, queue: str) -> "NotRedrivableError":
        """The refusal of an operator's delete of a failed batch's description from `queue`: the
        reconciler's, which removes each once replayed. `details`: `queue`."""
        return cls(f"this letter on the {queue} dead-letter queue describes a failed stream batch, which the "
                   "reconciler replays and removes itself; see docs/reliability.md", details={"queue": queue})


class StreamBatchUnreadableError(JobpipeError):
    """A failed stream batch whose records cannot be read back: the stream no longer holds them
    (DynamoDB keeps 24 hours), or the description names another stream."""

    code = "stream_batch_unreadable"


class StreamBatchPartlyHeldError(StreamBatchUnreadableError):
    """A failed stream batch whose first records the stream no longer holds, while it still holds
    the later ones: `held`, in stream order, shaped as the change-stream function receives them."""

    def __init__(self, message: str, *, held: list[Any]) -> None:
        super().__init__(message)
        self.held = held


class StreamRecordUnreadableError(JobpipeError):
    """A job's stream record this version cannot read: a status or a field's value a newer version
    wrote (met during a rollback), or an item edited by hand. The change-stream function parks it
    on StreamFailureQueue, whole, and goes on with the rest of its batch."""

    code = "stream_record_unreadable"


class StreamRecordTooLargeError(JobpipeError):
    """An unreadable stream record too large for one StreamFailureQueue message: it cannot be
    parked, and its batch fails as any batch whose events could not go out."""

    code = "stream_record_too_large"


class ChangeStreamUnavailableError(JobpipeError):
    """The change stream could not be read just now (a refusal, a timeout): try again later."""

    code = "stream_unavailable"
