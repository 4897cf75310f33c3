"""Operator routes (the `operator` role): pipeline statistics and the dead-letter queues of
every tenant."""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Literal, Optional, TypeVar

from chalice import Blueprint
from pydantic import BaseModel, ConfigDict, Field, model_validator

from chalicelib.api.auth import OPERATOR
from chalicelib.api.http import Call, validate
from chalicelib.api.routing import router
from chalicelib.composition import container
from chalicelib.defaults import (
    DEAD_LETTER_BATCH,
    MAX_ANSWER_BYTES,
    MAX_DEAD_LETTER_BATCH,
    MAX_QUEUE_NAME_CHARS,
    MAX_STATS_WINDOW_HOURS,
)
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    JobpipeError,
    NotRedrivableError,
    StoreUnavailableError,
)
from chalicelib.domain.events import SOURCE
from chalicelib.domain.job import PRIORITIES, answer_bytes, answer_prefix, is_plausible_job_id, isoformat, utcnow
from chalicelib.domain.numbers import WholeNumber
from chalicelib.domain.stats import hours_back, summarize
from chalicelib.observability import logger
from chalicelib.ports import DeadLetter, QueueOperations

system_api = Blueprint(__name__)


route = router(system_api, role=OPERATOR)
T = TypeVar("T")


class StatsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window_hours: WholeNumber = Field(default=24, ge=1, le=MAX_STATS_WINDOW_HOURS)


class DeadLetterQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Optional[Literal["high", "normal", "low"]] = None  # a jobs DLQ (as `queue`)
    # Any dead-letter queue by name.
    queue: Optional[str] = Field(default=None, min_length=1, max_length=MAX_QUEUE_NAME_CHARS)
    limit: WholeNumber = Field(default=DEAD_LETTER_BATCH, ge=1, le=MAX_DEAD_LETTER_BATCH)

    @model_validator(mode="after")
    def _one_name(self) -> "DeadLetterQuery":
        if self.priority and self.queue and self.priority != self.queue:
            raise ValueError("give either priority or queue, not both")
        return self


def _outage(section: str, exc: JobpipeError, name: Optional[str] = None) -> None:
    """Log what an answer reads around: the answer names it, the line says why (the refusal
    or timeout it was raised from, in its traceback)."""
    logger.warning("operator route read around an outage",
                   extra={"section": section, "queue": name, "error": f"{exc.code}: {exc.message}"}, exc_info=exc)


def _each(names: Iterable[str], read: Callable[[str], T],
          section: str = "dead_letter_queues") -> tuple[dict[str, T], dict[str, DeadLetterUnavailableError]]:
    """`read` of every name, each on its own: (what was read, the queues that did not answer,
    each logged)."""
    done: dict[str, T] = {}
    unavailable: dict[str, DeadLetterUnavailableError] = {}
    for name in names:
        try:
            done[name] = read(name)
        except DeadLetterUnavailableError as exc:
            _outage(section, exc, name)
            unavailable[name] = exc
    return done, unavailable


def _said(exc: JobpipeError) -> dict[str, str]:
    """What did not answer, as an answer says it: {code, message}."""
    return {"code": exc.code, "message": exc.message}


def _named(unavailable: dict[str, DeadLetterUnavailableError]) -> dict[str, dict[str, str]]:
    """The queues that did not answer as an answer names them: {name: {code, message}}."""
    return {name: _said(exc) for name, exc in unavailable.items()}


def _job_id(letter: DeadLetter) -> Optional[str]:
    """The job a dead letter names, if it names one a job can have: a job message's `job_id`,
    or, for one of jobpipe's events (parked by a subscriber or by the bus), its detail's."""
    body = letter.body
    detail = body.get("detail")
    if body.get("source") == SOURCE and isinstance(detail, dict):
        body = detail
    job_id = body.get("job_id")
    return job_id if isinstance(job_id, str) and is_plausible_job_id(job_id) else None


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
    dead, dead_unavailable = _each(operations.dead_letter_queues(), operations.dead_letter_depth)
    depths, queues_unavailable = _each(PRIORITIES, operations.queue_depth, "queues")
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
    DeadLetterUnavailableError only when none answered."""
    params = validate(DeadLetterQuery, call.query())
    services = container()
    operations = services.queue_operations
    name = params.queue or params.priority
    if name:
        peeked, unavailable = {name: operations.peek_dead_letters(name, params.limit)}, {}
    else:
        peeked, unavailable = _each(operations.dead_letter_queues(),
                                    lambda queue: operations.peek_dead_letters(queue, params.limit))
        if not peeked:
            raise next(iter(unavailable.values()))
    # Only ids a job can have are looked up: a foreign body's (too long for a key) fails the read.
    ids = [i for ms in peeked.values() for i in (_job_id(m) for m in ms) if i]
    jobs = services.store.get_many(ids) if ids else {}
    out: dict[str, list[dict[str, Any]]] = {}
    for priority, messages in peeked.items():
        out[priority] = []
        for m in messages:
            job = jobs.get(_job_id(m) or "")
            out[priority].append({
                "message_id": m.message_id, "body": m.body, "sent_at": m.sent_at, "reason": m.reason,
                # How often the job was tried is its record's: the DLQ's receive count counts
                # every peek (the reconciler's each pass) and SQS does not carry the count of
                # the queue the message came from.
                "job": {"id": job.id, "tenant": job.tenant, "type": job.type, "status": job.status.value,
                        "attempts": job.attempts, "max_attempts": job.max_attempts}
                if job else None,
            })
    _fit_bodies([letter for letters in out.values() for letter in letters])
    answer: dict[str, Any] = {"dead_letters": out, "total": {name: _total(operations, name) for name in out}}
    if unavailable:
        answer["unavailable"] = _named(unavailable)
    return answer


# What the letters of one listing may take together: MAX_ANSWER_BYTES less room for the
# queues' names, totals and `unavailable`.
LETTERS_BYTES = MAX_ANSWER_BYTES - 64 * 1024


def _fit_bodies(letters: list[dict[str, Any]]) -> None:
    """Every letter keeps its body whole while the listing fits one answer (a hundred letters a
    queue of up to SQS's 256 KiB each would not: API Gateway would answer 502). Past that, each
    letter gets an equal share of LETTERS_BYTES, and a body that does not fit its letter's share
    is shown as the start of its JSON text, `{"raw": ...}`, with `body_cut` true and `body_bytes`
    the size of its whole JSON text (UTF-8; null for a body shown whole): the rest is read in the
    AWS console."""
    for letter in letters:
        letter.update(body_cut=False, body_bytes=None)
    if not letters or sum(answer_bytes(letter) for letter in letters) <= LETTERS_BYTES:
        return
    share = LETTERS_BYTES // len(letters)
    for letter in letters:
        if answer_bytes(letter) <= share:
            continue
        text = json.dumps(letter["body"], separators=(",", ":"), ensure_ascii=False)
        # surrogatepass: a body whose JSON held a lone surrogate (`"\\ud800"`) reads back as one.
        letter.update(body={"raw": ""}, body_cut=True, body_bytes=len(text.encode("utf-8", "surrogatepass")))
        room = share - answer_bytes(letter)  # what the letter's own fields leave its body's text
        letter["body"] = {"raw": answer_prefix(text, max(room + answer_bytes(""), 0))}


def _total(operations: QueueOperations, name: str) -> Optional[int]:
    """How many letters the queue holds in all, or None (logged) when it did not answer: the
    letters already read are shown all the same."""
    try:
        return operations.dead_letter_depth(name)
    except JobpipeError as exc:
        _outage("dead_letter_queues", exc, name)
        return None


@route("/api/system/dlq/redrive", methods=["POST"], body=False)
def redrive(call: Call) -> Any:
    """Move dead-lettered messages back to their priority's queue. A job that is already
    failed is acknowledged by the worker without running again; resubmit it to rerun it.
    Every queue (none named): one that does not answer is reported under `unavailable` and
    the others still go; DeadLetterUnavailableError only when none answered."""
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
    done, unavailable = _each(operations.dead_letter_queues(), redrive_one)
    redriven = {name: moved for name, moved in done.items() if moved is not None}
    if unavailable and not redriven:
        raise next(iter(unavailable.values()))
    answer: dict[str, Any] = {"redriven": redriven}
    if unavailable:
        answer["unavailable"] = _named(unavailable)
    return answer
