"""DynamoDB adapter of the StatsStore port (its own table, so counter writes never reach the
jobs table's stream).

    STATUS                  jobs currently in each status (ADD +1/-1 per transition)
    HOUR#<yyyy-mm-ddThh>    that hour's events, per type (`t:<type>:<event>`) and the
                            completion-time histogram (`d:<bucket>`); expires after 35 days
    SEEN#<job>#<version>    marks a change as counted; expires after 2 days
    TENANT#<tenant>         `unfinished`: the tenant's jobs not yet finished (admission at submit)

A batch of changes is one transaction: a SEEN marker per change (conditional on not existing)
and one ADD per shared item (`STATUS`, each hour touched) of the batch's summed deltas, so the
shared items take one write per stream batch, not one per change, and a redelivered batch is
counted once: a transaction cancelled by markers already present is retried without those
changes (the sums are recomputed from the new ones only), and one cancelled by another shard's
batch adding to the same counters at that moment (TransactionConflict) is tried again."""
from __future__ import annotations

import time
from typing import Any, Optional, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.dynamodb_batch import batch_get
from chalicelib.adapters.dynamodb_items import tenant_counter_key
from chalicelib.defaults import (
    BATCH_GET_MAX,
    CONFLICT_RETRIES,
    STATS_HOUR_TTL_S,
    STATS_SEEN_TTL_S,
    TRANSACT_WRITE_MAX_ITEMS,
)
from chalicelib.domain.errors import StoreUnavailableError
from chalicelib.domain.stats import StatDelta, combine


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

    def record_batch(self, deltas: Sequence[StatDelta]) -> int:
        unique = list({d.dedupe_key: d for d in deltas}.values())  # one operation per item in a transaction
        counted = 0
        for chunk in _chunks(unique):
            counted += self._record_chunk(chunk)
        return counted

    def _record_chunk(self, deltas: list[StatDelta]) -> int:
        pending = list(deltas)
        conflicts = 0
        while pending:
            try:
                self._ddb.transact_write_items(TransactItems=self._items(pending))
                return len(pending)
            except BotoCoreError as exc:  # a timeout or lost connection
                raise StoreUnavailableError("could not record job statistics") from exc
            except ClientError as exc:
                seen = _already_counted(exc, pending)
                if seen is None and _conflicted(exc) and conflicts < CONFLICT_RETRIES:
                    # Another shard's invocation was adding to the same counters: nothing was
                    # written, and the next try lands (or names the markers counted meanwhile).
                    conflicts += 1
                    continue
                if seen is None:
                    raise StoreUnavailableError("could not record job statistics") from exc
                if not seen:  # cancelled without saying which marker: count one change at a time
                    if len(pending) == 1:
                        return 0
                    return sum(self._record_chunk([delta]) for delta in pending)
                pending = [d for i, d in enumerate(pending) if i not in seen]
        return 0

    def _items(self, deltas: list[StatDelta]) -> list[dict[str, Any]]:
        now = int(time.time())
        items: list[dict[str, Any]] = [{
            "Put": {
                "TableName": self._table,
                "Item": {"pk": {"S": f"SEEN#{d.dedupe_key}"}, "expires_at": {"N": str(now + STATS_SEEN_TTL_S)}},
                "ConditionExpression": "attribute_not_exists(pk)",
            }
        } for d in deltas]
        totals = combine(deltas)
        if totals.status:
            items.append(_add_update(self._table, "STATUS", totals.status, None))
        for hour, events in sorted(totals.hours.items()):
            items.append(_add_update(self._table, f"HOUR#{hour}", events, now + STATS_HOUR_TTL_S))
        for tenant, unfinished in sorted(totals.tenants.items()):
            items.append(_add_update(self._table, tenant_counter_key(tenant), {"unfinished": unfinished}, None))
        return items

    def unfinished(self, tenant: str) -> int:
        try:
            item = self._ddb.get_item(
                TableName=self._table, Key={"pk": {"S": tenant_counter_key(tenant)}}, ProjectionExpression="unfinished"
            ).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError("could not read the tenant's job count") from exc
        return max(0, int(item.get("unfinished", {}).get("N", "0")))

    def status_counts(self) -> dict[str, int]:
        try:
            item = self._ddb.get_item(TableName=self._table, Key={"pk": {"S": "STATUS"}}).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:
            raise StoreUnavailableError("could not read job statistics") from exc
        return _counters(item)

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        found: dict[str, dict[str, int]] = {}
        wanted = list(dict.fromkeys(hours))  # BatchGetItem refuses a key twice
        for start in range(0, len(wanted), BATCH_GET_MAX):
            keys = [{"pk": {"S": f"HOUR#{h}"}} for h in wanted[start:start + BATCH_GET_MAX]]
            for item in batch_get(self._ddb, self._table, keys, error="could not read job statistics"):
                found[item["pk"]["S"][len("HOUR#"):]] = _counters(item)
        return [found.get(h, {}) for h in hours]


def _counters(item: dict[str, Any]) -> dict[str, int]:
    return {k: int(v["N"]) for k, v in item.items() if k not in ("pk", "expires_at") and "N" in v}


def _chunks(deltas: list[StatDelta]) -> list[list[StatDelta]]:
    """Split so each transaction holds its markers, STATUS, its hours and its tenants' counters
    within one TransactWriteItems (TRANSACT_WRITE_MAX_ITEMS)."""
    chunks: list[list[StatDelta]] = []
    current: list[StatDelta] = []
    shared: set[str] = set()  # HOUR# and TENANT# items the chunk touches
    for delta in deltas:
        more = {f"HOUR#{delta.hour}"} if delta.hour and delta.events else set()
        if delta.tenant and delta.unfinished:
            more.add(f"TENANT#{delta.tenant}")
        if current and len(current) + 1 + 1 + len(shared | more) > TRANSACT_WRITE_MAX_ITEMS:
            chunks.append(current)
            current, shared = [], set()
        current.append(delta)
        shared |= more
    if current:
        chunks.append(current)
    return chunks


def _conflicted(exc: ClientError) -> bool:
    """Whether a concurrent write to one of the transaction's items cancelled it (nothing written)."""
    return any(r.get("Code") == "TransactionConflict" for r in exc.response.get("CancellationReasons") or [])


def _already_counted(exc: ClientError, deltas: list[StatDelta]) -> Optional[set[int]]:
    """Indexes of the deltas whose marker existed (the transaction was cancelled for them);
    an empty set when the cancellation does not say which; None for any other error."""
    reasons = exc.response.get("CancellationReasons") or []
    if reasons:
        failed = {i for i, r in enumerate(reasons[: len(deltas)]) if r.get("Code") == "ConditionalCheckFailed"}
        others = [r for r in reasons if r.get("Code") not in (None, "None", "ConditionalCheckFailed")]
        return failed if failed and not others else None
    if "ConditionalCheckFailed" in str(exc):
        return set()
    return None
