"""Job types: registered in code with a pydantic payload model and their run policy."""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from pydantic import BaseModel, ValidationError

from chalicelib.defaults import MAX_JOB_TIMEOUT_S, WORKER_TIMEOUT_S
from chalicelib.domain.errors import InvalidPayloadError, UnknownJobTypeError

Handler = Callable[[Any, Any], Any]  # (ctx, payload model) -> JSON-serialisable result
# Type names become parts of storage keys and metric dimensions: dotted lower-case words.
TYPE_NAME = re.compile(r"[a-z0-9_]+(\.[a-z0-9_]+)*")


@dataclass(frozen=True)
class JobType:
    name: str
    payload_model: type[BaseModel]
    handler: Handler
    max_attempts: int = 3
    timeout_s: int = 60
    priority: str = "normal"
    description: str = ""
    internal: bool = False  # built-in (maintenance) types: not listed, not submittable on /jobs

    def parse_payload(self, payload: Any) -> BaseModel:
        """Validate a payload; raises InvalidPayloadError with pydantic's errors in `details`."""
        try:
            return self.payload_model.model_validate(payload)
        except ValidationError as exc:
            details = [
                {"loc": list(err["loc"]), "msg": err["msg"], "type": err["type"]}
                for err in exc.errors(include_url=False, include_context=False, include_input=False)
            ]
            raise InvalidPayloadError(
                f"payload is not valid for job type {self.name!r}", details=details
            ) from exc


class JobTypeRegistry:
    def __init__(self) -> None:
        self._types: dict[str, JobType] = {}

    def register(
        self,
        name: str,
        payload_model: type[BaseModel],
        *,
        max_attempts: int = 3,
        timeout_s: int = 60,
        priority: str = "normal",
        description: str = "",
        internal: bool = False,
    ) -> Callable[[Handler], Handler]:
        """Decorator: `@registry.register("demo.steps", StepsPayload, max_attempts=3)`."""
        if len(name) > 128 or not TYPE_NAME.fullmatch(name):
            raise ValueError(f"job type names are dotted lower-case words (a-z, 0-9, _), not {name!r}")
        if priority not in ("high", "normal", "low"):
            raise ValueError(f"priority must be high, normal or low, not {priority!r}")
        if max_attempts < 1 or timeout_s < 1:
            raise ValueError("max_attempts and timeout_s must be at least 1")
        if timeout_s > MAX_JOB_TIMEOUT_S:
            raise ValueError(
                f"timeout_s of {name!r} is {timeout_s} s; an attempt runs inside one worker invocation "
                f"({WORKER_TIMEOUT_S} s, less {WORKER_TIMEOUT_S - MAX_JOB_TIMEOUT_S} s for its start and the outcome), "
                f"so at most {MAX_JOB_TIMEOUT_S} s: split longer work into child jobs"
            )

        def decorator(handler: Handler) -> Handler:
            if name in self._types:
                raise ValueError(f"job type {name!r} is already registered")
            self._types[name] = JobType(
                name, payload_model, handler, max_attempts, timeout_s, priority, description, internal
            )
            return handler

        return decorator

    def merged(self, other: "JobTypeRegistry") -> "JobTypeRegistry":
        """A new registry with the types of both; raises ValueError if a name is in both."""
        clash = set(self._types) & set(other._types)
        if clash:
            raise ValueError(f"job types registered twice: {sorted(clash)}")
        combined = JobTypeRegistry()
        combined._types = {**self._types, **other._types}
        return combined

    def copy(self) -> JobTypeRegistry:
        """A registry with the same types; what is registered in either stays out of the other."""
        copied = JobTypeRegistry()
        copied._types = dict(self._types)
        return copied

    def get(self, name: str) -> JobType:
        """Raises UnknownJobTypeError listing the known types."""
        try:
            return self._types[name]
        except KeyError:
            known = ", ".join(self.names(public=True)) or "none"
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; known types: {known}"
            ) from None

    def find(self, name: str) -> Optional[JobType]:
        return self._types.get(name)

    def names(self, *, public: bool = False) -> list[str]:
        """Registered type names; `public=True` leaves out the internal ones."""
        return sorted(n for n, t in self._types.items() if not (public and t.internal))

    def get_public(self, name: str) -> JobType:
        """As get(), but an internal type is as unknown as a missing one."""
        job_type = self.get(name)
        if job_type.internal:
            raise UnknownJobTypeError(
                f"unknown job type {name!r}; known types: {', '.join(self.names(public=True)) or 'none'}"
            )
        return job_type
