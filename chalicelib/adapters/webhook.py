"""HTTP adapter of the WebhookSender port (stdlib only: nothing to bundle)."""
from __future__ import annotations

import base64
import http.client
import select
import socket
import ssl
import threading
import time
import urllib.parse
from dataclasses import replace
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Callable, Optional

from chalicelib.defaults import (
    WEBHOOK_ANSWER_TEXT_BYTES,
    WEBHOOK_INTERIM_ANSWERS,
    WEBHOOK_KEEP_BODY_BYTES,
    WEBHOOK_KEEP_IDLE_S,
    WEBHOOK_TIMEOUT_S,
    WEBHOOK_URL_MAX_CHARS,
)
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
    except (TypeError, ValueError, IndexError, OverflowError):  # a year past a C int: OverflowError
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


def _basic_authorization(parts: urllib.parse.SplitResult) -> Optional[str]:
    """The `Authorization: Basic` value of a URL's `user:password@` (percent-decoded, UTF-8,
    RFC 7617), as curl and browsers send it; None for a URL without one. The URL's login goes
    nowhere else: not in the request line, the Host header or a log line."""
    if parts.username is None:
        return None
    login = f"{urllib.parse.unquote(parts.username)}:{urllib.parse.unquote(parts.password or '')}"
    return "Basic " + base64.b64encode(login.encode("utf-8")).decode("ascii")


def _cut(connection: http.client.HTTPConnection, cut: threading.Event) -> None:
    """Unblock a POST past its deadline: a shut-down socket ends the read waiting on it."""
    cut.set()
    sock = connection.sock
    if sock is not None:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _resolve_by(host: str, port: int, deadline: float) -> list[tuple]:
    """The host's addresses (getaddrinfo), waited for no later than `deadline`: the resolver
    has timeouts of its own (seconds a try, several tries), which know nothing of the POST's,
    and a socket's timeout does not bound it. Raises TimeoutError past the deadline (the
    lookup is left to end on its own thread), OSError (socket.gaierror) when it failed."""
    found: dict[str, object] = {}
    done = threading.Event()

    def resolve() -> None:
        try:
            found["addresses"] = socket.getaddrinfo(host, port, 0, socket.SOCK_STREAM)
        except OSError as exc:
            found["error"] = exc
        finally:
            done.set()

    threading.Thread(target=resolve, daemon=True).start()
    if not done.wait(max(0.0, deadline - time.monotonic())):
        raise TimeoutError(f"could not resolve {host} in time")
    if "error" in found:
        raise found["error"]  # type: ignore[misc]
    return found["addresses"]  # type: ignore[return-value]


def _connector(deadline: float) -> Callable[..., socket.socket]:
    """What http.client opens a connection's socket with (its `_create_connection`): as
    socket.create_connection, each address in turn, the host resolved and each connect timed
    out by `deadline`, so connecting keeps within the POST's limit however slow the DNS."""

    def create_connection(address: tuple[str, int], timeout: object = None,
                          source_address: Optional[tuple[str, int]] = None) -> socket.socket:
        host, port = address
        failure: Optional[OSError] = None
        for *_, sockaddr in _resolve_by(host, port, deadline):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"could not connect to {host} in time")
            try:
                return socket.create_connection((sockaddr[0], port), left, source_address)
            except OSError as exc:
                failure = exc
        raise failure or OSError(f"{host} has no address")

    return create_connection


class _ClosedUnderUs(Exception):
    """A kept connection the server had closed: nothing of an answer came back on it."""


# Nothing read, the connection closed or reset: what a kept connection the server has just
# closed answers (RemoteDisconnected is a ConnectionResetError).
_CLOSED = (ConnectionResetError, BrokenPipeError, ConnectionAbortedError)

Origin = tuple[str, str, Optional[int]]


class HttpWebhookSender:
    """POSTs with http.client, which follows no redirect: a 3xx is an answer, returned as its
    status (followed, a 301/302/303 would turn the POST into a body-less GET, to any host,
    whose 2xx would count as delivered). Only a 4xx's body is kept (its start). An answer
    whose headers http.client refuses is its status line (`_Answer`). A URL's
    `user:password@` is sent as Basic authorization, as curl and browsers send it.

    The connection to each host stays open after an answer read to its end (HTTP/1.1
    keep-alive) for the next POST, at most `keep_idle_s` idle: a batch of events costs one TCP
    and TLS handshake, not one each. A kept connection is checked before it is used (a server
    that closed it has left it readable), and a POST on a kept connection closed under it with
    nothing answered is sent once more on a new one, as HTTP clients do: a server closing an
    idle connection does not read what arrives on it. (One that failed while handling the POST
    would see it again in any case: the bridge retries every unanswered POST.)"""

    def __init__(self, timeout_s: float = WEBHOOK_TIMEOUT_S, keep_idle_s: float = WEBHOOK_KEEP_IDLE_S,
                 tls: Optional[ssl.SSLContext] = None) -> None:
        """`timeout_s` bounds each POST, wall clock (connecting, sending, the answer's status
        line and headers): a batch of deliveries must fit the function's timeout. `tls`: the
        context HTTPS connections verify the server with (default: the system's CAs)."""
        self._timeout = timeout_s
        self._keep_idle = keep_idle_s
        self._tls = tls or ssl.create_default_context()
        self._lock = threading.Lock()
        self._kept: dict[Origin, tuple[http.client.HTTPConnection, float]] = {}  # origin -> (connection, idle since)

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
        origin: Origin = (parts.scheme, parts.hostname, port)
        login = _basic_authorization(parts)
        if login is not None:
            headers = {**headers, "Authorization": login}
        request = ((parts.path or "/") + (f"?{parts.query}" if parts.query else ""), body, headers)
        deadline = time.monotonic() + limit
        kept = self._take(origin)
        if kept is not None:
            try:
                return self._exchange(kept, origin, request, deadline, limit)
            except _ClosedUnderUs:
                pass
        return self._exchange(self._new(origin), origin, request, deadline, limit)

    def _new(self, origin: Origin) -> http.client.HTTPConnection:
        scheme, host, port = origin
        if scheme == "https":
            connection = http.client.HTTPSConnection(host, port, context=self._tls)
        else:
            connection = http.client.HTTPConnection(host, port)
        connection.response_class = _Answer
        return connection

    def _take(self, origin: Origin) -> Optional[http.client.HTTPConnection]:
        """The connection kept for `origin`, if it is still open and has not idled too long."""
        with self._lock:
            connection, since = self._kept.pop(origin, (None, 0.0))
        if connection is None:
            return None
        if time.monotonic() - since > self._keep_idle or not _idle_and_open(connection):
            connection.close()
            return None
        return connection

    def _keep(self, origin: Origin, connection: http.client.HTTPConnection) -> None:
        with self._lock:
            replaced, _ = self._kept.pop(origin, (None, 0.0))
            self._kept[origin] = (connection, time.monotonic())
        if replaced is not None:  # two POSTs at once to one host: one connection is kept
            replaced.close()

    def _exchange(self, connection: http.client.HTTPConnection, origin: Origin,
                  request: tuple[str, bytes, dict[str, str]], deadline: float, limit: float) -> WebhookAnswer:
        """One POST on `connection` (kept: open already; else connected here) by `deadline`.
        Raises _ClosedUnderUs when a kept connection was closed under the POST with nothing
        answered, WebhookDeliveryError for any other failure; keeps the connection when the
        answer was read to its end and the server keeps it open."""
        kept = connection.sock is not None
        path, body, headers = request
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            connection.close()
            raise WebhookDeliveryError.unanswered(limit)
        # Each socket operation times out alone; the watchdog bounds them all together, so an
        # answer trickling in a byte at a time cannot hold the POST past its limit.
        cut = threading.Event()
        watchdog = threading.Timer(remaining, _cut, args=(connection, cut))
        watchdog.daemon = True
        watchdog.start()
        answered, keep = False, False
        try:
            # A new connection's socket takes its timeout from _connector (what is left at its
            # connect); http.client's own `timeout` is only handed to that, which ignores it.
            if kept:
                connection.sock.settimeout(remaining)
            else:
                connection._create_connection = _connector(deadline)  # type: ignore[attr-defined]
                connection.connect()
                if cut.is_set():  # connecting took the whole limit: the watchdog found no socket to cut
                    raise TimeoutError()
            connection.request("POST", path, body=body, headers=headers)
            first = connection.getresponse()
            answered = True  # a status line came, an interim one too: the POST arrived
            response = _past_interim(first)
            headers_whole = not cut.is_set()
            answer = WebhookAnswer(response.status, retry_after_s(response.getheader("Retry-After")))
            if 400 <= response.status < 500:  # what the receiver said was wrong: kept if refused for good
                answer = replace(answer, reason=(response.reason or "").strip()[:200], text=_start_of(response))
            elif 300 <= response.status < 400:  # where the ERP says it is now: for the operator to set
                answer = replace(answer, location=(response.getheader("Location") or "").strip()[:WEBHOOK_URL_MAX_CHARS])
            # After an interim answer http.client still holds that one as the connection's: not kept.
            keep = headers_whole and response is first and _read_to_end(response)
        except (OSError, http.client.HTTPException, ValueError) as exc:  # ssl.SSLError is an OSError
            if kept and not answered and not cut.is_set() and isinstance(exc, _CLOSED):
                raise _ClosedUnderUs() from exc
            if cut.is_set() or time.monotonic() >= deadline:
                raise WebhookDeliveryError.unanswered(limit) from exc
            raise _failure(origin, exc) from exc
        finally:
            watchdog.cancel()
            if keep and not cut.is_set():
                self._keep(origin, connection)
            else:
                connection.close()
        if not headers_whole:  # headers cut short read as if they had ended: not a whole answer
            raise WebhookDeliveryError.unanswered(limit)
        return answer


def _failure(origin: Origin, exc: Exception) -> WebhookDeliveryError:
    """What went wrong with a POST that got no answer, said as the operator fixes it: a TLS
    certificate that failed verification (expired, for another host, from an authority the
    bridge does not trust) is the ERP's certificate to fix, not a network to check."""
    _, host, port = origin
    where = host if port is None else f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = exc.verify_message or exc.reason or str(exc)
        return WebhookDeliveryError(f"the TLS certificate of webhook {where} failed verification: {why}")
    if isinstance(exc, ssl.SSLError):
        return WebhookDeliveryError(f"the TLS handshake with webhook {where} failed: {exc}")
    return WebhookDeliveryError(f"webhook unreachable: {exc}")


class _Answer(http.client.HTTPResponse):
    """An answer read as http.client reads it, and by its status line when http.client refuses
    its headers (more than 100 of them, or a line over 64 KiB): the status line came, so the
    POST arrived, and counted unanswered it would be sent again on every retry, a duplicate
    each time to an ERP that keeps every POST. Such an answer is its status line alone: no
    header (no Retry-After) and no body read, its connection closed after it."""

    def begin(self) -> None:
        try:
            super().begin()
        except http.client.HTTPException:
            # `version` is set once the status line is read, before the headers are. An interim
            # answer's unread headers leave nowhere to read the answer after it from.
            if self.headers is not None or self.version not in (10, 11) or self.status < 200:
                raise
            self.headers = self.msg = http.client.HTTPMessage()
            self.chunked, self.length, self.will_close = False, 0, True


class _Following:
    """What http.client's HTTPResponse reads an answer from, as a socket: the reader the
    interim answer before it was read from, with what it has buffered of the next."""

    def __init__(self, reader: object) -> None:
        self._reader = reader

    def makefile(self, mode: str) -> object:
        return self._reader


def _past_interim(response: http.client.HTTPResponse) -> http.client.HTTPResponse:
    """The final answer to the POST: http.client skips `100 Continue` only, and hands back any
    other interim answer (`102 Processing`, `103 Early Hints`) as if it were the answer, which
    would fail a delivery the receiver then accepts (a duplicate POST). An interim answer has
    headers and no body; the final one follows on the same connection. At most
    WEBHOOK_INTERIM_ANSWERS of them: a receiver sending nothing else has not answered."""
    for _ in range(WEBHOOK_INTERIM_ANSWERS + 1):  # the interim answers, then the final one
        if not 102 <= response.status < 200:  # 101 switches protocols: no POST here asks for it
            return response
        following = _Answer(_Following(response.fp), method="POST")  # type: ignore[arg-type]
        response.fp = None  # the reader is the following answer's now: closing this one would close it
        following.begin()
        response = following
    raise http.client.HTTPException(f"more than {WEBHOOK_INTERIM_ANSWERS} interim answers and no final one")


def _idle_and_open(connection: http.client.HTTPConnection) -> bool:
    """Whether a kept connection has nothing to read, as an open idle one has: a server that
    closed it (or sent what no request asked for) left it readable."""
    sock = connection.sock
    if sock is None or (isinstance(sock, ssl.SSLSocket) and sock.pending()):
        return False
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def _read_to_end(response: http.client.HTTPResponse) -> bool:
    """Read what is left of the answer's body, up to WEBHOOK_KEEP_BODY_BYTES; whether it ended
    and the server keeps the connection open (so the connection can carry the next POST). A
    body that fails to arrive is not an error: the status and headers are the answer."""
    if response.will_close or (response.length or 0) > WEBHOOK_KEEP_BODY_BYTES:
        return False
    left = WEBHOOK_KEEP_BODY_BYTES
    try:
        while not response.isclosed() and left > 0:
            chunk = response.read(min(left, 16 * 1024))
            if not chunk:
                break
            left -= len(chunk)
    except (OSError, http.client.HTTPException, ValueError):
        return False
    return response.isclosed() and not response.length  # a length left: the body came short


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
