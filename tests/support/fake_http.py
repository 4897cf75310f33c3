"""Stand-ins for the HTTP side of the client's world, without sockets: a `requests.Response`
made by hand, servers that are down or throttling, S3 answering presigned GETs, a session that
routes each base URL to one of these (or to the fake API, tests/support/fake_api.py), and a clock
that moves only when the code under test sleeps."""
from __future__ import annotations

import json
from typing import Any, Callable, Optional

import chalice
import requests
from requests.structures import CaseInsensitiveDict

from tests.support.chalice_wsgi import gateway_response


def make_response(method: str, url: str, status: int, body: Any = None, headers: Optional[dict] = None) -> requests.Response:
    response = requests.Response()
    response.status_code = status
    response.url = url
    response.reason = {200: "OK", 202: "Accepted", 304: "Not Modified", 404: "Not Found"}.get(status, "")
    response.headers = CaseInsensitiveDict(headers or {})
    response._content = b"" if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
    response._content_consumed = True  # read already, as iter_content then sees it
    response.request = requests.Request(method, url).prepare()
    return response


def answered(method: str, url: str, response: chalice.Response) -> requests.Response:
    """The API's own `response` (a Chalice Response) as requests shows it."""
    body = response.body
    if not isinstance(body, (bytes, str)):
        body = json.dumps(body)
    return make_response(method, url, response.status_code, body.encode() if isinstance(body, str) else body,
                         dict(response.headers or {}))


def route_not_found(method: str, url: str) -> requests.Response:
    """What the deployed stage answers a method and path no route takes (its gateway response,
    infra/resources.json), before any function runs."""
    status, text = gateway_response("MISSING_AUTHENTICATION_TOKEN")
    return make_response(method, url, status, text.encode(), {"Content-Type": "application/json"})


def failing(kind: str) -> Callable[..., requests.Response]:
    """A server that is down: 'refused', 'timeout', or an HTTP status such as '503'."""

    def answer(method: str, url: str, **kwargs: Any) -> requests.Response:
        if kind == "refused":
            raise requests.ConnectionError(f"connection refused: {url}")
        if kind == "timeout":
            raise requests.ReadTimeout(f"read timed out: {url}")
        return make_response(method, url, int(kind), {"error": {"code": "store_unavailable", "message": "down"}})

    return answer


def throttling(times: int, then: Callable[..., requests.Response], retry_after: Optional[str] = None
               ) -> Callable[..., requests.Response]:
    """A server that answers 429 (the function at its reserved concurrency) `times` times, then
    passes requests to `then`; `answered` counts the 429s."""

    def answer(method: str, url: str, **kwargs: Any) -> requests.Response:
        if answer.answered < times:
            answer.answered += 1
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return make_response(method, url, 429, {"message": "Rate Exceeded", "Reason":
                                 "ReservedFunctionConcurrentInvocationLimitExceeded"}, headers)
        return then(method, url, **kwargs)

    answer.answered = 0
    return answer


class FakeS3:
    """S3 answering presigned GETs: `objects` maps a URL (its query aside) to its bytes; a
    request carrying an Authorization header is refused as S3 refuses it (a presigned URL is
    its own authorization). `requests` records each request's URL and headers."""

    def __init__(self, objects: Optional[dict[str, bytes]] = None) -> None:
        self.objects = dict(objects or {})
        self.requests: list[tuple[str, dict[str, Any]]] = []

    def __call__(self, method: str, url: str, *, headers=None, **kwargs: Any) -> requests.Response:
        self.requests.append((url, {"headers": dict(headers or {}), **kwargs}))
        if (headers or {}).get("Authorization"):
            return self.error(method, url, 400, "InvalidArgument",
                              "Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter ...")
        data = self.objects.get(url.split("?")[0])
        if data is None:
            return self.error(method, url, 404, "NoSuchKey", "The specified key does not exist.")
        return make_response(method, url, 200, data, {"Content-Type": "application/octet-stream"})

    @staticmethod
    def error(method: str, url: str, status: int, code: str, message: str) -> requests.Response:
        body = (f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message>'
                "<RequestId>4442587FB7D0A2F9</RequestId></Error>").encode()
        return make_response(method, url, status, body, {"Content-Type": "application/xml"})


class FakeSession:
    """requests.Session's `request` and `headers`, routed to a server per base URL."""

    def __init__(self, servers: dict[str, Callable[..., requests.Response]]) -> None:
        self.servers = servers
        self.headers: dict[str, str] = {}
        self.calls: list[tuple[str, str]] = []  # (base URL, method)
        self.timeouts: list[float] = []  # each request's

    def request(self, method: str, url: str, *, timeout: float, **kwargs: Any) -> requests.Response:
        assert timeout > 0
        self.timeouts.append(timeout)
        for base, server in self.servers.items():
            if url.startswith(base + "/"):
                self.calls.append((base, method))
                return server(method, url, **kwargs)
        raise AssertionError(f"no fake server for {url}")


class FakeTime:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

