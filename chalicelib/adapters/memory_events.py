"""In-memory twins of the event path's ports: the event publisher, the webhook sender, the
subscribers' delivery ledger and the scope caches (same contracts as the AWS adapters)."""
from __future__ import annotations

import json
import math
import threading
import time
from dataclasses import replace
from http import HTTPStatus
from typing import Any, Callable, Mapping, Optional, Sequence

from chalicelib.defaults import WEBHOOK_ANSWER_TEXT_BYTES, WEBHOOK_TIMEOUT_S
from chalicelib.domain.caches import expiry, generation_changed
from chalicelib.domain.errors import EventPublishError, WebhookDeliveryError
from chalicelib.ports import CacheEntry, LedgerOpening, WebhookAnswer

# A parked message's record, beside the event records (an event id never starts so).
PARKED = "parked:"


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:  # a status no standard names: no phrase, as a server may send none
        return ""


class InMemoryWebhookSender:
    """Same contract as HttpWebhookSender: records each POST and answers `statuses[url]`
    (200 by default); a URL in `unreachable` raises WebhookDeliveryError like a refused
    connection, one in `answer_after` answers after that many seconds (no answer past the
    POST's timeout), one in `retry_after` asks for that wait (seconds), a 4xx answer says
    `texts[url]` in its body and a 3xx redirects to `locations[url]`."""

    def __init__(self, statuses: Optional[Mapping[str, int]] = None, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        self.statuses: dict[str, int] = dict(statuses or {})
        self.unreachable: set[str] = set()
        self.answer_after: dict[str, float] = {}
        self.retry_after: dict[str, float] = {}
        self.texts: dict[str, str] = {}
        self.locations: dict[str, str] = {}
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []
        self._timeout = timeout_s

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: Optional[float] = None) -> WebhookAnswer:
        if not url.startswith(("https://", "http://")):
            raise WebhookDeliveryError(f"webhook URL must be http(s): {url[:100]!r}")
        limit = self._timeout if timeout_s is None else min(self._timeout, timeout_s)
        if url in self.unreachable:
            raise WebhookDeliveryError(f"webhook unreachable: {url[:100]}")
        if self.answer_after.get(url, 0.0) > limit:
            self.posts.append((url, bytes(body), dict(headers)))  # sent; its answer never came in time
            raise WebhookDeliveryError.unanswered(limit)
        self.posts.append((url, bytes(body), dict(headers)))
        status = self.statuses.get(url, 200)
        if 300 <= status < 400:
            return WebhookAnswer(status, self.retry_after.get(url), location=self.locations.get(url, ""))
        if not 400 <= status < 500:
            return WebhookAnswer(status, self.retry_after.get(url))
        text = self.texts.get(url, "").encode()[:WEBHOOK_ANSWER_TEXT_BYTES].decode("utf-8", errors="replace").strip()
        return WebhookAnswer(status, self.retry_after.get(url), reason=_phrase(status), text=text)


class InMemoryDeliveryLedger:
    """Same contract as DynamoDeliveryLedger: event id -> (status, expiration in epoch seconds);
    a record past its expiration (a lapsed lease, a done record past its TTL) counts as absent.
    `begin` and `finish` each apply all of their writes under one lock, like the one request
    each of them is on DynamoDB."""

    def __init__(self, *, ttl_s: int, clock: Callable[[], float] = time.time) -> None:
        self.records: dict[str, tuple[str, int]] = {}
        self._ttl_s = ttl_s
        self._clock = clock
        self._lock = threading.Lock()

    def begin(self, event_ids: Sequence[str], lease_s: float) -> LedgerOpening:
        opened, done, busy = [], [], []
        with self._lock:
            now = self._clock()
            for event_id in dict.fromkeys(event_ids):
                record = self.records.get(event_id)
                if record is not None and record[1] >= int(now):
                    (done if record[0] == "done" else busy).append(event_id)
                else:
                    opened.append(event_id)
            for event_id in opened:
                self.records[event_id] = ("in_progress", math.ceil(now + lease_s))
        return LedgerOpening(tuple(opened), tuple(done), tuple(busy))

    def finish(self, delivered: Sequence[str], failed: Sequence[str]) -> None:
        with self._lock:
            expiration = math.ceil(self._clock() + self._ttl_s)
            for event_id in delivered:
                self.records[event_id] = ("done", expiration)
            for event_id in failed:
                self.records.pop(event_id, None)

    def begin_parking(self, message_id: str) -> bool:
        with self._lock:
            record = self.records.get(PARKED + message_id)
            return record is None or record[1] < int(self._clock())

    def parked(self, message_id: str) -> None:
        with self._lock:
            self.records[PARKED + message_id] = ("parked", math.ceil(self._clock() + self._ttl_s))


class InMemoryEventPublisher:
    """Same contract as EventBridgePublisher: `published` holds what went out, in order. With
    `fail_next` set, that many publishes fail whole (PutEvents refused or unanswered); with
    `fail_after` set, the bus takes that many more events and then refuses every one (entries a
    call refuses, and the chunks after them, not sent): the publish fails part way, naming the
    events that did not go out."""

    def __init__(self) -> None:
        self.published: list[Any] = []
        self.fail_next = 0
        self.fail_after: Optional[int] = None

    def publish(self, events: list[Any]) -> None:
        if not events:  # no PutEvents call, so nothing to fail
            return
        if self.fail_next:
            self.fail_next -= 1
            raise EventPublishError("publishing is failing", unpublished=[e.event_id for e in events])
        taken = len(events) if self.fail_after is None else min(len(events), self.fail_after)
        self.published.extend(events[:taken])
        if self.fail_after is not None:
            self.fail_after -= taken
        if taken < len(events):
            raise EventPublishError(f"{len(events) - taken} events were refused",
                                    unpublished=[e.event_id for e in events[taken:]])


class InMemoryCacheStore:
    """Same contract as DynamoCacheStore."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def put(self, tenant, scope, namespace, value, at, expected_generation=None):
        item = self.items.setdefault((tenant, scope, namespace), {"generation": 0})
        if expected_generation is not None and item["generation"] != expected_generation:
            raise generation_changed(namespace, expected_generation, item["generation"])
        item.update(value=json.loads(json.dumps(value)), value_gen=item["generation"], cached_at=at,
                    expires_at=expiry(at))
        self.writes += 1
        return self.get(tenant, scope, namespace)

    def get(self, tenant, scope, namespace):
        item = self.items.get((tenant, scope, namespace), {"generation": 0})
        hit = "value" in item and item["value_gen"] == item["generation"]
        return CacheEntry(namespace, item["generation"], item.get("value") if hit else None, hit,
                          item.get("cached_at") if hit else None, item.get("invalidated_at"),
                          item.get("invalidated_by"))

    def write_invalidation(self, tenant, scope, namespace, job_id, at):
        """A completion's own invalidation (DynamoDB's `invalidation_write`): unconditional."""
        item = self.items.setdefault((tenant, scope, namespace), {"generation": 0})
        item.update(generation=item["generation"] + 1, invalidated_at=at, invalidated_by=job_id,
                    expires_at=expiry(at))
        self.writes += 1
        return item["generation"]

    def invalidate(self, tenant, scope, namespace, job_id, at):
        item = self.items.setdefault((tenant, scope, namespace), {"generation": 0})
        last = item.get("invalidated_at")
        if last is not None and (last > at or (last == at and item.get("invalidated_by") == job_id)):
            return item["generation"]  # its completion's own write already did, or a later one
        return self.write_invalidation(tenant, scope, namespace, job_id, at)

    def write_completion(self, tenant, scope, completion):
        """A completion's own write of its record (DynamoDB's `completion_write`): unconditional."""
        self.tasks.setdefault((tenant, scope), {})[completion.type] = completion
        self.writes += 1

    def record_completion(self, tenant, scope, completion):
        tasks = self.tasks.setdefault((tenant, scope), {})
        previous = tasks.get(completion.type)
        before = previous.namespaces if previous is not None else ()
        if previous is None or previous.completed_at <= completion.completed_at:
            tasks[completion.type] = replace(completion, namespaces=before)
        self.writes += 1
        return before

    def completions(self, tenant, scope):
        return sorted((replace(c, namespaces=()) for c in self.tasks.get((tenant, scope), {}).values()),
                      key=lambda c: c.type)

    def expire(self, now: int) -> None:
        """What DynamoDB's TTL may have done by `now` (epoch seconds): each namespace's item whose
        `expires_at` is past (CACHE_TTL_S after its last put or invalidation), deleted."""
        for key in [k for k, item in self.items.items() if item.get("expires_at", now) < now]:
            del self.items[key]
