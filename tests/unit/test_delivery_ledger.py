"""The DynamoDB delivery ledger's reading of a refused transaction (the cases moto and the
emulator do not produce on demand), and the delivery round over the in-memory ledger."""
from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, ReadTimeoutError

from chalicelib.adapters.dynamodb_keys import TTL_ATTRIBUTE
from chalicelib.adapters.dynamodb_ledger import DynamoDeliveryLedger
from chalicelib.adapters.memory_events import InMemoryDeliveryLedger
from chalicelib.defaults import BATCH_WRITE_MAX
from chalicelib.domain.errors import DeliveryInProgressError, StoreUnavailableError
from chalicelib.ports import LedgerOpening
from chalicelib.subscribers.delivery import DeliveryRound


def cancelled(*reasons: dict) -> ClientError:
    return ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"},
                        "CancellationReasons": list(reasons)}, "TransactWriteItems")


def refused(status: str | None = None) -> dict:
    reason = {"Code": "ConditionalCheckFailed"}
    if status:
        reason["Item"] = {"id": {"S": "x"}, "status": {"S": status}, "expiration": {"N": "1"}}
    return reason


class Client:
    """Answers each transact_write_items with the next outcome (an error to raise, or success)."""

    def __init__(self, *outcomes) -> None:
        self.outcomes = list(outcomes)
        self.sent: list[list[str]] = []

    def transact_write_items(self, TransactItems):
        self.sent.append([item["Put"]["Item"]["id"]["S"].rsplit("#", 1)[1] for item in TransactItems])
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return {}


def ledger(client: Client) -> DynamoDeliveryLedger:
    return DynamoDeliveryLedger(client, "idempotency", "erp_bridge", ttl_s=3600, clock=lambda: 1000.0)


def test_refused_ids_are_sorted_by_the_stored_record_and_the_rest_sent_once_more():
    client = Client(cancelled({"Code": "None"}, refused("done"), refused("in_progress"),
                              {"Code": "TransactionConflict"}, {"Code": "None"}), None)
    opening = ledger(client).begin(["a", "b", "c", "d", "e"], 60)
    assert opening == LedgerOpening(opened=("a", "e"), done=("b",), busy=("c", "d"))
    assert client.sent == [["a", "b", "c", "d", "e"], ["a", "e"]]


def test_a_refusal_without_the_stored_record_is_treated_as_held_elsewhere():
    client = Client(cancelled(refused(), {"Code": "None"}), None)
    assert ledger(client).begin(["a", "b"], 60) == LedgerOpening(opened=("b",), busy=("a",))


def test_what_a_second_refusal_leaves_unopened_is_retried_later():
    client = Client(cancelled(refused("done"), {"Code": "ThrottlingError"}, {"Code": "None"}),
                    cancelled(refused("in_progress"), {"Code": "ThrottlingError"}))
    opening = ledger(client).begin(["a", "b", "c"], 60)
    assert opening == LedgerOpening(done=("a",), busy=("b", "c"))
    assert len(client.sent) == 2  # never a third request


@pytest.mark.parametrize("code", ["None", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"])
def test_a_put_cancelled_for_another_items_refusal_or_for_throughput_is_sent_once_more(code):
    """DynamoDB names each Put of a cancelled transaction: None (refused for another's sake) or a
    throughput or request-rate refusal says nothing of its record, so it is tried again."""
    client = Client(cancelled(refused("done"), {"Code": code}), None)
    assert ledger(client).begin(["a", "b"], 60) == LedgerOpening(opened=("b",), done=("a",))
    assert client.sent == [["a", "b"], ["b"]]


@pytest.mark.parametrize("error", [
    cancelled({"Code": "ValidationError", "Message": "bad item"}),
    cancelled(),  # no reasons to read
    cancelled({"Code": "None"}, {"Code": "None"}),  # more reasons than Puts: not this transaction's
    ClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                "TransactWriteItems"),  # nor any list of them
    ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}, "TransactWriteItems"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1"),
])
def test_other_refusals_and_lost_connections_are_store_unavailable(error):
    with pytest.raises(StoreUnavailableError):
        ledger(Client(error)).begin(["a"], 60)


def test_a_refusal_that_is_no_cancelled_transaction_is_not_said_to_be_one():
    """A missing table or a denied call is said as the ledger not answering, what the
    operator fixes; only a cancelled transaction can be "refused without reasons"."""
    missing = ClientError({"Error": {"Code": "ResourceNotFoundException", "Message": "no table"}}, "TransactWriteItems")
    with pytest.raises(StoreUnavailableError) as raised:
        ledger(Client(missing)).begin(["a"], 60)
    assert str(raised.value) == "could not open the delivery records" and raised.value.__cause__ is missing


def test_a_put_whose_reason_names_no_code_is_sent_once_more():
    """A cancellation reason without a Code says nothing refused its record: read as DynamoDB's
    "None", the Put cancelled for another item's sake."""
    client = Client(cancelled(refused("done"), {}), None)
    assert ledger(client).begin(["a", "b"], 60) == LedgerOpening(opened=("b",), done=("a",))
    assert client.sent == [["a", "b"], ["b"]]


def test_a_put_refused_for_another_reason_is_said_with_dynamodb_s_code():
    """The operator reads from the error why the transaction was refused."""
    refusal = ledger(Client(cancelled({"Code": "ValidationError", "Message": "bad item"})))
    with pytest.raises(StoreUnavailableError) as raised:
        refusal.begin(["a"], 60)
    assert str(raised.value) == "could not open the delivery records: ValidationError"


def test_the_lease_and_time_to_live_are_whole_seconds_after_the_clock():
    """On the attribute the idempotency table's TTL removes records by (tests/unit/test_template.py)."""
    client = Client(None)
    captured = []
    client.transact_write_items = lambda TransactItems: captured.extend(TransactItems) or {}
    ledger(client).begin(["a"], 59.2)
    put = captured[0]["Put"]
    assert put["Item"][TTL_ATTRIBUTE] == {"N": "1060"} and put["Item"]["status"] == {"S": "in_progress"}
    assert put["ExpressionAttributeValues"] == {":now": {"N": "1000"}}
    assert put["ExpressionAttributeNames"] == {"#expires": TTL_ATTRIBUTE}
    assert put["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"


def test_a_round_delivers_each_opened_event_once_and_closes_them_in_one_call():
    records = InMemoryDeliveryLedger(ttl_s=3600, clock=lambda: 1000.0)
    records.begin(["held"], 60)
    records.begin(["done"], 60)
    records.finish(["done"], [])
    finished = []
    finish = records.finish
    records.finish = lambda delivered, failed: finished.append((list(delivered), list(failed))) or finish(delivered, failed)
    sent = []
    batch = DeliveryRound(records, ["a", "done", "held", "a", "bad"], 60)
    assert batch.run("a", lambda: sent.append("a")) is True
    assert batch.run("a", lambda: sent.append("a")) is False
    assert batch.run("done", lambda: sent.append("done")) is False
    with pytest.raises(DeliveryInProgressError):
        batch.run("held", lambda: sent.append("held"))
    with pytest.raises(ValueError):
        batch.run("bad", lambda: (_ for _ in ()).throw(ValueError("500")))
    with pytest.raises(ValueError):  # its duplicate shares the failure, without a second try
        batch.run("bad", lambda: sent.append("bad"))
    batch.close()
    assert sent == ["a"] and finished == [(["a"], ["bad"])]
    assert records.begin(["a", "bad"], 60) == LedgerOpening(opened=("bad",), done=("a",))


def test_an_opened_event_no_record_reached_is_forgotten_on_close():
    records = InMemoryDeliveryLedger(ttl_s=3600, clock=lambda: 1000.0)
    DeliveryRound(records, ["never-run"], 60).close()
    assert records.begin(["never-run"], 60).opened == ("never-run",)


def test_a_round_on_a_ledger_that_cannot_be_reached_fails_each_run_with_the_ledger_s_error():
    """Not as an event held elsewhere: the record's log line and retry say the ledger is down,
    and nothing is delivered without its record."""
    class Unreachable(InMemoryDeliveryLedger):
        def begin(self, event_ids, lease_s):
            raise StoreUnavailableError("could not open the delivery records")

    sent = []
    batch = DeliveryRound(Unreachable(ttl_s=3600), ["a"], 60)
    with pytest.raises(StoreUnavailableError, match="could not open the delivery records"):
        batch.run("a", lambda: sent.append("a"))
    assert sent == []


class Recorder:
    """A DynamoDB client that takes every write, recording each request's arguments."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict]] = []

    def __getattr__(self, name):
        return lambda **kwargs: self.calls.append((name, kwargs)) or {}


def test_a_clock_between_seconds_holds_a_lease_through_its_second_and_records_last_their_whole_time():
    """The records' times are whole seconds: `now` is read down (a lease is held through its
    last second, not taken over while that second still runs) and every end up (a lease or a
    time to live is never a second short), for the opened, the done and the parked records."""
    client = Recorder()
    ledger = DynamoDeliveryLedger(client, "idempotency", "erp_bridge", ttl_s=3600, clock=lambda: 1000.6)
    ledger.begin(["a"], 59.2)
    ledger.finish(["a"], [])
    assert ledger.begin_parking("m-1") is True
    (_, opened), (_, closed), (_, parking) = client.calls
    put = opened["TransactItems"][0]["Put"]
    assert put["Item"][TTL_ATTRIBUTE] == {"N": "1060"} and put["ExpressionAttributeValues"][":now"] == {"N": "1000"}
    (done,) = closed["RequestItems"]["idempotency"]
    assert done["PutRequest"]["Item"][TTL_ATTRIBUTE] == {"N": "4601"}
    assert parking["Item"][TTL_ATTRIBUTE] == {"N": "4601"} and parking["ExpressionAttributeValues"][":now"] == {"N": "1000"}
    assert parking["ExpressionAttributeNames"]["#expires"] == TTL_ATTRIBUTE


def test_a_finish_of_more_records_than_one_batch_write_takes_closes_each_once_in_batches_dynamodb_accepts():
    """DynamoDB refuses a BatchWriteItem of more than 25 requests: a larger finish is split,
    every record written in exactly one of them."""
    client = Recorder()
    delivered, failed = [f"d{i}" for i in range(BATCH_WRITE_MAX)], ["f0"]
    DynamoDeliveryLedger(client, "idempotency", "erp_bridge", ttl_s=3600).finish(delivered, failed)
    batches = [kwargs["RequestItems"]["idempotency"] for name, kwargs in client.calls]
    assert all(len(batch) <= BATCH_WRITE_MAX for batch in batches)
    written = [r["PutRequest"]["Item"]["id"]["S"] if "PutRequest" in r else r["DeleteRequest"]["Key"]["id"]["S"]
               for batch in batches for r in batch]
    assert written == [f"DELIVERY#erp_bridge#{e}" for e in delivered + failed]


def test_a_finish_the_store_refuses_is_said_as_the_records_not_closed():
    class Refusing:
        def batch_write_item(self, **kwargs):
            raise ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "BatchWriteItem")

    with pytest.raises(StoreUnavailableError) as raised:
        DynamoDeliveryLedger(Refusing(), "idempotency", "erp_bridge", ttl_s=3600).finish(["a"], [])
    assert str(raised.value) == "could not close the delivery records"


class RefusingPuts:
    """A DynamoDB client whose every put_item raises `error`."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def put_item(self, **kwargs):
        raise self.error


@pytest.mark.parametrize("error", [
    ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}}, "PutItem"),
    ClientError({"Error": {"Code": "AccessDeniedException", "Message": "denied"}}, "PutItem"),
    ReadTimeoutError(endpoint_url="http://127.0.0.1"),
])
def test_a_parking_mark_the_store_did_not_take_is_the_store_not_answering(error):
    """Only a refused condition says a message was parked before, and its message is then
    deleted without a park: a throttled, denied or unanswered write must not read as that
    (the refused event would be dropped, neither parked nor delivered), nor may a park whose
    record was not written escape as a raw client error (its message would come back and be
    parked again). Both are StoreUnavailableError, which the consumer retries."""
    ledger = DynamoDeliveryLedger(RefusingPuts(error), "idempotency", "erp_bridge", ttl_s=3600, clock=lambda: 1000.0)
    with pytest.raises(StoreUnavailableError, match="could not read whether a message was parked"):
        ledger.begin_parking("m-1")
    with pytest.raises(StoreUnavailableError, match="could not record a parked message"):
        ledger.parked("m-1")
