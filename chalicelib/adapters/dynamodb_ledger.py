"""DynamoDB adapter of the DeliveryLedger port, in the idempotency table (key `id`, TTL on
`expiration` (`TTL_ATTRIBUTE` of dynamodb_keys.py), shared with the keyed submissions' key records (submit#...)):

    delivery record   id=DELIVERY#<consumer>#<event id>   status (in_progress | done), expiration
    parked message    id=DELIVERY#<consumer>#parked:<SQS message id>   status (parking | parked), expiration

`expiration` is the lease's end while in progress and the TTL once done: a record whose
`expiration` has passed is as good as absent (TTL deletes lazily), so one condition,
`attribute_not_exists(id) OR expiration < :now`, lets `begin` open new events, take over
abandoned leases and reopen records past their time to live.

A refused event's message is parked on the dead-letter queue once: `begin_parking` is a
conditional Put (`parking`) that fails on a `parked` record, `parked` a Put after the park; both
expire with the ledger's time to live.

`begin` is one TransactWriteItems of conditional Puts (up to 100). A refused transaction
writes nothing; its CancellationReasons (with the stored record, ReturnValuesOnConditionCheck
Failure=ALL_OLD) say which ids are done or busy, and the rest are sent once more. `finish` is
one BatchWriteItem (up to 25): Puts of done records, Deletes of failed ones."""
from __future__ import annotations

import math
import time
from typing import Any, Callable, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_batch import batch_write
from chalicelib.adapters.dynamodb_keys import TTL_ATTRIBUTE
from chalicelib.defaults import BATCH_WRITE_MAX, TRANSACT_WRITE_MAX_ITEMS
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.ports import LedgerOpening

IN_PROGRESS, DONE = "in_progress", "done"
PARKING, PARKED = "parking", "parked"
# Cancellation reasons that refuse nothing about the record itself: sent again once.
_NOT_REFUSED = {"None", "ThrottlingError", "ProvisionedThroughputExceeded", "RequestLimitExceeded"}


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[i:i + size] for i in range(0, len(items), size)]


class DynamoDeliveryLedger:
    def __init__(self, client: Any, table_name: str, consumer: str, *, ttl_s: int,
                 clock: Callable[[], float] = time.time) -> None:
        """`consumer` names whose deliveries these are (each subscriber keeps its own)."""
        self._ddb = client
        self._table = table_name
        self._prefix = f"DELIVERY#{consumer}#"
        self._ttl_s = ttl_s
        self._clock = clock

    def _id(self, event_id: str) -> dict[str, Any]:
        return {"id": {"S": self._prefix + event_id}}

    def begin(self, event_ids: Sequence[str], lease_s: float) -> LedgerOpening:
        ids = list(dict.fromkeys(event_ids))  # a transaction may touch an item once
        opened: list[str] = []
        done: list[str] = []
        busy: list[str] = []
        for chunk in _chunks(ids, TRANSACT_WRITE_MAX_ITEMS):
            o, d, b = self._open(list(chunk), lease_s)
            opened += o
            done += d
            busy += b
        return LedgerOpening(tuple(opened), tuple(done), tuple(busy))

    def _open(self, ids: list[str], lease_s: float) -> tuple[list[str], list[str], list[str]]:
        done: list[str] = []
        busy: list[str] = []
        pending = ids
        for _ in range(2):  # the first try, and once more with what was not refused
            now = self._clock()
            try:
                self._ddb.transact_write_items(TransactItems=[self._put(event_id, now, lease_s) for event_id in pending])
                return pending, done, busy
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise StoreUnavailableError("could not open the delivery records") from exc
                reasons = exc.response.get("CancellationReasons") or []
                if len(reasons) != len(pending):
                    raise StoreUnavailableError("the delivery records' transaction was refused without reasons") from exc
                retry = []
                for event_id, reason in zip(pending, reasons):
                    code = reason.get("Code", "None")
                    if code in _NOT_REFUSED:
                        retry.append(event_id)
                    elif code == "ConditionalCheckFailed":
                        status = reason.get("Item", {}).get("status", {}).get("S")
                        # Without the stored record (no ALL_OLD) the safe answer is "later".
                        (done if status == DONE else busy).append(event_id)
                    elif code == "TransactionConflict":
                        busy.append(event_id)  # another transaction is opening it right now
                    else:
                        raise StoreUnavailableError(f"could not open the delivery records: {code}") from exc
                pending = retry
                if not pending:
                    break
            except BotoCoreError as exc:  # a timeout or lost connection
                raise StoreUnavailableError("could not open the delivery records") from exc
        return [], done, busy + pending

    def _put(self, event_id: str, now: float, lease_s: float) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self._table,
                "Item": {
                    **self._id(event_id),
                    "status": {"S": IN_PROGRESS},
                    TTL_ATTRIBUTE: {"N": str(math.ceil(now + lease_s))},
                },
                "ConditionExpression": "attribute_not_exists(id) OR #expires < :now",
                "ExpressionAttributeNames": {"#expires": TTL_ATTRIBUTE},
                "ExpressionAttributeValues": {":now": {"N": str(int(now))}},
                "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            }
        }

    def finish(self, delivered: Sequence[str], failed: Sequence[str]) -> None:
        expiration = str(math.ceil(self._clock() + self._ttl_s))
        requests = [
            {"PutRequest": {"Item": {**self._id(e), "status": {"S": DONE}, TTL_ATTRIBUTE: {"N": expiration}}}}
            for e in dict.fromkeys(delivered)
        ] + [{"DeleteRequest": {"Key": self._id(e)}} for e in dict.fromkeys(failed)]
        for start in range(0, len(requests), BATCH_WRITE_MAX):
            batch_write(self._ddb, self._table, requests[start:start + BATCH_WRITE_MAX],
                        error="could not close the delivery records")

    def _parked_id(self, message_id: str) -> dict[str, Any]:
        return {"id": {"S": f"{self._prefix}parked:{message_id}"}}

    def _put_parked(self, message_id: str, status: str, **condition: Any) -> None:
        now = self._clock()
        self._ddb.put_item(TableName=self._table, Item={
            **self._parked_id(message_id), "status": {"S": status},
            TTL_ATTRIBUTE: {"N": str(math.ceil(now + self._ttl_s))}}, **condition)

    def begin_parking(self, message_id: str) -> bool:
        try:
            self._put_parked(message_id, PARKING,
                             ConditionExpression="attribute_not_exists(id) OR #status <> :parked OR #expires < :now",
                             ExpressionAttributeNames={"#status": "status", "#expires": TTL_ATTRIBUTE},
                             ExpressionAttributeValues={":parked": {"S": PARKED}, ":now": {"N": str(int(self._clock()))}})
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise StoreUnavailableError("could not read whether a message was parked") from exc
        except BotoCoreError as exc:
            raise StoreUnavailableError("could not read whether a message was parked") from exc
        return True

    def parked(self, message_id: str) -> None:
        try:
            self._put_parked(message_id, PARKED)
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not record a parked message") from exc
