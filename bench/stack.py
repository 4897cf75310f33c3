"""A fresh emulator with the stack deployed for measuring: AWS request counting on, the ERP
webhook pointed at a loopback receiver, everything else as `make run` deploys it (the local
concurrency ceiling applied and every function warmed, scripts/local_stack.py)."""
from __future__ import annotations

import json
import os
import re
import secrets
import statistics
import threading
import time
from pathlib import Path
from typing import IO, Any, Iterator, Optional

import boto3
import requests

from chalicelib.api.auth import issue_token
from chalicelib.invocation import LOG_MESSAGE
from jobpipe_client.transport import FailoverTransport
from scripts.deploy import deploy
from scripts.emulator import DEFAULT_SERVER, Emulator, free_port
from scripts.local_stack import function_log_groups, prepare
from scripts.stack_config import LOCAL_API_CONCURRENCY, LOCAL_FUNCTION_CONCURRENCY
from tests.support.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[1]
WEBHOOK_SECRET = "bench-webhook-secret-0123456789abcdef"


class BenchStack:
    def __init__(self, emulator: Emulator, outputs: dict[str, str], secret: str, session: Any,
                 webhook: WebhookReceiver, prepared: Optional[dict[str, Any]] = None) -> None:
        self.emulator = emulator
        self.prepared = prepared or {}
        self.outputs = outputs
        self.api_url = outputs["ApiUrl"]
        self.session = session
        self.webhook = webhook
        self._token = issue_token(secret, user="bench", tenant="bench")
        self._local = threading.local()
        self._transports: list[FailoverTransport] = []
        self.http = requests.Session()
        self.http.headers.update({
            "Authorization": f"Bearer {self._token}",
            "Content-Type": "application/json",
        })

    def submit(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /jobs (no Idempotency-Key: the plain submission the burst measures), asking again
        while the API function is at its concurrency ceiling (429) as the client does: short,
        jittered, capped waits (jobpipe_client/transport.py), one session per thread."""
        transport = getattr(self._local, "transport", None)
        if transport is None:
            transport = self._local.transport = FailoverTransport([self.api_url], token=self._token, timeout_s=120)
            self._transports.append(transport)
        response = transport.request("POST", "/jobs", json=body)
        response.raise_for_status()
        return response.json()

    def throttled(self) -> int:
        """The API's 429s that submits have retried so far (the function at its ceiling)."""
        return sum(t.throttled for t in self._transports)

    def statuses(self, job_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The jobs, by id, through POST /jobs/status (100 per request)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(job_ids), 100):
            response = self.http.post(f"{self.api_url}/jobs/status", json={"job_ids": job_ids[start:start + 100]}, timeout=30)
            response.raise_for_status()
            found.update(response.json()["jobs"])
        return found

    def function_log_groups(self) -> dict[str, str]:
        """Logical function name (JobWorker, ...) -> its log group."""
        return function_log_groups(self.session, self.outputs["StackName"])

    def durations(self, since_ms: int) -> dict[str, dict[str, float]]:
        """Per function, the invocations' durations since `since_ms` from the REPORT lines the
        emulator writes (as Lambda does): count, p50 and mean in ms."""
        logs = self.session.client("logs")
        found: dict[str, dict[str, float]] = {}
        for function, group in self.function_log_groups().items():
            values: list[float] = []
            kwargs: dict[str, Any] = {"logGroupName": group, "startTime": since_ms, "filterPattern": "REPORT"}
            while True:
                try:
                    page = logs.filter_log_events(**kwargs)
                except logs.exceptions.ResourceNotFoundException:
                    break
                values += [report_duration_ms(e["message"]) for e in page.get("events", [])
                           if e["message"].startswith("REPORT RequestId")]
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]
            values = [v for v in values if v is not None]
            if values:
                found[function] = {"invocations": len(values), "p50_ms": round(statistics.median(values), 1),
                                   "mean_ms": round(statistics.fmean(values), 1)}
        return found

    def request_counts(self, since_ms: int) -> Iterator[tuple[str, dict[str, int]]]:
        """(function, counts) for every invocation that reported AWS requests since `since_ms`."""
        logs = self.session.client("logs")
        for function, group in self.function_log_groups().items():
            kwargs: dict[str, Any] = {"logGroupName": group, "startTime": since_ms}
            while True:
                try:
                    page = logs.filter_log_events(**kwargs)
                except logs.exceptions.ResourceNotFoundException:
                    break
                for event in page.get("events", []):
                    if LOG_MESSAGE not in event["message"]:
                        continue
                    line = json.loads(event["message"])
                    if line.get("message") == LOG_MESSAGE:  # no counts: it built no AWS client
                        yield function, line.get("aws_requests", {})
                if not page.get("nextToken"):
                    break
                kwargs["nextToken"] = page["nextToken"]


def start_stack(build_dir: Path, log: IO[bytes], name: str = "jobpipe-bench",
                parameters: Optional[dict[str, str]] = None, ceiling: int = LOCAL_FUNCTION_CONCURRENCY,
                warm_up: bool = True, api_ceiling: int = LOCAL_API_CONCURRENCY,
                server: str = DEFAULT_SERVER) -> BenchStack:
    """Deploy to a fresh emulator served by `server` (scripts/emulator.py), its output written to
    `log` (the caller's to close); `ceiling` (0: none),
    `api_ceiling` (0: `ceiling`) and `warm_up` as `make run` does them."""
    webhook = WebhookReceiver(WEBHOOK_SECRET).start()
    emulator = Emulator(free_port(), log=log, log_level="WARNING", server=server).start()
    os.environ.update(AWS_ENDPOINT_URL=emulator.endpoint, AWS_ACCESS_KEY_ID="test",
                      AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1")
    session = boto3.session.Session()
    secret = secrets.token_urlsafe(48)
    params = {"AuthSecret": secret, "CountAwsRequests": "true", "ErpWebhookUrl": webhook.url,
              "ErpWebhookSecret": WEBHOOK_SECRET, "DemoJobTypes": "true", "FunctionConcurrencyCeiling": str(ceiling),
              "ApiConcurrencyCeiling": str(api_ceiling),
              **(parameters or {})}
    try:
        outputs = deploy(build_dir, name, params, session)
        prepared = prepare(session, name, outputs["ApiUrl"], ceiling, warm_up=warm_up,
                           token=issue_token(secret, user="bench", tenant="bench"), api_ceiling=api_ceiling)
    except Exception:
        emulator.stop()
        webhook.stop()
        raise
    outputs["StackName"] = name
    return BenchStack(emulator, outputs, secret, session, webhook, prepared)


def stop_stack(stack: BenchStack) -> None:
    stack.emulator.stop()
    stack.webhook.stop()


def report_duration_ms(line: str) -> Optional[float]:
    """The Duration of a Lambda REPORT line, in ms (None when it has none)."""
    match = re.search(r"\tDuration: ([0-9.]+) ms", line)
    return float(match.group(1)) if match else None


def now_ms() -> int:
    return int(time.time() * 1000)


def group_members(pgid: int, proc: Path = Path("/proc")) -> Iterator[tuple[Path, list[str]]]:
    """(its /proc entry, the fields of its stat after the command) of every process in process
    group `pgid`, zombies included; a process that ends while being read is skipped."""
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            # Fields after the command (which may hold spaces): state ppid pgrp ... utime stime cutime cstime
            fields = stat[stat.rindex(")") + 2:].split()
            if int(fields[2]) != pgid:
                continue
        except (OSError, ValueError, IndexError):
            continue
        yield entry, fields
