"""DynamoDB adapter of the StatsStore port (its own table, so counter writes never reach the
jobs table's stream).

    STATUS                  jobs currently in each status (ADD +1/-1 per transition)
    HOUR#<yyyy-mm-ddThh>    that hour's events, per type (`t:<type>:<event>`) and the
                            completion-time histogram (`d:<bucket>`); expires after 35 days
    SEEN#<job>#<version>    marks a change as counted; expires after 2 days
    TENANT#<tenant>         `unfinished`: the tenant's jobs not yet finished (admission at submit)

Each change is one transaction: the SEEN marker (conditional on not existing) and the ADDs,
so a redelivered stream batch is counted once."""
from __future__ import annotations

import time
from typing import Any, Optional

from botocore.exceptions import ClientError

from chalicelib.adapters.dynamodb_items import tenant_counter_key
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.stats import StatDelta

SEEN_TTL_S = 2 * 86400
HOUR_TTL_S = 35 * 86400
_BATCH_GET_MAX = 100


def _add_update(table: str, pk: str, counters: dict[str, int], expires_at: Optional[int]) -> dict[str, Any]:
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    prefix = ""
    if expires_at is not None:
        names["#exp"], values[":exp"] = "expires_at", {"N": str(expires_at)}
        prefix = "SET #exp = if_not_exists(#exp, :exp) "
    adds = []
    for i, (name, value) in enumerate(sorted(counters.items())):
        names[f"#c{i}"] = name
        values[f":c{i}"] = {"N": str(value)}
        adds.append(f"#c{i} :c{i}")
    return {
        "Update": {
            "TableName": table,
            "Key": {"pk": {"S": pk}},
            "UpdateExpression": prefix + "ADD " + ", ".join(adds),
            "ExpressionAttributeNames": names,
            "ExpressionAttributeValues": values,
        }
    }


class DynamoStatsStore:
    def __init__(self, client: Any, table_name: str) -> None:
        self._ddb = client
        self._table = table_name

    def record(self, delta: StatDelta) -> bool:
        now = int(time.time())
        items: list[dict[str, Any]] = [{
            "Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": f"SEEN#{delta.dedupe_key}"}, "expires_at": {"N": str(now + SEEN_TTL_S)}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        }]
        if delta.status:
            items.append(_add_update(self._table, "STATUS", delta.status, None))
        if delta.hour and delta.events:
            items.append(_add_update(self._table, f"HOUR#{delta.hour}", delta.events, now + HOUR_TTL_S))
        if delta.tenant and delta.unfinished:
            items.append(_add_update(self._table, tenant_counter_key(delta.tenant), {"unfinished": delta.unfinished}, None))
        try:
            self._ddb.transact_write_items(TransactItems=items)
        except ClientError as exc:
            reasons = exc.response.get("CancellationReasons") or []
            if reasons and reasons[0].get("Code") == "ConditionalCheckFailed":
                return False
            if not reasons and "ConditionalCheckFailed" in str(exc):
                return False
            raise StoreUnavailableError("could not record job statistics") from exc
        return True

    def unfinished(self, tenant: str) -> int:
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key={"pk": {"S": tenant_counter_key(tenant)}}, ProjectionExpression="unfinished"
            ).get("Item") or {}
        except ClientError as exc:
            raise StoreUnavailableError("could not read the tenant's job count") from exc
        return max(0, int(item.get("unfinished", {}).get("N", "0")))

    def status_counts(self) -> dict[str, int]:
        try:
            item = self._ddb.get_item(TableName=self._table, Key={"pk": {"S": "STATUS"}}).get("Item") or {}
        except ClientError as exc:
            raise StoreUnavailableError("could not read job statistics") from exc
        return _counters(item)

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        for start in range(0, len(hours), _BATCH_GET_MAX):
            request = {self._table: {"Keys": [{"pk": {"S": f"HOUR#{h}"}} for h in hours[start:start + _BATCH_GET_MAX]]}}
            for attempt in range(6):
                try:
                    response = self._ddb.batch_get_item(RequestItems=request)
                except ClientError as exc:
                    raise StoreUnavailableError("could not read job statistics") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    found[item["pk"]["S"][len("HOUR#"):]] = _counters(item)
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                time.sleep(min(1.0, 0.05 * (2**attempt)))
            else:
                raise StoreUnavailableError("the stats table kept throttling a batch read")
        return [found.get(h, {}) for h in hours]


def _counters(item: dict[str, Any]) -> dict[str, int]:
    return {k: int(v["N"]) for k, v in item.items() if k not in ("pk", "expires_at") and "N" in v}
