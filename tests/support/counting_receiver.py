"""An HTTP/1.1 receiver on 127.0.0.1 that keeps connections open and counts them: what the
webhook sender's kept connections are tested and measured against."""
from __future__ import annotations

import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class CountingReceiver:
    """An HTTP/1.1 receiver on 127.0.0.1. Each path is a way of answering:

    - `/ok`: 202, the connection kept open;
    - `/close`: 202 with `Connection: close`;
    - `/ok-then-close`: 202 with no word of closing, then closes (an idle timeout of zero);
    - `/ok-then-stray`: 202, the connection kept open, then, once `stray_asked` is set, a
      second `200 OK` no request asked for (`strays` released once it is sent);
    - `/drop-second`: the second POST on a connection is read and not answered, the connection
      closed (a server timing out an idle connection just as a POST arrives);
    - `/hint-then-drop-second`: the second POST on a connection gets `102 Processing` and then
      the connection closed (a receiver that took the POST and died before its answer);
    - `/hints`: `103 Early Hints`, then 202, the connection kept open;
    - `/refused?bytes=N`: 422 with an N-byte body;
    - `/short`: 202 saying a 100-byte body, 10 bytes of it, then the connection closed;
    - `/trickle`: 200 one byte every 0.1 s.

    `connections` counts the connections accepted, `answered` the bodies answered 2xx or 4xx,
    `interim` those that got an interim answer and no other."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.connections = 0
        self.answered: list[bytes] = []
        self.interim: list[bytes] = []  # the bodies answered with an interim answer alone
        self.stray_asked = threading.Event()  # /ok-then-stray's second answer may go
        self.strays = threading.Semaphore(0)  # one release per answer sent unasked
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                receiver.connections += 1
                self.posts_here = 0
                super().setup()

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                self.posts_here += 1
                if self.path == "/drop-second" and self.posts_here == 2:
                    self.close_connection = True
                    return
                if self.path == "/hint-then-drop-second" and self.posts_here == 2:
                    receiver.interim.append(body)
                    self.send_response_only(102)
                    self.end_headers()
                    self.close_connection = True
                    return
                if self.path == "/hints":
                    self.send_response_only(103)
                    self.send_header("Link", "</style.css>; rel=preload")
                    self.end_headers()
                if self.path == "/trickle":
                    try:
                        for byte in b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n":
                            self.wfile.write(bytes([byte]))
                            self.wfile.flush()
                            time.sleep(0.1)
                    except OSError:
                        pass
                    self.close_connection = True
                    return
                receiver.answered.append(body)
                if self.path == "/short":
                    self.send_response(202)
                    self.send_header("Content-Length", "100")
                    self.end_headers()
                    self.wfile.write(b"x" * 10)
                    self.close_connection = True
                    return
                text = b""
                if self.path.startswith("/refused"):
                    text = b"x" * int(self.path.split("bytes=")[1])
                self.send_response(422 if text else 202)
                self.send_header("Content-Length", str(len(text)))
                if self.path == "/close":
                    self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(text)
                if self.path == "/ok-then-close":
                    self.close_connection = True
                if self.path == "/ok-then-stray" and receiver.stray_asked.wait(5):
                    self.wfile.flush()
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
                    self.wfile.flush()
                    receiver.strays.release()

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        scheme = "https" if tls is not None else "http"
        self.base = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
