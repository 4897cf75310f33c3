"""SQS adapter of the QueueOperations port: depths from queue attributes, DLQ peek, delete and
redrive.

Redrive is receive + send + delete (SQS's StartMessageMoveTask is not available on the local
emulator, and cannot move messages the pipeline parked on the DLQ itself): a message is
deleted from the DLQ only after its copy was accepted by the queue, so a failure leaves it
where it was (at worst delivered twice, which the worker tolerates)."""
from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Mapping, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.sqs import batched
from chalicelib.defaults import DEAD_LETTER_REASON_CHARS, EMPTY_RECEIVES, PEEK_HIDE_S
from chalicelib.domain.errors import DeadLetterUnavailableError, InvalidRequestError, NotRedrivableError
from chalicelib.domain.events import event_detail
from chalicelib.domain.job import isoformat
from chalicelib.ports import DeadLetter, job_message_of

_ATTRIBUTES = {
    "visible": "ApproximateNumberOfMessages",
    "in_flight": "ApproximateNumberOfMessagesNotVisible",
    "delayed": "ApproximateNumberOfMessagesDelayed",
}
# SentTimestamp counts milliseconds from here.
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


class SqsQueueOperations:
    def __init__(self, client: Any, queue_urls: Mapping[str, str], dead_letter_urls: Mapping[str, str],
                 other_dead_letters: Optional[Mapping[str, tuple[str, Optional[str]]]] = None,
                 targeted: Optional[Mapping[str, Sequence[str]]] = None) -> None:
        """`queue_urls`/`dead_letter_urls` by priority; `other_dead_letters` the rest of the
        pipeline's dead-letter queues by name -> (DLQ URL, the queue a redrive returns its
        messages to, or None where a message cannot simply be sent again). `targeted`: DLQs
        whose messages each name the queue they were for (EventBridge's TARGET_ARN message
        attribute) -> the queues a redrive may return them to."""
        self._sqs = client
        self._queues = dict(queue_urls)
        self._dead = dict(dead_letter_urls)
        self._others = {name: pair for name, pair in (other_dead_letters or {}).items() if pair[0]}
        self._targets = {name: {_queue_name(url): url for url in urls if url}
                         for name, urls in (targeted or {}).items() if name in self._others}

    def dead_letter_queues(self) -> list[str]:
        return [*self._queues, *self._others]

    def _pair(self, name: str) -> tuple[Optional[str], str]:
        """(the queue a redrive returns messages to, the dead-letter queue) of `name`."""
        if name in self._queues:
            return self._queues[name], self._dead[name]
        if name in self._others:
            dead, source = self._others[name]
            return source, dead
        raise InvalidRequestError(f"queue must be one of {', '.join(self.dead_letter_queues())}")

    def _depth(self, url: str) -> dict[str, int]:
        return queue_depth_at(self._sqs, url)

    def queue_depth(self, priority: str) -> dict[str, int]:
        if priority not in self._queues:
            raise InvalidRequestError(f"priority must be one of {', '.join(self._queues)}")
        try:
            return self._depth(self._queues[priority])
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise DeadLetterUnavailableError(f"could not read the {priority} queue") from exc

    def dead_letter_depth(self, name: str) -> int:
        _, dead = self._pair(name)
        try:
            depth = self._depth(dead)
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError(f"could not read the {name} dead-letter queue") from exc
        return depth["visible"] + depth["in_flight"]

    def health(self) -> list[dict[str, Any]]:
        checks = []
        for priority in self._queues:
            for kind, url in zip(("queue", "dlq"), self._pair(priority)):
                name = url.rstrip("/").rsplit("/", 1)[-1]
                try:
                    checks.append({"name": name, "kind": kind, "priority": priority, "ok": True, **self._depth(url)})
                except ClientError as exc:
                    checks.append({"name": name, "kind": kind, "priority": priority, "ok": False,
                                   "error": exc.response.get("Error", {}).get("Code", "error")})
                except BotoCoreError as exc:  # unreachable: a finding, like a refusal
                    checks.append({"name": name, "kind": kind, "priority": priority, "ok": False,
                                   "error": f"{type(exc).__name__}: {exc}"[:300]})
        return checks

    def peek_dead_letters(self, priority: str, limit: int, hold_s: int = 0) -> list[DeadLetter]:
        _, dead = self._pair(priority)
        try:
            messages = receive_up_to(self._sqs, dead, limit, hold_s or PEEK_HIDE_S)
            if not hold_s:  # visible again at once: nothing is taken
                self._visible_now(dead, [m["ReceiptHandle"] for m in messages])
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise DeadLetterUnavailableError(f"could not read the {priority} dead-letter queue") from exc
        return [_dead_letter(m) for m in messages]

    def show_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> None:
        _, dead = self._pair(priority)
        try:
            self._visible_now(dead, [letter.receipt for letter in letters if letter.receipt])
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError(f"could not show the {priority} dead-letter queue's letters again") from exc

    def delete_dead_letters(self, priority: str, letters: Sequence[DeadLetter]) -> int:
        _, dead = self._pair(priority)
        handles = [letter.receipt for letter in letters if letter.receipt]
        try:
            refused = batched(self._sqs, "delete_message_batch", dead, [{"ReceiptHandle": h} for h in handles])
        except (ClientError, BotoCoreError) as exc:
            raise DeadLetterUnavailableError(f"could not delete from the {priority} dead-letter queue") from exc
        return len(handles) - len(refused)

    def redrive(self, priority: str, limit: int) -> dict[str, int]:
        queue, dead = self._pair(priority)
        targets = self._targets.get(priority)
        if queue is None and targets is None:
            raise NotRedrivableError.of(priority)
        failed = 0
        left: list[dict[str, Any]] = []  # still on the dead-letter queue, for an operator
        messages: list[dict[str, Any]] = []
        sent: set[str] = set()  # the ids of those a queue took: moved, or hidden while their delete is owed
        moved: list[str] = []  # the ids of those deleted from the dead-letter queue once a queue took them
        try:
            messages = receive_up_to(self._sqs, dead, limit, PEEK_HIDE_S)
            by_queue: dict[str, list[dict[str, Any]]] = {}
            for message in messages:
                to = queue or _target_of(message, targets)
                if to is None:  # names no queue of this stack: left for an operator
                    left.append(message)
                elif priority in self._queues and not reads_as(job_message_of, message["Body"]):
                    left.append(message)  # no worker can take it: sent back, it would only fail ten more deliveries
                elif priority not in self._queues and not reads_as(event_detail, message["Body"]):
                    left.append(message)  # nor a subscriber: it would fail a hundred (about ten hours of them)
                else:
                    by_queue.setdefault(to, []).append(message)
            for to, batch in by_queue.items():
                unsent, lost = self._move(dead, to, batch, sent, moved)
                failed, left = failed + lost, left + unsent
            # Visible again at once, as after a peek: hidden for the receive's PEEK_HIDE_S, the
            # letters just refused would be missing from the listing that counts them.
            self._visible_now(dead, [m["ReceiptHandle"] for m in left])
        except (ClientError, BotoCoreError) as exc:
            # A call that failed whole: what no queue took is shown again at once, as after a
            # refused send; what one took stays hidden (its delete may not have been made).
            self._show_again(dead, [m for m in messages if m["MessageId"] not in sent])
            # What went before SQS stopped answering is said: a queue took these, and the
            # operator would otherwise not know what is where.
            went = f" after {len(moved)} of its letters moved (details.moved_ids)" if moved else ""
            raise DeadLetterUnavailableError(f"could not redrive the {priority} dead-letter queue{went}", details={
                "queue": priority, "moved": len(moved), "moved_ids": moved,
                "sent_ids": [m["MessageId"] for m in messages if m["MessageId"] in sent and m["MessageId"] not in moved],
            }) from exc
        return {"moved": len(moved), "failed": failed + len(left)}

    def _show_again(self, dead: str, messages: list[dict[str, Any]]) -> None:
        """Make `messages` visible again, if SQS answers: else they come back after PEEK_HIDE_S."""
        try:
            self._visible_now(dead, [m["ReceiptHandle"] for m in messages])
        except (ClientError, BotoCoreError):
            pass

    def _visible_now(self, dead: str, handles: list[str]) -> None:
        """Make the messages these receipt handles name visible on `dead` again at once; raises
        what SQS raises."""
        batched(self._sqs, "change_message_visibility_batch", dead,
                [{"ReceiptHandle": handle, "VisibilityTimeout": 0} for handle in handles])

    def _move(self, dead: str, to: str, messages: list[dict[str, Any]],
              sent: set[str], moved: list[str]) -> tuple[list[dict[str, Any]], int]:
        """Send `messages` to `to`, then delete from `dead` those it accepted: (the messages not
        sent, how many were sent but not deleted); the ids of those sent are added to `sent`, of
        those deleted to `moved`, batch by batch (a call that fails leaves them said). A message
        sent but not deleted stays hidden: shown again at once, it could be redriven twice in a
        row."""
        failed = 0
        unsent: list[dict[str, Any]] = []
        for start in range(0, len(messages), 10):
            chunk = {str(i): m for i, m in enumerate(messages[start:start + 10])}
            answer = self._sqs.send_message_batch(QueueUrl=to, Entries=[
                {"Id": i, "MessageBody": m["Body"]} for i, m in chunk.items()
            ])
            ok = [e["Id"] for e in answer.get("Successful", [])]
            unsent += [chunk[e["Id"]] for e in answer.get("Failed", [])]
            sent.update(chunk[i]["MessageId"] for i in ok)
            if not ok:
                continue
            deleted = self._sqs.delete_message_batch(QueueUrl=dead, Entries=[
                {"Id": i, "ReceiptHandle": chunk[i]["ReceiptHandle"]} for i in ok
            ])
            moved.extend(chunk[e["Id"]]["MessageId"] for e in deleted.get("Successful", []))
            failed += len(deleted.get("Failed", []))
        return unsent, failed


# EventBridge's dead-letter messages carry the target they were for (and RULE_ARN, ERROR_CODE ...).
TARGET_ATTRIBUTE = "TARGET_ARN"
# Why the pipeline parked a message itself (the worker's foreign bodies, the ERP bridge's refusals).
REASON_ATTRIBUTE = "reason"
# Why EventBridge could not deliver an event it parked (beside its TARGET_ARN).
ERROR_ATTRIBUTES = ("ERROR_CODE", "ERROR_MESSAGE")
# What SQS keeps of a message its redrive policy moved to a dead-letter queue: the queue it came
# from (where SQS gives it: AWS, the local emulator) and when it was first received there.
SOURCE_ATTRIBUTE = "DeadLetterQueueSourceArn"
MOVED_ATTRIBUTES = ("ApproximateFirstReceiveTimestamp", SOURCE_ATTRIBUTE)


def queue_depth_at(client: Any, url: str) -> dict[str, int]:
    """The visible, in-flight and delayed messages of the queue at `url`; raises what SQS raises."""
    response = client.get_queue_attributes(QueueUrl=url, AttributeNames=list(_ATTRIBUTES.values()))
    attributes = response.get("Attributes", {})
    return {key: int(attributes.get(name, 0)) for key, name in _ATTRIBUTES.items()}


def receive_up_to(client: Any, url: str, limit: int, hide_s: int) -> list[dict[str, Any]]:
    """Up to `limit` messages of the queue at `url` (fewer when it runs dry: EMPTY_RECEIVES
    answers in a row bringing none it had not received), each hidden for `hide_s` seconds, with
    their receive count, send time, target, reason and error attributes, and for one SQS moved
    there itself its first receive and the queue it came from."""
    messages: dict[str, dict[str, Any]] = {}
    empty = 0
    while len(messages) < limit and empty < EMPTY_RECEIVES:
        batch = client.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=min(10, limit - len(messages)),
            VisibilityTimeout=hide_s,
            MessageSystemAttributeNames=["SentTimestamp", "ApproximateReceiveCount", *MOVED_ATTRIBUTES],
            MessageAttributeNames=[TARGET_ATTRIBUTE, REASON_ATTRIBUTE, *ERROR_ATTRIBUTES],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        fresh = [m for m in batch if m["MessageId"] not in messages]
        empty = 0 if fresh else empty + 1  # a short poll's empty answer may have missed them: ask again
        messages.update((m["MessageId"], m) for m in fresh)
    return list(messages.values())


def reads_as(read: Callable[[str], Any], body: str) -> bool:
    """Whether `read` (event_detail, job_message_of) takes a letter's `body`: ValueError is its no."""
    try:
        read(body)
    except ValueError:
        return False
    return True


def _queue_name(url_or_arn: str) -> str:
    return url_or_arn.rstrip("/").replace(":", "/").rsplit("/", 1)[-1]


def target_queue_name(arn: str) -> Optional[str]:
    """The name of the SQS queue a dead-lettered event's TARGET_ARN names; None for any other
    target (a Lambda function, an API destination) or none."""
    return _queue_name(arn) if arn.startswith("arn:") and ":sqs:" in arn else None


def _target_of(message: dict[str, Any], targets: Mapping[str, str]) -> Optional[str]:
    """The URL of the queue a dead-lettered event was for, if it is one of `targets`."""
    name = target_queue_name(message.get("MessageAttributes", {}).get(TARGET_ATTRIBUTE, {}).get("StringValue", ""))
    return targets.get(name) if name is not None else None


def letter_body(raw: str) -> dict[str, Any]:
    """A dead letter's body as shown: its JSON object, else its first 2,000 characters as `raw`."""
    try:
        body = json.loads(raw)
    except ValueError:
        body = None
    return body if isinstance(body, dict) else {"raw": raw[:2000]}


def undelivered_reason(target_arn: Optional[str], code: Optional[str], message: Optional[str]) -> Optional[str]:
    """The reason of an event EventBridge parked: the target it was for and what it said (its
    ERROR_CODE and ERROR_MESSAGE, where given); None for a message with no target."""
    if not target_arn:
        return None
    said = ": ".join(part for part in (code, message) if part)
    return f"EventBridge could not deliver it to {target_arn}{': ' + said if said else ''}"[:DEAD_LETTER_REASON_CHARS]


def moved_reason(source: str, receives: Optional[int] = None, first_received_at: Optional[str] = None) -> str:
    """The reason of a letter SQS's redrive policy moved from the queue `source` by itself (its
    consumer received it as often as the policy allows, and never deleted it: it failed on it,
    crashed, or ran past the visibility timeout each time). `receives`: SQS's count of its
    receives on every queue, the looks at the dead-letter queue included."""
    said = f"moved here by SQS from {source} after the receives its redrive policy allows, none handled"
    if receives:
        said += f"; received {receives} times in all, looks at this dead-letter queue included"
    if first_received_at:
        said += f"; first received {first_received_at}"
    return said[:DEAD_LETTER_REASON_CHARS]


def _time(milliseconds: Optional[str]) -> Optional[str]:
    """An SQS timestamp (milliseconds since the epoch) as the API writes times; None for none."""
    # Whole milliseconds, added exactly (a float of them can land a microsecond short).
    return isoformat(_EPOCH + timedelta(milliseconds=int(milliseconds))) if milliseconds and int(milliseconds) else None


def _dead_letter(message: dict[str, Any]) -> DeadLetter:
    body = letter_body(message["Body"])
    attributes = message.get("Attributes", {})
    said = {name: value.get("StringValue") for name, value in message.get("MessageAttributes", {}).items()}
    reason = said.get(REASON_ATTRIBUTE) or undelivered_reason(
        said.get(TARGET_ATTRIBUTE), *(said.get(name) for name in ERROR_ATTRIBUTES))
    # SQS names the queue a letter came from only when its redrive policy moved it there: the
    # letters the pipeline parks (a failed job's, whose reason is in its body, included) and
    # hand-made ones carry none.
    moved_from = attributes.get(SOURCE_ATTRIBUTE)
    if reason is None and moved_from:
        count = attributes.get("ApproximateReceiveCount")
        reason = moved_reason(_queue_name(moved_from), int(count) if count else None,
                              _time(attributes.get("ApproximateFirstReceiveTimestamp")))
    return DeadLetter(message["MessageId"], body, _time(attributes.get("SentTimestamp")), reason,
                      receipt=message.get("ReceiptHandle"))
