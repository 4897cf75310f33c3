"""Fault injection at the adapter edge, for the reliability suites (off unless configured)."""
from __future__ import annotations

import random
from typing import Any, Callable

INJECTED_ERROR = {"ErrorCode": "InternalFailure", "ErrorMessage": "injected by JOBPIPE_FAULT_PUT_EVENTS_FAILURE_RATE"}


class FailingPutEvents:
    """An EventBridge client whose `put_events` refuses a random `rate` of the entries the way
    PutEvents reports a partial failure: the call succeeds, `FailedEntryCount` counts the
    refused entries and each refused entry answers, in request order, with an `ErrorCode`.
    Only the accepted entries reach the real client. Other calls pass through."""

    def __init__(self, client: Any, rate: float, *, draw: Callable[[], float] = random.random) -> None:
        self._client = client
        self._rate = rate
        self._draw = draw

    def put_events(self, *, Entries: list[dict[str, Any]], **kwargs: Any) -> dict[str, Any]:  # noqa: N803 (boto3's name)
        refused = [self._draw() < self._rate for _ in Entries]
        accepted = [entry for entry, no in zip(Entries, refused) if not no]
        real = self._client.put_events(Entries=accepted, **kwargs) if accepted else {"Entries": []}
        answers = iter(real.get("Entries", []))
        entries = [dict(INJECTED_ERROR) if no else next(answers) for no in refused]
        return {"FailedEntryCount": sum(1 for e in entries if e.get("ErrorCode")), "Entries": entries}

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FailingSendMessage:
    """An SQS client whose `send_message` fails a random `rate` of its calls as a lost
    connection does (botocore's EndpointConnectionError, after the request may or may not have
    reached SQS: here it never does). Other calls pass through."""

    def __init__(self, client: Any, rate: float, *, draw: Callable[[], float] = random.random) -> None:
        self._client = client
        self._rate = rate
        self._draw = draw

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        if self._draw() < self._rate:
            from botocore.exceptions import EndpointConnectionError

            raise EndpointConnectionError(endpoint_url="injected by JOBPIPE_FAULT_SEND_MESSAGE_FAILURE_RATE")
        return self._client.send_message(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


class FailingClaims:
    """A DynamoDB client whose claim writes (the one update that moves a job into `running`,
    recognised by the job store's own item layout) fail a random `rate` of the time as
    throttling does, before anything is written. Completions, progress and reads pass through."""

    def __init__(self, client: Any, rate: float, *, draw: Callable[[], float] = random.random) -> None:
        self._client = client
        self._rate = rate
        self._draw = draw

    def update_item(self, **kwargs: Any) -> dict[str, Any]:
        from chalicelib.adapters.dynamodb_items import moves_into

        if moves_into(kwargs, "running") and self._draw() < self._rate:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": "ThrottlingException",
                                         "Message": "injected by JOBPIPE_FAULT_CLAIM_FAILURE_RATE"}},
                              "UpdateItem")
        return self._client.update_item(**kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)
