"""A subscriber's consumer over in-memory ports, without the container: each port is taken only
when needed, a failure is hidden for its backoff or its Retry-After, a refused event is parked
once and its message deleted, and the ledger makes a delivered event's duplicate a no-op."""
from __future__ import annotations

import json

from chalicelib.adapters.memory_events import InMemoryDeliveryLedger
from chalicelib.defaults import WEBHOOK_RETRY_AFTER_MAX_S
from chalicelib.domain.errors import QueueUnavailableError, WebhookDeliveryError, WebhookRefusedError
from chalicelib.subscribers.consumer import Consumer
from tests.support.lambda_context import TimeLeft

QUEUE_ARN = "arn:aws:sqs:us-east-1:123456789012:erp-webhook"


class Queue:
    """The JobQueue calls a consumer makes: hides and deletes, recorded."""

    def __init__(self) -> None:
        self.hidden: list[tuple[str, int]] = []
        self.deleted: list[str] = []

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        self.hidden.append((receipt_handle, seconds))

    def acknowledge(self, queue_arn: str, receipt_handle: str) -> None:
        self.deleted.append(receipt_handle)


class DeadLetters:
    def __init__(self) -> None:
        self.parked: list[tuple[str, str]] = []

    def park(self, body: str, reason: str) -> None:
        self.parked.append((body, reason))


LEFT = TimeLeft(30_000)  # an invocation's time left, ample for any batch here


def batch(*event_ids: str, receives: int = 1) -> dict:
    return {"Records": [{
        "messageId": f"m-{e}", "receiptHandle": f"rh-{e}", "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": QUEUE_ARN, "awsRegion": "us-east-1", "messageAttributes": {},
        "attributes": {"ApproximateReceiveCount": str(receives)},
        "body": json.dumps({"detail": {"event_id": e, "job_id": "j-1"}}),
    } for e in event_ids]}


def failed(answer: dict) -> list[str]:
    return [f["itemIdentifier"] for f in answer["batchItemFailures"]]


def consumer(effect, taken: list[str], queue: Queue, *, ledger=None, dead_letters=None) -> Consumer:
    """A consumer whose ports, when taken, are named in `taken`."""
    def take(name, port):
        return lambda: taken.append(name) or port
    return Consumer("erp_bridge", effect, queue=take("queue", queue), redelivery_wait_s=lambda receives: 10 * receives,
                    ledger=take("ledger", ledger) if ledger is not None else None,
                    dead_letters=take("dead_letters", dead_letters) if dead_letters is not None else None)


def test_a_batch_that_succeeds_takes_no_queue_and_its_duplicates_are_not_run_again():
    ledger, queue, taken, seen = InMemoryDeliveryLedger(ttl_s=3600), Queue(), [], []

    def effect(detail, seconds_left):
        seen.append((detail["event_id"], seconds_left))

    run = consumer(effect, taken, queue, ledger=ledger, dead_letters=DeadLetters())
    assert failed(run.consume(batch("e-1", "e-2"), LEFT)) == []
    assert failed(run.consume(batch("e-2"), LEFT)) == []
    assert seen == [("e-1", 30.0), ("e-2", 30.0)]
    assert taken == ["ledger", "ledger"] and queue.hidden == queue.deleted == []


def test_a_failure_is_hidden_for_its_backoff_or_the_longer_wait_its_answer_asked_for():
    queue, taken = Queue(), []
    asked = {"e-1": None, "e-2": 25.2, "e-3": 10 * WEBHOOK_RETRY_AFTER_MAX_S, "e-4": 3}

    def effect(detail, seconds_left):
        raise WebhookDeliveryError("ERP down", details={"retry_after_s": asked[detail["event_id"]]})

    answer = consumer(effect, taken, queue).consume(batch("e-1", "e-2", "e-3", "e-4", receives=2), LEFT)
    assert failed(answer) == ["m-e-1", "m-e-2", "m-e-3", "m-e-4"]
    assert queue.hidden == [("rh-e-1", 20), ("rh-e-2", 26), ("rh-e-3", WEBHOOK_RETRY_AFTER_MAX_S), ("rh-e-4", 20)]


def test_a_failure_that_asks_for_no_wait_it_can_be_read_as_is_held_back_for_its_backoff():
    """Only a number of seconds is a wait asked for: a failure whose details are no mapping (an
    error of another library's) or whose wait is text is held back for the backoff, as one
    that asked for none, rather than failing the hold itself."""
    queue = Queue()

    class Odd(Exception):
        details = ["retry_after_s"]

    failures = {"e-1": Odd("SDK down"), "e-2": WebhookDeliveryError("ERP busy", details={"retry_after_s": "soon"})}

    def effect(detail, seconds_left):
        raise failures[detail["event_id"]]

    answer = consumer(effect, [], queue).consume(batch("e-1", "e-2"), LEFT)
    assert failed(answer) == ["m-e-1", "m-e-2"]
    assert queue.hidden == [("rh-e-1", 10), ("rh-e-2", 10)]


def test_an_absurd_retry_after_is_bounded_like_a_long_one_and_never_raises():
    """A Retry-After of hundreds of digits reads as infinity (float), and a far HTTP-date as
    centuries: each is held back no longer than the documented hour, like any long one, instead
    of failing the hold and coming back after the queue's visibility timeout."""
    from chalicelib.adapters.webhook import retry_after_s

    queue = Queue()
    asked = {"e-1": retry_after_s("9" * 400), "e-2": retry_after_s("Fri, 31 Dec 9999 23:59:59 GMT"),
             "e-3": float("nan")}

    def effect(detail, seconds_left):
        raise WebhookDeliveryError("ERP busy", details={"retry_after_s": asked[detail["event_id"]]})

    answer = consumer(effect, [], queue).consume(batch("e-1", "e-2", "e-3"), LEFT)
    assert failed(answer) == ["m-e-1", "m-e-2", "m-e-3"]
    assert queue.hidden == [("rh-e-1", WEBHOOK_RETRY_AFTER_MAX_S), ("rh-e-2", WEBHOOK_RETRY_AFTER_MAX_S),
                            ("rh-e-3", 10)]


def test_a_refused_event_is_parked_once_and_its_messages_leave_the_queue():
    ledger, queue, dead_letters, taken = InMemoryDeliveryLedger(ttl_s=3600), Queue(), DeadLetters(), []

    def effect(detail, seconds_left):
        raise WebhookRefusedError("ERP webhook refused event: HTTP 422", details={"status": 422})

    records = batch("e-1", "e-1")
    records["Records"][1]["messageId"], records["Records"][1]["receiptHandle"] = "m-copy", "rh-copy"
    run = consumer(effect, taken, queue, ledger=ledger, dead_letters=dead_letters)
    assert failed(run.consume(records, LEFT)) == []
    assert [reason for _, reason in dead_letters.parked] == ["ERP webhook refused event: HTTP 422"]
    assert queue.deleted == ["rh-e-1", "rh-copy"] and queue.hidden == []
    assert failed(run.consume(batch("e-1"), LEFT)) == []  # the same message again: not parked twice
    assert len(dead_letters.parked) == 1 and queue.deleted[-1] == "rh-e-1"


def test_a_refusal_with_no_dead_letter_queue_is_retried_like_a_failure():
    queue, taken = Queue(), []

    def effect(detail, seconds_left):
        raise WebhookRefusedError("refused", details={"status": 400})

    assert failed(consumer(effect, taken, queue).consume(batch("e-1"), LEFT)) == ["m-e-1"]
    assert queue.hidden == [("rh-e-1", 10)] and taken == ["queue"]


def test_a_failure_whose_hold_is_refused_is_still_logged_and_comes_back_with_its_lease(log_lines):
    """SQS refuses the backoff's hold (a stale receipt handle, a queue that does not answer):
    the delivery's failure is still said, with its error, and so is the hold's; the record
    fails and comes back when its lease ends."""
    class RefusingQueue(Queue):
        def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
            raise QueueUnavailableError("could not change a message's visibility")

    def effect(detail, seconds_left):
        raise WebhookDeliveryError("ERP down")

    answer = consumer(effect, [], RefusingQueue()).consume(batch("e-1"), LEFT)
    assert failed(answer) == ["m-e-1"]
    said = {line["message"]: line for line in log_lines()}
    assert said["erp_bridge failed; retrying in 10 s"]["error"] == "WebhookDeliveryError: ERP down", said
    assert "could not change a message's visibility" in said["erp_bridge could not hold a failed event back"]["error"]


class Refusing:
    """A port whose every call is refused, as a store or queue that does not answer."""

    def __init__(self, port, *refused: str) -> None:
        self._port, self._refused = port, refused

    def __getattr__(self, name):
        if name in self._refused:
            def refuse(*args, **kwargs):
                raise QueueUnavailableError(f"{name} refused")
            return refuse
        return getattr(self._port, name)


def test_a_refused_event_that_is_not_parked_cleanly_says_why(log_lines):
    """What keeps a refused event from its dead-letter queue, or leaves its parking half
    recorded, is said with the event's id: the operator's only sight of it until the queue's
    redrive policy dead-letters it."""
    def effect(detail, seconds_left):
        raise WebhookRefusedError("ERP webhook refused event: HTTP 422", details={"status": 422})

    ledger = InMemoryDeliveryLedger(ttl_s=3600)
    cases = [
        ("e-1", dict(), ["m-e-1"], "erp_bridge refused for good, and no dead-letter queue is configured"),
        ("e-2", dict(dead_letters=Refusing(DeadLetters(), "park")), ["m-e-2"], "erp_bridge could not park a refused event"),
        ("e-3", dict(dead_letters=DeadLetters(), ledger=Refusing(ledger, "parked")), [],
         "erp_bridge could not record a parked event"),
    ]
    for event_id, ports, failures, said in cases:
        assert failed(consumer(effect, [], Queue(), **ports).consume(batch(event_id), LEFT)) == failures
        lines = {line["message"]: line for line in log_lines()}
        assert lines[said]["event_id"] == event_id, lines
    not_recorded = lines["erp_bridge could not record a parked event"]
    assert not_recorded["message_id"] == "m-e-3" and "parked refused" in not_recorded["error"]  # which record, and why

    refusing_deletes = Refusing(Queue(), "acknowledge")
    assert failed(consumer(effect, [], refusing_deletes, dead_letters=DeadLetters()).consume(batch("e-4"), LEFT)) == []
    lines = {line["message"]: line for line in log_lines()}
    assert lines["erp_bridge could not delete a parked event's message"]["event_id"] == "e-4"

    ledger.parked("m-e-5")  # parked before: its delete and its batch's answer both lost
    dead_letters = DeadLetters()
    assert failed(consumer(effect, [], Queue(), ledger=ledger, dead_letters=dead_letters).consume(
        batch("e-5"), LEFT)) == []
    lines = {line["message"]: line for line in log_lines()}
    parked_before = lines["erp_bridge refused an event parked before: its message is deleted"]
    assert (parked_before["message_id"], parked_before["event_id"]) == ("m-e-5", "e-5")
    assert dead_letters.parked == []


def test_a_delivery_record_is_held_for_what_is_left_of_the_invocation_or_the_default_lease():
    """The record's lease is the invocation's time left, however long: a shorter one would let
    a redelivered copy take the event over while this invocation still POSTs it (delivered
    twice). A context with no remaining time (a local run, a test harness) still delivers: the
    effect is told no deadline (None, the sender's own timeout) and the record is held for
    DELIVERY_LEASE_S, rather than the batch failing on a context it cannot read."""
    from chalicelib.defaults import DELIVERY_LEASE_S

    leases, seen = [], []

    class Ledger(InMemoryDeliveryLedger):
        def begin(self, event_ids, lease_s):
            leases.append(lease_s)
            return super().begin(event_ids, lease_s)

    def effect(detail, seconds_left):
        seen.append((detail["event_id"], seconds_left))

    run = consumer(effect, [], Queue(), ledger=Ledger(ttl_s=3600))
    assert failed(run.consume(batch("e-1"), TimeLeft((DELIVERY_LEASE_S + 240) * 1000))) == []
    assert failed(run.consume(batch("e-2"), object())) == []
    assert seen == [("e-1", DELIVERY_LEASE_S + 240), ("e-2", None)]
    assert leases == [DELIVERY_LEASE_S + 240, DELIVERY_LEASE_S]


def test_an_effect_without_a_ledger_is_told_what_is_left_of_the_invocation():
    """An effect safe to repeat (no ledger: the ERP bridge when the ERP deduplicates) is told
    the invocation's time left as one on a ledger is: a POST cut to end before the invocation
    does fails its record alone instead of the timeout failing the whole batch."""
    seen = []

    def effect(detail, seconds_left):
        seen.append((detail["event_id"], seconds_left))

    assert failed(consumer(effect, [], Queue()).consume(batch("e-1", "e-2"), LEFT)) == []
    assert seen == [("e-1", 30.0), ("e-2", 30.0)]


def test_an_unexpected_failure_of_the_effect_is_held_back_like_any_other():
    """An effect that fails with an error no port names (a bug, a detail it cannot read) is
    hidden for its backoff like a refused POST, not handed back to the queue at once to fail
    again on every receive until the redrive policy parks it."""
    queue = Queue()

    def effect(detail, seconds_left):
        raise KeyError("status")

    answer = consumer(effect, [], queue, ledger=InMemoryDeliveryLedger(ttl_s=3600)).consume(
        batch("e-1", receives=3), LEFT)
    assert failed(answer) == ["m-e-1"] and queue.hidden == [("rh-e-1", 30)]


def test_a_batch_whose_records_cannot_be_closed_still_succeeds_and_says_so(log_lines):
    """Whatever keeps the delivery records from closing (the store not answering, or an error
    no port names), the events were POSTed: their messages succeed rather than come back to be
    delivered again, and the operator reads that the records were left in progress."""
    class Unclosable(InMemoryDeliveryLedger):
        def finish(self, delivered, failed):
            raise RuntimeError("the store's answer could not be read")

    sent = []

    def effect(detail, seconds_left):
        sent.append(detail["event_id"])

    queue = Queue()
    answer = consumer(effect, [], queue, ledger=Unclosable(ttl_s=3600)).consume(batch("e-1", "e-2"), LEFT)
    assert failed(answer) == [] and sent == ["e-1", "e-2"] and queue.hidden == []
    (said,) = [line for line in log_lines() if line["message"] == "erp_bridge could not close its delivery records"]
    assert "the store's answer could not be read" in said["exception"]


def test_a_failed_cache_invalidation_is_held_back_for_the_deployment_s_backoff_under_its_own_name(log_lines):
    """Cache invalidation is retried as the ERP bridge's deliveries are: a failure is hidden on
    the container's queue for the settings' redelivery backoff, and its log line names
    `cache_invalidation`, which tells the operator which subscriber is behind."""
    from types import SimpleNamespace

    from chalicelib.domain.errors import StoreUnavailableError
    from chalicelib.subscribers.handlers import cache_consumer
    from tests.unit.test_events import completed

    class Unreachable:
        def handle(self, event):
            raise StoreUnavailableError("the cache table did not answer")

    queue = Queue()
    services = SimpleNamespace(settings=SimpleNamespace(redelivery_wait_s=lambda receives: 7 * receives),
                               queue=queue, cache_invalidator=Unreachable())
    records = batch("e-1", receives=2)
    records["Records"][0]["body"] = json.dumps({"detail": json.loads(completed().model_dump_json())})
    assert failed(cache_consumer(services).consume(records, LEFT)) == ["m-e-1"]
    assert queue.hidden == [("rh-e-1", 14)]
    (said,) = [line for line in log_lines() if line["message"].endswith("failed; retrying in 14 s")]
    assert said["message"] == "cache_invalidation failed; retrying in 14 s" and "did not answer" in said["error"]


def test_an_unreadable_record_fails_alone_and_the_records_after_it_are_delivered():
    """A body that is no event cannot be opened on the ledger; it fails on its own, and the
    batch's readable records after it are opened and delivered in the same invocation."""
    ledger, queue, taken, seen = InMemoryDeliveryLedger(ttl_s=3600), Queue(), [], []
    records = batch("bad", "e-1", "e-2")
    records["Records"][0]["body"] = "not an event"
    run = consumer(lambda detail, seconds_left: seen.append(detail["event_id"]), taken, queue, ledger=ledger)
    assert failed(run.consume(records, LEFT)) == ["m-bad"]
    assert seen == ["e-1", "e-2"]
