"""What serving ministack's app with uvicorn saves the emulator: `python -m bench.emulator_requests`.

Starts an emulator the way every test, `make run` and `make bench` do (`scripts/emulator.py`),
once a round with each server it can be started with (uvicorn, the default, and ministack's own
hypercorn), makes a queue and a table, then sends the requests a job's path is made of from
`--threads` botocore threads: a `SendMessage` of a job-sized body, a `PutItem`, and a
`TransactWriteItems` of a conditional update and a put (a completion and its run record).
Prints, per server, the emulator's own CPU a request (utime + stime of its process, from
/proc: the client's CPU is not counted) and the requests a second. Rounds alternate the
servers, since this machine's speed moves from one minute to the next.
Options: --requests N (1,500, after 300 to warm up), --rounds N (2), --threads N (4), --json.
Not a test: nothing here is timed by `make test`."""
from __future__ import annotations

import argparse
import json
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

from bench.throughput import group_cpu_s
from scripts.emulator import SERVERS, Emulator, free_port

WARM_UP = 300
BODY = json.dumps({"job_id": "j" * 36, "attempt": 1, "tenant": "acme", "pad": "x" * 400})


def measure(server: str, requests: int, threads: int) -> dict[str, Any]:
    """One emulator served by `server`: its CPU ms a request and requests a second."""
    emulator = Emulator(free_port(), log_level="WARNING", server=server).start()
    try:
        session = boto3.Session(aws_access_key_id="test", aws_secret_access_key="test", region_name="us-east-1")
        config = Config(max_pool_connections=threads)
        sqs = session.client("sqs", endpoint_url=emulator.endpoint, config=config)
        dynamodb = session.client("dynamodb", endpoint_url=emulator.endpoint, config=config)
        queue = sqs.create_queue(QueueName="bench-jobs")["QueueUrl"]
        dynamodb.create_table(TableName="bench-jobs", KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
                              AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
                              BillingMode="PAY_PER_REQUEST")

        def three(i: int) -> None:  # a job's message, its record, its completion with its run record
            sqs.send_message(QueueUrl=queue, MessageBody=BODY)
            dynamodb.put_item(TableName="bench-jobs", Item={"pk": {"S": f"JOB#{i}"}, "v": {"S": "x" * 300}})
            dynamodb.transact_write_items(TransactItems=[
                {"Update": {"TableName": "bench-jobs", "Key": {"pk": {"S": f"JOB#{i}"}},
                            "UpdateExpression": "SET s = :s", "ConditionExpression": "attribute_exists(pk)",
                            "ExpressionAttributeValues": {":s": {"S": "completed"}}}},
                {"Put": {"TableName": "bench-jobs", "Item": {"pk": {"S": f"RUN#{i}"}, "v": {"S": "y" * 200}}}}])

        measured = range(WARM_UP // 3, (WARM_UP + requests) // 3)
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(three, range(WARM_UP // 3)))
            assert emulator.process is not None
            leader = emulator.process.pid

            def cpu_s() -> float:  # the emulator's own, not its function processes' (none start here)
                return group_cpu_s(leader, leader)["emulator"]

            cpu, started = cpu_s(), time.monotonic()
            list(pool.map(three, measured))
            cpu, wall = cpu_s() - cpu, time.monotonic() - started
        sent = 3 * len(measured)
        return {"cpu_ms_per_request": round(1000 * cpu / sent, 3), "requests_per_s": round(sent / wall)}
    finally:
        emulator.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    runs: dict[str, list[dict[str, Any]]] = {server: [] for server in SERVERS}
    for _ in range(args.rounds):
        for server in SERVERS:
            runs[server].append(measure(server, args.requests, args.threads))
    if args.json:
        print(json.dumps(runs))
        return
    for server, measured in runs.items():
        cpu = [m["cpu_ms_per_request"] for m in measured]
        rate = [m["requests_per_s"] for m in measured]
        print(f"{server:10} emulator CPU a request: median {statistics.median(cpu):.3f} ms "
              f"({min(cpu):.3f}-{max(cpu):.3f}); {statistics.median(rate):.0f} requests/s")


if __name__ == "__main__":
    main()
