"""Operator routes (the `operator` role): pipeline statistics and the dead-letter queues of
every tenant."""
from __future__ import annotations

import re
from typing import Any, Callable, Literal, Optional, TypeVar

from chalice import Blueprint
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.api.auth import OPERATOR
from chalicelib.api.http import Call, validate
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.dead_letters import DELETED, DROP_REQUESTED, delete_dead_letter, each_queue, list_dead_letters
from chalicelib.defaults import (
    DEAD_LETTER_BATCH,
    MAX_DEAD_LETTER_BATCH,
    MAX_QUEUE_NAME_CHARS,
    MAX_STATS_WINDOW_HOURS,
    STATS_WINDOW_HOURS,
)
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    JobpipeError,
    LetterNotFoundError,
    NotRedrivableError,
    StoreUnavailableError,
)
from chalicelib.domain.job import PRIORITIES, isoformat, utcnow
from chalicelib.domain.numbers import WholeNumber
from chalicelib.domain.stats import hours_back, summarize
from chalicelib.observability import logger

system_api = Blueprint(__name__)


route = router(system_api, role=OPERATOR)
T = TypeVar("T")


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: WholeNumber = Field(default=STATS_WINDOW_HOURS, ge=1, le=MAX_STATS_WINDOW_HOURS)


class QueueName(BaseModel):
    """A dead-letter queue named by its priority (a jobs DLQ) or by its name (any)."""

    model_config = ConfigDict(extra="forbid")

    priority: Optional[Literal["high", "normal", "low"]] = None  # a jobs DLQ (as `queue`)
    # Any dead-letter queue by name.
    queue: Optional[str] = Field(default=None, min_length=1, max_length=MAX_QUEUE_NAME_CHARS)

    @model_validator(mode="after")
    def _one_name(self) -> "QueueName":
        if self.priority and self.queue and self.priority != self.queue:
            raise ValueError("give either priority or queue, not both")
        return self


class DeadLetterQuery(QueueName):
    limit: WholeNumber = Field(default=DEAD_LETTER_BATCH, ge=1, le=MAX_DEAD_LETTER_BATCH)


class LetterQuery(QueueName):
    """The dead-letter queue a letter is deleted from: named, never every one."""

    @model_validator(mode="after")
    def _named(self) -> "LetterQuery":
        if not (self.priority or self.queue):
            raise ValueError("name the letter's dead-letter queue: priority= or queue=")
        return self


def _outage(section: str, exc: JobpipeError, name: Optional[str] = None) -> None:
    """Log what an answer reads around: the answer names it, the line says why (the refusal
    or timeout it was raised from, in its traceback)."""
    logger.warning("operator route read around an outage",
                   extra={"section": section, "queue": name, "error": f"{exc.code}: {exc.message}"}, exc_info=exc)


def _said(exc: JobpipeError) -> dict[str, Any]:
    """What did not answer, as an answer says it: {code, message}, and its `details` when it has
    any (a redrive that stopped midway: what it had moved)."""
    said: dict[str, Any] = {"code": exc.code, "message": exc.message}
    if exc.details is not None:
        said["details"] = exc.details
    return said


def _named(unavailable: dict[str, DeadLetterUnavailableError]) -> dict[str, dict[str, Any]]:
    """The queues that did not answer as an answer names them: {name: {code, message, details?}}."""
    return {name: _said(exc) for name, exc in unavailable.items()}


def _read(section: str, read: Callable[[], T]) -> tuple[Optional[T], Optional[StoreUnavailableError]]:
    """`read()`, or the table that did not answer: (what was read, None) or (None, its error,
    logged)."""
    try:
        return read(), None
    except StoreUnavailableError as exc:
        _outage(section, exc)
        return None, exc


@route("/api/system/stats", methods=["GET"])
def stats(call: Call) -> Any:
    """Queue depths from queue attributes; the reconciler's last pass and totals; everything
    else from the stats recorder's counters. Each is read on its own: a queue that does not
    answer is named under `unavailable` (by section), so are the counters and the reconciler's
    record when their table does not answer, and the rest is still shown (every queue down,
    the job counts still answer). Raises the first error only when nothing could be read."""
    params = validate(StatsQuery, call.query())
    services = container()
    operations = services.queue_operations
    hours = hours_back(utcnow(), params.window_hours)
    summary, counters_unavailable = _read("counters", lambda: summarize(
        services.stats.status_counts(), services.stats.hourly(hours), params.window_hours))
    reconciler, reconciler_unavailable = _read("reconciler", services.reconciler_log.summary)
    dead, dead_unavailable = each_queue(operations.dead_letter_queues(), operations.dead_letter_depth, _outage)
    depths, queues_unavailable = each_queue(PRIORITIES, operations.queue_depth, _outage, "queues")
    if summary is None and reconciler is None and not dead and not depths:
        raise counters_unavailable
    # A priority's dead_lettered is its DLQ's count (null when that DLQ did not answer).
    queues = {p: {**depth, "dead_lettered": dead.get(p)} for p, depth in depths.items()}
    answer: dict[str, Any] = {"queues": queues, "dead_letter_queues": dead, "window_hours": params.window_hours,
                              **(summary or {}), "as_of": isoformat(utcnow())}
    if reconciler is not None:
        answer["reconciler"] = reconciler
    unavailable: dict[str, Any] = {section: _named(errors) for section, errors in
                                   (("queues", queues_unavailable), ("dead_letter_queues", dead_unavailable)) if errors}
    for section, exc in (("counters", counters_unavailable), ("reconciler", reconciler_unavailable)):
        if exc is not None:
            unavailable[section] = _said(exc)
    if unavailable:
        answer["unavailable"] = unavailable
    return answer


@route("/api/system/dlq", methods=["GET"])
def dead_letters(call: Call) -> Any:
    """Messages on the dead-letter queues, left where they are, with their job's status: up to
    `limit` a queue (SQS has no cursor to read on from), and under `total` how many each queue
    holds in all (SQS's approximate count; null when it did not answer). Every queue (none
    named): one that does not answer is named under `unavailable` and the others still shown;
    DeadLetterUnavailableError only when none answered. The jobs table not answering leaves
    the letters shown, each `job` null, and `jobs_unavailable` {code, message} says so."""
    params = validate(DeadLetterQuery, call.query())
    services = container()
    listing = list_dead_letters(services.queue_operations, services.store, name=params.queue or params.priority,
                                limit=params.limit, outage=_outage)
    answer: dict[str, Any] = {"dead_letters": listing.letters, "total": listing.total}
    if listing.unavailable:
        answer["unavailable"] = _named(listing.unavailable)
    if listing.jobs_unavailable is not None:  # every letter's `job` is null: not read, not none
        answer["jobs_unavailable"] = _said(listing.jobs_unavailable)
    return answer


# An SQS message id (a UUID); anything else names no letter.
_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")


@route("/api/system/dlq/letters/{message_id}", methods=["DELETE"], body=False)
def delete_letter(call: Call, message_id: str) -> Any:
    """Delete one letter of a dead-letter queue, by the `message_id` its listing shows: a letter
    no redrive moves and nothing will take. 200 `{"deleted": message_id, "queue"}`; for a
    parked stream record the reconciler holds hidden, 202 `{"drop_requested": message_id,
    "queue"}` (deleted unpublished at the reconciler's next take); 404 letter_not_found when
    the queue did not hand it out and it is no such record."""
    params = validate(LetterQuery, call.query())
    name = params.queue or params.priority
    if not _MESSAGE_ID.fullmatch(message_id):
        raise LetterNotFoundError(f"no letter {message_id[:100]!r}: a letter's id is its listing's message_id")
    services = container()
    done = delete_dead_letter(services.queue_operations, name, message_id, services.parked_record_drops)
    if done == DROP_REQUESTED:
        return {DROP_REQUESTED: message_id, "queue": name}, 202
    return {DELETED: message_id, "queue": name}


def _went(exc: JobpipeError) -> bool:
    """Whether a redrive that stopped had sent some letters on: the answer must say which."""
    details = exc.details if isinstance(exc.details, dict) else {}
    return bool(details.get("moved_ids") or details.get("sent_ids"))


@route("/api/system/dlq/redrive", methods=["POST"], body=False)
def redrive(call: Call) -> Any:
    """Move dead-lettered messages back to their priority's queue. A job that is already
    failed is acknowledged by the worker without running again; resubmit it to rerun it.
    Every queue (none named): one that does not answer is reported under `unavailable` (with
    its error's details: what a redrive that stopped midway had moved) and the others still go;
    DeadLetterUnavailableError only when none answered and none had sent a letter on."""
    params = validate(DeadLetterQuery, call.query())
    operations = container().queue_operations
    if params.queue or params.priority:
        name = params.queue or params.priority
        return {"redriven": {name: operations.redrive(name, params.limit)}}

    def redrive_one(name: str) -> Optional[dict[str, int]]:
        try:
            return operations.redrive(name, params.limit)
        except NotRedrivableError:
            return None  # all that can be: the rest are for reading

    # The others still go past one that does not answer: what moved is said.
    done, unavailable = each_queue(operations.dead_letter_queues(), redrive_one, _outage)
    redriven = {name: moved for name, moved in done.items() if moved is not None}
    if unavailable and not redriven and not any(_went(exc) for exc in unavailable.values()):
        raise next(iter(unavailable.values()))
    answer: dict[str, Any] = {"redriven": redriven}
    if unavailable:
        answer["unavailable"] = _named(unavailable)
    return answer
