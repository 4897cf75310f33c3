"""CPU per invocation of the function code, in process: `python -m bench.function_cpu`.

Imports `app` in this process with every AWS client pointed at a local AWS on 127.0.0.1 (moto's
backends behind a small HTTP server, run in a subprocess of its own, so none of its CPU is
counted here; the ERP's webhook receiver answers 200 from the same subprocess), with the local
stack's function environment (tracing off, POWERTOOLS_* from .chalice/config.json, AWS request
counting on as the benchmark deploys it). Each round submits JOBS jobs of `demo.steps
{"steps":10,"step_ms":0}` (the burst's) and then invokes, as Lambda would and timed with
time.process_time (every thread of this process, user and system):

- api: `POST /jobs`, once per job (an API Gateway proxy event through the Chalice app);
- worker: `job_worker` with the round's job messages as one SQS batch;
- publisher: `event_publisher` with the stream records the round's writes left, as one batch;
- erp: `erp_bridge` with the events the bus put on the ERP queue, in SQS batches of 10.

The first round warms the process (clients, imports) and is not reported. Prints, per kind,
the median CPU per invocation, per job, and the log lines written per invocation (log lines
are the emulator's CPU too: it reads and stores every one). Options: --rounds N (5),
--jobs N (10), --profile KIND (cProfile of that kind's timed invocations, top functions by
cumulative and own time), --json (the figures as JSON), --log PATH (keep the log lines there). Not a test: nothing here is timed by
`make test`.

`python -m bench.function_cpu --serve` is the subprocess: it prints one JSON line (endpoint,
queue URLs, webhook URL) and serves until its stdin closes."""
from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Optional

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
REGION = "us-east-1"
SECRET = "function-cpu-bench-secret-0123456789abcdef"
WEBHOOK_SECRET = "function-cpu-bench-webhook-0123456789abcdef"
PAYLOAD = {"steps": 10, "step_ms": 0}
KINDS = ("api", "worker", "publisher", "erp")

# The service a request is for, from its SigV4 scope (and target, for DynamoDB Streams), to
# the AWS host moto's backends answer for.
HOSTS = {"dynamodb": f"dynamodb.{REGION}.amazonaws.com", "sqs": f"sqs.{REGION}.amazonaws.com",
         "events": f"events.{REGION}.amazonaws.com", "s3": f"s3.{REGION}.amazonaws.com"}
STREAMS_HOST = f"streams.dynamodb.{REGION}.amazonaws.com"


# --- the subprocess: moto behind HTTP, and the ERP ------------------------------------------


def _create_table(ddb: Any, logical_id: str, name: str) -> None:
    props = json.loads((ROOT / "infra" / "resources.json").read_text())["Resources"][logical_id]["Properties"]
    args = {k: props[k] for k in ("BillingMode", "AttributeDefinitions", "KeySchema", "GlobalSecondaryIndexes")
            if k in props}
    if "StreamSpecification" in props:
        args["StreamSpecification"] = {"StreamEnabled": True, **props["StreamSpecification"]}
    ddb.create_table(TableName=name, **args)


def _resources() -> dict[str, Any]:
    import boto3

    ddb, sqs, events = boto3.client("dynamodb"), boto3.client("sqs"), boto3.client("events")
    _create_table(ddb, "JobsTable", "jobs")
    _create_table(ddb, "IdempotencyTable", "idempotency")
    _create_table(ddb, "StatsTable", "stats")
    urls = {name: sqs.create_queue(QueueName=name)["QueueUrl"]
            for name in ("jobs-high", "jobs-normal", "jobs-low", "jobs-dlq", "erp-webhook", "erp-webhook-dlq")}
    events.create_event_bus(Name="job-events")
    erp_arn = sqs.get_queue_attributes(QueueUrl=urls["erp-webhook"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    events.put_rule(Name="erp", EventBusName="job-events", EventPattern=json.dumps({"source": ["jobpipe"]}))
    events.put_targets(Rule="erp", EventBusName="job-events", Targets=[{"Id": "erp", "Arn": erp_arn}])
    return urls


def _aws_handler(lock: threading.Lock) -> type:
    from botocore.awsrequest import AWSPreparedRequest
    from botocore.compat import HTTPHeaders
    from moto.core.models import botocore_stubber

    class AwsHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # headers and body are two writes: no delayed ACK between

        def log_message(self, *args: Any) -> None:
            pass

        def _answer(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            scope = (self.headers.get("Authorization") or "").split("Credential=", 1)[-1].split("/")
            service = scope[3] if len(scope) > 3 else ""
            host = STREAMS_HOST if (self.headers.get("X-Amz-Target") or "").startswith("DynamoDBStreams") \
                else HOSTS.get(service, "")
            headers = HTTPHeaders()
            for key, value in self.headers.items():
                headers[key] = value
            headers.replace_header("Host", host) if "Host" in headers else None
            request = AWSPreparedRequest(method=self.command, url=f"https://{host}{self.path}", headers=headers,
                                         body=body, stream_output=False)
            with lock:
                answer = botocore_stubber.process_request(request)
            status, out_headers, out = answer if answer is not None else (404, {}, b"no such service")
            out = out.encode() if isinstance(out, str) else out
            self.send_response(int(status))
            for key, value in (out_headers or {}).items():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "server", "date"):
                    self.send_header(key, str(value))
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _answer

    return AwsHandler


class _ErpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()


def serve() -> None:
    """The subprocess: the resources, one JSON line naming them, then serve until stdin closes."""
    from moto import mock_aws

    os.environ.update({"AWS_DEFAULT_REGION": REGION, "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"})
    os.environ.pop("AWS_ENDPOINT_URL", None)
    with mock_aws():
        urls = _resources()
        aws = ThreadingHTTPServer((HOST, 0), _aws_handler(threading.Lock()))
        erp = ThreadingHTTPServer((HOST, 0), _ErpHandler)
        for server in (aws, erp):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        print(json.dumps({"endpoint": f"http://{HOST}:{aws.server_address[1]}",
                          "webhook": f"http://{HOST}:{erp.server_address[1]}/hook", "urls": urls}), flush=True)
        sys.stdin.read()  # until the parent closes it (or ends)


# --- the measuring process ----------------------------------------------------------------------


class LambdaContext:
    function_name = "bench"
    memory_limit_in_mb = 512
    invoked_function_arn = f"arn:aws:lambda:{REGION}:123456789012:function:bench"

    def __init__(self, timeout_s: float = 900) -> None:
        self._deadline = time.monotonic() + timeout_s
        self.aws_request_id = str(uuid.uuid4())

    def get_remaining_time_in_millis(self) -> int:
        return int((self._deadline - time.monotonic()) * 1000)


def _environment(stub: dict[str, Any]) -> dict[str, str]:
    urls = stub["urls"]
    config = json.loads((ROOT / ".chalice" / "config.json").read_text())["environment_variables"]
    return {
        **config,
        "AWS_ENDPOINT_URL": stub["endpoint"], "AWS_DEFAULT_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench",
        "POWERTOOLS_TRACE_DISABLED": "1",  # as the local stack runs its functions
        "JOBPIPE_TABLE": "jobs", "JOBPIPE_IDEMPOTENCY_TABLE": "idempotency", "JOBPIPE_STATS_TABLE": "stats",
        "JOBPIPE_QUEUE_URL_HIGH": urls["jobs-high"], "JOBPIPE_QUEUE_URL_NORMAL": urls["jobs-normal"],
        "JOBPIPE_QUEUE_URL_LOW": urls["jobs-low"], "JOBPIPE_DLQ_URL": urls["jobs-dlq"],
        "JOBPIPE_ERP_WEBHOOK_DLQ_URL": urls["erp-webhook-dlq"],
        "JOBPIPE_EVENT_BUS": "job-events", "JOBPIPE_DEMO_JOB_TYPES": "true", "JOBPIPE_AUTH_SECRET": SECRET,
        "JOBPIPE_COUNT_AWS_REQUESTS": "true",  # as the benchmark deploys the stack
        "ERP_WEBHOOK_URL": stub["webhook"], "ERP_WEBHOOK_SECRET": WEBHOOK_SECRET,
    }


class Bench:
    def __init__(self, stub: dict[str, Any], log_path: str, profile: Optional[str]) -> None:
        import boto3

        os.environ.update(_environment(stub))
        from app import app  # after the environment: the functions read it as Lambda's would
        from chalicelib.worker import batch

        # moto answers slower than the emulator (a batch of 10 takes over a second of waiting):
        # batch-mates are handed back only after a minute here, so every batch runs whole, as
        # the burst's do.
        batch.BATCH_MATE_WAIT_S = 60.0

        from chalicelib.api.auth import issue_token

        self.app = app
        self.urls = stub["urls"]
        session = boto3.session.Session()
        self.sqs = session.client("sqs")
        self.streams = session.client("dynamodbstreams")
        ddb = session.client("dynamodb")
        self.stream_arn = ddb.describe_table(TableName="jobs")["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"][0]["ShardId"]
        self.iterator = self.streams.get_shard_iterator(
            StreamArn=self.stream_arn, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        self.token = issue_token(SECRET, user="bench", tenant="bench")
        self.log_path = log_path
        self.profile = profile
        self.profiler = cProfile.Profile(time.process_time) if profile else None  # CPU, not waits
        self.cpu: dict[str, list[float]] = {k: [] for k in KINDS}
        self.lines: dict[str, list[int]] = {k: [] for k in KINDS}
        self.wall: dict[str, list[float]] = {k: [] for k in KINDS}  # the local AWS's answers included
        self.jobs = 0

    def _timed(self, kind: str, call: Callable[[], Any], record: bool) -> Any:
        lines_before = self._log_lines()
        profiler = self.profiler if record and kind == self.profile else None
        started, wall = time.process_time(), time.perf_counter()
        if profiler is not None:
            profiler.enable()
        try:
            return call()
        finally:
            if profiler is not None:
                profiler.disable()
            spent = time.process_time() - started
            if record:
                self.cpu[kind].append(spent * 1000)
                self.wall[kind].append((time.perf_counter() - wall) * 1000)
                self.lines[kind].append(self._log_lines() - lines_before)

    def _log_lines(self) -> int:
        sys.stdout.flush()
        with open(self.log_path, "rb") as log:
            return log.read().count(b"\n")

    def _post_job(self) -> dict[str, Any]:
        body = json.dumps({"type": "demo.steps", "payload": PAYLOAD})
        return {
            "resource": "/jobs", "path": "/jobs", "httpMethod": "POST",
            "headers": {"Authorization": f"Bearer {self.token}", "Content-Type": "application/json",
                        "Host": "bench.execute-api.local"},
            "multiValueHeaders": {}, "queryStringParameters": None, "multiValueQueryStringParameters": None,
            "pathParameters": None, "stageVariables": None, "body": body, "isBase64Encoded": False,
            "requestContext": {"resourcePath": "/jobs", "httpMethod": "POST", "path": "/api/jobs",
                               "requestId": str(uuid.uuid4()), "stage": "api",
                               "identity": {"sourceIp": HOST}},
        }

    def _receive(self, url: str, count: int) -> list[dict[str, Any]]:
        messages: list[dict[str, Any]] = []
        deadline = time.monotonic() + 10
        while len(messages) < count and time.monotonic() < deadline:
            messages += self.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                                 MessageAttributeNames=["All"]).get("Messages", [])
        return messages

    @staticmethod
    def _sqs_event(messages: list[dict[str, Any]], queue: str) -> dict[str, Any]:
        return {"Records": [{
            "messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
            "attributes": {"ApproximateReceiveCount": m.get("Attributes", {}).get("ApproximateReceiveCount", "1")},
            "messageAttributes": {name: {"stringValue": a.get("StringValue"), "dataType": a["DataType"]}
                                  for name, a in (m.get("MessageAttributes") or {}).items()},
            "md5OfBody": "", "eventSource": "aws:sqs", "awsRegion": REGION,
            "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:{queue}",
        } for m in messages]}

    def _stream_records(self) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = []
        while True:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page["NextShardIterator"]
            if not page["Records"]:
                return records
            for record in page["Records"]:
                data = dict(record["dynamodb"])
                data["ApproximateCreationDateTime"] = data["ApproximateCreationDateTime"].timestamp()
                records.append({**record, "dynamodb": data, "eventSourceARN": self.stream_arn})

    def round(self, jobs: int, record: bool) -> None:
        for _ in range(jobs):
            answer = self._timed("api", lambda: self.app(self._post_job(), LambdaContext(30)), record)
            assert answer["statusCode"] == 202, answer
        messages = self._receive(self.urls["jobs-normal"], jobs)
        assert len(messages) == jobs, f"{len(messages)} of {jobs} job messages on the queue"
        answer = self._timed("worker", lambda: self.app.handler_map["job_worker"](
            self._sqs_event(messages, "jobs-normal"), LambdaContext()), record)
        assert not answer["batchItemFailures"], answer
        records = self._stream_records()
        self._timed("publisher", lambda: self.app.handler_map["event_publisher"](
            {"Records": records}, LambdaContext(60)), record)
        events = self._receive(self.urls["erp-webhook"], 3 * jobs)  # queued, running, completed
        for at in range(0, len(events), 10):
            batch = self._sqs_event(events[at:at + 10], "erp-webhook")
            answer = self._timed("erp", lambda: self.app.handler_map["erp_bridge"](batch, LambdaContext(60)), record)
            assert not answer["batchItemFailures"], answer
        if record:
            self.jobs += jobs

    def figures(self) -> dict[str, Any]:
        out = {}
        for kind in KINDS:
            cpu = self.cpu[kind]
            out[kind] = {"invocations": len(cpu), "cpu_ms_median": round(statistics.median(cpu), 2),
                         "cpu_ms_per_job": round(sum(cpu) / self.jobs, 2),
                         "log_lines_per_invocation": round(sum(self.lines[kind]) / len(cpu), 2),
                         "wall_ms_median": round(statistics.median(self.wall[kind]), 1)}
        out["jobs"] = self.jobs
        out["cpu_ms_per_job_total"] = round(sum(out[k]["cpu_ms_per_job"] for k in KINDS), 2)
        return out


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.function_cpu", description=__doc__.split("\n")[0])
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=10)
    parser.add_argument("--profile", choices=KINDS)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--profile-out", help="with --profile: write the raw cProfile stats to this file")
    parser.add_argument("--log", help="keep the functions' log lines in this file")
    args = parser.parse_args(argv)
    if args.serve:
        serve()
        return
    stub_process = subprocess.Popen([sys.executable, "-m", "bench.function_cpu", "--serve"], cwd=ROOT,
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    report = sys.__stdout__
    saved = os.dup(1)
    try:
        assert stub_process.stdout is not None
        stub = json.loads(stub_process.stdout.readline())
        # The functions' log lines (stdout, as on Lambda) go to a file, counted per invocation.
        with (open(args.log, "w+b") if args.log else tempfile.NamedTemporaryFile(prefix="function-cpu-", suffix=".log")) as log:
            os.dup2(log.fileno(), 1)
            report = os.fdopen(saved, "w", closefd=False)
            bench = Bench(stub, log.name, args.profile)
            for number in range(args.rounds + 1):
                bench.round(args.jobs, record=number > 0)
            os.dup2(saved, 1)
    finally:
        stub_process.stdin.close() if stub_process.stdin else None
        stub_process.wait(timeout=10)
    figures = bench.figures()
    if args.json:
        print(json.dumps(figures, indent=2), file=report)
    else:
        print(f"{figures['jobs']} jobs of demo.steps {json.dumps(PAYLOAD)}, {args.jobs} a round", file=report)
        print(f"{'function':<10} {'invocations':>11} {'CPU ms/invocation':>18} {'CPU ms/job':>11} "
              f"{'log lines/invocation':>21}", file=report)
        for kind in KINDS:
            f = figures[kind]
            print(f"{kind:<10} {f['invocations']:>11} {f['cpu_ms_median']:>18.2f} {f['cpu_ms_per_job']:>11.2f} "
                  f"{f['log_lines_per_invocation']:>21.1f}", file=report)
        print(f"{'total':<10} {'':>11} {'':>18} {figures['cpu_ms_per_job_total']:>11.2f}", file=report)
    if bench.profiler is not None and args.profile_out:
        bench.profiler.dump_stats(args.profile_out)
    if bench.profiler is not None:
        for order in ("cumulative", "tottime"):
            text = io.StringIO()
            pstats.Stats(bench.profiler, stream=text).strip_dirs().sort_stats(order).print_stats(30)
            print(text.getvalue(), file=report)
    report.flush()


if __name__ == "__main__":
    main()
