"""An in-memory stand-in for the jobpipe API behind a requests-compatible session
(tests/support/fake_http.py: `FakeSession`, and the servers that fail), so the client's logic
(fallback, paging, waiting, ETags) is unit-tested without sockets. Jobs change state by
script: each read of a job takes the next state from its script, so a test says exactly what a
poller sees."""
from __future__ import annotations

import hashlib
import time
from datetime import datetime, timezone
from typing import Any, Callable, Optional
from urllib.parse import urlsplit

import requests
from requests.structures import CaseInsensitiveDict

# The API's own answers: how an error becomes one (status, Retry-After, Cache-Control), how a
# read is tagged for caching, which job types it takes and how it checks their payloads, what a
# listing shows of a value kept in S3 and which jobs of a batch it shows short, where a
# listing's page ends (the stores' own rule).
from chalicelib.api.errors import error_response, json_response
from chalicelib.api.etag import conditional_response
from chalicelib.api.http import validate
from chalicelib.api.job_ids import normalize_job_ids
from chalicelib.api.job_types import listed_job_types
from chalicelib.api.polling import ANSWER_JOBS_BYTES, checked_batch_ids, claim_check_placeholder, fitted_batch, shown_job
from chalicelib.api.requests import ListJobsQuery, RerunJobRequest, StartRequest, SubmitJobRequest
from chalicelib.defaults import IDEMPOTENCY_TTL_S, INLINE_LIMIT_BYTES
from chalicelib.domain.errors import (
    ArtifactNotFoundError,
    BlobNotFoundError,
    IdempotencyConflictError,
    JobAlreadyFinishedError,
    JobNotFinishedError,
    JobNotFoundError,
    JobpipeError,
    JobPurgedError,
)
from chalicelib.domain.job import Job, answer_spent, new_job_id
from chalicelib.domain.registry import JobType
from chalicelib.domain.submission_keys import check_key
from chalicelib.job_types import build_registry
from chalicelib.lifecycle.admission import check_answerable, start_time
from chalicelib.ports import JobQuery
from chalicelib.quota import TenantQuota
from tests.support.fake_http import answered, make_response, route_not_found

FINISHED = ("completed", "failed", "canceled")
CREATED_AT = "2026-01-01T00:00:00.000Z"


class FakeApi:
    """The subset of the API the client uses, with the real answer shapes and ETag rules."""

    def __init__(self, tenant: str = "acme", inline_limit: int = INLINE_LIMIT_BYTES,
                 max_unfinished: Optional[int] = None, answer_budget: int = ANSWER_JOBS_BYTES) -> None:
        """`inline_limit`: a payload or result whose JSON, as the store writes it, is longer is
        kept in S3, so the listing and the batch route show it as the API does
        (`{"claim_check": {"bytes": n}}`); GET /jobs/{id} shows it whole. `max_unfinished`: a
        submit while the tenant has this many unfinished jobs is 429 `quota_exceeded`, as the
        API's TenantQuota refuses it. The job types are those of a deployment with its demo
        types on (the tests' own). `answer_budget`: what the jobs of a batch answer may take
        together (the API's is ANSWER_JOBS_BYTES), past which it shows them short, then bare."""
        self.tenant = tenant
        self.answer_budget = answer_budget
        self.max_unfinished = max_unfinished
        self.registry = build_registry(demo_types=True)
        self.inline_limit = inline_limit
        self.jobs: dict[str, dict[str, Any]] = {}
        self.scripts: dict[str, list[dict[str, Any]]] = {}
        self.requests: list[tuple[str, str, dict[str, Any]]] = []
        self.not_modified = 0
        # job id -> name -> the artifact as listed, with its "data" (inline) or "url" (in S3)
        self.artifacts: dict[str, dict[str, dict[str, Any]]] = {}
        # Idempotency-Key -> (the request it came with, as sent and as its job takes it; its job's
        # id; when the key expires: epoch s)
        self.keys: dict[str, tuple[Any, Any, str, int]] = {}

    def add_artifact(self, job_id: str, name: str, data: bytes = b"", content_type: str = "text/plain",
                     url: Optional[str] = None, size: Optional[int] = None) -> dict[str, Any]:
        """An artifact of `job_id`: inline (its bytes are the answer) or, with `url`, in S3
        (the answer is that presigned URL); `size` is what the API says it holds."""
        listed = {"name": name, "content_type": content_type, "size": len(data) if size is None else size,
                  "created_at": CREATED_AT, "location": "s3" if url else "inline"}
        self.artifacts.setdefault(job_id, {})[name] = {**listed, "data": data, "url": url}
        return listed

    def add(self, status: str = "queued", **fields: Any) -> dict[str, Any]:
        """A job as the API shows it (Job.public(): every field it carries), with `fields`."""
        job = self._shown(status, **fields)
        self.jobs[job["id"]] = job
        return job

    def _shown(self, status: str = "queued", **fields: Any) -> dict[str, Any]:
        shown = Job.model_validate({"id": new_job_id(), "type": "demo.steps", "tenant": self.tenant, "user": "ann",
                                    "created_at": CREATED_AT, "not_before": CREATED_AT}).public()
        return {**shown, "status": status, **fields}

    def lose_payload(self, job_id: str) -> None:
        """`job_id`'s payload, kept in S3, gone from the bucket (deleted by hand or by a lifecycle
        rule): the job shows it None and names it in `gone`, as the API shows it."""
        self.jobs[job_id].update(payload=None, gone=["payload"])

    def purge(self, job_id: str) -> None:
        """`job_id` removed, as retention's clean-up removes a finished job; the keys that made
        it are kept (a replay under one is 410 `job_purged`)."""
        del self.jobs[job_id]

    def script(self, job_id: str, *states: dict[str, Any]) -> None:
        """Successive reads of `job_id` show these changes applied in turn (the last repeats)."""
        self.scripts[job_id] = list(states)

    def _read(self, job_id: str) -> Optional[dict[str, Any]]:
        job = self.jobs.get(job_id)
        if job is not None and self.scripts.get(job_id):
            change = self.scripts[job_id].pop(0)
            job.update(change)
        return job

    def _listed(self, job: dict[str, Any]) -> dict[str, Any]:
        """`job` as a listing or a batch shows it: a payload or result kept in S3 as its placeholder."""
        listed = dict(job)
        for field in ("payload", "result"):
            if job.get(field) is None:
                continue
            placeholder = claim_check_placeholder(job[field])
            if placeholder["claim_check"]["bytes"] > self.inline_limit:
                listed[field] = placeholder
        return listed

    def _fitted(self, ids: list[str], jobs: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """`jobs` as the batch route shows them: whole while they fit what one answer carries,
        past that short (payload, result and progress details as the placeholder, the message
        cut), then bare (no children, `children_cut`), as the API's `fitted_batch` decides over the jobs as it holds them (a job the API could
        not hold fails to validate here: a test of a malformed answer scripts its own server)."""
        held = {i: Job.model_validate({"tenant": self.tenant, "user": "ann", **jobs[i]})
                for i in ids if jobs[i]["status"] != "not_found"}
        shown = fitted_batch([held[i] for i in ids if i in held], budget=self.answer_budget)
        for i, job in held.items():
            if shown[job.id] is not job:  # shown short, or bare
                public = shown_job(job, shown[job.id])
                progress = {**jobs[i]["progress"], **{f: public["progress"][f] for f in ("message", "details")}}
                cut = {f: public[f] for f in ("children", "children_cut") if f in public}
                jobs[i] = {**jobs[i], **{f: public[f] for f in ("payload", "result")}, **cut,
                           "progress": progress}
        return jobs

    @staticmethod
    def _tag(parts: list[str]) -> str:
        return 'W/"' + hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] + '"'

    def _conditional(self, method: str, url: str, headers: dict, body: Any, tag: str) -> requests.Response:
        response = answered(method, url, conditional_response(CaseInsensitiveDict(headers).get("If-None-Match"),
                                                              tag, body))
        self.not_modified += response.status_code == 304
        return response

    def __call__(self, method: str, url: str, *, headers=None, json=None, params=None, **_: Any) -> requests.Response:
        headers = dict(headers or {})
        path = urlsplit(url).path
        self.requests.append((method, path, {"headers": headers, "json": json, "params": params}))
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/jobs":
            return self._keyed(method, url, headers, (path, json), lambda: self._submitted(json))
        if method == "POST" and path == "/jobs/status":
            ids = json["job_ids"]
            try:  # each id as the API reads it: one that is no Unicode text, or no id's length, is refused
                checked_batch_ids(normalize_job_ids(ids))
            except JobpipeError as exc:
                return self.refused(method, url, exc)
            jobs = self._fitted(ids, {i: self._listed(self._read(i) or {"id": i, "status": "not_found"}) for i in ids})
            tag = self._tag([f"{i}:{jobs[i].get('version', '-')}" for i in ids])
            return self._conditional(method, url, headers, {"jobs": jobs, "job_ids": ids}, tag)
        if method == "GET" and path == "/job-types":
            return answered(method, url, json_response(listed_job_types(self.registry)))
        if method == "GET" and path == "/jobs":
            return self._page(method, url, headers, params or {})
        if method == "POST" and len(parts) == 3 and parts[0] == "jobs" and parts[2] == "rerun":
            try:  # the body, optional, says when the job starts: checked first, as the API's route does
                start = validate(RerunJobRequest, json or {})
            except JobpipeError as exc:
                return self.refused(method, url, exc)
            return self._keyed(method, url, headers, (path, json or {}), lambda: self._rerun(parts[1], start),
                               answers=lambda made: made.get("rerun_of") == parts[1])
        if method == "GET" and len(parts) in (3, 4) and parts[:1] == ["jobs"] and parts[2] == "artifacts":
            return self._artifacts(method, url, parts[1], parts[3] if len(parts) == 4 else None, params or {})
        if len(parts) == 2 and parts[0] == "jobs":
            job = self._read(parts[1])
            if job is None:
                return self.refused(method, url, JobNotFoundError(f"job {parts[1]} not found"))
            if method == "DELETE":
                return self._cancel(method, url, job)
            if method == "GET":
                return self._conditional(method, url, headers, dict(job), self._tag([f"{job['id']}:{job['version']}"]))
        return route_not_found(method, url)

    def _keyed(self, method: str, url: str, headers: dict, request: tuple[str, Any],
               make: Callable[[], dict[str, Any]],
               answers: Optional[Callable[[dict[str, Any]], bool]] = None) -> requests.Response:
        """A submit or rerun (`request`: its path and body) under its Idempotency-Key, in the
        API's order: `make`'s checks of the request first (it returns the fields of the job to add,
        or raises the API's refusal), then the key (the job it made when it came with the same request, 409
        `idempotency_conflict` with another, 410 `job_purged` when that job is gone), then the
        tenant's quota; a 202 keeps the key. `answers`: for a rerun whose original or payload
        object is gone, whether the key's job is that rerun (then it answers, as the API's does)."""
        key = CaseInsensitiveDict(headers).get("Idempotency-Key")
        kept = self.keys.get(key) if key is not None else None
        gone: Optional[JobpipeError] = None  # a rerun's original or payload object gone: the key may answer
        try:
            fields = make()
        except (JobNotFoundError, BlobNotFoundError) as exc:
            if key is None or answers is None:
                return self.refused(method, url, exc)
            gone = exc
        except JobpipeError as exc:
            return self.refused(method, url, exc)
        if key is not None:
            try:
                check_key(key)  # 400 for a header that is no key (a request refused more ways says so sooner)
            except JobpipeError as exc:
                return self.refused(method, url, exc)
        if gone is not None:
            made = self.jobs.get(kept[2]) if kept is not None else None
            if made is None or not answers(made):
                return self.refused(method, url, gone)
            return answered(method, url, json_response(dict(made), 202))
        taken = _taken(request, fields)
        if kept is not None:
            first, first_taken, job_id, expires_at = kept
            if first != request and first_taken != taken:
                return self.refused(method, url, IdempotencyConflictError.of())
            if job_id not in self.jobs:
                return self.refused(method, url, JobPurgedError.of(job_id, expires_at))
            return answered(method, url, json_response(dict(self.jobs[job_id]), 202))
        if self.max_unfinished is not None:
            try:
                TenantQuota(self, self.max_unfinished, recount=lambda t, most: min(most, self.unfinished(t))).admit(self.tenant)
            except JobpipeError as exc:
                return self.refused(method, url, exc)
        job = self.add(**fields)  # through `add`, which a test may script
        if key is not None:
            self.keys[key] = (request, taken, job["id"], int(time.time()) + IDEMPOTENCY_TTL_S)
        return answered(method, url, json_response(job, 202))

    def _submitted(self, body: dict[str, Any]) -> dict[str, Any]:
        """The fields of the job a submit makes, checked as the API checks it: its body by the API's model, its
        type among those the API takes, its payload by its type's model (kept as the API keeps
        it, the model's defaults filled in), its start, its size as an answer. Raises the API's
        refusal."""
        request = validate(SubmitJobRequest, body)
        job_type = self.registry.get_public(request.type)
        return self._new_job(job_type, request.payload, request, priority=request.priority or job_type.priority)

    def _new_job(self, job_type: JobType, payload: Any, start: StartRequest, **fields: Any) -> dict[str, Any]:
        """The fields of a job of `job_type` with `payload` and `fields`, checked as the
        lifecycle's admission checks it (its payload, its start, whether an answer can carry it)."""
        kept = {"type": job_type.name, "payload": job_type.dump_payload(job_type.parse_payload(payload)),
                "max_attempts": job_type.max_attempts, **fields}
        start_time(datetime.now(timezone.utc), start.delay_seconds, start.run_at)
        check_answerable(self._shown(**kept))
        return kept

    def unfinished(self, tenant: str) -> int:
        """The tenant's unfinished jobs (the count TenantQuota reads from the stats store, and
        counts in the status index)."""
        return sum(j["status"] not in FINISHED for j in self.jobs.values()) if tenant == self.tenant else 0

    def _rerun(self, job_id: str, start: StartRequest) -> dict[str, Any]:
        """The fields of a finished job's rerun: a new queued job with its type, payload and priority, `rerun_of`
        it; refused as the API refuses it: an unknown or unfinished job, a type it no longer
        takes, a payload whose object is gone or that its type's model no longer takes, a start
        too far ahead."""
        job = self.jobs.get(job_id)
        if job is None:
            raise JobNotFoundError(f"job {job_id} not found")
        if job["status"] not in FINISHED:
            raise JobNotFinishedError.of(job_id, job["status"])
        job_type = self.registry.get_public(job["type"])
        if "payload" in job.get("gone", ()):
            raise BlobNotFoundError.payload_gone(job_id)
        return self._new_job(job_type, job.get("payload", {}), start, priority=job["priority"], rerun_of=job_id)

    def _cancel(self, method: str, url: str, job: dict[str, Any]) -> requests.Response:
        """Queued or retrying: canceled now; running: its cancel requested (the worker stops it);
        finished: 409 `job_finished`."""
        if job["status"] in FINISHED:
            return self.refused(method, url, JobAlreadyFinishedError.of(job["id"], job["status"]))
        if job["status"] != "running":
            job.update(status="canceled", cancel_requested=True, version=job["version"] + 1)
        elif not job.get("cancel_requested"):
            job.update(cancel_requested=True, version=job["version"] + 1)
        return answered(method, url, json_response(dict(job), 202))

    @staticmethod
    def refused(method: str, url: str, error: JobpipeError) -> requests.Response:
        """`error` answered as the API answers it (its status, headers and body)."""
        return answered(method, url, error_response(error))

    def _artifacts(self, method: str, url: str, job_id: str, name: Optional[str], params: dict[str, Any]
                   ) -> requests.Response:
        """GET /jobs/{id}/artifacts (a page by name, `next_cursor` the last name shown) and
        GET /jobs/{id}/artifacts/{name} (inline: the bytes as an attachment; in S3: its link)."""
        if job_id not in self.jobs:
            return self.refused(method, url, JobNotFoundError(f"job {job_id} not found"))
        kept = self.artifacts.get(job_id, {})
        if name is None:
            names = sorted(n for n in kept if n > (params.get("cursor") or ""))
            shown = names[: int(params.get("limit", 100))]
            listed = [{k: v for k, v in kept[n].items() if k not in ("data", "url")} for n in shown]
            cursor = shown[-1] if len(shown) < len(names) else None
            return answered(method, url, json_response({"job_id": job_id, "artifacts": listed, "next_cursor": cursor}))
        if name not in kept:
            return self.refused(method, url, ArtifactNotFoundError.of(job_id, name))
        artifact = kept[name]
        public = {k: v for k, v in artifact.items() if k not in ("data", "url")}
        if artifact["url"] is None:
            return make_response(method, url, 200, artifact["data"], {
                "Content-Type": artifact["content_type"], "Cache-Control": "no-store",
                "Content-Disposition": f'attachment; filename="{name}"'})
        return answered(method, url, json_response({**public, "url": artifact["url"], "expires_in": 300}))

    def _page(self, method: str, url: str, headers: dict, params: dict[str, Any]) -> requests.Response:
        try:  # the query as the API's route checks it: a name no job type can have is refused
            validate(ListJobsQuery, params)
        except JobpipeError as exc:
            return self.refused(method, url, exc)
        jobs = [j for j in reversed(list(self.jobs.values()))
                if all(j.get(k) == params[k] for k in ("status", "type") if k in params)]
        start = int(params.get("cursor") or 0)
        limit = int(params.get("limit", 25))
        page: list[dict[str, Any]] = []
        spent: Optional[int] = 0
        budget = JobQuery(self.tenant).answer_bytes
        for job in jobs[start : start + limit]:  # ends before the job that would pass what it carries
            shown = self._listed(job)
            spent = answer_spent(spent, shown, budget, first=not page)
            if spent is None:
                break
            page.append(shown)
        cursor = str(start + len(page)) if start + len(page) < len(jobs) else None
        tag = self._tag([f"list:{cursor or ''}", *(f"{j['id']}:{j.get('version', '-')}" for j in page)])
        return self._conditional(method, url, headers, {"jobs": page, "next_cursor": cursor}, tag)


def _taken(request: tuple[str, Any], fields: dict[str, Any]) -> tuple[Any, ...]:
    """A submit's or rerun's request (its path and body) as the job it makes takes it, `fields`
    that job's (its payload with its model's defaults filled in, its priority): a default spelled
    out or left out alike, its start's instant whatever its offset, as the API compares them."""
    path, body = request
    start = validate(StartRequest, {k: v for k, v in (body or {}).items() if k in StartRequest.model_fields})
    try:
        run_at = start.run_at.astimezone(timezone.utc) if start.run_at is not None else None
    except OverflowError:  # no UTC date (the year 1 at +01:00): compared as written, as the API does
        run_at = start.run_at
    return path, {k: v for k, v in fields.items() if k != "max_attempts"}, start.delay_seconds, run_at, \
        (body or {}).get("scope")
