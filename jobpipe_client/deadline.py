"""A requests session whose timeout bounds the whole wait for an answer's status line and headers.

requests hands its timeout to each socket operation, so a server that sends its status line and
headers a byte at a time, each within the timeout, holds a request for as long as it keeps
sending (forever, for one that never stops). Here a watchdog cuts the connection once the timeout
has passed since the request began, and the request fails with the read timeout it is. The body
is not the watchdog's: the transport reads it against the same deadline itself."""
from __future__ import annotations

import socket
import threading
from typing import Any, Optional

import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.poolmanager import PoolManager
from urllib3.util.timeout import Timeout

# How often the watchdog looks again for the connection's socket when the deadline passes while
# the connection is still being made (its connect timeout bounds that on its own).
SOCKET_LOOK_S = 0.05


def deadline_session() -> requests.Session:
    """A Session whose http(s) requests cannot outlast their timeout before the body."""
    session = requests.Session()
    adapter = DeadlineAdapter()
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


class DeadlineAdapter(HTTPAdapter):
    """HTTPAdapter whose connection pools bound the headers' wait by the request's timeout."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_deadline_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> PoolManager:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        _use_deadline_pools(manager)
        return manager


def _use_deadline_pools(manager: PoolManager) -> None:
    # Only over urllib3's own pools: a SOCKS proxy manager has its own, which this leaves alone.
    if manager.pool_classes_by_scheme == urllib3.poolmanager.pool_classes_by_scheme:
        manager.pool_classes_by_scheme = {"http": DeadlineHTTPPool, "https": DeadlineHTTPSPool}


class _DeadlineRequests:
    """Mixed into a connection pool: each request's send and header read is watched."""

    def _make_request(self, conn: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        seconds = _budget_s(kwargs.get("timeout"))
        if seconds is None:
            return super()._make_request(conn, method, url, *args, **kwargs)  # type: ignore[misc]
        watchdog = Watchdog(conn, seconds)
        try:
            response = super()._make_request(conn, method, url, *args, **kwargs)  # type: ignore[misc]
        except Exception as exc:
            if watchdog.stop():  # the failure is the cut: say what caused it
                raise ReadTimeoutError(self, url, f"no answer within {seconds:g} s") from exc  # type: ignore[arg-type]
            raise
        finally:
            watchdog.stop()  # also on Ctrl-C: a late cut would hit this connection's next request
        if watchdog.stop():
            # Cut mid-headers, http.client may still have parsed what came as a whole answer.
            response.close()
            raise ReadTimeoutError(self, url, f"no answer within {seconds:g} s")  # type: ignore[arg-type]
        return response


class DeadlineHTTPPool(_DeadlineRequests, HTTPConnectionPool):
    pass


class DeadlineHTTPSPool(_DeadlineRequests, HTTPSConnectionPool):
    pass


def _budget_s(timeout: Any) -> Optional[float]:
    """The seconds a request may take, from what requests passed (its read timeout), or None."""
    value = timeout.read_timeout if isinstance(timeout, Timeout) else timeout
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


class Watchdog:
    """Shuts `conn`'s socket down once `seconds` have passed, unless stopped first: a read
    waiting on it then ends at once."""

    def __init__(self, conn: Any, seconds: float) -> None:
        self._conn = conn
        self._done = threading.Event()
        self._lock = threading.Lock()  # the cut and stop() never cross: stop() sees the last word
        self._cut = False
        threading.Thread(target=self._run, args=(seconds,), name="jobpipe-request-deadline", daemon=True).start()

    def stop(self) -> bool:
        """Ends the watch; True when the connection was cut."""
        with self._lock:
            self._done.set()
            return self._cut

    def _run(self, seconds: float) -> None:
        wait = seconds
        while not self._done.wait(wait):
            with self._lock:
                if self._done.is_set():
                    return
                sock = getattr(self._conn, "sock", None)
                if sock is not None:
                    self._cut = True
                    _shut_down(sock)
                    return
            wait = SOCKET_LOOK_S


def _shut_down(sock: socket.socket) -> None:
    try:
        # socket.socket's own shutdown, also for a TLS socket: SSLSocket.shutdown would drop its
        # TLS state under the thread reading from it.
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass  # already closed: nothing left to cut
