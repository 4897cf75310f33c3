"""What a job handler gets: its job, progress reporting, cancellation and the time it has left."""
from __future__ import annotations

import json
import threading
import time
from typing import Any, Callable, Optional, Union

from chalicelib.domain.errors import InvalidArtifactError, JobCancelledError, JobTimeoutError
from chalicelib.domain.job import Job
from chalicelib.ports import ArtifactInfo

# (job id, name, bytes, content type) -> what was stored
StoreArtifact = Callable[[str, str, bytes, str], ArtifactInfo]

# A cancel request is looked up in the store at most this often by ctx.cancelled().
CANCEL_POLL_INTERVAL_S = 1.0


class JobContext:
    def __init__(
        self,
        job: Job,
        *,
        report: Callable[[Job, float, Optional[str], Optional[str]], Job],
        reload: Callable[[str], Optional[Job]],
        deadline: float,
        monotonic: Callable[[], float] = time.monotonic,
        store_artifact: Optional[StoreArtifact] = None,
    ) -> None:
        self._job = job
        self._store_artifact = store_artifact
        self._report = report
        self._reload = reload
        self._deadline = deadline
        self._monotonic = monotonic
        self._last_cancel_check = monotonic()
        self._expired = threading.Event()
        self._lock = threading.Lock()

    @property
    def job(self) -> Job:
        return self._job

    @property
    def job_id(self) -> str:
        return self._job.id

    @property
    def attempt(self) -> int:
        return self._job.attempts

    @property
    def tenant(self) -> str:
        return self._job.tenant

    def progress(self, percent: float, step: Optional[str] = None, message: Optional[str] = None) -> None:
        """Record progress for this attempt. The write is conditional: percent never decreases
        (ProgressRejectedError). Raises JobCancelledError when a cancel was requested, so a
        handler that reports progress stops cooperatively."""
        self._check_expired()
        with self._lock:
            self._job = self._report(self._job, percent, step, message)
        if self._job.cancel_requested:
            raise JobCancelledError(f"job {self._job.id} was canceled")

    def artifact(
        self, name: str, data: Union[bytes, str, dict, list], content_type: Optional[str] = None
    ) -> ArtifactInfo:
        """Store an output of this job under `name` (replacing one of the same name): bytes
        as given, str as UTF-8 text, dict/list as JSON. Small text stays in the job's record,
        the rest goes to S3. Raises InvalidArtifactError."""
        self._check_expired()
        if self._store_artifact is None:
            raise InvalidArtifactError("this worker has no artifact store configured")
        if isinstance(data, (bytes, bytearray)):
            raw, default_type = bytes(data), "application/octet-stream"
        elif isinstance(data, str):
            raw, default_type = data.encode(), "text/plain; charset=utf-8"
        elif isinstance(data, (dict, list)):
            raw, default_type = json.dumps(data, separators=(",", ":")).encode(), "application/json"
        else:
            raise InvalidArtifactError(f"artifact data must be bytes, str, dict or list, not {type(data).__name__}")
        return self._store_artifact(self._job.id, name, raw, content_type or default_type)

    def cancelled(self) -> bool:
        """True once a cancel was requested; reads the store at most once a second."""
        if not self._job.cancel_requested:
            now = self._monotonic()
            if now - self._last_cancel_check >= CANCEL_POLL_INTERVAL_S:
                self._last_cancel_check = now
                fresh = self._reload(self._job.id)
                if fresh is not None and fresh.cancel_requested:
                    with self._lock:
                        self._job = self._job.model_copy(update={"cancel_requested": True})
        return self._job.cancel_requested

    def check_cancelled(self) -> None:
        """Raise JobCancelledError if a cancel was requested."""
        if self.cancelled():
            raise JobCancelledError(f"job {self._job.id} was canceled")

    def remaining_ms(self) -> int:
        """Milliseconds before this attempt's timeout."""
        return max(0, int((self._deadline - self._monotonic()) * 1000))

    def expire(self) -> None:
        """Called by the runner when the attempt timed out: later calls from a handler that
        is still running raise instead of writing."""
        self._expired.set()

    def _check_expired(self) -> None:
        if self._expired.is_set():
            raise JobTimeoutError(f"attempt {self.attempt} of job {self.job_id} timed out")

    def replace_job(self, job: Job) -> None:
        with self._lock:
            self._job = job

    def as_dict(self) -> dict[str, Any]:
        return {"job_id": self.job_id, "attempt": self.attempt, "tenant": self.tenant}
