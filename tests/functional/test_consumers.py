"""Pausing and resuming a queue's consumer (scripts/consumers.py) on moto: its SQS event source
mapping is disabled and enabled again, its queue's messages left where they are."""
from __future__ import annotations

import io
import json
import zipfile

import boto3
import pytest
from moto import mock_aws

from scripts import consumers


class StackResources:
    """CloudFormation's answer for the stack's functions: their logical ids -> names."""

    def __init__(self, functions: dict[str, str]) -> None:
        self._functions = functions

    def describe_stack_resource(self, StackName, LogicalResourceId):
        return {"StackResourceDetail": {"PhysicalResourceId": self._functions[LogicalResourceId]}}


@pytest.fixture
def stack(monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        sqs, lambda_ = boto3.client("sqs"), boto3.client("lambda")
        role = boto3.client("iam").create_role(RoleName="worker", AssumeRolePolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"},
                                                    "Action": "sts:AssumeRole"}]}))["Role"]["Arn"]
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as archive:
            archive.writestr("app.py", "def handler(event, context):\n    return None\n")
        functions, queues = {}, {}
        for name, logical_id in consumers.CONSUMERS.items():
            functions[logical_id] = f"jobpipe-{logical_id}"
            lambda_.create_function(FunctionName=functions[logical_id], Runtime="python3.11", Role=role,
                                    Handler="app.handler", Code={"ZipFile": code.getvalue()})
            queues[name] = sqs.create_queue(QueueName=f"jobpipe-{name}")["QueueUrl"]
            arn = sqs.get_queue_attributes(QueueUrl=queues[name], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
            lambda_.create_event_source_mapping(EventSourceArn=arn, FunctionName=functions[logical_id], BatchSize=10)
        clients = {"cloudformation": StackResources(functions), "lambda": lambda_, "sqs": sqs}
        yield {"clients": clients.__getitem__, "sqs": sqs, "lambda": lambda_, "queues": queues, "functions": functions}


def _state(stack, name):
    mappings = stack["lambda"].list_event_source_mappings(FunctionName=stack["functions"][consumers.CONSUMERS[name]])
    return [m["State"] for m in mappings["EventSourceMappings"]]


def test_a_paused_consumer_stops_receiving_its_queue_which_keeps_its_messages_until_it_is_resumed(stack):
    for n in range(3):
        stack["sqs"].send_message(QueueUrl=stack["queues"]["normal"], MessageBody=json.dumps({"n": n}))
    assert consumers.run("pause", "jobpipe", ["normal"], stack["clients"]) == [
        "normal\tDisabled\tvisible=3\tin_flight=0\tdelayed=0"]
    assert _state(stack, "normal") == ["Disabled"] and _state(stack, "high") == ["Enabled"]
    assert consumers.run("status", "jobpipe", ["normal", "erp_webhook"], stack["clients"]) == [
        "normal\tDisabled\tvisible=3\tin_flight=0\tdelayed=0", "erp_webhook\tEnabled\tvisible=0\tin_flight=0\tdelayed=0"]
    assert consumers.run("resume", "jobpipe", ["normal"], stack["clients"]) == [
        "normal\tEnabled\tvisible=3\tin_flight=0\tdelayed=0"]
    assert _state(stack, "normal") == ["Enabled"]


def test_a_mapping_that_does_not_reach_its_state_within_the_wait_is_said(stack):
    lambda_ = stack["lambda"]

    class Slow:
        def __getattr__(self, name):
            return getattr(lambda_, name)

        def get_event_source_mapping(self, UUID):
            return {**lambda_.get_event_source_mapping(UUID=UUID), "State": "Disabling"}

    mappings = consumers.sqs_mappings(stack["clients"]("cloudformation"), lambda_, "jobpipe", "low")
    with pytest.raises(consumers.ConsumerError, match="is Disabling, not yet Disabled, after 0 s"):
        consumers.set_enabled(Slow(), mappings, False, wait_s=0, sleep=lambda s: None)


@pytest.mark.parametrize("argv, said", [
    ([], "the command is one of status, pause, resume"),
    (["stop", "normal"], "the command is one of status, pause, resume"),
    (["pause"], "pause needs the consumers to pause"),
    (["pause", "jobpipe"], "pause needs the consumers to pause"),
    (["resume", "jobpipe", "medium"], "'medium' is no consumer: one of high, normal, low, erp_webhook, "
                                      "cache_invalidation, or all"),
])
def test_a_bad_command_or_consumer_is_one_line_and_exit_2(argv, said, capsys):
    with pytest.raises(SystemExit) as ended:
        consumers.main(argv)
    err = capsys.readouterr().err
    assert ended.value.code == 2 and err.count("\n") == 1 and said in err, err


def test_a_stack_that_is_not_there_is_one_line_and_exit_1(monkeypatch, capsys):
    from botocore.exceptions import ClientError

    class NoStack:
        def describe_stack_resource(self, StackName, LogicalResourceId):
            raise ClientError({"Error": {"Code": "ValidationError", "Message": f"Stack '{StackName}' does not exist"}},
                              "DescribeStackResource")

    monkeypatch.setattr(consumers.boto3, "client", lambda service: NoStack() if service == "cloudformation" else None)
    with pytest.raises(SystemExit) as ended:
        consumers.main(["pause", "nostack", "all"])
    err = capsys.readouterr().err
    assert ended.value.code == 1 and err == (
        "consumers: stack nostack has no JobWorkerHigh function (high): Stack 'nostack' does not exist\n"), err


def test_every_consumer_named_is_a_function_of_the_stack_with_an_sqs_mapping():
    """The names the command takes are the stack's consumers of a queue, each by its logical id."""
    from tests.support.infra import packaged_template
    template = packaged_template()["Resources"]
    for logical_id in consumers.CONSUMERS.values():
        events = template[logical_id]["Properties"]["Events"]
        assert [e for e in events.values() if e["Type"] == "SQS"], logical_id
    consuming = {k for k, v in template.items() if v.get("Type") == "AWS::Serverless::Function"
                 and any(e["Type"] == "SQS" for e in v["Properties"].get("Events", {}).values())}
    assert consuming == set(consumers.CONSUMERS.values())


def test_help_is_the_usage(capsys):
    with pytest.raises(SystemExit) as ended:
        consumers.main(["--help"])
    assert ended.value.code == 0 and consumers.USAGE in capsys.readouterr().out


def _runbook() -> str:
    from pathlib import Path
    return (Path(__file__).resolve().parents[2] / "docs" / "operations.md").read_text()


def test_every_consumers_line_of_the_runbook_is_a_command_the_script_takes():
    import re
    lines = re.findall(r"^python -m scripts\.consumers (.+?)(?:\s+#.*)?$", _runbook(), re.M)
    assert len(lines) >= 3, lines
    for shown in lines:
        command, stack, names = consumers.parse(shown.replace("STACK", "jobpipe-prod").split())
        assert stack == "jobpipe-prod" and names, shown


def test_every_aws_cli_call_the_runbook_shows_is_an_operation_with_those_options():
    """`aws <service> <operation> --option ...` in docs/operations.md: each operation and option
    is one the AWS CLI has (its options are the API's parameters, kebab-cased; `--no-x` the
    negation of a boolean `--x`)."""
    import re

    import botocore.session
    session = botocore.session.get_session()
    calls = re.findall(r"`aws ([a-z0-9-]+) ([a-z0-9-]+)((?: [^`]*)?)`", " ".join(_runbook().split()))
    assert len(calls) >= 4, calls
    for service, operation, rest in calls:
        model = session.get_service_model(service)
        name = {model.operation_model(op).name.lower(): op for op in model.operation_names}.get(
            operation.replace("-", ""))
        assert name, f"aws {service} {operation}"
        members = {m.lower() for m in model.operation_model(name).input_shape.members}
        for option in re.findall(r"--([a-z0-9-]+)", rest):
            plain = option[3:] if option.startswith("no-") else option
            assert plain.replace("-", "") in members, f"aws {service} {operation} --{option}"
