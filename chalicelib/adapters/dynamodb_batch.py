"""BatchGetItem and BatchWriteItem with what they leave unprocessed retried, and
TransactWriteItems tried again when a concurrent write cancelled it.

botocore retries a throttled call, but a batch call that succeeds may still hand back part of
its keys or writes (UnprocessedKeys / UnprocessedItems) under throttling; those are sent again
here with exponential backoff, and StoreUnavailableError is raised when they never go through.
A transaction DynamoDB cancelled because another request was writing one of its items at that
moment (TransactionConflict) wrote nothing and is sent again (botocore does not). A Query read
whole goes page after page (`query_items`)."""
from __future__ import annotations

import time
from typing import Any, Callable, Iterator

from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.defaults import CONFLICT_RETRIES, UNPROCESSED_RETRIES
from chalicelib.domain.errors import StoreUnavailableError


def query_items(client: Any, request: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The items `request` (a Query) reads, page after page until the last: a call answers 1 MB
    at most. Raises what the client raises; `request` is left at its last page."""
    while True:
        response = client.query(**request)
        yield from response.get("Items", [])
        if "LastEvaluatedKey" not in response:
            return
        request["ExclusiveStartKey"] = response["LastEvaluatedKey"]


def backoff_s(attempt: int) -> float:
    return min(1.0, 0.05 * (2**attempt))


def _until_processed(
    send: Callable[[dict[str, Any]], dict[str, Any]],
    request: dict[str, Any],
    leftover: str,
    *,
    error: str,
    sleep: Callable[[float], None],
) -> list[dict[str, Any]]:
    responses = []
    for attempt in range(UNPROCESSED_RETRIES + 1):
        try:
            response = send(request)
        except (ClientError, BotoCoreError) as exc:  # a refusal, or a timeout / lost connection
            raise StoreUnavailableError(error) from exc
        responses.append(response)
        request = response.get(leftover) or {}
        if not request:
            return responses
        sleep(backoff_s(attempt))
    raise StoreUnavailableError(f"{error}: the table kept throttling the batch")


def batch_get(client: Any, table: str, keys: list[dict[str, Any]], *, error: str,
              sleep: Callable[[float], None] = time.sleep, consistent: bool = False) -> list[dict[str, Any]]:
    """The items of up to BATCH_GET_MAX `keys` (missing ones are absent), in no particular order,
    strongly consistent if `consistent`. Raises StoreUnavailableError with `error` as its message."""
    if not keys:
        return []
    responses = _until_processed(
        lambda request: client.batch_get_item(RequestItems=request),
        {table: {"Keys": keys, **({"ConsistentRead": True} if consistent else {})}}, "UnprocessedKeys",
        error=error, sleep=sleep,
    )
    return [item for response in responses for item in response.get("Responses", {}).get(table, [])]


def batch_write(client: Any, table: str, requests: list[dict[str, Any]], *, error: str,
                sleep: Callable[[float], None] = time.sleep) -> None:
    """Up to BATCH_WRITE_MAX PutRequest/DeleteRequest entries, all applied or
    StoreUnavailableError (with `error` as its message)."""
    if requests:
        _until_processed(
            lambda request: client.batch_write_item(RequestItems=request),
            {table: requests}, "UnprocessedItems", error=error, sleep=sleep,
        )


def transact_write(client: Any, items: list[dict[str, Any]]) -> None:
    """TransactWriteItems, tried again while a concurrent write to one of `items` cancels it
    (TransactionConflict: nothing was written; a write that changed what a condition checks
    makes the next try fail that condition). The last ClientError is raised as it came, for the
    caller to read its CancellationReasons. botocore's own retry of a try whose answer was lost
    is no second write: it sends one ClientRequestToken."""
    for retry in range(CONFLICT_RETRIES + 1):
        try:
            client.transact_write_items(TransactItems=items)
            return
        except ClientError as exc:
            reasons = [r.get("Code") for r in (exc.response or {}).get("CancellationReasons") or []]
            if "TransactionConflict" not in reasons or "ConditionalCheckFailed" in reasons \
                    or retry == CONFLICT_RETRIES:
                raise
