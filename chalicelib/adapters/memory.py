"""In-memory adapters with the same contract as the AWS ones (conditional writes included)."""
from __future__ import annotations

import base64
import json
import threading
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Optional

from chalicelib.adapters.artifacts import blob_key as artifact_blob_key
from chalicelib.adapters.artifacts import check_name, keeps_inline
from chalicelib.domain.errors import (
    EventPublishError,


    ArtifactNotFoundError,
    BlobNotFoundError,
    InvalidRequestError,
    ProgressRejectedError,
    QueueUnavailableError,
    StaleJobError,
)
from chalicelib.domain.job import Job, Progress, Run, isoformat, utcnow
from chalicelib.domain.status import JobStatus
from chalicelib.ports import REMOVE, Artifact, ArtifactInfo, ChangeSet, JobMessage, JobPage, JobQuery


class InMemoryJobStore:
    def __init__(self, caches: Optional["InMemoryCacheStore"] = None) -> None:
        """`caches`: the scope caches a change's `invalidate_caches` invalidates (DynamoDB
        keeps both in one table and one transaction)."""
        self._jobs: dict[str, Job] = {}
        self._runs: dict[tuple[str, int], Run] = {}
        self._lock = threading.Lock()
        self.caches = caches if caches is not None else InMemoryCacheStore()

    def create(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                raise StaleJobError(f"job {job.id} already exists")
            self._jobs[job.id] = job.model_copy(deep=True)

    def discard(self, job_id: str) -> None:
        with self._lock:
            self._jobs.pop(job_id, None)

    def get(self, job_id: str, *, consistent: bool = True) -> Optional[Job]:
        job = self._jobs.get(job_id)
        return job.model_copy(deep=True) if job else None

    def get_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        return {i: j for i in job_ids if (j := self.get(i)) is not None}

    def list_jobs(self, query: JobQuery) -> JobPage:
        jobs = sorted(
            (j for j in self._jobs.values() if j.tenant == query.tenant),
            key=lambda j: (j.created_at, j.id),
            reverse=True,
        )
        if query.status:
            jobs = [j for j in jobs if j.status == query.status]
        if query.type:
            jobs = [j for j in jobs if j.type == query.type]
        if query.cursor:
            after = _decode_cursor(query.cursor)
            jobs = [j for j in jobs if (j.created_at, j.id) < after]
        page = jobs[: query.limit]
        cursor = None
        if len(jobs) > query.limit:
            last = page[-1]
            cursor = _encode_cursor((last.created_at, last.id))
        return JobPage([j.model_copy(deep=True) for j in page], cursor)

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        with self._lock:
            stored = self._jobs.get(job.id)
            if stored is None or stored.status != expected_status or stored.version != job.version:
                raise StaleJobError(f"job {job.id} changed since it was read")
            update = {k: (None if v is REMOVE else v) for k, v in changes.fields.items()}
            update["version"] = stored.version + 1
            new = Job.model_validate({**stored.model_dump(), **_dumped(update)})
            self._jobs[job.id] = new
            if changes.run is not None:
                self._write_run(changes.run)
            for namespace in changes.invalidate_caches:
                self.caches.invalidate(new.tenant, new.scope or "", namespace, new.id,
                                       new.finished_at or isoformat(utcnow()))
            return new.model_copy(deep=True)

    def record_progress(self, job_id: str, attempt: int, progress: Progress) -> Job:
        with self._lock:
            stored = self._jobs.get(job_id)
            if stored is None or stored.status != JobStatus.RUNNING or stored.attempts != attempt:
                raise ProgressRejectedError(f"attempt {attempt} of job {job_id} is not running")
            if progress.percent < stored.progress.percent:
                raise ProgressRejectedError(
                    f"progress cannot decrease from {stored.progress.percent:g} to {progress.percent:g}"
                )
            new = stored.model_copy(update={"progress": progress, "version": stored.version + 1})
            self._jobs[job_id] = new
            return new.model_copy(deep=True)

    def add_child(self, parent_id: str, child_id: str) -> None:
        with self._lock:
            parent = self._jobs[parent_id]
            if child_id not in parent.children:
                self._jobs[parent_id] = parent.model_copy(
                    update={"children": [*parent.children, child_id], "version": parent.version + 1}
                )

    def runs(self, job_id: str) -> list[Run]:
        return [r for (jid, _), r in sorted(self._runs.items()) if jid == job_id]

    def due(self, now: str, limit: int) -> list[Job]:
        due = sorted(
            (j for j in self._jobs.values() if j.due_at and not j.status.is_terminal and j.due_at <= now),
            key=lambda j: (j.due_at, j.id),
        )
        return [j.model_copy(deep=True) for j in due[:limit]]

    def _write_run(self, run: Run) -> None:
        key = (run.job_id, run.attempt)
        previous = self._runs.get(key)
        if previous is not None and run.started_at is None:
            run = run.model_copy(update={"started_at": previous.started_at})
        self._runs[key] = run


class InMemoryJobQueue:
    """Records what was sent; tests drain it into the worker."""

    def __init__(self) -> None:
        self.sent: list[tuple[JobMessage, str, int]] = []
        self.dead: list[tuple[JobMessage, dict[str, Any]]] = []
        self.fail_sends = False
        self.visibility: dict[str, int] = {}

    def send(self, message: JobMessage, *, priority: str, delay_seconds: int = 0) -> None:
        if self.fail_sends:
            raise QueueUnavailableError("queue is unavailable")
        self.sent.append((message, priority, delay_seconds))

    def dead_letter(self, message: JobMessage, *, priority: str, reason: dict[str, Any]) -> None:
        self.dead.append((message, reason))

    def set_visibility(self, queue_arn: str, receipt_handle: str, seconds: int) -> None:
        self.visibility[receipt_handle] = seconds

    def drain(self) -> list[JobMessage]:
        messages = [m for m, _, _ in self.sent]
        self.sent.clear()
        return messages


class InMemoryEventPublisher:
    def __init__(self) -> None:
        self.published: list[Any] = []
        self.fail_next = 0

    def publish(self, events: list[Any]) -> None:
        if self.fail_next:
            self.fail_next -= 1
            raise EventPublishError("publishing is failing", unpublished=[e.event_id for e in events])
        self.published.extend(events)


def _dumped(update: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in update.items()}


def _encode_cursor(key: tuple[str, str]) -> str:
    return base64.urlsafe_b64encode(json.dumps(list(key)).encode()).decode()


def _decode_cursor(cursor: str) -> tuple[str, str]:
    try:
        created_at, job_id = json.loads(base64.urlsafe_b64decode(cursor.encode()))
        return str(created_at), str(job_id)
    except (ValueError, TypeError) as exc:
        raise InvalidRequestError("cursor is not valid", details={"cursor": cursor}) from exc


class InMemoryCacheStore:
    """Same contract as DynamoCacheStore."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.tasks: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def put(self, tenant, scope, namespace, value, at, expected_generation=None):
        from chalicelib.domain.errors import CacheGenerationChangedError

        item = self.items.setdefault((tenant, scope, namespace), {"generation": 0})
        if expected_generation is not None and item["generation"] != expected_generation:
            raise CacheGenerationChangedError(f"{namespace} was invalidated since generation {expected_generation}")
        item.update(value=json.loads(json.dumps(value)), value_gen=item["generation"], cached_at=at)
        self.writes += 1
        return self.get(tenant, scope, namespace)

    def get(self, tenant, scope, namespace):
        from chalicelib.subscribers.cache import CacheEntry

        item = self.items.get((tenant, scope, namespace), {"generation": 0})
        hit = "value" in item and item["value_gen"] == item["generation"]
        return CacheEntry(namespace, item["generation"], item.get("value") if hit else None, hit,
                          item.get("cached_at") if hit else None, item.get("invalidated_at"),
                          item.get("invalidated_by"))

    def invalidate(self, tenant, scope, namespace, job_id, at):
        item = self.items.setdefault((tenant, scope, namespace), {"generation": 0})
        if item.get("invalidated_by") == job_id:  # its completion's own write already did
            return item["generation"]
        item.update(generation=item["generation"] + 1, invalidated_at=at, invalidated_by=job_id)
        self.writes += 1
        return item["generation"]

    def record_completion(self, tenant, scope, completion):
        tasks = self.tasks.setdefault((tenant, scope), {})
        previous = tasks.get(completion.type)
        if previous is None or previous.completed_at <= completion.completed_at:
            tasks[completion.type] = completion
        self.writes += 1

    def completions(self, tenant, scope):
        return sorted(self.tasks.get((tenant, scope), {}).values(), key=lambda c: c.type)


class InMemoryBlobStore:
    def __init__(self, clock: Callable[[], datetime] = utcnow) -> None:
        self.objects: dict[str, tuple[bytes, str, datetime]] = {}
        self._clock = clock

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.objects[key] = (bytes(data), content_type, self._clock())

    def get(self, key: str) -> bytes:
        if key not in self.objects:
            raise BlobNotFoundError(f"object {key} no longer exists")
        return self.objects[key][0]

    def delete(self, keys: list[str]) -> int:
        for key in keys:
            self.objects.pop(key, None)
        return len(keys)

    def presigned_url(self, key: str, expires_s: int) -> str:
        return f"memory://jobs-bucket/{key}?expires_in={expires_s}"

    def keys_older_than(self, prefix: str, before: datetime) -> Iterator[list[str]]:
        old = sorted(k for k, (_, _, at) in self.objects.items() if k.startswith(prefix) and at < before)
        for start in range(0, len(old), 1000):
            yield old[start : start + 1000]


class InMemoryArtifactStore:
    def __init__(self, blobs: InMemoryBlobStore, *, inline_limit: int = 64 * 1024,
                 clock: Callable[[], datetime] = utcnow) -> None:
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._clock = clock
        self.items: dict[tuple[str, str], Artifact] = {}

    def put(self, job_id: str, name: str, data: bytes, content_type: str) -> ArtifactInfo:
        check_name(name)
        inline = keeps_inline(data, content_type, self._inline_limit)
        info = ArtifactInfo(job_id, name, content_type, len(data), isoformat(self._clock()),
                            "inline" if inline else "s3")
        if inline:
            self.items[(job_id, name)] = Artifact(info, content=bytes(data))
        else:
            self._blobs.put(artifact_blob_key(job_id, name), data, content_type)
            self.items[(job_id, name)] = Artifact(info, blob_key=artifact_blob_key(job_id, name))
        return info

    def list(self, job_id: str) -> list[ArtifactInfo]:
        return [a.info for (jid, _), a in sorted(self.items.items()) if jid == job_id]

    def get(self, job_id: str, name: str) -> Artifact:
        try:
            return self.items[(job_id, name)]
        except KeyError:
            raise ArtifactNotFoundError(f"job {job_id} has no artifact {name[:128]!r}") from None


class InMemoryFinishedJobs:
    """Same contract as the index-backed adapter, over the in-memory store."""

    def __init__(self, store: InMemoryJobStore, artifacts: InMemoryArtifactStore, blobs: InMemoryBlobStore) -> None:
        self._store = store
        self._artifacts = artifacts
        self._blobs = blobs

    def finished_before(self, cutoff: datetime, *, since: datetime, page_size: int = 100) -> Iterator[list[str]]:
        low, high = isoformat(since)[:10], isoformat(cutoff)
        ids = sorted(
            j.id for j in self._store._jobs.values()
            if j.finished_at and low <= j.finished_at[:10] and j.finished_at < high
        )
        for start in range(0, len(ids), page_size):
            yield ids[start : start + page_size]

    def purge(self, job_id: str) -> int:
        deleted = 0
        with self._store._lock:
            if self._store._jobs.pop(job_id, None) is not None:
                deleted += 1
            for key in [k for k in self._store._runs if k[0] == job_id]:
                del self._store._runs[key]
                deleted += 1
        for key in [k for k in self._artifacts.items if k[0] == job_id]:
            artifact = self._artifacts.items.pop(key)
            if artifact.blob_key:
                self._blobs.delete([artifact.blob_key])
            deleted += 1
        return deleted


class InMemoryStatsStore:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.status: dict[str, int] = {}
        self.hours: dict[str, dict[str, int]] = {}
        self.tenants: dict[str, int] = {}

    def record(self, delta: Any) -> bool:
        if delta.dedupe_key in self.seen:
            return False
        self.seen.add(delta.dedupe_key)
        for name, value in delta.status.items():
            self.status[name] = self.status.get(name, 0) + value
        if delta.hour and delta.events:
            hour = self.hours.setdefault(delta.hour, {})
            for name, value in delta.events.items():
                hour[name] = hour.get(name, 0) + value
        if delta.tenant and delta.unfinished:
            self.tenants[delta.tenant] = self.tenants.get(delta.tenant, 0) + delta.unfinished
        return True

    def unfinished(self, tenant: str) -> int:
        return max(0, self.tenants.get(tenant, 0))

    def status_counts(self) -> dict[str, int]:
        return dict(self.status)

    def hourly(self, hours: list[str]) -> list[dict[str, int]]:
        return [dict(self.hours.get(h, {})) for h in hours]


class InMemoryReconcilerLog:
    def __init__(self) -> None:
        self.last_pass: Optional[dict[str, Any]] = None
        self.totals: dict[str, int] = {}

    def record(self, started_at: str, counts: dict[str, int]) -> None:
        self.last_pass = {"started_at": started_at, "counts": dict(counts)}
        self.totals["passes"] = self.totals.get("passes", 0) + 1
        for name, value in counts.items():
            self.totals[name] = self.totals.get(name, 0) + value

    def summary(self) -> dict[str, Any]:
        return {"last_pass": self.last_pass, "totals": dict(self.totals)}


class InMemoryQueueOperations:
    """Dead letters are the in-memory queue's `dead` list plus what a test parks there as the
    queue's redrive policy would."""

    def __init__(self, queue: InMemoryJobQueue) -> None:
        self._queue = queue

    def peek_dead_letters(self, priority: str, limit: int) -> list[Any]:
        from chalicelib.ports import DeadLetter

        return [DeadLetter(message_id=f"m{i}", body={**message.to_body(), **({"reason": reason} if reason else {})},
                           sent_at=None, receive_count=0)
                for i, (message, reason) in enumerate(self._queue.dead[:limit])]
