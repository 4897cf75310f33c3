"""A loopback HTTP receiver standing in for an ERP: records signed deliveries, and can answer
500 to the first delivery of chosen events, or to a random fraction of all deliveries."""
from __future__ import annotations

import json
import random
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chalicelib.subscribers.erp import EVENT_ID_HEADER, SIGNATURE_HEADER, verify


class WebhookReceiver:
    def __init__(self, secret: str, *, fail_rate: float = 0.0, max_failures_per_event: int = 2, seed: int = 0,
                 outage_s: float = 0.0) -> None:
        """`fail_rate`: the fraction of deliveries answered 500, at most `max_failures_per_event`
        times for one event (so the bridge's backoff keeps a test bounded). `outage_s`: every
        delivery in the first `outage_s` seconds after start is answered 503 (an ERP outage)."""
        self.secret = secret
        self.outage_s = outage_s
        self._outage_ends = float("inf")
        self.fail_rate = fail_rate
        self.max_failures_per_event = max_failures_per_event
        self._random = random.Random(seed)
        self._failures: Counter[str] = Counter()
        self.deliveries: list[dict[str, Any]] = []  # every request, failed ones included
        self.fail_first_for_jobs: set[str] = set()
        # Jobs whose events are first answered 302 (a redirect that must not count as delivered).
        self.redirect_first_for_jobs: set[str] = set()
        self._failed_once: set[str] = set()
        self.followed_redirects = 0  # GETs: a redirect followed with the body dropped
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            # As an ERP's server would: the connection kept open between deliveries.
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                status = receiver._receive(body, dict(self.headers))
                self.send_response(status)
                if status == 302:
                    self.send_header("Location", "/erp/moved")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:  # noqa: N802: a sender that followed a redirect lands here
                with receiver._lock:
                    receiver.followed_redirects += 1
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                return

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/erp/events"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def _receive(self, body: bytes, headers: dict[str, str]) -> int:
        detail = json.loads(body)
        with self._lock:
            status = 200
            if time.monotonic() < self._outage_ends:
                status = 503
            elif detail.get("job_id") in self.fail_first_for_jobs and detail["event_id"] not in self._failed_once:
                self._failed_once.add(detail["event_id"])
                status = 500
            elif detail.get("job_id") in self.redirect_first_for_jobs and detail["event_id"] not in self._failed_once:
                self._failed_once.add(detail["event_id"])
                status = 302
            elif (self.fail_rate and self._failures[detail["event_id"]] < self.max_failures_per_event
                  and self._random.random() < self.fail_rate):
                self._failures[detail["event_id"]] += 1
                status = 500
            self.deliveries.append(
                {
                    "detail": detail,
                    "status": status,
                    "event_id_header": headers.get(EVENT_ID_HEADER),
                    "signature_valid": verify(self.secret, body, headers.get(SIGNATURE_HEADER, "")),
                }
            )
        return status

    def accepted(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for d in self.deliveries if d["status"] == 200 and d["detail"]["job_id"] == job_id]

    def accepted_counts(self) -> Counter[str]:
        """event_id -> how many deliveries of it were answered 200."""
        with self._lock:
            return Counter(d["detail"]["event_id"] for d in self.deliveries if d["status"] == 200)

    def all_for(self, job_id: str) -> list[dict[str, Any]]:
        with self._lock:
            return [d for d in self.deliveries if d["detail"]["job_id"] == job_id]

    @property
    def outage_ends(self) -> float:
        """When (time.monotonic()) the outage ends: every delivery before is answered 503."""
        return self._outage_ends

    def start(self) -> "WebhookReceiver":
        self._outage_ends = time.monotonic() + self.outage_s
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
