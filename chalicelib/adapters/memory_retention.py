"""In-memory twin of the FinishedJobs port (retention.py), over the in-memory store, artifacts
and blobs: a finished job found by its day and removed whole."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Iterator

from chalicelib.adapters.dynamodb_items import blob_prefix
from chalicelib.adapters.memory_blobs import InMemoryArtifactStore, InMemoryBlobStore
from chalicelib.adapters.memory_jobs import InMemoryJobStore
from chalicelib.domain.job import isoformat
from chalicelib.ports import FinishedPage


_END_OF_TIME = datetime(9999, 1, 1, tzinfo=timezone.utc)


class InMemoryFinishedJobs:
    """Same contract as the index-backed adapter, over the in-memory store."""

    def __init__(self, store: InMemoryJobStore, artifacts: InMemoryArtifactStore, blobs: InMemoryBlobStore) -> None:
        self._store = store
        self._artifacts = artifacts
        self._blobs = blobs

    def finished_before(self, cutoff: datetime, *, since: datetime, page_size: int = 100) -> Iterator[FinishedPage]:
        """Day by day, as the DynamoDB adapter reads the index (without its shards): a day with
        no job is one empty page, as its Queries are empty pages."""
        day = since.astimezone(timezone.utc).date()
        last_day = cutoff.astimezone(timezone.utc).date()
        upper = isoformat(cutoff)
        while day <= last_day:
            ids = self._store.finished_on(day.isoformat(), upper)
            for start in range(0, max(1, len(ids)), page_size):
                yield FinishedPage(day, ids[start : start + page_size])
            day += timedelta(days=1)

    def purge(self, job_id: str) -> int:
        self._store.mark_purging(job_id)  # marked first, like the DynamoDB adapter: read as removed from now on
        # Objects first, like the DynamoDB adapter (an interrupted purge is found again): the
        # claim-checks, the artifacts' objects and whatever else is under the job's prefix
        # (results of losing attempts).
        old = [k for page in self._blobs.keys_older_than(blob_prefix(job_id), _END_OF_TIME) for k in page]
        if old:
            self._blobs.delete(old)
        deleted = self._store.delete_runs(job_id)
        for artifact in self._artifacts.delete_all(job_id):
            if artifact.blob_key:
                self._blobs.delete([artifact.blob_key])
            deleted += 1
        return deleted + self._store.delete_job(job_id)  # the job last, as the DynamoDB adapter deletes its item
