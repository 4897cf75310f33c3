"""Worker batches of up to ten jobs, without giving up crash isolation: batch-mates wait their
turn under a short lease, come back that soon when the process dies, are sent again as new
messages when a long job holds them up, are handed back untouched when their turn comes too
late, and those delivered (or handed back) most often run first."""
from __future__ import annotations

import json
import time

import pytest

from chalicelib.adapters.clocks import ManualClock
from chalicelib.defaults import BATCH_MATE_LEASE_S, BATCH_MATE_WAIT_S, BATCH_TURN_MARGIN_S, LEASE_GRACE_S
from chalicelib.worker import batch, handlers
from chalicelib.worker.runner import JobRunner
from tests.functional.conftest import drain, get_job, invoke_worker, receive_all, sqs_event, submit_job

STEPS = {"type": "demo.steps", "payload": {"steps": 2, "step_ms": 0}}


def submit(client, n: int) -> list[str]:
    return [submit_job(client, STEPS)["id"] for _ in range(n)]


def status(client, job_id: str) -> str:
    return get_job(client, job_id)["status"]


def job_of(message: dict) -> str:
    return json.loads(message["Body"])["job_id"]


def hand_back_unanswered(monkeypatch) -> None:
    """The jobs queue does not answer a hand-back: batch-mates stay in the batch for their turn."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import QueueUnavailableError

    def unavailable(self, arn, bodies):
        raise QueueUnavailableError("the queue did not answer")

    monkeypatch.setattr(type(container().queue), "hand_back", unavailable)


def runs_for(monkeypatch, clock: ManualClock, seconds: dict[str, float]) -> None:
    """Each job in `seconds` runs that long on the worker's clock: it moves on as the job's
    attempt starts, the timers due meanwhile firing while the job runs."""
    real = JobRunner._execute

    def timed(self, job):
        clock.advance(seconds.get(job.id, 0))
        return real(self, job)

    monkeypatch.setattr(JobRunner, "_execute", timed)


def test_a_batch_runs_every_job_and_deletes_nothing_it_did_not_finish(app, client, aws, worker_clock):
    ids = submit(client, 3)
    result = invoke_worker(app, sqs_event(receive_all(aws)))
    assert result == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed"] * 3


def test_a_process_that_dies_gives_its_batch_mates_back_after_their_short_lease(app, client, aws, monkeypatch):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    monkeypatch.setattr(batch, "BATCH_MATE_LEASE_S", 1)
    real_run = JobRunner.run

    def dies_on_the_first(self, message, **kwargs):
        if message.job_id == ids[0]:
            raise SystemExit("the process died")  # no Exception: nothing in the batch catches it
        return real_run(self, message, **kwargs)

    monkeypatch.setattr(JobRunner, "run", dies_on_the_first)
    with pytest.raises(SystemExit):
        invoke_worker(app, sqs_event(messages))
    time.sleep(1.5)
    back = receive_all(aws)
    # the batch-mates are visible again; the first keeps the queue's visibility timeout
    assert sorted(job_of(m) for m in back) == sorted(ids[1:])
    assert [status(client, i) for i in ids] == ["queued"] * 3


def test_a_batch_mate_whose_turn_comes_after_its_short_lease_is_handed_back_untouched(
        app, client, aws, monkeypatch, worker_clock):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    hand_back_unanswered(monkeypatch)  # so they wait their turn
    runs_for(monkeypatch, worker_clock, {ids[0]: BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S + 1})
    event = sqs_event(messages)
    result = invoke_worker(app, event)
    handed_back = {f["itemIdentifier"] for f in result["batchItemFailures"]}
    assert handed_back == {r["messageId"] for r in event["Records"][1:]}
    assert [status(client, i) for i in ids] == ["completed", "queued", "queued"]


def test_a_batch_mate_whose_turn_comes_just_within_its_short_lease_runs(app, client, aws, monkeypatch, worker_clock):
    """Its turn comes as the turn margin begins, not after: the margin is still its own, and
    its lease is extended at once."""
    ids = submit(client, 2)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    hand_back_unanswered(monkeypatch)  # so it waits its turn
    runs_for(monkeypatch, worker_clock, {ids[0]: BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S})
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed", "completed"]


def test_a_job_the_invocation_has_no_time_left_for_is_not_started(app, client, aws, worker_clock):
    """The worker function's remaining time reaches each claim: a job whose timeout does not
    fit in what is left of the invocation is not started (Lambda would end it part way, its
    attempt lost until the reconciler found it) but handed back as a failure, still queued."""
    (job,) = submit(client, 1)
    event = sqs_event(receive_all(aws))
    result = invoke_worker(app, event, timeout_s=5)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert status(client, job) == "queued"


def test_a_batch_mates_short_lease_counts_from_before_the_workers_queue_client_was_built(
        app, client, aws, monkeypatch, worker_clock):
    """A fresh process's first batch builds its queue client after the invocation began (on a
    cold start, seconds): the batch-mates' short leases were running meanwhile, so their turns
    are counted from the invocation's start, and one too late by then is handed back untouched,
    not run where its message may already be delivered again."""
    from chalicelib.composition import Container, container

    ids = submit(client, 2)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    hand_back_unanswered(monkeypatch)  # so it waits its turn
    container().__dict__.pop("queue")  # a fresh process: its queue client not built yet
    real_client = Container.client

    def slow_to_build(self, service, **kwargs):
        if service == "sqs" and "queue" not in self.__dict__:
            worker_clock.advance(BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S + 1)
        return real_client(self, service, **kwargs)

    monkeypatch.setattr(Container, "client", slow_to_build)
    event = sqs_event(messages)
    assert invoke_worker(app, event) == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert [status(client, i) for i in ids] == ["completed", "queued"]


def test_drain_runs_a_whole_batch_however_long_the_job_ahead_takes(app, client, aws, monkeypatch):
    """drain() delivers what is on a queue as one batch: on a slow machine a job ahead of the
    others runs past BATCH_MATE_WAIT_S of real time, and still none is handed back."""
    ids = submit(client, 3)
    real, ran = JobRunner._execute, []

    def first_runs_long(self, job):
        if not ran:
            time.sleep(BATCH_MATE_WAIT_S + 0.5)  # real time, as a busy machine takes it
        ran.append(job.id)
        return real(self, job)

    monkeypatch.setattr(JobRunner, "_execute", first_runs_long)
    drain(app, aws, rounds=1)
    assert sorted(ran) == sorted(ids)  # all in the one round's batch
    assert [status(client, i) for i in ids] == ["completed"] * 3


def test_the_records_delivered_most_often_run_first(app, client, aws, monkeypatch, worker_clock):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    event = sqs_event(messages)
    event["Records"][2]["attributes"]["ApproximateReceiveCount"] = "3"
    monkeypatch.setattr(batch, "BATCH_MATE_LEASE_S", 4)
    invoke_worker(app, event)
    assert [status(client, i) for i in ids] == ["queued", "queued", "completed"]


def execution_order(monkeypatch) -> list[str]:
    """The ids of the jobs the worker runs from now on, in the order it runs them."""
    real, ran = JobRunner._execute, []

    def noted(self, job):
        ran.append(job.id)
        return real(self, job)

    monkeypatch.setattr(JobRunner, "_execute", noted)
    return ran


def test_a_batch_runs_in_its_own_order_not_the_events(app, client, aws, monkeypatch, worker_clock):
    """Every record runs (each within its short lease), those delivered most often first,
    whatever order the event listed them in."""
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    event = sqs_event(messages)
    event["Records"][1]["attributes"]["ApproximateReceiveCount"] = "2"
    event["Records"][2]["attributes"]["ApproximateReceiveCount"] = "3"
    ran = execution_order(monkeypatch)
    assert invoke_worker(app, event) == {"batchItemFailures": []}
    assert ran == [ids[2], ids[1], ids[0]]


def held_up_batch(client, aws, monkeypatch, worker_clock, n: int) -> tuple[str, list[str], list[dict]]:
    """A slow job (running past BATCH_MATE_WAIT_S on the worker's clock) and `n` quick ones
    received in one batch, the slow one first."""
    slow, *ids = submit(client, 1 + n)
    runs_for(monkeypatch, worker_clock, {slow: BATCH_MATE_WAIT_S + 1})
    return slow, ids, sorted(receive_all(aws), key=lambda m: [slow, *ids].index(job_of(m)))


def test_batch_mates_a_long_job_holds_up_are_sent_again_as_new_messages(app, client, aws, monkeypatch, worker_clock):
    slow, ids, messages = held_up_batch(client, aws, monkeypatch, worker_clock, 2)
    # answered as done: the originals leave the queue, the copies take their place in line
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    assert [status(client, i) for i in (slow, *ids)] == ["completed", "queued", "queued"]
    copies = receive_all(aws)
    assert sorted(job_of(m) for m in copies) == sorted(ids)
    assert [m["Body"] for m in copies] == [next(o["Body"] for o in messages if job_of(o) == job_of(m))
                                           for m in copies]
    assert {m["MessageAttributes"]["handbacks"]["StringValue"] for m in copies} == {"1"}
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in copies)  # not nearer the redrive
    # quick jobs: none waits
    assert invoke_worker(app, sqs_event(copies)) == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed"] * 2


def test_the_originals_of_handed_back_batch_mates_leave_the_queue_at_once(app, client, aws, monkeypatch, worker_clock):
    """A handed-back original must not outlive its short lease on the queue while the long job
    runs: delivered again, it would run beside its copy, be handed back again (one more copy
    each time) and count receives towards the redrive policy until it was dead-lettered."""
    slow, ids, messages = held_up_batch(client, aws, monkeypatch, worker_clock, 2)
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    # before the batch's answer deletes anything, only the copies and the long job's own
    # message (in flight: the answer deletes it) are on the queue; the originals are gone
    counts = aws["sqs"].get_queue_attributes(QueueUrl=aws["jobs_url"], AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    assert (counts["ApproximateNumberOfMessages"], counts["ApproximateNumberOfMessagesNotVisible"]) == ("2", "1")
    on_queue = receive_all(aws)
    assert sorted(job_of(m) for m in on_queue) == sorted(ids)
    assert all("handbacks" in m["MessageAttributes"] for m in on_queue)


def test_a_line_of_long_jobs_behind_two_workers_dead_letters_none_of_them(app, client, aws, monkeypatch, worker_clock):
    """Two workers, a line of jobs each longer than a batch-mate may wait: every batch runs one
    and hands back the rest. Made visible again, a message would count a receive per batch it
    waited in, and two batches taken together can each hold a message at the redrive policy's
    10 receives while running only one: the other would be dead-lettered (and its job failed
    `dead_lettered`) without having run. A copy starts at one receive."""
    ids = submit(client, 30)
    runs_for(monkeypatch, worker_clock, dict.fromkeys(ids, BATCH_MATE_WAIT_S + 1))
    for _ in range(60):  # two event source mapping pollers: each receives a batch, then both run
        batches = [aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], MaxNumberOfMessages=10, AttributeNames=["All"],
                                              MessageAttributeNames=["All"]).get("Messages", []) for _ in range(2)]
        if not any(batches):
            break
        for received in filter(None, batches):  # and each deletes what its batch finished
            event = sqs_event(received)
            failed = {f["itemIdentifier"] for f in invoke_worker(app, event)["batchItemFailures"]}
            for record in event["Records"]:
                if record["messageId"] not in failed:
                    aws["sqs"].delete_message(QueueUrl=aws["jobs_url"], ReceiptHandle=record["receiptHandle"])
    assert [status(client, i) for i in ids] == ["completed"] * len(ids)
    assert receive_all(aws, "dlq_url") == []


def test_batch_mates_the_queue_does_not_take_back_wait_their_turn(app, client, aws, monkeypatch, worker_clock):
    hand_back_unanswered(monkeypatch)
    slow, ids, messages = held_up_batch(client, aws, monkeypatch, worker_clock, 2)
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    assert [status(client, i) for i in (slow, *ids)] == ["completed"] * 3
    assert receive_all(aws) == []


def test_a_batch_mate_whose_copy_the_queue_refused_runs_in_its_batch(app, client, aws, monkeypatch, worker_clock):
    from chalicelib.composition import container

    queue_type = type(container().queue)
    real = queue_type.hand_back
    # the second of the two entries refused, the first sent
    monkeypatch.setattr(queue_type, "hand_back", lambda self, arn, bodies: {1} | real(self, arn, bodies[:1]))
    slow, ids, messages = held_up_batch(client, aws, monkeypatch, worker_clock, 2)
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    assert [status(client, i) for i in (slow, *ids)] == ["completed", "queued", "completed"]
    assert [job_of(m) for m in receive_all(aws)] == [ids[0]]


def test_a_message_handed_back_more_often_runs_first(app, client, aws, monkeypatch, worker_clock):
    ids = submit(client, 3)
    messages = sorted(receive_all(aws), key=lambda m: ids.index(job_of(m)))
    event = sqs_event(messages)
    event["Records"][2]["messageAttributes"]["handbacks"] = {"stringValue": "2", "dataType": "Number"}
    event["Records"][1]["attributes"]["ApproximateReceiveCount"] = "2"
    monkeypatch.setattr(batch, "BATCH_MATE_LEASE_S", 4)  # under the turn margin: only the first runs
    invoke_worker(app, event)
    assert [status(client, i) for i in ids] == ["queued", "queued", "completed"]


def test_a_copy_keeps_its_place_earned_by_the_deliveries_before_its_hand_back(
        app, client, aws, monkeypatch, worker_clock):
    """A message delivered four times (deferred, failed) and then handed back has waited longer
    than one delivered three times: its copy, one receive on a new message, runs first."""
    slow, ids, messages = held_up_batch(client, aws, monkeypatch, worker_clock, 1)
    event = sqs_event(messages)
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"  # the long job leads the batch
    event["Records"][1]["attributes"]["ApproximateReceiveCount"] = "4"
    assert invoke_worker(app, event) == {"batchItemFailures": []}
    (copy,) = receive_all(aws)
    assert job_of(copy) == ids[0]
    other = submit(client, 1)[0]
    (waited_less,) = [m for m in receive_all(aws) if job_of(m) == other]
    event = sqs_event([waited_less, copy])
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    monkeypatch.setattr(batch, "BATCH_MATE_LEASE_S", 4)  # under the turn margin: only the first runs
    invoke_worker(app, event)
    assert [status(client, i) for i in (ids[0], other)] == ["completed", "queued"]


def visibility_calls(monkeypatch) -> list[int]:
    """The seconds of every single-message visibility change the worker makes from now on."""
    from chalicelib.composition import container

    queue_type = type(container().queue)
    real = queue_type.set_visibility
    calls: list[int] = []

    def spy(self, queue_arn, receipt_handle, seconds):
        calls.append(seconds)
        return real(self, queue_arn, receipt_handle, seconds)

    monkeypatch.setattr(queue_type, "set_visibility", spy)
    return calls


def test_batch_mates_that_finish_within_their_short_lease_cost_no_visibility_change(
        app, client, aws, monkeypatch, worker_clock):
    ids = submit(client, 4)
    calls = visibility_calls(monkeypatch)
    result = invoke_worker(app, sqs_event(receive_all(aws)))
    assert result == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed"] * 4
    assert calls == []  # only the batch's one shortening call, none per claim
    assert worker_clock.armed == 0, "each finished attempt's extension is cancelled with it, not left to fire"
    worker_clock.advance(BATCH_MATE_LEASE_S)
    assert calls == [] and worker_clock.armed == 0, "no extension is left to come for a finished attempt"


def test_a_batch_mate_still_running_as_its_short_lease_ends_is_hidden_for_its_attempts_lease(
        app, client, aws, monkeypatch, worker_clock):
    """Its turn comes within its short lease (the job ahead takes no time on the worker's
    clock) and it runs on past the lease less the turn margin: hidden for its attempt's lease
    then, once, for what is left of that lease."""
    fast, slow = submit(client, 2)
    messages = sorted(receive_all(aws), key=lambda m: [fast, slow].index(job_of(m)))
    runs_for(monkeypatch, worker_clock, {slow: BATCH_MATE_LEASE_S})  # outlives its short lease
    calls = visibility_calls(monkeypatch)
    assert invoke_worker(app, sqs_event(messages)) == {"batchItemFailures": []}
    assert [status(client, i) for i in (fast, slow)] == ["completed", "completed"]
    from chalicelib.composition import container

    lease = container().store.get(slow, mark_gone=False).timeout_s + LEASE_GRACE_S
    assert calls == [lease - (BATCH_MATE_LEASE_S - BATCH_TURN_MARGIN_S)]  # its lease's end, as if held at the claim
    assert worker_clock.armed == 0  # nothing left to fire after the batch


def test_a_lease_extension_cancelled_before_it_is_due_never_happens():
    holds: list[int] = []
    clock = ManualClock()
    lease = batch._LeaseExtension(holds.append, due_at=60.0, clock=clock)
    lease.schedule(300)
    lease.cancel()
    clock.advance(120)
    assert holds == []
    late = batch._LeaseExtension(holds.append, due_at=0.0, clock=clock)
    clock.advance(10)
    late.schedule(300)  # due at once: when the clock next moves
    clock.advance(4)
    late.cancel()
    assert holds == [300]


def test_a_lease_extension_that_fires_late_never_makes_its_message_visible_at_once():
    """A timer held up past the attempt's whole lease (a process starved by its handler) still
    hides the message for a second: a hold of 0 would hand a running job's message to the next
    receive at once."""
    holds: list[int] = []
    clock = ManualClock()
    lease = batch._LeaseExtension(holds.append, due_at=60.0, clock=clock)
    lease.schedule(40)
    clock.advance(60)
    assert holds == [1]


class FiringClock(ManualClock):
    """A ManualClock whose timers' callbacks are kept (`fires`), to run one as a system timer
    runs it when its wait ended just as it was cancelled: cancel() cannot stop it any more."""

    def __init__(self) -> None:
        super().__init__()
        self.fires: list = []

    def timer(self, delay_s, fire):
        self.fires.append(fire)
        return super().timer(delay_s, fire)


def test_a_lease_extension_whose_timer_fires_as_it_is_cancelled_never_happens():
    """The attempt ended and its hold was settled: an extension that comes after would hide a
    finished delivery's message, or undo the hold its ending set."""
    holds: list[int] = []
    clock = FiringClock()
    lease = batch._LeaseExtension(holds.append, due_at=60.0, clock=clock)
    lease.schedule(300)
    clock.advance(59)
    lease.cancel()
    (fire,) = clock.fires
    fire()
    assert holds == []


def test_a_batch_hands_back_nothing_once_it_has_ended(monkeypatch):
    """However the batch ends (here its records' processing broke before the mates' turn), no
    hand-back starts after it, even one whose timer fired as it ended: its mates come back
    after their short lease, not also as copies sent by a batch that is over."""
    from chalicelib.adapters.memory import InMemoryJobQueue

    arn = "arn:aws:sqs:us-east-1:123456789012:jobs-normal"
    records = [{"messageId": f"m-{n}", "receiptHandle": f"handle-{n}", "eventSourceARN": arn,
                "body": json.dumps({"job_id": f"job-{n}", "attempt": 1}), "attributes": {}, "messageAttributes": {}}
               for n in range(3)]
    queue, clock = InMemoryJobQueue(), FiringClock()
    services = batch.BatchServices(queue=queue, clock=clock, runner=lambda: None, unreadable_ledger=lambda: None,
                                   redelivery_wait_s=lambda receives: 5)
    with pytest.raises(RuntimeError):
        with batch.job_batch(records, services, time_left_s=lambda: None):
            raise RuntimeError("the batch's processing broke")
    assert clock.armed == 0, "its hand-back's timer is cancelled as the batch ends, not left to fire"
    clock.advance(BATCH_MATE_WAIT_S)
    assert queue.handed_back == [] and queue.acknowledged == [] and clock.armed == 0
    (hand_back,) = clock.fires
    hand_back()  # its timer's wait had ended as the batch did
    assert queue.handed_back == [] and queue.acknowledged == []


NOT_JOB_MESSAGES = ["not json", '{"job_id": "a#b", "attempt": 1}', '{"job_id": "0190a', '{"detail": "from another system"}']


def test_a_message_that_is_no_job_message_is_parked_on_the_dead_letter_queue_at_once(
        app, client, aws, worker_clock):
    ids = submit(client, 2)
    for body in NOT_JOB_MESSAGES:
        aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody=body)
    messages = sorted(receive_all(aws), key=lambda m: m["Body"] not in NOT_JOB_MESSAGES)  # they lead the batch
    result = invoke_worker(app, sqs_event(messages))
    # acknowledged: not delivered again (after the queue's 90 minutes, ten times) before SQS parks them
    assert result == {"batchItemFailures": []}
    assert [status(client, i) for i in ids] == ["completed"] * 2
    parked = receive_all(aws, "dlq_url")
    assert sorted(m["Body"] for m in parked) == sorted(NOT_JOB_MESSAGES)  # as they came, for whoever sent them
    assert receive_all(aws) == []


@pytest.mark.parametrize("priority", ["high", "low"])
def test_a_message_that_is_no_job_message_is_parked_on_its_own_prioritys_dead_letter_queue(app, aws, priority):
    """Each priority's worker parks what it cannot read on its own queue's dead-letter queue,
    where an operator looking into that queue (and whoever sent the message there) finds it."""
    aws["sqs"].send_message(QueueUrl=aws[f"{priority}_url"], MessageBody="not json")
    event = sqs_event(receive_all(aws, f"{priority}_url"), f"arn:aws:sqs:us-east-1:123456789012:jobs-{priority}")
    assert invoke_worker(app, event, function=f"job_worker_{priority}") == {"batchItemFailures": []}
    assert [m["Body"] for m in receive_all(aws, f"dlq_{priority}_url")] == ["not json"]
    assert receive_all(aws, "dlq_url") == []


def test_a_message_that_is_no_job_message_comes_back_soon_when_it_cannot_be_parked(app, client, aws, monkeypatch):
    from chalicelib.composition import container
    from chalicelib.domain.errors import QueueUnavailableError

    ids = submit(client, 1)
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody="not json")
    messages = sorted(receive_all(aws), key=lambda m: m["Body"] != "not json")
    queue_type = type(container().queue)

    def unavailable(self, body, **kwargs):
        raise QueueUnavailableError("the dead-letter queue did not answer")

    monkeypatch.setattr(queue_type, "dead_letter_body", unavailable)
    calls = visibility_calls(monkeypatch)
    event = sqs_event(messages)
    result = invoke_worker(app, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert calls == [30]  # the first redelivery wait, not the queue's 90-minute visibility timeout
    assert status(client, ids[0]) == "completed"


def test_a_message_for_a_job_that_does_not_exist_is_acknowledged_with_a_log_line(app, client, aws, monkeypatch):
    import uuid

    from chalicelib.observability import logger

    missing = str(uuid.uuid4())  # removed after its retention, or never made
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody=json.dumps({"job_id": missing, "attempt": 1}))
    lines: list[dict] = []
    real_warning = logger.warning
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: lines.append(
        {**logger.get_current_keys(), **(extra or {}), "message": message, "level": "WARNING"}))
    event = sqs_event(receive_all(aws))
    assert invoke_worker(app, event) == {"batchItemFailures": []}
    monkeypatch.setattr(logger, "warning", real_warning)
    (line,) = [entry for entry in lines if entry["message"] == "job message skipped"]
    assert (line["level"], line["reason"], line["job_id"], line["attempt"], line["message_id"]) == (
        "WARNING", "job does not exist", missing, 1, event["Records"][0]["messageId"])


def test_a_message_that_is_no_job_message_whose_batch_comes_back_before_its_answer_is_parked_once(app, aws):
    """Its message leaves the queue once it is parked, not only when the batch's answer reaches
    SQS: a batch that comes back (its invocation died after the park, its answer was lost) does
    not park it a second time."""
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody="not json")
    deliveries = 0
    for _ in range(2):  # the first delivery's answer never reaches SQS: what is on the queue comes back
        received = aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], MaxNumberOfMessages=10,
                                              VisibilityTimeout=0).get("Messages", [])
        if not received:
            break
        deliveries += 1
        assert invoke_worker(app, sqs_event(received)) == {"batchItemFailures": []}
    assert deliveries == 1, "deleted as it was parked: nothing came back"
    assert [m["Body"] for m in receive_all(aws, "dlq_url")] == ["not json"]
    assert receive_all(aws) == []


def test_a_parked_message_whose_delete_and_batch_answer_were_both_lost_is_parked_once(app, aws, monkeypatch):
    """The queue did not take the early delete and the batch's answer never reached SQS: the
    message comes back, and the worker's mark of it parked (its delivery ledger, the ERP
    bridge's) keeps a second copy off the dead-letter queue; the message is deleted then."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import QueueUnavailableError

    queue = container().queue
    acknowledge = queue.acknowledge

    def unanswered(*args, **kwargs):
        raise QueueUnavailableError("could not delete a received message")

    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody="not json")
    monkeypatch.setattr(queue, "acknowledge", unanswered)
    received = aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], VisibilityTimeout=0)["Messages"]
    invoke_worker(app, sqs_event(received))  # its answer is lost
    monkeypatch.setattr(queue, "acknowledge", acknowledge)
    again = aws["sqs"].receive_message(QueueUrl=aws["jobs_url"], VisibilityTimeout=0)["Messages"]
    assert [m["MessageId"] for m in again] == [m["MessageId"] for m in received]
    assert invoke_worker(app, sqs_event(again)) == {"batchItemFailures": []}
    assert [m["Body"] for m in receive_all(aws, "dlq_url")] == ["not json"]
    assert receive_all(aws) == []


def test_a_message_that_is_no_job_message_comes_back_soon_when_its_ledger_does_not_answer(app, aws, monkeypatch):
    """Whether it was parked before cannot be read: it is not parked on a guess, but fails and
    comes back after the first redelivery wait, to be parked then."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import StoreUnavailableError

    ledger = container().delivery_ledger(handlers.UNREADABLE_LEDGER)

    def unavailable(message_id):
        raise StoreUnavailableError("could not read whether a message was parked")

    monkeypatch.setattr(ledger, "begin_parking", unavailable)
    aws["sqs"].send_message(QueueUrl=aws["jobs_url"], MessageBody="not json")
    calls = visibility_calls(monkeypatch)
    event = sqs_event(receive_all(aws))
    assert invoke_worker(app, event) == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert calls == [30]
    assert receive_all(aws, "dlq_url") == []


def test_a_job_failed_while_the_dead_letter_queue_does_not_answer_says_so_in_the_log(app, client, aws, monkeypatch):
    """The job is failed and its dead letter owed: the worker's lines say that (a `job failed`
    line, counted, and why its message comes back), not `delivery failed; retrying`, which told
    an operator the job would run again."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import QueueUnavailableError

    job = submit_job(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1,
                                                                "fail_mode": "fatal"}})
    queue_type = type(container().queue)

    def unavailable(self, message, **kwargs):
        raise QueueUnavailableError("the dead-letter queue did not answer")

    monkeypatch.setattr(queue_type, "dead_letter", unavailable)
    lines = logged_lines(monkeypatch)
    event = sqs_event(receive_all(aws))
    result = invoke_worker(app, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert status(client, job["id"]) == "failed"
    said = [line["message"] for line in lines]
    assert "delivery failed; retrying" not in said, said
    (failed,) = [line for line in lines if line["message"] == "job failed"]
    assert failed["error_code"] == "demo_failure" and failed["dead_letter"] == "owed"
    (owed,) = [line for line in lines if "dead letter is owed" in line["message"]]
    assert owed["level"] == "warning" and owed["job_id"] == job["id"] and owed["retry_in_s"] == 30


def logged_lines(monkeypatch) -> list[dict]:
    """The worker's log lines from now on, each with its keys and `level`, as they are logged."""
    from chalicelib.observability import logger

    lines: list[dict] = []
    for level in ("info", "warning", "error"):
        monkeypatch.setattr(logger, level, lambda message, *args, extra=None, _level=level, **kwargs: lines.append(
            {**logger.get_current_keys(), **(extra or {}), "message": message, "level": _level}))
    return lines


def test_a_retry_whose_next_message_the_queue_did_not_take_says_so_in_the_log(app, client, aws, monkeypatch):
    """The attempt failed and the job was written retrying, but its next attempt's message was not
    sent: the worker's lines say the job was retried (a `job retried` line with the handler's
    error, counted) and that this delivery's message, coming back, starts the next attempt, not
    only `delivery failed; retrying`, which left the attempt's failure out of the log."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import QueueUnavailableError

    job = submit_job(client, {"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0, "fail_at": 1}})
    event = sqs_event(receive_all(aws))
    queue_type = type(container().queue)

    def unavailable(self, message, **kwargs):
        raise QueueUnavailableError("the queue did not answer")

    monkeypatch.setattr(queue_type, "send", unavailable)
    lines = logged_lines(monkeypatch)
    result = invoke_worker(app, event)
    assert result == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}
    assert status(client, job["id"]) == "retrying"
    said = [line["message"] for line in lines]
    assert "delivery failed; retrying" not in said, said
    (retried,) = [line for line in lines if line["message"] == "job retried"]
    assert retried["error_code"] == "demo_failure" and retried["next_attempt"] == "unsent"
    assert "traceback" in retried
    (unsent,) = [line for line in lines if "next attempt's message" in line["message"]]
    assert unsent["level"] == "warning" and unsent["job_id"] == job["id"] and unsent["retry_in_s"] == 30


def test_a_failed_delivery_of_a_copy_backs_off_as_its_original_would_have(app, client, aws, monkeypatch):
    """The wait before a failed delivery comes back doubles with the deliveries so far. A copy
    sent by a hand-back starts at one receive on a new message, and its wait started over at
    the first (30 s) however often its original had failed: it counts the original's
    deliveries (its `handbacks`), the one that was handed back standing for the copy's first."""
    from chalicelib.composition import container
    from chalicelib.domain.errors import StoreUnavailableError

    job = submit(client, 1)[0]
    (message,) = receive_all(aws)

    def store_down(self, message, **kwargs):
        raise StoreUnavailableError("throttled")

    monkeypatch.setattr(JobRunner, "run", store_down)
    calls = visibility_calls(monkeypatch)
    wait_at = container().settings.redelivery_wait_s

    original = sqs_event([message])
    original["Records"][0]["attributes"]["ApproximateReceiveCount"] = "3"
    copy = sqs_event([message])  # its original failed twice, then was handed back on its third receive
    copy["Records"][0]["messageAttributes"]["handbacks"] = {"stringValue": "3", "dataType": "Number"}
    second = sqs_event([message])  # the copy's second receive
    second["Records"][0]["messageAttributes"]["handbacks"] = {"stringValue": "3", "dataType": "Number"}
    second["Records"][0]["attributes"]["ApproximateReceiveCount"] = "2"
    for event in (original, copy, second):
        assert len(invoke_worker(app, event)["batchItemFailures"]) == 1
    assert calls == [wait_at(3), wait_at(3), wait_at(4)]
    assert wait_at(3) > wait_at(1) and status(client, job) == "queued"
