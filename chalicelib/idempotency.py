"""Job submission with an `Idempotency-Key`, once per key, on Powertools idempotency (its
DynamoDB persistence layer, or any other `BasePersistenceLayer`): the key is scoped to the
tenant; the request body is the payload Powertools validates, so the same key with a different
body is refused instead of answered with the first job. (The subscribers' once-per-event
delivery is per SQS batch, on a DeliveryLedger: chalicelib/subscribers/delivery.py.)"""
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
