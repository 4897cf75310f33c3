"""EventPublisher: every event goes out with its detail type and detail as the model writes
them, or EventPublishError names each event that did not. Run against the in-memory twin and
EventBridge on moto (a rule on the bus sends everything from `jobpipe` to a queue read back)."""
from __future__ import annotations

import itertools
import json

import boto3
import pytest
from moto import mock_aws

from chalicelib.domain.errors import EventPublishError
from chalicelib.domain.events import SOURCE, CacheInvalidatedEvent, JobEvent, event_id_for
from tests.contract.conftest import fake_aws_credentials

BUS = "job-events"
T = "2026-01-01T12:00:00.000Z"


@pytest.fixture(params=["memory", "aws"])
def publishers(request, monkeypatch):
    """(a publisher, arrived() -> [(source, detail type, detail)], a publisher that cannot publish,
    failing_after(n) -> a publisher whose bus takes n more events and refuses every one after)."""
    if request.param == "memory":
        from chalicelib.adapters.memory_events import InMemoryEventPublisher

        publisher, failing = InMemoryEventPublisher(), InMemoryEventPublisher()
        failing.fail_next = 1

        def failing_after(n):
            publisher.fail_after = n
            return publisher

        yield publisher, lambda: [(SOURCE, e.detail_type, json.loads(e.model_dump_json()))
                                  for e in publisher.published], failing, failing_after
        return
    from chalicelib.adapters.eventbridge import EventBridgePublisher
    from chalicelib.adapters.faults import FailingPutEvents

    fake_aws_credentials(monkeypatch)
    with mock_aws():
        events, sqs = boto3.client("events"), boto3.client("sqs")
        events.create_event_bus(Name=BUS)
        url = sqs.create_queue(QueueName="tap")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        events.put_rule(Name="tap", EventBusName=BUS, EventPattern=json.dumps({"source": [SOURCE]}))
        events.put_targets(Rule="tap", EventBusName=BUS, Targets=[{"Id": "tap", "Arn": arn}])

        def arrived():
            seen = []
            while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
                seen += [json.loads(m["Body"]) for m in messages]
                sqs.delete_message_batch(QueueUrl=url, Entries=[
                    {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            return [(e["source"], e["detail-type"], e["detail"]) for e in seen]

        def failing_after(n):
            # The reliability suites' fault injector, its draws scripted: the first n entries
            # drawn go to the bus, every later one (a retry's too) is refused entry by entry.
            drawn = itertools.count()
            refusing = FailingPutEvents(events, 1.0, draw=lambda: 1.0 if next(drawn) < n else 0.0)
            return EventBridgePublisher(refusing, BUS, sleep=lambda s: None)

        yield (EventBridgePublisher(events, BUS, sleep=lambda s: None), arrived,
               EventBridgePublisher(events, "no-such-bus", sleep=lambda s: None), failing_after)


def _events(count: int) -> list:
    """`count` job events of one job (its versions 1..count) and a cache event after them."""
    jobs = [JobEvent(event_id=event_id_for("j-1", v), event_type="job.status.progress", timestamp=T,
                     job_id="j-1", status="running", progress=float(v), attempt=1, previous_status="running",
                     previous_progress=float(v - 1), message="café ✓", tenant="acme", type="demo.steps",
                     version=v) for v in range(1, count + 1)]
    cache = CacheInvalidatedEvent(event_id=event_id_for("j-1", count, "cache"), timestamp=T, tenant="acme",
                                  scope="proj", namespaces=["reports"], job_id="j-1", type="demo.steps")
    return [*jobs, cache]


def _sorted(arrived):
    return sorted(arrived, key=lambda item: item[2]["event_id"])


def test_every_event_goes_out_with_its_detail_type_and_detail(publishers):
    publisher, arrived, _, _ = publishers
    events = _events(11)  # twelve: more than one PutEvents call takes
    publisher.publish(events)
    assert _sorted(arrived()) == _sorted([(SOURCE, e.detail_type, json.loads(e.model_dump_json())) for e in events])


def test_nothing_to_publish_sends_nothing(publishers):
    """No request is made, so none can fail: even a bus that refuses everything takes it."""
    publisher, arrived, failing, _ = publishers
    publisher.publish([])
    failing.publish([])
    assert arrived() == []
    with pytest.raises(EventPublishError):  # the failing publisher still fails the next real publish
        failing.publish(_events(1))


def test_a_publisher_that_cannot_publish_names_every_event_not_published(publishers):
    _, arrived, failing, _ = publishers
    events = _events(11)
    with pytest.raises(EventPublishError) as raised:
        failing.publish(events)
    assert sorted(raised.value.unpublished) == sorted(e.event_id for e in events)
    assert raised.value.code == "event_publish_failed"
    assert arrived() == []


def test_a_publish_refused_part_way_names_only_the_events_that_did_not_go_out(publishers):
    """PutEvents takes ten entries a call and may refuse some of a call's entries: those that
    went out stay out, and EventPublishError names the others in order (the refused ones and
    every one after them, not sent), so a caller retries only what is missing."""
    _, arrived, _, failing_after = publishers
    events = _events(22)  # 23 events: three calls, the second refused after its third entry
    with pytest.raises(EventPublishError) as raised:
        failing_after(13).publish(events)
    assert raised.value.unpublished == [e.event_id for e in events[13:]]
    assert _sorted(arrived()) == _sorted([(SOURCE, e.detail_type, json.loads(e.model_dump_json()))
                                          for e in events[:13]])
