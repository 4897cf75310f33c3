"""The client against the deployed stack, with a primary URL that really goes down: a loopback
reverse proxy process in front of the API, stopped and started by its PID."""
import socket

import pytest

from jobpipe_client import JobpipeClient, JobpipeClientError, JobpipeUnavailableError
from scripts.emulator import free_port
from tests.support.reverse_proxy import ReverseProxy


@pytest.fixture
def proxies(stack, tmp_path):
    started = []

    def start(target=None, name="proxy"):
        proxy = ReverseProxy(free_port(), target or stack.api_url, tmp_path / f"{name}.log").start()
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def test_client_falls_back_while_the_primary_is_down_and_returns_to_it(stack, proxies):
    primary = proxies()
    client = JobpipeClient(primary.url, stack.token(), [stack.api_url], timeout=10)
    job = client.submit("demo.steps", {"steps": 3, "step_ms": 0})
    assert client.transport.last_url == primary.url and primary.requests_seen() == ["POST /jobs"]

    primary.stop()
    assert client.get(job["id"])["id"] == job["id"]
    assert client.transport.last_url == stack.api_url
    final = client.wait(job, timeout=60)
    assert final["status"] == "completed" and final["result"] == {"steps": 3, "attempt": 1}
    assert primary.requests_seen() == ["POST /jobs"]

    primary.start()
    assert client.status_many([job["id"]])[job["id"]]["status"] == "completed"
    assert client.transport.last_url == primary.url
    assert primary.requests_seen() == ["POST /jobs", "POST /jobs/status"]


def test_a_5xx_from_the_primary_falls_back(stack, proxies):
    dead_upstream = f"http://127.0.0.1:{free_port()}"
    primary = proxies(dead_upstream)  # a gateway whose backend is gone answers 502
    client = JobpipeClient(primary.url, stack.token(), [stack.api_url], timeout=10)
    jobs = list(client.list(limit=1))
    assert client.transport.last_url == stack.api_url and len(jobs) <= 1
    assert primary.requests_seen() == ["GET /jobs?limit=1"]
    with pytest.raises(JobpipeUnavailableError) as raised:
        JobpipeClient(primary.url, stack.token()).list(limit=1).__next__()
    assert raised.value.failures == [(primary.url, "HTTP 502")]


def test_a_primary_that_never_answers_times_out_and_falls_back(stack):
    with socket.socket() as hung:  # listens, never accepts: requests time out reading
        hung.bind(("127.0.0.1", 0))
        hung.listen(8)
        hung_url = f"http://127.0.0.1:{hung.getsockname()[1]}"
        job = JobpipeClient(hung_url, stack.token(), [stack.api_url], timeout=1).submit(
            "demo.steps", {"steps": 1, "step_ms": 0}
        )
        assert job["status"] == "queued"
        with pytest.raises(JobpipeUnavailableError) as raised:
            JobpipeClient(hung_url, stack.token(), timeout=1).get(job["id"])
        assert "timed out" in raised.value.failures[0][1]


def test_a_4xx_is_raised_and_never_sent_to_the_fallback(stack, proxies):
    primary, fallback = proxies(name="primary"), proxies(name="fallback")
    client = JobpipeClient(primary.url, stack.token(), [fallback.url], timeout=10)
    with pytest.raises(JobpipeClientError) as raised:
        client.get("00000000-0000-0000-0000-000000000000")
    assert raised.value.status == 404 and raised.value.code == "job_not_found"
    with pytest.raises(JobpipeClientError) as refused:
        client.submit("no.such.type", {})
    assert refused.value.status == 422 and refused.value.code == "unknown_job_type"
    with pytest.raises(JobpipeClientError) as unauthorized:
        JobpipeClient(primary.url, "not-a-token", [fallback.url]).get("x")
    assert unauthorized.value.code == "unauthorized"
    assert len(primary.requests_seen()) == 3 and fallback.requests_seen() == []
