"""(c) Status polling latency through the gateway: GET /jobs/{id} and a 100-id POST /jobs/status."""
from __future__ import annotations

import time
from typing import Any

from bench.stack import BenchStack
from bench.throughput import percentile


def _timed(call, requests: int) -> list[float]:
    times = []
    for _ in range(requests):
        start = time.perf_counter()
        response = call()
        times.append((time.perf_counter() - start) * 1000)
        if response.status_code != 200:
            raise RuntimeError(f"poll answered {response.status_code}: {response.text[:200]}")
    return times


def _summary(times: list[float]) -> dict[str, Any]:
    return {"requests": len(times), "p50_ms": round(percentile(times, 50), 1), "p99_ms": round(percentile(times, 99), 1)}


def measure(stack: BenchStack, job_ids: list[str], requests: int = 200) -> dict[str, Any]:
    one = job_ids[0]
    batch = job_ids[:100]
    single = _timed(lambda: stack.http.get(f"{stack.api_url}/jobs/{one}", timeout=30), requests)
    many = _timed(lambda: stack.http.post(f"{stack.api_url}/jobs/status", json={"job_ids": batch}, timeout=30), requests)
    return {"get_job": _summary(single), "status_batch": {**_summary(many), "ids": len(batch)}}
