"""DynamoDB adapter of the ReconcilerLog port: one item in the stats table,

    RECONCILER   total_<outcome> counters since the stack began (ADD), and the last pass
                 (`last_pass`: its time and counts)

written once per pass (a pass runs every few minutes: never a hot item)."""
from __future__ import annotations

import json
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.domain.errors import StoreUnavailableError

_KEY = {"pk": {"S": "RECONCILER"}}


class DynamoReconcilerLog:
    def __init__(self, client: Any, table_name: str) -> None:
        self._ddb = client
        self._table = table_name

    def record(self, started_at: str, counts: dict[str, int]) -> None:
        names = {"#last": "last_pass"}
        values: dict[str, Any] = {
            ":last": {"S": json.dumps({"started_at": started_at, "counts": counts}, separators=(",", ":"))},
            ":one": {"N": "1"},
        }
        adds = ["#passes :one"]
        names["#passes"] = "total_passes"
        for i, (name, value) in enumerate(sorted(counts.items())):
            names[f"#c{i}"], values[f":c{i}"] = f"total_{name}", {"N": str(int(value))}
            adds.append(f"#c{i} :c{i}")
        try:
            self._ddb.update_item(
                TableName=self._table, Key=_KEY,
                UpdateExpression="SET #last = :last ADD " + ", ".join(adds),
                ExpressionAttributeNames=names, ExpressionAttributeValues=values,
            )
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError("could not record the reconciler's pass") from exc

    def summary(self) -> dict[str, Any]:
        try:
            item = self._ddb.get_item(TableName=self._table, Key=_KEY).get("Item") or {}
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError("could not read the reconciler's passes") from exc
        last = json.loads(item["last_pass"]["S"]) if "last_pass" in item else None
        totals = {k[len("total_"):]: int(v["N"]) for k, v in item.items() if k.startswith("total_")}
        return {"last_pass": last, "totals": totals}
