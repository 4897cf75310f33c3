"""Batch reads and writes send again what DynamoDB left unprocessed, then give up."""
import pytest

from chalicelib.adapters.dynamodb_batch import batch_get, batch_write
from chalicelib.defaults import UNPROCESSED_RETRIES
from chalicelib.domain.errors import StoreUnavailableError


class Throttling:
    """A client whose batch calls leave the last key/request unprocessed `throttled` times."""

    def __init__(self, throttled: int) -> None:
        self.throttled = throttled
        self.requests: list[dict] = []

    def batch_get_item(self, RequestItems):  # noqa: N803 (boto3's naming)
        self.requests.append(RequestItems)
        keys = RequestItems["t"]["Keys"]
        if self.throttled:
            self.throttled -= 1
            return {"Responses": {"t": [dict(k, v={"S": "x"}) for k in keys[:-1]]},
                    "UnprocessedKeys": {"t": {"Keys": keys[-1:]}}}
        return {"Responses": {"t": [dict(k, v={"S": "x"}) for k in keys]}, "UnprocessedKeys": {}}

    def batch_write_item(self, RequestItems):  # noqa: N803
        self.requests.append(RequestItems)
        if self.throttled:
            self.throttled -= 1
            return {"UnprocessedItems": {"t": RequestItems["t"][-1:]}}
        return {"UnprocessedItems": {}}


KEYS = [{"pk": {"S": f"k{i}"}} for i in range(3)]


def test_unprocessed_keys_are_read_again_until_every_item_is_back():
    client, waits = Throttling(throttled=2), []
    items = batch_get(client, "t", KEYS, error="could not read", sleep=waits.append)
    assert sorted(i["pk"]["S"] for i in items) == ["k0", "k1", "k2"]
    assert [r["t"]["Keys"] for r in client.requests[1:]] == [KEYS[-1:], KEYS[-1:]]
    assert waits == sorted(waits) and len(waits) == 2


def test_unprocessed_writes_are_sent_again():
    client = Throttling(throttled=1)
    requests = [{"DeleteRequest": {"Key": k}} for k in KEYS]
    batch_write(client, "t", requests, error="could not delete", sleep=lambda s: None)
    assert [r["t"] for r in client.requests] == [requests, requests[-1:]]


def test_a_batch_that_never_goes_through_is_a_store_error():
    client = Throttling(throttled=UNPROCESSED_RETRIES + 1)
    with pytest.raises(StoreUnavailableError, match="could not read"):
        batch_get(client, "t", KEYS, error="could not read", sleep=lambda s: None)
    assert len(client.requests) == UNPROCESSED_RETRIES + 1


def test_nothing_to_do_makes_no_call():
    client = Throttling(throttled=0)
    assert batch_get(client, "t", [], error="x") == []
    batch_write(client, "t", [], error="x")
    assert client.requests == []
