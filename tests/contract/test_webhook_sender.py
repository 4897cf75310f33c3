"""WebhookSender: POST a body, return the HTTP status (any status); no answer is an error, and so
is an answer that has not arrived whole (status line and headers) within the POST's timeout.
Run against the in-memory twin and the HTTP adapter talking to a loopback receiver."""
from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator

import pytest

from chalicelib.adapters.memory_events import InMemoryWebhookSender
from chalicelib.adapters.webhook import HttpWebhookSender
from chalicelib.defaults import WEBHOOK_ANSWER_TEXT_BYTES, WEBHOOK_INTERIM_ANSWERS, WEBHOOK_URL_MAX_CHARS
from chalicelib.domain.errors import WebhookDeliveryError
from scripts.emulator import free_port


@dataclass
class Endpoint:
    sender: Any
    ok_url: str
    failing_url: str  # answers 500
    unreachable_url: str
    slow_url: str  # answers 200 a byte at a time, over about 2.5 s
    stalled_url: str  # answers 200 a byte at a time, over about 16 s: far past any wait here
    received: Callable[[], list[tuple[str, bytes, dict[str, str]]]]  # (url, body, headers)


def _loopback() -> tuple[ThreadingHTTPServer, list]:
    received: list = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            received.append((self.path, body, dict(self.headers)))
            if self.path.endswith("/moved-far"):  # a Location longer than any webhook URL taken
                self.send_response(307)
                self.send_header("Location", "http://other.example/" + "x" * 5000)
            elif "/moved" in self.path:  # to another host: never followed. /moved/<status>: that 3xx
                self.send_response(int(self.path.rsplit("/", 1)[1]) if self.path[-1].isdigit() else 302)
                self.send_header("Location", "http://other.example/hook")
            elif self.path.endswith("/dropped"):  # read, then the connection closed with no answer
                self.close_connection = True
                return
            elif self.path.endswith("/refused-at-length"):  # a reason phrase and a body past what is kept
                text = "Kunde „Müller“ unbekannt. ".encode() * 100
                self.send_response(422, "  Unknown tenant: " + "acme " * 100)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return
            elif self.path.endswith("/hints"):  # as many interim answers as are read past, then the answer
                for interim in (102, *[103] * (WEBHOOK_INTERIM_ANSWERS - 1)):
                    self.send_response_only(interim)
                    self.send_header("Link", "</style.css>; rel=preload")
                    self.end_headers()
                self.send_response(202)
            elif self.path.endswith("/too-many-hints"):  # one interim answer more than are read past
                for _ in range(WEBHOOK_INTERIM_ANSWERS + 1):
                    self.send_response_only(103)
                    self.end_headers()
                self.send_response(202)
            elif "/crowded" in self.path:  # /crowded/<status>: 150 headers; /crowded/long-line: one of 70,000 bytes
                if "/hinted/" in self.path:  # an interim answer before it
                    self.send_response_only(103)
                    self.end_headers()
                self.send_response(int(self.path.rsplit("/", 1)[1]) if self.path[-1].isdigit() else 200)
                if self.path.endswith("/long-line"):
                    self.send_header("X-Trace", "x" * 70_000)
                for i in range(150):
                    self.send_header(f"X-Trace-{i}", str(i))
                self.send_header("Retry-After", "120")
            elif self.path.endswith("/busy"):
                self.send_response(429)
                self.send_header("Retry-After", "120")
            elif "/refused" in self.path:  # /refused: 422; /refused/<status>: that 4xx
                text = b'{"error": "unknown tenant acme"}' + b" " * 5000
                self.send_response(int(self.path.rsplit("/", 1)[1]) if self.path[-1].isdigit() else 422)
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)
                return
            else:
                self.send_response(500 if self.path.endswith("/failing") else 202)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            return

    return ThreadingHTTPServer(("127.0.0.1", 0), Handler), received


@contextmanager
def serving() -> Iterator[tuple[str, list]]:
    """The loopback receiver, served on a thread of its own: its base URL and what it received."""
    server, received = _loopback()
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", received
    finally:
        server.shutdown()
        server.server_close()


def _trickling() -> tuple[socket.socket, str]:
    """A receiver that reads the request, then answers 200 one byte at a time: every 0.04 s
    (about 2.5 s in all) at /slow, every 0.25 s (about 16 s) at /stalled, and at
    /stalled-headers its status line at once, its headers every 0.25 s (about 10 s). Each byte comes well
    inside a socket timeout, the whole answer does not; /stalled's so far past a 1 s limit that
    a sender waiting it out is told from one cut at its deadline on a machine however busy."""
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                connection, _ = server.accept()
            except OSError:
                return
            with connection:
                try:
                    request = connection.recv(65536)
                    pause = 0.04 if b" /slow " in request else 0.25
                    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Padding: " + b"." * 10 + b"\r\n\r\n"
                    at_once = b"HTTP/1.1 200 OK\r\n" if b" /stalled-headers " in request else b""
                    connection.sendall(at_once)
                    for byte in answer[len(at_once):]:
                        connection.sendall(bytes([byte]))
                        time.sleep(pause)
                except OSError:
                    pass

    threading.Thread(target=serve, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}"


# Each sender's own bound: wide, so the trickling tests' per-POST timeouts decide (a slow answer
# must not outrun the sender's bound because the machine is busy).
SENDER_TIMEOUT_S = 60


@pytest.fixture(params=["memory", "http"])
def endpoint(request):
    unreachable = f"http://127.0.0.1:{free_port()}/hook"
    if request.param == "memory":
        sender = InMemoryWebhookSender({"https://erp.example/ok": 202, "https://erp.example/failing": 500,
                                        "https://erp.example/hints": 202,
                                        "https://erp.example/moved": 302, "https://erp.example/busy": 429},
                                       timeout_s=SENDER_TIMEOUT_S)
        sender.retry_after["https://erp.example/busy"] = 120
        sender.locations["https://erp.example/moved"] = "http://other.example/hook"
        sender.statuses["https://erp.example/refused"] = 422
        sender.texts["https://erp.example/refused"] = '{"error": "unknown tenant acme"}' + " " * 5000
        for status in (400, 499):
            sender.statuses[f"https://erp.example/refused/{status}"] = status
            sender.texts[f"https://erp.example/refused/{status}"] = '{"error": "unknown tenant acme"}'
        sender.unreachable.add(unreachable)
        sender.answer_after["https://erp.example/slow"] = 2.5
        sender.answer_after["https://erp.example/stalled"] = 16
        yield Endpoint(sender, "https://erp.example/ok", "https://erp.example/failing", unreachable,
                       "https://erp.example/slow", "https://erp.example/stalled",
                       lambda: [(url.split("erp.example")[1], body, headers) for url, body, headers in sender.posts])
        return
    slow, trickling = _trickling()
    try:
        with serving() as (base, received):
            yield Endpoint(HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S), f"{base}/ok", f"{base}/failing", unreachable,
                           f"{trickling}/slow", f"{trickling}/stalled",
                           lambda: list(received))
    finally:
        slow.close()


def test_the_body_and_headers_arrive_and_the_status_comes_back(endpoint):
    body = b'{"event_id":"e-1"}'
    assert endpoint.sender.post(endpoint.ok_url, body, {"X-Jobpipe-Event-Id": "e-1", "Content-Type": "application/json"}).status == 202
    ((path, received, headers),) = endpoint.received()
    assert path == "/ok" and received == body and headers["X-Jobpipe-Event-Id"] == "e-1"


def test_an_error_status_is_returned_not_raised(endpoint):
    answer = endpoint.sender.post(endpoint.failing_url, b"{}", {})
    assert answer.status == 500 and answer.retry_after_s is None
    assert len(endpoint.received()) == 1


def test_no_answer_and_a_non_http_url_raise_delivery_errors(endpoint):
    with pytest.raises(WebhookDeliveryError):
        endpoint.sender.post(endpoint.unreachable_url, b"{}", {})
    for url in ("file:///etc/passwd", "ftp://erp.example/hook", ""):
        with pytest.raises(WebhookDeliveryError):
            endpoint.sender.post(url, b"{}", {})
    assert endpoint.received() == []


def test_a_redirect_is_returned_as_its_status_and_not_followed(endpoint):
    answer = endpoint.sender.post(endpoint.ok_url.replace("/ok", "/moved"), b"{}", {})
    assert (answer.status, answer.location) == (302, "http://other.example/hook")
    assert endpoint.sender.post(endpoint.ok_url, b"{}", {}).location == ""
    assert [path for path, _, _ in endpoint.received()] == ["/moved", "/ok"]


def test_an_answer_not_whole_within_the_timeout_is_no_answer(endpoint):
    # The timeout bounds the whole POST, not each read: a receiver trickling its answer a
    # byte at a time would otherwise hold the sender past any deadline.
    started = time.monotonic()
    with pytest.raises(WebhookDeliveryError, match="did not answer within 1 s"):
        endpoint.sender.post(endpoint.stalled_url, b"{}", {}, timeout_s=1)
    assert time.monotonic() - started < 8  # cut at its deadline: the whole answer takes 16 s


def test_an_answer_whose_headers_are_cut_at_the_deadline_is_no_answer():
    """The status line came at once and the headers trickle past the POST's limit: cut at its
    deadline, the shut socket reads as the headers' end, and the 200 that never came whole
    would count as delivered (and the event never sent again). It is no answer."""
    slow, trickling = _trickling()
    try:
        with pytest.raises(WebhookDeliveryError, match="did not answer within 1 s"):
            HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{trickling}/stalled-headers", b"{}", {}, timeout_s=1)
    finally:
        slow.close()


def test_a_slow_answer_whole_within_the_timeout_is_an_answer(endpoint):
    assert endpoint.sender.post(endpoint.slow_url, b"{}", {}, timeout_s=60).status == 200


def test_the_wait_a_retry_after_asks_for_comes_back_with_the_status(endpoint):
    answer = endpoint.sender.post(endpoint.ok_url.replace("/ok", "/busy"), b"{}", {})
    assert (answer.status, answer.retry_after_s) == (429, 120)


def test_a_4xx_comes_back_with_its_reason_phrase_and_the_start_of_its_body(endpoint):
    """What the receiver said was wrong, for the operator, read no further than the defaults allow."""
    answer = endpoint.sender.post(endpoint.ok_url.replace("/ok", "/refused"), b"{}", {})
    assert (answer.status, answer.reason, answer.text) == (422, "Unprocessable Entity", '{"error": "unknown tenant acme"}')
    ok = endpoint.sender.post(endpoint.ok_url, b"{}", {})
    failing = endpoint.sender.post(endpoint.failing_url, b"{}", {})
    assert (ok.reason, ok.text, failing.reason, failing.text) == ("", "", "", "")


@pytest.mark.parametrize("status", [400, 499])
def test_every_4xx_comes_back_with_the_start_of_its_body(endpoint, status):
    answer = endpoint.sender.post(endpoint.ok_url.replace("/ok", f"/refused/{status}"), b"{}", {})
    assert (answer.status, answer.text) == (status, '{"error": "unknown tenant acme"}')


def test_interim_answers_are_read_past_to_the_answer(endpoint):
    """`103 Early Hints` (a CDN in front of the ERP sends them) came back as the answer: the
    delivery failed, its record was deleted, and the ERP, which then answered 202, got the
    event again. The next POST on the same sender is answered as ever."""
    assert endpoint.sender.post(endpoint.ok_url.replace("/ok", "/hints"), b"{}", {}).status == 202
    assert endpoint.sender.post(endpoint.ok_url, b"{}", {}).status == 202
    assert [path for path, _, _ in endpoint.received()] == ["/hints", "/ok"]


def test_more_interim_answers_than_are_read_past_are_no_answer():
    with serving() as (base, _), pytest.raises(WebhookDeliveryError, match="interim answers"):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/too-many-hints", b"{}", {})


def test_a_host_whose_name_resolves_slowly_is_no_answer_within_the_timeout(monkeypatch):
    """The POST's limit counts resolving the ERP's host name too: a socket's timeout does not
    bound getaddrinfo, and a resolver that takes its own seconds a try held a POST past its
    limit, and the bridge past the close margin it keeps for its delivery records."""
    resolve = socket.getaddrinfo

    def slow_resolver(host, *args, **kwargs):
        if host == "localhost":
            time.sleep(4)
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", slow_resolver)
    sender = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S)
    with serving() as (base, received):
        started = time.monotonic()
        with pytest.raises(WebhookDeliveryError, match="did not answer within 1 s"):
            sender.post(base.replace("127.0.0.1", "localhost") + "/ok", b"{}", {}, timeout_s=1)
        assert time.monotonic() - started < 3
        assert sender.post(f"{base}/ok", b"{}", {}, timeout_s=1).status == 202
        assert [path for path, _, _ in received] == ["/ok"]


def test_a_host_whose_name_does_not_resolve_is_unreachable_at_once(monkeypatch):
    """A host name the resolver refuses (socket.gaierror, on the lookup's own thread) is an
    unreachable webhook, said as such as soon as the lookup fails: not an error of another
    kind out of the POST, nor a wait to the POST's limit."""
    def no_such_host(host, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    started = time.monotonic()
    with pytest.raises(WebhookDeliveryError, match="webhook unreachable: .*Name or service not known"):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post("http://erp.invalid/hook", b"{}", {}, timeout_s=30)
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/hook", "file:///etc/passwd", "http:///hook", "https://", ""])
def test_a_url_not_http_or_without_a_host_is_refused_before_any_lookup(monkeypatch, url):
    """Only an http(s) URL naming a host is POSTed to: any other is refused saying so, before
    a name is looked up or a connection made (not taken for an unreachable webhook)."""
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: looked_up.append(args) or [])
    with pytest.raises(WebhookDeliveryError, match=r"^webhook URL must be http\(s\): "):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(url, b"{}", {}, timeout_s=1)
    assert looked_up == []


def test_a_url_with_no_path_is_posted_to_the_root():
    """An ERP webhook URL may be the host alone (`https://erp.example`): the POST goes to `/`,
    its query kept."""
    with serving() as (base, received):
        sender = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S)
        assert sender.post(base, b"{}", {}).status == 202 and sender.post(f"{base}?tenant=acme", b"{}", {}).status == 202
        assert [path for path, _, _ in received] == ["/", "/?tenant=acme"]


@pytest.mark.parametrize("url", ["http://127.0.0.1:abc/hook", "http://127.0.0.1:99999/hook"])
def test_a_url_with_a_bad_port_is_refused_saying_so(monkeypatch, url):
    """A port that is no number, or past 65535, is the URL's fault, said as such: not an error
    of another kind out of the POST."""
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: looked_up.append(args) or [])
    with pytest.raises(WebhookDeliveryError, match="^webhook URL has a bad port: "):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(url, b"{}", {}, timeout_s=1)
    assert looked_up == []


@pytest.mark.parametrize("left_s", [0, -0.5])
def test_a_post_with_no_time_left_is_refused_unsent(monkeypatch, left_s):
    """A caller with no time left (the bridge's function near its end) is told so: nothing is
    looked up or sent, and no POST is said to have gone unanswered."""
    looked_up = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda *args, **kwargs: looked_up.append(args) or [])
    with pytest.raises(WebhookDeliveryError, match="^no time left to POST$"):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post("http://127.0.0.1:9/hook", b"{}", {}, timeout_s=left_s)
    assert looked_up == []


def test_a_connect_is_given_no_more_than_what_is_left_of_the_posts_limit(monkeypatch):
    """A host that never answers the TCP handshake (its packets dropped) holds a connect to
    its socket's timeout, and the watchdog has no socket to cut yet: each connect is given
    what is left of the POST's limit, no more. The connect's own failure is what is said."""
    given = []

    def unanswered(address, timeout=None, source_address=None):
        given.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(socket, "create_connection", unanswered)
    with pytest.raises(WebhookDeliveryError, match="^webhook unreachable: timed out$"):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post("http://127.0.0.1:9/hook", b"{}", {}, timeout_s=1)
    assert len(given) == 1 and 0 < given[0] <= 1, given


def two_addresses(monkeypatch, first_connect: Callable[[float], socket.socket]) -> list[str]:
    """`erp.test` resolved to an unroutable address, then loopback; a connect to the first does
    `first_connect(timeout)`. Returns the addresses connected to, in order."""
    connect, lookup = socket.create_connection, socket.getaddrinfo
    tried: list[str] = []

    def resolve(host, port, *args, **kwargs):
        if host != "erp.test":  # the loopback address, looked up again by the connect itself
            return lookup(host, port, *args, **kwargs)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port)) for address in ("192.0.2.1", "127.0.0.1")]

    def create_connection(address, timeout=None, source_address=None):
        tried.append(address[0])
        if address[0] == "192.0.2.1":
            return first_connect(timeout)
        return connect(address, timeout, source_address)

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    monkeypatch.setattr(socket, "create_connection", create_connection)
    return tried


def test_a_host_whose_first_address_refuses_is_reached_at_the_next(monkeypatch):
    """A host name with several addresses is tried at each in turn, as a browser or curl does:
    one address down does not make the ERP unreachable."""
    def refused(timeout):
        raise ConnectionRefusedError(111, "Connection refused")

    tried = two_addresses(monkeypatch, refused)
    with serving() as (base, received):
        url = base.replace("127.0.0.1", "erp.test") + "/ok"
        assert HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(url, b"{}", {}, timeout_s=2).status == 202
        assert tried == ["192.0.2.1", "127.0.0.1"] and [path for path, _, _ in received] == ["/ok"]


def test_no_address_is_tried_once_the_first_has_taken_the_posts_limit(monkeypatch):
    """An address that fails only at its connect's timeout has used what the POST had left: the
    next is not tried with no time at all, and the POST is unanswered within its limit."""
    def dropped(timeout):
        time.sleep(timeout + 0.05)  # its packets dropped: the connect's timeout passes
        raise TimeoutError("timed out")

    tried = two_addresses(monkeypatch, dropped)
    with pytest.raises(WebhookDeliveryError, match="did not answer within 0.3 s"):
        HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post("http://erp.test:9/hook", b"{}", {}, timeout_s=0.3)
    assert tried == ["192.0.2.1"]


@pytest.mark.parametrize("status", [300, 302, 308])
def test_every_3xx_comes_back_with_where_it_points(status):
    """A 3xx is not followed: where it points is kept for the operator, who decides whether the
    ERP has moved. 300 Multiple Choices names its preferred place in Location as the others do."""
    with serving() as (base, _):
        answer = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/moved/{status}", b"{}", {})
    assert (answer.status, answer.location) == (status, "http://other.example/hook")


def test_what_an_answer_says_is_kept_no_longer_than_the_defaults_allow():
    """A receiver's words go into the delivery record and the operator's log: its reason phrase
    to 200 characters, its body's start to WEBHOOK_ANSWER_TEXT_BYTES read as UTF-8, a Location
    to WEBHOOK_URL_MAX_CHARS, however long the receiver made them."""
    sender = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S)
    with serving() as (base, _):
        refused = sender.post(f"{base}/refused-at-length", b"{}", {})
        moved = sender.post(f"{base}/moved-far", b"{}", {})
    assert refused.reason == ("Unknown tenant: " + "acme " * 100)[:200]
    assert refused.text == ("Kunde „Müller“ unbekannt. " * 100).encode()[:WEBHOOK_ANSWER_TEXT_BYTES].decode(errors="replace").strip()
    assert refused.text.startswith("Kunde „Müller“ unbekannt.")
    assert moved.location == ("http://other.example/" + "x" * 5000)[:WEBHOOK_URL_MAX_CHARS]


def test_a_post_whose_connection_closes_unanswered_is_no_answer_and_not_sent_again():
    """A new connection closed after the POST went out may have delivered it (the receiver died
    before its answer): that is a failed delivery, retried by the bridge with its backoff, not
    a POST sent again at once, and no error of another kind."""
    with serving() as (base, received):
        with pytest.raises(WebhookDeliveryError, match="^webhook unreachable: "):
            HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/dropped", b"{}", {})
    assert [path for path, _, _ in received] == ["/dropped"]


def test_a_header_http_cannot_carry_is_a_failed_delivery_and_nothing_is_sent():
    """A header value with a line break (a misconfigured value) would split the request:
    http.client refuses it, and the POST is a failed delivery saying why, no error of another
    kind out of the bridge's batch."""
    with serving() as (base, received):
        with pytest.raises(WebhookDeliveryError, match="unreachable: Invalid header value"):
            HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/ok", b"{}", {"X-Tenant": "acme\r\nX-Evil: 1"})
    assert received == []


def test_a_connect_that_ends_past_the_posts_limit_sends_nothing(monkeypatch):
    """A connect that completes only after the POST's limit (a slow handshake the watchdog had
    no socket to cut) is given up: the POST is unanswered and never sent, since a POST sent
    after its caller gave up would be delivered twice when the bridge retries it."""
    connect = socket.create_connection

    def slow_handshake(address, timeout=None, source_address=None):
        time.sleep(timeout + 0.1)
        return connect(address, 5, source_address)

    monkeypatch.setattr(socket, "create_connection", slow_handshake)
    with serving() as (base, received):
        with pytest.raises(WebhookDeliveryError, match="did not answer within 0.3 s"):
            HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/ok", b"{}", {}, timeout_s=0.3)
    assert received == []


def test_a_login_in_the_url_is_sent_as_basic_authorization_and_nowhere_else():
    """ErpWebhookUrl takes `user:password@` (an ERP behind Basic authentication): dropped, it
    had every event refused 401, each parked as refused for good."""
    import base64

    sender = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S)
    with serving() as (base, received):
        port = int(base.rsplit(":", 1)[1])
        assert sender.post(f"http://erp%40acme:p%C3%A4ss:w0rd@127.0.0.1:{port}/ok?tenant=acme", b"{}", {}).status == 202
        assert sender.post(f"{base}/ok", b"{}", {}).status == 202
    (path, _, headers), (_, _, plain) = received
    assert base64.b64decode(headers["Authorization"].removeprefix("Basic ")).decode() == "erp@acme:päss:w0rd"
    assert headers["Authorization"].startswith("Basic ") and path == "/ok?tenant=acme"
    assert headers["Host"] == f"127.0.0.1:{port}" and "Authorization" not in plain


@pytest.mark.parametrize("path, status", [("/crowded/200", 200), ("/crowded/long-line", 200), ("/crowded/503", 503),
                                          ("/crowded/hinted/200", 200)])
def test_an_answer_whose_headers_http_client_refuses_is_its_status_line(path, status):
    """An answer with more than 100 headers (or a header line over 64 KiB) made http.client
    raise after its status line had come: the POST had arrived, but it counted as no answer and
    was sent again on every retry, a duplicate each time to an ERP that keeps every POST. Its
    status line is the answer (its headers unread, its connection not kept), and the next POST
    on the sender is answered as ever."""
    sender = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S)
    with serving() as (base, received):
        assert sender.post(f"{base}{path}", b"{}", {}).status == status
        assert sender.post(f"{base}/ok", b"{}", {}).status == 202
    assert [path for path, _, _ in received] == [path, "/ok"]


def test_a_refusal_whose_headers_http_client_refuses_comes_back_with_its_reason_phrase():
    with serving() as (base, _):
        answer = HttpWebhookSender(timeout_s=SENDER_TIMEOUT_S).post(f"{base}/crowded/422", b"{}", {})
    assert (answer.status, answer.reason, answer.text) == (422, "Unprocessable Entity", "")
