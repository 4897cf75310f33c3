"""`make bench` (python -m bench): deploy a fresh local stack, measure, print a table and write
bench/results/<UTC time>.json.

Environment: BENCH_JOBS (200), BENCH_STEPS (10), BENCH_STEP_MS (0) shape the throughput run (the
burst users measured: every job reports progress ten times, no sleep);
BENCH_POLLS (200) the polling run; BENCH_IMPORT_RUNS (15) the cold-start run; BENCH_COLD_SUBMITS
(30) the cold burst, on a stack deployed as `make run` does (BENCH_FUNCTION_CONCURRENCY, default
the local ceiling, 0 for none; BENCH_API_CONCURRENCY, default the API's local ceiling, 0 for the
functions'; BENCH_WARM=0 skips the warm-up: the stack as it was before all three).
BENCH_ERP_RECEIVER_DEDUPLICATES=true deploys with ErpReceiverDeduplicates=true (an ERP that
keeps each event_id once: the bridge keeps no delivery ledger). BENCH_EMULATOR_SERVER=hypercorn
serves the emulator's app with ministack's own server instead of uvicorn, to compare the two
(the JSON's machine.emulator_server says which served a run)."""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from bench import cold_burst, cold_start, polling, requests_per_job, throughput
from bench.stack import ROOT, now_ms, start_stack, stop_stack
from scripts.emulator import DEFAULT_SERVER, SERVERS
from scripts.package import code_path
from scripts.stack_config import LOCAL_FUNCTION_CONCURRENCY, boolean, local_api_ceiling

RESULTS = ROOT / "bench" / "results"


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


def _env_bool(name: str, default: bool) -> bool:
    """The variable read with the stack's one rule for switches (stack_config.boolean)."""
    value = os.environ.get(name, "")
    if not value.strip():
        return default
    try:
        return boolean(value)
    except ValueError as exc:
        raise SystemExit(f"make bench: {name} {exc}") from None


def _env_server() -> str:
    """BENCH_EMULATOR_SERVER: what serves the emulator's app, uvicorn (every stack's) or
    hypercorn (ministack's own, to compare with)."""
    server = os.environ.get("BENCH_EMULATOR_SERVER", "").strip() or DEFAULT_SERVER
    if server not in SERVERS:
        raise SystemExit(f"make bench: BENCH_EMULATOR_SERVER must be one of {', '.join(SERVERS)}, not {server!r}")
    return server


def run() -> dict[str, Any]:
    server = _env_server()
    build = ROOT / "build"
    subprocess.run([sys.executable, "-m", "scripts.package", "build"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    logs = Path(tempfile.mkdtemp(prefix="jobpipe-bench-"))
    try:
        with (logs / "ministack.log").open("wb") as log:
            result = _measure(server, build, log)
    except BaseException:
        print(f"make bench: the emulator's log is kept in {logs / 'ministack.log'}", file=sys.stderr)
        raise
    shutil.rmtree(logs, ignore_errors=True)  # a run that measured leaves nothing in /tmp
    return result


def _measure(server: str, build: Path, log: IO[bytes]) -> dict[str, Any]:
    ceiling = _env_int("BENCH_FUNCTION_CONCURRENCY", LOCAL_FUNCTION_CONCURRENCY)
    api_ceiling = _env_int("BENCH_API_CONCURRENCY", local_api_ceiling(ceiling))
    erp_dedup = _env_bool("BENCH_ERP_RECEIVER_DEDUPLICATES", False)
    parameters = {"ErpReceiverDeduplicates": "true" if erp_dedup else "false"}
    stack = start_stack(build, log, parameters=parameters, ceiling=ceiling, api_ceiling=api_ceiling,
                        warm_up=_env_int("BENCH_WARM", 1) == 1, server=server)
    try:
        burst = {**cold_burst.measure(stack, _env_int("BENCH_COLD_SUBMITS", 30)), **stack.prepared}
        requests = requests_per_job.measure(stack, erp_ledger=not erp_dedup)
        burst_started = now_ms()
        load = throughput.measure(stack, _env_int("BENCH_JOBS", 200),
                                  {"steps": _env_int("BENCH_STEPS", 10), "step_ms": _env_int("BENCH_STEP_MS", 0)})
        load["durations"] = stack.durations(burst_started)
        ids = [j["id"] for j in stack.http.get(f"{stack.api_url}/jobs?limit=100", timeout=30).json()["jobs"]]
        polls = polling.measure(stack, ids, _env_int("BENCH_POLLS", 200))
    finally:
        stop_stack(stack)
    cold = cold_start.measure(code_path(build), _env_int("BENCH_IMPORT_RUNS", 15))
    return {
        "measured_at": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "emulator": "ministack (local)",
                    "emulator_server": server},
        "parameters": parameters,
        "cold_burst": burst, "requests_per_job": requests, "throughput": load, "polling": polls, "cold_start": cold,
    }


def table(result: dict[str, Any]) -> str:
    req, load, polls, cold = (result[k] for k in ("requests_per_job", "throughput", "polling", "cold_start"))
    job = req["job"]
    server = result["machine"].get("emulator_server", "hypercorn")  # runs before it had ministack's own
    lines = [f"Stack parameters: {json.dumps(result.get('parameters', {}))}; the emulator served by {server}", ""]
    lines += cold_burst_lines(result["cold_burst"]) + [f"AWS requests per job: demo.steps {json.dumps(job['payload'])} ({job['status']}, handler ran {job['run_s']} s)",
             f"  {'function / request':<46}{'count':>6}{'floor':>7}  why the floor"]
    lines += [f"  {r['request']:<46}{r['count']:>6}{r['floor']:>7}  {r['why']}" for r in req["rows"]]
    lines += [f"  {'total':<46}{req['total']:>6}{req['floor_total']:>7}",
              f"  Lambda invocations: {req['invocations_total']} " + json.dumps(req["invocations"])]
    lines += [f"  not the job's: {function}'s scheduled pass ran in its window ({n['requests']} requests, "
              f"{n['invocations']} invocations), left out above" for function, n in req.get("scheduled_in_window", {}).items()]
    lines += [""]
    lines += [f"Throughput: {load['jobs']} jobs demo.steps {json.dumps(load['payload'])} from {load['submit_threads']} threads",
              f"  last job ended {load['all_terminal_s']} s after the first submit (seen by a 0.5 s poll at "
              f"{load['all_terminal_observed_s']} s; {load['completed']} completed): {load['jobs_per_s']} jobs/s; "
              f"submit→completed p50 {load['latency_p50_s']} s, p99 {load['latency_p99_s']} s; "
              f"submitting took {load['submit_s']} s ({load.get('submit_throttled_retries', 0)} throttled retries)",
              f"  per job, amortized: AWS requests {json.dumps(load['requests_per_job'])}",
              f"  per job, amortized: Lambda invocations {json.dumps(load['invocations_per_job'])}",
              "  CPU per job: " + ", ".join(f"{k} {v} ms" for k, v in load.get("cpu_ms_per_job", {}).items())
              + " (the emulator is one process: one core at most)",
              "  durations (REPORT lines, ms): " + ", ".join(
                  f"{f} p50 {d['p50_ms']} mean {d['mean_ms']}" for f, d in load.get("durations", {}).items()), ""]
    single, batch = polls["get_job"], polls["status_batch"]
    lines += [f"Polling ({single['requests']} requests each, sequential)",
              f"  GET /jobs/{{id}}             p50 {single['p50_ms']} ms, p99 {single['p99_ms']} ms",
              f"  POST /jobs/status ({batch['ids']} ids) p50 {batch['p50_ms']} ms, p99 {batch['p99_ms']} ms", ""]
    lines += [f"Cold start (median of {cold['runs']} fresh interpreters)",
              f"  import app: {cold['import_app_median_ms']} ms; bare Chalice app: {cold['import_bare_chalice_median_ms']} ms",
              f"  deployment.zip: {cold['zip_mb']} MB"]
    return "\n".join(lines)


def cold_burst_lines(burst: dict[str, Any]) -> list[str]:
    warm = burst.get("warm")
    setup = (f"ceiling {burst.get('ceiling') or 'none'} per function, {burst.get('api_ceiling') or 'none'} for the API, "
             + (f"{warm['functions']} functions warmed in {warm['seconds']} s" if warm else "no warm-up"))
    return [f"Cold burst: {burst['submits']} concurrent submits on the fresh stack ({setup}), "
            f"client timeout {burst['client_timeout_s']:g} s",
            f"  accepted {burst['accepted']}, within the timeout {burst['within_limit']}; latency median "
            f"{burst['median_s']} s, max {burst['max_s']} s; throttled retries {burst['throttled_retries']}",
            f"  stack: {burst['baseline_processes']} processes / {burst['baseline_rss_mb']} MB before, peak "
            f"{burst['peak_processes']} processes / {burst['peak_rss_mb']} MB RSS; all jobs ended in "
            f"{burst['all_terminal_s']} s",
            "  durations in the burst (REPORT lines, ms): " + ", ".join(
                f"{f} p50 {d['p50_ms']} mean {d['mean_ms']}" for f, d in burst.get("durations", {}).items()), ""]


def main() -> None:
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{result['measured_at'].replace(':', '')}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"\nwritten to {path.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
