"""HTTP with fallback: every call tries the primary URL first, then each fallback in order.

A connection error, a timeout, an answer that cannot be read (cut off, badly encoded), a
redirect (never followed: a POST would go on as a GET without its body, and the token be dropped
on the way to another host or port; nothing reached the API), a 5xx, or a 4xx that jobpipe's
function did not answer (a proxy's or another
gateway's, or this stack's gateway refusing before any function ran: `gateway_refused`,
`route_not_found`) moves on to the next URL, as rq-engine's pollers fall back on any error;
when no URL answers, that first refusal is the answer (unless another URL may have acted on
the request: then no URL answered). Any other answer (2xx, 304, the
API's own 4xx) is the answer: every URL reaches the same jobs, so the API's refusal would be
the same anywhere. A call that is safe to send again (a read, a cancel, a POST under an idempotency key)
asks `read` rather than `request`, and a 2xx it cannot use (not JSON, the wrong shape: a
proxy's page) moves it on to the next URL as well. The next call starts at the primary again,
so a primary that comes back is used at once.
The request's timeout bounds each URL's whole exchange, status line, headers and body: a server
that trickles its answer a byte at a time times out like one that sends nothing (the transport's
own session cuts a late header read, jobpipe_client/deadline.py; the body is read against the
deadline here). A 5xx in the API's own error shape keeps its code in the failure's reason.

A 429 that is not jobpipe's own answer is a throttle (API Gateway's, whose gateway responses
give it the API's shape with code `gateway_refused`, or the function's reserved concurrency, which the local stack sets so that a burst queues behind warm
processes): the function did not run, so the same URL is asked again after a short, jittered,
doubling wait (longer if its Retry-After asks, up to a short cap), for as long as the request's
timeout allows; a URL still throttling then counts as failed. A 429 in jobpipe's error shape
(`{"error": {"code": ...}}`, e.g. a tenant over its quota) is the API's answer, like any other 4xx."""
from __future__ import annotations

import contextlib
import random
import ssl
import threading
import time
from typing import Any, Callable, Iterator, Optional, Sequence, TypeVar

import requests
import requests.auth
import urllib3
from requests.models import PreparedRequest

from jobpipe_client.answers import (THROTTLED, api_error, is_refused_in_front, is_throttle, retry_after_s,
                                    server_error_reason)
from jobpipe_client.deadline import deadline_session
from jobpipe_client.errors import JobpipeAnswerError, JobpipeUnavailableError
from jobpipe_client.inputs import api_url, header_text, timeout_seconds

# First wait after a throttle, doubled per retry up to the cap; each wait is jittered (a
# random share of it) so a burst of throttled clients does not come back in step. The cap is
# short because a throttle frees up within a request's time (the function's slot), and a long
# wait leaves the slot idle: with a 1 s cap a burst of 30 submits on the local stack answered
# after a median 6.9 s, mostly spent waiting with free slots.
THROTTLE_FIRST_WAIT_S = 0.05
THROTTLE_MAX_WAIT_S = 0.4
# The body is read in pieces of at most this size, each within what is left of the timeout.
BODY_READ_BYTES = 64 * 1024
# What a request sent as a wait runs out is given to answer: the last look at the jobs is worth
# a moment past the deadline, a URL after it (a fallback) is not asked at all.
LAST_LOOK_S = 1.0

T = TypeVar("T")


class FailoverTransport:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        token: str,
        timeout_s: float = 10.0,
        session: Optional[requests.Session] = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        """ValueError for a URL that is not http(s) with a host, a token that cannot travel in a
        header, or a timeout that is not a number of seconds above 0 (up to a day)."""
        cleaned = [api_url(u) for u in urls if u and u.strip()]
        if not cleaned:
            raise ValueError("at least one API base URL is needed")
        self.urls = list(dict.fromkeys(cleaned))
        self.timeout_s = timeout_seconds(timeout_s)
        # A session given keeps its own adapters; the transport's own bounds the headers' wait too.
        # It is not changed: the token goes on each request this transport sends, so the
        # caller's own requests on that session (to other hosts) never carry it.
        self.session = session or deadline_session()
        self._owns_session = session is None  # closed by `close`; a session given is the caller's
        bearer = f"Bearer {header_text(token, 'the token')}"
        self._headers = {"Authorization": bearer, "Accept": "application/json", "User-Agent": "jobpipe-client/0.1"}
        # An auth of the request's own, so requests never looks in ~/.netrc: an entry there for
        # the host (or a `default` one) would replace the token with that login, sent as Basic.
        # A session given with an auth of its own keeps it (it is the caller's choice).
        self._auth = BearerAuth(bearer) if getattr(self.session, "auth", None) is None else None
        # Of this thread's last answer (a client shared by threads: each call reads its own).
        self._last = threading.local()
        self.throttled = 0  # 429s retried so far (the benchmark reports them)
        # A clock time no request of this thread may outlast (a wait's deadline while it polls,
        # see `bounded_by`): another thread's requests, and the wait's own callbacks, keep theirs.
        self._bound = threading.local()
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def close(self) -> None:
        """Close the connections of the session this transport made (a session given stays open)."""
        if self._owns_session:
            self.session.close()

    @property
    def last_url(self) -> Optional[str]:
        """The URL that gave this thread's last answer."""
        return getattr(self._last, "url", None)

    @property
    def earlier_may_have_arrived(self) -> bool:
        """Of this thread's last answer: whether a URL that failed before it may have received
        the request and acted on it (see `request`)."""
        return getattr(self._last, "earlier", False)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The first answer that is not a failure. Raises JobpipeUnavailableError when every
        URL failed, listing why each did; its `may_have_arrived` is true when some URL may
        have received the request and acted on it (no answer in time, a 5xx, a dropped
        connection, an answer that could not be read), false when none can have (refused, or
        throttled throughout). After an answer, `earlier_may_have_arrived` says the same of the
        URLs that failed before it (an answer to a repeat may then reflect the first try). The
        error's `retry_after_s` is the longest Retry-After a throttle or a 5xx answered with."""
        return self._exchange(method, path, None, kwargs)[1]

    def read(self, method: str, path: str, read: Callable[[requests.Response], T], **kwargs: Any) -> T:
        """`read(answer)` of the first URL whose answer `read` can use, for a request that is
        safe to send again (a read, a cancel, or a POST under an idempotency key). An answer `read` finds
        unusable (it raises JobpipeAnswerError: not JSON, the wrong shape) moves on to the next
        URL, as a failure does: a 200 page from a proxy in front of one URL is no answer from
        the API. When no URL gave a usable answer and one gave an unusable one, the first of
        those is raised again, its `failures` every URL's (a URL answered: a fault in the
        server or in front of it, not an outage); otherwise what `request` raises. What else
        `read` raises (the API's refusal, JobpipeClientError) is raised at once."""
        return self._exchange(method, path, read, kwargs)[0]

    def _exchange(self, method: str, path: str, read: Optional[Callable[[requests.Response], T]],
                  kwargs: dict[str, Any]) -> tuple[Optional[T], requests.Response]:
        """(what `read` made of the answer, or None without `read`; the answer): `request`'s
        loop over the URLs, and `read`'s."""
        failed = _FailedURLs()
        self._last.earlier = False
        for url in self.urls:
            response = self._answer_of(url, method, path, kwargs, failed)
            if response is None:
                continue
            self._last.url, self._last.earlier = url, failed.arrived
            if read is None:
                return None, response
            try:
                return read(response), response
            except JobpipeAnswerError as exc:
                failed.unusable_answer(url, exc)
        if failed.refused is not None and not failed.arrived:  # none acted: the refusal is the answer
            self._last.url, response = failed.refused
            return (None if read is None else read(response)), response
        raise failed.error()

    def _answer_of(self, url: str, method: str, path: str, kwargs: dict[str, Any],
                   failed: _FailedURLs) -> Optional[requests.Response]:
        """The URL's answer, or None when it failed (recorded in `failed`, and the next URL is
        asked). Raises requests' InvalidJSONError for a body that is not JSON: nothing was sent."""
        budget = self._budget_s(first=url == self.urls[0])
        if budget is None:
            failed.not_asked(url)
            return None
        try:
            response = self._until_not_throttled(method, url + path, budget, **kwargs)
        except requests.exceptions.InvalidJSONError:
            raise  # the body given to send is not JSON (NaN, say): the caller's mistake, nothing was sent
        except (requests.RequestException, urllib3.exceptions.LocationParseError) as exc:
            # LocationParseError too, which requests does not wrap: the base URL was checked
            # when the transport was made.
            failed.no_answer(url, exc, budget)
            return None
        return None if failed.no_answer_from_the_api(url, response, budget) else response

    @contextlib.contextmanager
    def bounded_by(self, until: Optional[float]) -> Iterator[None]:
        """Within it, no request this thread sends outlasts the clock time `until` (None: no
        bound): each URL is given what is left, the first at least LAST_LOOK_S, and a fallback
        none once it has passed. A wait's polls are, so its timeout holds however long its URLs
        hang. On leaving it the bound in force before is back (a wait inside another's callback)."""
        before = getattr(self._bound, "until", None)
        self._bound.until = until
        try:
            yield
        finally:
            self._bound.until = before

    def _budget_s(self, first: bool) -> Optional[float]:
        """The seconds a request to the next URL may take, or None when it is not to be sent."""
        until = getattr(self._bound, "until", None)
        if until is None:
            return self.timeout_s
        left = until - self._clock()
        if left <= 0 and not first:
            return None
        return min(self.timeout_s, max(left, LAST_LOOK_S))

    def _until_not_throttled(self, method: str, url: str, budget: float, **kwargs: Any) -> requests.Response:
        """The URL's answer, asked again while it is a 429 and the request's `budget` allows."""
        deadline = self._clock() + budget
        left = budget
        wait = THROTTLE_FIRST_WAIT_S
        while True:
            headers = {**self._headers, **(kwargs.get("headers") or {})}
            response = self.session.request(method, url, timeout=left, stream=True, auth=self._auth,
                                            allow_redirects=False, **{**kwargs, "headers": headers})
            _read_body(response, deadline, self._clock)
            if not is_throttle(response):
                return response
            # Never sooner than the backoff (a Retry-After of 0 would be a busy loop), never
            # longer than the cap.
            pause = wait * (0.5 + self._jitter() / 2)
            pause = max(pause, min(retry_after_s(response) or 0.0, THROTTLE_MAX_WAIT_S))
            if self._clock() + pause >= deadline:
                return response
            self.throttled += 1
            self._sleep(pause)
            wait = min(wait * 2, THROTTLE_MAX_WAIT_S)
            if (left := deadline - self._clock()) <= 0:  # the sleep overran the deadline
                return response


class BearerAuth(requests.auth.AuthBase):
    """Puts the token in every request's Authorization header (its repr does not show it)."""

    def __init__(self, header: str) -> None:
        self._header = header

    def __call__(self, request: PreparedRequest) -> PreparedRequest:
        request.headers["Authorization"] = self._header
        return request

    def __repr__(self) -> str:
        return "BearerAuth(<token>)"


class _FailedURLs:
    """The URLs of one call that gave no answer, and why: what JobpipeUnavailableError (or the
    first unusable answer's JobpipeAnswerError) says when no URL answers."""

    def __init__(self) -> None:
        self.failures: list[tuple[str, str]] = []
        self.unusable: Optional[JobpipeAnswerError] = None  # the first answer `read` could not use
        self.api_errors: dict[str, str] = {}
        self.retry_after: Optional[float] = None  # the longest Retry-After of a throttle or a 5xx
        self.arrived = False  # whether a URL that failed may have received the request and acted
        self.refused: Optional[tuple[str, requests.Response]] = None  # the first 4xx in front of the API

    def not_asked(self, url: str) -> None:
        self.failures.append((url, "not asked: the wait's time had run out"))

    def no_answer(self, url: str, exc: Exception, budget: float) -> None:
        """Records what requests raised for `url`: whether the request may have reached it
        depends on how far the exchange went."""
        if isinstance(exc, requests.Timeout):
            self.failures.append((url, f"timed out after {budget:g} s"))
            self.arrived = self.arrived or not isinstance(exc, requests.ConnectTimeout)
        elif isinstance(exc, requests.ConnectionError):
            handshake = _handshake_failure(exc)
            self.failures.append((url, f"TLS handshake failed ({handshake})" if handshake
                                  else f"connection failed ({type(exc).__name__})"))
            self.arrived = self.arrived or not (handshake or _never_connected(exc))
        else:  # whatever else requests raises after sending
            self.failures.append((url, f"its answer could not be read ({type(exc).__name__})"))
            self.arrived = True

    def no_answer_from_the_api(self, url: str, response: requests.Response, budget: float) -> bool:
        """True, with the reason recorded, when `response` is no answer of the API's: a
        throttle still on, a 5xx, a redirect, a 4xx from in front of it."""
        throttled, failed = is_throttle(response), response.status_code >= 500
        if (throttled or failed) and (asked := retry_after_s(response)) is not None:
            self.retry_after = max(self.retry_after or 0.0, asked)
        if throttled:
            self.failures.append((url, f"throttled (HTTP {THROTTLED}) for {budget:g} s"))
        elif failed:
            said = api_error(response)
            self.failures.append((url, server_error_reason(response.status_code, said)))
            if said is not None:
                self.api_errors[url] = said[0]
            self.arrived = True
        elif response.is_redirect:  # not followed: a POST would go on as a GET, the token be dropped
            self.failures.append((url, f"redirected (HTTP {response.status_code}) to "
                                       f"{response.headers.get('Location')}: is that the API's URL?"))
        elif is_refused_in_front(response):
            self.failures.append((url, f"HTTP {response.status_code}, not from the jobpipe API"))
            self.refused = self.refused or (url, response)
        else:
            return False
        return True

    def unusable_answer(self, url: str, exc: JobpipeAnswerError) -> None:
        self.failures.append((url, exc.reason))
        self.unusable = self.unusable or exc
        self.arrived = True  # it reached something that answered: the API may have acted

    def error(self) -> Exception:
        """What a call no URL answered raises: the first unusable answer's error naming every
        URL's failure, or else JobpipeUnavailableError."""
        if self.unusable is not None:
            return JobpipeAnswerError(self.unusable.method, self.unusable.url, self.unusable.reason,
                                      failures=self.failures)
        return JobpipeUnavailableError(self.failures, may_have_arrived=self.arrived, api_errors=self.api_errors,
                                       retry_after_s=self.retry_after)


def _read_body(response: requests.Response, deadline: float, clock: Callable[[], float]) -> None:
    """Reads a streamed answer's body into `response` (its `content` and `json()` then work) by
    the monotonic `deadline`: each read may wait only for what is left of the time, so a body
    that trickles in raises requests.ReadTimeout. Other read failures raise the requests
    exception that `response.content` would have raised."""
    raw = response.raw
    if raw is None:  # already read (a response built in memory)
        return
    read = getattr(raw, "read1", raw.read)  # urllib3 1.x has no read1: its read waits for a whole piece
    pieces = []
    try:
        while (left := deadline - clock()) > 0:
            sock = getattr(getattr(raw, "connection", None), "sock", None)
            if sock is not None:
                sock.settimeout(left)  # it was given the whole timeout when the request began
            piece = read(BODY_READ_BYTES, decode_content=True)
            if not piece:
                # What requests' `content` does once it has read the body itself.
                response._content, response._content_consumed = b"".join(pieces), True
                return
            pieces.append(piece)
    except urllib3.exceptions.ReadTimeoutError as exc:
        raise requests.ReadTimeout(exc, response=response) from exc
    except urllib3.exceptions.DecodeError as exc:
        raise requests.exceptions.ContentDecodingError(exc, response=response) from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:  # cut off, or a TLS error
        raise requests.exceptions.ChunkedEncodingError(exc, response=response) from exc
    finally:
        response.close()  # back to the pool when read to the end, dropped otherwise
    raise requests.ReadTimeout(f"the answer from {response.url} did not arrive in time", response=response)


def _handshake_failure(exc: requests.ConnectionError) -> Optional[str]:
    """Why the TLS handshake failed, when `exc` says it did: the server's certificate did not
    verify, or the port does not speak TLS. Both end the handshake, before any of the request
    is sent. None for anything else (a TLS error mid-answer may come after the request)."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    if isinstance(reason, urllib3.exceptions.SSLError) and reason.args:
        reason = reason.args[0]
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {getattr(reason, 'verify_message', None) or reason}"
    if isinstance(reason, ssl.SSLError) and getattr(reason, "reason", None) == "WRONG_VERSION_NUMBER":
        return "the server does not speak TLS there: is the URL http?"
    return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was never made (refused, unresolvable, or the proxy's: urllib3
    raises ProxyError only before a connection through the proxy is made), so nothing was sent;
    False for a connection dropped mid-request, whose request may have been acted on."""
    reason = exc.args[0] if exc.args else None
    if isinstance(reason, urllib3.exceptions.MaxRetryError):
        reason = reason.reason
    return (isinstance(reason, (urllib3.exceptions.NewConnectionError, urllib3.exceptions.ProxyError))
            or "refused" in str(exc).lower())
