"""In-memory twins of the job queues' ports (sqs.py, sqs_operations.py), same contract: the jobs
queues and their dead-letter queues (`InMemoryJobQueue`), their operations, a subscriber's
dead-letter queue."""
from __future__ import annotations

import json
import uuid
from typing import Any, Iterable, Mapping, Optional, Sequence

from chalicelib.adapters.sqs import reason_attribute
from chalicelib.adapters.sqs_operations import (
    letter_body,
    moved_reason,
    reads_as,
    target_queue_name,
    undelivered_reason,
)
from chalicelib.defaults import SQS_MAX_DELAY_S, SQS_MAX_HOLD_S
from chalicelib.domain.errors import (
    InvalidRequestError, LetterUnconfirmedError, NotRedrivableError, QueueUnavailableError,
)
from chalicelib.domain.events import event_detail
from chalicelib.domain.job import isoformat, utcnow
from chalicelib.ports import DeadLetter, JobMessage


class ParkedMessage(tuple):
    """A dead-letter queue's message: `(message, reason)` (what tests compare), and where and
    since when it is parked, as SQS keeps it."""

    def __new__(cls, message: Optional[JobMessage], reason: Optional[dict[str, Any]], priority: str,
                raw: Optional[str] = None) -> "ParkedMessage":
        """`raw`: the body of a received message that is no job message (`message` None)."""
        parked = super().__new__(cls, (message, reason))
        parked.priority = priority
        parked.raw = raw
        parked.message_id = str(uuid.uuid4())
        parked.sent_at = isoformat(utcnow())
        parked.note = None  # the `reason` attribute of a body parked as it came
        return parked

    def dead_letter(self) -> DeadLetter:
        message, reason = self
        if self.raw is not None:  # parked as it came, as SQS keeps it
            return DeadLetter(self.message_id, letter_body(self.raw), self.sent_at, self.note, receipt=self.message_id)
        body = {**message.to_body(), **({"reason": json.loads(json.dumps(reason))} if reason else {})}
        # One with no reason was moved here by SQS's redrive policy (a test appends it so).
        said = None if reason else moved_reason(f"the {self.priority} jobs queue")
        return DeadLetter(self.message_id, body, self.sent_at, said, receipt=self.message_id)


class ParkedBody(tuple):
    """A message parked as it came: `(body, reason)` (what tests compare; reason None for one
    AWS parked itself), and as SQS keeps it, its id, when it was parked and the queue it was
    for (the TARGET_ARN EventBridge gives an event it could not deliver)."""

    def __new__(cls, body: str, reason: Optional[str], target_arn: Optional[str] = None,
                error: Optional[tuple[str, str]] = None, moved_from: Optional[str] = None) -> "ParkedBody":
        """`error`: EventBridge's (ERROR_CODE, ERROR_MESSAGE) for an event it could not deliver;
        `moved_from`: the queue SQS's redrive policy moved it from."""
        parked = super().__new__(cls, (body, reason))
        parked.target_arn = target_arn
        parked.error = error
        parked.moved_from = moved_from
        parked.message_id = str(uuid.uuid4())
        parked.sent_at = isoformat(utcnow())
        return parked

    def dead_letter(self) -> DeadLetter:
        body, reason = self
        reason = reason or undelivered_reason(self.target_arn, *(self.error or (None, None))) or (
            moved_reason(self.moved_from) if self.moved_from else None)
        return DeadLetter(self.message_id, letter_body(body), self.sent_at, reason, receipt=self.message_id)


class InMemoryDeadLetterQueue:
    """Same contract as SqsDeadLetterQueue: `parked` holds (body, reason) in order; with
    `fail` set, parking raises QueueUnavailableError like a queue that does not answer. Also
    any other dead-letter queue of the stack, which InMemoryQueueOperations reads: `put` is
    what AWS parks on one itself."""

    def __init__(self) -> None:
        self.parked: list[ParkedBody] = []
        self.fail = False

    def park(self, body: str, reason: str) -> None:
        if self.fail:
            raise QueueUnavailableError("could not park a message on its dead-letter queue")
        self.parked.append(ParkedBody(body, reason_attribute(reason)))

    def put(self, body: str, *, target_arn: Optional[str] = None, error: Optional[tuple[str, str]] = None,
            moved_from: Optional[str] = None) -> None:
        """A message parked by AWS, with no reason attribute: EventBridge's event it could not
        deliver to `target_arn` (`error` its ERROR_CODE and ERROR_MESSAGE), a stream mapping's
        description of a batch it gave up on, or a message SQS's redrive policy moved there from
        the queue `moved_from`."""
        self.parked.append(ParkedBody(body, None, target_arn, error, moved_from))


class InMemoryJobQueue:
    """Records what was sent; tests drain it into the worker. `dead` holds the dead-letter
    queues' messages; a test may append `(message, reason)` itself, as SQS's redrive policy
    parks a message (on the normal priority's DLQ). `fail_sends` fails every call as a queue
    that does not answer; `lose_letter_answers` parks each dead letter and then raises
    LetterUnconfirmedError, as a send whose answer was lost; `refuse` names the receipt handles
    and bodies SQS would refuse (a stale receipt handle): a batch call refuses their entries, the
    others going through, and a call for one of them alone fails."""

    def __init__(self, priorities: Iterable[str] = ("high", "normal", "low")) -> None:
        self.priorities = tuple(priorities)
        self.sent: list[tuple[JobMessage, str, int]] = []
        self.dead: list[tuple[JobMessage, Optional[dict[str, Any]]]] = []
        self.fail_sends = False
        self.lose_letter_answers = False
        self.refuse: set[str] = set()
        self.visibility: dict[str, int] = {}
        self.acknowledged: list[str] = []  # receipt handles deleted before their batch answered
        self.in_flight: dict[str, int] = {}  # per priority: messages workers received and did not delete yet
        self.handed_back: list[tuple[str, str, int]] = []  # (queue ARN, body, deliveries it replaces)

    def priority_of(self, priority: str) -> str:
        """Like the SQS adapter: a priority without its own queue goes to `normal`."""
        return priority if priority in self.priorities else "normal"

    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        if not 0 <= delay_seconds <= SQS_MAX_DELAY_S:
            raise InvalidRequestError(f"delay_seconds must be between 0 and {SQS_MAX_DELAY_S}")
        if self.fail_sends:
            raise QueueUnavailableError("queue is unavailable")
        self.sent.append((message, priority, delay_seconds))

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        if self.fail_sends:
            raise QueueUnavailableError(f"could not dead-letter job {message.job_id}")
        self.dead.append(ParkedMessage(message, reason, self.priority_of(priority)))
        if self.lose_letter_answers:
            raise LetterUnconfirmedError(f"the dead letter of job {message.job_id} was sent and its answer lost")

    def dead_letter_body(self, body: str, *, priority: str, reason: str) -> None:
        if self.fail_sends:
            raise QueueUnavailableError("could not dead-letter a message that is no job message")
        parked = ParkedMessage(None, None, self.priority_of(priority), raw=body)
        parked.note = reason_attribute(reason)
        self.dead.append(parked)

    def parked(self, priority: str) -> list[ParkedMessage]:
        """The messages on `priority`'s dead-letter queue, oldest first."""
        for i, entry in enumerate(self.dead):
            if not isinstance(entry, ParkedMessage):
                self.dead[i] = ParkedMessage(entry[0], entry[1], "normal")
        return [entry for entry in self.dead if entry.priority == priority]

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        if self.fail_sends or receipt_handle in self.refuse:
            raise QueueUnavailableError("could not change a message's visibility")
        self.visibility[receipt_handle] = max(0, min(seconds, SQS_MAX_HOLD_S))

    def set_visibility_many(self, queue_arn: str, receipt_handles: list[str], seconds: int) -> int:
        if self.fail_sends:
            raise QueueUnavailableError("could not change the messages' visibility")
        taken = [handle for handle in receipt_handles if handle not in self.refuse]
        for handle in taken:
            self.set_visibility(queue_arn, handle, seconds)
        return len(receipt_handles) - len(taken)

    def hand_back(self, queue_arn: str, bodies: list[tuple[str, int]]) -> set[int]:
        if self.fail_sends:
            raise QueueUnavailableError("could not hand the messages back")
        refused = {i for i, (body, _) in enumerate(bodies) if body in self.refuse}
        self.handed_back += [(queue_arn, body, handbacks)
                             for i, (body, handbacks) in enumerate(bodies) if i not in refused]
        return refused

    def acknowledge(self, queue_arn: str, receipt_handle: str) -> None:
        if self.fail_sends or receipt_handle in self.refuse:
            raise QueueUnavailableError("could not delete a received message")
        self.acknowledged.append(receipt_handle)

    def acknowledge_many(self, queue_arn: str, receipt_handles: list[str]) -> int:
        if self.fail_sends:
            raise QueueUnavailableError("could not delete the received messages")
        taken = [handle for handle in receipt_handles if handle not in self.refuse]
        self.acknowledged += taken
        return len(receipt_handles) - len(taken)

    def drain(self) -> list[JobMessage]:
        messages = [m for m, _, _ in self.sent]
        self.sent.clear()
        return messages


class InMemoryQueueOperations:
    """Same contract as SqsQueueOperations, over an InMemoryJobQueue: what was sent and not
    drained is on the queue (delayed when sent with a delay), `dead` on the dead-letter queues;
    and over the stack's other dead-letter queues, if given."""

    def __init__(self, queue: InMemoryJobQueue,
                 other_dead_letters: Optional[Mapping[str, tuple[InMemoryDeadLetterQueue, Optional[list[str]]]]] = None,
                 targeted: Optional[Mapping[str, Mapping[str, list[str]]]] = None) -> None:
        """As SqsQueueOperations': `other_dead_letters` the rest of the pipeline's dead-letter
        queues by name -> (the DLQ, the queue a redrive sends its bodies to, or None where a
        message cannot simply be sent again), a queue being the list of bodies sent to it.
        `targeted`: DLQs whose messages each name the queue they were for (`target_arn`) ->
        the queues, by name, a redrive may return them to."""
        self._queue = queue
        self._others = dict(other_dead_letters or {})
        self._targets = {name: dict(queues) for name, queues in (targeted or {}).items() if name in self._others}
        self._held: set[str] = set()  # the letters a held peek hides until they are shown or deleted

    def _parked(self, priority: str) -> list[ParkedMessage]:
        if priority not in self._queue.priorities:
            raise InvalidRequestError(f"priority must be one of {', '.join(self._queue.priorities)}")
        return self._queue.parked(priority)

    def _letters(self, name: str) -> list[Any]:
        """The messages on the dead-letter queue `name` (of a priority, or another), oldest first."""
        if name in self._queue.priorities:
            return self._queue.parked(name)
        if name in self._others:
            return self._others[name][0].parked
        raise InvalidRequestError(f"queue must be one of {', '.join(self.dead_letter_queues())}")

    def _depth(self, priority: str) -> dict[str, int]:
        sent = [delay for _, p, delay in self._queue.sent if self._queue.priority_of(p) == priority]
        return {"visible": sum(1 for d in sent if d == 0), "in_flight": self._queue.in_flight.get(priority, 0),
                "delayed": sum(1 for d in sent if d > 0)}

    def dead_letter_queues(self) -> list[str]:
        return [*self._queue.priorities, *self._others]

    def queue_depth(self, priority: str) -> dict[str, int]:
        self._parked(priority)  # refuses an unknown priority
        return self._depth(priority)

    def dead_letter_depth(self, name: str) -> int:
        return len(self._letters(name))

    def peek_dead_letters(self, priority: str, limit: int, hold_s: int = 0) -> list[DeadLetter]:
        letters = [parked.dead_letter() for parked in self._letters(priority)
                   if parked.message_id not in self._held][:limit]
        if hold_s:
            self._held.update(letter.message_id for letter in letters)
        return letters

    def show_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> None:
        self._letters(priority)  # refuses an unknown queue
        self._held.difference_update(letter.message_id for letter in letters)

    def delete_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> int:
        wanted = {letter.receipt for letter in letters}
        parked = self._letters(priority)
        going = [m for m in parked if m.message_id in wanted]
        if priority in self._others:
            parked[:] = [e for e in parked if not any(e is m for m in going)]
        else:
            self._queue.dead[:] = [e for e in self._queue.dead if not any(e is m for m in going)]
        return len(going)

    def redrive(self, priority: str, limit: int) -> dict[str, int]:
        if priority in self._others:
            return self._redrive_other(priority, limit)
        taken = self._letters(priority)[:limit]
        moving = [m for m in taken if m.raw is None]  # no worker can take the rest: left for an operator
        self._queue.dead[:] = [e for e in self._queue.dead if not any(e is m for m in moving)]
        for parked in moving:
            self._queue.sent.append((parked[0], priority, 0))
        return {"moved": len(moving), "failed": len(taken) - len(moving)}

    def _redrive_other(self, name: str, limit: int) -> dict[str, int]:
        """As SqsQueueOperations: each message goes back to the DLQ's own queue, or to the queue
        its target names; one that names none of `targeted`'s stays, counted in `failed`."""
        dead, source = self._others[name]
        targets = self._targets.get(name)
        if source is None and targets is None:
            raise NotRedrivableError.of(name)
        taken = dead.parked[:limit]
        moving = []
        for parked in taken:
            to = source if source is not None else targets.get(target_queue_name(parked.target_arn or "") or "")
            if to is not None and reads_as(event_detail, parked[0]):  # no subscriber could take the rest
                to.append(parked[0])  # the body as it came: its reason stays behind, as on SQS
                moving.append(parked)
        dead.parked[:] = [e for e in dead.parked if not any(e is m for m in moving)]
        return {"moved": len(moving), "failed": len(taken) - len(moving)}

    def health(self) -> list[dict[str, Any]]:
        checks = []
        for priority in self._queue.priorities:
            checks.append({"name": f"jobs-{priority}", "kind": "queue", "priority": priority, "ok": True,
                           **self._depth(priority)})
            checks.append({"name": f"jobs-{priority}-dlq", "kind": "dlq", "priority": priority, "ok": True,
                           "visible": len(self._parked(priority)), "in_flight": 0, "delayed": 0})
        return checks
