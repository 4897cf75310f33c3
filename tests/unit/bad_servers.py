"""Servers that answer badly, for the client's and the CLI's tests: the same answer to every
request, an exception in place of one, a body that trickles in or breaks off, and a request
budget that turns a client stuck in a loop into a failed test instead of a hung run."""
from types import SimpleNamespace

import requests

from tests.support.fake_http import make_response


def at_most(allowed, server):
    """`server`, failing the test once it has been asked more than `allowed` times (a client
    that loops ends here instead of hanging the run)."""
    def answer(method, url, **kwargs):
        answer.asked += 1
        if answer.asked > allowed:
            raise RuntimeError(f"asked more than {allowed} times: the client loops")
        return server(method, url, **kwargs)

    answer.asked = 0
    return answer


def answering(status, body=None, headers=None):
    """A server giving every request the same answer: `body` as JSON, or bytes as they are.
    It fails the test past 100 requests: a client that loops on the answer ends there."""
    def answer(method, url, **_):
        return make_response(method, url, status, body, headers)

    return at_most(100, answer)


def raising(exc):
    """A server whose every request raises `exc`, as requests would."""
    def answer(method, url, **_):
        raise exc

    return answer


class Body:
    """A streamed answer's body (what requests calls `raw`) that arrives `piece` bytes per
    `pause` seconds of a FakeTime, or fails with `error` once `fail_after` bytes are read.
    `timeouts` records each socket timeout the reader set."""

    def __init__(self, data, time, pause=0.0, piece=1, error=None, fail_after=0):
        self.data, self.time, self.pause, self.piece = data, time, pause, piece
        self.error, self.fail_after, self.read_so_far = error, fail_after, 0
        self.timeouts = []
        self.connection = SimpleNamespace(sock=SimpleNamespace(settimeout=self.timeouts.append))

    def read1(self, amt=None, decode_content=None):
        if self.error is not None and self.read_so_far >= self.fail_after:
            raise self.error
        self.time.now += self.pause
        piece, self.data = self.data[: self.piece], self.data[self.piece:]
        self.read_so_far += len(piece)
        return piece

    def read(self, amt=None, decode_content=None):  # all at once, as a reader that waits would see it
        pieces = []
        while piece := self.read1():
            pieces.append(piece)
        return b"".join(pieces)

    def close(self):
        pass


def streamed(status, body):
    """A server answering `status` with a streamed `body` (a Body), read as a real answer is."""
    def answer(method, url, **_):
        response = requests.Response()
        response.status_code, response.url, response.raw = status, url, body
        response.request = requests.Request(method, url).prepare()
        return response

    return answer
