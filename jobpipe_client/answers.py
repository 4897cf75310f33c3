"""What the client makes of an answer: what kind it is (a throttle or a refusal from in front of
the API, the API's own error, a 5xx's reason, its Retry-After), the JSON of a 2xx when it has
the route's shape, the API's refusal as JobpipeClientError, anything else as JobpipeAnswerError."""
from __future__ import annotations

import html
import math
from typing import TYPE_CHECKING, Any, Callable, NoReturn, Optional

from jobpipe_client.errors import JobpipeAnswerError, JobpipeClientError

if TYPE_CHECKING:  # answers are requests' Responses; the CLI's parser, which reads numbers here, loads no requests
    import requests

THROTTLED = 429
QUOTED_BODY_CHARS = 200  # of an error body that is not the API's (a gateway's HTML page, say)
PAGE_LOOK_CHARS = 64 * 1024  # of an HTML page read for what it says (an error page is a few hundred)
QUOTED_REASON_CHARS = 200  # of a 5xx's reason quoting the API's message (which the server wrote)
# The codes this stack's API Gateway answers with (infra/resources.json's gateway responses),
# in the API's error shape although no function ran.
GATEWAY_CODES = frozenset({"gateway_refused", "route_not_found"})


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
        body = response.json(parse_constant=not_json_constant, parse_float=finite_float)
    except (ValueError, RecursionError):
        raise unusable(" with a body that is not JSON") from None
    if not fits(body):
        raise unusable(f" with JSON that is not {what}")
    return body


def not_json_constant(name: str) -> NoReturn:
    """json's `parse_constant`: NaN and (-)Infinity, which json.loads accepts, are not JSON."""
    raise ValueError(f"{name} is not a JSON value")


def finite_float(text: str) -> float:
    """json's `parse_float`: a number too large for a float (`1e999`) reads as infinity, which
    JSON cannot say again (json.dumps would write `Infinity`): refused as NaN is."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:40]} is too large for a number")
    return value


def is_job(value: Any) -> bool:
    """A job as the API shows one, in what the client and the CLI read of it: an `id` and a
    `status`; `progress` and `error` objects when given, the progress's `percent` a finite
    number (JSON's 1e400 reads as infinity, and an integer of 400 digits is no float), and
    `attempts` and `max_attempts` whole numbers when given."""
    if not (isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]
            and isinstance(value.get("status"), str)):
        return False
    progress, error = value.get("progress") or {}, value.get("error") or {}
    return (isinstance(progress, dict) and is_finite_number(progress.get("percent") or 0)
            and isinstance(error, dict)
            and all(_is_count(value.get(field)) for field in ("attempts", "max_attempts")))


def is_number(value: Any) -> bool:
    """An int or a float: not a bool, not text ("5")."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    """A JSON number that is a float too: not a bool, not infinite, not too large for one."""
    if not is_number(value):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a float's range
        return False


def _is_count(value: Any) -> bool:
    """None (not given) or a whole number (not a bool, not text, not 2.0)."""
    return value is None or (isinstance(value, int) and not isinstance(value, bool))


def is_batch(value: Any) -> bool:
    """POST /jobs/status's answer: `job_ids` in order, and a job for each in `jobs`."""
    jobs, order = (value.get("jobs"), value.get("job_ids")) if isinstance(value, dict) else (None, None)
    return (isinstance(jobs, dict) and isinstance(order, list)
            and all(isinstance(i, str) and is_job(jobs.get(i)) for i in order))


def is_page(value: Any) -> bool:
    """GET /jobs's answer: a list of jobs and the cursor of the next page, if any."""
    return (isinstance(value, dict) and isinstance(value.get("jobs"), list) and all(map(is_job, value["jobs"]))
            and isinstance(value.get("next_cursor") or "", str))


def is_job_types(value: Any) -> bool:
    """GET /job-types's answer: a list of types, each named (`type`), with its `description`
    and `priority` as text, `max_attempts` and `timeout_s` whole numbers and its
    `payload_schema` an object."""
    types = value.get("job_types") if isinstance(value, dict) else None
    return isinstance(types, list) and all(
        isinstance(t, dict) and isinstance(t.get("type"), str) and t["type"]
        and isinstance(t.get("description"), str) and isinstance(t.get("priority"), str)
        and all(isinstance(t.get(f), int) and not isinstance(t.get(f), bool) for f in ("max_attempts", "timeout_s"))
        and isinstance(t.get("payload_schema"), dict)
        for t in types)


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
    message = " ".join(str(said.get("message") or page_text(response.text) or response.reason).split())
    if len(message) > QUOTED_BODY_CHARS:
        message = message[: QUOTED_BODY_CHARS - 1] + "…"
    return JobpipeClientError(response.status_code, f"http_{response.status_code}", message,
                              retry_after_s=retry_after_s(response))


def page_text(text: str) -> str:
    """What a body says to a reader: a page of markup (a proxy's or a load balancer's HTML,
    `413 Request Entity Too Large`; an XML error) by its title, or without one by its text, its
    tags, scripts and styles left out; any other body as it is. One pass of `str.find`s, each
    from where the last ended: a page of broken markup costs no more than a well-formed one."""
    if not text.lstrip().startswith("<"):
        return text
    text = text[:PAGE_LOOK_CHARS]
    low = text.translate(_ASCII_LOWER)  # its length kept, as str.lower() may not keep it
    title = low.find("<title")
    opened = low.find(">", title) if title >= 0 else -1
    closed = low.find("</title", opened) if opened >= 0 else -1
    if closed >= 0:
        return html.unescape(" ".join(text[opened + 1 : closed].split()))
    pieces, at = [], 0
    while (tag := low.find("<", at)) >= 0:
        pieces.append(text[at:tag])
        end = low.find(">", tag)
        if end < 0:
            at = len(text)
            break
        name = (low[tag + 1 : end].split(None, 1) or [""])[0]
        at = end + 1
        if name in ("script", "style"):  # not text: skipped to the end of its closing tag
            close = low.find(f"</{name}", at)
            at = len(text) if close < 0 else (low.find(">", close) + 1 or len(text))
        pieces.append(" ")
    pieces.append(text[at:])
    return html.unescape(" ".join("".join(pieces).split()))


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def is_throttle(response: requests.Response) -> bool:
    """A 429 from in front of the API (a gateway or the function's concurrency), not one the
    API itself answered (`quota_exceeded`, say)."""
    return response.status_code == THROTTLED and not _from_the_api(response)


def is_refused_in_front(response: requests.Response) -> bool:
    """A 4xx that jobpipe's function did not answer: not in the API's error shape (a proxy, a
    CDN, another API's gateway), or this stack's gateway refusing before any function ran."""
    return 400 <= response.status_code < 500 and not _from_the_api(response)


def _from_the_api(response: requests.Response) -> bool:
    said = api_error(response)
    return said is not None and said[0] not in GATEWAY_CODES


def api_error(response: requests.Response) -> Optional[tuple[str, str]]:
    """(code, message) when the body is the API's error shape `{"error": {"code", "message"}}`,
    None for anything else (a gateway's page, a proxy's JSON, no body)."""
    try:
        body = response.json()
    except (ValueError, RecursionError):
        return None
    error = body.get("error") if isinstance(body, dict) else None
    if not (isinstance(error, dict) and error.get("code")):
        return None
    return str(error["code"]), str(error.get("message") or "")


def server_error_reason(status: int, said: Optional[tuple[str, str]]) -> str:
    """A 5xx as a failure reason: the status, and the API's code and message (`api_error`) when
    it answered in its own shape (`HTTP 503 store_unavailable: ...`), the part that says what is
    wrong."""
    if said is None:
        return f"HTTP {status}"
    code, message = said
    reason = " ".join(f"HTTP {status} {code}: {message}".split())
    return reason if len(reason) <= QUOTED_REASON_CHARS else reason[: QUOTED_REASON_CHARS - 1] + "…"


def retry_after_s(response: requests.Response) -> Optional[float]:
    """A Retry-After header in seconds, or None when absent or a date (not worth parsing)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None
