"""The process's boto3 clients: one per AWS service, built on first use and shared by every
adapter (boto3 clients are thread-safe; one connection pool per service), each with the
timeouts, retries and S3 link signing the adapters rely on, and every request counted when the
benchmark asks. The composition root holds a process's one AwsClients and hands its clients to
the adapters it builds."""
from __future__ import annotations

import threading
from contextlib import contextmanager
from functools import cache, cached_property
from typing import Any, Callable, Iterator, Optional


@cache
def request_not_sent_error() -> type:
    """The error of a request not sent, too little of the invocation's time left for it
    (`AwsClients.sending_while`): a BotoCoreError, so every adapter takes it as it takes a request
    that did not answer. Made on first use: botocore is loaded with the first client."""
    from botocore.exceptions import BotoCoreError

    class RequestNotSentError(BotoCoreError):
        fmt = "{operation} not sent: {left_s:.1f} s of the invocation left, under the {keep_s:g} s kept to end it"

    return RequestNotSentError


class AwsClients:
    def __init__(self, *, connect_timeout_s: float, read_timeout_s: float, max_attempts: int,
                 count_requests: bool = False, session: Any = None) -> None:
        """`session`: the boto3 Session the clients come from (None: one made with the first
        client). `count_requests`: count every request the clients send (the benchmark's
        JOBPIPE_COUNT_AWS_REQUESTS), taken by `take_requests`."""
        self._session = session
        self._connect_timeout_s = connect_timeout_s
        self._read_timeout_s = read_timeout_s
        self._max_attempts = max_attempts
        self._clients: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._counter: Any = None
        self._keep: Optional[tuple[Callable[[], float], float]] = None  # (time left, seconds kept)
        if count_requests:
            from chalicelib.aws_requests import AwsRequestCounter

            self._counter = AwsRequestCounter()

    @cached_property
    def _boto(self) -> Any:
        if self._session is not None:
            return self._session
        import boto3  # imported here so a cold start of a route that needs no AWS stays cheap

        return boto3.session.Session()

    def client(self, service: str, *, single_try: bool = False) -> Any:
        """The process's boto3 client for `service`, built on first use. The endpoint comes
        from AWS_ENDPOINT_URL when set (emulators). `single_try`: a second client of the service
        whose calls botocore never tries again, for a write that must not be applied twice: a
        try whose answer was lost may have been applied, and SendMessage is not idempotent."""
        key = f"{service}:single" if single_try else service
        with self._lock:
            client = self._clients.get(key)
            if client is None:
                from botocore.config import Config

                client = self._boto.client(service, config=Config(
                    connect_timeout=self._connect_timeout_s,
                    read_timeout=self._read_timeout_s,
                    retries={"mode": "standard", "total_max_attempts": 1 if single_try else self._max_attempts},
                    # S3's presigned links: SigV4, which every region takes (botocore may pick
                    # SigV2 for them, which S3 treats as anonymous when a response header is set),
                    # on the bucket's regional host: the global one answers 400 for a region opened
                    # after March 2019, and a 307 (the signed host then no longer matches) for a
                    # day after a bucket is created. An emulator's endpoint keeps the bucket in the path.
                    signature_version="s3v4" if service == "s3" else None,
                    s3={"addressing_style": "virtual"} if service == "s3" else None,
                ))
                # Once a call, before its first try and before any handler that would answer it.
                client.meta.events.register_first("before-call.*.*", self._may_send)
                if self._counter is not None:
                    self._counter.attach(client)  # once per client: each request counted once
                self._clients[key] = client
            return client

    @contextmanager
    def sending_while(self, time_left_s: Optional[Callable[[], float]], keep_s: float) -> Iterator[None]:
        """Within the block, no client starts a request (one of botocore's calls: its tries
        follow it unlooked at) once `time_left_s()` (the invocation's remaining seconds; None: no
        limit) is under `keep_s`: it raises `request_not_sent_error()` instead, unsent."""
        self._keep = None if time_left_s is None else (time_left_s, keep_s)
        try:
            yield
        finally:
            self._keep = None

    def _may_send(self, model: Any, **_call: Any) -> None:
        keep = self._keep
        if keep is None:
            return
        left_s = keep[0]()
        if left_s < keep[1]:
            raise request_not_sent_error()(operation=model.name, left_s=left_s, keep_s=keep[1])

    def take_requests(self) -> Optional[dict[str, int]]:
        """The AWS requests counted since the last call, by operation (None: not counting)."""
        return None if self._counter is None else self._counter.take()
