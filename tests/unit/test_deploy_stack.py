"""The deploy script's CloudFormation side (scripts/deploy.py) against a CloudFormation that
behaves as AWS documents it: a re-run after a deploy that failed or stopped half-way recovers,
an update keeps the parameters it is not given, a deploy that changes nothing succeeds, and a
failure is one line naming this deploy's failed resources."""
from __future__ import annotations

import json
import itertools
import re
import zipfile
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError, WaiterError

from chalicelib.composition import RULES_SOURCE
from chalicelib.subscribers.cache import RULES_FILE
from scripts import deploy as deploy_script
from scripts import package as package_script
from scripts.deploy import DeployError, deploy
from scripts.stack_config import SECRET_MAX_CHARS, SECRET_MIN_CHARS
from tests.unit.test_local_stack import API_TEMPLATE, FakeApiGateway

ACCOUNT = "123456789012"
SECRET = "s" * 40
# The parameters DescribeStacks shows as **** whatever their value (NoEcho).
NO_ECHO = ("AuthSecret", "ErpWebhookSecret")
TEMPLATE = {
    "Parameters": {
        "AuthSecret": {"Type": "String", "NoEcho": True},
        "ErpWebhookUrl": {"Type": "String", "Default": ""},
        "RetentionDays": {"Type": "Number", "Default": 7},
    },
    "Resources": {
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {"CodeUri": "./deployment.zip"}},
        "JobsTable": {"Type": "AWS::DynamoDB::Table",
                      "Properties": {"TimeToLiveSpecification": {"AttributeName": "expires_at", "Enabled": True}}},
    },
}


def client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message}}, operation)


class FakeS3:
    meta = type("Meta", (), {"endpoint_url": "http://127.0.0.1:4566"})()

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}
        self.bucket = False

    def head_bucket(self, **kwargs):
        if not self.bucket:
            raise client_error("404", "Not Found", "HeadBucket")

    def create_bucket(self, **kwargs):
        self.bucket = True

    def put_object(self, Bucket, Key, Body, **kwargs):
        self.objects[Key] = Body

    def head_object(self, Bucket, Key, **kwargs):
        assert Key in self.objects


class FakeWaiter:
    def __init__(self, name: str, done) -> None:
        self.name, self.done = name, done

    def wait(self, **kwargs):
        ok, state = self.done(**{k: v for k, v in kwargs.items() if k != "WaiterConfig"})
        if not ok:
            raise WaiterError(self.name, "Waiter encountered a terminal failure state", {"Status": state})


class FakeEventPages:
    def __init__(self, cfn: "FakeCloudFormation") -> None:
        self.cfn = cfn

    def paginate(self, StackName):
        events = self.cfn.describe_stack_events(StackName=StackName)["StackEvents"]
        for start in range(0, len(events), 3):  # small pages: the walk must cross them
            yield {"StackEvents": events[start:start + 3]}


class FakeCloudFormation:
    """One stack's CloudFormation: change sets as AWS makes them (no-change sets FAILED, updates
    refused in ROLLBACK_COMPLETE and REVIEW_IN_PROGRESS, parameters with no default required,
    unlisted parameters back to their defaults unless UsePreviousValue), events newest first."""

    exceptions = type("Exceptions", (), {"ClientError": ClientError})

    def __init__(self, s3: FakeS3) -> None:
        self.s3 = s3  # where the templates it deploys are uploaded
        self.stack: dict[str, Any] | None = None
        self.events: list[dict[str, Any]] = []
        self.change_sets: dict[str, dict[str, Any]] = {}
        self.fail_next: list[tuple[str, str]] = []  # (resource, reason) the next execution fails on
        self.ids = itertools.count(1)
        self.calls: list[str] = []

    def event(self, logical: str, status: str, reason: str = "", kind: str = "AWS::DynamoDB::Table") -> None:
        self.events.insert(0, {"EventId": f"e{next(self.ids)}", "LogicalResourceId": logical,
                               "ResourceType": kind, "ResourceStatus": status, "ResourceStatusReason": reason})

    def stack_event(self, status: str, reason: str = "") -> None:
        self.event("jobpipe", status, reason, kind="AWS::CloudFormation::Stack")

    def describe_stacks(self, StackName):
        self.calls.append("describe_stacks")
        if self.stack is None:
            raise client_error("ValidationError", f"Stack with id {StackName} does not exist", "DescribeStacks")
        return {"Stacks": [{"StackName": StackName, "StackStatus": self.stack["status"],
                            "Parameters": [{"ParameterKey": k, "ParameterValue": "****" if k in NO_ECHO else v}
                                           for k, v in self.stack["parameters"].items()],
                            "Outputs": [{"OutputKey": "RestAPIId", "OutputValue": "abc123"},
                                        {"OutputKey": "EndpointURL", "OutputValue": "https://abc123.example/api/"}]}]}

    def describe_stack_resources(self, StackName):
        """The resources of the template the stack was last deployed with (an object of `s3`)."""
        template = json.loads(self.s3.objects[self.stack["template"].split("/", 4)[4]])
        return {"StackResources": [
            {"LogicalResourceId": logical, "PhysicalResourceId": f"{StackName}-{logical}-1", "ResourceType": r["Type"]}
            for logical, r in template["Resources"].items()]}

    def describe_stack_events(self, StackName):
        return {"StackEvents": list(self.events)}

    def get_paginator(self, name):
        assert name == "describe_stack_events"
        return FakeEventPages(self)

    def delete_stack(self, StackName):
        self.calls.append("delete_stack")
        self.stack_event("DELETE_COMPLETE")
        self.stack, self.events = None, []

    def create_change_set(self, StackName, ChangeSetName, ChangeSetType, TemplateURL, Parameters, Capabilities):
        self.calls.append(f"create_change_set {ChangeSetType}")
        status = self.stack["status"] if self.stack else None
        if ChangeSetType == "CREATE" and status not in (None, "REVIEW_IN_PROGRESS"):
            raise client_error("AlreadyExistsException", f"Stack [{StackName}] already exists", "CreateChangeSet")
        if ChangeSetType == "UPDATE" and status in (None, "ROLLBACK_COMPLETE", "REVIEW_IN_PROGRESS"):
            raise client_error("ValidationError", f"Stack:{StackName} is in {status} state and can not be updated.",
                               "CreateChangeSet")
        previous = self.stack["parameters"] if self.stack else {}
        resolved = {k: str(d["Default"]) for k, d in TEMPLATE["Parameters"].items() if "Default" in d}
        for p in Parameters:
            if p.get("UsePreviousValue"):
                resolved[p["ParameterKey"]] = previous[p["ParameterKey"]]
            else:
                resolved[p["ParameterKey"]] = p["ParameterValue"]
        missing = [k for k in TEMPLATE["Parameters"] if k not in resolved]
        if missing:
            raise client_error("ValidationError", f"Parameters: {missing} must have values", "CreateChangeSet")
        if self.stack is None:
            self.stack = {"status": "REVIEW_IN_PROGRESS", "parameters": {}, "template": None}
            self.stack_event("REVIEW_IN_PROGRESS")
        unchanged = ChangeSetType == "UPDATE" and resolved == previous and TemplateURL == self.stack["template"]
        self.change_sets[ChangeSetName] = {
            "Status": "FAILED" if unchanged else "CREATE_COMPLETE", "Type": ChangeSetType,
            "StatusReason": ("The submitted information didn't contain changes. Submit different information "
                             "to create a change set.") if unchanged else "",
            "parameters": resolved, "template": TemplateURL}

    def describe_change_set(self, StackName, ChangeSetName):
        change_set = self.change_sets[ChangeSetName]
        return {"Status": change_set["Status"], "StatusReason": change_set["StatusReason"]}

    def delete_change_set(self, StackName, ChangeSetName):
        self.calls.append("delete_change_set")
        del self.change_sets[ChangeSetName]

    def execute_change_set(self, StackName, ChangeSetName):
        self.calls.append("execute_change_set")
        change_set = self.change_sets.pop(ChangeSetName)
        create = change_set["Type"] == "CREATE"
        self.stack_event("CREATE_IN_PROGRESS" if create else "UPDATE_IN_PROGRESS", "User Initiated")
        if self.fail_next:
            for logical, reason in self.fail_next:
                self.event(logical, "CREATE_FAILED", reason)
            self.event("StatsTable", "CREATE_FAILED", "Resource creation cancelled")
            self.stack_event("ROLLBACK_IN_PROGRESS", "The following resource(s) failed to create: [...]")
            self.fail_next = []
            self.stack["status"] = "ROLLBACK_COMPLETE" if create else "UPDATE_ROLLBACK_COMPLETE"
            self.stack_event(self.stack["status"])
            return
        self.stack.update(status="CREATE_COMPLETE" if create else "UPDATE_COMPLETE",
                          parameters=change_set["parameters"], template=change_set["template"])
        self.stack_event(self.stack["status"])

    def get_waiter(self, name):
        def change_set_done(StackName, ChangeSetName):
            status = self.change_sets[ChangeSetName]["Status"]
            return status == "CREATE_COMPLETE", status

        def stack_done(StackName, want=None):
            status = self.stack["status"] if self.stack else "DELETE_COMPLETE"
            return status == want, status

        waits = {"change_set_create_complete": change_set_done,
                 "stack_create_complete": lambda StackName: stack_done(StackName, "CREATE_COMPLETE"),
                 "stack_update_complete": lambda StackName: stack_done(StackName, "UPDATE_COMPLETE"),
                 "stack_delete_complete": lambda StackName: stack_done(StackName, "DELETE_COMPLETE")}
        return FakeWaiter(name, waits[name])


class FakeDynamoDB:
    """Tables as an emulator's CloudFormation makes them: their TTL off."""

    def __init__(self) -> None:
        self.ttl: dict[str, dict[str, Any]] = {}

    def describe_time_to_live(self, TableName):
        return {"TimeToLiveDescription": self.ttl.get(TableName, {"TimeToLiveStatus": "DISABLED"})}

    def update_time_to_live(self, TableName, TimeToLiveSpecification):
        self.ttl[TableName] = {"TimeToLiveStatus": "ENABLED" if TimeToLiveSpecification["Enabled"] else "DISABLED",
                               "AttributeName": TimeToLiveSpecification["AttributeName"]}


class FakeSession:
    region_name = "us-east-1"

    def __init__(self) -> None:
        self.s3 = FakeS3()
        self.cfn = FakeCloudFormation(self.s3)
        self.apigateway = FakeApiGateway()
        self.dynamodb = FakeDynamoDB()

    def client(self, name):
        return {"cloudformation": self.cfn, "s3": self.s3, "apigateway": self.apigateway, "dynamodb": self.dynamodb,
                "sts": type("Sts", (), {"get_caller_identity": lambda self: {"Account": ACCOUNT}})()}[name]


def write_code(path, rules: str = RULES_FILE.read_text()) -> None:
    """A code zip at `path` holding what the deploy reads of it: the cache invalidation rules."""
    with zipfile.ZipFile(path, "w") as code:
        code.writestr(RULES_SOURCE, rules)


@pytest.fixture
def build(tmp_path):
    (tmp_path / "sam.json").write_text(json.dumps(TEMPLATE))
    write_code(tmp_path / "deployment.zip")
    return tmp_path


@pytest.fixture
def session():
    return FakeSession()


def test_a_new_stack_is_created_and_its_api_url_returned(build, session):
    outputs = deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    assert outputs["ApiUrl"] == "http://127.0.0.1:4566/restapis/abc123/api/_user_request_"


def test_on_an_emulator_the_apis_gateway_responses_are_put_and_its_stage_deployed_again(build, session):
    """ministack leaves SAM's GatewayResponses out of the API it imports: without this an unknown
    route answered 403 `Missing Authentication Token`, not 404 `route_not_found`."""
    template = {**TEMPLATE, "Resources": {**TEMPLATE["Resources"], **API_TEMPLATE["Resources"]}}
    (build / "sam.json").write_text(json.dumps(template))
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert set(session.apigateway.customized) == {"MISSING_AUTHENTICATION_TOKEN", "DEFAULT_4XX"}
    assert [call for call, _ in session.apigateway.calls] == ["put", "put", "deploy"]


@pytest.mark.parametrize("endpoint, ttl", [
    ("http://127.0.0.1:4566", {"jobpipe-JobsTable-1": {"TimeToLiveStatus": "ENABLED", "AttributeName": "expires_at"}}),
    ("https://s3.us-east-1.amazonaws.com", {}),  # AWS: CloudFormation applied it
])
def test_on_an_emulator_the_tables_ttl_is_turned_on(build, session, monkeypatch, endpoint, ttl):
    """ministack makes the tables without the TimeToLiveSpecification the template declares:
    without this no record of the local stack would ever expire."""
    monkeypatch.setattr(FakeS3, "meta", type("Meta", (), {"endpoint_url": endpoint})())
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.dynamodb.ttl == ttl


def test_an_update_keeps_the_values_of_the_parameters_it_is_not_given(build, session):
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "ErpWebhookUrl": "https://erp.example/hook"}, session)
    (build / "deployment.zip").write_bytes(b"PK\x05\x06" + b"\x01" * 18)  # new code, nothing else
    deploy(build, "jobpipe", {"RetentionDays": "14"}, session)
    assert session.cfn.stack["status"] == "UPDATE_COMPLETE"
    assert session.cfn.stack["parameters"] == {"AuthSecret": SECRET, "ErpWebhookUrl": "https://erp.example/hook",
                                               "RetentionDays": "14", "LetterArrivalAlarms": "false"}


@pytest.mark.parametrize("endpoint, given, deployed", [
    ("http://127.0.0.1:4566", {}, "false"),  # an emulator: no metric-math alarm
    ("http://127.0.0.1:4566", {"LetterArrivalAlarms": "true"}, "true"),  # one that has them, said so
    ("https://s3.us-east-1.amazonaws.com", {}, None),  # AWS: the template's default, true
])
def test_an_emulator_is_deployed_the_plain_dead_letter_alarms_unless_told(build, session, monkeypatch,
                                                                          endpoint, given, deployed):
    monkeypatch.setattr(FakeS3, "meta", type("Meta", (), {"endpoint_url": endpoint})())
    deploy(build, "jobpipe", {"AuthSecret": SECRET, **given}, session)
    assert session.cfn.stack["parameters"].get("LetterArrivalAlarms") == deployed


def test_a_new_stack_without_a_parameter_that_has_no_default_is_refused_before_anything_is_made(build, session):
    with pytest.raises(DeployError, match="^stack 'jobpipe' does not exist in us-east-1, and a new stack needs "
                                          "AuthSecret "):
        deploy(build, "jobpipe", {}, session)
    assert session.cfn.stack is None and not session.s3.objects


def main_exit(session, monkeypatch, argv) -> int:
    """The exit code of `python -m scripts.deploy ARGV` deploying through the fake `session`
    (the test asserts what it said and left)."""
    monkeypatch.setattr(deploy_script, "deploy", lambda *args: deploy(*args, session))
    with pytest.raises(SystemExit) as exited:
        deploy_script.main(argv)
    return exited.value.code


def test_a_stack_name_no_stack_has_is_said_in_one_line_before_anything_is_created(build, session, capsys,
                                                                                  monkeypatch):
    """A mistyped STACK_NAME (`jobpipe-prd` for `jobpipe-prod`) created a second stack beside the
    one meant without a word. The deploy says first that no stack has the name and that it
    creates one; an update to a name no stack has, relying on values a stack would keep, is
    refused saying so, exit 1, nothing created."""
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert capsys.readouterr().err == "stack 'jobpipe' does not exist in us-east-1: creating it\n"
    deploy(build, "jobpipe", {"RetentionDays": "9"}, session)  # an update: nothing said of it
    assert "does not exist" not in capsys.readouterr().err
    session.cfn.stack, uploaded = None, dict(session.s3.objects)  # as for a name no stack has
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", "RetentionDays=9"]) == 1
    assert capsys.readouterr().err == (
        "deploy: stack 'jobpipe' does not exist in us-east-1, and a new stack needs AuthSecret (give AuthSecret=..., "
        "README: Deploying; or name the stack to update); nothing was deployed\n")
    assert session.cfn.stack is None and session.s3.objects == uploaded


def test_deploying_again_with_nothing_changed_succeeds_and_leaves_the_stack(build, session, capsys):
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    session.cfn.calls.clear()
    outputs = deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert outputs["RestAPIId"] == "abc123"
    assert "execute_change_set" not in session.cfn.calls and "delete_change_set" in session.cfn.calls
    assert session.cfn.stack["status"] == "CREATE_COMPLETE" and not session.cfn.change_sets
    assert "stack jobpipe is up to date" in capsys.readouterr().err


def test_a_first_create_that_rolled_back_is_created_again_by_the_next_deploy(build, session):
    session.cfn.fail_next = [("JobsTable", "Table already exists: jobpipe-jobs")]
    with pytest.raises(DeployError):
        deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "ROLLBACK_COMPLETE"
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    assert "delete_stack" in session.cfn.calls


def test_a_refused_deploy_leaves_a_rolled_back_first_create_and_its_events(build, session):
    """A deploy after a first create that rolled back deleted that stack before its checks: one
    refused (no AuthSecret, a bad parameter) had deleted the stack, and with it the events that
    said why its create failed. The stack goes only when the deploy goes on."""
    session.cfn.fail_next = [("JobsTable", "Table already exists: jobpipe-jobs")]
    with pytest.raises(DeployError):
        deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    events = list(session.cfn.events)
    with pytest.raises(DeployError, match="a new stack needs AuthSecret"):
        deploy(build, "jobpipe", {}, session)
    assert "delete_stack" not in session.cfn.calls
    assert session.cfn.stack["status"] == "ROLLBACK_COMPLETE" and session.cfn.events == events


def test_a_create_stopped_before_its_change_set_ran_is_created_by_the_next_deploy(build, session, capsys,
                                                                                  monkeypatch):
    def interrupted(**kwargs):
        raise KeyboardInterrupt  # Ctrl-C while waiting for the change set

    real = session.cfn.get_waiter
    monkeypatch.setattr(session.cfn, "get_waiter",
                        lambda name: type("W", (), {"wait": staticmethod(interrupted)})()
                        if name == "change_set_create_complete" else real(name))
    with pytest.raises(KeyboardInterrupt):
        deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "REVIEW_IN_PROGRESS"
    monkeypatch.setattr(session.cfn, "get_waiter", real)
    capsys.readouterr()
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    # said before it is created, as for a name no stack has
    assert capsys.readouterr().err == ("stack jobpipe is REVIEW_IN_PROGRESS (a create that never ran, nothing made): "
                                       "creating it\n")


def deploy_main_on_a_stack_in(status: str, build, session, capsys, monkeypatch) -> str:
    """What `scripts.deploy` says on stderr deploying to a stack found in `status`, refusing it
    (exit 1) before anything is uploaded or any change set made."""
    session.cfn.stack = {"status": status, "parameters": {"AuthSecret": SECRET, "RetentionDays": "7"},
                         "template": None}
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", "RetentionDays=9"]) == 1
    assert session.s3.objects == {} and session.cfn.calls == ["describe_stacks"]
    assert session.cfn.stack["status"] == status
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    return err


def test_a_stack_whose_update_rollback_failed_is_refused_naming_continue_update_rollback(
        build, session, capsys, monkeypatch):
    """A stack in UPDATE_ROLLBACK_FAILED takes no update: the code was uploaded, CloudFormation
    refused the change set, and the README's "running it again is how a failed deploy is
    retried" could never apply. One line says what brings it back, before anything is uploaded."""
    assert deploy_main_on_a_stack_in("UPDATE_ROLLBACK_FAILED", build, session, capsys, monkeypatch) == (
        "deploy: stack jobpipe is UPDATE_ROLLBACK_FAILED (an update failed, and so did rolling it back): "
        "CloudFormation takes no update of it until `aws cloudformation continue-update-rollback --stack-name jobpipe` "
        "(with --resources-to-skip for those the stack's events show failing to roll back) has brought it to "
        "UPDATE_ROLLBACK_COMPLETE; then deploy again. Nothing was deployed\n")


@pytest.mark.parametrize("status, doing, command", [
    ("CREATE_IN_PROGRESS", "being created", "wait stack-create-complete"),
    ("ROLLBACK_IN_PROGRESS", "its first create failed and is rolling back", "wait stack-create-complete"),
    ("UPDATE_IN_PROGRESS", "being updated", "wait stack-update-complete"),
    ("UPDATE_COMPLETE_CLEANUP_IN_PROGRESS", "an update is removing what it replaced", "wait stack-update-complete"),
    ("UPDATE_ROLLBACK_IN_PROGRESS", "an update failed and is rolling back", "wait stack-rollback-complete"),
    ("UPDATE_ROLLBACK_COMPLETE_CLEANUP_IN_PROGRESS", "a rolled-back update is removing what it made",
     "wait stack-rollback-complete"),
    ("IMPORT_IN_PROGRESS", "resources are being imported into it", "describe-stacks"),
    ("IMPORT_ROLLBACK_IN_PROGRESS", "an import failed and is rolling back", "describe-stacks"),
])
def test_a_stack_another_operation_is_changing_is_refused_naming_its_state_before_anything_is_uploaded(
        status, doing, command, build, session, capsys, monkeypatch):
    """Two deploys at once (or a deploy during a change by hand): the second uploaded the code,
    then ended in CloudFormation's "is in UPDATE_IN_PROGRESS state and can not be updated". It
    is one line naming the state and the command that waits for its end, exit 1, nothing uploaded."""
    how = "shows its state" if command == "describe-stacks" else "waits for it"
    assert deploy_main_on_a_stack_in(status, build, session, capsys, monkeypatch) == (
        f"deploy: stack jobpipe is {status} ({doing}, by another deploy or by hand): deploy again once that has "
        f"ended (`aws cloudformation {command} --stack-name jobpipe` {how}). Nothing was deployed\n")


def test_a_stack_being_deleted_is_refused_saying_the_next_deploy_creates_it_anew(build, session, capsys, monkeypatch):
    assert deploy_main_on_a_stack_in("DELETE_IN_PROGRESS", build, session, capsys, monkeypatch) == (
        "deploy: stack jobpipe is DELETE_IN_PROGRESS (being deleted, by another deploy or by hand): deploy again "
        "once that has ended, which then creates it anew (`aws cloudformation wait stack-delete-complete "
        "--stack-name jobpipe` waits for it). Nothing was deployed\n")


@pytest.mark.parametrize("status, shown", [
    ("ROLLBACK_FAILED", "stack jobpipe is ROLLBACK_FAILED (its first create failed, and so did deleting what it had "
                        "made): it can only be deleted, by `aws cloudformation delete-stack --stack-name jobpipe`; "
                        "then deploy again, which creates it anew. Nothing was deployed"),
    ("DELETE_FAILED", "stack jobpipe is DELETE_FAILED (a delete could not remove resources the stack's events name): "
                      "it can only be deleted, by `aws cloudformation delete-stack --stack-name jobpipe` again (with "
                      "--retain-resources for those that will not go, to remove by hand); then deploy again, which "
                      "creates it anew. Nothing was deployed"),
])
def test_a_stack_that_can_only_be_deleted_is_refused_saying_so_before_anything_is_uploaded(
        status, shown, build, session, capsys, monkeypatch):
    """CloudFormation takes no update of a stack whose first create's rollback, or whose delete,
    failed: the deploy uploaded the code and ended in its refusal of the change set."""
    assert deploy_main_on_a_stack_in(status, build, session, capsys, monkeypatch) == f"deploy: {shown}\n"


def test_a_rolled_back_first_create_whose_delete_fails_says_what_to_do(build, session, capsys, monkeypatch):
    """The deploy deletes a ROLLBACK_COMPLETE stack to create it again: a delete that failed ended
    in the waiter's words ("Waiter StackDeleteComplete failed: ..."), not in what to do."""
    session.cfn.stack = {"status": "ROLLBACK_COMPLETE", "parameters": {}, "template": None}
    monkeypatch.setattr(session.cfn, "delete_stack", lambda StackName: session.cfn.stack.update(status="DELETE_FAILED"))
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", f"AuthSecret={SECRET}"]) == 1
    assert capsys.readouterr().err.splitlines()[-1].startswith(
        "deploy: stack jobpipe is DELETE_FAILED (a delete could not remove resources the stack's events name): it "
        "can only be deleted")
    assert session.s3.objects == {}


def test_a_stack_whose_update_rolled_back_is_updated_by_the_next_deploy(build, session):
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    session.cfn.fail_next = [("JobsQueue", "Limit exceeded")]
    with pytest.raises(DeployError):
        deploy(build, "jobpipe", {"RetentionDays": "9"}, session)
    assert session.cfn.stack["status"] == "UPDATE_ROLLBACK_COMPLETE"
    deploy(build, "jobpipe", {"RetentionDays": "9"}, session)
    assert session.cfn.stack["status"] == "UPDATE_COMPLETE" and session.cfn.stack["parameters"]["RetentionDays"] == "9"


def test_a_failed_deploy_names_only_its_own_failures_first_failure_first(build, session):
    session.cfn.fail_next = [("OldTable", "an earlier deploy's failure")]
    with pytest.raises(DeployError):
        deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)  # recreated
    session.cfn.fail_next = [("JobsQueue", "Queue name\nalready in use"), ("JobsTable", "Limit exceeded")]
    with pytest.raises(DeployError) as failed:
        deploy(build, "jobpipe", {"RetentionDays": "9"}, session)
    message = str(failed.value)
    assert message == ("stack jobpipe did not deploy (UPDATE_ROLLBACK_COMPLETE): JobsQueue: Queue name already "
                       "in use; JobsTable: Limit exceeded")
    assert "\n" not in message


def test_a_deploy_that_stops_waiting_on_a_running_update_says_it_goes_on_not_that_it_failed(build, session,
                                                                                          monkeypatch):
    """An update CloudFormation was still carrying out when the deploy stopped waiting (a
    DynamoDB index backfilling a large table takes longer) ended in "did not deploy
    (UPDATE_IN_PROGRESS): Waiter StackUpdateComplete failed: Max attempts exceeded", though
    nothing had failed and the update went on."""
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    monkeypatch.setattr(session.cfn, "execute_change_set",
                        lambda StackName, ChangeSetName: session.cfn.stack.update(status="UPDATE_IN_PROGRESS"))
    with pytest.raises(DeployError) as stopped:
        deploy(build, "jobpipe", {"RetentionDays": "9"}, session)
    assert re.fullmatch(
        r"stack jobpipe is still UPDATE_IN_PROGRESS \(being updated\) after \d+ minutes: this deploy stopped waiting, "
        r"and CloudFormation goes on \(`aws cloudformation wait stack-update-complete --stack-name jobpipe` waits "
        r"for its end; the stack's events say how it went\)", str(stopped.value)), str(stopped.value)


def test_a_change_set_cloudformation_refuses_is_one_line_with_its_reason(build, session, monkeypatch):
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    original = session.cfn.create_change_set

    def refused(**kwargs):
        original(**kwargs)
        session.cfn.change_sets[kwargs["ChangeSetName"]].update(
            Status="FAILED", StatusReason="Template error: instance of Fn::GetAtt references undefined resource X")

    monkeypatch.setattr(session.cfn, "create_change_set", refused)
    with pytest.raises(DeployError, match="^stack jobpipe: CloudFormation refused the change set: Template error: "
                                          "instance of Fn::GetAtt references undefined resource X$"):
        deploy(build, "jobpipe", {"RetentionDays": "9"}, session)


def refused_before_upload(argv, capsys, monkeypatch) -> str:
    """What `scripts.deploy` with `argv` says on stderr, refusing (exit 2) before it deploys."""
    monkeypatch.setattr(deploy_script, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    with pytest.raises(SystemExit) as exited:
        deploy_script.main(argv)
    assert exited.value.code == 2
    return capsys.readouterr().err


def deploy_main_raising(error: BaseException, build, monkeypatch) -> int:
    """The exit code of `python -m scripts.deploy` when its deploy raises `error`."""
    def failing(*args, **kwargs):
        raise error

    monkeypatch.setattr(deploy_script, "deploy", failing)
    with pytest.raises(SystemExit) as exited:
        deploy_script.main([str(build), "jobpipe", f"AuthSecret={SECRET}"])
    return exited.value.code


@pytest.mark.parametrize("error, expected", [
    (client_error("ValidationError", "Stack:arn:aws:cloudformation:us-east-1:1:stack/jobpipe/x is in\n"
                  "UPDATE_IN_PROGRESS state and can not be updated.", "CreateChangeSet"),
     "deploy: An error occurred (ValidationError) when calling the CreateChangeSet operation: Stack:arn:aws:"
     "cloudformation:us-east-1:1:stack/jobpipe/x is in UPDATE_IN_PROGRESS state and can not be updated.\n"),
    (NoCredentialsError(), "deploy: Unable to locate credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, "
                           "or AWS_PROFILE; for make run's emulator any, e.g. test)\n"),
    (NoRegionError(), "deploy: You must specify a region. (set AWS_DEFAULT_REGION; for make run's emulator any, "
                      "e.g. us-east-1)\n"),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:4566/"),
     'deploy: Could not connect to the endpoint URL: "http://127.0.0.1:4566/"\n'),
])
def test_deploy_main_ends_an_aws_error_in_one_line_exit_1(error, expected, build, capsys, monkeypatch):
    assert deploy_main_raising(error, build, monkeypatch) == 1
    assert capsys.readouterr().err == expected


def test_deploy_main_without_a_package_says_how_to_build_it(tmp_path, capsys, monkeypatch):
    err = refused_before_upload([str(tmp_path / "build"), "jobpipe", f"AuthSecret={SECRET}"], capsys, monkeypatch)
    assert err == f"deploy: {tmp_path}/build/sam.json is missing; `make package` builds it\n"


def test_the_package_deploy_checks_and_deploys_is_where_scripts_package_puts_it(tmp_path, monkeypatch):
    """The template's and the code's file names are package.py's alone: deploy's check of the
    parameters, its look for a package and the deploy itself all read the files it names."""
    monkeypatch.setattr(package_script, "TEMPLATE_NAME", "template.json")
    monkeypatch.setattr(package_script, "CODE_NAME", "code.zip")
    build = tmp_path / "out"
    build.mkdir()
    (build / "template.json").write_text(json.dumps(TEMPLATE))
    write_code(build / "code.zip")
    session = FakeSession()
    monkeypatch.setattr(deploy_script, "deploy", lambda *args: deploy(*args, session))
    deploy_script.main([str(build), "jobpipe", f"AuthSecret={SECRET}", "RetentionDays=14"])
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    assert session.cfn.stack["parameters"]["RetentionDays"] == "14"


@pytest.mark.parametrize("rules, shown", [
    ('{"demo.step": ["steps-summary"], "demo.sleep": ["sleep-summary"]}',
     "keys name no registered job type: 'demo.step' (demo.steps?) (no completion of theirs would invalidate the "
     "namespaces of their rules, whose caches would serve stale values); the registered job types are: demo.chaos, "
     "demo.fanout, demo.model, demo.outputs, demo.sleep, demo.steps"),
    ('{"maintenance.health_check": ["health"], "renamed.type": ["x"]}',
     "keys name no registered job type: 'maintenance.health_check' (maintenance.* are the built-in maintenance "
     "types, whose jobs have no scope), 'renamed.type' (no completion of theirs would invalidate the namespaces of "
     "their rules, whose caches would serve stale values); the registered job types are: demo.chaos, demo.fanout, "
     "demo.model, demo.outputs, demo.sleep, demo.steps"),
    ('{"demo.steps": ["has space"]}', "demo.steps: invalid namespace names ['has space']"),
    ('{"demo.steps": "steps-summary"}', "demo.steps: Input should be a valid list"),
    ('{"demo.steps": ["steps-summary", 7]}', "demo.steps[1]: Input should be a valid string"),
    ('{"demo.steps": ["a"],', "Expecting property name enclosed in double quotes: line 1 column 22 (char 21)"),
    ('{"demo.steps": ["steps-summary"], "demo.sleep": [], "demo.steps": ["steps-report"]}',
     "'demo.steps' given more than once: write each job type's namespaces in one list"),
])
def test_deploy_main_refuses_cache_rules_the_functions_would_refuse_before_anything_is_uploaded(
        rules, shown, build, capsys, monkeypatch):
    """A rule keyed by a job type no code registers (a typo, a type renamed) would invalidate nothing,
    its caches serving stale values without an error anywhere: the deploy refuses the package."""
    write_code(build / "deployment.zip", rules)
    err = refused_before_upload([str(build), "jobpipe", f"AuthSecret={SECRET}"], capsys, monkeypatch)
    assert err == f"deploy: invalid cache invalidation rules in {build}/deployment.zip:{RULES_SOURCE}: {shown}\n"


def test_deploy_main_says_a_job_type_the_registry_refuses_is_the_problem_not_the_template(build, capsys, monkeypatch):
    from chalicelib import composition

    def refusing():
        raise ValueError("job type names are dotted lower-case words (a-z, 0-9, _), not 'Demo.Steps'")

    monkeypatch.setattr(composition, "known_job_types", refusing)
    err = refused_before_upload([str(build), "jobpipe", f"AuthSecret={SECRET}"], capsys, monkeypatch)
    assert err == ("deploy: the job types do not load (job type names are dotted lower-case words (a-z, 0-9, _), "
                   "not 'Demo.Steps'), so no function could run a job: fix the job type\n")


def test_deploy_main_refuses_a_package_without_cache_rules(build, capsys, monkeypatch):
    (build / "deployment.zip").write_bytes(b"PK\x05\x06" + b"\x00" * 18)
    err = refused_before_upload([str(build), "jobpipe", f"AuthSecret={SECRET}"], capsys, monkeypatch)
    assert err == f"deploy: {build}/deployment.zip has no {RULES_SOURCE}; `make package` builds it\n"


# A template whose function reads the redelivery waits, with the reconciler's schedule and alarm.
KEPT_TEMPLATE = {
    "Parameters": {
        **TEMPLATE["Parameters"],
        "RedeliveryBaseSeconds": {"Type": "Number", "Default": 30, "MinValue": 1, "MaxValue": 900},
        "RedeliveryMaxSeconds": {"Type": "Number", "Default": 900, "MinValue": 1, "MaxValue": 900},
        "ReconcilerSchedule": {"Type": "String", "Default": "rate(1 minute)"},
        "ReconcilerSilentAlarmSeconds": {"Type": "Number", "Default": 600, "AllowedValues": [0, 600, 1800]},
    },
    "Resources": {
        **TEMPLATE["Resources"],
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": {
            "CodeUri": "./deployment.zip", "Environment": {"Variables": {
                "JOBPIPE_REDELIVERY_BASE_S": {"Ref": "RedeliveryBaseSeconds"},
                "JOBPIPE_REDELIVERY_MAX_S": {"Ref": "RedeliveryMaxSeconds"}}}}},
    },
}


@pytest.mark.parametrize("first, then, fix, shown", [
    ({"RedeliveryMaxSeconds": "60"}, "RedeliveryBaseSeconds=120", "RedeliveryMaxSeconds=900",
     "RedeliveryMaxSeconds would be refused by the functions, which read it as JOBPIPE_REDELIVERY_MAX_S: Value error, "
     "must be at least JOBPIPE_REDELIVERY_BASE_S (120), the first wait before a redelivery (got '60') (RedeliveryMaxSeconds=60: "),
    ({"ReconcilerSchedule": "rate(10 minutes)", "ReconcilerSilentAlarmSeconds": "1800"}, "ReconcilerSilentAlarmSeconds=600",
     "ReconcilerSchedule=rate(1 minute)",
     "ReconcilerSilentAlarmSeconds 600 is less than twice ReconcilerSchedule's period (rate(10 minutes): 600 s), so its "
     "alarm would go off between two passes: set it to at least 1,200 (one of its allowed values), or 0 for no such "
     "alarm (ReconcilerSchedule=rate(10 minutes): "),
])
def test_an_update_is_checked_with_the_values_the_stack_keeps_before_anything_is_uploaded(
        first, then, fix, shown, build, session, capsys, monkeypatch):
    """An update keeps every parameter it is not given at the stack's current value, not the
    template's default: a new first wait above the cap the stack keeps made every function refuse
    its settings (each call failing until the next deploy); a shorter alarm than the kept schedule
    allows went off between two passes."""
    (build / "sam.json").write_text(json.dumps(KEPT_TEMPLATE))
    deploy(build, "jobpipe", {"AuthSecret": SECRET, **first}, session)
    capsys.readouterr()  # the create's line
    before = (dict(session.cfn.stack["parameters"]), dict(session.s3.objects))
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", then]) == 2
    assert capsys.readouterr().err == (f"deploy: {shown}stack jobpipe's current value of what this update does not "
                                       "give, which it keeps: give the parameters together)\n")
    assert (session.cfn.stack["parameters"], session.s3.objects) == before
    deploy_script.main([str(build), "jobpipe", then, fix])  # given together: deployed
    assert {then, fix} <= {f"{k}={v}" for k, v in session.cfn.stack["parameters"].items()}


def test_deploy_main_interrupted_says_so_in_one_line_exit_130(build, capsys, monkeypatch):
    assert deploy_main_raising(KeyboardInterrupt(), build, monkeypatch) == 130
    err = capsys.readouterr().err
    assert err.startswith("deploy: interrupted;") and err.count("\n") == 1


def test_deploy_main_answers_help_with_its_usage_and_refuses_an_unknown_option(capsys, monkeypatch):
    """`python -m scripts.deploy --help` printed `deploy: <root>/--help/sam.json is missing` (exit
    2), taking the flag for a build folder; it prints the usage (exit 0), and an option it does
    not know is one usage line (exit 2), never a folder or a stack name."""
    monkeypatch.setattr(deploy_script, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    for flag in ("--help", "-h"):
        with pytest.raises(SystemExit) as exited:
            deploy_script.main([flag])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert "Usage: python -m scripts.deploy [BUILD_DIR] [STACK_NAME] [Key=Value ...]" in out
    with pytest.raises(SystemExit) as exited:
        deploy_script.main(["build", "--stack", "jobpipe"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == ("deploy: unknown option '--stack'; usage: python -m scripts.deploy "
                                       "[BUILD_DIR] [STACK_NAME] [Key=Value ...] (see --help)\n")


@pytest.mark.parametrize("argv, shown", [
    (["build", "RetentionDays=8"], "'RetentionDays=8'"),           # the stack name left out
    (["RetentionDays=8"], "'RetentionDays=8'"),                    # both left out
    (["build", "bad name!", "RetentionDays=8"], "'bad name!'"),
    (["build", "9lives"], "'9lives'"),
    (["build", "x" * 129], "'" + "x" * 20),
])
def test_deploy_main_refuses_what_is_no_stack_name_before_anything_is_uploaded(argv, shown, capsys, monkeypatch):
    """`scripts.deploy build RetentionDays=8` took the parameter for a stack's name: it answered
    "a new stack needs AuthSecret" for a stack named `RetentionDays=8`, and with an AuthSecret it
    uploaded the code before CloudFormation refused the name. A name CloudFormation cannot take
    (a letter, then letters, digits and hyphens, at most 128) is one usage line, exit 2."""
    err = refused_before_upload(argv, capsys, monkeypatch)
    assert err.count("\n") == 1 and err.startswith("deploy: ") and shown in err, err
    assert "python -m scripts.deploy [BUILD_DIR] [STACK_NAME] [Key=Value ...]" in err


def test_deploy_help_states_the_auth_secrets_length_as_the_template_bounds_it(capsys, monkeypatch):
    """The usage said a new stack needs an AuthSecret of "32+ characters" after the template and
    the parameter check began to refuse one past SECRET_MAX_CHARS: it gives both bounds."""
    monkeypatch.setattr(deploy_script, "deploy", lambda *a, **k: pytest.fail("must not deploy"))
    with pytest.raises(SystemExit):
        deploy_script.main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"AuthSecret=<{SECRET_MIN_CHARS} to {SECRET_MAX_CHARS} characters>" in out


# The template with the webhook's signing secret (NoEcho: DescribeStacks shows it as ****).
WEBHOOK_TEMPLATE = {**TEMPLATE, "Parameters": {
    **TEMPLATE["Parameters"], "ErpWebhookSecret": {"Type": "String", "Default": "", "NoEcho": True}}}
WEBHOOK_URL = "https://erp.example/hook"


def test_an_update_adding_a_webhook_url_keeps_the_stacks_webhook_secret(build, session, monkeypatch):
    """An update keeps each parameter it is not given, the webhook's secret too: adding
    ErpWebhookUrl to a stack that has an ErpWebhookSecret was refused (exit 2, "it has 0"),
    the secret's 32 characters asked for again though CloudFormation keeps the stack's."""
    (build / "sam.json").write_text(json.dumps(WEBHOOK_TEMPLATE))
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "ErpWebhookSecret": "w" * 40}, session)
    monkeypatch.setattr(deploy_script, "deploy", lambda *args: deploy(*args, session))
    deploy_script.main([str(build), "jobpipe", f"ErpWebhookUrl={WEBHOOK_URL}"])
    assert session.cfn.stack["status"] == "UPDATE_COMPLETE"
    assert session.cfn.stack["parameters"]["ErpWebhookUrl"] == WEBHOOK_URL
    assert session.cfn.stack["parameters"]["ErpWebhookSecret"] == "w" * 40


@pytest.mark.parametrize("first", [
    None,                       # a new stack: the template's empty secret
    {"AuthSecret": SECRET},     # a stack made before it had a secret: the update takes the template's empty one
])
def test_a_webhook_url_with_no_secret_is_refused_before_anything_is_uploaded(first, build, session, capsys,
                                                                              monkeypatch):
    if first is not None:
        deploy(build, "jobpipe", first, session)
        capsys.readouterr()  # the create's line
    (build / "sam.json").write_text(json.dumps(WEBHOOK_TEMPLATE))
    before = (session.cfn.stack and dict(session.cfn.stack["parameters"]), dict(session.s3.objects))
    assert main_exit(session, monkeypatch,
                     [str(build), "jobpipe", f"AuthSecret={SECRET}", f"ErpWebhookUrl={WEBHOOK_URL}"]) == 2
    new = " (stack 'jobpipe' does not exist in us-east-1: a new stack keeps no secret)" if first is None else ""
    assert capsys.readouterr().err == ("deploy: ErpWebhookSecret must be at least 32 characters when ErpWebhookUrl "
                                       f"is set (it has 0){new}\n")
    assert (session.cfn.stack and dict(session.cfn.stack["parameters"]), session.s3.objects) == before


def test_emptying_the_secret_of_a_stack_that_keeps_its_webhook_url_is_refused_before_anything_is_uploaded(
        build, session, capsys, monkeypatch):
    """`ErpWebhookSecret=` passed the checks (no URL given) and CloudFormation refused it by the
    template's rule only after the code was uploaded: the stack keeps its URL."""
    (build / "sam.json").write_text(json.dumps(WEBHOOK_TEMPLATE))
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "ErpWebhookUrl": WEBHOOK_URL, "ErpWebhookSecret": "w" * 40},
           session)
    capsys.readouterr()  # the create's line
    before = (dict(session.cfn.stack["parameters"]), dict(session.s3.objects))
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", "ErpWebhookSecret="]) == 2
    assert capsys.readouterr().err == (
        "deploy: ErpWebhookSecret must be at least 32 characters when ErpWebhookUrl is set (it has 0) (stack jobpipe "
        f"keeps ErpWebhookUrl '{WEBHOOK_URL}': give ErpWebhookUrl= to stop its deliveries)\n")
    assert (session.cfn.stack["parameters"], session.s3.objects) == before
    deploy_script.main([str(build), "jobpipe", "ErpWebhookSecret=", "ErpWebhookUrl="])  # both: no webhook
    assert session.cfn.stack["parameters"]["ErpWebhookUrl"] == ""


# A template whose functions reserve FunctionConcurrencyCeiling each, the API its own ceiling if set.
def _reserving(api: bool) -> dict[str, Any]:
    ceiling = {"Fn::If": ["HasFunctionConcurrencyCeiling", {"Ref": "FunctionConcurrencyCeiling"}, {"Ref": "AWS::NoValue"}]}
    return {"CodeUri": "./deployment.zip", "ReservedConcurrentExecutions": {
        "Fn::If": ["HasApiConcurrencyCeiling", {"Ref": "ApiConcurrencyCeiling"}, ceiling]} if api else ceiling}


CONCURRENCY_TEMPLATE = {
    "Parameters": {
        **TEMPLATE["Parameters"],
        "FunctionConcurrencyCeiling": {"Type": "Number", "Default": 0, "MinValue": 0, "MaxValue": 1000},
        "ApiConcurrencyCeiling": {"Type": "Number", "Default": 0, "MinValue": 0, "MaxValue": 1000},
    },
    "Conditions": {
        "HasFunctionConcurrencyCeiling": {"Fn::Not": [{"Fn::Equals": [{"Ref": "FunctionConcurrencyCeiling"}, "0"]}]},
        "HasApiConcurrencyCeiling": {"Fn::Not": [{"Fn::Equals": [{"Ref": "ApiConcurrencyCeiling"}, "0"]}]},
    },
    "Resources": {
        "APIHandler": {"Type": "AWS::Serverless::Function", "Properties": _reserving(api=True)},
        "JobWorker": {"Type": "AWS::Serverless::Function", "Properties": _reserving(api=False)},
        "Reconciler": {"Type": "AWS::Serverless::Function", "Properties": _reserving(api=False)},
    },
}
CONCURRENCY_FUNCTIONS = ("APIHandler", "JobWorker", "Reconciler")


class ListingCloudFormation(FakeCloudFormation):
    """The fake's stack, its functions listed as ListStackResources lists them."""

    def get_paginator(self, name):
        if name != "list_stack_resources":
            return super().get_paginator(name)
        functions = [{"LogicalResourceId": f, "PhysicalResourceId": f"jobpipe-{f}", "ResourceType": "AWS::Lambda::Function"}
                     for f in CONCURRENCY_FUNCTIONS]
        table = {"LogicalResourceId": "JobsTable", "PhysicalResourceId": "jobs", "ResourceType": "AWS::DynamoDB::Table"}
        return type("Pages", (), {"paginate": lambda _, StackName: iter([{"StackResourceSummaries": functions[:2]},
                                                                          {"StackResourceSummaries": [table, *functions[2:]]}])})()


class AwsSession(FakeSession):
    """The fake session with AWS's endpoints (not an emulator's) and Lambda's API on a stubbed
    botocore client: no request leaves the process, each call is checked against what is expected."""

    def __init__(self) -> None:
        import botocore.session
        from botocore.stub import Stubber

        super().__init__()
        self.cfn = ListingCloudFormation(self.s3)
        self.s3.meta = type("Meta", (), {"endpoint_url": "https://s3.us-east-1.amazonaws.com"})()
        self.lambda_client = botocore.session.get_session().create_client(
            "lambda", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing")
        self.stub = Stubber(self.lambda_client)
        self.stub.activate()

    def client(self, name):
        return self.lambda_client if name == "lambda" else super().client(name)

    def account_leaves(self, unreserved: int, reserved_now: dict[str, int] | None = None) -> None:
        """The next check's answers: `unreserved` executions, and each function's reservation."""
        self.stub.add_response("get_account_settings", {"AccountLimit": {
            "ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": unreserved}})
        for function, reserved in (reserved_now or {}).items():
            self.stub.add_response("get_function_concurrency", {"ReservedConcurrentExecutions": reserved},
                                   {"FunctionName": f"jobpipe-{function}"})


def test_deploy_main_refuses_a_concurrency_ceiling_the_account_cannot_reserve_before_anything_is_uploaded(
        build, capsys, monkeypatch):
    """FunctionConcurrencyCeiling=40 on three functions asks Lambda to reserve 120 executions:
    with 100 unreserved, of which Lambda keeps 10, it refused each function's reservation after
    the code was uploaded and the stack rolled back. It is one line naming the ceilings, exit 2."""
    (build / "sam.json").write_text(json.dumps(CONCURRENCY_TEMPLATE))
    session = AwsSession()
    session.account_leaves(100)
    assert main_exit(session, monkeypatch,
                     [str(build), "jobpipe", f"AuthSecret={SECRET}", "FunctionConcurrencyCeiling=40"]) == 2
    assert capsys.readouterr().err == (
        "deploy: ApiConcurrencyCeiling=0, FunctionConcurrencyCeiling=40 would reserve 120 concurrent executions "
        "for 3 functions, more than the 90 the account can reserve in us-east-1 (100 unreserved, less the 10 "
        "Lambda keeps unreserved): lower them, or ask AWS for a higher Lambda concurrency quota\n")
    assert session.s3.objects == {} and session.cfn.stack is None
    session.account_leaves(100)
    deploy_script.main([str(build), "jobpipe", f"AuthSecret={SECRET}", "FunctionConcurrencyCeiling=30"])  # 90: fits
    assert session.cfn.stack["parameters"]["FunctionConcurrencyCeiling"] == "30"
    session.stub.assert_no_pending_responses()


def test_an_update_counts_what_the_stacks_functions_reserve_already(build, capsys, monkeypatch):
    """An update gives back what the stack's functions reserve before it reserves anew: a
    redeploy of the same ceilings on an account with no room left passes; an API ceiling the
    update raises (the others kept) is refused when the account has no room for the difference."""
    (build / "sam.json").write_text(json.dumps(CONCURRENCY_TEMPLATE))
    session = AwsSession()
    session.account_leaves(100)
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "FunctionConcurrencyCeiling": "25", "ApiConcurrencyCeiling": "40"},
           session)
    capsys.readouterr()  # the create's line
    now = {"APIHandler": 40, "JobWorker": 25, "Reconciler": 25}
    session.account_leaves(10, now)  # 90 reserved by the stack: nothing left to reserve
    deploy(build, "jobpipe", {"RetentionDays": "9"}, session)
    assert session.cfn.stack["status"] == "UPDATE_COMPLETE"
    session.account_leaves(12, now)
    uploaded = dict(session.s3.objects)
    assert main_exit(session, monkeypatch, [str(build), "jobpipe", "ApiConcurrencyCeiling=45"]) == 2
    assert capsys.readouterr().err == (
        "deploy: ApiConcurrencyCeiling=45, FunctionConcurrencyCeiling=25 would reserve 95 concurrent executions "
        "for 3 functions, more than the 92 the account can reserve in us-east-1 (12 unreserved, less the 10 Lambda "
        "keeps unreserved, plus the 90 stack jobpipe's functions reserve now): lower them, or ask AWS for a higher "
        "Lambda concurrency quota\n")
    assert session.s3.objects == uploaded and session.cfn.stack["parameters"]["ApiConcurrencyCeiling"] == "40"
    session.stub.assert_no_pending_responses()


def test_a_stack_that_reserves_no_concurrency_asks_lambda_nothing(build):
    """The template's default ceilings (0) reserve nothing: no Lambda call, so credentials
    without lambda:GetAccountSettings deploy as before (the stub refuses any call)."""
    (build / "sam.json").write_text(json.dumps(CONCURRENCY_TEMPLATE))
    session = AwsSession()
    deploy(build, "jobpipe", {"AuthSecret": SECRET}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"


def test_credentials_that_may_not_read_the_accounts_settings_deploy_unchecked_saying_so(build, capsys):
    (build / "sam.json").write_text(json.dumps(CONCURRENCY_TEMPLATE))
    session = AwsSession()
    session.stub.add_client_error("get_account_settings", "AccessDeniedException", "not authorized")
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "FunctionConcurrencyCeiling": "5"}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    assert capsys.readouterr().err == ("deploy: not checking the functions' reserved concurrency (15) against the "
                                       "account's: these credentials may not call lambda:GetAccountSettings\n"
                                       "stack 'jobpipe' does not exist in us-east-1: creating it\n")


# The concurrency template with SQS mappings as the stack has them: the normal worker's at most 5
# batches at once, the high one's 10.
MAPPED_TEMPLATE = json.loads(json.dumps(CONCURRENCY_TEMPLATE))
for _function, _most in (("JobWorker", 5), ("JobWorkerHigh", 10)):
    MAPPED_TEMPLATE["Resources"][_function] = {"Type": "AWS::Serverless::Function", "Properties": {
        **_reserving(api=False), "Events": {f"{_function}SqsEventSource": {"Type": "SQS", "Properties": {
            "Queue": "arn:aws:sqs:us-east-1:123456789012:jobs", "ScalingConfig": {"MaximumConcurrency": _most}}}}}}


def test_a_ceiling_below_what_an_sqs_mapping_runs_at_once_is_refused_on_aws_before_anything_is_uploaded(
        build, capsys, monkeypatch):
    """FunctionConcurrencyCeiling=4 reserved 4 executions for the high worker, whose mapping
    runs up to 10 batches at once: on AWS Lambda throttles what is over (a mapping does not
    hold itself to a reservation below its MaximumConcurrency), and a throttled batch's jobs wait
    out the jobs queue's 90-minute visibility timeout, each time one receive nearer their
    dead-letter queue. It is one line naming the ceiling and what it must be, exit 2; an
    update that keeps the ceiling is checked with it; 10, or none, deploys."""
    (build / "sam.json").write_text(json.dumps(MAPPED_TEMPLATE))
    session = AwsSession()
    assert main_exit(session, monkeypatch,
                     [str(build), "jobpipe", f"AuthSecret={SECRET}", "FunctionConcurrencyCeiling=4"]) == 2
    assert capsys.readouterr().err == (
        "deploy: FunctionConcurrencyCeiling=4 reserves 4 concurrent executions for JobWorkerHigh, whose SQS "
        "mapping runs up to 10 batches at once (MaximumConcurrency): Lambda would throttle the rest, their "
        "messages back on the queue only after its visibility timeout and one receive nearer its dead-letter "
        "queue; give FunctionConcurrencyCeiling=0 (no reservation) or at least 10\n")
    assert session.s3.objects == {} and session.cfn.stack is None
    session.account_leaves(1000)
    deploy_script.main([str(build), "jobpipe", f"AuthSecret={SECRET}", "FunctionConcurrencyCeiling=10"])
    assert session.cfn.stack["parameters"]["FunctionConcurrencyCeiling"] == "10"
    raised = json.loads(json.dumps(MAPPED_TEMPLATE))  # a mapping raised in infra/resources.json
    raised["Resources"]["JobWorker"]["Properties"]["Events"]["JobWorkerSqsEventSource"][
        "Properties"]["ScalingConfig"]["MaximumConcurrency"] = 20
    (build / "sam.json").write_text(json.dumps(raised))
    uploaded = dict(session.s3.objects)
    # the stack keeps FunctionConcurrencyCeiling=10
    assert main_exit(session, monkeypatch, [str(build), "jobpipe"]) == 2
    assert "FunctionConcurrencyCeiling=10 reserves 10 concurrent executions for JobWorker, whose SQS mapping " \
           "runs up to 20 batches" in capsys.readouterr().err
    assert session.s3.objects == uploaded
    deploy_script.main([str(build), "jobpipe", "FunctionConcurrencyCeiling=0"])  # none reserved: no Lambda call
    assert session.cfn.stack["parameters"]["FunctionConcurrencyCeiling"] == "0"
    session.stub.assert_no_pending_responses()


def test_an_emulator_that_runs_a_mapping_at_its_reservation_takes_a_lower_ceiling(build):
    """ministack runs min(MaximumConcurrency, reserved) batches and throttles none: make run's 4."""
    (build / "sam.json").write_text(json.dumps(MAPPED_TEMPLATE))
    session = FakeSession()
    deploy(build, "jobpipe", {"AuthSecret": SECRET, "FunctionConcurrencyCeiling": "4"}, session)
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"


# A template whose alarm notifies AlarmTopicArn when it is set.
ALARM_TEMPLATE = {
    "Parameters": {**TEMPLATE["Parameters"], "AlarmTopicArn": {"Type": "String", "Default": ""}},
    "Conditions": {"HasAlarmTopic": {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}},
    "Resources": {**TEMPLATE["Resources"], "JobsDeadLetterQueueAlarm": {"Type": "AWS::CloudWatch::Alarm", "Properties": {
        "AlarmActions": {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}}}},
}


class PartitionedSession(FakeSession):
    """The fake session in `region`, knowing its partition as boto3's session does."""

    def __init__(self, region: str) -> None:
        import boto3

        super().__init__()
        self.region_name = region
        self.get_partition_for_region = boto3.session.Session().get_partition_for_region


@pytest.mark.parametrize("region, arn, shown", [
    ("us-east-1", "arn:aws:sns:eu-west-1:123456789012:jobpipe-alarms",
     "AlarmTopicArn names a topic in aws:eu-west-1, and CloudWatch alarms notify only topics in the stack's own "
     "region (us-east-1)"),
    ("us-gov-west-1", "arn:aws:sns:us-gov-west-1:123456789012:jobpipe-alarms",
     "AlarmTopicArn names a topic in aws:us-gov-west-1, and CloudWatch alarms notify only topics in the stack's own "
     "region (aws-us-gov:us-gov-west-1)"),
])
def test_an_alarm_topic_outside_the_stacks_region_is_refused_before_anything_is_uploaded(
        region, arn, shown, build, capsys, monkeypatch):
    """CloudWatch refuses an alarm whose action is another region's topic ("Invalid region
    eu-west-1 specified. Only us-east-1 is supported"): the ARN matched the template's pattern,
    the code was uploaded, and every dead-letter alarm failed, rolling the stack back."""
    (build / "sam.json").write_text(json.dumps(ALARM_TEMPLATE))
    session = PartitionedSession(region)
    assert main_exit(session, monkeypatch,
                     [str(build), "jobpipe", f"AuthSecret={SECRET}", f"AlarmTopicArn={arn}"]) == 2
    assert capsys.readouterr().err == (f"deploy: {shown}: create the topic there (its subscriptions may deliver "
                                       f"anywhere) (got {arn!r})\n")
    assert session.s3.objects == {} and session.cfn.stack is None
    same = arn.replace(arn.split(":")[3], region).replace("arn:aws:", f"arn:{session.get_partition_for_region(region)}:")
    deploy_script.main([str(build), "jobpipe", f"AuthSecret={SECRET}", f"AlarmTopicArn={same}"])
    assert session.cfn.stack["parameters"]["AlarmTopicArn"] == same


def test_a_stack_name_that_could_pass_lambdas_4_kb_of_environment_is_refused_before_anything_is_uploaded(
        build, capsys, monkeypatch):
    """The stack's name is in every function's environment several times (the service name, the
    event bus, every table name and queue URL CloudFormation generates from it): a 128-character
    name, which CloudFormation takes, with long token claims and secret gave the API function
    more than Lambda's 4 KB. CloudFormation failed the function's create after the upload with
    Lambda's words, naming neither the name nor a parameter. It is one line, exit 2, nothing
    uploaded; the same parameters on the shorter name the line gives deploy; an update that
    keeps its secret (NoEcho: not shown) counts it at its longest, and says so."""
    from tests.support.infra import packaged_template

    (build / "sam.json").write_text(json.dumps(packaged_template()))
    session = FakeSession()
    long = [f"AuthSecret={'é' * SECRET_MAX_CHARS}", "TokenIssuer=" + "i" * 128, "TokenAudience=" + "a" * 128]
    stack = "j" * 128
    assert main_exit(session, monkeypatch, [str(build), stack, *long]) == 2
    err = capsys.readouterr().err
    refused = re.fullmatch(rf"deploy: stack {stack} \(128 characters\) could give function APIHandler an environment "
                           r"of 4,\d{3} bytes, over Lambda's 4,096 \(the stack's name is in its table names, queue "
                           r"URLs and event bus\): a stack name of at most (\d+) characters fits with these "
                           r"parameters. Nothing was deployed\n", err)
    assert refused, err
    assert session.s3.objects == {} and session.cfn.stack is None
    fits = int(refused.group(1))
    deploy_script.main([str(build), stack[:fits], *long])
    assert session.cfn.stack["status"] == "CREATE_COMPLETE"
    capsys.readouterr()
    session.cfn.stack["parameters"]["AuthSecret"] = "s" * 40  # kept as ****: counted at 128 4-byte characters
    assert main_exit(session, monkeypatch, [str(build), stack[:fits], "RetentionDays=9"]) == 2
    assert "(AuthSecret kept, not shown, so counted at the longest allowed: give AuthSecret=... to count the " \
           "value)" in capsys.readouterr().err
    deploy_script.main([str(build), stack[:fits], "RetentionDays=9", "AuthSecret=" + "s" * 40])
    assert session.cfn.stack["parameters"]["RetentionDays"] == "9"
