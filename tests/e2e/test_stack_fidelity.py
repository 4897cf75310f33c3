"""The stack the emulator runs is the template's: every function's runtime, handler, timeout
and memory, every event source mapping's settings, every queue's attributes, every rule's
pattern, schedule and targets, and every table's TTL as the template declares them, references
resolved. The local suites' timings, retries and redrives are then the ones AWS would give, and
an emulator that leaves a property out (its CloudFormation left out the tables' TTL and the
functions' reserved concurrency: scripts/local_stack.py puts them back) fails here by name, not
in a puzzling test far away. Not compared: the bucket's lifecycle rules, which ministack's
CloudFormation leaves out too, and by which its S3 would expire nothing anyway (the local
stack's scratch objects go with the cleanup_temp_files task, as they may on AWS)."""
from __future__ import annotations

import json
import re
from typing import Any

from tests.e2e.conftest import BUILD

# Properties compared as they are set, or as the emulator's API reports them.
MAPPING_KEYS = ("BatchSize", "MaximumBatchingWindowInSeconds", "FunctionResponseTypes", "ScalingConfig",
                "StartingPosition", "BisectBatchOnFunctionError", "MaximumRetryAttempts",
                "MaximumRecordAgeInSeconds", "DestinationConfig", "FilterCriteria")
FUNCTION_KEYS = ("Runtime", "Handler", "Timeout", "MemorySize", "Architectures")
TARGET_KEYS = ("Arn", "RetryPolicy", "DeadLetterConfig", "InputPath", "InputTransformer", "Input")


class Unresolved(Exception):
    """A value behind an intrinsic function this comparison does not evaluate."""


class DeployedStack:
    def __init__(self, session: Any, name: str) -> None:
        self.session = session
        cfn = session.client("cloudformation")
        self.template = json.loads((BUILD / "sam.json").read_text())
        self.resources = {r["LogicalResourceId"]: r for r in
                          cfn.describe_stack_resources(StackName=name)["StackResources"]}
        declared = self.template.get("Parameters", {})
        given = {p["ParameterKey"]: p["ParameterValue"]
                 for p in cfn.describe_stacks(StackName=name)["Stacks"][0].get("Parameters", [])}
        self.parameters = {k: str(given.get(k, v.get("Default", ""))) for k, v in declared.items()}

    def physical(self, logical: str) -> str:
        return self.resources[logical]["PhysicalResourceId"]

    def attribute(self, logical: str, name: str) -> str:
        kind = self.template["Resources"][logical]["Type"]
        if kind == "AWS::DynamoDB::Table" and name == "StreamArn":
            return self.session.client("dynamodb").describe_table(
                TableName=self.physical(logical))["Table"]["LatestStreamArn"]
        if name != "Arn":
            raise Unresolved(f"the {name} of a {kind}")
        if kind == "AWS::SQS::Queue":
            return self.session.client("sqs").get_queue_attributes(
                QueueUrl=self.physical(logical), AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        if kind == "AWS::Serverless::Function":
            return self.session.client("lambda").get_function_configuration(
                FunctionName=self.physical(logical))["FunctionArn"]
        raise Unresolved(f"the Arn of a {kind}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if set(value) == {"Ref"}:
            name = value["Ref"]
            return self.parameters[name] if name in self.parameters else self.physical(name)
        if set(value) == {"Fn::GetAtt"}:
            return self.attribute(*value["Fn::GetAtt"])
        whole = re.fullmatch(r"\$\{([A-Za-z0-9]+)(?:\.([A-Za-z]+))?\}", str(value.get("Fn::Sub")))
        if set(value) == {"Fn::Sub"} and whole:  # "${Name}" or "${Resource.Attribute}" alone
            name, attribute = whole.groups()
            return self.attribute(name, attribute) if attribute else self.resolve({"Ref": name})
        if any(key.startswith("Fn::") for key in value):
            raise Unresolved(next(iter(value)))
        return {k: self.resolve(v) for k, v in value.items()}

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        """The template's resources of `kind` that the stack made (a condition may leave one out)."""
        return {logical: resource.get("Properties", {}) for logical, resource in self.template["Resources"].items()
                if resource["Type"] == kind and logical in self.resources}


def same(declared: Any, deployed: Any) -> bool:
    """Equal once CloudFormation's strings are read as the API's numbers and booleans."""
    if isinstance(declared, dict) and isinstance(deployed, dict):
        return declared.keys() == deployed.keys() and all(same(v, deployed[k]) for k, v in declared.items())
    if isinstance(declared, list) and isinstance(deployed, list):
        return len(declared) == len(deployed) and all(same(a, b) for a, b in zip(declared, deployed))
    return str(declared).lower() == str(deployed).lower()


class Comparison:
    def __init__(self) -> None:
        self.compared: list[str] = []
        self.differences: list[str] = []
        self.unresolved: list[str] = []

    def check(self, where: str, declared: Any, deployed: Any) -> None:
        self.compared.append(where)
        if not same(declared, deployed):
            self.differences.append(f"{where}: declared {declared!r}, deployed {deployed!r}")

    def check_keys(self, stack: DeployedStack, where: str, keys: tuple[str, ...], declared: dict[str, Any],
                   deployed: dict[str, Any]) -> None:
        """Each of `keys` the template declares, resolved, against the same key deployed."""
        for key in keys:
            if key in declared:
                self.check(f"{where}.{key}", stack.resolve(declared[key]), deployed.get(key))


def compare_functions(stack: DeployedStack, seen: Comparison) -> None:
    lam = stack.session.client("lambda")
    for logical, properties in stack.of_type("AWS::Serverless::Function").items():
        configuration = lam.get_function_configuration(FunctionName=stack.physical(logical))
        seen.check_keys(stack, logical, FUNCTION_KEYS, properties, configuration)


def compare_mappings(stack: DeployedStack, seen: Comparison) -> None:
    lam = stack.session.client("lambda")
    for logical, properties in stack.of_type("AWS::Serverless::Function").items():
        mappings = lam.list_event_source_mappings(FunctionName=stack.physical(logical))["EventSourceMappings"]
        by_source = {m["EventSourceArn"]: m for m in mappings}
        for event, spec in properties.get("Events", {}).items():
            if spec["Type"] not in ("SQS", "DynamoDB"):
                continue
            declared = spec["Properties"]
            mapping = by_source.get(stack.resolve(declared.get("Queue") or declared.get("Stream")))
            if mapping is None:
                seen.check(f"{logical}.{event}", "a mapping", None)
                continue
            for key in MAPPING_KEYS:
                if key not in declared:
                    continue
                wanted = stack.resolve(declared[key])
                if key == "DestinationConfig":  # SAM's `Type` names the destination's kind only
                    wanted = {k: {kk: vv for kk, vv in v.items() if kk != "Type"} for k, v in wanted.items()}
                seen.check(f"{logical}.{event}.{key}", wanted, mapping.get(key))


def compare_queues(stack: DeployedStack, seen: Comparison) -> None:
    sqs = stack.session.client("sqs")
    for logical, properties in stack.of_type("AWS::SQS::Queue").items():
        attributes = sqs.get_queue_attributes(QueueUrl=stack.physical(logical), AttributeNames=["All"])["Attributes"]
        for key, value in properties.items():
            if key in ("Tags", "QueueName"):
                continue
            try:
                wanted = stack.resolve(value)
            except Unresolved as exc:
                seen.unresolved.append(f"{logical}.{key} ({exc})")
                continue
            deployed = attributes.get(key)
            if isinstance(wanted, dict) and deployed is not None:
                deployed = json.loads(deployed)
            seen.check(f"{logical}.{key}", wanted, deployed)


def compare_rules(stack: DeployedStack, seen: Comparison) -> None:
    events = stack.session.client("events")
    for logical, properties in stack.of_type("AWS::Events::Rule").items():
        bus = stack.resolve(properties.get("EventBusName", "default"))
        name = stack.physical(logical).split("|")[-1]
        rule = events.describe_rule(Name=name, EventBusName=bus)
        if "EventPattern" in properties:
            seen.check(f"{logical}.EventPattern", stack.resolve(properties["EventPattern"]),
                       json.loads(rule.get("EventPattern", "null")))
        seen.check_keys(stack, logical, ("ScheduleExpression", "State"), properties, rule)
        targets = {t["Id"]: t for t in events.list_targets_by_rule(Rule=name, EventBusName=bus)["Targets"]}
        for target in properties.get("Targets", []):
            seen.check_keys(stack, f"{logical}.{target['Id']}", TARGET_KEYS, target, targets.get(target["Id"], {}))


def compare_tables(stack: DeployedStack, seen: Comparison) -> None:
    dynamodb = stack.session.client("dynamodb")
    for logical, properties in stack.of_type("AWS::DynamoDB::Table").items():
        ttl = properties.get("TimeToLiveSpecification")
        if ttl:
            deployed = dynamodb.describe_time_to_live(TableName=stack.physical(logical))["TimeToLiveDescription"]
            seen.check(f"{logical}.TimeToLiveSpecification",
                       {"TimeToLiveStatus": "ENABLED" if ttl["Enabled"] else "DISABLED",
                        "AttributeName": ttl["AttributeName"]}, deployed)


def test_the_deployed_stack_is_the_template(stack):
    deployed = DeployedStack(stack.session, "jobpipe-e2e")
    seen = Comparison()
    for compare in (compare_functions, compare_mappings, compare_queues, compare_rules, compare_tables):
        compare(deployed, seen)
    assert not seen.differences, "\n".join(seen.differences)
    assert not seen.unresolved, seen.unresolved
    # Every kind was compared: a template whose properties moved would not pass by comparing nothing.
    kinds = {where.split(".")[0] for where in seen.compared}
    assert {"JobWorker", "EventPublisher", "JobsQueue", "JobsTable", "HealthCheckRule"} <= kinds, sorted(kinds)
    assert len(seen.compared) >= 100, len(seen.compared)
