"""Worker batches on the deployed stack, with the reconciler paused (so nothing but the batch
itself can bring a message back): a job that kills its worker process delays the jobs delivered
in the same batch by no more than their short lease, and a long job does not hold up the quick
ones delivered with it."""
from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime

from chalicelib.defaults import BATCH_MATE_LEASE_S, BATCH_MATE_WAIT_S
from scripts.local_stack import stack_functions

STACK = "jobpipe-e2e"
CLEAN = {"type": "demo.chaos", "payload": {"steps": 2, "step_ms": 0}}
CRASH = {"type": "demo.chaos", "payload": {"steps": 2, "step_ms": 0, "crash_at_step": 1}}
LONG = {"type": "demo.steps", "payload": {"steps": 40, "step_ms": 500}}


def function_name(stack, logical: str) -> str:
    return stack_functions(stack.session, STACK)[logical]


@contextmanager
def held_back(stack):
    """The normal worker's queue mapping and the reconciler's schedule off while inside."""
    lam, events = stack.session.client("lambda"), stack.session.client("events")
    (mapping,) = lam.list_event_source_mappings(FunctionName=function_name(stack, "JobWorker"))["EventSourceMappings"]
    reconciler = function_name(stack, "Reconciler")
    rules = [r["Name"] for r in events.list_rules()["Rules"]
             if any(reconciler in t["Arn"] for t in events.list_targets_by_rule(Rule=r["Name"])["Targets"])]
    assert rules, "the reconciler has a schedule"
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    for rule in rules:
        events.disable_rule(Name=rule)
    try:
        yield lambda: lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
    finally:
        lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)
        for rule in rules:
            events.enable_rule(Name=rule)


def seconds_between(earlier: str, later: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(later) - parse(earlier)).total_seconds()


def test_a_crashing_job_delays_its_batch_mates_by_their_short_lease_only(stack):
    with held_back(stack) as release:
        crash = stack.submit(CRASH)  # first on the queue: first in the batch
        mates = [stack.submit(CLEAN) for _ in range(5)]
        time.sleep(1)
        release()
        finished = [stack.wait_terminal(m["id"], timeout_s=BATCH_MATE_LEASE_S + 60) for m in mates]
        crashed = stack.wait_for(crash["id"], lambda j: j["status"] == "running")
    assert [j["status"] for j in finished] == ["completed"] * len(mates)
    # They were delivered with the crashing job (their single run began after their short lease),
    # not run before it and not left for the queue's 90-minute visibility timeout.
    waits = [seconds_between(crashed["started_at"], j["started_at"]) for j in finished]
    assert all(BATCH_MATE_LEASE_S - 5 <= w <= BATCH_MATE_LEASE_S + 20 for w in waits), waits
    assert all(j["attempts"] == 1 for j in finished)


def test_a_long_job_does_not_hold_up_the_quick_jobs_delivered_with_it(stack):
    with held_back(stack) as release:
        long = stack.submit(LONG)  # first on the queue: first in the batch, 20 s long
        mates = [stack.submit(CLEAN) for _ in range(3)]
        time.sleep(1)
        release()
        finished = [stack.wait_terminal(m["id"], timeout_s=BATCH_MATE_LEASE_S + 60) for m in mates]
        running = stack.wait_for(long["id"], lambda j: j["started_at"] is not None)
        assert stack.job(long["id"])["status"] == "running"  # they did not wait for it to end ...
    assert [j["status"] for j in finished] == ["completed"] * len(mates)
    # ... nor for their short lease: handed back once the batch had run BATCH_MATE_WAIT_S, each
    # ran on its first attempt from a new message.
    waits = [seconds_between(running["started_at"], j["started_at"]) for j in finished]
    assert all(w < BATCH_MATE_LEASE_S - 10 for w in waits), (waits, BATCH_MATE_WAIT_S)
    assert all(j["attempts"] == 1 for j in finished)
    stack.wait_terminal(long["id"], timeout_s=60)
