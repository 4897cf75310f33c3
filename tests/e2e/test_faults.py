"""Fault injection on a deployed stack (`faults_stack`): worker processes that die mid-job,
duplicate deliveries, handlers that hang past their timeout, PutEvents entries refused, job
messages lost at SendMessage (resent by the reconciler), throttled claims, and an ERP receiver
that fails half the time (and, in a soak, is down for eleven minutes), over a bounded mix of jobs. Nothing may be lost, run
to completion twice, move backwards, or reach the subscribers other than once per transition.

JOBPIPE_SOAK=<n> multiplies the mix by n (a longer soak, outside `make test`), and the suite's
own time limits with it."""
from __future__ import annotations

import json
import os
import threading
import time
from collections import Counter, defaultdict

import pytest

from chalicelib.job_types.chaos import SIDE_EFFECT_ARTIFACT_PREFIX
from scripts.local_stack import stack_functions
from tests.e2e.conftest import ERP_OUTAGE_S, FAULTS_REDELIVERY_MAX_S, FAULTS_STACK
from tests.support.bus_tap import BusTap

TERMINAL = {"completed", "failed", "canceled"}
SOAK = int(os.environ.get("JOBPIPE_SOAK", "1"))
CLEAN = {"steps": 4, "step_ms": 50}
# kind -> (how many, payload, final status)
MIX = {
    "clean": (80, CLEAN, "completed"),
    "duplicated": (30, CLEAN, "completed"),
    "crash once": (15, {"steps": 4, "step_ms": 50, "crash_at_step": 2}, "completed"),
    "crash twice": (5, {"steps": 4, "step_ms": 50, "crash_at_step": 3, "crash_attempts": [1, 2]}, "completed"),
    "hang once": (15, {"steps": 4, "step_ms": 50, "hang_at_step": 2}, "completed"),
    "hang always": (5, {"steps": 4, "step_ms": 50, "hang_at_step": 1, "hang_attempts": [1, 2, 3]}, "failed"),
}
EXTRA_COPIES = 2
# The outcome fixture runs inside the first test: its limit grows with the soak.
pytestmark = pytest.mark.timeout(600 * SOAK + (1800 if ERP_OUTAGE_S else 0))


class ProgressSampler(threading.Thread):
    """Polls every job's status while the suite runs, keeping (version, attempt, percent)."""

    def __init__(self, stack, ids):
        super().__init__(daemon=True)
        self.stack, self.ids, self.samples = stack, ids, defaultdict(set)
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for start in range(0, len(self.ids), 100):
                response = self.stack.call("POST", "/jobs/status", json={"job_ids": self.ids[start:start + 100]})
                for job_id, job in response.json()["jobs"].items():
                    self.samples[job_id].add((job["version"], job["attempts"], job["progress"]["percent"]))
            self.stop.wait(0.5)


def history(job, runs):
    """The transitions a job went through, rebuilt from its runs: (previous, status) pairs."""
    transitions, previous = [(None, "queued")], "queued"
    for index, run in enumerate(sorted(runs, key=lambda r: r["attempt"])):
        transitions.append((previous, "running"))
        last = index == len(runs) - 1
        transitions.append(("running", job["status"] if last else "retrying"))
        previous = "retrying"
    return Counter(transitions)


def non_decreasing_within_attempts(points):
    """points: (version, attempt, percent); by version, percent never drops within an attempt."""
    by_attempt = defaultdict(list)
    for version, attempt, percent in sorted(points):
        by_attempt[attempt].append(percent)
    return all(seq == sorted(seq) for seq in by_attempt.values())


@pytest.fixture(scope="module")
def outcome(faults_stack):
    stack = faults_stack
    tap = BusTap(stack.session, stack.outputs["JobEventsBusName"])
    sqs = stack.session.client("sqs")
    kinds = {}
    for kind, (count, payload, _) in MIX.items():
        for _ in range(count * SOAK):
            job = stack.submit({"type": "demo.chaos", "payload": payload})
            kinds[job["id"]] = kind
            if kind == "duplicated":
                for _ in range(EXTRA_COPIES):
                    sqs.send_message(QueueUrl=stack.outputs["JobsQueueUrl"],
                                     MessageBody=json.dumps({"job_id": job["id"], "attempt": 1}))
    ids = list(kinds)
    submitted_at = time.monotonic()
    sampler = ProgressSampler(stack, ids)
    sampler.start()
    # Lost messages wait up to a reconciler period, crashed attempts their lease and a pass; the
    # jobs end in about 4 minutes on an idle machine. The deadline is a bound on a stuck job,
    # not a speed target: a loaded machine must not fail it (speed is make bench's).
    deadline = time.monotonic() + 600 * SOAK
    final = {}
    try:
        while len(final) < len(ids) and time.monotonic() < deadline:
            time.sleep(2)
            final.update({i: j for i, j in stack.call("POST", "/jobs/status", json={"job_ids": [
                i for i in ids if i not in final][:100]}).json()["jobs"].items() if j["status"] in TERMINAL})
    finally:
        sampler.stop.set()
        sampler.join(10)
    runs = {i: stack.call("GET", f"/jobs/{i}/runs").json()["runs"] for i in final}
    stuck = {i: stack.job(i) for i in ids if i not in final}
    dead = sqs.get_queue_attributes(QueueUrl=stack.outputs["JobsDeadLetterQueueUrl"],
                                    AttributeNames=["ApproximateNumberOfMessages"])["Attributes"]
    expected = {i: history(final[i], runs[i]) for i in final}
    # Events settle after the jobs: the stream retries refused entries, the bridge its 500s.
    tap.drain(lambda seen: all(Counter((d["previous_status"], d["status"]) for d in tap.status_events()
                                       if d["job_id"] == i) == expected[i] for i in final), timeout_s=120)
    tap.drain_quiet(quiet_s=3)
    status_ids = {d["event_id"] for d in tap.status_events() if d["job_id"] in kinds}
    # Each event needs at most its refused deliveries plus one after the outage ends, each at
    # most the stack's longest redelivery wait apart.
    outage_left = max(0.0, stack.webhook.outage_ends - time.monotonic())
    settle = time.monotonic() + outage_left + 90 + (stack.webhook.max_failures_per_event + 1) * FAULTS_REDELIVERY_MAX_S
    while not status_ids <= set(stack.webhook.accepted_counts()) and time.monotonic() < settle:
        time.sleep(1)
    time.sleep(3)  # a second acceptance of anything would land here
    effects = Counter({i: sum(a["name"].startswith(SIDE_EFFECT_ARTIFACT_PREFIX) for a in stack.call(
        "GET", f"/jobs/{i}/artifacts").json()["artifacts"]) for i in ids})
    publisher_env = stack.session.client("lambda").get_function_configuration(
        FunctionName=stack_functions(stack.session, FAULTS_STACK)["EventPublisher"]
    )["Environment"]["Variables"]
    reconciler = stack.call("GET", "/api/system/stats", headers=stack.operator_headers()).json()["reconciler"]
    accepted = stack.webhook.accepted_counts()
    print(json.dumps({  # the soak's figures, for its report (pytest -s or -rA shows them)
        "jobs": len(ids), "terminal": len(final), "non_terminal": len(stuck),
        "by_status": Counter(j["status"] for j in final.values()),
        "completed_runs": Counter(sum(r["status"] == "completed" for r in runs[i]) for i in final),
        "status_events": len(status_ids), "erp_accepted_once": sum(1 for e in status_ids if accepted.get(e) == 1),
        "erp_deliveries": len(stack.webhook.deliveries), "reconciler": reconciler["totals"],
        "seconds_in_all": round(time.monotonic() - submitted_at, 1),
    }, default=str))
    return {"reconciler": reconciler, "stuck": stuck, "dead_letters": dead, "publisher_env": publisher_env, "kinds": kinds, "final": final, "runs": runs, "expected": expected, "tap": tap,
            "samples": sampler.samples, "effects": effects, "webhook": stack.webhook}


def test_no_job_is_lost_and_each_ends_as_its_faults_dictate(outcome):
    kinds, final = outcome["kinds"], outcome["final"]
    assert len(kinds) == sum(count for count, _, _ in MIX.values()) * SOAK
    lost = [(i, kinds[i]) for i in kinds if i not in final]
    states = [(kinds[i], j["status"], j["attempts"]) for i, j in outcome["stuck"].items()]
    assert not lost, f"{len(lost)} jobs never reached a terminal state: {states[:8]}; DLQ: {outcome['dead_letters']}"
    wrong = [(kinds[i], j["status"], j.get("error")) for i, j in final.items() if j["status"] != MIX[kinds[i]][2]]
    assert not wrong, wrong[:5]
    codes = Counter((kinds[i], r["error"]["code"]) for i, rs in outcome["runs"].items() for r in rs if r.get("error"))
    assert codes[("crash once", "worker_lost")] == MIX["crash once"][0] * SOAK
    assert codes[("crash twice", "worker_lost")] == 2 * MIX["crash twice"][0] * SOAK
    assert codes[("hang once", "timeout")] == MIX["hang once"][0] * SOAK
    assert codes[("hang always", "timeout")] == 3 * MIX["hang always"][0] * SOAK


def test_no_job_completes_twice(outcome):
    for job_id, job in outcome["final"].items():
        completed_runs = [r for r in outcome["runs"][job_id] if r["status"] == "completed"]
        expected = 1 if job["status"] == "completed" else 0
        assert len(completed_runs) == expected, (outcome["kinds"][job_id], outcome["runs"][job_id])
        # the handler's side effect, left once per run that got past its last step
        assert outcome["effects"][job_id] == expected, (outcome["kinds"][job_id], outcome["effects"][job_id])
        if expected:
            assert job["result"]["attempt"] == job["attempts"] == completed_runs[0]["attempt"]


def test_progress_never_decreases_within_an_attempt(outcome):
    samples = outcome["samples"]
    assert sum(len(points) for points in samples.values()) > len(outcome["kinds"])  # the sampler saw the jobs move
    backwards = [i for i, points in samples.items() if not non_decreasing_within_attempts(points)]
    assert not backwards, {i: sorted(samples[i]) for i in backwards[:3]}
    events = defaultdict(set)
    for envelope in outcome["tap"].seen:
        detail = envelope["detail"]
        if detail.get("job_id") in outcome["kinds"] and "progress" in detail:
            events[detail["job_id"]].add((detail["version"], detail["attempt"], detail["progress"]))
    backwards = [i for i, points in events.items() if not non_decreasing_within_attempts(points)]
    assert not backwards, {i: sorted(events[i]) for i in backwards[:3]}


def test_exactly_one_status_event_per_transition_reaches_the_bus_and_the_erp(outcome):
    kinds, expected = outcome["kinds"], outcome["expected"]
    published = defaultdict(Counter)
    for detail in outcome["tap"].status_events():
        if detail["job_id"] in kinds:
            published[detail["job_id"]][(detail["previous_status"], detail["status"])] += 1
    mismatched = [(kinds[i], dict(published[i]), dict(expected[i])) for i in expected if published[i] != expected[i]]
    assert not mismatched, mismatched[:3]
    accepted = outcome["webhook"].accepted_counts()
    status_ids = {d["event_id"] for d in outcome["tap"].status_events() if d["job_id"] in kinds}
    assert status_ids <= set(accepted), f"{len(status_ids - set(accepted))} status events never reached the ERP"
    twice = {e: n for e, n in accepted.items() if e in status_ids and n != 1}
    assert not twice, twice
    publisher = outcome["publisher_env"]
    assert publisher.get("JOBPIPE_FAULT_PUT_EVENTS_FAILURE_RATE") == "0.3", publisher
    refused = [d for d in outcome["webhook"].deliveries if d["status"] == 500 and d["detail"]["event_id"] in status_ids]
    assert refused, "the ERP receiver was meant to fail half of its deliveries"


def test_lost_job_messages_were_sent_again_by_the_reconciler(outcome):
    """10 % of SendMessage calls lost their connection (at submit and at retry): those jobs
    reached their end above only because the reconciler sent their messages again."""
    assert outcome["reconciler"]["totals"].get("redispatched", 0) > 0, outcome["reconciler"]
