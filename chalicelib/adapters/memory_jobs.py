"""In-memory twin of the JobStore port (dynamodb.py), same contract, conditional writes included:
the claim-check to a BlobStore, listings' pages and cursors, the due jobs, runs."""
from __future__ import annotations

import functools
import json
import threading
import time
from typing import Any, Collection, Iterable, Optional

from chalicelib.adapters.cursors import check_position, fill_page, listed_index, read_cursor, write_cursor
from chalicelib.adapters.dynamodb_items import blob_key as claim_check_key
from chalicelib.adapters.memory_events import InMemoryCacheStore
from chalicelib.defaults import INLINE_LIMIT_BYTES, ITEM_MAX_BYTES, RECORD_PART_KEEP_S
from chalicelib.domain.errors import (
    AttemptEndedError,
    JobCancelledError,
    JobNotFoundError,
    ProgressRejectedError,
    RecordTooLargeError,
    StaleJobError,
)
from chalicelib.domain.events import clip
from chalicelib.domain.job import Job, Progress, Run, isoformat, parse_time, utcnow
from chalicelib.domain.progress import progress_refusal
from chalicelib.domain.status import JobStatus
from chalicelib.ports import (
    CLAIM_CHECKED,
    REMOVE,
    BlobStore,
    ChangeSet,
    Expectation,
    ExpectedWrite,
    JobPage,
    JobQuery,
    SubmissionKey,
    claim_checked_value,
)


class InMemoryJobStore:
    def __init__(self, caches: Optional[InMemoryCacheStore] = None, *, blobs: Optional[BlobStore] = None,
                 inline_limit: int = INLINE_LIMIT_BYTES) -> None:
        """`caches`: the scope caches a change's `invalidate_caches` invalidates (DynamoDB
        keeps both in one table and one transaction). Without `blobs`, payloads and results
        always stay in the job (like the DynamoDB adapter)."""
        self._jobs: dict[str, Job] = {}
        self._runs: dict[tuple[str, int], Run] = {}
        # (job id, attempt) -> the run record's `expires_at`, as the DynamoDB adapter writes it
        self._run_expiry: dict[tuple[str, int], int] = {}
        # The artifact stores whose records are this store's jobs' (`hold_artifacts`).
        self._artifacts: list[Any] = []
        # job id -> field -> (object key, size) of a claim-checked field (the value is in `blobs`)
        self._refs: dict[str, dict[str, tuple[str, int]]] = {}
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._lock = threading.Lock()
        self.caches = caches if caches is not None else InMemoryCacheStore()
        self._keys: dict[tuple[str, str], SubmissionKey] = {}
        # Jobs whose purge started (mark_purging): read as removed, like DynamoDB's.
        self._purging: set[str] = set()

    def _check_out(self, job_id: str, field: str, value: Any, attempt: Optional[int] = None) -> None:
        """Write the field to the blob store when its JSON is larger than the inline limit (a
        result under its attempt's key, like the DynamoDB adapter, under the same keys)."""
        refs = self._refs.setdefault(job_id, {})
        refs.pop(field, None)
        data = json.dumps(value, separators=(",", ":")).encode()
        if self._blobs is None or len(data) <= self._inline_limit:
            return
        key = claim_check_key(job_id, field, attempt)
        self._blobs.put(key, data, "application/json")
        refs[field] = (key, len(data))

    def _record_bytes(self, job: Job) -> int:
        """About what DynamoDB counts for the job's record: its JSON without the fields that
        live in the blob store, text in UTF-8, and the inline payload and result and the
        progress details as the item keeps them: JSON text, non-ASCII as \\uXXXX escapes."""
        inline = {f for f in CLAIM_CHECKED if self._blobs is None
                  or len(json.dumps(getattr(job, f), separators=(",", ":")).encode()) <= self._inline_limit}
        record = job.model_dump(mode="json", exclude=set(CLAIM_CHECKED) - inline)
        as_json_text = [record.pop(f) for f in inline] + [record["progress"].pop("details")]
        return (len(json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode())
                + sum(len(json.dumps(value, separators=(",", ":"))) for value in as_json_text))

    def _check_room(self, job: Job, refused: str) -> None:
        """RecordTooLargeError when `job`, as it would be written, passes DynamoDB's 400 KB item;
        `refused` says what has no room ("for this write", "to list child <id>")."""
        if self._record_bytes(job) > ITEM_MAX_BYTES:
            raise RecordTooLargeError(f"job {job.id}'s record has no room {refused} (400 KB)")

    def _read(self, job: Job, *, fetch: Collection[str], mark_gone: bool = False) -> Job:
        """A copy of the stored job; the claim-checked fields in `fetch` fetched back, the
        others shown as placeholders; an object gone raises, or is marked (`mark_gone`)."""
        refs = self._refs.get(job.id) or {}
        gone: list[str] = []
        update: dict[str, Any] = {"gone": gone}
        for field, (key, size) in refs.items():
            read = functools.partial(self._blobs.get, key) if field in fetch else None
            update[field] = claim_checked_value(field, size, read, mark_gone=mark_gone, gone=gone)
        return job.model_copy(update=update, deep=True)

    def create(self, job: Job) -> None:
        with self._lock:
            if job.id in self._jobs:
                if self._jobs[job.id] == job:  # a retried write whose first try landed
                    return
                raise StaleJobError(f"job {job.id} already exists")
            self._check_out(job.id, "payload", job.payload)
            self._jobs[job.id] = job.model_copy(deep=True)

    def create_keyed(self, job: Job, key: SubmissionKey, *, now: int) -> Optional[SubmissionKey]:
        with self._lock:
            first = self._keys.get((key.tenant, key.key))
            if first is not None and first.expires_at >= now:
                return first
            if job.id in self._jobs:
                raise StaleJobError(f"job {job.id} already exists")
            self._check_out(job.id, "payload", job.payload)
            self._jobs[job.id] = job.model_copy(deep=True)
            self._keys[(key.tenant, key.key)] = key
            return None

    def submission_key(self, tenant: str, key: str, *, now: int) -> Optional[SubmissionKey]:
        first = self._keys.get((tenant, key))
        return first if first is not None and first.expires_at >= now else None

    def get(self, job_id: str, *, consistent: bool = True, tenant: Optional[str] = None,
            fetch: Collection[str] = CLAIM_CHECKED, mark_gone: bool) -> Optional[Job]:
        job = self._jobs.get(job_id)
        if job is None or job_id in self._purging or (tenant is not None and job.tenant != tenant):
            return None
        return self._read(job, fetch=fetch, mark_gone=mark_gone)

    def get_many(self, job_ids: Iterable[str], *, consistent: bool = False,
                 tenant: Optional[str] = None) -> dict[str, Job]:
        return {i: self._read(self._jobs[i], fetch=()) for i in dict.fromkeys(job_ids)
                if i in self._jobs and i not in self._purging and tenant in (None, self._jobs[i].tenant)}

    def list_jobs(self, query: JobQuery) -> JobPage:
        """A page of the listing of the index the DynamoDB adapter reads (cursors.fill_page says
        which jobs it shows), newest first; its cursor names the listing and the position the
        next page starts after."""
        kind, partition = listed_index(query)
        listing = sorted((j for j in self._jobs.values() if _listed_by(j, query, kind) and j.id not in self._purging),
                         key=lambda j: (j.created_at, j.id), reverse=True)
        start = _decode_cursor(query.cursor, partition) if query.cursor else None

        def read_after(after: Optional[tuple[str, str]]) -> tuple[list[tuple[tuple[str, str], Optional[Job]]],
                                                                Optional[tuple[str, str]]]:
            rest = listing if after is None else [j for j in listing if (j.created_at, j.id) < after]
            entries = [((j.created_at, j.id), self._read(j, fetch=())) for j in rest[: query.limit]]
            return entries, entries[-1][0] if len(rest) > query.limit else None

        jobs, last = fill_page(query, read_after, start)
        return JobPage(jobs, _encode_cursor(partition, last) if last is not None else None)

    def apply(self, job: Job, expected_status: JobStatus, changes: ChangeSet) -> Job:
        with self._lock:
            stored = self._jobs.get(job.id)
            if stored is None or stored.status != expected_status or stored.version != job.version:
                if (stored is not None and stored.version == job.version + 1 and not changes.invalidate_caches
                        and changes.run is None and changes.task_completion is None and changes.claim_landed_in(stored)):
                    return changes.written_on(job)  # a claim's earlier try, its answer lost
                raise StaleJobError(f"job {job.id} changed since it was read")
            update = {k: (None if v is REMOVE else v) for k, v in changes.fields.items()}
            update["version"] = stored.version + 1
            new = Job.model_validate({**stored.model_dump(), **_dumped(update)})
            self._check_room(new, "for this write")
            for field in CLAIM_CHECKED:
                if field in changes.fields:
                    self._check_out(job.id, field, getattr(new, field), stored.attempts if field == "result" else None)
            self._jobs[job.id] = new
            if changes.run is not None:
                self._write_run(changes.run)
            for namespace in changes.invalidate_caches:
                self.caches.write_invalidation(new.tenant, new.scope or "", namespace, new.id,
                                       new.finished_at or isoformat(utcnow()))
            if changes.task_completion is not None:
                self.caches.write_completion(new.tenant, new.scope or "", changes.task_completion)
            return changes.written_on(job)  # like DynamoDB's: the caller's job, no object read back

    def cut_progress_message(self, job: Job, expected_status: JobStatus, limit: int) -> Job:
        with self._lock:
            stored = self._jobs.get(job.id)
            if stored is None or stored.status != expected_status or stored.version != job.version:
                raise StaleJobError(f"job {job.id} changed since it was read")
            progress = stored.progress.model_copy(update={"message": clip(stored.progress.message, limit)})
            new = stored.model_copy(update={"progress": progress, "version": stored.version + 1})
            self._jobs[job.id] = new
            return ChangeSet({"progress": progress}).written_on(job)  # like DynamoDB's: no object read back

    def apply_expected(self, job_id: str, tenant: str, expected: Expectation, changes: ChangeSet, *,
                       mark_gone: bool) -> ExpectedWrite:
        changes.check_unread()
        with self._lock:
            stored = self._jobs.get(job_id)
            if stored is None:
                return ExpectedWrite(False, None)
            if stored.tenant != tenant or not _meets(stored, expected):
                # a claim refused by its own earlier try (that try's answer lost): written
                return ExpectedWrite(stored.tenant == tenant and changes.claim_landed_in(stored),
                                     self._read(stored, fetch=CLAIM_CHECKED, mark_gone=mark_gone))
            update = {k: (None if v is REMOVE else v) for k, v in changes.fields.items()}
            update["version"] = stored.version + 1
            new = Job.model_validate({**stored.model_dump(), **_dumped(update)})
            self._check_room(new, "for this write")
            self._jobs[job_id] = new
            return ExpectedWrite(True, self._read(new, fetch=CLAIM_CHECKED, mark_gone=mark_gone))

    def record_progress(self, job_id: str, attempt: int, progress: Progress, *, announce: bool = False,
                        mark: Optional[float] = None) -> Job:
        with self._lock:
            stored = self._jobs.get(job_id)
            if stored is None or stored.status != JobStatus.RUNNING or stored.attempts != attempt:
                raise progress_refusal(job_id, attempt, progress.percent, stored)
            if stored.cancel_requested:
                return self._read(stored, fetch=())
            if progress.percent < stored.progress.percent:
                raise progress_refusal(job_id, attempt, progress.percent, stored)
            if announce and stored.event_mark != mark:
                raise StaleJobError(f"job {job_id}'s event mark moved since it was read")
            update: dict[str, Any] = {"progress": progress, "version": stored.version + 1}
            if announce:
                update.update(event_percent=progress.percent, event_attempt=attempt)
            new = stored.model_copy(update=update)
            if self._record_bytes(new) > ITEM_MAX_BYTES:
                raise ProgressRejectedError(
                    f"progress of job {job_id} does not fit its record (400 KB with its payload): "
                    "send a shorter message or smaller details")
            self._jobs[job_id] = new
            return self._read(new, fetch=())  # like DynamoDB's answer: no object read back

    def create_child(self, child: Job, attempt: int) -> None:
        with self._lock:
            if child.id in self._jobs:
                raise StaleJobError(f"job {child.id} already exists")
            parent = self._running_parent(child.parent_id, child.id, attempt)
            if parent.cancel_requested:
                raise JobCancelledError(f"job {parent.id} was canceled: child {child.id} is not spawned")
            listing = parent.model_copy(update={"children": [*parent.children, child.id], "version": parent.version + 1})
            self._check_room(listing, f"to list child {child.id}")
            self._check_out(child.id, "payload", child.payload)
            self._jobs[child.id] = child.model_copy(deep=True)
            self._jobs[parent.id] = listing

    def add_child(self, parent_id: str, child_id: str, attempt: int) -> None:
        with self._lock:
            listed = self._jobs.get(parent_id)
            if listed is not None and child_id in listed.children:
                return
            parent = self._running_parent(parent_id, child_id, attempt)
            self._jobs[parent_id] = parent.model_copy(
                update={"children": [*parent.children, child_id], "version": parent.version + 1})

    def _running_parent(self, parent_id: Optional[str], child_id: str, attempt: int) -> Job:
        """The parent, while `attempt` is its running attempt (the lock held)."""
        parent = self._jobs.get(parent_id) if parent_id is not None else None
        if parent is None:
            raise JobNotFoundError(f"job {parent_id} does not exist; cannot list child {child_id}")
        if parent.status != JobStatus.RUNNING or parent.attempts != attempt:
            raise AttemptEndedError.refusing(parent.id, attempt, f"child {child_id} is not spawned")
        return parent

    def runs(self, job_id: str) -> list[Run]:
        return [r for (jid, _), r in sorted(self._runs.items()) if jid == job_id]

    def hold_artifacts(self, artifacts: Any) -> None:
        """`artifacts` (an InMemoryArtifactStore) keeps this store's jobs' artifacts, as the
        DynamoDB adapter keeps them in the job's partition: `keep_parts` moves theirs too."""
        self._artifacts.append(artifacts)

    def keep_parts(self, job_id: str, until: int) -> int:
        with self._lock:
            runs = [k for k in self._runs if k[0] == job_id and self._run_expiry.get(k, 0) < until]
            for key in runs:
                self._run_expiry[key] = until
        return len(runs) + sum(artifacts.keep(job_id, until) for artifacts in self._artifacts)

    def expire(self, now: int) -> None:
        """What DynamoDB's TTL may have done by `now` (epoch seconds): the job records and runs
        whose `expires_at` is past, deleted; records only, their objects stay."""
        with self._lock:
            for job_id in [i for i, j in self._jobs.items() if j.expires_at is not None and j.expires_at < now]:
                del self._jobs[job_id]
                self._refs.pop(job_id, None)
                self._purging.discard(job_id)
            for key in [k for k, expires_at in self._run_expiry.items() if expires_at < now]:
                del self._runs[key], self._run_expiry[key]

    def due(self, now: str, limit: int, after: Optional[str] = None) -> JobPage:
        places = sorted(
            (f"{j.due_at}#{j.id}", j) for j in self._jobs.values()
            if j.due_at and j.due_at <= now
        )
        rest = [(place, j) for place, j in places if after is None or place > after]
        page = rest[:limit]
        cursor = page[-1][0] if len(rest) > limit else None
        return JobPage([self._read(j, fetch=()) for _, j in page], cursor)  # like a listing: claim-checks not fetched

    def count_unfinished(self, tenant: str, at_most: int) -> int:
        return min(at_most, sum(1 for j in self._jobs.values() if j.tenant == tenant and not j.status.is_terminal))

    # The clean-up's reads and deletes (InMemoryFinishedJobs), what DynamoFinishedJobs does
    # through the table: the by_finished_day index, the purging mark, the partition's items.

    def finished_on(self, day: str, before: str) -> list[str]:
        """Ids of the jobs finished on `day` (yyyy-mm-dd) and before `before` (a timestamp),
        sorted; a job being purged is still found (its purge finishes)."""
        with self._lock:
            return sorted(j.id for j in self._jobs.values()
                          if j.finished_at and j.finished_at[:10] == day and j.finished_at < before)

    def mark_purging(self, job_id: str) -> None:
        """From now on every read takes the job for removed; a job already gone is left so."""
        with self._lock:
            if job_id in self._jobs:
                self._purging.add(job_id)

    def delete_runs(self, job_id: str) -> int:
        """Deletes the job's runs; how many there were."""
        with self._lock:
            keys = [k for k in self._runs if k[0] == job_id]
            for key in keys:
                del self._runs[key]
                self._run_expiry.pop(key, None)
            return len(keys)

    def delete_job(self, job_id: str) -> int:
        """Deletes the job's record (its purging mark and claim-check references with it): 1,
        or 0 when it was already gone. The objects in the blob store are the caller's."""
        with self._lock:
            self._refs.pop(job_id, None)
            self._purging.discard(job_id)
            return 0 if self._jobs.pop(job_id, None) is None else 1

    def _write_run(self, run: Run) -> None:
        key = (run.job_id, run.attempt)
        previous = self._runs.get(key)
        if previous is not None and run.started_at is None:
            run = run.model_copy(update={"started_at": previous.started_at})
        self._runs[key] = run
        written = parse_time(run.finished_at).timestamp() if run.finished_at else time.time()
        self._run_expiry[key] = int(written) + RECORD_PART_KEEP_S  # as the DynamoDB adapter's


def _listed_by(job: Job, query: JobQuery, kind: Optional[str]) -> bool:
    """Whether the index `kind` (cursors.listed_index) holds `job` in the query's partition."""
    if job.tenant != query.tenant:
        return False
    if kind == "status":
        return job.status == query.status
    return kind is None or job.type == query.type


def _meets(job: Job, expected: Expectation) -> bool:
    """`expected` checked the way the DynamoDB adapter's condition expression checks it."""
    def plain(v: Any) -> Any:
        return v.value if isinstance(v, JobStatus) else v

    def value(field: str) -> Any:
        return plain(getattr(job, field))

    return (all(value(f) == plain(v) for f, v in expected.equal.items())
            and all(value(f) in {plain(o) for o in options} for f, options in expected.one_of.items())
            and all(value(f) is None or value(f) <= plain(v) for f, v in expected.absent_or_at_most.items()))


def _dumped(update: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.model_dump() if hasattr(v, "model_dump") else v) for k, v in update.items()}


def _encode_cursor(partition: str, key: tuple[str, str]) -> str:
    return write_cursor([partition, *key])


def _decode_cursor(cursor: str, partition: str) -> tuple[str, str]:
    """A cursor names the listing it came from: one of another tenant or filter is refused."""

    def after(plain: Any) -> tuple[str, str]:
        listing, created_at, job_id = plain
        if listing != partition:
            raise ValueError("cursor belongs to another listing")
        return check_position(created_at, job_id)

    return read_cursor(cursor, after)
