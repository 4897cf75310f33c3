"""A loopback reverse proxy (stdlib only) used as a primary API URL that tests can stop and
start: every request is forwarded to `--target` and logged as one line to `--log`; an
unreachable target answers 502, as a real gateway would.

    python -m tests.support.reverse_proxy --port 8123 --target http://127.0.0.1:4566/... --log proxy.log
"""
from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Optional
from urllib.parse import urlsplit

HOST = "127.0.0.1"
HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
              "transfer-encoding", "upgrade", "host", "content-length"}


def make_handler(target: str, log_path: Path) -> type[BaseHTTPRequestHandler]:
    parts = urlsplit(target)
    base_path = parts.path.rstrip("/")

    class Forward(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _forward(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            with log_path.open("a") as log:
                log.write(f"{self.command} {self.path}\n")
            try:
                upstream = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
                upstream.request(self.command, base_path + self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                payload = answer.read()
                status, reply_headers = answer.status, answer.getheaders()
                upstream.close()
            except OSError as exc:
                status, payload = 502, f'{{"message": "bad gateway: {type(exc).__name__}"}}'.encode()
                reply_headers = [("Content-Type", "application/json")]
            self.send_response(status)
            for name, value in reply_headers:
                if name.lower() not in HOP_BY_HOP:
                    self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(payload)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _forward

        def log_message(self, *args) -> None:  # the log file is the record
            pass

    return Forward


class ReverseProxy:
    """The proxy as a child process; started on a fixed port, stopped by its own PID."""

    def __init__(self, port: int, target: str, log: Path) -> None:
        self.port = port
        self.target = target
        self.log = log
        self.url = f"http://{HOST}:{port}"
        self.process: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 15) -> "ReverseProxy":
        self.log.touch()
        root = Path(__file__).resolve().parents[2]
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.support.reverse_proxy", "--port", str(self.port),
             "--target", self.target, "--log", str(self.log)],
            cwd=root, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"reverse proxy exited with code {self.process.returncode}")
            try:
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"reverse proxy did not listen on {self.url}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=10)
        self.process = None

    def requests_seen(self) -> list[str]:
        return self.log.read_text().splitlines()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--target", required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args()
    server = ThreadingHTTPServer((HOST, args.port), make_handler(args.target, args.log))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.serve_forever()


if __name__ == "__main__":
    main()
