"""Scope caches' names, and which cache namespaces depend on which job type (pure)."""
from __future__ import annotations

import re
from typing import Iterable

from pydantic import RootModel, field_validator

from chalicelib.defaults import CACHE_TTL_S, MAX_CACHE_NAME_CHARS, MAX_NAMESPACES_PER_JOB_TYPE
from chalicelib.domain.errors import CacheGenerationChangedError, InvalidRequestError
from chalicelib.domain.job import parse_time

# A scope or namespace name is one segment of a URL path (/cache/{scope}/{namespace}): no `/`,
# which API Gateway decodes from %2F before it routes, splitting the segment; and not `.` or `..`,
# which clients drop from a URL. Letters, digits and . _ : @ - travel as they are.
NAME_PATTERN = r"^(?:[A-Za-z0-9._:@\-]*[A-Za-z0-9_:@\-][A-Za-z0-9._:@\-]*|\.{3,})$"
_NAME = re.compile(NAME_PATTERN)


def check_name(kind: str, value: str) -> str:
    """`value` when it is a valid scope or namespace name; raises InvalidRequestError otherwise."""
    if not is_name(value):
        raise InvalidRequestError(
            f"{kind} must be 1-{MAX_CACHE_NAME_CHARS} characters of letters, digits and . _ : @ -, "
            "not . or .. alone; no / (it would split the URL path segment the name travels in)",
            details={kind: value[:300]},
        )
    return value


def is_name(value: object) -> bool:
    """Whether `value` is a valid scope or namespace name."""
    return isinstance(value, str) and len(value) <= MAX_CACHE_NAME_CHARS and _NAME.fullmatch(value) is not None


def expiry(at: str) -> int:
    """When a namespace's item written (put or invalidated) at `at` expires, in epoch seconds:
    CACHE_TTL_S later, its `expires_at` for the table's TTL."""
    return int(parse_time(at).timestamp()) + CACHE_TTL_S


def generation_changed(namespace: str, expected: int, current: int) -> CacheGenerationChangedError:
    """The refusal of a PUT whose If-Match `expected` is not the namespace's `current`
    generation: behind it (a completion invalidated the namespace since) or ahead of it (a
    generation it never reported, as after its item expired)."""
    why = " (invalidated since)" if current > expected else ""
    return CacheGenerationChangedError(
        f"{namespace} is at generation {current}, not {expected}{why}: read it again and, on a miss, "
        "recompute and PUT with the generation it reports",
        details={"generation": current, "if_match": expected},
    )


class InvalidationRules(RootModel[dict[str, list[str]]]):
    """Job type -> the cache namespaces that depend on it."""

    @field_validator("root")
    @classmethod
    def _names(cls, rules: dict[str, list[str]]) -> dict[str, list[str]]:
        for job_type, namespaces in rules.items():
            bad = [n for n in namespaces if not is_name(n)]
            if bad:
                raise ValueError(f"{job_type}: invalid namespace names {bad}")
            if len(set(namespaces)) != len(namespaces):
                raise ValueError(f"{job_type}: namespaces repeat")
            if len(namespaces) > MAX_NAMESPACES_PER_JOB_TYPE:
                raise ValueError(f"{job_type}: {len(namespaces)} namespaces, at most {MAX_NAMESPACES_PER_JOB_TYPE} "
                                 "(a completion invalidates them in its own transaction of 100 items)")
        return rules

    def namespaces_for(self, job_type: str) -> list[str]:
        return list(self.root.get(job_type, []))

    def unknown_types(self, known: Iterable[str]) -> list[str]:
        """The rules' job types that are not among `known`, sorted: no completion is ever of
        such a type, so its namespaces would never be invalidated by the one meant."""
        return sorted(set(self.root) - set(known))
