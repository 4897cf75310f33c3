"""The HTTP webhook sender keeps its connection to the ERP between POSTs (HTTP/1.1 keep-alive)
and never lets that cost a delivery: a connection the server closed is not used, one closed
under a POST is replaced and the POST sent once, one whose answer was cut or not read to its
end is not kept. Against loopback receivers (plain HTTP and TLS) that count the connections
they accept and the POSTs they answer."""
from __future__ import annotations

import http.client
import socket
import ssl
import threading
import time
import urllib.parse
from typing import Iterator

import pytest
import trustme

from chalicelib.adapters.webhook import HttpWebhookSender, _idle_and_open
from chalicelib.defaults import WEBHOOK_KEEP_BODY_BYTES
from chalicelib.domain.errors import WebhookDeliveryError
from tests.support.counting_receiver import CountingReceiver


@pytest.fixture
def receiver() -> Iterator[CountingReceiver]:
    server = CountingReceiver()
    yield server
    server.stop()


def post(sender: HttpWebhookSender, url: str, body: bytes, timeout_s: float | None = None) -> int:
    return sender.post(url, body, {"Content-Type": "application/json"}, timeout_s=timeout_s).status


def test_posts_to_one_receiver_share_one_connection(receiver):
    sender = HttpWebhookSender()
    assert [post(sender, f"{receiver.base}/ok", b"%d" % i) for i in range(10)] == [202] * 10
    assert receiver.connections == 1
    assert receiver.answered == [b"%d" % i for i in range(10)]


def test_a_receiver_that_closes_after_each_answer_gets_a_connection_a_post(receiver):
    sender = HttpWebhookSender()
    assert [post(sender, f"{receiver.base}/close", b"%d" % i) for i in range(3)] == [202] * 3
    assert receiver.connections == 3 and len(receiver.answered) == 3


def test_a_connection_the_receiver_closed_while_idle_is_not_used(receiver):
    sender = HttpWebhookSender()
    for i in range(3):
        assert post(sender, f"{receiver.base}/ok-then-close", b"%d" % i) == 202
        time.sleep(0.05)  # the receiver's close arrives
    assert receiver.connections == 3
    assert receiver.answered == [b"0", b"1", b"2"]


def test_a_post_whose_kept_connection_closes_under_it_is_sent_once_on_a_new_one(receiver):
    sender = HttpWebhookSender()
    assert post(sender, f"{receiver.base}/drop-second", b"first") == 202
    assert post(sender, f"{receiver.base}/drop-second", b"second") == 202  # dropped on the first connection
    assert post(sender, f"{receiver.base}/ok", b"third") == 202  # on the second, kept
    assert receiver.answered == [b"first", b"second", b"third"]
    assert receiver.connections == 2


def test_a_kept_connection_with_an_answer_no_post_asked_for_is_not_used(receiver):
    """A receiver (or a proxy before it) that writes a second answer after the first has left
    it waiting on the kept connection: the next POST sent there would read it as its own, a 200
    for a POST that had not yet arrived. A kept connection with anything to read is closed and
    the POST goes on a new one."""
    sender = HttpWebhookSender()
    assert post(sender, f"{receiver.base}/ok-then-stray", b"first") == 202
    receiver.stray_asked.set()  # the first answer read whole: the stray one comes after it
    assert receiver.strays.acquire(timeout=5)
    assert post(sender, f"{receiver.base}/ok", b"second") == 202
    assert receiver.answered == [b"first", b"second"] and receiver.connections == 2


def test_a_kept_connection_outlives_the_limit_of_the_post_it_carried(receiver):
    """Each POST's limit bounds that POST alone: once its answer is in, nothing cuts the
    connection it leaves kept, and a POST after that limit has passed still uses it."""
    sender = HttpWebhookSender(timeout_s=0.3)
    assert post(sender, f"{receiver.base}/ok", b"1") == 202
    time.sleep(0.6)  # past the first POST's limit, well inside the idle bound
    assert post(sender, f"{receiver.base}/ok", b"2") == 202
    assert receiver.connections == 1


class _BreaksOnSend(http.client.HTTPConnection):
    """A kept connection (its socket open and idle) whose POST fails with `error` as it is sent."""

    def __init__(self, url: str, error: OSError) -> None:
        parts = urllib.parse.urlsplit(url)
        super().__init__(parts.hostname, parts.port)
        self.sock, self._peer = socket.socketpair()
        self._error = error

    def request(self, *args, **kwargs) -> None:
        raise self._error

    def close(self) -> None:
        super().close()
        self._peer.close()


def keep_breaking(sender: HttpWebhookSender, url: str, error: OSError) -> None:
    parts = urllib.parse.urlsplit(url)
    sender._keep((parts.scheme, parts.hostname, parts.port), _BreaksOnSend(url, error))


@pytest.mark.parametrize("error", [BrokenPipeError(32, "Broken pipe"),
                                   ConnectionAbortedError(103, "Software caused connection abort")])
def test_a_post_whose_kept_connection_breaks_as_it_is_sent_goes_once_on_a_new_one(receiver, error):
    """A kept connection the server closed between the check and the send fails the send
    itself (EPIPE, or ECONNABORTED where the stack aborts it): nothing of the POST arrived, so
    it is sent at once on a new connection, as one reset before its answer is, and not left to
    the queue's backoff."""
    sender = HttpWebhookSender()
    keep_breaking(sender, f"{receiver.base}/ok", error)
    assert post(sender, f"{receiver.base}/ok", b"once") == 202
    assert receiver.answered == [b"once"] and receiver.connections == 1


def test_a_kept_connection_failing_otherwise_is_a_failed_delivery_not_a_second_send(receiver):
    """Only a connection closed under the POST is replaced at once. Any other failure (here the
    network unreachable) may have left the POST on its way: it is a failed delivery, which the
    bridge retries with its backoff, and no second POST goes out now."""
    sender = HttpWebhookSender()
    keep_breaking(sender, f"{receiver.base}/ok", OSError(101, "Network is unreachable"))
    with pytest.raises(WebhookDeliveryError, match="unreachable"):
        post(sender, f"{receiver.base}/ok", b"once")
    assert receiver.connections == 0 and receiver.answered == []


def test_a_post_answered_102_on_a_kept_connection_then_closed_is_not_sent_again_at_once(receiver):
    """An interim answer says the POST arrived: the connection closing after it is a failed
    delivery (retried through the queue, with its backoff), not a connection closed under an
    unanswered POST, which the sender sends again at once on a new one."""
    sender = HttpWebhookSender()
    assert post(sender, f"{receiver.base}/hint-then-drop-second", b"first") == 202
    with pytest.raises(WebhookDeliveryError):
        post(sender, f"{receiver.base}/hint-then-drop-second", b"second")
    assert receiver.answered == [b"first"] and receiver.interim == [b"second"]
    assert receiver.connections == 1


def test_a_post_with_interim_answers_gets_its_answer_and_the_next_a_fresh_connection(receiver):
    sender = HttpWebhookSender()
    assert [post(sender, f"{receiver.base}/hints", b"%d" % i) for i in range(3)] == [202] * 3
    assert [post(sender, f"{receiver.base}/ok", b"%d" % i) for i in (3, 4)] == [202] * 2
    assert receiver.answered == [b"0", b"1", b"2", b"3", b"4"]
    assert receiver.connections == 4  # none kept after interim answers; the plain answer's kept


def test_a_connection_idle_past_its_bound_is_closed_not_used(receiver):
    sender = HttpWebhookSender(keep_idle_s=0.05)
    assert post(sender, f"{receiver.base}/ok", b"1") == 202
    time.sleep(0.2)
    assert post(sender, f"{receiver.base}/ok", b"2") == 202
    assert receiver.connections == 2


def test_a_refusal_is_read_to_its_end_and_its_connection_kept_unless_too_long(receiver):
    sender = HttpWebhookSender()
    answer = sender.post(f"{receiver.base}/refused?bytes=5000", b"1", {})
    assert answer.status == 422 and answer.text == "x" * 600  # what is kept of what it said
    assert post(sender, f"{receiver.base}/ok", b"2") == 202
    assert receiver.connections == 1
    assert sender.post(f"{receiver.base}/refused?bytes={2 * WEBHOOK_KEEP_BODY_BYTES}", b"3", {}).status == 422
    assert post(sender, f"{receiver.base}/ok", b"4") == 202
    assert receiver.connections == 2  # the long answer's connection closed, not read to its end


def test_an_answer_whose_body_comes_short_is_the_answer_and_its_connection_not_kept(receiver):
    sender = HttpWebhookSender()
    assert post(sender, f"{receiver.base}/short", b"1") == 202  # delivered: not to be sent again
    assert post(sender, f"{receiver.base}/ok", b"2") == 202
    assert receiver.connections == 2
    assert receiver.answered == [b"1", b"2"]


def test_a_connection_whose_answer_was_cut_is_not_kept(receiver):
    sender = HttpWebhookSender()
    assert post(sender, f"{receiver.base}/ok", b"1") == 202
    with pytest.raises(WebhookDeliveryError, match="answer"):
        post(sender, f"{receiver.base}/trickle", b"2", timeout_s=0.5)
    assert post(sender, f"{receiver.base}/ok", b"3") == 202
    assert receiver.connections == 2
    assert receiver.answered == [b"1", b"3"]


def test_posts_from_several_threads_never_share_a_connection_at_once(receiver):
    sender = HttpWebhookSender()
    statuses: list[int] = []

    def deliver(thread: int) -> None:
        for i in range(20):
            statuses.append(post(sender, f"{receiver.base}/ok", b"%d-%d" % (thread, i)))

    threads = [threading.Thread(target=deliver, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert statuses == [202] * 120
    assert sorted(receiver.answered) == sorted(b"%d-%d" % (t, i) for t in range(6) for i in range(20))


def test_over_tls_one_handshake_serves_every_post():
    authority = trustme.CA()
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server_tls)
    client_tls = ssl.create_default_context()
    authority.configure_trust(client_tls)
    server = CountingReceiver(tls=server_tls)
    try:
        sender = HttpWebhookSender(tls=client_tls)
        assert [post(sender, f"{server.base}/ok", b"%d" % i) for i in range(5)] == [202] * 5
        assert server.connections == 1
        with pytest.raises(WebhookDeliveryError):  # and still verifies whom it talks to
            HttpWebhookSender().post(f"{server.base}/ok", b"x", {})
    finally:
        server.stop()


def test_an_open_idle_connection_reads_as_usable_and_a_closed_one_does_not():
    class Held:
        def __init__(self, sock: socket.socket) -> None:
            self.sock = sock

    ours, theirs = socket.socketpair()
    try:
        assert _idle_and_open(Held(ours))
        theirs.sendall(b"unasked")
        assert not _idle_and_open(Held(ours))  # something no request asked for
    finally:
        theirs.close()
    other, peer = socket.socketpair()
    peer.close()
    try:
        assert not _idle_and_open(Held(other))  # the peer's close
        assert not _idle_and_open(Held(None))
    finally:
        ours.close()
        other.close()
    assert not _idle_and_open(Held(ours))  # closed on this side: select refuses its descriptor


def test_the_bench_counts_a_connection_a_post_closed_and_one_a_round_kept():
    from bench.webhook_connections import measure

    figures = measure(posts=4, rounds=2)
    assert {name: row["connections"] for name, row in figures.items()} == {
        "https kept": 2, "https closed": 8, "http kept": 2, "http closed": 8}
    assert all(row["posts"] == 8 for row in figures.values())
