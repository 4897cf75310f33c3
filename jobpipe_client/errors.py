"""What the client raises: the request cannot be sent as given, the API refused (4xx), no URL
answered, an answer was unusable, an artifact's S3 link failed, a wait ran out of time, or a
submit was interrupted."""
from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from jobpipe_client.polling import is_final
from jobpipe_client.terminal_text import first_of


class JobpipeError(Exception):
    """Base of every error the client raises."""


class JobpipeInputError(JobpipeError, ValueError):
    """The request cannot be sent as given (an idempotency key, a payload): nothing was sent. A
    ValueError, as every refusal of the caller's input before a request is."""


DETAILS_NAMED = 10  # problems of a refusal's details in its text: a payload may have 3,000
DETAILS_CHARS = 2000  # of that text, at most: one problem may quote a long value


def describe_details(details: Any) -> str:
    """The API's `details` as text: `loc: msg` per validation problem, `key=value` for a mapping.
    Any JSON is described: a refusal is the API's answer whatever its details hold (a `loc`
    that is one value rather than a list is that value). The first DETAILS_NAMED problems (or
    entries) are named and the rest counted, `…; and 90 more`, in at most DETAILS_CHARS: the
    text is one line on a terminal (`.details` keeps them all)."""
    text = _described(details)
    return text if len(text) <= DETAILS_CHARS else text[: DETAILS_CHARS - 1] + "…"


def _described(details: Any) -> str:
    if details is None or details == [] or details == {}:
        return ""
    if isinstance(details, list):
        parts = []
        for item in details[:DETAILS_NAMED]:
            if isinstance(item, dict) and "msg" in item:
                loc = item.get("loc")
                if isinstance(loc, list):
                    where = ".".join(map(_as_text, loc))
                else:
                    where = "" if loc is None else _as_text(loc)
                parts.append(f"{where}: {_as_text(item['msg'])}" if where else _as_text(item["msg"]))
            else:
                parts.append(_as_text(item))
        return "; ".join(parts) + _more(len(details), "; ")
    if isinstance(details, dict):
        named = list(details.items())[:DETAILS_NAMED]
        return ", ".join(f"{k}={_as_text(v)}" for k, v in named) + _more(len(details), ", ")
    return _as_text(details)


def _more(count: int, joint: str) -> str:
    """`; and 90 more` past the DETAILS_NAMED named of `count`, else ""."""
    return f"{joint}and {count - DETAILS_NAMED} more" if count > DETAILS_NAMED else ""


def _as_text(value: Any) -> str:
    """A JSON value as text: a string as it is, anything else as compact JSON."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


class JobpipeClientError(JobpipeError):
    """A 4xx: the API's own refusal of the request (never retried elsewhere), or one from in
    front of the API (`http_<status>`, or the gateway's code) that no other URL answered; or,
    as ClientRefusalError (`status` None), the client's own refusal, before sending.
    Its text ends with the refusal's `details` (which field, what is wrong), so a traceback
    says what `invalid_payload` or `invalid_request` is about.
    `retry_after_s` is its Retry-After in seconds (429 `quota_exceeded` says when to try
    again), None without one."""

    def __init__(self, status: Optional[int], code: str, message: str, details: Any = None,
                 retry_after_s: Optional[float] = None) -> None:
        problems = describe_details(details)
        said = f"HTTP {status}" if status is not None else "refused by the client before sending"
        super().__init__(f"{message} ({code}, {said})" + (f": {problems}" if problems else ""))
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.retry_after_s = retry_after_s


class ClientRefusalError(JobpipeClientError):
    """A request the client refused before sending it (a job id that would change the path or
    that the API would drop or split): no URL was asked, so there is no HTTP `status` (None);
    `code` is the one the API gives the same mistake (`invalid_job_id`), so a caller handles
    both alike."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(None, code, message)


class JobpipeUnavailableError(JobpipeError):
    """Every URL failed (connection error, timeout, throttle or 5xx). `failures` is
    [(url, reason)]; `may_have_arrived` says whether a URL may have acted on the request;
    `api_errors` maps a URL that answered a 5xx in the API's own error shape to its `code`
    (e.g. `store_unavailable`): the API was reached there, and said why it could not serve;
    `retry_after_s` is the longest `Retry-After` (in seconds) a URL answered with, if any."""

    def __init__(self, failures: list[tuple[str, str]], may_have_arrived: bool = False,
                 api_errors: Optional[Mapping[str, str]] = None, retry_after_s: Optional[float] = None) -> None:
        tried = "; ".join(f"{url}: {reason}" for url, reason in failures)
        self.api_errors = dict(api_errors or {})
        self.retry_after_s = retry_after_s
        # "Could not be reached" would send the reader to the network when the API answered.
        lead = "the jobpipe API is unavailable" if self.api_errors else "the jobpipe API could not be reached"
        super().__init__(f"{lead} ({tried})")
        self.failures = failures
        self.may_have_arrived = may_have_arrived


class JobpipeAnswerError(JobpipeError):
    """A URL answered, but not with what the route returns (not JSON, the wrong shape, a 304 to a
    request that was not conditional): a fault in the server or in front of it. `url` is where
    the answer came from and `reason` what is wrong with it; `failures` is [(url, reason)] of
    every URL asked, when the call moved on to the others and none gave a usable answer
    (`method`, `url` and `reason` are then the first unusable answer's)."""

    def __init__(self, method: str, url: str, reason: str,
                 failures: Optional[list[tuple[str, str]]] = None) -> None:
        others = list(failures or [])
        first = next((i for i, (_, why) in enumerate(others) if why == reason), None)
        if first is not None:  # the first failure with its reason is this answer: the rest are the others
            del others[first]
        listed = "; ".join(f"{base}: {why}" for base, why in others)
        tail = f"; no other URL gave a usable answer ({listed})" if others else ""
        super().__init__(f"{method} {url} {reason}{tail}")
        self.method = method
        self.url = url
        self.reason = reason
        self.failures = list(failures) if failures else [(url, reason)]


class ArtifactDownloadError(JobpipeError):
    """The API gave an artifact's presigned S3 link, but its bytes could not be fetched there: S3
    refused the link (expired, or its signature no longer good: 403), the object is gone (404),
    S3 answered 5xx, gave no answer in time, could not be reached, or sent fewer bytes than the
    artifact holds. `job_id`, `name`, `where` (the link without its query, which is a
    credential while it lasts), `status` (None when S3 gave no answer), `code` (S3's error code,
    when it said one) and `reason`. Asking again gets a fresh link."""

    def __init__(self, job_id: str, name: str, where: str, reason: str,
                 status: Optional[int] = None, code: Optional[str] = None) -> None:
        super().__init__(f"artifact {name!r} of job {job_id} could not be downloaded from {where} ({reason})")
        self.job_id = job_id
        self.name = name
        self.where = where
        self.reason = reason
        self.status = status
        self.code = code


class ResultGoneError(JobpipeError):
    """The job's result was kept in S3 and its object no longer exists (deleted by hand or by a
    bucket rule): the API shows the job as recorded, `result` null and named in `gone`.
    `code` is `blob_not_found`; `job_id`, and `job` as the API answered it."""

    code = "blob_not_found"

    def __init__(self, job: dict[str, Any]) -> None:
        super().__init__(f"the result of job {job.get('id')} ({job.get('status')}) is gone: its stored object "
                         f"no longer exists ({self.code})")
        self.job_id = job.get("id")
        self.job = job


class SubmitOutcomeUnknownError(JobpipeUnavailableError):
    """A submit got no usable answer but may have been accepted. Submitting again with the same
    `idempotency_key` is safe: the API answers with the job it made, or makes it once."""

    def __init__(self, cause: JobpipeUnavailableError, idempotency_key: str, action: str = "submit") -> None:
        """`action`: the request that made a job ("submit", or "rerun" for JobpipeClient.rerun)."""
        super().__init__(cause.failures, may_have_arrived=True, api_errors=cause.api_errors,
                         retry_after_s=cause.retry_after_s)
        self.idempotency_key = idempotency_key
        self.action = action
        self.args = (f"{cause}; the job may have been accepted: repeating the {action} with idempotency key "
                     f"{idempotency_key} is safe (it makes no second job)",)


PENDING_IDS_NAMED = 3  # of a wait's unended jobs, in its line: a fan-out may leave 2,000 (a 76 KB line)


def pending_ids(jobs: dict[str, dict[str, Any]]) -> str:
    """The jobs of a wait that had not ended, in the wait's order (those given, then children),
    the first PENDING_IDS_NAMED by id: `a, b, c and 1997 more`; `jobs` when none is pending."""
    return first_of([i for i, j in jobs.items() if not is_final(j)], PENDING_IDS_NAMED) or "jobs"


class WaitTimeoutError(JobpipeError):
    """A wait ended before the job(s) finished; `jobs` holds the last state seen, by id."""

    def __init__(self, timeout_s: float, jobs: dict[str, dict[str, Any]]) -> None:
        super().__init__(f"gave up after {timeout_s:g} s waiting for {pending_ids(jobs)}")
        self.timeout_s = timeout_s
        self.jobs = jobs


class WaitUnavailableError(JobpipeUnavailableError):
    """A wait gave up because no poll was answered (every URL failed: no connection, no answer
    in time, a throttle or a 5xx) for `outage_s` seconds in a row: its `give_up_after`, or less
    when its timeout ran out meanwhile (`timed_out`). `failures`, `api_errors` and
    `retry_after_s` are the last poll's; `jobs` holds the last state seen, by id."""

    def __init__(self, cause: JobpipeUnavailableError, outage_s: float, jobs: dict[str, dict[str, Any]],
                 timeout_s: Optional[float] = None) -> None:
        super().__init__(cause.failures, may_have_arrived=cause.may_have_arrived, api_errors=cause.api_errors,
                         retry_after_s=cause.retry_after_s)
        pending = pending_ids(jobs)
        if timeout_s is not None:
            end = (f"the wait for {pending} ran out of time ({timeout_s:g} s) while no poll had been answered "
                   f"for {outage_s:.0f} s")
        else:
            end = f"no poll was answered for {outage_s:.0f} s, so the wait for {pending} gave up"
        self.args = (f"{cause}; {end}",)
        self.outage_s = outage_s
        self.jobs = jobs
        self.timed_out = timeout_s is not None


class SubmitInterruptedError(KeyboardInterrupt):
    """Ctrl-C while a submit waited for its answer: the request may have arrived and made the
    job. Still a KeyboardInterrupt (the caller asked to stop, and code that catches Ctrl-C keeps
    working), carrying the `idempotency_key` that repeats the submit safely."""

    def __init__(self, idempotency_key: str, action: str = "submit") -> None:
        super().__init__(f"interrupted while the {action} waited for its answer; the job may have been accepted: "
                         f"repeating the {action} with idempotency key {idempotency_key!r} is safe (it makes no second job)")
        self.idempotency_key = idempotency_key
        self.action = action
