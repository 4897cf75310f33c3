"""(a) AWS requests per job, by function, service and operation, counted exactly: every
function process counts its botocore requests (JOBPIPE_COUNT_AWS_REQUESTS) and logs them once
per invocation; this sums the lines CloudWatch Logs holds for one job run alone on the stack."""
from __future__ import annotations

import math
import time
from collections import Counter
from datetime import datetime
from typing import Any

from bench.stack import BenchStack, now_ms
from chalicelib.defaults import PROGRESS_MIN_INTERVAL_S

PAYLOAD = {"steps": 100, "step_ms": 100}  # 100 progress calls over 10 s
# The stack is deployed with ProgressMinIntervalSeconds at its default.
PROGRESS_INTERVAL_S = PROGRESS_MIN_INTERVAL_S


def floors(run_s: float, erp_ledger: bool = True) -> dict[str, tuple[int, str]]:
    """The fewest requests the design can make for this job, with why. `run_s` is how long
    the handler ran: progress writes happen once per full interval strictly inside it.
    `erp_ledger`: false when the stack's ERP deduplicates (ErpReceiverDeduplicates=true)."""
    writes = max(0, math.ceil(run_s / PROGRESS_INTERVAL_S) - 1)
    events = 3 + writes  # queued, running, completed + one progress event per write (20+ points each)
    floor = {
        "APIHandler dynamodb.GetItem": (1, "admission: the tenant's unfinished count (a process reuses it for "
                                           "a second while far from the bound; a job alone reads it)"),
        "APIHandler dynamodb.PutItem": (1, "the job record, written once with attribute_not_exists"),
        "APIHandler sqs.SendMessage": (1, "one message per job"),
        "JobWorker dynamodb.TransactWriteItems": (1, "the completion, atomic with the attempt's run record "
                                                     "(written when the attempt ends, not at claim)"),
        "JobWorker dynamodb.UpdateItem": (1 + writes, "the claim: one conditional write, no read (the message "
                                                      "names attempt, tenant and timeout; a refused write returns "
                                                      "the stored job); one progress write per "
                                                      f"{PROGRESS_INTERVAL_S:g} s window inside the {run_s:.1f} s "
                                                      "run; the last one is the completion"),
        "EventPublisher eventbridge.PutEvents": (events, "one per job write that yields an event (3 transitions "
                                                         "+ 1 milestone per progress write, 20 points apart); "
                                                         "writes seconds apart arrive in separate stream batches"),
        "EventPublisher dynamodb.TransactWriteItems": (3, "the counters, once per stream batch holding a status "
                                                          "change (3, seconds apart)"),
        # The ledger costs 2 requests per SQS batch; a job run alone has its events seconds
        # apart, each in a batch of its own, so here that is still 2 per event. Under load a
        # batch carries up to 10 events (the burst's amortized figure shows it).
        "ErpBridge dynamodb.TransactWriteItems": (events, "the delivery ledger opens an SQS batch's records before "
                                                          "its webhook POSTs, one request per batch; a job alone "
                                                          "has each status event in a batch of its own, so one "
                                                          "per event here (fewer per event under load)"),
        "ErpBridge dynamodb.BatchWriteItem": (events, "the same batch's records closed after the POSTs, one "
                                                      "request per batch (per event for a job alone)"),
    }
    if not erp_ledger:  # the ERP keeps each event id once: the bridge keeps no ledger
        floor = {k: v for k, v in floor.items() if not k.startswith("ErpBridge ")}
    return floor


def _seconds(start: str, end: str) -> float:
    parse = lambda s: datetime.fromisoformat(s.replace("Z", "+00:00"))  # noqa: E731
    return (parse(end) - parse(start)).total_seconds()


def _job_item(stack: BenchStack, job_id: str) -> dict[str, Any]:
    # Read the table directly: polling through the API would add its own GetItems to the count.
    item = stack.session.client("dynamodb").get_item(
        TableName=stack.outputs["JobsTableName"], Key={"pk": {"S": f"JOB#{job_id}"}, "sk": {"S": "JOB"}},
        ConsistentRead=True,
    ).get("Item", {})
    return {k: next(iter(v.values())) for k, v in item.items()}


# Functions that run on a schedule, not for a job: the reconciler's pass comes once a minute
# whatever the jobs, so a pass that falls inside the lone job's window is not the job's. The
# burst's amortized figures count it (its share a job there is what it costs).
SCHEDULED = ("Reconciler",)


def split_scheduled(totals: Counter, invocations: Counter) -> tuple[Counter, Counter, dict[str, dict[str, int]]]:
    """The job's own requests and invocations, and the scheduled functions' apart:
    {function: {"requests": n, "invocations": k}} for each that ran in the window."""
    own = Counter({key: n for key, n in totals.items() if key.split(" ", 1)[0] not in SCHEDULED})
    own_invocations = Counter({f: n for f, n in invocations.items() if f not in SCHEDULED})
    scheduled = {
        function: {"requests": sum(n for key, n in totals.items() if key.split(" ", 1)[0] == function),
                   "invocations": invocations[function]}
        for function in SCHEDULED if invocations.get(function)
    }
    return own, own_invocations, scheduled


def measure(stack: BenchStack, timeout_s: float = 120, erp_ledger: bool = True) -> dict[str, Any]:
    since = now_ms() - 1000
    job = stack.submit({"type": "demo.steps", "payload": PAYLOAD})
    deadline = time.monotonic() + timeout_s
    item = _job_item(stack, job["id"])
    while item.get("status") not in ("completed", "failed", "canceled"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"job {job['id']} did not finish: {item.get('status')}")
        time.sleep(0.5)
        item = _job_item(stack, job["id"])
    # Settle: the stream, the webhook bridge and cache invalidation run after completion.
    totals, invocations, stable = Counter(), Counter(), 0
    while stable < 3 and time.monotonic() < deadline:
        time.sleep(2)
        latest, invocations = Counter(), Counter()
        for function, counts in stack.request_counts(since):
            latest.update({f"{function} {op}": n for op, n in counts.items()})
            invocations[function] += 1
        stable = stable + 1 if latest == totals and len(stack.webhook.accepted(job["id"])) >= 3 else 0
        totals = latest
    run_s = _seconds(item["started_at"], item["finished_at"])
    totals, invocations, scheduled = split_scheduled(totals, invocations)
    floor = floors(run_s, erp_ledger)
    rows = [
        {"request": key, "count": totals.get(key, 0), "floor": floor.get(key, (0, "not needed by the design"))[0],
         "why": floor.get(key, (0, "not needed by the design"))[1]}
        for key in sorted(set(totals) | set(floor))
    ]
    return {
        "job": {"type": "demo.steps", "payload": PAYLOAD, "status": item["status"], "run_s": round(run_s, 2)},
        "rows": rows,
        "total": sum(totals.values()),
        "invocations": dict(sorted(invocations.items())),
        "invocations_total": sum(invocations.values()),
        "floor_total": sum(f for f, _ in floor.values()),
        "scheduled_in_window": scheduled,
    }
