"""HTTP with fallback: every call tries the primary URL first, then each fallback in order.

A connection error, a timeout or a 5xx moves on to the next URL; any other answer (2xx, 304,
4xx) is the answer. The next call starts at the primary again, so a primary that comes back
is used at once."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import requests

from jobpipe_client.errors import JobpipeUnavailableError


class FailoverTransport:
    def __init__(
        self,
        urls: Sequence[str],
        *,
        token: str,
        timeout_s: float = 10.0,
        session: Optional[requests.Session] = None,
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

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """The first answer that is not a failure. Raises JobpipeUnavailableError when every
        URL failed, listing why each did."""
        failures: list[tuple[str, str]] = []
        for url in self.urls:
            try:
                response = self.session.request(method, url + path, timeout=self.timeout_s, **kwargs)
            except requests.Timeout:
                failures.append((url, f"timed out after {self.timeout_s:g} s"))
                continue
            except requests.ConnectionError as exc:
                failures.append((url, f"connection failed ({type(exc).__name__})"))
                continue
            if response.status_code >= 500:
                failures.append((url, f"HTTP {response.status_code}"))
                continue
            self.last_url = url
            return response
        raise JobpipeUnavailableError(failures)
