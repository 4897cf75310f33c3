"""`JobpipeClient`: submit, read, wait for, list and cancel jobs, and fetch their artifacts, over
the jobpipe HTTP API."""
from __future__ import annotations

import io
import os
import time
import uuid
from datetime import datetime
from typing import Any, BinaryIO, Callable, Iterable, Iterator, Mapping, Optional, Sequence, Union

import requests

from jobpipe_client.answers import answer, is_job, is_job_types, is_number, is_page
from jobpipe_client.artifact_file import PathTarget, check_target, write_whole
from jobpipe_client.artifacts import (
    ARTIFACT_PAGE_LIMIT,
    artifact_name,
    fetch,
    is_artifact_page,
    is_download_link,
    is_inline,
)
from jobpipe_client.errors import (
    JobpipeAnswerError,
    JobpipeClientError,
    JobpipeError,
    JobpipeInputError,
    JobpipeUnavailableError,
    ResultGoneError,
    SubmitInterruptedError,
    SubmitOutcomeUnknownError,
)
from jobpipe_client.inputs import batch_id, check_idempotency_key, check_payload, check_start, path_id, query_text
from jobpipe_client.polling import DEFAULT_GIVE_UP_AFTER_S, Backoff
from jobpipe_client.transport import FailoverTransport
from jobpipe_client.waiting import BATCH_LIMIT, Job, JobRef, JobWatch, OnChange, OnOutage, status_batch

PAGE_LIMIT = 100  # jobs per GET /jobs page


def _start(delay_seconds: int, run_at: Union[datetime, str, None]) -> dict[str, Any]:
    """When a new job starts, as POST /jobs and POST /jobs/{id}/rerun take it."""
    start: dict[str, Any] = {"delay_seconds": check_start(delay_seconds, run_at)}
    if run_at is not None:
        start["run_at"] = run_at.isoformat() if isinstance(run_at, datetime) else run_at
    return start


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
        per request, in seconds, body included (a throttled request is retried within it). `sleep`,
        `clock` and `backoff` pace `wait` (its polls, and its pauses while no poll is answered)
        and those retries (swappable in tests); `clock` is kept as `self.clock`, the clock a wait's
        `started` is read on. ValueError for a
        URL that is not http(s) with a host, a token that cannot be sent in a header (printable
        ASCII only), `fallback_urls` given as one string rather than a list (None is none), or a
        timeout that is not a number above 0."""
        if isinstance(fallback_urls, str):  # it would be read one character at a time
            raise ValueError("fallback_urls is a list of URLs, not one string: "
                             "JobpipeClient(url, token, fallback_urls=[url2, url3])")
        if not isinstance(base_url, str) or not all(isinstance(url, str) for url in fallback_urls or ()):
            raise ValueError("the API's URLs are text: JobpipeClient('https://...', token, ['https://...'])")
        self.transport = FailoverTransport([base_url, *(fallback_urls or ())], token=token, timeout_s=timeout,
                                           session=session, sleep=sleep, clock=clock)
        self._sleep = sleep
        self.clock = clock
        self._backoff = backoff

    def close(self) -> None:
        """Close the client's pooled connections (a session given to it is left open). A client
        is also a context manager: `with JobpipeClient(url, token) as client: ...`."""
        self.transport.close()

    def __enter__(self) -> "JobpipeClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

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
        that timed out on one URL and is repeated on a fallback makes one job. When no URL gave a
        usable answer but one may have received it (no answer in time, a 5xx, an answer cut off
        or not a job), raises SubmitOutcomeUnknownError carrying the key: submitting again with
        it is safe; Ctrl-C while it waits for the answer raises SubmitInterruptedError (a
        KeyboardInterrupt) carrying the key likewise. JobpipeInputError (a ValueError) before any
        request for a key that is not 1 to 255 printable ASCII characters without a space at
        either end, a payload that is no mapping, a delay that is no whole number of seconds, a `run_at`
        that is neither a datetime nor text, or a payload nested more than MAX_PAYLOAD_DEPTH levels deep or holding what JSON
        has no form for (NaN, Infinity, a set, any other object)."""
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else f"client-{uuid.uuid4()}"
        body: dict[str, Any] = {"type": type, "payload": check_payload(payload),
                                **_start(delay_seconds, run_at)}
        if priority is not None:
            body["priority"] = priority
        if scope is not None:
            body["scope"] = scope
        return self._keyed("submit", "/jobs", body, key)

    def rerun(
        self,
        job_id: str,
        *,
        idempotency_key: Optional[str] = None,
        delay_seconds: int = 0,
        run_at: Union[datetime, str, None] = None,
    ) -> Job:
        """Run a finished job (completed, failed or canceled) again: a new job with its type,
        payload, priority and scope, whose `rerun_of` names it; returned as queued. It starts
        now, `delay_seconds` from now or at `run_at`, as `submit`'s does. Keyed as `submit` is
        (a fresh key unless given), with the same outcomes: SubmitOutcomeUnknownError or
        SubmitInterruptedError carrying the key when the request may have arrived unanswered
        (repeating the rerun with it is safe), JobpipeInputError before any request for a key
        that is no key. JobpipeClientError with the API's code for a refusal: `job_not_found`,
        `job_not_finished`, `blob_not_found` (its payload's object is gone), `quota_exceeded`,
        `unknown_job_type`, `idempotency_conflict`."""
        key = check_idempotency_key(idempotency_key) if idempotency_key is not None else f"client-{uuid.uuid4()}"
        return self._keyed("rerun", f"/jobs/{path_id(job_id)}/rerun", _start(delay_seconds, run_at), key)

    def _keyed(self, action: str, path: str, body: dict[str, Any], key: str) -> Job:
        """POST `body` to `path` under Idempotency-Key `key`: the job the API made. A request that
        may have arrived unanswered raises the `action`'s outcome error carrying the key."""
        try:
            return self._call("POST", path, is_job, "a job", json=body, headers={"Idempotency-Key": key})
        except KeyboardInterrupt as exc:  # the request may be out: the key is what repeats it safely
            raise SubmitInterruptedError(key, action) from exc
        except JobpipeAnswerError as exc:  # it arrived, but what it made cannot be read at any URL
            cause = JobpipeUnavailableError(exc.failures, may_have_arrived=True)
            raise SubmitOutcomeUnknownError(cause, key, action) from exc
        except JobpipeUnavailableError as exc:
            if exc.may_have_arrived:
                raise SubmitOutcomeUnknownError(exc, key, action) from exc
            raise

    def job_types(self) -> list[dict[str, Any]]:
        """The job types the API takes, by name: each a dict with `type`, `description`,
        `priority`, `max_attempts`, `timeout_s` and `payload_schema` (the JSON schema its
        payload is checked against), as GET /job-types lists them."""
        return self._call("GET", "/job-types", is_job_types, "a list of job types")["job_types"]

    def get(self, job_id: str) -> Job:
        """The job; raises JobpipeClientError (code `job_not_found`) for an unknown id."""
        return self._call("GET", f"/jobs/{path_id(job_id)}", is_job, "a job")

    def result(self, job_id: str) -> Any:
        """The job's result as recorded (GET /jobs/{id}): None while it has none (not completed,
        or ended without one). Raises ResultGoneError (code `blob_not_found`) when the result
        was kept in S3 and its object is gone, JobpipeClientError (`job_not_found`) for an
        unknown id."""
        job = self.get(job_id)
        if "result" in (job.get("gone") or ()):
            raise ResultGoneError(job)
        return job.get("result")

    def cancel(self, job_id: str) -> Job:
        """Cancel a queued job now, or ask a running one to stop (`cancel_requested`). A cancel is
        safe to send again, so a 2xx that is no job moves it on to the next URL as a read does:
        repeated, it answers the job (a running one already asked to stop) or 409 `job_finished`.
        When a URL that may have applied the cancel gave no usable answer and a fallback then
        answers 409 `job_finished`, the job is read: canceled, it is returned (that cancel was
        this one)."""
        try:
            return self._call("DELETE", f"/jobs/{path_id(job_id)}", is_job, "a job")
        except JobpipeClientError as refusal:
            if refusal.code != "job_finished" or not self.transport.earlier_may_have_arrived:
                raise
            return self._canceled_or_raise(job_id, refusal)

    def _canceled_or_raise(self, job_id: str, refusal: JobpipeClientError) -> Job:
        """The job when it is canceled; otherwise (or when it cannot be read) the refusal."""
        try:
            job = self.get(job_id)
        except JobpipeError:
            raise refusal from None
        if job.get("status") != "canceled":
            raise refusal
        return job

    def status_many(self, job_ids: Iterable[str], *, timeout: Optional[float] = None) -> dict[str, Job]:
        """Jobs by id in request order, one request per 100 ids; an unknown id maps to
        `{"id", "status": "not_found"}`. `timeout` (seconds, None: none) bounds its requests in
        all, as a wait's bounds its polls: each URL gets at most what is left of it (the first at
        least a second), and a fallback none once it has run out; ValueError when it is not a
        number >= 0. An id the API would drop or split (empty, blank, holding a comma) is
        refused before any request (JobpipeClientError `invalid_job_id`), and one with spaces
        at its ends is keyed as the API answers it, trimmed."""
        if timeout is not None and not (is_number(timeout) and timeout >= 0):  # "5" or True is no timeout
            raise ValueError(f"status_many's timeout must be a number of seconds >= 0, not {timeout!r}")
        if isinstance(job_ids, str):  # it would be read one character at a time
            raise ValueError("status_many takes a list of ids: status_many([job_id]), or get(job_id) for one")
        ids = list(dict.fromkeys(map(batch_id, job_ids)))
        found: dict[str, Job] = {}
        with self.transport.bounded_by(None if timeout is None else self.clock() + timeout):
            for start in range(0, len(ids), BATCH_LIMIT):
                answer, _ = status_batch(self.transport, ids[start : start + BATCH_LIMIT], None)
                found.update(answer or {})
        return found

    def list(self, status: Optional[str] = None, type: Optional[str] = None, limit: Optional[int] = None) -> Iterator[Job]:
        """The tenant's jobs, newest first, following `next_cursor` until `limit` jobs (or all).
        Raises JobpipeInputError at the call for a `limit` that is no whole number >= 0 or a
        `status` or `type` that cannot go in a query (a lone surrogate: bytes that were not UTF-8), and
        JobpipeAnswerError while iterating when a cursor comes back a second time (the listing
        loops)."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise JobpipeInputError(f"limit must be a whole number of jobs >= 0 or None, not {limit!r}")
        for name, value in (("status", status), ("type", type)):
            query_text(value, name)
        return self._listing(status, type, limit)

    def _listing(self, status: Optional[str], type: Optional[str], limit: Optional[int]) -> Iterator[Job]:
        remaining = limit
        cursor: Optional[str] = None
        seen: set[str] = set()
        while remaining is None or remaining > 0:
            params = {"status": status, "type": type, "cursor": cursor,
                      "limit": min(PAGE_LIMIT, remaining) if remaining is not None else PAGE_LIMIT}
            page = self._call("GET", "/jobs", is_page, "a page of jobs",
                              params={k: v for k, v in params.items() if v is not None})
            yield from page["jobs"]
            if remaining is not None:
                remaining -= len(page["jobs"])
            cursor = page.get("next_cursor")
            if not cursor:
                return
            # An empty page with a new cursor is a real page (the store filters a page it read,
            # e.g. by type within a status), so only a cursor seen before is a loop.
            self._check_new_cursor(cursor, seen, "/jobs")

    def artifacts(self, job_id: str) -> Iterator[dict[str, Any]]:
        """Every artifact of the job, by name (`name`, `content_type`, `size`, `created_at`,
        `location`), following `next_cursor` page by page. JobpipeClientError `job_not_found`
        for an unknown job; JobpipeAnswerError when a cursor comes back a second time."""
        path = f"/jobs/{path_id(job_id)}/artifacts"
        cursor: Optional[str] = None
        seen: set[str] = set()
        while True:
            params: dict[str, Any] = {"limit": ARTIFACT_PAGE_LIMIT, **({"cursor": cursor} if cursor else {})}
            page = self._call("GET", path, is_artifact_page, "a page of artifacts", params=params)
            yield from page["artifacts"]
            cursor = page.get("next_cursor")
            if not cursor:
                return
            self._check_new_cursor(cursor, seen, path)

    def artifact(self, job_id: str, name: str) -> bytes:
        """The artifact's bytes, held whole in memory (for a large one, `download_artifact`
        streams it to a file): an inline one from the API's answer, one in S3 from the
        presigned URL the API answers with (fetched without the token, within `timeout` per
        wait, and checked against the artifact's size). JobpipeInputError, before any request,
        for a name outside the artifact name rules; JobpipeClientError `artifact_not_found`
        (naming it) or `job_not_found`; ArtifactDownloadError when S3 refuses the link (expired,
        403), no longer has the object (404), or gives no answer or a short one."""
        whole = io.BytesIO()
        self.download_artifact(job_id, name, whole)
        return whole.getvalue()

    def download_artifact(self, job_id: str, name: str, target: Union[PathTarget, BinaryIO], *,
                          overwrite: bool = False) -> int:
        """Streams the artifact into `target` and returns its size in bytes; unlike `artifact`,
        it is never held in memory whole (one in S3 may be gigabytes). `target` is a path or a
        binary file object (`sys.stdout.buffer`). A path is written whole or not at all: the
        bytes go into a temporary file beside it, which takes its name only once they are all
        in and their count is the artifact's size; a failure or Ctrl-C removes it and leaves a
        file it was to replace as it was. A file object gets the bytes as they come, so a
        failed download may have written part of them. Raises what `artifact` raises; and, for a
        path, before any request: FileExistsError when it exists (unless `overwrite`; also when
        one appears during the download), IsADirectoryError, FileNotFoundError when its
        directory does not exist; any other OSError the file system raises while writing."""
        path = check_target(target, overwrite) if isinstance(target, (str, os.PathLike)) else None
        artifact_path = f"/jobs/{path_id(job_id)}/artifacts/{artifact_name(name)}"

        def read(response: requests.Response) -> tuple[requests.Response, Optional[dict[str, Any]]]:
            """(the answer, the download link; None for an inline artifact, the answer itself)."""
            if is_inline(response):
                return response, None
            return response, answer(response, is_download_link, "an artifact's download link")

        response, link = self.transport.read("GET", artifact_path, read)
        if link is None:
            def fill(stream: BinaryIO) -> int:
                stream.write(response.content)
                return len(response.content)
        else:
            def fill(stream: BinaryIO) -> int:
                return fetch(self.transport.session, link, job_id.strip(), name, self.transport.timeout_s,
                             stream.write)
        if path is None:
            return fill(target)  # type: ignore[arg-type]
        return write_whole(path, overwrite, fill)

    def _check_new_cursor(self, cursor: str, seen: set[str], path: str) -> None:
        """JobpipeAnswerError when a listing gives a cursor a second time: it would never end."""
        if cursor in seen:
            raise JobpipeAnswerError("GET", f"{self.transport.last_url}{path}",
                                     "answered a next_cursor it had already given: the listing would never end")
        seen.add(cursor)

    # -- waiting ----------------------------------------------------------------------------

    def wait(
        self,
        job: JobRef,
        timeout: Optional[float] = None,
        on_change: Optional[OnChange] = None,
        *,
        give_up_after: Optional[float] = DEFAULT_GIVE_UP_AFTER_S,
        on_outage: Optional[OnOutage] = None,
        started: Optional[float] = None,
        children: bool = True,
    ) -> Job:
        """Poll until the job completes, fails or is canceled, and so has every job it spawned
        (its `children`, theirs in turn: a fan-out's parent completes while its children still
        run); returns the job's own final state. `children=False` waits for the job alone.
        `wait_many([job])` returns the children's final states too. Pass the job `submit`
        returned to start from it instead of reading it at once. `on_change(job)` sees each
        new state, a child's too (its `parent_id` names its parent). Raises WaitTimeoutError after `timeout` s
        (ValueError when it is not a number >= 0), counted from `started`, a time on
        `self.clock` (a wait that is part of something begun before it: `jobpipe watch` reads
        the jobs first), or from the call when it is None.

        A poll no URL answered (no connection, no answer in time, a throttle, a 5xx) is asked
        again after 1 s, doubling up to 10 s (longer when a Retry-After asks); `on_outage` sees
        an Outage after each such poll and once more when a poll is answered again. The wait
        raises WaitUnavailableError (a JobpipeUnavailableError) once the polls have failed for
        `give_up_after` s in a row (default 60; 0 gives up at the first; None never), or when
        `timeout` runs out while they fail. A 4xx (JobpipeClientError) or an answer of the
        wrong shape (JobpipeAnswerError) ends the wait at once, as it does any call. Its
        arguments are checked at the call, before any request, each error naming its argument:
        ValueError for a `timeout` or `give_up_after` that is no number of seconds >= 0 or a
        `started` that is no finite time, TypeError for an `on_change` or `on_outage` that is
        no function, or a `children` that is no bool."""
        return self._watch().one(job, timeout, on_change, give_up_after, on_outage, started, children)

    def wait_many(
        self,
        jobs: Iterable[JobRef],
        timeout: Optional[float] = None,
        on_change: Optional[OnChange] = None,
        *,
        give_up_after: Optional[float] = DEFAULT_GIVE_UP_AFTER_S,
        on_outage: Optional[OnOutage] = None,
        started: Optional[float] = None,
        children: bool = True,
    ) -> dict[str, Job]:
        """`wait` for several jobs, and their children (unless `children` is false), with one
        batch request per poll per 100 of them that have not ended (an ended job is not asked
        again); unknown ids end as `not_found`. Returns the final states by id, in the order
        given, then the children's in the order they were found (a parent's in launch order).
        A child that reads `not_found` before it was ever read is asked once more (the read is
        eventually consistent), then ends so. A poll is
        answered only when every batch of it is: the tags of its batches are kept then, so a
        change one batch showed is seen again after another batch failed. A batch shows a
        payload or result kept in S3 as `{"claim_check": {"bytes": n}}`; a job that ends with
        one is read whole (GET /jobs/{id}), so its final state carries its result (removed
        before that read, it ends `not_found`)."""
        return self._watch().many(jobs, timeout, on_change, give_up_after, on_outage, started, children)

    def _watch(self) -> JobWatch:
        return JobWatch(self.transport, self.get, self._sleep, self.clock, self._backoff)

    # -- plumbing ---------------------------------------------------------------------------

    def _call(self, method: str, path: str, fits: Callable[[Any], bool], what: str, **kwargs: Any) -> Any:
        """The JSON of the first URL's answer that `fits` (a read, a cancel, or a POST under an
        idempotency key: safe to send to the next URL after an answer that is not `what` the
        route returns)."""
        return self.transport.read(method, path, lambda response: answer(response, fits, what), **kwargs)
