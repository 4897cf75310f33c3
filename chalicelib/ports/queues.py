"""The jobs queues' port (`JobQueue`) and the job message that travels on them."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping, Optional, Protocol, Union

from pydantic import BaseModel, Field, ValidationError, field_validator

from chalicelib.domain.job import is_plausible_job_id


# The message attribute a job message handed back by a worker batch carries: how many times the
# messages it replaces were delivered (JobQueue.hand_back); the worker counts it with the copy's
# own receives when it orders a batch.
HANDBACKS_ATTRIBUTE = "handbacks"


@dataclass(frozen=True)
class JobMessage:
    """What travels on the jobs queue: a pointer to the job and the attempt it asks for.

    `tenant` and `timeout_s` let a worker claim the attempt in one conditional write, without
    reading the job first (the write sets the job's index key and lease, and checks both
    against the record). They are hints, not identity: a message without them (sent before
    they existed, or moved by hand) is claimed after a read, and equality ignores them."""

    job_id: str
    attempt: int
    tenant: Optional[str] = field(default=None, compare=False)
    timeout_s: Optional[int] = field(default=None, compare=False)

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"job_id": self.job_id, "attempt": self.attempt}
        if self.tenant is not None and self.timeout_s is not None:
            body.update(tenant=self.tenant, timeout_s=self.timeout_s)
        return body


class _MessageBody(BaseModel):
    job_id: str
    attempt: int = Field(default=1, ge=1)
    tenant: Optional[str] = None
    timeout_s: Optional[int] = Field(default=None, ge=1)

    @field_validator("job_id")
    @classmethod
    def _job_id(cls, value: str) -> str:
        if not is_plausible_job_id(value):
            raise ValueError("no job has this id")
        return value


def job_message_of(body: Union[str, bytes, Mapping[str, Any]]) -> JobMessage:
    """The job message a queue body carries (its JSON text, or the JSON decoded); raises
    ValueError for anything else: a foreign or hand-made body, an id no job can have."""
    try:
        parsed = (_MessageBody.model_validate(body) if isinstance(body, Mapping)
                  else _MessageBody.model_validate_json(body))
    except ValidationError as exc:
        raise ValueError(f"not a job message: {str(body)[:200]!r}") from exc
    return JobMessage(parsed.job_id, parsed.attempt, tenant=parsed.tenant, timeout_s=parsed.timeout_s)


class JobQueue(Protocol):
    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        """Enqueue; raises QueueUnavailableError when the message could not be sent,
        InvalidRequestError for a delay outside SQS's 0 to SQS_MAX_DELAY_S seconds."""

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        """Park a message of a job that failed for good on the dead-letter queue, sent once
        (never tried again by the client); raises QueueUnavailableError (the letter is then
        owed: `Job.dead_letter_owed`), LetterUnconfirmedError (one too) when it was sent and its
        answer lost, so that it may be on the queue."""

    def dead_letter_body(self, body: str, *, priority: str, reason: str) -> None:
        """Park a received body that is no job message (foreign, hand-made, cut short) on the
        priority's dead-letter queue as it came; raises QueueUnavailableError."""

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for `seconds` more (0: deliver again now), at most
        SQS_MAX_HOLD_S; raises QueueUnavailableError."""

    def set_visibility_many(self, queue_arn: str, receipt_handles: list[str], seconds: int) -> int:
        """`set_visibility` for several messages of one queue, ten to a request; returns how
        many could not be changed (a refusal of the whole request raises QueueUnavailableError)."""

    def hand_back(self, queue_arn: str, bodies: list[tuple[str, int]]) -> set[int]:
        """Send each received `(body, deliveries)` to its queue again as a new message, ten to a
        request, the deliveries it replaces in the HANDBACKS_ATTRIBUTE message attribute: a copy
        starts at one receive, so waiting in line does not bring a message nearer the redrive
        policy's maxReceiveCount. Returns the positions in `bodies` that were not sent (a
        refusal of a whole request raises QueueUnavailableError)."""

    def acknowledge(self, queue_arn: str, receipt_handle: str) -> None:
        """Delete a received message from its queue now, before its batch answers (a message
        parked elsewhere must not come back with a batch whose answer was lost); raises
        QueueUnavailableError."""

    def acknowledge_many(self, queue_arn: str, receipt_handles: list[str]) -> int:
        """`acknowledge` for several messages of one queue, ten to a request (the originals of
        messages handed back); returns how many could not be deleted (a refusal of the whole
        request raises QueueUnavailableError)."""
