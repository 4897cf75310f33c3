"""The AWS edge of stream replay: which StreamFailureQueue bodies describe a batch, and how the
stream's refusals become errors the reconciler acts on (held for an operator, or tried later)."""
from __future__ import annotations

import json
from datetime import datetime, timezone

import boto3
import pytest
from botocore.exceptions import ReadTimeoutError
from botocore.stub import Stubber

from chalicelib.adapters.dynamodb_stream import DynamoChangeStream
from chalicelib.adapters.sqs_stream_failures import failed_batch_of
from chalicelib.domain.errors import ChangeStreamUnavailableError, StreamBatchPartlyHeldError, StreamBatchUnreadableError
from chalicelib.ports import FailedStreamBatch

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/jobs/stream/2026-01-01T00:00:00.000"


SHARD = "shardId-00000001767225600000-2bac9cd2"


def seq(n: int) -> str:
    """A sequence number as DynamoDB Streams writes them (21 digits or more)."""
    return str(10**20 + n)


INFO = {"shardId": SHARD, "startSequenceNumber": seq(100), "endSequenceNumber": seq(104), "batchSize": 5,
        "streamArn": STREAM}


def message(body) -> dict:
    return {"MessageId": "m1", "ReceiptHandle": "rh", "Body": body if isinstance(body, str) else json.dumps(body),
            "Attributes": {"ApproximateReceiveCount": "3"}}


def test_an_on_failure_record_describes_its_batch():
    batch = failed_batch_of(message({"requestContext": {"condition": "MaxRecordAgeExceeded"}, "DDBStreamBatchInfo": INFO}))
    assert batch == FailedStreamBatch("rh", "m1", STREAM, SHARD, seq(100), seq(104), 5, "MaxRecordAgeExceeded", 3)


def test_the_shard_ids_and_sequence_numbers_dynamodb_streams_may_write_are_read():
    """Shard ids of 28 to 65 characters, sequence numbers of up to 40 digits: a description at
    those bounds is a batch to replay, not a body to hide."""
    for shard, end in (("s" * 28, "9" * 40), ("s" * 65, "9" * 40)):
        info = {**INFO, "shardId": shard, "endSequenceNumber": end}
        batch = failed_batch_of(message({"DDBStreamBatchInfo": info}))
        assert (batch.shard_id, batch.last_sequence) == (shard, end)
    longer = failed_batch_of(message({"DDBStreamBatchInfo": {**INFO, "startSequenceNumber": "9" * 20}}))
    assert longer.first_sequence == "9" * 20, "a range is read by number, not as text"


def test_a_description_without_a_batch_size_or_of_none_is_still_a_batch_to_replay():
    without = {k: v for k, v in INFO.items() if k != "batchSize"}
    for info in (without, {**INFO, "batchSize": 0}):
        batch = failed_batch_of(message({"DDBStreamBatchInfo": info}))
        assert (batch.size, batch.condition) == (0, "unknown")


@pytest.mark.parametrize("body", [
    "not json", "[]", {"job_id": "j1"}, {"DDBStreamBatchInfo": {**INFO, "startSequenceNumber": "1e5"}},
    {"DDBStreamBatchInfo": {**INFO, "startSequenceNumber": seq(200)}},  # ends before it starts
    {"DDBStreamBatchInfo": {**INFO, "streamArn": ""}}, {"DDBStreamBatchInfo": {**INFO, "shardId": None}},
    {"DDBStreamBatchInfo": {**INFO, "shardId": "shardId-1"}},
    {"DDBStreamBatchInfo": {**INFO, "shardId": "s" * 27}}, {"DDBStreamBatchInfo": {**INFO, "shardId": "s" * 66}},
    {"DDBStreamBatchInfo": {**INFO, "startSequenceNumber": ""}},
    {"DDBStreamBatchInfo": {**INFO, "endSequenceNumber": "9" * 41}},
    {"DDBStreamBatchInfo": {**INFO, "endSequenceNumber": "1e5"}}, {"DDBStreamBatchInfo": {**INFO, "batchSize": -1}},
])
def test_any_other_body_describes_no_batch(body):
    assert failed_batch_of(message(body)) is None


def test_a_parked_record_s_body_names_its_job_and_is_ascii():
    """GET /api/system/dlq shows the job beside the record; the size check counts characters
    as bytes, so the body must escape what is not ASCII."""
    from chalicelib.adapters.sqs_stream_failures import parked_body

    record = {"dynamodb": {"SequenceNumber": seq(7), "Keys": {"pk": {"S": "JOB#j-1"}, "sk": {"S": "JOB"}},
                           "NewImage": {"message": {"S": "déjà vu"}}}}
    body = parked_body(record)
    assert body.isascii() and json.loads(body) == {"job_id": "j-1", "parked_stream_record": record}
    other = {"dynamodb": {"SequenceNumber": seq(8), "Keys": {"pk": {"S": "TENANT#acme"}, "sk": {"S": "JOB"}}}}
    assert json.loads(parked_body(other))["job_id"] is None


def test_a_parked_record_s_message_is_a_batch_of_that_one_record_as_it_was_received():
    """Replayed from its message, never from the stream: the record whole, whatever it carries
    besides (a record the function received without its source's ARN too)."""
    from chalicelib.adapters.sqs_stream_failures import parked_body

    received = {"eventName": "MODIFY", "dynamodb": {"SequenceNumber": seq(7), "SizeBytes": 120,
                                                     "Keys": {"pk": {"S": "JOB#j-1"}, "sk": {"S": "JOB"}}}}
    batch = failed_batch_of(message(parked_body(received)))
    assert batch == FailedStreamBatch("rh", "m1", "", "", seq(7), seq(7), 1, "RecordUnreadable", 3, records=(received,))
    named = {**received, "eventSourceARN": STREAM}
    assert failed_batch_of(message(parked_body(named))).stream_arn == STREAM


def test_a_body_that_describes_no_batch_is_hidden_for_the_longest_hold_and_told():
    """Nothing will take it: looked at on every pass it would be received, and said, every few
    minutes; hidden for SQS's longest hold, it is named twice a day for an operator."""
    from chalicelib.adapters.sqs_stream_failures import SqsFailedStreamBatches
    from chalicelib.defaults import EMPTY_RECEIVES, FOREIGN_BODY_SHOWN_CHARS, SQS_MAX_HOLD_S

    url = "https://sqs.us-east-1.amazonaws.com/123456789012/stream-failures"
    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    told = []
    with Stubber(client) as stubber:
        stubber.add_response("receive_message", {"Messages": [
            {"MessageId": "m-1", "ReceiptHandle": "rh-1", "Body": "x" * (FOREIGN_BODY_SHOWN_CHARS + 10)}]})
        for _ in range(EMPTY_RECEIVES):  # then dry: asked again before it is taken for so
            stubber.add_response("receive_message", {"Messages": []})
        stubber.add_response("change_message_visibility", {},
                             {"QueueUrl": url, "ReceiptHandle": "rh-1", "VisibilityTimeout": SQS_MAX_HOLD_S})
        failures = SqsFailedStreamBatches(client, url, on_foreign=lambda *told_: told.append(told_))
        assert failures.take(10, 60) == []
        stubber.assert_no_pending_responses()
    assert told == [("m-1", "x" * FOREIGN_BODY_SHOWN_CHARS, SQS_MAX_HOLD_S)]


@pytest.fixture
def failure_queue():
    from chalicelib.adapters.sqs_stream_failures import SqsFailedStreamBatches

    client = boto3.client("sqs", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield SqsFailedStreamBatches(client, "https://sqs.us-east-1.amazonaws.com/123456789012/stream-failures"), stubber


def test_a_failure_queue_that_refuses_is_said_not_taken_for_empty_or_settled(failure_queue):
    """A take or a settle SQS refused must raise: an empty take would hide every failed batch
    from the replay, a settle that did not happen would look done."""
    from chalicelib.domain.errors import DeadLetterUnavailableError

    failures, stubber = failure_queue
    stubber.add_client_error("receive_message", service_error_code="AWS.SimpleQueueService.NonExistentQueue")
    with pytest.raises(DeadLetterUnavailableError, match="could not read StreamFailureQueue"):
        failures.take(10, 60)
    stubber.add_client_error("delete_message", service_error_code="ReceiptHandleIsInvalid")
    with pytest.raises(DeadLetterUnavailableError, match="could not remove a replayed batch"):
        failures.settle(batch())


def test_a_parked_record_travels_with_why_and_a_refused_park_says_where(failure_queue):
    from chalicelib.adapters.sqs_stream_failures import parked_body
    from chalicelib.domain.errors import QueueUnavailableError

    failures, stubber = failure_queue
    unreadable = {"dynamodb": {"SequenceNumber": seq(7)}}
    stubber.add_response("send_message", {"MessageId": "m-1", "MD5OfMessageBody": "x"}, {
        "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/stream-failures",
        "MessageBody": parked_body(unreadable),
        "MessageAttributes": {"reason": {"DataType": "String", "StringValue": "the new image is no job"}}})
    failures.park(unreadable, "the new image is no job")
    stubber.add_client_error("send_message", service_error_code="AWS.SimpleQueueService.NonExistentQueue")
    with pytest.raises(QueueUnavailableError, match="could not park a stream record on StreamFailureQueue"):
        failures.park(unreadable, "the new image is no job")


def test_a_take_asks_for_the_batches_wanted_hidden_no_longer_than_sqs_allows(failure_queue):
    """SQS refuses a visibility timeout past 12 hours: a longer hold is cut to it."""
    from botocore.stub import ANY

    from chalicelib.defaults import SQS_MAX_HOLD_S

    failures, stubber = failure_queue
    described = [{**message({"DDBStreamBatchInfo": INFO}), "MessageId": f"m{n}"} for n in range(3)]
    stubber.add_response("receive_message", {"Messages": described}, {
        "QueueUrl": ANY, "MaxNumberOfMessages": 3, "VisibilityTimeout": SQS_MAX_HOLD_S, "WaitTimeSeconds": 0,
        "MessageSystemAttributeNames": ANY, "MessageAttributeNames": ANY})
    assert [b.message_id for b in failures.take(3, SQS_MAX_HOLD_S + 1)] == ["m0", "m1", "m2"]


class _AnswersNothing:
    """An SQS client whose every call times out."""

    def __getattr__(self, _name):
        def call(**_kwargs):
            raise ReadTimeoutError(endpoint_url="https://sqs.us-east-1.amazonaws.com")
        return call


def test_a_failure_queue_that_does_not_answer_is_said_not_taken_for_empty_settled_or_held():
    from chalicelib.adapters.sqs_stream_failures import SqsFailedStreamBatches
    from chalicelib.domain.errors import DeadLetterUnavailableError

    failures = SqsFailedStreamBatches(_AnswersNothing(),
                                      "https://sqs.us-east-1.amazonaws.com/123456789012/stream-failures")
    with pytest.raises(DeadLetterUnavailableError, match="could not read StreamFailureQueue"):
        failures.take(10, 60)
    with pytest.raises(DeadLetterUnavailableError, match="could not remove a replayed batch"):
        failures.settle(batch())
    with pytest.raises(DeadLetterUnavailableError, match="could not hold a batch"):
        failures.hold(batch(), 60)


def test_a_hold_is_cut_to_what_sqs_accepts(failure_queue):
    """No less than nothing, no longer than SQS's 12 hours: a wait past either is not refused."""
    from chalicelib.defaults import SQS_MAX_HOLD_S

    failures, stubber = failure_queue
    for asked, held in ((-5, 0), (SQS_MAX_HOLD_S + 1, SQS_MAX_HOLD_S)):
        stubber.add_response("change_message_visibility", {}, {
            "QueueUrl": "https://sqs.us-east-1.amazonaws.com/123456789012/stream-failures", "ReceiptHandle": "rh",
            "VisibilityTimeout": held})
        failures.hold(batch(), asked)
    stubber.assert_no_pending_responses()


def test_a_parked_record_of_exactly_one_message_s_size_is_parked(failure_queue):
    from chalicelib.adapters.sqs_stream_failures import parked_body
    from chalicelib.defaults import PARKED_RECORD_MAX_BYTES
    from chalicelib.domain.errors import StreamRecordTooLargeError

    failures, stubber = failure_queue

    def sized(filler: int) -> dict:
        return {"dynamodb": {"SequenceNumber": seq(7), "NewImage": {"payload": {"S": "x" * filler}}}}

    fitting = sized(PARKED_RECORD_MAX_BYTES - len(parked_body(sized(0))))
    assert len(parked_body(fitting)) == PARKED_RECORD_MAX_BYTES
    stubber.add_response("send_message", {"MessageId": "m-1", "MD5OfMessageBody": "x"})
    failures.park(fitting, "unreadable")
    stubber.assert_no_pending_responses()
    with pytest.raises(StreamRecordTooLargeError):
        failures.park(sized(PARKED_RECORD_MAX_BYTES - len(parked_body(sized(0))) + 1), "unreadable")


def batch(stream_arn: str = STREAM) -> FailedStreamBatch:
    return FailedStreamBatch("rh", "m1", stream_arn, SHARD, seq(100), seq(104), 5, "RetryAttemptsExhausted")


@pytest.fixture
def stubbed():
    client = boto3.client("dynamodbstreams", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        yield DynamoChangeStream(client, "jobs"), stubber


@pytest.mark.parametrize("code, error", [
    ("ResourceNotFoundException", StreamBatchUnreadableError),
    ("LimitExceededException", ChangeStreamUnavailableError),
    ("InternalServerError", ChangeStreamUnavailableError),
])
def test_a_stream_that_no_longer_holds_the_batch_is_told_from_one_that_cannot_answer_now(stubbed, code, error):
    stream, stubber = stubbed
    stubber.add_client_error("get_shard_iterator", service_error_code=code)
    with pytest.raises(error):
        stream.records(batch())


def test_records_the_stream_trims_while_they_are_read_are_no_longer_held(stubbed):
    """The batch's records may pass the stream's 24 hours between the iterator and the read:
    held for an operator like a batch trimmed before, not tried again every few minutes."""
    stream, stubber = stubbed
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})
    stubber.add_client_error("get_records", service_error_code="TrimmedDataAccessException")
    with pytest.raises(StreamBatchUnreadableError, match="no longer holds records"):
        stream.records(batch())


def test_a_shard_that_keeps_answering_empty_pages_is_left_for_a_later_pass_after_the_page_limit(stubbed):
    """A batch not reached in STREAM_MAX_PAGES_PER_BATCH pages is the stream not answering for
    now: tried again on a later pass, never read on without end within one."""
    from chalicelib.defaults import STREAM_MAX_PAGES_PER_BATCH

    stream, stubber = stubbed
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-0"})
    for page in range(STREAM_MAX_PAGES_PER_BATCH):
        stubber.add_response("get_records", {"Records": [], "NextShardIterator": f"it-{page + 1}"})
    with pytest.raises(ChangeStreamUnavailableError, match=f"not reached in {STREAM_MAX_PAGES_PER_BATCH} pages"):
        stream.records(batch())
    stubber.assert_no_pending_responses()


def record(sequence: int) -> dict:
    return {"eventName": "INSERT", "dynamodb": {"SequenceNumber": seq(sequence), "Keys": {"pk": {"S": "x"}}}}


def test_a_stream_that_starts_after_the_batch_no_longer_holds_it(stubbed):
    stream, stubber = stubbed
    stubber.add_client_error("get_shard_iterator", service_error_code="TrimmedDataAccessException")
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-0"},
                         {"StreamArn": STREAM, "ShardId": SHARD, "ShardIteratorType": "TRIM_HORIZON"})
    stubber.add_response("get_records", {"Records": [record(105)], "NextShardIterator": "it-1"})
    with pytest.raises(StreamBatchUnreadableError, match=f"no longer holds record {seq(100)}") as refused:
        stream.records(batch())
    assert not isinstance(refused.value, StreamBatchPartlyHeldError)


def test_a_stream_that_starts_inside_the_batch_gives_the_records_it_still_holds(stubbed):
    """The batch's first record passed the stream's 24 hours (GetShardIterator at it is refused,
    TrimmedDataAccessException): read from the oldest record the stream holds, its later ones are
    there to publish."""
    stream, stubber = stubbed
    stubber.add_client_error("get_shard_iterator", service_error_code="TrimmedDataAccessException")
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-0"},
                         {"StreamArn": STREAM, "ShardId": SHARD, "ShardIteratorType": "TRIM_HORIZON"})
    stubber.add_response("get_records", {"Records": [record(103), record(104), record(105)], "NextShardIterator": "it-1"})
    with pytest.raises(StreamBatchPartlyHeldError, match=f"no longer holds record {seq(100)}") as partly:
        stream.records(batch())
    assert [r["dynamodb"]["SequenceNumber"] for r in partly.value.held] == [seq(103), seq(104)]
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})  # an iterator at the first record, past it
    stubber.add_response("get_records", {"Records": [record(102), record(104)], "NextShardIterator": "it-2"})
    with pytest.raises(StreamBatchPartlyHeldError) as partly:
        stream.records(batch())
    assert [r["dynamodb"]["SequenceNumber"] for r in partly.value.held] == [seq(102), seq(104)]


def test_a_stream_that_lost_only_the_batch_s_first_record_gives_the_rest_as_partly_held(stubbed):
    stream, stubber = stubbed
    stubber.add_client_error("get_shard_iterator", service_error_code="TrimmedDataAccessException")
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-0"},
                         {"StreamArn": STREAM, "ShardId": SHARD, "ShardIteratorType": "TRIM_HORIZON"})
    stubber.add_response("get_records", {"Records": [record(101), record(104)], "NextShardIterator": "it-1"})
    with pytest.raises(StreamBatchPartlyHeldError, match=f"no longer holds record {seq(100)}") as partly:
        stream.records(batch())
    assert [r["dynamodb"]["SequenceNumber"] for r in partly.value.held] == [seq(101), seq(104)]


def test_a_stream_read_that_times_out_is_tried_again_later_not_left_for_an_operator():
    class TimesOut:
        def get_shard_iterator(self, **_kwargs):
            return {"ShardIterator": "it-1"}

        def get_records(self, **_kwargs):
            raise ReadTimeoutError(endpoint_url="https://streams.dynamodb.us-east-1.amazonaws.com")

    with pytest.raises(ChangeStreamUnavailableError, match="could not read the jobs table's stream"):
        DynamoChangeStream(TimesOut(), "jobs").records(batch())


def test_records_are_read_across_pages_up_to_the_last_of_the_batch(stubbed):
    stream, stubber = stubbed
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})
    # A page as large as GetRecords gives (1000 records: a larger Limit is refused).
    stubber.add_response("get_records", {"Records": [record(100), record(102)], "NextShardIterator": "it-2"},
                         {"ShardIterator": "it-1", "Limit": 1000})
    stubber.add_response("get_records", {"Records": [], "NextShardIterator": "it-3"})
    stubber.add_response("get_records", {"Records": [record(104), record(105)], "NextShardIterator": "it-4"})
    assert [r["dynamodb"]["SequenceNumber"] for r in stream.records(batch())] == [seq(100), seq(102), seq(104)]


def test_a_record_read_back_is_as_the_stream_function_receives_it(stubbed):
    """GetRecords gives the creation time as a datetime, the function receives epoch seconds:
    a replayed record reads as the delivered one did, its other fields as they were."""
    stream, stubber = stubbed
    created = datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=timezone.utc)
    first = {**record(100), "eventID": "e-100",
             "dynamodb": {**record(100)["dynamodb"], "ApproximateCreationDateTime": created}}
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})
    stubber.add_response("get_records", {"Records": [first, record(104)], "NextShardIterator": "it-2"})
    (delivered, _) = stream.records(batch())
    assert delivered == {**first, "dynamodb": {**first["dynamodb"], "ApproximateCreationDateTime": 1_767_225_600.5}}


def test_records_before_the_batch_s_first_are_passed_over(stubbed):
    """A stream that answers an iterator at the first record with earlier ones too (as a shard
    read from its start would): they are no part of the batch, and do not make it look trimmed."""
    stream, stubber = stubbed
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})
    stubber.add_response("get_records", {"Records": [record(n) for n in range(98, 106)], "NextShardIterator": "it-2"})
    assert [r["dynamodb"]["SequenceNumber"] for r in stream.records(batch())] == [seq(n) for n in range(100, 105)]


def test_a_closed_shard_is_read_to_its_end_once(stubbed):
    """A shard that closed (split) before the batch's last sequence number was reached has no
    next page: its records are the batch's, not a reason to ask the stream again."""
    stream, stubber = stubbed
    stubber.add_response("get_shard_iterator", {"ShardIterator": "it-1"})
    stubber.add_response("get_records", {"Records": [record(100), record(102)]})
    assert [r["dynamodb"]["SequenceNumber"] for r in stream.records(batch())] == [seq(100), seq(102)]
    stubber.assert_no_pending_responses()


def test_a_batch_of_another_stream_is_never_read(stubbed):
    stream, _ = stubbed  # no response stubbed: a request would fail the test
    for arn in (STREAM.replace("table/jobs/", "table/jobs2/"), STREAM.replace("table/jobs/", "table/old-jobs/"),
                STREAM.removeprefix("arn:"), "arn:aws:dynamodb:us-east-1:1:table/jobs", "jobs"):
        with pytest.raises(StreamBatchUnreadableError):
            stream.records(batch(arn))
