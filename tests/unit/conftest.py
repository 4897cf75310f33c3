"""Unit tests: pure Python, in-memory adapters, no sockets."""
from __future__ import annotations

import io
import json
import logging
import socket
from datetime import datetime, timedelta, timezone

import pytest

from chalicelib.adapters.memory import InMemoryJobQueue, InMemoryJobStore
from chalicelib.job_types import build_registry
from chalicelib.lifecycle import JobLifecycle
from chalicelib.observability import logger


class FakeClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 1, 1, tzinfo=timezone.utc)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture(autouse=True)
def no_sockets(monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("unit tests must not open sockets")

    monkeypatch.setattr(socket.socket, "connect", refuse)


@pytest.fixture(autouse=True)
def a_terminal_that_redraws(monkeypatch):
    """The terminal the tests are run from (TERM=dumb in an editor's shell or a CI log) does not
    decide what they see: a test that wants another terminal says so itself."""
    monkeypatch.setenv("TERM", "xterm-256color")


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> InMemoryJobStore:
    return InMemoryJobStore()


@pytest.fixture
def queue() -> InMemoryJobQueue:
    return InMemoryJobQueue()


@pytest.fixture
def lifecycle(store, queue, clock) -> JobLifecycle:
    return JobLifecycle(store, queue, build_registry(demo_types=True), clock=clock)


@pytest.fixture
def log_lines(monkeypatch):
    """What the functions' logger writes from here on, one decoded JSON line each."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logger.registered_formatter)
    monkeypatch.setattr(logger._logger, "handlers", [handler])
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    logger.clear_state()


def fail_owing_its_letter(lifecycle: JobLifecycle, queue: InMemoryJobQueue) -> None:
    """The job whose message is on `queue` claimed and failed for good while the dead-letter
    queue does not answer: it reads `failed`, owing its letter (DeadLetterOwedError raised and
    taken here); the queue answers again afterwards."""
    from chalicelib.domain.errors import DeadLetterOwedError
    from chalicelib.domain.job import JobErrorInfo

    running = lifecycle.claim(queue.drain()[0]).job
    queue.fail_sends = True
    try:
        lifecycle.fail_attempt(running, JobErrorInfo(code="boom", message="it broke"), retryable=False)
    except DeadLetterOwedError:
        pass
    else:
        raise AssertionError("the job's letter was parked: the dead-letter queue answered")
    finally:
        queue.fail_sends = False
