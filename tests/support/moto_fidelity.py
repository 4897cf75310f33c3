"""Where moto's DynamoDB does not behave as DynamoDB does, for the tiers that run on it
(contract, functional), put right so that a test sees what production would.

- An UpdateItem that would take its item past 400 KB is refused whole by DynamoDB. moto applies
  the update's actions to the stored item one by one and raises once one of them makes it too
  large, leaving the item half-written: its status changed, its error not, its version moved.
  A write that made room and was tried again (chalicelib/lifecycle/transitions.py,
  `_write_room`) then lost to that half-write as to a race, and the job read as no writer left
  it. The item is put back as it was before the refused update.
- A BatchWriteItem of more than 25 requests is refused by DynamoDB (ValidationException);
  moto writes them all, so a caller that forgot to split its writes would pass every test and
  fail in production the first time it had 26. It is refused here as DynamoDB refuses it."""
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


@pytest.fixture(scope="session", autouse=True)
def moto_batch_writes_over_25_are_refused() -> Iterator[None]:
    from moto.dynamodb.exceptions import MockValidationException
    from moto.dynamodb.responses import DynamoHandler

    from chalicelib.defaults import BATCH_WRITE_MAX

    real = DynamoHandler.batch_write_item

    def batch_write_item(self: Any) -> Any:
        if sum(len(requests) for requests in self.body["RequestItems"].values()) > BATCH_WRITE_MAX:
            raise MockValidationException(
                "1 validation error detected: Value at 'requestItems' failed to satisfy constraint: Map value must "
                f"satisfy constraint: [Member must have length less than or equal to {BATCH_WRITE_MAX}, "
                "Member must have length greater than or equal to 1]")
        return real(self)

    patch = pytest.MonkeyPatch()
    patch.setattr(DynamoHandler, "batch_write_item", batch_write_item)
    yield
    patch.undo()
