"""What a freshly deployed local stack needs before its first burst: each function's concurrency
ceiling applied, and each function started once (warm), so the first requests find warm
processes instead of each starting its own.

The ceiling is the template's `FunctionConcurrencyCeiling` (ReservedConcurrentExecutions on
every function; the API function takes `ApiConcurrencyCeiling` instead when that is not 0).
ministack 1.5's CloudFormation leaves ReservedConcurrentExecutions out of the
functions it creates, so it is applied here through the Lambda API (PutFunctionConcurrency,
the same value the template declares; on AWS CloudFormation has applied it already). ministack
honours it: an SQS mapping dispatches at most min(MaximumConcurrency, reserved) batches and the
rest wait in the queue; an API request over it is answered 429 at once, which the client
retries (jobpipe_client/transport.py); the stream poller runs one batch at a time anyway."""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import requests

API_FUNCTION = "APIHandler"
WARM_UP = "jobpipe_warm_up"  # chalicelib/invocation.py returns at once for an event holding it


def stack_functions(session: Any, stack: str) -> dict[str, str]:
    """Logical id -> function name, for every function of `stack`."""
    resources = session.client("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources
            if r["ResourceType"] == "AWS::Lambda::Function"}


def function_log_groups(session: Any, stack: str) -> dict[str, str]:
    """Logical id -> the log group the function writes to (its LoggingConfig: a group of the
    stack, infra/resources.json), for every function of `stack`."""
    client = session.client("lambda")
    return {logical: client.get_function_configuration(FunctionName=name)["LoggingConfig"]["LogGroup"]
            for logical, name in stack_functions(session, stack).items()}


def function_ceiling(logical_id: str, ceiling: int, api_ceiling: int = 0) -> int:
    """The ceiling the template gives function `logical_id` (0: none): the API's own when set."""
    return api_ceiling if logical_id == API_FUNCTION and api_ceiling > 0 else ceiling


def apply_concurrency_ceiling(session: Any, functions: dict[str, str], ceiling: int, api_ceiling: int = 0) -> None:
    """ReservedConcurrentExecutions = `ceiling` on every function, `api_ceiling` on the API's
    when it is not 0 (0 for a function: no ceiling, removed)."""
    client = session.client("lambda")
    for logical, name in functions.items():
        reserved = function_ceiling(logical, ceiling, api_ceiling)
        if reserved > 0:
            client.put_function_concurrency(FunctionName=name, ReservedConcurrentExecutions=reserved)
        else:
            client.delete_function_concurrency(FunctionName=name)


def warm_up_event() -> dict[str, Any]:
    """The warm-up event: shaped as a scheduled event, because Chalice parses a schedule's event
    before the handler runs (its queue and stream events take any dict), plus the warm-up key
    the one wrapper every function passes through answers at once. No handler runs: Powertools
    refuses an empty batch, and a failed invocation would make the emulator kill the process."""
    return {"version": "0", "id": str(uuid.uuid4()), "detail-type": "Scheduled Event", "source": "aws.events",
            "account": "000000000000", "time": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": "us-east-1", "resources": [], "detail": {}, WARM_UP: True}


def warm(session: Any, functions: dict[str, str], api_url: str, api_processes: int = 1,
         token: str | None = None) -> dict[str, Any]:
    """Invoke every function once, all at once, and the API through its gateway `api_processes`
    times concurrently (one warm process each): with a `token`, a one-job listing, which also
    imports boto3 and builds the DynamoDB client that the routes build on first use; without,
    /health. Returns the seconds it took and the functions whose warm-up failed (a warning: the
    stack works, their first request is just cold)."""
    client = session.client("lambda")
    started = time.monotonic()

    def invoke(function: str) -> str | None:
        answer = client.invoke(FunctionName=function, Payload=json.dumps(warm_up_event()).encode())
        return answer.get("FunctionError")

    def health(_: int) -> str | None:
        if token:
            response = requests.get(f"{api_url}/jobs?limit=1", headers={"Authorization": f"Bearer {token}"},
                                    timeout=60)
        else:
            response = requests.get(f"{api_url}/health", timeout=60)
        return None if response.status_code == 200 else f"HTTP {response.status_code}"

    others = [name for logical, name in functions.items() if logical != API_FUNCTION]
    with ThreadPoolExecutor(len(others) + api_processes) as pool:
        outcomes = dict(zip(others, pool.map(invoke, others)))
        api = list(pool.map(health, range(api_processes)))
    failed = {name: error for name, error in outcomes.items() if error}
    failed.update({functions.get(API_FUNCTION, API_FUNCTION): e for e in api if e})
    return {"seconds": round(time.monotonic() - started, 2), "functions": len(functions),
            "api_processes": api_processes, "failed": failed}


def prepare(session: Any, stack: str, api_url: str, ceiling: int, warm_up: bool = True,
            token: str | None = None, api_ceiling: int = 0) -> dict[str, Any]:
    """Apply the ceilings, then warm every function (the API up to its ceiling; see `warm`)."""
    functions = stack_functions(session, stack)
    apply_concurrency_ceiling(session, functions, ceiling, api_ceiling)
    api = function_ceiling(API_FUNCTION, ceiling, api_ceiling)
    if not warm_up:
        return {"ceiling": ceiling, "api_ceiling": api, "warm": None}
    return {"ceiling": ceiling, "api_ceiling": api,
            "warm": warm(session, functions, api_url, api_processes=max(1, api), token=token)}

