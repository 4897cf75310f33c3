"""HTTP adapter of the WebhookSender port (stdlib only: nothing to bundle)."""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Optional

from chalicelib.defaults import WEBHOOK_ANSWER_TEXT_BYTES, WEBHOOK_TIMEOUT_S
from chalicelib.domain.errors import WebhookDeliveryError
from chalicelib.ports import WebhookAnswer


def retry_after_s(value: Optional[str], now: Optional[datetime] = None) -> Optional[float]:
    """A Retry-After header in seconds from now: delay-seconds or an HTTP-date (RFC 9110
    10.2.3); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():  # DIGIT is ASCII; "²" is a digit to isdigit alone
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Unblock a POST past its deadline: a shut-down socket ends the read waiting on it."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class HttpWebhookSender:
    """POSTs with http.client, which follows no redirect: a 3xx is an answer, returned as its
    status (followed, a 301/302/303 would turn the POST into a body-less GET, to any host,
    whose 2xx would count as delivered). Only a 4xx's body is read (its start)."""

    def __init__(self, timeout_s: float = WEBHOOK_TIMEOUT_S) -> None:
        """`timeout_s` bounds each POST, wall clock (connecting, sending, the answer's status
        line and headers): a batch of deliveries must fit the function's timeout."""
        self._timeout = timeout_s
        self._tls = ssl.create_default_context()

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: Optional[float] = None) -> WebhookAnswer:
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            raise WebhookDeliveryError(f"webhook URL must be http(s): {url[:100]!r}")
        limit = self._timeout if timeout_s is None else min(self._timeout, timeout_s)
        if limit <= 0:
            raise WebhookDeliveryError("no time left to POST")
        try:
            port = parts.port
        except ValueError as exc:
            raise WebhookDeliveryError(f"webhook URL has a bad port: {url[:100]!r}") from exc
        connection = (http.client.HTTPSConnection(parts.hostname, port, timeout=limit, context=self._tls)
                      if parts.scheme == "https" else http.client.HTTPConnection(parts.hostname, port, timeout=limit))
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        # Each socket operation times out alone; the watchdog bounds them all together, so an
        # answer trickling in a byte at a time cannot hold the POST past its limit.
        deadline = time.monotonic() + limit
        cut = threading.Event()
        watchdog = threading.Timer(limit, _cut, args=(connection, cut))
        watchdog.daemon = True
        watchdog.start()
        try:
            connection.connect()
            if cut.is_set():  # connecting took the whole limit: the watchdog found no socket to cut
                raise TimeoutError()
            connection.request("POST", path, body=body, headers=headers)
            response = connection.getresponse()
            headers_whole = not cut.is_set()
            answer = WebhookAnswer(response.status, retry_after_s(response.getheader("Retry-After")))
            if 400 <= response.status < 500:  # what the receiver said was wrong: kept if refused for good
                answer = replace(answer, reason=(response.reason or "").strip()[:200], text=_start_of(response))
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ssl.SSLError is an OSError
            if cut.is_set() or time.monotonic() >= deadline:
                raise WebhookDeliveryError.unanswered(limit) from exc
            raise WebhookDeliveryError(f"webhook unreachable: {exc}") from exc
        finally:
            watchdog.cancel()
            connection.close()
        if not headers_whole:  # headers cut short read as if they had ended: not a whole answer
            raise WebhookDeliveryError.unanswered(limit)
        return answer


def _start_of(response: http.client.HTTPResponse) -> str:
    """Up to WEBHOOK_ANSWER_TEXT_BYTES of the answer's body as text; what arrived of it when the
    rest does not (the status and headers are the answer: a body cut short does not undo it)."""
    chunks: list[bytes] = []
    try:
        while sum(map(len, chunks)) < WEBHOOK_ANSWER_TEXT_BYTES:
            chunk = response.read1(WEBHOOK_ANSWER_TEXT_BYTES - sum(map(len, chunks)))
            if not chunk:
                break
            chunks.append(chunk)
    except (OSError, http.client.HTTPException, ValueError):
        pass
    return b"".join(chunks).decode("utf-8", errors="replace").strip()
