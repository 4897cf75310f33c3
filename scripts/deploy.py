"""Deploy the packaged stack (build/sam.json + build/deployment.zip) through CloudFormation,
as `aws cloudformation package` + `deploy` would: upload the zip, point every CodeUri at it,
create and execute a change set. The endpoint comes from AWS_ENDPOINT_URL (boto3 reads it).

The code goes to `jobpipe-artifacts-<account>-<region>`, created only if missing. Every S3
call on it names the account as `ExpectedBucketOwner` (CreateBucket takes none; a head
confirms the new bucket right after), so a bucket of that name in another account is an
error, never the source of the functions' code.

Usage: python -m scripts.deploy [BUILD_DIR] [STACK_NAME] [Key=Value ...]
(defaults: build, jobpipe; a new stack needs AuthSecret=<32 to 128 characters>, an update keeps
every parameter it is not given). Exit codes: 0 deployed, or nothing to change; 1 the deploy failed or
AWS refused (one line naming the resources that failed), or the stack is in a state CloudFormation takes
no update in (one line saying what to do first: scripts/stack_states.py); 2 a bad parameter (one the template
does not declare, or a value its constraints, the functions' settings or AWS refuse, such as a
fraction where AWS takes a whole number, a stack name so long, with the parameters, that a
function's environment could pass Lambda's 4 KB, or on AWS a FunctionConcurrencyCeiling below
what a function's SQS mapping runs at once: checked before anything is uploaded), cache invalidation
rules in the package the functions would refuse (a key no job type is named, a bad namespace
name), no package
(`make package`) or a STACK_NAME CloudFormation cannot take; 130 interrupted.
"""
from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import boto3
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, NoRegionError, WaiterError

from scripts import package
from scripts.lambda_environment import environment_problem
from scripts.local_stack import apply_gateway_responses, apply_time_to_live, stack_resources
from scripts.stack_states import IN_PROGRESS, recreating, refusal, still_running
from scripts.stack_config import (
    StackConfigError,
    check_alarm_actions,
    check_cache_rules,
    check_declared,
    check_kept,
    check_mapping_concurrency,
    check_parameters,
    check_reconciler_watch,
    check_schedules,
    check_settings,
    check_webhook_signing,
    check_whole_numbers,
    property_refs,
    reserved_concurrency,
    run_values,
)

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT_BUCKET_PREFIX = "jobpipe-artifacts"
CAPABILITIES = ["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM", "CAPABILITY_AUTO_EXPAND"]


class DeployError(RuntimeError):
    pass


def one_line(exc: BaseException) -> str:
    """`exc`'s message on one line (CloudFormation's and botocore's messages may span several)."""
    return " ".join(str(exc).split()) or type(exc).__name__


def artifact_bucket_name(account: str, region: str) -> str:
    return f"{ARTIFACT_BUCKET_PREFIX}-{account}-{region}"


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_artifact_bucket(s3: Any, account: str, region: str) -> str:
    """The account's artifact bucket, created if missing; raises DeployError if the name is
    taken by another account or the bucket cannot be reached."""
    bucket = artifact_bucket_name(account, region)
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
        return bucket
    except ClientError as exc:
        if _error_code(exc) not in ("404", "NoSuchBucket", "NotFound"):
            raise DeployError(
                f"artifact bucket {bucket} exists but account {account} does not own it or may not use it "
                f"({_error_code(exc)}); deploy with credentials of the account that owns it"
            ) from exc
    create: dict[str, Any] = {"Bucket": bucket}
    if region != "us-east-1":  # us-east-1 refuses a LocationConstraint naming itself
        create["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        s3.create_bucket(**create)
    except ClientError as exc:
        if _error_code(exc) != "BucketAlreadyOwnedByYou":  # another deploy of ours won the race
            raise DeployError(f"could not create artifact bucket {bucket}: {_error_code(exc)}: {exc}") from exc
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError as exc:
        raise DeployError(f"artifact bucket {bucket} is not owned by account {account}") from exc
    return bucket


def _upload(s3: Any, bucket: str, account: str, zip_path: Path, stack: str) -> str:
    data = zip_path.read_bytes()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.zip"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ExpectedBucketOwner=account)
    # a missing object would deploy a mock function
    s3.head_object(Bucket=bucket, Key=key, ExpectedBucketOwner=account)
    return f"s3://{bucket}/{key}"


def _upload_template(s3: Any, bucket: str, account: str, template: dict[str, Any], stack: str) -> str:
    """The template as an S3 object: a TemplateBody is limited to 51,200 bytes, a TemplateURL
    to 1 MB (what `aws cloudformation deploy --s3-bucket` does too)."""
    data = json.dumps(template, separators=(",", ":")).encode()
    key = f"{stack}/{hashlib.sha256(data).hexdigest()}.template.json"
    s3.put_object(Bucket=bucket, Key=key, Body=data, ExpectedBucketOwner=account)
    return f"{s3.meta.endpoint_url.rstrip('/')}/{bucket}/{key}"


# A change set CloudFormation could not make because nothing would change (AWS's reason).
NO_CHANGES = ("didn't contain changes", "No updates are to be performed")
# Failures that only follow another one (CloudFormation cancels the rest of a failed deploy).
CONSEQUENTIAL = ("Resource creation cancelled", "Resource update cancelled")
# How many resource failures a DeployError names; the stack's events hold them all.
FAILURES_SHOWN = 5


def _existing_stack(cfn: Any, stack: str) -> dict[str, Any] | None:
    """The stack as DescribeStacks gives it, or None when there is none of that name."""
    try:
        return cfn.describe_stacks(StackName=stack)["Stacks"][0]
    except ClientError as exc:
        if _error_code(exc) == "ValidationError" and "does not exist" in str(exc):
            return None
        raise


def _latest_event_id(cfn: Any, stack: str) -> str | None:
    events = cfn.describe_stack_events(StackName=stack)["StackEvents"]
    return events[0]["EventId"] if events else None


def _failures(cfn: Any, stack: str, since_event: str | None) -> list[str]:
    """This deploy's failed resources, first failure first: the events newer than `since_event`
    (the stack's events hold every earlier deploy's too), without the cancellations that only
    follow a failure and without the stack's own summary of them."""
    failures: list[str] = []
    for page in cfn.get_paginator("describe_stack_events").paginate(StackName=stack):
        for event in page["StackEvents"]:
            if event["EventId"] == since_event:
                return failures[::-1]
            reason = " ".join(str(event.get("ResourceStatusReason") or "").split())
            if ("FAILED" in event["ResourceStatus"] and event.get("ResourceType") != "AWS::CloudFormation::Stack"
                    and not reason.startswith(CONSEQUENTIAL)):
                failures.append(f"{event['LogicalResourceId']}: {reason or event['ResourceStatus']}")
    return failures[::-1]


def _parameter_list(template: dict[str, Any], parameters: Mapping[str, str],
                    existing: dict[str, Any] | None, absent: str = "") -> list[dict[str, Any]]:
    """The change set's parameters: those given; on an update, every other parameter the stack
    already has keeps its value (as `aws cloudformation deploy` does), rather than falling
    back to the template's default. Raises DeployError for a parameter with no default that
    a new stack is not given, saying first `absent` (that no stack of the name exists: a
    mistyped name, where an update was meant)."""
    declared = template.get("Parameters", {})
    listed = [{"ParameterKey": k, "ParameterValue": str(v)} for k, v in parameters.items()]
    if existing is None:
        missing = sorted(k for k, d in declared.items() if "Default" not in d and k not in parameters)
        if missing:
            said = f"{absent}, and " if absent else ""
            update = "; or name the stack to update" if absent else ""
            raise DeployError(f"{said}a new stack needs {', '.join(missing)} (give {missing[0]}=..., "
                              f"README: Deploying{update}); nothing was deployed")
        return listed
    previous = {p["ParameterKey"] for p in existing.get("Parameters", [])}
    kept = sorted((previous & set(declared)) - set(parameters))
    return listed + [{"ParameterKey": k, "UsePreviousValue": True} for k in kept]


# Concurrent executions Lambda keeps unreserved in every account: PutFunctionConcurrency
# refuses a reservation that would leave fewer.
UNRESERVED_KEPT = 10


def _stack_reserved(cfn: Any, lambda_client: Any, stack: str) -> int:
    """The concurrent executions `stack`'s functions reserve now (GetFunctionConcurrency of each)."""
    held = 0
    for page in cfn.get_paginator("list_stack_resources").paginate(StackName=stack):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] != "AWS::Lambda::Function" or not resource.get("PhysicalResourceId"):
                continue
            try:
                answer = lambda_client.get_function_concurrency(FunctionName=resource["PhysicalResourceId"])
            except ClientError as exc:
                if _error_code(exc) == "ResourceNotFoundException":  # deleted by hand: it holds nothing
                    continue
                raise
            held += int(answer.get("ReservedConcurrentExecutions") or 0)
    return held


def check_concurrency_room(session: Any, cfn: Any, template: dict[str, Any], values: Mapping[str, str],
                           existing: dict[str, Any] | None, stack: str) -> None:
    """The concurrent executions the stack's functions would reserve (its ceilings at `values`:
    as given, kept by the stack or the template's defaults, stack_config.run_values) must fit
    in what the account leaves unreserved (GetAccountSettings' UnreservedConcurrentExecutions,
    less the UNRESERVED_KEPT Lambda keeps, plus what the stack's functions reserve now, on an
    update): else Lambda refuses every function's reservation after the upload. No call is
    made when nothing is reserved. Raises StackConfigError, one line naming the ceilings."""
    reserved = reserved_concurrency(template, values)
    wanted = sum(reserved.values())
    if not wanted:
        return
    lambda_client = session.client("lambda")
    try:
        unreserved = int(lambda_client.get_account_settings()["AccountLimit"]["UnreservedConcurrentExecutions"])
    except ClientError as exc:
        if _error_code(exc) not in ("AccessDeniedException", "AccessDenied"):
            raise
        print(f"deploy: not checking the functions' reserved concurrency ({wanted:,}) against the account's: "
              f"these credentials may not call lambda:GetAccountSettings", file=sys.stderr, flush=True)
        return
    held = _stack_reserved(cfn, lambda_client, stack) if existing is not None else 0
    room = unreserved - UNRESERVED_KEPT + held
    if wanted > room:
        ceilings = ", ".join(f"{name}={values[name]}" for name, targets in sorted(property_refs(template).items())
                             if name in values and any(p == "ReservedConcurrentExecutions" for _, p in targets))
        now = f", plus the {held:,} stack {stack}'s functions reserve now" if held else ""
        raise StackConfigError(
            f"{ceilings} would reserve {wanted:,} concurrent executions for {len(reserved)} functions, more than "
            f"the {max(room, 0):,} the account can reserve in {session.region_name or 'its region'} "
            f"({unreserved:,} unreserved, less the {UNRESERVED_KEPT} Lambda keeps unreserved{now}): lower them, "
            "or ask AWS for a higher Lambda concurrency quota")


def _partition(session: Any, region: str) -> str | None:
    """The partition (aws, aws-cn, aws-us-gov, ...) botocore knows `region` in, or None."""
    try:
        return session.get_partition_for_region(region)
    except (AttributeError, BotoCoreError, ValueError):
        return None


def deploy(build_dir: Path, stack: str, parameters: Mapping[str, str], session: Any = None) -> dict[str, str]:
    """Create or update `stack`; returns its outputs, plus `ApiUrl` for the emulator's gateway.

    A re-run recovers from an earlier one that failed or stopped half-way: a stack whose first
    create rolled back (ROLLBACK_COMPLETE, nothing left of it) is deleted and created again, one
    left in REVIEW_IN_PROGRESS by a create never executed is created, and a deploy that changes
    nothing leaves the stack as it is. Raises DeployError with one line on what failed, or on
    what to do first with a stack in a state CloudFormation takes no update in (a failed
    rollback, another operation under way: stack_states.refusal, before anything is uploaded), and
    StackConfigError for an update whose parameters break a rule together with the values the
    stack keeps (stack_config.check_kept), an ErpWebhookUrl with no ErpWebhookSecret given
    or kept (stack_config.check_webhook_signing), an AlarmTopicArn outside the stack's region
    (stack_config.check_alarm_actions), a stack name that, with the parameters, could give a
    function an environment over Lambda's 4 KB (lambda_environment.environment_problem), or, on
    AWS, a ceiling below what a function's SQS mapping runs at once
    (stack_config.check_mapping_concurrency) or ceilings the account cannot reserve
    (check_concurrency_room), before anything is uploaded."""
    session = session or boto3.session.Session()
    cfn = session.client("cloudformation")
    template = json.loads(package.template_path(build_dir).read_text())
    existing = _existing_stack(cfn, stack)
    refused = refusal(stack, existing["StackStatus"]) if existing is not None else None
    if refused:  # a state CloudFormation takes no update in: what to do first, before anything is uploaded
        raise DeployError(refused)
    # A name no stack has is most often a mistyped one: every refusal says so, and a create says it first.
    absent = f"stack {stack!r} does not exist in {session.region_name}" if existing is None else ""
    # A first create that rolled back, or a create change set never executed: nothing was created.
    # The rolled-back stack is deleted once every check has passed: a refused deploy leaves it, and
    # the events that say why its create failed.
    recreated = recreating(stack, existing["StackStatus"]) if existing is not None else None
    rolled_back = recreated is not None and existing["StackStatus"] == "ROLLBACK_COMPLETE"
    if recreated:
        existing = None
    if existing is not None:  # an update: checked again with the values it keeps, before anything is uploaded
        check_kept(template, parameters, existing.get("Parameters", []), stack)
    try:
        check_webhook_signing(template.get("Parameters") or {}, parameters,
                              None if existing is None else existing.get("Parameters", []), stack)
    except StackConfigError as exc:
        if absent and "ErpWebhookSecret" not in parameters:  # an update's kept secret was counted on
            raise StackConfigError(f"{exc} ({absent}: a new stack keeps no secret)") from None
        raise
    # Every parameter as the stack will run with it: given, kept by the stack, or the template's default.
    values = run_values(template.get("Parameters") or {}, parameters, (existing or {}).get("Parameters"))
    if session.region_name:  # none: boto3 refuses the first call, saying to set one
        check_alarm_actions(template, parameters, session.region_name, _partition(session, session.region_name))
        # Lambda refuses an environment over 4 KB only once CloudFormation makes the function.
        too_large = environment_problem(template, stack, session.region_name, values)
        if too_large:
            raise StackConfigError(too_large)
    change_type = "CREATE" if existing is None else "UPDATE"
    s3 = session.client("s3")
    endpoint = s3.meta.endpoint_url.rstrip("/")
    emulated = "amazonaws.com" not in endpoint
    if not emulated:  # an emulator's CloudFormation reserves nothing (scripts/local_stack.py does)
        check_mapping_concurrency(template, values)
        check_concurrency_room(session, cfn, template, values, existing, stack)
    if emulated:  # an emulator provisions no metric-math alarm (ministack refuses the stack)
        parameters = {"LetterArrivalAlarms": "false", **parameters}
    change_parameters = _parameter_list(template, parameters, existing, absent)
    if absent:
        print(f"{absent}: creating it", file=sys.stderr, flush=True)
    if recreated:
        print(recreated, file=sys.stderr, flush=True)
    if rolled_back:
        cfn.delete_stack(StackName=stack)
        try:
            cfn.get_waiter("stack_delete_complete").wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
        except WaiterError as exc:  # DELETE_FAILED: what to do about it, not the waiter's words
            status = (_existing_stack(cfn, stack) or {}).get("StackStatus", "")
            raise DeployError(refusal(stack, status) or f"stack {stack} was not deleted ({status}): {exc}") from exc
    account = session.client("sts").get_caller_identity()["Account"]
    bucket = ensure_artifact_bucket(s3, account, session.region_name or "us-east-1")
    code_uri = _upload(s3, bucket, account, package.code_path(build_dir), stack)
    for resource in template["Resources"].values():
        if resource["Type"] == "AWS::Serverless::Function":
            resource["Properties"]["CodeUri"] = code_uri
    change_set = f"jobpipe-{int(time.time() * 1000)}"
    cfn.create_change_set(
        StackName=stack,
        ChangeSetName=change_set,
        ChangeSetType=change_type,
        TemplateURL=_upload_template(s3, bucket, account, template, stack),
        Parameters=change_parameters,
        Capabilities=CAPABILITIES,
    )
    try:
        cfn.get_waiter("change_set_create_complete").wait(
            StackName=stack, ChangeSetName=change_set, WaiterConfig={"Delay": 1, "MaxAttempts": 300}
        )
        unchanged = False
    except WaiterError as exc:
        described = cfn.describe_change_set(StackName=stack, ChangeSetName=change_set)
        reason = " ".join(str(described.get("StatusReason") or exc).split())
        if described.get("Status") != "FAILED" or not any(text in reason for text in NO_CHANGES):
            raise DeployError(f"stack {stack}: CloudFormation refused the change set: {reason}") from exc
        cfn.delete_change_set(StackName=stack, ChangeSetName=change_set)
        print(f"stack {stack} is up to date: nothing to change", file=sys.stderr, flush=True)
        unchanged = True
    if not unchanged:
        since = _latest_event_id(cfn, stack)
        cfn.execute_change_set(StackName=stack, ChangeSetName=change_set)
        waiter = "stack_create_complete" if change_type == "CREATE" else "stack_update_complete"
        started = time.monotonic()
        try:
            cfn.get_waiter(waiter).wait(StackName=stack, WaiterConfig={"Delay": 1, "MaxAttempts": 600})
        except WaiterError as exc:
            failures = _failures(cfn, stack, since)
            status = cfn.describe_stacks(StackName=stack)["Stacks"][0]["StackStatus"]
            if status in IN_PROGRESS and not failures:  # waited out, not failed: CloudFormation goes on
                raise DeployError(still_running(stack, status, time.monotonic() - started)) from exc
            shown = "; ".join(failures[:FAILURES_SHOWN])
            if len(failures) > FAILURES_SHOWN:
                shown += f"; and {len(failures) - FAILURES_SHOWN} more (the stack's events)"
            raise DeployError(f"stack {stack} did not deploy ({status}): {shown or exc}") from exc
    stack_info = cfn.describe_stacks(StackName=stack)["Stacks"][0]
    outputs = {o["OutputKey"]: o["OutputValue"] for o in stack_info.get("Outputs", [])}
    if emulated:
        outputs["ApiUrl"] = f"{endpoint}/restapis/{outputs['RestAPIId']}/api/_user_request_"
        # the emulator leaves the API's gateway responses out of its body (scripts/local_stack.py)
        apply_gateway_responses(session.client("apigateway"), outputs["RestAPIId"], template)
        # and its tables' TTL: without it no record would ever expire
        apply_time_to_live(session.client("dynamodb"), stack_resources(session, stack, "AWS::DynamoDB::Table"), template)
    else:
        outputs["ApiUrl"] = outputs["EndpointURL"].rstrip("/")
    return outputs


USAGE = "python -m scripts.deploy [BUILD_DIR] [STACK_NAME] [Key=Value ...]"
# What CloudFormation takes as a stack's name: checked before the code is uploaded.
STACK_NAME = re.compile(r"[A-Za-z][-A-Za-z0-9]{0,127}")
STACK_NAME_RULE = "a letter, then letters, digits and hyphens, at most 128 in all"


def main(argv: list[str]) -> None:
    if any(arg in ("-h", "--help") for arg in argv):
        print(__doc__.strip())
        sys.exit(0)
    options = [arg for arg in argv if arg.startswith("-")]
    if options:  # no folder or stack name starts with one: a flag this script does not take
        print(f"deploy: unknown option {options[0]!r}; usage: {USAGE} (see --help)", file=sys.stderr)
        sys.exit(2)
    placed = [arg for arg in argv[:2] if "=" in arg]
    if placed:  # a parameter where the folder or the stack's name goes: never taken for either
        print(f"deploy: {placed[0][:80]!r} is a parameter where BUILD_DIR or STACK_NAME goes: "
              f"name both before any Key=Value; usage: {USAGE}", file=sys.stderr)
        sys.exit(2)
    build_dir = ROOT / (argv[0] if argv else "build")
    stack = argv[1] if len(argv) > 1 else "jobpipe"
    if not STACK_NAME.fullmatch(stack):
        print(f"deploy: {stack[:80]!r} is no stack name ({STACK_NAME_RULE}); usage: {USAGE}", file=sys.stderr)
        sys.exit(2)
    malformed = [arg for arg in argv[2:] if "=" not in arg]
    if malformed:
        print(f"deploy: parameters are Key=Value, not {malformed[0]!r}", file=sys.stderr)
        sys.exit(2)
    parameters = dict(arg.split("=", 1) for arg in argv[2:])
    try:  # e.g. an ErpWebhookSecret under 32 characters
        parameters = check_parameters(parameters)
    except StackConfigError as exc:
        print(f"deploy: {exc}", file=sys.stderr)
        sys.exit(2)
    packaged_files = (package.template_path(build_dir), package.code_path(build_dir))
    missing = [path for path in packaged_files if not path.is_file()]
    if missing:
        print(f"deploy: {missing[0]} is missing; `make package` builds it", file=sys.stderr)
        sys.exit(2)
    template = package.template_path(Path(argv[0] if argv else "build"))  # as given, for the messages
    try:  # every other parameter, as CloudFormation would, before the bucket or the code is touched
        packaged = json.loads(package.template_path(build_dir).read_text())
        check_declared(packaged.get("Parameters", {}), parameters, str(template))
        parameters = check_whole_numbers(packaged, parameters)  # 1.5 where AWS takes an integer
        check_reconciler_watch(packaged.get("Parameters", {}), parameters)
        check_schedules(packaged, parameters)  # cron(0 25 * * ? *): no hour 25
        check_settings(packaged, parameters)  # and as the functions will read them
        check_cache_rules(package.code_path(build_dir), str(package.code_path(Path(argv[0] if argv else "build"))))
    except (ValueError, AttributeError) as exc:  # StackConfigError, or a file that is no template
        reason = str(exc) if isinstance(exc, StackConfigError) else \
            f"{template} is not a template ({one_line(exc)}); `make package` builds it"
        print(f"deploy: {reason}", file=sys.stderr)
        sys.exit(2)
    try:
        print(json.dumps(deploy(build_dir, stack, parameters), indent=2))
    except KeyboardInterrupt:
        print(f"deploy: interrupted; what CloudFormation had started on stack {stack} goes on without us "
              "(its events say how it ends; once it has, deploying again picks up from there)", file=sys.stderr)
        sys.exit(130)
    except StackConfigError as exc:  # parameters that do not go with the values the stack keeps
        print(f"deploy: {exc}", file=sys.stderr)
        sys.exit(2)
    except (DeployError, ClientError, BotoCoreError) as exc:  # no credentials, no endpoint, a refusal
        print(f"deploy: {one_line(exc)}{_what_to_set(exc)}", file=sys.stderr)
        sys.exit(1)


def _what_to_set(exc: Exception) -> str:
    """For a missing region or credentials, what to set: AWS's own, or any for an emulator
    (`make run` sets them itself; a deploy beside it must)."""
    if isinstance(exc, NoRegionError):
        return " (set AWS_DEFAULT_REGION; for make run's emulator any, e.g. us-east-1)"
    if isinstance(exc, NoCredentialsError):
        return " (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE; for make run's emulator any, e.g. test)"
    return ""


if __name__ == "__main__":
    main(sys.argv[1:])
