"""Request bodies and query parameters the API accepts."""
from __future__ import annotations

from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from chalicelib.domain.status import JobStatus

MAX_BATCH_IDS = 100


class SubmitJobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: str = Field(min_length=1, max_length=128)
    payload: dict[str, Any] = Field(default_factory=dict)
    priority: Optional[Literal["high", "normal", "low"]] = None
    delay_seconds: int = Field(default=0, ge=0, le=900)
    scope: Optional[str] = Field(default=None, min_length=1, max_length=256, pattern=r"^[A-Za-z0-9._:/@\-]+$")


class ListJobsQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: Optional[JobStatus] = None
    type: Optional[str] = Field(default=None, min_length=1, max_length=128)
    limit: int = Field(default=25, ge=1, le=100)
    cursor: Optional[str] = Field(default=None, min_length=1, max_length=2048)
