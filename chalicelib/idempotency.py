"""Doing a thing once per key, on Powertools idempotency (its DynamoDB persistence layer, or any
other `BasePersistenceLayer`):

- job submission with an `Idempotency-Key`: the key is scoped to the tenant; the request body
  is the payload Powertools validates, so the same key with a different body is refused
  instead of answered with the first job;
- a subscriber's effect once per event id, whatever the number of deliveries: a re-published
  or redelivered event finds the first outcome recorded."""
from __future__ import annotations

from typing import Any, Callable

from aws_lambda_powertools.utilities.idempotency import (
    BasePersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyPersistenceLayerError,
    IdempotencyValidationError,
)

from chalicelib.domain.errors import IdempotencyConflictError, InvalidRequestError, StoreUnavailableError

MAX_KEY_LENGTH = 255


class IdempotentSubmission:
    def __init__(
        self,
        persistence: BasePersistenceLayer,
        submit: Callable[[dict[str, Any]], str],
        *,
        ttl_s: int,
    ) -> None:
        """`submit(request)` creates the job and returns its id; it runs once per key."""
        config = IdempotencyConfig(
            event_key_jmespath="[tenant, key]",
            payload_validation_jmespath="body",
            expires_after_seconds=ttl_s,
            raise_on_no_idempotency_key=True,
        )

        @idempotent_function(data_keyword_argument="request", persistence_store=persistence, config=config)
        def submit_once(request: dict[str, Any]) -> dict[str, str]:
            return {"job_id": submit(request)}

        self._submit_once = submit_once
        self._config = config

    def __call__(
        self, *, tenant: str, user: str, key: str, body: dict[str, Any], lambda_context: Any = None
    ) -> str:
        """The job id for (tenant, key): created on first use, the same one after. Raises
        IdempotencyConflictError for a different body or a first request still in flight."""
        if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
            raise InvalidRequestError(
                f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable characters"
            )
        if lambda_context is not None:
            self._config.register_lambda_context(lambda_context)
        try:
            outcome = self._submit_once(request={"tenant": tenant, "user": user, "key": key, "body": body})
        except IdempotencyValidationError as exc:
            raise IdempotencyConflictError(
                "this Idempotency-Key was already used with a different request body"
            ) from exc
        except IdempotencyAlreadyInProgressError as exc:
            raise IdempotencyConflictError(
                "a request with this Idempotency-Key is still being processed; retry shortly"
            ) from exc
        except IdempotencyPersistenceLayerError as exc:
            raise StoreUnavailableError("could not record the Idempotency-Key") from exc
        return outcome["job_id"]


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
