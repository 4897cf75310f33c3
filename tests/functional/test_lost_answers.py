"""A write whose answer was lost: DynamoDB applied it, but the answer never came back (a read
timeout, a connection reset, a 500 after the write) and botocore sent the request again. The
second try of a conditional write finds the first one's result and is refused; what the user
sees must be what happened, the write that landed."""
from __future__ import annotations

import json
import time
from typing import Any, Callable

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from pydantic import BaseModel

from chalicelib import composition
from chalicelib.adapters.dynamodb import DynamoJobStore
from chalicelib.adapters.dynamodb_items import moves_into
from chalicelib.adapters.s3 import S3BlobStore
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.job import Job, child_job_id
from chalicelib.ports import JobMessage, SubmissionKey
from tests.functional.conftest import auth, drain, get_job, invoke_worker, receive_all, receive_all_peek, sqs_event
from tests.functional.test_reconciler import operator_headers, quick_grace, reconcile  # noqa: F401 - a fixture

LARGE = {"type": "demo.outputs", "payload": {"pad": "x" * (70 * 1024)}}
STEPS = {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}}


class NoInput(BaseModel):
    pass


class AnswersLost:
    """A DynamoDB client whose `operation` is applied by each try, with every try's answer lost
    but the last, as botocore's standard retries meet a write whose answer timed out: `tries`
    requests reach DynamoDB, and the last one's answer (or refusal) is what the caller gets;
    with `all_lost`, that one times out too."""

    def __init__(self, client: Any, operation: str, *, tries: int = 2, all_lost: bool = False,
                 only: Callable[[dict[str, Any]], bool] = lambda request: True) -> None:
        self._client = client
        self._operation = operation
        self._only = only
        self._tries = tries
        self._all_lost = all_lost
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != self._operation:
            return real

        def lost(**kwargs: Any) -> Any:
            if not self._only(kwargs):
                return real(**kwargs)
            self.calls += 1
            for _ in range(self._tries - (0 if self._all_lost else 1)):
                try:
                    real(**kwargs)
                except Exception:  # noqa: BLE001 - its answer was lost whatever it was
                    pass
            if self._all_lost:
                raise ReadTimeoutError(endpoint_url="https://dynamodb.us-east-1.amazonaws.com/")
            return real(**kwargs)

        return lost


def _jobs_of(client) -> list[dict]:
    return client.http.get("/jobs", headers=auth()).json_body["jobs"]


@pytest.mark.parametrize("refusal", ["with its item", "without an item"])
def test_a_submission_whose_first_try_landed_is_accepted_once(app, client, aws, refusal):
    """The job's PutItem landed and its answer was lost; botocore's second try is refused by the
    write's own condition (the id exists). That job is the one the user asked for: the answer is
    202 with it, and its message goes out now, not a 409 `conflict` for a job that then runs
    anyway once the reconciler finds it due (and again when the user, told it failed, resubmits).
    The refusal carries the item that refused it (ALL_OLD), which tells the job without a read;
    from a store whose refusal carries none, the item is read, consistently: it was just written."""
    store = composition.container().store
    job_reads = []

    def sent(params: dict[str, Any], model: Any, **_: Any) -> None:
        if model.name == "PutItem" and refusal == "without an item":
            params.pop("ReturnValuesOnConditionCheckFailure", None)
        if model.name == "GetItem" and params["TableName"] == "jobs":
            job_reads.append(params.get("ConsistentRead"))

    store._ddb.meta.events.register("provide-client-params.dynamodb.*", sent)
    store._ddb = AnswersLost(store._ddb, "put_item")

    response = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS))

    assert response.status_code == 202, response.body
    assert job_reads == ([] if refusal == "with its item" else [True])
    job_id = response.json_body["id"]
    assert [j["id"] for j in _jobs_of(client)] == [job_id]
    assert len(receive_all(aws)) == 1


def test_a_claim_checked_submission_whose_answer_never_came_keeps_its_payload(app, client, aws):
    """Every try's answer was lost, so the API cannot know whether the job was stored and says so
    (503). The job may have been stored, and then it is due and runs: its payload object must
    still be there for it, not deleted as if the write had been refused."""
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "put_item", all_lost=True)

    response = client.http.post("/jobs", headers=auth(), body=json.dumps(LARGE))

    assert response.status_code == 503, response.body
    store._ddb = store._ddb._client
    [stored] = _jobs_of(client)
    read = client.http.get(f"/jobs/{stored['id']}", headers=auth())
    assert read.status_code == 200, read.body  # not 410 blob_not_found
    assert read.json_body["payload"]["pad"] == LARGE["payload"]["pad"]


def _claims(request: dict[str, Any]) -> bool:
    return moves_into(request, "running")


def test_a_claim_whose_first_try_landed_runs_the_attempt(app, client, aws):
    """The claim's write started the attempt and its answer was lost; botocore's second try is
    refused, since the job is running now, and the refusal shows the attempt this very claim
    started. The delivery runs it: deferred as if another worker held it, the attempt would run
    nowhere until its lease ended, then end `worker_lost` (a job of one attempt failed so without
    ever running)."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_claims)
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert lost.calls == 1
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_a_claim_after_a_read_whose_first_try_landed_runs_the_attempt(app, client, aws):
    """The same on the claim that reads the job first (a message without the hints of the claim
    without a read: one sent before they were added, or redriven from a dead-letter queue)."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    receive_all(aws)
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_claims)
    event = sqs_event([{"Body": json.dumps({"job_id": job_id, "attempt": 1})}])

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert lost.calls == 1
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


def test_a_claim_whose_every_answer_was_lost_runs_the_attempt_it_started(app, client, aws):
    """Every try of the claim's write timed out, one having landed: the delivery finds its own
    claim on the record (its claim_id) and runs the attempt. Failed instead, its redelivery would
    have found a claim it could not tell from a live worker's and waited out the lease."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "update_item", all_lost=True, only=_claims)
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


class ObjectReads:
    """An S3 client whose GetObject fails (503 SlowDown, as after botocore's retries) on the calls
    `failing` says, counting every call."""

    def __init__(self, client: Any, failing: Callable[[int], bool]) -> None:
        self._client, self._failing, self.calls = client, failing, 0

    def get_object(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self._failing(self.calls):
            raise ClientError({"Error": {"Code": "SlowDown", "Message": "Please reduce your request rate."}},
                              "GetObject")
        return self._client.get_object(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _object_reads(failing: Callable[[int], bool]) -> ObjectReads:
    blobs = composition.container().store._blobs
    blobs._s3 = reads = ObjectReads(blobs._s3, failing)
    return reads


def test_a_claim_whose_payload_read_failed_after_its_write_runs_the_attempt(app, client, aws):
    """The claim landed, then reading its claim-checked payload back from S3 failed: the delivery
    reads it again and runs the attempt, rather than failing with the attempt claimed (its
    redelivery would have waited out the lease, and the attempt ended `worker_lost` unrun)."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(LARGE)).json_body["id"]
    reads = _object_reads(lambda call: call == 1)
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert reads.calls == 2
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"]) == ("completed", 1)


@pytest.mark.parametrize("max_attempts, ends", [(2, "retrying"), (1, "failed")])
def test_a_claimed_attempt_whose_payload_stays_unreadable_is_given_back_at_once(app, client, aws, max_attempts, ends):
    """S3 does not answer the claim's read of the payload, nor the read after: the attempt ends at
    once, `payload_unavailable`, retried while attempts remain (its next message sent), not left
    running under a lease no worker holds."""
    services = composition.container()

    class Padded(BaseModel):
        pad: str

    @services.registry.register(f"lost.payload{max_attempts}", Padded, max_attempts=max_attempts, timeout_s=600)
    def run(ctx, payload):
        return "ran"

    body = {"type": f"lost.payload{max_attempts}", "payload": {"pad": "x" * (70 * 1024)}}
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(body)).json_body["id"]
    reads = _object_reads(lambda call: True)
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}  # nothing left to this message

    reads._failing = lambda call: False  # S3 answers the reads below
    job = get_job(client, job_id)
    assert (job["status"], job["attempts"], job["error"]["code"]) == (ends, 1, "payload_unavailable")
    assert "its handler did not run" in job["error"]["message"]
    runs = client.http.get(f"/jobs/{job_id}/runs", headers=auth()).json_body["runs"]
    assert [(r["attempt"], r["error"]["code"]) for r in runs] == [(1, "payload_unavailable")]
    dead = [json.loads(m["Body"]) for m in receive_all(aws, "dlq_url")]
    if ends == "retrying":  # the next attempt's message sent, delayed as a retry is
        assert receive_all_peek(aws, "jobs_url") == 1 and dead == []
        drain(app, aws)
        assert get_job(client, job_id)["status"] == "completed"
    else:
        assert receive_all_peek(aws, "jobs_url") == 0 and [(m["job_id"], m["attempt"]) for m in dead] == [(job_id, 1)]


def test_a_completion_retried_on_a_fresh_record_reads_no_object(app, client, aws):
    """A parent that spawned completes on a stale version (the spawn moved it) and is written
    again on its record read afresh: the record alone, the payload kept from the claim. Read with
    its claim-checked payload, an S3 error there lost the completed attempt to its lease."""
    services = composition.container()

    class Padded(BaseModel):
        pad: str

    @services.registry.register("lost.fanout", Padded, max_attempts=1, timeout_s=60)
    def fan(ctx, payload):
        return {"children": [ctx.spawn("demo.steps", {"steps": 1, "step_ms": 0})]}

    body = {"type": "lost.fanout", "payload": {"pad": "x" * (70 * 1024)}}
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(body)).json_body["id"]
    reads = _object_reads(lambda call: call > 1)  # the claim's read answers; no other may be needed
    event = sqs_event(receive_all(aws))

    assert invoke_worker(app, event) == {"batchItemFailures": []}

    assert reads.calls == 1
    reads._failing = lambda call: False  # S3 answers the reads below
    job = get_job(client, job_id)
    assert job["status"] in ("completed", "running") and job["attempts"] == 1 and len(job["children"]) == 1
    assert job.get("error") is None


def test_a_claim_checked_child_whose_answer_never_came_keeps_its_payload(app, client, aws):
    """A spawn whose transaction (the child and its place on the parent) may have landed with
    every answer lost: the handler is told it failed, and the child, if stored, is due and runs;
    its payload object must still be there for it."""
    parent_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    services = composition.container()
    running = services.lifecycle.claim(JobMessage(parent_id, 1)).job
    services.store._ddb = AnswersLost(services.store._ddb, "transact_write_items", all_lost=True)

    with pytest.raises(StoreUnavailableError):
        services.lifecycle.spawn(running, 1, type=LARGE["type"], payload=LARGE["payload"])

    services.store._ddb = services.store._ddb._client
    child = services.store.get(child_job_id(parent_id, 1, 1), mark_gone=False)
    assert child is not None and child.id in services.store.get(parent_id, mark_gone=False).children
    read = client.http.get(f"/jobs/{child.id}", headers=auth())
    assert read.status_code == 200, read.body  # not 410 blob_not_found
    assert read.json_body["payload"]["pad"] == LARGE["payload"]["pad"]


class RefusedOutright:
    """A DynamoDB client that refuses `operation` on its one and only try (a 4xx that botocore
    does not retry): DynamoDB wrote nothing, and the answer says so."""

    def __init__(self, client: Any, operation: str) -> None:
        self._client = client
        self._operation = operation

    def __getattr__(self, name: str) -> Any:
        if name != self._operation:
            return getattr(self._client, name)

        def refused(**_kwargs: Any) -> Any:
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"},
                               "ResponseMetadata": {"HTTPStatusCode": 400, "RetryAttempts": 0}}, name)

        return refused


NEW_JOB_WRITES: dict[str, tuple[str, Callable[[Any, Any], Any]]] = {
    "submit": ("put_item", lambda store, job: store.create(job)),
    "keyed submit": ("transact_write_items", lambda store, job: store.create_keyed(
        job, SubmissionKey(job.tenant, "order-1", job.id, "h1", 2_000_000_000), now=1_900_000_000)),
    "spawn": ("transact_write_items", lambda store, job: store.create_child(job, 1)),
}


@pytest.mark.parametrize("write", sorted(NEW_JOB_WRITES))
@pytest.mark.parametrize("failure", ["refused", "answer lost"])
def test_a_new_jobs_payload_object_goes_only_with_a_write_that_stored_nothing(aws, write, failure):
    """A new job's write (a submission, a keyed one, a spawn) puts its large payload's object
    first. Refused outright (a 4xx on its only try), the write stored nothing: its object goes
    too, not left behind for no job. With every answer lost, the job may be stored and due: its
    object stays for it."""
    store = DynamoJobStore(aws["ddb"], "jobs", blobs=S3BlobStore(aws["s3"], "jobs-bucket"), keys_table="idempotency")
    operation, make = NEW_JOB_WRITES[write]
    store._ddb = (RefusedOutright(aws["ddb"], operation) if failure == "refused"
                  else AnswersLost(aws["ddb"], operation, all_lost=True))
    job = Job(id=child_job_id("00000000-0000-4000-8000-000000000001", 1, 1), type=LARGE["type"], tenant="acme",
              user="ann", payload=LARGE["payload"], created_at="2026-01-01T00:00:00.000Z",
              parent_id="00000000-0000-4000-8000-000000000001")

    with pytest.raises(StoreUnavailableError):
        make(store, job)

    kept = [o["Key"] for o in aws["s3"].list_objects_v2(Bucket="jobs-bucket").get("Contents", [])]
    assert kept == ([] if failure == "refused" else [f"jobs/{job.id}/payload.json"])


def _first_spawn(request: dict[str, Any], seen: list) -> bool:
    """Whether `request` is the first TransactWriteItems (`seen` holds those before) that makes
    a child: its first item puts a job with a parent."""
    items = request.get("TransactItems") or [{}]
    if "parent_id" in items[0].get("Put", {}).get("Item", {}) and not seen:
        seen.append(request)
        return True
    return False


def _run_with_first_spawn_lost(app: Any, client: Any, aws: dict[str, Any], job_type: str) -> tuple[str, dict[str, Any]]:
    """A job of `job_type` submitted and run by one worker invocation whose first spawn's
    transaction lands with every answer lost; its id and the job as GET shows it then."""
    services = composition.container()
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(
        {"type": job_type, "payload": {}})).json_body["id"]
    event = sqs_event(receive_all(aws))
    seen: list = []
    services.store._ddb = AnswersLost(services.store._ddb, "transact_write_items", all_lost=True,
                                      only=lambda request: _first_spawn(request, seen))
    assert invoke_worker(app, event) == {"batchItemFailures": []}
    services.store._ddb = services.store._ddb._client
    return job_id, get_job(client, job_id)


@pytest.mark.parametrize("again, children", [("same", 1), ("another", 2)])
def test_a_spawn_made_again_after_every_answer_was_lost_makes_its_child_once(app, client, aws, again, children):
    """A spawn whose transaction landed with every answer lost raises StoreUnavailableError; a
    handler that caught it and spawned the same child again got a second one, the spawn's index
    having moved on. It takes on the child the first try made, and sends it; another request
    is made beside that child, which stays the job's."""
    services = composition.container()

    @services.registry.register("lost.spawns_again", NoInput, max_attempts=1, timeout_s=60)
    def spawns_again(ctx, payload):
        try:
            ctx.spawn("demo.steps", STEPS["payload"])
        except StoreUnavailableError:
            pass
        return [ctx.spawn("demo.steps", {**STEPS["payload"], "steps": 1 if again == "same" else 2})]

    job_id, job = _run_with_first_spawn_lost(app, client, aws, "lost.spawns_again")
    assert job["status"] == "completed" and len(job["children"]) == children
    assert job["children"][:1] == [child_job_id(job_id, 1, 1)]
    assert job["result"] == job["children"][-1:]
    # each child's message, the first one's (its spawn sent none) by the spawn that found it
    assert sorted(json.loads(m["Body"])["job_id"] for m in receive_all(aws)) == sorted(job["children"])


def test_a_spawn_made_again_after_another_takes_on_the_child_its_lost_answer_made(app, client, aws):
    """The handler caught the StoreUnavailableError of a spawn whose transaction landed, spawned
    another child (made at the next place, the first passed over) and then the first again:
    that took a fresh place and made its child twice. It takes on the child the first try made,
    whatever spawn came between; each child is sent its message once."""
    services = composition.container()

    @services.registry.register("lost.spawns_between", NoInput, max_attempts=1, timeout_s=60)
    def spawns_between(ctx, payload):
        try:
            ctx.spawn("demo.steps", STEPS["payload"])
        except StoreUnavailableError:
            pass
        between = ctx.spawn("demo.steps", {**STEPS["payload"], "steps": 2})
        return [between, ctx.spawn("demo.steps", STEPS["payload"])]

    job_id, job = _run_with_first_spawn_lost(app, client, aws, "lost.spawns_between")
    first, between = child_job_id(job_id, 1, 1), child_job_id(job_id, 1, 2)
    assert job["status"] == "completed" and job["children"] == [first, between]
    assert job["result"] == [between, first]
    assert sorted(json.loads(m["Body"])["job_id"] for m in receive_all(aws)) == sorted(job["children"])


def _moves_into(status: str) -> Callable[[dict[str, Any]], bool]:
    return lambda request: moves_into(request, status)


def _writes(field: str) -> Callable[[dict[str, Any]], bool]:
    """An UpdateItem request that sets the job field `field`."""
    return lambda request: field in request.get("ExpressionAttributeNames", {}).values()


def test_a_cancel_whose_first_try_landed_is_answered_canceled(app, client, aws):
    """A queued job's cancel wrote `canceled` and its answer was lost; botocore's retry is
    refused, since the job is canceled now. That is this cancel, recorded: the answer is 202
    with the canceled job, not a 409 `job_finished` telling the user the job was already
    canceled (by whom?), which a client reads as a cancel that did not happen here."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_moves_into("canceled"))

    response = client.http.delete(f"/jobs/{job_id}", headers=auth())

    assert lost.calls == 1
    assert response.status_code == 202, response.body
    assert response.json_body["status"] == "canceled"


def test_a_running_jobs_cancel_request_whose_first_try_landed_is_answered_requested(app, client, aws):
    """The request on a running job is written on its attempt, not on the version read; its
    retry after a lost answer is refused by the request it made, and answered 202 with the
    cancel requested."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    assert composition.container().lifecycle.claim(JobMessage(job_id, 1)).job.status.value == "running"
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_writes("cancel_requested"))

    response = client.http.delete(f"/jobs/{job_id}", headers=auth())

    assert lost.calls == 1
    assert response.status_code == 202, response.body
    assert response.json_body["status"] == "running" and response.json_body["cancel_requested"] is True


class CanceledMeanwhile:
    """A DynamoDB client before whose first cancel write another cancel of the same job lands
    (another request, its own write id): the write is refused on a job canceled, not by it."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        real = getattr(self._client, name)
        if name != "update_item":
            return real

        def raced(**kwargs: Any) -> Any:
            if moves_into(kwargs, "canceled"):
                self.calls += 1
                if self.calls == 1:
                    values = kwargs["ExpressionAttributeValues"]
                    real(**{**kwargs, "ExpressionAttributeValues": {**values, ":write_id": {"S": "another-cancel"}}})
            return real(**kwargs)

        return raced


def test_a_cancel_refused_on_a_job_another_cancel_ended_is_told_the_job_is_finished(app, client, aws):
    """What the cancel above recognises is its own write, not any cancel: a cancel whose write is
    refused because another cancel ended the job between its read and its write is 409
    `job_finished`, as a cancel of a job canceled before is."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    store = composition.container().store
    store._ddb = raced = CanceledMeanwhile(store._ddb)

    response = client.http.delete(f"/jobs/{job_id}", headers=auth())

    assert raced.calls == 1  # refused once; read again, the job is canceled and nothing is written
    assert response.status_code == 409, response.body
    assert response.json_body["error"]["code"] == "job_finished"
    assert client.http.delete(f"/jobs/{job_id}", headers=auth()).status_code == 409


def test_a_redispatch_whose_write_landed_sends_the_message(quick_grace, app, client, aws):
    """The reconciler writes a due job's next dispatch before it sends the message (two passes
    send one). That write landed with its answer lost, and its retry was refused by it: the
    pass counted the job `raced` and sent nothing, so the job waited out another, doubled grace
    with a dispatch spent on no message. It sends the message now."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    time.sleep(1.2)
    store = composition.container().store
    store._ddb = lost = AnswersLost(store._ddb, "update_item", only=_writes("dispatches"))

    assert reconcile(app)["counts"] == {"redispatched": 1}

    assert lost.calls == 1
    store._ddb = store._ddb._client
    [message] = receive_all(aws)
    assert json.loads(message["Body"])["job_id"] == job_id


def test_a_dead_lettered_failure_whose_write_landed_is_counted_as_one(app, client, aws):
    """The reconciler failed a job whose message was dead-lettered; the write's answer was lost
    and its retry refused by it. The pass counts what it did (`dead_lettered`), not `raced`."""
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS)).json_body["id"]
    (message,) = receive_all(aws)
    aws["sqs"].send_message(QueueUrl=aws["dlq_url"], MessageBody=message["Body"])
    store = composition.container().store
    store._ddb = AnswersLost(store._ddb, "update_item", only=_moves_into("failed"))

    assert reconcile(app)["counts"] == {"dead_lettered": 1}
    assert get_job(client, job_id)["error"]["code"] == "dead_lettered"


def test_a_reconciler_pass_whose_record_landed_is_counted_once(quick_grace, app, client, aws):
    """A pass's record adds to the running totals; its answer lost, botocore's retry added them
    again, and the operator's stats showed two passes and two redispatches for one of each."""
    client.http.post("/jobs", headers=auth(), body=json.dumps(STEPS))
    aws["sqs"].purge_queue(QueueUrl=aws["jobs_url"])
    time.sleep(1.2)
    log = composition.container().reconciler_log
    log._ddb = AnswersLost(log._ddb, "update_item")

    answer = reconcile(app)

    totals = client.http.get("/api/system/stats", headers=operator_headers()).json_body["reconciler"]["totals"]
    assert totals == {"passes": 1, "redispatched": 1}
    assert answer["errors"] == [], "the retry refused by its own first try is the pass recorded, not an error"


def test_a_dead_letter_whose_answer_was_lost_is_parked_once(app, client, aws):
    """A job failed for good: its dead letter reached the queue and the answer was lost. The
    letter goes on a client that never tries a send again (botocore's retry parked a second
    one), the delivery ends, and the attempt's message, delivered again, parks nothing; the
    reconciler finds the letter on the queue and clears the job's mark, so nothing parks it later."""
    body = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0, "fail_at": 1, "fail_mode": "fatal"}}
    job_id = client.http.post("/jobs", headers=auth(), body=json.dumps(body)).json_body["id"]
    (message,) = receive_all(aws)
    letters_client = composition.container().client("sqs", single_try=True)
    assert letters_client.meta.config.retries["total_max_attempts"] == 1

    def answer_lost(model, params, context, **_):
        letters_client.meta.events.unregister("before-call.sqs.SendMessage", answer_lost)
        letters_client._make_request(model, params, context)  # applied; its answer never comes
        raise ReadTimeoutError(endpoint_url=letters_client.meta.endpoint_url)

    letters_client.meta.events.register("before-call.sqs.SendMessage", answer_lost)
    assert invoke_worker(app, sqs_event([message]))["batchItemFailures"] == []
    assert invoke_worker(app, sqs_event([message]))["batchItemFailures"] == []  # delivered again

    assert get_job(client, job_id)["status"] == "failed"
    assert receive_all_peek(aws, "dlq_url") == 1
    assert reconcile(app)["counts"] == {"owed_letter_found": 1}
    stored = composition.container().store.get(job_id, mark_gone=False)
    assert stored.dead_letter_owed is None and stored.dead_letter_unconfirmed is None and stored.due_at is None
    assert receive_all_peek(aws, "dlq_url") == 1
