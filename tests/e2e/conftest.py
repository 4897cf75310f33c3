"""End-to-end tests: a fresh ministack on a free loopback port, the packaged stack deployed to
it through CloudFormation, and the deployed API driven over HTTP."""
from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any, Callable

import boto3
import pytest
import requests

from chalicelib.api.auth import issue_token
from scripts.deploy import deploy
from scripts.emulator import Emulator, free_port
from tests.support import emulator_log
from tests.support.infra import ensure_package
from tests.support.waiting import eventually
from tests.support.webhook_receiver import WebhookReceiver

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "build"
WEBHOOK_SECRET = "e2e-webhook-secret-0123456789abcdef"
FAULTS_STACK = "jobpipe-faults"
# A soak (JOBPIPE_SOAK > 1) also takes the ERP down for over ten minutes from the start.
ERP_OUTAGE_S = 660 if int(os.environ.get("JOBPIPE_SOAK", "1")) > 1 else 0
# The fault stack's longest wait between two deliveries of a failed message: after the ERP
# outage every event comes back within this, not the production 15 minutes.
FAULTS_REDELIVERY_MAX_S = 60
# The session's emulator log once the stack has started it; a failing test's report carries
# the lines written while that test ran (tests/support/emulator_log.py).
SESSION_LOG: dict[str, Any] = {}
LOG_OFFSET = pytest.StashKey[int]()
STARTED_MS = pytest.StashKey[int]()


class Stack:
    def __init__(self, api_url: str, secret: str, outputs: dict[str, str], session: Any, log: Path,
                 webhook: WebhookReceiver) -> None:
        self.api_url = api_url
        self.secret = secret
        self.outputs = outputs
        self.session = session
        self.log = log
        self.webhook = webhook
        self.http = requests.Session()

    def token(self, tenant: str = "acme", user: str = "ann", roles=None, ttl_s: int = 3600) -> str:
        return issue_token(self.secret, user=user, tenant=tenant, roles=roles, ttl_s=ttl_s)

    def operator_headers(self) -> dict[str, str]:
        """A token with the system-wide roles (the operator routes)."""
        token = self.token("ops", "operator", roles=["admin", "operator"])
        return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def wait_for_webhook(self, job_id: str, status: str, timeout_s: float = 60) -> list[dict]:
        """The ERP receiver's accepted deliveries for the job once one carries `status`."""
        return eventually(lambda: self.webhook.accepted(job_id),
                          lambda accepted: any(d["detail"]["status"] == status for d in accepted),
                          timeout_s=timeout_s, every_s=0.5, what=f"a {status} event of job {job_id} to reach the ERP")

    def headers(self, tenant: str = "acme", **extra: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token(tenant)}", "Content-Type": "application/json", **extra}

    def call(self, method: str, path: str, tenant: str = "acme", headers=None, **kwargs) -> requests.Response:
        return self.http.request(
            method, f"{self.api_url}{path}", headers=headers if headers is not None else self.headers(tenant),
            timeout=30, **kwargs,
        )

    def submit(self, body: dict, tenant: str = "acme", **headers: str) -> dict:
        response = self.call("POST", "/jobs", headers=self.headers(tenant, **headers), json=body)
        assert response.status_code == 202, response.text
        return response.json()

    def job(self, job_id: str, tenant: str = "acme") -> dict:
        response = self.call("GET", f"/jobs/{job_id}", tenant)
        assert response.status_code == 200, response.text
        return response.json()

    def wait_for(self, job_id: str, predicate: Callable[[dict], bool], timeout_s: float = 60, tenant: str = "acme") -> dict:
        return eventually(lambda: self.job(job_id, tenant), predicate, timeout_s=timeout_s, every_s=0.3,
                          what=f"job {job_id} to reach the expected state")

    def wait_terminal(self, job_id: str, timeout_s: float = 60, tenant: str = "acme") -> dict:
        return self.wait_for(job_id, lambda j: j["status"] in ("completed", "failed", "canceled"), timeout_s, tenant)


def deploy_stack(name: str, session: Any, log: Path, webhook: WebhookReceiver, **parameters: str) -> Stack:
    """Deploy the packaged stack as `name` with a fresh auth secret, quick retries and progress,
    and its ERP webhook at `webhook`; `parameters` add or override template parameters."""
    secret = secrets.token_urlsafe(48)
    defaults = {
        "AuthSecret": secret,
        "RetryBaseSeconds": "1",
        "ProgressMinIntervalSeconds": "1",
        "DispatchGraceSeconds": "5",
        "RedeliveryBaseSeconds": "2",
        "ErpWebhookUrl": webhook.url,
        "ErpWebhookSecret": WEBHOOK_SECRET,
        "DemoJobTypes": "true",
    }
    outputs = deploy(BUILD, name, {**defaults, **parameters}, session)
    return Stack(outputs["ApiUrl"], secret, outputs, session, log, webhook)


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects: every collected test is seen
def pytest_collection_modifyitems(items) -> None:
    """A module that marks its tests needing the stack (`@pytest.mark.stack`) marks each of
    them: `-m "not stack"` must never start an emulator. Raises pytest.UsageError naming any not
    marked."""
    marking = {item.module for item in items if item.get_closest_marker("stack")}
    unmarked = [item.nodeid for item in items
                if item.module in marking and "stack" in item.fixturenames and not item.get_closest_marker("stack")]
    if unmarked:
        raise pytest.UsageError("needs the stack but is not marked @pytest.mark.stack: " + ", ".join(unmarked))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    """Where the emulator's log ends as the test starts (0 when its setup starts the stack)."""
    log = SESSION_LOG.get("path")
    item.stash[LOG_OFFSET] = emulator_log.size(log) if log else 0
    item.stash[STARTED_MS] = int(time.time() * 1000)
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that uses the stack reports what the emulator and the functions logged
    while it ran, its setup included."""
    outcome = yield
    report = outcome.get_result()
    log = SESSION_LOG.get("path")
    if report.failed and log and "stack" in item.fixturenames:
        lines = emulator_log.written_since(log, item.stash.get(LOG_OFFSET, 0))
        if lines:
            report.sections.append(("emulator log while it ran", lines))
        if "session" in SESSION_LOG:
            lines = emulator_log.function_lines_since(SESSION_LOG["session"], item.stash.get(STARTED_MS, 0))
            if lines:
                report.sections.append(("function logs while it ran", lines))


@pytest.fixture(scope="session")
def stack(tmp_path_factory) -> Stack:
    ensure_package()
    log = tmp_path_factory.mktemp("emulator") / "ministack.log"
    SESSION_LOG["path"] = log
    webhook = WebhookReceiver(WEBHOOK_SECRET).start()
    with log.open("wb") as log_file:
        emulator = Emulator(free_port(), log=log_file).start()
        saved = {k: os.environ.get(k) for k in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")}
        os.environ.update(
            AWS_ENDPOINT_URL=emulator.endpoint, AWS_ACCESS_KEY_ID="test",
            AWS_SECRET_ACCESS_KEY="test", AWS_DEFAULT_REGION="us-east-1",
        )
        try:
            SESSION_LOG["session"] = boto3.session.Session()
            yield deploy_stack("jobpipe-e2e", SESSION_LOG["session"], log, webhook)
        finally:
            SESSION_LOG.clear()
            emulator.stop()
            webhook.stop()
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value


@pytest.fixture(scope="session")
def faults_stack(stack) -> Stack:
    """A second stack in the same emulator, deployed with fault injection: EventBridge refuses
    30 % of PutEvents entries, 10 % of SendMessage calls lose their connection (lost job
    messages, at submit and at retry, for the reconciler to resend), 10 % of claim writes are
    throttled, and the ERP receiver answers 500 to half of its deliveries (at most twice per
    event; in a soak it is also down for the first 11 minutes, and failed deliveries come back
    at most a minute apart). The main stack stays clean."""
    webhook = WebhookReceiver(WEBHOOK_SECRET, fail_rate=0.5, max_failures_per_event=2, seed=6,
                              outage_s=ERP_OUTAGE_S).start()
    try:
        yield deploy_stack(FAULTS_STACK, stack.session, stack.log, webhook, FaultPutEventsFailureRate="0.3",
                           FaultSendMessageFailureRate="0.1", FaultClaimFailureRate="0.1",
                           # messages merely waiting behind the suite's backlog are not resent
                           DispatchGraceSeconds="30", RedeliveryMaxSeconds=str(FAULTS_REDELIVERY_MAX_S))
    finally:
        webhook.stop()
