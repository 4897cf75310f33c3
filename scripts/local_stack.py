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
retries (jobpipe_client/transport.py); the stream poller runs one batch at a time anyway.

The API's gateway responses (`route_not_found`, `gateway_refused`) are declared on the API
(SAM's GatewayResponses), so AWS imports them with its body into every deployment; ministack's
import leaves that part of the body out, so `apply_gateway_responses` puts them through the API
Gateway API and deploys the stage again (scripts/deploy.py, after each deploy to an emulator).
Its tables come without the TTL the template declares (TimeToLiveSpecification), so no record
would ever expire: a finished job, a stream batch's once-only marker, an idempotency key, a
delivery record. `apply_time_to_live` turns it on through the DynamoDB API (after each deploy
to an emulator too), and ministack's reaper then deletes expired items once a minute, as AWS's
TTL does within days."""
from __future__ import annotations

import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import requests

API_FUNCTION = "APIHandler"
# SAM's GatewayResponses parameter groups, as API Gateway names their parameters
RESPONSE_PARAMETER_KINDS = {"Headers": "header", "Paths": "path", "QueryStrings": "querystring"}
WARM_UP = "jobpipe_warm_up"  # chalicelib/invocation.py returns at once for an event holding it


def stack_resources(session: Any, stack: str, resource_type: str) -> dict[str, str]:
    """Logical id -> physical name, for every resource of `stack` of `resource_type`."""
    resources = session.client("cloudformation").describe_stack_resources(StackName=stack)["StackResources"]
    return {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources if r["ResourceType"] == resource_type}


def stack_functions(session: Any, stack: str) -> dict[str, str]:
    """Logical id -> function name, for every function of `stack`."""
    return stack_resources(session, stack, "AWS::Lambda::Function")


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


def _gateway_response_arguments(response_type: str, declared: dict[str, Any]) -> dict[str, Any]:
    """SAM's GatewayResponses entry as PutGatewayResponse takes it (its headers prefixed)."""
    arguments: dict[str, Any] = {"responseType": response_type}
    if "StatusCode" in declared:
        arguments["statusCode"] = str(declared["StatusCode"])
    parameters = {f"gatewayresponse.{RESPONSE_PARAMETER_KINDS[kind]}.{name}": value
                  for kind, values in (declared.get("ResponseParameters") or {}).items()
                  for name, value in values.items()}
    if parameters:
        arguments["responseParameters"] = parameters
    if declared.get("ResponseTemplates"):
        arguments["responseTemplates"] = dict(declared["ResponseTemplates"])
    return arguments


def apply_gateway_responses(apigateway: Any, rest_api_id: str, template: dict[str, Any]) -> bool:
    """Put the gateway responses the template's API declares that the deployed API does not
    answer with, then deploy its stage again (a gateway response reaches a stage only with a
    deployment). True when something was put; on AWS, which imports them with the API's body,
    nothing is."""
    api = template.get("Resources", {}).get("RestAPI", {}).get("Properties", {})
    declared = api.get("GatewayResponses") or {}
    if not declared:
        return False
    current = {item["responseType"]: item
               for item in apigateway.get_gateway_responses(restApiId=rest_api_id, limit=500)["items"]}
    wanted = [_gateway_response_arguments(kind, response) for kind, response in declared.items()]
    missing = [arguments for arguments in wanted
               if current.get(arguments["responseType"], {}).get("defaultResponse", True)
               or any(current[arguments["responseType"]].get(k) != v for k, v in arguments.items())]
    if not missing:
        return False
    for arguments in missing:
        apigateway.put_gateway_response(restApiId=rest_api_id, **arguments)
    apigateway.create_deployment(restApiId=rest_api_id, stageName=api.get("StageName", "api"),
                                 description="gateway responses the emulator's body import left out")
    return True


def apply_time_to_live(dynamodb: Any, tables: dict[str, str], template: dict[str, Any]) -> list[str]:
    """Turn on the TTL each table of the template declares (its TimeToLiveSpecification) where
    the deployed table (`tables`: logical id -> name) does not have it on that attribute. Returns
    the names of the tables it turned it on for: on AWS, where CloudFormation applied it, none."""
    turned_on = []
    for logical, resource in template.get("Resources", {}).items():
        declared = resource.get("Properties", {}).get("TimeToLiveSpecification") or {}
        if resource.get("Type") != "AWS::DynamoDB::Table" or declared.get("Enabled") is not True:
            continue
        name = tables[logical]
        current = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if current.get("TimeToLiveStatus") in ("ENABLED", "ENABLING") \
                and current.get("AttributeName") == declared["AttributeName"]:
            continue
        dynamodb.update_time_to_live(TableName=name, TimeToLiveSpecification={
            "Enabled": True, "AttributeName": declared["AttributeName"]})
        turned_on.append(name)
    return turned_on


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

