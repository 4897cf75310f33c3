"""ParkedRecordDrops: an operator's drop of a parked stream record is kept only for a record the
reconciler took and still holds, and the next take reads it. Run against the in-memory twin and
the stats table on moto."""
from __future__ import annotations

from typing import Any, Callable

import boto3
import pytest
from moto import mock_aws

from chalicelib.defaults import PARKED_RECORD_KEEP_S
from tests.contract.conftest import STATS_TABLE, EpochClock, each_kind
from tests.support.infra import create_table



def _memory(clock: EpochClock) -> Callable[[], Any]:
    def make() -> Any:
        from chalicelib.adapters.memory_stream import InMemoryParkedRecordDrops

        return InMemoryParkedRecordDrops(clock)
    return make


def _aws(clock: EpochClock) -> Callable[[], Any]:
    def make() -> Any:
        from chalicelib.adapters.parked_record_drops import DynamoParkedRecordDrops

        ddb = boto3.client("dynamodb")
        create_table(ddb, "StatsTable", STATS_TABLE)
        return DynamoParkedRecordDrops(ddb, STATS_TABLE, clock)
    return make


@pytest.fixture
def clock() -> EpochClock:
    return EpochClock()


@pytest.fixture(params=["memory", "aws"])
def drops(request, monkeypatch, clock) -> Any:
    yield from each_kind(request, monkeypatch, _memory(clock), _aws(clock))


def test_a_record_never_taken_takes_no_request(drops):
    assert drops.request("m-1") is False
    drops.removed("m-1")  # nothing to record
    assert drops.request("m-1") is False, "removal wrote no entry a request could land on"
    assert drops.taken("m-1") is False


def test_a_request_for_a_taken_record_is_read_by_its_next_take(drops):
    assert drops.taken("m-1") is False
    assert drops.request("m-1") is True
    assert drops.request("m-1") is True, "asked twice: kept once"
    assert drops.request("m-2") is False, "another record's request is its own"
    assert drops.taken("m-1") is True
    assert drops.taken("m-1") is True, "a take that did not remove it keeps the request"


def test_a_removed_record_takes_no_request(drops):
    drops.taken("m-1")
    drops.removed("m-1")
    assert drops.request("m-1") is False


def test_a_take_after_a_removal_holds_the_record_again(drops):
    """SQS may hand out a deleted message once more: taken again, it may be dropped again."""
    drops.taken("m-1")
    drops.removed("m-1")
    assert drops.taken("m-1") is False
    assert drops.request("m-1") is True


def test_an_entry_past_its_keep_takes_no_request(drops, clock):
    """The queue keeps a record at most its retention: an entry older than that is about a record
    gone, whatever DynamoDB's TTL has not yet removed."""
    drops.taken("m-1")
    clock.now += PARKED_RECORD_KEEP_S
    assert drops.request("m-1") is False
    assert drops.taken("m-1") is False, "taken again: kept from then on"
    assert drops.request("m-1") is True


def test_a_removal_the_store_does_not_take_is_not_raised(monkeypatch, clock):
    """The port's `removed` never raises: both its callers (the replay, the operator's delete)
    have deleted the record already, and a removal not recorded deletes nothing later. `taken`
    and `request` still raise: a take must not publish on a guess, a request must not be
    answered 202 unkept."""
    from botocore.exceptions import ClientError

    from chalicelib.domain.errors import StoreUnavailableError
    from tests.contract.conftest import fake_aws_credentials

    fake_aws_credentials(monkeypatch)
    with mock_aws():
        drops = _aws(clock)()
        drops.taken("m-1")

        def refused(**_):
            raise ClientError({"Error": {"Code": "ProvisionedThroughputExceededException", "Message": "slow down"}},
                              "UpdateItem")

        monkeypatch.setattr(drops._ddb, "update_item", refused)
        drops.removed("m-1")
        for call in (drops.taken, drops.request):
            with pytest.raises(StoreUnavailableError):
                call("m-1")
