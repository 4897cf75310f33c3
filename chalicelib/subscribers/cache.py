"""Scope caches: values stored per (tenant, scope, namespace), invalidated when a job that they
depend on completes. Invalidation bumps the namespace's generation: one write per namespace,
whatever the number of cached values, and no scans."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional

from chalicelib.domain.caches import InvalidationRules
from chalicelib.domain.events import CacheInvalidatedEvent, JobEvent, event_id_for
from chalicelib.ports import CacheStore, EventPublisher, TaskCompletion

RULES_FILE = Path(__file__).resolve().parents[1] / "cache_invalidation_rules.json"


def load_rules(path: Optional[Path] = None) -> InvalidationRules:
    """The deployment's rules file (RULES_FILE unless `path`), validated; raises OSError for a
    missing one, ValueError (pydantic's ValidationError, json's JSONDecodeError) for a bad one."""
    return parse_rules((path or RULES_FILE).read_text())


def parse_rules(text: str) -> InvalidationRules:
    """Rules as a rules file's `text` gives them; raises ValueError for a bad one, among them a
    job type given twice (JSON would keep its last rule and drop the first without a word)."""
    return InvalidationRules.model_validate(json.loads(text, object_pairs_hook=_without_repeats))


def _without_repeats(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """A JSON object's members as a dict; raises ValueError naming a key given twice."""
    repeated = sorted({key for index, (key, _) in enumerate(pairs) if key in (k for k, _ in pairs[:index])})
    if repeated:
        raise ValueError(f"{', '.join(map(repr, repeated))} given more than once: write each job type's "
                         "namespaces in one list")
    return dict(pairs)


class CacheInvalidator:
    """Consumer of completed-job events: records the task's completion time for the job's scope,
    invalidates the namespaces the rules name, and announces it with `cache.invalidated`."""

    def __init__(self, store: CacheStore, rules: InvalidationRules, publisher: EventPublisher,
                 *, log: Callable[[str, dict[str, Any]], None] = lambda message, extra: None) -> None:
        self.store = store
        self.rules = rules
        self.publisher = publisher
        self._log = log

    def handle(self, event: JobEvent) -> Optional[CacheInvalidatedEvent]:
        if event.status != "completed":
            return None  # invalidation happens on completion only, never on enqueue or start
        if not event.scope:
            self._log("completed job has no scope; no cache to invalidate", {"job_id": event.job_id})
            return None
        # The job's own completion time (the one its record and its completion's invalidation
        # carry); an event published before events had it falls back to its stream time.
        completed_at = event.finished_at or event.timestamp
        # What the last completion of the type to land invalidated in its own write, which
        # landed no earlier than this one's: left alone, whatever its time says (a completion
        # landing just after this one can carry an earlier or the same `finished_at`). The
        # others (a rule added since the completion) are invalidated unless a later one did.
        done = set(self.store.record_completion(
            event.tenant, event.scope, TaskCompletion(event.type, completed_at, event.job_id)
        ))
        namespaces = self.rules.namespaces_for(event.type)
        for namespace in namespaces:
            if namespace not in done:
                self.store.invalidate(event.tenant, event.scope, namespace, event.job_id, completed_at)
        announcement = CacheInvalidatedEvent(
            event_id=event_id_for(event.job_id, event.version, kind="cache"),
            timestamp=event.timestamp,
            tenant=event.tenant,
            scope=event.scope,
            namespaces=namespaces,
            job_id=event.job_id,
            type=event.type,
        )
        self.publisher.publish([announcement])
        return announcement
