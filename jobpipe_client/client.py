"""`JobpipeClient`: submit, read, wait for, list and cancel jobs over the jobpipe HTTP API."""
from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import requests

from jobpipe_client.errors import JobpipeClientError, JobpipeError, WaitTimeoutError
from jobpipe_client.polling import Backoff, changed, is_final
from jobpipe_client.transport import FailoverTransport

Job = dict[str, Any]
JobRef = Union[str, Mapping[str, Any]]
OnChange = Callable[[Job], None]
BATCH_LIMIT = 100  # ids per POST /jobs/status
PAGE_LIMIT = 100  # jobs per GET /jobs page


class JobpipeClient:
    def __init__(
        self,
        base_url: str,
        token: str,
        fallback_urls: Sequence[str] = (),
        timeout: float = 10.0,
        *,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Callable[[], Backoff] = Backoff,
    ) -> None:
        """`base_url` is tried first on every call, then each of `fallback_urls`; `timeout` is
        per request, in seconds. `sleep`, `clock` and `backoff` pace `wait` (swappable in tests)."""
        self.transport = FailoverTransport([base_url, *fallback_urls], token=token, timeout_s=timeout, session=session)
        self._sleep = sleep
        self._clock = clock
        self._backoff = backoff

    # -- calls ------------------------------------------------------------------------------

    def submit(
        self,
        type: str,
        payload: Optional[Mapping[str, Any]] = None,
        priority: Optional[str] = None,
        delay_seconds: int = 0,
        scope: Optional[str] = None,
        idempotency_key: Optional[str] = None,
        run_at: Union[datetime, str, None] = None,
    ) -> Job:
        """Submit a job; returns it as queued. It starts `delay_seconds` from now or at `run_at`
        (an aware datetime or ISO 8601 text with a zone), up to 365 days ahead; the job's
        `not_before` says when. Without `idempotency_key` a fresh one is sent, so a submission
        that timed out on one URL and is repeated on a fallback makes one job."""
        body: dict[str, Any] = {"type": type, "payload": dict(payload or {}), "delay_seconds": delay_seconds}
        if run_at is not None:
            body["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
        if priority is not None:
            body["priority"] = priority
        if scope is not None:
            body["scope"] = scope
        headers = {"Idempotency-Key": idempotency_key or f"client-{uuid.uuid4()}"}
        return self._call("POST", "/jobs", json=body, headers=headers)

    def get(self, job_id: str) -> Job:
        """The job; raises JobpipeClientError (code `job_not_found`) for an unknown id."""
        return self._call("GET", f"/jobs/{_path_id(job_id)}")

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, or ask a running one to stop (`cancel_requested`)."""
        return self._call("DELETE", f"/jobs/{_path_id(job_id)}")

    def status_many(self, job_ids: Iterable[str]) -> dict[str, Job]:
        """Jobs by id in request order, one request per 100 ids; an unknown id maps to
        `{"id", "status": "not_found"}`."""
        ids = list(dict.fromkeys(job_ids))
        found: dict[str, Job] = {}
        for start in range(0, len(ids), BATCH_LIMIT):
            answer, _ = self._status_batch(ids[start : start + BATCH_LIMIT], None)
            found.update(answer or {})
        return found

    def list(self, status: Optional[str] = None, type: Optional[str] = None, limit: Optional[int] = None) -> Iterator[Job]:
        """The tenant's jobs, newest first, following `next_cursor` until `limit` jobs (or all)."""
        remaining = limit
        cursor: Optional[str] = None
        while remaining is None or remaining > 0:
            params = {"status": status, "type": type, "cursor": cursor,
                      "limit": min(PAGE_LIMIT, remaining) if remaining is not None else PAGE_LIMIT}
            page = self._call("GET", "/jobs", params={k: v for k, v in params.items() if v is not None})
            for job in page["jobs"]:
                yield job
            if remaining is not None:
                remaining -= len(page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor:
                return

    # -- waiting ----------------------------------------------------------------------------

    def wait(self, job: JobRef, timeout: Optional[float] = None, on_change: Optional[OnChange] = None) -> Job:
        """Poll until the job completes, fails or is canceled; returns its final state.
        Pass the job `submit` returned to start from it instead of reading it at once.
        `on_change(job)` sees each new state. Raises WaitTimeoutError after `timeout` s."""
        job_id, known = _ref(job)
        etag: Optional[str] = None

        def poll() -> dict[str, Job]:
            nonlocal etag
            fresh, etag = self._get_conditional(job_id, etag)
            return {job_id: fresh} if fresh is not None else {}

        return self._watch({job_id: known}, poll, timeout, on_change)[job_id]

    def wait_many(
        self, jobs: Iterable[JobRef], timeout: Optional[float] = None, on_change: Optional[OnChange] = None
    ) -> dict[str, Job]:
        """`wait` for several jobs with one batch request per poll; unknown ids end as
        `not_found`. Returns the final states by id, in the order given."""
        known = dict(_ref(job) for job in jobs)
        ids = list(known)
        etags: dict[int, Optional[str]] = {}

        def poll() -> dict[str, Job]:
            fresh: dict[str, Job] = {}
            for start in range(0, len(ids), BATCH_LIMIT):
                answer, etags[start] = self._status_batch(ids[start : start + BATCH_LIMIT], etags.get(start))
                fresh.update(answer or {})
            return fresh

        return self._watch(known, poll, timeout, on_change)

    def _watch(
        self,
        known: dict[str, Optional[Job]],
        poll: Callable[[], dict[str, Job]],
        timeout: Optional[float],
        on_change: Optional[OnChange],
    ) -> dict[str, Job]:
        def absorb(fresh: dict[str, Job]) -> bool:
            moved = False
            for job_id, job in fresh.items():
                if job_id in known and changed(known[job_id], job):
                    known[job_id] = job
                    moved = True
                    if on_change is not None:
                        on_change(job)
            return moved

        deadline = None if timeout is None else self._clock() + timeout
        for job in known.values():
            if job is not None and on_change is not None:
                on_change(job)
        if any(job is None for job in known.values()):
            absorb(poll())
        backoff = self._backoff()
        moved = True
        while not all(is_final(job) for job in known.values()):
            delay = backoff.next_delay(moved)
            if deadline is not None:
                remaining = deadline - self._clock()
                if remaining <= 0:
                    raise WaitTimeoutError(timeout or 0.0, {i: j for i, j in known.items() if j is not None})
                delay = min(delay, remaining)
            self._sleep(delay)
            moved = absorb(poll())
        return known  # type: ignore[return-value]  # every entry is final, so none is None

    # -- plumbing ---------------------------------------------------------------------------

    def _get_conditional(self, job_id: str, etag: Optional[str]) -> tuple[Optional[Job], Optional[str]]:
        """(job, etag), or (None, etag) when the job has not changed since `etag` (304)."""
        headers = {"If-None-Match": etag} if etag else {}
        response = self.transport.request("GET", f"/jobs/{_path_id(job_id)}", headers=headers)
        return _answer(response), response.headers.get("ETag", etag)

    def _status_batch(self, ids: list[str], etag: Optional[str]) -> tuple[Optional[dict[str, Job]], Optional[str]]:
        headers = {"If-None-Match": etag} if etag else {}
        response = self.transport.request("POST", "/jobs/status", json={"job_ids": ids}, headers=headers)
        answer = _answer(response)
        if answer is None:
            return None, etag
        return {i: answer["jobs"][i] for i in answer["job_ids"]}, response.headers.get("ETag")

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        answer = _answer(self.transport.request(method, path, **kwargs))
        if answer is None:
            raise JobpipeError(f"{method} {path} answered 304 to a request that was not conditional")
        return answer


def _ref(job: JobRef) -> tuple[str, Optional[Job]]:
    if isinstance(job, Mapping):
        return str(job["id"]), dict(job)
    return str(job), None


def _path_id(job_id: str) -> str:
    """Ids go into the path as they are; one that would change the path is refused here."""
    job_id = str(job_id).strip()
    if not job_id or any(c in job_id for c in "/?#% ") or job_id in (".", ".."):
        raise JobpipeClientError(400, "invalid_job_id", f"{job_id!r} is not a job id")
    return job_id


def _answer(response: requests.Response) -> Any:
    """The JSON of a 2xx, None for a 304; a 4xx becomes JobpipeClientError with the API's code."""
    if response.status_code == 304:
        return None
    if 400 <= response.status_code < 500:
        raise _refusal(response)
    try:
        return response.json()
    except ValueError:
        raise JobpipeError(
            f"{response.request.method} {response.url} answered HTTP {response.status_code} that is not JSON"
        ) from None


def _refusal(response: requests.Response) -> JobpipeClientError:
    try:
        body = response.json()
    except ValueError:
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return JobpipeClientError(response.status_code, str(error["code"]), str(error.get("message", "")), error.get("details"))
    # Not jobpipe's error shape (a gateway or proxy answered): keep what it said.
    message = body.get("message") if isinstance(body, dict) else None
    return JobpipeClientError(
        response.status_code, f"http_{response.status_code}", str(message or response.text[:200] or response.reason)
    )
