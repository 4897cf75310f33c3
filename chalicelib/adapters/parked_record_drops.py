"""DynamoDB adapter of the ParkedRecordDrops port: one item in the stats table per parked stream
record the reconciler took,

    PARKED#<SQS message id>   `taken_at` (the reconciler's latest take), `drop_requested_at` (an
                              operator's DELETE while it was hidden), `removed_at` (replayed or
                              deleted); `expires_at` PARKED_RECORD_KEEP_S past the latest take

Every write is an UpdateItem, so no write loses another's attribute: a take between an
operator's request and the next take keeps the request. The API may update these items only
(`dynamodb:LeadingKeys` `PARKED#*`)."""
from __future__ import annotations

import time
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.defaults import PARKED_RECORD_KEEP_S
from chalicelib.domain.errors import StoreUnavailableError

PARKED_PREFIX = "PARKED#"


def parked_key(message_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"{PARKED_PREFIX}{message_id}"}}


class DynamoParkedRecordDrops:
    def __init__(self, client: Any, table_name: str, clock: Callable[[], float] = time.time) -> None:
        self._ddb = client
        self._table = table_name
        self._clock = clock

    def taken(self, message_id: str) -> bool:
        now = int(self._clock())
        answer = self._update(
            message_id, "could not record a take of a parked stream record",
            UpdateExpression="SET taken_at = :now, expires_at = :until REMOVE removed_at",
            ExpressionAttributeValues={":now": {"N": str(now)}, ":until": {"N": str(now + PARKED_RECORD_KEEP_S)}},
            ReturnValues="ALL_NEW")
        return "drop_requested_at" in (answer or {}).get("Attributes", {})

    def request(self, message_id: str) -> bool:
        return self._update(
            message_id, "could not record the drop of a parked stream record",
            UpdateExpression="SET drop_requested_at = :now",
            # An entry past its expiry is about a record its queue no longer keeps (TTL deletes late).
            ConditionExpression="attribute_exists(pk) AND attribute_not_exists(removed_at) AND expires_at > :now",
            ExpressionAttributeValues={":now": {"N": str(int(self._clock()))}}) is not None

    def removed(self, message_id: str) -> None:
        try:
            self._update(message_id, "could not record a parked stream record's removal",
                         UpdateExpression="SET removed_at = :now", ConditionExpression="attribute_exists(pk)",
                         ExpressionAttributeValues={":now": {"N": str(int(self._clock()))}})
        except StoreUnavailableError:
            pass  # harmless (the port's contract): the record is gone, a later request deletes nothing

    def _update(self, message_id: str, failure: str, **request: Any) -> Any:
        """The UpdateItem's answer, or None when its condition refused it."""
        try:
            return self._ddb.update_item(TableName=self._table, Key=parked_key(message_id), **request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return None
            raise StoreUnavailableError(failure) from exc
        except BotoCoreError as exc:  # a timeout or lost connection
            raise StoreUnavailableError(failure) from exc
