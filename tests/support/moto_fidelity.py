"""Where moto's DynamoDB does not behave as DynamoDB does, for the tiers that run on it
(contract, functional), put right so that a test sees what production would.

- An UpdateItem that would take its item past 400 KB is refused whole by DynamoDB. moto applies
  the update's actions to the stored item one by one and raises once one of them makes it too
  large, leaving the item half-written: its status changed, its error not, its version moved.
  A write that made room and was tried again (chalicelib/lifecycle/transitions.py,
  `_write_room`) then lost to that half-write as to a race, and the job read as no writer left
  it. The item is put back as it was before the refused update."""
from __future__ import annotations

import copy
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def moto_updates_too_large_are_refused_whole() -> Iterator[None]:
    from moto.dynamodb import models
    from moto.dynamodb.exceptions import ItemSizeToUpdateTooLarge
    from moto.dynamodb.models.dynamo_type import DynamoType

    real = models.DynamoDBBackend.update_item

    def update_item(self: Any, table_name: str, key: dict[str, dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
        table = self.get_table(table_name)
        partition = DynamoType(key[table.hash_key_attr]) if table.hash_key_attr in key else None
        before = copy.deepcopy(table.items.get(partition)) if partition is not None else None
        try:
            return real(self, table_name, key, *args, **kwargs)
        except ItemSizeToUpdateTooLarge:
            if before is not None:
                table.items[partition] = before
            elif partition is not None:
                table.items.pop(partition, None)
            raise

    patch = pytest.MonkeyPatch()
    patch.setattr(models.DynamoDBBackend, "update_item", update_item)
    yield
    patch.undo()
