"""Least privilege, deployed: each secret in the one function that uses it, and a stack left at
the template's defaults (a second stack, `jobpipe-production`, in the same emulator) runs no
demo job types, each function's log lines in its own group, kept for the stack's retention, and
each priority worker's role free to take messages from its own queue only."""
from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from chalicelib.invocation import LOG_MESSAGE
from scripts.local_stack import function_log_groups
from tests.e2e.conftest import deploy_stack
from tests.support.waiting import eventually

PRODUCTION_STACK = "jobpipe-production"


def function_environments(stack, name: str) -> dict[str, dict[str, str]]:
    """Logical id -> the deployed function's environment variables."""
    cfn, lam = stack.session.client("cloudformation"), stack.session.client("lambda")
    resources = cfn.describe_stack_resources(StackName=name)["StackResources"]
    return {
        r["LogicalResourceId"]: lam.get_function_configuration(FunctionName=r["PhysicalResourceId"])
        .get("Environment", {}).get("Variables", {})
        for r in resources if r["ResourceType"] == "AWS::Lambda::Function"
    }


@pytest.fixture(scope="module")
def production_stack(stack):
    """The template's defaults but for what a deploy must give (auth secret, webhook)."""
    return deploy_stack(PRODUCTION_STACK, stack.session, stack.log, stack.webhook, DemoJobTypes="false")


def test_each_secret_is_deployed_only_to_the_function_that_uses_it(stack):
    environments = function_environments(stack, "jobpipe-e2e")
    assert {"APIHandler", "ErpBridge", "JobWorker", "EventPublisher"} <= set(environments)
    holders = {var: {f for f, env in environments.items() if env.get(var)}
               for var in ("JOBPIPE_AUTH_SECRET", "ERP_WEBHOOK_SECRET")}
    assert holders == {"JOBPIPE_AUTH_SECRET": {"APIHandler"}, "ERP_WEBHOOK_SECRET": {"ErpBridge"}}
    assert environments["APIHandler"]["JOBPIPE_AUTH_SECRET"] == stack.secret


def test_a_stack_at_the_defaults_refuses_demo_job_types(production_stack):
    for job_type in ("demo.chaos", "demo.outputs", "demo.steps"):
        response = production_stack.call("POST", "/jobs", json={"type": job_type, "payload": {}})
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "unknown_job_type"
    listed = production_stack.call("GET", "/job-types").json()["job_types"]
    assert not [t["type"] for t in listed if t["type"].startswith("demo.")]
    assert production_stack.call("GET", "/jobs").json()["jobs"] == []


def test_a_stack_at_the_defaults_throttles_every_route_of_its_api_stage(production_stack):
    """API Gateway's stage throttling, every route and caller together, at the template's
    defaults (ApiThrottleRateLimit, ApiThrottleBurstLimit): deployed on the stage, as AWS
    enforces it (the emulator records it and does not enforce it)."""
    apigateway = production_stack.session.client("apigateway")
    api_id = production_stack.outputs["RestAPIId"]
    stages = {s["stageName"]: s for s in apigateway.get_stages(restApiId=api_id)["item"]}
    stage = stages["api"]  # the one the API's URL names
    assert stage["methodSettings"]["*/*"]["throttlingRateLimit"] == 1000
    assert stage["methodSettings"]["*/*"]["throttlingBurstLimit"] == 2000


def test_the_demo_stack_still_runs_them(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    assert stack.wait_terminal(job["id"])["status"] == "completed"


def test_each_function_logs_to_its_own_group_kept_for_the_stacks_retention(stack):
    job = stack.submit({"type": "demo.steps", "payload": {"steps": 1, "step_ms": 0}})
    assert stack.wait_terminal(job["id"])["status"] == "completed"
    groups = function_log_groups(stack.session, "jobpipe-e2e")
    assert groups["JobWorker"] == "/aws/lambda/jobpipe-e2e/JobWorker"
    assert len(set(groups.values())) == len(groups)
    logs = stack.session.client("logs")
    kept = {g["logGroupName"]: g.get("retentionInDays")
            for g in logs.describe_log_groups(logGroupNamePrefix="/aws/lambda/jobpipe-e2e")["logGroups"]}
    assert {kept.get(group) for group in groups.values()} == {30}
    assert not [name for name in kept if name not in groups.values()], "a function wrote to a group of its own making"
    # the lines are written when the invocation ends, after the job did
    eventually(lambda: [e["message"] for e in logs.filter_log_events(logGroupName=groups["JobWorker"])["events"]],
               lambda lines: any(job["id"] in line for line in lines) and any(LOG_MESSAGE in line for line in lines),
               timeout_s=15, every_s=0.5, what=f"the worker's lines to reach {groups['JobWorker']}")


def test_each_priority_worker_may_take_messages_of_its_own_queue_only(stack):
    """As deployed: each worker's role holds its own policy and the workers' shared managed
    one, and of the three jobs queues only its own is one it may receive from, delete from or
    hide in."""
    cfn, lam, iam = (stack.session.client(s) for s in ("cloudformation", "lambda", "iam"))
    physical = {r["LogicalResourceId"]: r["PhysicalResourceId"]
                for r in cfn.describe_stack_resources(StackName="jobpipe-e2e")["StackResources"]}
    queue_arns = {name: stack.session.client("sqs").get_queue_attributes(
        QueueUrl=physical[name], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        for name in ("JobsQueueHigh", "JobsQueue", "JobsQueueLow")}
    for worker, own in (("JobWorkerHigh", "JobsQueueHigh"), ("JobWorker", "JobsQueue"), ("JobWorkerLow", "JobsQueueLow")):
        role = lam.get_function_configuration(FunctionName=physical[worker])["Role"].rsplit("/", 1)[1]
        (own_name,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
        documents = [iam.get_role_policy(RoleName=role, PolicyName=own_name)["PolicyDocument"]]
        (shared,) = iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        assert shared["PolicyArn"] == physical["JobWorkersPolicy"], (worker, shared)
        version = iam.get_policy(PolicyArn=shared["PolicyArn"])["Policy"]["DefaultVersionId"]
        documents.append(iam.get_policy_version(PolicyArn=shared["PolicyArn"], VersionId=version)["PolicyVersion"]["Document"])
        taking = set()
        for document in documents:
            document = json.loads(unquote(document)) if isinstance(document, str) else document
            for statement in document["Statement"]:
                actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
                resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
                if {"sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility"} & set(actions):
                    taking |= set(resources)
        assert taking == {queue_arns[own]}, (worker, taking)
