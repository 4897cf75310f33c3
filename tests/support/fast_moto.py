"""Two costs of moto that are not the behaviour under test, taken out for the tiers that run on it
(contract, functional): the same answers, sooner.

- botocore reads its JSON service models and endpoint rules once per session, and moto gives
  each test a new boto3 session (the composition root makes one per container too): about
  0.2 s a client, half of every moto test's setup. One loader per data path reads each file
  once for the run; the models are the same data, and nothing else of a session is shared.
- moto's TransactWriteItems backs up every table it names with a deep copy before it writes
  (its rollback), items and stream records all: a transaction's cost grew with everything the
  test had written before, and a fan-out of 50 children took half a minute. A transaction can
  change only the partitions of the keys it names, so those partitions (and the stream's
  length) are what is kept and put back; the rollback is as moto's, all or nothing."""
from __future__ import annotations

import copy
import functools
from typing import Any, Iterator

import pytest


@pytest.fixture(scope="session", autouse=True)
def botocore_models_read_once() -> Iterator[None]:
    import botocore.session
    from botocore.loaders import create_loader

    patch = pytest.MonkeyPatch()
    patch.setattr(botocore.session, "create_loader", functools.lru_cache(maxsize=None)(create_loader))
    yield
    patch.undo()


class _NoTableCopies:
    """`copy` as moto's DynamoDB backend sees it: a table is not deep-copied (the transaction
    keeps its own partitions, below); anything else is."""

    def __getattr__(self, name: str) -> Any:
        return getattr(copy, name)

    @staticmethod
    def deepcopy(value: Any, memo: Any = None) -> Any:
        from moto.dynamodb.models.table import Table

        return value if isinstance(value, Table) else copy.deepcopy(value, memo)


def _touched(backend: Any, transact_items: list[dict[str, Any]]) -> dict[str, set[Any]]:
    """Table name -> the partition keys (moto's DynamoType) the transaction's actions name."""
    from moto.dynamodb.models.dynamo_type import DynamoType

    touched: dict[str, set[Any]] = {}
    for item in transact_items:
        for action in item.values():
            table = backend.tables.get(action.get("TableName"))
            if table is None:
                continue
            attributes = action.get("Key") or action.get("Item") or {}
            if table.hash_key_attr in attributes:
                touched.setdefault(table.name, set()).add(DynamoType(attributes[table.hash_key_attr]))
    return touched


@pytest.fixture(scope="session", autouse=True)
def moto_transactions_keep_what_they_touch() -> Iterator[None]:
    from moto.dynamodb import models

    real = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
        kept = []
        for name, partitions in _touched(self, transact_items).items():
            table = self.tables[name]
            shard = table.stream_shard
            kept.append((table, {p: copy.deepcopy(table.items[p]) if p in table.items else None for p in partitions},
                         None if shard is None else len(shard.items)))
        try:
            return real(self, transact_items)
        except Exception:
            for table, partitions, records in kept:  # nothing of a refused transaction stays
                for partition, before in partitions.items():
                    if before is None:
                        table.items.pop(partition, None)
                    else:
                        table.items[partition] = before
                if records is not None:
                    del table.stream_shard.items[records:]
            raise

    patch = pytest.MonkeyPatch()
    patch.setattr(models, "copy", _NoTableCopies())
    patch.setattr(models.DynamoDBBackend, "transact_write_items", transact_write_items)
    yield
    patch.undo()
