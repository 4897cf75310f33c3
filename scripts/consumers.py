"""Pause and resume what consumes a queue of a deployed stack, without losing a message: the
consumer's SQS event source mapping is disabled (Lambda stops receiving the queue: its messages
wait there, their receive counts unchanged, so none is moved to the dead-letter queue for the
pause; the invocations already running finish), and enabled again. The endpoint comes from
AWS_ENDPOINT_URL (boto3 reads it), as for scripts.deploy.

Usage: python -m scripts.consumers status|pause|resume [STACK_NAME] [CONSUMER ...]
(STACK_NAME defaults to jobpipe). CONSUMER: high, normal, low (the jobs workers), erp_webhook (the
ERP bridge), cache_invalidation, or all; pause and resume need at least one, status shows every one
by default. Each waits for its mappings to be Disabled (Enabled) and prints, per consumer, one line:
its name, its mapping's state, and its queue's visible, in_flight and delayed messages (in_flight
falls to 0 as the batches that were running end). Exit codes: 0 done; 1 AWS refused or did not
answer, the stack or a consumer's mapping was not found, or a mapping did not reach its state within
the wait; 2 a bad command or consumer; 130 interrupted.
"""
from __future__ import annotations

import sys
import time
from typing import Any, Callable

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from chalicelib.adapters.sqs_operations import queue_depth_at

# A consumer by name -> its function's logical id in the stack.
CONSUMERS = {
    "high": "JobWorkerHigh",
    "normal": "JobWorker",
    "low": "JobWorkerLow",
    "erp_webhook": "ErpBridge",
    "cache_invalidation": "CacheInvalidation",
}
COMMANDS = ("status", "pause", "resume")
USAGE = "python -m scripts.consumers status|pause|resume [STACK_NAME] [CONSUMER ...]"
# A mapping goes Disabling -> Disabled (Enabling -> Enabled) within seconds, at most a minute or so.
STATE_WAIT_S = 120
STATE_POLL_S = 2


class ConsumerError(Exception):
    """What stops a command: the line it prints (exit 1)."""


def sqs_mappings(cloudformation: Any, lambda_: Any, stack: str, name: str) -> list[dict[str, Any]]:
    """The SQS event source mappings of the consumer `name` of `stack`. Raises ConsumerError when
    the stack has no such function or the function no SQS mapping; ClientError, BotoCoreError."""
    try:
        function = cloudformation.describe_stack_resource(
            StackName=stack, LogicalResourceId=CONSUMERS[name])["StackResourceDetail"]["PhysicalResourceId"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") == "ValidationError":  # no such stack, or resource
            raise ConsumerError(f"stack {stack} has no {CONSUMERS[name]} function ({name}): "
                                f"{exc.response['Error'].get('Message', '')}") from exc
        raise
    found, marker = [], None
    while True:
        page = lambda_.list_event_source_mappings(FunctionName=function, **({"Marker": marker} if marker else {}))
        found += [m for m in page.get("EventSourceMappings", []) if ":sqs:" in m.get("EventSourceArn", "")]
        marker = page.get("NextMarker")
        if not marker:
            break
    if not found:
        raise ConsumerError(f"{name}: function {function} has no SQS event source mapping")
    return found


def set_enabled(lambda_: Any, mappings: list[dict[str, Any]], enabled: bool, *, wait_s: float = STATE_WAIT_S,
                sleep: Callable[[float], None] = time.sleep) -> list[dict[str, Any]]:
    """Enable or disable each of `mappings`, then wait up to `wait_s` for each to reach its state
    (Enabled, Disabled); the mappings as they are then. Raises ConsumerError for one that did not."""
    want = "Enabled" if enabled else "Disabled"
    for mapping in mappings:
        lambda_.update_event_source_mapping(UUID=mapping["UUID"], Enabled=enabled)
    deadline = time.monotonic() + wait_s
    done = []
    for mapping in mappings:
        while (now := lambda_.get_event_source_mapping(UUID=mapping["UUID"]))["State"] != want:
            if time.monotonic() >= deadline:
                raise ConsumerError(f"the mapping {mapping['UUID']} is {now['State']}, not yet {want}, "
                                    f"after {wait_s:g} s: run status to see when it is")
            sleep(STATE_POLL_S)
        done.append(now)
    return done


def queue_depth(sqs: Any, queue_arn: str) -> dict[str, int]:
    """The visible, in-flight and delayed messages of the queue `queue_arn` names."""
    _, _, _, _, account, name = queue_arn.split(":", 5)
    return queue_depth_at(sqs, sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"])


def line(name: str, mapping: dict[str, Any], depth: dict[str, int]) -> str:
    return f"{name}\t{mapping['State']}\t" + "\t".join(f"{key}={value}" for key, value in depth.items())


def run(command: str, stack: str, names: list[str], clients: Callable[[str], Any]) -> list[str]:
    """`command` on the consumers `names` of `stack`: one line each (see the module's doc)."""
    cloudformation, lambda_, sqs = clients("cloudformation"), clients("lambda"), clients("sqs")
    lines = []
    for name in names:
        mappings = sqs_mappings(cloudformation, lambda_, stack, name)
        if command != "status":
            mappings = set_enabled(lambda_, mappings, command == "resume")
        lines += [line(name, m, queue_depth(sqs, m["EventSourceArn"])) for m in mappings]
    return lines


def parse(argv: list[str]) -> tuple[str, str, list[str]]:
    """(command, stack, consumers) of `argv`; raises ValueError, its message the line to print."""
    if not argv or argv[0] not in COMMANDS:
        raise ValueError(f"the command is one of {', '.join(COMMANDS)}; usage: {USAGE}")
    command, rest = argv[0], argv[1:]
    stack = "jobpipe"
    if rest and rest[0] not in CONSUMERS and rest[0] != "all":
        stack, rest = rest[0], rest[1:]
    unknown = [name for name in rest if name not in CONSUMERS and name != "all"]
    if unknown:
        raise ValueError(f"{unknown[0]!r} is no consumer: one of {', '.join(CONSUMERS)}, or all")
    if not rest and command != "status":
        raise ValueError(f"{command} needs the consumers to {command} ({', '.join(CONSUMERS)}, or all)")
    names = list(CONSUMERS) if not rest or "all" in rest else list(dict.fromkeys(rest))
    return command, stack, names


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip())
        sys.exit(0)
    try:
        command, stack, names = parse(argv)
    except ValueError as exc:
        print(f"consumers: {exc}", file=sys.stderr)
        sys.exit(2)
    try:
        for shown in run(command, stack, names, boto3.client):
            print(shown)
    except KeyboardInterrupt:
        print(f"consumers: interrupted; a mapping asked to change goes on changing: "
              f"python -m scripts.consumers status {stack} shows where each is", file=sys.stderr)
        sys.exit(130)
    except (ConsumerError, ClientError, BotoCoreError) as exc:
        print(f"consumers: {' '.join(str(exc).split())}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
