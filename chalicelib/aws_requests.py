"""Exact counts of the AWS requests a function process sends, for the benchmark.

A botocore `before-send` hook on every client the composition root builds counts each HTTP
request (retries included) by service and operation; the counts of an invocation go into the
summary line it logs when it ends (chalicelib/invocation.py), read back from CloudWatch Logs."""
from __future__ import annotations

import threading
from collections import Counter
from typing import Any


class AwsRequestCounter:
    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def attach(self, client: Any) -> Any:
        """Count every request `client` sends; returns the client."""
        client.meta.events.register("before-send", self._on_send)
        return client

    def _on_send(self, event_name: str = "", **kwargs: Any) -> None:
        # event_name is "before-send.<service id>.<Operation>"
        _, service, operation = (event_name.split(".", 2) + ["", ""])[:3]
        with self._lock:
            self._counts[f"{service}.{operation}"] += 1
        return None  # a hook that returns something would replace the HTTP response

    def take(self) -> dict[str, int]:
        """The counts since the last call, reset to zero."""
        with self._lock:
            counts, self._counts = dict(self._counts), Counter()
        return counts
