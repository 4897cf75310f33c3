"""WebhookSender: POST a body, return the HTTP status (any status); no answer is an error.
Run against the in-memory twin and the urllib adapter talking to a loopback receiver."""
from __future__ import annotations

import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import pytest

from chalicelib.adapters.memory_events import InMemoryWebhookSender
from chalicelib.adapters.webhook import UrllibWebhookSender
from chalicelib.domain.errors import WebhookDeliveryError
from scripts.emulator import free_port


@dataclass
class Endpoint:
    sender: Any
    ok_url: str
    failing_url: str  # answers 500
    unreachable_url: str
    received: Callable[[], list[tuple[str, bytes, dict[str, str]]]]  # (url, body, headers)


def _loopback() -> tuple[ThreadingHTTPServer, list]:
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, body, dict(self.headers)))
            self.send_response(500 if self.path.endswith("/failing") else 202)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), received


@pytest.fixture(params=["memory", "http"])
def endpoint(request):
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    if request.param == "memory":
        sender = InMemoryWebhookSender({"https://erp.example/ok": 202, "https://erp.example/failing": 500})
        sender.unreachable.add(unreachable)
        yield Endpoint(sender, "https://erp.example/ok", "https://erp.example/failing", unreachable,
                       lambda: [(url.split("erp.example")[1], body, headers) for url, body, headers in sender.posts])
        return
    server, received = _loopback()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield Endpoint(UrllibWebhookSender(timeout_s=5), f"{base}/ok", f"{base}/failing", unreachable,
                       lambda: list(received))
    finally:
        server.shutdown()
        server.server_close()


def test_the_body_and_headers_arrive_and_the_status_comes_back(endpoint):
    body = b'{"event_id":"e-1"}'
    assert endpoint.sender.post(endpoint.ok_url, body, {"X-Jobpipe-Event-Id": "e-1", "Content-Type": "application/json"}) == 202
    ((path, received, headers),) = endpoint.received()
    assert path == "/ok" and received == body and headers["X-Jobpipe-Event-Id"] == "e-1"


def test_an_error_status_is_returned_not_raised(endpoint):
    assert endpoint.sender.post(endpoint.failing_url, b"{}", {}) == 500
    assert len(endpoint.received()) == 1


def test_no_answer_and_a_non_http_url_raise_delivery_errors(endpoint):
    with pytest.raises(WebhookDeliveryError):
        endpoint.sender.post(endpoint.unreachable_url, b"{}", {})
    for url in ("file:///etc/passwd", "ftp://erp.example/hook", ""):
        with pytest.raises(WebhookDeliveryError):
            endpoint.sender.post(url, b"{}", {})
    assert endpoint.received() == []
