"""Request bodies and query parameters the API accepts."""
from __future__ import annotations

import re
from typing import Any, Literal, Optional

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator

from chalicelib.domain.caches import NAME_PATTERN, check_name
from chalicelib.domain.errors import InvalidRequestError
from chalicelib.domain.numbers import WholeNumber
from chalicelib.domain.registry import TYPE_NAME
from chalicelib.domain.status import JobStatus
from chalicelib.defaults import (
    ARTIFACT_PAGE,
    LISTING_PAGE,
    MAX_ARTIFACT_PAGE,
    MAX_CACHE_NAME_CHARS,
    MAX_CURSOR_CHARS,
    MAX_JOB_TYPE_CHARS,
    MAX_LISTING_PAGE,
    MAX_SCHEDULE_S,
)

# How an ISO 8601 date and time begins (the rest is pydantic's to read).
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]")


class StartRequest(BaseModel):
    """When a new job starts, as POST /jobs and POST /jobs/{id}/rerun both take it."""

    model_config = ConfigDict(extra="forbid")

    # Up to 900 s the job's message is delayed by SQS; beyond, the job is held in the store and
    # released by the reconciler. `run_at` (ISO 8601 with a zone) instead of a delay.
    # Strict: `true` or "10" is no number of seconds, and `run_at` is text (not an epoch number).
    delay_seconds: int = Field(default=0, ge=0, le=MAX_SCHEDULE_S, strict=True)
    run_at: Optional[AwareDatetime] = None

    @field_validator("run_at", mode="before")
    @classmethod
    def _run_at_is_text(cls, value: Any) -> Any:
        # pydantic would read digits in text ("1900000000") as epoch seconds, or milliseconds
        # past 2e10: a guess, where ISO 8601 says which instant it means.
        if value is not None and not (isinstance(value, str) and _ISO_DATE.match(value)):
            raise ValueError("run_at must be an ISO 8601 date and time with a zone, as text")
        return value

    @model_validator(mode="after")
    def _one_start(self) -> "StartRequest":
        if self.run_at is not None and self.delay_seconds:
            raise ValueError("give either run_at or delay_seconds, not both")
        return self


class SubmitJobRequest(StartRequest):
    type: str = Field(min_length=1, max_length=MAX_JOB_TYPE_CHARS)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Optional[Literal["high", "normal", "low"]] = None
    # Checked by the domain's rule (its message says why / is refused); the pattern is the schema's.
    scope: Optional[str] = Field(default=None, min_length=1, max_length=MAX_CACHE_NAME_CHARS,
                                 json_schema_extra={"pattern": NAME_PATTERN})

    @field_validator("scope")
    @classmethod
    def _scope_is_a_path_segment(cls, value: Optional[str]) -> Optional[str]:
        if value is not None:
            try:
                check_name("scope", value)
            except InvalidRequestError as exc:
                raise ValueError(exc.message) from exc
        return value


class RerunJobRequest(StartRequest):
    """POST /jobs/{id}/rerun's body, optional: when the new job starts, as POST /jobs takes it.
    Everything else is the original's."""


class ListJobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Optional[JobStatus] = None
    type: Optional[str] = Field(default=None, min_length=1, max_length=MAX_JOB_TYPE_CHARS)
    limit: WholeNumber = Field(default=LISTING_PAGE, ge=1, le=MAX_LISTING_PAGE)
    cursor: Optional[str] = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)

    @field_validator("type")
    @classmethod
    def _a_type_name(cls, value: Optional[str]) -> Optional[str]:
        """A name no job type can have is refused whether or not `status` comes with it (alone it
        reaches the type's index key, with `status` only a filter: a 400 one way, an empty page
        the other)."""
        if value is not None and not TYPE_NAME.fullmatch(value):
            raise ValueError("a job type's name is dotted lower-case words (a-z, 0-9, _), as GET /job-types lists them")
        return value


class ListArtifactsQuery(BaseModel):
    """A page of a job's artifacts, by name (a caller that does not page gets the first)."""

    model_config = ConfigDict(extra="forbid")

    limit: WholeNumber = Field(default=ARTIFACT_PAGE, ge=1, le=MAX_ARTIFACT_PAGE)
    cursor: Optional[str] = Field(default=None, min_length=1, max_length=MAX_CURSOR_CHARS)
