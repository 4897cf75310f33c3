"""`make run` as the README gives it (scripts/run_local.py, on a free port): the stack deployed on
the emulator and serving the API, the CLI working with the URL and token it prints, each
function capped as documented, and Ctrl-C stopping everything it started."""
from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import boto3

from scripts.emulator import free_port
from scripts.stack_config import LOCAL_API_CONCURRENCY, LOCAL_FUNCTION_CONCURRENCY

ROOT = Path(__file__).resolve().parents[2]
JOBPIPE = Path(sys.executable).parent / "jobpipe"
READY = "Showing function logs"
# ministack's log format: "%(asctime)s %(levelname)s [%(name)s] %(message)s"
EMULATOR_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\S* (DEBUG|INFO|WARNING|ERROR|CRITICAL) \[")


def _lines(stream, out: "queue.Queue[str]") -> None:
    for line in stream:
        out.put(line)


def _until_ready(proc: subprocess.Popen, lines: "queue.Queue[str]", timeout_s: float) -> str:
    """Everything `make run` printed up to its ready line."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            assert proc.poll() is None, "make run exited:\n" + "".join(seen)
            continue
        seen.append(line)
        if READY in line:
            return "".join(seen)
    raise AssertionError(f"make run was not ready in {timeout_s:g} s:\n" + "".join(seen))


def _answers(port: int) -> bool:
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/_ministack/health", timeout=2)
        return True
    except OSError:
        return False


def _make_run(stack: str) -> "tuple[int, dict[str, str], subprocess.Popen, queue.Queue[str]]":
    """`make run`'s script on a free port (with the environment it got), its output lines read
    into a queue. Its own session: a Ctrl-C sent to it reaches this process alone, as a
    terminal's would reach make."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBPIPE_"))}
    env.update(GATEWAY_PORT=str(port), JOBPIPE_STACK=stack,
               JOBPIPE_AUTH_SECRET="e2e-make-run-auth-secret-0123456789abcdef")
    proc = subprocess.Popen([sys.executable, "-m", "scripts.run_local"], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    lines: "queue.Queue[str]" = queue.Queue()
    threading.Thread(target=_lines, args=(proc.stdout, lines), daemon=True).start()
    return port, env, proc, lines


def test_ctrl_c_while_deploying_exits_130_in_one_line_and_stops_the_emulator():
    port, _, proc, lines = _make_run("jobpipe-interrupted")
    try:
        seen = []
        deadline = time.monotonic() + 120
        while not any(line.startswith("deploying stack") for line in seen):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(seen)
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                pass
        time.sleep(1)  # into the deploy
        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 130
        time.sleep(0.5)
        rest = []
        while not lines.empty():
            rest.append(lines.get())
        # the emulator's own log lines share the terminal, and one it wrote as it was stopped
        # may come after make run's; make run's is one line, the last of its own
        printed = [line for line in rest if line.strip() and not EMULATOR_LINE.match(line)]
        assert printed[-1] == "make run: interrupted before the stack was ready; stopping the emulator\n", rest
        assert [line for line in seen + rest if line.startswith("make run:")] == printed[-1:], rest
        assert "Traceback" not in "".join(seen + rest)
        assert not _answers(port), "the emulator still answers after Ctrl-C"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def test_make_run_serves_the_api_the_cli_uses_caps_every_function_and_stops_on_ctrl_c():
    port, env, proc, lines = _make_run("jobpipe-run")
    try:
        printed = _until_ready(proc, lines, timeout_s=240)
        api_url = re.search(r"^export JOBPIPE_API_URL=(\S+)$", printed, re.M).group(1)
        token = re.search(r"^export JOBPIPE_TOKEN=(\S+)$", printed, re.M).group(1)
        assert api_url.startswith(f"http://127.0.0.1:{port}/")
        assert (f"at most {LOCAL_FUNCTION_CONCURRENCY} processes per function, "
                f"{LOCAL_API_CONCURRENCY} for the API") in printed

        cli_env = {**env, "JOBPIPE_API_URL": api_url, "JOBPIPE_TOKEN": token}
        submitted = subprocess.run([str(JOBPIPE), "submit", "demo.steps", "--payload", '{"steps": 3, "step_ms": 50}',
                                    "--watch", "--timeout", "120", "--json"],
                                   env=cli_env, capture_output=True, text=True, timeout=180)
        assert submitted.returncode == 0, submitted.stderr
        assert json.loads(submitted.stdout)["status"] == "completed"

        session = boto3.session.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        lambdas = session.client("lambda", endpoint_url=f"http://127.0.0.1:{port}")
        reserved = {}
        for function in lambdas.list_functions()["Functions"]:
            name = function["FunctionName"]
            concurrency = lambdas.get_function_concurrency(FunctionName=name)
            reserved[name.split("-")[2]] = concurrency.get("ReservedConcurrentExecutions")
        assert reserved.pop("APIHandler") == LOCAL_API_CONCURRENCY
        assert reserved and set(reserved.values()) == {LOCAL_FUNCTION_CONCURRENCY}, reserved
        # Every table has the TTL the template declares, so the local stack's records expire.
        dynamodb = session.client("dynamodb", endpoint_url=f"http://127.0.0.1:{port}")
        expiry = {re.search(r"(\w+Table)-", name).group(1):
                  dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
                  for name in dynamodb.list_tables()["TableNames"]}
        assert expiry == {"JobsTable": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"},
                          "StatsTable": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"},
                          "IdempotencyTable": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expiration"}}

        # A second `make run` on the same port is refused before it starts or deploys anything.
        second = subprocess.run([sys.executable, "-m", "scripts.run_local"], cwd=ROOT, env=env, text=True,
                                capture_output=True, timeout=60)
        assert second.returncode == 1
        assert second.stderr.strip().splitlines()[-1].startswith(
            f"make run: 127.0.0.1:{port} is already in use (another `make run`?)")
        assert "deploying" not in second.stdout

        os.kill(proc.pid, signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/_ministack/health", timeout=2)
            stopped = False
        except OSError:
            stopped = True
        assert stopped, "the emulator still answers after Ctrl-C"
    finally:
        if proc.poll() is None:  # the emulator's watchdog ends it with this process
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)
