"""Scope caches' names, and which cache namespaces depend on which job type (pure)."""
from __future__ import annotations

import re

from pydantic import RootModel, field_validator

from chalicelib.domain.errors import InvalidRequestError

_NAME = re.compile(r"[A-Za-z0-9._:/@\-]{1,256}")
# A cached value is one DynamoDB item's attribute (items hold 400 KB in all): its JSON may take
# 350 KiB, the rest is the item's keys and bookkeeping.
MAX_VALUE_BYTES = 350 * 1024


def check_name(kind: str, value: str) -> str:
    """`value` when it is a valid scope or namespace name; raises InvalidRequestError otherwise."""
    if not _NAME.fullmatch(value):
        raise InvalidRequestError(
            f"{kind} must be 1-256 characters of letters, digits and . _ : / @ -",
            details={kind: value[:300]},
        )
    return value


class InvalidationRules(RootModel[dict[str, list[str]]]):
    """Job type -> the cache namespaces that depend on it."""

    @field_validator("root")
    @classmethod
    def _names(cls, rules: dict[str, list[str]]) -> dict[str, list[str]]:
        for job_type, namespaces in rules.items():
            bad = [n for n in namespaces if not _NAME.fullmatch(n)]
            if bad:
                raise ValueError(f"{job_type}: invalid namespace names {bad}")
            if len(set(namespaces)) != len(namespaces):
                raise ValueError(f"{job_type}: namespaces repeat")
        return rules

    def namespaces_for(self, job_type: str) -> list[str]:
        return list(self.root.get(job_type, []))
