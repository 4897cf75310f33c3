"""An emulator ends with the process that started it, however that process ends: here it is
SIGKILLed (no teardown runs, like pytest-timeout's os._exit), with a function process up. And
it leaves nothing on disk: the function's unpacked code goes with it."""
import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import boto3
import pytest

from scripts.emulator import SERVERS, Emulator, free_port, scratch_parent

ROOT = Path(__file__).resolve().parents[2]

# Starts an emulator, invokes a function once (ministack keeps its process warm), reports the
# emulator's process group, then waits to be killed.
STARTER = r"""
import io, json, time, zipfile
import boto3
from scripts.emulator import Emulator, free_port

emulator = Emulator(free_port()).start()
client = boto3.client("lambda", endpoint_url=emulator.endpoint, region_name="us-east-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
code = io.BytesIO()
with zipfile.ZipFile(code, "w") as archive:
    archive.writestr("index.py", "def handler(event, context):\n    return {'ok': True}\n")
client.create_function(FunctionName="probe", Runtime="python3.11", Handler="index.handler",
                       Role="arn:aws:iam::000000000000:role/probe", Code={"ZipFile": code.getvalue()})
client.get_waiter("function_active_v2").wait(FunctionName="probe")
assert json.loads(client.invoke(FunctionName="probe", Payload=b"{}")["Payload"].read()) == {"ok": True}
print(json.dumps({"pgid": emulator.process_group, "scratch": emulator.scratch}), flush=True)
time.sleep(600)
"""


def live_members(pgid: int) -> list[int]:
    """Processes of the group that are not zombies (a zombie holds nothing but its pid)."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        state, _ppid, group = stat.rsplit(")", 1)[1].split()[:3]
        if int(group) == pgid and state != "Z":
            members.append(int(entry))
    return members


def read_line(process: subprocess.Popen, timeout_s: float) -> str:
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout_s):
            raise AssertionError(f"the starter did not report within {timeout_s:g} s")
    return process.stdout.readline()


def test_the_emulator_and_its_function_processes_die_when_their_starter_is_killed():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "JOBPIPE_"))}
    starter = subprocess.Popen([sys.executable, "-c", STARTER], cwd=ROOT, env=env, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    pgid = None
    try:
        line = read_line(starter, 120)
        assert line, starter.stderr.read()
        pgid, scratch = json.loads(line)["pgid"], Path(json.loads(line)["scratch"])
        assert len(live_members(pgid)) >= 2, "ministack and the function's warm process"
        assert any(p.name.startswith("ministack-lambda-probe") for p in scratch.iterdir()), \
            "the warm process's code is unpacked in the emulator's own temporary directory"
        assert scratch.parent == Path(scratch_parent() or tempfile.gettempdir()), \
            "memory-backed where the machine offers it"
        starter.send_signal(signal.SIGKILL)
        starter.wait(timeout=10)
        deadline = time.monotonic() + 10
        while live_members(pgid) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert live_members(pgid) == []
        while scratch.exists() and time.monotonic() < deadline + 5:
            time.sleep(0.2)
        assert not scratch.exists(), sorted(p.name for p in scratch.iterdir())
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.wait()
        if pgid is not None and live_members(pgid):  # never leak the group, even when failing
            os.killpg(pgid, signal.SIGKILL)


@pytest.mark.parametrize("server", SERVERS)
def test_each_server_serves_the_emulator_and_a_stop_leaves_nothing(server):
    """uvicorn serves every test, `make run` and `make bench`; ministack's own hypercorn is kept
    for `python -m bench.emulator_requests` to compare with. Either answers botocore (a body
    larger than one read of the socket) and ends, with its scratch directory, on `stop()` within
    its graceful shutdown. (That ministack's lifespan runs under uvicorn, its event-source
    poller and schedules, the rest of the e2e tier shows: every job there is delivered by it.)"""
    emulator = Emulator(free_port(), server=server).start()
    try:
        pgid, scratch = emulator.process_group, Path(emulator.scratch)
        sqs = boto3.client("sqs", endpoint_url=emulator.endpoint, region_name="us-east-1",
                           aws_access_key_id="test", aws_secret_access_key="test")
        queue = sqs.create_queue(QueueName="probe")["QueueUrl"]
        sqs.send_message(QueueUrl=queue, MessageBody="x" * 70_000)  # a body larger than one read
        (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=1)["Messages"]
        assert message["Body"] == "x" * 70_000
        with urllib.request.urlopen(f"{emulator.endpoint}/_ministack/health", timeout=5) as answer:
            assert answer.status == 200
    finally:
        started = time.monotonic()
        emulator.stop()
    assert time.monotonic() - started < 10, "stopped within its graceful shutdown, not killed after 10 s"
    assert live_members(pgid) == [] and not scratch.exists()

