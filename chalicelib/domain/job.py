"""The job record, its progress, its error and its runs (one run per attempt)."""
from __future__ import annotations

import json
import re
import uuid
from datetime import datetime, timezone
from typing import Annotated, Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, WithJsonSchema, field_validator

from chalicelib.defaults import MAX_JOB_ID_CHARS, MAX_JSON_DEPTH
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.status import JobStatus
from chalicelib.domain.text import unicode_text

Priority = Literal["high", "normal", "low"]
PRIORITIES: tuple[str, ...] = ("high", "normal", "low")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def isoformat(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix: lexicographic order equals time order."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_PLAUSIBLE_ID = re.compile(rf"[A-Za-z0-9_.:\-]{{1,{MAX_JOB_ID_CHARS}}}")


def is_plausible_job_id(job_id: str) -> bool:
    """Ids that cannot exist are answered not_found without touching the store."""
    return bool(_PLAUSIBLE_ID.fullmatch(job_id))  # fullmatch: no trailing newline slips by


def shown_id(job_id: str) -> str:
    """An id as a refusal echoes it: one past MAX_JOB_ID_CHARS (no job has one) cut to that
    length with an ellipsis, so the cut is seen and the id shown is never taken for another."""
    return job_id if len(job_id) <= MAX_JOB_ID_CHARS else job_id[:MAX_JOB_ID_CHARS] + "…"


def new_job_id() -> str:
    return str(uuid.uuid4())


_CHILD_NAMESPACE = uuid.UUID("0b5f7c9e-3d2a-4e61-9f0c-7a1e2b3c4d5e")


def child_job_id(parent_id: str, attempt: int, index: int) -> str:
    """Deterministic, so a spawn repeated within the same attempt finds the child it made."""
    return str(uuid.uuid5(_CHILD_NAMESPACE, f"{parent_id}:{attempt}:{index}"))


def _shown_percent(value: float) -> float | int:
    return int(value) if float(value).is_integer() else value


# A percent: any number 0-100 (two decimal places kept), written in JSON as seed 002 shows it,
# a whole one without a fraction (`50`, not `50.0`: a reader decoding it into an integer, as Go's
# and Rust's JSON libraries do, refuses `50.0`), any other as it is (`33.33`).
# Its JSON schema says `number` either way: an integer is one, and `anyOf number, integer` would
# make code generators build a union type for it.
Percent = Annotated[float, PlainSerializer(_shown_percent, when_used="json"),
                    WithJsonSchema({"type": "number", "minimum": 0, "maximum": 100}, mode="serialization")]


class Progress(BaseModel):
    model_config = ConfigDict(extra="forbid")

    percent: Percent = 0.0
    step: Optional[str] = None
    message: Optional[str] = None
    details: Optional[dict[str, Any]] = None
    updated_at: Optional[str] = None


class JobErrorInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    code: str
    message: str

    @field_validator("code", "message")
    @classmethod
    def _unicode(cls, text: str) -> str:
        # An error's text is never refused (an exception's, a fail_job's): a lone surrogate in
        # it, which no store could write, is shown as U+FFFD, as undecodable bytes are.
        return unicode_text(text)


class Run(BaseModel):
    """One attempt at running a job. A run written with `started_at=None` updates the fields
    it carries and keeps the stored start time."""

    model_config = ConfigDict(extra="forbid")

    job_id: str
    attempt: int
    status: JobStatus
    started_at: Optional[str] = None
    finished_at: Optional[str] = None
    error: Optional[JobErrorInfo] = None


# Bookkeeping of the worker and the reconciler that clients never see.
INTERNAL_FIELDS = frozenset({"lease_expires_at", "timeout_s", "due_at", "dispatches", "event_percent",
                             "event_attempt", "claim_id", "dead_letter_owed", "dead_letter_unconfirmed"})


def known_fields(data: dict[str, Any], model: type[BaseModel]) -> dict[str, Any]:
    """`data` without the fields `model` does not have: those a newer version wrote (a stored
    record, an event waiting on a queue), read by this one when an update is rolled back
    (CloudFormation does so by itself when an update fails). The models themselves refuse
    unknown fields, so what this version writes still may name none."""
    return {k: v for k, v in data.items() if k in model.model_fields}


def parse_time(value: str) -> datetime:
    """An `isoformat` string (or any ISO 8601 time with an offset) back to an aware datetime."""
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


class Job(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str
    type: str
    payload: dict[str, Any] = Field(default_factory=dict)
    status: JobStatus = JobStatus.QUEUED
    tenant: str
    user: str
    scope: Optional[str] = None
    parent_id: Optional[str] = None
    # The finished job this one runs again (POST /jobs/{id}/rerun); None on every other job.
    rerun_of: Optional[str] = None
    children: list[str] = Field(default_factory=list)
    priority: Priority = "normal"
    attempts: int = 0
    max_attempts: int = 3
    timeout_s: int = 60
    progress: Progress = Field(default_factory=Progress)
    result: Any = None
    error: Optional[JobErrorInfo] = None
    cancel_requested: bool = False
    created_at: str
    started_at: Optional[str] = None  # when the first attempt started
    # When the current (or last) attempt started: its run record is written when it ends. Clients
    # see it while that attempt runs only (`public`, `current_attempt_start`).
    attempt_started_at: Optional[str] = None
    # Which claim started it: a claim whose write DynamoDB applied but whose answer was lost is
    # refused on its retry, and knows the attempt for its own by this id, not by a clock.
    claim_id: Optional[str] = None
    finished_at: Optional[str] = None
    lease_expires_at: Optional[str] = None
    # The earliest time the job may start (submit's delay or run_at; a retry's backoff).
    not_before: Optional[str] = None
    # When the reconciler looks at the job next, while it is unfinished: a queued or retrying
    # job's message should have been claimed by then, a running job's lease has ended by then.
    due_at: Optional[str] = None
    # Messages sent for the job's next attempt (0: held for a schedule beyond SQS's delay).
    dispatches: int = 0
    # The percent the attempt's last event carried (its `running` transition, then each
    # progress event): seed 002's "significant change" is measured from it, not from the last
    # write, so slow progress still reaches the ERP every 10 points. None on an attempt started
    # by a version that kept no mark: its writes are measured from the write before, as then.
    event_percent: Optional[float] = None
    # The attempt `event_percent` was marked in (its claim's, then each announcing write's): a
    # claim by a version that keeps no mark leaves an earlier attempt's, which is then no mark.
    event_attempt: Optional[int] = None
    expires_at: Optional[int] = None  # epoch seconds; DynamoDB TTL removes the record after it
    # The attempt of a failed job whose message is not parked on the dead-letter queue yet: set
    # by the failed write itself, cleared once the queue took the letter; left set (the queue did
    # not answer, the worker died between the two), the next delivery of one of the job's
    # messages parks it (JobLifecycle.claim).
    dead_letter_owed: Optional[int] = None
    # Set beside `dead_letter_owed` when the letter was sent and its answer lost: it may be on
    # its queue, so no delivery sends it again; the reconciler, which reads the queue first,
    # finds it there (the mark cleared) or parks it once the job is due.
    dead_letter_unconfirmed: Optional[bool] = None  # True, or absent
    version: int = 1
    # Set by a read, never stored: the claim-checked fields ("payload", "result") whose object
    # is gone (deleted by hand or by a bucket rule), each read as empty. JobStore.get's `mark_gone`.
    gone: list[str] = Field(default_factory=list)

    def public(self) -> dict[str, Any]:
        """The job as clients see it (internal bookkeeping left out): a field whose object is
        gone shows as None, and `gone` names it (left out while nothing is gone).
        `attempt_started_at` is the running attempt's start, None while none runs."""
        shown = self.model_dump(mode="json", exclude=INTERNAL_FIELDS | ({"gone"} if not self.gone else set()))
        shown["attempt_started_at"] = self.current_attempt_start()
        for field in self.gone:
            shown[field] = None
        return shown

    @property
    def event_mark(self) -> Optional[float]:
        """The percent the running attempt's last event carried, or None when the attempt keeps
        no mark: started by a version that kept none, whether the record holds none or an
        earlier attempt's (`event_attempt` another). A mark without its attempt was written by a
        version that marked every attempt it started: this one's."""
        if self.event_attempt is not None and self.event_attempt != self.attempts:
            return None
        return self.event_percent

    def current_attempt_start(self) -> Optional[str]:
        """When the running attempt started; None while no attempt runs. A job started by a
        version that kept no attempt start shows its first start, as its runs do."""
        if self.status != JobStatus.RUNNING:
            return None
        return self.attempt_started_at or self.started_at

    def last_recorded_time(self) -> Optional[str]:
        """The latest of the times the record names (created, an attempt's start, its last
        progress, its end), none later than the write that left it so; None when none reads
        as a time."""
        times = []
        for value in (self.created_at, self.started_at, self.attempt_started_at, self.progress.updated_at,
                      self.finished_at):
            if not value:
                continue
            try:
                times.append((parse_time(value), value))
            except (TypeError, ValueError):
                continue
        return max(times)[1] if times else None

    def owes_dead_letter(self, attempt: int) -> bool:
        """True when the job failed on `attempt` and the dead letter of that attempt's message
        is still owed (`dead_letter_owed`): what a message of it found on a DLQ settles."""
        return self.status == JobStatus.FAILED and self.dead_letter_owed == attempt

    def runs(self, recorded: list[Run]) -> list[Run]:
        """The job's runs, oldest attempt first: `recorded` (a run is stored when its attempt
        ends) and, while an attempt is running, that attempt, read from the job itself."""
        if self.status != JobStatus.RUNNING or any(r.attempt == self.attempts for r in recorded):
            return recorded
        current = Run(job_id=self.id, attempt=self.attempts, status=JobStatus.RUNNING,
                      started_at=self.current_attempt_start())
        return sorted([*recorded, current], key=lambda r: r.attempt)


def nested_deeper_than(value: Any, limit: int) -> bool:
    """True when the arrays and objects of JSON data `value` (dicts, lists, tuples; `value`
    itself the first level) nest more than `limit` levels. Walked level by level with no
    recursion (a value too deep to recurse through is the point), stopping past `limit`, so a
    value that contains itself ends too."""
    containers = (dict, list, tuple)
    level = [value] if isinstance(value, containers) else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [child for item in level for child in (item.values() if isinstance(item, dict) else item)
                 if isinstance(child, containers)]
    return False


def non_text_key(value: Any) -> Optional[str]:
    """The repr of the first key of an object in JSON data `value` (nested ones too) that is not
    text (a repr, so that a None key is told from none), else None: json.dumps writes {1: ...}
    as {"1": ...}, so such data would not read back as given.
    Each container is walked once, so a value that contains itself ends too."""
    stack, walked = [value], set()
    while stack:
        item = stack.pop()
        if isinstance(item, (dict, list, tuple)):
            if id(item) in walked:
                continue
            walked.add(id(item))
        if isinstance(item, dict):
            for key, inner in item.items():
                if not isinstance(key, str):
                    return repr(key)
                stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def too_deep_message(what: str, limit: int = MAX_JSON_DEPTH) -> str:
    """The refusal of JSON data whose arrays and objects nest more than `limit` levels
    (MAX_JSON_DEPTH unless the data sits inside an envelope that takes levels of it), naming
    `what` nests (e.g. "request body", "result"): every such refusal says it alike."""
    return (f"the {what} nests arrays and objects more than {limit} levels deep "
            f"(the {what} itself the first); at most {limit}")


def answer_bytes(value: Any) -> int:
    """The bytes `value` (JSON data) takes as an API answer's body inside Lambda's proxy
    response: the API's JSON (ASCII, non-ASCII as \\uXXXX escapes) written again as a JSON
    string. What defaults.MAX_ANSWER_BYTES bounds."""
    return len(json.dumps(json.dumps(value, separators=(",", ":"))))


def answer_shares(parts: list[tuple[str, Any]]) -> str:
    """`name N, name N, ...`: each part's bytes as an answer carries it, for a refusal that says
    what took a job's answer past its bound."""
    return ", ".join(f"{name} {shown_number(answer_bytes(value))}" for name, value in parts)


def listed_bytes(item: str, listed: int) -> int:
    """The bytes one more `item` (a child's id) adds to an answer whose list of it holds `listed`
    items: its quotes escaped, and a comma after the first (answer_bytes escapes one character
    at a time, so the parts of an answer add up)."""
    return answer_bytes(item) - len('""') + (1 if listed else 0)


def answer_prefix(text: str, budget: int) -> str:
    """The longest start of `text` whose answer_bytes stays within `budget` (all of it when it
    fits; "" when not even the quotes do). JSON escapes one character at a time, so a longer
    start never takes fewer bytes: the end is found by halving (a few dozen answer_bytes of a
    256 KiB body, not one per character), and never cuts an escape."""
    if answer_bytes(text) <= budget:
        return text
    fits, over = 0, len(text)  # text[:fits] fits (or is ""), text[:over] does not
    while over - fits > 1:
        middle = (fits + over) // 2
        if answer_bytes(text[:middle]) <= budget:
            fits = middle
        else:
            over = middle
    return text[:fits]


def answer_spent(spent: int, value: Any, budget: int, *, first: bool) -> Optional[int]:
    """The bytes a page's answer takes with `value` (a job as the API shows it) added to the
    `spent` of the values before it, or None when the page ends before `value`: the total would
    pass `budget`. A page's `first` value is always taken, whatever its size, so a page is
    never empty for want of room. Every listing's page ends by this rule."""
    total = spent + answer_bytes(value)
    return total if first or total <= budget else None
