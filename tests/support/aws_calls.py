"""Recording the calls an AWS client makes, as botocore sends them."""
from __future__ import annotations

from typing import Any


def recorded_calls(client: Any) -> list[tuple[str, dict[str, Any]]]:
    """A list that holds, from now on, each call `client` (a boto3 client of any service) makes:
    its operation's name and its parameters as botocore sends them, in order."""
    calls: list[tuple[str, dict[str, Any]]] = []
    service = client.meta.service_model.service_id.hyphenize()
    client.meta.events.register(f"provide-client-params.{service}.*",
                                lambda params, model, **_: calls.append((model.name, dict(params))))
    return calls
