"""(e) Cold burst: on the freshly deployed stack, N `jobpipe submit`s at once (the client the CLI
uses, its 10 s request timeout), each one's latency, and the whole stack's peak resident memory
and process count until every job ended, sampled by walking the emulator's process group
(ministack and the function processes it starts) in /proc."""
from __future__ import annotations

import os
import statistics
from collections import Counter
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Optional

from bench.stack import BenchStack, group_members, now_ms
from bench.throughput import amortized
from jobpipe_client import JobpipeClient, JobpipeError

CLI_TIMEOUT_S = 10.0  # the CLI's default --request-timeout
TERMINAL = ("completed", "failed", "canceled")


def group_usage(pgid: int, proc: Path = Path("/proc")) -> tuple[int, int]:
    """(processes, resident bytes summed) of the live processes in process group `pgid`."""
    count = rss = 0
    for entry, fields in group_members(pgid, proc):
        if fields[0] == "Z":
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue  # the process ended while being read
        count += 1
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1]) * 1024
                break
    return count, rss


class PeakSampler:
    """Samples a process group's usage every `interval_s` in a thread; keeps the peaks."""

    def __init__(self, pgid: int, interval_s: float = 0.1, proc: Path = Path("/proc")) -> None:
        self._pgid, self._interval_s, self._proc = pgid, interval_s, proc
        self.peak_processes = self.peak_rss = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="peak-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.sample()
            if self._stop.wait(self._interval_s):
                return

    def sample(self) -> None:
        processes, rss = group_usage(self._pgid, self._proc)
        self.samples += 1
        self.peak_processes = max(self.peak_processes, processes)
        self.peak_rss = max(self.peak_rss, rss)

    def __enter__(self) -> "PeakSampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()


def latency_summary(latencies_s: list[float], limit_s: float) -> dict[str, Any]:
    """Median and max of the answered submits, and how many answered within `limit_s`."""
    ordered = sorted(latencies_s)
    return {
        "median_s": round(statistics.median(ordered), 2) if ordered else None,
        "max_s": round(ordered[-1], 2) if ordered else None,
        "min_s": round(ordered[0], 2) if ordered else None,
        "within_limit": sum(1 for s in ordered if s <= limit_s),
    }


def measure(stack: BenchStack, submits: int = 30, payload: Optional[dict[str, Any]] = None,
            settle_timeout_s: float = 300) -> dict[str, Any]:
    payload = payload or {"steps": 5, "step_ms": 100}
    token = stack.http.headers["Authorization"].split(" ", 1)[1]
    pgid = stack.emulator.process_group
    baseline_processes, baseline_rss = group_usage(pgid)
    throttled = []

    def submit(_: int) -> tuple[float, Optional[str], Optional[str]]:
        client = JobpipeClient(stack.api_url, token, timeout=CLI_TIMEOUT_S)
        started = time.monotonic()
        try:
            job = client.submit("demo.steps", payload)
            return time.monotonic() - started, job["id"], None
        except JobpipeError as exc:
            return time.monotonic() - started, None, f"{type(exc).__name__}: {exc}"[:300]
        finally:
            throttled.append(client.transport.throttled)

    since = now_ms() - 1000
    started = time.monotonic()
    with PeakSampler(pgid) as sampler:
        with ThreadPoolExecutor(submits) as pool:
            outcomes = list(pool.map(submit, range(submits)))
        ids = [job_id for _, job_id, _ in outcomes if job_id]
        pending = set(ids)
        while pending and time.monotonic() - started < settle_timeout_s:
            for job_id, job in stack.statuses(sorted(pending)).items():
                if job["status"] in TERMINAL:
                    pending.discard(job_id)
            if pending:
                time.sleep(0.5)
        all_terminal_s = round(time.monotonic() - started, 2) if not pending else None
        # The subscribers and the stream still work after the last job ended, and submits that
        # timed out may still be starting processes: sample until the functions' request lines
        # stop changing, so the peak is the burst's and the next measurement starts quiet.
        requests, invocations = amortized(stack, since, max(1, len(ids)))
    durations = stack.durations(since)
    answered = [seconds for seconds, job_id, _ in outcomes if job_id]
    return {
        "submits": submits, "payload": payload, "client_timeout_s": CLI_TIMEOUT_S,
        "accepted": len(ids), "errors": dict(Counter(error.split(":", 1)[0] for _, _, error in outcomes if error)),
        "error_example": next((error for _, _, error in outcomes if error), None),
        **latency_summary(answered, CLI_TIMEOUT_S),
        "throttled_retries": sum(throttled),
        "all_terminal_s": all_terminal_s,
        "requests_per_job": requests, "invocations_per_job": invocations, "durations": durations,
        "not_terminal": len(pending),
        "baseline_processes": baseline_processes, "baseline_rss_mb": round(baseline_rss / 2**20),
        "peak_processes": sampler.peak_processes, "peak_rss_mb": round(sampler.peak_rss / 2**20),
        "samples": sampler.samples, "cpus": os.cpu_count(),
    }
