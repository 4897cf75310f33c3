"""Route plumbing shared by every endpoint: authentication, body parsing and error mapping."""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any, Callable, Collection, Optional, TypeVar

from chalice import Blueprint, Response
from pydantic import BaseModel, ValidationError

from chalicelib.api.auth import Principal, TokenPolicy, authenticate
from chalicelib.api.errors import (
    InvalidJsonError,
    MisconfiguredError,
    PayloadTooLargeError,
    error_response,
    internal_error_response,
    json_response,
)
from chalicelib.api.json_body import body_text, read_json
from chalicelib.domain.numbers import shown_number
from chalicelib.domain.errors import (
    DeadLetterUnavailableError,
    InvalidRequestError,
    JobpipeError,
    QueueUnavailableError,
    StoreUnavailableError,
    validation_problems,
)
from chalicelib.composition import SettingsError, report_misconfiguration
from chalicelib.observability import logger

# Chalice answers 415 in its own format for a Content-Type its route does not list; every
# route takes any type and judges the body itself, so every refusal has our error shape.
ANY_CONTENT_TYPE = ["*/*"]

M = TypeVar("M", bound=BaseModel)
# A table or queue that refused or did not answer: its 503 is logged with the cause under it.
_DEPENDENCY_FAILURES = (StoreUnavailableError, QueueUnavailableError, DeadLetterUnavailableError)


@dataclass
class Call:
    """What a view gets: the Chalice request, the authenticated principal and body helpers."""

    request: Any
    principal: Optional[Principal]
    max_body_bytes: int

    @property
    def raw_body(self) -> bytes:
        body = self.request.raw_body or b""
        if len(body) > self.max_body_bytes:
            raise PayloadTooLargeError(
                f"request body is {shown_number(len(body))} bytes; "
                f"the limit is {shown_number(self.max_body_bytes)} bytes",
                details={"limit": self.max_body_bytes},
            )
        return body

    def query(self) -> dict[str, str]:
        """The query parameters, each given once: a repeated one (`?limit=1&limit=2`) is
        refused rather than one of its values silently kept."""
        params = self.request.query_params or {}
        getlist = getattr(params, "getlist", None)
        repeated = sorted(k for k in params if getlist is not None and len(getlist(k)) > 1)
        if repeated:
            raise InvalidRequestError(f"query parameter {', '.join(repeated)} given more than once")
        return dict(params)

    def json(self) -> Any:
        """The body's JSON value (chalicelib/api/json_body.py); InvalidJsonError otherwise."""
        return read_json(self.raw_body)

    def model(self, model: type[M]) -> M:
        """The JSON body validated against `model`; InvalidRequestError lists the problems."""
        data = self.json()
        if not isinstance(data, dict):
            raise InvalidRequestError("request body must be a JSON object")
        return validate(model, data)

    def header(self, name: str) -> Optional[str]:
        return self.request.headers.get(name)

    @property
    def user(self) -> Principal:
        assert self.principal is not None
        return self.principal


_NO_BODY = re.compile(r"\s*(\{\s*\}\s*)?", re.ASCII)  # nothing, whitespace, or an empty JSON object


def asks_nothing(body: bytes) -> bool:
    """True for a body that asks for nothing: empty, whitespace, or an empty JSON object,
    read as every body is (UTF-8, UTF-16 or UTF-32, a byte order mark skipped: a `{}` saved by
    an editor that writes one is still `{}`)."""
    if not body:
        return True
    try:
        text = body_text(body)
    except InvalidJsonError:
        return False
    return _NO_BODY.fullmatch(text) is not None


def _check_taken(call: Call, route: str, query: Optional[Collection[str]], body: bool) -> None:
    """InvalidRequestError for a query parameter outside `query` (when given) or, without
    `body`, a body that asks for something: anything but whitespace or an empty JSON object
    (`{}`, which clients send for "no parameters" by habit: it asks for nothing)."""
    if query is not None:
        others = sorted(set(call.query()) - set(query))
        if others:
            taken = f"it takes {', '.join(sorted(query))}" if query else "it takes none"
            raise InvalidRequestError(f"{route} does not take the query parameter {', '.join(others)}: {taken}",
                                      details={"parameters": others})
    if not body and not asks_nothing(call.raw_body):
        raise InvalidRequestError(f"{route} takes no request body" + (
            ": its parameters go in the query string" if query is None else ""))


def validate(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        message, details = validation_problems(exc, "request is not valid")
        raise InvalidRequestError(message, details=details) from None


def endpoint(
    blueprint: Blueprint,
    path: str,
    *,
    methods: list[str],
    token_policy: Callable[[], TokenPolicy],
    max_body_bytes: Callable[[], int],
    auth: bool = True,
    role: Optional[str] = None,
    internal_error: Callable[[Exception], Response] = lambda exc: internal_error_response(),
    misconfigured: Callable[[], Response] = lambda: error_response(MisconfiguredError()),
    query: Optional[Collection[str]] = None,
    body: bool = True,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Register `view(call, **uri_params)` as a route. The view returns (body, status) or a
    Response; with `role`, a token without that role is refused (403) before the view runs.
    JobpipeError becomes the mapped 4xx/5xx, anything else a logged 500 shaped by
    `internal_error(exc)`, and settings the function refuses the 500 `misconfigured()`
    (compatibility routes answer both in their clients' error format).

    `query` names the query parameters a route takes (None: its view reads the query through a
    model that refuses any other); `body=False` says it takes no body. A request carrying
    another parameter, or a body the route would not read, is refused (400) before the view
    runs: a route that changes something must never act on a request it half read, such as
    `DELETE /jobs/{id}?dry_run=true` canceling, or a clean-up given its age in a body running
    with the default one."""

    def decorator(view: Callable[..., Any]) -> Callable[..., Any]:
        @blueprint.route(path, methods=methods, content_types=ANY_CONTENT_TYPE)
        @functools.wraps(view)
        def route(**params: Any) -> Response:
            request = blueprint.current_request
            try:
                principal = authenticate(request.headers, token_policy()) if auth else None
                if principal is not None:
                    logger.append_keys(tenant=principal.tenant, user=principal.user)
                    if role is not None:
                        principal.require_role(role)
                call = Call(request, principal, max_body_bytes())
                _check_taken(call, f"{request.method} {path}", query, body)
                outcome = view(call, **params)
            except SettingsError as exc:  # the same answer to every request until it is redeployed
                report_misconfiguration(exc)
                return misconfigured()
            except JobpipeError as exc:
                if isinstance(exc, _DEPENDENCY_FAILURES):  # the answer says what; the log says why
                    logger.exception("dependency failure", extra={"path": path})
                return error_response(exc)
            except Exception as exc:
                logger.exception("unhandled error", extra={"path": path})
                return internal_error(exc)
            if isinstance(outcome, Response):
                return outcome
            answer, status = outcome if isinstance(outcome, tuple) else (outcome, 200)
            return json_response(answer, status)

        route.required_role = role  # type: ignore[attr-defined]  # walked by the tests
        route.takes_body = body  # type: ignore[attr-defined]
        return route

    return decorator
