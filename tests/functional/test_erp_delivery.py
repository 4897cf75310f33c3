"""The ERP bridge's consumer on its per-batch delivery ledger, through the deployed handler: each
event reaches the ERP once whatever the duplicates, failures and crashes, at 2 ledger requests
per SQS batch. Run with the in-memory ledger and with the DynamoDB one on moto (where the
requests are counted as the benchmark counts them)."""
from __future__ import annotations

import json
import uuid

import pytest

from chalicelib import composition
from chalicelib.aws_requests import AwsRequestCounter
from chalicelib.defaults import DELIVERY_CLOSE_MARGIN_S, WEBHOOK_RETRY_AFTER_MAX_S, WEBHOOK_TIMEOUT_S
from chalicelib.domain.errors import QueueUnavailableError, StoreUnavailableError, WebhookDeliveryError
from chalicelib.ports import WebhookAnswer
from chalicelib.subscribers.erp import ErpBridge
from tests.functional.conftest import LambdaContext, receive_all, sqs_event, token

SECRET = "functional-webhook-secret-0123456789abcdef"
QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:erp-webhook"


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


class ProcessDied(BaseException):
    """What a process killed mid-delivery looks like to the code after it: nothing runs."""


class ClockedContext:
    """A Lambda context whose remaining time runs on the test's clock (which the ERP's slow
    answers move)."""

    def __init__(self, clock: Clock, timeout_s: float) -> None:
        self._clock = clock
        self._ends = clock.now + timeout_s
        self.aws_request_id = str(uuid.uuid4())
        self.function_name = "erp_bridge"
        self.memory_limit_in_mb = 512
        self.invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:erp_bridge"

    def left(self) -> float:
        return self._ends - self._clock.now

    def get_remaining_time_in_millis(self) -> int:
        return int(self.left() * 1000)


class Erp:
    """The ERP's receiver as the bridge sees it: answers `status` (or per event) after `takes`
    seconds of the clock (none past the POST's timeout), never deduplicates, keeps every
    accepted delivery."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.status = 200
        self.answers: dict[str, int] = {}
        self.retry_after: dict[str, float] = {}  # event id -> the Retry-After of its answer
        self.texts: dict[str, str] = {}  # event id -> the start of its answer's body
        self.crash_on: set[str] = set()
        self.accepted: list[str] = []
        self.posts = 0
        self.clock = clock
        self.takes = 0.0
        self.timeouts: list[float] = []

    def post(self, url, body, headers, timeout_s=None):
        event_id = headers["X-Jobpipe-Event-Id"]
        self.posts += 1
        if event_id in self.crash_on:
            self.crash_on.discard(event_id)
            raise ProcessDied()  # the bridge died while sending: the ERP never took it
        limit = WEBHOOK_TIMEOUT_S if timeout_s is None else min(timeout_s, WEBHOOK_TIMEOUT_S)
        self.timeouts.append(limit)
        if self.clock is not None:
            self.clock.now += min(self.takes, limit)
        if self.takes > limit:
            raise WebhookDeliveryError.unanswered(limit)
        status = self.answers.get(event_id, self.status)
        if 200 <= status < 300:
            self.accepted.append(event_id)
        return WebhookAnswer(status, self.retry_after.get(event_id), text=self.texts.get(event_id, ""))


@pytest.fixture(params=["memory", "aws"])
def bridge(request, client, aws, monkeypatch):
    """(invoke(event ids) -> failed event ids, erp, ledger requests counter or None, backoffs, clock).
    The bridge's queue and dead-letter queue are on moto (`invoke.dead_letters()` reads the DLQ)."""
    sqs = aws["sqs"]
    queue_url = sqs.create_queue(QueueName="erp-webhook")["QueueUrl"]
    dlq_url = sqs.create_queue(QueueName="erp-webhook-dlq")["QueueUrl"]
    monkeypatch.setenv("JOBPIPE_ERP_WEBHOOK_QUEUE_URL", queue_url)
    monkeypatch.setenv("JOBPIPE_ERP_WEBHOOK_DLQ_URL", dlq_url)
    composition.use(None)
    services = composition.container()
    clock = Clock()
    if request.param == "memory":
        from chalicelib.adapters.memory_events import InMemoryDeliveryLedger

        ledger = InMemoryDeliveryLedger(ttl_s=7 * 86400, clock=clock)
        counter = None
    else:
        from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger

        ddb = services.client("dynamodb")
        ledger = DynamoDeliveryLedger(ddb, "idempotency", "erp_bridge", ttl_s=7 * 86400, clock=clock)
        counter = AwsRequestCounter()
        counter.attach(ddb)
    services.delivery_ledgers["erp_bridge"] = ledger
    erp = Erp(clock)
    services.erp_bridge = ErpBridge(erp, "https://erp.example/hook", SECRET)
    backoffs: list[tuple[str, int]] = []
    monkeypatch.setattr(services.queue, "set_visibility",
                        lambda arn, handle, seconds: backoffs.append((handle, seconds)))
    handler = client._app.handler_map["erp_bridge"]

    def invoke(event_ids: list[str], receives: int = 1, context=None) -> list[str]:
        messages = [{"MessageId": f"m-{i}-{e}", "ReceiptHandle": e, "Body": json.dumps(
            {"detail-type": "job.status.changed", "source": "jobpipe",
             "detail": {"event_id": e, "event_type": "job.status.changed", "job_id": "j-1", "status": "running"}})}
            for i, e in enumerate(event_ids)]
        event = sqs_event(messages, QUEUE_ARN)
        for record in event["Records"]:
            record["attributes"]["ApproximateReceiveCount"] = str(receives)
        if counter is not None:
            counter.take()
        failures = handler(event, context or LambdaContext(60))["batchItemFailures"]
        by_message = {m["MessageId"]: json.loads(m["Body"])["detail"]["event_id"] for m in messages}
        return [by_message[f["itemIdentifier"]] for f in failures]

    def dead_letters() -> list[dict]:
        return sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10, VisibilityTimeout=0,
                                   MessageAttributeNames=["All"]).get("Messages", [])

    invoke.requests = (lambda: counter.take()) if counter is not None else None
    invoke.dead_letters = dead_letters
    invoke.queue_url = queue_url
    return invoke, erp, ledger, backoffs, clock


def ids(n: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(n)]


def test_a_batch_of_five_is_delivered_at_two_ledger_requests(bridge):
    invoke, erp, _, backoffs, _ = bridge
    events = ids(5)
    assert invoke(events) == []
    assert erp.accepted == events and not backoffs
    if invoke.requests:
        assert invoke.requests() == {"dynamodb.TransactWriteItems": 1, "dynamodb.BatchWriteItem": 1}


def test_events_already_done_are_skipped_without_delivering(bridge):
    invoke, erp, _, _, _ = bridge
    first = ids(4)
    invoke(first)
    invoke.requests and invoke.requests()
    new = ids(1)
    assert invoke(first[:3] + new + first[3:]) == []  # a re-published batch with one new event
    assert erp.accepted == first + new
    if invoke.requests:  # the refused transaction names the done ones; the rest go once more
        assert invoke.requests() == {"dynamodb.TransactWriteItems": 2, "dynamodb.BatchWriteItem": 1}
    assert invoke(first + new) == [] and erp.posts == 5  # all done: no POST at all
    if invoke.requests:
        assert invoke.requests() == {"dynamodb.TransactWriteItems": 1}  # nothing to close


def test_duplicates_inside_one_batch_are_delivered_once(bridge):
    invoke, erp, _, _, _ = bridge
    (a, b) = ids(2)
    assert invoke([a, b, a, a]) == []
    assert erp.accepted == [a, b]


def test_an_event_in_progress_elsewhere_is_retried_with_backoff(bridge):
    invoke, erp, ledger, backoffs, _ = bridge
    held, other = ids(2)
    ledger.begin([held], 60)  # another process is delivering it right now
    assert invoke([held, other], receives=3) == [held]
    assert erp.accepted == [other]
    assert backoffs == [(held, composition.container().settings.redelivery_wait_s(3))]
    ledger.finish([held], [])  # that process delivered it
    assert invoke([held]) == [] and erp.accepted == [other]


def test_a_failed_delivery_forgets_its_record_so_the_redelivery_delivers(bridge):
    invoke, erp, _, backoffs, _ = bridge
    ok, refused = ids(2)
    erp.answers[refused] = 500
    assert invoke([ok, refused]) == [refused]
    assert [handle for handle, _ in backoffs] == [refused]
    assert erp.accepted == [ok]
    del erp.answers[refused]
    assert invoke([refused, ok], receives=2) == []
    assert erp.accepted == [ok, refused]


def test_a_throttled_delivery_comes_back_no_sooner_than_its_retry_after(bridge):
    invoke, erp, _, backoffs, _ = bridge
    soon, later, much_later, unsaid = ids(4)
    erp.answers.update({soon: 429, later: 429, much_later: 503, unsaid: 429})
    erp.retry_after.update({soon: 5, later: 600.5, much_later: 86400})
    assert invoke([soon, later, much_later, unsaid]) == [soon, later, much_later, unsaid]
    backoff = composition.container().settings.redelivery_wait_s(1)
    assert backoffs == [(soon, backoff), (later, 601), (much_later, WEBHOOK_RETRY_AFTER_MAX_S), (unsaid, backoff)]


def test_a_duplicate_of_a_failed_delivery_in_the_same_batch_fails_with_it(bridge):
    invoke, erp, _, _, _ = bridge
    (refused,) = ids(1)
    erp.answers[refused] = 503
    assert invoke([refused, refused]) == [refused, refused]
    assert erp.posts == 1


def test_a_crash_between_begin_and_done_leaves_the_event_deliverable_after_the_lease(bridge):
    invoke, erp, _, _, clock = bridge
    (lost,) = ids(1)
    erp.crash_on.add(lost)
    with pytest.raises(ProcessDied):
        invoke([lost])
    # Redelivered while the dead process's lease (the invocation's 60 s) still runs: held.
    clock.now += 30
    assert invoke([lost], receives=2) == [lost]
    clock.now += 31
    assert invoke([lost], receives=3) == []
    assert erp.accepted == [lost] and erp.posts == 2
    assert invoke([lost]) == [] and erp.posts == 2


def _unreachable(*args, **kwargs):
    raise StoreUnavailableError("the idempotency table did not answer")


def test_an_unreachable_ledger_fails_every_record_alone_with_backoff(bridge, monkeypatch):
    invoke, erp, ledger, backoffs, _ = bridge
    monkeypatch.setattr(ledger, "begin", _unreachable)
    events = ids(3)
    assert invoke(events) == events
    assert erp.posts == 0 and [handle for handle, _ in backoffs] == events


def test_a_ledger_that_cannot_close_leaves_the_delivered_messages_done(bridge, monkeypatch):
    invoke, erp, ledger, backoffs, _ = bridge
    monkeypatch.setattr(ledger, "finish", _unreachable)
    events = ids(2)
    assert invoke(events) == [] and erp.accepted == events and not backoffs


def test_a_slow_erp_is_cut_off_before_the_invocation_ends_and_every_record_is_closed(bridge):
    # Each answer takes 4 s; the invocation has 40 s. The POSTs are cut to end the close
    # margin before its end, so the batch's records are closed: the delivered ones done, the
    # rest forgotten. (Cut off by its timeout, the invocation would have left them all in
    # progress, and the redelivered batch would have POSTed the delivered ones again.)
    invoke, erp, _, backoffs, clock = bridge
    erp.takes = 4
    events = ids(10)
    context = ClockedContext(clock, 40)
    failed = invoke(events, context=context)
    assert context.left() >= DELIVERY_CLOSE_MARGIN_S
    assert erp.accepted == events[:7] and failed == events[7:]
    assert erp.timeouts == [WEBHOOK_TIMEOUT_S] * 7 + [2]  # the 8th had 2 s to be answered, and was not
    assert erp.posts == 8  # the last two were not sent
    assert [handle for handle, _ in backoffs] == events[7:]
    erp.takes = 0
    assert invoke(events, receives=2) == []
    assert erp.accepted == events and erp.posts == 11  # only the three not delivered are POSTed


def test_an_erp_that_never_answers_fails_the_batch_inside_the_invocation(bridge):
    invoke, erp, _, _, clock = bridge
    erp.takes = 3600
    events = ids(10)
    context = ClockedContext(clock, 60)
    assert invoke(events, context=context) == events
    assert context.left() >= DELIVERY_CLOSE_MARGIN_S
    assert erp.posts == 10 and max(erp.timeouts) == WEBHOOK_TIMEOUT_S


class DeduplicatingErp(Erp):
    """An ERP that deduplicates on X-Jobpipe-Event-Id: a delivery of an id it has taken is
    answered 200 and not taken again."""

    def __init__(self) -> None:
        super().__init__()
        self.taken: list[str] = []

    def post(self, url, body, headers, timeout_s=None):
        answer = super().post(url, body, headers, timeout_s)
        event_id = headers["X-Jobpipe-Event-Id"]
        if 200 <= answer.status < 300 and event_id not in self.taken:
            self.taken.append(event_id)
        return answer


@pytest.fixture
def at_least_once(bridge, monkeypatch):
    """The bridge deployed with ErpReceiverDeduplicates=true: its ledger must never be used."""
    invoke, _, ledger, backoffs, _ = bridge
    services = composition.container()
    monkeypatch.setattr(services, "settings", services.settings.model_copy(update={"erp_receiver_deduplicates": True}))
    erp = DeduplicatingErp()
    services.erp_bridge = ErpBridge(erp, "https://erp.example/hook", SECRET)

    def untouchable(*args, **kwargs):
        raise AssertionError("the ledger was used although the ERP deduplicates")

    monkeypatch.setattr(ledger, "begin", untouchable)
    monkeypatch.setattr(ledger, "finish", untouchable)
    return invoke, erp, backoffs


def test_a_deduplicating_erp_gets_every_event_at_no_request(at_least_once):
    invoke, erp, backoffs = at_least_once
    events = ids(5)
    assert invoke(events) == []
    assert erp.taken == events and not backoffs
    if invoke.requests:
        assert invoke.requests() == {}


def test_a_deduplicating_erp_gets_a_redelivered_event_again_with_its_id(at_least_once):
    invoke, erp, _ = at_least_once
    events = ids(3)
    assert invoke(events) == [] and invoke(events[1:]) == []  # the queue delivered two again
    assert erp.posts == 5 and erp.accepted == events + events[1:]
    assert erp.taken == events  # what the ERP keeps: each event once


def test_a_failed_post_to_a_deduplicating_erp_fails_its_record_alone_with_backoff(at_least_once):
    invoke, erp, backoffs = at_least_once
    refused, taken = ids(2)
    erp.answers[refused] = 503
    assert invoke([refused, taken], receives=2) == [refused]
    assert erp.taken == [taken]
    assert backoffs == [(refused, composition.container().settings.redelivery_wait_s(2))]
    erp.answers.clear()
    assert invoke([refused]) == [] and erp.taken == [taken, refused]


def _envelope(event_id: str) -> dict:
    return {"detail-type": "job.status.changed", "source": "jobpipe",
            "detail": {"event_id": event_id, "event_type": "job.status.changed", "job_id": "j-1", "status": "running"}}


@pytest.mark.parametrize("status", [400, 401, 403, 404, 410, 422])
def test_a_permanent_refusal_is_parked_on_the_dead_letter_queue_at_once_its_batch_mates_unaffected(bridge, status):
    """An ERP that refuses an event for good is not asked again for a day: the event goes to the
    bridge's dead-letter queue on its first refusal, as it came, with why; its record is
    forgotten, and the others of its batch are delivered or retried as ever."""
    invoke, erp, _, backoffs, _ = bridge
    ok, refused, busy = ids(3)
    erp.answers.update({refused: status, busy: 503})
    erp.texts[refused] = '{"error": "unknown job j-1"}'
    assert invoke([ok, refused, busy]) == [busy]
    assert erp.accepted == [ok] and [handle for handle, _ in backoffs] == [busy]
    (parked,) = invoke.dead_letters()
    assert json.loads(parked["Body"]) == _envelope(refused)
    reason = parked["MessageAttributes"]["reason"]["StringValue"]
    assert f"ERP webhook refused event {refused}: HTTP {status}" in reason and "unknown job j-1" in reason


@pytest.mark.parametrize("status", [408, 425, 429, 500, 502, 503, 504])
def test_a_transient_answer_is_retried_with_backoff_not_parked(bridge, status):
    invoke, erp, _, backoffs, _ = bridge
    (busy,) = ids(1)
    erp.answers[busy] = status
    assert invoke([busy]) == [busy]
    assert [handle for handle, _ in backoffs] == [busy] and invoke.dead_letters() == []


def test_a_parked_event_is_shown_to_the_operator_and_delivered_once_redriven(bridge, client, aws):
    """The operator sees why it was parked; once the ERP is fixed, a redrive sends it back and
    it is delivered: its ledger record does not hold it as delivered or in progress."""
    invoke, erp, _, _, _ = bridge
    (refused,) = ids(1)
    erp.answers[refused] = 422
    erp.texts[refused] = "field 'tenant' is not known here"
    assert invoke([refused]) == []
    operator = {"Authorization": f"Bearer {token(roles=['operator'])}"}
    (shown,) = client.http.get("/api/system/dlq?queue=erp_webhook", headers=operator).json_body["dead_letters"]["erp_webhook"]
    assert shown["body"] == _envelope(refused)
    assert shown["reason"].startswith(f"ERP webhook refused event {refused}: HTTP 422")
    assert "field 'tenant' is not known here" in shown["reason"]
    del erp.answers[refused]
    moved = client.http.post("/api/system/dlq/redrive?queue=erp_webhook", headers=operator).json_body
    assert moved["redriven"]["erp_webhook"] == {"moved": 1, "failed": 0}
    (back,) = receive_all({"sqs": aws["sqs"], "q": invoke.queue_url}, "q")
    assert json.loads(back["Body"]) == _envelope(refused)
    assert invoke([refused]) == [] and erp.accepted == [refused]
    assert invoke([refused]) == [] and erp.accepted == [refused], "delivered once"


def test_a_refusal_that_cannot_be_parked_is_retried_like_a_failure(bridge, aws, monkeypatch):
    """Nothing is lost when the dead-letter queue does not answer: the message comes back."""
    invoke, erp, _, backoffs, _ = bridge
    aws["sqs"].delete_queue(QueueUrl=composition.container().settings.erp_webhook_dlq_url)
    (refused,) = ids(1)
    erp.answers[refused] = 410
    assert invoke([refused]) == [refused]
    assert [handle for handle, _ in backoffs] == [refused]


def test_a_deduplicating_erp_s_permanent_refusal_is_parked_too(at_least_once, bridge):
    invoke, erp, backoffs = at_least_once
    refused, taken = ids(2)
    erp.answers[refused] = 400
    assert invoke([refused, taken]) == [] and erp.taken == [taken] and not backoffs
    assert [json.loads(m["Body"]) for m in bridge[0].dead_letters()] == [_envelope(refused)]


def test_a_refused_event_twice_in_one_batch_is_posted_and_parked_once(bridge):
    invoke, erp, _, _, _ = bridge
    (refused,) = ids(1)
    erp.answers[refused] = 403
    assert invoke([refused, refused]) == []
    assert erp.posts == 1 and len(invoke.dead_letters()) == 1


@pytest.mark.parametrize("event_id", ["e-1\nX-Injected: 1", "e-1\r", "caf\u00e9-\u2603", " e-1", "e-1\x00"])
def test_an_event_whose_id_no_header_can_carry_is_parked_at_once_without_a_post(bridge, event_id):
    """A hand-made event (put on the bus by hand, or by another producer) whose id holds a line
    break, a control character or a non-ASCII one cannot be sent in X-Jobpipe-Event-Id (nor
    received as the same id): it can never be delivered, so it is parked as refused on its first
    delivery, with why, instead of failing for a day of retries; its batch-mates go on."""
    invoke, erp, _, backoffs, _ = bridge
    (ok,) = ids(1)
    assert invoke([event_id, ok]) == []
    assert erp.accepted == [ok] and erp.posts == 1 and backoffs == []
    (parked,) = invoke.dead_letters()
    assert json.loads(parked["Body"])["detail"]["event_id"] == event_id
    reason = parked["MessageAttributes"]["reason"]["StringValue"]
    assert "X-Jobpipe-Event-Id" in reason and "cannot carry" in reason, reason


def one_refused_event_queued(bridge, client, aws):
    """One event on the bridge's queue that the ERP refuses (422): the bridge's invoker, the ERP,
    SQS and the bridge's handler."""
    invoke, erp, _, _, _ = bridge
    (refused,) = ids(1)
    erp.answers[refused] = 422
    sqs = aws["sqs"]
    sqs.send_message(QueueUrl=invoke.queue_url, MessageBody=json.dumps(_envelope(refused)))
    return invoke, erp, sqs, client._app.handler_map["erp_bridge"]


def test_a_refused_event_whose_batch_comes_back_before_its_answer_is_parked_once(bridge, client, aws):
    """A refused event's message leaves its queue once it is parked, not only when the batch's
    answer reaches SQS: a batch that comes back (its invocation died after the park, its
    answer was lost) does not park it a second time."""
    invoke, erp, sqs, handler = one_refused_event_queued(bridge, client, aws)
    for _ in range(2):  # the first delivery's answer never reaches SQS: what is on the queue comes back
        received = sqs.receive_message(QueueUrl=invoke.queue_url, MaxNumberOfMessages=10,
                                       VisibilityTimeout=0).get("Messages", [])
        if not received:
            break
        handler(sqs_event(received, QUEUE_ARN), LambdaContext(60))
    assert erp.posts == 1 and len(invoke.dead_letters()) == 1


def test_a_parked_event_whose_message_delete_and_batch_answer_were_both_lost_is_parked_once(
        bridge, client, aws, monkeypatch):
    """The queue did not take the early delete and the batch's answer never reached SQS: the
    message comes back, the ERP refuses it again, and the ledger's mark of the message parked
    keeps a second copy off the dead-letter queue; the message is deleted then."""
    invoke, erp, sqs, handler = one_refused_event_queued(bridge, client, aws)
    queue = composition.container().queue
    acknowledge = queue.acknowledge

    def unanswered(*args, **kwargs):
        raise QueueUnavailableError("could not delete a received message")

    monkeypatch.setattr(queue, "acknowledge", unanswered)
    received = sqs.receive_message(QueueUrl=invoke.queue_url, VisibilityTimeout=0)["Messages"]
    handler(sqs_event(received, QUEUE_ARN), LambdaContext(60))  # its answer is lost
    monkeypatch.setattr(queue, "acknowledge", acknowledge)
    again = sqs.receive_message(QueueUrl=invoke.queue_url, VisibilityTimeout=0)["Messages"]
    assert [m["MessageId"] for m in again] == [m["MessageId"] for m in received]
    handler(sqs_event(again, QUEUE_ARN), LambdaContext(60))
    assert len(invoke.dead_letters()) == 1
    assert sqs.receive_message(QueueUrl=invoke.queue_url, VisibilityTimeout=0).get("Messages", []) == []


def _warnings(monkeypatch) -> list[dict]:
    """The warnings the functions log from here on, each with the keys it carries."""
    from chalicelib.observability import logger

    lines: list[dict] = []
    monkeypatch.setattr(logger, "warning", lambda message, *args, extra=None, **kwargs: lines.append(
        {**logger.get_current_keys(), **(extra or {}), "message": message}))
    return lines


def test_a_failed_delivery_s_log_line_says_why_and_for_which_job(bridge, monkeypatch):
    """The on-call engineer reads why the ERP was not reached (its answer, a timeout, the
    bridge's configuration) and which job's event waits, not only that it failed."""
    invoke, erp, _, _, _ = bridge
    lines = _warnings(monkeypatch)
    (busy,) = ids(1)
    erp.answers[busy] = 503
    assert invoke([busy], receives=2) == [busy]
    (line,) = [entry for entry in lines if entry["message"].startswith("erp_bridge failed; retrying")]
    assert (line["event_id"], line["job_id"], line["receive_count"]) == (busy, "j-1", 2)
    assert line["error"] == f"WebhookDeliveryError: ERP webhook answered 503 for event {busy}"


def test_a_bridge_with_a_short_secret_says_so_in_its_log(bridge, monkeypatch):
    """The bridge's own guard, for a secret that reached it past the settings (which refuse it
    first on a deployed function: tests/functional/test_bad_settings.py)."""
    invoke, _, _, _, _ = bridge
    services = composition.container()
    del services.erp_bridge  # built again from the settings, as a new process would
    monkeypatch.setattr(services.settings, "erp_webhook_secret", "too-short")
    lines = _warnings(monkeypatch)
    (waiting,) = ids(1)
    assert invoke([waiting]) == [waiting]
    (line,) = [entry for entry in lines if entry["message"].startswith("erp_bridge failed; retrying")]
    assert "ERP_WEBHOOK_SECRET must be at least 32 characters" in line["error"]


def test_a_message_that_is_no_jobpipe_event_is_said_in_the_log(bridge, monkeypatch):
    """A foreign body on the bridge's queue fails on every delivery until the redrive policy
    parks it: each failure is a warning with the message's id, why, and how many times it came
    (how near the redrive policy it is), not a silent retry."""
    _, erp, _, _, _ = bridge
    lines = _warnings(monkeypatch)
    from app import app as chalice_app

    event = sqs_event([{"MessageId": "m-foreign", "ReceiptHandle": "rh-foreign", "Body": "not an event",
                        "Attributes": {"ApproximateReceiveCount": "4"}}], QUEUE_ARN)
    failures = chalice_app.handler_map["erp_bridge"](event, LambdaContext(60))["batchItemFailures"]
    assert failures == [{"itemIdentifier": "m-foreign"}] and erp.posts == 0
    (line,) = [entry for entry in lines if entry["message"] == "erp_bridge received a message that is no jobpipe event"]
    assert line["message_id"] == "m-foreign" and "not a jobpipe event" in line["error"]
    assert line["receive_count"] == 4


def test_a_message_whose_event_id_no_jobpipe_event_has_fails_alone(bridge, monkeypatch):
    """A body shaped like an event but with an `event_id` jobpipe never makes (a hand-made one of
    thousands of characters) is no jobpipe event: it fails on its own, said in the log, and its
    batch-mates are delivered. Taken for an event, its id was in the batch's one ledger request,
    which DynamoDB refuses whole (a key over 2,048 bytes), so every event beside it failed too,
    on every delivery it shared with them, until the redrive policy parked it."""
    invoke, erp, _, _, _ = bridge
    lines = _warnings(monkeypatch)
    (ok,) = ids(1)
    foreign = "x" * 3000
    assert invoke([ok, foreign]) == [foreign]
    assert erp.accepted == [ok] and erp.posts == 1
    (line,) = [entry for entry in lines if entry["message"] == "erp_bridge received a message that is no jobpipe event"]
    assert "not a jobpipe event" in line["error"]
