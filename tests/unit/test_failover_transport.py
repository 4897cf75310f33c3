"""FailoverTransport.request on its own (the benchmark's submits use it): which URL's answer
it returns, what it says of the URLs that failed before it, and what an outage carries."""
import pytest
import requests
import requests.adapters

from jobpipe_client import JobpipeUnavailableError
from jobpipe_client.answers import QUOTED_REASON_CHARS
from jobpipe_client.transport import FailoverTransport
from tests.support.fake_http import FakeSession, FakeTime, failing, make_response, throttling
from tests.unit.bad_servers import answering, raising

PRIMARY, FALLBACK, SPARE = "http://primary.test", "http://fallback.test", "http://spare.test"


def transport_for(servers, session=None):
    time = FakeTime()
    urls = list(servers)
    return FailoverTransport(urls, token="tok", session=session or FakeSession(servers),
                             sleep=time.sleep, clock=time.clock)


@pytest.mark.parametrize("down, may_have_acted", [("503", True), ("timeout", True), ("refused", False)])
def test_request_returns_the_first_answer_and_says_whether_a_url_before_it_may_have_acted(down, may_have_acted):
    transport = transport_for({PRIMARY: failing(down), FALLBACK: answering(201, {"id": "j-1"})})
    response = transport.request("POST", "/jobs", json={"type": "demo.steps"})
    assert response.status_code == 201 and response.json() == {"id": "j-1"}
    assert transport.last_url == FALLBACK and transport.earlier_may_have_arrived is may_have_acted
    # The next call starts at the primary again, and forgets what the last one's failures said.
    healthy = transport_for({PRIMARY: answering(200, {"id": "j-1"}), FALLBACK: failing(down)})
    assert healthy.request("GET", "/jobs/j-1").status_code == 200
    assert healthy.last_url == PRIMARY and healthy.earlier_may_have_arrived is False


def test_request_refused_in_front_at_every_url_returns_the_first_refusal():
    gateway = answering(403, {"message": "Missing Authentication Token"})
    no_route = answering(404, {"error": {"code": "route_not_found", "message": "no route matches"}})
    session = FakeSession({PRIMARY: gateway, FALLBACK: no_route})
    transport = transport_for(session.servers, session)
    response = transport.request("GET", "/jobs/j-1")
    assert response.status_code == 403 and transport.last_url == PRIMARY
    assert [base for base, _ in session.calls] == [PRIMARY, FALLBACK]


def test_request_refused_in_front_after_a_url_that_may_have_acted_is_an_outage():
    transport = transport_for({PRIMARY: failing("503"), FALLBACK: answering(403, {"message": "Forbidden"})})
    with pytest.raises(JobpipeUnavailableError) as raised:
        transport.request("POST", "/jobs", json={})
    assert raised.value.may_have_arrived is True
    assert dict(raised.value.failures)[FALLBACK] == "HTTP 403, not from the jobpipe API"


def test_an_outage_keeps_the_longest_retry_after_and_the_api_error_of_each_url():
    def down(status, retry_after, body):
        return lambda method, url, **_: make_response(method, url, status, body, {"Retry-After": retry_after})

    transport = transport_for({
        PRIMARY: down(503, "5", {"error": {"code": "store_unavailable", "message": "down"}}),
        FALLBACK: down(502, "20", {"error": {"code": "queue_unavailable", "message": "down"}}),
        SPARE: down(500, "7", b"<html>Internal Server Error</html>"),
    })
    with pytest.raises(JobpipeUnavailableError) as raised:
        transport.request("GET", "/jobs/j-1")
    assert raised.value.retry_after_s == 20 and raised.value.may_have_arrived is True
    assert raised.value.api_errors == {PRIMARY: "store_unavailable", FALLBACK: "queue_unavailable"}
    assert [url for url, _ in raised.value.failures] == [PRIMARY, FALLBACK, SPARE]


def test_a_connect_timeout_is_a_url_that_never_received_the_request():
    transport = transport_for({PRIMARY: raising(requests.ConnectTimeout("connect timed out"))})
    with pytest.raises(JobpipeUnavailableError) as raised:
        transport.request("POST", "/jobs", json={})
    assert raised.value.may_have_arrived is False
    assert raised.value.failures == [(PRIMARY, "timed out after 10 s")]


class RecordingAdapter(requests.adapters.BaseAdapter):
    """A requests adapter that records what would be sent and sends nothing."""

    def __init__(self):
        super().__init__()
        self.sent = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        raise AssertionError("nothing should be sent")

    def close(self):
        pass


def test_a_body_that_is_not_json_is_the_callers_mistake_raised_before_any_url_is_asked():
    session = requests.Session()
    adapter = RecordingAdapter()
    session.mount("http://", adapter)
    transport = FailoverTransport([PRIMARY, FALLBACK], token="tok", session=session)
    with pytest.raises(requests.exceptions.InvalidJSONError):
        transport.request("POST", "/jobs", json={"payload": float("nan")})
    assert adapter.sent == []


@pytest.mark.parametrize("jitter, pauses", [
    (lambda: 1.0, [0.05, 0.1, 0.2, 0.4, 0.4]),  # the whole wait, doubled up to the cap
    (lambda: 0.0, [0.025, 0.05, 0.1, 0.2, 0.2]),  # half of it: never sooner than that
])
def test_a_throttles_pauses_are_half_to_all_of_a_wait_doubled_up_to_its_cap(jitter, pauses):
    time = FakeTime()
    transport = FailoverTransport([PRIMARY], token="tok", session=FakeSession({PRIMARY: throttling(5, answering(
        200, {"id": "j-1"}))}), sleep=time.sleep, clock=time.clock, jitter=jitter)
    assert transport.request("GET", "/jobs/j-1").status_code == 200
    assert time.sleeps == pytest.approx(pauses) and transport.throttled == 5


def test_a_5xx_reason_quoting_a_long_message_is_cut_to_its_bound_with_an_ellipsis():
    long = {"error": {"code": "store_unavailable", "message": "x" * 1000}}
    transport = transport_for({PRIMARY: answering(503, long)})
    with pytest.raises(JobpipeUnavailableError) as raised:
        transport.request("GET", "/jobs/j-1")
    ((_, reason),) = raised.value.failures
    assert len(reason) == QUOTED_REASON_CHARS and reason.startswith("HTTP 503 store_unavailable: xxx")
    assert reason.endswith("x…")
    fits = "x" * (QUOTED_REASON_CHARS - len("HTTP 503 store_unavailable: "))
    transport = transport_for({PRIMARY: answering(503, {"error": {"code": "store_unavailable", "message": fits}})})
    with pytest.raises(JobpipeUnavailableError) as raised:
        transport.request("GET", "/jobs/j-1")
    assert raised.value.failures == [(PRIMARY, f"HTTP 503 store_unavailable: {fits}")]
