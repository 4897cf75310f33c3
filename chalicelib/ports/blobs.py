"""Large data: objects in the jobs bucket (`BlobStore`) and a job's artifacts (`ArtifactStore`)."""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Collection, Iterator, Optional, Protocol

from chalicelib.defaults import ARTIFACT_PAGE


class BlobStore(Protocol):
    """Objects in the jobs bucket, by key."""

    def put(self, key: str, data: bytes, content_type: str) -> None:
        """Raises StoreUnavailableError."""

    def get(self, key: str) -> bytes:
        """Raises BlobNotFoundError when the object is gone, StoreUnavailableError otherwise."""

    def delete(self, keys: list[str]) -> int:
        """Delete the objects (missing ones are fine); returns how many were asked for."""

    def presigned_url(self, key: str, expires_s: int, *, content_disposition: Optional[str] = None) -> str:
        """A GET URL for the object, valid `expires_s` seconds; its answer carries
        `content_disposition` as its Content-Disposition header when given."""

    def keys_older_than(self, prefix: str, before: datetime) -> Iterator[list[str]]:
        """Pages of keys under `prefix` last modified before `before`: one page per page of the
        listing (up to 1000 keys listed), holding those of its keys old enough, so a page may be
        empty, and at least one page. Empty pages are yielded because the temporary files'
        clean-up checks for a cancel (and its time) after each page it reads, and a prefix of
        recent objects is a listing of empty pages; yielding one costs no request."""


@dataclass(frozen=True)
class ArtifactInfo:
    job_id: str
    name: str
    content_type: str
    size: int
    created_at: str
    location: str  # "inline" (in the job's partition) or "s3"

    def public(self) -> dict[str, Any]:
        return {"name": self.name, "content_type": self.content_type, "size": self.size,
                "created_at": self.created_at, "location": self.location}


@dataclass(frozen=True)
class Artifact:
    info: ArtifactInfo
    content: Optional[bytes] = None  # inline artifacts
    blob_key: Optional[str] = None  # artifacts kept in S3


@dataclass
class ArtifactPage:
    artifacts: list[ArtifactInfo]
    cursor: Optional[str] = None  # where the next page starts; None when no artifact follows


class ArtifactStore(Protocol):
    def put(self, job_id: str, name: str, data: bytes, content_type: str, *,
            attempt: Optional[int] = None, write: int = 1, replaces: Collection[int] = ()) -> ArtifactInfo:
        """Store (or replace) a job's artifact: small text inline, the rest in S3. With
        `attempt` (the attempt writing it) only while that attempt is the job's running one:
        else AttemptEndedError, and nothing is stored or replaced. `write`: which of that
        attempt's writes of `name` this is (1, 2, ...): each stores its object under a key of
        its own, so a refused one cannot have overwritten (or, deleting its own, removed) the
        object an earlier write stored. `replaces`: that attempt's earlier writes of `name`
        whose objects no item names once this one lands (the last write that landed, and those
        after it whose outcome is not known: uploaded, the item maybe written); their objects
        are deleted once it lands."""

    def list(self, job_id: str, *, limit: int = ARTIFACT_PAGE, cursor: Optional[str] = None) -> ArtifactPage:
        """A page of a job's artifacts, by name: at most `limit`, from where `cursor` (a page's
        of this job's listing) left off, with a cursor only while more follow. Raises
        InvalidRequestError for a cursor that is not one (another job's, made by hand)."""

    def get(self, job_id: str, name: str) -> Artifact:
        """Raises ArtifactNotFoundError."""
