"""DeliveryLedger: per batch, open each event's record once, report what is done or held
elsewhere, let a lapsed lease be taken over, close delivered records as done and forget failed
ones. Run against the in-memory twin and the DynamoDB adapter on moto, with one clock."""
from __future__ import annotations

import boto3
import pytest
from moto import mock_aws

from chalicelib.ports import LedgerOpening
from tests.support.infra import create_table
from tests.contract.conftest import EpochClock, fake_aws_credentials

TTL_S = 7 * 24 * 3600
LEASE_S = 60


@pytest.fixture
def clock() -> EpochClock:
    return EpochClock()


@pytest.fixture(params=["memory", "aws"])
def ledgers(request, monkeypatch, clock):
    """A factory: consumer name -> that consumer's ledger (all on the same table and clock)."""
    if request.param == "memory":
        from chalicelib.adapters.memory_events import InMemoryDeliveryLedger

        made: dict[str, InMemoryDeliveryLedger] = {}
        yield lambda consumer="erp_bridge": made.setdefault(consumer, InMemoryDeliveryLedger(ttl_s=TTL_S, clock=clock))
        return
    fake_aws_credentials(monkeypatch)
    with mock_aws():
        from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger

        ddb = boto3.client("dynamodb")
        create_table(ddb, "IdempotencyTable", "idempotency")
        yield lambda consumer="erp_bridge": DynamoDeliveryLedger(ddb, "idempotency", consumer, ttl_s=TTL_S, clock=clock)


def test_new_events_are_opened_and_duplicates_in_the_batch_once(ledgers):
    ledger = ledgers()
    assert ledger.begin(["a", "b", "a", "c"], LEASE_S) == LedgerOpening(opened=("a", "b", "c"))


def test_done_events_are_skipped_held_ones_are_busy_and_the_rest_still_open(ledgers):
    ledger = ledgers()
    ledger.begin(["done", "failed", "held"], LEASE_S)
    ledger.finish(["done"], ["failed"])
    assert ledger.begin(["new", "done", "held", "failed"], LEASE_S) == LedgerOpening(
        opened=("new", "failed"), done=("done",), busy=("held",))
    # What this begin opened is now held too.
    assert ledger.begin(["new", "failed"], LEASE_S) == LedgerOpening(busy=("new", "failed"))


def test_a_lapsed_lease_is_taken_over_and_a_live_one_is_not(ledgers, clock):
    ledger = ledgers()
    ledger.begin(["crashed"], LEASE_S)  # the process dies before finishing
    clock.now += LEASE_S - 1
    assert ledger.begin(["crashed"], LEASE_S) == LedgerOpening(busy=("crashed",))
    clock.now += 3
    assert ledger.begin(["crashed"], LEASE_S) == LedgerOpening(opened=("crashed",))
    ledger.finish(["crashed"], [])
    assert ledger.begin(["crashed"], LEASE_S) == LedgerOpening(done=("crashed",))


def test_a_lease_holds_through_its_last_second_on_both_ledgers(ledgers, clock):
    """A record in progress is held until the second its lease ends, inclusive, and taken over
    only after it: DynamoDB's condition is `expiration < :now`, and the twin that the unit and
    functional tests deliver on must not hand an event to a second bridge one second sooner
    (a delivery still running then would go out twice)."""
    ledger = ledgers()
    ledger.begin(["slow"], LEASE_S)
    clock.now += LEASE_S  # the lease's last second
    assert ledger.begin(["slow"], LEASE_S) == LedgerOpening(busy=("slow",))
    clock.now += 1
    assert ledger.begin(["slow"], LEASE_S) == LedgerOpening(opened=("slow",))


def test_a_done_record_past_its_time_to_live_counts_as_absent(ledgers, clock):
    ledger = ledgers()
    ledger.begin(["old"], LEASE_S)
    ledger.finish(["old"], [])
    clock.now += TTL_S - 10
    assert ledger.begin(["old"], LEASE_S).done == ("old",)
    clock.now += 20  # DynamoDB's TTL deletes lazily; the condition does not wait for it
    assert ledger.begin(["old"], LEASE_S).opened == ("old",)


def test_consumers_keep_their_own_records(ledgers):
    ledgers("erp_bridge").begin(["e"], LEASE_S)
    ledgers("erp_bridge").finish(["e"], [])
    assert ledgers("other").begin(["e"], LEASE_S) == LedgerOpening(opened=("e",))


def test_more_events_than_one_request_holds(ledgers):
    """Beyond 100 ids (a transaction) and 25 writes (a batch write) the ledger splits them."""
    ledger = ledgers()
    ids = [f"e{i}" for i in range(130)]
    ledger.begin(ids[:7], LEASE_S)
    ledger.finish(ids[:7], [])
    opening = ledger.begin(ids, LEASE_S)
    assert opening.done == tuple(ids[:7]) and opening.opened == tuple(ids[7:]) and opening.busy == ()
    ledger.finish(ids[7:100], ids[100:])
    again = ledger.begin(ids, LEASE_S)
    assert again.done == tuple(ids[:100]) and again.opened == tuple(ids[100:])


def test_an_empty_finish_writes_nothing(ledgers):
    ledger = ledgers()
    ledger.finish([], [])
    assert ledger.begin(["x"], LEASE_S).opened == ("x",)


def test_an_event_named_twice_in_a_finish_is_closed_once(ledgers):
    """The ledger closes what it is told, a repeat included: DynamoDB refuses a batch write that
    names one key twice, which would leave the whole batch's records in progress (its delivered
    events held, its failed ones not forgotten) until their leases lapse."""
    ledger = ledgers()
    ledger.begin(["delivered", "failed"], LEASE_S)
    ledger.finish(["delivered", "delivered"], ["failed", "failed"])
    assert ledger.begin(["delivered", "failed"], LEASE_S) == LedgerOpening(opened=("failed",), done=("delivered",))


def test_a_message_recorded_parked_is_not_parked_again_until_its_record_expires(ledgers, clock):
    """A refused event's message is parked once: a park that did not go through leaves it to
    park, a recorded park keeps each later delivery of the same message off the dead-letter
    queue; a redriven copy (a new message id) and the event's own delivery record are apart."""
    ledger = ledgers()
    assert ledger.begin_parking("m-1") is True
    assert ledger.begin_parking("m-1") is True, "the park did not go through: it is tried again"
    ledger.parked("m-1")
    assert ledger.begin_parking("m-1") is False
    assert ledger.begin_parking("m-2") is True
    assert ledger.begin(["e-1"], LEASE_S) == LedgerOpening(opened=("e-1",))
    assert ledger.begin(["m-1"], LEASE_S) == LedgerOpening(opened=("m-1",)), "an event id that is a message's text"
    assert ledgers("cache_invalidation").begin_parking("m-1") is True
    clock.now += TTL_S  # the record's last second: still parked, on both ledgers
    assert ledger.begin_parking("m-1") is False
    clock.now += 1
    assert ledger.begin_parking("m-1") is True
