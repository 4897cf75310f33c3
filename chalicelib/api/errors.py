"""The one place where errors become HTTP responses: `{"error": {"code", "message", "details"?}}`."""
from __future__ import annotations

from typing import Any

from chalice import Response

from chalicelib.domain import errors as domain
from chalicelib.domain.text import unicode_data, unicode_text


class UnauthorizedError(domain.JobpipeError):
    code = "unauthorized"


class ForbiddenError(domain.JobpipeError):
    code = "forbidden"


class InvalidJsonError(domain.JobpipeError):
    code = "invalid_json"


class MisconfiguredError(domain.JobpipeError):
    """The API function's settings break a rule (the function's log names the variable)."""

    code = "misconfigured"

    def __init__(self) -> None:
        super().__init__("the service is misconfigured; its log names the setting to fix")


PayloadTooLargeError = domain.PayloadTooLargeError  # a job too large to answer is refused by the lifecycle


_STATUS: list[tuple[type[domain.JobpipeError], int]] = [
    (UnauthorizedError, 401),
    (ForbiddenError, 403),
    (InvalidJsonError, 400),
    (MisconfiguredError, 500),
    (PayloadTooLargeError, 413),
    (domain.InvalidRequestError, 400),
    (domain.UnknownJobTypeError, 422),
    (domain.InvalidPayloadError, 422),
    (domain.JobNotFoundError, 404),
    (domain.ArtifactNotFoundError, 404),
    (domain.TaskNotFoundError, 404),
    (domain.LetterNotFoundError, 404),
    (domain.BlobNotFoundError, 410),
    (domain.JobPurgedError, 410),
    (domain.JobAlreadyFinishedError, 409),
    (domain.JobNotFinishedError, 409),
    (domain.IdempotencyConflictError, 409),
    (domain.StaleJobError, 409),
    (domain.InvalidTransitionError, 409),
    (domain.CacheGenerationChangedError, 409),
    (domain.QuotaExceededError, 429),
    (domain.NotRedrivableError, 409),
    (domain.QueueUnavailableError, 503),
    (domain.StoreUnavailableError, 503),
    (domain.DeadLetterUnavailableError, 503),
    (domain.TaskTimeError, 503),
]


def status_for(error: domain.JobpipeError) -> int:
    for kind, status in _STATUS:
        if isinstance(error, kind):
            return status
    return 500


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        body=body,
        status_code=status,
        headers={"Content-Type": "application/json", "Cache-Control": "no-store", **(headers or {})},
    )


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    # A message or its details may echo what the request named (a path part): never as a lone surrogate.
    error: dict[str, Any] = {"code": code, "message": unicode_text(message)}
    if details is not None:
        error["details"] = unicode_data(details)
    return {"error": error}


def error_response(error: domain.JobpipeError) -> Response:
    status = status_for(error)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    if isinstance(error, domain.QuotaExceededError):
        headers = {"Retry-After": str(error.retry_after_s)}
    return json_response(error_body(error.code, error.message, error.details), status, headers)


def internal_error_response() -> Response:
    return json_response(error_body("internal_error", "an internal error occurred; it has been logged"), 500)
