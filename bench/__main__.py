"""`make bench` (python -m bench): deploy a fresh local stack, measure, print a table and write
bench/results/<UTC time>.json.

Environment: BENCH_JOBS (200), BENCH_STEPS (5), BENCH_STEP_MS (100) shape the throughput run;
BENCH_POLLS (200) the polling run; BENCH_IMPORT_RUNS (15) the cold-start run."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from bench import cold_start, polling, requests_per_job, throughput
from bench.stack import ROOT, start_stack, stop_stack

RESULTS = ROOT / "bench" / "results"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def run() -> dict[str, Any]:
    build = ROOT / "build"
    subprocess.run([sys.executable, "-m", "scripts.package", "build"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    log = Path(tempfile.mkdtemp(prefix="jobpipe-bench-")) / "ministack.log"
    stack = start_stack(build, log)
    try:
        requests = requests_per_job.measure(stack)
        load = throughput.measure(stack, _env_int("BENCH_JOBS", 200),
                                  {"steps": _env_int("BENCH_STEPS", 5), "step_ms": _env_int("BENCH_STEP_MS", 100)})
        ids = [j["id"] for j in stack.http.get(f"{stack.api_url}/jobs?limit=100", timeout=30).json()["jobs"]]
        polls = polling.measure(stack, ids, _env_int("BENCH_POLLS", 200))
    finally:
        stop_stack(stack)
    cold = cold_start.measure(build / "deployment.zip", _env_int("BENCH_IMPORT_RUNS", 15))
    return {
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "emulator": "ministack (local)"},
        "requests_per_job": requests, "throughput": load, "polling": polls, "cold_start": cold,
    }


def table(result: dict[str, Any]) -> str:
    req, load, polls, cold = (result[k] for k in ("requests_per_job", "throughput", "polling", "cold_start"))
    job = req["job"]
    lines = [f"AWS requests per job: demo.steps {json.dumps(job['payload'])} ({job['status']}, handler ran {job['run_s']} s)",
             f"  {'function / request':<46}{'count':>6}{'floor':>7}  why the floor"]
    lines += [f"  {r['request']:<46}{r['count']:>6}{r['floor']:>7}  {r['why']}" for r in req["rows"]]
    lines += [f"  {'total':<46}{req['total']:>6}{req['floor_total']:>7}",
              f"  Lambda invocations: {req['invocations_total']} " + json.dumps(req["invocations"]), ""]
    lines += [f"Throughput: {load['jobs']} jobs demo.steps {json.dumps(load['payload'])} from {load['submit_threads']} threads",
              f"  all terminal in {load['all_terminal_s']} s ({load['completed']} completed): {load['jobs_per_s']} jobs/s; "
              f"submit→completed p50 {load['latency_p50_s']} s, p99 {load['latency_p99_s']} s",
              f"  per job, amortized: AWS requests {json.dumps(load['requests_per_job'])}",
              f"  per job, amortized: Lambda invocations {json.dumps(load['invocations_per_job'])}", ""]
    single, batch = polls["get_job"], polls["status_batch"]
    lines += [f"Polling ({single['requests']} requests each, sequential)",
              f"  GET /jobs/{{id}}             p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms",
              f"  POST /jobs/status ({batch['ids']} ids) p50 {batch['p50_ms']} ms, p99 {batch['p99_ms']} ms", ""]
    lines += [f"Cold start (median of {cold['runs']} fresh interpreters)",
              f"  import app: {cold['import_app_median_ms']} ms; bare Chalice app: {cold['import_bare_chalice_median_ms']} ms",
              f"  deployment.zip: {cold['zip_mb']} MB"]
    return "\n".join(lines)


def main() -> None:
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result['measured_at'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
