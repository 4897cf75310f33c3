"""In-memory twin of the FinishedJobs port (retention.py), over the in-memory store, artifacts
and blobs: a finished job found by its day and removed whole."""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Iterator

from chalicelib.adapters.dynamodb_items import blob_prefix
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.adapters.memory_jobs import InMemoryJobStore
from chalicelib.domain.job import isoformat


_END_OF_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)


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
        with self._store._lock:  # marked first, like the DynamoDB adapter: read as removed from now on
            if job_id in self._store._jobs:
                self._store._purging.add(job_id)
        # Objects first, like the DynamoDB adapter (an interrupted purge is found again): the
        # claim-checks and whatever else is under the job's prefix (results of losing attempts).
        old = [k for page in self._blobs.keys_older_than(blob_prefix(job_id), _END_OF_TIME) for k in page]
        if old:
            self._blobs.delete(old)
        with self._store._lock:
            for key in [k for k in self._store._runs if k[0] == job_id]:
                del self._store._runs[key]
                deleted += 1
        for key in [k for k in self._artifacts.items if k[0] == job_id]:
            artifact = self._artifacts.items.pop(key)
            if artifact.blob_key:
                self._blobs.delete([artifact.blob_key])
            deleted += 1
        with self._store._lock:  # the job last, as the DynamoDB adapter deletes its item
            self._store._refs.pop(job_id, None)
            self._store._purging.discard(job_id)
            if self._store._jobs.pop(job_id, None) is not None:
                deleted += 1
        return deleted
