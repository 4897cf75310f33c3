"""SQS adapters of the JobQueue and DeadLetterQueue ports."""
from __future__ import annotations

import json
import re
from functools import cached_property
from typing import Any, Callable, Mapping, Optional

from botocore.exceptions import BotoCoreError, ClientError, ConnectionClosedError, ReadTimeoutError

from chalicelib.domain.errors import InvalidRequestError, LetterUnconfirmedError, QueueUnavailableError
from chalicelib.ports import HANDBACKS_ATTRIBUTE, JobMessage

from chalicelib.defaults import DEAD_LETTER_REASON_CHARS, SQS_BATCH_MAX, SQS_MAX_DELAY_S, SQS_MAX_HOLD_S


def batched(client: Any, call: str, url: str, entries: list[dict[str, Any]]) -> set[int]:
    """`call` (an SQS *Batch request) over `entries` on the queue at `url`, SQS_BATCH_MAX to a
    request; returns the positions in `entries` SQS refused. A request that fails whole raises
    its ClientError / BotoCoreError (the requests before it were made)."""
    failed: set[int] = set()
    for start in range(0, len(entries), SQS_BATCH_MAX):
        chunk = [{"Id": str(i), **entry} for i, entry in enumerate(entries[start:start + SQS_BATCH_MAX])]
        response = getattr(client, call)(QueueUrl=url, Entries=chunk)
        failed |= {start + int(entry["Id"]) for entry in response.get("Failed", [])}
    return failed


class SqsJobQueue:
    def __init__(self, client: Any, queue_urls: Mapping[str, str], dead_letter_urls: Mapping[str, str], *,
                 letters: Optional[Callable[[], Any]] = None) -> None:
        """`queue_urls` and `dead_letter_urls` map a priority (high/normal/low) to a queue URL.
        `letters`: the client a job's dead letter is sent on (None: `client`), one that never
        tries a send again: a retry by botocore of a letter whose answer was lost would park it
        twice. Such a letter (LetterUnconfirmedError) may be on its queue: it is left to the
        reconciler, which looks there before parking it again (reliability.md)."""
        self._sqs = client
        self._letters = letters
        self._urls = dict(queue_urls)
        self._dead = dict(dead_letter_urls)

    @cached_property
    def _letter_client(self) -> Any:
        return self._sqs if self._letters is None else self._letters()

    def _url(self, urls: Mapping[str, str], priority: str) -> str:
        return urls.get(priority) or urls["normal"]

    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        if not 0 <= delay_seconds <= SQS_MAX_DELAY_S:
            raise InvalidRequestError(f"delay_seconds must be between 0 and {SQS_MAX_DELAY_S}")
        try:
            self._sqs.send_message(
                QueueUrl=self._url(self._urls, priority),
                MessageBody=json.dumps(message.to_body()),
                DelaySeconds=delay_seconds,
            )
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise QueueUnavailableError(f"could not enqueue job {message.job_id}") from exc

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        body = {**message.to_body(), "reason": reason}
        try:
            self._letter_client.send_message(
                QueueUrl=self._url(self._dead, priority), MessageBody=json.dumps(body)
            )
        except (ReadTimeoutError, ConnectionClosedError) as exc:  # sent, its answer lost: maybe parked
            raise LetterUnconfirmedError(
                f"the dead letter of job {message.job_id} was sent and its answer lost ({exc})") from exc
        except (ClientError, BotoCoreError) as exc:  # a refusal, or no connection: not parked
            raise QueueUnavailableError(
                f"could not dead-letter job {message.job_id}"
            ) from exc

    def dead_letter_body(self, body: str, *, priority: str, reason: str) -> None:
        park(self._sqs, self._url(self._dead, priority), body, reason,
             failure="could not dead-letter a message that is no job message")

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        """Hide a received message for `seconds` more (0 makes it visible again now), at most
        SQS_MAX_HOLD_S: SQS refuses a hold past 12 hours from the receive."""
        try:
            self._sqs.change_message_visibility(
                QueueUrl=self._url_for_arn(queue_arn),
                ReceiptHandle=receipt_handle,
                VisibilityTimeout=max(0, min(seconds, SQS_MAX_HOLD_S)),
            )
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise QueueUnavailableError("could not change a message's visibility") from exc

    def set_visibility_many(self, queue_arn: str, receipt_handles: list[str], seconds: int) -> int:
        hold = max(0, min(seconds, SQS_MAX_HOLD_S))
        return len(self._batched(queue_arn, "change_message_visibility_batch",
                                 [{"ReceiptHandle": handle, "VisibilityTimeout": hold} for handle in receipt_handles],
                                 "could not change the messages' visibility"))

    def hand_back(self, queue_arn: str, bodies: list[tuple[str, int]]) -> set[int]:
        return self._batched(queue_arn, "send_message_batch", [
            {"MessageBody": body, "MessageAttributes": {
                HANDBACKS_ATTRIBUTE: {"DataType": "Number", "StringValue": str(handbacks)}}}
            for body, handbacks in bodies], "could not hand the messages back")

    def acknowledge(self, queue_arn: str, receipt_handle: str) -> None:
        try:
            self._sqs.delete_message(QueueUrl=self._url_for_arn(queue_arn), ReceiptHandle=receipt_handle)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise QueueUnavailableError("could not delete a received message") from exc

    def acknowledge_many(self, queue_arn: str, receipt_handles: list[str]) -> int:
        return len(self._batched(queue_arn, "delete_message_batch",
                                 [{"ReceiptHandle": handle} for handle in receipt_handles],
                                 "could not delete the received messages"))

    def _batched(self, queue_arn: str, call: str, entries: list[dict[str, Any]], failure: str) -> set[int]:
        """`batched` on the queue of `queue_arn`; QueueUnavailableError(`failure`) when a whole
        request fails."""
        try:
            return batched(self._sqs, call, self._url_for_arn(queue_arn), entries)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise QueueUnavailableError(failure) from exc

    def _url_for_arn(self, queue_arn: str) -> str:
        """A queue's URL from its ARN (arn:aws:sqs:<region>:<account>:<name>) without a
        GetQueueUrl call, which the consumers' roles need not allow: the endpoint, the account
        and the name, as SQS (and emulators) form queue URLs."""
        name = queue_arn.rsplit(":", 1)[-1]
        for url in (*self._urls.values(), *self._dead.values()):
            if url.rstrip("/").rsplit("/", 1)[-1] == name:
                return url
        account = queue_arn.split(":")[4]
        return f"{self._sqs.meta.endpoint_url.rstrip('/')}/{account}/{name}"


# What SQS refuses in a String attribute, as in a body (SendMessage fails InvalidParameterValue):
# the C0 controls but tab, LF and CR, lone surrogates, U+FFFE and U+FFFF.
_NOT_SQS_TEXT = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def reason_attribute(reason: str) -> str:
    """`reason` as a `reason` attribute SQS takes: characters it refuses written as their escapes
    (\\x00, \\ufffe; a webhook's answer may hold any), cut to DEAD_LETTER_REASON_CHARS, "unreadable" if empty."""
    text = _NOT_SQS_TEXT.sub(lambda m: f"\\x{ord(m[0]):02x}" if ord(m[0]) < 0x100 else f"\\u{ord(m[0]):04x}", reason)
    return text[:DEAD_LETTER_REASON_CHARS] or "unreadable"


def park(sqs: Any, url: str, body: str, reason: str, *, failure: str) -> None:
    """Send `body` as it came, for whoever sent it, to the dead-letter queue at `url`; why it was
    parked rides in its `reason` attribute. QueueUnavailableError(`failure`) when SQS refuses
    or does not answer."""
    try:
        sqs.send_message(QueueUrl=url, MessageBody=body, MessageAttributes={
            "reason": {"DataType": "String", "StringValue": reason_attribute(reason)}})
    except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
        raise QueueUnavailableError(failure) from exc


class SqsDeadLetterQueue:
    """A subscriber's dead-letter queue, by URL (the DeadLetterQueue port)."""

    def __init__(self, client: Any, url: str) -> None:
        self._sqs = client
        self._url = url

    def park(self, body: str, reason: str) -> None:
        park(self._sqs, self._url, body, reason, failure="could not park a message on its dead-letter queue")
