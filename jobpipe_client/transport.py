"""HTTP with fallback: every call tries the primary URL first, then each fallback in order.

A connection error, a timeout or a 5xx moves on to the next URL; any other answer (2xx, 304,
4xx) is the answer. The next call starts at the primary again, so a primary that comes back
is used at once.

A 429 that is not jobpipe's own answer is a throttle (API Gateway's, or the function's
reserved concurrency, which the local stack sets so that a burst queues behind warm
processes): the function did not run, so the same URL is asked again after a short, jittered,
doubling wait (or its Retry-After), for as long as the request's timeout allows; a URL still
throttling then counts as failed. A 429 in jobpipe's error shape (`{"error": {"code": ...}}`,
e.g. a tenant over its quota) is the API's answer, like any other 4xx."""
from __future__ import annotations

import random
import time
from typing import Any, Callable, Optional, Sequence

import requests

from jobpipe_client.errors import JobpipeUnavailableError

THROTTLED = 429
# First wait after a throttle, doubled per retry up to the cap; each wait is jittered (a
# random share of it) so a burst of throttled clients does not come back in step. The cap is
# short because a throttle frees up within a request's time (the function's slot), and a long
# wait leaves the slot idle: with a 1 s cap a burst of 30 submits on the local stack answered
# after a median 6.9 s, mostly spent waiting with free slots.
THROTTLE_FIRST_WAIT_S = 0.05
THROTTLE_MAX_WAIT_S = 0.4


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
        cleaned = [u.strip().rstrip("/") for u in urls if u and u.strip()]
        if not cleaned:
            raise ValueError("at least one API base URL is needed")
        self.urls = list(dict.fromkeys(cleaned))
        self.timeout_s = timeout_s
        self.session = session or requests.Session()
        self.session.headers.update(
            {"Authorization": f"Bearer {token}", "Accept": "application/json", "User-Agent": "jobpipe-client/0.1"}
        )
        self.last_url: Optional[str] = None  # the URL that gave the last answer
        self.throttled = 0  # 429s retried so far (the benchmark reports them)
        self._sleep = sleep
        self._clock = clock
        self._jitter = jitter

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The first answer that is not a failure. Raises JobpipeUnavailableError when every
        URL failed, listing why each did; its `may_have_arrived` is true when some URL may
        have received the request and acted on it (no answer in time, a 5xx, a dropped
        connection), false when none can have (refused, or throttled throughout)."""
        failures: list[tuple[str, str]] = []
        arrived = False
        for url in self.urls:
            try:
                response = self._until_not_throttled(method, url + path, **kwargs)
            except requests.Timeout as exc:
                failures.append((url, f"timed out after {self.timeout_s:g} s"))
                arrived = arrived or not isinstance(exc, requests.ConnectTimeout)
                continue
            except requests.ConnectionError as exc:
                failures.append((url, f"connection failed ({type(exc).__name__})"))
                arrived = arrived or not _never_connected(exc)
                continue
            if is_throttle(response):
                failures.append((url, f"throttled (HTTP {THROTTLED}) for {self.timeout_s:g} s"))
                continue
            if response.status_code >= 500:
                failures.append((url, f"HTTP {response.status_code}"))
                arrived = True
                continue
            self.last_url = url
            return response
        raise JobpipeUnavailableError(failures, may_have_arrived=arrived)

    def _until_not_throttled(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        """The URL's answer, asked again while it is a 429 and the request's timeout allows."""
        deadline = self._clock() + self.timeout_s
        wait = THROTTLE_FIRST_WAIT_S
        while True:
            response = self.session.request(method, url, timeout=self.timeout_s, **kwargs)
            if not is_throttle(response):
                return response
            pause = _retry_after_s(response)
            pause = min(pause, THROTTLE_MAX_WAIT_S) if pause is not None else wait * (0.5 + self._jitter() / 2)
            if self._clock() + pause >= deadline:
                return response
            self.throttled += 1
            self._sleep(pause)
            wait = min(wait * 2, THROTTLE_MAX_WAIT_S)


def is_throttle(response: requests.Response) -> bool:
    """A 429 from in front of the API (a gateway or the function's concurrency), not one the
    API itself answered with its error shape."""
    if response.status_code != THROTTLED:
        return False
    try:
        body = response.json()
    except ValueError:
        return True
    error = body.get("error") if isinstance(body, dict) else None
    return not (isinstance(error, dict) and error.get("code"))


def _retry_after_s(response: requests.Response) -> Optional[float]:
    """A Retry-After header in seconds, or None when absent or a date (not worth parsing)."""
    value = response.headers.get("Retry-After", "").strip()
    try:
        return max(0.0, float(value)) if value else None
    except ValueError:
        return None


def _never_connected(exc: requests.ConnectionError) -> bool:
    """True when the connection was never made (refused, unresolvable), so nothing was sent;
    False for a connection dropped mid-request, whose request may have been acted on."""
    from urllib3.exceptions import MaxRetryError, NewConnectionError

    reason = exc.args[0] if exc.args else None
    if isinstance(reason, MaxRetryError):
        reason = reason.reason
    return isinstance(reason, NewConnectionError) or "refused" in str(exc).lower()
