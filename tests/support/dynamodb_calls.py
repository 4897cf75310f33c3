"""Recording the DynamoDB calls a client makes, as botocore sends them."""
from __future__ import annotations

from typing import Any


def recorded_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """A list that holds, from now on, each call `client` (a DynamoDB client) makes: its
    operation's name and its parameters as botocore sends them, in order."""
    calls: list[tuple[str, dict[str, Any]]] = []
    client.meta.events.register("provide-client-params.dynamodb.*",
                                lambda params, model, **_: calls.append((model.name, dict(params))))
    return calls
