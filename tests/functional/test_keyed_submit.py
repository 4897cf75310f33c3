"""POST /jobs with an Idempotency-Key on moto: the job and the key's record in one transaction,
replays answered from the record, the requests each costs counted as the benchmark counts them."""
from __future__ import annotations

import json
import time
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib import aws_requests, composition
from chalicelib.adapters.dynamodb_items import job_key
from chalicelib.defaults import CONFLICT_RETRIES, REPLAY_RESEND_AFTER_S
from chalicelib.domain.errors import QueueUnavailableError
from chalicelib.domain.job import isoformat, utcnow
from tests.functional.conftest import LambdaContext, auth, receive_all
from tests.support.aws_calls import recorded_calls

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}


def post(client, body=STEPS, key="order-1", tenant="acme"):
    return client.http.post("/jobs", headers=auth(tenant, **{"Idempotency-Key": key}), body=json.dumps(body))


@pytest.fixture
def counted(aws, monkeypatch):
    """The AWS requests of each invocation, as the API reports them when counting is on."""
    monkeypatch.setenv("JOBPIPE_COUNT_AWS_REQUESTS", "true")
    composition.use(None)
    reports: list[dict[str, int]] = []
    take = aws_requests.AwsRequestCounter.take
    monkeypatch.setattr(aws_requests.AwsRequestCounter, "take", lambda self: reports.append(take(self)) or reports[-1])
    return reports


def test_a_keyed_submit_costs_what_a_plain_one_costs(client, counted):
    plain = client.http.post("/jobs", headers=auth("globex"), body=json.dumps(STEPS))
    assert plain.status_code == 202
    keyed = post(client)
    assert keyed.status_code == 202, keyed.body
    plain_requests, keyed_requests = counted[-2:]
    # The quota read, the writes of the job (and of the key, in the same transaction), the message.
    assert plain_requests == {"dynamodb.GetItem": 1, "dynamodb.PutItem": 1, "sqs.SendMessage": 1}
    assert keyed_requests == {"dynamodb.GetItem": 1, "dynamodb.TransactWriteItems": 1, "sqs.SendMessage": 1}
    assert sum(keyed_requests.values()) == sum(plain_requests.values()) == 3
    assert keyed.json_body["status"] == "queued" and keyed.json_body["version"] == 1


def test_a_replay_answers_the_first_job_and_sends_nothing(client, aws, counted):
    first = post(client).json_body
    assert len(receive_all(aws)) == 1
    counted.clear()
    calls = recorded_calls(composition.container().store._ddb)
    again = post(client, dict(reversed(list(STEPS.items()))))  # the same request, laid out otherwise
    assert again.status_code == 202 and again.json_body == first
    (replay,) = counted
    assert "sqs.SendMessage" not in replay and "dynamodb.PutItem" not in replay
    # the refused transaction returns the key's record, not read again; the job is read to answer it
    assert replay.get("dynamodb.TransactWriteItems") == 1 and replay.get("dynamodb.GetItem", 0) <= 2
    read_tables = [params["TableName"] for name, params in calls if name == "GetItem"]
    assert "idempotency" not in read_tables and "jobs" in read_tables
    assert receive_all(aws) == []
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert [j["id"] for j in listed] == [first["id"]]


def test_a_different_body_under_a_used_key_is_409_and_writes_nothing(client, aws):
    first = post(client).json_body
    conflict = post(client, dict(STEPS, payload={"steps": 3, "step_ms": 0}))
    assert conflict.status_code == 409
    assert conflict.json_body["error"]["code"] == "idempotency_conflict"
    assert conflict.json_body["error"]["message"] == "this Idempotency-Key was already used for a different request (another body, or a rerun of another job); send this one under a new key"
    listed = client.http.get("/jobs", headers=auth()).json_body["jobs"]
    assert [j["id"] for j in listed] == [first["id"]]


def test_a_replay_giving_a_field_at_its_default_answers_the_first_job(client, aws):
    """A retry that spells out what the first request left to its default (a client library that
    fills defaults in: the type's priority, no delay, no start time, no scope) asks for the very
    same job: it is answered that job, not 409; a priority other than the type's is another job."""
    first = post(client)
    assert first.status_code == 202, first.body
    spelled_out = dict(STEPS, priority="normal", delay_seconds=0, run_at=None, scope=None)
    again = post(client, spelled_out)
    assert (again.status_code, again.json_body["id"]) == (202, first.json_body["id"]), again.body
    assert post(client, dict(STEPS, priority="normal"), key="order-2").json_body["id"] == \
        post(client, key="order-2").json_body["id"]  # and the other way round
    other = post(client, dict(STEPS, priority="high"))
    assert other.status_code == 409 and other.json_body["error"]["code"] == "idempotency_conflict"
    assert len(receive_all(aws)) == 2


def test_a_replay_giving_a_payload_field_at_its_default_answers_the_first_job(client, aws):
    """A payload field spelled out at the default its type's schema gives it (GET /job-types, a
    form that fills defaults in) makes the job the first request made: the same request."""
    first = post(client)
    spelled_out = dict(STEPS, payload=dict(STEPS["payload"], fail_mode="retry", fail_at=None, message_chars=0))
    again = post(client, spelled_out)
    assert (again.status_code, again.json_body["id"]) == (202, first.json_body["id"]), again.body
    other = post(client, dict(STEPS, payload=dict(STEPS["payload"], fail_mode="fatal")))
    assert other.status_code == 409 and other.json_body["error"]["code"] == "idempotency_conflict"
    assert len(receive_all(aws)) == 1


# Beyond ASCII a header's bytes are read as ISO-8859-1 on one hop and as UTF-8 on another:
# "ключ" sent as UTF-8 bytes arrives as "ÐºÐ»Ñ\x8e...", its C1 controls refused, "é" as "Ã©", kept.
@pytest.mark.parametrize("key", ["", "x" * 256, "tab\there", "nul\x00", "ключ", "order-😀", "Ã©", "e\u0301",
                                 "\u202eltr"])
def test_a_key_that_is_no_key_is_400_and_writes_nothing(client, aws, key):
    response = post(client, key=key)
    assert response.status_code == 400 and response.json_body["error"]["code"] == "invalid_request"
    assert "printable ASCII" in response.json_body["error"]["message"]
    assert aws["ddb"].scan(TableName="idempotency")["Items"] == []
    assert aws["ddb"].scan(TableName="jobs")["Items"] == []


def test_an_expired_key_makes_a_new_job(client, aws):
    first = post(client).json_body
    lifecycle = composition.container().lifecycle
    later = utcnow() + timedelta(seconds=lifecycle.key_ttl_s + 1)
    lifecycle.clock = lambda: later
    again = post(client)
    assert again.status_code == 202 and again.json_body["id"] != first["id"]
    assert len(receive_all(aws)) == 2
    assert post(client).json_body["id"] == again.json_body["id"]  # the key now names the new job


def test_a_replay_whose_job_was_removed_before_its_key_is_410_job_purged_and_makes_nothing(client, aws):
    """Retention removes a job by its own TTL, the key by its own: a key can outlive its job. The
    replay says the request was accepted and its job is gone, and when the key makes a job again."""
    first = post(client).json_body
    assert len(receive_all(aws)) == 1
    aws["ddb"].delete_item(TableName="jobs", Key=job_key(first["id"]))
    again = post(client)
    assert again.status_code == 410, again.body
    error = again.json_body["error"]
    assert error["code"] == "job_purged"
    assert first["id"] in error["message"] and "Idempotency-Key" in error["message"]
    expires = composition.container().store.submission_key("acme", "order-1", now=0).expires_at
    assert error["details"] == {"job_id": first["id"], "key_expires_at": isoformat(
        datetime.fromtimestamp(expires, timezone.utc))}
    assert error["details"]["key_expires_at"] in error["message"]
    assert receive_all(aws) == []
    assert aws["ddb"].scan(TableName="jobs", Select="COUNT")["Count"] == 0
    assert post(client, key="order-2").status_code == 202  # a new key runs the request again


def test_a_replay_whose_job_is_being_purged_is_410_job_purged(client, aws):
    first = post(client).json_body
    aws["ddb"].update_item(TableName="jobs", Key=job_key(first["id"]), UpdateExpression="SET purging = :t",
                           ExpressionAttributeValues={":t": {"BOOL": True}})
    again = post(client)
    assert again.status_code == 410 and again.json_body["error"]["code"] == "job_purged", again.body


def test_a_replay_that_lands_while_the_first_is_in_flight_finds_the_first_job(client, aws):
    """The second request runs whole between the first's admission and its transaction: the
    first's transaction is then refused on the key and answers the second's job."""
    lifecycle = composition.container().lifecycle
    body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}
    other: dict = {}

    def admit(tenant):
        if not other:
            other["job"] = lifecycle.submit(tenant=tenant, user="ann", idempotency_key="race-1", **body)

    first = lifecycle.submit(tenant="acme", user="ann", idempotency_key="race-1", admit=admit, **body)
    assert first.id == other["job"].id
    assert len(receive_all(aws)) == 1
    assert len(client.http.get("/jobs", headers=auth()).json_body["jobs"]) == 1


def test_a_keyed_job_whose_message_was_not_sent_is_sent_by_the_reconciler(client, app, aws, monkeypatch):
    monkeypatch.setenv("JOBPIPE_DISPATCH_GRACE_S", "1")
    composition.use(None)
    queue = composition.container().queue
    send = queue.send

    def down(*args, **kwargs):
        raise QueueUnavailableError("queue down")

    queue.send = down
    job = post(client).json_body
    assert job["status"] == "queued" and receive_all(aws) == []
    queue.send = send
    time.sleep(1.2)  # past the dispatch grace: the job is due
    outcome = app.handler_map["reconciler"](
        {"version": "0", "id": "e1", "detail-type": "Scheduled Event", "source": "aws.events",
         "account": "1", "time": "2026-11-30T12:00:00Z", "region": "us-east-1", "resources": [], "detail": {}},
        LambdaContext(120))
    assert outcome["counts"] == {"redispatched": 1}
    (message,) = receive_all(aws)
    assert json.loads(message["Body"])["job_id"] == job["id"]
    assert post(client).json_body["id"] == job["id"]  # and the key still answers it


class RequestDied(BaseException):
    """The API's process ending under a request (a crash, its function's timeout): no handler of
    the app's takes it for an error, and its client gets no answer."""


def test_a_replay_sends_the_message_its_first_request_died_before_sending(client, aws, counted, monkeypatch):
    """The first request wrote its job and key and died before its SendMessage; its client,
    answered nothing, sends the key again. The replay, once the job is REPLAY_RESEND_AFTER_S past
    its start and still unclaimed, sends the job's first message through the same conditional
    write the reconciler's resend makes (its dispatch counted on the record): two requests more
    than a replay, on this path only. A replay after that sends nothing."""
    services = composition.container()

    def dies(*_, **__):
        raise RequestDied()

    with monkeypatch.context() as patch:
        patch.setattr(services.queue, "send", dies)
        with pytest.raises(RequestDied):
            post(client)
    assert receive_all(aws) == []
    later = utcnow() + timedelta(seconds=REPLAY_RESEND_AFTER_S + 1)
    monkeypatch.setattr(services.lifecycle, "clock", lambda: later)
    counted.clear()
    answered = post(client)
    assert answered.status_code == 202 and answered.json_body["status"] == "queued"
    (message,) = receive_all(aws)
    assert json.loads(message["Body"])["job_id"] == answered.json_body["id"]
    assert json.loads(message["Body"])["attempt"] == 1
    stored = aws["ddb"].get_item(TableName="jobs", Key=job_key(answered.json_body["id"]))["Item"]
    assert stored["dispatches"] == {"N": "2"}
    (replay,) = counted
    assert replay.get("dynamodb.UpdateItem") == 1 and replay.get("sqs.SendMessage") == 1
    assert post(client).json_body["id"] == answered.json_body["id"]
    assert receive_all(aws) == [], "one resend a job: the next is the reconciler's"


class _Client:
    """The DynamoDB client, with its transactions' refusals changed by `refuse`."""

    def __init__(self, real, refuse):
        self._real, self._refuse = real, refuse

    def __getattr__(self, name):
        return getattr(self._real, name)

    def transact_write_items(self, **kwargs):
        return self._refuse(lambda: self._real.transact_write_items(**kwargs))


def _store(aws, refuse):
    from chalicelib.adapters.dynamodb import DynamoJobStore

    return DynamoJobStore(_Client(aws["ddb"], refuse), "jobs", keys_table="idempotency")


def _job(i):
    from chalicelib.domain.job import Job

    return Job(id=f"00000000-0000-4000-8000-{i:012d}", type="demo.steps", tenant="acme", user="ann",
               payload={}, created_at="2026-01-01T00:00:00Z")


def _record(job, request_hash="h1"):
    from chalicelib.ports import SubmissionKey

    return SubmissionKey("acme", "order-1", job.id, request_hash, 2_000_000_000)


def test_a_refusal_without_the_stored_record_reads_the_key(aws):
    """A store that returns no ALL_OLD item with the cancellation: the record is read instead,
    consistently (the refusing record may have been written a moment before)."""
    from botocore.exceptions import ClientError

    def without_item(call):
        try:
            return call()
        except ClientError as exc:
            for reason in exc.response.get("CancellationReasons", []):
                reason.pop("Item", None)
            raise

    calls = recorded_calls(aws["ddb"])
    store = _store(aws, without_item)
    first, second = _job(1), _job(2)
    assert store.create_keyed(first, _record(first), now=1_900_000_000) is None
    assert store.create_keyed(second, _record(second, "h2"), now=1_900_000_000) == _record(first)
    assert store.get(second.id, mark_gone=False) is None
    key_reads = [params.get("ConsistentRead") for name, params in calls
                 if name == "GetItem" and params["TableName"] == "idempotency"]
    assert key_reads == [True]


def _conflict(reason="TransactionConflict"):
    """DynamoDB's cancellation of a keyed submit's transaction for `reason` on the key's record
    (TransactionConflict: it met another transaction on the key)."""
    from botocore.exceptions import ClientError

    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "conflict"},
                        "CancellationReasons": [{"Code": reason}, {"Code": "None"}]},
                       "TransactWriteItems")


def test_a_transaction_cancelled_by_a_concurrent_one_on_the_key_is_tried_again(aws):
    """DynamoDB cancels one of two simultaneous transactions on an item (TransactionConflict):
    the retry finds the record the other wrote."""
    first, second = _job(1), _job(2)
    plain = _store(aws, lambda call: call())
    tries = []

    def conflict_once(call):
        tries.append(1)
        if len(tries) == 1:  # the other transaction commits as this one is cancelled
            plain.create_keyed(first, _record(first), now=1_900_000_000)
            raise _conflict()
        return call()

    store = _store(aws, conflict_once)
    assert store.create_keyed(second, _record(second), now=1_900_000_000) == _record(first)
    assert len(tries) == 2 and store.get(second.id, mark_gone=False) is None
    assert store.get(first.id, mark_gone=False) is not None


@pytest.mark.parametrize("reason, refusals, tries", [
    ("TransactionConflict", CONFLICT_RETRIES, CONFLICT_RETRIES + 1),  # stored on its last try
    ("TransactionConflict", CONFLICT_RETRIES + 1, CONFLICT_RETRIES + 1),  # past the bound
    # the key's record refused it, and was gone when read (expired, deleted): tried again
    ("ConditionalCheckFailed", CONFLICT_RETRIES, CONFLICT_RETRIES + 1),
    ("ConditionalCheckFailed", CONFLICT_RETRIES + 1, CONFLICT_RETRIES + 1),
    ("ThrottlingError", 1, 1),  # botocore's to retry, not the adapter's
])
def test_a_keyed_submit_is_tried_again_past_each_conflict_or_vanished_record_up_to_its_bound(aws, reason, refusals, tries):
    """A key other submits keep writing cancels this one's transaction each time, or its record
    refuses it and is gone when read: it is tried again CONFLICT_RETRIES times, and stores the
    job on the last; past them the submit is a store outage (StoreUnavailableError, chained
    from the last cancellation, as every adapter error is), having stored nothing, never taken
    as stored. A cancellation for any other reason is not tried again."""
    from botocore.exceptions import ClientError
    from chalicelib.domain.errors import StoreUnavailableError

    sent = []

    def refusing(call):
        sent.append(1)
        if len(sent) <= refusals:
            raise _conflict(reason)
        return call()

    store, job = _store(aws, refusing), _job(1)
    stored = refusals < tries
    if stored:
        assert store.create_keyed(job, _record(job), now=1_900_000_000) is None
    else:
        with pytest.raises(StoreUnavailableError) as raised:
            store.create_keyed(job, _record(job), now=1_900_000_000)
        assert isinstance(raised.value.__cause__, ClientError)
    assert len(sent) == tries
    assert (store.get(job.id, mark_gone=False) is not None) == stored
    assert (store.submission_key("acme", "order-1", now=1_900_000_000) == _record(job)) == stored


def test_a_replayed_submit_is_not_counted_as_a_submission_again(client, monkeypatch):
    """`jobs_submitted` counts jobs made, as the statistics' `submitted` does: a client
    retrying under its key (a lost answer) gets the same job, and the metric the same count."""
    from chalicelib.api import routes

    counted: list[tuple[str, str]] = []
    monkeypatch.setattr(routes, "count", lambda name, job_type, *args, **kwargs: counted.append((name, job_type)))
    first = post(client)
    assert counted == [("jobs_submitted", "demo.steps")]  # the job made is counted when made
    again = post(client)
    assert (first.status_code, again.status_code) == (202, 202)
    assert again.json_body["id"] == first.json_body["id"]
    assert counted == [("jobs_submitted", "demo.steps")]
