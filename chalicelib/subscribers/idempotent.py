"""Run a consumer's effect once per event_id (Powertools idempotency), whatever the number of
deliveries: a re-published or redelivered event finds the first outcome recorded."""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)


def once_per_event(
    name: str,
    persistence: BasePersistenceLayer,
    effect: Callable[[dict[str, Any]], Any],
    *,
    ttl_s: int = 7 * 24 * 3600,
) -> Callable[[dict[str, Any]], Any]:
    """Wrap `effect(detail)` so it runs once per `detail["event_id"]` for consumer `name` (each
    consumer keeps its own records). If the effect raises, nothing is recorded and the next
    delivery runs it again."""
    config = IdempotencyConfig(
        event_key_jmespath="event_id", raise_on_no_idempotency_key=True, expires_after_seconds=ttl_s
    )

    def run(detail: dict[str, Any]) -> Any:
        return effect(detail)

    run.__name__ = run.__qualname__ = name  # part of the idempotency key
    once = idempotent_function(data_keyword_argument="detail", persistence_store=persistence, config=config)(run)

    def call(detail: dict[str, Any], lambda_context: Any = None) -> Any:
        if lambda_context is not None:  # in-progress records then expire with the invocation
            config.register_lambda_context(lambda_context)
        return once(detail=detail)

    return call
