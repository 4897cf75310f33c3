"""The dead-letter listing (GET /api/system/dlq): the letters on the dead-letter queues, left
where they are, each with its job's record, their bodies fitted to one answer. Over ports only:
a queue that does not answer is handed to the caller's `Outage` (the route logs it) and read
around."""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, TypeVar

from chalicelib.defaults import LETTER_DELETE_READS, MAX_ANSWER_BYTES, MAX_DEAD_LETTER_BATCH, STREAM_FAILURE_QUEUE
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    JobpipeError,
    LetterNotFoundError,
    NotRedrivableError,
    StoreUnavailableError,
)
from chalicelib.domain.events import SOURCE
from chalicelib.domain.job import Job, answer_bytes, answer_prefix, is_plausible_job_id
from chalicelib.ports import DeadLetter, JobStore, ParkedRecordDrops, QueueOperations

T = TypeVar("T")

# Told of what a read went around: (the answer's section, the error, the queue's name or None).
Outage = Callable[[str, JobpipeError, Optional[str]], None]

# What the letters of one listing may take together: MAX_ANSWER_BYTES less room for the
# queues' names, totals and `unavailable`.
LETTERS_BYTES = MAX_ANSWER_BYTES - 64 * 1024


@dataclass(frozen=True)
class DeadLetterListing:
    """`letters`: each queue's letters as the answer shows them; `total`: how many each queue
    holds in all (None where that count did not answer); `unavailable`: the queues whose letters
    could not be read; `jobs_unavailable`: the jobs table's error when the letters' job records
    could not be read (every letter's `job` is then None), else None."""

    letters: dict[str, list[dict[str, Any]]]
    total: dict[str, Optional[int]]
    unavailable: dict[str, DeadLetterUnavailableError]
    jobs_unavailable: Optional[StoreUnavailableError] = None


def each_queue(names: Iterable[str], read: Callable[[str], T], outage: Outage,
               section: str = "dead_letter_queues") -> tuple[dict[str, T], dict[str, DeadLetterUnavailableError]]:
    """`read` of every name, each on its own: (what was read, the queues that did not answer,
    each handed to `outage`)."""
    done: dict[str, T] = {}
    unavailable: dict[str, DeadLetterUnavailableError] = {}
    for name in names:
        try:
            done[name] = read(name)
        except DeadLetterUnavailableError as exc:
            outage(section, exc, name)
            unavailable[name] = exc
    return done, unavailable


def list_dead_letters(queues: QueueOperations, store: JobStore, *, name: Optional[str], limit: int,
                      outage: Outage) -> DeadLetterListing:
    """Up to `limit` letters of the queue `name`, or of every dead-letter queue (None), each
    with its job's record (None when it names no job, or one that is gone). Every queue: one
    that does not answer is under `unavailable` and the others still read;
    DeadLetterUnavailableError only when none answered (a named queue's, as it raised it). The
    jobs table not answering leaves the letters shown, each `job` None, the table's error (handed
    to `outage` as section `jobs`) under `jobs_unavailable`: an outage is when they are needed."""
    if name:
        peeked, unavailable = {name: queues.peek_dead_letters(name, limit)}, {}
    else:
        peeked, unavailable = each_queue(queues.dead_letter_queues(),
                                         lambda queue: queues.peek_dead_letters(queue, limit), outage)
        if unavailable and not peeked:
            raise next(iter(unavailable.values()))
    # Only ids a job can have are looked up: a foreign body's (too long for a key) fails the read.
    ids = [i for ms in peeked.values() for i in (_job_id(m) for m in ms) if i]
    jobs: dict[str, Job] = {}
    jobs_unavailable = None
    try:
        jobs = store.get_many(ids) if ids else {}
    except StoreUnavailableError as exc:
        outage("jobs", exc, None)
        jobs_unavailable = exc
    letters = {queue: [_letter(m, jobs.get(_job_id(m) or "")) for m in messages]
               for queue, messages in peeked.items()}
    _fit_bodies([letter for shown in letters.values() for letter in shown])
    total = {queue: _total(queues, queue, outage) for queue in letters}
    return DeadLetterListing(letters, total, unavailable, jobs_unavailable)


# What a delete of a letter did: deleted it, or, for a parked stream record the reconciler holds
# hidden, recorded that it is to be deleted at its next take (both the answer's key).
DELETED = "deleted"
DROP_REQUESTED = "drop_requested"


def delete_dead_letter(queues: QueueOperations, name: str, message_id: str,
                       drops: Optional[ParkedRecordDrops] = None) -> str:
    """Delete the letter `message_id` from the dead-letter queue `name`: what an operator does
    with a letter nothing will take (a foreign body no redrive moves, which keeps the queue's
    alarm up for its 14 days). DELETED, or DROP_REQUESTED for a record parked on
    STREAM_FAILURE_QUEUE that the reconciler took and holds hidden (SQS hands out no hidden
    message: `drops` keeps the request, and the reconciler deletes the record unpublished when
    it next takes it). Raises LetterNotFoundError when none of LETTER_DELETE_READS looks of up
    to MAX_DEAD_LETTER_BATCH letters showed it and it is no parked record `drops` knows the
    reconciler holds (deleted already, never there, or one SQS did not hand out), or its delete
    was refused; NotRedrivableError for a failed batch's description on STREAM_FAILURE_QUEUE
    (the reconciler's, removed once replayed; a record parked there, whose events an operator
    gives up, and a foreign body are deleted); DeadLetterUnavailableError;
    StoreUnavailableError when `drops` does not answer."""
    for _ in range(LETTER_DELETE_READS):
        found = [letter for letter in queues.peek_dead_letters(name, MAX_DEAD_LETTER_BATCH)
                 if letter.message_id == message_id]
        if found and name == STREAM_FAILURE_QUEUE and isinstance(found[0].body.get(BATCH_DESCRIPTION), dict):
            raise NotRedrivableError.deleting(name)
        if found:
            if queues.delete_dead_letters(name, found[:1]) == 1:
                if drops is not None and name == STREAM_FAILURE_QUEUE and PARKED_RECORD in found[0].body:
                    drops.removed(message_id)
                return DELETED
            break
    # Only an entry the reconciler wrote as it took a parked record takes a request: a batch's
    # description, a foreign body or an id never parked has none, and stays 404.
    if drops is not None and name == STREAM_FAILURE_QUEUE and drops.request(message_id):
        return DROP_REQUESTED
    raise LetterNotFoundError(
        f"no letter {message_id} on the {name} dead-letter queue among those it handed out; "
        "list the queue to see what it holds, and try again")


# What a parked stream record's body carries it under (adapters/sqs_stream_failures.py).
PARKED_RECORD = "parked_stream_record"


# What names a failed stream batch's description: Lambda's on-failure record for a DynamoDB stream.
BATCH_DESCRIPTION = "DDBStreamBatchInfo"


def _job_id(letter: DeadLetter) -> Optional[str]:
    """The job a dead letter names, if it names one a job can have: a job message's `job_id`,
    or, for one of jobpipe's events (parked by a subscriber or by the bus), its detail's."""
    body = letter.body
    detail = body.get("detail")
    if body.get("source") == SOURCE and isinstance(detail, dict):
        body = detail
    job_id = body.get("job_id")
    return job_id if isinstance(job_id, str) and is_plausible_job_id(job_id) else None


def _letter(m: DeadLetter, job: Optional[Job]) -> dict[str, Any]:
    """A letter as the listing shows it, with its job's record (`job`, or None)."""
    return {
        "message_id": m.message_id, "body": m.body, "sent_at": m.sent_at, "reason": m.reason,
        # How often the job was tried is its record's: the DLQ's receive count counts every
        # peek too (the reconciler's each pass).
        "job": {"id": job.id, "tenant": job.tenant, "type": job.type, "status": job.status.value,
                "attempts": job.attempts, "max_attempts": job.max_attempts}
        if job else None,
    }


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


def _total(queues: QueueOperations, name: str, outage: Outage) -> Optional[int]:
    """How many letters the queue holds in all, or None (handed to `outage`) when it did not
    answer: the letters already read are shown all the same."""
    try:
        return queues.dead_letter_depth(name)
    except JobpipeError as exc:
        outage("dead_letter_queues", exc, name)
        return None
