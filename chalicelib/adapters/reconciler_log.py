"""DynamoDB adapter of the ReconcilerLog port: one item in the stats table,

    RECONCILER   total_<outcome> counters since the stack began (ADD), and the last pass
                 (`last_pass`: its time and counts; `record_id`: the write that recorded it)

written once per pass (a pass runs every few minutes: never a hot item). An ADD is no
idempotent write: botocore sends it again when its answer was lost, and the pass would count
twice. The write is conditional on another write's `record_id`, so its retry after a first try
that landed is refused, and that refusal is the pass recorded."""
from __future__ import annotations

import json
import uuid
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain.errors import StoreUnavailableError

_KEY = {"pk": {"S": "RECONCILER"}}


class DynamoReconcilerLog:
    def __init__(self, client: Any, table_name: str) -> None:
        self._ddb = client
        self._table = table_name

    def record(self, started_at: str, counts: dict[str, int]) -> None:
        names = {"#last": "last_pass", "#record": "record_id"}
        values: dict[str, Any] = {
            ":last": {"S": json.dumps({"started_at": started_at, "counts": counts}, separators=(",", ":"))},
            ":one": {"N": "1"},
            ":record": {"S": uuid.uuid4().hex},
        }
        adds = ["#passes :one"]
        names["#passes"] = "total_passes"
        for i, (name, value) in enumerate(sorted(counts.items())):
            names[f"#c{i}"], values[f":c{i}"] = f"total_{name}", {"N": str(int(value))}
            adds.append(f"#c{i} :c{i}")
        try:
            self._ddb.update_item(
                TableName=self._table, Key=_KEY,
                UpdateExpression="SET #last = :last, #record = :record ADD " + ", ".join(adds),
                ConditionExpression="attribute_not_exists(#record) OR #record <> :record",
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return  # refused by its own earlier try, whose answer was lost: recorded once
            raise StoreUnavailableError("could not record the reconciler's pass") from exc
        except BotoCoreError as exc:  # a timeout or lost connection
            raise StoreUnavailableError("could not record the reconciler's pass") from exc

    def summary(self) -> dict[str, Any]:
        try:
            item = self._ddb.get_item(TableName=self._table, Key=_KEY).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError("could not read the reconciler's passes") from exc
        last = json.loads(item["last_pass"]["S"]) if "last_pass" in item else None
        totals = {k[len("total_"):]: int(v["N"]) for k, v in item.items() if k.startswith("total_")}
        return {"last_pass": last, "totals": totals}
