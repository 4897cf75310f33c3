"""What the client makes of an answer: the JSON of a 2xx when it has the route's shape, the API's
refusal as JobpipeClientError, anything else as JobpipeAnswerError."""
from __future__ import annotations

from typing import Any, Callable, NoReturn

import requests

from jobpipe_client.errors import JobpipeAnswerError, JobpipeClientError
from jobpipe_client.transport import retry_after_s

QUOTED_BODY_CHARS = 200  # of an error body that is not the API's (a gateway's HTML page, say)


def answer(response: requests.Response, fits: Callable[[Any], bool], what: str, *, conditional: bool = False) -> Any:
    """The JSON of a 2xx when `fits` says it is `what` the route returns, or None for a 304 to a
    `conditional` request. A 4xx becomes JobpipeClientError with the API's code; anything else
    (not JSON, the wrong shape, a 304 to a request that was not conditional) JobpipeAnswerError."""
    status = response.status_code
    if 400 <= status < 500:
        raise refusal(response)
    if status == 304 and conditional:
        return None

    def unusable(how: str) -> JobpipeAnswerError:
        return JobpipeAnswerError(response.request.method, response.url, f"answered HTTP {status}{how}")

    if not 200 <= status < 300:
        raise unusable(" to a request that was not conditional" if status == 304 else "")
    try:
        body = response.json(parse_constant=not_json_constant)
    except (ValueError, RecursionError):
        raise unusable(" with a body that is not JSON") from None
    if not fits(body):
        raise unusable(f" with JSON that is not {what}")
    return body


def not_json_constant(name: str) -> NoReturn:
    """json's `parse_constant`: NaN and (-)Infinity, which json.loads accepts, are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def is_job(value: Any) -> bool:
    """A job as the API shows one, in what the client and the CLI read of it."""
    if not (isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]
            and isinstance(value.get("status"), str)):
        return False
    progress, error = value.get("progress") or {}, value.get("error") or {}
    return (isinstance(progress, dict) and isinstance(progress.get("percent") or 0, (int, float))
            and isinstance(error, dict))


def is_batch(value: Any) -> bool:
    """POST /jobs/status's answer: `job_ids` in order, and a job for each in `jobs`."""
    jobs, order = (value.get("jobs"), value.get("job_ids")) if isinstance(value, dict) else (None, None)
    return (isinstance(jobs, dict) and isinstance(order, list)
            and all(isinstance(i, str) and is_job(jobs.get(i)) for i in order))


def is_page(value: Any) -> bool:
    """GET /jobs's answer: a list of jobs and the cursor of the next page, if any."""
    return (isinstance(value, dict) and isinstance(value.get("jobs"), list) and all(map(is_job, value["jobs"]))
            and isinstance(value.get("next_cursor") or "", str))


def refusal(response: requests.Response) -> JobpipeClientError:
    try:
        body = response.json()
    except (ValueError, RecursionError):
        body = None
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict) and error.get("code"):
        return JobpipeClientError(response.status_code, str(error["code"]), str(error.get("message", "")),
                                  error.get("details"), retry_after_s(response))
    # Not jobpipe's error shape (a gateway or proxy answered): keep what it said, in one line.
    said = error if isinstance(error, dict) else body if isinstance(body, dict) else {}
    message = " ".join(str(said.get("message") or response.text or response.reason).split())
    if len(message) > QUOTED_BODY_CHARS:
        message = message[: QUOTED_BODY_CHARS - 1] + "…"
    return JobpipeClientError(response.status_code, f"http_{response.status_code}", message,
                              retry_after_s=retry_after_s(response))
