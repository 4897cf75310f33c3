"""Every AWS adapter turns what an AWS call can end in (a refusal: ClientError; a timeout or a
lost connection: BotoCoreError) into the port's named error, chained with `from exc`, so
nothing above the adapters sees a botocore exception (an API route answers 503
store_unavailable, not a 500)."""
from __future__ import annotations

import time
from datetime import datetime, timezone
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from chalicelib.adapters.artifacts import DynamoArtifactStore
from chalicelib.adapters.dynamodb import DynamoJobStore
from chalicelib.adapters.dynamodb_cache import DynamoCacheStore
from chalicelib.adapters.eventbridge import EventBridgePublisher
from chalicelib.adapters.reconciler_log import DynamoReconcilerLog
from chalicelib.adapters.retention import DynamoFinishedJobs
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.adapters.sqs import SqsDeadLetterQueue, SqsJobQueue
from chalicelib.adapters.sqs_operations import SqsQueueOperations
from chalicelib.adapters.stats import DynamoStatsStore
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    EventPublishError,
    LetterUnconfirmedError,
    QueueUnavailableError,
    StoreUnavailableError,
)
from chalicelib.domain.events import JobEvent
from chalicelib.domain.job import Job, Progress, Run
from chalicelib.domain.stats import StatDelta
from chalicelib.domain.status import JobStatus
from chalicelib.ports import ChangeSet, DeadLetter, Expectation, JobMessage, SubmissionKey, TaskCompletion

JOB_ID = "00000000-0000-4000-8000-000000000001"
AT = "2026-01-01T00:00:00.000Z"
_AT = datetime(2026, 1, 1, tzinfo=timezone.utc)

FAILURES = {
    "refused": lambda: ClientError({"Error": {"Code": "InternalServerError", "Message": "try again"}}, "Call"),
    "timed out": lambda: ReadTimeoutError(endpoint_url="http://127.0.0.1:4566/"),
    "unreachable": lambda: EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/"),
}


class Failing:
    """A boto3 client whose every call ends in `failure()`; paginators fail when iterated."""

    def __init__(self, failure: Callable[[], Exception]) -> None:
        self._failure = failure
        self.calls = 0

    def get_paginator(self, _operation: str) -> Any:
        client = self

        class Pages:
            def paginate(self, **_kwargs: Any):
                client.calls += 1
                raise client._failure()
                yield  # a generator, like botocore's page iterator

        return Pages()

    def __getattr__(self, name: str) -> Callable[..., Any]:
        def call(**_kwargs: Any) -> Any:
            self.calls += 1
            raise self._failure()

        return call


def _job() -> Job:
    return Job(id=JOB_ID, type="demo.steps", tenant="acme", user="ann", status=JobStatus.QUEUED, payload={},
               created_at=AT)


def _event() -> JobEvent:
    return JobEvent(event_id="e1", event_type="job.status.changed", timestamp=AT, job_id=JOB_ID, status="queued",
                    progress=0, attempt=0, previous_status=None, previous_progress=None, tenant="acme",
                    type="demo.steps", version=1)


STORE_CALLS: dict[str, Callable[[Any], Any]] = {
    "artifact put": lambda c: DynamoArtifactStore(c, "t", S3BlobStore(c, "b"), inline_limit=1024).put(JOB_ID, "a.txt", b"hi", "text/plain"),
    "artifact put of an attempt": lambda c: DynamoArtifactStore(c, "t", S3BlobStore(c, "b"), inline_limit=1024).put(JOB_ID, "a.txt", b"hi", "text/plain",
                                                                                 attempt=1),
    "artifact list": lambda c: DynamoArtifactStore(c, "t", S3BlobStore(c, "b"), inline_limit=1024).list(JOB_ID),
    "artifact get": lambda c: DynamoArtifactStore(c, "t", S3BlobStore(c, "b"), inline_limit=1024).get(JOB_ID, "a.txt"),
    "reconciler record": lambda c: DynamoReconcilerLog(c, "s").record(AT, {"requeued": 1}),
    "reconciler summary": lambda c: DynamoReconcilerLog(c, "s").summary(),
    "cache put": lambda c: DynamoCacheStore(c, "t").put("acme", "p", "ns", {"v": 1}, AT),
    "cache put expecting": lambda c: DynamoCacheStore(c, "t").put("acme", "p", "ns", {"v": 1}, AT, 0),
    "cache get": lambda c: DynamoCacheStore(c, "t").get("acme", "p", "ns"),
    "cache invalidate": lambda c: DynamoCacheStore(c, "t").invalidate("acme", "p", "ns", JOB_ID, AT),
    "cache record completion": lambda c: DynamoCacheStore(c, "t").record_completion(
        "acme", "p", TaskCompletion("demo.steps", AT, JOB_ID)),
    "cache completions": lambda c: DynamoCacheStore(c, "t").completions("acme", "p"),
    "job create": lambda c: DynamoJobStore(c, "t").create(_job()),
    "job create keyed": lambda c: DynamoJobStore(c, "t", keys_table="k").create_keyed(
        _job(), SubmissionKey("acme", "key-1", JOB_ID, "h", 2_000_000_000), now=1_900_000_000),
    "job apply": lambda c: DynamoJobStore(c, "t").apply(_job(), JobStatus.QUEUED, ChangeSet({"priority": "high"})),
    "job apply with a run": lambda c: DynamoJobStore(c, "t").apply(
        _job(), JobStatus.QUEUED, ChangeSet({"status": JobStatus.RUNNING},
                                            run=Run(job_id=JOB_ID, attempt=1, status=JobStatus.RUNNING))),
    "job cut message": lambda c: DynamoJobStore(c, "t").cut_progress_message(_job(), JobStatus.QUEUED, 10),
    "job apply expected": lambda c: DynamoJobStore(c, "t").apply_expected(
        JOB_ID, "acme", Expectation(equal={"attempts": 0}), ChangeSet({"attempts": 1}), mark_gone=False),
    "job add child": lambda c: DynamoJobStore(c, "t").add_child(JOB_ID, "child", 1),
    "job create child": lambda c: DynamoJobStore(c, "t").create_child(
        _job().model_copy(update={"id": "child", "parent_id": JOB_ID}), 1),
    "job get": lambda c: DynamoJobStore(c, "t").get(JOB_ID, mark_gone=False),
    "job progress": lambda c: DynamoJobStore(c, "t").record_progress(JOB_ID, 1, Progress(percent=5)),
    "job count": lambda c: DynamoJobStore(c, "t").count_unfinished("acme", 10),
    "job due": lambda c: DynamoJobStore(c, "t").due(AT, 10),
    "job runs": lambda c: DynamoJobStore(c, "t").runs(JOB_ID),
    "job keep parts": lambda c: DynamoJobStore(c, "t").keep_parts(JOB_ID, 2_000_000_000),
    "blob put": lambda c: S3BlobStore(c, "b").put("tmp/x", b"1", "text/plain"),
    "blob get": lambda c: S3BlobStore(c, "b").get("jobs/x"),
    "blob delete": lambda c: S3BlobStore(c, "b").delete(["tmp/x"]),
    "blob keys older than": lambda c: list(S3BlobStore(c, "b").keys_older_than("tmp/", _AT)),
    "finished before": lambda c: list(DynamoFinishedJobs(c, "t").finished_before(_AT, since=_AT)),
    "stats counts": lambda c: DynamoStatsStore(c, "s").status_counts(),
    "stats hours": lambda c: DynamoStatsStore(c, "s").hourly(["2026-01-01T00"]),
    "stats record": lambda c: DynamoStatsStore(c, "s").record_batch([StatDelta("j#1", status={"queued": 1})]),
    "stats unfinished": lambda c: DynamoStatsStore(c, "s").unfinished("acme"),
    "finished purge": lambda c: DynamoFinishedJobs(c, "t", S3BlobStore(c, "b")).purge(JOB_ID),
}


class _ReadsOneItem(Failing):
    """A DynamoDB client whose GetItem answers `item` and whose every other call fails."""

    def __init__(self, failure: Callable[[], Exception], item: dict[str, Any]) -> None:
        super().__init__(failure)
        self._item = item

    def get_item(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Item": self._item}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_child_link_the_store_did_not_take_is_an_outage_even_while_its_parent_reads(failure):
    """Only a refused condition is read back to say why a child was not listed: a throttled or
    unanswered write says nothing of the attempt, and told `attempt_ended` the handler would stop
    an attempt that still runs (its parent's record, read, does not list the child)."""
    from chalicelib.adapters.dynamodb_items import job_to_item

    parent = _job().model_copy(update={"status": JobStatus.RUNNING, "attempts": 1})
    with pytest.raises(StoreUnavailableError, match="could not link child"):
        DynamoJobStore(_ReadsOneItem(FAILURES[failure], job_to_item(parent)), "t").add_child(JOB_ID, "child", 1)


class _QueriesOneRun(Failing):
    """A DynamoDB client whose Query answers one run record of the job, expiring before any
    end's `until`, and whose every other call fails."""

    def query(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Items": [{"pk": {"S": f"JOB#{JOB_ID}"}, "sk": {"S": "RUN#0001"}, "expires_at": {"N": "1"}}]}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_part_whose_expiry_the_store_did_not_move_is_an_outage(failure):
    """Only a refused condition (the part gone, or moved later by another end) is a part left
    as it is: a throttled or unanswered move would let the run expire before its record."""
    with pytest.raises(StoreUnavailableError, match="could not keep the runs and artifacts"):
        DynamoJobStore(_QueriesOneRun(FAILURES[failure]), "t").keep_parts(JOB_ID, 2_000_000_000)


@pytest.mark.parametrize("failure", FAILURES)
def test_a_purge_whose_mark_the_store_did_not_take_goes_no_further(failure):
    """Unmarked, the job would still read as there while its items and objects went."""
    with pytest.raises(StoreUnavailableError, match=f"could not mark job {JOB_ID} for deletion"):
        DynamoFinishedJobs(Failing(FAILURES[failure]), "t").purge(JOB_ID)


class _TakesTheMark(Failing):
    """A DynamoDB client that takes a purge's mark (UpdateItem) and fails every other call."""

    def update_item(self, **_kwargs: Any) -> dict[str, Any]:
        return {}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_purge_whose_items_cannot_be_read_after_its_mark_is_an_outage(failure):
    """Marked, the job already reads as removed; with its items unread nothing is deleted, and
    the purge says the store did not answer, for a later run to finish it."""
    with pytest.raises(StoreUnavailableError, match=f"could not read job {JOB_ID} for deletion"):
        DynamoFinishedJobs(_TakesTheMark(FAILURES[failure]), "t").purge(JOB_ID)


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("call", STORE_CALLS)
def test_a_store_call_aws_refused_or_never_answered_is_store_unavailable(call, failure):
    cause = FAILURES[failure]
    with pytest.raises(StoreUnavailableError) as raised:
        STORE_CALLS[call](Failing(cause))
    assert isinstance(raised.value.__cause__, (ClientError, type(cause())))


@pytest.mark.parametrize("call, says", [
    ("artifact put", "could not record artifact a.txt"), ("artifact put of an attempt", "could not record artifact a.txt"),
    ("artifact list", "could not list artifacts"), ("artifact get", "could not read artifact a.txt"),
])
def test_an_artifact_call_the_store_did_not_answer_names_the_artifact_and_its_job(call, says):
    """The handler's (or the API's) error says what was not recorded or read, of which job."""
    with pytest.raises(StoreUnavailableError, match=f"^{says} of job {JOB_ID}$"):
        STORE_CALLS[call](Failing(FAILURES["timed out"]))


@pytest.mark.parametrize("failure", FAILURES)
def test_events_eventbridge_refused_or_never_answered_are_retried_then_named_unpublished(failure):
    client, waits = Failing(FAILURES[failure]), []
    with pytest.raises(EventPublishError) as raised:
        EventBridgePublisher(client, "bus", sleep=waits.append).publish([_event()])
    assert raised.value.unpublished == ["e1"]
    assert client.calls == len(waits) + 1 > 1  # tried again before giving up
    assert isinstance(raised.value.__cause__, type(FAILURES[failure]()))


@pytest.mark.parametrize("sent, shown", [
    ("1796167374273", "2026-12-01T23:22:54.273Z"),
    ("1796167374000", "2026-12-01T23:22:54.000Z"),  # a whole second keeps its milliseconds
    ("1796167374005", "2026-12-01T23:22:54.005Z"),
])
def test_a_dead_letters_sent_time_is_shown_like_every_other_time(sent, shown):
    from chalicelib.adapters.sqs_operations import _dead_letter

    letter = _dead_letter({"MessageId": "m-1", "Body": "{}", "Attributes": {"SentTimestamp": sent}})
    assert letter.sent_at == shown


def test_a_dead_letters_sent_time_is_in_utc_whatever_the_zone_of_the_machine_reading_it(monkeypatch):
    """SQS counts a message's SentTimestamp in milliseconds from the epoch in UTC: read on a
    machine set to another time zone (a `make run` laptop), the letter's time is still the one
    every other time of the API is written in, not shifted by that zone's offset."""
    from chalicelib.adapters.sqs_operations import _dead_letter

    monkeypatch.setenv("TZ", "IST-5:30")  # a POSIX zone: no time zone database needed
    time.tzset()
    try:
        letter = _dead_letter({"MessageId": "m-1", "Body": "{}", "Attributes": {"SentTimestamp": "1796167374273"}})
    finally:
        monkeypatch.undo()
        time.tzset()
    assert letter.sent_at == "2026-12-01T23:22:54.273Z"


class _DeniesOneKey:
    """An S3 client whose DeleteObjects answers 200 but reports one key of each request it
    could not delete (AccessDenied), as S3 does inside the answer of a quiet delete."""

    def delete_objects(self, *, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        keys = [o["Key"] for o in Delete["Objects"]]
        return {"Errors": [{"Key": keys[-1], "Code": "AccessDenied", "Message": "Access Denied"}]}


def test_a_blob_delete_s3_answers_with_keys_it_could_not_delete_is_store_unavailable():
    """DeleteObjects answers 200 and names the keys it did not delete: the objects are still
    there, so the delete is not reported done (a clean-up would count them gone)."""
    client = _DeniesOneKey()
    with pytest.raises(StoreUnavailableError, match="could not delete 1 objects") as raised:
        S3BlobStore(client, "b").delete(["tmp/a", "tmp/b"])
    assert raised.value.details == [{"key": "tmp/b", "code": "AccessDenied"}]


_ARN = "arn:aws:sqs:us-east-1:000000000000:jobs-normal"
_LETTER = DeadLetter("m-1", {}, None, receipt="r-1")


def _jobs_queue(client: Any) -> SqsJobQueue:
    return SqsJobQueue(client, {"normal": "http://q/000000000000/jobs-normal"},
                       {"normal": "http://q/000000000000/jobs-normal-dlq"})


def _operations(client: Any) -> SqsQueueOperations:
    return SqsQueueOperations(client, {"normal": "http://q/000000000000/jobs-normal"},
                              {"normal": "http://q/000000000000/jobs-normal-dlq"})


QUEUE_CALLS: dict[str, Callable[[Any], Any]] = {
    "send": lambda c: _jobs_queue(c).send(JobMessage(JOB_ID, 1), priority="normal"),
    "dead letter": lambda c: _jobs_queue(c).dead_letter(JobMessage(JOB_ID, 1), priority="normal", reason={}),
    "dead letter a body": lambda c: _jobs_queue(c).dead_letter_body("x", priority="normal", reason="no job"),
    "visibility": lambda c: _jobs_queue(c).set_visibility(_ARN, "r-1", 30),
    "visibility of many": lambda c: _jobs_queue(c).set_visibility_many(_ARN, ["r-1"], 30),
    "hand back": lambda c: _jobs_queue(c).hand_back(_ARN, [("{}", 1)]),
    "acknowledge": lambda c: _jobs_queue(c).acknowledge(_ARN, "r-1"),
    "acknowledge many": lambda c: _jobs_queue(c).acknowledge_many(_ARN, ["r-1"]),
    "park": lambda c: SqsDeadLetterQueue(c, "http://q/000000000000/subscriber-dlq").park("x", "refused"),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("call", QUEUE_CALLS)
def test_a_queue_call_sqs_refused_or_never_answered_is_queue_unavailable(call, failure):
    """A send, a visibility change, a delete or a park SQS refused or never answered is
    QueueUnavailableError, its cause chained: the worker leaves the message to come back, the
    API answers 503, and a botocore exception reaches neither."""
    cause = FAILURES[failure]
    with pytest.raises(QueueUnavailableError) as raised:
        QUEUE_CALLS[call](Failing(cause))
    assert isinstance(raised.value.__cause__, type(cause()))


@pytest.mark.parametrize("failure, unconfirmed", [
    (FAILURES["refused"], False), (FAILURES["timed out"], True), (FAILURES["unreachable"], False),
    (lambda: ConnectionClosedError(endpoint_url="http://127.0.0.1:4566/"), True),
], ids=["refused", "timed out", "unreachable", "connection closed"])
def test_a_dead_letter_whose_answer_was_lost_is_unconfirmed_and_one_never_sent_is_not(failure, unconfirmed):
    """A job's dead letter whose send timed out, or whose connection closed under it, may be on
    its queue (LetterUnconfirmedError: the reconciler looks there before parking it again); one
    SQS refused, or that found no connection, is not there, and is sent again as any
    unavailable queue's."""
    with pytest.raises(QueueUnavailableError) as raised:
        QUEUE_CALLS["dead letter"](Failing(failure))
    assert isinstance(raised.value, LetterUnconfirmedError) is unconfirmed


OPERATION_CALLS: dict[str, Callable[[Any], Any]] = {
    "queue depth": lambda c: _operations(c).queue_depth("normal"),
    "dead letter depth": lambda c: _operations(c).dead_letter_depth("normal"),
    "peek": lambda c: _operations(c).peek_dead_letters("normal", 5),
    "show again": lambda c: _operations(c).show_dead_letters("normal", [_LETTER]),
    "delete": lambda c: _operations(c).delete_dead_letters("normal", [_LETTER]),
    "redrive": lambda c: _operations(c).redrive("normal", 5),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("call", OPERATION_CALLS)
def test_a_queue_operation_sqs_refused_or_never_answered_is_dead_letter_unavailable(call, failure):
    """An operator's read, peek, delete or redrive SQS refused or never answered is
    DeadLetterUnavailableError, its cause chained: the route answers 503 for that queue and the
    listing of every queue goes on to the others."""
    cause = FAILURES[failure]
    with pytest.raises(DeadLetterUnavailableError) as raised:
        OPERATION_CALLS[call](Failing(cause))
    assert isinstance(raised.value.__cause__, type(cause()))


@pytest.mark.parametrize("failure, error", [("refused", "InternalServerError"),
                                            ("unreachable", "EndpointConnectionError: Could not connect")])
def test_a_queue_sqs_refused_or_never_answered_is_an_unhealthy_check(failure, error):
    """Health reads every queue and dead-letter queue: one SQS refuses (its error code) or
    that never answers (the exception, named) is a check that is not ok, not an error of the
    whole health answer. Each is named by its queue's name, a URL given with a trailing '/'
    too."""
    checks = SqsQueueOperations(Failing(FAILURES[failure]), {"normal": "http://q/000000000000/jobs-normal/"},
                                {"normal": "http://q/000000000000/jobs-normal-dlq"}).health()
    assert [(c["name"], c["kind"], c["ok"]) for c in checks] == [
        ("jobs-normal", "queue", False), ("jobs-normal-dlq", "dlq", False)]
    assert all(c["error"].startswith(error) for c in checks)


class _ReceivesOneLetter(Failing):
    """An SQS client that receives one job's letter from any queue and fails every other call."""

    def receive_message(self, **_kwargs: Any) -> dict[str, Any]:
        return {"Messages": [{"MessageId": "m-1", "ReceiptHandle": "r-1",
                              "Body": f'{{"job_id": "{JOB_ID}", "attempt": 1}}'}]}


@pytest.mark.parametrize("failure", FAILURES)
def test_a_redrive_whose_send_and_then_whose_show_again_fail_is_dead_letter_unavailable(failure):
    """A redrive read its letter, then SQS failed the send, and then the call that shows the
    letter again at once: the letter comes back by itself after PEEK_HIDE_S, so that second
    failure is no error of its own. The operator is told the redrive failed with nothing moved
    (DeadLetterUnavailableError, the send's failure its cause), not a botocore exception."""
    cause = FAILURES[failure]
    client = _ReceivesOneLetter(cause)
    with pytest.raises(DeadLetterUnavailableError) as raised:
        _operations(client).redrive("normal", 5)
    assert raised.value.details["moved"] == 0 and raised.value.details["sent_ids"] == []
    assert isinstance(raised.value.__cause__, type(cause()))
    assert client.calls == 2  # the send, then the visibility change that would show it again
