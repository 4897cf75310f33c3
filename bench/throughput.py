"""(b) End-to-end throughput: N jobs submitted through the API from a few threads, the time
until all are terminal, and submit→completed latency from each job's created_at/finished_at."""
from __future__ import annotations

import os
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from statistics import quantiles
from typing import Any

from bench.stack import BenchStack, group_members, now_ms

TERMINAL = ("completed", "failed", "canceled")


def percentile(values: list[float], p: int) -> float:
    if len(values) == 1:
        return values[0]
    return quantiles(values, n=100, method="inclusive")[p - 1]


def group_cpu_s(pgid: int, leader: int, proc: Path = Path("/proc")) -> dict[str, float]:
    """CPU seconds (user + system) used so far by process group `pgid`: the `leader` (the
    emulator, one Python process serving every AWS request and dispatching every invocation)
    apart from the group's other members (the function processes), counting the members it
    has already reaped (its children's time)."""
    tick = os.sysconf("SC_CLK_TCK")
    used = {"emulator": 0.0, "functions": 0.0}
    for entry, fields in group_members(pgid, proc):
        try:
            own, children = int(fields[11]) + int(fields[12]), int(fields[13]) + int(fields[14])
        except (ValueError, IndexError):
            continue
        if int(entry.name) == leader:
            used["emulator"] += own / tick
            used["functions"] += children / tick
        else:
            used["functions"] += own / tick
    return used


def _at(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def measure(stack: BenchStack, jobs: int, payload: dict[str, Any], threads: int = 8,
            timeout_s: float = 600) -> dict[str, Any]:
    body = {"type": "demo.steps", "payload": payload}
    since = now_ms() - 1000
    pgid, leader = stack.emulator.process_group, stack.emulator.process.pid
    cpu_before = group_cpu_s(pgid, leader)
    throttled = stack.throttled()
    started, started_at = time.monotonic(), datetime.now(timezone.utc)
    with ThreadPoolExecutor(threads) as pool:
        ids = [job["id"] for job in pool.map(lambda _: stack.submit(body), range(jobs))]
    submitted_s = time.monotonic() - started
    throttled = stack.throttled() - throttled
    pending, finished = set(ids), {}
    while pending:
        if time.monotonic() - started > timeout_s:
            raise RuntimeError(f"{len(pending)} of {jobs} jobs were not terminal after {timeout_s:g} s")
        for job_id, job in stack.statuses(sorted(pending)).items():
            if job["status"] in TERMINAL:
                finished[job_id] = job
                pending.discard(job_id)
        if pending:
            time.sleep(0.5)
    observed = time.monotonic() - started
    # The burst ends when its last job does (its finished_at, written by the worker on this
    # machine's clock), not when the poll above, every 0.5 s, happened to see it.
    ends = [_at(j["finished_at"]) for j in finished.values() if j.get("finished_at")]
    elapsed = (max(ends) - started_at).total_seconds() if len(ends) == len(finished) else observed
    cpu_after = group_cpu_s(pgid, leader)
    latencies = [(_at(j["finished_at"]) - _at(j["created_at"])).total_seconds() for j in finished.values()]
    completed = sum(1 for j in finished.values() if j["status"] == "completed")
    requests, invocations = amortized(stack, since, jobs)
    return {
        "requests_per_job": requests, "invocations_per_job": invocations,
        # What binds the burst on two cores: the emulator is one process (one core at most).
        "cpu_ms_per_job": {k: round((cpu_after[k] - cpu_before[k]) * 1000 / jobs, 1) for k in cpu_before},
        "jobs": jobs, "payload": payload, "submit_threads": threads, "completed": completed,
        "submit_s": round(submitted_s, 2), "submit_throttled_retries": throttled, "all_terminal_s": round(elapsed, 2),
        "all_terminal_observed_s": round(observed, 2), "jobs_per_s": round(jobs / elapsed, 2),
        "latency_p50_s": round(percentile(latencies, 50), 2),
        "latency_p99_s": round(percentile(latencies, 99), 2),
    }


def amortized(stack: BenchStack, since_ms: int, jobs: int, settle_s: float = 6) -> tuple[dict, dict]:
    """AWS requests and Lambda invocations per job over the burst, per function (and "total"),
    from every function's per-invocation line; waits for the stream and subscribers to settle."""
    requests, invocations, previous = Counter(), Counter(), None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        time.sleep(settle_s)
        requests, invocations = Counter(), Counter()
        for function, counts in stack.request_counts(since_ms):
            requests[function] += sum(counts.values())
            invocations[function] += 1
        if (requests, invocations) == previous:
            break
        previous = (requests, invocations)

    def per_job(counter: Counter) -> dict:
        shares = {f: round(n / jobs, 2) for f, n in sorted(counter.items())}
        return {**shares, "total": round(sum(counter.values()) / jobs, 2)}

    return per_job(requests), per_job(invocations)
