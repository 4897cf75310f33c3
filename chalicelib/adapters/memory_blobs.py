"""In-memory twins of the BlobStore and ArtifactStore ports (same contracts as S3 and the
DynamoDB artifact records)."""
from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Collection, Iterator, Optional
from urllib.parse import urlencode

from chalicelib.adapters.artifacts import blob_key as artifact_blob_key
from chalicelib.adapters.artifacts import (
    check_content_type,
    check_name,
    discard_replaced,
    keeps_inline,
    page_cursor,
    read_page_cursor,
)
from chalicelib.defaults import ARTIFACT_PAGE, INLINE_LIMIT_BYTES, RECORD_PART_KEEP_S
from chalicelib.domain.errors import ArtifactNotFoundError, AttemptEndedError, BlobNotFoundError
from chalicelib.domain.job import isoformat, utcnow
from chalicelib.domain.status import JobStatus
from chalicelib.ports import Artifact, ArtifactInfo, ArtifactPage


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

    def presigned_url(self, key: str, expires_s: int, *, content_disposition: Optional[str] = None) -> str:
        query: dict[str, Any] = {"expires_in": expires_s}
        if content_disposition is not None:
            query["response-content-disposition"] = content_disposition
        return f"memory://jobs-bucket/{key}?{urlencode(query)}"

    def keys_older_than(self, prefix: str, before: datetime) -> Iterator[list[str]]:
        """Paged as S3 lists: 1000 keys a page in key order, each page its old keys (maybe none)."""
        listed = sorted(k for k in self.objects if k.startswith(prefix))
        for start in range(0, max(1, len(listed)), 1000):
            # a key deleted since it was listed is left out, as S3 lists what is there
            yield [k for k in listed[start : start + 1000] if k in self.objects and self.objects[k][2] < before]


class InMemoryArtifactStore:
    def __init__(self, blobs: InMemoryBlobStore, *, inline_limit: int = INLINE_LIMIT_BYTES,
                 clock: Callable[[], datetime] = utcnow, jobs: Optional[Any] = None) -> None:
        """`jobs`: the job store whose records an attempt's artifact is checked against (the
        DynamoDB adapter keeps both in one table); without it nothing is checked."""
        self._blobs = blobs
        self._inline_limit = inline_limit
        self._clock = clock
        self._jobs = jobs
        self.items: dict[tuple[str, str], Artifact] = {}
        # (job id, name) -> the artifact record's `expires_at`, as the DynamoDB adapter writes it
        self.expiry: dict[tuple[str, str], int] = {}
        if jobs is not None:  # its keep_parts moves these too, as DynamoDB's moves the partition's
            jobs.hold_artifacts(self)

    def put(self, job_id: str, name: str, data: bytes, content_type: str, *,
            attempt: Optional[int] = None, write: int = 1, replaces: Collection[int] = ()) -> ArtifactInfo:
        check_name(name)
        check_content_type(content_type)
        inline = keeps_inline(data, content_type, self._inline_limit)
        now = self._clock()
        info = ArtifactInfo(job_id, name, content_type, len(data), isoformat(now), "inline" if inline else "s3")
        key = None if inline else artifact_blob_key(job_id, name, attempt, write)
        if key is not None:
            self._blobs.put(key, data, content_type)
        if attempt is not None and self._jobs is not None:
            job = self._jobs.get(job_id, fetch=(), mark_gone=False)  # the record decides, as DynamoDB's condition
            if job is None or job.status != JobStatus.RUNNING or job.attempts != attempt:
                if key is not None:
                    self._blobs.delete([key])
                raise AttemptEndedError.refusing(job_id, attempt, f"artifact {name} is not stored")
        self.items[(job_id, name)] = Artifact(info, content=bytes(data)) if key is None else Artifact(info, blob_key=key)
        self.expiry[(job_id, name)] = int(now.timestamp()) + RECORD_PART_KEEP_S
        discard_replaced(self._blobs, job_id, name, attempt, replaces)
        return info

    def list(self, job_id: str, *, limit: int = ARTIFACT_PAGE, cursor: Optional[str] = None) -> ArtifactPage:
        after = read_page_cursor(cursor, job_id) if cursor else None
        listing = [a.info for (jid, name), a in sorted(self.items.items())
                   if jid == job_id and (after is None or name > after)]
        page = listing[:limit]
        return ArtifactPage(page, page_cursor(job_id, page[-1].name) if len(listing) > limit else None)

    def delete_all(self, job_id: str) -> list[Artifact]:
        """Deletes the job's artifact records and returns them (their objects, the caller's):
        what the clean-up deletes with the job's partition in DynamoDB."""
        keys = [k for k in self.items if k[0] == job_id]
        for key in keys:
            self.expiry.pop(key, None)
        return [self.items.pop(key) for key in keys]

    def keep(self, job_id: str, until: int) -> int:
        """The job's artifacts' part of JobStore.keep_parts: those expiring before `until`
        expire then; how many."""
        kept = [k for k in self.items if k[0] == job_id and self.expiry.get(k, 0) < until]
        for key in kept:
            self.expiry[key] = until
        return len(kept)

    def expire(self, now: int) -> None:
        """What DynamoDB's TTL may have done by `now` (epoch seconds): the artifact records whose
        `expires_at` is past, deleted; their objects stay."""
        for key in [k for k, expires_at in self.expiry.items() if expires_at < now]:
            del self.items[key], self.expiry[key]

    def get(self, job_id: str, name: str) -> Artifact:
        try:
            return self.items[(job_id, name)]
        except KeyError:
            raise ArtifactNotFoundError.of(job_id, name) from None
